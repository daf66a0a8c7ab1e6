"""``Relay`` forwards a message as it arrives: upstream has its first pieces before the sender sent its last.

Upstreams: a scripted one (to see how the content arrives, and where it is
cut off), aiosmtpd (a real server, byte-exact delivery) and ``mailwire serve
--maildir`` in a process of its own, behind ``mailwire serve --relay``, for
a large message and the relay's peak RSS. A message that does not end whole,
or an 8-bit octet an upstream without 8BITMIME cannot take, must leave the
upstream with nothing delivered: its connection is closed before the end of
the data.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import smtplib
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mailwire import MailOptions, RcptOptions, SMTPError
from mailwire.server import Envelope, Relay, StreamingSession
from mailwire.server.envelope import SessionInfo
from mailwire.server.streaming import LMTPStreamingSession, MessageAborted, MessageContent

from helpers.raw_smtp import in_data
from helpers.scripted import Peer, ScriptedServer

from .test_backends import Upstream, aiosmtpd_server
from .test_cli_serve import Serve, serve  # noqa: F401 - the fixture
from .test_maildir_streaming import BLOCK, lines, peak_rss
from .test_streaming import message, sha

PEER = ("192.0.2.1", 4321)
PIECE = 64 << 10


def relay(address: tuple[str, int], **kwargs: Any) -> Relay:
    return Relay(*address, tls="none", timeout=10, **kwargs)


def envelope(**fields: Any) -> Envelope:
    env = Envelope(mail_from="alice@example.com", rcpt_to=["bob@example.org"])
    for name, value in fields.items():
        setattr(env, name, value)
    return env


class Upstream8(threading.Event):
    """A scripted upstream that takes one transaction over DATA and counts
    the content octets as they arrive (``got``); ``ended``: the terminator
    came. With ``eightbit=False`` it does not offer 8BITMIME."""

    def __init__(self, *, eightbit: bool = True) -> None:
        super().__init__()
        self.eightbit = eightbit
        self.got = 0
        self.ended = False
        self.closed_in_data = False
        self.reset = False
        self.content = bytearray()

    def __call__(self, peer: Peer) -> None:
        peer.reply("220 up ESMTP")
        peer.recv_line()
        peer.reply(*(("250-up", "250 8BITMIME") if self.eightbit else ("250 up",)))
        assert peer.recv_line().startswith(b"MAIL FROM:")
        peer.reply("250 OK")
        assert peer.recv_line().startswith(b"RCPT TO:")
        peer.reply("250 OK")
        if peer.recv_line() == b"RSET\r\n":  # given up before its DATA
            self.reset = True
            peer.reply("250 OK")
            assert peer.recv_line() == b"QUIT\r\n"
            peer.reply("221 Bye")
            self.set()
            return
        peer.reply("354 go ahead")
        while True:
            try:
                data = peer.recv_exact(1)
                data += peer.recv_exact(min(peer.buffered(), PIECE))
            except EOFError:
                self.closed_in_data = True
                self.set()
                return
            self.content += data
            self.got = len(self.content)
            if self.content.endswith(b"\r\n.\r\n"):
                self.ended = True
                peer.reply("250 OK queued")
                break
        assert peer.recv_line() == b"QUIT\r\n"
        peer.reply("221 Bye")
        self.set()


async def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.005)


async def relay_one(
    address: tuple[str, int], produce: Callable[[MessageContent], Any], *, lmtp: bool = False,
) -> Any:
    """A relay session taking one message whose content ``produce`` puts."""
    session = await relay(address).new_session(SessionInfo(peer=PEER, lmtp=lmtp))
    env = envelope()
    content = MessageContent(256 << 10)
    try:
        if lmtp:
            assert isinstance(session, LMTPStreamingSession)
            step = session.deliver_stream(env, content)
        else:
            assert isinstance(session, StreamingSession)
            await session.mail(env.mail_from, MailOptions())
            await session.rcpt("bob@example.org", RcptOptions())
            step = session.data_stream(env, content)
        consumer = asyncio.ensure_future(step)
        producer = asyncio.ensure_future(produce(content))
        try:
            return await consumer
        finally:
            content.consumer_done()
            await producer
    finally:
        await session.close()


def test_the_upstream_has_the_first_pieces_before_the_sender_sent_the_last() -> None:
    """Store-and-forward would deadlock here: the last piece is put only once
    the upstream has half the message."""
    upstream = Upstream8()
    content = message(8 << 20)
    pieces = [content[i:i + PIECE] for i in range(0, len(content), PIECE)]
    most_buffered = 0

    async def produce(stream: MessageContent) -> None:
        nonlocal most_buffered
        for i, piece in enumerate(pieces):
            if i == len(pieces) - 1:
                await wait_until(lambda: upstream.got >= len(content) // 2)
            room = stream.put(piece)
            most_buffered = max(most_buffered, stream.buffered)
            if room is not None:
                await room
        stream.end()

    with ScriptedServer(upstream) as server:
        asyncio.run(relay_one(server.address, produce))
        assert upstream.wait(10)
    assert upstream.ended
    assert sha(bytes(upstream.content)) == sha(content.replace(b"\r\n.", b"\r\n..") + b".\r\n")
    assert most_buffered <= (256 << 10) + PIECE  # what waited for the relay: bounded, never the message


def test_an_aborted_message_is_never_ended_upstream() -> None:
    upstream = Upstream8()

    async def produce(stream: MessageContent) -> None:
        stream.put(b"Subject: cut\r\n\r\n")
        for _ in range(4):
            await asyncio.sleep(0.01)
            stream.put(b"x" * 80000 + b"\r\n")
        await wait_until(lambda: upstream.got > 0)
        stream.abort()  # the sender left

    with ScriptedServer(upstream, strict=False) as server:
        with pytest.raises(MessageAborted):
            asyncio.run(relay_one(server.address, produce))
        assert upstream.wait(10)
    assert upstream.closed_in_data and not upstream.ended
    assert b"\r\n.\r\n" not in upstream.content


def test_a_message_aborted_before_its_data_went_up_resets_the_upstream() -> None:
    upstream = Upstream8()

    async def produce(stream: MessageContent) -> None:
        stream.put(b"Subject: cut\r\n\r\nshort\r\n")  # less than a write's worth: held
        await asyncio.sleep(0.05)
        stream.abort()

    with ScriptedServer(upstream) as server:
        with pytest.raises(MessageAborted):
            asyncio.run(relay_one(server.address, produce))
        assert upstream.wait(10)
    assert upstream.reset and upstream.content == b""


def test_an_8bit_octet_after_the_first_piece_closes_the_upstream_before_the_end() -> None:
    upstream = Upstream8(eightbit=False)

    async def produce(stream: MessageContent) -> None:
        stream.put(b"Subject: 7-bit at first\r\n\r\n" + b"plain\r\n" * 50000)
        await wait_until(lambda: upstream.got > 0)
        stream.put(b"caf\xc3\xa9\r\n")
        stream.put(b"more\r\n")
        stream.end()

    with ScriptedServer(upstream, strict=False) as server:
        with pytest.raises(SMTPError) as caught:
            asyncio.run(relay_one(server.address, produce))
        assert upstream.wait(10)
    assert (caught.value.code, str(caught.value.enhanced)) == (554, "5.6.3")
    assert upstream.closed_in_data and not upstream.ended
    assert b"\xc3" not in upstream.content


@pytest.fixture
def aio_upstream() -> Iterator[Any]:
    handler = Upstream(refuse_rcpt={"nobody@example.org": "550 5.1.1 No such user"})
    with aiosmtpd_server(handler=handler) as running:
        yield running


def test_lmtp_streams_and_gives_each_recipient_its_upstream_reply(aio_upstream: Any) -> None:
    content = message(2 << 20)

    async def produce(stream: MessageContent) -> None:
        for i in range(0, len(content), PIECE):
            room = stream.put(content[i:i + PIECE])
            if room is not None:
                await room
        stream.end()

    async def main() -> list[SMTPError | None]:
        session = await relay(aio_upstream.address).new_session(SessionInfo(peer=PEER, lmtp=True))
        assert isinstance(session, LMTPStreamingSession)
        env = Envelope(mail_from="alice@example.com", rcpt_to=["bob@example.org", "nobody@example.org"])
        stream = MessageContent(256 << 10)
        producer = asyncio.ensure_future(produce(stream))
        try:
            return list(await session.deliver_stream(env, stream))
        finally:
            stream.consumer_done()
            await producer

    ok, gone = asyncio.run(main())
    assert ok is None and gone is not None and (gone.code, str(gone.enhanced)) == (550, "5.1.1")
    [got] = aio_upstream.handler.envelopes
    assert got.rcpt_tos == ["bob@example.org"] and sha(got.original_content) == sha(content)


def test_lmtp_an_aborted_message_delivers_nothing_upstream(aio_upstream: Any) -> None:
    async def produce(stream: MessageContent) -> None:
        stream.put(b"Subject: cut\r\n\r\n" + b"y" * 5000 + b"\r\n")
        await asyncio.sleep(0.05)
        stream.abort()

    with pytest.raises(MessageAborted):
        asyncio.run(relay_one(aio_upstream.address, produce, lmtp=True))
    assert aio_upstream.handler.envelopes == []


def test_end_to_end_with_smtplib_through_the_server(aio_upstream: Any, server_factory: Callable[..., Any]) -> None:
    server = server_factory(relay(aio_upstream.address))
    content = message(3 << 20)
    with smtplib.SMTP(*server.address, timeout=30) as client:
        client.sendmail("alice@example.com", ["bob@example.org"], content)
        # The same session again: the upstream connection is the same one.
        client.sendmail("alice@example.com", ["bob@example.org"], b"Subject: small\r\n\r\nhi\r\n")
    first, second = aio_upstream.handler.envelopes
    assert sha(first.original_content) == sha(content)
    assert second.original_content == b"Subject: small\r\n\r\nhi\r\n"


def test_end_to_end_a_sender_gone_mid_data_delivers_nothing(
    aio_upstream: Any, server_factory: Callable[..., Any],
) -> None:
    server = server_factory(relay(aio_upstream.address))
    with in_data(server.address, "alice@example.com", "bob@example.org") as (sock, _):
        sock.sendall(message(1 << 20))
    # The upstream's connection was closed in the middle of its DATA.
    deadline = 50
    while deadline and not aio_upstream.handler.peers:
        deadline -= 1
        threading.Event().wait(0.05)
    threading.Event().wait(0.3)
    assert aio_upstream.handler.envelopes == []


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads /proc")
def test_a_large_message_is_relayed_with_flat_memory(serve: Callable[..., Serve], tmp_path: Path) -> None:
    blocks = 60
    size = len(b"Subject: large\r\n\r\n") + blocks * len(BLOCK)  # 63 MB
    box = tmp_path / "Maildir"
    upstream = serve("--maildir", str(box), "--port", "0", "--max-size", str(2 * size))
    relaying = serve("--relay", f"127.0.0.1:{upstream.port}", "--port", "0", "--max-size", str(2 * size))
    before = peak_rss(relaying.proc.pid)
    digest = hashlib.sha256(b"Return-Path: <a@example.com>\r\n")
    with in_data(("127.0.0.1", relaying.port), "a@example.com", "b@example.com") as (sock, reply):
        for part in lines(blocks):
            digest.update(part)
            sock.sendall(part)
        sock.sendall(b".\r\n")
        assert reply().startswith(b"250")
    after = peak_rss(relaying.proc.pid)
    [name] = os.listdir(box / "new")
    kept = hashlib.sha256()
    with open(box / "new" / name, "rb") as file:
        while block := file.read(1 << 20):
            kept.update(block)
    assert kept.hexdigest() == digest.hexdigest()
    growth = after - before
    print(f"\nserve --relay, {size >> 20} MB message: peak RSS {before >> 20} MB before, "
          f"{after >> 20} MB after (+{growth >> 20} MB)", file=sys.stderr)
    assert growth < size // 4  # 15 MB: buffers, never the message
    relaying.stop()
    upstream.stop()


def test_after_an_aborted_message_the_session_relays_the_next_on_a_new_connection(aio_upstream: Any) -> None:
    async def main() -> None:
        session = await relay(aio_upstream.address).new_session(SessionInfo(peer=PEER))
        assert isinstance(session, StreamingSession)
        try:
            await session.mail("alice@example.com", MailOptions())
            await session.rcpt("bob@example.org", RcptOptions())
            cut = MessageContent(1 << 20)
            cut.put(b"Subject: cut\r\n\r\n" + b"z" * 300000 + b"\r\n")  # more than a write: DATA goes up
            consumer = asyncio.ensure_future(session.data_stream(envelope(), cut))
            await asyncio.sleep(0.2)
            cut.abort()
            with pytest.raises(MessageAborted):
                await consumer
            await session.mail("alice@example.com", MailOptions())
            await session.rcpt("bob@example.org", RcptOptions())
            whole = MessageContent(1 << 20)
            whole.put(b"Subject: next\r\n\r\n")
            whole.put(b"kept\r\n")
            whole.end()
            await session.data_stream(envelope(), whole)
            assert whole.complete
        finally:
            await session.close()

    asyncio.run(main())
    [got] = aio_upstream.handler.envelopes
    assert got.original_content == b"Subject: next\r\n\r\nkept\r\n"
    assert len(aio_upstream.handler.peers) == 2  # the first connection was closed in its DATA

"""Streaming sessions over real sockets: a message reaches the backend as it
arrives, byte for byte; a message refused part-way, or one the backend fails
on, leaves nothing stored; a slow backend pauses reading.

The backend here is ``FileStore``: each message is written to ``tmp/`` chunk
by chunk and moved into ``new/`` once whole (a Maildir's shape), and the
file is removed when the message is aborted or the writing fails. Its
sessions implement ``StreamingSession`` (and, with ``per_recipient``,
``LMTPStreamingSession``). Peers: raw sockets, the standard library's
``smtplib``, aiosmtplib, and mailwire's own client (BDAT).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
import smtplib
import socket
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import aiosmtplib
import pytest

import mailwire
from mailwire.errors import SMTPError
from mailwire.limits import Limits
from mailwire.server import (
    BaseSession, Envelope, LMTPStreamingSession, MessageAborted, MessageContent, SessionInfo, StreamingSession,
)

from .conftest import RawClient, ServerThread, wait_for

Factory = Callable[..., ServerThread]
_names = itertools.count()


class FileStore:
    """A streaming backend that writes each message to a file as it comes."""

    def __init__(self, root: Path, *, fail_after: int | None = None, per_recipient: bool = False,
                 stop_early: bool = False) -> None:
        self.tmp, self.new = root / "tmp", root / "new"
        self.tmp.mkdir()
        self.new.mkdir()
        self.fail_after = fail_after  # raise OSError once this many octets are written
        self.per_recipient = per_recipient
        self.stop_early = stop_early  # return after the first chunk (a backend bug)
        self.gate = threading.Event()  # cleared: the session stops reading (a slow backend)
        self.gate.set()
        self.first_chunk = threading.Event()
        self.chunks: list[int] = []  # sizes of the chunks received, every message
        self.buffered: list[int] = []  # content.buffered seen while the gate was closed
        self.aborted = 0
        self.failed = 0
        self.resets = 0

    async def new_session(self, info: SessionInfo) -> BaseSession:
        return FileLMTPSession(self, info) if self.per_recipient else FileSession(self, info)

    def stored(self) -> list[bytes]:
        return [p.read_bytes() for p in sorted(self.new.iterdir(), key=lambda p: int(p.name))]

    def leftovers(self) -> list[str]:
        return sorted(p.name for p in self.tmp.iterdir())


class FileSession(BaseSession):
    def __init__(self, store: FileStore, info: SessionInfo) -> None:
        super().__init__(info)
        self.store = store

    def reset(self) -> None:
        self.store.resets += 1

    async def data_stream(self, envelope: Envelope, content: MessageContent) -> None:
        store = self.store
        assert envelope.content == b"" and envelope.rcpt_to
        name = str(next(_names))
        path = store.tmp / name
        with open(path, "wb") as file:
            try:
                async for chunk in content:
                    store.first_chunk.set()
                    store.chunks.append(len(chunk))
                    while not store.gate.is_set():
                        store.buffered.append(content.buffered)
                        await asyncio.sleep(0.005)
                    file.write(chunk)
                    if store.fail_after is not None and file.tell() >= store.fail_after:
                        raise OSError(28, "No space left on device")
                    if store.stop_early:
                        return
            except MessageAborted:
                store.aborted += 1
                path.unlink()
                raise
            except BaseException:
                store.failed += 1
                path.unlink()
                raise
        os.rename(path, store.new / name)


class FileLMTPSession(FileSession):
    """Also an LMTPStreamingSession: 'full' mailboxes refuse, others take it."""

    async def deliver_stream(self, envelope: Envelope, content: MessageContent) -> Sequence[SMTPError | None]:
        await self.data_stream(envelope, content)
        return [SMTPError(452, "4.2.2", "Mailbox full") if r.startswith("full") else None for r in envelope.rcpt_to]


def test_the_sessions_are_streaming_sessions(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    assert isinstance(FileSession(store, SessionInfo(peer=None)), StreamingSession)
    assert not isinstance(FileSession(store, SessionInfo(peer=None)), LMTPStreamingSession)
    assert isinstance(FileLMTPSession(store, SessionInfo(peer=None)), LMTPStreamingSession)


def message(size: int, *, dots: bool = True) -> bytes:
    """About ``size`` octets of CRLF text; every seventh line starts with a period."""
    lines = []
    total = 0
    for i in itertools.count():
        line = (b"." if dots and i % 7 == 3 else b"") + b"line %06d of the message, some text to fill it\r\n" % i
        lines.append(line)
        total += len(line)
        if total >= size:
            break
    return b"Subject: streamed\r\n\r\n" + b"".join(lines)


def stuffed(content: bytes) -> bytes:
    return content.replace(b"\r\n.", b"\r\n..") + b".\r\n"


def begin(client: RawClient, rcpts: Sequence[str] = ("b@example.com",), verb: str = "EHLO") -> None:
    client.cmd(f"{verb} client.test", 250)
    client.cmd("MAIL FROM:<a@example.com>", 250)
    for rcpt in rcpts:
        client.cmd(f"RCPT TO:<{rcpt}>", 250)


def connect(server_factory: Factory, store: FileStore, rcpts: Sequence[str] = ("b@example.com",),
            **settings: object) -> tuple[ServerThread, RawClient]:
    """A server storing in ``store``, and a raw client with a transaction open."""
    server = server_factory(store, **settings)
    client = server.raw()
    begin(client, rcpts, verb="LHLO" if settings.get("lmtp") else "EHLO")
    return server, client


def bdat(client: RawClient, data: bytes, *, last: bool = False, size: int | None = None) -> None:
    """A BDAT chunk of ``size`` octets (``len(data)`` unless told: the rest to follow)."""
    client.send(b"BDAT %d%s\r\n" % (len(data) if size is None else size, b" LAST" if last else b"") + data)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- the bytes stored are the bytes sent ----------------------------------------------


def test_stdlib_smtplib_message_is_streamed_byte_identical(server_factory: Factory, tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    server = server_factory(store)
    content = message(3 << 20)
    with smtplib.SMTP(*server.address, timeout=30) as client:
        client.sendmail("a@example.com", ["b@example.com"], content)
    assert sha(store.stored()[0]) == sha(content)
    assert len(store.chunks) > 1  # it came in pieces, as it was read
    assert store.leftovers() == []


def test_aiosmtplib_message_is_streamed_byte_identical(server_factory: Factory, tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    server = server_factory(store)
    content = message(2 << 20)
    host, port = server.address
    asyncio.run(aiosmtplib.send(content, sender="a@example.com", recipients=["b@example.com"],
                                hostname=host, port=port, start_tls=False, timeout=30))
    assert sha(store.stored()[0]) == sha(content)
    assert len(store.chunks) > 1


def test_mailwire_client_bdat_is_streamed_byte_identical(server_factory: Factory, tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    server = server_factory(store)
    contents = [message(2 << 20), message(100), message(700 << 10, dots=False)]
    with mailwire.SMTPClient(*server.address, tls="none", timeout=30) as client:
        assert client.capabilities.chunking  # so it sends BDAT
        for content in contents:
            client.send(content, mail_from="a@example.com", rcpt_to=["b@example.com"])
    assert [sha(s) for s in store.stored()] == [sha(c) for c in contents]


def test_raw_bdat_chunks_are_streamed_as_framed(server_factory: Factory, tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    server, client = connect(server_factory, store)
    parts = [b"QUIT\r\n.\r\n", b"\r\n..x\r\n", b"BDAT 5\r\n", b"end\r\n"]
    for i, part in enumerate(parts):
        bdat(client, part, last=i == len(parts) - 1)
        client.expect(250)
    assert store.stored() == [b"".join(parts)]


def test_the_session_has_content_before_the_message_ends(server_factory: Factory, tmp_path: Path) -> None:
    """What the whole form cannot do: the backend works while the client sends."""
    store = FileStore(tmp_path)
    server, client = connect(server_factory, store)
    client.cmd("DATA", 354)
    content = message(300 << 10)
    client.send(stuffed(content)[:100_000])
    assert store.first_chunk.wait(5)
    client.send(stuffed(content)[100_000:])
    client.expect(250)
    assert store.stored() == [content]


def test_an_empty_message_is_streamed_empty(server_factory: Factory, tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    server, client = connect(server_factory, store)
    client.cmd("DATA", 354)
    client.cmd(b".", 250)
    assert store.stored() == [b""] and store.chunks == []


# -- refused part-way, or failed: nothing stored ------------------------------------


def test_size_limit_refuses_mid_stream_and_stores_nothing(server_factory: Factory, tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    server = server_factory(store, limits=Limits(message_size=1 << 20))
    client = server.raw()
    begin(client)
    client.cmd("DATA", 354)
    wire = stuffed(message(3 << 20))
    client.send(wire[: 2 << 20])
    # Aborted while the client is still sending: not at the end of the message.
    # The session counts the abort before its file is removed: wait for both.
    assert wait_for(lambda: store.aborted == 1 and store.leftovers() == [])
    assert store.leftovers() == []
    client.send(wire[2 << 20:])
    client.expect(552, "5.3.4")
    assert store.stored() == [] and store.leftovers() == []
    assert wait_for(lambda: store.resets == 1)  # the refused transaction was reset
    # The session goes on.
    client.cmd("MAIL FROM:<a@example.com>", 250)
    client.cmd("RCPT TO:<b@example.com>", 250)
    client.cmd("DATA", 354)
    client.cmd(stuffed(b"small\r\n")[:-2], 250)
    assert store.stored() == [b"small\r\n"]


def test_bare_line_ending_refuses_mid_stream(server_factory: Factory, tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    server, client = connect(server_factory, store)
    client.cmd("DATA", 354)
    client.send(message(200 << 10) + b"a bare\nLF, and the message goes on\r\n")
    assert wait_for(lambda: store.aborted == 1)
    client.send(message(200 << 10) + b".\r\n")
    client.expect(550, "5.5.2")
    assert store.stored() == [] and store.leftovers() == []


def test_line_too_long_in_a_bdat_chunk_refuses_mid_stream(server_factory: Factory, tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    server, client = connect(server_factory, store)
    bdat(client, message(100 << 10))
    client.expect(250)
    long_line = b"x" * 5000 + b"\r\n"
    bdat(client, long_line, last=True, size=len(long_line) + 100_000)
    assert wait_for(lambda: store.aborted == 1)
    client.send(b"y" * 100_000)
    client.expect(550, "5.6.0")
    assert store.stored() == [] and store.leftovers() == []


def test_backend_failure_mid_stream_leaves_no_partial_file(server_factory: Factory, tmp_path: Path) -> None:
    store = FileStore(tmp_path, fail_after=500_000)
    server, client = connect(server_factory, store)
    client.cmd("DATA", 354)
    client.send(stuffed(message(2 << 20)))
    client.expect(451, "4.3.0")
    assert store.failed == 1 and store.stored() == [] and store.leftovers() == []
    store.fail_after = None
    client.cmd("MAIL FROM:<a@example.com>", 250)  # the session goes on
    client.cmd("RCPT TO:<b@example.com>", 250)
    client.cmd("DATA", 354)
    client.send(stuffed(message(600 << 10)))
    client.expect(250)
    assert store.stored() == [message(600 << 10)]


def test_backend_refusal_mid_stream_is_the_reply(server_factory: Factory, tmp_path: Path) -> None:
    class Refusing(FileSession):
        async def data_stream(self, envelope: Envelope, content: MessageContent) -> None:
            async for chunk in content:
                if b"VIRUS" in chunk:
                    raise SMTPError(554, "5.7.1", "Infected")

    class Backend:
        async def new_session(self, info: SessionInfo) -> FileSession:
            return Refusing(FileStore(tmp_path), info)

    server = server_factory(Backend())
    client = server.raw()
    begin(client)
    client.cmd("DATA", 354)
    client.send(stuffed(message(100 << 10) + b"VIRUS\r\n" + message(500 << 10)))
    client.expect(554, "5.7.1")
    client.cmd("NOOP", 250)


def test_rset_between_bdat_chunks_aborts_the_stream(server_factory: Factory, tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    server, client = connect(server_factory, store)
    bdat(client, message(50 << 10))
    client.expect(250)
    client.cmd("RSET", 250)
    assert store.aborted == 1 and store.resets == 1  # dropped before the 250 to RSET
    assert store.stored() == [] and store.leftovers() == []


def test_client_gone_mid_data_aborts_the_stream(server_factory: Factory, tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    server, client = connect(server_factory, store)
    client.cmd("DATA", 354)
    client.send(message(300 << 10))
    assert store.first_chunk.wait(5)
    client.close()
    assert wait_for(lambda: store.aborted == 1)
    assert wait_for(lambda: server.connections == 0)
    assert store.stored() == [] and store.leftovers() == []


def test_a_session_returning_before_the_end_is_a_backend_error(server_factory: Factory, tmp_path: Path) -> None:
    store = FileStore(tmp_path, stop_early=True)
    server, client = connect(server_factory, store)
    client.cmd("DATA", 354)
    client.send(stuffed(message(1 << 20)))
    client.expect(451, "4.3.0")  # a message read in part is not accepted
    client.cmd("NOOP", 250)


# -- flow control ---------------------------------------------------------------------


def test_a_slow_session_pauses_reading(server_factory: Factory, tmp_path: Path) -> None:
    """A session that stops reading holds the client back: at most
    ``receive_buffer`` octets wait for it (plus one read of the core's), the
    client's sends block, and once it reads again the message arrives whole."""
    receive_buffer = 256 << 10
    store = FileStore(tmp_path)
    server = server_factory(store, limits=Limits(receive_buffer=receive_buffer, message_size=0))
    store.gate.clear()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 << 10)
    sock.settimeout(10)
    sock.connect(server.address)
    client = RawClient(sock)
    client.expect(220)
    begin(client)
    client.cmd("DATA", 354)
    content = message(48 << 20, dots=False)
    wire = stuffed(content)
    sock.setblocking(False)
    sent = 0
    stalled_since = time.monotonic()
    deadline = time.monotonic() + 20
    while sent < len(wire) and time.monotonic() < deadline:
        try:
            sent += sock.send(wire[sent:sent + (1 << 20)])
            stalled_since = time.monotonic()
        except BlockingIOError:
            if time.monotonic() - stalled_since > 0.5:
                break  # the server stopped reading
            time.sleep(0.005)
    assert sent < len(wire) // 2, f"the server kept reading: {sent} octets taken"
    assert store.buffered and max(store.buffered) <= 2 * receive_buffer + (64 << 10)
    # The session reads again: everything arrives.
    store.gate.set()
    sock.setblocking(True)
    sock.sendall(wire[sent:])
    client.expect(250)
    assert sha(store.stored()[0]) == sha(content)


# -- LMTP ---------------------------------------------------------------------------------


def test_lmtp_deliver_stream_answers_per_recipient(server_factory: Factory, tmp_path: Path) -> None:
    store = FileStore(tmp_path, per_recipient=True)
    server, client = connect(server_factory, store, ["a@example.com", "full@example.com", "c@example.com"], lmtp=True)
    content = message(400 << 10)
    client.cmd("DATA", 354)
    client.send(stuffed(content))
    assert [client.reply().code for _ in range(3)] == [250, 452, 250]
    client.cmd("MAIL FROM:<a@example.com>", 250)
    client.cmd("RCPT TO:<full@example.com>", 250)
    client.cmd("RCPT TO:<d@example.com>", 250)
    bdat(client, content, last=True)
    assert [client.reply().code for _ in range(2)] == [452, 250]
    assert store.stored() == [content, content]


def test_lmtp_data_stream_gives_every_recipient_its_answer(server_factory: Factory, tmp_path: Path) -> None:
    store = FileStore(tmp_path, fail_after=1000)
    server, client = connect(server_factory, store, ["a@example.com", "b@example.com"], lmtp=True)
    client.cmd("DATA", 354)
    client.send(stuffed(message(20 << 10)))
    assert [client.reply().code for _ in range(2)] == [451, 451]
    assert store.leftovers() == []


@pytest.mark.parametrize("chunking", [False, True], ids=["data", "bdat"])
def test_lmtp_refused_mid_stream_is_refused_per_recipient(server_factory: Factory, tmp_path: Path,
                                                          chunking: bool) -> None:
    store = FileStore(tmp_path, per_recipient=True)
    server = server_factory(store, lmtp=True, limits=Limits(message_size=512 << 10))
    client = server.raw()
    begin(client, ["a@example.com", "b@example.com"], verb="LHLO")
    content = message(2 << 20)
    if chunking:
        bdat(client, content[: 300 << 10])
        client.expect(250)
        bdat(client, content[300 << 10:], last=True)
    else:
        client.cmd("DATA", 354)
        client.send(stuffed(content))
    assert [client.reply().code for _ in range(2)] == [552, 552]
    assert store.stored() == [] and store.leftovers() == []
    assert store.aborted == (1 if chunking else 1)


# -- the server stopping --------------------------------------------------------------------


@pytest.mark.parametrize("phase", ["data", "bdat-between-chunks", "slow-session"])
def test_stopping_mid_stream_stores_nothing(server_factory: Factory, tmp_path: Path, phase: str) -> None:
    """Past the grace, the client hears 421 and the session's message is
    dropped (aborted, or its task cancelled when it is not reading)."""
    store = FileStore(tmp_path)
    server, client = connect(server_factory, store)
    content = message(200 << 10)
    if phase == "bdat-between-chunks":
        bdat(client, content)
        client.expect(250)
    else:
        if phase == "slow-session":
            store.gate.clear()
        client.cmd("DATA", 354)
        client.send(content)
    assert store.first_chunk.wait(5)
    server.stop(grace=0.3)
    assert client.reply().code == 421
    assert store.aborted + store.failed == 1
    assert store.stored() == [] and store.leftovers() == []


def test_client_gone_while_a_slow_session_lags(server_factory: Factory, tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    server = server_factory(store, limits=Limits(receive_buffer=128 << 10, message_size=0))
    store.gate.clear()
    client = server.raw()
    begin(client)
    client.cmd("DATA", 354)
    client.sock.setblocking(False)
    wire = message(8 << 20)
    sent = 0
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and sent < len(wire):
        try:
            sent += client.sock.send(wire[sent:sent + (1 << 20)])
        except BlockingIOError:
            if store.buffered:
                break  # the session holds the connection back
            time.sleep(0.01)
    assert store.first_chunk.wait(5)
    client.close()
    # Reading is paused for the session: the close is seen once it catches up.
    store.gate.set()
    assert wait_for(lambda: store.aborted == 1)
    assert wait_for(lambda: server.connections == 0)
    assert store.stored() == [] and store.leftovers() == []

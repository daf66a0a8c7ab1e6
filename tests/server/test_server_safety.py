"""The server's safety promises, proved with raw bytes over real sockets.

Smuggling: only ``<CRLF>.<CRLF>`` ends DATA, so no bare-CR/LF look-alike can
end a message early and turn the rest of the content into commands; a BDAT
chunk is counted, never parsed. Bare line endings are refused by default (the
message dropped, the session going on) or normalised when configured.
Backends: error text with CR/LF becomes a proper multi-line reply, never a
forged one; an exception becomes ``451 4.3.0`` and the session goes on; one
bad client never disturbs another. Completeness: a message reaches the backend
only whole; a connection dropped mid-DATA or mid-BDAT delivers nothing.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable

import pytest

from mailwire.errors import SMTPError
from mailwire.protocol.data import BareLineEndings
from mailwire.reply import Reply as WireReply

from .conftest import RawClient, RecordingBackend, ServerThread, wait_for

Factory = Callable[..., ServerThread]

# Look-alikes of the end of data that must never end it (RFC 5321 4.1.1.4,
# 2.3.8; the "SMTP smuggling" family).
FAKE_TERMINATORS = [
    b"\n.\n",
    b"\n.\r\n",
    b"\r\n.\n",
    b"\r.\r",
    b"\r\n.\r",
    b"\r\r\n.\r\r\n",
    b"\r.\r\n",
    b"\n.\r",
]
SMUGGLED = b"RSET\r\nMAIL FROM:<evil@attacker.test>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\n"


def open_data(client: RawClient, rcpt: str = "rcpt@example.com") -> None:
    client.send(f"MAIL FROM:<sender@example.com>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n".encode())
    client.expect(250)
    client.expect(250)
    client.expect(354)


def send_message(client: RawClient, body: bytes = b"Subject: ok\r\n\r\nfine\r\n") -> None:
    open_data(client)
    client.send(body + b".\r\n")
    client.expect(250, "2.0.0")


# -- DATA: only <CRLF>.<CRLF> ends it -------------------------------------------------


@pytest.mark.parametrize("fake", FAKE_TERMINATORS, ids=repr)
@pytest.mark.parametrize("policy", [BareLineEndings.REFUSE, BareLineEndings.NORMALIZE], ids=str)
def test_fake_terminator_never_ends_data(server_factory: Factory, fake: bytes, policy: BareLineEndings) -> None:
    server = server_factory(bare_line_endings=policy)
    client = server.raw()
    client.ehlo()
    open_data(client)
    client.send(b"Subject: smuggle\r\n\r\nbefore" + fake + SMUGGLED + b"after\r\n")
    # Nothing answers the look-alike or the "commands" after it, and nothing
    # reaches the backend until the real terminator.
    assert client.nothing_more(0.3) == b""
    assert server.backend.messages == []
    assert server.backend.calls("mail") == [("sender@example.com", server.backend.calls("mail")[0][1])]
    client.send(b".\r\n")
    reply = client.reply()
    assert client.nothing_more(0.2) == b"", "a second reply: the smuggled commands ran"
    if policy is BareLineEndings.REFUSE:
        assert (reply.code, reply.enhanced) == (550, "5.5.2")
        assert server.backend.messages == []
    else:
        assert reply.code == 250
        assert server.backend.wait_messages(1)
        (message,) = server.backend.messages
        assert b"RSET" in message.content and b"evil@attacker.test" in message.content
        assert message.rcpt_to == ["rcpt@example.com"]
        assert b"\r" not in message.content.replace(b"\r\n", b"")
        assert b"\n" not in message.content.replace(b"\r\n", b"")
    # One MAIL ever reached the backend: the smuggled one never did.
    assert len(server.backend.calls("mail")) == 1
    client.cmd("NOOP", 250)
    client.cmd("QUIT", 221)


def test_fake_terminator_split_across_writes(server_factory: Factory) -> None:
    """The look-alike arrives one octet a write: still no end of data."""
    server = server_factory(bare_line_endings=BareLineEndings.NORMALIZE)
    client = server.raw()
    client.ehlo()
    client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    open_data(client)
    for octet in b"x\r\n.\nQUIT\r\n\r.\r\r\n.\r\r\nNOOP\r\n":
        client.send(bytes([octet]))
    assert client.nothing_more(0.3) == b""
    for octet in b"\r\n.\r\n":
        client.send(bytes([octet]))
    client.expect(250)
    assert server.backend.wait_messages(1)
    assert b"QUIT" in server.backend.messages[0].content
    client.cmd("NOOP", 250)


def test_real_terminator_then_pipelined_commands(recording_server: ServerThread) -> None:
    """After the real end of data, pipelined octets are commands again."""
    client = recording_server.raw()
    client.ehlo()
    open_data(client)
    client.send(b"Subject: a\r\n\r\n..dot\r\n.\r\nMAIL FROM:<b@example.com>\r\nRCPT TO:<c@example.com>\r\nDATA\r\n")
    client.expect(250, "2.0.0")
    client.expect(250)
    client.expect(250)
    client.expect(354)
    client.send(b"second\r\n.\r\n")
    client.expect(250)
    assert recording_server.backend.wait_messages(2)
    first, second = recording_server.backend.messages
    assert first.content == b"Subject: a\r\n\r\n.dot\r\n"  # dot-unstuffed
    assert second.content == b"second\r\n"


@pytest.mark.parametrize("bare", [b"bare LF\nhere", b"bare CR\rhere", b"trailing CR\r", b"\nleading LF"], ids=repr)
def test_bare_line_endings_refused_by_default(recording_server: ServerThread, bare: bytes) -> None:
    client = recording_server.raw()
    client.ehlo()
    open_data(client)
    client.send(b"Subject: bare\r\n\r\n" + bare + b"\r\nmore\r\n.\r\n")
    client.expect(550, "5.5.2")
    # Dropped: the backend never saw it, and was told the transaction ended.
    assert recording_server.backend.messages == []
    assert wait_for(lambda: recording_server.backend.calls("reset") != [])
    # The session goes on: the next message on the same connection is accepted.
    send_message(client)
    assert recording_server.backend.wait_messages(1)
    assert recording_server.backend.messages[0].content == b"Subject: ok\r\n\r\nfine\r\n"
    client.cmd("QUIT", 221)


def test_bare_line_endings_normalised_when_configured(server_factory: Factory) -> None:
    server = server_factory(bare_line_endings=BareLineEndings.NORMALIZE)
    client = server.raw()
    client.ehlo()
    open_data(client)
    client.send(b"Subject: bare\n\nline one\rline two\nline three\r\n.\r\n")
    client.expect(250)
    assert server.backend.wait_messages(1)
    assert server.backend.messages[0].content == b"Subject: bare\r\n\r\nline one\r\nline two\r\nline three\r\n"


# -- BDAT: chunk octets are never commands -------------------------------------------------


def test_bdat_chunk_octets_are_never_parsed(recording_server: ServerThread) -> None:
    client = recording_server.raw()
    client.ehlo()
    chunk1 = b"QUIT\r\n.\r\nRSET\r\n"
    chunk2 = b"MAIL FROM:<evil@attacker.test>\r\n.\r\nQUIT\r\n"
    client.send(b"MAIL FROM:<sender@example.com>\r\nRCPT TO:<rcpt@example.com>\r\n")
    client.send(b"BDAT %d\r\n" % len(chunk1) + chunk1 + b"BDAT %d LAST\r\n" % len(chunk2) + chunk2)
    client.expect(250)
    client.expect(250)
    client.expect(250)  # first chunk
    client.expect(250)  # last chunk: the message
    assert client.nothing_more(0.2) == b""
    assert recording_server.backend.wait_messages(1)
    assert recording_server.backend.messages[0].content == chunk1 + chunk2
    assert len(recording_server.backend.calls("mail")) == 1
    client.cmd("NOOP", 250)  # the QUITs inside the chunks closed nothing
    client.cmd("QUIT", 221)


def test_refused_bdat_still_swallows_its_octets(recording_server: ServerThread) -> None:
    """RFC 3030 2: a BDAT out of sequence is refused, its octets skipped unread."""
    client = recording_server.raw()
    client.ehlo()
    chunk = b"MAIL FROM:<evil@attacker.test>\r\n"
    client.send(b"BDAT %d LAST\r\n" % len(chunk) + chunk + b"NOOP\r\n")
    client.expect(503)
    client.expect(250)  # the NOOP after the chunk
    assert recording_server.backend.calls("mail") == []


# -- backend replies and errors -----------------------------------------------------------------


def _assert_well_formed(data: bytes, code: bytes) -> None:
    """Every line of ``data`` is one reply of ``code``, continued with '-'."""
    assert data.endswith(b"\r\n")
    lines = data[:-2].split(b"\r\n")
    for i, line in enumerate(lines):
        assert line[:3] == code, f"forged line {line!r} in {data!r}"
        assert line[3:4] == (b" " if i == len(lines) - 1 else b"-"), f"bad continuation in {data!r}"
        assert b"\r" not in line and b"\n" not in line


def test_backend_error_text_with_crlf_is_one_multiline_reply(server_factory: Factory) -> None:
    def refuse(address: str, options: object) -> None:
        raise SMTPError(550, "5.1.1", "No such user\r\n250 2.1.5 Recipient OK\rsneaky\nend")

    server = server_factory(RecordingBackend(on_rcpt=refuse))
    client = server.raw()
    client.ehlo()
    client.cmd("MAIL FROM:<a@example.com>", 250)
    client.send(b"RCPT TO:<x@example.com>\r\nNOOP\r\n")
    reply = client.reply()
    assert reply.code == 550 and len(reply.lines) == 4
    _assert_well_formed(client.last_raw, b"550")
    assert reply.lines[0] == "5.1.1 No such user"
    client.expect(250)  # the NOOP: the next reply is the real one


def test_backend_reply_object_with_crlf_cannot_forge(server_factory: Factory) -> None:
    def refuse(address: str, options: object) -> None:
        raise SMTPError(WireReply(550, ("No such user\r\n250 2.1.5 Recipient OK",)))

    server = server_factory(RecordingBackend(on_rcpt=refuse))
    client = server.raw()
    client.ehlo()
    client.cmd("MAIL FROM:<a@example.com>", 250)
    client.send(b"RCPT TO:<x@example.com>\r\n")
    reply = client.reply()
    assert reply.code == 550
    _assert_well_formed(client.last_raw, b"550")
    client.send(b"NOOP\r\n")
    client.expect(250)
    assert client.nothing_more(0.1) == b""


@pytest.mark.parametrize("stage", ["mail", "rcpt", "data"])
def test_backend_exception_is_451_and_session_goes_on(
    server_factory: Factory, caplog: pytest.LogCaptureFixture, stage: str
) -> None:
    calls = []

    def fail_once(*args: object) -> None:
        calls.append(args)
        if len(calls) == 1:
            raise RuntimeError("backend exploded")

    backend = RecordingBackend(**{f"on_{stage}": fail_once})
    server = server_factory(backend)
    caplog.set_level(logging.ERROR, logger="mailwire")
    client = server.raw()
    client.ehlo()
    client.send(b"MAIL FROM:<a@example.com>\r\n")
    if stage == "mail":
        client.expect(451, "4.3.0")
        client.cmd("MAIL FROM:<a@example.com>", 250)
    else:
        client.expect(250)
    client.send(b"RCPT TO:<b@example.com>\r\n")
    if stage == "rcpt":
        client.expect(451, "4.3.0")
        client.cmd("RCPT TO:<b@example.com>", 250)
    else:
        client.expect(250)
    client.cmd("DATA", 354)
    client.send(b"hello\r\n.\r\n")
    if stage == "data":
        client.expect(451, "4.3.0")
        send_message(client)
    else:
        client.expect(250)
    client.cmd("QUIT", 221)
    assert backend.wait_messages(1)
    assert len(backend.messages) == 1
    assert any("backend exploded" in (r.exc_text or "") or r.exc_info for r in caplog.records)


def test_backend_new_session_exception_closes_with_a_reply(server_factory: Factory) -> None:
    def explode(info: object) -> None:
        raise RuntimeError("no session for you")

    server = server_factory(RecordingBackend(on_new_session=explode))
    client = server.raw(greeting=False)
    assert client.closed(2.0), "no reply and no close after new_session raised"
    assert bytes(client.received)[:1] == b"4"


def test_new_session_smtp_error_refuses_the_connection(server_factory: Factory) -> None:
    def refuse(info: object) -> None:
        raise SMTPError(554, "5.7.1", "Not from you")

    server = server_factory(RecordingBackend(on_new_session=refuse))
    client = server.raw(greeting=False)
    client.expect(554, "5.7.1")
    assert client.closed()


def test_one_bad_client_does_not_disturb_others(server_factory: Factory) -> None:
    def on_data(envelope: object) -> None:
        if b"explode" in envelope.content:  # type: ignore[attr-defined]
            raise ZeroDivisionError("backend bug")

    server = server_factory(RecordingBackend(on_data=on_data))
    good = server.raw()
    good.ehlo()
    open_data(good)
    good.send(b"Subject: part one\r\n")

    # A client whose message makes the backend raise.
    bad = server.raw()
    bad.ehlo()
    open_data(bad)
    bad.send(b"explode\r\n.\r\n")
    bad.expect(451, "4.3.0")
    # A client sending garbage, one resetting mid-command, one hanging up mid-DATA.
    garbage = server.raw()
    garbage.send(bytes(range(256)) * 4 + b"\r\n")
    rst = server.raw()
    rst.send(b"MAIL FROM:<half")
    rst.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    rst.close()
    gone = server.raw()
    gone.ehlo()
    open_data(gone)
    gone.send(b"half a message")
    gone.close()
    garbage.close()

    good.send(b"\r\npart two\r\n.\r\n")
    good.expect(250)
    assert server.backend.wait_messages(1)
    assert [m.content for m in server.backend.messages] == [b"Subject: part one\r\n\r\npart two\r\n"]
    # And the server still takes new connections.
    late = server.raw()
    late.ehlo()
    send_message(late)
    late.cmd("QUIT", 221)
    assert server.backend.wait_messages(2)


# -- a message is handed over only when complete --------------------------------------------------


def test_dropped_mid_data_delivers_nothing(recording_server: ServerThread) -> None:
    client = recording_server.raw()
    client.ehlo()
    open_data(client)
    client.send(b"Subject: partial\r\n\r\n" + b"line\r\n" * 1000)
    client.close()
    assert recording_server.backend.wait_closed(1)
    assert recording_server.backend.messages == []
    assert recording_server.backend.calls("data") == []


def test_half_closed_mid_data_delivers_nothing(recording_server: ServerThread) -> None:
    """EOF (shutdown of the write side) with the terminator missing: nothing delivered."""
    client = recording_server.raw()
    client.ehlo()
    open_data(client)
    client.send(b"Subject: partial\r\n\r\nbody\r\n.")  # one octet short of the end
    client.sock.shutdown(socket.SHUT_WR)
    assert client.closed()
    assert recording_server.backend.wait_closed(1)
    assert recording_server.backend.messages == []


def test_half_close_after_a_pipelined_session_still_gets_its_replies(server_factory: Factory) -> None:
    """``printf 'EHLO..MAIL..RCPT..DATA..msg..QUIT' | nc``: the client writes the
    whole session, shuts its write side and reads. A backend step that takes a
    moment (here 0.1 s in data()) puts the EOF before the replies."""

    async def slow(envelope: object) -> None:
        await asyncio.sleep(0.1)

    server = server_factory(RecordingBackend(on_data=slow))
    client = server.raw()
    client.send(b"EHLO client.test\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n"
                b"DATA\r\nhello\r\n.\r\nQUIT\r\n")
    client.sock.shutdown(socket.SHUT_WR)
    assert client.closed()
    assert server.backend.wait_messages(1)  # delivered...
    received = bytes(client.received)
    assert b"250 2.0.0 Message accepted" in received, f"...but the client was told: {received!r}"
    assert received.endswith(b"221 2.0.0 Bye\r\n")


@pytest.mark.parametrize("last_chunk_complete", [False, True])
def test_dropped_mid_bdat_delivers_nothing(recording_server: ServerThread, last_chunk_complete: bool) -> None:
    client = recording_server.raw()
    client.ehlo()
    client.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n")
    client.expect(250)
    client.expect(250)
    client.send(b"BDAT 10\r\n0123456789")
    client.expect(250)
    if last_chunk_complete:
        client.send(b"BDAT 100\r\n" + b"x" * 100)  # complete, but not LAST
        client.expect(250)
    else:
        client.send(b"BDAT 100 LAST\r\n" + b"x" * 99)  # one octet short
    client.close()
    assert recording_server.backend.wait_closed(1)
    assert recording_server.backend.messages == []
    assert recording_server.backend.calls("data") == []


def test_ipv6_loopback(server_factory: Factory) -> None:
    server = server_factory(host="::1")
    client = RawClient.connect(("::1", server.port))
    client.expect(220)
    client.ehlo()
    send_message(client)
    client.cmd("QUIT", 221)
    assert server.backend.wait_messages(1)
    peer = server.backend.messages[0].session.peer  # type: ignore[union-attr]
    assert isinstance(peer, tuple) and peer[0] == "::1"


# -- stopping ---------------------------------------------------------------------------------------


def test_stop_lets_a_message_finish_and_says_421_to_idle_clients(recording_server: ServerThread) -> None:
    address = recording_server.address
    idle = recording_server.raw()
    idle.ehlo()
    busy = recording_server.raw()
    busy.ehlo()
    open_data(busy)
    busy.send(b"Subject: during shutdown\r\n\r\npart one")
    stopper = threading.Thread(target=recording_server.stop, kwargs={"grace": 3.0})
    stopper.start()
    idle.expect(421, "4.3.2")
    assert idle.closed()
    busy.send(b", part two\r\n.\r\n")
    busy.expect(250)  # the message in progress is finished...
    busy.expect(421, "4.3.2")  # ...and then the connection is closed
    assert busy.closed()
    stopper.join(10)
    assert not stopper.is_alive()
    assert [m.content for m in recording_server.backend.messages] == [b"Subject: during shutdown\r\n\r\npart one, part two\r\n"]
    with pytest.raises(OSError):
        socket.create_connection(address, timeout=1).close()


def test_stop_after_the_grace_delivers_nothing_half_made(recording_server: ServerThread) -> None:
    busy = recording_server.raw()
    busy.ehlo()
    open_data(busy)
    busy.send(b"Subject: never finished\r\n\r\nhalf")
    started = time.monotonic()
    recording_server.stop(grace=0.3)
    assert time.monotonic() - started < 3.0
    assert busy.closed()
    assert recording_server.backend.messages == []
    assert recording_server.backend.wait_closed(1)

"""A hostile server: every misbehaviour gives a clear exception, nothing hangs.

Each scripted server here breaks the protocol in one way: replies that never
end, garbage codes, bytes smuggled after STARTTLS's 220, silence, a vanishing
peer. The client must raise a specific exception with a message that says what
happened, close its socket, and finish well inside the test's time limit.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable

import pytest

from mailwire import (
    AuthenticationError, ConnectionClosed, RemoteProtocolError, SMTPClient, SMTPError,
)

from helpers.minismtp import MiniSMTP
from helpers.scripted import Peer, ScriptedServer

Start = Callable[..., ScriptedServer]
pytestmark = pytest.mark.timeout(15)


def _client(server: ScriptedServer, **options: object) -> SMTPClient:
    options.setdefault("timeout", 2)
    return SMTPClient(*server.address, tls="none", connect=False, **options)  # type: ignore[arg-type]


def _greeted(peer: Peer, *keywords: str) -> None:
    peer.reply("220 hostile ESMTP")
    assert peer.recv_line().startswith(b"EHLO ")
    lines = ["hostile", *keywords]
    peer.reply(*(f"250{'-' if i < len(lines) - 1 else ' '}{k}" for i, k in enumerate(lines)))


def _send_quietly(peer: Peer, data: bytes) -> None:
    """Send, ignoring a client that already hung up on us."""
    try:
        peer.send(data)
    except (BrokenPipeError, ConnectionResetError):
        pass


def _expect_failure(
    scripted: Start, script: Callable[[Peer], None], error: type[BaseException], match: str, **options: object
) -> tuple[SMTPClient, ScriptedServer, BaseException]:
    server = scripted(script, strict=False)
    client = _client(server, **options)
    started = time.monotonic()
    with pytest.raises(error, match=match) as caught:
        client.connect()
    assert time.monotonic() - started < 5
    assert not client.connected
    return client, server, caught.value


# -- malformed replies ----------------------------------------------------------


@pytest.mark.parametrize("where", ["greeting", "ehlo"])
def test_overlong_reply_line(scripted: Start, where: str) -> None:
    def script(peer: Peer) -> None:
        if where == "ehlo":
            peer.reply("220 hostile ESMTP")
            peer.recv_line()
        _send_quietly(peer, b"250 " + b"x" * 8192 + b"\r\n")
        peer.wait_closed()

    _expect_failure(scripted, script, RemoteProtocolError, "reply line longer than 2048 octets")


def test_overlong_line_without_crlf_is_refused_before_it_ends(scripted: Start) -> None:
    def script(peer: Peer) -> None:
        _send_quietly(peer, b"220 " + b"x" * 8192)  # no CRLF, ever
        peer.wait_closed()

    _expect_failure(scripted, script, RemoteProtocolError, "longer than 2048 octets")


def test_endless_continuation_lines(scripted: Start) -> None:
    def script(peer: Peer) -> None:
        peer.reply("220 hostile ESMTP")
        peer.recv_line()
        line = b"250-" + b"k" * 60 + b"\r\n"
        for _ in range(10_000):  # at most 640 KB: the client must give up long before
            try:
                peer.send(line * 16)
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                return

    _expect_failure(scripted, script, RemoteProtocolError, "reply longer than 65536 octets")


@pytest.mark.parametrize("garbage", [b"abc hello", b"999 x", b"1xx", b"099 low", b"2500 x", b"25", b"250x", b"", b"-250 x"])
def test_garbage_reply_codes(scripted: Start, garbage: bytes) -> None:
    def script(peer: Peer) -> None:
        _send_quietly(peer, garbage + b"\r\n")
        peer.wait_closed()

    _, _, err = _expect_failure(scripted, script, RemoteProtocolError, "malformed reply line")
    assert repr(garbage)[1:] in str(err) or garbage == b""


def test_garbage_in_the_middle_of_a_session(scripted: Start) -> None:
    def script(peer: Peer) -> None:
        _greeted(peer, "PIPELINING")
        peer.recv_line()  # NOOP
        _send_quietly(peer, b"hello there\r\n")
        peer.wait_closed()

    server = scripted(script, strict=False)
    client = SMTPClient(*server.address, tls="none", timeout=2)
    with pytest.raises(RemoteProtocolError, match="malformed reply line: b'hello there'"):
        client.noop()
    assert not client.connected


def test_inconsistent_codes_in_a_multiline_reply(scripted: Start) -> None:
    def script(peer: Peer) -> None:
        peer.reply("220 hostile ESMTP")
        peer.recv_line()
        _send_quietly(peer, b"250-hostile\r\n251-PIPELINING\r\n250 SIZE 10\r\n")
        peer.wait_closed()

    _expect_failure(scripted, script, RemoteProtocolError, "reply lines disagree on the code: 250 then 251")


# -- STARTTLS injection -------------------------------------------------------------


def _tls_script(
    tls: ssl.SSLContext, injected: bytes, separate: bool, ehlo_after: list[bytes]
) -> Callable[[Peer], None]:
    def script(peer: Peer) -> None:
        _greeted(peer, "PIPELINING", "STARTTLS")
        assert peer.recv_line() == b"STARTTLS\r\n"
        if separate:
            peer.send(b"220 2.0.0 go\r\n")
            time.sleep(0.1)
            peer.send(injected)
        else:
            peer.send(b"220 2.0.0 go\r\n" + injected)  # one packet
        try:
            peer.starttls(tls)
        except (ssl.SSLError, OSError):
            return  # the client refused the handshake: fine
        line = peer.recv_line()
        ehlo_after.append(line)
        if not line:
            return
        peer.reply("250-real-after-tls", "250 PIPELINING")
        while (line := peer.recv_line()) not in (b"", b"QUIT\r\n"):
            peer.reply("250 2.0.0 ok")
        if line:
            peer.reply("221 bye")

    return script


@pytest.mark.parametrize("separate", [False, True], ids=["same-packet", "separate-packet"])
def test_bytes_injected_after_starttls_are_never_replies(
    scripted: Start, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture, separate: bool,
) -> None:
    injected = b"250-injected\r\n250 AUTH PLAIN\r\n"
    ehlo_after: list[bytes] = []
    server = scripted(_tls_script(server_tls, injected, separate, ehlo_after), strict=False)
    client = SMTPClient(*server.address, tls="starttls", ssl_context=client_tls, timeout=2, connect=False)
    caplog.set_level(logging.WARNING, logger="mailwire.client")
    try:
        client.connect()
    except (ssl.SSLError, ConnectionError) as err:
        # The injected bytes reached the handshake and broke it: also safe.
        assert not client.connected
        assert not isinstance(err, RemoteProtocolError)
        return
    # The handshake went through: the injected bytes were dropped, never parsed.
    assert client.is_tls
    assert client._transport is not None
    assert client._transport.core.discarded_after_starttls == len(injected)
    assert f"discarded {len(injected)} bytes" in caplog.text
    assert client.capabilities.greeting == "real-after-tls"
    assert "injected" not in client.capabilities.greeting and not client.capabilities.auth_mechanisms
    assert ehlo_after and ehlo_after[0].startswith(b"EHLO ")
    # Later replies pair with the right commands.
    assert client.noop().text == "ok"
    client.quit()


# -- vanishing and silent peers ------------------------------------------------------


def test_disconnect_before_greeting(scripted: Start) -> None:
    _expect_failure(scripted, lambda peer: None, ConnectionClosed, "the server closed the connection")


@pytest.mark.parametrize("partial", [b"220-first line\r\n220-second", b"220-first line\r\n", b"220 no end"])
def test_disconnect_mid_reply(scripted: Start, partial: bytes) -> None:
    def script(peer: Peer) -> None:
        peer.send(partial)

    _expect_failure(
        scripted, script, RemoteProtocolError, "server closed the connection in the middle of a reply"
    )


def test_disconnect_mid_ehlo_reply(scripted: Start) -> None:
    def script(peer: Peer) -> None:
        peer.reply("220 hostile ESMTP")
        peer.recv_line()
        peer.send(b"250-hostile\r\n250-PIPELI")

    _expect_failure(scripted, script, RemoteProtocolError, "in the middle of a reply")


def test_554_greeting(scripted: Start) -> None:
    def script(peer: Peer) -> None:
        peer.reply("554 5.7.1 No SMTP service for you")
        peer.wait_closed()

    _, server, err = _expect_failure(scripted, script, SMTPError, "554 5.7.1 No SMTP service for you")
    assert isinstance(err, SMTPError) and err.code == 554 and str(err.enhanced) == "5.7.1"
    server.close()
    assert b"EHLO" not in server.received and b"MAIL" not in server.received
    # RFC 5321 3.1: the client still says QUIT after a 554 greeting.
    assert server.received.endswith(b"QUIT\r\n")


def test_server_that_never_answers(scripted: Start) -> None:
    server = scripted(lambda peer: peer.wait_closed(), strict=False)
    client = _client(server, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        client.connect()
    assert 0.4 < time.monotonic() - started < 2
    assert not client.connected


def test_server_that_stops_answering_mid_transaction(scripted: Start) -> None:
    def script(peer: Peer) -> None:
        _greeted(peer, "PIPELINING")
        peer.wait_closed()  # MAIL, RCPT and DATA arrive; no reply ever

    server = scripted(script, strict=False)
    client = SMTPClient(*server.address, tls="none", timeout=0.5)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        client.send(b"x\r\n", "s@example.org", ["r@example.net"])
    assert time.monotonic() - started < 2
    assert not client.connected
    with pytest.raises(ConnectionClosed, match="not connected"):
        client.noop()


@pytest.mark.parametrize("pipelining", [True, False])
def test_421_mid_transaction(scripted: Start, pipelining: bool) -> None:
    def script(peer: Peer) -> None:
        _greeted(peer, *(["PIPELINING"] if pipelining else []))
        assert peer.recv_line().startswith(b"MAIL ")
        peer.reply("250 2.1.0 ok")
        assert peer.recv_line().startswith(b"RCPT ")
        peer.reply("421 4.3.2 Service shutting down")
        peer.wait_closed(1)

    server = scripted(script, strict=False)
    client = SMTPClient(*server.address, tls="none", timeout=2)
    with pytest.raises(SMTPError) as caught:
        client.send(b"x\r\n", "s@example.org", ["r@example.net", "q@example.net"])
    assert caught.value.code == 421 and str(caught.value.enhanced) == "4.3.2"
    assert "Service shutting down" in str(caught.value)
    assert not client.connected
    assert client.quit() is None


# -- AUTH abuse -------------------------------------------------------------------------


def test_endless_auth_challenges(scripted: Start) -> None:
    def script(peer: Peer) -> None:
        _greeted(peer, "AUTH LOGIN")
        for _ in range(100):
            line = peer.recv_line()
            if not line or line == b"*\r\n":
                break
            peer.reply("334 VXNlcm5hbWU6")
        peer.reply("501 5.7.0 cancelled")
        peer.wait_closed(1)

    _expect_failure(
        scripted, script, RemoteProtocolError, "third LOGIN challenge",
        auth=("u", "p"), allow_plaintext_auth=True,
    )


def test_undecodable_auth_challenge(scripted: Start) -> None:
    def script(peer: Peer) -> None:
        _greeted(peer, "AUTH LOGIN")
        peer.recv_line()
        peer.reply("334 !!not base64!!")
        peer.wait_closed(1)

    _expect_failure(
        scripted, script, RemoteProtocolError, "undecodable AUTH challenge",
        auth=("u", "p"), allow_plaintext_auth=True,
    )


def test_auth_success_code_must_be_235(scripted: Start) -> None:
    def script(peer: Peer) -> None:
        _greeted(peer, "AUTH PLAIN")
        peer.recv_line()
        peer.reply("250 2.0.0 sure, whatever")
        peer.wait_closed(1)

    _expect_failure(
        scripted, script, AuthenticationError, "250 2.0.0 sure, whatever", auth=("u", "p"), allow_plaintext_auth=True,
    )


def test_bare_lf_never_ends_a_reply_line(scripted: Start) -> None:
    # Only CRLF ends a line: "250 injected" after a bare LF is never a reply
    # of its own; the client waits for a real line end and times out.
    def script(peer: Peer) -> None:
        _send_quietly(peer, b"220 hi\n250 injected\n")
        peer.wait_closed()

    server = scripted(script, strict=False)
    client = _client(server, timeout=0.5)
    with pytest.raises(TimeoutError):
        client.connect()
    assert client.greeting is None and not client.connected


def test_bare_lf_inside_a_crlf_line_stays_text(scripted: Start) -> None:
    def script(peer: Peer) -> None:
        peer.send(b"220 hi\n250 smuggled\r\n")
        assert peer.recv_line().startswith(b"EHLO ")
        peer.reply("250 hostile")
        assert peer.recv_line() == b"QUIT\r\n"
        peer.reply("221 bye")

    server = scripted(script)
    with SMTPClient(*server.address, tls="none", timeout=2) as client:
        assert client.greeting is not None and client.greeting.code == 220
        assert client.greeting.lines == ("hi\n250 smuggled",)
        assert client.capabilities.greeting == "hostile"


@pytest.mark.parametrize("pipelining", [True, False])
@pytest.mark.parametrize("reply", ["250 2.0.0 ok, I guess", "334 what?"])
def test_data_answered_without_354_is_never_a_delivery(scripted: Start, pipelining: bool, reply: str) -> None:
    # Taking "250" to DATA as success would report a message as delivered
    # although its content was never sent.
    smtp = MiniSMTP(extensions=("PIPELINING",) if pipelining else (), data_reply=reply)
    server = scripted(smtp, strict=False)
    client = SMTPClient(*server.address, tls="none", timeout=2)
    with pytest.raises(RemoteProtocolError, match=f"answered DATA with {reply[:3]} .*, not 354"):
        client.send(b"Subject: x\r\n\r\nbody\r\n", "s@example.org", ["r@example.net"])
    assert not client.connected
    server.close()
    assert smtp.transactions == [] and b"body" not in server.received


@pytest.mark.parametrize("then", ["silence", "hang-up"])
def test_server_that_never_starts_tls(
    scripted: Start, client_tls: ssl.SSLContext, then: str
) -> None:
    def script(peer: Peer) -> None:
        _greeted(peer, "STARTTLS")
        assert peer.recv_line() == b"STARTTLS\r\n"
        peer.reply("220 2.0.0 go ahead")
        if then == "silence":
            peer.wait_closed()

    server = scripted(script, strict=False)
    client = SMTPClient(*server.address, ssl_context=client_tls, timeout=0.5, connect=False)
    started = time.monotonic()
    with pytest.raises((TimeoutError, ssl.SSLError, ConnectionError)) as caught:
        client.connect()
    assert time.monotonic() - started < 2
    assert not client.connected
    if then == "silence":
        assert "timed out" in str(caught.value)

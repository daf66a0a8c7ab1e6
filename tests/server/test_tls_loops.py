"""TLS sessions on asyncio's loop and uvloop's: they start every time and end quietly.

STARTTLS on uvloop used to hang one handshake in two: the client's
ClientHello could reach the connection before ``start_tls`` had put the TLS
layer in its place. Twenty STARTTLS sessions in a row must all complete.

``SMTPConnection.eof_received`` keeps a plain TCP connection open after the
client's half-close (so replies to what it sent before still go out), but
through TLS asyncio's SSL layer closes whatever the protocol answers and logs
``returning true from eof_received() has no effect when using ssl`` if it is
asked to keep it open; ``mailwire serve`` printed that line for every TLS
client. Each test ends TLS sessions both ways a client does — a close_notify
(``unwrap()``) and a bare TCP EOF — and reads until the server has closed its
side, so the server has handled the EOF before anything is checked.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Any

import pytest

from .conftest import RecordingBackend, ServerThread
from .test_cli_serve import TIMEOUT, Serve, cert_files, serve  # noqa: F401 - fixtures

WARNING = "eof_received"
ENDINGS = ("close_notify", "tcp_eof")


def _reply(sock: socket.socket) -> bytes:
    """One whole (possibly multi-line) reply."""
    data = b""
    while True:
        chunk = sock.recv(4096)
        assert chunk, f"closed before a whole reply: {data!r}"
        data += chunk
        last = data.rstrip(b"\r\n").rsplit(b"\r\n", 1)[-1]
        if data.endswith(b"\r\n") and last[3:4] == b" ":
            return data


def _drain(sock: socket.socket) -> None:
    """Read until the server closes (bounded by the socket timeout)."""
    try:
        while sock.recv(4096):
            pass
    except (ssl.SSLError, ConnectionResetError):
        pass


def tls_session(port: int, context: ssl.SSLContext, *, starttls: bool, ending: str) -> None:
    """EHLO through TLS, then end the session the given way and wait for the server's close."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    if starttls:
        assert _reply(sock).startswith(b"220")
        sock.sendall(b"EHLO client.example\r\n")
        assert _reply(sock).startswith(b"250")
        sock.sendall(b"STARTTLS\r\n")
        assert _reply(sock).startswith(b"220")
    tls = context.wrap_socket(sock, server_hostname="localhost")
    try:
        if not starttls:
            assert _reply(tls).startswith(b"220")
        tls.sendall(b"EHLO client.example\r\n")
        assert _reply(tls).startswith(b"250")
        if ending == "close_notify":
            try:
                plain = tls.unwrap()  # our close_notify, and the server's in answer
            except (ssl.SSLError, OSError):
                pass  # closed without one (Python 3.10's SSL layer): handled all the same
            else:
                _drain(plain)
        else:
            tls.shutdown(socket.SHUT_WR)  # a FIN, no close_notify
            _drain(tls)
    finally:
        tls.close()


@pytest.mark.parametrize("starttls", [False, True], ids=["implicit", "starttls"])
def test_serve_prints_no_eof_warning_for_tls_sessions(
    serve: Callable[..., Serve], cert_files: tuple[str, str], client_tls: ssl.SSLContext, starttls: bool
) -> None:
    cert, key = cert_files
    server = serve("--port", "0", "--sink", "-q", "--tls-cert", cert, "--tls-key", key,
                   *([] if starttls else ["--implicit-tls"]))
    for ending in ENDINGS:
        tls_session(server.port, client_tls, starttls=starttls, ending=ending)
    assert server.stop() == 0
    assert WARNING not in server.stderr, server.stderr
    assert server.stderr == ""


def _loops() -> list[Any]:
    loops: list[Any] = [pytest.param(asyncio.new_event_loop, id="asyncio")]
    try:
        import uvloop
    except ImportError:
        loops.append(pytest.param(None, id="uvloop", marks=pytest.mark.skip("uvloop is not installed")))
    else:
        loops.append(pytest.param(uvloop.new_event_loop, id="uvloop"))
    return loops


@pytest.mark.parametrize("loop_factory", _loops())
@pytest.mark.parametrize("starttls", [False, True], ids=["implicit", "starttls"])
def test_framework_tls_sessions_end_quietly_on_each_loop(
    server_factory: Callable[..., ServerThread], server_tls: ssl.SSLContext, client_tls: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture, loop_factory: Callable[[], asyncio.AbstractEventLoop], starttls: bool,
) -> None:
    caplog.set_level(logging.DEBUG, logger="asyncio")
    server = server_factory(tls_context=server_tls, implicit_tls=not starttls, loop_factory=loop_factory)
    for ending in ENDINGS:
        tls_session(server.port, client_tls, starttls=starttls, ending=ending)
    assert server.backend.wait_closed(len(ENDINGS))
    server.stop()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


@pytest.mark.parametrize("loop_factory", _loops())
def test_plain_half_close_still_gets_its_replies_on_each_loop(
    server_factory: Callable[..., ServerThread], loop_factory: Callable[[], asyncio.AbstractEventLoop]
) -> None:
    """The other half of the answer: over TCP the half-close is kept, so a
    client that writes its whole session and shuts its write side hears every
    reply (the backend takes a moment, so the EOF comes before them)."""

    async def slow(envelope: object) -> None:
        await asyncio.sleep(0.1)

    server = server_factory(RecordingBackend(on_data=slow), loop_factory=loop_factory)
    client = server.raw(greeting=False)
    client.send(b"EHLO client.test\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n"
                b"DATA\r\nhello\r\n.\r\nQUIT\r\n")
    client.sock.shutdown(socket.SHUT_WR)
    assert client.closed()
    received = bytes(client.received)
    assert b"250 2.0.0 Message accepted" in received and received.endswith(b"221 2.0.0 Bye\r\n"), received
    assert server.backend.wait_messages(1)


@pytest.mark.parametrize("loop_factory", _loops())
def test_starttls_handshake_completes_every_time(
    server_factory: Callable[..., ServerThread], server_tls: ssl.SSLContext, client_tls: ssl.SSLContext,
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    server = server_factory(tls_context=server_tls, loop_factory=loop_factory)
    for attempt in range(20):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        try:
            assert _reply(sock).startswith(b"220")
            sock.sendall(b"EHLO client.example\r\n")
            assert _reply(sock).startswith(b"250")
            sock.sendall(b"STARTTLS\r\n")  # and the ClientHello as soon as the 220 is read
            assert _reply(sock).startswith(b"220")
            try:
                tls = client_tls.wrap_socket(sock, server_hostname="localhost")
            except (TimeoutError, OSError) as err:
                pytest.fail(f"handshake {attempt + 1} of 20 failed: {err}")
            tls.sendall(b"EHLO client.example\r\n")
            assert _reply(tls).startswith(b"250")
            tls.sendall(b"QUIT\r\n")
            assert _reply(tls).startswith(b"221")
            tls.close()
        finally:
            sock.close()

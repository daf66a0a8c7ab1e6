"""Stopping with a message still arriving when the grace runs out: 421 4.3.2, then the close.

``SMTPServer.stop(grace)`` lets a message in progress finish for ``grace``
seconds; a client still mid-message after that must hear ``421 4.3.2`` (RFC
5321 3.8: a server that must close says 421 first) rather than a bare EOF, and
nothing half-received is delivered. Checked with real clients stalled in DATA,
in a BDAT chunk, between BDAT chunks and waiting on a slow backend, over TCP
and TLS, through the framework's ``stop()`` and through ``mailwire serve``
receiving SIGTERM with a short ``--grace``.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import RawClient, RecordingBackend, ServerThread
from .test_cli_serve import MSG, Raw, Serve, cert_files, serve  # noqa: F401 - fixtures

Factory = Callable[..., ServerThread]
GRACE = 0.3


def _stall(client: RawClient, phase: str) -> None:
    """Leave ``client`` mid-message in ``phase``."""
    client.ehlo()
    client.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n")
    client.expect(250)
    client.expect(250)
    if phase == "data":
        client.cmd("DATA", 354)
        client.send(b"Subject: never finished\r\n\r\nhalf")
    elif phase == "bdat-chunk":
        client.send(b"BDAT 100 LAST\r\n" + b"x" * 40)
    elif phase == "bdat-between-chunks":
        client.send(b"BDAT 10\r\n0123456789")
        client.expect(250)
    else:  # "backend": the message is whole, the backend is still storing it
        client.cmd("DATA", 354)
        client.send(b"Subject: slow\r\n\r\nbody\r\n.\r\n")


class _Stopper(threading.Thread):
    """``server.stop(grace)`` in a thread; ``error`` if it raised (a hang ends in TimeoutError)."""

    def __init__(self, server: ServerThread, grace: float) -> None:
        super().__init__()
        self.server, self.grace = server, grace
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.server.stop(grace=self.grace)
        except BaseException as err:  # noqa: BLE001 - reported to the test
            self.error = err


def _stop_in_thread(server: ServerThread, grace: float) -> _Stopper:
    stopper = _Stopper(server, grace)
    stopper.start()
    return stopper


PHASES = ["data", "bdat-chunk", "bdat-between-chunks", "backend"]


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
@pytest.mark.parametrize("phase", PHASES)
def test_grace_running_out_mid_message_says_421(
    server_factory: Factory, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext, phase: str, tls: bool
) -> None:
    async def slow(envelope: object) -> None:
        await asyncio.sleep(60)  # longer than any grace: cancelled by stop()

    backend = RecordingBackend(on_data=slow if phase == "backend" else None)
    settings = {"tls_context": server_tls, "implicit_tls": True} if tls else {}
    server = server_factory(backend, **settings)

    def connect() -> RawClient:
        client = RawClient.connect(server.address)
        if tls:
            client.sock = client_tls.wrap_socket(client.sock, server_hostname="localhost")
        client.expect(220)
        return client

    client = connect()
    _stall(client, phase)
    if phase == "backend":
        assert _wait_calls(backend, "data")
    idle = connect()
    idle.ehlo()
    started = time.monotonic()
    stopper = _stop_in_thread(server, GRACE)
    idle.expect(421, "4.3.2")  # at once, as before
    client.expect(421, "4.3.2")  # after the grace: said, not just closed
    assert client.closed()
    stopper.join(15)
    assert not stopper.is_alive() and stopper.error is None, stopper.error
    assert time.monotonic() - started < 10
    if phase != "backend":
        assert backend.calls("data") == [] and backend.messages == []


def _wait_calls(backend: RecordingBackend, name: str) -> bool:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if backend.calls(name):
            return True
        time.sleep(0.01)
    return False


def test_between_bdat_chunks_the_message_gets_its_grace(server_factory: Factory) -> None:
    """A client between two BDAT chunks is mid-message: it may finish within the grace."""
    server = server_factory()
    client = server.raw()
    _stall(client, "bdat-between-chunks")
    stopper = _stop_in_thread(server, 5.0)
    time.sleep(0.3)  # stop() has begun: idle connections have heard 421 by now
    client.send(b"BDAT 5 LAST\r\nabcde")
    client.expect(250, "2.0.0")
    client.expect(421, "4.3.2")
    stopper.join(15)
    assert not stopper.is_alive() and stopper.error is None, stopper.error
    assert [m.content for m in server.backend.messages] == [b"0123456789abcde"]


@pytest.mark.parametrize("phase", ["data", "bdat-chunk"])
def test_serve_sigterm_grace_running_out_says_421(serve: Callable[..., Serve], tmp_path: Path, phase: str) -> None:
    server = serve("--port", "0", "--grace", "0.5")
    raw = Raw(server.port)
    try:
        assert raw.reply()[0] == 220
        assert raw.cmd(b"EHLO client.example")[0] == 250
        assert raw.cmd(b"MAIL FROM:<alice@example.org>")[0] == 250
        assert raw.cmd(b"RCPT TO:<bob@example.net>")[0] == 250
        if phase == "data":
            assert raw.cmd(b"DATA")[0] == 354
            raw.sock.sendall(MSG[: len(MSG) // 2])
        else:
            raw.sock.sendall(b"BDAT %d LAST\r\n" % len(MSG) + MSG[: len(MSG) // 2])
        time.sleep(0.2)
        server.proc.send_signal(signal.SIGTERM)
        code, text = raw.reply()
        assert code == 421 and text.startswith("421 4.3.2 "), (code, text)
        assert raw.reply() == (0, "")  # then closed
    finally:
        raw.close()
    assert server.wait() == 0
    mail = tmp_path / "mail"
    assert list((mail / "new").iterdir()) == [] and list((mail / "tmp").iterdir()) == []


@pytest.mark.parametrize("phase", ["data", "bdat-chunk"])
def test_grace_running_out_says_421_on_uvloop(server_factory: Factory, phase: str) -> None:
    uvloop = pytest.importorskip("uvloop")
    server = server_factory(loop_factory=uvloop.new_event_loop)
    client = server.raw()
    _stall(client, phase)
    stopper = _stop_in_thread(server, GRACE)
    client.expect(421, "4.3.2")
    assert client.closed()
    stopper.join(15)
    assert not stopper.is_alive() and stopper.error is None, stopper.error
    assert server.backend.messages == []


def test_serve_stops_within_the_grace_with_a_quiet_tls_client(
    serve: Callable[..., Serve], cert_files: tuple[str, str], client_tls: ssl.SSLContext
) -> None:
    """A TLS client that hears 421 and neither answers the close_notify nor
    closes: asyncio would wait 30 s for it, and Python 3.12+ waits for every
    connection before the server counts as closed."""
    cert, key = cert_files
    server = serve("--port", "0", "--sink", "--tls-cert", cert, "--tls-key", key, "--implicit-tls", "--grace", "0.5")
    quiet = client_tls.wrap_socket(socket.create_connection(("127.0.0.1", server.port), timeout=10),
                                   server_hostname="localhost")
    try:
        assert quiet.recv(100).startswith(b"220")
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        assert quiet.recv(100).startswith(b"421 4.3.2")
        assert server.wait(timeout=25) == 0
        assert time.monotonic() - started < 15
    finally:
        quiet.close()

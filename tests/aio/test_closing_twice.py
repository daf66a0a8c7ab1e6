"""A connection ended by an error, then closed again, raises the error and nothing else.

Every way a dialog ends early closes the connection, and the caller's own
clean-up (``async with``, ``close()``, ``quit()``) closes it again. asyncio's
TLS transport may be closed only once: a second ``close()`` (or one after the
connection was lost) drops its inner protocol, and every call on it after
that raises ``AttributeError: 'NoneType' object has no attribute
'_get_write_buffer_size'`` (3.10: once the connection is lost). Each case
here must raise the client's documented error — ``TimeoutError``,
``asyncio.CancelledError``, ``ConnectionClosed``, ``AuthenticationError`` —
and ``asyncio.run`` must log nothing (no "unhandled exception during
shutdown", no "Task exception was never retrieved"); on asyncio's loop and on
uvloop, over plain TCP, STARTTLS and implicit TLS.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import ssl
import time
from collections.abc import Callable
from typing import Any

import pytest

from mailwire import AsyncSMTPClient, AuthenticationError, ConnectionClosed, SMTPPool
from mailwire.client.aio_transport import ClientTimeout

from helpers.loops import LOOPS, run_on
from helpers.scripted import ScriptedServer
from helpers.slowpeer import Quiet

Start = Callable[..., ScriptedServer]
pytestmark = pytest.mark.timeout(30)
MODES = ["none", "starttls", "implicit"]
MESSAGE = b"Subject: twice\r\n\r\nhello\r\n"


class _Quiet:
    """What asyncio reported: every record of its logger at WARNING or above."""

    def __init__(self, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
        self.caplog = caplog
        self.capfd = capfd
        caplog.set_level(logging.DEBUG, logger="asyncio")

    def check(self) -> None:
        gc.collect()  # "Task exception was never retrieved" is logged when the task is collected
        noise = [r.getMessage() for r in self.caplog.records if r.name == "asyncio" and r.levelno >= logging.WARNING]
        assert noise == []
        err = self.capfd.readouterr().err
        for text in ("unhandled exception", "never retrieved", "Traceback", "AttributeError"):
            assert text not in err


@pytest.fixture
def quiet_loop(caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> _Quiet:
    return _Quiet(caplog, capfd)


def _client(server: ScriptedServer, mode: str, client_tls: ssl.SSLContext, **options: Any) -> AsyncSMTPClient:
    return AsyncSMTPClient(
        *server.address, tls=mode, ssl_context=client_tls, allow_plaintext_auth=True, **options,  # type: ignore[arg-type]
    )


async def _until(quiet: Quiet) -> None:
    for _ in range(500):
        if quiet.seen.is_set():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the server never saw the command it waits for")


async def _close_again(client: AsyncSMTPClient) -> None:
    """What a caller's clean-up does, more than once, at once and a little
    later (once the connection is really gone): each must be quiet."""
    await client.close()
    await asyncio.sleep(0.3)  # the peer answers the close; the transport is lost
    assert await client.quit() is None
    await client.close()
    assert not client.connected
    assert isinstance(client.is_tls, bool)  # still answers after the transport is gone


def _server(scripted: Start, quiet: Quiet) -> ScriptedServer:
    return scripted(quiet, strict=False)


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("mode", MODES)
def test_reply_timeout(
    scripted: Start, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext, quiet_loop: _Quiet,
    mode: str, loop: str,
) -> None:
    quiet = Quiet(b"MAIL", tls=mode, context=server_tls)
    server = _server(scripted, quiet)

    async def main() -> None:
        client = _client(server, mode, client_tls, timeout=0.5)
        started = time.monotonic()
        with pytest.raises(TimeoutError) as caught:
            async with client:
                assert client.is_tls == (mode != "none")
                await client.send(MESSAGE, "a@example.org", ["b@example.net"])
        assert isinstance(caught.value, (ClientTimeout, asyncio.TimeoutError))
        assert time.monotonic() - started < 5
        await _close_again(client)

    run_on(loop, main())
    quiet_loop.check()


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("mode", MODES)
def test_cancelled_send(
    scripted: Start, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext, quiet_loop: _Quiet,
    mode: str, loop: str,
) -> None:
    quiet = Quiet(b"MAIL", tls=mode, context=server_tls)
    server = _server(scripted, quiet)

    async def main() -> None:
        client = _client(server, mode, client_tls, timeout=10)
        async with client:
            task = asyncio.get_running_loop().create_task(client.send(MESSAGE, "a@example.org", ["b@example.net"]))
            await _until(quiet)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not client.connected
        await _close_again(client)

    run_on(loop, main())
    quiet_loop.check()


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("mode", MODES)
def test_close_with_a_send_in_flight(
    scripted: Start, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext, quiet_loop: _Quiet,
    mode: str, loop: str,
) -> None:
    quiet = Quiet(b"MAIL", tls=mode, context=server_tls)
    server = _server(scripted, quiet)

    async def main() -> None:
        client = _client(server, mode, client_tls, timeout=10)
        async with client:
            task = asyncio.get_running_loop().create_task(client.send(MESSAGE, "a@example.org", ["b@example.net"]))
            await _until(quiet)
            started = time.monotonic()
            await client.close()
            with pytest.raises(ConnectionClosed):
                await task
            assert time.monotonic() - started < 5  # the close ended it, not the 10 s timeout
        await _close_again(client)

    run_on(loop, main())
    quiet_loop.check()


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("mode", MODES)
def test_wrong_password_then_silence(
    scripted: Start, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext, quiet_loop: _Quiet,
    mode: str, loop: str,
) -> None:
    quiet = Quiet(b"AUTH", tls=mode, context=server_tls)  # 535, then not a word
    server = _server(scripted, quiet)

    async def main() -> None:
        client = _client(server, mode, client_tls, timeout=5, auth=("alice", "wrong"))
        with pytest.raises(AuthenticationError) as caught:
            async with client:
                pass
        assert caught.value.code == 535
        await _close_again(client)

    run_on(loop, main())
    quiet_loop.check()


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("mode", MODES)
def test_send_left_in_flight_when_asyncio_run_ends(
    scripted: Start, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext, quiet_loop: _Quiet,
    mode: str, loop: str,
) -> None:
    # asyncio.run cancels what main left running: that send must end cancelled, quietly.
    quiet = Quiet(b"MAIL", tls=mode, context=server_tls)
    server = _server(scripted, quiet)
    tasks: list[asyncio.Task[Any]] = []

    async def main() -> None:
        client = _client(server, mode, client_tls, timeout=10)
        await client.connect()
        tasks.append(asyncio.get_running_loop().create_task(client.send(MESSAGE, "a@example.org", ["b@example.net"])))
        await _until(quiet)

    run_on(loop, main())
    assert tasks[0].cancelled()
    quiet_loop.check()


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("mode", MODES)
def test_pool_reply_timeout(
    scripted: Start, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext, quiet_loop: _Quiet,
    mode: str, loop: str,
) -> None:
    quiet = Quiet(b"MAIL", tls=mode, context=server_tls)
    server = _server(scripted, quiet)

    async def main() -> None:
        async with SMTPPool(*server.address, size=1, tls=mode, ssl_context=client_tls, timeout=0.5) as pool:
            with pytest.raises(TimeoutError):
                await pool.send(MESSAGE, "a@example.org", ["b@example.net"])

    run_on(loop, main())
    quiet_loop.check()

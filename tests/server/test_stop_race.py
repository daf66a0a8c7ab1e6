"""A connection that arrives as the server stops is answered or closed, never left hanging.

asyncio accepts in one round of the loop and attaches the connection to its
server in a later one; a server closed in between (CPython issue 109564)
used to leave that socket open and its client waiting until the garbage
collector ran. Each case connects, lets the loop go 0 to 5 rounds (so the
stop lands on every step of the accept), stops, and reads: it must get a
reply or the end of the connection within the timeout. On asyncio's loop and
on uvloop (which `mailwire serve` takes when installed).
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import socket
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

from mailwire.server import SMTPServer
from mailwire.server.session import Backend

TIMEOUT = 10.0
# uvloop reads its listeners outside any selector: stop_accepting has nothing to remove there.
LOOPS = ["asyncio", pytest.param("uvloop", marks=pytest.mark.skipif(
    importlib.util.find_spec("uvloop") is None, reason="uvloop is not installed"))]


def _run(loop: str, main: Coroutine[Any, Any, socket.socket]) -> socket.socket:
    if loop == "asyncio":
        return asyncio.run(main)
    import uvloop

    running = uvloop.new_event_loop()
    try:
        return running.run_until_complete(main)
    finally:
        running.close()


class _Nothing(Backend):
    """Takes nothing (no message reaches it here)."""
ROUNDS = range(6)


def _outcome(client: socket.socket) -> bytes:
    """What the client reads until the end (b"" if reset)."""
    client.settimeout(TIMEOUT)
    got = b""
    try:
        while chunk := client.recv(4096):
            got += chunk
    except ConnectionResetError:
        pass
    except TimeoutError:  # (socket.timeout before 3.10's alias)
        pytest.fail(f"the connection was left open; read so far: {got!r}")
    finally:
        client.close()
    return got


async def _smtp_client_as_it_stops(rounds: int) -> socket.socket:
    server = SMTPServer(_Nothing(), hostname="mx.test")
    await server.start("127.0.0.1", 0)
    client = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
    for _ in range(rounds):
        await asyncio.sleep(0)
    await server.stop(grace=1.0)
    return client


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("rounds", ROUNDS)
def test_smtp_connection_arriving_as_the_server_stops(rounds: int, loop: str,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        client = _run(loop, _smtp_client_as_it_stops(rounds))
    got = _outcome(client)
    # Refused by the kernel (b""), told we are stopping, or greeted then told.
    assert got == b"" or got.startswith(b"421 4.3.2") or (got.startswith(b"220 ") and b"421 4.3.2" in got), got
    assert not [r for r in caplog.records if r.name == "asyncio"], caplog.text


async def _web_client_as_it_stops(maildir: Path, rounds: int) -> socket.socket:
    from mailwire.web.serve import WebInbox, open_inbox

    inbox, _ = open_inbox(str(maildir))
    web = WebInbox(inbox, "127.0.0.1", 0)
    await web.start()
    client = socket.create_connection(("127.0.0.1", web.port), timeout=TIMEOUT)
    client.sendall(b"GET /api/v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    for _ in range(rounds):
        await asyncio.sleep(0)
    await web.stop()
    return client


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("rounds", ROUNDS)
def test_web_connection_arriving_as_the_inbox_stops(rounds: int, loop: str, tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    pytest.importorskip("aiohttp")
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        client = _run(loop, _web_client_as_it_stops(tmp_path / "mail", rounds))
    got = _outcome(client)
    assert got == b"" or got.startswith(b"HTTP/1.1 "), got
    assert not [r for r in caplog.records if r.name == "asyncio"], caplog.text

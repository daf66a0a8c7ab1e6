"""Pytest fixtures shared by tests/client, tests/interop and tests/security.

Each of those directories' ``conftest.py`` star-imports this module, so the
fixtures live in one file that no other suite edits.
"""

from __future__ import annotations

import shutil
import ssl
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import trustme

from .aiosmtpd_server import Running, aiosmtpd_server
from .certs import client_context, server_context
from .scripted import ScriptedServer, Script
from .smtp_sink import Sink, refused_port, smtp_sink

__all__ = [
    "ca", "server_tls", "client_tls", "short_tmp", "scripted", "aiosmtpd_factory", "sink_factory",
    "sink", "closed_port",
]


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    """Server side: a certificate for localhost, 127.0.0.1 and ::1."""
    return server_context(ca)


@pytest.fixture
def client_tls(ca: trustme.CA) -> ssl.SSLContext:
    """Client side: verifies certificates against the test CA only."""
    return client_context(ca)


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short directory for Unix socket paths (sun_path holds ~107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="mw-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def scripted() -> Iterator[Callable[..., ScriptedServer]]:
    """``scripted(script, **options)``: a started ScriptedServer, stopped at teardown.

    Script errors are re-raised when the test body itself passed.
    """
    servers: list[ScriptedServer] = []

    def start(script: Script, **options: Any) -> ScriptedServer:
        server = ScriptedServer(script, **options).__enter__()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()
    for server in servers:
        if server.strict and server.errors:
            raise server.errors[0]


@pytest.fixture
def aiosmtpd_factory() -> Iterator[Callable[..., Running]]:
    """``aiosmtpd_factory(**options)`` -> a running aiosmtpd (see ``aiosmtpd_server``)."""
    with ExitStack() as stack:
        yield lambda **options: stack.enter_context(aiosmtpd_server(**options))


@pytest.fixture
def sink_factory(short_tmp: Path) -> Iterator[Callable[..., Sink]]:
    """``sink_factory(options, unix_path=..., dump=True)`` -> a running smtp-sink.

    Dumps go under ``short_tmp`` (in /tmp, which ``nobody`` can traverse;
    pytest's ``tmp_path`` is inside a directory only root may enter).
    """
    with ExitStack() as stack:
        counter = iter(range(1000))

        def start(options: tuple[str, ...] = (), *, dump: bool = False, **kwargs: Any) -> Sink:
            dump_dir = None
            if dump:
                dump_dir = short_tmp / f"sink{next(counter)}"
                dump_dir.mkdir()
                short_tmp.chmod(0o755)
            return stack.enter_context(smtp_sink(options, dump_dir=dump_dir, **kwargs))

        yield start


@pytest.fixture
def sink(sink_factory: Callable[..., Sink]) -> Sink:
    """smtp-sink with its defaults (PIPELINING, 8BITMIME, DSN, AUTH; no CHUNKING, no SIZE)."""
    return sink_factory()


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port where a connection is refused, for the whole test (``refused_port``)."""
    with refused_port() as port:
        yield port

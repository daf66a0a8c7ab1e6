"""Fixtures for the server suite: a real SMTPServer in a thread, raw sockets.

``ServerThread`` is ``mailwire.testing.ServerThread`` (the one server in a
thread) with this suite's defaults: a ``RecordingBackend`` that keeps every
session, every delivered ``Envelope`` and every backend call, so a test can
say exactly what reached the backend and what did not; the hostname
``mx.test``; and raw clients. ``stop()`` stops the server gracefully and
joins the thread; a server thread that dies or hangs fails the test instead
of leaking.

``RawClient`` is a plain socket with a reply parser: tests whose point is the
bytes on the wire (smuggling, pipelining, limits) write them by hand with it.
Every socket has a timeout and every loop is bounded.

The tests here see the server only through its sockets and public API
(``SMTPServer``, ``ServerConfig``, the session protocols); the per-connection
driver is an implementation detail. The shared helpers of ``tests/helpers``
(trustme certificates, ``short_tmp``) come in through ``helpers.fixtures``.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

_TESTS = str(Path(__file__).resolve().parents[1])
if _TESTS not in sys.path:  # helpers/ lives next to this directory
    sys.path.insert(0, _TESTS)

from helpers.fixtures import *  # noqa: E402,F401,F403

from mailwire import testing  # noqa: E402
from mailwire.errors import SMTPError  # noqa: E402
from mailwire.protocol.params import MailOptions, RcptOptions  # noqa: E402
from mailwire.sasl import Credentials  # noqa: E402
from mailwire.server.config import ServerConfig  # noqa: E402
from mailwire.server.envelope import Envelope, SessionInfo  # noqa: E402

__all__ = [
    "RecordingBackend", "RecordingSession", "ServerThread", "RawClient", "Reply",
    "server_factory", "wait_for",
]

IO_TIMEOUT = 5.0  # any single wait on a socket
USERS = {"alice": "s3cret-Pa55", "bob": "hunter2-xyzzy"}


def wait_for(predicate: Callable[[], bool], timeout: float = IO_TIMEOUT, interval: float = 0.005) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes; its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


# -- the backend ----------------------------------------------------------------


class RecordingSession:
    """A session that accepts everything and records every call. Its steps
    are coroutine functions: they run on the connection's task.

    Behaviour is steered by the backend's hooks (each may raise SMTPError or
    anything else): ``on_mail(address, options)``, ``on_rcpt(address,
    options)``, ``on_data(envelope)``.
    """

    def __init__(self, backend: "RecordingBackend", info: SessionInfo) -> None:
        self.backend = backend
        self.info = info
        self.calls: list[tuple[str, Any]] = []
        self.closed = threading.Event()

    def _note(self, name: str, value: Any) -> None:
        self.calls.append((name, value))
        self.backend.log.append((name, value))

    async def mail(self, address: str, options: MailOptions) -> None:
        self._note("mail", (address, options))
        if self.backend.on_mail is not None:
            await _maybe_await(self.backend.on_mail(address, options))

    async def rcpt(self, address: str, options: RcptOptions) -> None:
        self._note("rcpt", (address, options))
        if self.backend.on_rcpt is not None:
            await _maybe_await(self.backend.on_rcpt(address, options))

    async def data(self, envelope: Envelope) -> None:
        self._note("data", envelope)
        if self.backend.on_data is not None:
            await _maybe_await(self.backend.on_data(envelope))
        self.backend.messages.append(envelope)

    async def reset(self) -> None:
        self._note("reset", None)

    async def close(self) -> None:
        self._note("close", None)
        self.closed.set()


class LMTPRecordingSession(RecordingSession):
    """Also an ``LMTPSession``: ``backend.lmtp_outcome(address)`` per recipient."""

    async def deliver(self, envelope: Envelope) -> Sequence[SMTPError | None]:
        self._note("deliver", envelope)
        outcomes = [self.backend.lmtp_outcome(rcpt) if self.backend.lmtp_outcome else None
                    for rcpt in envelope.rcpt_to]
        self.backend.messages.append(envelope)
        return outcomes


async def _maybe_await(value: Any) -> Any:
    if asyncio.iscoroutine(value):
        return await value
    return value


@dataclass
class RecordingBackend:
    """A ``Backend`` that keeps every session and every delivered envelope.

    ``auth``: the server checks credentials with ``authenticate`` (users in
    ``users``), as its ``ServerConfig.authenticator``; ``lmtp_sessions``:
    sessions implement ``LMTPSession``.
    """

    auth: bool = False
    lmtp_sessions: bool = False
    users: dict[str, str] = field(default_factory=lambda: dict(USERS))
    on_mail: Callable[[str, MailOptions], Any] | None = None
    on_rcpt: Callable[[str, RcptOptions], Any] | None = None
    on_data: Callable[[Envelope], Any] | None = None
    lmtp_outcome: Callable[[str], SMTPError | None] | None = None
    on_new_session: Callable[[SessionInfo], Any] | None = None
    sessions: list[RecordingSession] = field(default_factory=list)
    messages: list[Envelope] = field(default_factory=list)  # delivered (data/deliver called)
    log: list[tuple[str, Any]] = field(default_factory=list)

    async def new_session(self, info: SessionInfo) -> RecordingSession:
        if self.on_new_session is not None:
            await _maybe_await(self.on_new_session(info))
        cls = LMTPRecordingSession if self.lmtp_sessions else RecordingSession
        session = cls(self, info)
        self.sessions.append(session)
        return session

    async def authenticate(self, credentials: Credentials) -> None:
        self.log.append(("authenticate", (credentials.mechanism, credentials.username)))
        stored = self.users.get(credentials.username)
        if stored is None or not credentials.check_password(stored):
            raise SMTPError(535, "5.7.8", "Authentication credentials invalid")

    def calls(self, name: str) -> list[Any]:
        return [value for call, value in list(self.log) if call == name]

    def wait_messages(self, count: int, timeout: float = IO_TIMEOUT) -> bool:
        return wait_for(lambda: len(self.messages) >= count, timeout)

    def wait_closed(self, sessions: int = 1, timeout: float = IO_TIMEOUT) -> bool:
        """Until ``sessions`` sessions have been told ``close()``."""
        return wait_for(lambda: sum(s.closed.is_set() for s in list(self.sessions)) >= sessions, timeout)


# -- the server in a thread -------------------------------------------------------


class ServerThread(testing.ServerThread):
    """``mailwire.testing.ServerThread`` with this suite's defaults, and raw clients.

    ``host``: "127.0.0.1" or "::1" (None: no TCP listener); ``unix_path``: also
    listen there. ``config`` or ServerConfig fields as keywords. A
    ``RecordingBackend(auth=True)`` is the server's authenticator.
    """

    def __init__(
        self,
        backend: Any = None,
        *,
        host: str | None = "127.0.0.1",
        unix_path: str | None = None,
        config: ServerConfig | None = None,
        loop_factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop,
        **settings: Any,
    ) -> None:
        self.backend = backend if backend is not None else RecordingBackend()
        if config is None:
            settings.setdefault("hostname", "mx.test")
            if isinstance(self.backend, RecordingBackend) and self.backend.auth:
                settings.setdefault("authenticator", self.backend.authenticate)
        else:
            settings["config"] = config
        super().__init__(self.backend, host=host, unix_path=unix_path, loop_factory=loop_factory,
                         start_timeout=IO_TIMEOUT, **settings)

    def stop(self, timeout: float = IO_TIMEOUT * 2, *, grace: float | None = None) -> None:
        super().stop(timeout if grace is None else grace * 3 + timeout, grace=grace)

    def raw(self, *, family: int | None = None, timeout: float = IO_TIMEOUT, greeting: bool = True) -> "RawClient":
        """A raw socket to the TCP listener (the greeting read unless told not to)."""
        client = RawClient.connect(self.address, timeout=timeout)
        if greeting:
            client.expect(220)
        return client

    def raw_unix(self, *, greeting: bool = True) -> "RawClient":
        assert self.unix_path is not None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(IO_TIMEOUT)
        sock.connect(self.unix_path)
        client = RawClient(sock)
        if greeting:
            client.expect(220)
        return client


# -- a raw client ---------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    code: int
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    @property
    def enhanced(self) -> str:
        return self.lines[0].split(" ", 1)[0] if self.lines else ""

    def __str__(self) -> str:
        return f"{self.code} {self.text}"


class ClosedError(AssertionError):
    pass


class RawClient:
    """A socket speaking bytes: write anything, parse replies, see the close."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.last_raw = b""  # the octets of the last reply read, CRLFs included
        self.buffer = bytearray()
        self.eof = False
        self.received = bytearray()  # every byte read

    @classmethod
    def connect(cls, address: tuple[str, int], *, timeout: float = IO_TIMEOUT) -> "RawClient":
        sock = socket.create_connection(address, timeout=timeout)
        return cls(sock)

    def send(self, data: bytes) -> "RawClient":
        self.sock.sendall(data)
        return self

    def _fill(self) -> bool:
        if self.eof:
            return False
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buffer += data
        self.received += data
        return True

    def line(self) -> bytes:
        while True:
            end = self.buffer.find(b"\r\n")
            if end >= 0:
                line = bytes(self.buffer[:end])
                del self.buffer[: end + 2]
                return line
            if len(self.buffer) > 1 << 20:
                raise AssertionError("reply line without CRLF")
            if not self._fill():
                raise ClosedError(f"connection closed; unread: {bytes(self.buffer)!r}")

    def reply(self) -> Reply:
        lines: list[str] = []
        raw = bytearray()
        code = None
        for _ in range(1000):
            line = self.line()
            raw += line + b"\r\n"
            assert len(line) >= 3 and line[:3].isdigit(), f"not a reply line: {line!r}"
            if code is None:
                code = int(line[:3])
            assert int(line[:3]) == code, f"reply code changed within a reply: {line!r}"
            sep = line[3:4]
            assert sep in (b" ", b"-", b""), f"bad reply separator: {line!r}"
            lines.append(line[4:].decode("utf-8", "replace"))
            if sep != b"-":
                assert code is not None
                self.last_raw = bytes(raw)
                return Reply(code, tuple(lines))
        raise AssertionError("endless reply")

    def expect(self, code: int, enhanced: str | None = None) -> Reply:
        reply = self.reply()
        assert reply.code == code, f"expected {code}, got {reply}"
        if enhanced is not None:
            assert reply.enhanced == enhanced, f"expected {code} {enhanced}, got {reply}"
        return reply

    def cmd(self, line: str | bytes, code: int = 250, enhanced: str | None = None) -> Reply:
        data = line.encode() if isinstance(line, str) else line
        self.send(data + b"\r\n")
        return self.expect(code, enhanced)

    def ehlo(self, name: str = "client.test", verb: str = "EHLO") -> Reply:
        return self.cmd(f"{verb} {name}", 250)

    def nothing_more(self, wait: float = 0.3) -> bytes:
        """What arrives within ``wait`` seconds beyond the buffer (expect b"")."""
        self.sock.settimeout(wait)
        try:
            while self._fill():
                pass
        except (socket.timeout, TimeoutError):
            pass
        finally:
            self.sock.settimeout(IO_TIMEOUT)
        return bytes(self.buffer)

    def closed(self, timeout: float = IO_TIMEOUT) -> bool:
        """Whether the server closes the connection (reading what comes before)."""
        self.sock.settimeout(timeout)
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if not self._fill():
                    return True
            return False
        except (socket.timeout, TimeoutError):
            return False
        finally:
            self.sock.settimeout(IO_TIMEOUT)

    def starttls(self, context: ssl.SSLContext, server_hostname: str = "localhost") -> None:
        assert not self.buffer, f"bytes left before TLS: {bytes(self.buffer)!r}"
        self.sock = context.wrap_socket(self.sock, server_hostname=server_hostname)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


# -- the fixture ---------------------------------------------------------------------------


@pytest.fixture
def server_factory() -> Iterator[Callable[..., ServerThread]]:
    """``server_factory(backend=None, host=..., unix_path=..., **config)`` -> a started ServerThread.

    Every server is stopped at teardown; an exception the server's loop
    reported (an unhandled error in a task) fails the test.
    """
    started: list[ServerThread] = []

    def start(backend: Any = None, **options: Any) -> ServerThread:
        thread = ServerThread(backend, **options).start()
        started.append(thread)
        return thread

    yield start
    for thread in started:
        thread.stop()
    for thread in started:
        assert not thread.loop_errors, f"the server's loop reported: {thread.loop_errors}"


@pytest.fixture
def recording_server(server_factory: Callable[..., ServerThread]) -> ServerThread:
    """A default server on 127.0.0.1 with a RecordingBackend."""
    return server_factory()


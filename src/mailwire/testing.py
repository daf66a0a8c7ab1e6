"""A real SMTP server in a background thread, for synchronous tests.

``run_server()`` starts mailwire's asyncio ``SMTPServer`` on its own event
loop in a thread, returns once it is listening, and records every message the
backend accepted::

    with run_server() as server:
        with smtplib.SMTP(server.host, server.port) as client:
            client.sendmail("a@example.com", ["b@example.com"], b"Subject: hi\\r\\n\\r\\nhello")
        (envelope,) = server.wait_for(1)

The handler is whatever ``SMTPServer`` takes: None (accept everything), an
``async def handle(envelope)``, or a ``Backend``. Recording wraps it: a
message is recorded once the handler returned without raising (for an
``LMTPSession``, once at least one recipient was delivered), so a refused
message is never in ``messages``. The wrapper keeps the session's optional
abilities (``AuthSession``, ``LMTPSession``, ``VerifySession``) exactly.

``messages`` is live and thread-safe: the server thread appends, the test
reads, waits (``wait_for``) or empties it (``clear``). Leaving the ``with``
block stops the server (open connections get ``grace`` seconds, then 421),
ends the event loop, joins the thread and so releases the port.

The pytest fixtures ``smtp_server`` and ``smtp_messages`` (``mailwire.pytest_plugin``)
are this, one server per test.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import Any, overload

from .errors import SMTPError
from .protocol.params import MailOptions, RcptOptions
from .reply import Reply
from .sasl import Credentials
from .server.aio import SMTPServer
from .server.envelope import Envelope, SessionInfo
from .server.session import (
    AuthSession, Backend, FunctionBackend, Handler, LMTPSession, Session, VerifySession,
)

__all__ = ["Messages", "ServerThread", "run_server"]


class Messages(Sequence[Envelope]):
    """The envelopes a server accepted, in order; safe to share between threads.

    Indexing and iterating see a snapshot; it compares equal to a list with
    the same envelopes.
    """

    def __init__(self) -> None:
        self._items: list[Envelope] = []
        self._changed = threading.Condition()

    def append(self, envelope: Envelope) -> None:
        with self._changed:
            self._items.append(envelope)
            self._changed.notify_all()

    def clear(self) -> None:
        with self._changed:
            self._items.clear()

    def wait_for(self, count: int = 1, timeout: float = 5.0) -> list[Envelope]:
        """Block until at least ``count`` messages are here; a snapshot of
        them. TimeoutError if they are not within ``timeout`` seconds."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._items) >= count, timeout):
                raise TimeoutError(f"{len(self._items)} message(s) received, {count} expected, in {timeout} s")
            return list(self._items)

    def snapshot(self) -> list[Envelope]:
        with self._changed:
            return list(self._items)

    def __len__(self) -> int:
        with self._changed:
            return len(self._items)

    @overload
    def __getitem__(self, index: int) -> Envelope: ...

    @overload
    def __getitem__(self, index: slice) -> list[Envelope]: ...

    def __getitem__(self, index: int | slice) -> Envelope | list[Envelope]:
        with self._changed:
            return self._items[index]

    def __iter__(self) -> Iterator[Envelope]:
        return iter(self.snapshot())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Messages):
            return self.snapshot() == other.snapshot()
        if isinstance(other, (list, tuple)):
            return self.snapshot() == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"Messages({self.snapshot()!r})"


# -- recording what the backend accepted -------------------------------------------

Record = Callable[[Envelope], None]


class _Recording:
    """A session wrapper that records each message its session accepted."""

    def __init__(self, inner: Session, record: Record) -> None:
        self._inner = inner
        self._record = record

    async def mail(self, address: str, options: MailOptions) -> None:
        await self._inner.mail(address, options)

    async def rcpt(self, address: str, options: RcptOptions) -> None:
        await self._inner.rcpt(address, options)

    async def data(self, envelope: Envelope) -> None:
        await self._inner.data(envelope)
        self._record(envelope)

    async def reset(self) -> None:
        await self._inner.reset()

    async def close(self) -> None:
        await self._inner.close()


class _RecordingAuth(_Recording):
    async def authenticate(self, credentials: Credentials) -> None:
        assert isinstance(self._inner, AuthSession)
        await self._inner.authenticate(credentials)


class _RecordingLMTP(_Recording):
    async def deliver(self, envelope: Envelope) -> Sequence[SMTPError | None]:
        assert isinstance(self._inner, LMTPSession)
        outcomes = await self._inner.deliver(envelope)
        if any(outcome is None for outcome in outcomes):
            self._record(envelope)
        return outcomes


class _RecordingVerify(_Recording):
    async def verify(self, argument: str) -> Reply:
        assert isinstance(self._inner, VerifySession)
        return await self._inner.verify(argument)


def _wrapper_classes() -> dict[tuple[bool, bool, bool], type[_Recording]]:
    # One class per combination, so each wrapper has exactly the optional
    # methods its session has: the server tells abilities by isinstance.
    classes: dict[tuple[bool, bool, bool], type[_Recording]] = {}
    for auth in (False, True):
        for lmtp in (False, True):
            for verify in (False, True):
                parts = [cls for cls, on in ((_RecordingAuth, auth), (_RecordingLMTP, lmtp),
                                             (_RecordingVerify, verify)) if on]
                classes[auth, lmtp, verify] = type("RecordingSession", tuple(parts) or (_Recording,), {})
    return classes


_WRAPPERS = _wrapper_classes()


class _RecordingBackend:
    def __init__(self, inner: Backend, record: Record) -> None:
        self._inner = inner
        self._record = record

    async def new_session(self, info: SessionInfo) -> Session:
        session = await self._inner.new_session(info)
        key = (isinstance(session, AuthSession), isinstance(session, LMTPSession),
               isinstance(session, VerifySession))
        return _WRAPPERS[key](session, self._record)


def _recording(handler: Backend | Handler | None, record: Record) -> Backend:
    if handler is None:
        async def accept(envelope: Envelope) -> None:
            record(envelope)

        return FunctionBackend(accept)
    if isinstance(handler, Backend):
        return _RecordingBackend(handler, record)
    handle = handler

    async def handle_and_record(envelope: Envelope) -> None:
        await handle(envelope)
        record(envelope)

    return FunctionBackend(handle_and_record)


# -- the thread -----------------------------------------------------------------------


class ServerThread:
    """An ``SMTPServer`` served from a background thread.

    ``ServerThread(handler, host="127.0.0.1", port=0, **config)`` where
    ``config`` is ServerConfig fields (or ``config=ServerConfig(...)``);
    ``hostname`` defaults to ``"localhost"`` here, sparing a DNS lookup.
    ``start()``/``stop()`` or ``with``. After ``start``, ``port`` is the
    bound port.
    """

    def __init__(
        self,
        handler: Backend | Handler | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        grace: float = 1.0,
        start_timeout: float = 10.0,
        **config: Any,
    ) -> None:
        if "config" not in config:
            config.setdefault("hostname", "localhost")
        self.messages = Messages()
        self.server = SMTPServer(_recording(handler, self.messages.append), **config)
        self.host = host
        self.port = port
        self.grace = grace
        self.start_timeout = start_timeout
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._stopping = threading.Event()

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def wait_for(self, count: int = 1, timeout: float = 5.0) -> list[Envelope]:
        """Until ``count`` messages were received (see ``Messages.wait_for``)."""
        return self.messages.wait_for(count, timeout)

    def clear(self) -> None:
        self.messages.clear()

    def start(self) -> ServerThread:
        if self._thread is not None:
            raise RuntimeError("already started")
        ready = threading.Event()
        self._thread = threading.Thread(target=self._main, args=(ready,), name="mailwire-test-server", daemon=True)
        self._thread.start()
        if not ready.wait(self.start_timeout):
            self.stop()
            raise RuntimeError(f"the server did not start listening within {self.start_timeout} s")
        if self._error is not None:
            self._thread.join(self.start_timeout)
            self._thread = None
            raise self._error
        self.port = self.server.port
        return self

    def _main(self, ready: threading.Event) -> None:
        try:
            asyncio.run(self._serve(ready))
        except BaseException as err:  # reported to start()
            self._error = err
        finally:
            ready.set()

    async def _serve(self, ready: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = stop = asyncio.Event()
        try:
            await self.server.start(self.host, self.port)
            ready.set()
            if not self._stopping.is_set():  # else stop() came before the loop was known
                await stop.wait()
        finally:
            await self.server.stop(self.grace)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the server, end the loop, join the thread (``timeout`` s at most)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stopping.set()
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            try:
                loop.call_soon_threadsafe(stop.set)
            except RuntimeError:  # the loop has already ended
                pass
        thread.join(timeout)
        if thread.is_alive():
            raise RuntimeError("the server thread did not stop")

    def __enter__(self) -> ServerThread:
        return self if self._thread is not None else self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@contextlib.contextmanager
def run_server(
    handler: Backend | Handler | None = None, *, host: str = "127.0.0.1", port: int = 0, **config: Any
) -> Iterator[ServerThread]:
    """A running ``ServerThread`` for the ``with`` block (see ``ServerThread``)."""
    with ServerThread(handler, host=host, port=port, **config) as server:
        yield server

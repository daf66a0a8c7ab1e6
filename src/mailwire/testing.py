"""A real SMTP server in a background thread, for synchronous tests.

``run_server()`` starts mailwire's asyncio ``SMTPServer`` on its own event
loop in a thread, returns once it is listening, and records every message the
backend accepted::

    with run_server() as server:
        with smtplib.SMTP(server.host, server.port) as client:
            client.sendmail("a@example.com", ["b@example.com"], b"Subject: hi\\r\\n\\r\\nhello")
        (envelope,) = server.wait_for(1)

The handler is whatever ``SMTPServer`` takes: None (accept everything), an
``async def handle(envelope)``, or a ``Backend``. The server is given the
handler itself, unwrapped, so its sessions keep exactly their abilities
(``AuthSession``, ``LMTPSession``, ``VerifySession``); messages are recorded
through the server's ``on_delivered`` hook, which the server calls once a
session accepted a message (for LMTP, once it was delivered to at least one
recipient). So a refused message is never in ``messages``.

``messages`` is live and thread-safe: the server thread appends, the test
reads, waits (``wait_for``) or empties it (``clear``). Leaving the ``with``
block stops the server (open connections get ``grace`` seconds, then 421),
ends the event loop, joins the thread and so releases the port.

To wait for one message and read it (its text, links, one-time code),
``server.mail.wait_for(to=..., subject=...)`` gives a ``CaughtMessage``;
``InboxClient(url)`` is the same over the HTTP API of a catcher running
elsewhere (``mailwire serve`` or Mailpit). They live in
``mailwire._testing`` and are exported here.

``ServerThread`` is the one "server in a thread" of mailwire: the pytest
fixtures ``smtp_server`` and ``smtp_messages`` (``mailwire.pytest_plugin``)
are this, one server per test; ``mailwire.smtpd.run_in_thread`` and
``loop`` serve the drop-in's servers with it; the test suite's own servers
are it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from types import TracebackType
from typing import Any, overload

from .server.aio import SMTPServer
from .server.config import ServerConfig
from .server.envelope import Envelope
from .server.session import Backend, Delivered, Handler
from ._testing.chaos import RemoteChaos
from ._testing.client import InboxClient, InboxError
from ._testing.message import CaughtMessage, Headers
from ._testing.waiting import CaughtMail, ServerMail

__all__ = [
    "Messages", "ServerThread", "run_server",
    "CaughtMessage", "Headers", "CaughtMail", "ServerMail", "InboxClient", "InboxError", "RemoteChaos",
]


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

    def record(self, envelope: Envelope, recipients: Sequence[str]) -> None:
        """A server's ``on_delivered`` hook: keep the envelope."""
        self.append(envelope)

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


# -- the thread -----------------------------------------------------------------------


def _accept(envelope: Envelope) -> None:
    """The handler of a server given none: accept every message."""


def _both(first: Delivered, then: Delivered) -> Delivered:
    def delivered(envelope: Envelope, recipients: Sequence[str]) -> None:
        first(envelope, recipients)
        then(envelope, recipients)

    return delivered


class ServerThread:
    """An ``SMTPServer`` served from an event loop of its own in a background thread.

    ``ServerThread(handler, host="127.0.0.1", port=0, **config)`` where
    ``config`` is ServerConfig fields (or ``config=ServerConfig(...)``);
    ``hostname`` defaults to ``"localhost"`` here, sparing a DNS lookup. It
    listens on TCP at ``host`` (None: not on TCP), on the Unix socket
    ``unix_path`` if given, and on the listening socket ``sock`` if given
    (closed when the server stops). ``record=False`` keeps no ``messages``
    (a long-running server must not collect them). ``mail`` is the
    messages read for a test: ``mail.wait_for(to=..., subject=...)``. ``loop_factory`` makes
    the event loop (``uvloop.new_event_loop``, say). ``start()``/``stop()``
    or ``with``. After ``start``, ``port`` is the bound TCP port.

    What the loop reports (an exception nobody retrieved) is logged as
    usual and kept in ``loop_errors``; ``call(fn)`` runs ``fn`` on the loop.
    """

    def __init__(
        self,
        handler: Backend | Handler | None = None,
        *,
        host: str | None = "127.0.0.1",
        port: int = 0,
        unix_path: str | None = None,
        sock: socket.socket | None = None,
        grace: float = 1.0,
        start_timeout: float = 10.0,
        loop_factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop,
        record: bool = True,
        name: str = "mailwire-test-server",
        **config: Any,
    ) -> None:
        given: ServerConfig | None = config.pop("config", None)
        if given is not None and config:
            raise TypeError("give either a ServerConfig or settings, not both")
        settings = given if given is not None else ServerConfig(**{"hostname": "localhost", **config})
        self.messages = Messages()
        self.mail = ServerMail(self.messages)
        if record:
            hook = self.messages.record
            settings = replace(settings, on_delivered=hook if settings.on_delivered is None
                               else _both(settings.on_delivered, hook))
        self.server = SMTPServer(_accept if handler is None else handler, settings)
        self.host = host
        self.port = port
        self.unix_path = unix_path
        self.grace = grace
        self.start_timeout = start_timeout
        self.loop_factory = loop_factory
        self.name = name
        self.loop: asyncio.AbstractEventLoop | None = None
        self.loop_errors: list[dict[str, Any]] = []
        self._sock = sock
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._stopping = threading.Event()

    @property
    def address(self) -> tuple[str, int]:
        assert self.host is not None, "not listening on TCP"
        return self.host, self.port

    @property
    def connections(self) -> int:
        """The server's open connections, counted on its loop."""
        return int(self.call(lambda: self.server.connections))

    def wait_for(self, count: int = 1, timeout: float = 5.0) -> list[Envelope]:
        """Until ``count`` messages were received (see ``Messages.wait_for``)."""
        return self.messages.wait_for(count, timeout)

    def clear(self) -> None:
        self.messages.clear()

    def start(self) -> ServerThread:
        if self._thread is not None:
            raise RuntimeError("already started")
        ready = threading.Event()
        self._thread = threading.Thread(target=self._main, args=(ready,), name=self.name, daemon=True)
        self._thread.start()
        if not ready.wait(self.start_timeout):
            self.stop()
            raise RuntimeError(f"the server did not start listening within {self.start_timeout} s")
        if self._error is not None:
            self._thread.join(self.start_timeout)
            self._thread = None
            raise self._error
        if self.host is not None:
            self.port = self.server.port
        return self

    def _main(self, ready: threading.Event) -> None:
        loop = self.loop_factory()
        self.loop = loop
        loop.set_exception_handler(self._loop_error)
        try:
            loop.run_until_complete(self._serve(ready))
        except BaseException as err:  # reported to start()
            self._error = err
        finally:
            ready.set()
            try:
                _cancel_all(loop)
            finally:
                loop.close()

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        self.loop_errors.append(context)
        loop.default_exception_handler(context)

    async def _serve(self, ready: threading.Event) -> None:
        self._stop = stop = asyncio.Event()
        try:
            if self.host is not None:
                await self.server.start(self.host, self.port)
            if self.unix_path is not None:
                await self.server.start_unix(self.unix_path)
            if self._sock is not None:
                sock, self._sock = self._sock, None
                await self.server.start(None, None, sock=sock)
            ready.set()
            if not self._stopping.is_set():  # else stop() came before the loop was known
                await stop.wait()
        finally:
            await self.server.stop(self.grace)

    def call(self, fn: Callable[[], Any], timeout: float = 5.0) -> Any:
        """Run ``fn`` on the server's loop and return its result."""
        assert self.loop is not None

        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    def stop(self, timeout: float = 30.0, *, grace: float | None = None) -> None:
        """Stop the server (open connections get ``grace`` seconds, by
        default the thread's), end the loop, join the thread (``timeout`` s
        at most)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if grace is not None:
            self.grace = grace
        self._stopping.set()
        loop, stop = self.loop, self._stop
        if loop is not None and stop is not None:
            try:
                loop.call_soon_threadsafe(stop.set)
            except RuntimeError:  # the loop has already ended
                pass
        thread.join(timeout)
        if thread.is_alive():
            raise RuntimeError("the server thread did not stop")

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> ServerThread:
        return self if self._thread is not None else self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    """What asyncio.run does on its way out: cancel what is left, wait for it."""
    pending = asyncio.all_tasks(loop)
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())


@contextlib.contextmanager
def run_server(
    handler: Backend | Handler | None = None, *, host: str = "127.0.0.1", port: int = 0, **config: Any
) -> Iterator[ServerThread]:
    """A running ``ServerThread`` for the ``with`` block (see ``ServerThread``)."""
    with ServerThread(handler, host=host, port=port, **config) as server:
        yield server

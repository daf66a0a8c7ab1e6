"""The asyncio transport: one connection, one ``ClientConnection``, as a Protocol.

The asyncio twin of ``SyncTransport``. Bytes from ``data_received`` go
straight into the core (no ``StreamReader`` and its per-line work); a reader
waits on one future that ``data_received`` resolves. STARTTLS uses the
public ``loop.start_tls``, which works on every supported Python and on uvloop.

Any timeout, cancellation or protocol error closes the connection: a reply
that arrives after its reader gave up would otherwise be paired with the
next command. As in ``SyncTransport``, the reason is kept, and an error met
afterwards says we closed, not the server. Closing is one idempotent path
(``close``): the error that closes a connection and the caller's clean-up
after it both call it, and asyncio's TLS transport breaks if it is closed twice.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import sys
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from .._aio.deadline import Deadline
from .._aio.flow import FlowControl
from ..errors import ConnectionClosed, LocalProtocolError, RemoteProtocolError
from ..limits import DEFAULT_LIMITS, Limits
from ..protocol.client import ClientConnection, PreparedWrite, Sendable
from ..protocol.events import Closed, NeedData
from .._aio.reading import BufferedReading
from ..reply import Reply
from .transport import closing_reason, format_events, gone_message, log_prepared, log_reply

__all__ = ["AsyncTransport", "open_connection", "ClientTimeout"]

T = TypeVar("T")

if sys.version_info >= (3, 11):
    ClientTimeout = TimeoutError
else:  # 3.10: asyncio's TimeoutError is not yet the builtin one; be both

    class ClientTimeout(asyncio.TimeoutError, TimeoutError):
        """A wait of the asyncio client ran out of time."""


async def _wait_for(step: Awaitable[T], timeout: float | None) -> T:
    """``asyncio.wait_for``, its timeout raised as the builtin TimeoutError
    on every Python we support, as the blocking client raises it."""
    try:
        return await asyncio.wait_for(step, timeout)
    except asyncio.TimeoutError as err:
        if isinstance(err, TimeoutError):
            raise
        raise ClientTimeout(str(err) or "timed out") from None

log = logging.getLogger("mailwire.client")


class AsyncTransport(FlowControl, BufferedReading):
    def __init__(self, *, lmtp: bool = False, limits: Limits = DEFAULT_LIMITS) -> None:
        self.core = ClientConnection(limits=limits, lmtp=lmtp)
        self.transport: asyncio.Transport | None = None
        self.turns = 0
        self._waiting = False
        self._wake: asyncio.Future[None] | None = None
        # The deadline passed while no wait was pending: bytes had just woken
        # the reader, which had not yet waited again. The next wait raises;
        # without this the expiry would be lost, and a server trickling a
        # byte at a time would hold the reader for as long as it liked.
        self._expired_unseen = False
        self._writable: asyncio.Future[None] | None = None
        self._lost: Exception | None = None
        self._closed = False  # by us or by the peer: no more reading or writing
        self._released = False  # the transport was closed (once) or lost: never touch it again
        self._tls = False
        self._deadline = Deadline(self._expired)
        self._armed: _Armed | None = None  # a write to make as soon as replies allow
        self.then_written = False  # by the last read_replies
        self.closed_by_us: str | None = None  # why we closed it, if we did
        self._eof = False  # the server closed its side

    # -- the asyncio protocol ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not an isinstance check: uvloop's transports have every method of
        # asyncio.Transport without deriving from it.
        self.transport = cast(asyncio.Transport, transport)
        self._tls = transport.get_extra_info("ssl_object") is not None  # implicit TLS
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.core.receive_data(data)
        armed = self._armed
        if armed is not None and not armed.written:
            self._write_early(armed)
        self._wakeup()

    def _write_early(self, armed: "_Armed") -> None:
        """Write the prepared bytes as soon as the core says the replies
        allow it, before the waiting task even runs: across a slow link the
        loop's hop to the task would otherwise sit between the 354 and the
        content. The core judges a plain group on its bytes; otherwise the
        replies that arrived are taken and it judges them parsed. Errors are
        left for the task, which meets them again reading the same replies."""
        if not self.open:
            return
        core = self.core
        try:
            if not core.content_allowed():
                try:
                    if not self._collect(armed.replies, armed.count):
                        return
                except (RemoteProtocolError, ConnectionClosed):
                    return
                if not core.content_allowed():
                    return
            data = core.send(armed.write)
        except LocalProtocolError as err:
            self.close(closing_reason(err))  # the task finds the connection closed, never desynced
            return
        if log.isEnabledFor(logging.DEBUG):
            log_prepared(armed.write)
        assert self.transport is not None
        self.transport.write(data)
        self._waiting = False
        armed.written = True

    def eof_received(self) -> bool:
        self._eof = True
        self.core.receive_data(b"")
        self._wakeup()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True  # whoever closed, nothing more comes
        self._closed = True
        self._released = True
        self._lost = exc
        self.core.receive_data(b"")
        self._release_waiters()

    # -- what the client asks ----------------------------------------------------

    @property
    def open(self) -> bool:
        return not self._closed and self.transport is not None and not self.transport.is_closing()

    @property
    def is_tls(self) -> bool:
        """Known from the start, not asked of the transport: a closed TLS
        transport may no longer answer (see ``close``)."""
        return self._tls

    @property
    def gone(self) -> str:
        """Why the connection is closed, as a ``ConnectionClosed`` says it."""
        return gone_message(self.closed_by_us)

    async def write(self, events: Iterable[Sendable] | PreparedWrite, timeout: float | None = None) -> None:
        """Format every event and write them at once (closing if one is
        refused after others were formatted: see SyncTransport.write). When
        the peer stops reading, wait for it at most ``timeout`` seconds."""
        await self._send(format_events(self.core, events, self._refused), timeout)

    async def _send(self, data: bytes, timeout: float | None) -> None:
        if not data:
            return
        if not self.open:
            raise ConnectionClosed(self.gone)
        assert self.transport is not None
        self._waiting = False
        self.transport.write(data)
        await self._drained(timeout)

    async def _drained(self, timeout: float | None) -> None:
        """Until the peer has read enough of what we wrote (if it paused us)."""
        if self._writable is not None:
            try:
                await _wait_for(self._writable, timeout)
            except BaseException as err:
                self.close(closing_reason(err))  # timed out or cancelled with content half-written
                raise

    async def read_replies(
        self, count: int, timeout: float | None, then: PreparedWrite | None = None,
    ) -> tuple[Reply, ...]:
        """The next ``count`` replies; fewer if one is a 421. With ``then``,
        write it as soon as the core says the replies allow it (from
        data_received when they arrive while we wait: see _write_early);
        ``then_written`` says whether it was.

        Each reply must be complete within ``timeout`` of the wait for it
        starting, however its bytes are paced (ClientTimeout otherwise): the
        deadline is armed when a reply is awaited, not re-armed as bytes
        arrive, and is per reply, not per group."""
        if not self._waiting:
            self.turns += 1
            self._waiting = True
        self.then_written = False
        replies: list[Reply] = []
        armed = None
        if then is not None:
            armed = self._armed = _Armed(count, then, replies)
        awaited = -1  # how many replies were in when the deadline was last armed
        try:
            while True:
                try:
                    if self._collect(replies, count):
                        break
                except (RemoteProtocolError, ConnectionClosed) as err:
                    self.close(closing_reason(err))
                    raise
                if timeout is not None and len(replies) != awaited:
                    awaited = len(replies)
                    self._expired_unseen = False
                    self._deadline.arm(timeout)  # a new reply awaited: its own time
                await self._more()
        finally:
            self._armed = None
        if armed is not None:
            if armed.written:
                await self._drained(timeout)
            elif len(replies) == count and self.core.content_allowed():  # the replies were in before we read
                try:
                    data = self.core.send(armed.write)
                except LocalProtocolError as err:
                    self.close(closing_reason(err))  # the server awaits content we cannot send: never go on
                    raise
                if log.isEnabledFor(logging.DEBUG):
                    log_prepared(armed.write)
                await self._send(data, timeout)
                armed.written = True
            self.then_written = armed.written
        return tuple(replies)

    def _collect(self, replies: list[Reply], count: int) -> bool:
        """Move complete replies from the core into ``replies``; True once
        there are ``count`` of them or one is a 421 (nothing more will come)."""
        core = self.core
        if replies and core.closing:
            return True  # a 421 taken already (by data_received): nothing more will come
        while len(replies) < count:
            event = core.next_event()
            if isinstance(event, Reply):
                if log.isEnabledFor(logging.DEBUG):
                    log_reply(event)
                replies.append(event)
                if core.closing:
                    return True
            elif isinstance(event, Closed):
                raise ConnectionClosed(self.gone)
            else:
                assert isinstance(event, NeedData)
                return False
        return True

    async def _more(self) -> None:
        """Wait for more bytes, until the deadline ``read_replies`` armed."""
        if self._closed:
            raise ConnectionClosed(self.gone)
        if self._expired_unseen:
            self._expired_unseen = False
            err = ClientTimeout("no reply from the server in time")
            self.close(closing_reason(err))  # never read a late reply as ours
            raise err
        self._wake = waiter = asyncio.get_running_loop().create_future()
        try:
            await waiter
        except BaseException as err:
            self.close(closing_reason(err))  # timed out or cancelled: never read a late reply as ours
            raise
        finally:
            self._wake = None

    def _expired(self) -> None:
        waiter = self._wake
        if waiter is not None and not waiter.done():
            waiter.set_exception(ClientTimeout("no reply from the server in time"))
        else:
            self._expired_unseen = True

    async def start_tls(self, context: ssl.SSLContext, server_hostname: str | None, timeout: float | None) -> None:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        try:
            transport = await _wait_for(
                loop.start_tls(self.transport, self, context, server_hostname=server_hostname), timeout
            )
        except BaseException as err:
            self.close(closing_reason(err))
            raise
        if transport is None:
            self.close()
            raise ConnectionClosed("the connection closed during the TLS handshake")
        self.transport = transport
        self._tls = True
        self.core.tls_established()
        if self.core.discarded_after_starttls:
            log.warning("discarded %d bytes the server sent after its 220 to STARTTLS",
                        self.core.discarded_after_starttls)

    def _refused(self) -> None:
        self.close(closing_reason(LocalProtocolError()))

    def close(self, why: str = closing_reason(None)) -> None:
        """End the connection; any number of calls, from any state, on any
        transport (plain, asyncio's TLS, uvloop's). ``why`` is kept for the
        errors that follow, unless the connection was gone already.

        The error that ends a dialog closes the connection, and the caller's
        clean-up (``async with``, ``close()``, ``quit()``) closes it again.
        asyncio's TLS transport may be closed only once: a second ``close()``,
        or one after the connection was lost, drops its inner protocol, and
        every call on it after that (``get_write_buffer_size()`` first) raises
        AttributeError (3.11+; 3.10 does so once the connection is lost). So
        the transport is closed here at most once, never after it was lost
        or while it is closing already, and nothing asks it anything after.

        A task still waiting on the connection is woken at once: a graceful
        TLS close only completes when the peer answers it, and a peer that
        says nothing (what brought us here, often) would hold that task.
        """
        if self.closed_by_us is None and not self._closed and not self._eof:
            self.closed_by_us = why
        self._closed = True
        self._deadline.cancel()
        transport = self.transport
        if transport is not None and not self._released:
            self._released = True
            if transport.is_closing():
                pass  # asyncio closed it (a TLS error, a failed handshake): once is all it takes
            elif transport.get_write_buffer_size():
                # A graceful close would first wait for a peer that may never
                # read again (the timeout that brought us here): drop it now.
                transport.abort()
            else:
                transport.close()
        self._release_waiters()


@dataclass(slots=True)
class _Armed:
    """A group being read and the write that follows it if its replies allow."""

    count: int
    write: PreparedWrite
    replies: list[Reply]  # shared with the reading task
    written: bool = False


async def open_connection(
    host: str, port: int, *, lmtp: bool, limits: Limits, timeout: float | None,
    ssl_context: ssl.SSLContext | None = None, server_hostname: str | None = None,
    source_address: tuple[str, int] | None = None,
) -> AsyncTransport:
    """Connect (TCP, or a Unix socket for a host starting with ``/``)."""
    loop = asyncio.get_running_loop()
    kwargs: dict[str, Any] = {}
    if ssl_context is not None:
        kwargs.update(ssl=ssl_context, server_hostname=server_hostname)
    factory = lambda: AsyncTransport(lmtp=lmtp, limits=limits)  # noqa: E731
    if host.startswith("/"):
        connect = loop.create_unix_connection(factory, host, **kwargs)
    else:
        connect = loop.create_connection(factory, host, port, local_addr=source_address, **kwargs)
    _, protocol = await _wait_for(connect, timeout)
    return protocol

"""One client connection: an asyncio ``Protocol`` pumping the core and a session.

Bytes go straight from ``data_received`` into the sans-I/O ``ServerConnection``
(no ``StreamReader``, no per-line Python work: the core finds lines and the end
of data with ``bytes.find``), and the events that come out are answered by the
session driver (``policy.py``). This module is the I/O around them: reading
and writing, timeouts, flow control, fairness, the TLS handshake, the PROXY
header, and the connection's task.

Waking a task costs more than answering most commands, so events are
answered right in ``data_received`` while the task waits for input. A step
the backend answers at once (our own replies, a session's plain-function
steps) is done there; the first one that must wait for something (an
``async def`` step, the TLS handshake, an AUTH delay) is handed to the task
as a ``Wait``, which the task completes before it takes the next event. So
backends that wait always run inside a task, as asyncio expects. Replies to
pipelined commands are collected and written together when the core needs
more input, so a client pipelining a whole transaction gets its replies in
one segment.

The connection never holds unbounded memory: reading pauses while the core has
more than ``limits.receive_buffer`` octets unread (as it fills while the task
waits on a streaming session with that much content it has not taken yet:
``policy.take``), and once the replies a
client has not read pass ``limits.reply_buffer`` (ours and the transport's),
reading stops until it reads them; if it does not within the timeout it is
dropped.

A slot cannot be held for free: the deadlines are ``clock.py``'s, and a
deadline passed is a 421. One connection answers at most
``commands_per_turn`` commands before the event loop serves the others (in
``data_received``: stop reading, resume with ``call_soon``).

One class, over 500 lines: the asyncio protocol of one connection, whose
callbacks share its state (the core, the clock, the step in progress);
split, they would only hand it to each other across modules.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable
from typing import TYPE_CHECKING, cast

from ..errors import SMTPError
from .._aio.flow import FlowControl
from ..protocol.events import NEED_DATA, Closed, MessageData, NeedData
from ..protocol.server import ServerConnection, ServerEvent, ServerState
from .._aio.reading import BufferedReading
from ..reply import IDLE_TIMEOUT, READY_FOR_TLS, SESSION_UNAVAILABLE, SHUTTING_DOWN, TOO_MANY_FROM_CLIENT, Reply, greeting
from .clock import SessionClock
from .envelope import SessionInfo
from .policy import Pending, SessionPolicy, Wait
from .proxy_protocol import ProxyHeaderError, parse_proxy_header

if TYPE_CHECKING:
    from .aio import SMTPServer

__all__ = ["SMTPConnection"]

log = logging.getLogger("mailwire.server")


class _Timeout(Exception):
    pass


class _ShuttingDown(Exception):
    pass


class _Gone(Exception):
    """The client went away (or we closed): stop quietly."""


class SMTPConnection(FlowControl, BufferedReading):
    # A server holds thousands of these: no __dict__ (an attribute added
    # here must be named here; _wake and _writable are FlowControl's).
    __slots__ = (
        "server", "config", "limits", "core", "info", "policy", "transport", "task", "client_key",
        "_out", "_out_size", "_paused", "_lost", "_proxy_buffer", "_shutting_down", "_clock", "_yielding",
        "_stash", "_after_handshake",
    )

    def __init__(self, server: SMTPServer) -> None:
        self.server = server
        config = server.config
        self.config = config
        self.limits = config.limits
        self.core = ServerConnection(
            limits=config.limits, lmtp=config.lmtp, hostname=config.hostname,
            bare_line_endings=config.bare_line_endings, tls=config.implicit_tls,
            extensions=config.extensions(auth=False), commands=server.commands,
        )
        self.info = SessionInfo(peer=None, hostname=config.hostname, lmtp=config.lmtp)
        self.policy = SessionPolicy(self)
        self.transport: asyncio.Transport | None = None
        self.task: asyncio.Task[None] | None = None
        # The client's address as ServerConnection.clients counts it (None: not counted).
        self.client_key: str | None = None
        self._out: list[bytes] = []
        self._out_size = 0  # octets in _out
        self._wake: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None
        self._paused = False
        self._lost = False
        self._proxy_buffer: bytearray | None = bytearray() if config.proxy_protocol else None
        self._shutting_down = False
        self._clock = SessionClock(self.limits, self._expired)
        self._yielding = False  # data_received gave the loop a turn (reading paused)
        self._stash: Wait | None = None  # left by data_received for the task
        self._after_handshake: list[bytes] | None = None

    # -- the asyncio protocol -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not an isinstance check: uvloop's transports have every
        # method of asyncio.Transport without deriving from it.
        transport = cast(asyncio.Transport, transport)
        if not self.server.accept(self, transport):
            self._lost = True  # refused (and closed) at accept: never served
            return
        self.transport = transport
        self.info.peer = transport.get_extra_info("peername")
        self.info.local = transport.get_extra_info("sockname")
        # Replies a client has not read: past this, pause_writing stops reading it.
        transport.set_write_buffer_limits(high=self.limits.reply_buffer)
        if self.config.implicit_tls:
            self.policy.secured(transport.get_extra_info("ssl_object"), implicit=True)
        self.task = asyncio.get_running_loop().create_task(self._run())

    def data_received(self, data: bytes) -> None:
        if self.transport is None:
            return
        if self._proxy_buffer is not None:
            self._proxy_buffer += data
        elif self._after_handshake is not None:
            # Decrypted bytes that beat our own resumption after the TLS
            # handshake: the client's new EHLO. Kept for tls_established().
            self._after_handshake.append(data)
        else:
            self.core.receive_data(data)
            clock = self._clock
            if clock.content:
                clock.earn(len(data))
            if self._yielding:
                return  # the next turn answers it
            if self._answer_inline():
                # Consumed up to the last whole line, or up to a Wait handed
                # to the task; what is left is at most this one read.
                return
            if self.core.buffered > self.limits.receive_buffer and not self._paused:
                self._paused = True
                assert self.transport is not None
                self.transport.pause_reading()
        self._wakeup()

    def eof_received(self) -> bool:
        # The client closed its side; commands it sent before still get their
        # replies (a half-close after QUIT is common), so over TCP the
        # transport stays open for writing: the session closes it when it is
        # done. Through TLS there is no half-close to keep: asyncio's SSL
        # layer (uvloop's too) shuts the connection down after an EOF or a
        # close_notify whatever we answer, and logs a warning if we answer
        # True, so there the answer is False.
        if self._proxy_buffer is None:
            self.core.receive_data(b"")
        else:
            self._lost = True
        self._wakeup()
        return not self._through_tls()

    def _through_tls(self) -> bool:
        """Do our protocol callbacks come from the TLS layer? From the first
        byte with implicit TLS; after STARTTLS, from the handshake on (before
        ``start_tls`` returns, which is when ``core.tls`` is set)."""
        return self.core.tls or self._after_handshake is not None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is None:
            return  # refused at accept: never admitted
        self._lost = True
        self._clock.cancel()
        self._release_waiters()
        self.policy.abort_stream()
        self.server.release(self)

    def pause_writing(self) -> None:
        # The client is not reading its replies: stop reading its commands
        # too, until it does (_wait resumes once the transport has drained).
        super().pause_writing()
        if not self._paused and self.transport is not None:
            self._paused = True
            if not self._yielding:
                self.transport.pause_reading()

    # -- I/O helpers --------------------------------------------------------------

    def reply(self, reply: Reply) -> None:
        """Answer what the core handed out; written at the next flush."""
        wire = self.core.send(reply)
        self._out.append(wire)
        self._out_size += len(wire)

    def _flush(self) -> None:
        if self._out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(self._out) if len(self._out) > 1 else self._out[0])
        self._out.clear()
        self._out_size = 0

    def shut_down(self) -> None:
        """The server is stopping: 421 at the next wait outside a message."""
        self._shutting_down = True
        self._wakeup()

    def _wait(self, timeout: float | None = None) -> Awaitable[None]:
        """Await it: until more bytes arrive (or the client leaves); _Timeout
        once the deadline passes, the current one (see SessionClock) or,
        if given, ``timeout`` from now. Usually a bare future: no coroutine
        frame is kept per waiting connection."""
        if self._lost:
            raise _Gone
        if self._shutting_down and not self.core.in_message:
            # A stopping server lets a message finish for its grace rather
            # than cutting it off.
            raise _ShuttingDown
        self._flush()
        if self._writable is not None:
            return self._wait_drained(timeout)
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        if timeout is None:
            self._clock.before_wait(self.core)
            if self._clock.late:
                raise _Timeout
        else:
            self._clock.arm(timeout)
        # Not cleared after: whoever resolves it checks done() first.
        self._wake = waiter = asyncio.get_running_loop().create_future()
        return waiter

    async def _wait_drained(self, timeout: float | None) -> None:
        await self._drained(self._timeout())
        await self._wait(timeout)

    async def _breathe(self, turn_over: bool) -> None:
        """Between pipelined commands: send what is due; wait while the client
        does not read it; give other connections the loop after a turn."""
        self._flush()
        if self._writable is not None:
            await self._drained(self._timeout())
        elif turn_over:
            # Read no more until what was read is answered (the next wait
            # for input resumes reading), so a backlog cannot pile up.
            if not self._paused and self.transport is not None:
                self._paused = True
                self.transport.pause_reading()
            await asyncio.sleep(0)

    async def _drained(self, timeout: float) -> None:
        """Until the client reads what we wrote. One that stops reading is
        dropped after ``timeout``: it can hear no 421, and must not hold
        a connection (and its buffers) for ever."""
        assert self._writable is not None
        try:
            await asyncio.wait_for(asyncio.shield(self._writable), timeout)
        except asyncio.TimeoutError:
            log.info("%s stopped reading its replies: closing", self.info.peer)
            if self.transport is not None:
                self.transport.abort()
            raise _Gone from None

    def _expired(self) -> None:
        transport = self.transport
        if transport is not None and transport.is_closing():
            transport.abort()  # closed, and the client never read the last replies
            return
        waiter = self._wake
        if waiter is not None and not waiter.done():
            waiter.set_exception(_Timeout())
        else:
            # Not waiting for the client right now: the next wait times out
            # unless the client has made progress since.
            self._clock.late = True

    def backend_caught_up(self) -> None:
        """Reading paused for a streaming session that lagged behind, not
        for the client: the content's deadline starts afresh."""
        self._clock.arm(self.limits.server_data_timeout)

    def _timeout(self) -> float:
        limits = self.limits
        return limits.server_data_timeout if self.core.receiving_content else limits.server_idle_timeout

    # -- the session --------------------------------------------------------------

    async def _run(self) -> None:
        """The connection's task: from the greeting to the close. The loop
        over the core's events is written out here rather than in a
        coroutine of its own, so that an idle connection is this one frame
        awaiting a future (thousands of them are held at once)."""
        if not await self._open():
            return
        core = self.core
        limits = self.limits
        try:
            self.reply(greeting(self.config.hostname, self.config.greeting))
            turn = 0  # events handled since the task last gave the loop away
            while True:
                stash = self._stash
                if stash is not None:
                    self._stash = None  # left by _answer_inline
                    await self._complete(stash)
                else:
                    event = core.next_event()
                    if event is NEED_DATA:
                        turn = 0
                        await self._wait()
                        continue
                    assert not isinstance(event, NeedData)
                    pending = self._step(event)
                    if pending is not None:
                        await self._complete(pending)
                if core.state is ServerState.CLOSED:
                    break
                turn += 1
                if turn >= limits.commands_per_turn or self._out_size > limits.reply_buffer:
                    await self._breathe(turn >= limits.commands_per_turn)
                    turn = 0
        except _Timeout:
            self.reply(IDLE_TIMEOUT)  # a 421 may answer anything, any time
        except _ShuttingDown:
            self.reply(SHUTTING_DOWN)
        except asyncio.CancelledError:
            self.policy.cancel_stream()
            if self._shutting_down and self.core.state is not ServerState.CLOSED:
                # The server's grace ran out mid-message (or in a backend
                # step): the client hears why before the close, at once,
                # whatever the session's clean-up below may take.
                self.reply(SHUTTING_DOWN)
                self._flush()
            raise
        except (_Gone, ConnectionError):
            pass
        except Exception:
            log.exception("connection with %s failed", self.info.peer)
        finally:
            if self._stash is not None:
                self._stash.close()
                self._stash = None
            await self.policy.finish()
            self._close()

    def _step(self, event: ServerEvent) -> Pending:
        """Handle one event up to the first thing that must be awaited:
        None once it is handled, else the Wait for ``_complete``."""
        if type(event) is MessageData:
            return self.policy.take(event.data)
        if type(event) is Closed:
            return None  # the core is closed: the connection ends
        clock = self._clock
        clock.progressed = True
        pending = self.policy.handle(event)
        if pending is not None:
            return pending
        # As _settle, written out: every event passes here, and most move
        # neither the content deadline (track) nor end a transaction (abandon).
        core = self.core
        if core.in_message is not clock.content:
            clock.track(core)
        policy = self.policy
        return None if policy.envelope is None else policy.abandon()

    def _settle(self) -> Pending:
        """After an event is answered: the content deadline, and the reset
        of a transaction that ended undelivered."""
        self._clock.track(self.core)
        return self.policy.abandon()

    async def _complete(self, pending: Wait) -> None:
        """In the task: finish a step ``_step`` left, and settle it."""
        await pending.run()
        more = self._settle()
        if more is not None:
            await more.run()

    async def _open(self) -> bool:
        """The PROXY header if expected, then the backend's session; False
        (the connection closed, with a reply if one is due) if none."""
        try:
            if self._proxy_buffer is not None:
                await self._read_proxy_header()
                if not self.server.admit_client(self, self.server.clients.key(self.info.peer)):
                    self._out.append(TOO_MANY_FROM_CLIENT.wire)
                    self._close()
                    return False
            await self.policy.open(self.server.backend)
            return True
        except SMTPError as err:
            self._out.append(err.reply.wire)
        except (_Gone, _Timeout, ProxyHeaderError) as err:
            if isinstance(err, ProxyHeaderError):
                log.warning("bad PROXY header from %s: %s", self.info.peer, err)
        except Exception:
            # A backend that cannot make a session: say so rather than leave
            # the client waiting for a greeting that never comes.
            log.exception("backend could not start a session for %s", self.info.peer)
            self._out.append(SESSION_UNAVAILABLE.wire)
        self._close()
        return False

    def _close(self) -> None:
        self._clock.cancel()
        self._flush()
        transport = self.transport
        if transport is None or self._lost or transport.is_closing():
            # Gone or closing already: asyncio's TLS transport must not be
            # asked anything (it breaks with AttributeError once its
            # connection is lost or it was closed).
            return
        unread = transport.get_write_buffer_size()
        transport.close()
        if unread:
            # close() waits for the client to read what is left; one that
            # never reads must not hold its slot for ever (see _expired).
            self._clock.arm(self._timeout())

    async def _read_proxy_header(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.proxy_header_timeout
        while True:
            assert self._proxy_buffer is not None
            parsed = parse_proxy_header(bytes(self._proxy_buffer), proxy=self.info.peer)
            if parsed is not None:
                break
            left = deadline - loop.time()
            if left <= 0:
                raise _Timeout
            try:
                await self._wait(left)
            except _Timeout:
                log.warning("no PROXY header from %s in time", self.info.peer)
                raise
        proxy, used = parsed
        rest = bytes(self._proxy_buffer[used:])
        self._proxy_buffer = None
        self.info.proxy = proxy
        if proxy.source is not None:
            self.info.peer = proxy.source
        if rest:
            self.core.receive_data(rest)  # b"" would mean the client closed
        if self._lost:
            self.core.receive_data(b"")

    # -- answering in data_received -------------------------------------------------

    def _answer_inline(self) -> bool:
        """Answer what can be answered here; False if the task must be woken."""
        waiter = self._wake
        if (
            waiter is None or waiter.done() or self._writable is not None or self._paused
            or self._shutting_down or self._lost or self._stash is not None
        ):
            return False
        core = self.core
        limits = self.limits
        turn = limits.commands_per_turn
        while True:
            event = core.next_event()
            if event is NEED_DATA:
                self._flush()
                if self._writable is not None:
                    # That filled the client's unread replies: reading is
                    # paused, and the task waits for the client to drain them.
                    waiter.set_result(None)
                    return True
                self._clock.before_wait(self.core)
                return True
            assert not isinstance(event, NeedData)
            try:
                pending = self._step(event)
            except BaseException as err:
                waiter.set_exception(err)  # raised in the task, where it waits
                return True
            if pending is not None:
                self._stash = pending  # the task completes it, then goes on
                waiter.set_result(None)
                return True
            if core.state is ServerState.CLOSED:
                waiter.set_result(None)  # the session is over: the task closes it
                return True
            turn -= 1
            if turn <= 0 or self._out_size > limits.reply_buffer:
                self._flush()
                if self._writable is not None:
                    waiter.set_result(None)  # the client is not reading: the task waits for it
                    return True
                if turn <= 0:
                    self._yield_turn()
                    return True

    def _yield_turn(self) -> None:
        """Give the other connections the loop: stop reading this one and
        answer the rest of what it sent on the loop's next turn."""
        self._yielding = True
        assert self.transport is not None
        if not self._paused:
            self.transport.pause_reading()
        asyncio.get_running_loop().call_soon(self._next_turn)

    def _next_turn(self) -> None:
        self._yielding = False
        transport = self.transport
        if transport is None or self._lost:
            return
        if self._answer_inline():
            if self._yielding:
                return  # another turn, reading still paused
            waiter = self._wake
            if waiter is not None and not waiter.done():
                # Answered up to the end of what was read: read more.
                if not self._paused and not transport.is_closing():
                    transport.resume_reading()
                return
        # The task takes over: reading stays paused until it waits for input.
        self._paused = True
        self._wakeup()

    # -- STARTTLS -------------------------------------------------------------------

    async def start_tls(self) -> None:
        """After the 220 to STARTTLS (the core offered it: we have a context),
        the handshake (RFC 3207 4). A failed one ends the connection."""
        context = self.config.tls_context
        assert context is not None
        self.reply(READY_FOR_TLS)
        self._flush()
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        # From here on data_received only sees what comes through TLS: the
        # plaintext pipelined after STARTTLS was already dropped by the core.
        self._after_handshake = []
        # No read until start_tls has put the TLS layer in our place (it
        # resumes reading then): the client's ClientHello may come before
        # start_tls runs (on uvloop it did, in one connection of two), and it
        # would reach us instead of the TLS layer, which then waited for ever.
        self.transport.pause_reading()
        try:
            transport = await asyncio.wait_for(
                loop.start_tls(self.transport, self, context, server_side=True),
                self.limits.server_idle_timeout,
            )
        except (ssl.SSLError, OSError, asyncio.TimeoutError) as err:
            log.info("TLS handshake with %s failed: %s", self.info.peer, err)
            raise _Gone from None
        if transport is None:
            raise _Gone
        self.transport = transport
        transport.set_write_buffer_limits(high=self.limits.reply_buffer)
        self.core.tls_established()
        early, self._after_handshake = self._after_handshake, None
        for data in early:
            self.core.receive_data(data)
        self.policy.secured(transport.get_extra_info("ssl_object"), implicit=False)

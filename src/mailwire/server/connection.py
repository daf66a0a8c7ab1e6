"""One client connection: an asyncio ``Protocol`` pumping the core and a session.

Bytes go straight from ``data_received`` into the sans-I/O ``ServerConnection``
(no ``StreamReader``, no per-line Python work: the core finds lines and the end
of data with ``bytes.find``), and one task per connection takes events out,
asks the backend session, and answers. Replies to pipelined commands are
collected and written together when the core needs more input, so a client
pipelining a whole transaction gets its replies in one segment.

The connection never holds unbounded memory: reading pauses while the core has
more than ``limits.receive_buffer`` octets unread, and once the replies a
client has not read pass ``limits.reply_buffer`` (ours and the transport's),
reading stops until it reads them; if it does not within the timeout it is
dropped. Exceptions from the backend other than ``SMTPError`` become
``451 4.3.0``, are logged, and the session goes on.

A slot cannot be held for free. Timeouts are deadlines, not idle timers: a
command line must be complete ``server_idle_timeout`` after the server was
ready for it, and a message's content (DATA, or every BDAT chunk of one
message) starts with ``server_data_timeout`` and earns more only at
``min_data_rate`` octets a second (Postfix's per-request deadline), so a
trickle of bytes re-arms nothing; a deadline passed is a 421. One
connection answers at most ``commands_per_turn`` commands before the event
loop serves the others (in ``data_received``: stop reading, resume with
``call_soon``). A failed AUTH is answered only after a delay that grows with
the client's failures (``asyncio.sleep``, so the loop never blocks, and the
commands pipelined behind it wait their turn).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar, cast

from ..deadline import Deadline
from ..flow import FlowControl
from ..errors import RemoteProtocolError, SMTPError
from ..protocol.capabilities import Capabilities, format_ehlo_reply
from ..protocol.commands import challenge_reply
from ..protocol.events import (
    NEED_DATA, Auth, AuthResponse, Bdat, Closed, Data, Ehlo, EndOfData, Expn, Helo, Help, Lhlo, NeedData,
    Mail, MessageData, Noop, Quit, RawCommand, Rcpt, Rejected, Rset, StartTLS, Vrfy,
)
from ..protocol.extensions import mail_refusal, rcpt_refusal
from ..protocol.server import ServerConnection, ServerEvent, ServerState
from ..reading import BufferedReading
from ..reply import (
    AUTH_CANCELLED, AUTH_OK, BYE, CANNOT_VRFY, ENCRYPTION_REQUIRED, HELP, IDLE_TIMEOUT, LOCAL_ERROR,
    MESSAGE_ACCEPTED, NOT_IMPLEMENTED, OK, READY_FOR_TLS, RECIPIENT_OK, SENDER_OK, SHUTTING_DOWN,
    START_DATA, chunk_accepted, greeting, helo_accepted,
    SESSION_UNAVAILABLE, TLS_NOT_AVAILABLE, TOO_MANY_AUTH_FAILURES, TOO_MANY_CONNECTIONS, TOO_MANY_FROM_CLIENT,
    UNKNOWN_MECHANISM, Reply,
)
from ..sasl import Challenge, ServerMechanism, server_mechanism
from .envelope import Envelope, SessionInfo, TLSInfo
from .proxy_protocol import ProxyHeaderError, parse_proxy_header
from .session import AuthSession, LMTPSession, Session, VerifySession, inherited_steps

if TYPE_CHECKING:
    from .aio import SMTPServer

__all__ = ["SMTPConnection"]

T = TypeVar("T")
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
        "server", "config", "limits", "core", "info", "transport", "session", "task", "client_key",
        "_out", "_out_size", "_paused", "_lost", "_proxy_buffer", "_envelope",
        "_chunks", "_bdat_last", "_sasl", "_shutting_down", "_deadline", "_late", "_progressed",
        "_content", "_yielding", "_auth_failures", "_stash", "_inline_events", "_after_handshake",
        "_can_auth", "_caps_cache",
    )

    def __init__(self, server: "SMTPServer") -> None:
        self.server = server
        config = server.config
        self.config = config
        self.limits = config.limits
        self.core = ServerConnection(
            limits=config.limits, lmtp=config.lmtp, hostname=config.hostname,
            bare_line_endings=config.bare_line_endings, tls=config.implicit_tls,
        )
        self.info = SessionInfo(peer=None, hostname=config.hostname, lmtp=config.lmtp)
        self.transport: asyncio.Transport | None = None
        self.session: Session | None = None
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
        self._envelope: Envelope | None = None
        self._chunks: list[bytes] = []
        self._bdat_last = False
        self._sasl: ServerMechanism | None = None
        self._shutting_down = False
        self._deadline = Deadline(self._expired)
        self._late = False  # the deadline passed while the task was not waiting
        self._progressed = True  # a whole command handled since the last wait
        self._content = False  # inside a message's content: its deadline runs
        self._yielding = False  # the inline path gave the loop a turn (reading paused)
        self._auth_failures = 0
        self._stash: ServerEvent | None = None  # an event taken inline, for the task
        self._inline_events: frozenset[type] = frozenset()
        self._after_handshake: list[bytes] | None = None
        self._can_auth = False  # the session implements AuthSession (checked once)
        self._caps_cache: tuple[bool, Capabilities] | None = None

    # -- the asyncio protocol -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not an isinstance check: uvloop's transports have every
        # method of asyncio.Transport without deriving from it.
        transport = cast(asyncio.Transport, transport)
        if self._proxy_buffer is not None and not self.config.proxy_trusted(transport.get_extra_info("peername")):
            # A PROXY header would let this peer name any client it likes:
            # closed unread and unanswered, as a connection with a bad header.
            log.warning("closing a connection from %s: not a trusted PROXY protocol peer (proxy_from)",
                        transport.get_extra_info("peername"))
            transport.close()
            self._lost = True
            return
        if not self.server.admit(self):
            # Refused at accept (RFC 5321 3.8): say why, read nothing.
            transport.write(TOO_MANY_CONNECTIONS.wire)
            transport.close()
            self._lost = True
            return
        self.transport = transport
        self.info.peer = transport.get_extra_info("peername")
        if not self.config.proxy_protocol and not self.server.admit_client(
            self, self.server.clients.key(self.info.peer)
        ):
            # Behind a PROXY header the peer is the proxy: counted in _run, once
            # the header has named the client.
            transport.write(TOO_MANY_FROM_CLIENT.wire)
            transport.close()
            self._lost = True
            return
        self.info.local = transport.get_extra_info("sockname")
        # Replies a client has not read: past this, pause_writing stops reading it.
        transport.set_write_buffer_limits(high=self.limits.reply_buffer)
        if self.config.implicit_tls:
            self._note_tls(implicit=True)
        self.task = asyncio.get_running_loop().create_task(self._run())

    def data_received(self, data: bytes) -> None:
        if self.transport is None:
            return
        if self._proxy_buffer is not None:
            self._proxy_buffer += data
        elif self._after_handshake is not None:
            # Decrypted bytes that beat our own resumption after the TLS
            # handshake: the client's new EHLO. Kept for tls_started().
            self._after_handshake.append(data)
        else:
            self.core.receive_data(data)
            if self._content:
                self._earn(len(data))
            if self._yielding:
                return  # the next turn answers it
            if self._inline_events and self._answer_inline():
                # Consumed up to the last whole line, or up to an event handed
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
        self._deadline.cancel()
        self._release_waiters()
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

    def _reply(self, reply: Reply) -> None:
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
        once the deadline passes, the current one (see _next_deadline) or,
        if given, ``timeout`` from now. Usually a bare future: no coroutine
        frame is kept per waiting connection."""
        if self._lost:
            raise _Gone
        if self._shutting_down and not self._mid_message():
            raise _ShuttingDown
        self._flush()
        if self._writable is not None:
            return self._wait_drained(timeout)
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        if timeout is None:
            self._next_deadline()
            if self._late:
                raise _Timeout
        else:
            self._arm(timeout)
        # Not cleared after: whoever resolves it checks done() first.
        self._wake = waiter = asyncio.get_running_loop().create_future()
        return waiter

    async def _wait_drained(self, timeout: float | None) -> None:
        await self._drained(self._timeout())
        await self._wait(timeout)

    def _arm(self, timeout: float) -> None:
        self._late = False
        self._deadline.arm(timeout)

    def _next_deadline(self) -> None:
        """Before each wait for the client. The deadline moves for progress
        only: a command handled (the next line gets the idle timeout whole),
        the start of a message's content (the data timeout), octets of
        content (``_earn``). Partial lines and junk bytes move nothing."""
        if self._progressed:
            self._progressed = False
            if not self._content:
                self._arm(self.limits.server_idle_timeout)
        if not self._content and self.core.receiving_content:
            self._start_content()  # the octets of a refused BDAT chunk, swallowed

    def _start_content(self) -> None:
        """A message's content begins (354 to DATA, its first BDAT)."""
        if not self._content:
            self._content = True
            self._arm(self.limits.server_data_timeout)

    def _earn(self, octets: int) -> None:
        """Content read: Postfix's smtpd_min_data_rate credit, capped at the
        data timeout from now (min_data_rate 0: every read re-arms it)."""
        rate = self.limits.min_data_rate
        limit = self.limits.server_data_timeout
        self._deadline.extend(octets / rate if rate else limit, limit)

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

    def _mid_message(self) -> bool:
        """Is a message's content arriving? In DATA, in a BDAT chunk, or
        between BDAT chunks (the client has not sent LAST yet): a stopping
        server lets it finish for its grace rather than cutting it off."""
        return self.core.receiving_content or self.core.state is ServerState.CHUNKING

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
            self._late = True

    async def _call(self, step: Awaitable[Any]) -> Reply | None:
        """Run a backend step: None if it went through, else the reply refusing it."""
        try:
            await step
        except SMTPError as err:
            return err.reply
        except Exception:
            log.exception("backend error for %s", self.info.peer)
            return LOCAL_ERROR
        return None

    # -- the session --------------------------------------------------------------

    async def _run(self) -> None:
        """The connection's task: from the greeting to the close. The loop
        over the core's events is written out here rather than in a
        coroutine of its own, so that an idle connection is this one frame
        awaiting a future (thousands of them are held at once)."""
        if not await self._open():
            return
        assert self.session is not None
        core = self.core
        limits = self.limits
        try:
            self._reply(greeting(self.config.hostname, self.config.greeting))
            turn = 0  # events handled since the task last gave the loop away
            while True:
                event: ServerEvent | NeedData
                if self._stash is not None:
                    event, self._stash = self._stash, None  # taken by _answer_inline
                else:
                    event = core.next_event()
                if event is NEED_DATA:
                    turn = 0
                    await self._wait()
                    continue
                assert not isinstance(event, NeedData)
                if not await self._step(event):
                    break
                turn += 1
                if turn >= limits.commands_per_turn or self._out_size > limits.reply_buffer:
                    await self._breathe(turn >= limits.commands_per_turn)
                    turn = 0
        except _Timeout:
            self._reply(IDLE_TIMEOUT)  # a 421 may answer anything, any time
        except _ShuttingDown:
            self._reply(SHUTTING_DOWN)
        except asyncio.CancelledError:
            if self._shutting_down and self.core.state is not ServerState.CLOSED:
                # The server's grace ran out mid-message (or in a backend
                # step): the client hears why before the close, at once,
                # whatever the session's clean-up below may take.
                self._reply(SHUTTING_DOWN)
                self._flush()
            raise
        except (_Gone, ConnectionError):
            pass
        except Exception:
            log.exception("connection with %s failed", self.info.peer)
        finally:
            if self._envelope is not None:
                await self._call(self.session.reset())
            await self._call(self.session.close())
            self._close()

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
            self.session = await self.server.backend.new_session(self.info)
            self._can_auth = isinstance(self.session, AuthSession)
            self._inline_events = self._inline_kinds()
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
        self._deadline.cancel()
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
            self._arm(self._timeout())

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

    def _timeout(self) -> float:
        limits = self.limits
        return limits.server_data_timeout if self.core.receiving_content else limits.server_idle_timeout

    async def _step(self, event: ServerEvent) -> bool:
        """Handle one event; False once the session is over."""
        if isinstance(event, MessageData):
            self._chunks.append(event.data)
            return True
        if isinstance(event, Closed):
            return False
        self._progressed = True
        await self._dispatch(event)
        if self._abandoned():
            assert self.session is not None
            await self._call(self.session.reset())
        return self.core.state is not ServerState.CLOSED

    def _abandoned(self) -> bool:
        """Did the transaction just end without a delivery (RSET, EHLO, a
        refusal)? Then it is forgotten here and the session must be reset."""
        if self._envelope is None or self.core.in_transaction:
            return False
        self._envelope = None
        self._chunks.clear()
        self._content = False
        return True

    def _step_inline(self, event: ServerEvent) -> bool:
        """``_step`` for an event of ``_inline_events``, run to completion
        here: the same handler, without two coroutine layers around it."""
        if type(event) is MessageData:
            self._chunks.append(event.data)
            return True
        self._progressed = True
        _complete(_HANDLERS[type(event)](self, event))
        if self._abandoned():
            assert self.session is not None
            _complete(self._call(self.session.reset()))
        return self.core.state is not ServerState.CLOSED

    # -- answering in data_received -------------------------------------------------
    #
    # Waking the connection's task costs more than answering most commands.
    # While the task waits for input and the next events need nothing that
    # can suspend (our own replies, and session methods that are
    # BaseSession's no-ops), they are answered right in data_received; the
    # first event that may suspend is handed to the task, which runs every
    # backend call (so backends always run inside a task, as asyncio expects).

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
                self._next_deadline()
                return True
            assert not isinstance(event, NeedData)
            if type(event) not in self._inline_events:
                self._stash = event
                waiter.set_result(None)
                return True
            try:
                if not self._step_inline(event):
                    waiter.set_result(None)  # the session is over: the task closes it
                    return True
            except BaseException as err:
                waiter.set_exception(err)  # raised in the task, where it waits
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

    def _inline_kinds(self) -> frozenset[type]:
        """The events this session's methods let us answer without the task
        (one shared set per answer: a connection keeps no copy of its own)."""
        kinds = {Ehlo, Helo, Lhlo, Data, Bdat, Noop, Help, Expn, RawCommand, MessageData, Rejected, Rset}
        if getattr(self.session, "runs_inline", False) and not self.config.lmtp:
            # The session says its methods never wait (BaseSession.runs_inline).
            kinds |= {Mail, Rcpt, EndOfData}
        else:
            inherited = inherited_steps(self.session)
            if "reset" not in inherited:
                return _NO_KINDS
            if "mail" in inherited:
                kinds.add(Mail)
                if "rcpt" in inherited:
                    kinds.add(Rcpt)
        found = frozenset(kinds)
        return _INLINE_KINDS.setdefault(found, found)

    async def _dispatch(self, event: ServerEvent) -> None:
        handler = _HANDLERS.get(type(event))
        if handler is None:
            self._reply(NOT_IMPLEMENTED)
            return
        await handler(self, event)

    # -- commands -----------------------------------------------------------------

    async def _hello(self, event: Ehlo | Helo | Lhlo) -> None:
        self.info.helo_name = event.name
        self.info.esmtp = not isinstance(event, Helo)
        if isinstance(event, Helo):
            self._reply(helo_accepted(self.config.hostname))
            return
        keywords = self.config.keywords(tls=self.core.tls, auth=self._auth_capable())
        self._reply(format_ehlo_reply(self.config.hostname, keywords))

    def _auth_capable(self) -> bool:
        return self._can_auth

    def _caps(self) -> Capabilities:
        """What EHLO advertised in the current TLS state (computed once per state)."""
        tls = self.core.tls
        if self._caps_cache is None or self._caps_cache[0] != tls:
            self._caps_cache = (tls, self.config.capabilities(tls=tls, auth=self._can_auth))
        return self._caps_cache[1]

    async def _mail(self, event: Mail) -> None:
        refusal = mail_refusal(event, self._caps(), tls=self.core.tls)
        if refusal is None:
            assert self.session is not None
            refusal = await self._call(self.session.mail(event.address, event.options))
        if refusal is not None:
            self._reply(refusal)
            return
        self._envelope = Envelope(event.address, event.options, session=self.info)
        self._chunks.clear()
        self._reply(SENDER_OK)

    async def _rcpt(self, event: Rcpt) -> None:
        envelope = self._envelope
        assert envelope is not None and self.session is not None
        refusal = rcpt_refusal(event, self._caps(), smtputf8=envelope.mail_options.smtputf8)
        if refusal is None:
            refusal = await self._call(self.session.rcpt(event.address, event.options))
        if refusal is not None:
            self._reply(refusal)
            return
        envelope.rcpt_to.append(event.address)
        envelope.rcpt_options.append(event.options)
        self._reply(RECIPIENT_OK)

    async def _data(self, event: Data) -> None:
        self._bdat_last = True
        self._start_content()
        self._reply(START_DATA)

    async def _bdat(self, event: Bdat) -> None:
        # No reply yet: the chunk's octets come first, then EndOfData or Rejected.
        # All the chunks of one message are one content phase, one deadline.
        self._bdat_last = event.last
        self._start_content()

    async def _end_of_data(self, event: EndOfData) -> None:
        if self._bdat_last:
            self._content = False  # the message is whole: commands again
        if not self._bdat_last:
            size = sum(len(c) for c in self._chunks)
            self._reply(chunk_accepted(size))
            return
        envelope = self._envelope
        assert envelope is not None and self.session is not None
        envelope.content = b"".join(self._chunks)
        self._chunks.clear()
        self._envelope = None  # delivered (or refused): not an abandoned transaction
        if self.config.lmtp:
            await self._deliver_lmtp(envelope)
            return
        refusal = await self._call(self.session.data(envelope))
        self._reply(refusal or MESSAGE_ACCEPTED)

    async def _deliver_lmtp(self, envelope: Envelope) -> None:
        """RFC 2033 4.2: one reply per accepted recipient, in order."""
        session = self.session
        replies: list[Reply]
        if isinstance(session, LMTPSession):
            try:
                outcomes = list(await session.deliver(envelope))
                if len(outcomes) != len(envelope.rcpt_to):
                    raise ValueError(f"deliver() gave {len(outcomes)} outcomes for {len(envelope.rcpt_to)} recipients")
                replies = [MESSAGE_ACCEPTED if o is None else o.reply for o in outcomes]
            except SMTPError as err:
                replies = [err.reply] * len(envelope.rcpt_to)
            except Exception:
                log.exception("backend error for %s", self.info.peer)
                replies = [LOCAL_ERROR] * len(envelope.rcpt_to)
        else:
            assert session is not None
            refusal = await self._call(session.data(envelope))
            replies = [refusal or MESSAGE_ACCEPTED] * len(envelope.rcpt_to)
        for reply in replies:
            self._reply(reply)

    async def _rejected(self, event: Rejected) -> None:
        # The core decided the reply; if it ended the transaction, _step
        # forgets the envelope and its content.
        self._content = False
        self._reply(event.reply)

    async def _rset(self, event: Rset) -> None:
        self._reply(OK)

    async def _noop(self, event: Noop) -> None:
        self._reply(OK)

    async def _quit(self, event: Quit) -> None:
        self._reply(BYE)  # the core is now closed: _run stops

    async def _vrfy(self, event: Vrfy) -> None:
        session = self.session
        if isinstance(session, VerifySession):
            try:
                reply = await session.verify(event.argument)
            except SMTPError as err:
                reply = err.reply
            except Exception:
                log.exception("backend error for %s", self.info.peer)
                reply = LOCAL_ERROR
            self._reply(reply)
        else:
            self._reply(CANNOT_VRFY)

    async def _expn(self, event: Expn) -> None:
        self._reply(NOT_IMPLEMENTED)

    async def _help(self, event: Help) -> None:
        self._reply(HELP)

    async def _raw(self, event: RawCommand) -> None:
        self._reply(NOT_IMPLEMENTED)

    async def _starttls(self, event: StartTLS) -> None:
        context = self.config.tls_context
        if context is None:
            self._reply(TLS_NOT_AVAILABLE)
            return
        self._reply(READY_FOR_TLS)
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
        self.core.tls_started()
        early, self._after_handshake = self._after_handshake, None
        for data in early:
            self.core.receive_data(data)
        self._note_tls(implicit=False)
        self.info.helo_name = None
        self.info.auth_identity = self.info.auth_mechanism = None

    def _note_tls(self, *, implicit: bool) -> None:
        assert self.transport is not None
        obj = self.transport.get_extra_info("ssl_object")
        if obj is None:
            return
        cipher = obj.cipher()
        self.info.tls = TLSInfo(
            version=obj.version() or "", cipher=cipher[0] if cipher else "",
            bits=cipher[2] if cipher else 0, peer_certificate=obj.getpeercert() or None,
            implicit=implicit,
        )

    async def _auth(self, event: Auth) -> None:
        if not self._auth_capable() or not self.config.auth_mechanisms:
            self._reply(NOT_IMPLEMENTED)
            return
        if not (self.core.tls or self.config.allow_plaintext_auth):
            self._reply(ENCRYPTION_REQUIRED)
            return
        if self.server.clients.auth_refused(self.client_key):
            # This address spent its failure budget: no more guesses until
            # its window ends (the 421 closes the connection).
            log.debug("AUTH from %s refused: too many failures", self.info.peer)
            self._reply(TOO_MANY_AUTH_FAILURES)
            return
        offered = [m.upper() for m in self.config.auth_mechanisms]
        mechanism = server_mechanism(event.mechanism, self.config.hostname) if event.mechanism in offered else None
        if mechanism is None:
            self._reply(UNKNOWN_MECHANISM)
            return
        self._sasl = mechanism
        await self._sasl_step(event.initial)

    async def _auth_response(self, event: AuthResponse) -> None:
        if event.data is None or self._sasl is None:
            self._sasl = None
            self._reply(AUTH_CANCELLED)
            return
        await self._sasl_step(event.data)

    async def _sasl_step(self, data: bytes | None) -> None:
        mechanism = self._sasl
        assert mechanism is not None
        try:
            step = mechanism.step(data)
        except RemoteProtocolError as err:
            self._sasl = None
            self._reply(err.reply)
            return
        if isinstance(step, Challenge):
            self._reply(challenge_reply(step.data))
            return
        self._sasl = None
        session = self.session
        assert isinstance(session, AuthSession)
        refusal = await self._call(session.authenticate(step))
        if refusal is None:
            self.info.auth_identity = step.username
            self.info.auth_mechanism = step.mechanism
            log.info("%s authenticated as %s (%s)", self.info.peer, step.username, step.mechanism)
        elif refusal.code >= 500:
            await self._auth_failed(step.username)
        self._reply(refusal or AUTH_OK)

    async def _auth_failed(self, username: str) -> None:
        """The credentials were refused: count it for this connection and the
        client's address, and answer only after a delay that grows with the
        count (a sleep: the loop serves everyone else meanwhile, and what the
        client pipelined behind waits its turn)."""
        self._auth_failures += 1
        clients = self.server.clients
        failures = max(self._auth_failures, clients.auth_failed(self.client_key))
        host = self.client_key or _host(self.info.peer)
        if clients.auth_log(host):
            budget = self.limits.auth_failures if self.client_key is not None else 0
            log.warning(
                "AUTH refused for %r from %s; its failures in the next %gs are counted, not logged%s",
                username, host, self.limits.auth_failure_window,
                f" (past {budget}, AUTH from there is refused)" if budget else "",
            )
        else:
            log.debug("AUTH refused for %r from %s (failure %d)", username, host, failures)
        delay = failures * self.limits.auth_failure_delay
        if delay > 0:
            await asyncio.sleep(delay)


def _host(peer: object) -> str:
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return str(peer) if peer else "local"


_NO_KINDS: frozenset[type] = frozenset()
_INLINE_KINDS: dict[frozenset[type], frozenset[type]] = {}


def _complete(step: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that must not suspend (an inline step) to its end."""
    try:
        step.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    step.close()  # cannot happen: nothing inline awaits anything that suspends
    raise RuntimeError("an inline step suspended")


_HANDLERS: dict[type, Any] = {
    Ehlo: SMTPConnection._hello,
    Helo: SMTPConnection._hello,
    Lhlo: SMTPConnection._hello,
    Mail: SMTPConnection._mail,
    Rcpt: SMTPConnection._rcpt,
    Data: SMTPConnection._data,
    Bdat: SMTPConnection._bdat,
    EndOfData: SMTPConnection._end_of_data,
    Rejected: SMTPConnection._rejected,
    Rset: SMTPConnection._rset,
    Noop: SMTPConnection._noop,
    Quit: SMTPConnection._quit,
    Vrfy: SMTPConnection._vrfy,
    Expn: SMTPConnection._expn,
    Help: SMTPConnection._help,
    RawCommand: SMTPConnection._raw,
    StartTLS: SMTPConnection._starttls,
    Auth: SMTPConnection._auth,
    AuthResponse: SMTPConnection._auth_response,
}

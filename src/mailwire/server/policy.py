"""The session driver: the backend's answer to each event the core hands out.

The core (``protocol/server.py``) has already refused whatever the protocol
decides; what reaches ``SessionPolicy.handle`` is in sequence and within
what the server offers, so what is left is policy: ask the backend's session
(MAIL, RCPT, the message, VRFY; credentials are ``auth.py``'s), keep the
envelope, and say the reply. Every event has one method here, found through
``_HANDLERS``.

A message's content comes as chunks (``take``): kept for a session that
wants it whole, or handed on as they come to one that streams it
(``streaming.py``), whose ``data_stream`` runs in a task of its own from the
first chunk and is awaited at the end; a message that does not end whole
(``ContentRefused``, RSET, the client gone) is aborted and its consumer
awaited before the refusal is heard or the session reset.

A session step is a plain function or a coroutine function (see
``session.py``), and the driver does not know which before calling it:
``ask`` calls the step and, if it returned nothing to await, answers at once;
if it returned an awaitable, ``ask`` returns a ``Wait`` holding it and the
method that answers with its outcome, which the connection's task awaits
(``SMTPConnection._complete``). Handlers are therefore plain methods that
return ``None`` (done) or a ``Wait`` (done once the task has awaited it): a
command the backend answers at once never wakes the connection's task, and
no coroutine is ever driven by hand.

Exceptions from the backend other than ``SMTPError`` become ``451 4.3.0``,
are logged, and the session goes on.

Injected failures (``ServerConfig.chaos``, ``chaos.py``) are asked here,
before the backend, for the greeting, MAIL, RCPT and the message
(``injected``; AUTH in ``auth.py``): a fault that fires is the answer, and
the backend never hears of that command (a message refused so is dropped as
one the core refused, and the session reset).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, Optional

from ..errors import SMTPError
from ..protocol.events import (
    AuthChallenge, Bdat, Closed, ContentRefused, Credentials, Data, Ehlo, EndOfChunk, EndOfMessage, Expn, Helo,
    Help, Lhlo, Mail, MessageData, Noop, Quit, RawCommand, Rcpt, Rejected, Rset, StartTLS, Vrfy,
)
from ..protocol.server import ServerEvent
from ..reply import (
    BYE, CANNOT_VRFY, HELP, LOCAL_ERROR, MESSAGE_ACCEPTED, NOT_IMPLEMENTED, OK, RECIPIENT_OK, SENDER_OK,
    START_DATA, Reply, chunk_accepted,
)
from .auth import judge
from .envelope import Envelope, TLSInfo, keep_head
from .session import AuthSession, Backend, LMTPSession, Session, VerifySession
from .streaming import LMTPStreamingSession, MessageAborted, MessageContent, StreamingSession

if TYPE_CHECKING:
    from .connection import SMTPConnection

__all__ = ["SessionPolicy", "Wait", "Pending"]

log = logging.getLogger("mailwire.server")

Answer = Callable[[Any, Any], "Pending"]


class Wait:
    """An awaitable a step leaves for the connection's task, and what follows.

    The task awaits ``step``; an exception is turned into an outcome by
    ``refuse`` (a backend's: its refusal) or, without one, raised. Then
    ``then(event, outcome)``, if given, answers, and may leave another Wait.
    """

    __slots__ = ("step", "then", "event", "refuse")

    def __init__(
        self,
        step: Awaitable[Any],
        then: Answer | None = None,
        event: Any = None,
        refuse: Callable[[Exception], Any] | None = None,
    ) -> None:
        self.step = step
        self.then = then
        self.event = event
        self.refuse = refuse

    async def run(self) -> None:
        """Await it, and every Wait that follows from it (in the task)."""
        wait: Wait | None = self
        while wait is not None:
            if wait.refuse is None:
                outcome = await wait.step
            else:
                try:
                    outcome = await wait.step
                except Exception as err:
                    outcome = wait.refuse(err)
            wait = wait.then(wait.event, outcome) if wait.then is not None else None

    def close(self) -> None:
        """The connection ended before the task got to it: never awaited."""
        if isinstance(self.step, Coroutine):
            self.step.close()


Pending = Optional[Wait]


def _ignore(event: object, outcome: object) -> Pending:
    return None


# How a streaming session is asked for a message: data_stream or deliver_stream.
StreamStep = Callable[[Envelope, MessageContent], Any]


class _Streamed:
    """A message being handed to a streaming session: its content, and the
    task in which the session consumes it.

    The task starts once the loop runs again, not at the first chunk: a
    message that ends within the read that began it (most small ones) is
    consumed in the connection's own task instead (``claim``), without a
    task of its own and the wake-ups between two tasks, a twentieth of the
    server's CPU for a 1 KB message stored in a Maildir."""

    __slots__ = ("content", "consumer", "envelope", "heading", "_step", "_claimed")

    def __init__(self, step: StreamStep, envelope: Envelope, limit: int) -> None:
        self.content = MessageContent(limit)
        self.envelope = envelope
        self.heading = True  # its envelope's head is being kept
        self._step = step
        self._claimed = False  # consumed (or dropped) without a task
        self.consumer: asyncio.Future[Any] | None = None
        asyncio.get_running_loop().call_soon(self.start)

    def start(self) -> asyncio.Future[Any] | None:
        """The session consumes the message in a task of its own (unless
        the connection has claimed it)."""
        if self.consumer is None and not self._claimed:
            try:
                self.consumer = asyncio.ensure_future(self._step(self.envelope, self.content))
            except Exception as err:  # raised at once, or returned nothing to await
                self.consumer = asyncio.get_running_loop().create_future()
                self.consumer.set_exception(err)
            self.consumer.add_done_callback(self._done)
        return self.consumer

    def claim(self) -> None:
        """The message is whole: if no task has started on it, none will;
        ``outcome`` consumes it in the caller's task."""
        self._claimed = True

    async def outcome(self) -> Any:
        """What the session answers for the whole message (once claimed)."""
        if self.consumer is not None:
            return await self.consumer
        try:
            return await self._step(self.envelope, self.content)
        finally:
            self.content.consumer_done()

    def drop(self) -> None:
        """The connection is cancelled: no session starts on this message,
        and one consuming it is cancelled."""
        self._claimed = True
        self.content.abort()
        if self.consumer is not None:
            self.consumer.cancel()

    def _done(self, consumer: asyncio.Future[Any]) -> None:
        self.content.consumer_done()
        if not consumer.cancelled():
            consumer.exception()  # retrieved: whoever awaits it reports it

    async def settle(self, peer: object) -> None:
        """Abort the message and wait for the session to let go of it."""
        self.content.abort()
        consumer = self.start()
        if consumer is None:
            return  # claimed: the connection's own task consumed it
        try:
            await asyncio.wait((consumer,))
        except asyncio.CancelledError:
            consumer.cancel()
            raise
        err = None if consumer.cancelled() else consumer.exception()
        if err is not None and not isinstance(err, (MessageAborted, SMTPError)):
            log.error("backend error for %s while dropping a message", peer, exc_info=err)


class SessionPolicy:
    """One connection's session, and the answers it gives."""

    # One per connection, thousands at once: no __dict__.
    __slots__ = (
        "conn", "core", "config", "info", "reply", "session", "envelope", "chunks", "auth_failures",
        "streaming", "per_recipient", "streamed",
    )

    def __init__(self, conn: SMTPConnection) -> None:
        self.conn = conn
        # Answers what the core handed out (the connection writes it).
        self.reply: Callable[[Reply], None] = conn.reply
        self.core = conn.core
        self.config = conn.config
        self.info = conn.info
        self.session: Session | None = None
        # The transaction under way: its envelope, and its content so far.
        self.envelope: Envelope | None = None
        self.chunks: list[bytes] = []
        self.auth_failures = 0  # this connection's, for auth.py
        # How the session takes a message (set by open): streamed, through
        # this step, or whole (None); one outcome per recipient (LMTP) or one.
        self.streaming: StreamStep | None = None
        self.per_recipient = False
        self.streamed: _Streamed | None = None  # the message being streamed

    def secured(self, ssl_object: Any, *, implicit: bool) -> None:
        """The connection is encrypted now; after STARTTLS the session starts
        afresh (RFC 3207 4.2): no greeting, no authentication."""
        if ssl_object is not None:
            self.info.tls = TLSInfo.of(ssl_object, implicit=implicit)
        if not implicit:
            self.info.helo_name = None
            self.info.auth_identity = self.info.auth_mechanism = None

    async def open(self, backend: Backend) -> None:
        """The backend's session for this connection (SMTPError refuses it),
        and so what the core offers: AUTH if something can check credentials
        (the server's authenticator, or the session itself)."""
        peer = self.info.peer
        refusal = self.injected("connect", str(peer[0]) if isinstance(peer, tuple) and peer else "")
        if refusal is not None:
            raise SMTPError(refusal)
        session = self.session = await backend.new_session(self.info)
        can_auth = self.config.authenticator is not None or isinstance(session, AuthSession)
        self.core.advertise(self.config.extensions(auth=can_auth))
        # The forms a session takes a message in, in order (see streaming.py).
        lmtp = self.core.lmtp
        if lmtp and isinstance(session, LMTPStreamingSession):
            self.streaming, self.per_recipient = session.deliver_stream, True
        elif lmtp and isinstance(session, LMTPSession):
            self.per_recipient = True
        elif isinstance(session, StreamingSession):
            self.streaming = session.data_stream

    def handle(self, event: ServerEvent) -> Pending:
        """Answer ``event`` (not MessageData nor Closed, which the connection
        keeps or ends on): None once answered, or the Wait to complete."""
        return _HANDLERS.get(type(event), SessionPolicy._not_implemented)(self, event)

    # -- asking the backend -------------------------------------------------------

    def ask(self, answer: Answer, event: Any, step: Callable[..., Any], *args: Any) -> Pending:
        """Call a backend step and ``answer(event, outcome)``: the outcome is
        what the step returned, or the reply refusing it (its SMTPError's;
        451 4.3.0 for any other exception). A plain step has run, and been
        answered, when this returns; an async one is left to the task."""
        try:
            outcome = step(*args)
        except Exception as err:
            outcome = self.refusal(err)
        else:
            if outcome is not None and isinstance(outcome, Awaitable):
                return Wait(outcome, answer, event, self.refusal)
        return answer(event, outcome)

    def injected(self, stage: str, *subjects: str) -> Reply | None:
        """The reply of a fault injected at ``stage`` (see ``chaos.py``), if one fires."""
        chaos = self.config.chaos
        return None if chaos is None else chaos.refusal(stage, *subjects)

    def refusal(self, err: Exception) -> Reply:
        if isinstance(err, SMTPError):
            return err.reply
        log.error("backend error for %s", self.info.peer, exc_info=err)
        return LOCAL_ERROR

    def later(self, delay: float, reply: Reply) -> Wait:
        """``reply``, once ``delay`` seconds have passed (in the task)."""
        return Wait(asyncio.sleep(delay), self._reply_now, reply)

    def _reply_now(self, reply: Reply, outcome: object) -> Pending:
        self.reply(reply)
        return None

    def abandon(self) -> Pending:
        """After each event: did the transaction end without a delivery
        (RSET, EHLO, a refusal)? Then it is forgotten and the session reset
        (once a message it was streaming is dropped)."""
        if self.envelope is None or self.core.in_transaction:
            return None
        self.envelope = None
        self.chunks.clear()
        if self.streamed is not None:
            return Wait(self._drop_stream(), self._reset)
        return self._reset(None, None)

    def _reset(self, event: object, outcome: object) -> Pending:
        assert self.session is not None
        return self.ask(_ignore, None, self.session.reset)

    async def _drop_stream(self) -> None:
        streamed = self.streamed
        if streamed is not None:
            await streamed.settle(self.info.peer)
            self.streamed = None

    def abort_stream(self) -> None:
        """The client is gone: a message being streamed will not end whole
        (and the connection must not wait for room its session may make)."""
        if self.streamed is not None:
            self.streamed.content.abort()

    def cancel_stream(self) -> None:
        """The connection is cancelled: so is a session consuming a message."""
        if self.streamed is not None:
            self.streamed.drop()

    async def finish(self) -> None:
        """The connection is over: drop a message being streamed, reset an
        open transaction, close the session."""
        session = self.session
        if session is None:
            return
        await self._drop_stream()
        for step in (session.reset, session.close) if self.envelope is not None else (session.close,):
            wait = self.ask(_ignore, None, step)
            if wait is not None:
                await wait.run()
        self.envelope = None

    # -- the events -----------------------------------------------------------------

    def _hello(self, event: Ehlo | Helo | Lhlo) -> Pending:
        self.info.helo_name = event.name
        self.info.esmtp = not isinstance(event, Helo)
        self.reply(self.core.hello_reply(event))
        return None

    def _mail(self, event: Mail) -> Pending:
        assert self.session is not None
        if self.config.chaos is not None:  # (asked inline: the per-command path pays no call without chaos)
            refusal = self.injected("mail", event.address)
            if refusal is not None:
                return self._mail_answered(event, refusal)
        return self.ask(self._mail_answered, event, self.session.mail, event.address, event.options)

    def _mail_answered(self, event: Mail, refusal: Reply | None) -> Pending:
        if refusal is not None:
            self.reply(refusal)
            return None
        self.envelope = Envelope(event.address, event.options, session=self.info)
        self.chunks.clear()
        self.reply(SENDER_OK)
        return None

    def _rcpt(self, event: Rcpt) -> Pending:
        assert self.session is not None
        if self.config.chaos is not None:
            refusal = self.injected("rcpt", event.address)
            if refusal is not None:
                return self._rcpt_answered(event, refusal)
        return self.ask(self._rcpt_answered, event, self.session.rcpt, event.address, event.options)

    def _rcpt_answered(self, event: Rcpt, refusal: Reply | None) -> Pending:
        if refusal is not None:
            self.reply(refusal)
            return None
        envelope = self.envelope
        assert envelope is not None
        envelope.rcpt_to.append(event.address)
        envelope.rcpt_options.append(event.options)
        self.reply(RECIPIENT_OK)
        return None

    def _data(self, event: Data) -> Pending:
        self.reply(START_DATA)
        return None

    def _bdat(self, event: Bdat) -> Pending:
        return None  # answered after the chunk's octets: EndOfChunk or EndOfMessage

    def _end_of_chunk(self, event: EndOfChunk) -> Pending:
        self.reply(chunk_accepted(self.core.message_size))
        return None

    # -- content ----------------------------------------------------------------

    def take(self, data: bytes) -> Pending:
        """A piece of the message: kept, for a session that wants it whole,
        or handed on to a streaming one; a Wait while that one lags behind
        (the connection reads no more from the client meanwhile)."""
        if self.streaming is None:
            self.chunks.append(data)
            return None
        streamed = self.streamed
        if streamed is None:
            assert self.envelope is not None
            streamed = self._stream(self.envelope)
        if streamed.heading:
            streamed.heading = not keep_head(streamed.envelope, data)
        room = streamed.content.put(data)
        return None if room is None else Wait(room, self._caught_up)

    def _stream(self, envelope: Envelope) -> _Streamed:
        """The session starts consuming the message, in a task of its own."""
        assert self.streaming is not None
        self.streamed = _Streamed(self.streaming, envelope, self.config.limits.receive_buffer)
        return self.streamed

    def _caught_up(self, event: object, outcome: object) -> Pending:
        self.conn.backend_caught_up()
        return None

    def _content_refused(self, event: ContentRefused) -> Pending:
        # Void at once; the Rejected at the end of the framing refuses it.
        self.chunks.clear()
        if self.streamed is not None:
            self.streamed.content.abort()
        return None

    def _end_of_message(self, event: EndOfMessage) -> Pending:
        envelope = self.envelope
        session = self.session
        assert envelope is not None and session is not None
        self.envelope = None  # delivered (or refused): not an abandoned transaction
        if self.config.chaos is not None:
            refusal = self.injected("data", envelope.mail_from, *envelope.rcpt_to)
            if refusal is not None:
                self.chunks.clear()
                return Wait(self._drop_stream(), self._injected_refusal, (envelope, refusal))
        answer = self._delivered_lmtp if self.per_recipient else self._delivered
        if self.streaming is not None:
            streamed = self.streamed or self._stream(envelope)  # an empty message: started at its end
            streamed.content.end()
            envelope.size = streamed.content.size
            streamed.claim()
            return Wait(self._outcome(streamed), answer, envelope, self.refusal)
        envelope.content = b"".join(self.chunks)
        envelope.size = len(envelope.content)
        self.chunks.clear()
        if self.per_recipient and isinstance(session, LMTPSession):
            return self.ask(answer, envelope, session.deliver, envelope)
        return self.ask(answer, envelope, session.data, envelope)

    async def _outcome(self, streamed: _Streamed) -> Any:
        """What the streaming session answered, once it has finished."""
        try:
            outcome = await streamed.outcome()
        finally:
            self.streamed = None
        if not streamed.content.complete:
            raise RuntimeError("a streaming session returned before the end of the message")
        if self.per_recipient or isinstance(outcome, Reply):  # a Reply: its own 2xx (see _delivered)
            return outcome
        return None

    def _injected_refusal(self, refused: tuple[Envelope, Reply], outcome: object) -> Pending:
        """A message refused by an injected fault: said (once if it is a 421,
        which closes), and the session reset, as it never saw the message."""
        envelope, refusal = refused
        if refusal.code == 421:
            self.reply(refusal)
        else:
            self._delivered(envelope, refusal)
        return self._reset(None, None)

    def _delivered(self, envelope: Envelope, outcome: Reply | None) -> Pending:
        """``outcome``: None (accepted), the Reply refusing the message, or a
        2xx Reply the session accepted it with (``250 2.0.0 queued as <id>``)."""
        if outcome is None or (isinstance(outcome, Reply) and outcome.code < 400):
            if self.config.on_delivered is not None:
                self._notify(envelope, envelope.rcpt_to)
            outcome = outcome or MESSAGE_ACCEPTED
        # LMTP (RFC 2033 4.2): one reply per accepted recipient, here all alike.
        for _ in range(len(envelope.rcpt_to) if self.core.lmtp else 1):
            self.reply(outcome)
        return None

    def _delivered_lmtp(self, envelope: Envelope, outcome: object) -> Pending:
        """RFC 2033 4.2: one reply per accepted recipient, in order."""
        count = len(envelope.rcpt_to)
        replies = [outcome] * count if isinstance(outcome, Reply) else self._outcomes(envelope, outcome)
        for reply in replies:
            self.reply(reply)
        return None

    def _outcomes(self, envelope: Envelope, outcome: Any) -> list[Reply]:
        count = len(envelope.rcpt_to)
        try:
            outcomes: list[SMTPError | None] = list(outcome)
            if len(outcomes) != count:
                raise ValueError(f"deliver() gave {len(outcomes)} outcomes for {count} recipients")
            replies = [MESSAGE_ACCEPTED if o is None else o.reply for o in outcomes]
        except Exception:
            log.exception("backend error for %s", self.info.peer)
            return [LOCAL_ERROR] * count
        self._notify(envelope, [r for r, o in zip(envelope.rcpt_to, outcomes) if o is None])
        return replies

    def _notify(self, envelope: Envelope, recipients: Sequence[str]) -> None:
        hook = self.config.on_delivered
        if hook is not None and recipients:
            try:
                hook(envelope, recipients)
            except Exception:
                log.exception("on_delivered failed for a message from %s", self.info.peer)

    def _decided(self, event: Rejected | AuthChallenge) -> Pending:
        # The core decided the reply; if a refusal ended the transaction,
        # abandon() forgets the envelope and its content.
        self.reply(event.reply)
        return None

    def _ok(self, event: Rset | Noop) -> Pending:
        self.reply(OK)
        return None

    def _quit(self, event: Quit) -> Pending:
        self.reply(BYE)  # the core is now closed: the connection ends
        return None

    def _vrfy(self, event: Vrfy) -> Pending:
        session = self.session
        if isinstance(session, VerifySession):
            return self.ask(self._verified, event, session.verify, event.argument)
        self.reply(CANNOT_VRFY)
        return None

    def _verified(self, event: Vrfy, reply: Reply) -> Pending:
        self.reply(reply)
        return None

    def _help(self, event: Help) -> Pending:
        self.reply(HELP)
        return None

    def _not_implemented(self, event: Expn | RawCommand) -> Pending:
        self.reply(NOT_IMPLEMENTED)
        return None

    def _starttls(self, event: StartTLS) -> Pending:
        return Wait(self.conn.start_tls())  # the handshake is I/O: the connection's

    def _credentials(self, event: Credentials) -> Pending:
        return judge(self, event)


_HANDLERS: dict[type, Callable[[SessionPolicy, Any], Pending]] = {
    Ehlo: SessionPolicy._hello,
    Helo: SessionPolicy._hello,
    Lhlo: SessionPolicy._hello,
    Mail: SessionPolicy._mail,
    Rcpt: SessionPolicy._rcpt,
    Data: SessionPolicy._data,
    Bdat: SessionPolicy._bdat,
    EndOfChunk: SessionPolicy._end_of_chunk,
    EndOfMessage: SessionPolicy._end_of_message,
    ContentRefused: SessionPolicy._content_refused,
    Rejected: SessionPolicy._decided,
    AuthChallenge: SessionPolicy._decided,
    Rset: SessionPolicy._ok,
    Noop: SessionPolicy._ok,
    Quit: SessionPolicy._quit,
    Vrfy: SessionPolicy._vrfy,
    Expn: SessionPolicy._not_implemented,
    Help: SessionPolicy._help,
    RawCommand: SessionPolicy._not_implemented,
    StartTLS: SessionPolicy._starttls,
    Credentials: SessionPolicy._credentials,
}
# MessageData and Closed never get here: the connection hands the one to
# take() and ends on the other.
assert MessageData not in _HANDLERS and Closed not in _HANDLERS

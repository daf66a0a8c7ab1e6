"""The client's dialogs, written once for every driver.

What to send and when to wait is the same whether the socket blocks or an event
loop runs it. So each dialog (greeting and EHLO, STARTTLS, AUTH, a batch of
mail transactions) is a generator that *yields I/O requests* — ``Write(events)``,
``Read(n)`` for the next replies, ``UPGRADE`` for the TLS handshake — and receives
the replies. The blocking client pumps it with a socket, the asyncio client
with streams; neither holds any protocol logic of its own.

Transactions are pipelined as far as the server allows:

* with PIPELINING and DATA, the envelope (MAIL, every RCPT, DATA) is one write,
  and the end of each message goes out in the same write as the next
  envelope (RFC 2920 3.1 lets content start a group), so a batch costs one
  round trip per message;
* with PIPELINING and CHUNKING, each transaction (envelope and BDAT chunks)
  is one write, and the next is written once its replies are in: one round
  trip per message too;
* without PIPELINING, one command at a time, as RFC 5321 requires.

RSET goes only after a transaction that was aborted (RFC 5321 4.1.1.5): a
completed one, its end of data answered, accepted or refused, leaves nothing
to reset (4.1.1.4). A refused DATA leaves the transaction open, and so does a
refused BDAT (RFC 3030 2: the state is then indeterminate until RSET). That
is also why BDAT transactions are not written ahead of the replies to the one
before: whatever follows a refused BDAT must start with RSET, so writing
ahead would need an RSET in front of every transaction, completed or not.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO, Literal, TypeVar, Union

from ..errors import (
    AuthenticationError, DataRefused, LocalProtocolError, MailwireError, RecipientsRefused,
    RemoteProtocolError, SenderRefused, SMTPError, TLSRequiredError,
)
from ..protocol.capabilities import Capabilities
from ..protocol.client import PreparedWrite, Sendable, prepare_write
from ..protocol.data import DotStuffer
from ..protocol.events import (
    Auth, AuthResponse, Bdat, Data, Ehlo, EndOfData, Helo, Lhlo, Mail, MessageData, Quit, Rcpt,
    Rset, StartTLS,
)
from ..protocol.params import MailOptions, RcptOptions
from ..reply import Reply
from ..sasl import ClientMechanism, choose_mechanism
from .result import SendResult

__all__ = [
    "Write", "Read", "UPGRADE", "Request", "Program", "Transaction",
    "command", "data", "hello", "starttls", "authenticate", "transactions", "open_session", "login",
    "Session", "TLSMode", "AuthArg", "leaves_connection_usable",
]

T = TypeVar("T")
CHUNK = 1 << 20  # content is written (and BDAT-framed) in pieces of 1 MiB


@dataclass(frozen=True, slots=True)
class Write:
    events: Sequence[Sendable] | PreparedWrite


@dataclass(slots=True)
class Read:
    """Read ``count`` replies; the driver sends back a tuple of them. Asking
    for a pipelined group's replies at once saves a driver round per reply.

    With ``then``, the group ends in DATA and ``then`` is the message content
    that follows it, formatted ahead: the driver writes it the moment the
    core says the replies allow it (``send_prepared_when_allowed``), before
    handing them back, so no dialog code runs between the 354 and the
    content going out; and sets ``written`` to say it did.
    """

    count: int = 1
    then: PreparedWrite | None = None
    written: bool = False


class _Upgrade:
    def __repr__(self) -> str:
        return "UPGRADE"


_NO_RCPT_OPTIONS = RcptOptions()
UPGRADE = _Upgrade()
Request = Union[Write, Read, _Upgrade]
Program = Generator[Request, Union[tuple[Reply, ...], None], T]


@dataclass(slots=True)
class Transaction:
    """One message to send, with its envelope, ready for the wire."""

    mail_from: str
    rcpt_to: Sequence[str]
    content: bytes | BinaryIO
    mail_options: MailOptions = field(default_factory=MailOptions)
    rcpt_options: Sequence[RcptOptions] = ()
    size: int = 0
    # Filled in as replies arrive.
    mail_reply: Reply | None = None
    rcpt_replies: dict[str, Reply] = field(default_factory=dict)
    final: dict[str, Reply] = field(default_factory=dict)
    data_reply: Reply | None = None
    settled: SendResult | SMTPError | None = None  # the outcome, once known for good
    # Aborted with the server still inside it (a refused DATA or BDAT): the
    # next command must be RSET (see the module docstring).
    needs_reset: bool = False

    def envelope(self) -> list[Sendable]:
        events: list[Sendable] = [Mail(self.mail_from, self.mail_options)]
        for i, rcpt in enumerate(self.rcpt_to):
            options = self.rcpt_options[i] if self.rcpt_options else _NO_RCPT_OPTIONS
            events.append(Rcpt(rcpt, options))
        return events

    def chunks(self) -> Iterator[bytes]:
        if isinstance(self.content, bytes) and len(self.content) <= CHUNK:
            if self.content:  # an empty message has no pieces at all
                yield self.content
            return
        if isinstance(self.content, (bytes, bytearray, memoryview)):
            view = memoryview(self.content)
            for start in range(0, len(view), CHUNK):
                yield bytes(view[start:start + CHUNK])
            return
        while True:
            piece = self.content.read(CHUNK)
            if not piece:
                return
            yield piece

    @property
    def accepted(self) -> list[str]:
        return [r for r, reply in self.rcpt_replies.items() if reply.is_positive]

    def outcome(self) -> SendResult | SMTPError:
        """The result, or the error that says why nothing was delivered."""
        assert self.mail_reply is not None
        if not self.mail_reply.is_positive:
            return SenderRefused(self.mail_reply, self.mail_from)
        accepted = self.accepted
        recipients = dict(self.rcpt_replies)
        for rcpt in accepted:
            decided = self.final.get(rcpt, self.data_reply)
            if decided is not None:
                recipients[rcpt] = decided
        result = SendResult(
            self.mail_from, recipients, self.mail_reply, self.rcpt_replies,
            self.data_reply, self.size,
        )
        if not accepted:
            return RecipientsRefused(result)
        if self.data_reply is not None and not self.data_reply.is_positive:
            return DataRefused(self.data_reply, result)
        if not result.accepted:
            return RecipientsRefused(result)
        return result


def leaves_connection_usable(error: BaseException) -> bool:
    """After ``error`` ended a dialog, may the connection be used again?

    Yes when nothing is left in flight: a command refused before it was sent
    (LocalProtocolError, TLSRequiredError) or a refusal the server answered
    (an SMTPError other than 421, which says it is closing). No for anything
    else — timeouts, cancellation, I/O and protocol errors — since a reply
    may still be on its way and would be read as the answer to another
    command.
    """
    if isinstance(error, (LocalProtocolError, TLSRequiredError)):
        return True
    return isinstance(error, SMTPError) and error.code != 421


def read_many(count: int) -> Program[tuple[Reply, ...]]:
    """The next ``count`` replies; a 421 means the server is closing: raise."""
    return (yield from read_group(Read(count)))


def read_group(request: Read) -> Program[tuple[Reply, ...]]:
    """The replies ``request`` asks for; a 421 means the server is closing: raise."""
    replies = yield request
    assert replies is not None
    for reply in replies:
        if reply.code == 421:
            raise SMTPError(reply)
    assert len(replies) == request.count
    return replies


def read() -> Program[Reply]:
    """The next reply; a 421 means the server is closing: raise."""
    return (yield from read_many(1))[0]


def command(event: Sendable) -> Program[Reply]:
    yield Write([event])
    return (yield from read())


def data(content: bytes) -> Program[Reply]:
    """DATA and, after its 354, the content and its end: the reply to the
    DATA if it refused, else the reply to the end of the data. (No check
    that a recipient was accepted: the caller of this single step knows.)"""
    reply = _data_reply((yield from command(Data())))
    if reply.code != 354:
        return reply
    yield Write([MessageData(content), EndOfData()] if content else [EndOfData()])
    return (yield from read())


def hello(name: str, *, lmtp: bool) -> Program[Reply]:
    """EHLO (LHLO for LMTP), falling back to HELO for pre-ESMTP servers."""
    if lmtp:
        reply = yield from command(Lhlo(name))
    else:
        reply = yield from command(Ehlo(name))
        if reply.code >= 500:
            reply = yield from command(Helo(name))
    if reply.code != 250:
        raise SMTPError(reply)
    return reply


def starttls() -> Program[None]:
    """STARTTLS; anything but 220 is an error, never a silent downgrade."""
    reply = yield from command(StartTLS())
    if reply.code != 220:
        raise TLSRequiredError(f"the server refused STARTTLS: {reply}")
    yield UPGRADE


TLSMode = Literal["starttls", "implicit", "none", "opportunistic"]
AuthArg = Union[tuple[str, str], ClientMechanism, None]


@dataclass(frozen=True, slots=True)
class Session:
    """What opening a session learnt: the greeting and what EHLO offered."""

    greeting: Reply
    capabilities: Capabilities
    tls: bool


def open_session(
    name: str, *, tls: TLSMode, auth: AuthArg, allow_plaintext_auth: bool, lmtp: bool
) -> Program[Session]:
    """Greeting, EHLO, STARTTLS and AUTH as the client's settings ask.

    Under ``tls="implicit"`` the driver has wrapped the socket already.
    """
    greeting = yield from read()
    if greeting.code != 220:
        # RFC 5321 3.1: after a 554 greeting the client should still QUIT.
        try:
            yield from command(Quit())
        except (MailwireError, OSError):
            pass
        raise SMTPError(greeting)
    caps = Capabilities.from_reply((yield from hello(name, lmtp=lmtp)))
    secure = tls == "implicit"
    if tls == "starttls" or (tls == "opportunistic" and caps.starttls):
        if not caps.starttls:
            raise TLSRequiredError("the server does not offer STARTTLS (tls='starttls')")
        yield from starttls()
        secure = True
        caps = Capabilities.from_reply((yield from hello(name, lmtp=lmtp)))
    if auth is not None:
        yield from login(auth, caps, tls_active=secure, allow_plaintext_auth=allow_plaintext_auth)
    return Session(greeting, caps, secure)


def login(
    auth: tuple[str, str] | ClientMechanism, caps: Capabilities, *, tls_active: bool,
    allow_plaintext_auth: bool,
) -> Program[Reply]:
    """AUTH with a mechanism chosen from what the server offers; never in the
    clear unless allowed."""
    if not (tls_active or allow_plaintext_auth):
        raise TLSRequiredError(
            "refusing to send credentials over a plaintext connection "
            "(use TLS, or allow_plaintext_auth=True)"
        )
    mechanism = auth if not isinstance(auth, tuple) else choose_mechanism(
        caps.auth_mechanisms, auth[0], auth[1]
    )
    return (yield from authenticate(mechanism))


def authenticate(mechanism: ClientMechanism) -> Program[Reply]:
    """Run one SASL exchange (RFC 4954); AuthenticationError unless 235."""
    reply = yield from command(Auth(mechanism.name, mechanism.initial_response()))
    steps = 0
    while reply.code == 334:
        steps += 1
        if steps > 10:
            yield Write([AuthResponse(None)])
            yield from read()
            raise AuthenticationError(501, "5.5.2", "too many AUTH challenges from the server")
        try:
            challenge = base64.b64decode(reply.text.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise RemoteProtocolError(f"undecodable AUTH challenge: {reply.text[:60]!r}") from None
        reply = yield from command(AuthResponse(mechanism.respond(challenge)))
    if reply.code != 235:
        raise AuthenticationError(reply)
    return reply


def transactions(
    batch: Sequence[Transaction], *, pipelining: bool, chunking: bool, lmtp: bool
) -> Program[list[SendResult | SMTPError]]:
    """Send every transaction in ``batch``; one outcome per transaction."""
    if chunking and pipelining:
        yield from _pipelined_bdat(batch, lmtp)
    elif pipelining:
        yield from _pipelined_data(batch, lmtp)
    else:
        for txn in batch:
            yield from _one_by_one(txn, chunking, lmtp)
            txn.settled = txn.outcome()
    if pipelining and batch and batch[-1].needs_reset:
        # A pipelined RSET goes in front of the next transaction, but nothing
        # follows the last: reset it here, or the next send's MAIL meets "503 nested".
        yield from command(Rset())
    return [txn.outcome() if txn.settled is None else txn.settled for txn in batch]


def _data_reply(reply: Reply) -> Reply:
    """The reply to DATA: 354, or a refusal. A positive reply that is not 354
    would report a message as delivered when no content was ever sent."""
    if reply.is_positive and reply.code != 354:
        raise RemoteProtocolError(f"the server answered DATA with {reply}, not 354")
    return reply


def _envelope_replies(txn: Transaction, replies: Sequence[Reply]) -> None:
    txn.mail_reply = replies[0]
    txn.rcpt_replies.update(zip(txn.rcpt_to, replies[1:]))


def _read_final(txn: Transaction, lmtp: bool) -> Program[None]:
    """The reply to the end of the data: LMTP gives one per accepted recipient."""
    count = len(txn.accepted) if lmtp and txn.accepted else 1
    _final_replies(txn, (yield from read_many(count)), lmtp)


def _content(txn: Transaction) -> Iterator[MessageData]:
    for piece in txn.chunks():
        txn.size += len(piece)
        yield MessageData(piece)


def _write_content(txn: Transaction, after: list[Sendable]) -> Program[None]:
    """The content, its last piece in one write with ``after`` (the end of data
    and whatever may be pipelined behind it)."""
    pieces = _content(txn)
    current = next(pieces, None)
    while current is not None:
        upcoming = next(pieces, None)
        if upcoming is None:
            break
        yield Write([current])
        current = upcoming
    yield Write([current, *after] if current is not None else after)


def _pipelined_data(batch: Sequence[Transaction], lmtp: bool) -> Program[None]:
    """One round trip per message: each message's content and end of data go
    in one write with the next envelope and DATA.

    That write is formatted while the server works on the one before (the
    round trip is the wait; formatting during it is free) and handed to the
    driver with the read, which sends it as soon as the 354 is in.
    """
    if not batch:
        return
    yield Write([*batch[0].envelope(), Data()])
    following = _opening(batch, 1)
    ahead = _ahead(batch[0], following)
    # Each read takes one whole group of replies: [RSET,] MAIL, each RCPT and
    # DATA of this transaction, behind the end-of-data reply(s) of the last.
    request = Read(1 + len(batch[0].rcpt_to) + 1, ahead)
    replies = yield from read_group(request)
    sent = request.written
    for i, txn in enumerate(batch):
        _envelope_replies(txn, replies[:-1])
        data = _data_reply(replies[-1])
        if sent:
            txn.size = len(txn.content)  # type: ignore[arg-type]  # _ahead took only bytes
        elif data.code != 354:
            # DATA refused: if MAIL was accepted, the transaction is still open.
            txn.data_reply = data
            txn.settled = txn.outcome()
            txn.needs_reset = reset = bool(txn.mail_reply and txn.mail_reply.is_positive)
            if not following:
                return
            yield Write([Rset(), *following] if reset else following)
            after = _opening(batch, i + 2)
            ahead = _ahead(batch[i + 1], after)
            request = Read(reset + len(following), ahead)
            replies = yield from read_group(request)
            sent = request.written
            replies = replies[reset:]
            following = after
            continue
        elif txn.accepted:
            yield from _write_content(txn, [EndOfData(), *following])
        else:
            # DATA accepted with no recipient to deliver to: end it at once
            # with no content (RFC 2920 3.1), and the server refuses or drops it.
            yield Write([EndOfData(), *following])
        after = _opening(batch, i + 2)
        ahead = _ahead(batch[i + 1], after) if following else None
        finals = len(txn.accepted) if lmtp and txn.accepted else 1
        request = Read(finals + len(following), ahead)
        replies = yield from read_group(request)
        sent = request.written
        _final_replies(txn, replies[:finals], lmtp)
        # Worked out now, while the server reads the next write, rather
        # than for the whole batch after its last reply.
        txn.settled = txn.outcome()
        replies = replies[finals:]
        following = after


def _opening(batch: Sequence[Transaction], index: int) -> list[Sendable]:
    """The envelope and DATA of ``batch[index]``; nothing past the end."""
    return [*batch[index].envelope(), Data()] if index < len(batch) else []


def _ahead(txn: Transaction, following: list[Sendable]) -> PreparedWrite | None:
    """The write that ends ``txn`` and opens the next transaction, formatted
    now; None for content that is streamed in pieces (or will not format,
    which ``send`` then reports when it is really written)."""
    content = txn.content
    if not isinstance(content, bytes) or len(content) > CHUNK:
        return None
    events: list[Sendable] = [MessageData(content)] if content else []
    try:
        return prepare_write([*events, EndOfData(), *following])
    except LocalProtocolError:
        return None


def _final_replies(txn: Transaction, replies: Sequence[Reply], lmtp: bool) -> None:
    """The reply to the end of the data: LMTP gives one per accepted recipient."""
    if lmtp and txn.accepted:
        txn.final.update(zip(txn.accepted, replies))
    else:
        txn.data_reply = replies[0]


def _bdat_content(txn: Transaction) -> Iterator[MessageData]:
    """The content for BDAT: CRLF line endings as over DATA (RFC 3030 3),
    except for BINARYMIME, whose octets go as they are."""
    if txn.mail_options.body == "BINARYMIME":
        yield from _content(txn)
        return
    normalizer = DotStuffer(stuff=False)
    for piece in _content(txn):
        data = normalizer.feed(piece.data)
        if data:
            yield MessageData(data)


def _bdat_events(txn: Transaction) -> Iterator[list[Sendable]]:
    """BDAT framing: each piece with its header; an empty message is BDAT 0 LAST."""
    pieces = _bdat_content(txn)
    current = next(pieces, None)
    while current is not None:
        upcoming = next(pieces, None)
        yield [Bdat(len(current.data), upcoming is None), current]
        current = upcoming
    if txn.size == 0:
        yield [Bdat(0, True)]


def _read_bdat(txn: Transaction, chunks: int, lmtp: bool, reset: bool = False) -> Program[None]:
    """The replies to a pipelined BDAT transaction, behind the one to the
    RSET that opened its write if ``reset``: all but the last chunk's in one
    read (the count of the last's depends, over LMTP, on the RCPT replies)."""
    replies = yield from read_many(reset + 1 + len(txn.rcpt_to) + chunks - 1)
    _envelope_replies(txn, replies[reset:reset + 1 + len(txn.rcpt_to)])
    for reply in replies[reset + 1 + len(txn.rcpt_to):]:
        if not reply.is_positive and txn.data_reply is None:
            txn.data_reply = reply
    last_failed = txn.data_reply
    yield from _read_final(txn, lmtp)
    if last_failed is not None:
        txn.data_reply = last_failed
    # RFC 3030 2: after a refused BDAT the state is indeterminate until RSET.
    txn.needs_reset = txn.data_reply is not None and not txn.data_reply.is_positive


def _pipelined_bdat(batch: Sequence[Transaction], lmtp: bool) -> Program[None]:
    """Each transaction in one write (RSET first only if the one before was
    aborted), its replies read before the next is written."""
    reset = False
    for txn in batch:
        events: list[Sendable] = [Rset()] if reset else []
        events += txn.envelope()
        chunks = 0
        for framed in _bdat_events(txn):
            chunks += 1
            events += framed
            yield Write(events)
            events = []
        yield from _read_bdat(txn, chunks, lmtp, reset)
        txn.settled = txn.outcome()
        reset = txn.needs_reset


def _one_by_one(txn: Transaction, chunking: bool, lmtp: bool) -> Program[None]:
    txn.mail_reply = yield from command(Mail(txn.mail_from, txn.mail_options))
    if not txn.mail_reply.is_positive:
        return
    for event in txn.envelope()[1:]:
        assert isinstance(event, Rcpt)
        txn.rcpt_replies[event.address] = yield from command(event)
    if not txn.accepted:
        yield from command(Rset())
        return
    if chunking:
        for framed in _bdat_events(txn):
            yield Write(framed)
            last = isinstance(framed[0], Bdat) and framed[0].last
            if last:
                yield from _read_final(txn, lmtp)
                if txn.data_reply is not None and not txn.data_reply.is_positive:
                    yield from command(Rset())  # RFC 3030 2, as for any refused BDAT
                return
            reply = yield from read()
            if not reply.is_positive:
                txn.data_reply = reply
                yield from command(Rset())
                return
        return
    data = _data_reply((yield from command(Data())))
    if data.code != 354:
        txn.data_reply = data
        yield from command(Rset())
        return
    yield from _write_content(txn, [EndOfData()])
    yield from _read_final(txn, lmtp)

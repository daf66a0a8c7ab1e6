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
* with PIPELINING and CHUNKING, whole transactions (envelope and BDAT chunks)
  are written back to back, a window of them ahead of their replies
  (``BDAT_WINDOW``), so a batch costs a round trip per half window;
* without PIPELINING, one command at a time, as RFC 5321 requires.

RSET goes only where a transaction may be left open (RFC 5321 4.1.1.5): a
completed one, its end of data answered, accepted or refused, leaves nothing
to reset (4.1.1.4). A refused DATA leaves the transaction open: RSET before
the next. A refused BDAT leaves the server's state indeterminate (RFC 3030
2): most servers (Postfix, mailwire's own) end the transaction with that
reply, some keep it until RSET, and the next MAIL, already written behind
it, tells which; only then is RSET sent, and what the stuck server refused
(having delivered nothing) sent again (see ``_pipelined_bdat``). One RSET
goes ahead of time: in front of a transaction whose MAIL differs from the
unanswered one before it, which a server keeping that one open would take in
under the wrong sender. The last transaction of a batch has no next MAIL to
tell: RSET after it if its BDAT was refused.
"""

from __future__ import annotations

import base64
import binascii
from collections import deque
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field, fields
from operator import attrgetter
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
# Pipelined BDAT writes this much ahead of the replies (see _Window).
BDAT_WINDOW = 32  # transactions
BDAT_WINDOW_OCTETS = 4 * CHUNK  # of content
BDAT_WINDOW_REPLIES = 256


@dataclass(frozen=True, slots=True)
class Write:
    events: Sequence[Sendable] | PreparedWrite


@dataclass(slots=True)
class Read:
    """Read ``count`` replies; the driver sends back a tuple of them. Asking
    for a pipelined group's replies at once saves a driver round per reply.

    With ``then``, the group ends in DATA and ``then`` is the message content
    that follows it, formatted ahead: the driver writes it the moment the
    core says the replies allow it (``content_allowed``), before
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
    # Aborted with the server still inside it (a refused DATA): the next
    # command must be RSET (see the module docstring).
    needs_reset: bool = False
    # BDAT: its MAIL met a transaction the server kept open, which took its
    # RCPTs and content (see _pipelined_bdat): the replies to those decide.
    joined: bool = False
    origin: int | None = None  # where a stream's content starts

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
        if not self.mail_reply.is_positive and not self.joined:
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

    def rewind(self) -> bool:
        """Forget every reply, to be sent again; False if the content
        cannot be read again (a stream that is not seekable)."""
        if not isinstance(self.content, bytes):
            if self.origin is None:
                return False
            try:
                self.content.seek(self.origin)
            except (OSError, ValueError):
                return False
        self.mail_reply = self.data_reply = self.settled = None
        self.rcpt_replies, self.final = {}, {}
        self.size, self.joined = 0, False
        return True


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
    left_open = False
    if chunking and pipelining:
        left_open = yield from _pipelined_bdat(batch, lmtp)
    elif pipelining:
        yield from _pipelined_data(batch, lmtp)
        left_open = bool(batch) and batch[-1].needs_reset
    else:
        for txn in batch:
            yield from _one_by_one(txn, chunking, lmtp)
            txn.settled = txn.outcome()
    if left_open:
        # Whatever follows a transaction left open starts with RSET, but
        # nothing follows the last: reset it here, or the next send's MAIL
        # meets "503 nested".
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


@dataclass(slots=True)
class _Flight:
    """A BDAT transaction written ahead of its replies."""

    txn: Transaction
    reset: bool  # an RSET went in front of it
    chunks: int  # BDAT commands written before its LAST
    octets: int  # content written, for the window
    replies: int  # replies it asks for (over LMTP, at most), for the window
    # LMTP: the LAST chunk of a message in several, kept back until the
    # others are answered (see _pipelined_bdat); None once written.
    held: list[Sendable] | None = None
    head_read: bool = False  # the replies before the LAST's are in
    reset_ok: bool = False  # the RSET in front was accepted
    acted: bool = False  # a reply after MAIL's was positive
    delivered: bool = False  # a reply to the LAST was positive


class _Window:
    """The transactions in flight, and whether there is room for more.

    Full at ``BDAT_WINDOW`` transactions, ``BDAT_WINDOW_OCTETS`` of content or
    ``BDAT_WINDOW_REPLIES`` replies: those wait unread in the socket buffers
    while we write, and a server blocked writing them stops reading ours.
    """

    def __init__(self) -> None:
        self.flights: deque[_Flight] = deque()
        self.octets = 0
        self.replies = 0

    def full(self, share: int = 1) -> bool:
        """No room left (``share=2``: half of it taken)."""
        if not self.flights:
            return False
        if self.flights[-1].held is not None:
            return True  # nothing may follow a held LAST
        return (
            len(self.flights) * share >= BDAT_WINDOW
            or self.octets * share >= BDAT_WINDOW_OCTETS
            or self.replies * share >= BDAT_WINDOW_REPLIES
        )

    def push(self, flight: _Flight) -> None:
        self.flights.append(flight)
        self.octets += flight.octets
        self.replies += flight.replies

    def pop(self) -> _Flight:
        flight = self.flights.popleft()
        self.octets -= flight.octets
        self.replies -= flight.replies
        return flight


class _Output:
    """Events gathered into one write, sent once a chunk of content is in."""

    def __init__(self) -> None:
        self.events: list[Sendable] = []
        self.octets = 0

    def add(self, events: Sequence[Sendable], octets: int = 0) -> Program[None]:
        self.events += events
        self.octets += octets
        if self.octets >= CHUNK:
            yield from self.flush()

    def flush(self) -> Program[None]:
        if self.events:
            events, self.events, self.octets = self.events, [], 0
            yield Write(events)


# Every MAIL parameter but SIZE, as a tuple: cheap enough for each message.
_PARAMETERS = attrgetter(*(f.name for f in fields(MailOptions) if f.init and f.name != "size"))


def _mail_line(txn: Transaction) -> tuple[str, object]:
    """What MAIL says, but for SIZE (see _pipelined_bdat)."""
    return txn.mail_from, _PARAMETERS(txn.mail_options)


def _pipelined_bdat(batch: Sequence[Transaction], lmtp: bool) -> Program[bool]:
    """Whole transactions written back to back, a window of them ahead of
    their replies, no RSET between them; True if the server may be left
    inside a transaction.

    A refused BDAT leaves the server's state open (RFC 3030 2): most servers
    end the transaction with that reply, some keep it until RSET. The next
    MAIL tells. Accepted: nothing to do. ``503``, with nothing of its
    transaction taken (RCPTs refused, BDATs refused and their octets
    discarded, as RFC 3030 2 has a PIPELINING server do): it delivered
    nothing, so it is sent again, after an RSET once the window is drained.
    A server that keeps the MAIL of a transaction whose BDAT it refused
    takes the next one's RCPTs and data into it (Exim and others, after "no
    valid recipients"): the next message is delivered as sent if the two
    MAIL commands are alike, and its replies are its outcome; so where they
    differ (but for SIZE), an RSET goes in front of it while the one before
    is unanswered, and no message goes out under another's sender or
    parameters.

    Over LMTP the replies to a LAST are one per recipient the server holds;
    after a refused chunk that is not known, so the LAST of a message in
    several chunks waits for the replies to the others (and is not sent
    after a refusal, which RFC 3030 2 forbids anyway; an RSET follows).
    """
    queue = deque(batch)
    window = _Window()
    out = _Output()
    inside = False  # the server may still be inside an earlier transaction
    reset_next = False  # the next transaction written starts with RSET
    last_mail: tuple[str, object] | None = None
    resend: list[Transaction] = []  # delivered nothing: the server was stuck
    sent_again: set[int] = set()
    while queue or window.flights:
        if queue and not resend:
            while queue and not window.full():
                txn = queue.popleft()
                mail = _mail_line(txn)
                reset = reset_next or bool((window.flights or inside) and mail != last_mail)
                reset_next, last_mail = False, mail
                window.push((yield from _write_bdat(txn, reset, lmtp, out)))
            yield from out.flush()
        # Read down to half a window, then refill: a round trip per half
        # window, and the server never waits for the next write.
        while window.flights:
            flight = window.pop()
            yield from _read_flight(flight, lmtp)
            if flight.held is not None:
                if flight.txn.data_reply is None:  # every chunk taken: the LAST
                    yield Write(flight.held)
                    flight.held = None
                    window.push(flight)
                    break
                flight.held = None
                reset_next = True
            if flight.reset_ok:
                inside = False
            inside = _settle_bdat(flight, inside, resend, sent_again)
            if queue and not resend and not window.full(2):
                break
        if resend and not window.flights:
            # Drained: clear what the server may still hold, then send again.
            reset_next = reset_next or inside
            queue.extendleft(reversed(resend))
            resend.clear()
    return inside


def _write_bdat(txn: Transaction, reset: bool, lmtp: bool, out: _Output) -> Program[_Flight]:
    """Put ``txn`` (behind RSET if ``reset``) into ``out``."""
    if not isinstance(txn.content, bytes):
        txn.origin = _tell(txn.content)
    yield from out.add([Rset(), *txn.envelope()] if reset else txn.envelope())
    chunks = octets = 0
    held = None
    for framed in _bdat_events(txn):
        bdat = framed[0]
        assert isinstance(bdat, Bdat)
        octets += bdat.size
        if bdat.last and chunks and lmtp:
            held = framed
            break
        chunks += not bdat.last
        yield from out.add(framed, bdat.size)
    finals = len(txn.rcpt_to) if lmtp else 1
    return _Flight(txn, reset, chunks, octets, reset + 1 + len(txn.rcpt_to) + chunks + finals, held)


def _read_flight(flight: _Flight, lmtp: bool) -> Program[None]:
    """The replies to ``flight``: all but the LAST's in one read (the count
    of the LAST's depends, over LMTP, on the RCPT replies), then those,
    unless the LAST is held."""
    txn = flight.txn
    if not flight.head_read:
        envelope = flight.reset + 1 + len(txn.rcpt_to)
        replies = yield from read_many(envelope + flight.chunks)
        flight.head_read = True
        flight.reset_ok = flight.reset and replies[0].is_positive
        _envelope_replies(txn, replies[flight.reset:envelope])
        flight.acted = any(reply.is_positive for reply in replies[flight.reset + 1:])
        for reply in replies[envelope:]:
            if not reply.is_positive and txn.data_reply is None:
                txn.data_reply = reply
        if flight.held is not None:
            return
    refused = txn.data_reply
    finals = yield from read_many(len(txn.accepted) if lmtp and txn.accepted else 1)
    _final_replies(txn, finals, lmtp)
    flight.delivered = any(reply.is_positive for reply in finals)
    flight.acted = flight.acted or flight.delivered
    if refused is not None:
        txn.data_reply = refused  # the first refusal decides, not the LAST's


def _settle_bdat(flight: _Flight, inside: bool, resend: list[Transaction], sent_again: set[int]) -> bool:
    """Settle ``flight``'s transaction, or put it in ``resend``; whether the
    server may still be inside a transaction after it."""
    txn = flight.txn
    mail = txn.mail_reply
    assert mail is not None
    if mail.is_positive:
        txn.settled = txn.outcome()
        # RFC 3030 2: after a refused BDAT the state is indeterminate.
        return txn.data_reply is not None and not txn.data_reply.is_positive
    if flight.acted:
        # MAIL refused, yet RCPT or content taken: the server was inside an
        # earlier transaction and took this one into it. Its replies say
        # what became of it (and it must not go again).
        txn.joined = True
        txn.settled = txn.outcome()
        return not flight.delivered
    if inside and mail.code == 503 and id(txn) not in sent_again and txn.rewind():
        sent_again.add(id(txn))  # once: a server still refusing it is answered
        resend.append(txn)
        return True
    txn.settled = txn.outcome()
    return inside


def _tell(content: BinaryIO) -> int | None:
    """Where a stream's content starts, to send it again; None if it cannot be."""
    try:
        return content.tell() if content.seekable() else None
    except (AttributeError, OSError, ValueError):
        return None


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

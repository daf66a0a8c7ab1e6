"""Transactions over CHUNKING (RFC 3030), pipelined: a window of them in flight.

With PIPELINING and CHUNKING, whole transactions (envelope and BDAT chunks)
are written back to back, a window of them ahead of their replies
(``BDAT_WINDOW``), with no RSET between them, so a batch costs a round trip
per half window.

A refused BDAT leaves the server's state indeterminate (RFC 3030 2): most
servers (Postfix, mailwire's own) end the transaction with that reply, some
keep it until RSET, and the next MAIL, already written behind it, tells which;
only then is RSET sent, and what the stuck server refused (having delivered
nothing) sent again (see ``pipelined_bdat``). One RSET goes ahead of time: in
front of a transaction whose MAIL differs from the unanswered one before it,
which a server keeping that one open would take in under the wrong sender.
The last transaction of a batch has no next MAIL to tell: the caller resets
after it if its BDAT was refused (``pipelined_bdat`` says so).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, fields
from operator import attrgetter

from ..protocol.client import Sendable
from ..protocol.data import DotStuffer
from ..protocol.events import Bdat, MessageData, Rset
from ..protocol.params import MailOptions
from ..protocol.pending import end_of_data_replies
from .steps import Program, Write, read_many
from .transaction import CHUNK, ContentReader, Transaction

__all__ = ["pipelined_bdat", "BdatFramer", "STREAM_CHUNK", "BDAT_WINDOW", "BDAT_WINDOW_OCTETS", "BDAT_WINDOW_REPLIES"]

# Pipelined BDAT writes this much ahead of the replies (see _Window).
BDAT_WINDOW = 32  # transactions
BDAT_WINDOW_OCTETS = 4 * CHUNK  # of content
BDAT_WINDOW_REPLIES = 256


# The least content per BDAT for a message given as an iterable: each BDAT
# gets a reply, which a pipelined transaction leaves unread until its end,
# so many small pieces would fill the socket buffers with replies.
STREAM_CHUNK = 1 << 18


class BdatFramer:
    """BDAT framing of ``txn``'s content: each piece with its header, LAST on
    the final one (so one piece is read ahead), an empty message as BDAT 0
    LAST. Pieces from an iterable go as they come, none held back: the end
    is ``BDAT 0 LAST`` (RFC 3030 2 allows it). CRLF line endings as over DATA (RFC 3030 3), except for
    BINARYMIME, whose octets go as they are; no dot-stuffing. The
    normalising is ``DotStuffer``'s, which carries a CR split from its LF
    over to the next piece."""

    def __init__(self, txn: Transaction) -> None:
        self._txn = txn
        self._reader = ContentReader(txn.content, txn)
        self._normalizer = None if txn.mail_options.body == "BINARYMIME" else DotStuffer(stuff=False)
        self._ahead: bytes | None = None
        self._started = self._done = False

    def next(self) -> Program[list[Sendable] | None]:
        """The next BDAT with its content; None after the LAST."""
        if self._done:
            return None
        current = self._ahead if self._started else (yield from self._piece())
        self._started = True
        if current is None:
            self._done = True
            return [Bdat(0, True)] if self._txn.size == 0 or self._reader.streamed else None
        if self._reader.streamed:
            self._started = False  # nothing read ahead
            return [Bdat(len(current), False), MessageData(current)]
        self._ahead = upcoming = yield from self._piece()
        if upcoming is None:
            self._done = True
        return [Bdat(len(current), upcoming is None), MessageData(current)]

    def _piece(self) -> Program[bytes | None]:
        while True:
            piece = yield from self._reader.next_piece(STREAM_CHUNK)
            if piece is None or self._normalizer is None:
                return piece
            piece = self._normalizer.feed(piece)
            if piece:  # empty: the LF of a CRLF split between pieces
                return piece


@dataclass(slots=True)
class _Flight:
    """A BDAT transaction written ahead of its replies."""

    txn: Transaction
    reset: bool  # an RSET went in front of it
    chunks: int  # BDAT commands written before its LAST
    octets: int  # content written, for the window
    replies: int  # replies it asks for (over LMTP, at most), for the window
    # LMTP: the LAST chunk of a message in several, kept back until the
    # others are answered (see pipelined_bdat); None once written.
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
    """What MAIL says, but for SIZE (see pipelined_bdat)."""
    return txn.mail_from, _PARAMETERS(txn.mail_options)


def pipelined_bdat(batch: Sequence[Transaction], lmtp: bool) -> Program[bool]:
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
    txn.mark_origin()
    yield from out.add([Rset(), *txn.envelope()] if reset else txn.envelope())
    chunks = octets = 0
    held = None
    framer = BdatFramer(txn)
    while (framed := (yield from framer.next())) is not None:
        bdat = framed[0]
        assert isinstance(bdat, Bdat)
        octets += bdat.size
        if bdat.last and chunks and lmtp:
            held = framed
            break
        chunks += not bdat.last
        yield from out.add(framed, bdat.size)
    finals = end_of_data_replies(len(txn.rcpt_to), lmtp)  # at most
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
        txn.take_envelope_replies(replies[flight.reset:envelope])
        flight.acted = any(reply.is_positive for reply in replies[flight.reset + 1:])
        for reply in replies[envelope:]:
            if not reply.is_positive and txn.data_reply is None:
                txn.data_reply = reply
        if flight.held is not None:
            return
    refused = txn.data_reply
    finals = yield from read_many(txn.replies_to_end(lmtp))
    txn.take_final_replies(finals, lmtp)
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

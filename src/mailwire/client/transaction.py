"""One message to send, and what became of it: ``Transaction``.

A transaction is prepared before anything is written (``prepare.py`` checks it
against the server's capabilities), then carried through whichever path sends
it (``pipeline.py`` over DATA, ``bdat.py`` over CHUNKING, ``lockstep.py``
without PIPELINING), which fill in the replies as they arrive. It owns the
rules that do not depend on the path: its envelope and content as events, how
its replies decide its outcome (``outcome``: the result, or the error that says
nothing was delivered), whether it can be sent again, and whether it left the
server inside it (``needs_reset``: RFC 5321 4.1.1.5 has RSET only where a
transaction may be left open; one whose end of data was answered, accepted or
refused, is over, 4.1.1.4).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO, Union

from ..errors import DataRefused, RecipientsRefused, SenderRefused, SMTPError
from ..protocol.client import Sendable
from ..protocol.events import Mail, MessageData, Rcpt
from ..protocol.params import MailOptions, RcptOptions
from ..protocol.pending import end_of_data_replies
from ..reply import Reply
from ..result import SendResult
from .steps import Program, Pull, Write, read_many

__all__ = ["Transaction", "Content", "ContentReader", "CHUNK", "write_content", "read_final"]

CHUNK = 1 << 20  # content is written (and BDAT-framed) in pieces of 1 MiB
_NO_RCPT_OPTIONS = RcptOptions()

# A message's content as a caller may give it: whole, a binary file, or
# pieces as they come (an async iterable only to the asyncio client).
Content = Union[bytes, BinaryIO, Iterable[bytes], AsyncIterable[bytes]]


def _is_file(content: object) -> bool:
    return hasattr(content, "read")


class ContentReader:
    """A message's content, piece by piece, however it was given: bytes cut
    into ``CHUNK`` pieces and a binary file read ``CHUNK`` at a time, here;
    an iterable's pieces pulled by the driver (``Pull``), as they come, so a
    message streamed in is streamed out and never held whole. Empty pieces
    are skipped; ``size`` counts what was read (and ``txn.size``, if given)."""

    __slots__ = ("_pieces", "_source", "_txn", "size")

    def __init__(self, content: Content, txn: Transaction | None = None) -> None:
        self.size = 0
        self._txn = txn
        self._pieces: Iterator[bytes] = iter(())
        self._source: Iterator[bytes] | AsyncIterator[bytes] | None = None
        if isinstance(content, bytes) or _is_file(content):
            self._pieces = _chunks(content)  # type: ignore[arg-type]  # bytes or a file
        elif isinstance(content, AsyncIterable):
            self._source = aiter(content)
        else:
            self._source = iter(content)

    @property
    def streamed(self) -> bool:
        """Its pieces come from an iterable, as the caller has them."""
        return self._source is not None

    def next_piece(self, at_least: int = 0) -> Program[bytes | None]:
        """The next piece, None after the last. An iterable's pieces are
        joined until there are ``at_least`` octets (or no more)."""
        source = self._source
        if source is None:
            piece = next(self._pieces, None)
        else:
            pulled: list[bytes] = []
            octets = 0
            while octets < at_least or not octets:
                got = yield Pull(source)
                if not isinstance(got, bytes):
                    break
                pulled.append(got)
                octets += len(got)
            piece = (pulled[0] if len(pulled) == 1 else b"".join(pulled)) if octets else None
        if piece is not None:
            self.size += len(piece)
            if self._txn is not None:
                self._txn.size += len(piece)
        return piece


def _chunks(content: bytes | BinaryIO) -> Iterator[bytes]:
    if isinstance(content, bytes):
        if len(content) <= CHUNK:
            if content:  # an empty message has no pieces at all
                yield content
            return
        view = memoryview(content)
        for start in range(0, len(view), CHUNK):
            yield bytes(view[start:start + CHUNK])
        return
    while True:
        piece = content.read(CHUNK)
        if not piece:
            return
        yield piece


@dataclass(slots=True)
class Transaction:
    """One message to send, with its envelope, ready for the wire."""

    mail_from: str
    rcpt_to: Sequence[str]
    content: Content
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
    # RCPTs and content (see bdat.pipelined_bdat): the replies to those decide.
    joined: bool = False
    origin: int | None = None  # where a file's content starts

    def envelope(self) -> list[Sendable]:
        events: list[Sendable] = [Mail(self.mail_from, self.mail_options)]
        for i, rcpt in enumerate(self.rcpt_to):
            options = self.rcpt_options[i] if self.rcpt_options else _NO_RCPT_OPTIONS
            events.append(Rcpt(rcpt, options))
        return events

    def mark_origin(self) -> None:
        """Note where a file's content starts, to send it again (``rewind``)."""
        content = self.content
        if not isinstance(content, bytes) and _is_file(content):
            self.origin = _tell(content)  # type: ignore[arg-type]  # a file

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
        content = self.content
        if not isinstance(content, bytes):
            if self.origin is None or not _is_file(content):
                return False  # an iterable is read once
            try:
                content.seek(self.origin)  # type: ignore[union-attr]  # a file
            except (OSError, ValueError):
                return False
        self.mail_reply = self.data_reply = self.settled = None
        self.rcpt_replies, self.final = {}, {}
        self.size, self.joined = 0, False
        return True

    def take_envelope_replies(self, replies: Sequence[Reply]) -> None:
        """The replies to MAIL and each RCPT, in order."""
        self.mail_reply = replies[0]
        self.rcpt_replies.update(zip(self.rcpt_to, replies[1:]))

    def replies_to_end(self, lmtp: bool) -> int:
        """How many replies its end of data gets (``end_of_data_replies``):
        its recipients are counted only over LMTP, where they matter."""
        return end_of_data_replies(len(self.accepted) if lmtp else 0, lmtp)

    def take_final_replies(self, replies: Sequence[Reply], lmtp: bool) -> None:
        """The replies to the end of the data: LMTP gives one per accepted
        recipient (``end_of_data_replies`` counts them)."""
        if lmtp and self.accepted:
            self.final.update(zip(self.accepted, replies))
        else:
            self.data_reply = replies[0]


def write_content(content: ContentReader, after: list[Sendable]) -> Program[None]:
    """The content, its last piece in one write with ``after`` (the end of data
    and whatever may be pipelined behind it). Pieces from an iterable are
    written as they come, the next may be long in coming (a relay's sender
    is still sending it), and ``after`` alone at its end. Nothing of
    ``after`` goes before the content has ended: a stream that fails leaves
    the data unended (see ``Pull``)."""
    current = yield from content.next_piece()
    while current is not None:
        if content.streamed:
            yield Write([MessageData(current)])
            current = yield from content.next_piece()
            continue
        upcoming = yield from content.next_piece()
        if upcoming is None:
            break
        yield Write([MessageData(current)])
        current = upcoming
    yield Write([MessageData(current), *after] if current is not None else after)


def _tell(content: BinaryIO) -> int | None:
    """Where a file's content starts, to send it again; None if it cannot be."""
    try:
        return content.tell() if content.seekable() else None
    except (AttributeError, OSError, ValueError):
        return None


def read_final(txn: Transaction, lmtp: bool) -> Program[None]:
    """The replies to the end of the data, as many as it gets."""
    txn.take_final_replies((yield from read_many(txn.replies_to_end(lmtp))), lmtp)

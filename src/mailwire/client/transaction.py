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

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

from ..errors import DataRefused, RecipientsRefused, SenderRefused, SMTPError
from ..protocol.client import Sendable
from ..protocol.events import Mail, MessageData, Rcpt
from ..protocol.params import MailOptions, RcptOptions
from ..protocol.pending import end_of_data_replies
from ..reply import Reply
from ..result import SendResult
from .steps import Program, Write, read_many

__all__ = ["Transaction", "CHUNK", "write_content", "read_final"]

CHUNK = 1 << 20  # content is written (and BDAT-framed) in pieces of 1 MiB
_NO_RCPT_OPTIONS = RcptOptions()


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
    # RCPTs and content (see bdat.pipelined_bdat): the replies to those decide.
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

    def pieces(self) -> Iterator[MessageData]:
        """The content as events, its size counted as it goes."""
        for piece in self.chunks():
            self.size += len(piece)
            yield MessageData(piece)


def write_content(txn: Transaction, after: list[Sendable]) -> Program[None]:
    """The content, its last piece in one write with ``after`` (the end of data
    and whatever may be pipelined behind it)."""
    pieces = txn.pieces()
    current = next(pieces, None)
    while current is not None:
        upcoming = next(pieces, None)
        if upcoming is None:
            break
        yield Write([current])
        current = upcoming
    yield Write([current, *after] if current is not None else after)


def read_final(txn: Transaction, lmtp: bool) -> Program[None]:
    """The replies to the end of the data, as many as it gets."""
    txn.take_final_replies((yield from read_many(txn.replies_to_end(lmtp))), lmtp)

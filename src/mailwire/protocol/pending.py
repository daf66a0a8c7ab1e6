"""The replies a client connection is still owed: one account of them.

Every command sent asks for one reply, except the end of a message over LMTP,
which gets one per recipient accepted (RFC 2033 4.2), a number known only
once the RCPT replies are in. So the account keeps, in order, what each
expected reply answers, and counts the recipients the open transaction got
accepted as their replies are taken. ``end_of_data_replies`` is the one rule
for how many replies the end of a message gets; the dialogs use it too, to
ask their drivers for the right number.

``ClientConnection`` keeps its account in ``pending``, a public read-only view
for whoever must know what is owed without taking it: what each reply still
expected answers (``PendingReplies`` iterates over those), the recipients
accepted so far, and the bytes received but not parsed yet (``unread``). The
pipelining look-ahead (``lookahead.py``) judges unread replies over that view,
replaying on a copy the very accounting (``answer``) that taking them applies.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Optional

from .buffer import ReceiveBuffer
from .events import Ehlo, Helo, Lhlo, Mail, Rcpt, Rset

__all__ = ["Expected", "PendingReplies", "end_of_data_replies", "UNSOLICITED"]

# One expected reply: (the command's type, or None for the greeting; True
# when it ends a message: DATA's end, BDAT ... LAST). A plain tuple: one is
# made per command, on the hot path.
Expected = tuple[Optional[type], bool]

# The replies to these end any transaction: no recipient is accepted after them.
_RESETS = frozenset({Mail, Rset, Ehlo, Helo, Lhlo})


class _Unsolicited:
    def __repr__(self) -> str:
        return "UNSOLICITED"


# What ``answer`` returns for a reply nothing was waiting for (a 421 before
# closing, or a reply to a line the program wrote itself).
UNSOLICITED = _Unsolicited()


def end_of_data_replies(accepted: int, lmtp: bool) -> int:
    """How many replies the end of a message gets: one, and over LMTP one
    per recipient accepted (RFC 2033 4.2); one also when none was, the
    server's refusal of a transaction with nobody to deliver to."""
    return accepted if lmtp and accepted else 1


class PendingReplies(deque[Expected]):
    """What the replies still expected answer, in order (the entries of this
    deque, first to be answered first), and the recipients the open
    transaction got accepted so far (see the module docstring).

    A deque, so that what the connection asks of it on every reply (is
    anything expected? how much?) costs no Python call. It is the
    connection's to change (``expect``, ``answer``); anyone else reads it.
    """

    __slots__ = ("lmtp", "accepted", "unread", "_owed")

    def __init__(self, unread: ReceiveBuffer, *, lmtp: bool = False) -> None:
        super().__init__([(None, False)])  # the greeting
        self.lmtp = lmtp
        self.accepted = 0  # RCPTs of the open transaction answered 2xx/3xx
        self.unread = unread  # bytes received, not parsed yet: read it, never take from it
        self._owed = 0  # replies still owed to the first entry, once its first came

    expect = deque.append
    expect_all = deque.extend

    def answer(self, code: int) -> type | None | _Unsolicited:
        """Account for the next reply, of ``code``: the command it answers
        (None for the greeting), or ``UNSOLICITED``. The entry stays first
        while an LMTP end of data is owed more replies."""
        if not self:
            return UNSOLICITED
        command, ends_message = self[0]
        if command in _RESETS:
            self.accepted = 0
        elif command is Rcpt and code < 400:
            self.accepted += 1
        if ends_message:
            owed = self._owed or end_of_data_replies(self.accepted, self.lmtp)
            self._owed = owed - 1
            if self._owed:
                return command  # more replies to come for this message
            self.accepted = 0  # its transaction is over
        self.popleft()
        return command

    def replay(self, codes: Iterator[int | None]) -> tuple[int, int] | None:
        """Replay the next replies' ``codes`` on a copy of the account until
        nothing more is expected: (the last code, the recipients accepted
        then). None if ``codes`` runs out first, or yields None (a reply that
        cannot be judged). For looking ahead; this account is left as it is."""
        copy = PendingReplies.__new__(PendingReplies)
        deque.__init__(copy, self)
        copy.lmtp, copy.unread, copy.accepted, copy._owed = self.lmtp, self.unread, self.accepted, self._owed
        code: int | None = 0
        while copy:
            code = next(codes, None)
            if code is None:
                return None
            copy.answer(code)
        assert code is not None
        return code, copy.accepted

"""Pipelining ahead of the replies: writes formatted early, replies judged unread.

Two speed measures of the client core, kept here so that ``client.py`` reads
as the protocol and nothing else. Both serve one moment: across a slow link,
every microsecond between a DATA's 354 arriving and the message content
leaving is paid once per message.

* ``prepare_write`` formats a group of events (a message's content and end,
  the next envelope) while the client waits for the replies that let it go;
  ``ClientConnection.send`` then commits it in one step. Formatting needs no
  connection state, and the group's walk through the state table is done
  here too, with the same table and the same checks ``send`` applies to one
  event.
* ``judge`` decides whether the replies still unread allow content (RFC 2920
  3.1: DATA got its 354 and some RCPT of the transaction was accepted, no
  421 came) from their bytes, before they are parsed: parsing the group
  ahead of the 354 (the last message's end, the next MAIL and RCPTs) would
  be most of that moment. It works over the connection's public view of its
  pending replies (``pending.PendingReplies``) and replays the very
  accounting that taking them applies, so it can only say what taking them
  would say; when it cannot tell, it says no, and the replies are parsed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from ..errors import LocalProtocolError
from .commands import format_command
from .data import DotStuffer
from .events import Bdat, Command, Data, EndOfData, MessageData, Rcpt
from .pending import Expected, PendingReplies
from .state import CLIENT_SEND, ClientState

__all__ = ["Sendable", "PreparedWrite", "prepare_write", "judge"]

Sendable = Command | MessageData | EndOfData

# A usual group of replies, judged in one C call: one-line replies, 2xx but
# the last, which is DATA's 354 (their count is checked apart).
_PLAIN_GROUP = re.compile(rb"(?:2[0-9][0-9] [^\r\n]*\r\n)*354 [^\r\n]*\r\n")


@dataclass(frozen=True, slots=True)
class PreparedWrite:
    """A group of events formatted ahead of sending (see ``prepare_write``)."""

    events: tuple[Sendable, ...]
    parts: tuple[bytes, ...]  # each event's bytes, for a driver's debug log
    data: bytes
    start: ClientState  # the state the group is sent from
    end: ClientState  # and the state it leaves
    expect: tuple[Expected, ...]  # the replies it asks for


# Where a prepared group may start, by its first event: content only after a
# 354, anything else from READY (AUTH answers and QUIT before the greeting go
# through send() one by one).
_START = {MessageData: ClientState.CONTENT, EndOfData: ClientState.CONTENT}


def prepare_write(events: Iterable[Sendable]) -> PreparedWrite:
    """Format ``events`` now; ``ClientConnection.send`` commits them later.

    Commands are checked here exactly as ``send`` checks them. Content must
    be a whole message (``MessageData`` pieces then ``EndOfData``),
    dot-stuffed here; BDAT goes through ``send``, which counts its chunk
    octets.
    """
    kept = tuple(events)
    if not kept:
        raise LocalProtocolError("nothing to prepare")
    start = state = _START.get(type(kept[0]), ClientState.READY)
    stuffer: DotStuffer | None = None
    parts: list[bytes] = []
    expect: list[Expected] = []
    for event in kept:
        kind = type(event)
        next_state = CLIENT_SEND[state].get(kind)
        if next_state is None or kind is Bdat:
            raise LocalProtocolError(
                "BDAT is sent with send(), which counts its chunk octets" if kind is Bdat
                else f"a prepared write cannot send {kind.__name__} while {state.value}"
            )
        if isinstance(event, MessageData):
            if stuffer is None:
                stuffer = DotStuffer()
            part = stuffer.feed(event.data)
        elif isinstance(event, EndOfData):
            part = (stuffer or DotStuffer()).end()
            stuffer = None
            expect.append((EndOfData, True))
        else:
            part = format_command(event)
            expect.append((kind, False))
        parts.append(part)
        state = next_state
    if stuffer is not None:
        raise LocalProtocolError("prepared content must end with EndOfData")
    return PreparedWrite(kept, tuple(parts), b"".join(parts), start, state, tuple(expect))


def judge(pending: PendingReplies, cap: int, one_line_code: Callable[[bytes], int | None]) -> bool:
    """Whether the replies ``pending`` still expects, all of them unread,
    allow content once taken: each a complete one-line reply, no 421, the
    last DATA's 354, some RCPT of its transaction accepted.

    ``cap`` is the longest a one-line reply may be, CRLF included;
    ``one_line_code`` the connection's reading of one line: its code if it
    is a whole one-line reply, else None.
    """
    unread = pending.unread
    count = len(pending)
    if (
        count > 1 and not pending.lmtp and pending[-1][0] is Data and pending[-2][0] is Rcpt
        and unread.fullmatch(_PLAIN_GROUP, cap, count)
    ):
        # The usual group, judged in one C call: RCPT came last before DATA,
        # and the replies are one a command (no LMTP end of data is pending),
        # all plain 2xx lines but DATA's 354 (so that RCPT was accepted), no
        # longer in all than one line may be, so no line is too long.
        return True
    outcome = pending.replay(_codes(pending, cap, one_line_code))
    return outcome is not None and outcome[0] == 354 and outcome[1] > 0


def _codes(pending: PendingReplies, cap: int, one_line_code: Callable[[bytes], int | None]) -> Iterator[int | None]:
    """The codes of the unread one-line replies, in order; None at the first
    that is not one (or is a 421, after which no content may go). Lines are
    peeked as needed: an LMTP end of data is owed one reply per recipient,
    so how many to look at is known only as they are counted."""
    taken = 0
    lines = pending.unread.peek_lines(len(pending), cap)
    if lines is None:
        return
    while True:
        if taken == len(lines):
            more = pending.unread.peek_lines(taken + 1, cap)
            if more is None:
                return
            lines = more
        code = one_line_code(lines[taken])
        taken += 1
        yield None if code == 421 else code

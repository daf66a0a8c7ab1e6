"""The client role of the SMTP core: commands in, bytes out; bytes in, replies out.

``ClientConnection`` never touches a socket. A driver calls ``send(event)`` and
writes the bytes it returns, feeds what it reads to ``receive_data`` and takes
replies from ``next_event``. The connection keeps a queue of the replies it
still expects, one entry per command sent, so a driver can pipeline as far as
the state table allows and still get every reply in order. The legal order of
commands is in ``state.py``; this class only applies it.

Replies are parsed with hard caps on one line and on a whole multi-line reply,
so a hostile server cannot make us buffer without bound. A reply outside RFC
5321 4.2's grammar breaks the connection (4.2.1: fatal) with a
``MalformedReply`` that carries what was read, for a caller that reports it. After the 220 to
STARTTLS every byte already received is thrown away (RFC 3207 5: anything the
server sent before the handshake cannot be trusted), and nothing may be sent
until the driver says the handshake is done.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Optional

from ..errors import LocalProtocolError, MalformedReply, RemoteProtocolError
from ..limits import DEFAULT_LIMITS, Limits
from ..reply import Reply
from .buffer import LineTooLong, ReceiveBuffer
from .capabilities import Capabilities
from .commands import format_command
from .data import DotStuffer
from .events import (
    NEED_DATA, Auth, AuthResponse, Bdat, Closed, Command, Data, Ehlo, EndOfData, Helo,
    Lhlo, Mail, MessageData, NeedData, Quit, RawCommand, Rcpt, Rset, StartTLS,
)
from .state import CLIENT_REPLY, CLIENT_SEND, ClientState

__all__ = ["ClientConnection", "ClientState", "Sendable", "PreparedWrite", "PlainReplies", "prepare_write"]

Sendable = Command | MessageData | EndOfData


# One expected reply: (the command's type, or None for the greeting;
# True when LMTP answers it once per accepted recipient). A plain tuple: one
# is made per command, on the hot path.
_Expect = tuple[Optional[type], bool]
_RESETS = frozenset({Mail, Rset, Ehlo, Helo, Lhlo})


class ClientConnection:
    """Sans-I/O SMTP (or LMTP) client."""

    def __init__(self, *, limits: Limits = DEFAULT_LIMITS, lmtp: bool = False) -> None:
        self.limits = limits
        self.lmtp = lmtp
        self.state = ClientState.GREETING
        self.capabilities: Capabilities | None = None
        self.discarded_after_starttls = 0
        self._buffer = ReceiveBuffer()
        self._pending: deque[_Expect] = deque([(None, False)])
        self._stuffer: DotStuffer | None = None
        self._bdat_remaining = 0
        self._lines: list[str] = []
        self._code = 0
        self._reply_size = 0
        self._peer_closed = False
        self._broken: RemoteProtocolError | None = None
        # LMTP: how many RCPTs the current transaction got accepted.
        self._accepted = 0
        # What the usual replies to the last prepared write look like, kept
        # until a command goes out with send() (see send_prepared_when_allowed).
        self._plain: PlainReplies | None = None
        # The server said 421: it is closing, and no content may follow.
        self._closing = False
        # The longest a one-line reply may be, CRLF included.
        self._one_line_cap = min(limits.reply_line, limits.reply_total)

    # -- sending ---------------------------------------------------------

    @property
    def pending_replies(self) -> int:
        """Replies still expected (an LMTP end of data counts once)."""
        return len(self._pending)

    @property
    def closing(self) -> bool:
        """The server said 421 (RFC 5321 3.8): it is closing the connection,
        and no reply after that one will come."""
        return self._closing

    def send(self, event: Sendable, *, spelling: RawCommand | None = None) -> bytes:
        """The bytes for ``event``; raises LocalProtocolError if not legal now.

        ``spelling`` puts another command line on the wire for ``event``: the
        core formats that ``RawCommand`` (refusing control characters as for
        any command) while state and replies are tracked as for ``event``. The
        ``smtplib`` drop-in uses it to send the stdlib's exact lines (``mail
        FROM:<a> size=10``) as a typed ``Mail``.
        """
        kind = type(event)
        if self._broken is not None:
            raise LocalProtocolError(f"connection is broken: {self._broken}")
        next_state = CLIENT_SEND[self.state].get(kind)
        if next_state is None:
            raise LocalProtocolError(f"cannot send {kind.__name__} while {self.state.value}")
        self._plain = None
        if isinstance(event, MessageData):
            if spelling is not None:
                raise LocalProtocolError("message content has no command spelling")
            data = self._content(event.data)
            if self.state is ClientState.BDAT_CONTENT and self._bdat_remaining == 0:
                next_state = ClientState.READY
        elif isinstance(event, EndOfData):
            if spelling is not None:
                raise LocalProtocolError("message content has no command spelling")
            # No MessageData at all is the empty message: just the terminator.
            data = (self._stuffer or DotStuffer()).end()
            self._stuffer = None
            self._pending.append((EndOfData, self.lmtp))
        else:
            data = format_command(spelling if spelling is not None else event)
            per_recipient = False
            if isinstance(event, Bdat):
                self._bdat_remaining = event.size
                per_recipient = self.lmtp and event.last
                if not event.size:
                    next_state = ClientState.READY
            self._pending.append((kind, per_recipient))
        self.state = next_state
        return data

    def send_prepared(self, prepared: PreparedWrite) -> bytes:
        """The bytes of a write formatted earlier by ``prepare_write``.

        ``prepare_write`` already walked the state table from the state the
        group's first event needs, so this only checks that the connection is
        in that state and applies the outcome: all or nothing, LocalProtocolError
        and no change otherwise. Prepared content is a whole dot-stuffed
        message, so it may only start a message, never continue one begun
        with ``send``.
        """
        if self._broken is not None:
            raise LocalProtocolError(f"connection is broken: {self._broken}")
        if self.state is not prepared.start:
            kind = type(prepared.events[0]).__name__
            raise LocalProtocolError(f"cannot send {kind} while {self.state.value}")
        if prepared.start is ClientState.CONTENT and self._stuffer is not None:
            raise LocalProtocolError("prepared content must start a message sent with DATA")
        self._sent_prepared(prepared)
        return prepared.data

    def send_prepared_when_allowed(self, prepared: PreparedWrite) -> bytes | None:
        """The bytes of ``prepared`` content if the replies to DATA and its
        RCPTs allow it now; None if they do not, or not yet, or not plainly
        enough to tell from bytes still unread. The one judge of RFC 2920
        3.1 for both drivers: content may follow once DATA got its 354 and
        some RCPT of the transaction was accepted (with none, only the end
        of data may go), and never after a 421.

        The replies may have been taken with ``next_event`` already, or may
        still be unread. Across a slow link every microsecond between the
        354 arriving and the content leaving is paid once per message, and
        parsing the group ahead of the 354 (the last message's end of data,
        the next MAIL and RCPTs) is most of it; so unread replies are judged
        on their bytes: every reply still expected must be a complete
        one-line reply. Then the connection stands as if they had been taken
        and ``send_prepared`` called, and ``next_event`` still hands out
        every one of them, in order. Raises LocalProtocolError, as
        ``send_prepared`` does, if content may follow but ``prepared`` cannot.
        """
        if self.state is ClientState.CONTENT:
            return self.send_prepared(prepared) if self._accepted and not self._closing else None
        return self._send_prepared_early(prepared)

    def _send_prepared_early(self, prepared: PreparedWrite) -> bytes | None:
        if (
            self.state is not ClientState.DATA_WAIT or prepared.start is not ClientState.CONTENT
            or self._lines or self._broken is not None or self._peer_closed or self._closing
        ):
            return None
        pending = self._pending
        plain, buffer = self._plain, self._buffer
        if (
            plain is not None and len(pending) == plain.count
            and buffer.fullmatch(plain.pattern, self._one_line_cap)
        ):
            # The usual group, judged in one C call: the replies to a
            # prepared write whose RCPT came last before DATA, all plain 2xx
            # lines but DATA's 354 (so that RCPT was accepted); no longer in
            # all than one line may be, so no line is too long.
            self._sent_prepared(prepared)
            return prepared.data
        limit = self._one_line_cap
        # An LMTP end of data is answered once per accepted recipient, so the
        # lines to look at are counted as they are read.
        lines = self._buffer.peek_lines(len(pending), limit)
        if lines is None:
            return None
        accepted, taken, code = self._accepted, 0, 0
        for command, per_recipient in pending:
            while True:
                if taken == len(lines):
                    more = self._buffer.peek_lines(taken + 1, limit)
                    if more is None:
                        return None
                    lines = more
                seen = _one_line_code(lines[taken])
                taken += 1
                if seen is None or seen == 421:
                    return None
                code = seen
                if command in _RESETS:
                    accepted = 0
                elif command is Rcpt and code < 400:
                    accepted += 1
                if per_recipient and accepted > 1:
                    accepted -= 1
                    continue
                if per_recipient:
                    accepted = 0
                break
        if code != 354 or not accepted:
            return None
        self._sent_prepared(prepared)
        return prepared.data

    def _sent_prepared(self, prepared: PreparedWrite) -> None:
        self.state = prepared.end
        if self.lmtp:
            self._pending.extend(prepared.expect_lmtp)
            self._plain = None
        else:
            self._pending.extend(prepared.expect)
            self._plain = prepared.plain

    def _content(self, chunk: bytes) -> bytes:
        if self.state is ClientState.BDAT_CONTENT:
            if len(chunk) > self._bdat_remaining:
                raise LocalProtocolError(
                    f"BDAT chunk overrun: {len(chunk)} bytes given, {self._bdat_remaining} announced"
                )
            self._bdat_remaining -= len(chunk)
            return chunk
        if self._stuffer is None:
            self._stuffer = DotStuffer()
        return self._stuffer.feed(chunk)

    def tls_established(self) -> None:
        """The driver finished the TLS handshake: start over with EHLO (RFC 3207 4.2)."""
        if self.state is not ClientState.TLS_HANDSHAKE:
            raise LocalProtocolError(f"no TLS handshake expected while {self.state.value}")
        self.state = ClientState.READY
        self.capabilities = None
        self._buffer.clear()

    # -- receiving -------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes read from the server; ``b""`` means it closed the connection."""
        if not data:
            self._peer_closed = True
        elif self.state is ClientState.TLS_HANDSHAKE:
            self.discarded_after_starttls += len(data)
        else:
            self._buffer.feed(data)

    def next_event(self) -> Reply | Closed | NeedData:
        """The next complete reply, ``Closed``, or ``NEED_DATA``."""
        if self._broken is not None:
            raise self._broken
        try:
            reply = self._read_reply()
        except RemoteProtocolError as err:
            self._broken = err
            self.state = ClientState.CLOSED
            raise
        if reply is None:
            if self._peer_closed:
                if self._buffer or self._lines:
                    self._fail("server closed the connection in the middle of a reply")
                self.state = ClientState.CLOSED
                return Closed()
            return NEED_DATA
        self._answered(reply)
        return reply

    def _fail(self, message: str) -> None:
        self._broken = RemoteProtocolError(message)
        self.state = ClientState.CLOSED
        raise self._broken

    def _read_reply(self) -> Reply | None:
        buffer, limits = self._buffer, self.limits
        while True:
            try:
                raw = buffer.take_line(limits.reply_line)
            except LineTooLong as exc:
                raise RemoteProtocolError(
                    f"server sent a reply line longer than {limits.reply_line} octets"
                ) from exc
            if raw is None:
                return None
            if not self._lines:
                known = _ONE_LINE_REPLIES.get(raw)
                if known is not None and len(raw) + 2 <= limits.reply_total:
                    return known  # seen before: replies are immutable, share it
            self._reply_size += len(raw) + 2
            if self._reply_size > limits.reply_total:
                raise RemoteProtocolError(
                    f"server sent a reply longer than {limits.reply_total} octets"
                )
            code, last, text = _parse_reply_line(raw, self._lines)
            if not self._lines:
                if last:  # a one-line reply, by far the most common
                    self._reply_size = 0
                    reply = Reply(code, (text,))
                    if len(raw) <= 80 and len(_ONE_LINE_REPLIES) < 512:
                        _ONE_LINE_REPLIES[raw] = reply
                    return reply
            elif code != self._code:
                raise MalformedReply(
                    f"reply lines disagree on the code: {self._code} then {code}",
                    code, (*self._lines, text),
                )
            self._code = code
            self._lines.append(text)
            if last:
                reply = Reply(code, tuple(self._lines))
                self._lines = []
                self._reply_size = 0
                return reply

    def _answered(self, reply: Reply) -> None:
        if reply.code == 421:
            self._closing = True
        if not self._pending:
            return  # unsolicited (e.g. 421 before closing): the driver decides
        command, per_recipient = self._pending[0]
        if command in _RESETS:
            self._accepted = 0
        elif command is Rcpt and reply.code < 400:
            self._accepted += 1
        if per_recipient and self._accepted > 1:
            self._accepted -= 1  # more LMTP replies to come for this data
            return
        self._pending.popleft()
        if per_recipient:
            self._accepted = 0
        if not self._pending:
            next_state = CLIENT_REPLY.get((self.state, reply.code)) or CLIENT_REPLY.get((self.state, None))
            if next_state is not None:
                self.state = next_state
            if self.state is ClientState.TLS_HANDSHAKE:
                self.discarded_after_starttls += len(self._buffer)
                self._buffer.clear()
        if reply.code == 250 and command in (Ehlo, Lhlo, Helo):
            self.capabilities = Capabilities.from_reply(reply) if command is not Helo else Capabilities(reply.lines[0], {})


@dataclass(frozen=True, slots=True)
class PreparedWrite:
    """A group of events formatted ahead of sending (see ``prepare_write``)."""

    events: tuple[Sendable, ...]
    parts: tuple[bytes, ...]  # each event's bytes, for a driver's debug log
    data: bytes
    start: ClientState  # the state the group is sent from
    end: ClientState  # and the state it leaves
    expect: tuple[_Expect, ...]  # the replies it asks for (SMTP)
    expect_lmtp: tuple[_Expect, ...]  # (LMTP: the end of data once per recipient)
    plain: PlainReplies | None = None  # a group ending in RCPT, DATA: its usual replies


@dataclass(frozen=True, slots=True)
class PlainReplies:
    """``count`` one-line replies, 2xx but the last, DATA's 354 (a pattern
    for the unread bytes: they must be just these lines)."""

    count: int
    pattern: re.Pattern[bytes]


# Where a prepared group may start, by its first event: content only after a
# 354, anything else from READY (AUTH answers and QUIT before the greeting go
# through send()).
_PREPARED_START = {MessageData: ClientState.CONTENT, EndOfData: ClientState.CONTENT}


def prepare_write(events: Iterable[Sendable]) -> PreparedWrite:
    """Format ``events`` now; ``ClientConnection.send_prepared`` commits them later.

    Formatting needs no connection state, so a pipelining client can do it
    while it waits for the server's replies to the previous group and, once
    they are in, send at once. Commands are checked here exactly as ``send``
    checks them. Content must be a whole message (``MessageData`` pieces then
    ``EndOfData``), dot-stuffed here; BDAT goes through ``send``, which
    counts its chunk octets.
    """
    kept = tuple(events)
    if not kept:
        raise LocalProtocolError("nothing to prepare")
    start = state = _PREPARED_START.get(type(kept[0]), ClientState.READY)
    stuffer: DotStuffer | None = None
    parts: list[bytes] = []
    expect: list[_Expect] = []
    expect_lmtp: list[_Expect] = []
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
            expect.append((EndOfData, False))
            expect_lmtp.append((EndOfData, True))
        else:
            part = format_command(event)
            expect.append((kind, False))
            expect_lmtp.append((kind, False))
        parts.append(part)
        state = next_state
    if stuffer is not None:
        raise LocalProtocolError("prepared content must end with EndOfData")
    plain = None
    if len(expect) > 1 and expect[-1][0] is Data and expect[-2][0] is Rcpt:
        plain = PlainReplies(len(expect), _plain_group(len(expect)))
    return PreparedWrite(
        kept, tuple(parts), b"".join(parts), start, state, tuple(expect), tuple(expect_lmtp), plain,
    )


# Short one-line replies already parsed ("250 2.1.0 Ok" comes back for every
# MAIL): a bounded memo from the raw line to its immutable Reply.
_ONE_LINE_REPLIES: dict[bytes, Reply] = {}


def _parse_reply_line(raw: bytes, before: Sequence[str] = ()) -> tuple[int, bool, str]:
    """``(code, is_last_line, text)`` of one reply line, strictly; ``before``
    are the reply's earlier lines, for the error (see ``MalformedReply``)."""
    head = raw[:3]
    sep = raw[3:4]
    if (
        len(raw) < 3 or not head.isdigit() or not (b"2" <= raw[:1] <= b"5")
        or sep not in (b"", b" ", b"-")
    ):
        # isdigit() takes ASCII digits only on bytes, so int() cannot fail.
        code = int(head) if len(head) == 3 and head.isdigit() else None
        raise MalformedReply(
            f"server sent a malformed reply line: {raw[:80]!r}",
            code, (*before, raw[4:].decode("utf-8", "surrogateescape")),
        )
    return int(head), sep != b"-", raw[4:].decode("utf-8", "surrogateescape")


_PLAIN_GROUPS: dict[int, re.Pattern[bytes]] = {}


def _plain_group(count: int) -> re.Pattern[bytes]:
    """``count`` one-line replies, 2xx but the last, which is 354, and
    nothing after them (line lengths are the caller's to bound)."""
    pattern = _PLAIN_GROUPS.get(count)
    if pattern is None:
        pattern = re.compile(rb"(?:2[0-9][0-9] [^\r\n]*\r\n){%d}354 [^\r\n]*\r\n" % (count - 1))
        if len(_PLAIN_GROUPS) < 64:
            _PLAIN_GROUPS[count] = pattern
    return pattern


def _one_line_code(raw: bytes) -> int | None:
    """The code of ``raw`` if it is a whole one-line reply, else None
    (malformed, or the first line of several): for looking ahead only, so a
    line this refuses is left for ``next_event`` to judge."""
    known = _ONE_LINE_REPLIES.get(raw)
    if known is not None:
        return known.code
    try:
        code, last, _ = _parse_reply_line(raw)
    except RemoteProtocolError:
        return None
    return code if last else None

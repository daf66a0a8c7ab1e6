"""The client role of the SMTP core: commands in, bytes out; bytes in, replies out.

``ClientConnection`` never touches a socket. A driver calls ``send(event)`` and
writes the bytes it returns, feeds what it reads to ``receive_data`` and takes
replies from ``next_event``. Every command sent is entered in the account of
replies still expected (``pending``, see ``pending.py``), so a driver can
pipeline as far as the state table allows and still get every reply in order.
The legal order of commands is in ``state.py``; this class only applies it.

There is one send path, ``send``: one event, or a group formatted ahead of time
(``lookahead.prepare_write``), which it commits all or nothing. Whether message
content may follow the replies to DATA and its RCPTs is ``content_allowed``'s
to say (RFC 2920 3.1), judging replies still unread on their bytes when it can
(``lookahead.judge``). ``send_raw`` is the escape hatch for a program that
sequences the dialog itself (the ``smtplib`` drop-in): a line outside the state
table, still checked, still paired with its reply.

Replies are parsed with hard caps on one line and on a whole multi-line reply,
so a hostile server cannot make us buffer without bound. A reply outside RFC
5321 4.2's grammar breaks the connection (4.2.1: fatal) with a
``MalformedReply`` that carries what was read, for a caller that reports it. After the 220 to
STARTTLS every byte already received is thrown away (RFC 3207 5: anything the
server sent before the handshake cannot be trusted), and nothing may be sent
until the driver says the handshake is done.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import LocalProtocolError, MalformedReply, RemoteProtocolError
from ..limits import DEFAULT_LIMITS, Limits
from ..reply import Reply
from .buffer import LineTooLong, ReceiveBuffer
from .capabilities import Capabilities
from .commands import format_command
from .data import DotStuffer
from .events import NEED_DATA, Bdat, Closed, Ehlo, EndOfData, Helo, Lhlo, MessageData, NeedData, RawCommand
from .lookahead import PreparedWrite, Sendable, judge, prepare_write
from .pending import PendingReplies
from .state import CLIENT_REPLY, CLIENT_SEND, ClientState

__all__ = ["ClientConnection", "ClientState", "Sendable", "PreparedWrite", "prepare_write"]

# The states the hot paths test, bound once: an enum member looked up on its
# class is a descriptor call, paid on every send and every read otherwise.
_READY, _CONTENT, _DATA_WAIT, _BDAT_CONTENT, _TLS_HANDSHAKE = (
    ClientState.READY, ClientState.CONTENT, ClientState.DATA_WAIT, ClientState.BDAT_CONTENT,
    ClientState.TLS_HANDSHAKE,
)

# The memo of one-line replies: lines up to this long, this many of them.
_MEMO_LINE = 80
_MEMO_SIZE = 512


class ClientConnection:
    """Sans-I/O SMTP (or LMTP) client."""

    def __init__(self, *, limits: Limits = DEFAULT_LIMITS, lmtp: bool = False) -> None:
        self.limits = limits
        self.lmtp = lmtp
        self.state = ClientState.GREETING
        self.capabilities: Capabilities | None = None
        self.discarded_after_starttls = 0
        self._buffer = ReceiveBuffer()
        # The replies still expected, and what was received of them: a
        # public view (the look-ahead's), kept by this class alone.
        self.pending = PendingReplies(self._buffer, lmtp=lmtp)
        self._stuffer: DotStuffer | None = None
        self._bdat_remaining = 0
        self._lines: list[str] = []
        self._code = 0
        self._reply_size = 0
        self._peer_closed = False
        self._broken: RemoteProtocolError | None = None
        # The server said 421: it is closing, and no content may follow.
        self._closing = False
        # A line went out with send_raw: the program sequences the dialog.
        self._raw = False
        # The longest a one-line reply may be, CRLF included.
        self._one_line_cap = min(limits.reply_line, limits.reply_total)
        # Short one-line replies already parsed ("250 2.1.0 Ok" comes back
        # for every MAIL): raw line -> its immutable Reply, bounded.
        self._known: dict[bytes, Reply] = {}

    # -- sending ---------------------------------------------------------

    @property
    def pending_replies(self) -> int:
        """Replies still expected (an LMTP end of data counts once)."""
        return len(self.pending)

    @property
    def raw(self) -> bool:
        """A line went out with ``send_raw``: the program sequences the dialog."""
        return self._raw

    @property
    def closing(self) -> bool:
        """The server said 421 (RFC 5321 3.8): it is closing the connection,
        and no reply after that one will come."""
        return self._closing

    def send(self, event: Sendable | PreparedWrite) -> bytes:
        """The bytes for ``event``; raises LocalProtocolError if not legal now.

        A ``PreparedWrite`` (``prepare_write``) is a group of events whose
        walk through the state table was made when it was formatted: it is
        sent whole from the state it starts from, or not at all. Prepared
        content is a whole dot-stuffed message, so it may only start a
        message, never continue one begun event by event.
        """
        if self._broken is not None:
            raise LocalProtocolError(f"connection is broken: {self._broken}")
        if isinstance(event, PreparedWrite):
            if self.state is not event.start:
                raise LocalProtocolError(f"cannot send {type(event.events[0]).__name__} while {self.state.value}")
            if event.start is _CONTENT and self._stuffer is not None:
                raise LocalProtocolError("prepared content must start a message sent with DATA")
            self.state = event.end
            self.pending.extend(event.expect)
            return event.data
        kind = type(event)
        next_state = CLIENT_SEND[self.state].get(kind)
        if next_state is None:
            raise LocalProtocolError(f"cannot send {kind.__name__} while {self.state.value}")
        if isinstance(event, MessageData):
            data = self._content(event.data)
            if self.state is _BDAT_CONTENT and self._bdat_remaining == 0:
                next_state = _READY
        elif isinstance(event, EndOfData):
            # No MessageData at all is the empty message: just the terminator.
            data = (self._stuffer or DotStuffer()).end()
            self._stuffer = None
            self.pending.expect((EndOfData, True))
        else:
            data = format_command(event)
            ends_message = False
            if isinstance(event, Bdat):
                self._bdat_remaining = event.size
                ends_message = event.last
                if not event.size:
                    next_state = _READY
            self.pending.expect((kind, ends_message))
        self.state = next_state
        return data

    def send_raw(self, command: RawCommand) -> bytes:
        """The escape hatch: ``command`` as a line, outside the state table.

        For a program that sequences the dialog itself and may put any line
        on the wire at any time, as ``smtplib`` lets it (``docmd``,
        ``putcmd``): the ``mailwire.smtplib`` drop-in. The line is checked as
        any command is (a CR, LF or other control character raises
        LocalProtocolError and nothing changes) and one more reply is
        expected for it, so replies still pair with what was sent. What the
        line means is the program's business: the state stays as it is, and
        the connection is raw from then on, taking ``tls_established``
        whenever the program says it switched to TLS.
        """
        if self._broken is not None:
            raise LocalProtocolError(f"connection is broken: {self._broken}")
        data = format_command(command)
        self._raw = True
        self.pending.expect((RawCommand, False))
        return data

    def content_allowed(self) -> bool:
        """May message content go now? The one judge of RFC 2920 3.1 for
        every driver: once DATA got its 354 and some RCPT of the transaction
        was accepted (with none, only the end of data may go), and never
        after a 421.

        The replies may have been taken with ``next_event`` already, or may
        still be unread: then they are judged on their bytes (see
        ``lookahead.judge``), which must be plain enough to tell. When they
        allow it, the connection stands where they lead (content may be
        sent) while ``next_event`` still hands out every one of them, in
        order.
        """
        if self._closing or self._broken is not None:
            return False
        if self.state is _CONTENT:
            # Replies still expected here were judged before they were taken.
            return bool(self.pending) or self.pending.accepted > 0
        if self.state is not _DATA_WAIT or self._lines or self._peer_closed:
            return False
        if not judge(self.pending, self._one_line_cap, self._one_line_code):
            return False
        self.state = _CONTENT
        return True

    def _content(self, chunk: bytes) -> bytes:
        if self.state is _BDAT_CONTENT:
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
        """The driver finished the TLS handshake: start over with EHLO (RFC
        3207 4.2), and forget anything received before it (5). Legal after
        the 220 to STARTTLS, and on a raw connection whenever the program
        says so (see ``send_raw``)."""
        if self.state is _TLS_HANDSHAKE:
            self.state = _READY
        elif not self._raw:
            raise LocalProtocolError(f"no TLS handshake expected while {self.state.value}")
        self.capabilities = None
        self.discarded_after_starttls += len(self._buffer)
        self._buffer.clear()

    # -- receiving -------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes read from the server; ``b""`` means it closed the connection."""
        if not data:
            self._peer_closed = True
        elif self.state is _TLS_HANDSHAKE:
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
                known = self._known.get(raw)
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
                    if len(raw) <= _MEMO_LINE and len(self._known) < _MEMO_SIZE:
                        self._known[raw] = reply
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

    def _one_line_code(self, raw: bytes) -> int | None:
        """The code of ``raw`` if it is a whole one-line reply, else None
        (malformed, or the first line of several): for looking ahead only,
        so a line this refuses is left for ``next_event`` to judge."""
        known = self._known.get(raw)
        if known is not None:
            return known.code
        try:
            code, last, _ = _parse_reply_line(raw)
        except RemoteProtocolError:
            return None
        return code if last else None

    def _answered(self, reply: Reply) -> None:
        if reply.code == 421:
            self._closing = True
        pending = self.pending
        if not pending:
            return  # unsolicited (e.g. 421 before closing): the driver decides
        command = pending.answer(reply.code)
        if not pending:
            next_state = CLIENT_REPLY.get((self.state, reply.code)) or CLIENT_REPLY.get((self.state, None))
            if next_state is not None:
                self.state = next_state
            if self.state is _TLS_HANDSHAKE:
                self.discarded_after_starttls += len(self._buffer)
                self._buffer.clear()
        if reply.code == 250 and command in (Ehlo, Lhlo, Helo):
            self.capabilities = Capabilities.from_reply(reply) if command is not Helo else Capabilities(reply.lines[0], {})


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

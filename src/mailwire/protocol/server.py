"""The server role of the SMTP core: bytes in, events out; replies in, bytes out.

``ServerConnection`` never touches a socket: a driver feeds it what it reads,
takes events out and writes what ``send(reply)`` returns (the contract is on
the class). The conversation strictly alternates, which is all PIPELINING
needs: commands wait in the buffer and are answered in order. Which command
is legal when, and where each reply leads, is looked up in ``state.py``.

The core is built with what the server offers (``ServerExtensions``) and
refuses by itself everything the protocol decides: syntax, sequence, limits,
parameters of extensions not offered, AUTH and STARTTLS where they are not.
Each command's rules are one method here (``_check_mail``, ``_check_rcpt``,
``_start_auth``, ``_start_chunk``); it runs the SASL exchanges itself and
hands the driver only ``Credentials`` to judge. The rest is policy: the
driver's. Only ``<CRLF>.<CRLF>`` ends DATA; a BDAT chunk is counted off the
buffer and never parsed; whatever follows STARTTLS is dropped unread (RFC 3207
5). The DATA path touches each octet only in C (``bytes.find``, and
``io``'s newline scanner for bare line endings; see ``data.py``): no Python
loop and no regex runs per content line. Content leaves as it arrives, one
``MessageData`` per read, and is checked as it passes: a refusal part-way is
told at once (``ContentRefused``), so a driver streaming the message to its
backend stores nothing more of it.

One class, over 500 lines: its fields are one state machine, which would
only be scattered by a split.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import Union

from ..errors import LocalProtocolError, RemoteProtocolError
from ..limits import DEFAULT_LIMITS, Limits
from ..reply import (
    AUTH_CANCELLED, AUTH_REQUIRED, ENCRYPTION_REQUIRED, NEEDS_SMTPUTF8, NOT_IMPLEMENTED,
    PARAMETER_NOT_IMPLEMENTED, REQUIRETLS_NEEDS_TLS, TLS_NOT_AVAILABLE, UNKNOWN_MECHANISM, Reply,
    helo_accepted,
)
from ..sasl import Challenge, Credentials, ServerMechanism, server_mechanism
from .buffer import LineTooLong, ReceiveBuffer
from .capabilities import format_ehlo_reply
from .commands import CommandCache, challenge_reply, parse_auth_response, parse_command
from .data import BareLineEndings, DataReader, LineLengthCheck
from .events import (
    NEED_DATA, Auth, AuthChallenge, AuthResponse, Bdat, Closed, Command, ContentRefused, Ehlo, EndOfChunk,
    EndOfMessage,
    Expn, Helo, Help, Lhlo, Mail, MessageData, NeedData, Noop, RawCommand, Rcpt, Rejected, Rset, StartTLS,
    Vrfy,
)
from .extensions import ServerExtensions
from .state import (
    SEQUENCE_HINTS, SERVER_COMMANDS, SERVER_FOREIGN, SERVER_GUARDS, SERVER_IDLE, Greeting,
    MalformedResponse, RefusedChunk, ServerFlag, ServerState,
)

__all__ = ["ServerConnection", "ServerState", "ServerFlag", "ServerEvent", "ServerExtensions"]

ServerEvent = Union[
    Command, MessageData, EndOfChunk, EndOfMessage, ContentRefused, AuthChallenge, Credentials, Rejected, Closed,
]

# Replies the core gives by itself; each carries an RFC 3463 enhanced code.
TOO_LONG = Reply.of(500, "5.5.6", "Line too long")  # RFC 5321 4.5.3.1.4
UNRECOGNIZED = Reply.of(500, "5.5.1", "Command unrecognized")
BARE_LINE_ENDINGS = Reply.of(550, "5.5.2", "Message contains bare CR or LF (RFC 5321 2.3.8)")
TOO_BIG = Reply.of(552, "5.3.4", "Message too big")
SIZE_PARAM_TOO_BIG = Reply.of(552, "5.3.4", "Message size exceeds fixed maximum message size")  # RFC 1870 6.1
TOO_MANY_RECIPIENTS = Reply.of(452, "4.5.3", "Too many recipients")  # RFC 5321 4.5.3.1.10

# Commands that move no transaction forward (Postfix's smtpd_junk_command_limit
# names NOOP, VRFY, ETRN and RSET; HELP, EXPN and the greetings do no more):
# past limits.junk_commands without a delivery, each is an error.
JUNK_COMMANDS = frozenset({Noop, Rset, Vrfy, Expn, Help, Ehlo, Helo, Lhlo})

_S = ServerState
_TRANSACTION = frozenset({_S.MAIL, _S.RCPT, _S.CHUNKING, _S.DATA})
_CONTENT = frozenset({_S.CHUNKING, _S.DATA})
_TRANSACTION_FLAGS = frozenset({ServerFlag.BINARYMIME, ServerFlag.SMTPUTF8})
# Answers that end an AUTH exchange: a 5xx to one of them is a failed AUTH.
_AUTH_EXCHANGE = frozenset({Auth, AuthResponse, Credentials})
DEFAULT_EXTENSIONS = ServerExtensions()
# Immutable, so one of each serves every connection.
_END_OF_MESSAGE = EndOfMessage()
_END_OF_CHUNK = EndOfChunk()

# What the driver must answer next: the event handed out, how many replies it
# takes, and the SERVER_COMMANDS key whose move the last one applies (None:
# the state stays as it is).
_Answer = tuple[ServerEvent, int, "type | None"]


class _Chunk:
    """A BDAT chunk being read: counted off the buffer, never parsed."""

    __slots__ = ("left", "last", "refusal")

    def __init__(self, size: int, last: bool, refusal: Reply | None) -> None:
        self.left = size
        self.last = last
        # The BDAT itself is refused: swallow the octets, then answer this.
        # (A refused message, ServerConnection._refusal, swallows them too.)
        self.refusal = refusal


@lru_cache(maxsize=16)
def _line_too_long(limit: int) -> Reply:
    """One reply object per limit, not one per connection."""
    return Reply.of(550, "5.6.0", f"Message has a line longer than {limit} octets (RFC 5321 4.5.3.1.6)")


def _too_many_errors(hostname: str) -> Reply:
    return Reply.of(421, "4.7.0", f"{hostname} Too many errors")


_NO_VERBS: frozenset[str] = frozenset()
_NO_FLAGS: frozenset[ServerFlag] = frozenset()


class ServerConnection:
    """Sans-I/O SMTP (or LMTP) server.

    The driver contract:

    * ``send(greeting)`` first (220; 554 leaves only QUIT, RFC 5321 3.1; 421 closes).
    * ``next_event()`` gives ``NEED_DATA`` (read more, ``receive_data``), a
      command, ``MessageData``, ``EndOfChunk``, ``EndOfMessage``,
      ``ContentRefused``, ``AuthChallenge``, ``Credentials``, ``Rejected`` or
      ``Closed``. Whenever ``reply_due`` is non-zero, ``send`` that many
      replies before calling ``next_event`` again (it raises
      LocalProtocolError otherwise). A reply is due after every event
      except ``Bdat``, ``MessageData`` and ``ContentRefused``.
    * ``Rejected`` and ``AuthChallenge``: the core decided the reply; send
      ``event.reply``. With ``close`` set the connection is over after it.
    * Greetings: answer an accepted EHLO, HELO or LHLO with ``hello_reply``
      (the keywords of the ``extensions`` the core enforces).
    * Content: after ``354`` to ``Data``, and right after a ``Bdat`` event,
      ``MessageData`` pieces follow, ended by exactly one of ``EndOfChunk``
      (a chunk that is not the LAST: reply, the message goes on),
      ``EndOfMessage`` (the message is whole: reply), ``Rejected``
      (refused: bare CR/LF, size, a line longer than ``limits.text_line``;
      drop the whole message, the transaction is over) or ``Closed`` (drop
      it too). Content is checked as it passes: a refusal found while more
      is to come is told at once, ``ContentRefused`` (no reply due: store
      nothing more, drop what was kept), and the ``Rejected`` follows when
      the content's framing ends.
    * LMTP: after ``EndOfMessage``, ``reply_due`` is the number of accepted
      recipients: one reply each, in RCPT order. A refused message gives
      that many ``Rejected`` events instead, one after each reply.
    * AUTH: the core runs the exchange (``AuthChallenge`` for each 334) and
      hands out ``Credentials``; 2xx makes the session authenticated.
    * The transaction (envelope and content) is over whenever, after a
      ``send``, ``in_transaction`` is false.
    * After ``220`` to ``StartTLS`` the connection waits (``next_event``
      raises) until ``tls_established()``; then EHLO is required again.
    * ``421`` may be sent at any moment and closes; after ``221`` to ``Quit``
      or a peer close, ``next_event`` keeps returning ``Closed``.
    * Errors (``bad_commands``): a malformed or unknown line, a junk command
      past ``limits.junk_commands`` since the last delivery, and an AUTH
      exchange answered 5xx (a failed AUTH: RFC 4954 gives no budget, so it
      counts as an error, as in Postfix). Past ``limits.bad_commands`` the
      next event is a ``Rejected`` 421 that closes.

    ``extensions``: what the server offers (``advertise`` replaces it until
    the greeting is sent). ``extra_verbs``: verbs (beyond RFC 5321 and its
    extensions we parse) that the driver implements; they reach it as
    ``RawCommand``, any other unknown verb gets ``500 5.5.1`` from the core.
    ``tls=True`` says the connection is already encrypted (implicit TLS,
    RFC 8314), so STARTTLS is out of sequence. ``commands``: a memo of parsed
    lines to share between connections (none: every line is parsed).
    """

    # A server holds one of these per client, thousands at once: no __dict__.
    __slots__ = (
        "limits", "lmtp", "hostname", "bare_line_endings", "extra_verbs", "extensions", "commands", "state",
        "flags", "accepted_recipients", "message_size", "bad_commands", "junk_commands",
        "discarded_after_starttls", "_buffer", "_hello", "_peer_closed", "_skipping", "_reader", "_refusal",
        "_chunk", "_chunk_lines", "_pending", "_copies", "_copy_key", "_due", "_answer", "_event", "_sasl",
    )

    def __init__(
        self,
        *,
        limits: Limits = DEFAULT_LIMITS,
        lmtp: bool = False,
        hostname: str = "localhost",
        bare_line_endings: BareLineEndings = BareLineEndings.REFUSE,
        extra_verbs: Iterable[str] = (),
        tls: bool = False,
        extensions: ServerExtensions = DEFAULT_EXTENSIONS,
        commands: CommandCache | None = None,
    ) -> None:
        self.limits = limits
        self.lmtp = lmtp
        self.hostname = hostname
        self.bare_line_endings = bare_line_endings
        self.extra_verbs = frozenset(verb.upper() for verb in extra_verbs) if extra_verbs else _NO_VERBS
        self.extensions = extensions
        self.commands = commands
        self.state = ServerState.GREETING
        # Replaced, never changed in place: most sessions share the empty one.
        self.flags: frozenset[ServerFlag] = frozenset({ServerFlag.TLS}) if tls else _NO_FLAGS
        # Positive replies to RCPT in this transaction (LMTP: replies owed at its end).
        self.accepted_recipients = 0
        # Content octets of the current message so far (all BDAT chunks together).
        self.message_size = 0
        self.bad_commands = 0
        self.junk_commands = 0  # since the last message delivered
        self.discarded_after_starttls = 0
        self._buffer = ReceiveBuffer()
        self._hello = "LHLO" if lmtp else "EHLO/HELO"
        self._peer_closed = False
        self._skipping = False  # inside an overlong line, looking for its CRLF
        self._reader: DataReader | None = None
        self._refusal: Reply | None = None  # why the current DATA content is refused
        self._chunk: _Chunk | None = None
        # Line lengths across the BDAT chunks of a text (not BINARYMIME) message.
        self._chunk_lines: LineLengthCheck | None = None
        self._pending: _Answer | None = None  # decided, handed out by the next call
        self._copies = 0  # LMTP: further copies of a content refusal still owed
        self._copy_key: type | None = None
        self._due = 1  # replies owed before the next event; first the greeting
        self._answer: type | None = Greeting
        self._event: ServerEvent | None = None
        self._sasl: ServerMechanism | None = None  # the AUTH exchange under way

    # -- what the driver may ask ----------------------------------------------

    @property
    def reply_due(self) -> int:
        """How many replies ``send`` must produce before ``next_event`` goes on."""
        return self._due

    @property
    def receiving_content(self) -> bool:
        """Inside a message's content (DATA, or a BDAT chunk's octets): a driver
        waits for more with its data timeout rather than its idle timeout."""
        return self.state is ServerState.DATA or self._chunk is not None

    @property
    def in_message(self) -> bool:
        """From a message's first octet to the reply that ends it: in DATA,
        in a BDAT chunk, or between the chunks of one message (the client
        has not sent LAST yet)."""
        return self.state in _CONTENT or self._chunk is not None

    @property
    def buffered(self) -> int:
        """Octets received and not yet consumed: a driver's flow-control gauge."""
        return len(self._buffer)

    @property
    def tls(self) -> bool:
        return ServerFlag.TLS in self.flags

    @property
    def authenticated(self) -> bool:
        return ServerFlag.AUTHENTICATED in self.flags

    @property
    def in_transaction(self) -> bool:
        """Between an accepted MAIL and the reply that ends the message."""
        return self.state in _TRANSACTION

    def advertise(self, extensions: ServerExtensions) -> None:
        """Offer ``extensions`` instead: a driver learns some of what it can
        do (AUTH, say, from the session its backend makes) only once the
        connection is open. Only before the greeting is sent."""
        if self.state is not ServerState.GREETING:
            raise LocalProtocolError("what a server offers is settled once it has greeted")
        self.extensions = extensions

    def hello_reply(self, event: Ehlo | Helo | Lhlo) -> Reply:
        """The 250 accepting a greeting: for EHLO and LHLO, the keywords of
        ``extensions`` in the session's TLS state (RFC 5321 4.1.1.1), which
        are exactly what the core then enforces."""
        if isinstance(event, Helo):
            return helo_accepted(self.hostname)
        keywords = self.extensions.keywords(max_size=self.limits.message_size, tls=self.tls)
        return format_ehlo_reply(self.hostname, keywords)

    # -- receiving ------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes read from the client; ``b""`` means it closed its side."""
        if not data:
            self._peer_closed = True
        elif self._peer_closed:
            raise LocalProtocolError("receive_data after the client closed the connection")
        elif self.state is ServerState.TLS_HANDSHAKE:
            self.discarded_after_starttls += len(data)
        elif self.state is not ServerState.CLOSED:
            self._buffer.feed(data)

    def next_event(self) -> ServerEvent | NeedData:
        """The next event, or ``NEED_DATA``; see the module doc for the contract."""
        if self._due:
            raise LocalProtocolError(f"a reply is due (to {self._answering()}) before the next event")
        if self._pending is not None:
            answer, self._pending = self._pending, None
            return self._hand_out(*answer)
        state = self.state
        if state is ServerState.CLOSED:
            return Closed()
        if state is ServerState.TLS_HANDSHAKE:
            raise LocalProtocolError("call tls_established() once the TLS handshake is done")
        if self._chunk is not None:
            return self._read_chunk(self._chunk)
        if state is ServerState.DATA:
            return self._read_data()
        return self._read_line()

    def _answering(self) -> str:
        event = self._event
        return "the greeting" if event is None else type(event).__name__

    def _hand_out(self, event: ServerEvent, due: int, answer: type | None) -> ServerEvent:
        self._due = due
        self._answer = answer
        self._event = event
        return event

    def _wait(self) -> Closed | NeedData:
        if self._peer_closed:
            self._enter(ServerState.CLOSED)
            return Closed()
        return NEED_DATA

    # -- command lines ----------------------------------------------------------

    def _read_line(self) -> ServerEvent | NeedData:
        buffer = self._buffer
        if self._skipping:
            if not buffer.skip_line():
                return self._wait()
            self._skipping = False
            return self._bad(TOO_LONG)
        try:
            # The longest line any command may have; shorter caps are checked below.
            line = buffer.take_line(self.limits.auth_line)
        except LineTooLong:
            self._skipping = True
            return self._read_line()
        if line is None:
            # Read to the end (a driver asks once after every read): _wait, written out.
            return NEED_DATA if not self._peer_closed else self._wait()
        if self.state is ServerState.AUTH:
            response = parse_auth_response(line)
            if isinstance(response, Rejected):
                return self._bad(response.reply)
            return self._auth_response(response)
        # RFC 5321 4.5.3.1.4: 512 octets; AUTH lines may be longer (RFC 4954 4).
        if len(line) + 2 > self.limits.command_line and line[:5].upper() != b"AUTH ":
            return self._bad(TOO_LONG)
        commands = self.commands
        return self._command(commands.parse(line) if commands is not None else parse_command(line))

    def _error(self) -> bool:
        """Count an error; True once there are too many (the session must end)."""
        self.bad_commands += 1
        return self.bad_commands > self.limits.bad_commands

    def _bad(self, reply: Reply) -> ServerEvent:
        """A line refused as malformed: counted, and too many end the session."""
        if self._error():
            return self._hand_out(Rejected(_too_many_errors(self.hostname), close=True), 1, None)
        answer = None
        if self.state is ServerState.AUTH:
            # A malformed answer to a 334 aborts the AUTH exchange (RFC 4954 4).
            self._sasl = None
            answer = MalformedResponse
        return self._hand_out(Rejected(reply), 1, answer)

    def _command(self, event: Command | Rejected) -> ServerEvent | NeedData:
        if isinstance(event, Rejected):
            return self._bad(event.reply)
        kind = type(event)
        if kind in SERVER_FOREIGN[self.lmtp] or (
            isinstance(event, RawCommand) and event.verb not in self.extra_verbs
        ):
            return self._bad(UNRECOGNIZED)
        if kind in JUNK_COMMANDS:
            self.junk_commands += 1
            junk = self.limits.junk_commands
            if junk and self.junk_commands > junk and self._error():
                return self._hand_out(Rejected(_too_many_errors(self.hostname), close=True), 1, None)
        # Most commands come in sequence and have no guard: then no call.
        in_sequence = kind in SERVER_COMMANDS[self.state] and kind not in SERVER_GUARDS
        refusal = None if in_sequence else self._out_of_sequence(event)
        if isinstance(event, Bdat):
            return self._start_chunk(event, refusal)
        if refusal is None:
            if isinstance(event, Mail):
                refusal = self._check_mail(event)
            elif isinstance(event, Rcpt):
                refusal = self._check_rcpt(event)
            elif isinstance(event, Auth):
                return self._start_auth(event)
            elif kind is StartTLS and not self.extensions.starttls:
                refusal = TLS_NOT_AVAILABLE  # no handshake could follow the 220
        if refusal is not None:
            return self._hand_out(Rejected(refusal), 1, None)
        # _hand_out(event, 1, kind), written out: every accepted command ends here.
        self._due = 1
        self._answer = kind
        self._event = event
        return event

    def _out_of_sequence(self, event: Command) -> Reply | None:
        """The 503 for a command the state (or the session's history) forbids."""
        kind = type(event)
        if kind not in SERVER_COMMANDS[self.state]:
            hint = SEQUENCE_HINTS.get((self.state, kind)) or SEQUENCE_HINTS.get((self.state, None))
            text = f"Bad sequence of commands: {hint.format(hello=self._hello)}" if hint else (
                "Bad sequence of commands"
            )
            return Reply.of(503, "5.5.1", text)
        guard = SERVER_GUARDS.get(kind)
        if guard is not None and guard[0] in self.flags:
            return Reply.of(503, "5.5.1", f"Bad sequence of commands: {guard[1]}")
        return None

    # -- the commands the extensions shape ---------------------------------------

    def _check_mail(self, event: Mail) -> Reply | None:
        """MAIL FROM (RFC 5321 4.1.1.2) in sequence: what the core refuses
        before the driver's policy is asked."""
        options = event.options
        limit = self.limits.message_size
        if limit and (options.size or 0) > limit:
            return SIZE_PARAM_TOO_BIG
        ext = self.extensions
        if (
            options.extra  # RFC 5321 4.1.1.11: unknown parameters
            or (options.body == "BINARYMIME" and not ext.chunking)
            or (options.smtputf8 and not ext.smtputf8)
            or ((options.ret is not None or options.envid is not None) and not ext.dsn)
            or (options.auth is not None and not ext.auth_offered(self.tls))  # RFC 4954 5
            or options.mt_priority is not None  # RFC 6710: never offered
        ):
            return PARAMETER_NOT_IMPLEMENTED
        if options.requiretls and not self.tls:
            return REQUIRETLS_NEEDS_TLS  # RFC 8689 4.1
        if not options.smtputf8 and not event.address.isascii():
            return NEEDS_SMTPUTF8  # RFC 6531 3.4
        if ext.auth_required and ServerFlag.AUTHENTICATED not in self.flags:
            return AUTH_REQUIRED
        return None

    def _check_rcpt(self, event: Rcpt) -> Reply | None:
        """RCPT TO (RFC 5321 4.1.1.3) in sequence, before the driver's policy."""
        if self.accepted_recipients >= self.limits.recipients:
            return TOO_MANY_RECIPIENTS
        options = event.options
        if options.extra or ((options.notify is not None or options.orcpt is not None) and not self.extensions.dsn):
            return PARAMETER_NOT_IMPLEMENTED
        if ServerFlag.SMTPUTF8 not in self.flags and not event.address.isascii():
            return NEEDS_SMTPUTF8  # RFC 6531 3.4: the transaction's MAIL said no SMTPUTF8
        return None

    def _start_auth(self, event: Auth) -> ServerEvent:
        """AUTH in sequence (RFC 4954 4): offered at all (502), over TLS
        unless plaintext is allowed (538), a mechanism on offer (504); then
        the exchange runs here and the driver judges the ``Credentials``.
        Every refusal ends the exchange as a failed AUTH."""
        ext = self.extensions
        if not ext.auth_mechanisms:
            refusal = NOT_IMPLEMENTED
        elif not (self.tls or ext.plaintext_auth):
            refusal = ENCRYPTION_REQUIRED
        elif event.mechanism not in ext.auth_mechanisms:
            refusal = UNKNOWN_MECHANISM
        else:
            self._sasl = server_mechanism(event.mechanism, self.hostname)
            return self._sasl_step(event.initial, Auth)
        return self._hand_out(Rejected(refusal), 1, Auth)

    def _auth_response(self, event: AuthResponse) -> ServerEvent:
        if event.data is None or self._sasl is None:
            self._sasl = None
            return self._hand_out(Rejected(AUTH_CANCELLED), 1, AuthResponse)  # "*" (RFC 4954 4)
        return self._sasl_step(event.data, AuthResponse)

    def _sasl_step(self, data: bytes | None, key: type) -> ServerEvent:
        mechanism = self._sasl
        assert mechanism is not None
        try:
            step = mechanism.step(data)
        except RemoteProtocolError as err:
            self._sasl = None
            return self._hand_out(Rejected(err.reply), 1, key)
        if isinstance(step, Challenge):
            return self._hand_out(AuthChallenge(challenge_reply(step.data)), 1, key)
        self._sasl = None
        return self._hand_out(step, 1, Credentials)

    # -- message content --------------------------------------------------------

    def _start_chunk(self, event: Bdat, refusal: Reply | None) -> ServerEvent | NeedData:
        """BDAT (RFC 3030 2): its octets follow the command whatever the
        answer, and are counted off the buffer, never parsed."""
        if refusal is not None:
            self._chunk = _Chunk(event.size, event.last, refusal)
            return self._read_chunk(self._chunk)
        limit = self.limits.message_size
        if limit and self._refusal is None and self.message_size + event.size > limit:
            self._refusal = TOO_BIG
            self._pending = (ContentRefused(TOO_BIG), 0, None)  # its octets are still to come
        self._chunk = _Chunk(event.size, event.last, None)
        if self._chunk_lines is None and ServerFlag.BINARYMIME not in self.flags:
            self._chunk_lines = LineLengthCheck(self.limits.text_line)
        return self._hand_out(event, 0, None)  # answered after the chunk's octets

    def _read_chunk(self, chunk: _Chunk) -> ServerEvent | NeedData:
        piece = self._buffer.take(chunk.left) if chunk.left else b""
        chunk.left -= len(piece)
        lines = self._chunk_lines
        taken = chunk.refusal is None and self._refusal is None
        if piece and taken and lines is not None:
            lines.feed(piece)
            if lines.exceeded:
                # Swallow the rest of the chunk; its reply refuses the message.
                self._refusal = _line_too_long(self.limits.text_line)
                if chunk.left:
                    return ContentRefused(self._refusal)
                taken = False
        emit = bool(piece) and taken
        if emit:
            self.message_size += len(piece)
        if chunk.left:
            return MessageData(piece) if emit else self._wait()
        self._chunk = None
        end = self._end_of_chunk(chunk)
        if emit:
            self._pending = end
            return MessageData(piece)
        return self._hand_out(*end)

    def _end_of_chunk(self, chunk: _Chunk) -> _Answer:
        if chunk.refusal is not None:
            # Inside a transaction the refusal ends it (see RefusedChunk).
            ends = RefusedChunk in SERVER_COMMANDS[self.state]
            return Rejected(chunk.refusal), 1, RefusedChunk if ends else None
        if not chunk.last:
            if self._refusal is not None:
                return self._refuse_content(self._refusal, EndOfChunk, 1)
            return _END_OF_CHUNK, 1, EndOfChunk
        # RFC 2033 4.2 / RFC 3030 4.2: LMTP answers the LAST chunk per recipient.
        copies = self.accepted_recipients if self.lmtp else 1
        if self._refusal is not None:
            return self._refuse_content(self._refusal, EndOfMessage, copies)
        return _END_OF_MESSAGE, copies, EndOfMessage

    def _read_data(self) -> ServerEvent | NeedData:
        reader = self._reader
        assert reader is not None
        buffer = self._buffer
        if not buffer:
            return NEED_DATA if not self._peer_closed else self._wait()
        # All of it (a whole read comes as it is, uncopied); whatever follows
        # the terminator is given back.
        content, rest = reader.feed(buffer.take_all())
        self.message_size = reader.size
        if self._refusal is None:
            limit = self.limits.message_size
            if limit and reader.size > limit:
                self._refusal = TOO_BIG
            elif reader.bare_line_endings and reader.policy is BareLineEndings.REFUSE:
                self._refusal = BARE_LINE_ENDINGS
            elif reader.lines.exceeded:
                self._refusal = _line_too_long(self.limits.text_line)
            if self._refusal is not None:
                reader.checking = False  # only its end matters now
                if rest is None:
                    return ContentRefused(self._refusal)  # the rest is read to the end, and dropped
        emit = bool(content) and self._refusal is None
        if rest is None:
            return MessageData(content) if emit else self._wait()
        if rest:
            buffer.unread(len(rest))  # the octets after <CRLF>.<CRLF> are commands again
        copies = self.accepted_recipients if self.lmtp else 1
        end: _Answer = (_END_OF_MESSAGE, copies, EndOfMessage)
        if self._refusal is not None:
            end = self._refuse_content(self._refusal, EndOfMessage, copies)
        if emit:
            self._pending = end
            return MessageData(content)
        return self._hand_out(*end)

    def _refuse_content(self, reply: Reply, key: type, copies: int) -> _Answer:
        """A ``Rejected`` ending a content stream; in LMTP one per recipient."""
        self._copies = copies - 1
        self._copy_key = key
        return Rejected(reply), 1, key if copies == 1 else None

    # -- sending ------------------------------------------------------------------

    def send(self, reply: Reply) -> bytes:
        """The bytes of ``reply``, which answers what ``next_event`` handed out.

        Raises LocalProtocolError if nothing awaits a reply or if ``reply``
        cannot answer it (a 354 to anything but DATA, a 2xx to DATA ...). A
        421 may be sent at any moment and closes the connection.
        """
        state = self.state
        if state is ServerState.CLOSED:
            raise LocalProtocolError("the connection is closed")
        code = reply.code
        if code == 421:
            # RFC 5321 3.8: a server may close at any time, saying 421 first.
            self._enter(ServerState.CLOSED)
            return reply.wire
        if not self._due:
            raise LocalProtocolError(f"nothing awaits a reply while {state.value}")
        key = self._answer
        # Where the reply leads (written out: this runs for every reply).
        if key is None:
            if 300 <= code < 400:
                raise LocalProtocolError(f"{code} cannot answer {self._answering()}")
            target = None
        else:
            move = SERVER_COMMANDS[state][key]
            klass = code // 100
            target = move.ok if klass == 2 else move.more if klass == 3 else move.fail
            if target is None:
                raise LocalProtocolError(f"{code} cannot answer {key.__name__}")
        self._due -= 1
        if not self._due:
            self._answered(key, target, reply)
        return reply.wire

    def _answered(self, key: type | None, target: ServerState | None, reply: Reply) -> None:
        event = self._event
        if isinstance(event, Rejected) and event.close:
            self._enter(ServerState.CLOSED)  # whatever the driver chose to say
            return
        if reply.code < 300:
            if key is Rcpt:
                self.accepted_recipients += 1
            elif key is Mail:
                if isinstance(event, Mail) and (event.options.body or event.options.smtputf8):
                    self._transaction_flags(event)
            elif key is Credentials:
                self.flags = self.flags | {ServerFlag.AUTHENTICATED}
            elif key is EndOfMessage:
                self.junk_commands = 0  # Postfix: reset after mail is delivered
        elif reply.code >= 500 and key in _AUTH_EXCHANGE and self._error():
            # A failed AUTH is an error; past the limit the next event closes.
            self._pending = (Rejected(_too_many_errors(self.hostname), close=True), 1, None)
        if target is not None:
            self._enter(target)
        if self._copies:
            self._copies -= 1
            assert event is not None
            self._pending = (event, 1, self._copy_key if not self._copies else None)

    def _transaction_flags(self, event: Mail) -> None:
        """What the accepted MAIL says of the rest of its transaction."""
        options = event.options
        if options.body == "BINARYMIME":
            self.flags = self.flags | {ServerFlag.BINARYMIME}
        if options.smtputf8:
            self.flags = self.flags | {ServerFlag.SMTPUTF8}

    def _enter(self, state: ServerState) -> None:
        self.state = state
        if state in SERVER_IDLE:
            self.accepted_recipients = 0
            self.message_size = 0
            if self.flags & _TRANSACTION_FLAGS:
                self.flags = self.flags - _TRANSACTION_FLAGS
            self._reader = None
            self._refusal = None
            self._chunk_lines = None
        elif state is ServerState.DATA:
            self._reader = DataReader(self.bare_line_endings, self.limits.text_line)
            self._refusal = None
        elif state is ServerState.TLS_HANDSHAKE:
            # RFC 3207 5: nothing sent before the handshake may be acted on.
            self.discarded_after_starttls += len(self._buffer)
            self._buffer.clear()
        elif state is ServerState.CLOSED:
            self._buffer.clear()
            self._chunk = self._pending = self._reader = self._sasl = None
            self._due = self._copies = 0

    def tls_established(self) -> None:
        """The driver finished the TLS handshake: start afresh (RFC 3207 4.2).

        Everything learnt before is forgotten, including a successful AUTH;
        the client must say EHLO again.
        """
        if self.state is not ServerState.TLS_HANDSHAKE:
            raise LocalProtocolError(f"no TLS handshake expected while {self.state.value}")
        self.flags = (self.flags - {ServerFlag.AUTHENTICATED}) | {ServerFlag.TLS}
        self._buffer.clear()
        self._enter(ServerState.FRESH)

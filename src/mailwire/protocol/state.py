"""Every legal transition of both roles, as tables.

This file is the one place that says which command may follow which. The
connection classes look transitions up here and never decide order with
``if`` chains of their own, so a reader can check the whole of RFC 5321 4.1.4
(and the DATA, BDAT, AUTH and STARTTLS sub-dialogs) against these tables.

Client side. A command is legal to *send* if the current state's row names
its type. Most commands leave the state as it is: with PIPELINING the client
sends MAIL, RCPTs and DATA before any reply. A few commands need the answer
before anything else may be written (DATA, STARTTLS, AUTH, QUIT); they move to
a waiting state, and the reply to that command (the last one pending) moves on
according to ``CLIENT_REPLY``: the reply code if listed, else ``None``'s row.

Server side. ``SERVER_COMMANDS`` says, for each state, which commands are
legal and where the reply to each one leads (see the comment above it); the
server refuses the rest with 503 on its own, and ``SERVER_GUARDS`` adds the few
refusals that depend on the session's history (TLS, AUTH, BINARYMIME).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from .events import (
    Auth, AuthResponse, Bdat, Credentials, Data, EndOfChunk, EndOfData, EndOfMessage, Ehlo, Expn, Helo, Help,
    Lhlo, Mail, MessageData, Noop, Quit, RawCommand, Rcpt, Rset, StartTLS, Vrfy,
)

__all__ = [
    "ClientState", "CLIENT_SEND", "CLIENT_REPLY",
    "ServerState", "ServerFlag", "Greeting", "RefusedChunk", "MalformedResponse", "Move", "SERVER_COMMANDS",
    "SERVER_IDLE",
    "SERVER_GUARDS", "SERVER_FOREIGN", "SEQUENCE_HINTS",
]


class ClientState(Enum):
    # Members are singletons compared by identity: hash them the same way, in C,
    # rather than with Enum's Python-level hash of the name (a hot-path cost).
    __hash__ = object.__hash__

    GREETING = "waiting for the server's greeting"
    READY = "ready for commands"
    DATA_WAIT = "DATA sent, waiting for 354"
    CONTENT = "sending message content"
    BDAT_CONTENT = "sending a BDAT chunk"
    STARTTLS_WAIT = "STARTTLS sent, waiting for 220"
    TLS_HANDSHAKE = "waiting for the TLS handshake"
    AUTH_WAIT = "AUTH sent, waiting for the server"
    AUTH_CHALLENGE = "answering an AUTH challenge"
    QUIT_SENT = "QUIT sent"
    CLOSED = "closed"


S = ClientState

# Commands that may be pipelined: they leave the state unchanged.
_PIPELINABLE = (Ehlo, Helo, Lhlo, Mail, Rcpt, Rset, Noop, Vrfy, Expn, Help, RawCommand)

CLIENT_SEND: dict[ClientState, dict[type, ClientState]] = {
    S.GREETING: {Quit: S.QUIT_SENT},
    S.READY: {
        **{t: S.READY for t in _PIPELINABLE},
        Data: S.DATA_WAIT,
        Bdat: S.BDAT_CONTENT,
        StartTLS: S.STARTTLS_WAIT,
        Auth: S.AUTH_WAIT,
        Quit: S.QUIT_SENT,
    },
    S.CONTENT: {MessageData: S.CONTENT, EndOfData: S.READY},
    # The connection returns to READY itself when the chunk's octets are sent.
    S.BDAT_CONTENT: {MessageData: S.BDAT_CONTENT},
    S.AUTH_CHALLENGE: {AuthResponse: S.AUTH_WAIT},
    # A server can refuse the greeting (554) or the client give up at any wait.
    S.DATA_WAIT: {},
    S.STARTTLS_WAIT: {},
    S.TLS_HANDSHAKE: {},
    S.AUTH_WAIT: {},
    S.QUIT_SENT: {},
    S.CLOSED: {},
}

# (state, reply code or None for any other code) -> next state, applied to the
# reply that answers the last pending command.
CLIENT_REPLY: dict[tuple[ClientState, int | None], ClientState] = {
    (S.GREETING, None): S.READY,
    (S.DATA_WAIT, 354): S.CONTENT,
    (S.DATA_WAIT, None): S.READY,
    (S.STARTTLS_WAIT, 220): S.TLS_HANDSHAKE,
    (S.STARTTLS_WAIT, None): S.READY,
    (S.AUTH_WAIT, 334): S.AUTH_CHALLENGE,
    (S.AUTH_WAIT, None): S.READY,
    (S.QUIT_SENT, None): S.CLOSED,
}


# -- server side ---------------------------------------------------------------
#
# A server answers one thing at a time: a command, the end of a message, or the
# greeting. ``SERVER_COMMANDS[state]`` lists what is legal in ``state`` (any
# other command gets ``503 5.5.1`` from the core) and, for each, the state after
# the reply that answers it: ``ok`` after 2xx, ``more`` after 3xx (``None``: a
# 3xx is no valid answer), ``fail`` after 4xx/5xx. Besides commands, a row may
# hold ``Greeting`` (the first reply), ``EndOfMessage`` (the reply after a
# message's last octet: DATA's terminator or the end of a ``BDAT ... LAST``
# chunk), ``EndOfChunk`` (the reply after a non-LAST chunk; BDAT itself is only
# answered after its octets) and ``Credentials`` (the driver's verdict that ends
# an AUTH exchange). A ``421`` reply closes from any state (RFC 5321 3.8). A few
# commands are also refused because of something that happened earlier in the
# session (``SERVER_GUARDS``).


class ServerState(Enum):
    __hash__ = object.__hash__  # identity hash in C: looked up on every command

    GREETING = "waiting to send the greeting"
    REFUSED = "the greeting refused service: only QUIT (RFC 5321 3.1)"
    FRESH = "waiting for EHLO/HELO"
    READY = "greeted, no mail transaction"
    MAIL = "MAIL accepted, no recipient yet"
    RCPT = "recipients accepted"
    CHUNKING = "BDAT chunks accepted, the LAST one not yet"
    DATA = "receiving DATA content"
    AUTH = "in an AUTH exchange: the next line answers a 334"
    TLS_HANDSHAKE = "220 sent to STARTTLS: waiting for the TLS handshake"
    CLOSED = "closed"


class Greeting:
    """The pseudo-command that the server's first reply answers."""


class RefusedChunk:
    """The pseudo-command that the reply to a BDAT refused out of sequence
    answers (its octets swallowed). RFC 3030 2 leaves the state after it to
    the server; inside a transaction (MAIL taken, no RCPT yet) it ends it,
    as Postfix does: a client pipelining whole transactions meets no "503
    nested" on its next MAIL, and its next RCPTs cannot join this one."""


class MalformedResponse:
    """The pseudo-command that the refusal of a malformed answer to a 334
    answers: the AUTH exchange is over (RFC 4954 4), and the line was counted
    as an error already (a refused exchange otherwise counts when answered)."""


class ServerFlag(Enum):
    """Facts about the session that some commands depend on."""

    __hash__ = object.__hash__  # identity hash in C: looked up in ``flags`` on every RCPT

    TLS = "TLS is active"  # set by tls_established() (or implicit TLS)
    AUTHENTICATED = "AUTH succeeded"  # a 2xx answered Credentials
    BINARYMIME = "MAIL BODY=BINARYMIME accepted"  # cleared with the transaction
    SMTPUTF8 = "MAIL SMTPUTF8 accepted"  # cleared with the transaction


@dataclass(frozen=True, slots=True)
class Move:
    """Where a reply takes the server: after 2xx, after 4xx/5xx, after 3xx."""

    ok: ServerState | None
    fail: ServerState
    more: ServerState | None = None


T = ServerState


def _row(state: ServerState, greeted: bool, **extra: Move) -> dict[type, Move]:
    """What every state between commands accepts, plus ``extra``.

    RFC 5321 4.1.4: NOOP, HELP, EXPN, VRFY and RSET may come at any time (RSET
    and a successful EHLO/HELO end any transaction); QUIT ends the session.
    """
    stay = Move(state, state)
    hello = Move(T.READY, state)
    return {
        Ehlo: hello, Helo: hello, Lhlo: hello,
        Rset: Move(T.READY if greeted else T.FRESH, state),
        Noop: stay, Help: stay, Vrfy: stay, Expn: stay, RawCommand: stay,
        Quit: Move(T.CLOSED, state),
    }


# The reply after a message's last octet ends the transaction either way.
_END = Move(T.READY, T.READY)
# RFC 3030 2: after a refused chunk the transaction has failed.
_CHUNK = Move(T.CHUNKING, T.READY)
# The verdict on credentials ends the AUTH exchange either way.
_VERDICT = Move(T.READY, T.READY)

SERVER_COMMANDS: dict[ServerState, dict[type, Move]] = {
    T.GREETING: {Greeting: Move(T.FRESH, T.REFUSED)},
    T.REFUSED: {Quit: Move(T.CLOSED, T.REFUSED)},
    T.FRESH: _row(T.FRESH, False),
    T.READY: {
        **_row(T.READY, True),
        Mail: Move(T.MAIL, T.READY),
        StartTLS: Move(T.TLS_HANDSHAKE, T.READY),
        # RFC 4954 4: 334 starts the exchange; the verdict on the
        # credentials (235 or a refusal) ends it.
        Auth: Move(T.READY, T.READY, more=T.AUTH),
        Credentials: _VERDICT,
    },
    T.MAIL: {**_row(T.MAIL, True), Rcpt: Move(T.RCPT, T.MAIL), RefusedChunk: _END},
    T.RCPT: {
        **_row(T.RCPT, True),
        Rcpt: Move(T.RCPT, T.RCPT),
        Data: Move(None, T.RCPT, more=T.DATA),  # 354, or a refusal
        Bdat: _CHUNK,
        EndOfChunk: _CHUNK,
        EndOfMessage: _END,  # BDAT ... LAST as the first chunk
    },
    # RFC 3030 2: no RCPT, MAIL or DATA once chunks are flowing.
    T.CHUNKING: {**_row(T.CHUNKING, True), Bdat: _CHUNK, EndOfChunk: _CHUNK, EndOfMessage: _END},
    T.DATA: {EndOfMessage: _END},
    T.AUTH: {
        AuthResponse: Move(T.READY, T.READY, more=T.AUTH),
        Credentials: _VERDICT,
        MalformedResponse: _VERDICT,
    },
    T.TLS_HANDSHAKE: {},
    T.CLOSED: {},
}

# States outside any mail transaction: entering one forgets the transaction.
SERVER_IDLE = frozenset({T.FRESH, T.READY})

# command -> (flag that forbids it, why): answered 503 5.5.1.
SERVER_GUARDS: dict[type, tuple[ServerFlag, str]] = {
    StartTLS: (ServerFlag.TLS, "TLS is already active (RFC 3207 4.2)"),
    Auth: (ServerFlag.AUTHENTICATED, "already authenticated (RFC 4954 4)"),
    Data: (ServerFlag.BINARYMIME, "BODY=BINARYMIME requires BDAT (RFC 3030 3)"),
}

# The greetings a mode does not have: unrecognised (500), not out of sequence.
# RFC 2033 4.1: LMTP has LHLO and no EHLO/HELO.
SERVER_FOREIGN: dict[bool, tuple[type, ...]] = {False: (Lhlo,), True: (Ehlo, Helo)}

# Why a command is out of sequence, for the 503 text: (state, command) first,
# then (state, None). "{hello}" is the greeting verb of the mode.
SEQUENCE_HINTS: dict[tuple[ServerState, type | None], str] = {
    (T.REFUSED, None): "service refused, only QUIT is accepted",
    (T.FRESH, None): "send {hello} first",
    (T.READY, Rcpt): "need MAIL before RCPT",
    (T.READY, Data): "need MAIL and RCPT before DATA",
    (T.READY, Bdat): "need MAIL and RCPT before BDAT",
    (T.MAIL, Mail): "nested MAIL command",
    (T.MAIL, Data): "need a successful RCPT before DATA",
    (T.MAIL, Bdat): "need a successful RCPT before BDAT",
    (T.RCPT, Mail): "nested MAIL command",
    (T.CHUNKING, Mail): "nested MAIL command",
    (T.CHUNKING, Rcpt): "RCPT after BDAT",
    (T.CHUNKING, Data): "DATA cannot follow BDAT in one transaction (RFC 3030 2)",
    (T.MAIL, None): "not permitted during a mail transaction",
    (T.RCPT, None): "not permitted during a mail transaction",
    (T.CHUNKING, None): "not permitted during a mail transaction",
}

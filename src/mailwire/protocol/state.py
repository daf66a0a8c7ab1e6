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
"""

from __future__ import annotations

from enum import Enum

from .events import (
    Auth, AuthResponse, Bdat, Data, EndOfData, Ehlo, Expn, Helo, Help, Lhlo, Mail,
    MessageData, Noop, Quit, RawCommand, Rcpt, Rset, StartTLS, Vrfy,
)

__all__ = ["ClientState", "CLIENT_SEND", "CLIENT_REPLY"]


class ClientState(Enum):
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

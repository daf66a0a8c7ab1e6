"""The client's dialogs, written once for every driver.

What to send and when to wait is the same whether the socket blocks or an event
loop runs it. So each dialog (greeting and EHLO, STARTTLS, AUTH, a batch of
mail transactions) is a generator that *yields I/O requests* — ``Write(events)``,
``Read(n)`` for the next replies, ``Pull`` for the next piece of a message
given as an iterable, ``UPGRADE`` for the TLS handshake (see ``steps.py``) —
and receives the replies. The blocking client pumps it with a socket, the
asyncio client with streams; neither holds any protocol logic of its own.

This module holds the session's dialogs and the entry to sending mail,
``transactions``, which picks one of three paths by what the server offers,
each in a module of its own, all carrying the same ``Transaction``
(``transaction.py``):

* PIPELINING with DATA (``pipeline.py``): one round trip per message;
* PIPELINING with CHUNKING (``bdat.py``): a window of whole transactions in
  flight, a round trip per half window;
* without PIPELINING (``lockstep.py``): one command at a time.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Union

from ..errors import AuthenticationError, MailwireError, RemoteProtocolError, SMTPError, TLSRequiredError
from ..protocol.capabilities import Capabilities
from ..protocol.events import (
    Auth, AuthResponse, Data, Ehlo, EndOfData, Helo, Lhlo, MessageData, Quit, Rset, StartTLS,
)
from ..reply import Reply
from ..sasl import ClientMechanism, choose_mechanism
from .bdat import pipelined_bdat
from .lockstep import one_by_one
from .pipeline import pipelined_data
from ..result import SendResult
from .steps import (
    UPGRADE, Program, Pull, Read, Request, Write, checked_data_reply, command, leaves_connection_usable, read,
)
from .transaction import Content, ContentReader, Transaction, write_content

__all__ = [
    "Write", "Read", "Pull", "UPGRADE", "Request", "Program", "Transaction", "Content",
    "command", "data", "hello", "starttls", "authenticate", "transactions", "open_session", "login",
    "Session", "TLSMode", "AuthArg", "leaves_connection_usable",
]


def data(content: Content) -> Program[Reply]:
    """DATA and, after its 354, the content and its end: the reply to the
    DATA if it refused, else the reply to the end of the data. (No check
    that a recipient was accepted: the caller of this single step knows.)
    Content given in pieces goes out as they come (``write_content``)."""
    reply = checked_data_reply((yield from command(Data())))
    if reply.code != 354:
        return reply
    if isinstance(content, bytes):
        yield Write([MessageData(content), EndOfData()] if content else [EndOfData()])
    else:
        yield from write_content(ContentReader(content), [EndOfData()])
    return (yield from read())


def hello(name: str, *, lmtp: bool) -> Program[Reply]:
    """EHLO (LHLO for LMTP), falling back to HELO for pre-ESMTP servers."""
    if lmtp:
        reply = yield from command(Lhlo(name))
    else:
        reply = yield from command(Ehlo(name))
        if reply.code >= 500:
            reply = yield from command(Helo(name))
    if reply.code != 250:
        raise SMTPError(reply)
    return reply


def starttls() -> Program[None]:
    """STARTTLS; anything but 220 is an error, never a silent downgrade."""
    reply = yield from command(StartTLS())
    if reply.code != 220:
        raise TLSRequiredError(f"the server refused STARTTLS: {reply}")
    yield UPGRADE


TLSMode = Literal["starttls", "implicit", "none", "opportunistic"]
AuthArg = Union[tuple[str, str], ClientMechanism, None]


@dataclass(frozen=True, slots=True)
class Session:
    """What opening a session learnt: the greeting and what EHLO offered."""

    greeting: Reply
    capabilities: Capabilities
    tls: bool


def open_session(
    name: str, *, tls: TLSMode, auth: AuthArg, allow_plaintext_auth: bool, lmtp: bool
) -> Program[Session]:
    """Greeting, EHLO, STARTTLS and AUTH as the client's settings ask.

    Under ``tls="implicit"`` the driver has wrapped the socket already.
    """
    greeting = yield from read()
    if greeting.code != 220:
        # RFC 5321 3.1: after a 554 greeting the client should still QUIT.
        try:
            yield from command(Quit())
        except (MailwireError, OSError):
            pass
        raise SMTPError(greeting)
    caps = Capabilities.from_reply((yield from hello(name, lmtp=lmtp)))
    secure = tls == "implicit"
    if tls == "starttls" or (tls == "opportunistic" and caps.starttls):
        if not caps.starttls:
            raise TLSRequiredError("the server does not offer STARTTLS (tls='starttls')")
        yield from starttls()
        secure = True
        caps = Capabilities.from_reply((yield from hello(name, lmtp=lmtp)))
    if auth is not None:
        yield from login(auth, caps, tls_active=secure, allow_plaintext_auth=allow_plaintext_auth)
    return Session(greeting, caps, secure)


def login(
    auth: tuple[str, str] | ClientMechanism, caps: Capabilities, *, tls_active: bool,
    allow_plaintext_auth: bool,
) -> Program[Reply]:
    """AUTH with a mechanism chosen from what the server offers; never in the
    clear unless allowed."""
    if not (tls_active or allow_plaintext_auth):
        raise TLSRequiredError(
            "refusing to send credentials over a plaintext connection "
            "(use TLS, or allow_plaintext_auth=True)"
        )
    mechanism = auth if not isinstance(auth, tuple) else choose_mechanism(
        caps.auth_mechanisms, auth[0], auth[1]
    )
    return (yield from authenticate(mechanism))


def authenticate(mechanism: ClientMechanism) -> Program[Reply]:
    """Run one SASL exchange (RFC 4954); AuthenticationError unless 235."""
    reply = yield from command(Auth(mechanism.name, mechanism.initial_response()))
    steps = 0
    while reply.code == 334:
        steps += 1
        if steps > 10:
            yield Write([AuthResponse(None)])
            yield from read()
            raise AuthenticationError(501, "5.5.2", "too many AUTH challenges from the server")
        try:
            challenge = base64.b64decode(reply.text.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise RemoteProtocolError(f"undecodable AUTH challenge: {reply.text[:60]!r}") from None
        reply = yield from command(AuthResponse(mechanism.respond(challenge)))
    if reply.code != 235:
        raise AuthenticationError(reply)
    return reply


def transactions(
    batch: Sequence[Transaction], *, pipelining: bool, chunking: bool, lmtp: bool
) -> Program[list[SendResult | SMTPError]]:
    """Send every transaction in ``batch``; one outcome per transaction."""
    left_open = False
    if chunking and pipelining:
        left_open = yield from pipelined_bdat(batch, lmtp)
    elif pipelining:
        yield from pipelined_data(batch, lmtp)
        left_open = bool(batch) and batch[-1].needs_reset
    else:
        for txn in batch:
            yield from one_by_one(txn, chunking, lmtp)
            txn.settled = txn.outcome()
    if left_open:
        # Whatever follows a transaction left open starts with RSET, but
        # nothing follows the last: reset it here, or the next send's MAIL
        # meets "503 nested".
        yield from command(Rset())
    return [txn.outcome() if txn.settled is None else txn.settled for txn in batch]

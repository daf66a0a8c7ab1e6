"""The backend contract: the whole of what a server application implements.

A ``Backend`` makes one ``Session`` per connection. The session is told of
MAIL, each RCPT, the complete message, RSET and the end of the connection, and
refuses anything by raising ``SMTPError(code, enhanced, text)``: replies are
values, never strings a backend formats. Abilities beyond that are separate
typed protocols, checked with ``isinstance``: a session that can authenticate
implements ``AuthSession``; one that reports per-recipient outcomes in LMTP
implements ``LMTPSession``; one that answers VRFY implements ``VerifySession``.

Each step is either a coroutine function (``async def``: it runs in the
connection's task and may wait on anything) or a plain function that never
waits (``def``, returning None: counting, checking a set, collecting in
memory). The signature is the declaration: the server calls a step and
awaits what it returns, if anything, so a plain step is answered on the spot,
straight from the server's protocol callback, without waking the task.

For the common case, ``FunctionBackend(handle)`` turns a single
``async def handle(envelope) -> None`` into a backend, and ``BaseSession`` is
a session that accepts everything, to subclass and override one method of.
Server-wide hooks that need no session of their own (an ``Authenticator``,
a ``Delivered`` callback) are ``ServerConfig`` settings.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, Union, runtime_checkable

from ..errors import SMTPError
from ..protocol.params import MailOptions, RcptOptions
from ..reply import Reply
from ..sasl import Credentials
from .envelope import Envelope, SessionInfo

__all__ = [
    "Backend", "Session", "AuthSession", "LMTPSession", "VerifySession", "Step",
    "BaseSession", "FunctionBackend", "Handler", "Authenticator", "Delivered",
]

# What a session step returns: None once done (a plain function), or an
# awaitable the server awaits in the connection's task (a coroutine function).
Step = Union[Awaitable[None], None]


class Session(Protocol):
    def mail(self, address: str, options: MailOptions) -> Step:
        """MAIL FROM; raise SMTPError to refuse the sender."""

    def rcpt(self, address: str, options: RcptOptions) -> Step:
        """RCPT TO; raise SMTPError to refuse this recipient."""

    def data(self, envelope: Envelope) -> Step:
        """The complete message. Raise SMTPError to refuse it; any other
        exception becomes ``451 4.3.0`` and the session goes on."""

    def reset(self) -> Step:
        """The transaction was abandoned (RSET, EHLO, a refused message)."""

    def close(self) -> Step:
        """The connection ended, for whatever reason."""


@runtime_checkable
class Backend(Protocol):
    async def new_session(self, info: SessionInfo) -> Session:
        """A session for a new connection; raise SMTPError to refuse it (554)."""


@runtime_checkable
class AuthSession(Protocol):
    def authenticate(self, credentials: Credentials) -> Step:
        """Check credentials (``credentials.check_password(stored)``); raise
        SMTPError (535 5.7.8) to refuse them."""


@runtime_checkable
class LMTPSession(Protocol):
    def deliver(
        self, envelope: Envelope
    ) -> Sequence[SMTPError | None] | Awaitable[Sequence[SMTPError | None]]:
        """LMTP (RFC 2033 4.2): one outcome per recipient, in order:
        None for delivered, an SMTPError for refused."""


@runtime_checkable
class VerifySession(Protocol):
    def verify(self, argument: str) -> Reply | Awaitable[Reply]:
        """The answer to VRFY (RFC 5321 3.5.3)."""


class BaseSession:
    """A session that accepts every sender and recipient and drops the message.

    Its steps are plain functions that do nothing, so whatever a subclass
    does not override is answered on the spot. Override with ``async def``
    (or with a plain ``def`` that never waits) the steps that matter.
    """

    def __init__(self, info: SessionInfo) -> None:
        self.info = info

    def mail(self, address: str, options: MailOptions) -> Step:
        return None

    def rcpt(self, address: str, options: RcptOptions) -> Step:
        return None

    def data(self, envelope: Envelope) -> Step:
        return None

    def reset(self) -> Step:
        return None

    def close(self) -> Step:
        return None


Handler = Callable[[Envelope], Step]
# Checks credentials; raises SMTPError (535 5.7.8) to refuse them.
Authenticator = Callable[[Credentials], Step]
# Told of each message delivered, with the recipients it was delivered to
# (LMTP: those the session accepted it for); called on the event loop, so it
# must not block.
Delivered = Callable[[Envelope, Sequence[str]], None]


class _FunctionSession(BaseSession):
    def __init__(self, info: SessionInfo, handle: Handler) -> None:
        super().__init__(info)
        self._handle = handle

    def data(self, envelope: Envelope) -> Step:
        return self._handle(envelope)


class _AuthFunctionSession(_FunctionSession):
    def __init__(self, info: SessionInfo, handle: Handler, authenticate: Authenticator) -> None:
        super().__init__(info, handle)
        self._authenticate = authenticate

    def authenticate(self, credentials: Credentials) -> Step:
        return self._authenticate(credentials)


class FunctionBackend:
    """``async def handle(envelope) -> None`` as a backend; with
    ``authenticate`` (a credentials callback) its sessions offer AUTH."""

    def __init__(self, handle: Handler, authenticate: Authenticator | None = None) -> None:
        self.handle = handle
        self.authenticate = authenticate

    async def new_session(self, info: SessionInfo) -> Session:
        if self.authenticate is not None:
            return _AuthFunctionSession(info, self.handle, self.authenticate)
        return _FunctionSession(info, self.handle)

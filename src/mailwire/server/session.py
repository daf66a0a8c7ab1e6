"""The backend contract: the whole of what a server application implements.

A ``Backend`` makes one ``Session`` per connection. The session is told of
MAIL, each RCPT, the complete message, RSET and the end of the connection, and
refuses anything by raising ``SMTPError(code, enhanced, text)``: replies are
values, never strings a backend formats. Abilities beyond that are separate
typed protocols, checked with ``isinstance``: a session that can authenticate
implements ``AuthSession``; one that reports per-recipient outcomes in LMTP
implements ``LMTPSession``; one that answers VRFY implements ``VerifySession``.

For the common case, ``FunctionBackend(handle)`` turns a single
``async def handle(envelope) -> None`` into a backend, and ``BaseSession`` is
a session that accepts everything, to subclass and override one method of.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, runtime_checkable

from ..errors import SMTPError
from ..protocol.params import MailOptions, RcptOptions
from ..reply import Reply
from ..sasl import Credentials
from .envelope import Envelope, SessionInfo

__all__ = [
    "Backend", "Session", "AuthSession", "LMTPSession", "VerifySession",
    "BaseSession", "FunctionBackend", "Handler", "Authenticator", "inherited_steps",
]


class Session(Protocol):
    async def mail(self, address: str, options: MailOptions) -> None:
        """MAIL FROM; raise SMTPError to refuse the sender."""

    async def rcpt(self, address: str, options: RcptOptions) -> None:
        """RCPT TO; raise SMTPError to refuse this recipient."""

    async def data(self, envelope: Envelope) -> None:
        """The complete message. Raise SMTPError to refuse it; any other
        exception becomes ``451 4.3.0`` and the session goes on."""

    async def reset(self) -> None:
        """The transaction was abandoned (RSET, EHLO, a refused message)."""

    async def close(self) -> None:
        """The connection ended, for whatever reason."""


@runtime_checkable
class Backend(Protocol):
    async def new_session(self, info: SessionInfo) -> Session:
        """A session for a new connection; raise SMTPError to refuse it (554)."""


@runtime_checkable
class AuthSession(Protocol):
    async def authenticate(self, credentials: Credentials) -> None:
        """Check credentials (``credentials.check_password(stored)``); raise
        SMTPError (535 5.7.8) to refuse them."""


@runtime_checkable
class LMTPSession(Protocol):
    async def deliver(self, envelope: Envelope) -> Sequence[SMTPError | None]:
        """LMTP (RFC 2033 4.2): one outcome per recipient, in order:
        None for delivered, an SMTPError for refused."""


@runtime_checkable
class VerifySession(Protocol):
    async def verify(self, argument: str) -> Reply:
        """The answer to VRFY (RFC 5321 3.5.3)."""


class BaseSession:
    """A session that accepts every sender and recipient and drops the message.

    ``runs_inline``: set it True only for a session none of whose methods
    ever waits on anything (no I/O, no locks, no asyncio.timeout: counting,
    collecting in memory). The server may then call them straight from its
    protocol callbacks, outside any task, which saves waking the connection's
    task for every message.
    """

    runs_inline = False

    def __init__(self, info: SessionInfo) -> None:
        self.info = info

    async def mail(self, address: str, options: MailOptions) -> None:
        return None

    async def rcpt(self, address: str, options: RcptOptions) -> None:
        return None

    async def data(self, envelope: Envelope) -> None:
        return None

    async def reset(self) -> None:
        return None

    async def close(self) -> None:
        return None


def inherited_steps(session: object) -> frozenset[str]:
    """Which of ``mail``, ``rcpt`` and ``reset`` the session's class leaves
    to BaseSession: those do nothing and never wait, so the server may
    answer them without waking the connection's task, and a wrapper may
    leave them alone. The one place this is decided."""
    kind = type(session)
    return frozenset(
        name for name in ("mail", "rcpt", "reset") if getattr(kind, name, None) is getattr(BaseSession, name)
    )


Handler = Callable[[Envelope], Awaitable[None]]
# Checks credentials; raises SMTPError (535 5.7.8) to refuse them.
Authenticator = Callable[[Credentials], Awaitable[None]]


class _FunctionSession(BaseSession):
    def __init__(self, info: SessionInfo, handle: Handler) -> None:
        super().__init__(info)
        self._handle = handle

    async def data(self, envelope: Envelope) -> None:
        await self._handle(envelope)


class _AuthFunctionSession(_FunctionSession):
    def __init__(self, info: SessionInfo, handle: Handler, authenticate: Authenticator) -> None:
        super().__init__(info, handle)
        self._authenticate = authenticate

    async def authenticate(self, credentials: Credentials) -> None:
        await self._authenticate(credentials)


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

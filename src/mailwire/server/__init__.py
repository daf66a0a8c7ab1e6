"""The asyncio SMTP/LMTP server framework.

``SMTPServer(backend)`` serves a ``Backend`` (or a plain
``async def handle(envelope)``); sessions refuse things by raising
``mailwire.SMTPError``. The shipped backends are in ``backends``. A session
may take each message as it arrives instead of whole (``StreamingSession``).
``Workers`` (``serve_workers``) serves one address from several supervised
processes, each with a backend from a factory. ``Chaos`` (a ``ServerConfig``
setting) makes a server fail on purpose, for testing retries.
The types a server application meets are all here: ``Credentials`` (what
AUTH proved, for ``AuthSession.authenticate`` and an ``Authenticator``) and
``BareLineEndings`` (a ``ServerConfig`` setting) come from the layers below.
"""

from __future__ import annotations

from ..protocol.data import BareLineEndings
from ..sasl import Credentials
from .aio import SMTPServer
from .backends import Maildir, Mbox, Printer, Relay, Sink
from .chaos import Chaos, Fault
from .config import ServerConfig
from .envelope import Envelope, ProxyInfo, SessionInfo, TLSInfo
from .session import (
    Authenticator, AuthSession, Backend, BaseSession, Delivered, FunctionBackend, Handler, LMTPSession, Session,
    Step, VerifySession,
)
from .streaming import LMTPStreamingSession, MessageAborted, MessageContent, StreamingSession
from .workers import Restart, Workers, WorkersFailed, serve_workers

__all__ = [
    "SMTPServer", "ServerConfig", "Envelope", "ProxyInfo", "SessionInfo", "TLSInfo",
    "Backend", "Session", "AuthSession", "LMTPSession", "VerifySession", "BaseSession",
    "FunctionBackend", "Handler", "Authenticator", "Delivered", "Step", "Sink", "Printer", "Maildir", "Mbox",
    "Relay", "Credentials", "BareLineEndings", "StreamingSession", "LMTPStreamingSession", "MessageContent",
    "MessageAborted", "Workers", "serve_workers", "Restart", "WorkersFailed", "Chaos", "Fault",
]

"""The asyncio SMTP/LMTP server framework.

``SMTPServer(backend)`` serves a ``Backend`` (or a plain
``async def handle(envelope)``); sessions refuse things by raising
``mailwire.SMTPError``. The shipped backends are in ``handlers``. A session
may take each message as it arrives instead of whole (``StreamingSession``).
"""

from __future__ import annotations

from .aio import SMTPServer
from .config import ServerConfig
from .envelope import Envelope, ProxyInfo, SessionInfo, TLSInfo
from .handlers import Maildir, Mbox, Printer, Relay, Sink
from .session import (
    Authenticator, AuthSession, Backend, BaseSession, Delivered, FunctionBackend, Handler, LMTPSession, Session,
    Step, VerifySession,
)
from .streaming import LMTPStreamingSession, MessageAborted, MessageContent, StreamingSession

__all__ = [
    "SMTPServer", "ServerConfig", "Envelope", "ProxyInfo", "SessionInfo", "TLSInfo",
    "Backend", "Session", "AuthSession", "LMTPSession", "VerifySession", "BaseSession",
    "FunctionBackend", "Handler", "Authenticator", "Delivered", "Step", "Sink", "Printer", "Maildir", "Mbox",
    "Relay", "StreamingSession", "LMTPStreamingSession", "MessageContent", "MessageAborted",
]

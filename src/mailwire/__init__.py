"""mailwire: SMTP on both ends of the wire.

The native API lives here; ``mailwire.smtplib`` is the drop-in for the
standard library's module. The socket-based clients are loaded on first use
(PEP 562), so ``import mailwire.protocol`` brings in no I/O module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._compiled import compiled as _compiled
from .client.transaction import Transaction
from .errors import (
    AuthenticationError, ConnectionClosed, DataRefused, LocalProtocolError, MailwireError,
    MalformedReply, NotSupportedError, PoolClosed, ProtocolError, RecipientsRefused, RemoteProtocolError,
    SenderRefused, SMTPError, TLSRequiredError,
)
from .limits import Limits
from .protocol.params import MailOptions, RcptOptions
from .reply import EnhancedStatus, Reply
from .result import SendResult
from .sasl import ClientMechanism, CramMD5, Login, Plain, XOAuth2

if TYPE_CHECKING:
    from .client.aio import AsyncLMTPClient, AsyncSMTPClient, send
    from .client.pool import LMTPPool, SMTPPool
    from .client.sync import LMTPClient, SMTPClient

__version__ = "0.1.0"
# True when this install runs the compiled core (MAILWIRE_COMPILE=1 pip install .; see _compiled.py).
__compiled__ = _compiled()

_DRIVERS = {
    "SMTPClient": "sync", "LMTPClient": "sync",
    "AsyncSMTPClient": "aio", "AsyncLMTPClient": "aio", "send": "aio", "SMTPPool": "pool", "LMTPPool": "pool",
}


def __getattr__(name: str) -> object:
    # The drivers import socket, ssl and asyncio; the sans-I/O core must not.
    module = _DRIVERS.get(name)
    if module is not None:
        from importlib import import_module

        return getattr(import_module(f".client.{module}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AsyncLMTPClient", "AsyncSMTPClient", "LMTPPool", "SMTPPool", "send",
    "AuthenticationError", "ConnectionClosed", "LMTPClient", "NotSupportedError", "SMTPClient",
    "SendResult", "Transaction", "DataRefused", "EnhancedStatus", "Limits", "PoolClosed",
    "LocalProtocolError", "MailOptions", "MailwireError", "MalformedReply", "ProtocolError", "RcptOptions",
    "RecipientsRefused", "RemoteProtocolError", "Reply", "SMTPError", "SenderRefused",
    "TLSRequiredError", "XOAuth2",
    "ClientMechanism", "CramMD5", "Login", "Plain",
    "__compiled__",
]

"""mailwire: SMTP on both ends of the wire.

The native API lives here; ``mailwire.smtplib`` is the drop-in for the
standard library's module. The socket-based clients are loaded on first use
(PEP 562), so ``import mailwire.protocol`` brings in no I/O module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .client.result import SendResult
from .errors import (
    AuthenticationError, ConnectionClosed, DataRefused, LocalProtocolError, MailwireError,
    NotSupportedError, ProtocolError, RecipientsRefused, RemoteProtocolError, SenderRefused,
    SMTPError, TLSRequiredError,
)
from .limits import Limits
from .protocol.params import MailOptions, RcptOptions
from .reply import EnhancedStatus, Reply
from .sasl import XOAuth2

if TYPE_CHECKING:
    from .client.sync import LMTPClient, SMTPClient

__version__ = "0.1.0"

_DRIVERS = {"SMTPClient", "LMTPClient"}


def __getattr__(name: str) -> object:
    # The blocking driver imports socket and ssl; the sans-I/O core must not.
    if name in _DRIVERS:
        from .client import sync

        return getattr(sync, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AuthenticationError", "ConnectionClosed", "LMTPClient", "NotSupportedError", "SMTPClient",
    "SendResult", "DataRefused", "EnhancedStatus", "Limits",
    "LocalProtocolError", "MailOptions", "MailwireError", "ProtocolError", "RcptOptions",
    "RecipientsRefused", "RemoteProtocolError", "Reply", "SMTPError", "SenderRefused",
    "TLSRequiredError", "XOAuth2",
]

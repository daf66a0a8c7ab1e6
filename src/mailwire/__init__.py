"""mailwire: SMTP on both ends of the wire.

The native API lives here; ``mailwire.smtplib`` is the drop-in for the
standard library's module.
"""

from __future__ import annotations

from .client.result import SendResult
from .client.sync import LMTPClient, SMTPClient
from .errors import (
    AuthenticationError, ConnectionClosed, DataRefused, LocalProtocolError, MailwireError,
    NotSupportedError, ProtocolError, RecipientsRefused, RemoteProtocolError, SenderRefused,
    SMTPError, TLSRequiredError,
)
from .limits import Limits
from .protocol.params import MailOptions, RcptOptions
from .reply import EnhancedStatus, Reply
from .sasl import XOAuth2

__version__ = "0.1.0"

__all__ = [
    "AuthenticationError", "ConnectionClosed", "LMTPClient", "NotSupportedError", "SMTPClient",
    "SendResult", "DataRefused", "EnhancedStatus", "Limits",
    "LocalProtocolError", "MailOptions", "MailwireError", "ProtocolError", "RcptOptions",
    "RecipientsRefused", "RemoteProtocolError", "Reply", "SMTPError", "SenderRefused",
    "TLSRequiredError", "XOAuth2",
]

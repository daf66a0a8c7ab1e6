"""mailwire: SMTP on both ends of the wire.

The native API lives here; ``mailwire.smtplib`` is the drop-in for the
standard library's module.
"""

from __future__ import annotations

from .errors import (
    AuthenticationError, ConnectionClosed, DataRefused, LocalProtocolError, MailwireError,
    ProtocolError, RecipientsRefused, RemoteProtocolError, SenderRefused, SMTPError,
    TLSRequiredError,
)
from .limits import Limits
from .protocol.params import MailOptions, RcptOptions
from .reply import EnhancedStatus, Reply

__version__ = "0.1.0"

__all__ = [
    "AuthenticationError", "ConnectionClosed", "DataRefused", "EnhancedStatus", "Limits",
    "LocalProtocolError", "MailOptions", "MailwireError", "ProtocolError", "RcptOptions",
    "RecipientsRefused", "RemoteProtocolError", "Reply", "SMTPError", "SenderRefused",
    "TLSRequiredError",
]

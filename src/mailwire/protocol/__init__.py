"""The sans-I/O SMTP core: bytes in, events out, for both roles.

Nothing in this package imports ``socket``, ``ssl``, ``asyncio`` or
``selectors``; ``tests/test_layering.py`` holds it to that.
"""

from __future__ import annotations

from .buffer import LineTooLong
from .capabilities import Capabilities
from .client import ClientConnection
from .data import BareLineEndings, DataReader, DotStuffer
from .events import *  # noqa: F403
from .events import __all__ as _events_all
from .extensions import ServerExtensions
from .lookahead import PreparedWrite, prepare_write
from .params import MailOptions, RcptOptions, format_mail_options, format_rcpt_options
from .pending import PendingReplies, end_of_data_replies
from .server import ServerConnection
from .state import ClientState, ServerState

__all__ = [
    "Capabilities", "ClientConnection", "ClientState", "BareLineEndings", "DataReader",
    "DotStuffer", "MailOptions", "RcptOptions", "ServerConnection", "ServerExtensions", "ServerState",
    "format_mail_options", "format_rcpt_options", *_events_all,
    "LineTooLong", "PendingReplies", "PreparedWrite", "end_of_data_replies", "prepare_write",
]

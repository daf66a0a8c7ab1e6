"""What the blocking and the asyncio client have in common, written once.

Both clients hold the same settings and the server's capabilities, check a
message against them the same way, and run the same dialogs; they differ
only in how a dialog's I/O is done (a blocking socket, or ``await``). This
base holds the shared part: the settings-derived properties, ``prepare``
and which dialog each step of the public API runs. Each client keeps its
own thin methods, which run these dialogs blocking or awaited.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable, Sequence
from typing import Any

from ..errors import SMTPError
from ..protocol.capabilities import Capabilities
from ..protocol.events import Mail, Noop, Rcpt, Rset, Vrfy
from ..protocol.params import MailOptions, RcptOptions
from ..reply import Reply
from . import dialog
from .dialog import AuthArg, Program, TLSMode, Transaction
from .prepare import Item, MessageLike, RcptOptionsArg, prepare, prepare_items
from ..result import SendResult
from .settings import ClientSettings

__all__ = ["ClientBase"]


class ClientBase:
    lmtp = False

    def __init__(
        self, host: str, port: int | None, tls: TLSMode, auth: AuthArg, settings: dict[str, Any],
    ) -> None:
        if port is None:
            port = ClientSettings.default_port(tls, self.lmtp)
        self.settings = ClientSettings(host, port, tls, auth, lmtp=self.lmtp, **settings)
        self.capabilities = Capabilities()
        self.greeting: Reply | None = None
        # Whether content may be an async iterable: only an awaiting client reads one.
        self.asynchronous = False

    @property
    def host(self) -> str:
        return self.settings.host

    @property
    def port(self) -> int:
        return self.settings.port

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        return self.settings.ssl_context

    @property
    def is_tls(self) -> bool:
        raise NotImplementedError

    @property
    def _chunking(self) -> bool:
        return self.settings.chunking and self.capabilities.chunking

    def prepare(
        self, message: MessageLike, mail_from: str | None = None,
        rcpt_to: Sequence[str] | str | None = None, *, mail_options: MailOptions | None = None,
        rcpt_options: RcptOptionsArg = None,
    ) -> Transaction:
        """Check ``message`` against this server's capabilities (connect
        first): the transaction ``transact`` sends, or the error why not."""
        return prepare(
            message, mail_from, rcpt_to, self.capabilities, mail_options=mail_options,
            rcpt_options=rcpt_options, chunking=self._chunking, tls_active=self.is_tls,
            asynchronous=self.asynchronous,
        )

    def _prepare_items(self, items: Iterable[Item]) -> list[Transaction]:
        return prepare_items(
            items, self.capabilities, chunking=self._chunking, tls_active=self.is_tls,
            asynchronous=self.asynchronous,
        )

    # -- the dialog behind each step -------------------------------------------------

    def _transactions(self, batch: list[Transaction]) -> Program[list[SendResult | SMTPError]]:
        return dialog.transactions(
            batch, pipelining=self.settings.pipelining and self.capabilities.pipelining,
            chunking=self._chunking, lmtp=self.settings.lmtp,
        )

    @staticmethod
    def _mail(address: str, options: MailOptions | None) -> Program[Reply]:
        return dialog.command(Mail(address, options or MailOptions()))

    @staticmethod
    def _rcpt(address: str, options: RcptOptions | None) -> Program[Reply]:
        return dialog.command(Rcpt(address, options or RcptOptions()))

    @staticmethod
    def _noop() -> Program[Reply]:
        return dialog.command(Noop())

    @staticmethod
    def _rset() -> Program[Reply]:
        return dialog.command(Rset())

    @staticmethod
    def _vrfy(address: str) -> Program[Reply]:
        return dialog.command(Vrfy(address))

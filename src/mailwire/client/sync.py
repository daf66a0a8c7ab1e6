"""The blocking native client: ``SMTPClient`` and ``LMTPClient``.

Safe by default where ``smtplib`` is not: STARTTLS is required unless the
caller chooses otherwise, certificates are verified, a refused STARTTLS is an
error (never a silent downgrade), AUTH never crosses a plaintext channel unless
``allow_plaintext_auth`` says so. Fast by default too: PIPELINING and CHUNKING
are used whenever the server offers them.

The class only pumps the dialogs of ``dialog.py`` (and the transaction paths
it picks) through a ``SyncTransport``; it holds no protocol logic itself.
``aio.AsyncSMTPClient`` pumps the same dialogs with asyncio.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any, TypeVar

from ..errors import ConnectionClosed, LocalProtocolError, MailwireError, SMTPError
from ..protocol.events import Quit
from ..protocol.params import MailOptions, RcptOptions
from ..reply import Reply
from . import dialog
from .dialog import AuthArg, Program, TLSMode, Transaction
from .prepare import Item, MessageLike, RcptOptionsArg, check_content, outcome_or_raise
from ..result import SendResult
from .base import ClientBase
from .settings import local_name
from .transport import SyncTransport, open_socket

__all__ = ["SMTPClient", "LMTPClient", "TLSMode"]

T = TypeVar("T")


class SMTPClient(ClientBase):
    """A blocking SMTP client connection.

    ``with SMTPClient(host, tls="starttls", auth=(user, password)) as client:
    client.send(message)``. Connects on construction unless ``connect=False``.
    ``timeout`` (seconds, default 60) bounds each reply as a whole: it must be
    complete that long after the client starts waiting for it, however the
    server paces its bytes, or ``TimeoutError`` is raised and the connection
    closed; in a pipelined group each reply has that long. It bounds the
    STARTTLS handshake and each write (at most 1 MiB of content) to a server
    that stops reading the same way, and the connect with implicit TLS's
    handshake unless ``connect_timeout`` is given. ``auth`` is ``(user, password)``, the
    mechanism chosen from what the server offers, or a ``mailwire.sasl``
    mechanism such as ``XOAuth2(user, token_or_callable)``. The other
    keywords are those of ``ClientSettings``.
    """

    def __init__(
        self, host: str = "localhost", port: int | None = None, *, tls: TLSMode = "starttls",
        auth: AuthArg = None, connect: bool = True, **settings: Any,
    ) -> None:
        super().__init__(host, port, tls, auth, settings)
        self._transport: SyncTransport | None = None
        if connect:
            self.connect()

    # -- connection ------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._transport is not None and self._transport.sock.fileno() >= 0

    @property
    def is_tls(self) -> bool:
        return self._transport is not None and self._transport.is_tls

    @property
    def round_trips(self) -> int:
        """How many times this connection waited for the server."""
        return self._transport.turns if self._transport is not None else 0

    def connect(self) -> Reply:
        """Connect, read the greeting, EHLO, STARTTLS and AUTH as configured."""
        if self.connected:
            raise LocalProtocolError("already connected")
        s = self.settings
        sock = open_socket(s.host, s.port, timeout=s.dial_timeout, source_address=s.source_address)
        try:
            if s.tls == "implicit":
                sock = s.context.wrap_socket(sock, server_hostname=s.server_hostname)
            self._transport = SyncTransport(sock, lmtp=s.lmtp, limits=s.limits, timeout=s.timeout)
            name = s.local_hostname or local_name(sock)
            opened = self._run(dialog.open_session(
                name, tls=s.tls, auth=s.auth, allow_plaintext_auth=s.allow_plaintext_auth, lmtp=s.lmtp,
            ))
        except BaseException:
            self.close()
            raise
        self.greeting, self.capabilities = opened.greeting, opened.capabilities
        return opened.greeting

    def login(self, auth: AuthArg = None) -> Reply:
        """Authenticate with ``auth`` (or the constructor's), choosing a mechanism."""
        auth = auth if auth is not None else self.settings.auth
        if auth is None:
            raise LocalProtocolError("no credentials given")
        return self._run(dialog.login(
            auth, self.capabilities, tls_active=self.is_tls,
            allow_plaintext_auth=self.settings.allow_plaintext_auth,
        ))

    def _run(self, program: Program[T]) -> T:
        """Pump a dialog: do the I/O each request asks for, feed the results
        (or the I/O errors) back into it."""
        transport = self._transport
        if transport is None or transport.sock.fileno() < 0:
            raise ConnectionClosed("not connected")
        try:
            request = next(program)
            while True:
                if isinstance(request, dialog.Pull):
                    try:
                        piece = request.take()
                    except BaseException:
                        self.close()  # the caller's content failed mid-message (see Pull)
                        raise
                    request = program.send(piece)
                    continue
                try:
                    value = self._perform(transport, request)
                except (MailwireError, OSError) as err:
                    request = program.throw(err)
                else:
                    request = program.send(value)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        except BaseException as err:
            if not dialog.leaves_connection_usable(err):
                self.close()
            raise

    def _perform(self, transport: SyncTransport, request: dialog.Request) -> tuple[Reply, ...] | None:
        if isinstance(request, dialog.Write):
            transport.write(request.events)
            return None
        if isinstance(request, dialog.Read):
            replies = transport.read_replies(request.count, then=request.then)
            request.written = transport.then_written
            return replies
        transport.start_tls(self.settings.context, self.settings.server_hostname)
        return None

    # -- sending ---------------------------------------------------------

    def send(
        self, message: MessageLike, mail_from: str | None = None,
        rcpt_to: Sequence[str] | str | None = None, *, mail_options: MailOptions | None = None,
        rcpt_options: RcptOptionsArg = None,
    ) -> SendResult:
        """Send one message; raise if nothing was delivered.

        The result has each recipient's reply; recipients refused while
        others were accepted are in ``result.refused``.
        """
        txn = self.prepare(message, mail_from, rcpt_to, mail_options=mail_options, rcpt_options=rcpt_options)
        return outcome_or_raise(self.transact([txn])[0])

    def send_many(self, items: Iterable[Item]) -> list[SendResult | SMTPError]:
        """Send many messages pipelined across transactions.

        Items are messages or ``(message, mail_from, rcpt_to)``; the outcome of
        each is its result or the error that refused it.
        """
        return self.transact(self._prepare_items(items))

    def transact(self, batch: list[Transaction]) -> list[SendResult | SMTPError]:
        """Send transactions made by ``prepare`` in one pipelined run; one
        outcome each, as ``send_many``."""
        return self._run(self._transactions(batch))

    # -- other commands --------------------------------------------------

    def mail(self, address: str, options: MailOptions | None = None) -> Reply:
        """MAIL FROM on its own, for a caller driving a transaction step by
        step (a relay answering its own client's commands as they come);
        ``send`` is the way to send a message. Refusals come back as the
        reply; a 421 or a broken connection raises."""
        return self._run(self._mail(address, options))

    def rcpt(self, address: str, options: RcptOptions | None = None) -> Reply:
        """RCPT TO on its own (see ``mail``)."""
        return self._run(self._rcpt(address, options))

    def data(self, content: bytes | Iterable[bytes]) -> Reply:
        """DATA, the content (dot-stuffed, CRLF line endings) and its end, on
        their own (see ``mail``): the reply refusing DATA, or the reply to
        the end of the data. Content given as an iterable of bytes goes out
        piece by piece as it is read; if it raises, the connection is
        closed before the end of the data (nothing is delivered) and the
        exception goes on."""
        check_content(content, asynchronous=False)
        return self._run(dialog.data(content))

    def noop(self) -> Reply:
        return self._run(self._noop())

    def rset(self) -> Reply:
        return self._run(self._rset())

    def verify(self, address: str) -> Reply:
        return self._run(self._vrfy(address))

    def quit(self) -> Reply | None:
        """Say goodbye and close; a server already gone is not an error."""
        if not self.connected:
            return None
        try:
            return self._run(dialog.command(Quit()))
        except (MailwireError, OSError):
            return None
        finally:
            self.close()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def __enter__(self) -> "SMTPClient":
        if not self.connected:
            self.connect()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.quit()
        else:
            self.close()


class LMTPClient(SMTPClient):
    """LMTP (RFC 2033): LHLO, and one reply per recipient after the data.

    LMTP is for local delivery over trusted channels (RFC 2033 4), often a
    Unix socket (a host starting with ``/``), so TLS defaults to ``none``.
    """

    lmtp = True

    def __init__(
        self, host: str = "localhost", port: int | None = None, *, tls: TLSMode = "none", **kwargs: Any
    ) -> None:
        super().__init__(host, port, tls=tls, **kwargs)

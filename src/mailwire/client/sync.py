"""The blocking native client: ``SMTPClient`` and ``LMTPClient``.

Safe by default where ``smtplib`` is not: STARTTLS is required unless the
caller chooses otherwise, certificates are verified, a refused STARTTLS is an
error (never a silent downgrade), AUTH never crosses a plaintext channel unless
``allow_plaintext_auth`` says so. Fast by default too: PIPELINING and CHUNKING
are used whenever the server offers them.

The class only pumps the dialogs of ``dialog.py`` through a ``SyncTransport``;
it holds no protocol logic itself.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Literal, TypeVar

from ..errors import ConnectionClosed, LocalProtocolError, MailwireError, SMTPError, TLSRequiredError
from ..limits import DEFAULT_LIMITS, Limits
from ..protocol.capabilities import Capabilities
from ..protocol.events import Noop, Quit, Rset, Vrfy
from ..protocol.params import MailOptions
from ..reply import Reply
from ..sasl import ClientMechanism, choose_mechanism
from . import dialog
from .dialog import Program, Transaction
from .prepare import MessageLike, RcptOptionsArg, prepare
from .result import SendResult
from .transport import SyncTransport, open_socket

__all__ = ["SMTPClient", "LMTPClient", "TLSMode"]

TLSMode = Literal["starttls", "implicit", "none", "opportunistic"]
AuthArg = tuple[str, str] | ClientMechanism | None
T = TypeVar("T")
_DEFAULT_PORTS = {"implicit": 465}


def local_name(sock: socket.socket) -> str:
    """Our EHLO name: the host name if it is qualified, else an address literal.

    ``socket.getfqdn()`` (smtplib's choice) can stall on DNS for seconds;
    RFC 5321 4.1.4 allows an address literal when there is no usable name.
    """
    name = socket.gethostname()
    if "." in name:
        return name
    if sock.family == socket.AF_INET:
        return f"[{sock.getsockname()[0]}]"
    if sock.family == socket.AF_INET6:
        return f"[IPv6:{sock.getsockname()[0]}]"
    return name or "localhost"


class SMTPClient:
    """A blocking SMTP client connection.

    ``with SMTPClient(host, tls="starttls", auth=(user, password)) as client:
    client.send(message)``. Connects on construction unless ``connect=False``.
    ``timeout`` bounds every wait for a reply (and the connect, unless
    ``connect_timeout`` is given). ``auth`` is ``(user, password)``, the
    mechanism chosen from what the server offers, or a ``mailwire.sasl``
    mechanism such as ``XOAuth2(user, token_or_callable)``.
    """

    lmtp = False
    default_port = 25

    def __init__(
        self,
        host: str = "localhost",
        port: int | None = None,
        *,
        tls: TLSMode = "starttls",
        auth: AuthArg = None,
        timeout: float | None = 60.0,
        connect_timeout: float | None = None,
        local_hostname: str | None = None,
        source_address: tuple[str, int] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        allow_plaintext_auth: bool = False,
        pipelining: bool = True,
        chunking: bool = True,
        limits: Limits = DEFAULT_LIMITS,
        connect: bool = True,
    ) -> None:
        if tls not in ("starttls", "implicit", "none", "opportunistic"):
            raise ValueError(f"tls must be starttls, implicit, none or opportunistic, not {tls!r}")
        self.host = host
        self.port = port if port is not None else _DEFAULT_PORTS.get(tls, self.default_port)
        self.tls: TLSMode = tls
        self.auth = auth
        self.timeout = timeout
        self.connect_timeout = connect_timeout if connect_timeout is not None else timeout
        self.local_hostname = local_hostname
        self.source_address = source_address
        self.ssl_context = ssl_context
        self.allow_plaintext_auth = allow_plaintext_auth
        self.pipelining = pipelining
        self.chunking = chunking
        self.limits = limits
        self._transport: SyncTransport | None = None
        self.capabilities = Capabilities()
        self.greeting: Reply | None = None
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

    def _context(self) -> ssl.SSLContext:
        if self.ssl_context is None:
            self.ssl_context = ssl.create_default_context()
        return self.ssl_context

    def connect(self) -> Reply:
        """Connect, read the greeting, EHLO, STARTTLS and AUTH as configured."""
        if self.connected:
            raise LocalProtocolError("already connected")
        if self.host.startswith("/") and self.tls != "none" and self._context().check_hostname:
            raise ValueError(
                f"tls={self.tls!r} over the Unix socket {self.host} needs an ssl_context with "
                "check_hostname=False (a path has no host name to verify); or use tls='none'"
            )
        sock = open_socket(
            self.host, self.port, timeout=self.connect_timeout, source_address=self.source_address
        )
        try:
            if self.tls == "implicit":
                sock = self._context().wrap_socket(sock, server_hostname=self._sni())
            self._transport = SyncTransport(sock, lmtp=self.lmtp, limits=self.limits, timeout=self.timeout)
            name = self.local_hostname or local_name(sock)
            self.greeting = self._run(dialog.read())
            if self.greeting.code != 220:
                self._refused_greeting()
                raise SMTPError(self.greeting)
            self._hello(name)
            if self.tls == "starttls" or (self.tls == "opportunistic" and self.capabilities.starttls):
                if not self.capabilities.starttls:
                    raise TLSRequiredError(f"{self.host} does not offer STARTTLS (tls='starttls')")
                self._run(dialog.starttls())
                self._hello(name)
            if self.auth is not None:
                self.login()
        except BaseException:
            self.close()
            raise
        return self.greeting

    def _refused_greeting(self) -> None:
        """RFC 5321 3.1: after a 554 greeting the client should still QUIT."""
        try:
            self._run(dialog.command(Quit()))
        except (MailwireError, OSError):
            pass

    def _sni(self) -> str | None:
        return None if self.host.startswith("/") else self.host

    def _hello(self, name: str) -> None:
        reply = self._run(dialog.hello(name, lmtp=self.lmtp))
        self.capabilities = Capabilities.from_reply(reply)

    def login(self, auth: AuthArg = None) -> Reply:
        """Authenticate with ``auth`` (or the constructor's), choosing a mechanism."""
        auth = auth if auth is not None else self.auth
        if auth is None:
            raise LocalProtocolError("no credentials given")
        if not (self.is_tls or self.allow_plaintext_auth):
            raise TLSRequiredError(
                "refusing to send credentials over a plaintext connection "
                "(use TLS, or allow_plaintext_auth=True)"
            )
        mechanism = auth if not isinstance(auth, tuple) else choose_mechanism(
            self.capabilities.auth_mechanisms, auth[0], auth[1]
        )
        return self._run(dialog.authenticate(mechanism))

    def _run(self, program: Program[T]) -> T:
        """Pump a dialog: do the I/O each request asks for, feed replies back."""
        transport = self._transport
        if transport is None or transport.sock.fileno() < 0:
            raise ConnectionClosed("not connected")
        try:
            request = next(program)
            while True:
                if isinstance(request, dialog.Write):
                    transport.write(request.events)
                    request = program.send(None)
                elif isinstance(request, dialog.Read):
                    request = program.send(transport.read_replies(request.count))
                else:
                    transport.start_tls(self._context(), self._sni())
                    request = program.send(None)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        except SMTPError as err:
            if err.code == 421:
                self.close()
            raise
        except LocalProtocolError:
            raise  # nothing was sent (the transport closed itself if it must)
        except (MailwireError, OSError):
            self.close()
            raise

    # -- sending ---------------------------------------------------------

    def prepare(
        self,
        message: MessageLike,
        mail_from: str | None = None,
        rcpt_to: Sequence[str] | str | None = None,
        *,
        mail_options: MailOptions | None = None,
        rcpt_options: RcptOptionsArg = None,
    ) -> Transaction:
        return prepare(
            message, mail_from, rcpt_to, self.capabilities, mail_options=mail_options,
            rcpt_options=rcpt_options, chunking=self._use_chunking(), tls_active=self.is_tls,
        )

    def _use_chunking(self) -> bool:
        return self.chunking and self.capabilities.chunking

    def send(
        self,
        message: MessageLike,
        mail_from: str | None = None,
        rcpt_to: Sequence[str] | str | None = None,
        *,
        mail_options: MailOptions | None = None,
        rcpt_options: RcptOptionsArg = None,
    ) -> SendResult:
        """Send one message; raise if nothing was delivered.

        The result has each recipient's reply; recipients refused while
        others were accepted are in ``result.refused``.
        """
        txn = self.prepare(message, mail_from, rcpt_to, mail_options=mail_options, rcpt_options=rcpt_options)
        outcome = self._transact([txn])[0]
        if isinstance(outcome, SMTPError):
            raise outcome
        return outcome

    def send_many(
        self, items: Iterable[MessageLike | tuple[MessageLike, str | None, Sequence[str] | None]]
    ) -> list[SendResult | SMTPError]:
        """Send many messages pipelined across transactions.

        Items are messages or ``(message, mail_from, rcpt_to)``; the outcome of
        each is its result or the error that refused it.
        """
        batch = []
        for item in items:
            if isinstance(item, tuple):
                batch.append(self.prepare(item[0], item[1], item[2]))
            else:
                batch.append(self.prepare(item))
        return self._transact(batch)

    def _transact(self, batch: list[Transaction]) -> list[SendResult | SMTPError]:
        pipelining = self.pipelining and self.capabilities.pipelining
        return self._run(dialog.transactions(
            batch, pipelining=pipelining, chunking=self._use_chunking(), lmtp=self.lmtp,
        ))

    # -- other commands --------------------------------------------------

    def noop(self) -> Reply:
        return self._run(dialog.command(Noop()))

    def rset(self) -> Reply:
        return self._run(dialog.command(Rset()))

    def verify(self, address: str) -> Reply:
        return self._run(dialog.command(Vrfy(address)))

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
    default_port = 2003

    def __init__(self, host: str = "localhost", port: int | None = None, *, tls: TLSMode = "none", **kwargs: object) -> None:
        super().__init__(host, port, tls=tls, **kwargs)  # type: ignore[arg-type]

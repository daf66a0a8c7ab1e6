"""The asyncio native client: ``AsyncSMTPClient``, ``AsyncLMTPClient``, ``send``.

The same shape as the blocking ``SMTPClient`` — the same settings, the same
safe defaults, the same dialogs from ``dialog.py`` — pumped with ``await``.

Many tasks may share one client: a lock makes each dialog (a whole send, a
NOOP ...) run alone, so transactions never interleave on the wire. A dialog
that is cancelled or times out part-way closes the connection: the replies
still in flight would otherwise be read as answers to the next command. The
next use reconnects (``auto_reconnect``) or raises ``ConnectionClosed``.

Nothing here calls ``asyncio.run``: the client works inside any running loop,
uvloop's included.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Iterable, Sequence
from types import TracebackType
from typing import Any, TypeVar

from ..errors import ConnectionClosed, LocalProtocolError, MailwireError, SMTPError
from ..protocol.events import Quit
from ..protocol.params import MailOptions, RcptOptions
from ..reply import Reply
from . import dialog
from .aio_transport import AsyncTransport, open_connection
from .transport import closing_reason
from .dialog import AuthArg, Program, TLSMode, Transaction
from .prepare import Item, MessageLike, RcptOptionsArg, check_content, outcome_or_raise
from ..result import SendResult
from .base import ClientBase
from .settings import local_name

__all__ = ["AsyncSMTPClient", "AsyncLMTPClient", "send"]

T = TypeVar("T")


class AsyncSMTPClient(ClientBase):
    """``async with AsyncSMTPClient(host, auth=(user, pw)) as client:
    await client.send(message)``. Keywords as for ``SMTPClient``, ``timeout``
    included: a deadline per reply, however the server paces its bytes, and
    one for the TLS handshake and each write; it raises ``TimeoutError`` (on
    3.10 a class that is ``asyncio.TimeoutError`` too) and closes the
    connection. ``SMTPPool`` hands its ``timeout`` to every connection."""

    def __init__(
        self, host: str = "localhost", port: int | None = None, *, tls: TLSMode = "starttls",
        auth: AuthArg = None, auto_reconnect: bool = True, **settings: Any,
    ) -> None:
        super().__init__(host, port, tls, auth, settings)
        self.asynchronous = True  # content may be an async iterable
        self.auto_reconnect = auto_reconnect
        self.messages_sent = 0
        self._transport: AsyncTransport | None = None
        self._lock = asyncio.Lock()

    @property
    def connected(self) -> bool:
        return self._transport is not None and self._transport.open

    @property
    def is_tls(self) -> bool:
        return self._transport is not None and self._transport.is_tls

    @property
    def round_trips(self) -> int:
        return self._transport.turns if self._transport is not None else 0

    # -- connection --------------------------------------------------------------

    async def connect(self) -> Reply:
        async with self._lock:
            return await self._connect()

    async def _connect(self) -> Reply:
        if self.connected:
            raise LocalProtocolError("already connected")
        s = self.settings
        implicit = s.tls == "implicit"
        self._transport = await open_connection(
            s.host, s.port, lmtp=s.lmtp, limits=s.limits, timeout=s.dial_timeout,
            ssl_context=s.context if implicit else None,
            server_hostname=s.server_hostname if implicit else None, source_address=s.source_address,
        )
        name = s.local_hostname or _local_name(self._transport)
        try:
            opened = await self._pump(dialog.open_session(
                name, tls=s.tls, auth=s.auth, allow_plaintext_auth=s.allow_plaintext_auth, lmtp=s.lmtp,
            ))
        except BaseException as err:
            self._close(err)
            raise
        self.greeting, self.capabilities = opened.greeting, opened.capabilities
        self.messages_sent = 0
        return opened.greeting

    async def _run(self, program: Program[T]) -> T:
        """Run one dialog alone on the connection, connecting first if needed."""
        async with self._lock:
            if not self.connected:
                if self._transport is not None and not self.auto_reconnect:
                    program.close()
                    raise ConnectionClosed(self._transport.gone)
                await self._connect()
            return await self._pump(program)

    async def _pump(self, program: Program[T]) -> T:
        transport = self._transport
        if transport is None:
            raise ConnectionClosed("not connected")
        try:
            request = next(program)
            while True:
                if isinstance(request, dialog.Pull):
                    try:
                        piece = await request.take_async()
                    except BaseException as err:
                        self._close(err)  # the caller's content failed mid-message (see Pull)
                        raise
                    request = program.send(piece)
                    continue
                try:
                    value = await self._perform(transport, request)
                except (MailwireError, OSError) as err:
                    request = program.throw(err)
                else:
                    request = program.send(value)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        except BaseException as err:
            if not dialog.leaves_connection_usable(err):
                self._close(err)  # never leave replies in flight for someone else to read
            raise

    async def _perform(self, transport: AsyncTransport, request: dialog.Request) -> tuple[Reply, ...] | None:
        s = self.settings
        if isinstance(request, dialog.Write):
            await transport.write(request.events, s.timeout)
            return None
        if isinstance(request, dialog.Read):
            replies = await transport.read_replies(request.count, s.timeout, request.then)
            request.written = transport.then_written
            return replies
        await transport.start_tls(s.context, s.server_hostname, s.timeout)
        return None

    async def login(self, auth: AuthArg = None) -> Reply:
        auth = auth if auth is not None else self.settings.auth
        if auth is None:
            raise LocalProtocolError("no credentials given")
        return await self._run(dialog.login(
            auth, self.capabilities, tls_active=self.is_tls,
            allow_plaintext_auth=self.settings.allow_plaintext_auth,
        ))

    # -- sending -----------------------------------------------------------------

    async def send(
        self, message: MessageLike, mail_from: str | None = None,
        rcpt_to: Sequence[str] | str | None = None, *, mail_options: MailOptions | None = None,
        rcpt_options: RcptOptionsArg = None,
    ) -> SendResult:
        """Send one message; raise if nothing was delivered (see SMTPClient.send)."""
        if not self.connected:
            await self._ensure_connected()
        txn = self.prepare(message, mail_from, rcpt_to, mail_options=mail_options, rcpt_options=rcpt_options)
        return outcome_or_raise((await self.transact([txn]))[0])

    async def send_many(self, items: Iterable[Item]) -> list[SendResult | SMTPError]:
        """Many messages, pipelined across transactions; one outcome each."""
        if not self.connected:
            await self._ensure_connected()
        return await self.transact(self._prepare_items(items))

    async def transact(self, batch: list[Transaction]) -> list[SendResult | SMTPError]:
        """Send transactions made by ``prepare`` in one pipelined run; one
        outcome each, as ``send_many``."""
        outcomes = await self._run(self._transactions(batch))
        self.messages_sent += len(batch)
        return outcomes

    async def _ensure_connected(self) -> None:
        async with self._lock:
            if self.connected:
                return
            if self._transport is not None and not self.auto_reconnect:
                raise ConnectionClosed(self._transport.gone)
            await self._connect()

    # -- other commands ----------------------------------------------------------

    async def mail(self, address: str, options: MailOptions | None = None) -> Reply:
        """One step at a time: see ``SMTPClient.mail``."""
        return await self._run(self._mail(address, options))

    async def rcpt(self, address: str, options: RcptOptions | None = None) -> Reply:
        return await self._run(self._rcpt(address, options))

    async def data(self, content: bytes | Iterable[bytes] | AsyncIterable[bytes]) -> Reply:
        """DATA, the content and its end, on their own (see ``SMTPClient.data``);
        content given as an iterable, sync or async, goes out piece by piece."""
        check_content(content, asynchronous=True)
        return await self._run(dialog.data(content))

    async def noop(self) -> Reply:
        return await self._run(self._noop())

    async def rset(self) -> Reply:
        return await self._run(self._rset())

    async def verify(self, address: str) -> Reply:
        return await self._run(self._vrfy(address))

    async def quit(self) -> Reply | None:
        """Say goodbye and close; a server already gone is not an error."""
        async with self._lock:
            if not self.connected:
                self._close()
                return None
            try:
                return await self._pump(dialog.command(Quit()))
            except (MailwireError, OSError, asyncio.TimeoutError):
                return None
            finally:
                if self._transport is not None:
                    self._transport.close("after QUIT")

    def _close(self, err: BaseException | None = None) -> None:
        """Close the connection; ``err`` is what made us (None: the caller asked)."""
        if self._transport is not None:
            self._transport.close(closing_reason(err))

    async def close(self) -> None:
        self._close()

    async def __aenter__(self) -> "AsyncSMTPClient":
        if not self.connected:
            await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            await self.quit()
        else:
            self._close(exc)


class AsyncLMTPClient(AsyncSMTPClient):
    """LMTP over asyncio: one reply per recipient (see ``LMTPClient``)."""

    lmtp = True

    def __init__(
        self, host: str = "localhost", port: int | None = None, *, tls: TLSMode = "none", **kwargs: Any
    ) -> None:
        super().__init__(host, port, tls=tls, **kwargs)


def _local_name(transport: AsyncTransport) -> str:
    sock = transport.transport.get_extra_info("socket") if transport.transport is not None else None
    try:
        return local_name(sock) if sock is not None else "localhost"
    except OSError:
        # The socket is closed already (a server that hung up at once):
        # reading the greeting says so, not "Bad file descriptor" here.
        return "localhost"


async def send(
    message: MessageLike, mail_from: str | None = None, rcpt_to: Sequence[str] | str | None = None,
    *, host: str = "localhost", port: int | None = None, mail_options: MailOptions | None = None,
    rcpt_options: RcptOptionsArg = None, **settings: Any,
) -> SendResult:
    """One-shot: connect, send ``message``, QUIT. Settings as for AsyncSMTPClient."""
    async with AsyncSMTPClient(host, port, **settings) as client:
        return await client.send(
            message, mail_from, rcpt_to, mail_options=mail_options, rcpt_options=rcpt_options
        )

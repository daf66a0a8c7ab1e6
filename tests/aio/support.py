"""What the asyncio client tests share: a runner and servers in the test's own loop.

Every test is a plain function that calls ``run(main())``: ``asyncio.run`` with
a hard deadline, so a client that hangs fails the test instead of stalling the
suite (pytest-timeout is the second line). The servers run in that same loop:

* ``mailwire_server(backend, **config)`` — mailwire's own ``SMTPServer`` on a
  free loopback port (and a Unix socket if asked);
* ``CountingBackend`` — a backend that counts connections (one session per
  connection: opened, open now, most ever open at once), keeps every delivered
  envelope, and hands each message to a ``Sink`` that counts it;
* ``Recorder`` — a small SMTP server written for these tests that records
  every connection's command lines and transactions exactly as they arrived,
  serves any number of connections at once, can answer 421 at the greeting,
  delay a chosen final reply, and kill a connection.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from mailwire.errors import SMTPError
from mailwire.protocol.params import MailOptions, RcptOptions
from mailwire.server import BaseSession, Envelope, SessionInfo, Sink, SMTPServer

__all__ = [
    "run", "mailwire_server", "CountingBackend", "CountingSession", "Recorder", "Conn", "Txn",
    "wait_until", "DEADLINE",
]

T = TypeVar("T")
DEADLINE = 20.0  # no single test's event loop runs longer


def run(main: Coroutine[Any, Any, T], deadline: float = DEADLINE) -> T:
    """``asyncio.run`` with a deadline: a hang fails as TimeoutError."""

    async def bounded() -> T:
        return await asyncio.wait_for(main, deadline)

    return asyncio.run(bounded())


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``predicate`` on the loop until it holds or ``timeout`` passes."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() >= end:
            return False
        await asyncio.sleep(0.005)
    return True


# -- mailwire's own server ----------------------------------------------------------


class CountingSession(BaseSession):
    """One connection's session: counts its messages, tells the backend when it ends."""

    def __init__(self, backend: "CountingBackend", info: SessionInfo, sink: Any) -> None:
        super().__init__(info)
        self.backend = backend
        self.sink = sink
        self.messages = 0
        self.closed = False

    async def mail(self, address: str, options: MailOptions) -> None:
        self._check(address)

    async def rcpt(self, address: str, options: RcptOptions) -> None:
        self._check(address)

    def _check(self, address: str) -> None:
        refusal = self.backend.refuse(address) if self.backend.refuse is not None else None
        if refusal is not None:
            raise refusal

    async def data(self, envelope: Envelope) -> None:
        if self.backend.on_data is not None:
            await self.backend.on_data(envelope)
        self.messages += 1
        self.backend.envelopes.append(envelope)
        step = self.sink.data(envelope)  # a plain step (Sink's never waits) or an async one
        if step is not None:
            await step

    async def close(self) -> None:
        self.closed = True
        self.backend.open -= 1


class LMTPCountingSession(CountingSession):
    """Also an ``LMTPSession``: ``backend.lmtp_outcome(rcpt)`` decides each recipient."""

    async def deliver(self, envelope: Envelope) -> Sequence[SMTPError | None]:
        self.messages += 1
        self.backend.envelopes.append(envelope)
        outcome = self.backend.lmtp_outcome
        return [outcome(rcpt) if outcome is not None else None for rcpt in envelope.rcpt_to]


class CountingBackend:
    """Counts connections and messages; a ``Sink`` counts what was delivered.

    ``refuse(address)`` may refuse a sender or recipient; ``on_data(envelope)``
    may delay or refuse a message; ``lmtp_outcome(rcpt)`` decides each LMTP
    recipient after the data.
    """

    def __init__(
        self, *, lmtp: bool = False, lmtp_outcome: Callable[[str], SMTPError | None] | None = None,
        on_data: Callable[[Envelope], Awaitable[None]] | None = None,
        refuse: Callable[[str], SMTPError | None] | None = None,
    ) -> None:
        self.sink = Sink()
        self.refuse = refuse  # MAIL and RCPT addresses: the error refusing one, or None
        self.lmtp = lmtp
        self.lmtp_outcome = lmtp_outcome
        self.on_data = on_data
        self.sessions: list[CountingSession] = []
        self.envelopes: list[Envelope] = []
        self.open = 0
        self.max_open = 0

    async def new_session(self, info: SessionInfo) -> CountingSession:
        cls = LMTPCountingSession if self.lmtp else CountingSession
        session = cls(self, info, await self.sink.new_session(info))
        self.sessions.append(session)
        self.open += 1
        self.max_open = max(self.max_open, self.open)
        return session


@asynccontextmanager
async def mailwire_server(
    backend: Any, *, tcp: bool = True, port: int = 0, unix_path: str | None = None, **config: Any
) -> AsyncIterator[SMTPServer]:
    """mailwire's SMTPServer in this loop on 127.0.0.1 (a free port unless given)
    and/or a Unix socket."""
    config.setdefault("hostname", "mx.test")
    server = SMTPServer(backend, **config)
    if tcp:
        await server.start("127.0.0.1", port)
    if unix_path is not None:
        await server.start_unix(unix_path)
    try:
        yield server
    finally:
        await server.stop(grace=1.0)


# -- the recording server --------------------------------------------------------------

_PATH = re.compile(r"<([^>]*)>")


@dataclass
class Txn:
    """One transaction as it arrived: MAIL line, RCPT lines, dot-unstuffed content."""

    mail: str
    rcpts: list[str] = field(default_factory=list)
    content: bytes = b""

    @property
    def mail_from(self) -> str:
        match = _PATH.search(self.mail)
        return match[1] if match else ""

    @property
    def rcpt_to(self) -> list[str]:
        return [m[1] for m in (_PATH.search(line) for line in self.rcpts) if m]


@dataclass
class Conn:
    """One connection as the server saw it."""

    index: int
    writer: asyncio.StreamWriter
    lines: list[str] = field(default_factory=list)  # command lines, in order, CRLF stripped
    transactions: list[Txn] = field(default_factory=list)
    quit: bool = False
    closed: bool = False

    def kill(self) -> None:
        """Drop the connection at once (RST), as a crashing server would."""
        self.writer.transport.abort()


FinalReply = Callable[[Conn, Txn], Awaitable[str]]


class Recorder:
    """An asyncio SMTP server that records everything; ``async with Recorder() as rec``."""

    def __init__(
        self, *, extensions: Sequence[str] = ("PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES"),
        greeting: str = "220 rec.test ESMTP", final_reply: FinalReply | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.extensions = list(extensions)
        self.greeting = greeting
        self.final_reply = final_reply
        self.host = host
        self.conns: list[Conn] = []
        self.open = 0
        self.max_open = 0
        self.refused_replies = 0  # 5xx/4xx replies the server had to give (503 nested ...)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def attempts(self) -> int:
        """Connections accepted so far."""
        return len(self.conns)

    @property
    def transactions(self) -> list[Txn]:
        return [txn for conn in self.conns for txn in conn.transactions]

    async def __aenter__(self) -> "Recorder":
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for conn in self.conns:
            conn.writer.transport.abort()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2)
        await self._server.wait_closed()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Conn(len(self.conns), writer)
        self.conns.append(conn)
        task = asyncio.get_running_loop().create_task(self._serve(conn, reader))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, conn: Conn, reader: asyncio.StreamReader) -> None:
        self.open += 1
        self.max_open = max(self.max_open, self.open)
        writer = conn.writer
        try:
            writer.write(self.greeting.encode() + b"\r\n")
            if not self.greeting.startswith("220"):
                await writer.drain()
                return
            await self._session(conn, reader)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self.open -= 1
            conn.closed = True
            writer.close()

    async def _session(self, conn: Conn, reader: asyncio.StreamReader) -> None:
        writer = conn.writer
        txn: Txn | None = None
        while True:
            raw = await reader.readuntil(b"\r\n")
            line = raw[:-2].decode("utf-8", "surrogateescape")
            conn.lines.append(line)
            verb = line.split(" ", 1)[0].upper()
            if verb in ("EHLO", "LHLO"):
                words = ["rec.test", *self.extensions]
                writer.write("".join(
                    f"250{'-' if i < len(words) - 1 else ' '}{w}\r\n" for i, w in enumerate(words)
                ).encode())
            elif verb == "HELO":
                writer.write(b"250 rec.test\r\n")
            elif verb == "MAIL":
                if txn is not None:
                    self._refuse(writer, "503 5.5.1 Nested MAIL command")
                else:
                    txn = Txn(line)
                    writer.write(b"250 2.1.0 Sender OK\r\n")
            elif verb == "RCPT":
                if txn is None:
                    self._refuse(writer, "503 5.5.1 Need MAIL first")
                else:
                    txn.rcpts.append(line)
                    writer.write(b"250 2.1.5 Recipient OK\r\n")
            elif verb == "DATA":
                if txn is None or not txn.rcpts:
                    self._refuse(writer, "554 5.5.1 No valid recipients")
                    continue
                writer.write(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                txn.content = await _read_content(reader)
                conn.transactions.append(txn)
                final = "250 2.0.0 Message accepted"
                if self.final_reply is not None:
                    final = await self.final_reply(conn, txn)
                txn = None
                if writer.transport.is_closing():
                    return
                writer.write(final.encode() + b"\r\n")
            elif verb == "RSET":
                txn = None
                writer.write(b"250 2.0.0 Reset\r\n")
            elif verb == "NOOP":
                writer.write(b"250 2.0.0 OK\r\n")
            elif verb == "QUIT":
                conn.quit = True
                writer.write(b"221 2.0.0 Bye\r\n")
                await writer.drain()
                return
            else:
                self._refuse(writer, "500 5.5.2 Command not recognized")
            await writer.drain()

    def _refuse(self, writer: asyncio.StreamWriter, reply: str) -> None:
        self.refused_replies += 1
        writer.write(reply.encode() + b"\r\n")


async def _read_content(reader: asyncio.StreamReader) -> bytes:
    """DATA content up to the lone dot, dot-unstuffed (RFC 5321 4.5.2)."""
    body = bytearray()
    while True:
        line = await reader.readuntil(b"\r\n")
        if line == b".\r\n":
            return bytes(body)
        body += line[1:] if line.startswith(b".") else line

"""The blocking transport: one socket, one ``ClientConnection``, nothing else.

This is the only client code that touches a socket. It writes what the core
formats (several events in one ``sendall`` when pipelining), reads until the
core has a reply, upgrades to TLS when the core says so, and logs the dialog
with AUTH secrets redacted. Both the native ``SMTPClient`` and the
``mailwire.smtplib`` drop-in sit on it, so they share one engine.

Any timeout or protocol error closes the socket: after one, the next reply on
the wire could belong to an earlier command, and pairing it with a later one
would be worse than failing. The transport remembers why it closed, so an
error met afterwards says so ("closed by us after a timeout") instead of
blaming the server.

The timeout bounds each reply as a whole, not each read: a server trickling a
byte at a time would otherwise keep every read inside it for ever. The socket
keeps its own timeout; only while a reply is arriving in pieces is it
narrowed to what is left of that reply's time, and given back afterwards.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
from collections.abc import Callable, Iterable

from ..errors import ConnectionClosed, LocalProtocolError, RemoteProtocolError, SMTPError
from ..limits import DEFAULT_LIMITS, Limits
from ..protocol.client import ClientConnection, PreparedWrite, Sendable
from ..protocol.events import Auth, AuthResponse, Closed, EndOfData, MessageData
from ..reply import Reply

__all__ = [
    "SyncTransport", "open_socket", "describe", "format_events", "log_prepared", "log_reply",
    "closing_reason", "gone_message",
]

log = logging.getLogger("mailwire.client")
_READ_SIZE = 65536


def open_socket(
    host: str,
    port: int,
    *,
    timeout: float | None,
    source_address: tuple[str, int] | None = None,
) -> socket.socket:
    """A connected socket; a host starting with ``/`` is a Unix socket path."""
    if host.startswith("/"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(host)
        except BaseException:
            sock.close()
            raise
        return sock
    sock = socket.create_connection((host, port), timeout, source_address)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def describe(event: object, data: bytes) -> str:
    """How a sent event appears in the debug log, secrets redacted."""
    if isinstance(event, Auth):
        return f"AUTH {event.mechanism}" + (" <redacted>" if event.initial is not None else "")
    if isinstance(event, AuthResponse):
        return "<redacted>" if event.data is not None else "*"
    if isinstance(event, MessageData):
        return f"<{len(event.data)} octets of content>"
    if isinstance(event, EndOfData):
        return "<end of data>"
    return data.decode("utf-8", "replace").rstrip("\r\n")


def closing_reason(err: BaseException | None) -> str:
    """Why we close the connection after ``err`` (None: the program asked),
    as ``ConnectionClosed`` messages end: "closed by us <reason>"."""
    if err is None:
        return "because close() was called"
    if isinstance(err, TimeoutError):
        return "after a timeout"
    if isinstance(err, RemoteProtocolError):
        return "after a protocol error from the server"
    if isinstance(err, LocalProtocolError):
        return "after a command that could not be sent"
    if isinstance(err, SMTPError) and err.code == 421:
        return "after the server's 421"
    if not isinstance(err, Exception):
        return "after the operation was cancelled"  # CancelledError, KeyboardInterrupt
    return f"after an error ({type(err).__name__})"


def gone_message(closed_by_us: str | None) -> str:
    """A ``ConnectionClosed`` message that says who closed: a timeout of
    ours is no fault of the server's."""
    if closed_by_us is None:
        return "the server closed the connection"
    return f"the connection was closed by us {closed_by_us}"


def log_reply(reply: Reply) -> None:
    """A received reply in the debug log, each line as it came (enhanced
    code included), for both drivers alike."""
    last = len(reply.lines) - 1
    for i, line in enumerate(reply.lines):
        log.debug("< %d%s%s", reply.code, " " if i == last else "-", line)


def log_prepared(prepared: PreparedWrite) -> None:
    for event, part in zip(prepared.events, prepared.parts):
        log.debug("> %s", describe(event, part))


def format_events(
    core: ClientConnection, events: Iterable[Sendable] | PreparedWrite, close: Callable[[], None],
) -> bytes:
    """The wire bytes of ``events``, logged (secrets redacted) at DEBUG.

    If an event is refused (LocalProtocolError) after others were formatted,
    the core now expects replies to commands that will never be sent: ``close``
    is called before the error propagates. Refusing the first event changes
    nothing, and the connection goes on. A ``PreparedWrite`` is all or nothing.
    """
    debug = log.isEnabledFor(logging.DEBUG)
    if isinstance(events, PreparedWrite):
        data = core.send(events)
        if debug:
            log_prepared(events)
        return data
    parts: list[bytes] = []
    for event in events:
        try:
            data = core.send(event)
        except LocalProtocolError:
            if parts:
                close()
            raise
        if debug:
            log.debug("> %s", describe(event, data))
        parts.append(data)
    return parts[0] if len(parts) == 1 else b"".join(parts)


class SyncTransport:
    """A blocking SMTP connection: socket + sans-I/O core."""

    def __init__(
        self,
        sock: socket.socket,
        *,
        lmtp: bool = False,
        limits: Limits = DEFAULT_LIMITS,
        timeout: float | None = None,
    ) -> None:
        self.sock = sock
        self.core = ClientConnection(limits=limits, lmtp=lmtp)
        self.timeout = timeout
        self.sent_bytes = 0
        self.turns = 0  # times we waited for the server: round trips
        self._waiting = False
        self.then_written = False  # by the last read_replies
        self.closed_by_us: str | None = None  # why we closed it, if we did
        self._eof = False  # the server closed its side
        sock.settimeout(timeout)

    @property
    def is_tls(self) -> bool:
        return isinstance(self.sock, ssl.SSLSocket)

    def write(self, events: Iterable[Sendable] | PreparedWrite) -> None:
        """Format every event and send them in one write (see format_events)."""
        data = format_events(self.core, events, self._refused)
        if data:
            self.write_raw(data)

    def write_raw(self, data: bytes) -> None:
        if not data:
            return
        self._waiting = False
        try:
            self.sock.sendall(data)
        except OSError as err:
            self.close(closing_reason(err))
            raise
        self.sent_bytes += len(data)

    def read_reply(self, timeout: float | None = None) -> Reply:
        """The next reply; ConnectionClosed if the server hung up."""
        return self.read_replies(1, timeout)[0]

    def read_replies(
        self, count: int, timeout: float | None = None, then: PreparedWrite | None = None,
    ) -> tuple[Reply, ...]:
        """The next ``count`` replies (a pipelined group's); fewer if one is a
        421, after which the server closes and nothing more will come.

        Each reply must be complete within ``timeout`` (default: the socket's
        timeout) of the wait for it starting, however its bytes are paced:
        TimeoutError otherwise. The deadline is per reply, not per group.

        With ``then`` (content to follow the group's 354), it is written as
        soon as the core says the replies allow it (``content_allowed``: on
        their bytes when it can tell, else once they are parsed);
        ``then_written`` says whether it was.
        """
        if not self._waiting:
            self.turns += 1
            self._waiting = True
        self.then_written = False
        core = self.core
        debug = log.isEnabledFor(logging.DEBUG)
        replies: list[Reply] = []
        clock = _ReplyClock(self.sock, timeout)
        while len(replies) < count:
            try:
                event = core.next_event()
            except RemoteProtocolError as err:
                self.close(closing_reason(err))
                raise
            if isinstance(event, Reply):
                if debug:
                    log_reply(event)
                replies.append(event)
                clock.next_reply()
                if core.closing:
                    break
            elif isinstance(event, Closed):
                self.close()
                raise ConnectionClosed(gone_message(self.closed_by_us))
            else:
                self._fill(clock)
                if then is not None and not self.then_written:
                    clock.restore()  # a write gets the socket's timeout, not what a reply has left
                    self._write_then(then)
        clock.restore()  # every other way out of the loop closes the socket
        if then is not None and not self.then_written and len(replies) == count:
            self._write_then(then)
        return tuple(replies)

    def _write_then(self, then: PreparedWrite) -> None:
        core = self.core
        if not core.content_allowed():
            return
        try:
            data = core.send(then)
        except LocalProtocolError as err:
            # The server awaits content we cannot send: never go on.
            self.close(closing_reason(err))
            raise
        self.write_raw(data)
        self.then_written = True
        if log.isEnabledFor(logging.DEBUG):
            log_prepared(then)

    def _fill(self, clock: _ReplyClock) -> None:
        if self.sock.fileno() < 0:
            raise ConnectionClosed(gone_message(self.closed_by_us))
        try:
            clock.before_read()
            data = self.sock.recv(_READ_SIZE)
        except OSError as err:  # TimeoutError included
            self.close(closing_reason(err))
            raise
        except BaseException:
            clock.restore()  # interrupted (KeyboardInterrupt): the socket keeps its own timeout
            raise
        self._eof = not data
        self.core.receive_data(data)

    def start_tls(self, context: ssl.SSLContext, server_hostname: str | None) -> None:
        """Handshake after the 220 to STARTTLS; the core drops what came before."""
        try:
            self.sock = context.wrap_socket(self.sock, server_hostname=server_hostname)
        except (ssl.SSLError, OSError) as err:
            self.close(closing_reason(err))
            raise
        self.core.tls_established()
        if self.core.discarded_after_starttls:
            log.warning(
                "discarded %d bytes the server sent after its 220 to STARTTLS",
                self.core.discarded_after_starttls,
            )

    def adopt(self, sock: socket.socket) -> None:
        """Go on over ``sock``, swapped in by a program that runs the dialog
        itself: smtplib lets one wrap its socket in TLS after its own
        STARTTLS line. On a raw connection (``ClientConnection.send_raw``)
        the core then forgets what the old socket left unread, as after
        ``start_tls`` (RFC 3207 5)."""
        self.sock = sock
        if self.core.raw:
            self.core.tls_established()

    def _refused(self) -> None:
        self.close(closing_reason(LocalProtocolError()))

    def close(self, why: str = closing_reason(None)) -> None:
        """Close; ``why`` is kept for the errors that follow, unless the
        server had closed first."""
        if self.closed_by_us is None and not self._eof and self.sock.fileno() >= 0:
            self.closed_by_us = why
        try:
            self.sock.close()
        except OSError:
            pass


class _ReplyClock:
    """The deadline of the reply being read, kept by narrowing the socket's timeout.

    The wait for a reply starts at its first read, which runs with the
    socket's own timeout: the common case (a reply, or a whole group, in one
    read) costs no system call. A reply still incomplete after a read gets
    what is left of its time for the next one; the socket's timeout is
    given back by ``restore``, so a program reading ``sock.gettimeout()``
    (the smtplib drop-in's) sees what it set.
    """

    __slots__ = ("_sock", "_own", "_limit", "_deadline", "_narrowed")

    def __init__(self, sock: socket.socket, timeout: float | None) -> None:
        self._sock = sock
        self._own = sock.gettimeout()
        self._limit = self._own if timeout is None else timeout
        self._deadline: float | None = None
        self._narrowed = False

    def next_reply(self) -> None:
        """A reply is complete: the next one gets a time of its own."""
        self._deadline = None

    def before_read(self) -> None:
        """Set the socket's timeout for the next read (TimeoutError if none is left)."""
        limit = self._limit
        if limit is None:
            return
        now = time.monotonic()
        if self._deadline is None:
            self._deadline = now + limit
            wait = limit
        else:
            wait = self._deadline - now
            if wait <= 0:
                raise TimeoutError("timed out")  # the words of socket.timeout, as smtplib's users know them
        if wait != self._own or self._narrowed:
            self._sock.settimeout(wait)
            self._narrowed = True

    def restore(self) -> None:
        """Give the socket its own timeout back (the deadline runs on)."""
        if self._narrowed:
            self._narrowed = False
            if self._sock.fileno() >= 0:
                self._sock.settimeout(self._own)

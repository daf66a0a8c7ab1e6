"""Scripted servers: a listening socket and a function that plays the server.

A test writes the server's half of a conversation as a plain function of a
``Peer``: send bytes, read a line, read an exact count, upgrade to TLS. The
``ScriptedServer`` accepts connections on loopback (IPv4, IPv6 or a Unix
socket path), runs the script for each one in a thread, and records every byte
it received, so a test can assert what reached the wire and what did not.

Every socket has a timeout and every loop is bounded: a script waiting for
bytes that never come fails after ``SCRIPT_TIMEOUT`` instead of hanging, and
the failure is re-raised in the test when the server is closed.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

__all__ = ["Peer", "ScriptedServer", "SCRIPT_TIMEOUT"]

SCRIPT_TIMEOUT = 5.0
_READ_SIZE = 65536
_MAX_BUFFER = 64 << 20  # no script ever needs more; a runaway client fails instead


class Peer:
    """The server's view of one client connection."""

    def __init__(self, sock: socket.socket, address: Any) -> None:
        self.sock = sock
        self.address = address
        self.received = bytearray()  # every byte read, in order (plaintext after TLS)
        self.reads: list[bytes] = []  # each recv() result, to see how writes arrived
        self.discarded_at_starttls = b""
        self._buffer = bytearray()
        self.eof = False
        sock.settimeout(SCRIPT_TIMEOUT)

    # -- reading -----------------------------------------------------------

    def _fill(self) -> bool:
        """One recv into the buffer; False at end of stream."""
        if self.eof:
            return False
        data = self.sock.recv(_READ_SIZE)
        if not data:
            self.eof = True
            return False
        self.received += data
        self.reads.append(data)
        self._buffer += data
        if len(self._buffer) > _MAX_BUFFER:
            raise AssertionError("scripted server: client sent more than 64 MiB unread")
        return True

    def buffered(self) -> int:
        """Bytes already received but not yet consumed by the script."""
        return len(self._buffer)

    def recv_line(self) -> bytes:
        """The next line with its CRLF; at end of stream, whatever is left (maybe b"")."""
        while True:
            end = self._buffer.find(b"\r\n")
            if end >= 0:
                line = bytes(self._buffer[: end + 2])
                del self._buffer[: end + 2]
                return line
            if not self._fill():
                rest = bytes(self._buffer)
                self._buffer.clear()
                return rest

    def recv_exact(self, count: int) -> bytes:
        """Exactly ``count`` bytes; EOFError if the client closes first."""
        while len(self._buffer) < count:
            if not self._fill():
                raise EOFError(f"client closed after {len(self._buffer)} of {count} bytes")
        data = bytes(self._buffer[:count])
        del self._buffer[:count]
        return data

    def recv_until(self, marker: bytes) -> bytes:
        """Everything up to and including ``marker``; EOFError if it never comes."""
        while True:
            end = self._buffer.find(marker)
            if end >= 0:
                data = bytes(self._buffer[: end + len(marker)])
                del self._buffer[: end + len(marker)]
                return data
            if not self._fill():
                raise EOFError(f"client closed before {marker!r}")

    def wait_closed(self, timeout: float = SCRIPT_TIMEOUT) -> bytes:
        """Read until the client closes; returns what arrived meanwhile."""
        self.sock.settimeout(timeout)
        start = len(self.received)
        try:
            while self._fill():
                pass
        except (ConnectionError, ssl.SSLError):
            self.eof = True
        return bytes(self.received[start:])

    # -- writing -----------------------------------------------------------

    def send(self, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.sock.sendall(data)

    def reply(self, *lines: str) -> None:
        """Send a reply given as complete lines (``"250-a"``, ``"250 b"``)."""
        self.send("".join(line + "\r\n" for line in lines))

    def starttls(self, context: ssl.SSLContext) -> None:
        """Server-side TLS handshake; bytes buffered before it are dropped, as RFC 3207 5 asks."""
        self.discarded_at_starttls = bytes(self._buffer)
        self._buffer.clear()
        self.sock = context.wrap_socket(self.sock, server_side=True)
        self.sock.settimeout(SCRIPT_TIMEOUT)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


Script = Callable[[Peer], None]


class ScriptedServer:
    """Run ``script`` for each of up to ``connections`` clients, one after another.

    ``with ScriptedServer(script) as server: SMTPClient(*server.address, ...)``.
    Leaving the block stops the server and re-raises the first error a script
    raised (unless ``strict=False``, for scripts that expect to be cut off).
    """

    def __init__(
        self,
        script: Script,
        *,
        host: str = "127.0.0.1",
        unix_path: str | None = None,
        connections: int = 1,
        strict: bool = True,
    ) -> None:
        self.script = script
        self.host = host
        self.unix_path = unix_path
        self.connections = connections
        self.strict = strict
        self.peers: list[Peer] = []
        self.errors: list[BaseException] = []
        self.port = 0
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` for a TCP server, ``(path, 0)`` for a Unix socket."""
        if self.unix_path is not None:
            return self.unix_path, 0
        return self.host, self.port

    @property
    def received(self) -> bytes:
        """Every byte every client sent, in connection order."""
        return b"".join(bytes(peer.received) for peer in self.peers)

    def _listen(self) -> socket.socket:
        if self.unix_path is not None:
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(self.unix_path)
        else:
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            listener = socket.socket(family, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.host, 0))
            self.port = listener.getsockname()[1]
        listener.listen(8)
        listener.settimeout(0.05)
        return listener

    def _serve(self) -> None:
        assert self._listener is not None
        served = 0
        while served < self.connections and not self._stop.is_set():
            try:
                conn, address = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            served += 1
            if conn.family != socket.AF_UNIX:  # reply lines go out as written, no Nagle delay
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            peer = Peer(conn, address)
            self.peers.append(peer)
            try:
                self.script(peer)
            except BaseException as err:  # re-raised in the test thread
                self.errors.append(err)
            finally:
                peer.close()

    def __enter__(self) -> "ScriptedServer":
        self._listener = self._listen()
        self._thread = threading.Thread(target=self._serve, name="scripted-server", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(SCRIPT_TIMEOUT * 2)
            if self._thread.is_alive():
                for peer in self.peers:
                    peer.close()
                self._thread.join(SCRIPT_TIMEOUT)
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
        if self.strict and self.errors and exc_type is None:
            raise self.errors[0]

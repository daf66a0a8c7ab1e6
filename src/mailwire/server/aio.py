"""The asyncio SMTP/LMTP server: listeners, the connection limit, shutdown.

``SMTPServer(backend)`` listens on TCP (``start``) or a Unix socket
(``start_unix``) and gives every connection its own ``SMTPConnection``. The
backend is a ``Backend`` or, for the common case, a plain
``async def handle(envelope) -> None``.

Shutdown is graceful: ``stop()`` stops accepting, lets every connection finish
the message it is receiving for up to ``grace`` seconds, then says 421 to
whatever is still open. A message is only ever handed to the backend whole, so
stopping never half-delivers one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Sequence
from typing import Any

from .._aio.accepting import stop_accepting
from ..protocol.commands import CommandCache
from ..reply import SHUTTING_DOWN, TOO_MANY_CONNECTIONS, TOO_MANY_FROM_CLIENT
from .clients import ClientTable
from .config import ServerConfig, check_unix_mode
from .connection import SMTPConnection
from .session import Backend, FunctionBackend, Handler

__all__ = ["SMTPServer"]

log = logging.getLogger("mailwire.server")


class SMTPServer:
    def __init__(self, backend: Backend | Handler, config: ServerConfig | None = None, **settings: Any) -> None:
        """``settings`` are ServerConfig fields, for when no config is given."""
        if config is not None and settings:
            raise TypeError("give either a ServerConfig or settings, not both")
        self.config = config if config is not None else ServerConfig(**settings)
        self.backend: Backend = backend if isinstance(backend, Backend) else FunctionBackend(backend)
        self._servers: list[asyncio.Server] = []
        self._connections: set[SMTPConnection] = set()
        self._unix_paths: list[str] = []
        self._closing = False
        # Per client address, across connections: see clients.py.
        self.clients = ClientTable(self.config.limits, self.config.client_limit_exempt)
        # The command lines its connections parsed (see CommandCache).
        self.commands = CommandCache()

    # -- connections ---------------------------------------------------------------

    def accept(self, connection: SMTPConnection, transport: asyncio.Transport) -> bool:
        """Whether to serve a new connection; if not, it is closed unread.

        A peer that may not send a PROXY header (``proxy_from``) is closed
        unanswered: the header would let it name any client it likes. Past
        ``limits.connections``, or past the client's share, it hears why
        first (RFC 5321 3.8). Behind a PROXY header the peer is the proxy:
        the client is counted once the header has named it.
        """
        config = self.config
        peer = transport.get_extra_info("peername")
        if config.proxy_protocol and not config.proxy_trusted(peer):
            log.warning("closing a connection from %s: not a trusted PROXY protocol peer (proxy_from)", peer)
            transport.close()
            return False
        refusal = None
        if not self.admit(connection):
            refusal = SHUTTING_DOWN if self._closing else TOO_MANY_CONNECTIONS
        elif not config.proxy_protocol and not self.admit_client(connection, self.clients.key(peer)):
            refusal = TOO_MANY_FROM_CLIENT
            self.release(connection)
        if refusal is not None:
            transport.write(refusal.wire)
            transport.close()
            return False
        return True

    def admit(self, connection: SMTPConnection) -> bool:
        if self._closing:
            return False
        if len(self._connections) >= self.config.limits.connections:
            if self.clients.refusal_log("*"):  # a flood of refusals is one line a minute
                log.warning("refusing connections: %d open (limit %d)", len(self._connections),
                            self.config.limits.connections)
            return False
        self._connections.add(connection)
        return True

    def admit_client(self, connection: SMTPConnection, key: str | None) -> bool:
        """Count ``connection`` against its client's share (``key``, from
        ``clients.key``); False if that client holds all it may."""
        if self.clients.connect(key):
            connection.client_key = key
            return True
        assert key is not None
        if self.clients.refusal_log(key):
            log.warning("refusing connections from %s: %d open (limit %d per client)", key,
                        self.clients.connections(key), self.config.limits.connections_per_client)
        return False

    def release(self, connection: SMTPConnection) -> None:
        self._connections.discard(connection)
        self.clients.disconnect(connection.client_key)
        connection.client_key = None

    @property
    def connections(self) -> int:
        return len(self._connections)

    # -- listening -----------------------------------------------------------------

    def _ssl(self) -> Any:
        return self.config.tls_context if self.config.implicit_tls else None

    async def start(
        self, host: str | Sequence[str] | None = "127.0.0.1", port: int | None = 8025, **kwargs: Any
    ) -> None:
        """Listen on TCP; port 0 picks a free one (see ``addresses``). With
        ``sock=`` (a listening socket, closed when the server stops), host
        and port are None."""
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTPConnection(self), host, port, ssl=self._ssl(), reuse_address=True, **kwargs
        )
        self._servers.append(server)

    async def start_unix(self, path: str, *, mode: int | None = None, **kwargs: Any) -> None:
        """Listen on a Unix socket (LMTP's usual home) with permissions
        ``mode`` (default ``config.unix_mode``, 0666)."""
        loop = asyncio.get_running_loop()
        mode = check_unix_mode(self.config.unix_mode if mode is None else mode)
        if os.path.exists(path) and _is_stale_socket(path):
            os.unlink(path)
        sock = _bound_unix_socket(path, mode)
        try:
            server = await loop.create_unix_server(lambda: SMTPConnection(self), sock=sock, ssl=self._ssl(), **kwargs)
        except BaseException:
            sock.close()
            _unlink(path)
            raise
        self._servers.append(server)
        self._unix_paths.append(path)

    @property
    def addresses(self) -> list[Any]:
        """Every bound address: (host, port, ...) tuples, or Unix paths."""
        return [sock.getsockname() for server in self._servers for sock in server.sockets]

    @property
    def port(self) -> int:
        """The first TCP listener's port."""
        for address in self.addresses:
            if isinstance(address, tuple):
                return int(address[1])
        raise RuntimeError("not listening on TCP")

    async def serve_forever(self) -> None:
        if not self._servers:
            raise RuntimeError("call start() or start_unix() first")
        await asyncio.gather(*(server.serve_forever() for server in self._servers))

    async def stop(self, grace: float = 5.0) -> None:
        """Stop accepting, let open connections finish for ``grace`` s, then 421."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        self._closing = True
        await stop_accepting(self._servers)  # (the ones still attaching are refused: _closing)
        for server in self._servers:
            server.close()
        for connection in list(self._connections):
            connection.shut_down()  # idle ones hear 421 now, busy ones after their message
        tasks = [c.task for c in list(self._connections) if c.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()  # still mid-message after the grace: nothing is delivered
            if pending:
                await asyncio.wait(pending, timeout=grace)
        await self._finish_closing(max(deadline, loop.time() + min(grace, 1.0)))
        for server in self._servers:
            await server.wait_closed()
        for path in self._unix_paths:
            _unlink(path)
        self._servers.clear()

    async def _finish_closing(self, until: float) -> None:
        """The sessions are over but their transports may still be closing:
        through TLS, asyncio waits up to 30 s for the client's close_notify,
        which a client that just goes quiet never sends; and Python 3.12's
        ``wait_closed`` waits for every connection. So: until ``until`` (the
        grace's end, or a moment for the last 421s to go out), then abort."""
        loop = asyncio.get_running_loop()
        while self._connections and loop.time() < until:
            await asyncio.sleep(0.02)
        for connection in list(self._connections):
            if connection.transport is not None:
                connection.transport.abort()

    async def __aenter__(self) -> "SMTPServer":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def _bound_unix_socket(path: str, mode: int) -> socket.socket:
    """A socket bound at ``path`` with permissions ``mode``, not yet listening.

    bind() creates the file with the umask's mode; the chmod comes before
    listen() (create_unix_server's), and until listen() every connect() is
    refused whatever the file's mode: so no client ever reaches the socket
    under other permissions than ``mode``. (Changing the umask instead would
    change it for every thread of the process.)
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
    except BaseException:
        sock.close()
        raise
    try:
        os.chmod(path, mode)
    except BaseException:
        sock.close()
        _unlink(path)
        raise
    return sock


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _is_stale_socket(path: str) -> bool:
    """A leftover socket file nobody listens on (safe to replace)."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    finally:
        probe.close()
    return False

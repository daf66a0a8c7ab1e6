"""Binding one address for several processes: each worker's own socket, or one they share.

With SO_REUSEPORT (``reuse_port``), Linux spreads a port's connections
over every *listening* socket bound to it with that option by one user.
So the supervisor binds a socket per address that never listens: it keeps
the port (and picks it once, for port 0) without taking a connection, and
each worker binds a twin (``reuseport_twin``) and listens on it. Without
it, the supervisor's sockets listen and the workers accept from the copies
they inherit. Before joining a port with SO_REUSEPORT, ``check_free``
makes sure no server listens there: the option would let us share another
server's port without a word, where one process gets "address in use".
(A group whose workers are all down at that moment is not seen: its
sockets do not listen.)
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Any

__all__ = ["bind_tcp", "reuseport_twin", "set_options", "check_free", "BACKLOG"]

BACKLOG = 100  # asyncio's default, which the workers' servers use too


def bind_tcp(hosts: Sequence[str | None], port: int, reuse_port: bool) -> list[socket.socket]:
    """Bound sockets for every address of ``hosts`` on one port (port 0: the
    first picks it); listening unless ``reuse_port`` (the workers listen)."""
    infos: list[tuple[Any, ...]] = []
    for host in hosts:
        for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE):
            if info not in infos:
                infos.append(info)
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in infos:
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            set_options(sock, reuse_port)
            if port == 0 and len(sockets) > 1:
                address = (address[0], sockets[0].getsockname()[1], *address[2:])
            elif port and reuse_port:
                check_free(family, kind, proto, address)
            sock.bind(address)
            if not reuse_port:
                sock.listen(BACKLOG)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def set_options(sock: socket.socket, reuse_port: bool) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)


def check_free(family: int, kind: int, proto: int, address: Any) -> None:
    """OSError (EADDRINUSE) if a server listens at ``address``. Binding with
    SO_REUSEPORT would not say so: it joins any group of the same user,
    and two servers would share the port unawares."""
    with socket.socket(family, kind, proto) as probe:
        set_options(probe, False)
        probe.bind(address)


def reuseport_twin(placeholder: socket.socket) -> socket.socket:
    """A worker's own socket on the address ``placeholder`` holds (REUSEPORT)."""
    sock = socket.socket(placeholder.family, placeholder.type, placeholder.proto)
    try:
        set_options(sock, True)
        sock.bind(placeholder.getsockname())
    except BaseException:
        sock.close()
        raise
    return sock

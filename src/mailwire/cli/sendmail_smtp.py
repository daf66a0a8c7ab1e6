"""``sendmail -bs``: SMTP on stdin and stdout, relayed to the server.

Symfony Mailer's sendmail transport runs ``sendmail -bs`` by default, and
Laravel's ``sendmail -bs -i``: the program speaks SMTP itself on the pipes,
as if to a local MTA. Mailpit's sendmail answers them by joining the pipes
to its server, and so does this: one connection (TCP or the Unix socket,
implicit TLS if asked), the bytes passed both ways as they come, the session
over when the server closes (after the program's QUIT) or the program closes
stdin. The program does all the talking, so the options that would have
mailwire talk on its behalf (``--auth``, ``--tls starttls``) do not apply
and are refused; plain TCP is used unless ``--tls implicit``.
"""

from __future__ import annotations

import os
import socket
import ssl
import threading

from .options import Destination

__all__ = ["relay_session"]

CHUNK = 1 << 16


def _connect(where: Destination) -> socket.socket:
    timeout = where.settings["timeout"]
    if where.port is None:  # a Unix socket
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(where.host)
        except BaseException:
            sock.close()
            raise
    else:
        sock = socket.create_connection((where.host, where.port), timeout=timeout)
    if where.settings["tls"] == "implicit":
        context: ssl.SSLContext = where.settings["ssl_context"]
        sock = context.wrap_socket(sock, server_hostname=None if where.port is None else where.host)
    sock.settimeout(None)  # the server's own timeouts bound an idle session
    return sock


def _forward_stdin(sock: socket.socket, stdin: int) -> None:
    """Stdin to the server until end of file, then half-close."""
    try:
        while data := os.read(stdin, CHUNK):
            sock.sendall(data)
        if not isinstance(sock, ssl.SSLSocket):
            sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass  # the server went away: the other direction sees it


def relay_session(where: Destination, stdin: int = 0, stdout: int = 1) -> None:
    """Join ``stdin``/``stdout`` to a connection to the server until the
    server closes it (OSError if it cannot be reached)."""
    sock = _connect(where)
    with sock:
        threading.Thread(target=_forward_stdin, args=(sock, stdin), daemon=True).start()
        try:
            while data := sock.recv(CHUNK):
                view = memoryview(data)
                while view:
                    view = view[os.write(stdout, view):]
        except ConnectionResetError:
            pass  # closed with unread data behind the QUIT: the session is over all the same

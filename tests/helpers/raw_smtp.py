"""A raw SMTP client over a blocking socket, for tests that send the content themselves."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def in_data(address: tuple[str, int], sender: str, rcpt: str) -> Iterator[tuple[socket.socket, Callable[[], bytes]]]:
    """A raw client whose DATA was answered 354, and how it reads a reply."""
    with socket.create_connection(address, timeout=60) as sock, sock.makefile("rb") as replies:
        def reply() -> bytes:
            line = replies.readline()
            while line[3:4] == b"-":
                line = replies.readline()
            return line

        assert reply().startswith(b"220")
        for command in (b"EHLO t", f"MAIL FROM:<{sender}>".encode(), f"RCPT TO:<{rcpt}>".encode(), b"DATA"):
            sock.sendall(command + b"\r\n")
            assert reply()[:1] in (b"2", b"3"), command
        yield sock, reply

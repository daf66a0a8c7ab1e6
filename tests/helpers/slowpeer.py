"""Server halves that stall a client: trickling bytes, or saying nothing at all.

A server can hold a client without breaking any rule a parser sees: it sends
a reply one byte at a time, each byte well inside the client's timeout, or it
stops answering after some command. These helpers play such a server on a
``ScriptedServer`` ``Peer`` (a real socket on loopback, in a thread), in any of
the three TLS modes, so the client tests of timeouts and of closing run
against the real transports (plain, STARTTLS, implicit TLS).

Every wait is bounded: a trickle stops at its end or once the client has
gone, a silent server waits at most ``SCRIPT_TIMEOUT`` for the client to close.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable, Sequence

from .scripted import SCRIPT_TIMEOUT, Peer

__all__ = ["trickle", "trickle_handshake", "read_slowly", "Quiet", "TRICKLE_INTERVAL"]

TRICKLE_INTERVAL = 0.3  # seconds between two bytes of a trickled reply


def trickle(peer: Peer, data: bytes, interval: float = TRICKLE_INTERVAL) -> bool:
    """Send ``data`` one byte every ``interval`` seconds; False as soon as the
    client has gone (a send fails), True if every byte went out."""
    for i in range(len(data)):
        try:
            peer.sock.sendall(data[i:i + 1])
        except (OSError, ssl.SSLError):
            return False
        time.sleep(interval)
    return True


def trickle_handshake(peer: Peer, context: ssl.SSLContext, interval: float = TRICKLE_INTERVAL) -> bool:
    """Play the server's side of a TLS handshake, its first flight (ServerHello,
    certificate ...) one byte every ``interval`` seconds: genuine handshake
    bytes, each well inside any timeout, the whole far outside it."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_side=True)
    while not outgoing.pending:
        data = peer.sock.recv(65536)  # the ClientHello
        if not data:
            return False
        incoming.write(data)
        try:
            tls.do_handshake()
        except ssl.SSLWantReadError:
            pass
    return trickle(peer, outgoing.read(), interval)


def read_slowly(peer: Peer, interval: float = TRICKLE_INTERVAL, duration: float = 5.0) -> None:
    """Read one byte every ``interval`` seconds for ``duration`` seconds, as a
    server that barely drains what the client writes (what the client wrote
    before closing stays readable, so its closing does not end this early)."""
    end = time.monotonic() + duration
    while time.monotonic() < end:
        try:
            if not peer.sock.recv(1):
                return
        except (OSError, ssl.SSLError):
            return
        time.sleep(interval)


def _ehlo_lines(keywords: Sequence[str]) -> list[str]:
    words = ["quiet.test", *keywords]
    return [f"250{'-' if i < len(words) - 1 else ' '}{w}" for i, w in enumerate(words)]


class Quiet:
    """A server (a ``ScriptedServer`` script) that answers normally until a
    command starting with ``until`` arrives, then does ``then`` with the peer
    (by default: nothing — it reads until the client closes).

    ``tls`` is the client's mode: ``"implicit"`` wraps the socket before the
    greeting, ``"starttls"`` offers STARTTLS and upgrades when asked. AUTH is
    offered and always refused (535). ``seen`` is set when ``until`` arrives.
    """

    def __init__(
        self, until: bytes, *, tls: str = "none", context: ssl.SSLContext | None = None,
        then: Callable[[Peer], object] | None = None, greeting: bytes = b"220 quiet.test ESMTP\r\n",
        keywords: Sequence[str] = ("PIPELINING", "AUTH PLAIN LOGIN"),
    ) -> None:
        self.until = until.upper()
        self.tls = tls
        self.context = context
        self.then = then
        self.greeting = greeting
        self.keywords = list(keywords)
        self.seen = threading.Event()
        self.commands: list[bytes] = []

    def __call__(self, peer: Peer) -> None:
        if self.tls == "implicit":
            assert self.context is not None
            peer.sock = self.context.wrap_socket(peer.sock, server_side=True)
            peer.sock.settimeout(SCRIPT_TIMEOUT)
        if self.until == b"":  # stall the greeting itself
            self.seen.set()
            self._stall(peer)
            return
        peer.send(self.greeting)
        offer_tls = self.tls == "starttls"
        while True:
            line = peer.recv_line()
            if not line.endswith(b"\r\n"):
                return  # the client closed
            self.commands.append(line)
            verb = line[:-2].split(b" ", 1)[0].upper()
            if line.upper().startswith(self.until):
                if verb == b"AUTH":
                    peer.reply("535 5.7.8 Authentication credentials invalid")
                self.seen.set()
                self._stall(peer)
                return
            if verb in (b"EHLO", b"HELO"):
                peer.reply(*_ehlo_lines([*self.keywords, *(["STARTTLS"] if offer_tls else [])]))
            elif verb == b"STARTTLS" and offer_tls:
                assert self.context is not None
                peer.reply("220 2.0.0 go ahead")
                peer.starttls(self.context)
                offer_tls = False
            elif verb == b"AUTH":
                peer.reply("535 5.7.8 Authentication credentials invalid")
            elif verb == b"QUIT":
                peer.reply("221 2.0.0 bye")
                return
            else:
                peer.reply("250 2.0.0 OK")

    def _stall(self, peer: Peer) -> None:
        if self.then is not None:
            self.then(peer)
        else:
            try:
                peer.wait_closed()
            except (OSError, ssl.SSLError):
                pass

"""``Printer``: each message printed the way ``smtpd.DebuggingServer`` printed it.

The text is made by one pure function, ``debugging_text``, so what a message
looks like is tested without a server; the backend only picks the stream at
delivery time (so ``redirect_stdout`` and test capture work) and writes each
message in one call under a lock, so concurrent sessions never interleave.
"""

from __future__ import annotations

import sys
import threading
from typing import TextIO

from ..envelope import Envelope, SessionInfo
from ..session import BaseSession, Session

__all__ = ["Printer", "debugging_text"]


def _peer_host(info: SessionInfo | None) -> str:
    peer = info.peer if info is not None else None
    if isinstance(peer, tuple):
        return str(peer[0])
    return peer if peer else "unknown"


def debugging_text(content: bytes, peer: str) -> str:
    """A message as ``smtpd.DebuggingServer`` printed it with ``decode_data=True``.

    The banner, each line of the message (``str.splitlines``, as smtpd did)
    with ``X-Peer: <peer>`` inserted before the blank line that ends the
    headers (never, if there is none), and the closing banner.
    """
    out = ["---------- MESSAGE FOLLOWS ----------"]
    in_headers = True
    for line in content.decode("utf-8", "replace").splitlines():
        if in_headers and not line:
            out.append("X-Peer: " + peer)
            in_headers = False
        out.append(line)
    out.append("------------ END MESSAGE ------------")
    return "\n".join(out) + "\n"


class _PrinterSession(BaseSession):
    def __init__(self, info: SessionInfo, printer: Printer) -> None:
        super().__init__(info)
        self._printer = printer

    async def data(self, envelope: Envelope) -> None:
        self._printer.print_message(envelope, self.info)


class Printer:
    """Prints each message to ``stream`` the way ``smtpd.DebuggingServer`` did.

    The output is that of DebuggingServer in its ``decode_data=True`` mode:
    human-readable lines, not the ``b'...'`` reprs its default bytes mode
    printed, and (as in that mode) no ``mail options:``/``rcpt options:``
    lines. Content is decoded as UTF-8 with ``errors="replace"``. ``X-Peer``
    names the client's IP address (the PROXY protocol's source when that is
    on; the socket path for a Unix socket).

    ``stream`` defaults to whatever ``sys.stdout`` is when a message arrives,
    so ``contextlib.redirect_stdout`` and test capture work. Each message is
    one ``write`` under a lock, so concurrent sessions never interleave lines.
    The write is synchronous, as DebuggingServer's was: give a slow stream
    (a pipe nobody reads) and the event loop waits on it.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream
        self._lock = threading.Lock()

    async def new_session(self, info: SessionInfo) -> Session:
        return _PrinterSession(info, self)

    def print_message(self, envelope: Envelope, info: SessionInfo | None = None) -> None:
        text = debugging_text(envelope.content, _peer_host(info or envelope.session))
        stream = self.stream if self.stream is not None else sys.stdout
        with self._lock:
            stream.write(text)
            stream.flush()

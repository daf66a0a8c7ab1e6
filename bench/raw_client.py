"""Reference clients: the fastest way to push the benchmark's messages into smtp-sink from Python.

These are not competitors. They show what is physically attainable on this machine, with this
sink, in the same run as the clients under test, so a ratio like "mailwire reaches 70% of the
ceiling" can be read off the table. Each is a bare blocking socket with canned command bytes: the
envelope, the end-of-data dot and every message are joined into their wire form before the clock
starts (the messages have no line starting with a dot, so nothing needs stuffing), and the only
work inside the window is ``sendall`` and counting reply lines (``\\n``), not parsing them. The
replies received are kept and checked after the window: every line must start with 2 or 3, and
there must be exactly as many lines as commands sent.

- ``raw_lockstep_loop``: 4 round trips per message, like smtplib: MAIL, RCPT, DATA and the content
  plus dot, each sent after the reply to the previous one.
- ``raw_pipelined_loop``: 1 round trip per message, the least SMTP allows without CHUNKING: MAIL,
  RCPT and DATA go together; after the 354 the content, the dot and the *next* message's MAIL,
  RCPT and DATA go in one ``sendall``, and the client waits for their four replies (the next
  content may only follow the next 354).
- ``raw_pipelined_threads``: ``raw_pipelined_loop`` on several connections at once, one thread
  each (blocking socket calls release the GIL), each sending its share of the messages.

Each function has the benchmark's loop signature: ``(port, messages, window)``; it sends
``messages[0]`` untimed as a warm-up after EHLO, then all of ``messages`` inside the window.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Sequence
from typing import Final, Protocol

HOST: Final = "127.0.0.1"
MAIL_FROM: Final = "a@example.com"  # the same envelope, host and timeout as client_bench.py
RCPT_TO: Final = "b@example.com"
TIMEOUT: Final = 30.0

ENVELOPE: Final = f"MAIL FROM:<{MAIL_FROM}>\r\nRCPT TO:<{RCPT_TO}>\r\nDATA\r\n".encode("ascii")
MAIL: Final = f"MAIL FROM:<{MAIL_FROM}>\r\n".encode("ascii")
RCPT: Final = f"RCPT TO:<{RCPT_TO}>\r\n".encode("ascii")
DATA: Final = b"DATA\r\n"
DOT: Final = b".\r\n"


class Window(Protocol):
    """What client_bench.Window offers: open() starts the clock, close() stops it."""

    def open(self) -> None: ...

    def close(self) -> None: ...


class _Session:
    """One connection: greeting and EHLO done, replies counted and kept for checking later."""

    def __init__(self, port: int, pipelining: bool = True) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.received: list[bytes] = []
        self.expected = 0  # reply lines asked for so far
        self._greet(pipelining)

    def _greet(self, pipelining: bool) -> None:
        """Greeting and EHLO, parsed properly (outside any window): the multi-line EHLO reply
        ends with a line whose fourth character is a space."""
        data = b""
        while not data.endswith(b"\r\n"):
            data += self._recv()
        if not data.startswith(b"220"):
            raise ConnectionError(f"unexpected greeting {data!r}")
        self.sock.sendall(b"EHLO localhost\r\n")
        data = b""
        while not any(line[3:4] == b" " for line in data.split(b"\r\n")):
            data += self._recv()
        if not data.startswith(b"250"):
            raise ConnectionError(f"EHLO refused: {data!r}")
        if pipelining and b"PIPELINING" not in data:
            raise ConnectionError("the server does not offer PIPELINING")

    def _recv(self) -> bytes:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the server closed the connection")
        return data

    def send(self, data: bytes, replies: int) -> None:
        """Send ``data`` and wait until ``replies`` more reply lines have arrived."""
        self.sock.sendall(data)
        self.expected += replies
        while replies > 0:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            self.received.append(chunk)
            replies -= chunk.count(b"\n")
        if replies < 0:  # more lines than commands: the server said something unasked
            raise ConnectionError(f"{-replies} reply lines more than commands sent")

    def finish(self) -> None:
        """QUIT, close, then check every reply line kept since the greeting."""
        try:
            self.sock.sendall(b"QUIT\r\n")
            self.sock.recv(512)
        finally:
            self.sock.close()
        lines = b"".join(self.received).split(b"\r\n")
        if lines[-1] != b"":
            raise ConnectionError("the last reply line is incomplete")
        lines.pop()
        if len(lines) != self.expected:
            raise ConnectionError(f"{len(lines)} reply lines for {self.expected} commands")
        for line in lines:
            if line[:1] not in (b"2", b"3"):
                raise ConnectionError(f"refused: {line.decode('ascii', 'replace')}")


def _lockstep(session: _Session, message: bytes) -> None:
    session.send(MAIL, 1)
    session.send(RCPT, 1)
    session.send(DATA, 1)
    session.send(message + DOT, 1)


def _check(messages: Sequence[bytes]) -> None:
    for message in messages:
        if message.startswith(b".") or b"\n." in message or not message.endswith(b"\r\n"):
            raise ValueError("the raw clients send messages as they are: no dots to stuff")


def _canned(messages: Sequence[bytes]) -> list[bytes]:
    """Each message's content and dot followed by the next message's envelope (not the last)."""
    _check(messages)
    wire = [message + DOT + ENVELOPE for message in messages]
    wire[-1] = messages[-1] + DOT
    return wire


def _pipelined(session: _Session, wire: Sequence[bytes]) -> None:
    session.send(ENVELOPE, 3)  # 250 MAIL, 250 RCPT, 354 DATA
    for chunk in wire[:-1]:
        session.send(chunk, 4)  # 250 for the dot, then the next 250, 250, 354
    session.send(wire[-1], 1)


def raw_lockstep_loop(port: int, messages: Sequence[bytes], window: Window) -> None:
    _check(messages)
    wire = [message + DOT for message in messages]
    session = _Session(port, pipelining=False)
    _lockstep(session, messages[0])
    window.open()
    for chunk in wire:
        session.send(MAIL, 1)
        session.send(RCPT, 1)
        session.send(DATA, 1)
        session.send(chunk, 1)
    window.close()
    session.finish()


def raw_pipelined_loop(port: int, messages: Sequence[bytes], window: Window) -> None:
    wire = _canned(messages)
    session = _Session(port)
    _lockstep(session, messages[0])
    window.open()
    _pipelined(session, wire)
    window.close()
    session.finish()


def raw_pipelined_threads(
    port: int, messages: Sequence[bytes], window: Window, connections: int
) -> None:
    """``connections`` pipelined sessions, one thread each, message i on connection i % n."""
    shares = [_canned(messages[i::connections]) for i in range(connections)]
    sessions = [_Session(port) for _ in range(connections)]
    for session in sessions:
        _lockstep(session, messages[0])
    errors: list[BaseException] = []
    start = threading.Barrier(connections + 1)

    def run(session: _Session, wire: list[bytes]) -> None:
        start.wait()
        try:
            _pipelined(session, wire)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=pair) for pair in zip(sessions, shares)]
    for thread in threads:
        thread.start()
    window.open()
    start.wait()
    for thread in threads:
        thread.join()
    window.close()
    for session in sessions:
        session.finish()
    if errors:
        raise errors[0]

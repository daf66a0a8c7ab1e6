"""The receive buffer: strict CRLF line extraction in linear time.

Only CRLF ends a line; a bare LF or CR stays inside the line, where the parser
refuses it as a control character. Bytes are appended to one ``bytearray`` and
consumed by advancing an offset; the consumed prefix is dropped only when it is
more than half the buffer, so each byte is copied O(1) times. The position up
to which we already searched for CRLF is remembered, so a long line arriving a
byte at a time is not rescanned from its start on every call.
"""

from __future__ import annotations

import re

__all__ = ["ReceiveBuffer", "LineTooLong"]


class LineTooLong(Exception):
    """No CRLF within the allowed line length."""


class ReceiveBuffer:
    __slots__ = ("_data", "_start", "_scanned")

    def __init__(self) -> None:
        # A bytes object straight from feed() while nothing else is buffered
        # (so a large read is handed on without a copy), else a bytearray.
        self._data: bytes | bytearray = b""
        self._start = 0
        self._scanned = 0  # offset from which to look for the next CRLF

    def __len__(self) -> int:
        return len(self._data) - self._start

    def __bool__(self) -> bool:
        return len(self._data) > self._start

    def feed(self, data: bytes) -> None:
        if self._start >= len(self._data):
            self._data = data  # empty: adopt the read as it is
            self._start = self._scanned = 0
            return
        if isinstance(self._data, bytes):
            self._data = bytearray(self._data[self._start:])
            self._scanned -= self._start
            self._start = 0
        elif self._start * 2 > len(self._data):
            del self._data[: self._start]
            self._scanned -= self._start
            self._start = 0
        self._data += data

    def take_line(self, limit: int) -> bytes | None:
        """The next line without its CRLF, or None if it is not complete yet.

        Raises ``LineTooLong`` when the line (CRLF included) would exceed
        ``limit``; the line is then still in the buffer: call ``skip_line``.
        """
        data, start = self._data, self._start
        scan = self._scanned - 1
        pos = data.find(b"\r\n", scan if scan > start else start, start + limit)
        if pos < 0:
            # Only up to the limit was searched: a CRLF beyond it is still
            # unseen, and skip_line must find it.
            size = len(data)
            if size == start:
                if size:
                    # All read: let the last read (up to 64 KiB) go rather
                    # than keep it for as long as the peer stays idle.
                    self._data = b""
                    self._start = self._scanned = 0
                return None
            self._scanned = min(size, start + limit)
            if size - start >= limit:
                raise LineTooLong(f"line longer than {limit} octets")
            return None
        self._start = self._scanned = pos + 2
        # A slice of bytes is bytes already; one of a bytearray is not.
        return data[start:pos] if type(data) is bytes else bytes(data[start:pos])

    def peek_lines(self, count: int, limit: int) -> list[bytes] | None:
        """The next ``count`` lines without their CRLFs, left unread; None
        unless all of them are complete and each (CRLF included) is within
        ``limit`` octets. For looking ahead at replies before taking them."""
        data, pos = self._data, self._start
        lines = []
        for _ in range(count):
            end = data.find(b"\r\n", pos, pos + limit)
            if end < 0:
                return None
            lines.append(bytes(data[pos:end]))
            pos = end + 2
        return lines

    def fullmatch(self, pattern: re.Pattern[bytes], limit: int, lines: int | None = None) -> bool:
        """Whether the unread bytes, at most ``limit`` of them (and exactly
        ``lines`` CRLF-ended lines, if given), all match ``pattern``; reads
        nothing."""
        data, start = self._data, self._start
        return (
            len(data) - start <= limit and pattern.fullmatch(data, start) is not None
            and (lines is None or data.count(b"\r\n", start) == lines)
        )

    def skip_line(self) -> bool:
        """Drop bytes up to and including the next CRLF; True once it was found."""
        pos = self._data.find(b"\r\n", max(self._scanned - 1, self._start))
        if pos < 0:
            # Keep a trailing CR: it may be the first half of the CRLF.
            keep = 1 if self._data.endswith(b"\r") else 0
            self._start = self._scanned = len(self._data) - keep
            return False
        self._start = self._scanned = pos + 2
        return True

    def take(self, count: int) -> bytes:
        """Up to ``count`` bytes, for BDAT chunks and raw content."""
        end = min(self._start + count, len(self._data))
        data = self._data
        # A whole bytes read comes back as itself; anything else is copied once.
        out = data if self._start == 0 and end == len(data) and isinstance(data, bytes) else bytes(data[self._start:end])
        self._start = end
        self._scanned = max(self._scanned, end)
        return out

    def take_all(self) -> bytes:
        return self.take(len(self))

    def find(self, sub: bytes) -> int:
        """Where ``sub`` starts among the unread bytes, or -1; copies nothing.

        The server's DATA path takes exactly up to the end of the message, so
        a read holding many pipelined messages is not copied once per message.
        """
        pos = self._data.find(sub, self._start)
        return pos - self._start if pos >= 0 else -1

    def unread(self, count: int) -> None:
        """Give back the last ``count`` octets taken; valid until the next ``feed``."""
        if not 0 <= count <= self._start:
            raise ValueError(f"cannot give back {count} octets")
        self._start -= count
        self._scanned = self._start

    def clear(self) -> None:
        """Discard everything unread (what was pipelined before a TLS handshake)."""
        self._data = bytearray()
        self._start = self._scanned = 0

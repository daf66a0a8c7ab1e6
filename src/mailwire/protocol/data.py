"""Message content on the wire: dot-stuffing, end-of-data, BDAT framing.

Both directions work on a stream of chunks so that a 100 MB message is never
held twice, and both use ``bytes.replace``/``bytes.find`` (C loops) rather than
per-line Python code, which is where most SMTP libraries spend their time.

Sending (``DotStuffer``): line endings are normalised to CRLF (a bare CR or LF
would otherwise let the message smuggle an end-of-data past a lax server) and a
period at the start of a line is doubled (RFC 5321 4.5.2).

Receiving (``DataReader``): only ``<CRLF>.<CRLF>`` ends the message. Between
chunks the reader holds back at most four octets, and only a tail that could
begin a pattern (``CRLF.`` to unstuff, ``CRLF.CRLF`` to end), so no pattern
can straddle a cut and a chunk that ends mid-line passes through uncopied.
Bare CR or LF is either refused (the default, RFC 5321 2.3.8) or normalised.
"""

from __future__ import annotations

import re
from enum import Enum

__all__ = ["DotStuffer", "DataReader", "BareLineEndings", "LineLengthCheck", "stuff", "unstuff"]

_CRLF = b"\r\n"
_END = b"\r\n.\r\n"
_BARE = re.compile(rb"\r(?!\n)|(?<!\r)\n")


class BareLineEndings(Enum):
    """What a DataReader does with a CR or LF that is not part of CRLF."""

    REFUSE = "refuse"
    NORMALIZE = "normalize"


def _normalize(data: bytes) -> bytes:
    crs = data.count(b"\r")
    if not crs:
        return data.replace(b"\n", _CRLF)
    if crs == data.count(b"\n") == data.count(_CRLF):
        return data  # already all CRLF: the common case, three C scans
    return _BARE.sub(_CRLF, data)


class DotStuffer:
    """Encode message bytes for the DATA phase, chunk by chunk.

    With ``stuff=False`` it only normalises line endings: what BDAT needs for
    a 7BIT or 8BITMIME body (RFC 3030 3), which has no dot-stuffing but must
    still be CRLF text like one sent with DATA.
    """

    __slots__ = ("_line_start", "_pending_cr", "_empty", "_stuff")

    def __init__(self, stuff: bool = True) -> None:
        self._line_start = True
        self._pending_cr = False
        self._empty = True
        self._stuff = stuff

    def feed(self, chunk: bytes) -> bytes:
        if not chunk:
            return b""
        if self._pending_cr and chunk[:1] == b"\n":
            chunk = chunk[1:]  # the LF of a CRLF split between chunks
            if not chunk:
                self._pending_cr = False
                return b""
        self._pending_cr = chunk[-1:] == b"\r"
        self._empty = False
        out = _normalize(chunk)
        if self._stuff:
            out = out.replace(b"\r\n.", b"\r\n..")
            if self._line_start and out[:1] == b".":
                out = b"." + out
        self._line_start = out[-2:] == _CRLF
        return out

    def end(self) -> bytes:
        """The terminator: ``.CRLF``, preceded by CRLF if the last line lacked one."""
        return b".\r\n" if self._line_start else b"\r\n.\r\n"


def stuff(data: bytes) -> bytes:
    """Whole-message dot-stuffing with the terminator (for small messages)."""
    stuffer = DotStuffer()
    return stuffer.feed(data) + stuffer.end()


class LineLengthCheck:
    """Does a stream of chunks hold a line longer than ``limit`` octets, its
    line ending included (RFC 5321 4.5.3.1.6: 1000)? ``limit=0`` checks nothing.

    A line may end in a later chunk, so the length of the unfinished one is
    carried over. Each step looks for the *last* LF within the next ``limit``
    octets (``rfind``, a C scan) and jumps past it, so a chunk costs a few
    Python steps per ``limit`` octets rather than one per line.
    """

    __slots__ = ("limit", "exceeded", "_partial")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.exceeded = False
        self._partial = 0  # octets of the line not yet ended by an LF

    def feed(self, data: bytes) -> None:
        limit = self.limit
        if not limit or self.exceeded:
            return
        size = len(data)
        start = -self._partial  # where the current line began, relative to data
        # A line of ``limit`` octets has its LF at start + limit - 1 at the latest.
        while start + limit <= size:
            lf = data.rfind(b"\n", start if start > 0 else 0, start + limit)
            if lf < 0:
                self.exceeded = True
                return
            start = lf + 1
        lf = data.rfind(b"\n", start if start > 0 else 0)
        if lf >= 0:
            start = lf + 1
        self._partial = size - start


class DataReader:
    """Decode a DATA body as it arrives; find its end without being fooled.

    ``feed(chunk)`` returns ``(content, rest)``: content bytes ready for the
    application (unstuffed), and ``None`` while the end is not yet seen, or the
    bytes that followed the terminator once it is (they are the next commands).
    """

    __slots__ = ("_buf", "_prefix", "policy", "size", "bare_line_endings", "done", "lines")

    def __init__(self, policy: BareLineEndings = BareLineEndings.REFUSE, text_line: int = 0) -> None:
        # A virtual CRLF before the first byte: "." at offset 0 is a line start.
        self._buf = _CRLF
        self._prefix = True
        self.policy = policy
        self.size = 0
        self.bare_line_endings = False
        self.done = False
        # Lines of the content (after unstuffing) longer than ``text_line``.
        self.lines = LineLengthCheck(text_line)

    def feed(self, chunk: bytes, end_at: int | None = None) -> tuple[bytes, bytes | None]:
        """``end_at``: where the caller already found the first terminator in
        ``chunk`` (-1: it has none), to spare a second scan of the chunk; the
        reader still checks the octets it held back, where one may begin."""
        if self.done:
            raise RuntimeError("DataReader.feed after end of data")
        held = self._buf
        data = held + chunk if held else chunk
        if end_at is None:
            end = data.find(_END)
        else:
            end = data.find(_END, 0, len(held) + 4) if held else -1
            if end < 0 and end_at >= 0:
                end = end_at + len(held)
        if end >= 0:
            body, rest, self._buf = data[: end + 2], data[end + 5:], b""
            self.done = True
        else:
            keep = _held_back(data)
            if keep:
                body, self._buf = data[:-keep], data[-keep:]
            else:
                body, self._buf = data, b""  # nothing to hold: no copy at all
            rest = None
        return self._emit(body), rest

    def _emit(self, body: bytes) -> bytes:
        if self._prefix:
            if len(body) < 2:
                # Not enough bytes yet to drop the virtual CRLF; keep it.
                self._buf = body + self._buf
                return b""
            if b"\r\n." in body:
                body = body.replace(b"\r\n.", b"\r\n")
            body = body[2:]
            self._prefix = False
        elif b"\r\n." in body:  # finding is cheaper than a replace that changes nothing
            body = body.replace(b"\r\n.", b"\r\n")
        if body and not _all_crlf(body):
            self.bare_line_endings = True
            if self.policy is BareLineEndings.NORMALIZE:
                body = _normalize(body)
        self.lines.feed(body)
        self.size += len(body)
        return body


def _all_crlf(data: bytes) -> bool:
    """No CR or LF outside a CRLF pair: as many of each as there are pairs.
    (Counting one octet is a fast C loop; the pair count, slower, runs only
    when the two agree.)"""
    crs = data.count(b"\r")
    return crs == data.count(b"\n") and crs == data.count(_CRLF)


def _held_back(data: bytes) -> int:
    """How many trailing octets could start a pattern the next chunk completes.

    Both patterns (``CRLF.`` to unstuff, ``CRLF.CRLF`` to end) begin with CR,
    so only a tail that is a proper prefix of ``CRLF.CRLF`` is held back; a
    chunk ending anywhere else (the usual case) is handed on whole.
    """
    if data.endswith(b"\r"):
        return 4 if data.endswith(b"\r\n.\r") else 1
    if data.endswith(b"\r\n."):
        return 3
    return 2 if data.endswith(b"\r\n") else 0


def unstuff(wire: bytes, policy: BareLineEndings = BareLineEndings.REFUSE) -> tuple[bytes, bytes | None]:
    """Whole-buffer decoding: ``(content, rest-after-terminator or None)``."""
    reader = DataReader(policy)
    content, rest = reader.feed(wire)
    return content, rest

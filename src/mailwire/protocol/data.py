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
from io import IncrementalNewlineDecoder

__all__ = ["DotStuffer", "DataReader", "BareLineEndings", "LineLengthCheck", "stuff", "unstuff"]

_CRLF = b"\r\n"
_END = b"\r\n.\r\n"
_DOT_LINE = b"\r\n."  # a line starting with a period: stuffed, or the end
# Periods further apart than this on average are hopped over one by one
# (a Python step each) rather than searched for with the whole pattern.
_SPARSE = 256
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

    A chunk costs one search for ``CRLF.``, which finds both the end and any
    stuffed dot (at memory speed where periods are few: ``_find_dot_line``),
    and one pass for the line endings (``_all_crlf``). A chunk that ends
    mid-line with no dot line in it is handed on as it is, uncopied.
    """

    __slots__ = ("_buf", "_skip", "_endings", "policy", "size", "bare_line_endings", "done", "lines", "checking")

    def __init__(self, policy: BareLineEndings = BareLineEndings.REFUSE, text_line: int = 0) -> None:
        # The octets held back (a proper prefix of CRLF.CRLF, see _held_back);
        # at first a virtual CRLF: "." at offset 0 is a line start.
        self._buf = _CRLF
        self._skip = 2  # leading octets of _buf that are not content (the virtual CRLF)
        self._endings = IncrementalNewlineDecoder(None, translate=False)
        self.policy = policy
        self.size = 0
        self.bare_line_endings = False
        self.done = False
        # Whether the content is still checked (line endings, line lengths):
        # a message already refused needs only its end found.
        self.checking = True
        # Lines of the content (after unstuffing) longer than ``text_line``.
        self.lines = LineLengthCheck(text_line)

    def feed(self, chunk: bytes) -> tuple[bytes, bytes | None]:
        if self.done:
            raise RuntimeError("DataReader.feed after end of data")
        held, skip = self._buf, self._skip
        if not held or (skip and held == _CRLF and chunk[:1] != b"."):
            data, skip = chunk, 0  # nothing held that this chunk could complete
        else:
            data = held + chunk  # at most four octets held: copied only then
        line = _find_dot_line(data)  # the end, or a stuffed dot
        if line < 0:
            end = -1
        elif data.startswith(_CRLF, line + 3):
            end = line
        else:
            end = data.find(_END, line)  # past a stuffed dot
        if end >= 0:
            cut, rest = end + 2, data[end + 5:]
            self._buf, self.done = b"", True
        else:
            keep = _held_back(data)
            cut, rest = len(data) - keep, None
            self._buf = data[cut:] if keep else b""
        self._skip = skip - cut if skip > cut else 0
        if 0 <= line and line + 2 < cut:
            # A stuffed dot in the content (an end's dot, or a held-back
            # one, lies at cut or beyond). The virtual CRLF goes after the
            # replace, which needs it before a dot on the first line.
            body = data[:cut].replace(_DOT_LINE, _CRLF)[skip:]
        else:
            # skip past cut takes nothing: written out, as the compiled build
            # (mypyc 2.4) raises SystemError for a bytes slice with start past stop.
            body = (data[skip:cut] if skip < cut else b"") if skip or cut < len(data) else data
        if body and self.checking:
            # Once the message is refused for them, bare line endings need no further look.
            refused = self.bare_line_endings and self.policy is BareLineEndings.REFUSE
            if not refused and not _all_crlf(body, self._endings):
                self.bare_line_endings = True
                if self.policy is BareLineEndings.NORMALIZE:
                    body = _normalize(body)
            self.lines.feed(body)
        self.size += len(body)
        return body, rest


def _all_crlf(data: bytes, endings: IncrementalNewlineDecoder) -> bool:
    """No CR or LF outside a CRLF pair, in one C pass: the newline scanner of
    universal-newlines text files (``io.IncrementalNewlineDecoder``, which
    records the kinds of line ending it meets) over the octets as Latin-1, a
    widening copy at memcpy speed. (Three ``bytes.count`` passes did it
    before, at three times the cost.) ``final``: a CR at the very end counts
    as bare; a reader never passes one whose LF is still to come."""
    endings.reset()
    endings.decode(data.decode("latin-1"), True)
    seen = endings.newlines
    return seen is None or seen == "\r\n"


def _find_dot_line(data: bytes) -> int:
    """Where the first ``CRLF.`` starts, or -1.

    Periods are looked for first, by ``memchr``, hopping from one to the
    next while they are sparse: base64 has none, headers a handful, so a
    chunk of an attachment is crossed at memory speed. Where they are dense
    (prose), one ``bytes.find`` for the whole pattern goes on from there.
    """
    dot = data.find(b".")
    hops = 0
    while dot >= 0:
        if dot >= 2 and data.startswith(_CRLF, dot - 2):
            return dot - 2
        hops += 1
        if hops >= 8 and dot < hops * _SPARSE:
            return data.find(_DOT_LINE, dot - 1)
        dot = data.find(b".", dot + 1)
    return -1


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

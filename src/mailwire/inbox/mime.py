"""A message's MIME structure, scanned as a stream: no part is ever held whole.

The standard library's ``email`` parser builds the whole message in memory,
which for a 50 MB attachment is 50 MB (and more, decoded) just to list it.
So the structure is found here the way a MIME reader must find it anyway
(RFC 2046 5.1.1): a multipart body is split at its boundary delimiter lines
(header blocks are read a line at a time, bodies a block at a time, the
delimiters found with ``bytes.find``), and each part's header block is
handed to the ``email`` package (``BytesHeaderParser``), which does the
parsing of headers it is good at. A part's body is only counted (octets,
and where it sits in the file, so it can be streamed later) unless it is a
text part a reader will see, which is kept up to ``TEXT_CAP`` octets and
decoded (transfer encoding, charset). Memory is bounded by the cap, the
block and line sizes and the part count.

Malformed input has a defined reading, never an exception: a header block
that never ends ends at a delimiter or at the end of the file; a boundary
that never appears leaves the rest of the file in the last part; deeper
than ``MAX_DEPTH`` multiparts or more than ``MAX_PARTS`` parts are read as
opaque bodies; an unreadable header is treated as absent. Part IDs are
IMAP section numbers (RFC 3501 6.4.5): "1", "1.2", "2"; a message that is
not multipart has one part, "1". An attached message (message/rfc822) is
one part: it is not looked into.
"""

from __future__ import annotations

import binascii
import codecs
import email.message
import email.policy
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.header import Header, decode_header, make_header
from email.parser import BytesHeaderParser
from typing import IO, Callable, TypeVar, Union

__all__ = ["Part", "Structure", "scan", "iter_decoded", "header_text", "TEXT_CAP", "MAX_PARTS", "MAX_DEPTH", "safe"]

T = TypeVar("T")

TEXT_CAP = 1 << 20  # octets of a text part kept to show and index
MAX_LINE = 1 << 16  # octets read at once: a longer line is read in pieces
MAX_HEADER = 1 << 18  # octets of a header block parsed; the rest is skipped
MAX_PARTS = 10_000
MAX_DEPTH = 32

# compat32: the classic, string-based header model. The structured one
# (policy.default) parses every header it is asked for with a full RFC 5322
# parser, five times slower, where the structure needs only parameters; the
# summary decodes the few headers it shows itself (summary.py).
_PARSER = BytesHeaderParser(policy=email.policy.compat32)


def safe(fn: Callable[[], T], default: T) -> T:
    """``fn()``, or ``default`` if the email package raises on hostile input
    (its header parsers are lenient, but not everywhere)."""
    try:
        return fn()
    except Exception:
        return default


def parse_headers(block: bytes) -> email.message.Message:
    """A header block as a ``Message`` (headers only, policy compat32)."""
    message = safe(lambda: _PARSER.parsebytes(block), None)
    return message if message is not None else email.message.Message()


@dataclass(slots=True)
class Part:
    """One leaf of the structure (a multipart is not a part: its children are)."""

    part_id: str
    headers: email.message.Message
    content_type: str  # "text/plain", lower case
    disposition: str  # "attachment", "inline" or ""
    filename: str
    content_id: str
    transfer_encoding: str  # "base64", "quoted-printable", ... lower case
    related: bool  # inside a multipart/related: an inline resource
    start: int = 0  # where the body starts in the file
    end: int = 0  # where it ends (its last line ending excluded)
    size: int = 0  # the decoded size (exact for base64, the encoded one otherwise)
    raw_text: bytes | None = None  # the body, up to TEXT_CAP, if it is text to show

    @property
    def is_body_text(self) -> bool:
        """A text a reader sees as the message (not an attachment)."""
        return self.content_type in ("text/plain", "text/html") and self.disposition != "attachment" \
            and not self.filename

    @property
    def is_attachment(self) -> bool:
        return not self.is_body_text and not self.is_inline

    @property
    def is_inline(self) -> bool:
        """Shown within the message (an image its HTML refers to), not attached."""
        if self.is_body_text:
            return False
        return self.disposition == "inline" or (self.related and bool(self.content_id)
                                                 and self.disposition != "attachment")

    def text(self) -> str:
        """The kept body, decoded (transfer encoding, then charset; what
        cannot be decoded is replaced), or "" for a part not kept."""
        if self.raw_text is None:
            return ""
        return decode_text(self.headers, self.raw_text)


@dataclass(slots=True)
class Structure:
    headers: email.message.Message  # the message's own header block
    header_block: bytes
    parts: list[Part]
    size: int  # octets of the file
    truncated: bool = False  # MAX_PARTS or MAX_DEPTH was reached
    # The multiparts that hold the parts: (part ID, content type), outermost
    # first; the message's own is "" (its children are "1", "2" ...).
    multiparts: list[tuple[str, str]] = field(default_factory=list)


def header_text(value: object) -> str:
    """A header's value as text: encoded words (RFC 2047) decoded, octets
    that are not ASCII read as UTF-8 (as SMTPUTF8 sends them), what cannot
    be decoded replaced or left as it was."""
    if isinstance(value, Header):  # compat32's form of a value with 8-bit octets
        no_chunks: list[tuple[bytes | str, str | None]] = []
        chunks = safe(lambda: decode_header(value), no_chunks)
        return "".join(c.decode("utf-8", "replace") if isinstance(c, bytes) else c for c, _ in chunks)
    text = str(value)
    if "=?" in text:
        return safe(lambda: str(make_header(decode_header(text))), text)
    return text


def decode_text(headers: email.message.Message, body: bytes) -> str:
    """A text body decoded: its transfer encoding (base64 and
    quoted-printable leniently, anything else as it is), then its charset
    (an unknown one as UTF-8); what cannot be decoded is replaced."""
    encoding = safe(lambda: str(headers.get("content-transfer-encoding", "")), "").strip().lower()
    if encoding == "base64":
        data = _a2b_base64(b"".join(body.split()))
    elif encoding == "quoted-printable":
        data = binascii.a2b_qp(body)
    else:
        data = body
    charset = safe(lambda: headers.get_content_charset(), None)
    try:
        codecs.lookup(charset or "utf-8")
    except (LookupError, TypeError, ValueError):
        charset = None
    try:
        text = data.decode(charset or "utf-8", "replace")
    except Exception:  # a codec that misbehaves on its own input
        text = data.decode("latin-1")
    return text.replace("\r\n", "\n")


class _Lines:
    """The file, a line (at most MAX_LINE octets) at a time, with its position
    and whether a read starts a line (only such a line can be a delimiter)."""

    def __init__(self, file: IO[bytes]) -> None:
        self.file = file
        self.pos = file.tell()
        self.at_start = True
        self._back: tuple[bytes, int, bool] | None = None

    def read(self) -> tuple[bytes, int, bool]:
        """(line, where it starts, whether it starts a line); b"" at the end."""
        if self._back is not None:
            back, self._back = self._back, None
            return back
        line = self.file.readline(MAX_LINE)
        start, at_start = self.pos, self.at_start
        self.pos += len(line)
        self.at_start = line.endswith(b"\n")
        return line, start, at_start

    def unread(self, item: tuple[bytes, int, bool]) -> None:
        self._back = item

    def pending(self) -> bool:
        return self._back is not None

    def seek(self, pos: int, at_start: bool) -> None:
        """Go on reading from ``pos`` (read by another means)."""
        self.file.seek(pos)
        self.pos, self.at_start, self._back = pos, at_start, None


BLOCK_SIZE = 1 << 18  # octets read at once while skipping a body

# What ended a body: (index of the boundary in the stack, whether it was the
# close delimiter "--b--") or None for the end of the file.
_End = Union[tuple[int, bool], None]


def _dashed_lines(block: bytes, at_start: bool) -> Iterator[int]:
    """Where the lines of ``block`` that start with "--" start (the first
    line only if ``block`` starts a line): the only ones that may be delimiters."""
    if at_start and block.startswith(b"--"):
        yield 0
    found = block.find(b"\n--")
    while found >= 0:
        yield found + 1
        found = block.find(b"\n--", found + 1)


class _Run:
    """What reading one body found: where and how it ended, what was kept,
    and the counts its size is reckoned from."""

    __slots__ = ("found", "where", "ended", "last_eol", "kept", "kept_size", "cap", "chars", "padding")

    def __init__(self, cap: int) -> None:
        self.found: _End = None  # the delimiter that ended it (None: the end of the file)
        self.where = 0  # where that delimiter line (or the end) starts
        self.ended = False
        self.last_eol = 0  # the length of the line ending before ``where``
        self.kept: list[bytes] | None = [] if cap else None  # the body, up to ``cap`` octets
        self.kept_size = 0
        self.cap = cap
        self.chars = 0  # octets other than white space (base64's size)
        self.padding = 0  # "=" at the end of the last of them

    def take(self, data: bytes) -> None:
        """Body octets read: counted, and kept up to the cap."""
        if self.kept is not None and self.kept_size < self.cap:
            piece = data[: self.cap - self.kept_size]
            self.kept.append(piece)
            self.kept_size += len(piece)
        self.count(data)

    def count(self, data: bytes) -> None:
        white = data.count(b"\n") + data.count(b"\r") + data.count(b" ") + data.count(b"\t")
        self.chars += len(data) - white
        stripped = data.rstrip()
        if stripped:
            self.padding = len(stripped) - len(stripped.rstrip(b"="))


def _delimiter(line: bytes, at_start: bool, boundaries: list[bytes]) -> _End:
    if not at_start or not line.startswith(b"--"):
        return None
    rest = line[2:].rstrip(b" \t\r\n")
    for level in range(len(boundaries) - 1, -1, -1):  # the innermost first
        boundary = boundaries[level]
        if rest == boundary:
            return level, False
        if rest == boundary + b"--":
            return level, True
    return None


class _Scanner:
    def __init__(self, file: IO[bytes], text_cap: int, block_size: int) -> None:
        self.lines = _Lines(file)
        self.text_cap = text_cap
        self.block_size = block_size
        self.parts: list[Part] = []
        self.multiparts: list[tuple[str, str]] = []
        self.truncated = False

    def header_block(self, boundaries: list[bytes]) -> tuple[bytes, bool]:
        """Read a header block; (it, whether a delimiter or the end came
        before its empty line: the part then has no body)."""
        kept: list[bytes] = []
        size = 0
        while True:
            item = self.lines.read()
            line, _, at_start = item
            if not line:
                return b"".join(kept), True
            if _delimiter(line, at_start, boundaries) is not None:
                self.lines.unread(item)
                return b"".join(kept), True
            if at_start and line in (b"\r\n", b"\n"):
                return b"".join(kept), False
            if size + len(line) <= MAX_HEADER:
                kept.append(line)
                size += len(line)

    def body(self, boundaries: list[bytes], part: Part | None) -> _End:
        """Read a body up to a delimiter of ``boundaries`` (or the end),
        counting it into ``part`` if given (and keeping it, if it is text
        to show, up to the cap)."""
        start = self.lines.pos
        run = _Run(self.text_cap if part is not None and part.is_body_text else 0)
        self._blocks(boundaries, run)
        if part is not None:
            # The line ending before a delimiter belongs to it (RFC 2046 5.1.1).
            eol = run.last_eol if run.found is not None else 0
            part.start, part.end = start, max(start, run.where - eol)
            if run.kept is not None:
                raw = b"".join(run.kept)
                if run.kept_size < self.text_cap and raw.endswith(b"\n"):
                    raw = raw[: len(raw) - eol]
                part.raw_text = raw
            b64 = part.transfer_encoding == "base64"
            part.size = max(0, run.chars * 3 // 4 - run.padding) if b64 else part.end - part.start
        return run.found

    def _one_line(self, boundaries: list[bytes], run: _Run) -> bool:
        """Read a line of a body; whether it ended the body."""
        line, where, at_start = self.lines.read()
        found = _delimiter(line, at_start, boundaries) if line else None
        if found is not None or not line:
            run.found, run.where, run.ended = found, where, True
            return True
        run.last_eol = 2 if line.endswith(b"\r\n") else 1 if line.endswith(b"\n") else 0
        run.take(line)
        return False

    def _blocks(self, boundaries: list[bytes], run: _Run) -> None:
        """Read a body a block at a time (bytes.find, not a line loop: a
        50 MB attachment is 700,000 lines) up to its delimiter line, and
        leave the reader just after that line."""
        lines = self.lines
        if lines.pending() and self._one_line(boundaries, run):  # a line read ahead
            return
        # (A kept text body is read the same way: the cap bounds what is kept.)
        file, pos, at_start = lines.file, lines.pos, lines.at_start
        while True:
            file.seek(pos)
            block = file.read(self.block_size)
            if len(block) == self.block_size:  # only whole lines: a delimiter is never cut in two
                cut = block.rfind(b"\n") + 1
                if not cut:  # a line longer than a block: read it as a line
                    lines.seek(pos, at_start)
                    if self._one_line(boundaries, run):
                        return
                    pos, at_start = lines.pos, lines.at_start
                    continue
                block = block[:cut]
            if not block:
                run.found, run.where, run.ended = None, pos, True
                lines.seek(pos, at_start)
                return
            for candidate in _dashed_lines(block, at_start):
                end = block.find(b"\n", candidate) + 1 or len(block)
                line = block[candidate:end]
                found = _delimiter(line, True, boundaries)
                if found is not None:
                    before = block[:candidate]
                    run.take(before)
                    if before:
                        run.last_eol = 2 if before.endswith(b"\r\n") else 1
                    run.found, run.where, run.ended = found, pos + candidate, True
                    lines.seek(pos + end, line.endswith(b"\n"))
                    return
            run.take(block)
            run.last_eol = 2 if block.endswith(b"\r\n") else 1 if block.endswith(b"\n") else 0
            pos += len(block)
            at_start = block.endswith(b"\n")

    def skip(self, boundaries: list[bytes]) -> _End:
        return self.body(boundaries, None)

    def head(self, boundaries: list[bytes]) -> tuple[bytes, email.message.Message, bool]:
        """An entity's header block, parsed, and whether it has no body."""
        block, headless = self.header_block(boundaries)
        return block, parse_headers(block), headless

    def entity(self, part_id: str, boundaries: list[bytes], depth: int, related: bool,
               head: tuple[bytes, email.message.Message, bool] | None = None) -> _End:
        """Read one entity (headers, unless given, and body) whose body ends
        at a delimiter of ``boundaries``; what ended it."""
        _, headers, headless = head or self.head(boundaries)
        ctype = safe(headers.get_content_type, "text/plain").lower()
        boundary = safe(lambda: headers.get_boundary(), None) if ctype.startswith("multipart/") else None
        if boundary and not headless and depth < MAX_DEPTH and len(self.parts) < MAX_PARTS:
            nested = related or ctype == "multipart/related"
            self.multiparts.append((part_id, ctype))
            return self.multipart(part_id, boundaries, boundary, depth, nested)
        if boundary or len(self.parts) >= MAX_PARTS:
            self.truncated = True  # too deep or too many: the rest is read as opaque bodies
        if len(self.parts) >= MAX_PARTS:
            return self.skip(boundaries)
        part = self.leaf(part_id or "1", headers, ctype, related)
        if headless:
            part.start = part.end = self.lines.pos
            return self.skip(boundaries)
        return self.body(boundaries, part)

    def multipart(self, part_id: str, outer: list[bytes], boundary: str, depth: int, related: bool) -> _End:
        stack = outer + [boundary.encode("utf-8", "surrogateescape")]
        level = len(stack) - 1
        end = self.skip(stack)  # the preamble
        number = 0
        while end == (level, False):
            number += 1
            end = self.entity(f"{part_id}.{number}" if part_id else str(number), stack, depth + 1, related)
        if end == (level, True):
            end = self.skip(outer)  # the epilogue
        return end

    def leaf(self, part_id: str, headers: email.message.Message, ctype: str, related: bool) -> Part:
        disposition = safe(lambda: headers.get_content_disposition() or "", "").lower()
        filename = safe(lambda: str(headers.get_filename() or ""), "")
        if not filename and ctype not in ("text/plain", "text/html"):
            filename = safe(lambda: str(headers.get_param("name") or ""), "")
        filename = header_text(filename)  # encoded words, as some mailers write names
        cid = safe(lambda: str(headers.get("content-id", "")), "").strip().strip("<>")
        cte = safe(lambda: str(headers.get("content-transfer-encoding", "")), "").strip().lower()
        part = Part(part_id, headers, ctype, disposition, filename, cid, cte, related)
        self.parts.append(part)
        return part


def scan(file: IO[bytes], *, text_cap: int = TEXT_CAP, block_size: int = BLOCK_SIZE) -> Structure:
    """The structure of the message read from ``file`` (from its position
    to its end), keeping at most ``text_cap`` octets of each text part;
    other bodies are skipped reading ``block_size`` octets at a time."""
    scanner = _Scanner(file, text_cap, block_size)
    start = scanner.lines.pos
    head = scanner.head([])
    scanner.entity("", [], 0, False, head)
    return Structure(head[1], head[0], scanner.parts, scanner.lines.pos - start, scanner.truncated,
                     scanner.multiparts)


def iter_decoded(file: IO[bytes], part: Part, chunk: int = 1 << 16) -> Iterator[bytes]:
    """A part's body, decoded from its transfer encoding, a chunk at a time
    (``file`` is the file it was scanned from). Broken base64 or
    quoted-printable is decoded as far as it goes; the rest is skipped."""
    file.seek(part.start)
    remaining = part.end - part.start
    encoding = part.transfer_encoding
    pending = b""
    while remaining > 0:
        data = file.read(min(chunk, remaining))
        if not data:
            return
        remaining -= len(data)
        if encoding == "base64":
            data = pending + b"".join(data.split())
            usable = len(data) - len(data) % 4 if remaining > 0 else len(data)
            data, pending = data[:usable], data[usable:]
            yield _a2b_base64(data)
        elif encoding == "quoted-printable":
            data = pending + data
            cut = data.rfind(b"\n") + 1 if remaining > 0 else len(data)
            data, pending = data[:cut], data[cut:]
            yield binascii.a2b_qp(data)
        else:
            yield data
    if pending:
        yield _a2b_base64(pending) if encoding == "base64" else binascii.a2b_qp(pending)


def _a2b_base64(data: bytes) -> bytes:
    try:
        return binascii.a2b_base64(data)
    except binascii.Error:
        # Bad padding or a stray octet: decode what is whole, drop the rest.
        data = bytes(c for c in data if c in _B64)
        data = data.rstrip(b"=")
        data = data[: len(data) - len(data) % 4]
        try:
            return binascii.a2b_base64(data)
        except binascii.Error:
            return b""


_B64 = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")

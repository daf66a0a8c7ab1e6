"""What a list and a search need of a stored message, read without loading it whole.

A stored file is the catcher's trace lines (``Return-Path:``, then, from the
catcher backend, ``X-Mailwire-Envelope:`` with the envelope recipients and
the AUTH user) followed by the message as received. ``read_summary`` scans
it once (``mime.scan``: structure by boundaries, text parts decoded up to a
cap) and gives a ``Digest``: the ``Summary`` the list shows (the fields of
Mailpit's message summary) and the text the full-text index holds.
``read_message`` gives a ``Message``: the summary with the headers, the
text and HTML bodies and the attachment list that a message view shows.

Every field has a defined value for every input: a header the ``email``
package cannot parse is read as plain text, or as absent; no exception
leaves this module for anything a file may contain (I/O errors excepted).

A message's ID is derived from its Maildir unique name (the part before
``:``, which stays the same when the file moves from new/ to cur/ or gets
flags): 22 URL-safe characters of a BLAKE2b digest. Derived, not drawn at
random and stored, so it survives a rebuild of the index, every process
computes the same one without asking the index, and it is opaque and short
in a URL, as Mailpit's IDs are.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from email.header import Header
from email.message import Message as _Parsed
from html.parser import HTMLParser
from typing import IO

from .mime import TEXT_CAP, Part, Structure, header_text, safe, scan

__all__ = [
    "Address", "Summary", "Digest", "Message", "Attachment", "read_summary", "read_message",
    "message_id_of", "unique_name", "TRACE_HEADER", "envelope_trace", "SNIPPET_LENGTH",
]

SNIPPET_LENGTH = 250
TRACE_HEADER = "X-Mailwire-Envelope"  # the envelope, written by the catcher after Return-Path


@dataclass(frozen=True, slots=True)
class Address:
    name: str
    address: str


@dataclass(frozen=True, slots=True)
class Summary:
    """A message as the list shows it (Mailpit's MessageSummary)."""

    id: str
    name: str  # the Maildir unique name
    message_id: str
    from_: Address | None
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    bcc: tuple[Address, ...]  # envelope recipients in neither To nor Cc (or the Bcc header)
    reply_to: tuple[Address, ...]
    subject: str
    date: datetime | None  # the Date header, if one could be read
    created: datetime  # when it was received
    size: int
    attachments: int
    inline: int
    snippet: str
    read: bool = False
    tags: tuple[str, ...] = ()
    username: str = ""  # who authenticated (AUTH), if anyone
    return_path: str = ""
    recipients: tuple[str, ...] = ()  # the envelope's, where known

    @property
    def sent(self) -> datetime:
        """Mailpit's Date: the Date header if set, else when it was received."""
        return self.date or self.created


@dataclass(frozen=True, slots=True)
class Attachment:
    part_id: str
    filename: str
    content_type: str
    content_id: str
    size: int


@dataclass(frozen=True, slots=True)
class Node:
    """One entity of the MIME structure, in the order of the message: a
    multipart (``kind`` "multipart") or a part ("body", "inline" or
    "attachment"); ``depth`` 0 is the message itself."""

    part_id: str
    content_type: str
    kind: str
    depth: int
    filename: str = ""
    size: int = 0


@dataclass(frozen=True, slots=True)
class Message:
    """A message as its view shows it: the summary and what is in it."""

    summary: Summary
    headers: tuple[tuple[str, str], ...]  # in order, decoded where possible
    text: str
    html: str
    attachments: tuple[Attachment, ...]
    inline: tuple[Attachment, ...]
    truncated: bool  # a body over the cap, or a structure over the limits
    structure: tuple[Node, ...] = ()


@dataclass(frozen=True, slots=True)
class Digest:
    """What the index keeps of a message: its summary and its searchable text."""

    summary: Summary
    search_text: str
    mailboxes: tuple[str, ...] = field(default=())


def unique_name(filename: str) -> str:
    """The Maildir unique name of a file in new/ or cur/ (its info dropped)."""
    return filename.split(":", 1)[0]


def message_id_of(name: str) -> str:
    """The stable, opaque ID of the message with this unique name."""
    digest = hashlib.blake2b(name.encode("utf-8", "surrogateescape"), digest_size=16).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii")[:22]


def envelope_trace(recipients: Iterable[str], username: str | None, eol: bytes) -> bytes:
    """The trace line the catcher writes after Return-Path, folded between
    recipients (JSON allows the folding white space; ASCII only)."""
    rcpt = [r.replace("\r", "").replace("\n", "") for r in recipients]
    body = json.dumps({"rcpt": rcpt, "user": username}, separators=(",", ":"))
    body = body.replace('","', '",' + eol.decode("ascii") + ' "')  # fold between items
    return f"{TRACE_HEADER}: {body}".encode("ascii") + eol


def _trace(block: bytes) -> tuple[str, tuple[str, ...], str]:
    """(Return-Path, envelope recipients, AUTH user) from the first two
    logical lines of the stored file's header block, where the store and
    the catcher write them; a trace header anywhere else is the sender's
    and is ignored."""
    logical: list[bytes] = []
    for line in block.splitlines():
        if line[:1] in (b" ", b"\t") and logical:
            logical[-1] += line
        elif len(logical) == 2:
            break
        else:
            logical.append(line)
    return_path, user = "", ""
    rcpt: tuple[str, ...] = ()
    if logical and logical[0][:12].lower() == b"return-path:":
        return_path = logical[0][12:].decode("utf-8", "replace").strip().strip("<>")
        if len(logical) > 1 and logical[1].lower().startswith(TRACE_HEADER.lower().encode() + b":"):
            value = logical[1][len(TRACE_HEADER) + 1:]
            data = safe(lambda: json.loads(value), None)
            if isinstance(data, dict):
                found = data.get("rcpt")
                if isinstance(found, list):
                    rcpt = tuple(r for r in found if isinstance(r, str))
                found_user = data.get("user")
                user = found_user if isinstance(found_user, str) else ""
    return return_path, rcpt, user


def _text(headers: _Parsed, name: str) -> str:
    value = safe(lambda: headers.get(name), None)
    return "" if value is None else " ".join(header_text(value).split())


# One address, bare or in angle brackets after a plain name: most mail. The
# classic parser (getaddresses) takes the rest; this spares it the common case.
_SIMPLE = re.compile(r'\s*([^"<>,;:()\\@]*?)\s*<?([^\s"<>,;:()\\@]+@[^\s"<>,;:()\\@]+)>?\s*')


def _addresses(headers: _Parsed, name: str) -> tuple[Address, ...]:
    no_values: list[object] = []
    found: list[object] = safe(lambda: list(headers.get_all(name, [])), no_values)
    if not found:
        return ()
    values = [header_text(v) if isinstance(v, Header) else str(v) for v in found]
    if len(values) == 1:
        value = values[0]
        simple = _SIMPLE.fullmatch(value)
        # Brackets unbalanced ("a@b>"): the classic parser's to judge.
        if simple is not None and ("<" in value) == (">" in value) and (not simple.group(1) or "<" in value):
            return (Address(_clean(header_text(simple.group(1))), simple.group(2)),)
    no_pairs: list[tuple[str, str]] = []
    pairs = safe(lambda: email.utils.getaddresses(values), no_pairs)
    found_addresses = (Address(_clean(header_text(n)), _clean(a)) for n, a in pairs)
    return tuple(a for a in found_addresses if a.name or a.address)


def _clean(value: str) -> str:
    return " ".join(value.encode("utf-8", "replace").decode("utf-8").split())


def _date(headers: _Parsed) -> datetime | None:
    raw = _text(headers, "date")
    if not raw:
        return None
    when = safe(lambda: email.utils.parsedate_to_datetime(raw), None)
    if when is None:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)


class _HTMLText(HTMLParser):
    """The text an HTML body shows (for the snippet and the index)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.pieces: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style", "head", "title"):
            self._skip += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "head", "title") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.pieces.append(data)


def html_text(html: str) -> str:
    def run() -> str:
        parser = _HTMLText()
        parser.feed(html)
        parser.close()
        return " ".join(" ".join(parser.pieces).split())

    return safe(run, "")


def _bodies(parts: list[Part]) -> tuple[str, str, bool]:
    """The first text/plain and the first text/html body, and whether one was cut."""
    text = html = None
    cut = False
    for part in parts:
        if not part.is_body_text:
            continue
        if part.content_type == "text/plain" and not text:
            text = part.text()
        elif part.content_type == "text/html" and not html:
            html = part.text()
        else:
            continue
        cut = cut or (part.raw_text is not None and len(part.raw_text) >= TEXT_CAP)
    return text or "", html or "", cut


@dataclass(slots=True)
class _Read:
    summary: Summary
    structure: Structure
    text: str
    html: str
    cut: bool


def _read(file: IO[bytes], path: str) -> _Read:
    name_with_info = os.path.basename(path)
    name = unique_name(name_with_info)
    info = name_with_info.partition(":2,")[2]
    stat = os.fstat(file.fileno())
    structure = scan(file)
    headers = structure.headers
    return_path, rcpt, user = _trace(structure.header_block)
    text, html, cut = _bodies(structure.parts)
    to, cc = _addresses(headers, "to"), _addresses(headers, "cc")
    if rcpt:
        shown = {a.address.lower() for a in to + cc}
        bcc = tuple(Address("", r) for r in rcpt if r.lower() not in shown)
    else:
        bcc = _addresses(headers, "bcc")
    froms = _addresses(headers, "from")
    tags = tuple(t for t in (" ".join(t.split()) for t in _text(headers, "x-tags").split(",")) if t)
    snippet = " ".join((text or html_text(html)).split())[:SNIPPET_LENGTH]
    summary = Summary(
        id=message_id_of(name), name=name, message_id=_text(headers, "message-id").strip("<>"),
        from_=froms[0] if froms else None, to=to, cc=cc, bcc=bcc, reply_to=_addresses(headers, "reply-to"),
        subject=_text(headers, "subject"), date=_date(headers),
        created=datetime.fromtimestamp(stat.st_mtime, timezone.utc), size=structure.size,
        attachments=sum(p.is_attachment for p in structure.parts),
        inline=sum(p.is_inline for p in structure.parts), snippet=snippet, read="S" in info,
        tags=tags, username=user, return_path=return_path, recipients=rcpt,
    )
    return _Read(summary, structure, text, html, cut)


def read_summary(path: str) -> Digest:
    """The digest of the stored file at ``path`` (named by the Maildir
    convention: its unique name, then ``:2,`` and its flags, if any)."""
    with open(path, "rb") as file:
        read = _read(file, path)
    s = read.summary
    words = [s.subject, s.message_id, s.username, s.return_path, *s.recipients, *s.tags]
    words += [f"{a.name} {a.address}" for a in (s.from_,) + s.to + s.cc + s.bcc + s.reply_to if a is not None]
    words += [p.filename for p in read.structure.parts if p.filename]
    words += [read.text, html_text(read.html)]
    mailboxes = {r.lower() for r in s.recipients} or {a.address.lower() for a in s.to + s.cc + s.bcc}
    if s.username:
        mailboxes.add(s.username.lower())
    return Digest(s, "\n".join(w for w in words if w), tuple(sorted(m for m in mailboxes if m)))


def _depth(part_id: str) -> int:
    return part_id.count(".") + 1 if part_id else 0


def structure_of(structure: Structure) -> tuple[Node, ...]:
    """The MIME tree of a scanned message as nodes in the message's order
    (multiparts before their parts: sorted by the numbers of the part IDs)."""
    nodes = [Node(i, t, "multipart", _depth(i)) for i, t in structure.multiparts]
    for p in structure.parts:
        kind = "inline" if p.is_inline else "attachment" if p.is_attachment else "body"
        # A message that is not multipart is its own part "1", at depth 0.
        depth = 0 if not structure.multiparts else _depth(p.part_id)
        nodes.append(Node(p.part_id, p.content_type, kind, depth, p.filename, p.size))
    return tuple(sorted(nodes, key=lambda n: [int(x) for x in n.part_id.split(".") if x.isdigit()]))


def _attachment(part: Part) -> Attachment:
    return Attachment(part.part_id, part.filename, part.content_type, part.content_id, part.size)


def _header_list(headers: _Parsed) -> tuple[tuple[str, str], ...]:
    no_items: list[tuple[str, object]] = []
    items: list[tuple[str, object]] = safe(lambda: list(headers.items()), no_items)
    return tuple((k, " ".join(header_text(v).split())) for k, v in items)


def read_message(file: IO[bytes], path: str, *, read: bool | None = None) -> tuple[Message, Structure]:
    """The message view of the stored file open as ``file`` (``path``: its
    name), and its structure (to stream a part from the same file).
    ``read`` overrides the read flag of the name."""
    got = _read(file, path)
    summary = got.summary if read is None else replace(got.summary, read=read)
    parts = got.structure.parts
    message = Message(
        summary=summary, headers=_header_list(got.structure.headers), text=got.text, html=got.html,
        attachments=tuple(_attachment(p) for p in parts if p.is_attachment),
        inline=tuple(_attachment(p) for p in parts if p.is_inline),
        truncated=got.cut or got.structure.truncated, structure=structure_of(got.structure),
    )
    return message, got.structure


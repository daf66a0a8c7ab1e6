"""What sendmail does to the message it reads: the rules, apart from the command.

A program that calls ``sendmail`` writes a message on its stdin, often not a
finished one: lines end in LF, Date and Message-ID are missing, sometimes the
header section is missing altogether (``echo hi | sendmail root``), and with
``-t`` the recipients are in its To, Cc and Bcc fields. Postfix's and
sendmail's own rules, kept here:

* The input ends at end of file or, unless ``-i``/``-oi``, at a line holding
  only ``.`` (CR before its LF allowed); lines that start with a dot are not
  otherwise touched (no unstuffing: this is not SMTP).
* The header section is the leading lines that are fields (``Name:``) or
  continue one; it ends at the empty line, or at the first line that is
  neither (then the body starts there, and the empty line is added). An mbox
  ``From `` line in front is dropped. It may not be larger than
  ``HEAD_LIMIT``.
* ``-t``: the recipients are those of To, Cc and Bcc (of their ``Resent-``
  forms when the message has Resent- fields), added to those given as
  arguments (as Postfix does; sendmail 8 would leave those out).
* Bcc and Resent-Bcc fields are removed, always: blind recipients are in the
  envelope and never on the wire (as ``mailwire send`` does).
* A missing Date, Message-ID or From is added (From names the envelope sender,
  with the ``-F`` full name).

``Input`` reads stdin this way: the header section first (``head``, line by
line), then the body as the pieces that arrive (``pieces``), never held whole,
so a message of any size streams through; line endings are made CRLF by the
client as it sends. ``complete`` and ``recipients`` apply the header rules.
"""

from __future__ import annotations

import email.policy
import email.utils
import getpass
import re
import socket
from collections.abc import Iterator
from email.parser import BytesHeaderParser
from typing import BinaryIO

from ..errors import LocalProtocolError
from ..protocol.grammar import check_address

__all__ = [
    "FIELD", "HEAD_LIMIT", "Input", "InputError", "DataError", "complete", "recipients", "without_bcc",
    "local_sender", "qualify",
]

HEAD_LIMIT = 1 << 20  # octets of header section; RFC 5322 fields are 998 octets a line
CHUNK = 1 << 16  # the most read from stdin at once

FIELD = re.compile(rb"[!-9;-~]+[ \t]*:")  # a header field's start: its name and the colon
_LONE_DOT_FIRST = re.compile(rb"\.\r?\n")  # a lone-dot line at the start of what is read
_LONE_DOT = re.compile(rb"\n\.\r?\n")  # one after a line
_EMPTY_GROUP = re.compile(r"\s*[^:,@]*:\s*;\s*")  # undisclosed-recipients:;


class InputError(Exception):
    """Stdin could not be read (``cause``: the OSError)."""


class DataError(Exception):
    """The message read cannot be sent as it is (EX_DATAERR)."""


class Input:
    """A message on ``stream`` as sendmail reads it (see the module doc).

    ``dot_ends``: a lone-dot line ends the message (sendmail without
    ``-i``). ``head()`` first, then ``pieces()``; ``ended`` says whether the
    input is over (end of file or the lone dot).
    """

    def __init__(self, stream: BinaryIO, *, dot_ends: bool) -> None:
        self._stream = stream
        self._dot_ends = dot_ends
        self._bol = True  # at the start of a line
        self._held = b""  # "." or ".\r" at a line start: the lone dot, if a newline follows
        self.ended = False
        self.octets = 0  # read so far

    def _io(self, read: str, size: int) -> bytes:
        try:
            data: bytes = getattr(self._stream, read)(size)
        except OSError as err:
            raise InputError(f"cannot read the message on stdin: {err.strerror or err}") from err
        self.octets += len(data)
        return data

    def head(self) -> tuple[list[bytes], bytes]:
        """The header section's lines (without line endings, mbox ``From``
        line dropped) and what was read of the body: the line that ended the
        header section by not being a field, or nothing (DataError if the
        section is over HEAD_LIMIT)."""
        lines: list[bytes] = []
        size, first = 0, True
        while True:
            line = self._io("readline", HEAD_LIMIT + 1)
            text = line[:-2] if line.endswith(b"\r\n") else line[:-1] if line.endswith(b"\n") else line
            if not line or (self._dot_ends and text == b"."):
                self.ended = True
                return lines, b""
            if not text:
                return lines, b""  # the empty line ending it
            if text[:1] in (b" ", b"\t") and lines or FIELD.match(text):
                lines.append(text)
            elif not (first and text.startswith(b"From ")):  # an mbox "From " line in front is dropped
                self._bol = line.endswith(b"\n")
                return lines, line
            first = False
            size += len(line)
            if size > HEAD_LIMIT:
                raise DataError(f"the header section is over {HEAD_LIMIT} octets; is this a message?")

    def pieces(self) -> Iterator[bytes]:
        """The rest of the message, piece by piece as read (a lone-dot line
        and what follows it left out unless ``-i``)."""
        read = "read1" if hasattr(self._stream, "read1") else "read"
        while not self.ended:
            chunk = self._io(read, CHUNK)
            if not chunk:
                self.ended = True  # a "." held at the end of file is a lone dot too
                return
            if not self._dot_ends:
                yield chunk
                continue
            out = self._scan(chunk)
            if out:
                yield out

    def _scan(self, chunk: bytes) -> bytes:
        """What of ``chunk`` belongs to the message; a lone dot ends it."""
        text, self._held = self._held + chunk, b""
        if self._bol and _LONE_DOT_FIRST.match(text):
            self.ended = True
            return b""
        found = _LONE_DOT.search(text)
        if found:
            self.ended = True
            return text[: found.start() + 1]
        newline = text.rfind(b"\n")
        tail = text[newline + 1:]
        if (newline >= 0 or self._bol) and tail in (b".", b".\r"):
            self._held, self._bol = tail, True  # decided by what comes next
            return text[: newline + 1]
        self._bol = text.endswith(b"\n")
        return text


def without_bcc(content: bytes, end: int) -> bytes:
    """``content`` less its Bcc and Resent-Bcc fields (the header block ends at ``end``)."""
    head = content[:end] if end >= 0 else content
    if b"bcc:" not in head.lower():
        return content
    kept, skipping = [], False
    for line in head.split(b"\r\n"):
        if not line[:1] in (b" ", b"\t"):
            skipping = line.lower().startswith((b"bcc:", b"resent-bcc:"))
        if not skipping:
            kept.append(line)
    return b"\r\n".join(kept) + (content[end:] if end >= 0 else b"")


def recipients(lines: list[bytes]) -> list[str]:
    """The addresses of To, Cc and Bcc, or of Resent-To, -Cc and -Bcc if
    the message has Resent- fields, for ``-t``; an empty group
    (``undisclosed-recipients:;``) has none. DataError for what is not an
    address (the email package would mend it into one)."""
    head = BytesHeaderParser(policy=email.policy.compat32).parsebytes(b"\r\n".join(lines) + b"\r\n\r\n")
    prefix = "Resent-" if any(name.lower().startswith("resent-") for name in head.keys()) else ""
    found = []
    for name in (prefix + "To", prefix + "Cc", prefix + "Bcc"):
        for field in head.get_all(name, []):
            value = str(field)
            if _EMPTY_GROUP.fullmatch(value):
                continue
            for _, address in email.utils.getaddresses([value]):
                if not address or address not in value:
                    raise DataError(f"{name} field {' '.join(value.split())!r}: not a list of addresses")
                try:
                    found.append(check_address(address, f"an address in the {name} field"))
                except LocalProtocolError as err:
                    raise DataError(str(err)) from None
    return found


def _names(lines: list[bytes]) -> set[bytes]:
    return {line.split(b":", 1)[0].strip().lower() for line in lines if line[:1] not in (b" ", b"\t")}


def complete(lines: list[bytes], *, sender: str, full_name: str | None, now: float | None = None) -> bytes:
    """The header section as it is sent, with the empty line that ends it:
    Bcc removed, a missing Date, Message-ID and From added (after the
    fields the message has)."""
    present = _names(lines)
    added = []
    if b"from" not in present:
        name = " ".join((full_name or "").split())  # a line break in it would start a header field of its own
        added.append("From: " + email.utils.formataddr((name, sender or local_sender()), "utf-8"))
    if b"date" not in present:
        added.append("Date: " + email.utils.formatdate(now, localtime=True))
    if b"message-id" not in present:
        # The sender's domain, not make_msgid's default getfqdn(), which can stall on DNS.
        domain = (sender or local_sender()).rpartition("@")[2] or "mailwire.invalid"
        added.append("Message-ID: " + email.utils.make_msgid(domain=domain))
    head = b"\r\n".join([*lines, *(field.encode("utf-8") for field in added)]) + b"\r\n"
    return without_bcc(head + b"\r\n", len(head) - 2)


def _word(text: str) -> str:
    """``text`` as an address part: what a mail system would refuse becomes ``-``."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", text) or "-"


def local_host() -> str:
    return _word(socket.gethostname() or "localhost")


def local_sender() -> str:
    """The sender sendmail gives a message when not told (``-f``): the user
    running it at this host."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name, no passwd entry (a container's uid)
        user = "nobody"
    return f"{_word(user)}@{local_host()}"


def qualify(address: str) -> str:
    """A bare local name (cron's ``root``) at this host, as sendmail
    qualifies it; the null sender and full addresses as they are."""
    return address if not address or "@" in address else f"{address}@{local_host()}"


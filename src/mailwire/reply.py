"""SMTP replies as values.

A reply is a three-digit code, an optional RFC 3463 enhanced status code, and
one or more lines of text. Both roles use this one type: the client core parses
replies into it, the server core formats it onto the wire, and backends refuse
things by raising an error that carries one. The text lines are kept exactly as
received (enhanced code included) so that the stdlib adapter can hand callers
the same bytes ``smtplib`` would; ``text`` gives them without the code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["EnhancedStatus", "Reply"]

# A reply line as text: code, then a space or hyphen and the text.
_TEXT_LINE = re.compile(r"([245][0-9][0-9])(?:[ -](.*))?")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
# RFC 3463 2: class "." subject "." detail; class is 2, 4 or 5, subject 1-3
# digits, detail 1-3 digits.
_ENHANCED = re.compile(r"([245])\.([0-9]{1,3})\.([0-9]{1,3})(?: |$)")


@dataclass(frozen=True, slots=True)
class EnhancedStatus:
    """An RFC 3463 enhanced status code such as ``5.1.1``."""

    klass: int
    subject: int
    detail: int

    def __post_init__(self) -> None:
        # RFC 3463 2: a 3xx reply has no enhanced code; nothing could parse one.
        if self.klass not in (2, 4, 5) or not (0 <= self.subject <= 999 and 0 <= self.detail <= 999):
            raise ValueError(f"not an RFC 3463 status code: {self.klass}.{self.subject}.{self.detail}")

    @classmethod
    def parse(cls, text: str) -> "EnhancedStatus":
        match = _ENHANCED.match(text)
        if match is None:
            raise ValueError(f"not an enhanced status code: {text!r}")
        return cls(int(match[1]), int(match[2]), int(match[3]))

    def __str__(self) -> str:
        return f"{self.klass}.{self.subject}.{self.detail}"


def _split_enhanced(line: str, code: int) -> tuple[EnhancedStatus | None, str]:
    match = _ENHANCED.match(line)
    if match is None or int(match[1]) != code // 100:
        return None, line
    status = EnhancedStatus(int(match[1]), int(match[2]), int(match[3]))
    return status, line[match.end():]


@dataclass(frozen=True, slots=True)
class Reply:
    """One complete SMTP reply.

    ``lines`` hold the text after ``ddd-``/``ddd `` exactly as on the wire.
    The enhanced status code is derived from the first line when asked for,
    not stored: most replies a client reads are only ever checked for their
    code, and parsing every one would cost more than the rest of the reply.
    """

    code: int
    lines: tuple[str, ...] = ("",)
    _wire: bytes | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def enhanced(self) -> EnhancedStatus | None:
        """The RFC 3463 code of the first line, if it has one of this class."""
        return _split_enhanced(self.lines[0], self.code)[0] if self.lines else None

    @classmethod
    def of(cls, code: int, enhanced: str | EnhancedStatus | None, text: str = "") -> "Reply":
        """Build a reply, putting the enhanced code on every line.

        Text containing CR or LF becomes several reply lines: a backend's
        message can never forge an extra reply on the wire.
        """
        if not 200 <= code <= 599:
            raise ValueError(f"reply code out of range: {code}")
        status = EnhancedStatus.parse(enhanced) if isinstance(enhanced, str) else enhanced
        if status is not None and status.klass != code // 100:
            raise ValueError(f"enhanced code {status} does not match reply code {code}")
        pieces = [_printable(p) for p in _LINE_BREAK.split(text)]
        if status is not None:
            pieces = [f"{status} {p}".rstrip(" ") if p else str(status) for p in pieces]
        return cls(code, tuple(pieces))

    @classmethod
    def parse(cls, text: str) -> "Reply":
        """A reply written as text (``"550 5.1.1 No such user"``; lines joined
        by line breaks for a multi-line one), as programs hand replies over.

        Every line must start with the same 2xx/4xx/5xx code; ValueError
        otherwise. The wire's streaming parser is the client core's.
        """
        code: int | None = None
        texts = []
        for line in _LINE_BREAK.split(text.rstrip("\r\n")):
            match = _TEXT_LINE.fullmatch(line)
            if match is None or (code is not None and int(match[1]) != code):
                raise ValueError(f"not an SMTP reply: {text!r}")
            code = int(match[1])
            texts.append(match[2] or "")
        assert code is not None
        return cls.of(code, None, "\n".join(texts))

    @classmethod
    def from_lines(cls, code: int, lines: tuple[str, ...]) -> "Reply":
        return cls(code, lines or ("",))

    @property
    def text(self) -> str:
        """The reply text without enhanced codes, lines joined by newlines."""
        out = []
        for line in self.lines:
            status, rest = _split_enhanced(line, self.code)
            out.append(rest if status is not None else line)
        return "\n".join(out)

    @property
    def message(self) -> bytes:
        """What ``smtplib`` returns as the reply text: raw lines joined by LF."""
        return "\n".join(self.lines).encode("utf-8", "surrogateescape")

    @property
    def is_positive(self) -> bool:
        return 200 <= self.code < 400

    @property
    def is_intermediate(self) -> bool:
        return 300 <= self.code < 400

    @property
    def is_transient(self) -> bool:
        return 400 <= self.code < 500

    @property
    def is_permanent(self) -> bool:
        return 500 <= self.code < 600

    def to_bytes(self) -> bytes:
        if len(self.lines) == 1:
            return f"{self.code} {self.lines[0]}\r\n".encode("utf-8", "surrogateescape")
        last = len(self.lines) - 1
        out = []
        for i, line in enumerate(self.lines):
            sep = " " if i == last else "-"
            out.append(f"{self.code}{sep}{line}\r\n")
        return "".join(out).encode("utf-8", "surrogateescape")

    @property
    def wire(self) -> bytes:
        """What a server sends: ``to_bytes()``, except that a CR or LF inside
        a line starts a line of its own, so the reply can never be read as
        two. (``Reply.of`` splits such text already; a ``Reply`` built
        directly, say by a backend, may not.) Computed once per reply: a
        server sends the same few replies again and again.
        """
        data = self._wire
        if data is None:
            data = self.to_bytes()
            count = len(self.lines)
            if data.count(b"\n") != count or data.count(b"\r") != count:
                lines = tuple(piece for line in self.lines for piece in _LINE_BREAK.split(line))
                data = Reply(self.code, lines).to_bytes()
            object.__setattr__(self, "_wire", data)
        return data

    def __str__(self) -> str:
        """The reply as a person reads it, on one line: code, enhanced code,
        text (``550 5.1.1 No such user``). Every message mailwire builds
        from a reply (exceptions, logs, the CLI) is this, so the enhanced
        code, often the only precise part of a refusal, is never lost. One
        line, and control characters and undecodable bytes shown as ``?``,
        because the text is the server's: it must not break a log line or
        drive a terminal.
        """
        status = self.enhanced
        head = f"{self.code} {status}" if status is not None else str(self.code)
        text = " ".join(line for line in self.text.split("\n") if line)
        return _displayable(f"{head} {text}".rstrip())


# C0 controls but tab, and DEL, each to "?" (str.translate: one C pass, where
# a loop over the characters took seconds on a 4 MB reply text).
_UNPRINTABLE = {**{code: "?" for code in range(0x20) if code != 0x09}, 0x7F: "?"}


def _printable(text: str) -> str:
    """Replace C0 controls (other than tab) so reply text stays one line."""
    return text.translate(_UNPRINTABLE)


def _displayable(text: str) -> str:
    """``_printable``, and bytes that were not UTF-8 (kept as surrogates by
    the parser) as ``?``: printing one would raise UnicodeEncodeError."""
    if text.isprintable():
        return text
    return _printable(text).encode("utf-8", "replace").decode("utf-8")


# -- The standard replies, by name -------------------------------------------
# What a server says when nothing more specific is called for. Drivers use
# these names instead of writing codes; each carries its RFC 3463 code.

OK = Reply.of(250, "2.0.0", "OK")
SENDER_OK = Reply.of(250, "2.1.0", "Sender OK")
RECIPIENT_OK = Reply.of(250, "2.1.5", "Recipient OK")
MESSAGE_ACCEPTED = Reply.of(250, "2.0.0", "Message accepted for delivery")
# RFC 3463 has no 3.x.x codes: 354 carries none.
START_DATA = Reply(354, ("End data with <CR><LF>.<CR><LF>",))
READY_FOR_TLS = Reply.of(220, "2.0.0", "Ready to start TLS")
BYE = Reply.of(221, "2.0.0", "Bye")
AUTH_OK = Reply.of(235, "2.7.0", "Authentication successful")
CANNOT_VRFY = Reply.of(252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery")
HELP = Reply.of(214, "2.0.0", "See https://www.rfc-editor.org/rfc/rfc5321")
LOCAL_ERROR = Reply.of(451, "4.3.0", "Error processing the message, try again later")
TLS_NOT_AVAILABLE = Reply.of(454, "4.7.0", "TLS not available")
IDLE_TIMEOUT = Reply.of(421, "4.4.2", "Timeout: closing the connection")
TOO_MANY_CONNECTIONS = Reply.of(421, "4.7.0", "Too many connections, try again later")
TOO_MANY_FROM_CLIENT = Reply.of(421, "4.7.0", "Too many connections from your address, try again later")
TOO_MANY_AUTH_FAILURES = Reply.of(421, "4.7.0", "Too many failed authentications from your address, try again later")
SHUTTING_DOWN = Reply.of(421, "4.3.2", "Service shutting down")
SESSION_UNAVAILABLE = Reply.of(421, "4.3.0", "Service not available, try again later")
NOT_IMPLEMENTED = Reply.of(502, "5.5.1", "Command not implemented")
AUTH_CANCELLED = Reply.of(501, "5.0.0", "Authentication cancelled")
UNKNOWN_MECHANISM = Reply.of(504, "5.5.4", "Unrecognized authentication mechanism")
AUTH_FAILED = Reply.of(535, "5.7.8", "Authentication credentials invalid")
ENCRYPTION_REQUIRED = Reply.of(538, "5.7.11", "Encryption required for requested authentication mechanism")
AUTH_REQUIRED = Reply.of(530, "5.7.0", "Authentication required")  # RFC 4954 6
NEEDS_SMTPUTF8 = Reply.of(553, "5.6.7", "Non-ASCII address needs SMTPUTF8 (RFC 6531)")
REQUIRETLS_NEEDS_TLS = Reply.of(530, "5.7.10", "REQUIRETLS needs a TLS session (RFC 8689)")
PARAMETER_NOT_IMPLEMENTED = Reply.of(555, "5.5.4", "Parameter not recognized or not implemented")


def greeting(hostname: str, text: str) -> Reply:
    """The server's opening 220 (RFC 5321 4.2: the domain comes first)."""
    return Reply.of(220, None, f"{hostname} {text}")


def helo_accepted(hostname: str) -> Reply:
    """250 to HELO: no enhanced code, none was negotiated (RFC 2034 3)."""
    return Reply.of(250, None, hostname)


def chunk_accepted(octets: int) -> Reply:
    """250 to a BDAT chunk that is not the last (RFC 3030 2)."""
    return Reply.of(250, "2.0.0", f"{octets} octets received")

"""EHLO keywords, parsed and formatted.

The first line of an EHLO reply is the server's greeting; each further line is
a keyword (case-insensitive, RFC 5321 4.1.1.1) with optional parameters. We
fold keywords to lower case and keep parameters as sent, the same shape as
``smtplib.SMTP.esmtp_features`` so that the drop-in and the native client read
one parse. Old servers advertise ``AUTH=LOGIN PLAIN`` (pre-RFC 4954 syntax);
those mechanisms are merged into ``auth`` as smtplib does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..reply import Reply

__all__ = ["Capabilities", "format_ehlo_reply"]

_KEYWORD = re.compile(r"(?P<keyword>[A-Za-z0-9][A-Za-z0-9\-]*) ?")
_OLD_AUTH = re.compile(r"auth=(?P<mechs>.*)", re.I)


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a server said it supports. ``features`` maps keyword -> parameters."""

    greeting: str = ""
    features: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_reply(cls, reply: Reply) -> "Capabilities":
        features: dict[str, str] = {}
        for raw in reply.lines[1:]:
            # smtplib strips each reply line before parsing; so do we, or
            # " PIPELINING" and "AUTH=LOGIN  " would parse differently.
            line = raw.strip(" \t\r\n")
            old = _OLD_AUTH.match(line)
            if old is not None:
                # Merged into "auth" exactly as smtplib does (leading space and all).
                features["auth"] = features.get("auth", "") + " " + old["mechs"]
                continue
            match = _KEYWORD.match(line)
            if match is None:
                continue
            keyword = match["keyword"].lower()
            params = line[match.end():].strip()
            if keyword == "auth":
                features["auth"] = features.get("auth", "") + " " + params
            else:
                features[keyword] = params
        return cls(reply.lines[0] if reply.lines else "", features)

    def has(self, keyword: str) -> bool:
        return keyword.lower() in self.features

    def params(self, keyword: str) -> list[str]:
        return self.features.get(keyword.lower(), "").split()

    @property
    def auth_mechanisms(self) -> frozenset[str]:
        return frozenset(m.upper() for m in self.params("auth"))

    @property
    def max_size(self) -> int | None:
        """RFC 1870: SIZE's parameter; None when absent, 0 when unlimited."""
        if not self.has("size"):
            return None
        words = self.params("size")
        return int(words[0]) if words and words[0].isascii() and words[0].isdigit() else 0

    def size_refusal(self, size: int) -> Reply | None:
        """The refusal a message of ``size`` octets meets before it is sent,
        or None. RFC 1870 6.1: a message over the server's fixed maximum
        is refused with 552 (RFC 3463 5.3.4, message too big for system);
        the client refuses it itself rather than send it only to hear so,
        and without SIZE, or with SIZE 0 (no fixed maximum), nothing is."""
        limit = self.max_size
        if not limit or size <= limit:
            return None
        return Reply.of(552, "5.3.4", f"message of {size} octets exceeds the server's limit of {limit}")

    @property
    def pipelining(self) -> bool:
        return self.has("pipelining")

    @property
    def chunking(self) -> bool:
        return self.has("chunking")

    @property
    def starttls(self) -> bool:
        return self.has("starttls")

    @property
    def smtputf8(self) -> bool:
        return self.has("smtputf8")

    @property
    def eightbitmime(self) -> bool:
        return self.has("8bitmime")

    @property
    def binarymime(self) -> bool:
        return self.has("binarymime")

    @property
    def dsn(self) -> bool:
        return self.has("dsn")

    @property
    def enhanced_status_codes(self) -> bool:
        return self.has("enhancedstatuscodes")

    @property
    def requiretls(self) -> bool:
        return self.has("requiretls")


def format_ehlo_reply(greeting: str, keywords: list[str]) -> Reply:
    """The 250 reply to EHLO: the greeting line, then one keyword per line."""
    return Reply(250, (greeting, *keywords))

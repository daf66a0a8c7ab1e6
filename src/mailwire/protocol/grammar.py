"""RFC 5321 / RFC 6531 syntax as named patterns.

Each pattern carries the ABNF rule it implements and its section, so that a
reader can check it against the RFC line by line. The server core uses these
to parse what clients send; the client core uses the same rules to refuse, before
a byte is written, arguments that would change the meaning of a command (a CR,
an LF, a ``>`` that closes the path early and smuggles in ESMTP parameters).

Strings here are ``str``: the wire is decoded as UTF-8 with ``surrogateescape``
so that non-UTF-8 bytes survive round trips and can be refused by name.
"""

from __future__ import annotations

import re

from ..errors import LocalProtocolError

__all__ = [
    "ATEXT", "DOT_STRING", "QUOTED_STRING", "LOCAL_PART", "DOMAIN", "ADDRESS_LITERAL",
    "MAILBOX", "ESMTP_KEYWORD", "ESMTP_VALUE", "CONTROL_CHARS",
    "is_mailbox", "is_domain_or_literal", "split_path", "check_argument", "check_address",
]

# RFC 6531 3.3 UTF8-non-ascii: any code point >= 0x80, but not the lone
# surrogates that surrogateescape uses for bytes that were not UTF-8. Written
# as a negated class: a positive one spanning U+0080..U+10FFFF costs the
# regex compiler milliseconds per pattern, paid by every import.
U8 = r"[^\x00-\x7f\ud800-\udfff]"
# RFC 5322 3.2.3 atext, plus UTF8-non-ascii.
ATEXT = rf"(?:[A-Za-z0-9!#$%&'*+\-/=?^_`{{|}}~]|{U8})"
# RFC 5321 4.1.2: Dot-string = Atom *("."  Atom)
DOT_STRING = rf"{ATEXT}+(?:\.{ATEXT}+)*"
# RFC 5321 4.1.2: Quoted-string = DQUOTE *QcontentSMTP DQUOTE
#   qtextSMTP = %d32-33 / %d35-91 / %d93-126 (RFC 6531 adds UTF8-non-ascii)
#   quoted-pairSMTP = %d92 %d32-126
QUOTED_STRING = rf'"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|{U8}|\\[\x20-\x7e])*"'
# RFC 5321 4.1.2: Local-part = Dot-string / Quoted-string
LOCAL_PART = rf"(?:{DOT_STRING}|{QUOTED_STRING})"
# RFC 5321 4.1.2: sub-domain = Let-dig [Ldh-str]; RFC 6531 3.3 allows U-labels.
_LET_DIG = rf"(?:[A-Za-z0-9]|{U8})"
_SUB_DOMAIN = rf"{_LET_DIG}(?:(?:[A-Za-z0-9\-]|{U8})*{_LET_DIG})?"
DOMAIN = rf"{_SUB_DOMAIN}(?:\.{_SUB_DOMAIN})*"
# RFC 5321 4.1.3: address-literal = "[" ( IPv4 / IPv6 / General ) "]"
ADDRESS_LITERAL = r"\[(?:[0-9]{1,3}(?:\.[0-9]{1,3}){3}|IPv6:[0-9A-Fa-f:.]+|[A-Za-z0-9\-]*[A-Za-z0-9]:[\x21-\x5a\x5e-\x7e]+)\]"
# RFC 5321 4.1.2: Mailbox = Local-part "@" ( Domain / address-literal )
MAILBOX = rf"{LOCAL_PART}@(?:{DOMAIN}|{ADDRESS_LITERAL})"
# RFC 5321 4.1.2: A-d-l (source route), which we accept and ignore (4.1.1.3 / C).
_ADL = rf"@{DOMAIN}(?:,@{DOMAIN})*:"
# RFC 5321 4.1.2: esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
ESMTP_KEYWORD = r"[A-Za-z0-9][A-Za-z0-9\-]*"
# RFC 5321 4.1.2: esmtp-value = 1*(%d33-60 / %d62-126); RFC 6531 3.3 adds UTF-8.
ESMTP_VALUE = rf"(?:[\x21-\x3c\x3e-\x7e]|{U8})+"
# C0 controls and DEL: never legal inside a command argument.
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")

_MAILBOX_RE = re.compile(MAILBOX)
_DOMAIN_OR_LITERAL_RE = re.compile(rf"(?:{DOMAIN}|{ADDRESS_LITERAL})")
# "<" [A-d-l] (Mailbox / anything up to ">") ">" followed by the parameters.
# Only ASCII space and controls end the path: U+00A0 and friends are
# UTF8-non-ascii, legal in an RFC 6531 mailbox (``\s`` would refuse them).
_PATH_RE = re.compile(rf"<(?:{_ADL})?((?:{QUOTED_STRING}|[^<>\x00-\x20\x7f\"])*)>")


def is_mailbox(text: str, *, utf8: bool = True) -> bool:
    """True if ``text`` is an RFC 5321 Mailbox (RFC 6531 when ``utf8``)."""
    if not utf8 and not text.isascii():
        return False
    return _MAILBOX_RE.fullmatch(text) is not None


def is_domain_or_literal(text: str) -> bool:
    return _DOMAIN_OR_LITERAL_RE.fullmatch(text) is not None


def split_path(text: str) -> tuple[str, str] | None:
    """Split ``<path> params`` into the address and the rest.

    Returns None when ``text`` does not start with a bracketed path. The
    address is returned without brackets and source route; callers check it
    with ``is_mailbox`` (or accept ``""`` for the null reverse-path).
    """
    match = _PATH_RE.match(text)
    if match is None:
        return None
    rest = text[match.end():]
    if rest and not rest.startswith(" "):
        return None
    return match[1], rest.strip(" ")


def check_argument(value: str, what: str) -> str:
    """Refuse C0 controls (CR, LF, NUL ...) in anything we put on a command line."""
    bad = CONTROL_CHARS.search(value)
    if bad is not None:
        raise LocalProtocolError(
            f"{what} contains control character {bad[0]!r} at offset {bad.start()}: {value!r}"
        )
    return value


def check_address(address: str, what: str = "address") -> str:
    """Refuse an address that would change the command it is put into.

    Controls are refused everywhere; ``<``, ``>`` and spaces only outside a
    quoted local part (where RFC 5321 allows spaces). This is the rule that
    stops ``evil@example.com> NOTIFY=NEVER`` from smuggling parameters.
    """
    if address in _SAFE_ADDRESSES:
        return address  # a bulk sender checks the same few addresses again and again
    check_argument(address, what)
    outside = re.sub(QUOTED_STRING, "", address) if '"' in address else address
    if '"' in outside:
        raise LocalProtocolError(f"{what} has an unbalanced quote: {address!r}")
    for ch in "<> ":
        if ch in outside:
            raise LocalProtocolError(f"{what} contains {ch!r} outside a quoted local part: {address!r}")
    if len(_SAFE_ADDRESSES) >= _SAFE_ADDRESSES_MAX:
        _SAFE_ADDRESSES.clear()
    _SAFE_ADDRESSES.add(address)
    return address


# Addresses that passed check_address: a bounded memo of a pure function.
_SAFE_ADDRESSES: set[str] = set()
_SAFE_ADDRESSES_MAX = 4096

"""MAIL and RCPT parameters as typed options.

Parameters are parsed once, at the edge, into frozen values with one field per
extension; nothing downstream splits or upper-cases parameter strings again.
Keywords are case-insensitive (RFC 5321 4.1.1.11) but values are not: DSN's
ENVID and ORCPT are xtext and their case is the sender's, so values are kept
exactly (decoded from xtext where the extension says so). Parameters we do not
know are kept in ``extra`` with their original spelling, for servers that want
to refuse them (555) and for clients that pass them through.

    SIZE            RFC 1870            BODY        RFC 6152 / RFC 3030
    SMTPUTF8        RFC 6531            RET, ENVID  RFC 3461 (DSN)
    NOTIFY, ORCPT   RFC 3461 (DSN)      AUTH        RFC 4954 5
    REQUIRETLS      RFC 8689            MT-PRIORITY RFC 6710
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from typing import Literal

from ..errors import LocalProtocolError, RemoteProtocolError
from ..reply import Reply
from .grammar import CONTROL_CHARS, ESMTP_KEYWORD, ESMTP_VALUE

__all__ = [
    "MailOptions", "RcptOptions", "BodyType", "Notify",
    "xtext_encode", "xtext_decode", "parse_params", "parse_mail_options",
    "parse_rcpt_options", "format_mail_options", "format_rcpt_options",
    "mail_params_text", "rcpt_params_text",
]

BodyType = Literal["7BIT", "8BITMIME", "BINARYMIME"]
Notify = Literal["SUCCESS", "FAILURE", "DELAY"]
Param = tuple[str, "str | None"]

_BODY_TYPES: tuple[BodyType, ...] = ("7BIT", "8BITMIME", "BINARYMIME")
_NOTIFY: tuple[Notify, ...] = ("SUCCESS", "FAILURE", "DELAY")
_PARAM_RE = re.compile(rf"({ESMTP_KEYWORD})(?:=({ESMTP_VALUE}))?")
# RFC 3461 4: xchar = any ASCII 33-126 except "+" and "="; hexchar = "+" 2HEX
_XTEXT_RE = re.compile(r"(?:[\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-F]{2})*")
_XTEXT_UTF8_RE = re.compile(r"(?:[\x21-\x2a\x2c-\x3c\x3e-\x7e]|[^\x00-\x7f\ud800-\udfff]|\+[0-9A-F]{2})*")
# RFC 3461 4.2: ENVID is at most 100 characters.
ENVID_MAX = 100


@dataclass(frozen=True, slots=True)
class MailOptions:
    size: int | None = None
    body: BodyType | None = None
    smtputf8: bool = False
    ret: Literal["FULL", "HDRS"] | None = None
    envid: str | None = None
    auth: str | None = None
    requiretls: bool = False
    mt_priority: int | None = None
    extra: tuple[Param, ...] = ()
    # The formatted parameters, filled in the first time they are needed:
    # a sender checks them before writing anything, and the core writes them.
    _text: str | None = field(default=None, init=False, compare=False, repr=False)

    def with_(self, **changes: object) -> "MailOptions":
        # Built by hand: dataclasses.replace is three times slower, and a
        # sender declares SIZE this way for every message.
        values: dict[str, object] = {name: getattr(self, name) for name in _MAIL_FIELDS}
        values.update(changes)
        return MailOptions(**values)  # type: ignore[arg-type]


_MAIL_FIELDS = tuple(f.name for f in fields(MailOptions) if f.init)


@dataclass(frozen=True, slots=True)
class RcptOptions:
    # None: no NOTIFY; () means NOTIFY=NEVER; otherwise the conditions asked for.
    notify: tuple[Notify, ...] | None = None
    # ORCPT: (address type, decoded address), e.g. ("rfc822", "a@example.com").
    orcpt: tuple[str, str] | None = None
    extra: tuple[Param, ...] = ()


def xtext_encode(text: str) -> str:
    """RFC 3461 4: hex-encode '+', '=', controls, space and non-ASCII (as UTF-8)."""
    out = []
    for byte in text.encode("utf-8", "surrogateescape"):
        if 33 <= byte <= 126 and byte not in (0x2B, 0x3D):
            out.append(chr(byte))
        else:
            out.append(f"+{byte:02X}")
    return "".join(out)


def xtext_decode(text: str, *, utf8: bool = False) -> str:
    """Decode xtext; with ``utf8`` accept RFC 6533's raw UTF-8 as well."""
    pattern = _XTEXT_UTF8_RE if utf8 else _XTEXT_RE
    if pattern.fullmatch(text) is None:
        raise ValueError(f"not valid xtext: {text!r}")
    buf = bytearray()
    for part in re.split(r"(\+[0-9A-F]{2})", text):
        if len(part) == 3 and part[0] == "+":
            buf.append(int(part[1:], 16))
        else:
            buf += part.encode("utf-8")
    return buf.decode("utf-8", "surrogateescape")


def _bad(text: str, code: int = 501) -> RemoteProtocolError:
    return RemoteProtocolError(text, Reply.of(code, "5.5.4", text))


def parse_params(text: str) -> list[Param]:
    """Split ``KEY=VALUE KEY ...`` into pairs, checking RFC 5321 4.1.2 syntax."""
    params: list[Param] = []
    seen: set[str] = set()
    for word in text.split(" "):
        if not word:
            continue
        match = _PARAM_RE.fullmatch(word)
        if match is None:
            raise _bad(f"Malformed parameter: {word[:64]!r}")
        upper = match[1].upper()
        if upper in seen:
            raise _bad(f"Duplicate parameter: {match[1]}")
        seen.add(upper)
        params.append((match[1], match[2]))
    return params


def _int_value(key: str, value: str | None, low: int, high: int) -> int:
    # ASCII DIGITs only (\d would take any Unicode digit); a sign only where
    # the value may be negative (MT-PRIORITY, not SIZE: RFC 1870 is 1*20DIGIT).
    sign = "[+-]?" if low < 0 else ""
    if value is None or not re.fullmatch(rf"{sign}[0-9]{{1,20}}", value):
        raise _bad(f"{key} needs a number")
    number = int(value)
    if not low <= number <= high:
        raise _bad(f"{key} out of range: {value}")
    return number


def _no_value(key: str, value: str | None) -> bool:
    if value is not None:
        raise _bad(f"{key} takes no value")
    return True


def parse_mail_options(params: list[Param] | str) -> MailOptions:
    """Typed MAIL FROM options from its parameters (RemoteProtocolError on bad ones)."""
    pairs = parse_params(params) if isinstance(params, str) else params
    fields: dict[str, object] = {}
    extra: list[Param] = []
    for key, value in pairs:
        upper = key.upper()
        if upper == "SIZE":
            fields["size"] = _int_value(key, value, 0, 2**63 - 1)
        elif upper == "BODY":
            body = (value or "").upper()
            if body not in _BODY_TYPES:
                raise _bad(f"Unknown BODY type: {value}")
            fields["body"] = body
        elif upper == "SMTPUTF8":
            fields["smtputf8"] = _no_value(key, value)
        elif upper == "RET":
            ret = (value or "").upper()
            if ret not in ("FULL", "HDRS"):
                raise _bad(f"RET must be FULL or HDRS, not {value}")
            fields["ret"] = ret
        elif upper == "ENVID":
            fields["envid"] = _xtext_field(key, value, ENVID_MAX)
        elif upper == "AUTH":
            if value is None:
                raise _bad("AUTH needs a value")
            fields["auth"] = value if value == "<>" else _xtext_field(key, value, 1000)
        elif upper == "REQUIRETLS":
            fields["requiretls"] = _no_value(key, value)
        elif upper == "MT-PRIORITY":
            fields["mt_priority"] = _int_value(key, value, -9, 9)
        else:
            extra.append((key, value))
    return MailOptions(extra=tuple(extra), **fields)  # type: ignore[arg-type]


def parse_rcpt_options(params: list[Param] | str) -> RcptOptions:
    """Typed RCPT TO options from its parameters (RemoteProtocolError on bad ones)."""
    pairs = parse_params(params) if isinstance(params, str) else params
    notify: tuple[Notify, ...] | None = None
    orcpt: tuple[str, str] | None = None
    extra: list[Param] = []
    for key, value in pairs:
        upper = key.upper()
        if upper == "NOTIFY":
            notify = _parse_notify(value)
        elif upper == "ORCPT":
            addr_type, sep, addr = (value or "").partition(";")
            if not sep or not addr_type or not re.fullmatch(r"[A-Za-z0-9\-]+", addr_type):
                raise _bad(f"ORCPT must be addr-type;xtext, not {value}")
            orcpt = (addr_type, _xtext_field(key, addr, 500, utf8=addr_type.lower() == "utf-8"))
        else:
            extra.append((key, value))
    return RcptOptions(notify=notify, orcpt=orcpt, extra=tuple(extra))


def _parse_notify(value: str | None) -> tuple[Notify, ...]:
    words = [w.upper() for w in (value or "").split(",")]
    if words == ["NEVER"]:
        return ()
    if not words or any(w not in _NOTIFY for w in words) or len(set(words)) != len(words):
        raise _bad(f"NOTIFY must be NEVER or SUCCESS,FAILURE,DELAY, not {value}")
    return tuple(w for w in _NOTIFY if w in words)


def _xtext_field(key: str, value: str | None, limit: int, *, utf8: bool = False) -> str:
    if value is None:
        raise _bad(f"{key} needs a value")
    try:
        decoded = xtext_decode(value, utf8=utf8)
    except ValueError:
        raise _bad(f"{key} is not valid xtext") from None
    if len(decoded) > limit:
        raise _bad(f"{key} is longer than {limit} characters")
    return decoded


def _unique(words: list[str]) -> list[str]:
    """Refuse a keyword given twice: the server would refuse the command."""
    seen: set[str] = set()
    for word in words:
        key = word.partition("=")[0].upper()
        if key in seen:
            raise LocalProtocolError(f"parameter {key} given twice")
        seen.add(key)
    return words


def _xtext_param(key: str, value: str) -> str:
    # RFC 5321 4.1.2: an esmtp-value has at least one character.
    if not value:
        raise LocalProtocolError(f"{key} must not be empty")
    return f"{key}={xtext_encode(value)}"


def _format_extra(extra: tuple[Param, ...]) -> list[str]:
    out = []
    for key, value in extra:
        if not re.fullmatch(ESMTP_KEYWORD, key):
            raise LocalProtocolError(f"not an ESMTP keyword: {key!r}")
        if value is not None and (CONTROL_CHARS.search(value) or not re.fullmatch(ESMTP_VALUE, value)):
            raise LocalProtocolError(f"not a valid ESMTP value for {key}: {value!r}")
        out.append(key if value is None else f"{key}={value}")
    return out


def mail_params_text(options: MailOptions) -> str:
    """`` KEY=VALUE ...`` as it follows the path on a MAIL line."""
    text = options._text
    if text is None:
        text = "".join(" " + word for word in format_mail_options(options))
        object.__setattr__(options, "_text", text)  # a cache, not a change: see the field
    return text


def rcpt_params_text(options: RcptOptions) -> str:
    """`` KEY=VALUE ...`` as it follows the path on an RCPT line."""
    if options.notify is None and options.orcpt is None and not options.extra:
        return ""  # the common case, without building a list
    return "".join(" " + word for word in format_rcpt_options(options))


def format_mail_options(options: MailOptions) -> list[str]:
    """The MAIL FROM parameters for ``options``, in a stable order."""
    out = []
    if options.size is not None:
        if options.size < 0:
            raise LocalProtocolError("SIZE must not be negative")
        out.append(f"SIZE={int(options.size)}")
    if options.body is not None:
        out.append(f"BODY={options.body}")
    if options.smtputf8:
        out.append("SMTPUTF8")
    if options.ret is not None:
        out.append(f"RET={options.ret}")
    if options.envid is not None:
        if len(options.envid) > ENVID_MAX:
            raise LocalProtocolError(f"ENVID is longer than {ENVID_MAX} characters")
        out.append(_xtext_param("ENVID", options.envid))
    if options.auth is not None:
        out.append("AUTH=<>" if options.auth == "<>" else _xtext_param("AUTH", options.auth))
    if options.requiretls:
        out.append("REQUIRETLS")
    if options.mt_priority is not None:
        if not -9 <= options.mt_priority <= 9:
            raise LocalProtocolError("MT-PRIORITY must be between -9 and 9")
        out.append(f"MT-PRIORITY={options.mt_priority}")
    return _unique(out + _format_extra(options.extra))


def format_rcpt_options(options: RcptOptions) -> list[str]:
    """The RCPT TO parameters for ``options``."""
    out = []
    if options.notify is not None:
        bad = [n for n in options.notify if n not in _NOTIFY]
        if bad or len(set(options.notify)) != len(options.notify):
            raise LocalProtocolError(f"NOTIFY conditions must be known and distinct: {options.notify}")
        out.append("NOTIFY=" + (",".join(options.notify) if options.notify else "NEVER"))
    if options.orcpt is not None:
        addr_type, addr = options.orcpt
        if not re.fullmatch(r"[A-Za-z0-9\-]+", addr_type):
            raise LocalProtocolError(f"not an address type: {addr_type!r}")
        out.append(f"ORCPT={addr_type};{xtext_encode(addr)}")
    return _unique(out + _format_extra(options.extra))

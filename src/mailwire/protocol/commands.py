"""Command lines, both ways: events to bytes (client) and bytes to events (server).

One file holds the syntax of every command so that the client can only send
what the server would parse, and a reader finds any command's rules in one
place. Formatting refuses anything that would change a command's meaning
(controls, brackets or spaces in addresses, malformed parameters) before a byte
is written. Parsing returns a typed event or a ``Rejected`` carrying the reply
RFC 5321 prescribes (500 unknown, 501 bad arguments, 553 bad address, 555 bad
parameters).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from typing import Any

from ..errors import LocalProtocolError, RemoteProtocolError
from ..reply import Reply
from .events import (
    Auth, AuthResponse, Bdat, Command, Data, Ehlo, Expn, Helo, Help, Lhlo, Mail,
    Noop, Quit, RawCommand, Rcpt, Rejected, Rset, StartTLS, Vrfy,
)
from .grammar import CONTROL_CHARS, check_address, check_argument, is_mailbox, split_path
from .params import (
    MailOptions, RcptOptions, mail_params_text, rcpt_params_text,
    parse_mail_options, parse_rcpt_options,
)

__all__ = [
    "format_command", "parse_command", "parse_auth_response", "encode_auth_data", "challenge_reply",
    "CommandCache",
]

_SASL_NAME = re.compile(r"[A-Za-z0-9\-_]{1,20}")  # RFC 4422 3.1
_BDAT = re.compile(r"([0-9]{1,18})(?: +(LAST))? *", re.I)  # RFC 3030 2
# What surrogateescape decodes an invalid UTF-8 byte to (U+DC80-U+DCFF); chr()
# rather than literals, which the compiled build (mypyc) cannot write into C.
_LOW_SURROGATE, _HIGH_SURROGATE = chr(0xDC80), chr(0xDCFF)


def encode_auth_data(data: bytes | None) -> str:
    """RFC 4954 4: base64, ``=`` for an empty response, ``*`` to cancel."""
    if data is None:
        return "*"
    return base64.b64encode(data).decode("ascii") if data else "="


def challenge_reply(data: bytes) -> Reply:
    """A server's 334 with a SASL challenge, base64 (RFC 4954 4; empty: "334 ")."""
    return Reply(334, (base64.b64encode(data).decode("ascii"),))


def _hello_name(name: str, verb: str) -> str:
    check_argument(name, f"{verb} name")
    if not name or " " in name:
        raise LocalProtocolError(f"{verb} name must be one non-empty word: {name!r}")
    return name


def _mail(event: Mail) -> str:
    return f"MAIL FROM:<{check_address(event.address, 'sender')}>{mail_params_text(event.options)}"


def _rcpt(event: Rcpt) -> str:
    if not event.address:
        raise LocalProtocolError("recipient address is empty")
    return f"RCPT TO:<{check_address(event.address, 'recipient')}>{rcpt_params_text(event.options)}"


def _bdat(event: Bdat) -> str:
    if event.size < 0:
        raise LocalProtocolError("BDAT size is negative")
    return f"BDAT {event.size} LAST" if event.last else f"BDAT {event.size}"


def _optional_argument(verb: str, argument: str) -> str:
    check_argument(argument, verb.lower() + " argument")
    return f"{verb} {argument}" if argument else verb


def _auth(event: Auth) -> str:
    if _SASL_NAME.fullmatch(event.mechanism) is None:
        raise LocalProtocolError(f"not a SASL mechanism name: {event.mechanism!r}")
    line = f"AUTH {event.mechanism.upper()}"
    return line if event.initial is None else f"{line} {encode_auth_data(event.initial)}"


def _raw(event: RawCommand) -> str:
    check_argument(event.verb, "command")
    check_argument(event.argument, "command argument")
    return f"{event.verb} {event.argument}" if event.argument else event.verb


_FORMATTERS: dict[type, Callable[[Any], str]] = {
    Data: lambda e: "DATA",
    Rset: lambda e: "RSET",
    Quit: lambda e: "QUIT",
    StartTLS: lambda e: "STARTTLS",
    Ehlo: lambda e: "EHLO " + _hello_name(e.name, "EHLO"),
    Helo: lambda e: "HELO " + _hello_name(e.name, "HELO"),
    Lhlo: lambda e: "LHLO " + _hello_name(e.name, "LHLO"),
    Mail: _mail,
    Rcpt: _rcpt,
    Bdat: _bdat,
    Noop: lambda e: _optional_argument("NOOP", e.argument),
    Help: lambda e: _optional_argument("HELP", e.argument),
    Vrfy: lambda e: "VRFY " + check_argument(e.argument, "vrfy argument"),
    Expn: lambda e: "EXPN " + check_argument(e.argument, "expn argument"),
    Auth: _auth,
    AuthResponse: lambda e: encode_auth_data(e.data),
    RawCommand: _raw,
}


def format_command(event: Command) -> bytes:
    """The wire form of ``event``, CRLF included."""
    formatter = _FORMATTERS.get(type(event))
    if formatter is None:
        raise LocalProtocolError(f"not a command: {event!r}")
    return formatter(event).encode("utf-8", "surrogateescape") + b"\r\n"


# -- server side -------------------------------------------------------------


def _reject(code: int, enhanced: str, text: str) -> Rejected:
    return Rejected(Reply.of(code, enhanced, text))


def _no_argument(verb: str, arg: str, event: Command) -> Command | Rejected:
    return event if not arg else _reject(501, "5.5.4", f"Syntax: {verb} takes no argument")


def _parse_path(arg: str, prefix: str) -> tuple[str, str] | Rejected:
    if arg[: len(prefix)].upper() != prefix:
        return _reject(501, "5.5.4", f"Syntax: {prefix}<address>")
    path = split_path(arg[len(prefix):].lstrip(" "))
    if path is None:
        return _reject(501, "5.5.4", f"Syntax: {prefix}<address> [parameters]")
    return path


def _parse_mail(arg: str) -> Command | Rejected:
    path = _parse_path(arg, "FROM:")
    if isinstance(path, Rejected):
        return path
    address, params = path
    if address and not is_mailbox(address):
        return _reject(553, "5.1.7", "Bad sender address syntax")
    options = parse_mail_options(params) if params else MailOptions()
    return Mail(address, options)


def _parse_rcpt(arg: str) -> Command | Rejected:
    path = _parse_path(arg, "TO:")
    if isinstance(path, Rejected):
        return path
    address, params = path
    # RFC 5321 4.5.1: <Postmaster> without a domain must be accepted.
    if not (is_mailbox(address) or address.lower() == "postmaster"):
        return _reject(553, "5.1.3", "Bad recipient address syntax")
    options = parse_rcpt_options(params) if params else RcptOptions()
    return Rcpt(address, options)


def _parse_hello(verb: str, arg: str) -> Command | Rejected:
    if not arg or " " in arg:
        return _reject(501, "5.5.4", f"Syntax: {verb} hostname")
    if verb == "EHLO":
        return Ehlo(arg)
    return Helo(arg) if verb == "HELO" else Lhlo(arg)


def _parse_bdat(arg: str) -> Command | Rejected:
    match = _BDAT.fullmatch(arg)
    if match is None:
        return _reject(501, "5.5.4", "Syntax: BDAT chunk-size [LAST]")
    return Bdat(int(match[1]), match[2] is not None)


def _parse_auth(arg: str) -> Command | Rejected:
    mechanism, _, initial = arg.partition(" ")
    if _SASL_NAME.fullmatch(mechanism) is None:
        return _reject(501, "5.5.4", "Syntax: AUTH mechanism [initial-response]")
    if not initial:
        return Auth(mechanism.upper(), None)
    decoded = _decode_base64(initial.strip(" "))
    if decoded is None:
        return _reject(501, "5.5.2", "Cannot decode AUTH initial response")
    return Auth(mechanism.upper(), decoded)


def _decode_base64(text: str) -> bytes | None:
    if text == "=":
        return b""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def parse_auth_response(line: bytes) -> AuthResponse | Rejected:
    """A client's answer to a 334 challenge; ``*`` cancels (RFC 4954 4)."""
    text = line.strip(b" ")
    if text == b"*":
        return AuthResponse(None)
    decoded = _decode_base64(text.decode("ascii", "replace"))
    if decoded is None:
        return _reject(501, "5.5.2", "Cannot decode AUTH response")
    return AuthResponse(decoded)


def parse_command(line: bytes) -> Command | Rejected:
    """Parse one command line (without CRLF) into an event.

    Unknown verbs come back as ``RawCommand``: the server decides whether it
    implements them (500 5.5.1 otherwise).
    """
    text = line.decode("utf-8", "surrogateescape")
    if CONTROL_CHARS.search(text):
        return _reject(501, "5.5.2", "Syntax error: control characters in command")
    # Only non-ASCII input can hold undecodable bytes: keep the per-character
    # scan off the hot path (every command line of every session).
    if not line.isascii() and any(_LOW_SURROGATE <= ch <= _HIGH_SURROGATE for ch in text):
        return _reject(500, "5.5.2", "Syntax error: command is not valid UTF-8")
    verb, _, arg = text.partition(" ")
    verb = verb.upper()
    arg = arg.strip(" ")
    try:
        return _dispatch(verb, arg)
    except RemoteProtocolError as err:
        return Rejected(err.reply)


class CommandCache:
    """``parse_command``, remembered: a bounded memo one server shares among
    its connections, since what changes from message to message is mostly
    the content, not the command lines (the same MAIL FROM, RCPT TO, DATA).

    Only short lines of the common commands are kept: none that carries a
    secret (AUTH) or may be arbitrary junk (unknown verbs, refusals), so a
    client can neither read nor fill it with anything but ordinary
    commands. Full, it starts afresh. Events are immutable, so one parsed
    event serves every connection that sends the same line.
    """

    __slots__ = ("size", "_parsed")

    KINDS = frozenset({Mail, Rcpt, Data, Rset, Quit, Noop, Ehlo, Helo, Lhlo})
    LINE = 256  # longer lines are parsed every time

    def __init__(self, size: int = 1024) -> None:
        self.size = size
        self._parsed: dict[bytes, Command | Rejected] = {}

    def parse(self, line: bytes) -> Command | Rejected:
        event = self._parsed.get(line)
        if event is None:
            event = parse_command(line)
            if type(event) in self.KINDS and len(line) <= self.LINE:
                if len(self._parsed) >= self.size:
                    self._parsed.clear()
                self._parsed[line] = event
        return event

    def __len__(self) -> int:
        return len(self._parsed)

    def __contains__(self, line: object) -> bool:
        return line in self._parsed


def _dispatch(verb: str, arg: str) -> Command | Rejected:
    if verb in ("EHLO", "HELO", "LHLO"):
        return _parse_hello(verb, arg)
    if verb == "MAIL":
        return _parse_mail(arg)
    if verb == "RCPT":
        return _parse_rcpt(arg)
    if verb == "BDAT":
        return _parse_bdat(arg)
    if verb == "AUTH":
        return _parse_auth(arg)
    if verb == "DATA":
        return _no_argument(verb, arg, Data())
    if verb == "RSET":
        return _no_argument(verb, arg, Rset())
    if verb == "QUIT":
        return _no_argument(verb, arg, Quit())
    if verb == "STARTTLS":
        return _no_argument(verb, arg, StartTLS())
    if verb == "NOOP":
        return Noop(arg)
    if verb == "HELP":
        return Help(arg)
    if verb in ("VRFY", "EXPN"):
        if not arg:
            return _reject(501, "5.5.4", f"Syntax: {verb} string")
        return Vrfy(arg) if verb == "VRFY" else Expn(arg)
    return RawCommand(verb, arg)

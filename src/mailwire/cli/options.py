"""What the commands' options share: the error a mistake in them is, the argument types, the client's connection options.

A mistake in the arguments is a ``UsageError``, raised wherever it is found
(an argument type, a check of two options together, a file that cannot be
read) and turned by each command's ``run`` into one line on stderr and its
exit code. Argument types that mean the same in every command are written
once here; one command's own (``serve``'s ``--unix-mode``) stay in its
module.

The two commands that send (``mailwire send`` and ``mailwire sendmail``)
share how they reach a server: ``add_tls_auth_options`` adds the TLS and
AUTH options, and ``destination`` checks them with ``--server``/``--unix``,
``--timeout`` and ``--helo`` and gives the client's settings. The two
commands cannot then drift apart on what ``--tls`` means or when a password
may cross the network in plaintext.
"""

from __future__ import annotations

import argparse
import email.utils
import os
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..client.settings import TLS_MODES, ClientSettings
from ..errors import LocalProtocolError
from ..protocol.grammar import check_address

__all__ = [
    "UsageError", "user_password", "addresses", "server_address", "seconds", "add_tls_auth_options", "Destination",
    "destination",
]


class UsageError(Exception):
    """A mistake in the arguments: one line on stderr, and the command's usage exit code."""


def user_password(text: str) -> tuple[str, str]:
    """``USER:PASSWORD``; the password may hold colons, the user may not be empty."""
    user, sep, password = text.partition(":")
    if not sep or not user:
        raise argparse.ArgumentTypeError("expected USER:PASSWORD")
    return user, password


def addresses(values: Iterable[str], option: str) -> list[str]:
    """The addresses in ``values`` (each one address or a comma-separated
    list, display names allowed), each fit for MAIL or RCPT (UsageError)."""
    found = []
    for value in values:
        for _, address in email.utils.getaddresses([value]):
            # getaddresses() mends what it cannot parse ('a@b c' gives 'a@bc'): refuse that.
            if not address or address not in value:
                raise UsageError(f"{option} {value!r}: not an address")
            try:
                check_address(address, option)
            except LocalProtocolError as err:
                raise UsageError(str(err)) from None
            found.append(address)
    return found


def server_address(text: str) -> tuple[str, int | None]:
    """HOST, HOST:PORT, [IPv6]:PORT or a bare IPv6 address."""
    host, port = text, ""
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            host = ""
        port = rest[1:] if rest else ""
        if rest == ":":
            port = "x"
    elif text.count(":") == 1:
        host, port = text.split(":")
        port = port or "x"
    if not host or any(c.isspace() for c in host) or (port and not (port.isdigit() and 0 < int(port) < 65536)):
        raise argparse.ArgumentTypeError(f"expected HOST or HOST:PORT (port 1-65535), not {text!r}")
    return host, int(port) if port else None


def seconds(text: str) -> float:
    """A number of seconds above 0."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds above 0, not {text!r}")
    return value


def add_tls_auth_options(group: argparse._ArgumentGroup) -> None:
    """``--tls``, ``--insecure``, ``--ca``, ``--auth``, ``--allow-plaintext-auth``."""
    group.add_argument("--tls", choices=TLS_MODES,
                       help="starttls (required), implicit (port 465 style), opportunistic (STARTTLS when "
                       "offered: the default) or none (the default over --unix)")
    group.add_argument("--insecure", action="store_true", help="do not verify the server's certificate")
    group.add_argument("--ca", metavar="FILE", help="trust the CA certificate(s) in this PEM file")
    group.add_argument("--auth", type=user_password, metavar="USER:PASS", help="authenticate (only over TLS)")
    group.add_argument("--allow-plaintext-auth", action="store_true", help="allow --auth without TLS")


@dataclass(frozen=True)
class Destination:
    """Where to send and how: the client's host, port and keyword settings."""

    host: str
    port: int | None
    target: str  # the server, as messages name it
    settings: dict[str, Any]


def _context(args: argparse.Namespace, tls: str, unix: bool) -> ssl.SSLContext | None:
    if tls == "none":
        if args.insecure or args.ca:
            raise UsageError("--insecure and --ca are about TLS, and --tls is none")
        return None
    if args.insecure and args.ca:
        raise UsageError("--insecure and --ca contradict each other: give one")
    try:
        context = ssl.create_default_context(cafile=args.ca)
    except ssl.SSLError as err:
        raise UsageError(f"--ca {args.ca}: no PEM certificate in it ({err.reason or err})") from None
    except OSError as err:
        raise UsageError(f"cannot read --ca {args.ca}: {err.strerror or err}") from None
    if args.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif unix:
        context.check_hostname = False  # a path has no host name; the chain is still verified
    return context


def destination(
    args: argparse.Namespace, server: tuple[str, int | None] | None, unix: str | None, *, lmtp: bool = False,
    default: tuple[str, int | None] = ("127.0.0.1", None),
) -> Destination:
    """Check the connection options (``args``: the TLS and AUTH options,
    ``timeout``, ``helo``) with where to send (``server`` or ``unix``,
    else ``default``), and give the client's settings (UsageError)."""
    if unix is not None and server is not None:
        raise UsageError("--server and --unix both say where to send: give one")
    tls = args.tls or ("none" if unix is not None else "opportunistic")
    if args.allow_plaintext_auth and args.auth is None:
        raise UsageError("--allow-plaintext-auth needs --auth")
    if args.auth is not None and tls == "none" and not args.allow_plaintext_auth:
        raise UsageError("--auth with --tls none would send the password in plaintext "
                         "(--allow-plaintext-auth to do it anyway)")
    if args.helo is not None and (not args.helo or not args.helo.isprintable() or " " in args.helo):
        raise UsageError(f"--helo {args.helo!r}: expected a host name")
    if unix is not None:
        host, port, target = os.path.abspath(unix), None, unix
    else:
        host, port = server or default
        port = port or ClientSettings.default_port(tls, lmtp)
        target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    settings: dict[str, Any] = {
        "tls": tls, "auth": args.auth, "timeout": args.timeout, "allow_plaintext_auth": args.allow_plaintext_auth,
        "ssl_context": _context(args, tls, unix is not None), "local_hostname": args.helo,
    }
    try:
        ClientSettings(host, port or 0, lmtp=lmtp, **settings)
    except ValueError as err:
        raise UsageError(str(err)) from None
    return Destination(host, port, target, settings)

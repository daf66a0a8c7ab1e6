"""``mailwire serve``'s release options: the real server the web inbox releases caught messages to.

Mailpit's ``--smtp-relay-*`` settings under names of their own: ``serve``'s
``--relay`` already means forwarding every message, so these are
``--release-*``. ``--release-to HOST[:PORT]`` turns releasing on (the web
inbox's ``POST /api/v1/message/{ID}/release`` and its button); without it
the route answers 400 and ``/api/v1/webui`` says relaying is off.

TLS is verified, always: ``--release-tls starttls`` (the default, port 25)
or ``tls`` (TLS from the first byte, port 465) against the system's trust,
or against ``--release-ca FILE`` alone for a relay with a private CA.
``none`` is plaintext: it must be asked for by name, it is refused with
``--release-auth``, and it is warned about on stderr. The password of
``--release-auth USER`` may come from ``$MAILWIRE_RELEASE_PASSWORD``
instead of the command line, where ``ps`` shows it to every user.
``--release-allowed-recipients``/``--release-blocked-recipients`` are
Mailpit's regular expressions, searched case-insensitively in each
recipient's address; ``--release-return-path`` is the envelope sender of
every release; ``--release-preserve-message-ids`` keeps each message's
Message-ID (a new one is made otherwise, as Mailpit does).
"""

from __future__ import annotations

import argparse
import os
import re
import ssl
import sys

from ..inbox.release import RelayTLS, ReleaseRelay
from ..protocol.grammar import check_address
from ..errors import LocalProtocolError
from .options import UsageError, server_address
from .serve_run import PROG

__all__ = ["add_options", "relay", "PASSWORD_ENV", "TLS_CHOICES"]

PASSWORD_ENV = "MAILWIRE_RELEASE_PASSWORD"
TLS_CHOICES: dict[str, RelayTLS] = {"starttls": "starttls", "tls": "implicit", "none": "none"}
_OPTIONS = ("release_tls", "release_ca", "release_auth", "release_allowed_recipients",
            "release_blocked_recipients", "release_return_path", "release_preserve_message_ids")


def add_options(serve: argparse.ArgumentParser) -> None:
    group = serve.add_argument_group("releasing caught messages to a real server (the web inbox's release)")
    group.add_argument("--release-to", type=server_address, metavar="HOST[:PORT]",
                       help="the SMTP server released messages go to (default port: 25, with --release-tls tls 465)")
    group.add_argument("--release-tls", choices=TLS_CHOICES, metavar="MODE",
                       help="starttls (the default), tls (from the first byte) or none (plaintext: say it to "
                            "mean it); certificates are always verified")
    group.add_argument("--release-ca", metavar="FILE",
                       help="PEM CA certificate(s) to verify the relay with, instead of the system's")
    group.add_argument("--release-auth", metavar="USER[:PASSWORD]",
                       help=f"AUTH to the relay; without :PASSWORD the password is ${PASSWORD_ENV}")
    group.add_argument("--release-allowed-recipients", type=_pattern, metavar="REGEX",
                       help="only release to addresses this matches (searched, case-insensitive)")
    group.add_argument("--release-blocked-recipients", type=_pattern, metavar="REGEX",
                       help="never release to addresses this matches")
    group.add_argument("--release-return-path", type=_sender, metavar="ADDRESS",
                       help="the envelope sender of every release (default: the message's Sender or From)")
    group.add_argument("--release-preserve-message-ids", action="store_true",
                       help="keep each message's Message-ID (a new one is made otherwise, as Mailpit does)")


def _pattern(text: str) -> re.Pattern[str]:
    try:
        return re.compile(text, re.IGNORECASE)
    except re.error as err:
        raise argparse.ArgumentTypeError(f"not a regular expression ({err}): {text!r}") from None


def _sender(text: str) -> str:
    try:
        check_address(text, "--release-return-path")
    except LocalProtocolError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    if "@" not in text:
        raise argparse.ArgumentTypeError(f"not an address: {text!r}")
    return text


def _credentials(text: str) -> tuple[str, str]:
    user, sep, password = text.partition(":")
    if not user:
        raise UsageError("--release-auth: expected USER[:PASSWORD]")
    if not sep:
        found = os.environ.get(PASSWORD_ENV)
        if found is None:
            raise UsageError(f"--release-auth {user}: give USER:PASSWORD, or the password in ${PASSWORD_ENV}")
        password = found
    return user, password


def _context(path: str | None) -> ssl.SSLContext:
    if path is None:
        return ssl.create_default_context()
    try:
        return ssl.create_default_context(cafile=path)
    except OSError as err:  # ssl.SSLError included
        reason = err.reason if isinstance(err, ssl.SSLError) else err.strerror
        raise UsageError(f"--release-ca {path}: cannot load CA certificates from it: {reason or err}") from None


def relay(args: argparse.Namespace) -> ReleaseRelay | None:
    """The relay the options describe (None without ``--release-to``); a
    ``UsageError`` for options that do not go together."""
    if args.release_to is None:
        given = [name for name in _OPTIONS if getattr(args, name) not in (None, False)]
        if given:
            raise UsageError(f"--{given[0].replace('_', '-')} needs --release-to HOST[:PORT]")
        return None
    host, port = args.release_to
    tls = TLS_CHOICES[args.release_tls or "starttls"]
    auth = _credentials(args.release_auth) if args.release_auth is not None else None
    if tls == "none":
        if auth is not None:
            raise UsageError("--release-auth needs --release-tls starttls or tls (the password would cross "
                             "the network in plaintext)")
        if args.release_ca is not None:
            raise UsageError("--release-ca needs --release-tls starttls or tls")
        print(f"{PROG}: warning: --release-tls none: released messages go to {host} in plaintext, "
              "readable and changeable on the way", file=sys.stderr)
    return ReleaseRelay(
        host, port if port is not None else (465 if tls == "implicit" else 25), tls, auth,
        _context(args.release_ca) if tls != "none" else None,
        args.release_allowed_recipients, args.release_blocked_recipients, args.release_return_path or "",
        args.release_preserve_message_ids,
    )

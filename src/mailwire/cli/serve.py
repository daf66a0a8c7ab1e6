"""``mailwire serve``: a local SMTP (or LMTP) server that keeps what it receives.

The command is a thin shell over the public server API: this module turns
the options into a ``Plan`` (a ``ServerConfig`` and one of the shipped
backends: ``Maildir`` by default, ``Printer``, ``Sink`` or ``Relay``; with
``--auth-file``, AUTH required before MAIL; with ``--auth-accept-any``, AUTH
offered and anything accepted), checking everything it can
before anything binds; ``serve_run`` runs it until SIGINT or SIGTERM, in
this process or (``--workers N``) in N supervised ones
(``mailwire.server.workers``).

Output contract, for scripts: stdout carries one banner line once the server
listens (flushed; with ``--port 0`` it names the port chosen), then one line
per message (``--print``: the whole message instead). Diagnostics go to
stderr. A mistake in the arguments ends in one line on stderr and exit code 2;
a failure to run (a port in use, a Maildir that cannot be created) in one
line and exit code 1.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import ssl
import sys
from typing import Any

from .. import __compiled__
from ..client.sync import TLSMode
from ..limits import DEFAULT_LIMITS
from ..server.backends import Maildir, Printer, Relay, Sink
from ..server.config import ServerConfig
from ..server.networks import parse_networks
from ..server.session import Backend
from .loop import LOOPS, use_loop
from .options import UsageError, user_password
from ..server.workers import usable_cores
from . import serve_chaos, serve_queue, serve_relay, serve_retention, serve_web
from .serve_run import (
    EXIT_RUNTIME, EXIT_USAGE, PROG, AcceptAny, Plan, Reporter, RuntimeFailure, Users, serve, serve_workers,
)

__all__ = ["configure_parser", "run", "plan", "UsageError", "read_auth_file"]

log = logging.getLogger("mailwire.serve")

DEFAULT_HOST, DEFAULT_PORT, DEFAULT_MAILDIR = "127.0.0.1", 8025, "./mail"
AUTH_MECHANISMS = ("PLAIN", "LOGIN", "CRAM-MD5")


# -- arguments --------------------------------------------------------------------


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 0-65535 (0: any free port), not {text!r}")
    return int(text)


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, not {text!r}")
    return host.strip("[]"), int(port)


def _size(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a number of octets (0: no limit), not {text!r}")
    return int(text)


def _line_length(text: str) -> int:
    """RFC 5321 4.5.3.1.6: every server must take 1000-octet lines; less
    would refuse mail that any other server accepts."""
    octets = _size(text)
    if 0 < octets < DEFAULT_LIMITS.text_line:
        raise argparse.ArgumentTypeError(
            f"at least {DEFAULT_LIMITS.text_line} octets (RFC 5321 4.5.3.1.6), or 0 for no limit, not {octets}"
        )
    return octets


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds, not {text!r}")
    return value


def _unix_mode(text: str) -> int:
    digits = text[2:] if text.lower().startswith("0o") else text
    if not digits or any(c not in "01234567" for c in digits) or int(digits, 8) > 0o777:
        raise argparse.ArgumentTypeError(f"expected an octal mode 0000-0777 such as 0666 or 0660, not {text!r}")
    return int(digits, 8)


def _network(text: str) -> str:
    try:
        return str(parse_networks([text])[0])
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a network such as 10.0.0.0/8, 192.0.2.7 or ::1, not {text!r}"
        ) from None


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number (0: no limit), not {text!r}")
    return int(text)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, not {text!r}")
    return int(text)


def _workers(text: str) -> int:
    """``N`` (at least 1) or ``auto``: the cores this process may use."""
    if text.strip().lower() == "auto":
        return usable_cores()
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a number of processes of at least 1, or auto, not {text!r}")
    return int(text)


def _timeout(text: str) -> float:
    value = _seconds(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds above 0, not {text!r}")
    return value


def _networks(text: str) -> tuple[str, ...]:
    """``CIDR[,CIDR...]`` or ``none``."""
    if text.strip().lower() == "none":
        return ()
    networks = tuple(part.strip() for part in text.split(",") if part.strip())
    try:
        parse_networks(networks)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{err} (expected CIDR[,CIDR...] or none)") from None
    return networks


def _add_limit_options(serve: argparse.ArgumentParser) -> None:
    """How much one client may take (see server/clients.py and Limits)."""
    limits = serve.add_argument_group("limits (421 beyond each)")
    limits.add_argument("--max-connections", type=_positive, metavar="N",
                        help=f"connections at once (default {DEFAULT_LIMITS.connections})")
    limits.add_argument("--max-per-client", type=_count, metavar="N",
                        help=f"connections at once from one client address, a /64 for IPv6 (default "
                             f"{DEFAULT_LIMITS.connections_per_client}; 0: no cap); not applied to "
                             f"--client-limit-exempt")
    limits.add_argument("--client-limit-exempt", type=_networks, metavar="CIDR,...",
                        help="clients --max-per-client and the AUTH failure budget do not apply to "
                             "(default: loopback, 127.0.0.0/8,::1, so local load tests are not capped; "
                             "none: every client)")
    limits.add_argument("--command-timeout", type=_timeout, metavar="SECONDS",
                        help=f"time for a whole command line, trickled or not (default "
                             f"{DEFAULT_LIMITS.server_idle_timeout:g}, RFC 5321 4.5.3.2.7)")
    limits.add_argument("--data-timeout", type=_timeout, metavar="SECONDS",
                        help=f"time a message's content starts with; it earns more at "
                             f"{DEFAULT_LIMITS.min_data_rate} octets/s (default "
                             f"{DEFAULT_LIMITS.server_data_timeout:g})")
    limits.add_argument("--auth-delay", type=_seconds, metavar="SECONDS",
                        help=f"a failed AUTH is answered after this times the client's failures so far "
                             f"(default {DEFAULT_LIMITS.auth_failure_delay:g}; 0: at once)")


_LIMIT_OPTIONS = {
    "max_connections": "connections", "max_per_client": "connections_per_client",
    "command_timeout": "server_idle_timeout", "data_timeout": "server_data_timeout",
    "auth_delay": "auth_failure_delay",
}


def configure_parser(serve: argparse.ArgumentParser) -> None:
    """Add the ``serve`` options to its (sub)parser."""
    net = serve.add_argument_group("listening")
    net.add_argument("--host", help=f"address to listen on (default {DEFAULT_HOST})")
    net.add_argument("--port", type=_port, help=f"TCP port (default {DEFAULT_PORT}; 0 picks a free one)")
    net.add_argument("--unix", metavar="PATH",
                     help="listen on this Unix socket (instead of TCP, unless --host/--port are given too)")
    net.add_argument("--unix-mode", type=_unix_mode, metavar="MODE",
                     help="the --unix socket's permissions, octal (default 0666, as Postfix's own sockets, so "
                          "an MTA's LMTP client running as another user can connect; limit access with the "
                          "directory it is in)")
    net.add_argument("--lmtp", action="store_true", help="speak LMTP (RFC 2033) rather than SMTP")
    net.add_argument("--hostname", help="our name in the greeting and EHLO reply (default: this machine's)")
    net.add_argument("--proxy-protocol", action="store_true",
                     help="expect a PROXY v1/v2 header on each connection (behind HAProxy and the like)")
    net.add_argument("--proxy-from", type=_network, nargs="+", metavar="CIDR",
                     help="the networks the proxies connect from (default 127.0.0.0/8 ::1); with "
                          "--proxy-protocol, any other peer is disconnected unread")
    net.add_argument("--max-size", type=_size, metavar="BYTES",
                     help=f"largest message accepted, advertised as SIZE (default {DEFAULT_LIMITS.message_size})")
    net.add_argument("--max-line", type=_line_length, metavar="OCTETS",
                     help=f"longest text line accepted in a message, CRLF included; a longer one "
                          f"refuses the message with 550 5.6.0 (default {DEFAULT_LIMITS.text_line}, "
                          f"RFC 5321 4.5.3.1.6, and the least it allows; 0: no limit)")
    net.add_argument("--workers", type=_workers, default=1, metavar="N",
                     help="serve from N processes on the one address (default 1; auto: one per usable core); "
                          "a worker that dies is restarted; the limits below apply to each worker")
    net.add_argument("--grace", type=_seconds, default=5.0, metavar="SECONDS",
                     help="on SIGINT/SIGTERM, how long messages in progress may take to end (default 5)")
    tls = serve.add_argument_group("TLS")
    tls.add_argument("--tls-cert", metavar="FILE", help="PEM certificate chain; offers STARTTLS")
    tls.add_argument("--tls-key", metavar="FILE", help="PEM private key (default: in the --tls-cert file)")
    tls.add_argument("--implicit-tls", action="store_true",
                     help="TLS from the first byte (port 465 style) instead of STARTTLS")
    auth = serve.add_argument_group("AUTH")
    auth.add_argument("--auth-file", metavar="FILE",
                      help="lines user:password; offers AUTH PLAIN, LOGIN, CRAM-MD5 and requires it before MAIL")
    auth.add_argument("--auth-accept-any", action="store_true",
                      help="offer AUTH PLAIN, LOGIN, CRAM-MD5 and accept any user and password (or none: MAIL "
                      "without AUTH is taken too), so an application configured with credentials sends here "
                      "unchanged; the user is recorded with each message. Allowed without TLS, as a catcher "
                      "on loopback needs (it checks nothing, so nothing to protect; but the credentials cross "
                      "the network in plaintext if --host is not loopback)")
    auth.add_argument("--allow-plaintext-auth", action="store_true",
                      help="allow AUTH without TLS (otherwise refused with 538)")
    where = serve.add_argument_group("what happens to messages (one of)")
    mode = where.add_mutually_exclusive_group()
    mode.add_argument("--maildir", metavar="DIR", help=f"store in this Maildir (the default, {DEFAULT_MAILDIR})")
    mode.add_argument("--print", action="store_true",
                      help="print each whole message to stdout, as smtpd's DebuggingServer did")
    mode.add_argument("--sink", action="store_true", help="accept and discard")
    mode.add_argument("--relay", type=_host_port, metavar="HOST:PORT", help="forward to another server")
    where.add_argument("--relay-tls", nargs="?", const="starttls", metavar="MODE",
                       choices=["starttls", "implicit", "opportunistic", "none"],
                       help="TLS towards the relay: starttls (the bare flag), implicit, opportunistic or none "
                       "(the default); certificates are verified")
    where.add_argument("--relay-auth", type=user_password, metavar="USER:PASSWORD",
                       help="credentials for the relay (needs --relay-tls)")
    _add_limit_options(serve)
    serve.add_argument_group("speed").add_argument(
        "--loop", choices=LOOPS, default="auto",
        help="the event loop: asyncio's own, or uvloop (pip install 'mailwire[uvloop]'), which spends less "
             "CPU per message; auto (the default): uvloop when it is installed")
    serve_web.add_options(serve)
    serve_relay.add_options(serve)
    serve_chaos.add_options(serve)
    serve_retention.add_options(serve)
    serve_queue.add_options(serve)
    out = serve.add_argument_group("output")
    out.add_argument("-q", "--quiet", action="store_true", help="no line per message on stdout")
    out.add_argument("-v", "--verbose", action="count", default=0, help="log to stderr (-vv: debug)")


# -- the --auth-file ---------------------------------------------------------------


def read_auth_file(path: str) -> dict[str, str]:
    """``user:password`` lines (blank lines and ``#`` comments skipped) as a dict."""
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except UnicodeDecodeError:
        raise UsageError(f"cannot read --auth-file {path}: not UTF-8 text") from None
    except OSError as err:
        raise UsageError(f"cannot read --auth-file {path}: {err.strerror or err}") from None
    users: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        user, sep, password = line.partition(":")
        if not sep or not user:
            raise UsageError(f"--auth-file {path} line {number}: expected user:password")
        if user in users:
            raise UsageError(f"--auth-file {path} line {number}: user {user!r} appears twice")
        users[user] = password
    if not users:
        raise UsageError(f"--auth-file {path} has no user:password line")
    return users


# -- from options to a server ------------------------------------------------------------


def _tls_context(cert: str, key: str | None) -> ssl.SSLContext:
    for option, path in (("--tls-cert", cert), ("--tls-key", key)):
        if path is not None:
            try:
                with open(path, "rb"):
                    pass
            except OSError as err:
                raise UsageError(f"cannot read {option} {path}: {err.strerror or err}") from None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as err:
        files = cert if key is None else f"{cert} and {key}"
        raise UsageError(f"cannot use {files} as a certificate and key: {getattr(err, 'reason', None) or err}") from None
    return context


def _check_conflicts(args: argparse.Namespace) -> None:
    needs = [
        (args.tls_key and not args.tls_cert, "--tls-key needs --tls-cert"),
        (args.implicit_tls and not args.tls_cert, "--implicit-tls needs --tls-cert and --tls-key"),
        (args.allow_plaintext_auth and not args.auth_file and not args.auth_accept_any,
         "--allow-plaintext-auth needs --auth-file"),
        (args.auth_accept_any and args.auth_file, "--auth-accept-any and --auth-file: give one"),
        (args.relay_tls is not None and args.relay is None, "--relay-tls needs --relay"),
        (args.unix_mode is not None and args.unix is None, "--unix-mode needs --unix"),
        (args.proxy_from is not None and not args.proxy_protocol, "--proxy-from needs --proxy-protocol"),
        (args.relay_auth is not None and args.relay is None, "--relay-auth needs --relay"),
        (args.relay_auth is not None and args.relay is not None and args.relay_tls in (None, "none"),
         "--relay-auth needs --relay-tls (credentials would cross the network in plaintext)"),
        (args.print and args.workers > 1,
         "--print needs --workers 1 (whole messages from several processes would mix on stdout)"),
        (args.workers > 1 and not hasattr(os, "fork"), "--workers above 1 needs os.fork (POSIX)"),
    ]
    for conflict, message in needs:
        if conflict:
            raise UsageError(message)
    serve_queue.check_conflicts(args)


def _open_maildir(path: str) -> Maildir:
    """A Maildir at ``path``: created if missing; an empty directory gets its
    tmp/new/cur; anything else that is not a Maildir is refused."""
    subdirs = ("tmp", "new", "cur")
    try:
        if os.path.isdir(path) and not all(os.path.isdir(os.path.join(path, d)) for d in subdirs):
            if set(os.listdir(path)) - set(subdirs):
                raise RuntimeFailure(f"--maildir {path} is a directory but not a Maildir (no tmp/new/cur)")
            for d in subdirs:
                os.makedirs(os.path.join(path, d), 0o700, exist_ok=True)
        elif os.path.exists(path) and not os.path.isdir(path):
            raise RuntimeFailure(f"--maildir {path} exists and is not a directory")
        return Maildir(path)
    except OSError as err:
        raise RuntimeFailure(f"cannot create the Maildir {path}: {err.strerror or err}") from None


def _delivery(args: argparse.Namespace) -> tuple[Backend, str, bool]:
    """The backend, the banner's words for it, and whether to report each message."""
    if args.queue is not None:
        front, storing = serve_queue.backend(args)
        return front, storing, not args.quiet
    if args.print:
        return Printer(), "printing messages to stdout", False
    if args.sink:
        return Sink(), "discarding messages (--sink)", not args.quiet
    if args.relay is not None:
        host, port = args.relay
        tls: TLSMode = args.relay_tls or "none"
        try:
            relay = Relay(host, port, tls=tls, auth=args.relay_auth)
        except (ValueError, TypeError) as err:
            raise UsageError(f"--relay: {err}") from None
        return relay, f"relaying to {host}:{port} (TLS: {tls})", not args.quiet
    path = args.maildir or DEFAULT_MAILDIR
    return _open_maildir(path), f"storing in {path} (Maildir)", not args.quiet


def plan(args: argparse.Namespace) -> Plan:
    """Check the options and build the server's parts (UsageError / RuntimeFailure)."""
    _check_conflicts(args)
    context = _tls_context(args.tls_cert, args.tls_key) if args.tls_cert else None
    users = read_auth_file(args.auth_file) if args.auth_file else None
    settings: dict[str, Any] = {
        "lmtp": args.lmtp, "tls_context": context, "implicit_tls": args.implicit_tls,
        "auth_mechanisms": AUTH_MECHANISMS, "allow_plaintext_auth": args.allow_plaintext_auth,
        "proxy_protocol": args.proxy_protocol,
    }
    if args.hostname:
        settings["hostname"] = args.hostname
    limits: dict[str, int | float] = {
        field: getattr(args, option) for option, field in _LIMIT_OPTIONS.items() if getattr(args, option) is not None
    }
    if args.client_limit_exempt is not None:
        settings["client_limit_exempt"] = args.client_limit_exempt
    if args.unix_mode is not None:
        settings["unix_mode"] = args.unix_mode
    if args.proxy_from is not None:
        settings["proxy_from"] = tuple(args.proxy_from)
    if args.max_size is not None:
        limits["message_size"] = args.max_size
    if args.max_line is not None:
        limits["text_line"] = args.max_line
    if limits:
        settings["limits"] = DEFAULT_LIMITS.with_(**limits)
    backend, storing, report = _delivery(args)
    if users is not None:
        settings.update(authenticator=Users(users), require_auth=True)
    elif args.auth_accept_any:
        settings.update(authenticator=AcceptAny(), allow_plaintext_auth=True)
    if report:
        settings["on_delivered"] = Reporter()
    serve_chaos.configure(args, settings)
    config = ServerConfig(**settings)
    tcp = None
    if args.unix is None or args.host is not None or args.port is not None:
        tcp = (args.host or DEFAULT_HOST, DEFAULT_PORT if args.port is None else args.port)
    if users is not None and context is None and not args.allow_plaintext_auth:
        log.warning("--auth-file without --tls-cert: AUTH is refused over plaintext, so no client can "
                    "send; add --tls-cert or --allow-plaintext-auth")
    if args.auth_accept_any and context is None and tcp is not None and not _loopback(tcp[0]):
        log.warning("--auth-accept-any without --tls-cert on %s: the credentials clients send cross the "
                    "network in plaintext", tcp[0])
    checked = Plan(backend, config, tcp, args.unix, args.grace, storing, args.workers,
                   lambda: _delivery(args)[0])
    serve_web.attach(args, checked)
    serve_retention.attach(args, checked)
    serve_queue.attach(args, checked)
    return checked


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _setup_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s: %(message)s")


def run(args: argparse.Namespace) -> int:
    """``mailwire serve`` with parsed arguments; the exit code."""
    _setup_logging(args.verbose)
    try:
        checked = plan(args)
        # Before any loop is made: forked workers make theirs from the same policy.
        log.info("event loop: %s; core: %s", use_loop(args.loop), "compiled" if __compiled__ else "pure Python")
        return asyncio.run(serve(checked)) if checked.workers == 1 else serve_workers(checked)
    except UsageError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except RuntimeFailure as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return EXIT_RUNTIME
    except KeyboardInterrupt:  # before the signal handlers were in place
        return 130

"""``mailwire serve``'s web inbox: its options, and the choice of whether it runs.

The web inbox (``mailwire.web``: Mailpit's API v1 over the inbox) runs
beside the SMTP listener when messages go to the Maildir store (the
default) and the extra is installed: the Maildir backend is then the
inbox's ``Catcher`` (it indexes what it stores), and the listener is a
companion of the server (``serve_run.Plan.companions``), started and
stopped on its event loop. Where it listens: ``--web HOST:PORT``, by
default 127.0.0.1:8026, or a free port when the SMTP port is ``--port 0``
(a test or script that asks for any free SMTP port would otherwise have
its several servers fight over 8026). ``--no-web`` turns it off.

It does not run, with one line on stderr saying why, without the extra
(``pip install 'mailwire[web]'``) or with ``--workers`` above 1 (the
supervisor runs no event loop, and one worker's inbox would see only its
own share of the arrivals); asked for explicitly (``--web``, ``--web-auth``,
``--release-to``: releasing is the inbox's, ``serve_relay.py``)
in either case, or with ``--print``, ``--sink`` or ``--relay`` (nothing is
kept to show), it is a usage error. Off loopback it warns that anyone who
can reach it reads the mail, unless ``--web-auth USER:PASSWORD`` is given.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys

from ..server.backends import Maildir
from ..web.hosts import is_loopback
from . import serve_relay
from .options import UsageError, user_password
from .serve_run import PROG, Plan, RuntimeFailure

__all__ = ["add_options", "attach", "DEFAULT_WEB", "INSTALL_HINT"]

DEFAULT_WEB = ("127.0.0.1", 8026)
INSTALL_HINT = f"{PROG}: the web inbox needs aiohttp and nh3: pip install 'mailwire[web]' (serving SMTP only)"


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT (port 0: any free one), not {text!r}")
    return host.strip("[]"), int(port)


def add_options(serve: argparse.ArgumentParser) -> None:
    web = serve.add_argument_group("web inbox (Mailpit's API v1; needs mailwire[web])")
    web.add_argument("--web", type=_host_port, metavar="HOST:PORT",
                     help=f"where the web inbox listens (default {DEFAULT_WEB[0]}:{DEFAULT_WEB[1]}; "
                          f"with --port 0, a free port); only with the Maildir store")
    web.add_argument("--no-web", action="store_true", help="no web inbox: SMTP only")
    web.add_argument("--web-auth", type=user_password, metavar="USER:PASSWORD",
                     help="require HTTP basic auth with these credentials")


def _available() -> bool:
    try:
        return all(importlib.util.find_spec(name) is not None for name in ("aiohttp", "nh3"))
    except (ImportError, ValueError):  # a broken install, or a module blocked in sys.modules
        return False


def attach(args: argparse.Namespace, plan: Plan) -> None:
    """Run the web inbox beside ``plan``'s server if it should (see above)."""
    relay = serve_relay.relay(args)
    asked = args.web is not None or args.web_auth is not None or relay is not None
    if args.no_web:
        if asked:
            raise UsageError("--no-web contradicts --web, --web-auth and --release-to")
        return
    if not isinstance(plan.backend, Maildir):
        if asked:
            raise UsageError("the web inbox shows the Maildir store: --web needs it, as --web-auth and --release-to "
                             "do (not --print, --sink or --relay)")
        return
    if plan.workers > 1:
        if asked:
            raise UsageError("the web inbox runs with --workers 1 only: drop --workers, "
                             "or --web/--web-auth/--release-to")
        print(f"{PROG}: no web inbox with --workers above 1 (--no-web silences this)", file=sys.stderr)
        return
    if not _available():
        if asked:
            raise UsageError("--web needs aiohttp and nh3: pip install 'mailwire[web]'")
        print(INSTALL_HINT, file=sys.stderr)
        return
    from ..web.serve import WebInbox, open_inbox

    host, port = args.web if args.web is not None else DEFAULT_WEB
    if args.web is None and plan.tcp is not None and plan.tcp[1] == 0:
        port = 0
    try:
        inbox, catcher = open_inbox(plan.backend.path)
    except Exception as err:  # OSError, sqlite3.Error: the index cannot be made
        raise RuntimeFailure(f"cannot open the inbox's index in {plan.backend.path}: {err}") from None
    web = WebInbox(inbox, host, port, auth=args.web_auth, relay=relay, catcher=catcher)
    plan.backend = catcher
    plan.config = web.hook(plan.config)
    plan.companions = (*plan.companions, web)
    if not is_loopback(host):
        protection = "it asks for --web-auth's password" if args.web_auth else "add --web-auth USER:PASSWORD"
        print(f"{PROG}: warning: the web inbox listens on {host}, beyond this machine: whoever reaches it "
              f"reads the mail ({protection}; plain HTTP)", file=sys.stderr)

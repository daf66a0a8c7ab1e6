"""The ``mailwire`` command line.

``mailwire send`` (``send``, run by ``send_run``) sends one message, or many
for load; ``mailwire serve`` (``serve``, run by ``serve_run``) runs a local
server that keeps what it receives; ``mailwire sendmail`` (``sendmail``) is
the ``sendmail`` command, and so is ``mailwire`` run under the name
``sendmail`` (a symlink). This module only registers them and dispatches;
``sendmail`` parses its own arguments, sendmail's way (its exit codes are
``sysexits.h``'s). Every error a user can cause (a bad argument, an unreachable
server, a refusal, a port in use) ends in one clear line on stderr and a
non-zero exit code, never a traceback: argument errors exit 2 without the
usage block argparse prints.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import NoReturn, Sequence

from .. import __compiled__, __version__
from . import queue, send, sendmail, serve, worker
from .loop import describe

__all__ = ["main"]

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """An argument error is one line (and exit 2), not the usage block too."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _Version(argparse.Action):
    """``--version``, worked out only when asked (it looks for uvloop)."""

    def __init__(self, option_strings: Sequence[str], dest: str, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> NoReturn:
        core = "compiled core (mypyc)" if __compiled__ else "pure Python"
        print(f"mailwire {__version__}: {core}; event loop: {describe()}")
        parser.exit()


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mailwire", description="SMTP on both ends of the wire.")
    parser.add_argument("--version", action=_Version, help="say the version, the core (pure Python or "
                        "compiled) and the event loops there are, and exit")
    commands = parser.add_subparsers(dest="command", required=True)
    send_parser = commands.add_parser(
        "send", help="send a message, or many (a mailbox, --repeat) over concurrent connections",
        description="Send one message (composed from --from/--to/--subject/--body, an .eml file, or "
        "stdin) or many (--mbox, --maildir, --repeat) over -c N connections, then print each "
        "recipient's reply (one message) or a summary. Exit 0: every recipient accepted every "
        "message; 1: something was refused or failed; 2: bad arguments; 3: the server could not "
        "be reached.",
    )
    send.configure_parser(send_parser)
    serve_parser = commands.add_parser(
        "serve", help="run a local SMTP/LMTP server that keeps what it receives",
        description="A local SMTP (or LMTP) server: by default on 127.0.0.1:8025, storing every "
        "message in the Maildir ./mail and printing one line per message. SIGINT or SIGTERM "
        "stop it cleanly.",
    )
    serve.configure_parser(serve_parser)
    worker.configure_parser(commands.add_parser(
        "worker", help="deliver what the durable queue holds (Maildir, LMTP or relay), until SIGTERM",
        description="Drain a durable queue (--queue redis://HOST:PORT/STREAM) as one consumer of a group: "
        "deliver each entry (--maildir, --lmtp, --lmtp-unix or --relay), then acknowledge it; retry "
        "temporary failures, bounce permanent ones. SIGTERM or SIGINT: finish what is under way, exit 0.",
    ))
    queue.configure_parser(commands.add_parser(
        "queue", help="the durable queue: stats (length, pending, oldest age) or health",
        description="Look at a durable queue: 'stats' (add --json for scripts) or 'health' (exit 0 if "
        "the broker answers, 1 if not).",
    ))
    commands.add_parser(
        "sendmail", add_help=False, help="the sendmail command: send the message on stdin "
        "(-t, -i, -f ...; mailwire sendmail --help)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None and os.path.basename(sys.argv[0]) == "sendmail":
        return sendmail.main(sys.argv[1:], "sendmail")
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["sendmail"]:
        return sendmail.main(argv[1:], "mailwire sendmail")
    args = _parser().parse_args(argv)
    if args.command == "send":
        return send.run(args)
    if args.command == "serve":
        return serve.run(args)
    if args.command == "worker":
        return worker.run(args)
    if args.command == "queue":
        return queue.run(args)
    return EXIT_USAGE  # pragma: no cover - argparse enforces the choice


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

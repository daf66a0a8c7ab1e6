"""The ``mailwire`` command line.

``mailwire send`` sends one message with the native client; ``mailwire serve``
(in ``cli_serve``) runs a local server that keeps what it receives. Every
error a user can cause (a bad argument, an unreachable server, a refusal, a
port in use) ends in one clear line on stderr and a non-zero exit code, never
a traceback: argument errors exit 2 without the usage block argparse prints.
"""

from __future__ import annotations

import argparse
import socket
import ssl
import sys
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import NoReturn, Sequence

from . import cli_serve
from .client.sync import SMTPClient
from .errors import MailwireError, SMTPError

__all__ = ["main"]

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, not {text!r}")
    return host.strip("[]"), int(port)


def _auth(text: str) -> tuple[str, str]:
    user, sep, password = text.partition(":")
    if not sep:
        raise argparse.ArgumentTypeError("expected USER:PASSWORD")
    return user, password


class _Parser(argparse.ArgumentParser):
    """An argument error is one line (and exit 2), not the usage block too."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mailwire", description="SMTP on both ends of the wire.")
    commands = parser.add_subparsers(dest="command", required=True)
    send = commands.add_parser("send", help="send one message")
    send.add_argument("--server", type=_address, default=("127.0.0.1", 25), metavar="HOST:PORT",
                      help="where to send (default 127.0.0.1:25)")
    send.add_argument("--from", dest="sender", required=True, help="envelope and header sender")
    send.add_argument("--to", action="append", required=True, help="recipient (repeatable)")
    send.add_argument("--subject", default="", help="Subject header")
    send.add_argument("--body", default="", help="message text (default: read stdin if not a terminal)")
    send.add_argument("--tls", choices=["starttls", "implicit", "none", "opportunistic"],
                      default="opportunistic", help="TLS mode (default: opportunistic)")
    send.add_argument("--auth", type=_auth, metavar="USER:PASSWORD")
    send.add_argument("--insecure", action="store_true", help="do not verify the server certificate")
    send.add_argument("--timeout", type=float, default=30.0)
    serve = commands.add_parser(
        "serve", help="run a local SMTP/LMTP server that keeps what it receives",
        description="A local SMTP (or LMTP) server: by default on 127.0.0.1:8025, storing every "
        "message in the Maildir ./mail and printing one line per message. SIGINT or SIGTERM "
        "stop it cleanly.",
    )
    cli_serve.configure_parser(serve)
    return parser


def _message(args: argparse.Namespace) -> EmailMessage:
    body = args.body
    if not body and not sys.stdin.isatty():
        body = sys.stdin.read()
    msg = EmailMessage()
    msg["From"] = args.sender
    msg["To"] = ", ".join(args.to)
    msg["Subject"] = args.subject
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid()
    msg.set_content(body)
    return msg


def _send(args: argparse.Namespace) -> int:
    context = None
    if args.insecure:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    host, port = args.server
    try:
        with SMTPClient(host, port, tls=args.tls, auth=args.auth, timeout=args.timeout,
                        ssl_context=context, allow_plaintext_auth=False) as client:
            result = client.send(_message(args), args.sender, args.to)
    except SMTPError as err:
        print(f"mailwire send: refused: {err}", file=sys.stderr)
        return EXIT_REFUSED
    except (OSError, socket.gaierror) as err:
        print(f"mailwire send: cannot reach {host}:{port}: {err}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except (MailwireError, ValueError) as err:
        print(f"mailwire send: {err}", file=sys.stderr)
        return EXIT_REFUSED
    for rcpt, reply in result.recipients.items():
        print(f"{rcpt}: {reply}")
    return EXIT_OK if result.ok else EXIT_REFUSED


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "send":
        return _send(args)
    if args.command == "serve":
        return cli_serve.run(args)
    return EXIT_USAGE  # pragma: no cover - argparse enforces the choice


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

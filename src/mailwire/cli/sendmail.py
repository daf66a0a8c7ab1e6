"""``mailwire sendmail``: the ``sendmail`` command line, handing the message on stdin to an SMTP server.

Programs that send mail by running ``/usr/sbin/sendmail`` (PHP's ``mail()``
runs ``sendmail -t -i``, cron ``sendmail -i -FCronDaemon -B8BITMIME -oem
user``, git send-email ``sendmail -i -f me@x you@y``, mutt ``sendmail -oem
-oi -- you@y``) get the local catcher (``mailwire serve``'s 127.0.0.1:8025)
or any SMTP server instead of a local MTA. It takes Postfix's sendmail
options: those that mean something for one message sent at once (``-t``,
``-i``/``-oi``, ``-f``/``-r``, ``-F``, ``-B``, the DSN ones ``-N``/``-R``/
``-V``, ``-v``) do it; the rest are accepted and ignored as Postfix does
(``-o*``, ``-G``, ``-U``, ``-h N``, ``-L``, ...); ``-bs`` (SMTP on stdin
and stdout, Symfony Mailer's and Laravel's default) joins the pipes to the
server (``sendmail_smtp``, as Mailpit's does); the other modes (``-bp``,
``-bi``/``-I``, ``-bd``, ``-bv``, ``-q``) are refused with one line, exit
64: there is no queue, alias file or daemon behind it. Where to send comes from ``--server``/``-S``
(Mailpit's) or ``--unix`` and the TLS and AUTH options ``mailwire send``
has (``options.py``), or from the environment: ``MAILWIRE_SMTP``
(``HOST:PORT`` or ``unix:PATH``), ``MAILWIRE_SMTP_TLS``,
``MAILWIRE_SMTP_AUTH`` (``USER:PASS``, kept out of ``ps``) and
``MAILWIRE_FROM`` (the default sender; else ``user@host``, as sendmail).

The message is read as ``sendmail_message`` says (its rules), the header
section first, then at most ``WHOLE`` octets of body: a message that ends
there (nearly all) is sent whole, its SIZE declared and its 8-bit content
known; a longer one streams from stdin as it is sent, never held whole, with
BODY=8BITMIME declared when the server offers it (its content is not known
ahead). Nothing is printed on success. A failure is one line on stderr and
sendmail's exit code from ``sysexits.h``: 64 usage, 65 a message that
cannot be sent (a bad address in its headers), 66 no stdin, 68 unknown
host, 69 refused (a 5xx, failed TLS or AUTH), 74 stdin failed mid-message,
75 try again later (a 4xx, server unreachable, timeout: where sendmail
would have queued the message), 76 the server broke the protocol.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import ssl
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import chain
from typing import Literal, NoReturn

from ..client.settings import TLS_MODES
from ..client.sync import SMTPClient
from ..errors import (
    AuthenticationError, DataRefused, MailwireError, NotSupportedError, RecipientsRefused,
    RemoteProtocolError, SMTPError, TLSRequiredError,
)
from ..protocol.params import BodyType, MailOptions, Notify, RcptOptions
from ..reply import Reply
from ..result import SendResult
from .options import (
    Destination, UsageError, add_tls_auth_options, addresses, destination, seconds, server_address, user_password,
)
from .sendmail_smtp import relay_session
from .sendmail_message import DataError, Input, InputError, complete, local_sender, qualify, recipients

__all__ = ["main", "run"]

EX_OK, EX_USAGE, EX_DATAERR, EX_NOINPUT, EX_NOHOST, EX_UNAVAILABLE = 0, 64, 65, 66, 68, 69
EX_IOERR, EX_TEMPFAIL, EX_PROTOCOL = 74, 75, 76
_NOTIFY: tuple[Notify, ...] = ("SUCCESS", "DELAY", "FAILURE")
DEFAULT_SERVER = ("127.0.0.1", 8025)  # mailwire serve's default address
WHOLE = 1 << 20  # octets of body read ahead: a message that ends within them is sent whole
ENVIRONMENT = ("MAILWIRE_SMTP", "MAILWIRE_SMTP_TLS", "MAILWIRE_SMTP_AUTH", "MAILWIRE_FROM")
_MODES = {
    "m": "", "h": "", "H": "",  # deliver (the default); -bh and -bH are ignored, as Postfix does
    "s": "", "p": "-bp (the queue: there is none)",
    "i": "-bi (the alias database: there is none)", "d": "-bd (a daemon: run mailwire serve)",
    "l": "-bl (a daemon: run mailwire serve)", "v": "-bv (address verification)", "t": "-bt (address test mode)",
}


class Failed(Exception):
    """Not sent: one line on stderr, exit ``code``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    """A mistake is a UsageError (one line, exit 64), not argparse's exit 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _body_type(text: str) -> BodyType:
    for value in ("7BIT", "8BITMIME"):
        if text.upper() == value:
            return value
    raise argparse.ArgumentTypeError(f"expected 7BIT or 8BITMIME, not {text!r}")


def _notify(text: str) -> tuple[Notify, ...]:
    """``never`` (NOTIFY=NEVER: ``()``) or some of ``success,delay,failure``."""
    words = [word.strip().upper() for word in text.split(",")]
    if words == ["NEVER"]:
        return ()
    chosen = tuple(n for n in _NOTIFY if n in words)
    if not words or len(chosen) != len(set(words)):
        raise argparse.ArgumentTypeError(f"expected never, or some of success,delay,failure, not {text!r}")
    return chosen


def _ret(text: str) -> Literal["FULL", "HDRS"]:
    for value in ("FULL", "HDRS"):
        if text.upper() == value:
            return value
    raise argparse.ArgumentTypeError(f"expected hdrs or full, not {text!r}")


def parser(prog: str = "mailwire sendmail") -> argparse.ArgumentParser:
    """sendmail's options (Postfix's), and where to send."""
    parser = _Parser(
        prog=prog, add_help=False, allow_abbrev=False,
        usage="%(prog)s [options] [--] [recipient ...] < message",
        description="Send the message on stdin, as sendmail does, to an SMTP server: by default mailwire "
        "serve's 127.0.0.1:8025 ($MAILWIRE_SMTP: HOST:PORT or unix:PATH). Exit 0 sent; 64 bad usage; 65 "
        "bad message; 66 no stdin; 68 unknown host; 69 refused (5xx, TLS, AUTH); 75 try later (4xx, "
        "unreachable); 76 protocol error.",
    )
    parser.add_argument("recipients", nargs="*", metavar="recipient",
                        help="where to send (each may be a comma-separated list; a bare name gets @this-host)")
    msg = parser.add_argument_group("sendmail's options")
    msg.add_argument("-t", dest="extract", action="store_true",
                     help="recipients also from the To, Cc and Bcc fields (added to any given)")
    msg.add_argument("-i", dest="ignore_dots", action="store_true",
                     help="a line holding only '.' does not end the message (-oi too)")
    msg.add_argument("-f", "-r", dest="sender", metavar="SENDER",
                     help="envelope sender ('' or '<>': none; default $MAILWIRE_FROM, else user@host)")
    msg.add_argument("-F", dest="full_name", metavar="NAME",
                     help="full name in the From field added to a message without one (default $NAME)")
    msg.add_argument("-B", dest="body", type=_body_type, metavar="TYPE",
                     help="7BIT or 8BITMIME, declared when the server offers 8BITMIME")
    msg.add_argument("-N", dest="notify", type=_notify, metavar="DSN",
                     help="delivery notices: never, or success,delay,failure (when the server offers DSN)")
    msg.add_argument("-R", dest="ret", type=_ret, metavar="RET", help="DSN return: hdrs or full")
    msg.add_argument("-V", dest="envid", metavar="ENVID", help="DSN envelope ID")
    msg.add_argument("-v", dest="verbose", action="count", default=0,
                     help="the SMTP dialog on stderr (AUTH redacted)")
    msg.add_argument("-o", dest="o_options", action="append", default=[], metavar="X",
                     help="-oi is -i; any other (-oem, -odb, -o7, -oA...) is accepted and ignored")
    msg.add_argument("-b", dest="mode", default="m", metavar="MODE",
                     help="-bm: send a message (the default); -bs: SMTP on stdin and stdout, relayed to "
                     "the server; -bp, -bi, -bd, -bv, -bt are refused")
    msg.add_argument("-I", dest="newaliases", action="store_true", help=argparse.SUPPRESS)
    msg.add_argument("-q", dest="queue", nargs="?", const="", help=argparse.SUPPRESS)
    for flag in ("-G", "-U", "-m", "-n"):
        msg.add_argument(flag, dest="ignored", action="append_const", const=flag, help=argparse.SUPPRESS)
    for option in ("-A", "-C", "-L", "-O", "-X", "-e", "-h", "-p"):
        msg.add_argument(option, dest="ignored", action="append", help=argparse.SUPPRESS)
    net = parser.add_argument_group("where to send (mailwire's)")
    net.add_argument("--server", "-S", type=server_address, metavar="HOST:PORT",
                     help="the SMTP server (default $MAILWIRE_SMTP, else 127.0.0.1:8025; port 25 if not given)")
    net.add_argument("--unix", metavar="PATH", help="a Unix socket instead of --server")
    net.add_argument("--timeout", type=seconds, default=30.0, metavar="SECONDS",
                     help="for connecting and for each reply (default 30)")
    net.add_argument("--helo", metavar="NAME", help="our name in EHLO (default: this host's)")
    sec = parser.add_argument_group("TLS and AUTH (also $MAILWIRE_SMTP_TLS, $MAILWIRE_SMTP_AUTH=USER:PASS)")
    add_tls_auth_options(sec)
    parser.add_argument("--help", action="help", help="show this help and exit")
    return parser


# -- options to a plan --------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """What to send where (``plan`` builds it from the options)."""

    where: Destination
    sender: str
    recipients: tuple[str, ...]
    extract: bool
    dot_ends: bool
    full_name: str | None
    body: BodyType | None
    notify: tuple[Notify, ...] | None
    ret: Literal["FULL", "HDRS"] | None
    envid: str | None
    smtp: bool = False  # -bs: SMTP on stdin and stdout


def _environment(args: argparse.Namespace, env: Mapping[str, str]) -> None:
    """Fill what the options left unsaid from the environment."""
    try:
        value = env.get("MAILWIRE_SMTP", "").strip()
        if args.server is None and args.unix is None and value:
            if value.startswith("unix:"):
                args.unix = value[5:]
            else:
                args.server = server_address(value)
        value = env.get("MAILWIRE_SMTP_TLS", "").strip()
        if args.tls is None and value:
            if value not in TLS_MODES:
                raise argparse.ArgumentTypeError(f"MAILWIRE_SMTP_TLS: expected one of {', '.join(TLS_MODES)}, "
                                                 f"not {value!r}")
            args.tls = value
        value = env.get("MAILWIRE_SMTP_AUTH", "")
        if args.auth is None and value:
            args.auth = user_password(value)
    except argparse.ArgumentTypeError as err:
        raise UsageError(f"in the environment: {err}") from None
    if args.sender is None:
        args.sender = env.get("MAILWIRE_FROM") or local_sender()


def _smtp_plan(args: argparse.Namespace) -> Plan:
    """``-bs``: where to connect, the program doing the talking (no AUTH or
    STARTTLS on its behalf; plain TCP unless --tls implicit)."""
    if args.auth is not None:
        raise UsageError("-bs: the program on stdin authenticates itself; --auth ($MAILWIRE_SMTP_AUTH) does not apply")
    if args.tls not in (None, "none", "implicit"):
        raise UsageError(f"-bs: the program on stdin speaks SMTP itself, so --tls {args.tls} cannot be done "
                         "for it (--tls implicit or none)")
    args.tls = args.tls or "none"
    where = destination(args, args.server, args.unix, default=DEFAULT_SERVER)
    return Plan(where, "", (), False, False, None, None, None, None, None, smtp=True)


def plan(args: argparse.Namespace, env: Mapping[str, str]) -> Plan:
    """Check the options (UsageError)."""
    if args.newaliases:
        raise UsageError("-I (the alias database: there is none) is not supported")
    why = _MODES.get(args.mode)
    if why is None:
        raise UsageError(f"-b{args.mode}: not a sendmail mode")
    if why:
        raise UsageError(f"{why} is not supported: mailwire sendmail only sends a message")
    if args.queue is not None:
        raise UsageError("-q (a queue run) is not supported: mailwire sendmail sends at once and keeps no queue")
    _environment(args, env)
    if args.mode == "s":
        return _smtp_plan(args)
    sender = args.sender.strip()
    if sender in ("", "<>"):
        sender = ""
    else:
        found = addresses([sender], "-f")
        if len(found) != 1:
            raise UsageError(f"-f {args.sender!r}: one address expected")
        sender = qualify(found[0])
    rcpts = [qualify(a) for a in addresses(args.recipients, "recipient")] if args.recipients else []
    if not rcpts and not args.extract:
        raise UsageError("no recipients: give them as arguments, or -t to take them from the message")
    where = destination(args, args.server, args.unix, default=DEFAULT_SERVER)
    return Plan(where, sender, tuple(rcpts), args.extract, not args.ignore_dots and "i" not in args.o_options,
                args.full_name if args.full_name is not None else env.get("NAME"),
                args.body, args.notify, args.ret, args.envid)


# -- reading and sending -------------------------------------------------------------


def _show(reply: Reply) -> str:
    return " ".join(str(reply).split())


def _code(reply: Reply) -> int:
    return EX_TEMPFAIL if 400 <= reply.code < 500 else EX_UNAVAILABLE


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _no_session(err: BaseException, target: str) -> Failed:
    """Why no session could be opened with ``target``, with its exit code."""
    if isinstance(err, ssl.SSLCertVerificationError):
        return Failed(EX_UNAVAILABLE, f"TLS with {target} failed: its certificate did not verify "
                      f"({err.verify_message or err.reason}); --ca FILE trusts its CA, --insecure skips the check")
    if isinstance(err, ssl.SSLError):
        return Failed(EX_UNAVAILABLE, f"TLS with {target} failed: {err.reason or err}")
    if isinstance(err, TLSRequiredError):
        return Failed(EX_UNAVAILABLE, f"{target} does not offer STARTTLS, and --tls or --auth needs it")
    if isinstance(err, AuthenticationError):
        return Failed(_code(err.reply), f"authentication failed at {target}: {_show(err.reply)}")
    if isinstance(err, SMTPError):
        return Failed(_code(err.reply), f"{target} refused the session: {_show(err.reply)}")
    if isinstance(err, RemoteProtocolError):
        return Failed(EX_PROTOCOL, f"{target} broke the protocol: {err}")
    if isinstance(err, socket.gaierror):
        return Failed(EX_NOHOST, f"cannot reach {target}: unknown host ({err.strerror or err})")
    # Refused, unreachable, timed out, closed: sendmail would have queued it and tried again.
    why = (err.strerror if isinstance(err, OSError) else None) or str(err) or type(err).__name__
    return Failed(EX_TEMPFAIL, f"cannot reach {target}: {why}")


def _connect(plan: Plan) -> SMTPClient:
    try:
        return SMTPClient(plan.where.host, plan.where.port, **plan.where.settings)
    except (MailwireError, OSError) as err:
        raise _no_session(err, plan.where.target) from None


def _smtp_session(plan: Plan) -> int:
    """``-bs``: the program on stdin and stdout talks to the server itself."""
    try:
        relay_session(plan.where)
    except OSError as err:
        raise _no_session(err, plan.where.target) from None
    return EX_OK


def _options(plan: Plan, client: SMTPClient, streamed: bool) -> tuple[MailOptions, RcptOptions | None]:
    """The MAIL and RCPT parameters the server can take: -B (or
    BODY=8BITMIME for a streamed message, whose content is unknown), DSN."""
    caps = client.capabilities
    body: BodyType | None = plan.body or ("8BITMIME" if streamed else None)
    options = MailOptions(body=body if body and caps.eightbitmime else None)
    if not caps.dsn:
        return options, None
    options = options.with_(ret=plan.ret, envid=plan.envid)
    return options, RcptOptions(notify=plan.notify) if plan.notify is not None else None


def _refused(result: SendResult) -> Failed:
    refused = result.refused
    worst = EX_UNAVAILABLE if any(r.code >= 500 for r in refused.values()) else EX_TEMPFAIL
    said = "; ".join(f"{rcpt}: {_show(reply)}" for rcpt, reply in refused.items())
    kept = len(result.accepted)
    return Failed(worst, f"refused for {said}" + (f" (sent to the other {kept})" if kept else ""))


def _send(plan: Plan, reader: Input, head: bytes, start: bytes) -> SendResult:
    """Read the body ahead (up to WHOLE), connect, send; the result (Failed, InputError)."""
    ahead, size = [start], len(start)
    pieces = reader.pieces()
    while size < WHOLE and not reader.ended:
        piece = next(pieces, b"")
        ahead.append(piece)
        size += len(piece)
    streamed = not reader.ended
    content: bytes | Iterable[bytes] = chain([head], ahead, pieces) if streamed else head + b"".join(ahead)
    client = _connect(plan)
    try:
        mail_options, rcpt_options = _options(plan, client, streamed)
        result = client.send(content, plan.sender, plan.recipients,
                             mail_options=mail_options, rcpt_options=rcpt_options)
    except (RecipientsRefused, DataRefused) as err:
        raise (_refused(err.result) if err.result is not None and err.result.refused
               else Failed(_code(err.reply), f"refused: {_show(err.reply)}")) from None
    except SMTPError as err:
        raise Failed(_code(err.reply), f"refused: {_show(err.reply)}") from None
    except (NotSupportedError, ValueError) as err:  # an address that needs SMTPUTF8, say
        raise Failed(EX_DATAERR, f"cannot send it to {plan.where.target}: {err}") from None
    except RemoteProtocolError as err:
        raise Failed(EX_PROTOCOL, f"{plan.where.target} broke the protocol: {err}") from None
    except (MailwireError, OSError) as err:
        raise Failed(EX_TEMPFAIL, f"not sent to {plan.where.target}: {err}") from None
    finally:
        if client.connected:
            client.quit()
        client.close()
    return result


def run(plan: Plan, stdin: object) -> int:
    """Read the message from ``stdin`` and send it as ``plan`` says; the exit code."""
    stream = getattr(stdin, "buffer", None)
    if stream is None:
        raise Failed(EX_NOINPUT, "no message: stdin is closed")
    reader = Input(stream, dot_ends=plan.dot_ends)
    try:
        lines, start = reader.head()
        rcpts = plan.recipients
        if plan.extract:
            rcpts = _unique([*rcpts, *(qualify(address) for address in recipients(lines))])
            if not rcpts:
                raise Failed(EX_USAGE, "no recipients: -t found no To, Cc or Bcc field, and none were given")
        head = complete(lines, sender=plan.sender, full_name=plan.full_name)
        result = _send(replace(plan, recipients=rcpts), reader, head, start)
    except DataError as err:
        raise Failed(EX_DATAERR, str(err)) from None
    except InputError as err:
        raise Failed(EX_IOERR if reader.octets else EX_NOINPUT, f"{err}; nothing was sent") from None
    if result.refused:
        raise _refused(result)
    for rcpt, reply in result.recipients.items():
        logging.getLogger("mailwire.sendmail").info("%s: %s", rcpt, _show(reply))
    return EX_OK


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Options and recipients in any order (``a@x -f me b@y``); after
    ``--`` only recipients (argparse's intermixed parsing drops those)."""
    end = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_intermixed_args(argv[:end])
    args.recipients += argv[end + 1:]
    return args


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """``sendmail ARGS``: the exit code (for the console script, ``mailwire
    sendmail`` and a ``sendmail`` symlink to ``mailwire``)."""
    if argv is None:
        argv = sys.argv[1:]
    prog = prog or ("sendmail" if os.path.basename(sys.argv[0]) == "sendmail" else "mailwire sendmail")
    try:
        args = _parse(parser(prog), list(argv))
        checked = plan(args, os.environ)
        if args.verbose:
            logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(name)s: %(message)s")
        return _smtp_session(checked) if checked.smtp else run(checked, sys.stdin)
    except UsageError as err:
        print(f"{prog}: {err} (see {prog} --help)", file=sys.stderr)
        return EX_USAGE
    except Failed as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return err.code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; nothing was sent", file=sys.stderr)
        return EX_TEMPFAIL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

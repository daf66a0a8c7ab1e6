"""``mailwire send``: its options, and the messages they name, as a ``Plan``.

Where messages come from: composed from ``--from/--to/--cc/--subject/--body``;
an ``.eml`` file (``--eml FILE`` or a positional FILE, ``-`` for stdin); stdin,
when it is not a terminal and no ``--body`` is given (a whole message if it
opens with a header block holding a From: field, else the body text); or an
mbox file or a Maildir (``--mbox``, ``--maildir``, read with the stdlib
``mailbox``). ``--repeat N`` sends the lot N times. Each message is read once
and kept as wire bytes with its envelope (from its headers unless
``--from``/``--to``/``--cc`` say otherwise; Bcc never goes on the wire), so a
load run spends its time on the network, not in the ``email`` package.

Everything that can be checked before connecting is checked here, and a
mistake is a ``UsageError``: one line on stderr, exit code 2. Sending the plan
(connections, progress, the summary, exit codes 0, 1 and 3) is
``send_run``'s part.
"""

from __future__ import annotations

import argparse
import email.policy
import email.utils
import logging
import mailbox
import os
import re
import sys
from email.message import EmailMessage
from email.parser import BytesHeaderParser

from ..client.message import Envelope, envelope_from_headers, flatten, needs_smtputf8
from .options import UsageError, add_tls_auth_options, addresses, destination, seconds, server_address
from .sendmail_message import FIELD, without_bcc
from .send_run import EXIT_USAGE, PROG, Item, Outgoing, Plan, execute

__all__ = ["configure_parser", "run", "plan", "UsageError"]


# -- arguments ------------------------------------------------------------------------


def _count(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 10_000_000:
        raise argparse.ArgumentTypeError(f"expected a whole number from 1, not {text!r}")
    return int(text)


def configure_parser(send: argparse.ArgumentParser) -> None:
    """Add the ``send`` options to its (sub)parser."""
    what = send.add_argument_group("the message: composed, a file, stdin or a mailbox")
    what.add_argument("file", nargs="?", metavar="FILE", help="an .eml file to send (- for stdin)")
    what.add_argument("--eml", metavar="FILE", help="the same as FILE")
    what.add_argument("--mbox", metavar="FILE", help="send every message of this mbox file")
    what.add_argument("--maildir", metavar="DIR", help="send every message of this Maildir")
    what.add_argument("--from", dest="sender", metavar="ADDRESS",
                      help="sender: From: and the envelope (with a file: the envelope sender only)")
    what.add_argument("--to", action="append", default=[], metavar="ADDRESS",
                      help="recipient, repeatable or comma-separated (with a file: replaces its recipients)")
    what.add_argument("--cc", action="append", default=[], metavar="ADDRESS", help="Cc recipient, as --to")
    what.add_argument("--subject", help="Subject header")
    what.add_argument("--body", help="message text (default: stdin, when it is not a terminal)")
    what.add_argument("--repeat", type=_count, default=1, metavar="N", help="send the message(s) N times (load)")
    net = send.add_argument_group("the server")
    net.add_argument("--server", type=server_address, metavar="HOST:PORT",
                     help="where to send (default 127.0.0.1:25; 465 with --tls implicit, 2003 with --lmtp)")
    net.add_argument("--unix", metavar="PATH", help="a Unix socket instead of --server")
    net.add_argument("--lmtp", action="store_true", help="speak LMTP (RFC 2033): a reply per recipient")
    net.add_argument("-c", "--connections", type=_count, default=1, metavar="N",
                     help="concurrent connections (default 1)")
    net.add_argument("--timeout", type=seconds, default=30.0, metavar="SECONDS",
                     help="for connecting and for each reply (default 30)")
    net.add_argument("--helo", metavar="NAME", help="our name in EHLO/LHLO (default: this host's)")
    sec = send.add_argument_group("TLS and AUTH")
    add_tls_auth_options(sec)
    out = send.add_argument_group("output")
    out.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    out.add_argument("-v", "--verbose", action="count", default=0,
                     help="log to stderr (-vv: debug, with every command and reply, AUTH redacted)")


# -- messages ---------------------------------------------------------------------------


_EOL = re.compile(rb"\r\n|\r|\n")


def _crlf(data: bytes) -> bytes:
    return _EOL.sub(b"\r\n", data)


def _outgoing(raw: bytes, mail_from: str | None, rcpt_to: tuple[str, ...] | None) -> Item:
    content = _crlf(raw)
    end = content.find(b"\r\n\r\n")
    head = content[: end + 2] if end >= 0 else content
    headers = BytesHeaderParser(policy=email.policy.compat32).parsebytes(head)
    try:
        envelope = envelope_from_headers(headers, mail_from, rcpt_to)
    except (ValueError, TypeError) as err:
        return str(err)
    if not envelope.rcpt_to:
        return "no recipients (no To, Cc or Bcc header; --to gives them)"
    return Outgoing(without_bcc(content, end), envelope.mail_from, envelope.rcpt_to)


def _is_message(data: bytes) -> bool:
    """Does ``data`` open with a header block that has a From: field?"""
    head = _crlf(data[:65536]).split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    return bool(FIELD.match(head[0])) and any(line.lower().startswith(b"from:") for line in head)


def _read(path: str, option: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as err:
        raise UsageError(f"cannot read {option} {path}: {err.strerror or err}") from None


def _mailbox(path: str, option: str) -> list[bytes]:
    try:
        if option == "--mbox":
            if not os.path.isfile(path):
                what = "not a file" if os.path.exists(path) else "no such file"
                raise UsageError(f"cannot read --mbox {path}: {what}")
            mbox = mailbox.mbox(path, create=False)
            try:
                found = [mbox.get_bytes(key) for key in mbox.iterkeys()]
            finally:
                mbox.close()
            why = "(an mbox file starts each message with a 'From ' line)"
        else:
            if not all(os.path.isdir(os.path.join(path, d)) for d in ("cur", "new")):
                raise UsageError(f"--maildir {path} is not a Maildir (no cur/ and new/ in it)")
            maildir = mailbox.Maildir(path, factory=None, create=False)
            found = [maildir.get_bytes(key) for key in sorted(maildir.iterkeys())]
            why = "(in cur/ and new/)"
    except OSError as err:
        raise UsageError(f"cannot read {option} {path}: {err.strerror or err}") from None
    if not found:
        raise UsageError(f"{option} {path} holds no message {why}")
    return found


def _compose(args: argparse.Namespace, mail_from: str | None, rcpt_to: list[str], body: str) -> Outgoing:
    if not mail_from:
        raise UsageError("no sender: give --from (or a message file with a From: header)")
    if not rcpt_to:
        raise UsageError("no recipients: give --to or --cc")
    msg = EmailMessage()
    try:
        msg["From"] = args.sender
        if args.to:
            msg["To"] = ", ".join(args.to)
        if args.cc:
            msg["Cc"] = ", ".join(args.cc)
        if args.subject is not None:
            msg["Subject"] = args.subject
        msg["Date"] = email.utils.formatdate(localtime=True)
        # The sender's domain, not make_msgid's default getfqdn(), which can stall on DNS.
        msg["Message-ID"] = email.utils.make_msgid(domain=mail_from.rpartition("@")[2] or "mailwire.invalid")
        msg.set_content(body)
    except (ValueError, TypeError) as err:
        raise UsageError(f"cannot compose the message: {err}") from None
    envelope = Envelope(mail_from, tuple(rcpt_to))
    return Outgoing(flatten(msg, utf8=needs_smtputf8(envelope), allow_8bit=False), mail_from, envelope.rcpt_to)


def _messages(args: argparse.Namespace) -> list[Item]:
    given = [(o, v) for o, v in (("FILE", args.file), ("--eml", args.eml), ("--mbox", args.mbox),
                                 ("--maildir", args.maildir)) if v is not None]
    if len(given) > 1:
        raise UsageError(f"{given[0][0]} and {given[1][0]}: give one message source")
    mail_from = None
    if args.sender is not None:
        senders = addresses([args.sender], "--from") if args.sender.strip() not in ("", "<>") else [""]
        if len(senders) != 1:
            raise UsageError(f"--from {args.sender!r}: one address expected")
        mail_from = senders[0]
    rcpt_to = addresses(args.to, "--to") + addresses(args.cc, "--cc")
    override = tuple(rcpt_to) or None
    if given:
        option, path = given[0]
        if args.subject is not None or args.body is not None:
            raise UsageError(f"--subject and --body compose a message; {option} brings its own")
        if option in ("--mbox", "--maildir"):
            return [_outgoing(raw, mail_from, override) for raw in _mailbox(path, option)]
        item = _outgoing(_read(path, option), mail_from, override)
        if isinstance(item, str):
            raise UsageError(f"cannot send {'stdin' if path == '-' else path}: {item}")
        return [item]
    body = args.body
    if body is None and sys.stdin is not None and not sys.stdin.isatty():
        data = sys.stdin.buffer.read()
        if args.subject is None and _is_message(data):
            item = _outgoing(data, mail_from, override)
            if isinstance(item, str):
                raise UsageError(f"cannot send the message on stdin: {item}")
            return [item]
        body = data.decode("utf-8", "replace")
    return [_compose(args, mail_from, rcpt_to, body or "")]


def plan(args: argparse.Namespace) -> Plan:
    """Check the arguments and read the messages (UsageError)."""
    where = destination(args, args.server, args.unix, lmtp=args.lmtp)
    items = _messages(args)
    return Plan(items, args.repeat, where.host, where.port, where.target, args.lmtp, args.connections,
                where.settings, args.quiet)


def _setup_logging(verbose: int) -> None:
    if not verbose:
        # The summary reports failures; the pool's warnings would repeat them.
        logging.getLogger("mailwire").addHandler(logging.NullHandler())
        logging.getLogger("mailwire").propagate = False
        return
    level = logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s: %(message)s")


def run(args: argparse.Namespace) -> int:
    """``mailwire send`` with parsed arguments; the exit code."""
    try:
        the_plan = plan(args)
    except UsageError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    _setup_logging(args.verbose)
    return execute(the_plan)

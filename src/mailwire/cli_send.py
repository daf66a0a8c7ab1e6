"""``mailwire send``: one message, or many for load, from the command line.

Where messages come from: composed from ``--from/--to/--cc/--subject/--body``;
an ``.eml`` file (``--eml FILE`` or a positional FILE, ``-`` for stdin); stdin,
when it is not a terminal and no ``--body`` is given (a whole message if it
opens with a header block holding a From: field, else the body text); or an
mbox file or a Maildir (``--mbox``, ``--maildir``, read with the stdlib
``mailbox``). ``--repeat N`` sends the lot N times. Each message is read once
and kept as wire bytes with its envelope (from its headers unless
``--from``/``--to``/``--cc`` say otherwise; Bcc never goes on the wire), so a
load run spends its time on the network, not in the ``email`` package.

How: one connection is opened first, as a check (reachable, TLS, AUTH), so a
mistake ends in one line before anything is queued. One message goes over it
and each recipient's reply is printed. Many go through ``SMTPPool`` (``-c N``
connections, each pipelining batches), or, for ``-c 1`` and for LMTP, which
the pool does not speak, over that first connection and N-1 like it. At most
two batches per connection are in flight, so memory stays flat however many
messages there are. When a connection fails mid-run the server is checked
again; if it cannot be reached any more, the rest is not sent.

Output: a tqdm progress bar on stderr when it is a terminal, else a plain line
every 10% or 5 s; then a summary on stdout (messages accepted, refused
recipients grouped by reply, connection errors apart). Exit codes: 0 every
message accepted by every recipient, 1 anything else, 2 a mistake in the
arguments, 3 the server could not be reached. All of it runs in one
``asyncio.run``; SIGINT or SIGTERM stops queueing, gives the messages in flight
a few seconds and prints the summary of what was done (exit 1); a second
signal stops at once.
"""

from __future__ import annotations

import argparse
import asyncio
import email.policy
import email.utils
import mailbox
import os
import re
import signal
import socket
import ssl
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Iterable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from typing import Any, Protocol, TypeVar

from .client.aio import AsyncLMTPClient, AsyncSMTPClient
from .client.message import Envelope, envelope_from_headers, flatten, needs_smtputf8
from .client.pool import SMTPPool
from .client.result import SendResult
from .client.settings import TLS_MODES, ClientSettings
from .errors import (
    AuthenticationError, ConnectionClosed, DataRefused, LocalProtocolError, MailwireError,
    NotSupportedError, RecipientsRefused, RemoteProtocolError, SMTPError, TLSRequiredError,
)
from .protocol.grammar import check_address
from .reply import Reply

__all__ = ["configure_parser", "run", "plan", "Plan", "Outgoing", "Tally", "UsageError"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
PROG = "mailwire send"
BATCH = 100  # messages a connection pipelines in one run (SMTPPool's batch)
GRACE = 5.0  # seconds the messages in flight get once the run is stopped
REASON_WORDS = 6  # refusals are grouped by code, enhanced code and this many words
T = TypeVar("T")


class UsageError(Exception):
    """A mistake in the arguments: one line, exit 2."""


class Unreachable(Exception):
    """The server cannot be reached: one line, exit 3."""


class Failure(Exception):
    """Reached, but no session (TLS, AUTH, a refused greeting): one line, exit 1."""


class _NotSent(RuntimeError):
    """The run stopped before this message was handed to a connection."""


# -- arguments ------------------------------------------------------------------------


def _server(text: str) -> tuple[str, int | None]:
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


def _user_password(text: str) -> tuple[str, str]:
    user, sep, password = text.partition(":")
    if not sep or not user:
        raise argparse.ArgumentTypeError("expected USER:PASSWORD")
    return user, password


def _count(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 10_000_000:
        raise argparse.ArgumentTypeError(f"expected a whole number from 1, not {text!r}")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds above 0, not {text!r}")
    return value


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
    net.add_argument("--server", type=_server, metavar="HOST:PORT",
                     help="where to send (default 127.0.0.1:25; 465 with --tls implicit, 2003 with --lmtp)")
    net.add_argument("--unix", metavar="PATH", help="a Unix socket instead of --server")
    net.add_argument("--lmtp", action="store_true", help="speak LMTP (RFC 2033): a reply per recipient")
    net.add_argument("-c", "--connections", type=_count, default=1, metavar="N",
                     help="concurrent connections (default 1)")
    net.add_argument("--timeout", type=_seconds, default=30.0, metavar="SECONDS",
                     help="for connecting and for each reply (default 30)")
    net.add_argument("--helo", metavar="NAME", help="our name in EHLO/LHLO (default: this host's)")
    sec = send.add_argument_group("TLS and AUTH")
    sec.add_argument("--tls", choices=TLS_MODES,
                     help="starttls (required), implicit (port 465 style), opportunistic (STARTTLS when "
                     "offered: the default) or none (the default over --unix)")
    sec.add_argument("--insecure", action="store_true", help="do not verify the server's certificate")
    sec.add_argument("--ca", metavar="FILE", help="trust the CA certificate(s) in this PEM file")
    sec.add_argument("--auth", type=_user_password, metavar="USER:PASS", help="authenticate (only over TLS)")
    sec.add_argument("--allow-plaintext-auth", action="store_true", help="allow --auth without TLS")
    out = send.add_argument_group("output")
    out.add_argument("-q", "--quiet", action="store_true", help="no progress output")


# -- messages ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message as it goes on the wire (CRLF, no Bcc), with its envelope."""

    content: bytes
    mail_from: str
    rcpt_to: tuple[str, ...]


Item = Outgoing | str  # a str says why the message cannot be sent

_EOL = re.compile(rb"\r\n|\r|\n")
_FIELD = re.compile(rb"[!-9;-~]+[ \t]*:")


def _crlf(data: bytes) -> bytes:
    return _EOL.sub(b"\r\n", data)


def _without_bcc(content: bytes, end: int) -> bytes:
    """``content`` less its Bcc and Resent-Bcc fields (the header block ends at ``end``)."""
    head = content[:end] if end >= 0 else content
    if b"bcc:" not in head.lower():
        return content
    kept, skipping = [], False
    for line in head.split(b"\r\n"):
        if not line[:1] in (b" ", b"\t"):
            skipping = line.lower().startswith((b"bcc:", b"resent-bcc:"))
        if not skipping:
            kept.append(line)
    return b"\r\n".join(kept) + (content[end:] if end >= 0 else b"")


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
    return Outgoing(_without_bcc(content, end), envelope.mail_from, envelope.rcpt_to)


def _is_message(data: bytes) -> bool:
    """Does ``data`` open with a header block that has a From: field?"""
    head = _crlf(data[:65536]).split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    return bool(_FIELD.match(head[0])) and any(line.lower().startswith(b"from:") for line in head)


def _addresses(values: Iterable[str], option: str) -> list[str]:
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
                raise UsageError(f"cannot read --mbox {path}: {'not a file' if os.path.exists(path) else 'no such file'}")
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
        senders = _addresses([args.sender], "--from") if args.sender.strip() not in ("", "<>") else [""]
        if len(senders) != 1:
            raise UsageError(f"--from {args.sender!r}: one address expected")
        mail_from = senders[0]
    rcpt_to = _addresses(args.to, "--to") + _addresses(args.cc, "--cc")
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


# -- the plan ------------------------------------------------------------------------------


@dataclass
class Plan:
    items: list[Item]
    repeat: int
    host: str
    port: int | None
    target: str  # the server, as messages name it
    lmtp: bool
    connections: int
    settings: dict[str, Any]
    quiet: bool = False

    @property
    def total(self) -> int:
        return len(self.items) * self.repeat

    def stream(self) -> Iterator[Item]:
        for _ in range(self.repeat):
            yield from self.items

    def client(self) -> AsyncSMTPClient:
        cls = AsyncLMTPClient if self.lmtp else AsyncSMTPClient
        return cls(self.host, self.port, **self.settings)


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


def plan(args: argparse.Namespace) -> Plan:
    """Check the arguments and read the messages (UsageError)."""
    if args.unix is not None and args.server is not None:
        raise UsageError("--server and --unix both say where to send: give one")
    tls = args.tls or ("none" if args.unix is not None else "opportunistic")
    if args.allow_plaintext_auth and args.auth is None:
        raise UsageError("--allow-plaintext-auth needs --auth")
    if args.auth is not None and tls == "none" and not args.allow_plaintext_auth:
        raise UsageError("--auth with --tls none would send the password in plaintext "
                         "(--allow-plaintext-auth to do it anyway)")
    if args.helo is not None and (not args.helo or not args.helo.isprintable() or " " in args.helo):
        raise UsageError(f"--helo {args.helo!r}: expected a host name")
    if args.unix is not None:
        host, port, target = os.path.abspath(args.unix), None, args.unix
    else:
        host, port = args.server or ("127.0.0.1", None)
        port = port or ClientSettings.default_port(tls, args.lmtp)
        target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    settings: dict[str, Any] = {
        "tls": tls, "auth": args.auth, "timeout": args.timeout, "allow_plaintext_auth": args.allow_plaintext_auth,
        "ssl_context": _context(args, tls, args.unix is not None), "local_hostname": args.helo,
    }
    try:
        ClientSettings(host, port or 0, lmtp=args.lmtp, **settings)
    except ValueError as err:
        raise UsageError(str(err)) from None
    items = _messages(args)
    return Plan(items, args.repeat, host, port, target, args.lmtp, args.connections, settings, args.quiet)


# -- counting what happened -----------------------------------------------------------------


def _reason(reply: Reply) -> str:
    """``550 5.1.1 No such user``: code, enhanced code, the first words (addresses left out)."""
    first = reply.text.split("\n", 1)[0]
    words = [w for w in first.split() if "@" not in w and not w.startswith("<")][:REASON_WORDS]
    status = f" {reply.enhanced}" if reply.enhanced is not None else ""
    return f"{reply.code}{status} {' '.join(words).rstrip(':;,.')}".rstrip()


def _show(reply: Reply) -> str:
    """A reply as the server wrote it: code, enhanced code, text (lines joined)."""
    status = f" {reply.enhanced}" if reply.enhanced is not None else ""
    return f"{reply.code}{status} {' '.join(reply.text.splitlines())}".rstrip()


def _problem(err: BaseException) -> str:
    """An error that is no reply, in a few words."""
    if isinstance(err, (asyncio.TimeoutError, TimeoutError)):
        return "timed out"
    if isinstance(err, ssl.SSLError):
        return f"TLS: {getattr(err, 'verify_message', None) or err.reason or err}"
    if isinstance(err, OSError) and not isinstance(err, ConnectionClosed) and err.errno:
        return os.strerror(err.errno)
    return (str(err) or type(err).__name__)[:120]


@dataclass
class Tally:
    """What became of each message; refusals counted per recipient, by reply."""

    total: int
    accepted: int = 0
    partly: int = 0  # some recipients accepted, some refused
    refused: int = 0  # no recipient accepted
    refusals: Counter[str] = field(default_factory=Counter)  # per recipient
    errors: Counter[str] = field(default_factory=Counter)  # per message: no reply (connection)
    unsendable: Counter[str] = field(default_factory=Counter)  # per message: refused before sending
    started: float = field(default_factory=time.monotonic)
    gone: BaseException | None = None  # why the server could no longer be reached
    suspect: bool = False  # a connection failed: check the server before queueing more

    @property
    def answered(self) -> int:
        return self.accepted + self.partly + self.refused

    @property
    def done(self) -> int:
        return self.answered + sum(self.errors.values()) + sum(self.unsendable.values())

    def record(self, outcome: SendResult | BaseException, recipients: int) -> None:
        if isinstance(outcome, SendResult):
            refused = outcome.refused
            if not refused:
                self.accepted += 1
                return
            if outcome.accepted:
                self.partly += 1
            else:
                self.refused += 1
            self.refusals.update(_reason(reply) for reply in refused.values())
        elif isinstance(outcome, (RecipientsRefused, DataRefused)) and outcome.result is not None:
            self.refused += 1
            self.refusals.update(_reason(reply) for reply in outcome.result.refused.values())
        elif isinstance(outcome, SMTPError):
            self.refused += 1
            self.refusals[_reason(outcome.reply)] += recipients
        elif type(outcome) is RuntimeError or isinstance(outcome, _NotSent):
            pass  # the run stopped before it was sent: counted as not sent
        elif isinstance(outcome, (LocalProtocolError, NotSupportedError, ValueError, TypeError)):
            self.unsendable[_problem(outcome)] += 1
        else:
            self.errors[_problem(outcome)] += 1
            self.suspect = True

    def exit_code(self) -> int:
        if self.accepted == self.total:
            return EXIT_OK
        return EXIT_UNREACHABLE if self.gone is not None and self.answered == 0 else EXIT_FAILED

    def summary(self) -> list[str]:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        lines = [f"sent {self.answered}/{self.total} messages in {elapsed:.2f} s ({self.answered / elapsed:.0f} msg/s)"]
        parts = [f"accepted {self.accepted}", f"partly refused {self.partly}", f"refused {self.refused}",
                 f"connection errors {sum(self.errors.values())}"]
        if self.unsendable:
            parts.append(f"unsendable {sum(self.unsendable.values())}")
        if self.total > self.done:
            parts.append(f"not sent {self.total - self.done}")
        lines.append(", ".join(parts))
        for title, counts in (("refused recipients, by reply:", self.refusals),
                              ("connection errors:", self.errors), ("unsendable messages:", self.unsendable)):
            if counts:
                lines.append(title)
                lines.extend(f"  {reason}: {n}" for reason, n in counts.most_common())
        return lines


# -- progress ------------------------------------------------------------------------------


class _Progress(Protocol):
    def update(self, done: int) -> None: ...

    def close(self) -> None: ...


class _Silent:
    def update(self, done: int) -> None:
        pass

    def close(self) -> None:
        pass


class _Bar:
    """tqdm's bar with rate and ETA, for a terminal."""

    def __init__(self, total: int) -> None:
        from tqdm import tqdm  # only here: a plain run never pays for the import

        try:
            width = os.get_terminal_size(sys.stderr.fileno()).columns
        except OSError:
            width = 0
        # A terminal that reports no width (a bare pty) would get an empty bar.
        shape: dict[str, Any] = {"dynamic_ncols": True} if width else {"ncols": 80, "nrows": 24}
        self._bar = tqdm(total=total, unit="msg", desc="sending", file=sys.stderr, **shape)
        self._shown = 0

    def update(self, done: int) -> None:
        self._bar.update(done - self._shown)
        self._shown = done

    def close(self) -> None:
        self._bar.close()


class _Lines:
    """A plain line at each tenth of the run, or after ``every`` seconds without one."""

    def __init__(self, total: int, every: float = 5.0) -> None:
        self.total, self.every = total, every
        self.started = time.monotonic()
        self._next_tenth = 1
        self._next_time = self.started + every

    def update(self, done: int) -> None:
        now = time.monotonic()
        if done * 10 < self._next_tenth * self.total and now < self._next_time:
            return
        self._next_tenth = done * 10 // self.total + 1
        self._next_time = now + self.every
        rate = done / max(now - self.started, 1e-6)
        print(f"sent {done}/{self.total} ({done * 100 // self.total}%), {rate:.0f} msg/s", file=sys.stderr, flush=True)

    def close(self) -> None:
        pass


def _progress(plan: Plan) -> _Progress:
    if plan.quiet or plan.total < 2:
        return _Silent()
    return _Bar(plan.total) if sys.stderr.isatty() else _Lines(plan.total)


# -- sending --------------------------------------------------------------------------------


class _Sender(Protocol):
    async def send(self, item: Outgoing) -> SendResult: ...

    async def close(self, grace: float) -> None: ...


class _PoolSender:
    def __init__(self, plan: Plan) -> None:
        self.pool = SMTPPool(plan.host, plan.port, size=plan.connections, batch=BATCH, **plan.settings)

    async def send(self, item: Outgoing) -> SendResult:
        return await self.pool.send(item.content, item.mail_from, item.rcpt_to)

    async def close(self, grace: float) -> None:
        await self.pool.close(grace)


@dataclass(slots=True)
class _Job:
    item: Outgoing
    future: asyncio.Future[SendResult]


def _fail(jobs: Iterable[_Job], err: BaseException) -> None:
    for job in jobs:
        if not job.future.done():
            job.future.set_exception(err)


class _Connections:
    """``first`` and N-1 clients like it, each a worker pipelining what is
    queued, as SMTPPool does: for -c 1 (no second connection) and for LMTP."""

    def __init__(self, first: AsyncSMTPClient, plan: Plan) -> None:
        self._queue: asyncio.Queue[_Job | None] = asyncio.Queue()
        clients = [first] + [plan.client() for _ in range(plan.connections - 1)]
        self._workers = [asyncio.ensure_future(self._work(client)) for client in clients]

    async def send(self, item: Outgoing) -> SendResult:
        job = _Job(item, asyncio.get_running_loop().create_future())
        self._queue.put_nowait(job)
        return await job.future

    async def _take(self) -> list[_Job] | None:
        first = await self._queue.get()
        if first is None:
            return None
        jobs = [first]
        while len(jobs) < BATCH and not self._queue.empty():
            job = self._queue.get_nowait()
            if job is None:
                self._queue.put_nowait(None)  # for this worker's next turn
                break
            jobs.append(job)
        return jobs

    async def _work(self, client: AsyncSMTPClient) -> None:
        jobs: list[_Job] = []
        try:
            while (taken := await self._take()) is not None:
                jobs = taken
                await self._deliver(client, jobs)
                jobs = []
        except asyncio.CancelledError:
            _fail(jobs, ConnectionClosed("stopped while this message was being sent; it may have been delivered"))
            await client.close()
            raise
        await client.quit()

    async def _deliver(self, client: AsyncSMTPClient, jobs: list[_Job]) -> None:
        try:
            if not client.connected:
                await client.connect()
        except (MailwireError, OSError, asyncio.TimeoutError) as err:
            _fail(jobs, err)
            return
        ready, txns = [], []
        for job in jobs:
            try:
                txns.append(client.prepare(job.item.content, job.item.mail_from, job.item.rcpt_to))
            except (MailwireError, ValueError, TypeError) as err:
                _fail([job], err)
            else:
                ready.append(job)
        if not txns:
            return
        try:
            outcomes = await client.transact(txns)
        except (MailwireError, OSError, asyncio.TimeoutError) as err:
            _fail(ready, err)
            return
        for job, outcome in zip(ready, outcomes):
            if job.future.done():
                continue
            if isinstance(outcome, SMTPError):
                job.future.set_exception(outcome)
            else:
                job.future.set_result(outcome)

    async def close(self, grace: float) -> None:
        while not self._queue.empty():
            job = self._queue.get_nowait()
            if job is not None:
                _fail([job], _NotSent("not sent"))
        for _ in self._workers:
            self._queue.put_nowait(None)
        _, late = await asyncio.wait(self._workers, timeout=grace)
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late)


def _session_error(err: BaseException, plan: Plan) -> Exception:
    """Why no session could be opened, as Unreachable (exit 3) or Failure (exit 1)."""
    where = plan.target
    if isinstance(err, ssl.SSLCertVerificationError):
        return Failure(f"TLS with {where} failed: its certificate did not verify ({err.verify_message or err.reason}); "
                       "--ca FILE trusts its CA, --insecure skips the check")
    if isinstance(err, ssl.SSLError):
        return Failure(f"TLS with {where} failed: {err.reason or err}")
    if isinstance(err, TLSRequiredError):
        if plan.settings["tls"] == "starttls":
            return Failure(f"{where} does not offer STARTTLS (--tls starttls requires it)")
        return Failure(f"refusing to send --auth credentials in plaintext: {where} does not offer STARTTLS "
                       "(--allow-plaintext-auth to send them anyway)")
    if isinstance(err, AuthenticationError):
        return Failure(f"authentication failed at {where}: {_show(err.reply)}")
    if isinstance(err, SMTPError):
        return Failure(f"{where} refused the session: {_show(err.reply)}")
    if isinstance(err, RemoteProtocolError):
        return Failure(f"{where} broke the protocol: {err}")
    if isinstance(err, socket.gaierror):
        return Unreachable(f"cannot reach {where}: unknown host ({err.strerror or err})")
    if isinstance(err, (OSError, asyncio.TimeoutError, ConnectionClosed)):
        return Unreachable(f"cannot reach {where}: {_problem(err)}")
    return Failure(f"{where}: {_problem(err)}")


async def _connect(plan: Plan) -> AsyncSMTPClient:
    client = plan.client()
    try:
        await client.connect()
    except (MailwireError, OSError, asyncio.TimeoutError) as err:
        raise _session_error(err, plan) from None
    return client


async def _still_there(plan: Plan) -> BaseException | None:
    """None if a new session can be opened, else why not."""
    client = plan.client()
    try:
        await client.connect()
    except (MailwireError, OSError, asyncio.TimeoutError) as err:
        return err
    await client.quit()
    return None


class _Stops:
    """SIGINT/SIGTERM: the first cancels the phase under way (what it did is
    kept) and the run winds down; the second cancels the winding down."""

    def __init__(self) -> None:
        self.count = 0
        self.name = ""
        self._task: asyncio.Future[Any] | None = None

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, self._fire, signum)
            except (NotImplementedError, RuntimeError, ValueError):  # Windows, or not the main thread
                pass

    def _fire(self, signum: int) -> None:
        self.count += 1
        self.name = signal.Signals(signum).name
        if self._task is not None:
            self._task.cancel()

    async def run(self, work: Awaitable[T]) -> T | None:
        """``await work``; None if a signal cancelled it."""
        task = asyncio.ensure_future(work)
        self._task = task
        try:
            return await task
        except asyncio.CancelledError:
            if self.count and task.cancelled():
                return None
            raise
        finally:
            self._task = None


async def _one(sender: _Sender, item: Outgoing, tally: Tally, progress: _Progress, window: asyncio.Semaphore) -> None:
    try:
        outcome: SendResult | BaseException = await sender.send(item)
    except Exception as err:
        outcome = err
    finally:
        window.release()
    tally.record(outcome, len(item.rcpt_to))
    progress.update(tally.done)


async def _produce(plan: Plan, sender: _Sender, tally: Tally, progress: _Progress,
                   pending: set[asyncio.Task[None]]) -> None:
    window = asyncio.Semaphore(plan.connections * 2 * BATCH)
    loop = asyncio.get_running_loop()
    for item in plan.stream():
        if isinstance(item, str):
            tally.unsendable[item] += 1
            progress.update(tally.done)
            continue
        if tally.suspect:  # a connection failed: is the server still there?
            tally.suspect = False
            tally.gone = await _still_there(plan)
            if tally.gone is not None:
                return  # the queued messages are not sent; close() settles them
        await window.acquire()
        task = loop.create_task(_one(sender, item, tally, progress, window))
        pending.add(task)
        task.add_done_callback(pending.discard)
    while pending:
        await asyncio.wait(set(pending))


async def _send_one(plan: Plan, client: AsyncSMTPClient, stops: _Stops) -> int:
    item = plan.items[0]
    assert isinstance(item, Outgoing)  # a lone unsendable message is a UsageError
    try:
        result = await stops.run(client.send(item.content, item.mail_from, item.rcpt_to))
    except (RecipientsRefused, DataRefused) as err:
        if err.result is None:
            print(f"{PROG}: refused: {_show(err.reply)}", file=sys.stderr)
        else:
            for rcpt, reply in err.result.recipients.items():
                print(f"{rcpt}: {_show(reply)}")
        return EXIT_FAILED
    except SMTPError as err:
        print(f"{PROG}: refused: {_show(err.reply)}", file=sys.stderr)
        return EXIT_FAILED
    except (MailwireError, OSError, asyncio.TimeoutError, ValueError) as err:
        print(f"{PROG}: not sent to {plan.target}: {_problem(err)}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        await (client.close() if stops.count else client.quit())
    if result is None:
        print(f"{PROG}: stopped by {stops.name}; the message may or may not have been delivered", file=sys.stderr)
        return EXIT_FAILED
    for rcpt, reply in result.recipients.items():
        print(f"{rcpt}: {_show(reply)}")
    return EXIT_OK if result.ok else EXIT_FAILED


async def _send_many(plan: Plan, first: AsyncSMTPClient, tally: Tally, stops: _Stops) -> int:
    sender: _Sender
    if plan.lmtp or plan.connections == 1:
        sender = _Connections(first, plan)
    else:
        await first.quit()
        sender = _PoolSender(plan)
    progress = _progress(plan)
    pending: set[asyncio.Task[None]] = set()
    tally.started = time.monotonic()
    try:
        await stops.run(_produce(plan, sender, tally, progress, pending))
        # Whatever is still queued gets _NotSent; what is in flight gets the grace.
        grace = 0.0 if stops.count > 1 else min(GRACE, plan.settings["timeout"])
        await stops.run(sender.close(grace))
        if pending:
            _, late = await asyncio.wait(set(pending), timeout=1.0)
            for task in late:
                task.cancel()
    finally:
        progress.close()
    for line in tally.summary():
        print(line)
    if tally.gone is not None:
        print(f"{PROG}: stopped: {plan.target} can no longer be reached: {_problem(tally.gone)}", file=sys.stderr)
    if stops.count:
        print(f"{PROG}: stopped by {stops.name}", file=sys.stderr)
        return EXIT_FAILED
    return tally.exit_code()


async def _session(plan: Plan, tally: Tally, stops: _Stops) -> int:
    stops.install()
    first = await stops.run(_connect(plan))
    if first is None or stops.count:
        if first is not None:
            await first.close()
        print(f"{PROG}: stopped by {stops.name or 'a signal'} before anything was sent", file=sys.stderr)
        return EXIT_FAILED
    if plan.total == 1:
        return await _send_one(plan, first, stops)
    return await _send_many(plan, first, tally, stops)


def run(args: argparse.Namespace) -> int:
    """``mailwire send`` with parsed arguments; the exit code."""
    try:
        the_plan = plan(args)
    except UsageError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    tally = Tally(the_plan.total)
    try:
        return asyncio.run(_session(the_plan, tally, _Stops()))
    except Unreachable as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except Failure as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:  # before the signal handlers were in place, or after
        if tally.done:
            for line in tally.summary():
                print(line)
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_FAILED

"""Running ``mailwire send``'s plan: connections, progress, the summary.

One connection is opened first, as a check (reachable, TLS, AUTH), so a
mistake ends in one line before anything is queued. One message goes over it
and each recipient's reply is printed. Many go through ``SMTPPool`` (``-c N``
connections, each pipelining batches; LMTP too), whose first connection is
that check (``SMTPPool.connect``): ``-c N`` opens N connections, not N + 1,
and the pool shares the messages out evenly over them. At most
two batches per connection are in flight, so memory stays flat however many
messages there are. When a connection fails mid-run the server is checked
again; if it cannot be reached any more, the rest is not sent.

Output: a tqdm progress bar on stderr when it is a terminal and tqdm is
installed (the ``progress`` extra), else a plain line every 10% or 5 s; then a summary on stdout (messages accepted, refused
recipients grouped by reply, connection errors apart). Exit codes: 0 every
message accepted by every recipient, 1 anything else, 3 the server could not
be reached (2, a mistake in the arguments, is ``send``'s). All of it runs
in one ``asyncio.run``; SIGINT or SIGTERM stops queueing, gives the messages
in flight a few seconds and prints the summary of what was done (exit 1); a
second signal stops at once.

Just over 500 lines, one job: running a plan; the counting, the progress
and the signal handling exist only for that run.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import ssl
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ..client.aio import AsyncLMTPClient, AsyncSMTPClient
from ..client.pool import LMTPPool, PoolClosed, SMTPPool
from ..result import SendResult
from ..errors import (
    AuthenticationError, ConnectionClosed, DataRefused, LocalProtocolError, MailwireError,
    NotSupportedError, RecipientsRefused, RemoteProtocolError, SMTPError, TLSRequiredError,
)
from ..reply import Reply

if TYPE_CHECKING:
    from tqdm import tqdm as Tqdm

__all__ = ["Outgoing", "Item", "Plan", "Tally", "execute"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
PROG = "mailwire send"
BATCH = 100  # messages a connection pipelines in one run (SMTPPool's batch)
GRACE = 5.0  # seconds the messages in flight get once the run is stopped
REASON_WORDS = 6  # refusals are grouped by code, enhanced code and this many words
T = TypeVar("T")


class Unreachable(Exception):
    """The server cannot be reached: one line, exit 3."""


class Failure(Exception):
    """Reached, but no session (TLS, AUTH, a refused greeting): one line, exit 1."""


# -- what to send ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message as it goes on the wire (CRLF, no Bcc), with its envelope."""

    content: bytes
    mail_from: str
    rcpt_to: tuple[str, ...]


Item = Outgoing | str  # a str says why the message cannot be sent


@dataclass
class Plan:
    """What to send where, checked (``send.plan`` builds it from the options)."""

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


# -- counting what happened -----------------------------------------------------------------


def _reason(reply: Reply) -> str:
    """``550 5.1.1 No such user``: the reply shortened to its first words
    (addresses left out), so refusals group by what they say, and shown as
    every reply is (``str(Reply)``)."""
    first = reply.text.split("\n", 1)[0]
    words = [w for w in first.split() if "@" not in w and not w.startswith("<")][:REASON_WORDS]
    text, status = " ".join(words).rstrip(":;,."), reply.enhanced
    return str(Reply(reply.code, (f"{status} {text}" if status is not None else text,)))


def _show(reply: Reply) -> str:
    """A reply as the server wrote it: code, enhanced code, text, one line."""
    return str(reply)


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
        elif isinstance(outcome, PoolClosed):
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
    """tqdm's bar with rate and ETA, for a terminal (``tqdm`` is the tqdm class)."""

    def __init__(self, total: int, tqdm: type[Tqdm[Any]]) -> None:
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
    """The bar on a terminal when tqdm is installed: it is an extra
    (``mailwire[progress]``), so the library keeps no run-time dependency;
    without it a terminal gets the plain lines. Imported only here: a run
    that shows no bar never pays for the import."""
    if plan.quiet or plan.total < 2:
        return _Silent()
    if sys.stderr.isatty():
        try:
            from tqdm import tqdm
        except ImportError:
            pass
        else:
            return _Bar(plan.total, tqdm)
    return _Lines(plan.total)


# -- sending --------------------------------------------------------------------------------


class _Sender(Protocol):
    async def send(self, item: Outgoing) -> SendResult: ...

    async def close(self, grace: float) -> None: ...


class _PoolSender:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        pool = LMTPPool if plan.lmtp else SMTPPool
        self.pool = pool(plan.host, plan.port, size=plan.connections, batch=BATCH, **plan.settings)

    async def open(self) -> None:
        """The pool's first connection, opened now as the check that the
        server takes a session (Unreachable or Failure if not)."""
        try:
            await self.pool.connect()
        except (MailwireError, OSError, asyncio.TimeoutError) as err:
            await self.pool.close(0)
            raise _session_error(err, self.plan) from None

    async def send(self, item: Outgoing) -> SendResult:
        return await self.pool.send(item.content, item.mail_from, item.rcpt_to)

    async def close(self, grace: float) -> None:
        await self.pool.close(grace)


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


async def _send_many(plan: Plan, sender: _Sender, tally: Tally, stops: _Stops) -> int:
    progress = _progress(plan)
    pending: set[asyncio.Task[None]] = set()
    tally.started = time.monotonic()
    try:
        await stops.run(_produce(plan, sender, tally, progress, pending))
        # Whatever is still queued gets PoolClosed; what is in flight gets the grace.
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
    if plan.total == 1:
        client = await stops.run(_connect(plan))
        if client is not None and not stops.count:
            return await _send_one(plan, client, stops)
        if client is not None:
            await client.close()
    else:
        sender = _PoolSender(plan)
        await stops.run(sender.open())
        if not stops.count:
            return await _send_many(plan, sender, tally, stops)
        await sender.close(0)
    print(f"{PROG}: stopped by {stops.name or 'a signal'} before anything was sent", file=sys.stderr)
    return EXIT_FAILED


def execute(plan: Plan) -> int:
    """Send what ``plan`` says, report, and return the exit code."""
    tally = Tally(plan.total)
    try:
        return asyncio.run(_session(plan, tally, _Stops()))
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

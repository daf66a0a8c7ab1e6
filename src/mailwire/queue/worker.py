"""The delivery worker: entries from a consumer group, delivered, then settled.

``Worker.run`` reads entries as one consumer of a group (``WorkerBroker``,
so any broker that keeps that protocol fits), keeps up to ``concurrency``
deliveries going at once, and settles each only once its delivery is over:

- delivered (or a repeat of a delivery): ``finish`` (acknowledge and
  remove), then the body's blob is deleted;
- some recipients failed for now (4xx, a lost connection, a full disk):
  ``retry_later`` with those recipients only and ``attempt`` + 1, after an
  exponential delay (``RetryPolicy``); past its attempts or its age a
  temporary failure is a permanent one;
- some failed for good (5xx): a bounce (``dsn.bounce``, RFC 3464) is
  published into the queue for the sender, as its recipients' NOTIFY asks;
  a message from the null sender is dead-lettered instead, never bounced;
- an entry that does not decode, or whose body does not match its digest:
  ``dead_letter``.

Delivery is at-least-once: a worker that dies holds its entries pending, and
every ``reclaim_after`` seconds each worker takes over entries held that long
(XAUTOCLAIM), so ``reclaim_after`` must exceed the longest delivery. It is
idempotent by queue id: the Maildir deliverer never stores a queue id twice;
for LMTP and relay, the recipients delivered are marked in the broker
(``mark_delivered``, kept ``delivered_ttl``) before the acknowledgement and
skipped on a repeat. What remains possible there: a crash after the far
side accepted and before the mark repeats that delivery once; and a bounce
published before a crash may be published again.

If the broker goes away the worker backs off (up to ``max_backoff``) and
tries again, for ever; deliveries under way finish and their settling waits
for the reclaim. ``stop`` (SIGTERM in ``mailwire worker``) stops reading,
lets the deliveries under way finish and settle, and returns.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import os
import socket
import time
from collections.abc import Awaitable
from dataclasses import dataclass

from .blobs import BlobStore
from .broker import BrokerError, WorkerBroker
from .deliver.base import Deliverer, Failure, Report, line_ending, trace_lines
from .dsn import bounce, wants_bounce
from .entry import MalformedEntry, QueueEntry

__all__ = ["Worker", "RetryPolicy", "DEFAULT_GROUP"]

log = logging.getLogger("mailwire.queue")

DEFAULT_GROUP = "mailwire"
_QUOTED = frozenset(' "=\n\r\t')


def _kv(**fields: object) -> str:
    """``key=value`` pairs, a value with spaces or quotes JSON-quoted (one log line, parseable)."""
    out = []
    for key, value in fields.items():
        text = str(value)
        if not text or any(c in text for c in _QUOTED):
            text = json.dumps(text)
        out.append(f"{key}={text}")
    return " ".join(out)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When a temporary failure is tried again, and when it is given up."""

    first_delay: float = 60.0  # before the second attempt; doubled for each after it
    max_delay: float = 3600.0
    max_attempts: int = 10
    max_age: float = 5 * 86400.0  # since the front end accepted the message

    def delay(self, attempt: int) -> float:
        """Seconds before attempt ``attempt`` + 1."""
        return float(min(self.max_delay, self.first_delay * 2 ** max(0, attempt - 1)))

    def exhausted(self, entry: QueueEntry, now: float) -> bool:
        return entry.attempt >= self.max_attempts or (
            entry.received_at > 0 and now - entry.received_at >= self.max_age
        )


class Worker:
    """Delivers what ``group`` of ``broker`` holds through ``deliverer`` (see the module)."""

    def __init__(
        self, broker: WorkerBroker, deliverer: Deliverer, *, group: str = DEFAULT_GROUP,
        consumer: str | None = None, concurrency: int = 4, reclaim_after: float = 120.0,
        blobs: BlobStore | None = None, retry: RetryPolicy = RetryPolicy(),
        delivered_ttl: float = 7 * 86400.0, block: float = 1.0, max_backoff: float = 5.0,
    ) -> None:
        if concurrency < 1 or reclaim_after <= 0:
            raise ValueError("concurrency must be at least 1 and reclaim_after positive")
        self.broker, self.deliverer = broker, deliverer
        self.group = group
        self.hostname = socket.gethostname()  # the "by" of Received:, the Reporting-MTA of bounces
        self.consumer = consumer or f"{self.hostname}-{os.getpid()}"
        self.concurrency, self.reclaim_after = concurrency, reclaim_after
        self.blobs, self.retry, self.delivered_ttl = blobs, retry, delivered_ttl
        self.block, self.max_backoff = block, max_backoff
        self.counts = {"delivered": 0, "duplicate": 0, "retry": 0, "bounced": 0, "dead_letter": 0}
        self.broker_ok = False  # the last call to the broker succeeded
        self._tasks: dict[asyncio.Task[None], str] = {}  # delivery -> its stream id
        self._stopping = asyncio.Event()

    # -- the loop ------------------------------------------------------------------

    def stop(self) -> None:
        """Stop reading; ``run`` returns once the deliveries under way are settled."""
        self._stopping.set()

    async def run(self) -> None:
        backoff, last_reclaim = 0.1, 0.0
        try:
            while not self._stopping.is_set():
                free = self.concurrency - len(self._tasks)
                if free <= 0:
                    await self._until(asyncio.wait(list(self._tasks), return_when=asyncio.FIRST_COMPLETED))
                    continue
                try:
                    if time.monotonic() - last_reclaim >= max(1.0, self.reclaim_after / 2):
                        last_reclaim = time.monotonic()
                        busy = set(self._tasks.values())
                        claimed = await self.broker.reclaim(self.group, self.consumer,
                                                            min_idle=self.reclaim_after, count=free)
                        self._start([d for d in claimed if d[0] not in busy])
                        free = self.concurrency - len(self._tasks)
                    if free > 0:
                        self._start(await self.broker.consume(self.group, self.consumer, count=free,
                                                              block=self.block))
                except Exception as err:  # BrokerError; anything else the client raises, alike: never crash
                    if self.broker_ok or backoff == 0.1:
                        log.warning("%s", _kv(event="broker_down", consumer=self.consumer, error=err),
                                    exc_info=not isinstance(err, BrokerError))
                    self.broker_ok = False
                    await self._until(asyncio.sleep(backoff))
                    backoff = min(self.max_backoff, backoff * 2)
                    continue
                if not self.broker_ok:
                    log.info("%s", _kv(event="broker_up", consumer=self.consumer))
                self.broker_ok, backoff = True, 0.1
        finally:
            if self._tasks:  # finish what is under way, and settle it
                await asyncio.gather(*self._tasks, return_exceptions=True)
            self._stopping.clear()  # stopped: it may run again

    async def _until(self, waiting: Awaitable[object]) -> None:
        """Wait for ``waiting`` or for ``stop``, whichever comes first."""
        task = asyncio.ensure_future(waiting)
        stopped = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        for pending in (task, stopped):
            if not pending.done():
                pending.cancel()

    def _start(self, deliveries: list[tuple[str, QueueEntry | MalformedEntry]]) -> None:
        for stream_id, item in deliveries:
            task = asyncio.get_running_loop().create_task(self._handle(stream_id, item))
            self._tasks[task] = stream_id
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s", _kv(event="worker_error", error=task.exception()))

    # -- one entry -------------------------------------------------------------------

    async def _handle(self, stream_id: str, item: QueueEntry | MalformedEntry) -> None:
        """Deliver and settle one entry; a broker failure leaves it pending, for the reclaim."""
        try:
            if isinstance(item, MalformedEntry):
                await self._dead(stream_id, None, str(item))
                return
            await self._deliver(stream_id, item)
        except BrokerError as err:
            log.warning("%s", _kv(event="unsettled", stream_id=stream_id, error=err))

    async def _deliver(self, stream_id: str, entry: QueueEntry) -> None:
        try:
            body = await self._body(entry)
        except (FileNotFoundError, ValueError) as err:  # the blob is gone, or not the message
            await self._dead(stream_id, entry, str(err))
            return
        except OSError as err:
            await self._settle(stream_id, entry, b"", Report({r: _local(err) for r in entry.rcpt_to}))
            return
        message = trace_lines(entry, line_ending(body), by=self.hostname) + body
        recipients = list(entry.rcpt_to)
        if not self.deliverer.idempotent:
            done = await self.broker.delivered(entry.queue_id)
            recipients = [r for r in recipients if r not in done]
        if not recipients:
            report = Report(duplicate=True)
        else:
            try:
                report = await self.deliverer.deliver(entry, message, recipients)
            except Exception as err:  # anything a deliverer raises: try again later
                report = Report({r: _local(err) for r in recipients})
        await self._settle(stream_id, entry, message, report, recipients)

    async def _body(self, entry: QueueEntry) -> bytes:
        if entry.body is not None:
            body = entry.body
        elif self.blobs is None:
            raise OSError(f"the body is in a blob store ({entry.blob_key}), and the worker has none (--queue-blobs)")
        else:
            assert entry.blob_key is not None
            body = b"".join([chunk async for chunk in self.blobs.read(entry.blob_key)])
        if hashlib.sha256(body).hexdigest() != entry.sha256:
            raise ValueError("the body does not match the entry's sha256")
        return body

    async def _settle(self, stream_id: str, entry: QueueEntry, message: bytes, report: Report,
                      recipients: list[str] | None = None) -> None:
        """Bounce, mark, then acknowledge: in that order, so a crash between
        two steps repeats a step (at-least-once) and never loses one."""
        temporary = {r: f for r, f in report.failed.items() if not f.permanent}
        permanent = {r: f for r, f in report.failed.items() if f.permanent}
        if temporary and self.retry.exhausted(entry, time.time()):
            permanent.update({r: Failure(True, "5" + f.status[1:], f.diagnostic) for r, f in temporary.items()})
            temporary = {}
        delivered = [r for r in (recipients or []) if r not in report.failed]
        if permanent and entry.mail_from:
            await self._bounce(entry, message, permanent)
        if not self.deliverer.idempotent:
            await self.broker.mark_delivered(entry.queue_id, [*delivered, *permanent], self.delivered_ttl)
        if temporary:
            delay = self.retry.delay(entry.attempt)
            await self.broker.retry_later(self.group, stream_id, _only(entry, temporary, entry.attempt + 1), delay)
            self.counts["retry"] += 1
            log.info("%s", _kv(event="retry", queue_id=entry.queue_id, target=self.deliverer.target,
                               attempt=entry.attempt, delay=f"{delay:g}", rcpts=len(temporary),
                               reason=next(iter(temporary.values())).diagnostic))
        else:
            await self.broker.finish(self.group, stream_id)
        if permanent and not entry.mail_from:  # never bounced: kept for an operator
            await self._dead(stream_id, _only(entry, permanent, entry.attempt),
                             "permanent failure of a message from the null sender: "
                             + "; ".join(f"<{r}> {f.diagnostic}" for r, f in permanent.items()))
        elif not temporary and entry.blob_key is not None and self.blobs is not None:
            await self.blobs.delete(entry.blob_key)
        if delivered or report.duplicate:
            event = "duplicate" if report.duplicate else "delivered"
            self.counts[event] += 1
            log.info("%s", _kv(event=event, queue_id=entry.queue_id, target=self.deliverer.target,
                               attempt=entry.attempt, rcpts=len(delivered) or len(entry.rcpt_to)))

    async def _bounce(self, entry: QueueEntry, message: bytes, permanent: dict[str, Failure]) -> None:
        """Tell the sender of ``permanent`` failures: a DSN into the queue, for
        the recipients whose NOTIFY asks for one."""
        options = dict(entry.recipients())
        notify = {r: f for r, f in permanent.items() if wants_bounce(entry, options[r])}
        dsn = bounce(entry, message, notify, reporting_mta=self.hostname) if notify else None
        if dsn is not None:
            await self.broker.publish(dsn)
        self.counts["bounced"] += 1
        log.info("%s", _kv(event="bounced", queue_id=entry.queue_id, target=self.deliverer.target,
                           attempt=entry.attempt, rcpts=len(permanent), dsn=dsn.queue_id if dsn else "none",
                           reason=next(iter(permanent.values())).diagnostic))

    async def _dead(self, stream_id: str, entry: QueueEntry | None, reason: str) -> None:
        await self.broker.dead_letter(self.group, stream_id, reason, entry)
        self.counts["dead_letter"] += 1
        log.warning("%s", _kv(event="dead_letter", queue_id=entry.queue_id if entry else "unknown",
                              stream_id=stream_id, reason=reason))

    # -- health ----------------------------------------------------------------------

    def facts(self) -> dict[str, object]:
        """What a health check reports: the broker's state, the work under way, the counts."""
        return {"broker": self.broker_ok, "consumer": self.consumer, "group": self.group,
                "target": self.deliverer.target, "in_flight": len(self._tasks),
                "stopping": self._stopping.is_set(), **self.counts}


def _local(err: BaseException) -> Failure:
    """A failure on our side (a lost connection, a full disk): temporary."""
    return Failure(False, "4.4.1" if isinstance(err, ConnectionError) else "4.3.0",
                   f"x-local; {err or type(err).__name__}")


def _only(entry: QueueEntry, recipients: dict[str, Failure], attempt: int) -> QueueEntry:
    """``entry`` for ``recipients`` alone (their options kept), as attempt ``attempt``."""
    pairs = [(r, o) for r, o in entry.recipients() if r in recipients]
    return dataclasses.replace(entry, rcpt_to=tuple(r for r, _ in pairs),
                               rcpt_options=tuple(o for _, o in pairs), attempt=attempt)

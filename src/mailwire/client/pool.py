"""A pool of asyncio client connections to one server: ``SMTPPool``.

``await pool.send(message)`` queues the message; up to ``size`` workers, each
owning one connection, take what is queued. A worker takes its fair share of
the messages waiting (the queue divided among the workers, at most two
batches) and sends them in pipelined runs of at most ``batch``, so under load
a connection spends a round trip per message at most (DATA) or per half
window (BDAT), a burst is spread evenly over every connection, and a lone
message is sent at once. A new worker (and connection)
is started while more messages wait than workers are idle.
The share is of the messages not yet answered (queued, or in a batch
whose replies have not come), divided among all the workers, busy ones
included since they come back for more: a burst's first batches are equal,
and its tail goes out over every connection as they free up, never whole to
the first that happens to be free. ``connect()`` opens the first connection
ahead, to check the server before anything is queued; the first worker then
uses it.

Connections are opened when there is work for them, replaced when they fail or
close, and retired after ``max_messages`` or ``max_age``. A server refusing
new connections (a 421 greeting, connection refused) makes the whole pool back
off exponentially, up to ``max_backoff``, instead of hammering it: while it
refuses, no new worker is started, one attempt at a time is made, each no
sooner than the back-off allows, and the messages that met the refusal get
the error. ``async with`` closes every connection with QUIT.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from ..errors import ConnectionClosed, MailwireError, PoolClosed, SMTPError
from ..protocol.params import MailOptions
from .aio import AsyncLMTPClient, AsyncSMTPClient
from .transaction import Transaction
from .prepare import MessageLike, RcptOptionsArg, outcome_or_raise
from ..result import SendResult

__all__ = ["SMTPPool", "LMTPPool", "PoolClosed"]

log = logging.getLogger("mailwire.client.pool")
SHARE_RUNS = 2  # a worker's share of a burst: at most this many batches


@dataclass(slots=True)
class _Job:
    message: MessageLike
    mail_from: str | None
    rcpt_to: Sequence[str] | str | None
    mail_options: MailOptions | None
    rcpt_options: RcptOptionsArg
    future: asyncio.Future[SendResult] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class SMTPPool:
    """Up to ``size`` ``AsyncSMTPClient`` connections to one server, sharing
    the messages handed to ``send`` (see the module docstring). The other
    keywords are the clients' (``tls``, ``auth``, ``timeout`` ...)."""

    client_class: type[AsyncSMTPClient] = AsyncSMTPClient

    def __init__(
        self, host: str = "localhost", port: int | None = None, *, size: int = 10,
        batch: int = 100, max_messages: int | None = None, max_age: float | None = None,
        min_backoff: float = 0.1, max_backoff: float = 30.0, **settings: Any,
    ) -> None:
        if size < 1 or batch < 1:
            raise ValueError("size and batch must be at least 1")
        self.host, self.port = host, port
        self.size, self.batch = size, batch
        self.max_messages, self.max_age = max_messages, max_age
        self.min_backoff, self.max_backoff = min_backoff, max_backoff
        self.settings = settings
        self.client_class(host, port, **settings)  # a bad setting fails here, not in a worker
        # Jobs, and one None per worker when the pool closes.
        self._queue: asyncio.Queue[_Job | None] = asyncio.Queue()
        self._workers: set[asyncio.Task[None]] = set()
        self._idle = 0
        # Jobs taken by workers that have not started sending them (still
        # connecting), and the batches being sent: what is not yet answered
        # in them is work still to share out, as far as fairness goes.
        self._unsent = 0
        self._sending: dict[int, list[Transaction]] = {}
        self._ready: list[tuple[AsyncSMTPClient, float]] = []  # connect()'s, for the first worker
        self._closed = False
        # Back-off is the pool's, not a worker's: otherwise each new worker
        # would knock at once while the others sleep, ``size`` times as often.
        self._backoff = 0.0  # seconds; 0 while connections succeed
        self._retry_at = 0.0  # time.monotonic() before which no attempt is made
        self._failures = 0  # failed attempts so far
        self._refusal: BaseException | None = None  # what the last one met
        self._probe = asyncio.Lock()  # one attempt at a time while backing off
        self._proven = False  # some connection has succeeded

    async def connect(self) -> None:
        """Open a connection now and keep it for the first worker; raise what
        opening it met (unreachable, TLS, AUTH, a refused greeting). For a
        caller that wants to know the server takes its session before it
        queues anything, without a connection beyond ``size`` to find out."""
        if self._closed:
            raise PoolClosed("the pool is closed")
        self._ready.append((await self._open(), time.monotonic()))

    async def send(
        self, message: MessageLike, mail_from: str | None = None,
        rcpt_to: Sequence[str] | str | None = None, *, mail_options: MailOptions | None = None,
        rcpt_options: RcptOptionsArg = None,
    ) -> SendResult:
        """Send one message on some connection; raises as ``SMTPClient.send``."""
        if self._closed:
            raise PoolClosed("the pool is closed")
        job = _Job(message, mail_from, rcpt_to, mail_options, rcpt_options)
        self._queue.put_nowait(job)
        if not self._workers or (
            len(self._workers) < self.size and not self._backoff and self._queue.qsize() > self._idle
        ):
            task = asyncio.get_running_loop().create_task(self._work())
            self._workers.add(task)
            task.add_done_callback(self._workers.discard)
        return await job.future

    # -- workers -----------------------------------------------------------------

    async def _work(self) -> None:
        client: AsyncSMTPClient | None = None
        opened = 0.0
        try:
            while (share := await self._take()) is not None:
                # A share goes in runs of at most ``batch``; the part not yet
                # sent stays counted in ``_unsent``, for the others' shares.
                unsent = len(share)
                try:
                    while unsent:
                        start = len(share) - unsent
                        if start and self._closed:
                            _fail(share[start:], PoolClosed("the pool was closed before this message was sent"))
                            break
                        if client is not None and self._worn_out(client, opened):
                            await client.quit()
                            client = None
                        if client is None or not client.connected:
                            client = None
                            try:
                                client, opened = await self._connection()
                            except (MailwireError, OSError, asyncio.TimeoutError) as err:
                                _fail(share[start:], err)
                                break
                        jobs = share[start:start + self.batch]
                        self._unsent -= len(jobs)
                        unsent -= len(jobs)
                        await self._deliver(client, jobs)
                except BaseException:
                    # Cancelled (close() ran out of time) with a share in hand:
                    # its senders must not wait forever. Whatever was answered
                    # is set already and keeps its outcome.
                    _fail(share[len(share) - unsent:], PoolClosed("the pool was closed before this message was sent"))
                    _fail(share, ConnectionClosed(
                        "the pool was closed before this message's outcome was known (it may have been delivered)"
                    ))
                    raise
                finally:
                    self._unsent -= unsent  # counted by _take, if never sent
        finally:
            if client is not None:
                await client.quit()

    async def _connection(self) -> tuple[AsyncSMTPClient, float]:
        """The connection ``connect()`` opened, if it is still up; else a new one."""
        while self._ready:
            client, opened = self._ready.pop()
            if client.connected:
                return client, opened
            await client.close()
        return await self._open(), time.monotonic()

    async def _open(self) -> AsyncSMTPClient:
        """A new connection. Until one has succeeded, and while the server
        refuses, attempts are made one at a time, no sooner than the back-off
        allows; a worker that queued behind an attempt that failed takes its
        error instead of knocking again. So a burst at a pool whose server
        refuses costs it one connection, not ``size``."""
        if self._proven and not self._backoff:
            return await self._attempt()
        failures = self._failures
        async with self._probe:
            if self._failures != failures and self._refusal is not None:
                raise self._refusal
            if not (self._proven and not self._backoff):
                delay = self._retry_at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                return await self._attempt()
        return await self._attempt()  # the attempt we queued behind succeeded: go together

    async def _attempt(self) -> AsyncSMTPClient:
        client = self.client_class(self.host, self.port, auto_reconnect=False, **self.settings)
        level = self._backoff
        try:
            await client.connect()
        except (MailwireError, OSError, asyncio.TimeoutError) as err:
            if self._backoff == level:  # attempts failing together double it once
                self._backoff = min(max(level * 2, self.min_backoff), self.max_backoff)
            self._retry_at = time.monotonic() + self._backoff
            self._failures += 1
            self._refusal = err
            log.warning("cannot connect to %s: %s; backing off %.1fs", self.host, err, self._backoff)
            raise
        self._backoff = 0.0
        self._proven = True
        return client

    async def _take(self) -> list[_Job] | None:
        """The next job (waiting for one), plus a fair share of whatever else
        is queued; None when the pool is closing."""
        self._idle += 1
        try:
            first = await self._queue.get()
        finally:
            self._idle -= 1
        if first is None:
            return None
        # A fair share of the work not yet answered, so a burst goes out over
        # every connection the pool has (each costs a round trip per message
        # across a slow link) rather than in whole batches over the first few.
        # Divided among all the workers, busy ones too: they come back for
        # more, and a worker free early must not take the whole rest (one of
        # four connections once carried 200 of 500 messages so). Counting
        # what they still have to send keeps the first batches of a burst
        # equal; counting only that (a batch's answered transactions are
        # settled) keeps the tail from going to whoever is free first.
        unanswered = sum(1 for txns in self._sending.values() for txn in txns if txn.settled is None)
        waiting = 1 + self._queue.qsize() + self._unsent + unanswered
        # Up to SHARE_RUNS batches: a pipelined batch is answered a window at
        # a time, in a few round trips, so a connection opened first (the
        # others still connecting) got through its first batch before they
        # began; capped at one, the rest of a burst went to it (500 over 4:
        # 200 on one connection). A burst of up to SHARE_RUNS batches a
        # connection is so split evenly up front; a larger one is shared out
        # as workers come back, and a slow connection holds at most that.
        share = min(SHARE_RUNS * self.batch, -(-waiting // max(len(self._workers), 1)))
        jobs = [first]
        while len(jobs) < share and not self._queue.empty():
            job = self._queue.get_nowait()
            if job is None:
                self._queue.put_nowait(None)  # for this worker's next turn
                break
            jobs.append(job)
        taken = [job for job in jobs if not job.future.done()]  # cancelled while queued
        self._unsent += len(taken)
        return taken

    def _worn_out(self, client: AsyncSMTPClient, opened: float) -> bool:
        if self.max_messages is not None and client.messages_sent >= self.max_messages:
            return True
        return self.max_age is not None and time.monotonic() - opened >= self.max_age

    async def _deliver(self, client: AsyncSMTPClient, jobs: list[_Job]) -> None:
        ready, txns = [], []
        for job in jobs:
            try:
                txns.append(client.prepare(
                    job.message, job.mail_from, job.rcpt_to,
                    mail_options=job.mail_options, rcpt_options=job.rcpt_options,
                ))
            except (MailwireError, ValueError, TypeError) as err:
                _fail([job], err)
            else:
                ready.append(job)
        if not ready:
            return
        if self.max_messages is not None:
            # What this connection may still carry (not yet worn out: >= 1).
            room = self.max_messages - client.messages_sent
            ready, rest = ready[:room], ready[room:]
            txns = txns[: len(ready)]
            for job in rest:
                self._queue.put_nowait(job)  # for a fresh connection
        self._sending[id(txns)] = txns
        try:
            outcomes = await client.transact(txns)
        except BaseException as err:
            # The connection failed mid-batch (or the pool was closed): what
            # was answered before keeps its outcome (a pipelined batch has
            # many answered at any moment); the rest are unknown.
            _settle(ready, [txn.settled for txn in txns])
            if isinstance(err, Exception):
                # The connection's failure, or what a message given as an
                # iterable raised (its connection is closed): its senders
                # hear it; the worker goes on.
                _fail(ready, err)
                return
            raise
        finally:
            del self._sending[id(txns)]
        _settle(ready, outcomes)

    # -- closing -----------------------------------------------------------------

    async def close(self, timeout: float | None = 30.0) -> None:
        """Take no more messages; let each connection finish the batch it is
        sending (up to ``timeout``), then QUIT it."""
        self._closed = True
        while not self._queue.empty():
            job = self._queue.get_nowait()
            if job is not None:
                _fail([job], PoolClosed("the pool was closed before this message was sent"))
        workers = list(self._workers)
        for _ in workers:
            self._queue.put_nowait(None)
        if workers:
            _, late = await asyncio.wait(workers, timeout=timeout)
            for task in late:
                task.cancel()  # its transaction is cut: the connection closes, nothing is half-sent
            if late:
                await asyncio.wait(late)
        while self._ready:  # opened by connect() and never used
            await self._ready.pop()[0].quit()

    async def __aenter__(self) -> "SMTPPool":
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


def _settle(jobs: list[_Job], outcomes: Sequence[SendResult | SMTPError | None]) -> None:
    """Each job its outcome (None: not known, left as it is)."""
    for job, outcome in zip(jobs, outcomes):
        if job.future.done() or outcome is None:
            continue
        try:
            job.future.set_result(outcome_or_raise(outcome))
        except SMTPError as err:
            job.future.set_exception(err)


def _fail(jobs: list[_Job], err: BaseException) -> None:
    for job in jobs:
        if not job.future.done():
            job.future.set_exception(err)


class LMTPPool(SMTPPool):
    """A pool of ``AsyncLMTPClient`` connections (RFC 2033): one reply per
    recipient, as ``LMTPClient`` is to ``SMTPClient``."""

    client_class = AsyncLMTPClient

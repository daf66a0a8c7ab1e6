"""What the storing backends (``Maildir``, ``Mbox``) share: a session that stores in worker threads.

A store's ``store(envelope)`` is blocking file I/O; ``StoreSession`` runs it
in the store's worker threads (``Writers``) so the event loop never waits on
a disk, and
turns a full disk or quota into ``452 4.3.1`` (the sender retries later,
``storage_refusal``) while any other failure reaches the server as
``451 4.3.0``. The streaming form is shared too: ``store_stream`` gathers a
message's chunks on the event loop into batches and hands each to a
``StoreFile`` (the store's own: a Maildir file in ``tmp/``, an mbox spool)
in a worker thread, commits it at the end, and discards it on any failure
or cancellation. The helpers are the two things both stores write the same
way: the ``Return-Path:`` line and the fsync of a directory whose entries
must survive a power cut.

``Writers`` is the store's own thread pool rather than ``asyncio.to_thread``:
a hop to a thread and back is most of the CPU a small message costs
(measured: ~90 us per hop with ``to_thread``, ~100 with the ``shield`` a
file given up mid-write needs, ~70 this way), and here the thread settles
the one future the session awaits with one ``call_soon_threadsafe``, where
``run_in_executor`` chains a second future and wakes the loop for it.
"""

from __future__ import annotations

import abc
import asyncio
import errno
import functools
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any, TypeVar

from ...errors import SMTPError
from ..envelope import Envelope, SessionInfo
from ..session import BaseSession, Session
from ..streaming import MessageContent

__all__ = [
    "Store", "StoreSession", "StoreFile", "Writers", "DirectorySync", "store_stream", "fsync_directory",
    "return_path", "storage_refusal", "remove_file",
]

T = TypeVar("T")
A = TypeVar("A")

log = logging.getLogger(__name__)

# errno values that mean "the disk (or the quota) is full": RFC 5321 452,
# RFC 3463 4.3.1 "mail system full".
_FULL = frozenset(e for e in (errno.ENOSPC, getattr(errno, "EDQUOT", None)) if e is not None)


def fsync_directory(path: str) -> None:
    """fsync a directory, so that entries made in it (a link, a new file)
    are on disk. Where directories cannot be opened (Windows), nothing."""
    if os.name == "nt":
        return
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DirectorySync:
    """The fsync of one directory, shared by the threads that need it.

    Each message linked into a Maildir's ``new/`` needs ``new/`` on disk
    before its 250; one fsync of the directory covers every link made
    before it began. So the threads that link at about the same time share
    one (a group commit, as databases make for their logs): a thread waits
    for an fsync that begins after its link, and makes it itself if none is
    under way. Twenty sessions storing at once then pay a few directory
    fsyncs, not twenty. One that fails covers nobody: each waiter then
    tries again (and hears its own error).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._cond = threading.Condition()
        self._started = 0  # fsyncs begun (each one's ticket)
        self._finished = 0  # the ticket of the last that succeeded
        self._running = False
        self.fsyncs = 0  # made, for the curious (a test, a bench)

    def sync(self) -> None:
        """Return once ``path`` was fsynced by a call begun after this one."""
        with self._cond:
            needed = self._started + 1  # one under way may have begun before our link
            while self._finished < needed:
                if not self._running:
                    self._running = True
                    self._started += 1
                    ticket = self._started
                    break
                self._cond.wait()
            else:
                return
        done = False
        try:
            fsync_directory(self.path)
            done = True
        finally:
            with self._cond:
                self._running = False
                self.fsyncs += 1
                if done:
                    self._finished = ticket
                self._cond.notify_all()


def remove_file(file: IO[bytes]) -> None:
    """Close and remove a file written in part (what a failed or aborted
    delivery leaves); one already gone is no error."""
    try:
        file.close()
    except OSError:
        pass
    try:
        os.remove(file.name)
    except FileNotFoundError:
        pass


def return_path(envelope: Envelope, eol: bytes) -> bytes:
    """``Return-Path: <sender>`` (RFC 5321 4.4), ``<>`` for the null sender."""
    sender = envelope.mail_from.replace("\r", "").replace("\n", "")
    return b"Return-Path: <" + sender.encode("utf-8", "surrogateescape") + b">" + eol


def storage_refusal(err: OSError, envelope: Envelope) -> SMTPError | None:
    """The refusal for a failed write: ``452 4.3.1`` for a full disk or
    quota (the sender retries later); None for any other failure, which the
    server answers with ``451 4.3.0``."""
    if err.errno not in _FULL:
        return None
    log.error("cannot store a message from <%s>: %s", envelope.mail_from, err)
    return SMTPError(452, "4.3.1", "Insufficient system storage")


class StoreFile(abc.ABC):
    """One message being stored as it arrives: blocking calls, made by one
    worker thread at a time. ``write`` takes a batch of chunks; ``commit``
    the last ones, and makes the message part of the store (its name there,
    for the log); ``discard`` removes whatever was written (nothing once
    committed). The thread bookkeeping is here: a thread cannot be stopped,
    so a file given up while one has it is discarded once it is done."""

    def __init__(self) -> None:
        self.busy = False  # a worker thread has it
        self._doomed = False  # discard it once the thread is done

    @abc.abstractmethod
    def write(self, chunks: list[bytes]) -> None:
        """A store's own (see the class)."""

    @abc.abstractmethod
    def commit(self, chunks: list[bytes]) -> str:
        """A store's own (see the class)."""

    @abc.abstractmethod
    def discard(self) -> None:
        """A store's own (see the class)."""

    def discard_when_idle(self) -> None:
        """``discard`` now, or (from the event loop, while a worker thread
        has the file) once the thread is done."""
        if self.busy:
            self._doomed = True
        else:
            self.discard()

    def idle(self) -> None:
        """The worker thread is done with the file (on the event loop)."""
        self.busy = False
        if self._doomed:
            self.discard()


class Writers:
    """A store's worker threads (``threads`` at most; the default is
    ``asyncio.to_thread``'s). The pool is made on first use in each process,
    so one made before ``mailwire serve --workers`` forks is not inherited
    without its threads."""

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads or min(32, (os.cpu_count() or 1) + 4)
        self._pool: ThreadPoolExecutor | None = None
        self._pid = 0

    def call(self, fn: Callable[[A], T], arg: A, done: Callable[[], None] | None = None) -> asyncio.Future[T]:
        """``fn(arg)`` in a worker thread, as a future of the running loop;
        ``done()`` runs on the loop once the thread is through with it,
        even if the future was cancelled meanwhile (a thread cannot be
        stopped)."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[T] = loop.create_future()

        def run() -> None:
            try:
                outcome: tuple[Any, BaseException | None] = (fn(arg), None)
            except StopIteration as err:  # a future cannot hold one
                failure = RuntimeError(f"StopIteration from {fn!r}")
                failure.__cause__ = err
                outcome = (None, failure)
            except BaseException as err:
                outcome = (None, err)
            try:
                loop.call_soon_threadsafe(_settle, waiter, outcome, done)
            except RuntimeError:
                pass  # the loop is closed: nobody waits any more

        pool = self._pool
        if pool is None or self._pid != os.getpid():
            pool = self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="mailwire-store")
            self._pid = os.getpid()
        pool.submit(run)
        return waiter


def _settle(waiter: asyncio.Future[Any], outcome: tuple[Any, BaseException | None],
            done: Callable[[], None] | None) -> None:
    if done is not None:
        done()
    if waiter.cancelled():
        return
    if outcome[1] is None:
        waiter.set_result(outcome[0])
    else:
        waiter.set_exception(outcome[1])


async def store_stream(file: StoreFile, content: MessageContent, batch: int, envelope: Envelope,
                       writers: Writers) -> str:
    """Store ``content`` through ``file`` as it arrives, in worker threads,
    ``batch`` octets at a time (one thread hop for most messages, little
    held for a large one); the name ``commit`` gave. Aborted, failed or
    cancelled: nothing of the message stays, and a full disk is 452."""
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in content:
            chunks.append(chunk)
            size += len(chunk)
            if size >= batch:
                file.busy = True
                await writers.call(file.write, chunks, file.idle)
                chunks, size = [], 0
        file.busy = True
        return await writers.call(file.commit, chunks, file.idle)
    except BaseException as err:
        # Aborted, failed or cancelled: nothing of the message stays
        # (a committed one excepted: the sender, never told 250, may send
        # it again; at-least-once, as any MTA).
        file.discard_when_idle()
        if isinstance(err, OSError):
            refusal = storage_refusal(err, envelope)
            if refusal is not None:
                raise refusal from err
        raise


class StoreSession(BaseSession):
    """Hands the message to a blocking ``store`` function in a worker thread."""

    def __init__(self, info: SessionInfo, store: Store) -> None:
        super().__init__(info)
        self._store = store

    async def data(self, envelope: Envelope) -> None:
        try:
            await self._store._threads.call(self._store.store, envelope)
        except OSError as err:
            refusal = storage_refusal(err, envelope)
            if refusal is not None:
                raise refusal from err
            raise  # the server answers 451 4.3.0 and the session goes on


class Store:
    """A backend that keeps each message with a blocking ``store``, which
    its sessions run in a worker thread; ``Maildir`` and ``Mbox`` are two."""

    @functools.cached_property
    def _threads(self) -> Writers:
        """Its worker threads (made on first use, on the event loop; its sessions' alone)."""
        return Writers()

    def store(self, envelope: Envelope) -> None:
        raise NotImplementedError

    async def new_session(self, info: SessionInfo) -> Session:
        return StoreSession(info, self)

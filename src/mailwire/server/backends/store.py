"""What the storing backends (``Maildir``, ``Mbox``) share: a session that stores in worker threads.

A store's ``store(envelope)`` is blocking file I/O; ``StoreSession`` runs it
through ``asyncio.to_thread`` so the event loop never waits on a disk, and
turns a full disk or quota into ``452 4.3.1`` (the sender retries later,
``storage_refusal``) while any other failure reaches the server as
``451 4.3.0``. The streaming form is shared too: ``store_stream`` gathers a
message's chunks on the event loop into batches and hands each to a
``StoreFile`` (the store's own: a Maildir file in ``tmp/``, an mbox spool)
in a worker thread, commits it at the end, and discards it on any failure
or cancellation. The helpers are the two things both stores write the same
way: the ``Return-Path:`` line and the fsync of a directory whose entries
must survive a power cut.
"""

from __future__ import annotations

import abc
import asyncio
import errno
import logging
import os
from collections.abc import Callable
from typing import IO, TypeVar

from ...errors import SMTPError
from ..envelope import Envelope, SessionInfo
from ..session import BaseSession, Session
from ..streaming import MessageContent

__all__ = [
    "Store", "StoreSession", "StoreFile", "store_stream", "fsync_directory", "return_path", "storage_refusal",
    "remove_file",
]

T = TypeVar("T")

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


async def store_stream(file: StoreFile, content: MessageContent, batch: int, envelope: Envelope) -> str:
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
                await _in_thread(file, file.write, chunks)
                chunks, size = [], 0
        return await _in_thread(file, file.commit, chunks)
    except BaseException as err:
        # Aborted, failed or cancelled: nothing of the message stays
        # (a committed one excepted: see _in_thread).
        file.discard_when_idle()
        if isinstance(err, OSError):
            refusal = storage_refusal(err, envelope)
            if refusal is not None:
                raise refusal from err
        raise


async def _in_thread(file: StoreFile, step: Callable[[list[bytes]], T], chunks: list[bytes]) -> T:
    """``step(chunks)`` in a worker thread. A thread cannot be stopped: if
    the session is cancelled meanwhile, the file is discarded once the
    thread is done with it (a committed one is kept: the sender, never told
    250, may send it again; at-least-once, as any MTA)."""
    file.busy = True
    future = asyncio.get_running_loop().run_in_executor(None, step, chunks)
    future.add_done_callback(lambda _: file.idle())  # before the shield's: idle when we wake
    return await asyncio.shield(future)


class StoreSession(BaseSession):
    """Hands the message to a blocking ``store`` function in a worker thread."""

    def __init__(self, info: SessionInfo, store: Store) -> None:
        super().__init__(info)
        self._store = store

    async def data(self, envelope: Envelope) -> None:
        try:
            await asyncio.to_thread(self._store.store, envelope)
        except OSError as err:
            refusal = storage_refusal(err, envelope)
            if refusal is not None:
                raise refusal from err
            raise  # the server answers 451 4.3.0 and the session goes on


class Store:
    """A backend that keeps each message with a blocking ``store``, which
    its sessions run in a worker thread; ``Maildir`` and ``Mbox`` are two."""

    def store(self, envelope: Envelope) -> None:
        raise NotImplementedError

    async def new_session(self, info: SessionInfo) -> Session:
        return StoreSession(info, self)

"""What the storing backends (``Maildir``, ``Mbox``) share: a session that stores in a worker thread.

A store's ``store(envelope)`` is blocking file I/O; ``StoreSession`` runs it
through ``asyncio.to_thread`` so the event loop never waits on a disk, and
turns a full disk or quota into ``452 4.3.1`` (the sender retries later,
``storage_refusal``) while any other failure reaches the server as
``451 4.3.0``. (``Maildir``'s session adds the streaming form to it.) The helpers
are the two things both stores write the same way: the ``Return-Path:``
line and the fsync of a directory whose entries must survive a power cut.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os

from ...errors import SMTPError
from ..envelope import Envelope, SessionInfo
from ..session import BaseSession, Session

__all__ = ["Store", "StoreSession", "fsync_directory", "return_path", "storage_refusal"]

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

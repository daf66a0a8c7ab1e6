"""``Maildir``: each message stored whole, or not at all, with the standard library's ``mailbox.Maildir``.

Atomic by the Maildir convention itself (written in ``tmp/``, linked into
``new/``), durable by an fsync of ``new/`` before the 250, and written in a
worker thread (``store.StoreSession``); the class docstring has each
promise and its limit.
"""

from __future__ import annotations

import logging
import mailbox
import os
import stat
import time
from typing import ClassVar

from ..envelope import Envelope
from .store import Store, fsync_directory, return_path

__all__ = ["Maildir", "STALE_TMP_AGE"]

log = logging.getLogger(__name__)

# The Maildir convention (cr.yp.to/proto/maildir.html): a file in tmp/ not
# accessed for 36 hours is left over from a failed delivery.
STALE_TMP_AGE = 36 * 3600.0


class Maildir(Store):
    """Stores each message in a Maildir with the standard library's ``mailbox.Maildir``.

    The stored file is ``Return-Path: <mail_from>`` followed by the message
    content exactly as received (CRLF line endings included; the Return-Path
    line ends the way the message's first line does). No other header is
    added (no ``Delivered-To``, no ``X-Original-To``, no ``Received``).

    Atomicity: ``mailbox.Maildir.add`` writes the message to ``tmp/``, fsyncs
    it, and only then links (or renames) it into ``new/``; if anything fails
    while writing, it removes the file from ``tmp/`` and re-raises. So a
    message is in ``new/`` whole or not at all. Durability: ``new/`` itself
    is then fsynced, before ``data()`` returns and the sender hears 250, so
    the new entry survives a power cut as the file's content does (a file
    system need not write a directory entry to disk when the file is). A
    full disk or quota is refused with ``452 4.3.1``; other failures reach
    the server, which answers ``451 4.3.0``.

    Clean-up: a process killed while writing leaves its file in ``tmp/``.
    As the Maildir convention has it, files there that nobody has touched
    for ``tmp_max_age`` seconds (36 hours; None: never) are removed when
    the backend is made; younger ones may be another deliverer's, being
    written, and are left alone.

    Writes run in worker threads; two threads that pick the same unique
    name (``mailbox`` names files by time, pid and a counter that is not
    thread-safe) get ``ExternalClashError`` and are retried with a new name.

    ``mailbox_class`` is the ``mailbox.Maildir`` (sub)class used.
    """

    mailbox_class: ClassVar[type[mailbox.Maildir]] = mailbox.Maildir
    name_retries = 5

    def __init__(
        self, path: str | os.PathLike[str], create: bool = True, *, tmp_max_age: float | None = STALE_TMP_AGE
    ) -> None:
        self.path = os.fspath(path)
        self.mailbox = self.mailbox_class(self.path, create=create)
        if tmp_max_age is not None:
            self.remove_stale_tmp(tmp_max_age)

    def remove_stale_tmp(self, max_age: float = STALE_TMP_AGE) -> int:
        """Remove the files in ``tmp/`` neither read nor written for
        ``max_age`` seconds (the Maildir convention's 36 hours by default);
        how many were removed. A younger file may be a delivery in progress,
        ours or another program's."""
        tmp = os.path.join(self.path, "tmp")
        cutoff = time.time() - max_age
        removed = 0
        try:
            entries = list(os.scandir(tmp))
        except FileNotFoundError:
            return 0
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
                if stat.S_ISREG(info.st_mode) and max(info.st_atime, info.st_mtime) < cutoff:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                continue  # another process removed it first
        if removed:
            log.info("removed %d stale file(s) from %s (left by an interrupted delivery)", removed, tmp)
        return removed

    def store(self, envelope: Envelope) -> None:
        content = envelope.content
        first_eol = content.find(b"\n")
        eol = b"\n" if first_eol >= 0 and content[first_eol - 1:first_eol] != b"\r" else b"\r\n"
        message = return_path(envelope, eol) + content
        for attempt in range(self.name_retries):
            try:
                key = self.mailbox.add(message)
            except mailbox.ExternalClashError:
                if attempt == self.name_retries - 1:
                    raise
                continue
            # The link is an entry in new/: on disk only once new/ is.
            fsync_directory(os.path.join(self.path, "new"))
            log.debug("stored a message from <%s> in %s as %s", envelope.mail_from, self.path, key)
            return

"""``MaildirDeliverer``: each queue id stored in a Maildir once, however often it is delivered.

The server's ``Maildir`` backend (``server/backends/maildir.py``) is reused
for the Maildir itself (its skeleton, its unique names in ``tmp/``, its
``Return-Path:`` line, its group-committed fsync of ``new/``); what differs
is the name in ``new/``: not unique per write but the queue id itself
(``<queue id>.mailwire``, no host in it, so two workers on two machines
sharing the Maildir pick the same name). The message is written to a
unique file in ``tmp/`` and fsynced, then *hard-linked* to that name: the
link is atomic and fails if the name exists, so of two workers racing on
one entry exactly one stores it, and a repeat after a crash between the
store and the acknowledgement stores nothing. A reader that moved the
message to ``cur/`` (``<name>:2,<flags>``) is looked for after the link,
and a link made beside it is taken back. Left possible: a repeat after the
reader deleted or moved the message out of ``cur/``, and a repeat racing a
reader that renames the new copy in the instant before it is taken back.
A file system without hard links is refused (a rename would replace).
"""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Sequence

from ...server.backends.maildir import Maildir
from ...server.backends.store import remove_file
from ...server.envelope import Envelope
from ..entry import QueueEntry
from .base import Failure, Report, line_ending

__all__ = ["MaildirDeliverer"]

# errno values that mean the disk or the quota is full: a temporary failure, retried.
_FULL = frozenset(e for e in (errno.ENOSPC, getattr(errno, "EDQUOT", None)) if e is not None)


class MaildirDeliverer:
    target = "maildir"
    idempotent = True

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.maildir = Maildir(path)
        for sub in ("tmp", "new"):
            where = os.path.join(self.maildir.path, sub)
            if not os.access(where, os.W_OK | os.X_OK):
                raise PermissionError(errno.EACCES, "cannot write to the Maildir", where)

    @staticmethod
    def name_of(queue_id: str) -> str:
        """The message's name in ``new/`` (``cur/``: with ``:2,<flags>`` after it)."""
        return f"{queue_id}.mailwire"

    async def deliver(self, entry: QueueEntry, message: bytes, recipients: Sequence[str]) -> Report:
        try:
            stored = await asyncio.to_thread(self._store, entry, message)
        except OSError as err:
            full = err.errno in _FULL
            return Report({r: Failure(False, "4.3.1" if full else "4.3.0", f"x-local; {err}") for r in recipients})
        return Report(duplicate=not stored)

    def _store(self, entry: QueueEntry, message: bytes) -> bool:
        """Store ``message`` unless its queue id is there; whether it was stored now."""
        maildir = self.maildir
        name = self.name_of(entry.queue_id)
        new = os.path.join(maildir.path, "new", name)
        envelope = Envelope(mail_from=entry.mail_from, rcpt_to=list(entry.rcpt_to))
        tmp_name = os.path.join(maildir.path, "tmp", maildir.unique_name())
        file = open(tmp_name, "xb")
        try:
            file.write(maildir.trace(envelope, line_ending(message)))
            file.write(message)
            file.flush()
            os.fsync(file.fileno())
            file.close()
            try:
                os.link(tmp_name, new)
                stored = True
            except FileExistsError:
                stored = False
        finally:
            remove_file(file)  # the tmp/ name: the message, if kept, is in new/
        if stored and self._in_cur(name):  # delivered before, and read meanwhile
            os.unlink(new)
            stored = False
        maildir.new_synced.sync()  # a repeat too: the first may have failed before its fsync
        return stored

    def _in_cur(self, name: str) -> bool:
        prefix = name + ":"
        with os.scandir(os.path.join(self.maildir.path, "cur")) as entries:
            return any(e.name.startswith(prefix) for e in entries)

    async def close(self) -> None:
        pass

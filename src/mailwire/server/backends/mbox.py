"""``Mbox``: each message appended to an mbox file with the standard library's ``mailbox.mbox``.

Appends are serialised by a thread lock per file and ``mailbox``'s file
locks, fsynced before the 250, and rolled back (the file truncated) when
they fail; what mbox cannot promise, a crash mid-write, is on the class.
Written in a worker thread (``store.StoreSession``).
"""

from __future__ import annotations

import logging
import mailbox
import os
import threading
import time
from typing import ClassVar

from ...errors import SMTPError
from ..envelope import Envelope
from .store import Store, fsync_directory, return_path

__all__ = ["Mbox"]

log = logging.getLogger(__name__)

class Mbox(Store):
    """Appends each message to an mbox file with the standard library's ``mailbox.mbox``.

    Each message gets a ``From <sender> <date>`` separator line (the sender
    ``MAILER-DAEMON`` for the null sender) and a ``Return-Path: <mail_from>``
    header, its CRLF line endings become LF (mbox is a Unix file format) and
    ``mailbox`` quotes body lines starting ``From `` as ``>From ``.

    Locking: deliveries to one file from this process are serialised by a
    thread lock (shared by all ``Mbox`` objects for that path); the file is
    locked with ``mailbox``'s ``lock()`` (``lockf`` and a ``.lock``
    dot-lock, which other mail programs honour) around the append and the
    ``flush()`` (fsync). ``lock()`` does not wait, so it is retried until
    ``lock_timeout`` seconds have passed; then the message is refused with
    ``450 4.2.0`` (mailbox busy) and the sender tries again later.

    Durability: ``flush()`` fsyncs the file after each append, and the
    file's directory is fsynced when the file is opened (or created), all
    before the sender hears 250.

    Atomicity, as far as mbox allows: the append and the fsync happen under
    the lock, and if either fails the file is truncated back to its length
    before the append, so it is left as it was. What mbox cannot promise: a
    crash (of the process or the machine) in the middle of the write leaves a
    partial message at the end of the file, which the next delivery would
    follow; Maildir has no such window.

    The ``mailbox.mbox`` object is kept open between deliveries, so its
    index of the file is read once, not on every message. If another
    program replaces the file (a mail reader expunging by rewrite and
    rename), the next delivery notices the new inode and reopens it.
    ``close()`` releases the file.
    """

    mailbox_class: ClassVar[type[mailbox.mbox]] = mailbox.mbox
    lock_poll = 0.05  # seconds between attempts to take a busy lock
    # One thread lock per file, shared by every Mbox object of this process:
    # lockf locks belong to the process (and closing any descriptor of the
    # file drops them), and mailbox names its dot-lock's temporary file by
    # pid and second, so neither separates two threads of one process.
    _path_locks: ClassVar[dict[str, threading.Lock]] = {}
    _registry_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self, path: str | os.PathLike[str], *, create: bool = True, lock_timeout: float = 10.0
    ) -> None:
        self.path = os.fspath(path)
        self.create = create
        self.lock_timeout = lock_timeout
        with self._registry_lock:
            key = os.path.realpath(self.path)
            self._lock = self._path_locks.setdefault(key, threading.Lock())
        self._box: mailbox.mbox | None = None
        self._identity: tuple[int, int] | None = None
        with self._lock:
            self._open()

    def _open(self) -> mailbox.mbox:
        if self._box is None:
            self._box = self.mailbox_class(self.path, create=self.create)
            # The file may have just been made: its directory entry must be
            # on disk before a 250 promises anything (appends are fsynced by
            # flush()).
            fsync_directory(os.path.dirname(os.path.abspath(self.path)))
            info = os.stat(self.path)
            self._identity = (info.st_dev, info.st_ino)
        return self._box

    def _current(self) -> bool:
        """Is the open file still the one at ``path``?"""
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            return False
        return (info.st_dev, info.st_ino) == self._identity

    def _discard(self) -> None:
        box, self._box = self._box, None
        if box is not None:
            try:
                box.close()  # unlocks too
            except OSError:
                log.exception("closing mbox %s", self.path)

    def _locked_box(self, deadline: float) -> mailbox.mbox:
        while True:
            box = self._open()
            try:
                box.lock()
            except (mailbox.ExternalClashError, FileExistsError):
                if time.monotonic() >= deadline:
                    raise SMTPError(450, "4.2.0", "Mailbox busy (locked), try again later") from None
                time.sleep(self.lock_poll)
                continue
            if self._current():
                return box
            self._discard()  # replaced under us: open the new file

    def store(self, envelope: Envelope) -> None:
        sender = envelope.mail_from
        if not sender or any(ch.isspace() for ch in sender):
            sender = "MAILER-DAEMON"
        message = (
            b"From " + sender.encode("utf-8", "surrogateescape") + b" "
            + time.asctime(time.gmtime()).encode("ascii") + b"\n"
            + return_path(envelope, b"\n") + envelope.content.replace(b"\r\n", b"\n")
        )
        deadline = time.monotonic() + self.lock_timeout
        if not self._lock.acquire(timeout=self.lock_timeout):
            raise SMTPError(450, "4.2.0", "Mailbox busy, try again later")
        try:
            box = self._locked_box(deadline)
            try:
                before = os.path.getsize(self.path)
                try:
                    box.add(message)
                    box.flush()
                except BaseException:
                    self._roll_back(before)
                    raise
            finally:
                if self._box is box:
                    box.unlock()
        finally:
            self._lock.release()

    def _roll_back(self, length: int) -> None:
        """Cut the file back to ``length`` and forget the open object, whose
        index now names a message that is not there."""
        try:
            os.truncate(self.path, length)
        except OSError:
            log.exception("could not roll back mbox %s to %d octets", self.path, length)
        self._discard()

    def close(self) -> None:
        with self._lock:
            self._discard()

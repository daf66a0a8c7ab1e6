"""``Maildir``: each message stored whole, or not at all, written to disk as it arrives.

Atomic by the Maildir convention itself (written in ``tmp/``, linked into
``new/``), durable by an fsync of ``new/`` before the 250, and written in
worker threads; the class docstring has each promise and its limit.

The server hands a message to ``MaildirSession.data_stream`` as it arrives
(``streaming.py``): its chunks are gathered on the event loop into batches
of ``Maildir.write_batch`` octets and each batch is written by a worker
thread (``MaildirFile``), so a message of any size costs a connection about
one batch, and a small one a single thread hop, open to link, as when it was
held whole. A message that does not end whole, a failed write and a
cancelled session all remove the file from ``tmp/``. The whole-``bytes``
form (``data``, for code that drives a session itself) goes through
``mailbox.Maildir.add``, which keeps the same promises.
"""

from __future__ import annotations

import itertools
import logging
import mailbox
import os
import socket
import stat
import time
from typing import IO, ClassVar

from ..envelope import Envelope, SessionInfo
from ..session import Session
from ..streaming import MessageContent
from .store import DirectorySync, Store, StoreFile, StoreSession, remove_file, return_path, store_stream

__all__ = ["Maildir", "MaildirSession", "MaildirFile", "STALE_TMP_AGE"]

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

    A message the server streams is written as it arrives (``MaildirFile``,
    in batches of ``write_batch`` octets), with the same promises: fsynced in
    ``tmp/``, linked into ``new/`` (renamed where links are refused), ``new/``
    fsynced, the file in ``tmp/`` removed on any failure. Its name follows
    the Maildir convention (time, pid, a counter of this object's, host).

    ``mailbox_class`` is the ``mailbox.Maildir`` (sub)class used.
    """

    mailbox_class: ClassVar[type[mailbox.Maildir]] = mailbox.Maildir
    name_retries = 5
    # Octets of a streamed message gathered before a worker thread writes
    # them: one thread hop for most messages, little held for a large one.
    write_batch = 1 << 19

    def __init__(
        self, path: str | os.PathLike[str], create: bool = True, *, tmp_max_age: float | None = STALE_TMP_AGE
    ) -> None:
        self.path = os.fspath(path)
        if create:
            _make_skeleton(self.path)
        self.mailbox = self.mailbox_class(self.path, create=create)
        # The link of a message is an entry in new/: on disk only once new/ is.
        self.new_synced = DirectorySync(os.path.join(self.path, "new"))
        self._counter = itertools.count()  # next() is atomic: threads share it
        if tmp_max_age is not None:
            self.remove_stale_tmp(tmp_max_age)

    async def new_session(self, info: SessionInfo) -> Session:
        return MaildirSession(info, self)

    def unique_name(self) -> str:
        """A name for a new message, unique by the Maildir convention
        (cr.yp.to/proto/maildir.html): the time, this process, a counter."""
        now = time.time()
        host = socket.gethostname().replace("/", r"\057").replace(":", r"\072")
        return f"{int(now)}.M{int(now % 1 * 1e6)}P{os.getpid()}Q{next(self._counter)}.{host}"

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

    def trace(self, envelope: Envelope, eol: bytes) -> bytes:
        """The lines written before the message: ``Return-Path:`` (a
        subclass may add its own after it, each ending with ``eol``)."""
        return return_path(envelope, eol)

    def store(self, envelope: Envelope) -> None:
        self.add(envelope)

    def add(self, envelope: Envelope) -> str:
        """``store``, giving the message's name in the Maildir."""
        content = envelope.content
        first_eol = content.find(b"\n")
        eol = b"\n" if first_eol >= 0 and content[first_eol - 1:first_eol] != b"\r" else b"\r\n"
        message = self.trace(envelope, eol) + content
        for attempt in range(self.name_retries):
            try:
                key = self.mailbox.add(message)
            except mailbox.ExternalClashError:
                if attempt == self.name_retries - 1:
                    raise
                continue
            self.new_synced.sync()
            log.debug("stored a message from <%s> in %s as %s", envelope.mail_from, self.path, key)
            return key
        raise AssertionError("unreachable")


def _make_skeleton(path: str) -> None:
    """Make the Maildir at ``path`` (and its tmp/new/cur) if it is missing
    or a bare start of one. Several processes may do it at once (server
    workers, each with its own ``Maildir``): ``mailbox.Maildir`` would
    raise FileExistsError in all but the first, or use a directory another
    is still filling. A directory with anything else in it is left alone."""
    subdirs = ("tmp", "new", "cur")
    try:
        if os.path.isdir(path) and not set(os.listdir(path)) <= set(subdirs):
            return
        for sub in ("", *subdirs):
            os.makedirs(os.path.join(path, sub), 0o700, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        pass  # not a directory: mailbox.Maildir says so


def _eol_of(chunks: list[bytes], start: int, before: bytes) -> tuple[bytes | None, bytes]:
    """The line ending of a message's first line, looked for in
    ``chunks[start:]`` (``before``: the octet that preceded them): b"\\r\\n",
    b"\\n", or None if no line has ended yet; and the last octet seen."""
    for chunk in itertools.islice(chunks, start, None):
        end = chunk.find(b"\n")
        if end >= 0:
            previous = chunk[end - 1:end] if end else before
            return (b"\r\n" if previous == b"\r" else b"\n"), before
        if chunk:
            before = chunk[-1:]
    return None, before


class MaildirFile(StoreFile):
    """One message being written to a Maildir's ``tmp/``: blocking calls,
    made by one worker thread at a time.

    ``write`` appends a batch; ``commit`` writes the last one, fsyncs the
    file, links it into ``new/`` and fsyncs ``new/``; ``discard`` closes and
    removes what is in ``tmp/`` (nothing once committed). The file is
    opened by the first write that knows how the message's first line ends
    (the ``Return-Path:`` line ends alike, as in ``Maildir.store``), so a
    small message is opened, written and linked by ``commit`` alone.
    """

    def __init__(self, maildir: Maildir, envelope: Envelope) -> None:
        super().__init__()
        self.maildir = maildir
        self.envelope = envelope
        self.name: str | None = None
        self._file: IO[bytes] | None = None
        self._held: list[bytes] = []  # before the first line's end is known
        self._last = b""
        self._committed = False

    def write(self, chunks: list[bytes]) -> None:
        file = self._file
        if file is None:
            start = len(self._held)
            self._held.extend(chunks)
            eol, self._last = _eol_of(self._held, start, self._last)
            if eol is None:
                return  # the first line goes on: hold it
            file = self._open(eol)
            chunks, self._held = self._held, []
        file.writelines(chunks)

    def commit(self, chunks: list[bytes]) -> str:
        """Write the last chunks and make the message part of the Maildir;
        its name there."""
        self.write(chunks)
        file = self._file or self._open(b"\r\n")  # no line ended: CRLF, as store() has it
        file.writelines(self._held)
        self._held = []
        file.flush()
        os.fsync(file.fileno())
        file.close()
        assert self.name is not None
        tmp = os.path.join(self.maildir.path, "tmp", self.name)
        new = os.path.join(self.maildir.path, "new", self.name)
        try:
            os.link(tmp, new)
        except PermissionError:  # a file system without hard links
            os.rename(tmp, new)
        else:
            os.remove(tmp)
        self._committed = True
        self.maildir.new_synced.sync()
        return self.name

    def discard(self) -> None:
        """Remove the message from ``tmp/`` (what failed, or was aborted)."""
        file, self._file = self._file, None
        self._held = []
        if file is not None and not self._committed:
            remove_file(file)

    def _open(self, eol: bytes) -> IO[bytes]:
        maildir = self.maildir
        for attempt in range(maildir.name_retries):
            self.name = maildir.unique_name()
            try:
                file = open(os.path.join(maildir.path, "tmp", self.name), "xb")
            except FileExistsError:
                if attempt == maildir.name_retries - 1:
                    raise
                continue
            self._file = file
            file.write(maildir.trace(self.envelope, eol))
            return file
        raise AssertionError("unreachable")


class MaildirSession(StoreSession):
    """A ``Maildir``'s session: a streamed message is written as it arrives."""

    def __init__(self, info: SessionInfo, maildir: Maildir) -> None:
        super().__init__(info, maildir)
        self.maildir = maildir

    async def data_stream(self, envelope: Envelope, content: MessageContent) -> None:
        file = MaildirFile(self.maildir, envelope)
        key = await store_stream(file, content, self.maildir.write_batch, envelope, self.maildir._threads)
        log.debug("stored a message from <%s> in %s as %s", envelope.mail_from, self.maildir.path, key)
        await self.stored(envelope, key)

    async def stored(self, envelope: Envelope, name: str) -> None:
        """Told of each streamed message once it is in ``new/`` as ``name``
        (before the sender hears 250): nothing here; a subclass's hook
        (the catcher indexes it). What it raises, the sender hears (451),
        though the message is stored: a hook should not raise."""

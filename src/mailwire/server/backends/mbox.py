"""``Mbox``: each message appended to an mbox file, in the form ``mailbox.mbox`` writes, streamed.

A message is put in its mbox form as it arrives (``MboxQuoter``: LF line
endings, ``>From `` quoting, exactly as ``mailbox.mbox.add`` writes bytes)
and, beyond ``Mbox.write_batch`` octets, spooled to a temporary file in the
mbox's directory (``MboxSpool``), so no connection holds a whole message.
Only once it has all arrived is the mbox locked (a thread lock per file,
and ``mailbox``'s ``lockf`` and dot-lock, which other processes and mail
programs honour), the From_ line written and the message copied after it,
fsynced before the 250, and rolled back (the file truncated) if anything
fails: a slow sender never holds the lock, and every other session's
delivery waits only for a copy. What mbox cannot promise, a crash
mid-write, is on the class. Written in worker threads.
"""

from __future__ import annotations

import logging
import mailbox
import os
import tempfile
import threading
import time
from collections.abc import Sequence
from typing import IO, ClassVar

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: mailbox takes no lockf either
    fcntl = None  # type: ignore[assignment]

from ...errors import SMTPError
from ..envelope import Envelope, SessionInfo
from ..session import Session
from ..streaming import MessageContent
from .store import Store, StoreFile, StoreSession, fsync_directory, remove_file, return_path, store_stream

__all__ = ["Mbox", "MboxQuoter", "MboxSpool", "MboxSession"]

log = logging.getLogger(__name__)

# mailbox writes each line ending as the platform's (mailbox.linesep, not public).
_LINESEP = os.linesep.encode("ascii")
_FROM = b"\nFrom "


class MboxQuoter:
    """A message's mbox form, piece by piece, exactly as ``mailbox.mbox``
    writes a message given as bytes (``_dump_message`` with
    ``mangle_from_``): its CRLFs become LF (``bytes.replace``), a line
    starting ``From `` becomes ``>From `` (after an LF only: the first line
    is the Return-Path, which the caller feeds first), each LF the
    platform's line ending, an LF added if the last line lacks one, then
    the empty line that ends every message in an mbox.

    A pattern cut between pieces is found by carrying state over: whether
    the output ends a line (the next piece's ``From `` is quoted), and what
    could begin a pattern the next piece completes, held back: a final CR
    (the CRLF's LF may come next), or a final ``\nF``, ``\nFr``...
    (``From`` at a line start cut short): a few octets, rarely. A piece that
    ends a line, the usual case, is passed on with ``replace``'s one copy.
    """

    __slots__ = ("_held", "_line_start")

    def __init__(self) -> None:
        self._held = b""
        self._line_start = False  # the output so far ends with LF (the first line is never quoted)

    def feed(self, piece: bytes) -> bytes:
        data = self._held + piece if self._held else piece
        cr = data.endswith(b"\r")
        if cr:
            data = data[:-1]
        data = data.replace(b"\r\n", b"\n").replace(_FROM, b"\n>From ")
        if self._line_start and data.startswith(b"From "):
            data = b">" + data
        keep = 0
        start = data.rfind(b"\n", max(0, len(data) - 5))
        if start >= 0:
            if len(data) - start >= 2 and _FROM.startswith(data[start:]):
                keep = len(data) - start  # "\nF" to "\nFrom": a quoted line, perhaps
        elif self._line_start and len(data) < 5 and b"From ".startswith(data):
            keep = len(data)  # "F" to "From" at a line start, likewise
        if keep:
            data, self._held = data[:-keep], data[-keep:]
        else:
            self._held = b""
        if cr:
            self._held += b"\r"
        return self._out(data)

    def end(self) -> bytes:
        """What is held back, and the message's end."""
        out = self._out(self._held)
        self._held = b""
        return out + (b"" if self._line_start else _LINESEP) + _LINESEP

    def _out(self, data: bytes) -> bytes:
        if data:
            self._line_start = data.endswith(b"\n")
            if _LINESEP != b"\n":
                data = data.replace(b"\n", _LINESEP)
        return data


def from_line(envelope: Envelope) -> bytes:
    """The separator line, ``From <sender> <date>``; ``MAILER-DAEMON`` for
    the null sender (and one with spaces, which would break the line)."""
    sender = envelope.mail_from
    if not sender or any(ch.isspace() for ch in sender):
        sender = "MAILER-DAEMON"
    return (
        b"From " + sender.encode("utf-8", "surrogateescape") + b" "
        + time.asctime(time.gmtime()).encode("ascii") + _LINESEP
    )


def _write_all(fd: int, data: bytes) -> None:
    """All of ``data`` at the descriptor's position (a write may be short)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class Mbox(Store):
    """Appends each message to an mbox file, as the standard library's ``mailbox.mbox`` would.

    Each message gets a ``From <sender> <date>`` separator line (the sender
    ``MAILER-DAEMON`` for the null sender) and a ``Return-Path: <mail_from>``
    header, its CRLF line endings become LF (mbox is a Unix file format) and
    body lines starting ``From `` are quoted as ``>From `` (``MboxQuoter``):
    the file is byte for byte what ``mailbox.mbox.add`` writes, and reads
    back with it.

    Streaming: a message is put in that form as it arrives, up to
    ``write_batch`` octets in memory and beyond that in a temporary file in
    the mbox's directory (``.<name>.<random>.spool``, removed whatever
    happens, but by a crash); the mbox is locked only once the message is
    whole, for the From_ line, a copy and the fsync. A message that does not
    end whole never touches the mbox.

    Locking: deliveries to one file from this process are serialised by a
    thread lock (shared by all ``Mbox`` objects for that path); the file is
    locked with ``mailbox``'s ``lock()`` (``lockf`` and a ``.lock``
    dot-lock, which other processes and mail programs honour) around the
    append and the fsync. ``lock()`` does not wait, so it is retried until
    ``lock_timeout`` seconds have passed; then the message is refused with
    ``450 4.2.0`` (mailbox busy) and the sender tries again later. A
    dot-lock left by a writer that died holding it (a worker killed by
    SIGKILL, a crash) would refuse every delivery for ever, so one older
    than ``stale_lock`` seconds (500, Postfix's ``stale_lock_time``) is
    removed and logged; only while this process holds the file's ``lockf``
    lock, which every writer that follows ``mailbox``'s order takes before
    the dot-lock, so no live writer's dot-lock can be taken for a stale one.

    Durability: the file is fsynced after each append, and the file's
    directory is fsynced when the file is opened (or created), all before
    the sender hears 250.

    Atomicity, as far as mbox allows: the append and the fsync happen under
    the lock, and if either fails the file is truncated back to its length
    before the append, so it is left as it was. What mbox cannot promise: a
    crash (of the process or the machine) in the middle of the write leaves a
    partial message at the end of the file, which the next delivery would
    follow; Maildir has no such window.

    The file is kept open between deliveries (a descriptor to append
    through, and the ``mailbox.mbox`` object whose ``lock()`` is taken; its
    index of the file is never read). If another program replaces the file
    (a mail reader expunging by rewrite and rename), the next delivery
    notices the new inode and reopens it. ``close()`` releases the file.
    """

    mailbox_class: ClassVar[type[mailbox.mbox]] = mailbox.mbox
    lock_poll = 0.05  # seconds between attempts to take a busy lock
    stale_lock = 500.0  # seconds after which a dot-lock nobody holds is removed
    # Octets of a streamed message held in memory; beyond, it is spooled.
    write_batch = 1 << 19
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
        self._fd = -1  # appended through; the same file as the box's
        self._identity: tuple[int, int] | None = None
        with self._lock:
            self._open()

    async def new_session(self, info: SessionInfo) -> Session:
        return MboxSession(info, self)

    def _open(self) -> mailbox.mbox:
        while self._box is None:
            try:
                fd = os.open(self.path, os.O_RDWR)
            except FileNotFoundError:
                if not self.create:
                    raise mailbox.NoSuchMailboxError(self.path) from None
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                box = self.mailbox_class(self.path, create=False)
            except BaseException:
                os.close(fd)
                raise
            # The box (whose lock is taken) must have opened the file fd
            # is: it did if the path still names fd's file, which cannot
            # have been replaced and come back while fd holds it open.
            info = os.fstat(fd)
            self._box, self._fd, self._identity = box, fd, (info.st_dev, info.st_ino)
            if not self._current():
                self._discard()  # replaced meanwhile: open the new file
                continue
            # The file may have just been made: its directory entry must be
            # on disk before a 250 promises anything (appends are fsynced).
            fsync_directory(os.path.dirname(os.path.abspath(self.path)))
        return self._box

    def _break_stale_dot_lock(self) -> bool:
        """Remove the ``.lock`` file if it is older than ``stale_lock`` and no
        process holds the file's ``lockf`` lock; True if the lock may now be
        tried again at once."""
        lock_path = self.path + ".lock"
        if fcntl is None or self._fd < 0:
            return False
        try:
            fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False  # a live writer holds the file: its dot-lock is its own
        try:
            try:
                age = time.time() - os.stat(lock_path).st_mtime
            except FileNotFoundError:
                return True  # released meanwhile
            if age < self.stale_lock:
                return False
            try:
                os.remove(lock_path)
            except FileNotFoundError:
                return True
            log.warning("mbox %s: removed a dot-lock %.0f s old that no process held", self.path, age)
            return True
        finally:
            fcntl.lockf(self._fd, fcntl.LOCK_UN)

    def _current(self) -> bool:
        """Is the open file still the one at ``path``?"""
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            return False
        return (info.st_dev, info.st_ino) == self._identity

    def _discard(self) -> None:
        box, self._box = self._box, None
        fd, self._fd = self._fd, -1
        if box is not None:
            try:
                box.close()  # unlocks too (before fd closes: that would drop the lockf lock)
            except OSError:
                log.exception("closing mbox %s", self.path)
        if fd >= 0:
            os.close(fd)

    def _locked_box(self, deadline: float) -> mailbox.mbox:
        while True:
            box = self._open()
            try:
                box.lock()
            except (mailbox.ExternalClashError, FileExistsError):
                if self._break_stale_dot_lock():
                    continue
                if time.monotonic() >= deadline:
                    raise SMTPError(450, "4.2.0", "Mailbox busy (locked), try again later") from None
                time.sleep(self.lock_poll)
                continue
            if self._current():
                return box
            self._discard()  # replaced under us: open the new file

    def store(self, envelope: Envelope) -> None:
        spool = MboxSpool(self, envelope)
        try:
            spool.commit([envelope.content])
        finally:
            spool.discard()

    def append(self, envelope: Envelope, message: Sequence[bytes] | IO[bytes]) -> None:
        """Append a message in its mbox form (``MboxQuoter``'s output: the
        pieces, or a file of them at its start) after its From_ line, under
        the locks, fsynced; the file cut back to its length if anything
        fails. Blocking: a worker thread's."""
        deadline = time.monotonic() + self.lock_timeout
        if not self._lock.acquire(timeout=self.lock_timeout):
            raise SMTPError(450, "4.2.0", "Mailbox busy, try again later")
        try:
            box = self._locked_box(deadline)
            fd = self._fd
            try:
                before = os.lseek(fd, 0, os.SEEK_END)
                try:
                    if isinstance(message, Sequence):
                        _write_all(fd, b"".join([from_line(envelope), *message]))
                    else:
                        _write_all(fd, from_line(envelope))
                        while block := message.read(1 << 20):
                            _write_all(fd, block)
                    os.fsync(fd)
                except BaseException:
                    self._roll_back(before)
                    raise
            finally:
                if self._box is box:
                    box.unlock()
        finally:
            self._lock.release()

    def _roll_back(self, length: int) -> None:
        """Cut the file back to ``length``, and reopen it next time."""
        try:
            os.ftruncate(self._fd, length)
            os.fsync(self._fd)
        except OSError:
            log.exception("could not roll back mbox %s to %d octets", self.path, length)
        self._discard()

    def close(self) -> None:
        with self._lock:
            self._discard()


class MboxSpool(StoreFile):
    """One message on its way into an mbox: its mbox form (``MboxQuoter``)
    held in memory, or once a batch is written (``write``), in a temporary
    file in the mbox's directory; ``commit`` appends it (``Mbox.append``).
    Blocking calls, one worker thread at a time (``store.store_stream``)."""

    def __init__(self, mbox: Mbox, envelope: Envelope) -> None:
        super().__init__()
        self.mbox = mbox
        self.envelope = envelope
        self._quoter = MboxQuoter()
        self._held = [self._quoter.feed(return_path(envelope, b"\n"))]
        self._file: IO[bytes] | None = None

    def write(self, chunks: list[bytes]) -> None:
        quoter = self._quoter
        out = [quoter.feed(chunk) for chunk in chunks]
        file = self._file
        if file is None:
            folder, name = os.path.split(os.path.abspath(self.mbox.path))
            file = self._file = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed by discard
                "w+b", dir=folder, prefix=f".{name}.", suffix=".spool", delete=False,
            )
            out[:0], self._held = self._held, []
        file.writelines(out)

    def commit(self, chunks: list[bytes]) -> str:
        quoter = self._quoter
        tail = [quoter.feed(chunk) for chunk in chunks]
        tail.append(quoter.end())
        file = self._file
        if file is None:
            self.mbox.append(self.envelope, [*self._held, *tail])
        else:
            file.writelines(tail)
            file.flush()
            file.seek(0)
            self.mbox.append(self.envelope, file)
        self.discard()
        return self.mbox.path

    def discard(self) -> None:
        """Remove the spool file (the mbox is never touched but by commit)."""
        self._held = []
        file, self._file = self._file, None
        if file is not None:
            remove_file(file)


class MboxSession(StoreSession):
    """An ``Mbox``'s session: a streamed message is put in its mbox form as
    it arrives (spooled beyond a batch), and appended once it is whole."""

    def __init__(self, info: SessionInfo, mbox: Mbox) -> None:
        super().__init__(info, mbox)
        self.mbox = mbox

    async def data_stream(self, envelope: Envelope, content: MessageContent) -> None:
        await store_stream(MboxSpool(self.mbox, envelope), content, self.mbox.write_batch, envelope,
                           self.mbox._threads)
        log.debug("appended a message from <%s> to %s", envelope.mail_from, self.mbox.path)

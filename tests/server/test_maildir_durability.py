"""A 250 from a storing backend survives a power cut; a killed delivery's tmp file does not stay for ever.

A power cut cannot be simulated here, so the proof is the system calls: a spy
wraps the real ``os.fsync`` (and ``os.link``) and records which file or
directory each call touched (by device and inode) and in what order. Maildir:
the message file is fsynced, then linked into ``new/``, then ``new/`` itself is
fsynced — all before the client reads 250. Mbox: each append is fsynced, and
the file's directory is fsynced when the file is opened (it may just have been
created). Stale files in ``tmp/`` (the 36 hours of the Maildir convention,
ages set with ``os.utime``) are removed when the backend is made, through the
API and through ``mailwire serve``; younger ones are kept.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mailwire.server.envelope import Envelope, SessionInfo
from mailwire.server import Maildir, Mbox

from .conftest import ServerThread
from .test_cli_serve import Serve, serve  # noqa: F401 - the fixture

HOUR = 3600.0


@dataclass
class Syscalls:
    """What the spied calls touched, in order: ("fsync", (dev, ino)) and ("link", (dev, ino), dest)."""

    events: list[tuple[object, ...]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fsynced(self, path: Path) -> list[int]:
        """Indexes of the fsyncs of ``path`` (the inode it names now)."""
        key = _key(os.stat(path))
        return [i for i, event in enumerate(self.events) if event[:2] == ("fsync", key)]

    def index(self, kind: str, key: tuple[int, int]) -> int:
        return next(i for i, event in enumerate(self.events) if event[:2] == (kind, key))


def _key(info: os.stat_result) -> tuple[int, int]:
    return info.st_dev, info.st_ino


@pytest.fixture
def syscalls(monkeypatch: pytest.MonkeyPatch) -> Iterator[Syscalls]:
    record = Syscalls()
    real_fsync, real_link = os.fsync, os.link

    def fsync(fd: int) -> None:
        with record.lock:
            record.events.append(("fsync", _key(os.fstat(fd))))
        real_fsync(fd)

    def link(src: str, dst: str, *args: object, **kwargs: object) -> None:
        with record.lock:
            record.events.append(("link", _key(os.stat(src)), dst))
        real_link(src, dst, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "link", link)
    yield record


def deliver(handler: Maildir | Mbox, message: Envelope) -> None:
    async def run() -> None:
        session = await handler.new_session(SessionInfo(peer=None))
        await session.data(message)

    asyncio.run(run())


def envelope(content: bytes = b"Subject: durable\r\n\r\nbody\r\n") -> Envelope:
    return Envelope("a@example.com", rcpt_to=["b@example.com"], content=content)


def test_maildir_fsyncs_the_file_then_links_then_fsyncs_new(tmp_path: Path, syscalls: Syscalls) -> None:
    box = tmp_path / "Maildir"
    handler = Maildir(box)
    deliver(handler, envelope())
    [stored] = list((box / "new").iterdir())
    message = _key(os.stat(stored))  # the link keeps the inode written in tmp/
    file_synced = syscalls.index("fsync", message)
    linked = syscalls.index("link", message)
    dir_synced = syscalls.fsynced(box / "new")
    assert file_synced < linked, syscalls.events
    assert dir_synced and dir_synced[-1] > linked, syscalls.events


def test_maildir_new_is_on_disk_before_the_client_hears_250(
    server_factory: Callable[..., ServerThread], tmp_path: Path, syscalls: Syscalls
) -> None:
    box = tmp_path / "Maildir"
    server = server_factory(Maildir(box))
    client = server.raw()
    client.ehlo()
    client.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n")
    client.expect(250)
    client.expect(250)
    client.expect(354)
    client.send(b"Subject: x\r\n\r\nbody\r\n.\r\n")
    client.expect(250, "2.0.0")
    seen = syscalls.events[:]  # everything done by the time the 250 arrived
    [stored] = list((box / "new").iterdir())
    linked = next(i for i, e in enumerate(seen) if e[:2] == ("link", _key(os.stat(stored))))
    new_key = _key(os.stat(box / "new"))
    assert any(e[:2] == ("fsync", new_key) for e in seen[linked:]), seen
    client.cmd("QUIT", 221)


def test_mbox_fsyncs_each_append_and_the_new_file_directory(tmp_path: Path, syscalls: Syscalls) -> None:
    folder = tmp_path / "spool"
    folder.mkdir()
    path = folder / "inbox"
    handler = Mbox(path)  # creates the file
    assert path.exists() and syscalls.fsynced(folder), syscalls.events
    opened = len(syscalls.events)
    for number in range(2):
        size = path.stat().st_size
        deliver(handler, envelope())
        assert path.stat().st_size > size
        assert [i for i in syscalls.fsynced(path) if i >= opened], syscalls.events
        opened = len(syscalls.events)
    handler.close()


def _age(path: Path, hours: float, *, read_hours: float | None = None) -> None:
    now = time.time()
    modified = now - hours * HOUR
    read = modified if read_hours is None else now - read_hours * HOUR
    os.utime(path, (read, modified))


def _tmp_files(box: Path) -> dict[str, Path]:
    (box / "tmp").mkdir(parents=True, exist_ok=True)
    for sub in ("new", "cur"):
        (box / sub).mkdir(exist_ok=True)
    files = {name: box / "tmp" / name for name in ("stale", "fresh", "read-lately", "just-under")}
    for path in files.values():
        path.write_bytes(b"Subject: half a message\r\n")
    _age(files["stale"], 37)
    _age(files["fresh"], 1)
    _age(files["read-lately"], 37, read_hours=1)  # written long ago, read since: someone uses it
    _age(files["just-under"], 35)
    subdir = box / "tmp" / "a-directory"
    subdir.mkdir()
    _age(subdir, 37)  # not a delivery's file: not ours to remove
    return files


def test_stale_tmp_files_are_removed_when_the_backend_is_made(tmp_path: Path) -> None:
    box = tmp_path / "Maildir"
    files = _tmp_files(box)
    Maildir(box)
    left = sorted(p.name for p in (box / "tmp").iterdir())
    assert left == ["a-directory", "fresh", "just-under", "read-lately"]
    assert not files["stale"].exists()


def test_stale_tmp_age_is_configurable(tmp_path: Path) -> None:
    box = tmp_path / "Maildir"
    _tmp_files(box)
    Maildir(box, tmp_max_age=None)
    assert len(list((box / "tmp").iterdir())) == 5  # left alone
    Maildir(box, tmp_max_age=2 * HOUR)
    assert sorted(p.name for p in (box / "tmp").iterdir()) == ["a-directory", "fresh", "read-lately"]


def test_serve_removes_stale_tmp_files_at_start(serve: Callable[..., Serve], tmp_path: Path) -> None:
    box = tmp_path / "mail"
    files = _tmp_files(box)
    server = serve("--port", "0", "--maildir", str(box), "-q")
    assert not files["stale"].exists()
    assert files["fresh"].exists() and files["just-under"].exists()
    assert server.stop() == 0


class _Clock:
    """A sequence number shared by the threads: the order things happened in."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._now = 0

    def tick(self) -> int:
        with self._lock:
            self._now += 1
            return self._now


def _spied_directory_fsync(monkeypatch: pytest.MonkeyPatch, clock: _Clock,
                           fail_first: bool = False) -> list[tuple[int, int, bool]]:
    """Replace the real directory fsync with one that records (began, ended, ok) and takes a moment."""
    from mailwire.server.backends import store

    made: list[tuple[int, int, bool]] = []
    real = store.fsync_directory

    def fsync_directory(path: str) -> None:
        began = clock.tick()
        time.sleep(0.02)  # long enough for the other threads to queue behind it
        if fail_first and not made:
            made.append((began, clock.tick(), False))
            raise OSError(5, "Input/output error")
        real(path)
        made.append((began, clock.tick(), True))

    monkeypatch.setattr(store, "fsync_directory", fsync_directory)
    return made


def _sync_from_threads(sync: Callable[[], None], clock: _Clock, threads: int) -> list[tuple[int, int, str]]:
    calls: list[tuple[int, int, str]] = []
    start = threading.Barrier(threads)

    def one() -> None:
        start.wait(10)
        entered = clock.tick()
        try:
            sync()
            outcome = "ok"
        except OSError as err:
            outcome = str(err)
        calls.append((entered, clock.tick(), outcome))

    workers = [threading.Thread(target=one) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    assert len(calls) == threads
    return calls


def test_threads_linking_at_once_share_directory_fsyncs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each sync returns only after a directory fsync that began after it was
    called (so it covers that thread's link) and ended before it returned;
    sixteen threads at once share a few of them."""
    from mailwire.server.backends.store import DirectorySync

    clock = _Clock()
    made = _spied_directory_fsync(monkeypatch, clock)
    calls = _sync_from_threads(DirectorySync(str(tmp_path)).sync, clock, 16)
    for entered, returned, outcome in calls:
        assert outcome == "ok"
        assert any(entered < began and ended < returned for began, ended, _ in made), (entered, returned, made)
    assert len(made) < 16, made  # shared: a group commit, not one each


def test_a_failed_directory_fsync_covers_nobody(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mailwire.server.backends.store import DirectorySync

    clock = _Clock()
    made = _spied_directory_fsync(monkeypatch, clock, fail_first=True)
    calls = _sync_from_threads(DirectorySync(str(tmp_path)).sync, clock, 8)
    assert sum(outcome != "ok" for *_, outcome in calls) == 1  # the thread that made it hears the error
    for entered, returned, outcome in calls:
        if outcome == "ok":
            assert any(ok and entered < began and ended < returned for began, ended, ok in made), made

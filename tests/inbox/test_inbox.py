"""Inbox: the list, the views, changes, retention, the index kept in line with the Maildir, waiting."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from mailwire.inbox import Inbox, MessageNotFound, PartNotFound, QueryError
from mailwire.inbox.index import SCHEMA_VERSION

from .support import message, store


def _subjects(inbox: Inbox, **kw: object) -> list[str]:
    return [s.subject for s in inbox.list(**kw).messages]  # type: ignore[arg-type]


def _fill(path: Path, count: int, start: float = 1_700_000_000.0) -> list[str]:
    return [store(str(path), message(f"m{i}"), when=start + i) for i in range(count)]


def test_pages_newest_first(tmp_path: Path) -> None:
    _fill(tmp_path, 7)
    with Inbox(tmp_path) as inbox:
        page = inbox.list(start=2, limit=3)
        assert [s.subject for s in page.messages] == ["m4", "m3", "m2"]
        assert (page.total, page.unread, page.matched, page.start) == (7, 7, 7, 2)
        assert _subjects(inbox, start=6, limit=50) == ["m0"] and _subjects(inbox, start=9) == []
        with pytest.raises(ValueError):
            inbox.list(start=-1)
        with pytest.raises(QueryError):
            inbox.list(query="is:nothing")


def test_views_raw_and_parts(tmp_path: Path) -> None:
    content = message("Files", body="see files", attachments=(("a.bin", b"\x00\x01" * 5000),))
    name = store(str(tmp_path), content)
    with Inbox(tmp_path) as inbox:
        (summary,) = inbox.list().messages
        view = inbox.message(summary.id)
        assert view.summary == summary and view.text == "see files\n"
        assert ("Subject", "Files") in view.headers and inbox.headers(summary.id) == view.headers
        with inbox.raw(summary.id) as raw:
            assert raw.read() == (tmp_path / "new" / name).read_bytes()
        part = inbox.part(summary.id, view.attachments[0].part_id)
        assert (part.filename, part.size) == ("a.bin", 10000) and b"".join(part.chunks) == b"\x00\x01" * 5000
        assert b"".join(inbox.part(summary.id, "1").chunks) == b"see files\r\n"  # as stored
        with pytest.raises(PartNotFound):
            inbox.part(summary.id, "9")
        for missing in ("nope", "", "../../etc/passwd"):
            with pytest.raises(MessageNotFound):
                inbox.message(missing)
            with pytest.raises(MessageNotFound):
                inbox.raw(missing)


def test_read_and_unread_are_maildir_flags(tmp_path: Path) -> None:
    name = store(str(tmp_path), message("flagged"))
    with Inbox(tmp_path) as inbox:
        (s,) = inbox.list().messages
        assert inbox.mark_read([s.id]) == 1 and inbox.mark_read([s.id]) == 0
        assert os.listdir(tmp_path / "new") == [] and os.listdir(tmp_path / "cur") == [f"{name}:2,S"]
        assert inbox.list().unread == 0 and inbox.summary(s.id).read and inbox.message(s.id).summary.read
        os.rename(tmp_path / "cur" / f"{name}:2,S", tmp_path / "cur" / f"{name}:2,FS")  # a mail client flags it
        assert inbox.mark_read([s.id], False) == 1
        assert os.listdir(tmp_path / "cur") == [f"{name}:2,F"] and inbox.list().unread == 1
        assert inbox.mark_matching(True, "flagged") == 1 and os.listdir(tmp_path / "cur") == [f"{name}:2,FS"]
        with pytest.raises(MessageNotFound):
            inbox.mark_read(["nope"])
    with Inbox(tmp_path) as again:  # the flag is the truth: a new index reads it
        assert again.list().unread == 0


def test_delete(tmp_path: Path) -> None:
    _fill(tmp_path, 5)
    with Inbox(tmp_path) as inbox:
        ids = [s.id for s in inbox.list().messages]
        assert inbox.delete([ids[0], "nope"]) == 1 and _subjects(inbox) == ["m3", "m2", "m1", "m0"]
        inbox.mark_read([ids[1]])  # its file moves: delete finds it where it is
        assert inbox.delete([ids[1]]) == 1
        assert inbox.delete_matching("subject:m1") == 1 and _subjects(inbox) == ["m2", "m0"]
        store(str(tmp_path), message("unindexed"))  # delete_all takes what the index does not know yet, too
        assert inbox.delete_all() == 3
        assert os.listdir(tmp_path / "new") == os.listdir(tmp_path / "cur") == [] and inbox.list().total == 0


def test_retention(tmp_path: Path) -> None:
    now = time.time()
    store(str(tmp_path), message("ancient"), when=now - 3600)
    _fill(tmp_path, 4, start=now - 60)
    with Inbox(tmp_path, max_messages=3, max_age=600) as inbox:
        assert inbox.prune() == 2 and _subjects(inbox) == ["m3", "m2", "m1"]
        name = store(str(tmp_path), message("newest"))
        inbox.add(name)  # as the catcher does: pruned after each message
        assert _subjects(inbox) == ["newest", "m3", "m2"] and len(os.listdir(tmp_path / "new")) == 3


def test_retention_of_submitted_messages_prunes_in_the_indexer(tmp_path: Path) -> None:
    # The catcher's way: names queued, indexed (and pruned) in the indexer's
    # thread, where a flush would wait for itself (60 s, past the suite's timeout).
    with Inbox(tmp_path, max_messages=3, index_delay=None) as inbox:
        for n in range(6):
            inbox.submit(store(str(tmp_path), message(f"q{n}"), when=time.time() - 60 + n))
        assert _subjects(inbox) == ["q5", "q4", "q3"]
        assert len(os.listdir(tmp_path / "new")) == 3


def test_the_index_is_rebuilt_when_deleted_and_its_ids_are_the_same(tmp_path: Path) -> None:
    _fill(tmp_path, 20)
    with Inbox(tmp_path) as inbox:
        before = inbox.list(limit=100).messages
        inbox.mark_read([before[0].id])
    os.remove(tmp_path / "mailwire-index.sqlite3")
    with Inbox(tmp_path) as inbox:
        after = inbox.list(limit=100).messages
    assert [s.id for s in after] == [s.id for s in before] and after[0].read and not after[1].read


def test_an_index_of_another_version_is_rebuilt(tmp_path: Path) -> None:
    _fill(tmp_path, 3)
    Inbox(tmp_path).close()
    db = sqlite3.connect(tmp_path / "mailwire-index.sqlite3")
    db.execute("DELETE FROM messages")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    with Inbox(tmp_path) as inbox:
        assert inbox.list().total == 3


def test_a_stale_index_catches_up(tmp_path: Path) -> None:
    names = _fill(tmp_path, 4)
    with Inbox(tmp_path) as inbox:
        ids = {s.subject: s.id for s in inbox.list().messages}
    # Another tool changes the Maildir while no inbox is open on it.
    os.remove(tmp_path / "new" / names[0])
    os.rename(tmp_path / "new" / names[1], tmp_path / "cur" / f"{names[1]}:2,S")
    store(str(tmp_path), message("delivered elsewhere"), sub="cur")
    with Inbox(tmp_path) as inbox:
        assert _subjects(inbox) == ["delivered elsewhere", "m3", "m2", "m1"]
        assert inbox.summary(ids["m1"]).read and inbox.message(ids["m1"]).text == "Hi Bob\n"
        # ... and while one is: a view finds the moved file, sync() the rest.
        os.rename(tmp_path / "new" / names[2], tmp_path / "cur" / f"{names[2]}:2,S")
        assert inbox.message(ids["m2"]).summary.read
        store(str(tmp_path), message("later"))
        assert inbox.sync() == (1, 0) and _subjects(inbox)[0] == "later"


def test_wait_for_a_message(tmp_path: Path) -> None:
    store(str(tmp_path), message("already here"))
    with Inbox(tmp_path, poll_interval=0.05) as inbox:
        assert inbox.wait("subject:already", timeout=0).subject == "already here"
        with pytest.raises(TimeoutError, match="subject:already"):
            inbox.wait("subject:already", timeout=0.1, existing=False)

        def deliver() -> None:
            time.sleep(0.2)
            inbox.add(store(str(tmp_path), message("other")))
            inbox.add(store(str(tmp_path), message("your code 4711")))

        thread = threading.Thread(target=deliver)
        thread.start()
        assert inbox.wait("code", timeout=10).subject == "your code 4711"
        thread.join()


def test_wait_sees_another_process_deliver(tmp_path: Path) -> None:
    """Another process indexing into the same Maildir (``--workers``) wakes
    a waiter here by the poll."""
    with Inbox(tmp_path, poll_interval=0.05) as inbox:
        other = Inbox(tmp_path)  # stands for the other process: its own connections, no shared waiters
        timer = threading.Timer(0.2, lambda: other.add(store(str(tmp_path), message("from afar"))))
        timer.start()
        try:
            assert inbox.wait("afar", timeout=10, existing=False).subject == "from afar"
        finally:
            timer.join()
            other.close()


def test_arrivals(tmp_path: Path) -> None:
    async def main() -> list[str]:
        with Inbox(tmp_path, poll_interval=5) as inbox:
            seen: list[str] = []

            async def watch() -> None:
                async for summary in inbox.arrivals(query="-subject:skip"):
                    seen.append(summary.subject)
                    if len(seen) == 2:
                        return

            task = asyncio.create_task(watch())
            await asyncio.sleep(0.1)
            for subject in ("one", "skip me", "two"):
                await asyncio.to_thread(inbox.add, store(str(tmp_path), message(subject)))
            await asyncio.wait_for(task, 10)  # woken at once, not by the 5 s poll
            return seen

    assert asyncio.run(main()) == ["one", "two"]


def test_arrivals_with_existing_first_gives_the_newest_already_there(tmp_path: Path) -> None:
    async def main() -> list[str]:
        with Inbox(tmp_path, poll_interval=5) as inbox:
            for subject, age in (("old", 20), ("older one", 30), ("skip", 10)):
                inbox.add(store(str(tmp_path), message(subject), when=time.time() - age))
            seen: list[str] = []
            async for summary in inbox.arrivals(query="-subject:skip", existing=True):
                seen.append(summary.subject)
                if len(seen) == 2:
                    return seen
                await asyncio.to_thread(inbox.add, store(str(tmp_path), message("new")))
            return seen

    assert asyncio.run(main()) == ["old", "new"]


def _deliver(path: str, count: int, tag: str) -> None:
    with Inbox(path) as inbox:
        for i in range(count):
            inbox.add(store(path, message(f"{tag}-{i}")))


def test_concurrent_delivery_from_threads_and_processes(tmp_path: Path) -> None:
    path = str(tmp_path)
    Inbox(path).close()
    ctx = multiprocessing.get_context("spawn")
    processes = [ctx.Process(target=_deliver, args=(path, 30, f"p{n}")) for n in range(2)]
    threads = [threading.Thread(target=_deliver, args=(path, 30, f"t{n}")) for n in range(3)]
    for worker in [*processes, *threads]:
        worker.start()
    for worker in [*processes, *threads]:
        worker.join(120)
    assert all(p.exitcode == 0 for p in processes)
    with Inbox(path) as inbox:
        assert inbox.sync() == (0, 0)  # every message was indexed by whoever delivered it
        subjects = _subjects(inbox, limit=1000)
    assert len(subjects) == 150 == len(set(subjects))


def test_close_waits_for_a_query_running_in_another_thread(tmp_path: Path) -> None:
    """The web inbox stops (closing the index) while a request's query may
    still run in the thread pool: closing a connection under a running
    statement crashed CPython 3.13.0, so close waits for it, and a query
    begun after close is a clear error."""
    from mailwire.inbox.index import Index

    index = Index(str(tmp_path))
    inside, release, closed = threading.Event(), threading.Event(), threading.Event()
    answers: list[object] = []

    def reader() -> None:
        with index._use() as db:  # a query in progress, held open
            inside.set()
            release.wait(10)
            answers.append(db.execute("SELECT count(*) FROM messages").fetchone()[0])

    threads = [threading.Thread(target=reader), threading.Thread(target=lambda: (index.close(), closed.set()))]
    threads[0].start()
    assert inside.wait(10)
    threads[1].start()
    assert not closed.wait(0.3)  # close waits while the query runs...
    release.set()
    assert closed.wait(10)  # ...and returns once it is over
    for thread in threads:
        thread.join(10)
    assert answers == [0]
    with pytest.raises(RuntimeError, match="closed"):
        index.last_seq()


def test_the_view_gives_the_mime_tree_in_the_messages_order(tmp_path: Path) -> None:
    nested = message("Tree", body="plain", html="<p>rich</p>", attachments=(("a.bin", b"x" * 300),))
    flat = message("Flat", body="just text")
    store(str(tmp_path), nested, when=1_700_000_000.0)
    store(str(tmp_path), flat, when=1_700_000_001.0)
    with Inbox(tmp_path) as inbox:
        flat_summary, nested_summary = inbox.list().messages
        tree = [(n.part_id, n.content_type, n.kind, n.depth, n.filename) for n in
                inbox.message(nested_summary.id).structure]
        assert tree == [
            ("", "multipart/mixed", "multipart", 0, ""),
            ("1", "multipart/alternative", "multipart", 1, ""),
            ("1.1", "text/plain", "body", 2, ""),
            ("1.2", "text/html", "body", 2, ""),
            ("2", "application/octet-stream", "attachment", 1, "a.bin"),
        ]
        assert [(n.part_id, n.kind, n.depth) for n in inbox.message(flat_summary.id).structure] == [("1", "body", 0)]

"""The worker against a real redis-server, delivering to a Maildir: once per
queue id (even when an entry comes twice, or two workers race on it), with
the trace lines; a dead worker's entries reclaimed; a malformed entry
dead-lettered; the blob read and then deleted; the stream left empty."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from mailwire.queue import DirectoryBlobs, QueueEntry
from mailwire.queue.deliver import MaildirDeliverer
from mailwire.queue.worker import Worker

from helpers.redis_server import RedisServer
from worker_helpers import with_broker, GROUP, maildir_files, maildir_messages, make_entry, run_until

pytest.importorskip("redis")
from mailwire.queue.redis_broker import RedisBroker  # noqa: E402


def test_delivered_once_with_trace_lines_and_the_stream_trimmed(
    redis_server: RedisServer, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "mailwire.queue")
    entries = [make_entry(n) for n in range(5)]

    async def test(broker: RedisBroker) -> None:
        for entry in entries:
            await broker.publish(entry)
        worker = Worker(broker, MaildirDeliverer(tmp_path / "mail"), concurrency=2)
        await run_until(worker, lambda: worker.counts["delivered"] == 5)
        stats = await broker.stats(GROUP)
        assert stats.length == 0 and stats.pending_total == 0

    with_broker(redis_server, test)
    found = maildir_messages(tmp_path / "mail")
    assert sorted(found) == sorted(e.queue_id for e in entries)
    for entry in entries:
        [message] = found[entry.queue_id]
        assert message["X-Mailwire-Queue-Id"] == entry.queue_id
        assert "from client.example ([192.0.2.7])" in message["Received"]
        assert message["Return-Path"] == "<a@example.com>"
        [raw] = maildir_files(tmp_path / "mail")[entry.queue_id]
        assert entry.body is not None and raw.startswith(b"Return-Path: <a@example.com>\r\nReceived: from ")
        assert raw.endswith(b"\r\nX-Mailwire-Queue-Id: " + entry.queue_id.encode() + b"\r\n" + entry.body)
    lines = [r.getMessage() for r in caplog.records if "event=delivered" in r.getMessage()]
    assert sorted(lines) == sorted(
        f"event=delivered queue_id={e.queue_id} target=maildir attempt=1 rcpts=1" for e in entries
    )


def test_the_same_entry_twice_and_two_workers_racing_store_it_once(
    redis_server: RedisServer, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "mailwire.queue")
    entry = make_entry(1)

    async def test(broker: RedisBroker) -> None:
        for _ in range(6):  # the same queue id six times: as after crashes before the ack
            await broker.publish(entry)
        workers = [Worker(broker, MaildirDeliverer(tmp_path / "mail"), consumer=f"w{i}", concurrency=3)
                   for i in range(2)]

        def settled() -> bool:
            return sum(w.counts["delivered"] + w.counts["duplicate"] for w in workers) == 6

        await asyncio.gather(*(run_until(w, settled) for w in workers))
        assert sum(w.counts["delivered"] for w in workers) == 1
        assert sum(w.counts["duplicate"] for w in workers) == 5
        assert (await broker.stats(GROUP)).length == 0

    with_broker(redis_server, test)
    assert [len(v) for v in maildir_messages(tmp_path / "mail").values()] == [1]
    assert sum(f"event=duplicate queue_id={entry.queue_id} target=maildir" in r.getMessage()
               for r in caplog.records) == 5


def test_a_message_moved_to_cur_is_not_stored_again(redis_server: RedisServer, tmp_path: Path) -> None:
    entry = make_entry(2)
    deliverer = MaildirDeliverer(tmp_path / "mail")

    async def test(broker: RedisBroker) -> None:
        await broker.publish(entry)
        worker = Worker(broker, deliverer)
        await run_until(worker, lambda: worker.counts["delivered"] == 1)
        name = deliverer.name_of(entry.queue_id)
        (tmp_path / "mail" / "new" / name).rename(tmp_path / "mail" / "cur" / f"{name}:2,S")  # a reader read it
        await broker.publish(entry)
        await run_until(worker, lambda: worker.counts["duplicate"] == 1)

    with_broker(redis_server, test)
    assert [len(v) for v in maildir_messages(tmp_path / "mail").values()] == [1]
    assert not list((tmp_path / "mail" / "new").iterdir()) and not list((tmp_path / "mail" / "tmp").iterdir())


def test_entries_a_dead_worker_held_are_reclaimed(redis_server: RedisServer, tmp_path: Path) -> None:
    entries = [make_entry(n) for n in range(3)]

    async def test(broker: RedisBroker) -> None:
        for entry in entries:
            await broker.publish(entry)
        held = await broker.consume(GROUP, "dead-worker", count=10)  # read, never acknowledged: it "died"
        assert len(held) == 3
        worker = Worker(broker, MaildirDeliverer(tmp_path / "mail"), consumer="alive", reclaim_after=0.2,
                        block=0.1)
        await run_until(worker, lambda: worker.counts["delivered"] == 3)
        stats = await broker.stats(GROUP)
        assert stats.length == 0 and stats.pending_total == 0

    with_broker(redis_server, test)
    assert sorted(maildir_messages(tmp_path / "mail")) == sorted(e.queue_id for e in entries)


def test_a_malformed_entry_is_dead_lettered(
    redis_server: RedisServer, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "mailwire.queue")
    good = make_entry(3)

    async def test(broker: RedisBroker) -> None:
        bad_id = (await broker.client.xadd(broker.stream, {"v": b"1", "id": b"not-a-queue-id"})).decode()
        await broker.publish(good)
        worker = Worker(broker, MaildirDeliverer(tmp_path / "mail"))
        await run_until(worker, lambda: worker.counts["delivered"] == 1 and worker.counts["dead_letter"] == 1)
        [(_, fields)] = await broker.client.xrange(broker.dead_stream)
        assert fields[b"id"] == b"not-a-queue-id" and fields[b"dead_from"] == bad_id.encode()
        assert b"field 'id'" in fields[b"dead_reason"]
        assert (await broker.stats(GROUP)).length == 0

    with_broker(redis_server, test)
    assert list(maildir_messages(tmp_path / "mail")) == [good.queue_id]
    assert any("event=dead_letter queue_id=unknown" in r.getMessage() for r in caplog.records)


def test_a_body_in_the_blob_store_is_delivered_then_deleted(redis_server: RedisServer, tmp_path: Path) -> None:
    inline = make_entry(4)
    assert inline.body is not None
    blobs = DirectoryBlobs(tmp_path / "blobs")
    entry = QueueEntry(queue_id=inline.queue_id, mail_from=inline.mail_from, rcpt_to=inline.rcpt_to,
                       sha256=inline.sha256, size=inline.size, client=inline.client, blob_key=inline.queue_id)

    async def chunks():  # type: ignore[no-untyped-def]
        yield inline.body

    async def test(broker: RedisBroker) -> None:
        await blobs.write(entry.queue_id, chunks())
        await broker.publish(entry)
        worker = Worker(broker, MaildirDeliverer(tmp_path / "mail"), blobs=blobs)
        await run_until(worker, lambda: worker.counts["delivered"] == 1)

    with_broker(redis_server, test)
    [message] = maildir_messages(tmp_path / "mail")[entry.queue_id]
    assert message["Subject"] == "message 4"
    assert not (tmp_path / "blobs" / entry.queue_id).exists()

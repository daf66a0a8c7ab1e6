"""The worker against a real redis-server, delivering to a Maildir: once per
queue id (even when an entry comes twice, or two workers race on it), with
the trace lines; a dead worker's entries reclaimed; a malformed entry
dead-lettered; the blob read and then deleted; the stream left empty."""

from __future__ import annotations

import asyncio
import dataclasses
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


@pytest.mark.parametrize("how", ["reclaimed", "retried"])
def test_a_message_moved_to_cur_is_not_stored_again(how: str, redis_server: RedisServer, tmp_path: Path) -> None:
    """A worker stored the message and died before its ack; a reader read
    it (``cur/``); then the entry comes again, reclaimed by another worker,
    or as a retry (attempt 2): stored once."""
    entry = make_entry(2)
    deliverer = MaildirDeliverer(tmp_path / "mail")

    async def test(broker: RedisBroker) -> None:
        await broker.publish(entry if how == "reclaimed" else dataclasses.replace(entry, attempt=2))
        held = await broker.consume(GROUP, "died", count=1)
        assert len(held) == 1
        assert (await deliverer.deliver(entry, b"Subject: x\r\n\r\nx\r\n", entry.rcpt_to)).duplicate is False
        name = deliverer.name_of(entry.queue_id)
        (tmp_path / "mail" / "new" / name).rename(tmp_path / "mail" / "cur" / f"{name}:2,S")  # a reader read it
        if how == "retried":  # the entry comes back as a new one, as retry_later puts it
            await broker.retry_later(GROUP, held[0][0], dataclasses.replace(entry, attempt=2), 0)
        worker = Worker(broker, deliverer, consumer="alive", reclaim_after=0.05, block=0.1)
        await asyncio.sleep(0.1)
        await run_until(worker, lambda: worker.counts["duplicate"] == 1)
        assert worker.counts["delivered"] == 0

    with_broker(redis_server, test)
    assert [len(v) for v in maildir_messages(tmp_path / "mail").values()] == [1]
    assert not list((tmp_path / "mail" / "new").iterdir()) and not list((tmp_path / "mail" / "tmp").iterdir())


def test_the_first_hand_out_does_not_list_cur(tmp_path: Path) -> None:
    """``repeat=False`` (the broker hands the entry out for the first time)
    skips the listing of ``cur/``, whose cost grows with the mailbox; a
    repeat looks."""
    deliverer = MaildirDeliverer(tmp_path / "mail")
    listed: list[str] = []
    real = deliverer._in_cur

    def spy(name: str) -> bool:
        listed.append(name)
        return real(name)

    deliverer._in_cur = spy  # type: ignore[method-assign]

    first, again = make_entry(1), make_entry(2)

    async def main() -> None:
        await deliverer.deliver(first, b"x\r\n", ["b@example.com"], repeat=False)
        await deliverer.deliver(again, b"x\r\n", ["b@example.com"], repeat=True)

    asyncio.run(main())
    assert listed == [deliverer.name_of(again.queue_id)]


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


def test_an_entry_no_worker_ever_settles_is_dead_lettered_not_passed_round(
        redis_server: RedisServer, tmp_path: Path) -> None:
    poison, healthy = make_entry(1), make_entry(2)

    async def test(broker: RedisBroker) -> None:
        await broker.publish(poison)
        await broker.publish(healthy)
        held = await broker.consume(GROUP, "died-1", count=1)  # the poison, read by a worker that died
        assert [e.queue_id for _, e in held] == [poison.queue_id]  # type: ignore[union-attr]
        for n in range(2, 4):  # ... and by the two that reclaimed it after
            assert len(await broker.reclaim(GROUP, f"died-{n}", min_idle=0)) == 1
        assert await broker.times_delivered(GROUP, [held[0][0]]) == {held[0][0]: 3}
        worker = Worker(broker, MaildirDeliverer(tmp_path / "mail"), consumer="alive", reclaim_after=0.05,
                        block=0.1, max_deliveries=3)
        await asyncio.sleep(0.1)  # the poison idle past reclaim_after
        await run_until(worker, lambda: worker.counts["dead_letter"] == 1 and worker.counts["delivered"] == 1)
        dead = await broker.client.xrange(broker.dead_stream)
        assert len(dead) == 1 and b"4 times" in dead[0][1][b"dead_reason"]
        stats = await broker.stats(GROUP)
        assert stats.length == 0 and stats.pending_total == 0

    with_broker(redis_server, test)
    assert list(maildir_messages(tmp_path / "mail")) == [healthy.queue_id]


def test_under_the_limit_a_reclaimed_entry_is_delivered(redis_server: RedisServer, tmp_path: Path) -> None:
    entry = make_entry(1)

    async def test(broker: RedisBroker) -> None:
        await broker.publish(entry)
        await broker.consume(GROUP, "died-1", count=1)
        await broker.reclaim(GROUP, "died-2", min_idle=0)
        worker = Worker(broker, MaildirDeliverer(tmp_path / "mail"), consumer="alive", reclaim_after=0.05,
                        block=0.1, max_deliveries=3)  # this worker's reclaim is the third hand-out
        await asyncio.sleep(0.1)
        await run_until(worker, lambda: worker.counts["delivered"] == 1)
        assert worker.counts["dead_letter"] == 0

    with_broker(redis_server, test)
    assert list(maildir_messages(tmp_path / "mail")) == [entry.queue_id]


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

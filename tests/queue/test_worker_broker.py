"""What a worker needs of the broker (``WorkerBroker``), on a real redis-server:
finish (ack and remove), retry_later (not handed out before it is due, then
once, with its attempt), dead_letter (the fields kept with the reason),
delivered marks (with their TTL); and the entry's attempt on the wire."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from mailwire.queue import QueueEntry, WorkerBroker

from helpers.redis_server import RedisServer
from worker_helpers import GROUP, make_entry, with_broker

pytest.importorskip("redis")
from mailwire.queue.redis_broker import RedisBroker  # noqa: E402


def test_the_attempt_rides_in_the_entry_only_past_the_first() -> None:
    entry = make_entry(0)
    assert entry.attempt == 1 and "attempt" not in entry.to_fields()
    again = dataclasses.replace(entry, attempt=3)
    assert QueueEntry.from_fields(again.to_fields()) == again


def test_finish_retry_later_dead_letter_and_marks(redis_server: RedisServer) -> None:
    first, second = make_entry(1), make_entry(2)

    async def test(broker: RedisBroker) -> None:
        assert isinstance(broker, WorkerBroker)
        await broker.publish(first)
        await broker.publish(second)
        [(id1, got1), (id2, _)] = await broker.consume(GROUP, "w", count=2)
        assert got1 == first
        assert await broker.finish(GROUP, id1) == 1
        await broker.retry_later(GROUP, id2, dataclasses.replace(second, attempt=2), 0.5)
        assert (await broker.stats(GROUP)).length == 0 and await broker.delayed_count() == 1
        assert await broker.consume(GROUP, "w", count=5) == []  # not due yet
        await asyncio.sleep(0.6)
        [(id3, got3)] = await broker.consume(GROUP, "w", count=5, block=1.0)
        assert got3 == dataclasses.replace(second, attempt=2) and await broker.delayed_count() == 0
        await broker.dead_letter(GROUP, id3, "given up")
        [(_, dead)] = await broker.client.xrange(broker.dead_stream)
        assert dead[b"id"] == second.queue_id.encode() and dead[b"attempt"] == b"2"
        assert dead[b"dead_reason"] == b"given up" and await broker.dead_count() == 1
        stats = await broker.stats(GROUP)
        assert stats.length == 0 and stats.pending_total == 0
        assert await broker.delivered(first.queue_id) == set()
        await broker.mark_delivered(first.queue_id, ["b@example.com"], ttl=60)
        assert await broker.delivered(first.queue_id) == {"b@example.com"}
        assert 0 < await broker.client.ttl(f"{broker.stream}:done:{first.queue_id}") <= 60

    with_broker(redis_server, test)

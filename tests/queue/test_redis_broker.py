"""RedisBroker against a real redis-server: publish, consume, ack, reclaim,
stats, the durability check, and an outage (a clear error, then recovery)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from mailwire.queue import Broker, BrokerUnavailable, MalformedEntry, NotDurable, QueueEntry
from mailwire.server.envelope import Envelope, SessionInfo

from helpers.redis_server import RedisServer

pytest.importorskip("redis")
from mailwire.queue.redis_broker import RedisBroker  # noqa: E402


def _entry(n: int = 0) -> QueueEntry:
    envelope = Envelope("a@example.com", rcpt_to=[f"b{n}@example.com"],
                        session=SessionInfo(peer=("192.0.2.7", 4000 + n)))
    return QueueEntry.inline(envelope, f"Subject: {n}\r\n\r\nbody {n}\r\n".encode())


async def _healthy(broker: RedisBroker, tries: int = 40) -> bool:
    """Whether the broker answers within a few tries (a loaded machine may be slow to resume it)."""
    for _ in range(tries):
        if await broker.health():
            return True
        await asyncio.sleep(0.05)
    return False


def _run(server: RedisServer, test: Callable[[RedisBroker], Awaitable[None]], timeout: float = 2.0) -> None:
    async def main() -> None:
        broker = RedisBroker.from_url(server.url, timeout=timeout)
        try:
            await test(broker)
        finally:
            await broker.close()

    asyncio.run(main())


def test_it_is_a_broker(redis_server: RedisServer) -> None:
    assert isinstance(RedisBroker.from_url(redis_server.url), Broker)
    for bad in ("redis://127.0.0.1:6379/", "http://127.0.0.1/stream", "redis:///stream"):
        with pytest.raises(ValueError, match="redis://HOST:PORT/STREAM"):
            RedisBroker.from_url(bad)
    broker = RedisBroker.from_url("redis://:s%40cret@queue.example/mail%2Fin")
    kwargs = broker.client.connection_pool.connection_kwargs
    assert (broker.stream, kwargs["host"], kwargs["port"], kwargs["password"]) == \
        ("mail/in", "queue.example", 6379, "s@cret")


def test_publish_consume_ack(redis_server: RedisServer) -> None:
    async def test(broker: RedisBroker) -> None:
        await broker.check_durable()
        entries = [_entry(n) for n in range(5)]
        ids = [await broker.publish(e) for e in entries]
        assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))
        got = await broker.consume("workers", "w1", count=3)
        assert [i for i, _ in got] == ids[:3] and [e for _, e in got] == entries[:3]
        rest = await broker.consume("workers", "w2", count=10, block=0.2)
        assert [e for _, e in rest] == entries[3:]
        assert await broker.consume("workers", "w1", count=10, block=0.1) == []  # nothing new
        stats = await broker.stats("workers")
        assert stats.length == 5 and stats.pending == {"w1": 3, "w2": 2} and stats.lag == 0
        assert stats.oldest_age is not None and stats.oldest_age >= 0
        assert await broker.ack("workers", *ids[:3]) == 3
        assert await broker.ack("workers", ids[0]) == 0  # once only
        stats = await broker.stats("workers")
        assert stats.pending == {"w2": 2} and stats.pending_total == 2
        await broker.ack("workers", *ids[3:])
        stats = await broker.stats("workers")
        assert stats.pending == {} and stats.oldest_age is None
        # Another group sees every entry, from the start.
        assert len(await broker.consume("audit", "a1", count=10)) == 5

    _run(redis_server, test)


def test_stats_before_any_worker(redis_server: RedisServer) -> None:
    async def test(broker: RedisBroker) -> None:
        empty = await broker.stats("workers")
        assert empty.length == 0 and empty.pending == {} and empty.oldest_age is None
        await broker.publish(_entry())
        waiting = await broker.stats("workers")
        assert waiting.length == 1 and waiting.lag == 1 and waiting.oldest_age is not None

    _run(redis_server, test)


def test_a_dead_consumers_entries_are_reclaimed_after_min_idle(redis_server: RedisServer) -> None:
    async def test(broker: RedisBroker) -> None:
        ids = [await broker.publish(_entry(n)) for n in range(3)]
        held = await broker.consume("workers", "dead", count=3)
        assert len(held) == 3  # ... and "dead" never acks
        assert await broker.reclaim("workers", "alive", min_idle=60) == []  # not idle long enough
        await asyncio.sleep(0.3)
        taken = await broker.reclaim("workers", "alive", min_idle=0.2)
        assert [i for i, _ in taken] == ids and [e for _, e in taken] == [e for _, e in held]
        assert (await broker.stats("workers")).pending == {"alive": 3}
        await broker.ack("workers", *ids)
        assert (await broker.stats("workers")).pending == {}

    _run(redis_server, test)


def test_a_malformed_entry_comes_back_as_the_error(redis_server: RedisServer) -> None:
    async def test(broker: RedisBroker) -> None:
        bad = await broker.client.xadd(broker.stream, {"v": b"1", "id": b"nope"})
        good = await broker.publish(_entry())
        got = await broker.consume("workers", "w", count=10)
        assert [i for i, _ in got] == [bad.decode() if isinstance(bad, bytes) else bad, good]
        assert isinstance(got[0][1], MalformedEntry) and got[0][1].field == "id"
        assert isinstance(got[1][1], QueueEntry)

    _run(redis_server, test)


def test_check_durable_refuses_everysec(redis_server: RedisServer, tmp_path: Path) -> None:
    (tmp_path / "everysec").mkdir()
    server = RedisServer(tmp_path / "everysec", appendfsync="everysec")
    server.start()
    try:
        async def test(broker: RedisBroker) -> None:
            with pytest.raises(NotDurable, match="appendfsync always") as caught:
                await broker.check_durable()
            assert "everysec" in str(caught.value)
            await broker.client.config_set("appendonly", "no")
            with pytest.raises(NotDurable, match="appendonly yes"):
                await broker.check_durable()

        _run(server, test)
    finally:
        server.stop()


def test_an_outage_is_a_clear_error_then_the_broker_recovers(redis_server: RedisServer) -> None:
    async def test(broker: RedisBroker) -> None:
        first = await broker.publish(_entry(1))
        assert await broker.health()
        redis_server.stop()
        assert not await broker.health()
        for call in (lambda: broker.publish(_entry(2)), lambda: broker.consume("w", "c", block=0.1),
                     lambda: broker.stats("w"), broker.check_durable):
            with pytest.raises(BrokerUnavailable, match="unavailable"):
                await asyncio.wait_for(call(), 30)  # the broker's own bound fires long before this
        redis_server.start()
        assert await _healthy(broker)
        second = await broker.publish(_entry(3))
        got = await broker.consume("w", "c", count=10)
        # The append-only file kept the first entry across the restart.
        assert [i for i, _ in got] == [first, second]

    _run(redis_server, test)


def test_a_hung_redis_is_unavailable_in_bounded_time(redis_server: RedisServer) -> None:
    async def test(broker: RedisBroker) -> None:
        assert await broker.health()
        assert redis_server.process is not None
        redis_server.process.send_signal(signal.SIGSTOP)  # up, but answers nothing
        try:
            with pytest.raises(BrokerUnavailable):
                await asyncio.wait_for(broker.publish(_entry()), 30)
        finally:
            redis_server.process.send_signal(signal.SIGCONT)
        assert await _healthy(broker)
        assert (await broker.stats("g")).length in (0, 1)  # the publish cut short may have landed after all

    _run(redis_server, test, timeout=0.5)

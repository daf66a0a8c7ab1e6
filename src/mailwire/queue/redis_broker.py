"""The ``Broker`` on Redis Streams (the ``mailwire[redis]`` extra).

One stream holds the queue; each kind of worker is a consumer group on it.
``publish`` is one XADD: with ``appendonly yes`` and ``appendfsync always``
Redis writes and fsyncs its append-only file before it sends any reply of
that event-loop turn, so XADD's reply means "on disk" and no WAIT is needed
(``check_durable`` refuses any other setting, naming what to set). A group
is made on first use (XGROUP CREATE ... 0 MKSTREAM: from the stream's start,
so entries published before the first worker came are not skipped).

Every call is bounded: the connection attempt by ``timeout``, and each
command by ``asyncio.wait_for`` (plus the time a blocking read was asked to
wait). redis-py's own retries are off: a publish retried after its reply was
lost would queue the message twice, and the caller knows better whether to
retry (the front end answers 451, the sender retries). A lost connection,
a refused one or a timeout all become ``BrokerUnavailable``; the client
reconnects on the next call by itself, so the broker recovers once Redis is back.

For workers (``WorkerBroker``) each settling step is one MULTI or one Lua
script, so it is atomic and, with ``appendfsync always``, durable when it
returns: ``finish`` is XACK + XDEL (one group consumes a stream, and the
stream keeps only what is not yet delivered); ``retry_later`` keeps the
entry's fields in a hash ``<stream>:delayed:<queue id>:<attempt>`` named in
the sorted set ``<stream>:delayed`` by the time it is due, and acks and
deletes the original; ``consume`` first moves due entries back onto the
stream (a script: XADD, then drop the hash and its name); ``dead_letter``
copies the entry's fields, with the reason, to the stream ``<stream>:dead``.
Delivered recipients of a queue id are a set ``<stream>:done:<queue id>``
that expires.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Iterable
from typing import Any
from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from .broker import BrokerError, BrokerStats, BrokerUnavailable, Delivery, NotDurable
from .entry import MalformedEntry, QueueEntry

__all__ = ["RedisBroker"]

# Moves the delayed entries due by ARGV[1] (ms) onto the stream, ARGV[2] at most.
_PROMOTE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, name in ipairs(due) do
  local key = ARGV[3] .. name
  local fields = redis.call('HGETALL', key)
  if #fields > 0 then redis.call('XADD', KEYS[2], '*', unpack(fields)) end
  redis.call('DEL', key)
  redis.call('ZREM', KEYS[1], name)
end
return #due
"""

# Copies entry ARGV[2] of stream KEYS[1] (or the fields ARGV[4...], if given) to
# KEYS[2] with the reason ARGV[3]; acks and deletes the entry.
_DEAD_LETTER = """
local found = {}
if #ARGV > 3 then
  found = {{ARGV[2], {unpack(ARGV, 4)}}}
else
  found = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])
end
if #found > 0 then
  local fields = found[1][2]
  table.insert(fields, 'dead_reason'); table.insert(fields, ARGV[3])
  table.insert(fields, 'dead_from'); table.insert(fields, ARGV[2])
  redis.call('XADD', KEYS[2], '*', unpack(fields))
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return #found
"""

_UNREACHABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError, asyncio.TimeoutError)


class RedisBroker:
    """Entries on the Redis stream ``stream`` (see the module's docstring)."""

    def __init__(self, client: aioredis.Redis, stream: str, *, timeout: float = 5.0) -> None:
        self.client = client
        self.stream = stream
        self.timeout = timeout
        self._groups: set[str] = set()  # made (or found) already
        self._promote = client.register_script(_PROMOTE)
        self._dead_letter = client.register_script(_DEAD_LETTER)

    @property
    def delayed_key(self) -> str:
        """The sorted set of entries waiting for a retry (``retry_later``)."""
        return f"{self.stream}:delayed"

    @property
    def dead_stream(self) -> str:
        """The stream dead letters go to (``dead_letter``)."""
        return f"{self.stream}:dead"

    @classmethod
    def connect(cls, host: str = "127.0.0.1", port: int = 6379, stream: str = "mailwire", *,
                timeout: float = 5.0, password: str | None = None, db: int = 0) -> RedisBroker:
        """A broker on a new client (no connection is made until first use)."""
        client = aioredis.Redis(
            host=host, port=port, db=db, password=password, socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0), decode_responses=False,
        )
        return cls(client, stream, timeout=timeout)

    @classmethod
    def from_url(cls, url: str, *, timeout: float = 5.0) -> RedisBroker:
        """``redis://[:PASSWORD@]HOST[:PORT]/STREAM`` (the stream name, not a
        database number, is the path: ``mailwire serve --queue`` takes this)."""
        parts = urlsplit(url)
        stream = unquote(parts.path.lstrip("/"))
        if parts.scheme != "redis" or not parts.hostname or not stream:
            raise ValueError(f"not a redis://HOST:PORT/STREAM address: {url!r}")
        password = unquote(parts.password) if parts.password else None
        return cls.connect(parts.hostname, parts.port or 6379, stream, timeout=timeout, password=password)

    async def _call(self, call: Awaitable[Any], extra: float = 0.0) -> Any:
        """Run one command, bounded in time, its failures as BrokerErrors
        (the reply as redis-py gives it: its types are loose, hence Any)."""
        try:
            return await asyncio.wait_for(call, self.timeout + extra)
        except redis.exceptions.ResponseError as err:
            raise BrokerError(f"redis refused: {err}") from err
        except _UNREACHABLE as err:
            raise BrokerUnavailable(f"redis at {self._where()} unavailable: {err or type(err).__name__}") from err
        except redis.exceptions.RedisError as err:
            raise BrokerError(f"redis failed: {err}") from err

    def _where(self) -> str:
        kw = self.client.connection_pool.connection_kwargs
        return f"{kw.get('host', '?')}:{kw.get('port', '?')}"

    # -- the Broker protocol -------------------------------------------------

    async def publish(self, entry: QueueEntry) -> str:
        fields: dict[Any, Any] = entry.to_fields()
        stream_id: bytes = await self._call(self.client.xadd(self.stream, fields))
        return stream_id.decode()

    async def ensure_group(self, group: str) -> None:
        """Make ``group`` on the stream (and the stream) unless it exists."""
        if group in self._groups:
            return
        try:
            await self._call(self.client.xgroup_create(self.stream, group, id="0", mkstream=True))
        except BrokerError as err:
            if "BUSYGROUP" not in str(err):
                raise
        self._groups.add(group)

    async def consume(self, group: str, consumer: str, *, count: int = 10,
                      block: float | None = None) -> list[Delivery]:
        await self.ensure_group(group)
        await self.promote_due()
        block_ms = None if block is None else max(1, int(block * 1000))
        try:
            reply = await self._call(
                self.client.xreadgroup(group, consumer, {self.stream: ">"}, count=count, block=block_ms),
                extra=block or 0.0,
            )
        except BrokerError as err:
            if "NOGROUP" in str(err):  # the stream or group was deleted under us
                self._groups.discard(group)
            raise
        return [_delivery(i, f) for _name, items in reply or () for i, f in items]

    async def ack(self, group: str, *ids: str) -> int:
        if not ids:
            return 0
        return int(await self._call(self.client.xack(self.stream, group, *ids)))

    async def reclaim(self, group: str, consumer: str, *, min_idle: float,
                      count: int = 100) -> list[Delivery]:
        await self.ensure_group(group)
        found: list[Delivery] = []
        start = "0-0"
        while len(found) < count:
            reply = await self._call(self.client.xautoclaim(
                self.stream, group, consumer, int(min_idle * 1000), start, count=count - len(found),
            ))
            start = _text(reply[0])
            # reply[2] (Redis 7): ids whose entries were deleted; XAUTOCLAIM dropped them.
            found += [_delivery(i, f) for i, f in reply[1] if f is not None]
            if start == "0-0":
                break
        return found

    # -- the WorkerBroker protocol ---------------------------------------------

    async def finish(self, group: str, *ids: str) -> int:
        if not ids:
            return 0
        pipe = self.client.pipeline(transaction=True)
        pipe.xack(self.stream, group, *ids)
        pipe.xdel(self.stream, *ids)
        acked, _deleted = await self._call(pipe.execute())
        return int(acked)

    async def retry_later(self, group: str, stream_id: str, entry: QueueEntry, delay: float) -> None:
        name = f"{entry.queue_id}:{entry.attempt}"
        due_ms = int((time.time() + max(0.0, delay)) * 1000)
        fields: dict[Any, Any] = entry.to_fields()
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(f"{self.delayed_key}:{name}")
        pipe.hset(f"{self.delayed_key}:{name}", mapping=fields)
        pipe.zadd(self.delayed_key, {name: due_ms})
        pipe.xack(self.stream, group, stream_id)
        pipe.xdel(self.stream, stream_id)
        await self._call(pipe.execute())

    async def promote_due(self, limit: int = 100) -> int:
        """Move the delayed entries that are due back onto the stream; how many."""
        now_ms = int(time.time() * 1000)
        return int(await self._call(self._promote(
            keys=[self.delayed_key, self.stream], args=[now_ms, limit, f"{self.delayed_key}:"],
        )))

    async def dead_letter(self, group: str, stream_id: str, reason: str, entry: QueueEntry | None = None) -> None:
        fields: list[Any] = [x for k, v in (entry.to_fields() if entry else {}).items() for x in (k, v)]
        await self._call(self._dead_letter(
            keys=[self.stream, self.dead_stream], args=[group, stream_id, reason, *fields],
        ))

    async def delivered(self, queue_id: str) -> set[str]:
        members = await self._call(self.client.smembers(f"{self.stream}:done:{queue_id}"))
        return {_text(m) for m in members}

    async def mark_delivered(self, queue_id: str, recipients: Iterable[str], ttl: float) -> None:
        names = list(recipients)
        if not names:
            return
        key = f"{self.stream}:done:{queue_id}"
        pipe = self.client.pipeline(transaction=True)
        pipe.sadd(key, *names)
        pipe.expire(key, max(1, int(ttl)))
        await self._call(pipe.execute())

    async def delayed_count(self) -> int:
        """Entries waiting for a retry."""
        return int(await self._call(self.client.zcard(self.delayed_key)))

    async def dead_count(self) -> int:
        """Entries in the dead-letter stream."""
        return int(await self._call(self.client.xlen(self.dead_stream)))

    async def stats(self, group: str) -> BrokerStats:
        length = int(await self._call(self.client.xlen(self.stream)))
        groups = await self._call(self.client.xinfo_groups(self.stream)) if length or group in self._groups \
            else []
        info = next((g for g in groups if _text(g["name"]) == group), None)
        if info is None:  # nobody consumed yet: every entry waits
            first = await self._call(self.client.xrange(self.stream, count=1))
            return BrokerStats(length, {}, _age(first[0][0]) if first else None, length)
        summary = await self._call(self.client.xpending(self.stream, group))
        pending = {_text(c["name"]): int(c["pending"]) for c in summary.get("consumers") or ()}
        oldest: list[bytes | str] = [summary["min"]] if summary.get("min") else []
        last = _text(info["last-delivered-id"])
        waiting = await self._call(self.client.xrange(self.stream, min=f"({last}", count=1))
        oldest += [waiting[0][0]] if waiting else []
        lag = info.get("lag")
        return BrokerStats(length, pending, max((_age(i) for i in oldest), default=None),
                           None if lag is None else int(lag))

    async def health(self) -> bool:
        try:
            return bool(await self._call(self.client.ping()))
        except BrokerError:
            return False

    async def check_durable(self) -> None:
        config = await self._call(self.client.config_get("append*"))
        values = {_text(k): _text(v) for k, v in config.items()}
        wrong = [f"{key} {want} (it is {values.get(key, 'unset')!r})"
                 for key, want in (("appendonly", "yes"), ("appendfsync", "always"))
                 if values.get(key) != want]
        if wrong:
            raise NotDurable(
                f"redis at {self._where()} may lose an acknowledged entry: set " + " and ".join(wrong)
                + " (redis.conf, or CONFIG SET then CONFIG REWRITE) before mailwire queues mail on it"
            )

    async def close(self) -> None:
        await self.client.aclose()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _age(stream_id: bytes | str) -> float:
    """Seconds since Redis made ``stream_id`` (its first part is Unix ms)."""
    return max(0.0, time.time() - int(_text(stream_id).partition("-")[0]) / 1000)


def _delivery(stream_id: bytes | str, fields: dict[bytes, bytes]) -> Delivery:
    try:
        return _text(stream_id), QueueEntry.from_fields(fields)
    except MalformedEntry as err:
        return _text(stream_id), err

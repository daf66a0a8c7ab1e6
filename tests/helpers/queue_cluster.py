"""The whole queue, on loopback: Redis, N front ends, M workers, HAProxy in front.

``QueueCluster`` starts every part as a real process (``redis-server``;
``python -m mailwire serve --queue … --proxy-protocol --proxy-from
127.0.0.2/32 --health …``; ``python -m mailwire worker --queue … --maildir …
--queue-blobs …``; ``haproxy``), each killable and restartable on its own
port and directories, which is what the fault tests do. The front ends
share one blob directory with the workers (a shared volume, on one machine).

``wait_drained`` waits, bounded, until nothing is left to deliver (no entry
waits for a consumer, none is pending) and what the Maildir holds stops
changing; ``delivered`` reads the Maildir back: per stored file, the queue
id from its name and from its ``X-Mailwire-Queue-Id`` header, the client
address from its ``Received:`` line, and the SHA-256 of its body (the part
after the header section, which delivery leaves as it was sent).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import http.client
import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailwire.queue.broker import BrokerError, BrokerStats
from mailwire.queue.redis_broker import RedisBroker

from .haproxy import PROXY_SOURCE, Backend, HAProxy
from .processes import MailwireProcess, free_ports
from .queue_load import Outcome
from .redis_server import RedisServer

__all__ = ["QueueCluster", "Stored", "Tally", "read_maildir", "body_sha256", "check_exactly_once"]

GROUP = "mailwire"
_RECEIVED_CLIENT = re.compile(rb"^Received: from \S+ \(\[([^\]]+)\]\)", re.MULTILINE)
_QUEUE_ID = re.compile(rb"^X-Mailwire-Queue-Id: (\S+)", re.MULTILINE)


def body_sha256(message: bytes) -> str:
    """The SHA-256 of the body: what follows the first empty line."""
    for separator in (b"\r\n\r\n", b"\n\n"):
        head, found, body = message.partition(separator)
        if found:
            return hashlib.sha256(body).hexdigest()
    return hashlib.sha256(b"").hexdigest()


@dataclass(frozen=True)
class Stored:
    """One delivered file, as read back."""

    name_id: str  # the queue id in its file name
    header_id: str | None  # the queue id in its X-Mailwire-Queue-Id header
    client: str | None  # the client address in its Received line
    body_sha256: str
    path: Path


def read_maildir(root: Path) -> list[Stored]:
    found = []
    for sub in ("new", "cur"):
        folder = root / sub
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            data = path.read_bytes()
            head = data.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
            client = _RECEIVED_CLIENT.search(head)
            queue_id = _QUEUE_ID.search(head)
            found.append(Stored(
                path.name.split(":", 1)[0].split(".", 1)[0],
                queue_id[1].decode() if queue_id else None,
                client[1].decode() if client else None,
                body_sha256(data), path,
            ))
    return found


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as reply:
            return bool(reply.status == 200)
    except (OSError, urllib.error.URLError, http.client.HTTPException):
        return False


class QueueCluster:
    def __init__(self, directory: Path, *, fronts: int = 2, workers: int = 2, inline_max: int | None = None,
                 appendfsync: str = "always", check_inter: str = "500ms",
                 front_args: Sequence[str] = (), worker_args: Sequence[str] = ()) -> None:
        self.directory = directory
        (directory / "redis").mkdir(parents=True, exist_ok=True)
        self.redis = RedisServer(directory / "redis", appendfsync=appendfsync)
        self.blobs = directory / "blobs"
        self.maildir = directory / "delivered"
        self.blobs.mkdir(exist_ok=True)
        for sub in ("tmp", "new", "cur"):
            (self.maildir / sub).mkdir(parents=True, exist_ok=True)
        inline = ["--queue-inline-max", str(inline_max)] if inline_max is not None else []
        ports = free_ports(1 + 2 * fronts + workers)
        self.fronts: list[MailwireProcess] = []
        backends = []
        for number in range(1, fronts + 1):
            port, health = ports.pop(), ports.pop()
            self.fronts.append(MailwireProcess(
                f"front{number}",
                ["serve", "--no-web", "-q", "--port", str(port), "--queue", self.redis.url,
                 "--queue-blobs", str(self.blobs), *inline, "--proxy-protocol", "--proxy-from",
                 f"{PROXY_SOURCE}/32", "--health", f"127.0.0.1:{health}", *front_args],
                directory / "logs", ready="listening on", traced=False))
            backends.append(Backend("127.0.0.1", port, health))
        self.workers: list[MailwireProcess] = []
        for number in range(1, workers + 1):
            health = ports.pop()
            self.workers.append(MailwireProcess(
                f"worker{number}",
                ["worker", "--queue", self.redis.url, "--maildir", str(self.maildir), "--queue-blobs",
                 str(self.blobs), "--consumer", f"worker{number}", "--health", f"127.0.0.1:{health}",
                 *worker_args],
                directory / "logs", ready=functools.partial(_healthy, health), traced=False))
        self.haproxy = HAProxy(directory, backends, inter=check_inter, port=ports.pop())

    @property
    def address(self) -> tuple[str, int]:
        """Where clients connect: HAProxy."""
        return self.haproxy.address

    def start(self, *, workers: bool = True) -> None:
        self.redis.start()
        for front in self.fronts:
            front.start()
        if workers:
            for worker in self.workers:
                worker.start()
        self.haproxy.start()
        self.haproxy.wait_servers(up=len(self.fronts))

    def stop(self) -> dict[str, int | None]:
        """Everything, the clean way first (SIGTERM, each bounded); what resists
        is killed. Each front end's and worker's exit code (None: killed, or
        not running)."""
        self.haproxy.stop()
        codes: dict[str, int | None] = {}
        for process in [*self.fronts, *self.workers]:
            try:
                codes[process.name] = process.stop()
            except Exception:
                process.kill()
                codes[process.name] = None
        self.redis.stop()
        return codes

    def restart_redis(self, *, down: float = 0.0) -> None:
        """SIGKILL redis (as a crash: no final write), then start it on the same
        append-only file after ``down`` seconds."""
        assert self.redis.process is not None
        self.redis.process.kill()
        self.redis.process.wait(10)
        self.redis.process = None
        time.sleep(down)
        self.redis.start(timeout=30)

    def stats(self) -> tuple[BrokerStats, int]:
        """The group's stats and the entries waiting for a retry (in-process: polled often)."""
        async def query() -> tuple[BrokerStats, int]:
            broker = RedisBroker.from_url(self.redis.url)
            try:
                return await broker.stats(GROUP), await broker.delayed_count()
            finally:
                await broker.close()
        return asyncio.run(query())

    def queue_stats(self) -> dict[str, Any]:
        """What ``mailwire queue stats --json`` says, as an operator would ask."""
        done = subprocess.run([sys.executable, "-m", "mailwire", "queue", "stats", "--queue", self.redis.url,
                               "--json"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        facts: dict[str, Any] = json.loads(done.stdout)
        return facts

    def wait_drained(self, *, expected: int = 0, timeout: float = 60.0) -> list[Stored]:
        """Wait until at least ``expected`` files are delivered, the broker has
        nothing waiting, pending or due for a retry, and the Maildir's count held still over
        two looks; what it holds then."""
        deadline = time.monotonic() + timeout
        last = -1
        seen: tuple[BrokerStats, int] | None = None
        while True:
            count = sum(1 for sub in ("new", "cur") for _ in (self.maildir / sub).iterdir())
            try:
                seen = self.stats()
                stats, delayed = seen
                idle = (stats.lag or 0) == 0 and stats.pending_total == 0 and delayed == 0
            except BrokerError:
                idle = False
            if idle and count >= expected and count == last:
                return read_maildir(self.maildir)
            if time.monotonic() > deadline:
                logs = "\n".join(p.output()[-1500:] for p in self.workers)
                raise AssertionError(f"not drained after {timeout}s: {count} delivered of {expected}, "
                                     f"broker {seen}\n{logs}")
            last = count
            time.sleep(0.5)

    def delivered(self) -> list[Stored]:
        return read_maildir(self.maildir)


@dataclass(frozen=True)
class Tally:
    queued: int  # messages the sender got a 250 for
    refused: int  # a 4xx/5xx: the sender knew
    broken: int  # the connection failed before the 250
    delivered: int  # of the load's messages
    delivered_unconfirmed: int  # delivered though the sender never got the 250 (killed in between)


def check_exactly_once(outcomes: Sequence[Outcome], stored: Sequence[Stored], *,
                       others: int = 0) -> Tally:
    """The queue's promise, checked: every message that got a 250 is in the Maildir
    once (by queue id and by content), with its real client address; none is
    there twice; the only ones missing are those the sender was not told were
    queued. ``others``: files expected beside the load's (by another sender)."""
    strange = [o for o in outcomes if o.status not in ("queued", "refused", "broken")]
    assert not strange, strange[:5]
    by_id: dict[str, Stored] = {}
    for item in stored:
        assert item.header_id == item.name_id, item
        assert item.header_id not in by_id, f"queue id {item.header_id} delivered twice"
        by_id[item.name_id] = item
    by_hash: dict[str, list[Stored]] = {}
    for item in stored:
        by_hash.setdefault(item.body_sha256, []).append(item)
    sent = {o.sha256: o for o in outcomes}
    assert len(sent) == len(outcomes), "the load's bodies are not unique"
    twice = {h: [s.name_id for s in items] for h, items in by_hash.items() if h in sent and len(items) > 1}
    assert not twice, f"delivered twice (same content, other queue ids): {list(twice.items())[:5]}"
    for outcome in outcomes:
        if outcome.status == "queued":
            assert outcome.queue_id in by_id, f"250 {outcome.queue_id} for message {outcome.number}, not delivered"
            item = by_id[outcome.queue_id]
            assert item.body_sha256 == outcome.sha256, (outcome, item)
        for item in by_hash.get(outcome.sha256, ()):
            assert item.client == outcome.client, (outcome, item)
    ours = [s for s in stored if s.body_sha256 in sent]
    assert len(stored) == len(ours) + others, (len(stored), len(ours), others)
    missing = [o for o in outcomes if o.sha256 not in by_hash]
    assert all(o.status != "queued" for o in missing)
    count = {status: sum(o.status == status for o in outcomes) for status in ("queued", "refused", "broken")}
    return Tally(count["queued"], count["refused"], count["broken"], len(ours),
                 sum(o.status != "queued" for o in outcomes if o.sha256 in by_hash))

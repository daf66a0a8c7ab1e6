"""One `mailwire worker`'s cost per message, alone: CPU and rate of a Maildir worker draining a queue.

A real redis-server (started here, `appendfsync always`, in a temporary
directory) is filled with N entries of a 1 KB message before the worker
starts, so the figure is the worker's own: reading entries, the Maildir
write with its fsyncs, settling each entry on Redis. CPU is the worker
process's (threads included), from `time.process_time`. Compare two trees
by running this file with each tree's Python, interleaved, and take medians:

    for i in 1 2 3 4 5; do A/.venv/bin/python bench/worker_bench.py; B/.venv/bin/python bench/worker_bench.py; done

`--profile` prints cProfile's top functions (the rate then halves).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from helpers.redis_server import RedisServer  # noqa: E402

from mailwire.queue import QueueEntry  # noqa: E402
from mailwire.queue.deliver import MaildirDeliverer  # noqa: E402
from mailwire.queue.redis_broker import RedisBroker  # noqa: E402
from mailwire.queue.worker import Worker  # noqa: E402
from mailwire.server.envelope import Envelope, SessionInfo  # noqa: E402

BODY = (b"Subject: hi\r\nFrom: a@example.com\r\n\r\n" + b"x" * 70 + b"\r\n") * 14  # ~1 KB


async def drain(url: str, mail: Path, count: int, concurrency: int, profile: bool) -> tuple[float, float]:
    broker = RedisBroker.from_url(url)
    for n in range(count):
        envelope = Envelope("a@example.com", rcpt_to=["b@example.com"],
                            session=SessionInfo(peer=("192.0.2.1", 1024 + n), helo_name="client.example"))
        await broker.publish(QueueEntry.inline(envelope, BODY))
    worker = Worker(broker, MaildirDeliverer(mail), concurrency=concurrency, block=0.2)
    task = asyncio.get_running_loop().create_task(worker.run())
    profiler = cProfile.Profile() if profile else None
    cpu, wall = time.process_time(), time.monotonic()
    if profiler:
        profiler.enable()
    deadline = wall + 600
    while worker.counts["delivered"] < count and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    if profiler:
        profiler.disable()
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    worker.stop()
    await task
    await broker.close()
    if worker.counts["delivered"] < count:
        raise SystemExit(f"only {worker.counts['delivered']} of {count} delivered in 600 s")
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(20)
    return cpu, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "redis").mkdir()
        server = RedisServer(Path(tmp) / "redis")
        server.start()
        try:
            cpu, wall = asyncio.run(drain(server.url, Path(tmp) / "mail", args.messages, args.concurrency,
                                          args.profile))
        finally:
            server.stop()
    print(f"{args.messages} messages: {args.messages / wall:,.0f} msg/s, "
          f"worker CPU {1000 * cpu / args.messages:.3f} ms/msg")


if __name__ == "__main__":
    main()

"""The queue's cost: msg/s through HAProxy with 1 and 2 front ends, the '.'-to-250 latency and its parts, ``appendfsync always`` against ``everysec``.

Every run starts the real cluster of the tests (``tests/helpers/queue_cluster.py``:
redis-server, ``mailwire serve --queue`` front ends behind HAProxy, 2
``mailwire worker --maildir`` draining meanwhile) on a fresh directory, and
measures, per case (front ends x appendfsync):

- ``accept msg/s``: Postfix's ``smtp-source`` (20 sessions keeping their
  connections, 1 KB messages) through HAProxy, timed by the wall clock around
  it: every one of those messages got its 250, so was durably queued;
- ``e2e msg/s``: the same messages over the time until the last is in the
  workers' Maildir (the newest file's mtime);
- ``'.'->250 p50/p99``: one client, one message at a time (no load), the time
  from sending the final ``.`` to reading the 250, for a 1 KB message (inline
  in the entry) and a 64 KB one (a blob, written before the entry).

The front end does not report its own timings, so the split of the '.'->250
time is measured beside it with the same code it runs: ``RedisBroker.publish``
of a 1 KB entry (XADD, whose reply under ``appendfsync always`` waits for the
fsync) and ``DirectoryBlobs.write`` of a 64 KB body (write, fsync, rename,
fsync of the directory), each timed alone against the same redis-server and
disk, one right after each '.'->250 sample of its size (so in the same
conditions: the workers delivering the samples meanwhile). What remains of
the '.'->250 time is the front end's own work plus the trip through HAProxy.

``CPU ms per message``: what each part of the cluster spent during the
smtp-source run and the drain (Linux ``/proc``), per message: where the two
cores go.

Cases run interleaved (each repeat runs every case once, in turn), so a change
in the machine's load hits them alike; tables show medians, and ratios against
the first case. No timed assertions anywhere: figures only.

    .venv/bin/python bench/queue_bench.py            # about 5 minutes on 2 cores
    .venv/bin/python bench/queue_bench.py --quick    # about 1.5 minutes
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from helpers.queue_cluster import QueueCluster  # noqa: E402
from helpers.redis_server import RedisServer  # noqa: E402
from maildir_bench import cpu_seconds  # noqa: E402

from mailwire.queue.blobs import DirectoryBlobs  # noqa: E402
from mailwire.queue.entry import QueueEntry, new_queue_id  # noqa: E402
from mailwire.queue.redis_broker import RedisBroker  # noqa: E402
from mailwire.server.envelope import Envelope  # noqa: E402

SMTP_SOURCE = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
SESSIONS = 20
INLINE_MAX = 16384  # 1 KB messages inline, 64 KB ones blobs
SMALL, LARGE = 1024, 65536


@dataclass(frozen=True)
class Case:
    fronts: int
    appendfsync: str

    @property
    def name(self) -> str:
        return f"{self.fronts} front end{'s' if self.fronts > 1 else ''}, {self.appendfsync}"


@dataclass
class Figures:
    accept: list[float] = field(default_factory=list)  # msg/s
    e2e: list[float] = field(default_factory=list)
    latency: dict[str, list[float]] = field(default_factory=dict)  # name -> seconds, every sample of every run
    parts: dict[str, list[float]] = field(default_factory=dict)
    cpu: dict[str, list[float]] = field(default_factory=dict)  # part -> CPU ms per message, each run


def _reply(sock: socket.socket, buffer: bytearray) -> bytes:
    """One whole SMTP reply (its last line), read from ``sock``."""
    while True:
        end = buffer.find(b"\r\n")
        while end >= 0:
            line = bytes(buffer[:end])
            del buffer[:end + 2]
            if line[3:4] != b"-":
                return line
            end = buffer.find(b"\r\n")
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buffer += chunk


def dot_to_250(address: tuple[str, int], size: int, count: int, after: Callable[[], None]) -> list[float]:
    """Seconds from the final '.' to the 250, ``count`` messages one at a time,
    ``after`` called after each (a part timed alone, in the same conditions)."""
    body = b"Subject: latency\r\n\r\n" + (b"y" * 78 + b"\r\n") * (size // 80)
    times = []
    with socket.create_connection(address, timeout=30) as sock:
        # As any SMTP client should: the final "." must not wait behind Nagle for the body's ACK
        # (a delayed ACK: 40 ms on Linux, which would be all this measures).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buffer = bytearray()
        assert _reply(sock, buffer).startswith(b"220")
        sock.sendall(b"EHLO bench.test\r\n")
        assert _reply(sock, buffer).startswith(b"250")
        for _ in range(count):
            sock.sendall(b"MAIL FROM:<a@bench.test>\r\nRCPT TO:<b@bench.test>\r\nDATA\r\n")
            for want in (b"250", b"250", b"354"):
                line = _reply(sock, buffer)
                assert line.startswith(want), line
            sock.sendall(body)
            start = time.perf_counter()
            sock.sendall(b".\r\n")
            line = _reply(sock, buffer)
            times.append(time.perf_counter() - start)
            assert line.startswith(b"250"), line
            after()
    return times


class Parts:
    """The two waits of a '.'->250, each timed alone with the front end's own code:
    ``RedisBroker.publish`` (on a stream of its own, which no worker reads) and
    ``DirectoryBlobs.write`` (on the disk the blobs go to)."""

    def __init__(self, redis: RedisServer, blob_dir: Path, figures: Figures) -> None:
        self.loop = asyncio.new_event_loop()
        self.broker = RedisBroker.from_url(redis.url.rsplit("/", 1)[0] + "/bench-parts")
        self.blobs = DirectoryBlobs(blob_dir)
        self.figures = figures
        self.envelope = Envelope("a@bench.test", rcpt_to=["b@bench.test"])

    def _time(self, name: str, work: Awaitable[object]) -> None:
        start = time.perf_counter()
        self.loop.run_until_complete(work)
        self.figures.parts.setdefault(name, []).append(time.perf_counter() - start)

    def publish(self) -> None:
        self._time("broker ack (XADD, 1 KB inline)", self.broker.publish(QueueEntry.inline(self.envelope, b"x" * SMALL)))

    def blob(self) -> None:
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(LARGE // 16384):
                yield b"x" * 16384
        key = new_queue_id()
        self._time("blob write (64 KB)", self.blobs.write(key, chunks()))
        self.loop.run_until_complete(self.blobs.delete(key))

    def close(self) -> None:
        self.loop.run_until_complete(self.broker.close())
        self.loop.close()


def cpu_by_part(cluster: QueueCluster) -> dict[str, float]:
    """CPU seconds so far of each part of the cluster (summed over front ends, over workers)."""
    parts = {"front ends": cluster.fronts, "workers": cluster.workers}
    found = {name: sum(cpu_seconds(p.process.pid) for p in procs if p.process) for name, procs in parts.items()}
    for name, process in (("redis", cluster.redis.process), ("haproxy", cluster.haproxy.process)):
        found[name] = cpu_seconds(process.pid) if process else float("nan")
    return found


def one_run(case: Case, messages: int, samples: int, figures: Figures) -> None:
    directory = Path(tempfile.mkdtemp(prefix="mw-qbench-"))
    lenient = [] if case.appendfsync == "always" else ["--queue-allow-not-durable"]
    cluster = QueueCluster(directory, fronts=case.fronts, workers=2, inline_max=INLINE_MAX,
                           appendfsync=case.appendfsync, front_args=lenient)
    try:
        cluster.start()
        cpu_before = cpu_by_part(cluster)
        source_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start, wall = time.perf_counter(), time.time()
        subprocess.run([SMTP_SOURCE, "-d", "-s", str(SESSIONS), "-m", str(messages), "-l", str(SMALL),
                        "-M", "bench.test", "-f", "a@bench.test", "-t", "b@bench.test",
                        f"{cluster.address[0]}:{cluster.address[1]}"], check=True, capture_output=True, timeout=600)
        figures.accept.append(messages / (time.perf_counter() - start))
        source_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        stored = cluster.wait_drained(expected=messages, timeout=600)
        # Until the last file reached the Maildir (its mtime), not until the drain was seen.
        figures.e2e.append(messages / (max(s.path.stat().st_mtime for s in stored) - wall))
        cpu_after = cpu_by_part(cluster)
        for name in cpu_after:
            figures.cpu.setdefault(name, []).append((cpu_after[name] - cpu_before[name]) * 1000 / messages)
        source = (source_after.ru_utime + source_after.ru_stime - source_before.ru_utime - source_before.ru_stime)
        figures.cpu.setdefault("smtp-source", []).append(source * 1000 / messages)
        parts = Parts(cluster.redis, directory / "blobs-bench", figures)
        try:
            figures.latency.setdefault("1 KB", []).extend(dot_to_250(cluster.address, SMALL, samples, parts.publish))
            figures.latency.setdefault("64 KB", []).extend(dot_to_250(cluster.address, LARGE, samples, parts.blob))
        finally:
            parts.close()
    finally:
        cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def report(cases: list[Case], figures: dict[Case, Figures]) -> None:
    base = figures[cases[0]]
    print(f"\n{'case':<26}{'accept msg/s':>14}{'ratio':>7}{'e2e msg/s':>12}{'ratio':>7}")
    for case in cases:
        got = figures[case]
        accept, e2e = statistics.median(got.accept), statistics.median(got.e2e)
        print(f"{case.name:<26}{accept:>14.0f}{accept / statistics.median(base.accept):>7.2f}"
              f"{e2e:>12.0f}{e2e / statistics.median(base.e2e):>7.2f}")
    print(f"\n{'latency (ms)':<52}{'p50':>8}{'p99':>8}")
    for case in cases:
        got = figures[case]
        for name, values in [*((f"'.'->250 {k}", v) for k, v in got.latency.items()), *got.parts.items()]:
            print(f"{case.name + ': ' + name:<52}{percentile(values, 0.5) * 1000:>8.2f}"
                  f"{percentile(values, 0.99) * 1000:>8.2f}")
    names = list(base.cpu)
    print(f"\n{'CPU ms per message':<26}" + "".join(f"{name:>12}" for name in names))
    for case in cases:
        print(f"{case.name:<26}" + "".join(f"{statistics.median(figures[case].cpu[n]):>12.2f}" for n in names))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer messages, samples and repeats")
    parser.add_argument("--repeat", type=int, help="runs per case (default 3; --quick: 1)")
    parser.add_argument("--messages", type=int, help="smtp-source messages per run (default 3000; --quick: 1000)")
    parser.add_argument("--samples", type=int, help="latency samples per run (default 200; --quick: 100)")
    args = parser.parse_args()
    repeat = args.repeat or (1 if args.quick else 3)
    messages = args.messages or (1000 if args.quick else 3000)
    samples = args.samples or (100 if args.quick else 200)
    cases = [Case(1, "always"), Case(2, "always"), Case(2, "everysec")]
    figures = {case: Figures() for case in cases}
    print(f"{os.cpu_count()} cores; smtp-source {SESSIONS} sessions x {messages} messages of 1 KB; "
          f"2 workers; {repeat} interleaved repeats; {samples} latency samples a run", flush=True)
    for number in range(repeat):
        for case in cases:
            one_run(case, messages, samples, figures[case])
            print(f"  repeat {number + 1}, {case.name}: {figures[case].accept[-1]:.0f} msg/s accepted, "
                  f"{figures[case].e2e[-1]:.0f} end to end", flush=True)
    report(cases, figures)


if __name__ == "__main__":
    main()

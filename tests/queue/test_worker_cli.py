"""``mailwire worker`` and ``mailwire queue`` as a user runs them: real
processes against a real redis-server. SIGTERM drains and exits 0; a worker
SIGKILLed holding entries loses none (another reclaims them, none stored
twice); a redis-server that is down at start, or restarted mid-run, is
waited for; ``GET /health``; ``queue stats`` (text and JSON) and ``queue
health``; one line and exit 2 (or 1) for bad input."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from mailwire.queue import QueueEntry

from helpers.redis_server import RedisServer
from helpers.smtp_sink import free_port
from worker_helpers import GROUP, maildir_files, make_entry, with_broker

pytest.importorskip("redis")
from mailwire.queue.redis_broker import RedisBroker  # noqa: E402

TIMEOUT = 30.0


def _mailwire(*args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mailwire", *args], capture_output=True, text=True,
                          timeout=timeout)


@contextmanager
def _worker(*args: str) -> Iterator[subprocess.Popen[str]]:
    """The worker process; its stderr goes to a file, read with ``_stderr`` while it runs."""
    with tempfile.TemporaryFile("w+") as errors:
        process = subprocess.Popen([sys.executable, "-m", "mailwire", "worker", *args], stdout=subprocess.PIPE,
                                   stderr=errors, text=True)
        process.errors = errors  # type: ignore[attr-defined]
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
            process.communicate(timeout=TIMEOUT)


def _stderr(process: subprocess.Popen[str]) -> str:
    errors = process.errors  # type: ignore[attr-defined]
    errors.seek(0)
    return str(errors.read())


def _until(condition: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _publish(server: RedisServer, entries: list[QueueEntry]) -> None:
    async def publish(broker: RedisBroker) -> None:
        for entry in entries:
            await broker.publish(entry)

    with_broker(server, publish)


def _health(port: int) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())
    except urllib.error.URLError:
        return 0, {}


def test_sigterm_drains_and_exits_0_with_health(redis_server: RedisServer, tmp_path: Path) -> None:
    entries = [make_entry(n) for n in range(20)]
    _publish(redis_server, entries)
    port = free_port()
    with _worker("--queue", redis_server.url, "--maildir", str(tmp_path / "mail"), "--concurrency", "3",
                 "--health", f"127.0.0.1:{port}") as worker:
        _until(lambda: len(maildir_files(tmp_path / "mail")) == 20)
        _until(lambda: _health(port)[0] == 200)
        status, facts = _health(port)
        assert facts["ok"] is True and facts["broker"] is True and facts["target"] == "maildir"
        worker.send_signal(signal.SIGTERM)
        out, _ = worker.communicate(timeout=TIMEOUT)
        err = _stderr(worker)
        assert worker.returncode == 0, err
    assert out.startswith("mailwire worker: delivering from redis://127.0.0.1:")
    assert sorted(maildir_files(tmp_path / "mail")) == sorted(e.queue_id for e in entries)
    assert err.count("event=delivered") == 20
    stats = json.loads(_mailwire("queue", "stats", "--queue", redis_server.url, "--json").stdout)
    assert (stats["length"], stats["pending_total"], stats["dead"]) == (0, 0, 0)


def test_a_sigkilled_worker_loses_nothing_and_nothing_is_stored_twice(
    redis_server: RedisServer, tmp_path: Path,
) -> None:
    mail = tmp_path / "mail"
    # The first worker blocks on a relay that never answers, holding what it read, and is killed.
    with socket_that_never_answers() as port, _worker(
        "--queue", redis_server.url, "--relay", f"127.0.0.1:{port}", "--tls", "none", "--timeout", "60",
        "--consumer", "doomed", "--concurrency", "5",
    ) as doomed:
        _publish(redis_server, [make_entry(n) for n in range(5)])
        _until(lambda: _pending(redis_server).get("doomed", 0) == 5)
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(TIMEOUT)
    entries = [make_entry(n) for n in range(5, 10)]
    _publish(redis_server, entries)
    with _worker("--queue", redis_server.url, "--maildir", str(mail), "--reclaim-after", "0.5",
                 "--consumer", "heir") as heir:
        _until(lambda: len(maildir_files(mail)) == 10)
        heir.send_signal(signal.SIGTERM)
        heir.communicate(timeout=TIMEOUT)
    assert all(len(files) == 1 for files in maildir_files(mail).values())
    assert _pending(redis_server) == {}


@contextmanager
def socket_that_never_answers() -> Iterator[int]:
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(50)
        yield listener.getsockname()[1]


def _pending(server: RedisServer) -> dict[str, int]:
    result = json.loads(_mailwire("queue", "stats", "--queue", server.url, "--json").stdout)
    return {k: v for k, v in result["pending"].items() if v}


def test_redis_down_at_start_then_restarted_mid_run(redis_server: RedisServer, tmp_path: Path) -> None:
    mail = tmp_path / "mail"
    redis_server.stop()
    with _worker("--queue", redis_server.url, "--maildir", str(mail), "--queue-timeout", "1") as worker:
        _until(lambda: "does not answer yet: waiting for it" in _stderr(worker))
        time.sleep(0.5)
        assert worker.poll() is None  # waiting, not exiting
        redis_server.start()
        first = [make_entry(n) for n in range(3)]
        _publish(redis_server, first)
        _until(lambda: len(maildir_files(mail)) == 3)
        redis_server.stop()
        time.sleep(1.0)
        redis_server.start()
        second = [make_entry(n) for n in range(3, 6)]
        _publish(redis_server, second)
        _until(lambda: len(maildir_files(mail)) == 6)
        worker.send_signal(signal.SIGTERM)
        worker.communicate(timeout=TIMEOUT)
        err = _stderr(worker)
    assert worker.returncode == 0
    assert "event=broker_down" in err and "event=broker_up" in err
    assert sorted(maildir_files(mail)) == sorted(e.queue_id for e in first + second)


def test_queue_stats_and_health(redis_server: RedisServer) -> None:
    _publish(redis_server, [make_entry(n) for n in range(4)])

    async def hold_two(broker: RedisBroker) -> None:
        assert len(await broker.consume(GROUP, "w1", count=2)) == 2

    with_broker(redis_server, hold_two)
    text = _mailwire("queue", "stats", "--queue", redis_server.url)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0] == f"queue    {redis_server.url} (group mailwire)"
    assert lines[1:5] == ["length   4", "lag      2", lines[3], "pending  2"]
    assert lines[3].startswith("oldest   ") and lines[3].endswith("s")
    assert lines[5:] == ["  w1  2", "delayed  0", "dead     0"]
    as_json = json.loads(_mailwire("queue", "stats", "--queue", redis_server.url, "--json").stdout)
    assert as_json["pending"] == {"w1": 2} and as_json["length"] == 4 and as_json["lag"] == 2
    health = _mailwire("queue", "health", "--queue", redis_server.url)
    assert health.returncode == 0 and health.stdout.startswith("ok: ") and "; durable" in health.stdout
    redis_server.stop()
    down = _mailwire("queue", "health", "--queue", redis_server.url, "--queue-timeout", "1")
    assert down.returncode == 1 and down.stdout.startswith("not ok: ")
    stats = _mailwire("queue", "stats", "--queue", redis_server.url, "--queue-timeout", "1")
    assert stats.returncode == 1 and stats.stderr.count("\n") == 1 and "unavailable" in stats.stderr


@pytest.mark.parametrize("args, code, message", [
    (["worker", "--queue", "redis://h/s"], 2, "one of the arguments --maildir --lmtp --lmtp-unix --relay"),
    (["worker", "--queue", "http://h/s", "--maildir", "m"], 2, "--queue: not a redis://HOST:PORT/STREAM"),
    (["worker", "--queue", "redis://h/s", "--maildir", "m", "--relay", "h:25"], 2, "not allowed with"),
    (["worker", "--queue", "redis://h/s", "--maildir", "/dev/null/m"], 1, "cannot write to the Maildir"),
    (["worker", "--queue", "redis://h/s", "--relay", "h:25", "--concurrency", "0"], 2, "at least 1"),
    (["queue", "stats", "--queue", "redis://h"], 2, "--queue: not a redis://HOST:PORT/STREAM"),
], ids=["no-deliverer", "bad-url", "two-deliverers", "maildir", "concurrency", "stats-url"])
def test_bad_input_is_one_line(args: list[str], code: int, message: str) -> None:
    result = _mailwire(*args)
    assert result.returncode == code
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr

"""``mailwire serve --queue``: a real process in front of a real redis-server.

What a user sees: the banner, ``250 2.0.0 queued as <id>`` for an id that is
on the stream, ``GET /health`` (200 while accepting, 503 with the broker
stopped, 200 again once it is back), ``--workers 2`` each with its own broker
connection, a broker without ``appendfsync always`` refused at start (one
line, exit 1) unless ``--queue-allow-not-durable``, and one line with exit 2
for options that do not go together.
"""

from __future__ import annotations

import json
import smtplib
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from helpers.redis_server import REDIS_SERVER, RedisServer, running_redis

from .test_cli_serve import MSG, TIMEOUT, Serve, serve  # noqa: F401 - serve is a fixture

pytest.importorskip("redis")


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path / "redis") as server:
        yield server


def _health(port: int) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=TIMEOUT) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())
    except urllib.error.URLError:  # not listening (yet: a worker starts its own)
        return 0, {}


def _until(condition: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _stream_ids(redis: RedisServer) -> list[str]:
    import redis as redis_py

    client = redis_py.Redis(port=redis.port, decode_responses=True)
    try:
        return [fields["id"] for _, fields in client.xrange("mailwire-test")]
    finally:
        client.close()


def _broker_clients(redis: RedisServer) -> int:
    import redis as redis_py

    client = redis_py.Redis(port=redis.port, decode_responses=True)
    try:
        return len(client.client_list())
    finally:
        client.close()


def _send(port: int) -> tuple[int, str]:
    with smtplib.SMTP("127.0.0.1", port, timeout=TIMEOUT) as client:
        client.ehlo("client.example")
        client.mail("alice@example.org")
        client.rcpt("bob@example.net")
        code, text = client.data(MSG)
    return code, text.decode()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_queue_health_outage_and_recovery(serve: Callable[..., Serve], redis: RedisServer,
                                          tmp_path: Path) -> None:
    health = _free_port()
    server = serve("--port", "0", "--queue", redis.url, "--queue-blobs", str(tmp_path / "blobs"),
                   "--queue-timeout", "2", "--health", f"127.0.0.1:{health}")
    assert f"queueing on {redis.url} (bodies over 65536 octets in {tmp_path / 'blobs'})" in server.banner
    assert f"health on http://127.0.0.1:{health}/health" in server.banner
    code, reply = _send(server.port)
    assert code == 250 and reply.startswith("2.0.0 queued as ")
    assert _stream_ids(redis) == [reply.rsplit(" ", 1)[1]]
    status, facts = _health(health)
    assert status == 200 and (facts["ok"], facts["broker"], facts["durable"], facts["queued"]) == \
        (True, "up", True, 1)
    redis.stop()
    assert _until(lambda: _health(health)[0] == 503)
    with smtplib.SMTP("127.0.0.1", server.port, timeout=TIMEOUT) as client:
        client.ehlo("client.example")
        code, text = client.mail("alice@example.org")
    assert (code, text.decode()) == (451, "4.3.0 Queue unavailable, try again later")
    assert _health(health)[1]["refused"] == 1
    redis.start()
    assert _until(lambda: _health(health)[0] == 200)
    assert _send(server.port)[0] == 250
    assert server.stop() == 0


def test_workers_each_queue_on_their_own_connection(serve: Callable[..., Serve], redis: RedisServer) -> None:
    health = _free_port()
    server = serve("--port", "0", "--queue", redis.url, "--workers", "2", "--health", f"127.0.0.1:{health}")
    assert "workers: 2" in server.banner
    # Each worker started its front end (broker connected, durability checked)
    # before it listened: mail sent as soon as the banner is out is accepted,
    # whichever worker takes it.
    replies = [_send(server.port) for _ in range(12)]
    assert all(code == 250 for code, _ in replies)
    assert sorted(_stream_ids(redis)) == sorted(reply.rsplit(" ", 1)[1] for _, reply in replies)
    # Each worker connected after the fork: two connections (at least: a
    # publish may run beside a ping) besides the test's own.
    assert _until(lambda: _broker_clients(redis) >= 3)
    # SO_REUSEPORT spreads the probes: each worker answers for itself, with its own broker state.
    facts: dict[object, dict[str, object]] = {}

    def both_answered() -> bool:
        code, answer = _health(health)
        if "pid" in answer:
            facts[answer["pid"]] = answer
        return len(facts) >= 2 and all(f["ok"] and f["broker"] == "up" for f in facts.values())

    assert _until(both_answered)
    assert sum(int(f["queued"]) for f in facts.values()) == 12  # type: ignore[call-overload]
    assert server.stop() == 0


def test_not_durable_redis_is_refused_unless_allowed(serve: Callable[..., Serve], tmp_path: Path) -> None:
    if not Path(REDIS_SERVER).exists():
        pytest.skip("redis-server is not installed")
    redis = RedisServer(tmp_path, appendfsync="everysec")
    redis.start()
    try:
        refused = serve("--port", "0", "--queue", redis.url, wait=False)
        assert refused.wait() == 1
        (line,) = refused.stderr.splitlines()
        assert line.startswith("mailwire serve: redis at 127.0.0.1:") and "appendfsync always" in line
        assert "--queue-allow-not-durable" in line
        allowed = serve("--port", "0", "--queue", redis.url, "--queue-allow-not-durable")
        assert "--queue-allow-not-durable" in allowed.stderr
        assert _send(allowed.port)[0] == 250
        assert allowed.stop() == 0
    finally:
        redis.stop()


@pytest.mark.parametrize("args, words", [
    (["--queue", "redis://127.0.0.1:6379"], "--queue: not a redis://HOST:PORT/STREAM address"),
    (["--queue", "http://127.0.0.1/s"], "--queue: not a redis://HOST:PORT/STREAM address"),
    (["--queue", "redis://127.0.0.1/s", "--maildir", "m"], "--queue and --maildir: give one"),
    (["--queue", "redis://127.0.0.1/s", "--sink"], "--queue and --sink: give one"),
    (["--queue-blobs", "b"], "--queue-blobs needs --queue"),
    (["--health", "127.0.0.1:0"], "--health needs --queue"),
    (["--queue", "redis://127.0.0.1/s", "--workers", "2", "--health", "127.0.0.1:0"], "needs a port"),
    (["--queue", "redis://127.0.0.1/s", "--queue-timeout", "0"], "argument --queue-timeout"),
])
def test_bad_options_one_line_exit_2(serve: Callable[..., Serve], args: list[str], words: str) -> None:
    server = serve(*args, wait=False)
    assert server.wait() == 2
    lines = server.stderr.splitlines()
    assert len(lines) == 1 or lines[0].startswith("usage:"), lines
    assert words in lines[-1]

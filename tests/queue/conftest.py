"""The queue's tests: a real redis-server for each test that asks for one
(``redis_server``; see ``tests/helpers/redis_server.py``)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_TESTS = str(Path(__file__).resolve().parents[1])
if _TESTS not in sys.path:  # helpers/ lives next to this directory
    sys.path.insert(0, _TESTS)

from helpers.redis_server import REDIS_SERVER, RedisServer  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "cluster: the whole queue as processes under load (end to end, faults); minutes of both "
        "cores, so dev/test.sh runs them on its first Python only")


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if not Path(REDIS_SERVER).exists():
        pytest.skip("redis-server is not installed (dev/bootstrap.sh installs it)")
    (tmp_path / "redis").mkdir()
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()

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

from helpers.redis_server import RedisServer, running_redis  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "cluster: the whole queue as processes under load (end to end, faults); minutes of both "
        "cores, so dev/test.sh runs them on its first Python only")


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path / "redis") as server:
        yield server

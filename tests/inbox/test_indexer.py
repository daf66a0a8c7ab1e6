"""The indexer: lazy while nobody looks, at once for a waiter, always before a read."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from mailwire.inbox.indexer import Indexer


class Recorder:
    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.called = threading.Event()

    def __call__(self, names: Sequence[str]) -> None:
        self.batches.append(list(names))
        self.called.set()


def test_a_burst_is_one_batch_and_a_flush_waits_for_it() -> None:
    seen = Recorder()
    indexer = Indexer(seen, lambda: False, idle=30, max_delay=30, backlog=1000)
    try:
        for i in range(50):
            indexer.submit(f"m{i}")
        assert not seen.called.wait(0.2)  # nobody reads: nothing yet
        assert indexer.flush(10)
        assert seen.batches == [[f"m{i}" for i in range(50)]]
        assert indexer.flush(0)  # nothing new: at once
    finally:
        indexer.close()


@pytest.mark.parametrize("settings", [
    {"idle": 0.05, "max_delay": 30, "backlog": 1000},  # deliveries paused
    {"idle": 30, "max_delay": 0.1, "backlog": 1000},  # the oldest waited long enough
    {"idle": 30, "max_delay": 30, "backlog": 3},  # the queue is long enough
])
def test_what_starts_a_batch_unasked(settings: dict[str, float]) -> None:
    seen = Recorder()
    indexer = Indexer(seen, lambda: False, **settings)  # type: ignore[arg-type]
    try:
        for i in range(3):
            indexer.submit(f"m{i}")
        assert seen.called.wait(10) and seen.batches[0][0] == "m0"
    finally:
        indexer.close()


def test_a_waiter_makes_it_eager() -> None:
    seen = Recorder()
    waiting = threading.Event()
    indexer = Indexer(seen, waiting.is_set, idle=30, max_delay=30, backlog=1000)
    try:
        waiting.set()
        indexer.wake()
        indexer.submit("m0")
        assert seen.called.wait(10) and seen.batches == [["m0"]]
    finally:
        indexer.close()


def test_a_failure_is_logged_and_the_queue_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    batches: list[list[str]] = []

    def index(names: Sequence[str]) -> None:
        batches.append(list(names))
        if len(batches) == 1:
            raise OSError("disk on fire")

    indexer = Indexer(index, lambda: False, idle=30, max_delay=30)
    try:
        indexer.submit("a")
        assert indexer.flush(10)  # done, though it failed: the next sync catches up
        indexer.submit("b")
        assert indexer.flush(10) and batches == [["a"], ["b"]]
    finally:
        indexer.close()
    assert "could not index 1 message" in caplog.text


def test_close_indexes_what_is_queued() -> None:
    seen = Recorder()
    indexer = Indexer(seen, lambda: False, idle=30, max_delay=30)
    indexer.submit("last")
    indexer.close()  # not waiting for the 30 s: closing is a reason to index now
    assert seen.batches == [["last"]]

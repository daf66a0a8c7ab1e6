"""One lazily re-armed timer for a connection's many short waits.

A busy connection waits for its peer thousands of times a second and times
out almost never. Making and cancelling a timer per wait (what
``asyncio.wait_for`` does, with a task or two besides) costs more than the wait
itself; instead each connection keeps one ``Deadline``: a wait only moves the
deadline, and the timer, when it fires early, re-arms itself for the deadline
as it now stands. Both the server's connections and the asyncio client use it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["Deadline"]


class Deadline:
    """Calls ``on_expire`` once the latest deadline set has passed."""

    # _when: when the timer fires (its when(), kept here: arm runs per wait).
    __slots__ = ("_on_expire", "_timer", "_when", "_deadline", "_loop", "_time")

    def __init__(self, on_expire: Callable[[], None]) -> None:
        self._on_expire = on_expire
        self._timer: asyncio.TimerHandle | None = None
        self._when = 0.0
        self._deadline = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._time: Callable[[], float] | None = None  # the loop's clock, looked up once

    def arm(self, timeout: float) -> None:
        """Expire ``timeout`` seconds from now (replacing any earlier deadline)."""
        now = self._time
        if now is None:
            loop = self._loop = asyncio.get_running_loop()
            now = self._time = loop.time
        self._deadline = deadline = now() + timeout
        timer = self._timer
        if timer is not None:
            if self._when <= deadline:
                return  # it fires first, and re-arms itself for the deadline then
            timer.cancel()
        self._schedule(deadline)

    def _schedule(self, when: float) -> None:
        assert self._loop is not None
        self._when = when
        self._timer = self._loop.call_at(when, self._fire)

    def extend(self, seconds: float, limit: float) -> None:
        """Move the deadline ``seconds`` later, but not beyond ``limit`` from
        now (nor earlier than it stands): credit earned by progress, as a
        server grants a client for the octets of a message it receives."""
        loop = self._loop
        if loop is None:
            return
        cap = loop.time() + limit
        deadline = self._deadline + seconds
        if deadline > cap:
            deadline = cap
        if deadline > self._deadline:
            self._deadline = deadline

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        self._timer = None
        assert self._loop is not None
        if self._loop.time() < self._deadline:
            self._schedule(self._deadline)
        else:
            self._on_expire()

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

    __slots__ = ("_on_expire", "_timer", "_deadline", "_loop")

    def __init__(self, on_expire: Callable[[], None]) -> None:
        self._on_expire = on_expire
        self._timer: asyncio.TimerHandle | None = None
        self._deadline = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None

    def arm(self, timeout: float) -> None:
        """Expire ``timeout`` seconds from now (replacing any earlier deadline)."""
        loop = self._loop or asyncio.get_running_loop()
        self._loop = loop
        self._deadline = deadline = loop.time() + timeout
        timer = self._timer
        if timer is not None and timer.when() > deadline:
            timer.cancel()
            timer = None
        if timer is None:
            self._timer = loop.call_at(deadline, self._fire)

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
            self._timer = self._loop.call_at(self._deadline, self._fire)
        else:
            self._on_expire()

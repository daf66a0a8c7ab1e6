"""The two waits every asyncio connection of ours has, and their protocol callbacks.

A connection's task waits for input (``_wake``, resolved by data_received)
and, when the peer stops reading, for the transport to drain
(``_writable``, managed by asyncio's pause_writing/resume_writing). The
server's connections and the asyncio client both mix this in rather than
each keeping its own copy of the callbacks.
"""

from __future__ import annotations

import asyncio

__all__ = ["FlowControl"]


class FlowControl:
    # Slots, so that a subclass with __slots__ (a server holds thousands of
    # connections) has no __dict__.
    __slots__ = ("_wake", "_writable")
    _wake: asyncio.Future[None] | None
    _writable: asyncio.Future[None] | None

    def pause_writing(self) -> None:
        self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    def _wakeup(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    def _release_waiters(self) -> None:
        """The connection is gone: nothing waited for will come."""
        self._wakeup()
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

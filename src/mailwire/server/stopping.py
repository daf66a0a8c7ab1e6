"""Stopping a server on a signal: the first one gracefully, a second one at once.

One process (``mailwire serve``) and each worker of several (``workers.py``)
stop the same way, so the rule lives here once. ``StopSignals`` installs
loop handlers for the signals it is given; ``wait()`` returns once the first
arrives (or ``trigger`` is called: a worker also stops when its supervisor
is gone), then ``stop(server, grace)`` runs ``SMTPServer.stop(grace)``:
messages in progress get ``grace`` seconds to end, then 421. Another signal
while that runs cancels it, and ``stop`` returns False: the caller exits
at once (status 1), as an operator who presses Ctrl-C twice expects.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Sequence

from .aio import SMTPServer

__all__ = ["StopSignals"]


class StopSignals:
    """The signals that stop a server, and what arrived (``received``: names)."""

    def __init__(self, signals: Sequence[int] = (signal.SIGINT, signal.SIGTERM)) -> None:
        """Install the handlers; call from the running event loop."""
        self.received: list[str] = []
        self._event = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in signals:
            try:
                loop.add_signal_handler(signum, self.trigger, signal.Signals(signum).name)
            except (NotImplementedError, RuntimeError):  # no add_signal_handler (Windows)
                signal.signal(signum, lambda n, _frame: loop.call_soon_threadsafe(
                    self.trigger, signal.Signals(n).name))

    def trigger(self, name: str) -> None:
        """As if a signal called ``name`` had arrived."""
        self.received.append(name)
        self._event.set()

    async def wait(self) -> str:
        """The name of the first signal, once one has arrived."""
        await self._event.wait()
        return self.received[0]

    async def stop(self, server: SMTPServer, grace: float) -> bool:
        """``server.stop(grace)``; False if another signal cut it short."""
        self._event.clear()
        stopping = asyncio.ensure_future(server.stop(grace))
        again = asyncio.ensure_future(self._event.wait())
        await asyncio.wait({stopping, again}, return_when=asyncio.FIRST_COMPLETED)
        again.cancel()
        if not stopping.done():  # a second signal: do not wait for anyone
            stopping.cancel()
            return False
        stopping.result()
        return True

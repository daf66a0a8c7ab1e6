"""Stopping an asyncio server's listeners without losing a connection in flight.

asyncio takes a connection in one round of the loop and attaches it to its
``Server`` in the next. ``Server.close()`` called in between makes that
attach fail (an ``AssertionError`` in ``Server._attach``, CPython issue
109564, open in every version we support), and the accepted socket stays
open, its client waiting, until the garbage collector happens to find it.
So: take the listeners out of the selector first (no new accept can run),
let the loop go round so the accepts already made attach to a server still
open, and only then close. The caller's protocol sees those connections
and answers them as it answers any that come while it stops.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

__all__ = ["stop_accepting", "ATTACH_ROUNDS"]

# Rounds of the loop from an accept to the protocol's connection_made: the
# accepting task's first step (it attaches the transport), then the
# transport's call_soon of connection_made.
ATTACH_ROUNDS = 3


async def stop_accepting(servers: Iterable[asyncio.AbstractServer | None]) -> None:
    """Stop reading the listeners of ``servers``, then wait ``ATTACH_ROUNDS``
    rounds; close the servers after. A loop that does not read listeners
    through its selector (uvloop) has nothing to remove, and does not have
    the race."""
    loop = asyncio.get_running_loop()
    for server in servers:
        for sock in getattr(server, "sockets", None) or ():
            with contextlib.suppress(NotImplementedError, ValueError, OSError):
                loop.remove_reader(sock.fileno())
    for _ in range(ATTACH_ROUNDS):
        await asyncio.sleep(0)

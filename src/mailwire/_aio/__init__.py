"""The asyncio plumbing both drivers share: the server's connections and the asyncio client.

Each piece is one mixin or helper, and none knows SMTP: ``reading`` reads
into one reused buffer (``BufferedReading``), ``flow`` holds the two waits a
connection's task has (input, and a peer that stopped reading), and
``deadline`` is the one lazily re-armed timer a connection's many short
waits share. The protocol lives in ``mailwire.protocol``; these only move
bytes and time, so they import nothing of mailwire (the layering test holds
them to that). Private: drivers import the modules by name.
"""

from __future__ import annotations

__all__: list[str] = []

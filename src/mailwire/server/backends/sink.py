"""``Sink``: accepts every message and drops it, counting; made for benchmarks.

Nothing here waits for anything, so nothing is awaited: every connection
shares one session object whose steps are plain functions, and the server
answers a whole transaction from its protocol callback without waking the
connection's task or allocating per connection.
"""

from __future__ import annotations

from ..envelope import Envelope, SessionInfo
from ..session import BaseSession, Session

__all__ = ["Sink"]


class _SinkSession(BaseSession):
    """Shared by every connection (so it keeps no SessionInfo). Every step
    is a plain function (MAIL, RCPT and RSET BaseSession's no-ops, ``data``
    only counts), so the server answers the whole transaction without
    waking the connection's task."""

    def __init__(self, sink: Sink) -> None:  # no super().__init__: no one session's info
        self._sink = sink

    def data(self, envelope: Envelope) -> None:
        sink = self._sink
        sink.messages += 1
        sink.bytes += len(envelope.content)


class Sink:
    """Accepts every message and drops it, counting ``messages`` and ``bytes``.

    Made for benchmarks: every connection shares one stateless session
    object, so a connection costs no allocation here. The counters are plain
    integers updated on the event loop; they are exact when one loop runs the
    server (as the asyncio server does).
    """

    def __init__(self) -> None:
        self.messages = 0
        self.bytes = 0
        self._session = _SinkSession(self)

    async def new_session(self, info: SessionInfo) -> Session:
        return self._session

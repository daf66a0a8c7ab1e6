"""A connection's time budget: a slot cannot be held for free.

Timeouts are deadlines, not idle timers. A command line must be complete
``server_idle_timeout`` after the server was ready for it, and a message's
content (DATA, or every BDAT chunk of one message: one content phase, one
deadline) starts with ``server_data_timeout`` and earns more only at
``min_data_rate`` octets a second (Postfix's per-request deadline), so a
trickle of bytes re-arms nothing. The deadline moves for progress only: a
command handled, the start of a message's content, octets of content.
Partial lines and junk bytes move nothing. A deadline passed is the
connection's to act on (a 421).
"""

from __future__ import annotations

from collections.abc import Callable

from .._aio.deadline import Deadline
from ..limits import Limits
from ..protocol.server import ServerConnection

__all__ = ["SessionClock"]


class SessionClock:
    """The deadline of one connection, moved as the session progresses.

    ``on_expire`` is called when it passes; ``late`` says it passed while
    nobody was waiting (the next wait times out unless progress came first).
    """

    # One per connection, thousands at once: no __dict__.
    __slots__ = ("limits", "late", "progressed", "content", "_deadline")

    def __init__(self, limits: Limits, on_expire: Callable[[], None]) -> None:
        self.limits = limits
        self.late = False
        self.progressed = True  # a whole command handled since the last wait
        self.content = False  # inside a message's content: its deadline runs
        self._deadline = Deadline(on_expire)

    def arm(self, timeout: float) -> None:
        """Expire ``timeout`` seconds from now."""
        self.late = False
        self._deadline.arm(timeout)

    def cancel(self) -> None:
        self._deadline.cancel()

    def before_wait(self, core: ServerConnection) -> None:
        """Before each wait for the client: a command handled since the
        last one gives the next line the idle timeout whole."""
        # Written out (no arm, no track): this runs before every wait.
        content = self.content
        if self.progressed:
            self.progressed = False
            if not content:
                self.late = False
                self._deadline.arm(self.limits.server_idle_timeout)
        if not content and core.in_message:
            self.track(core)  # the octets of a refused BDAT chunk, swallowed

    def track(self, core: ServerConnection) -> None:
        """After each event: has a message's content begun (354 to DATA, its
        first BDAT: the data timeout starts) or ended (whole, refused, or
        abandoned: commands again)?"""
        in_message = core.in_message
        if in_message is not self.content:
            self.content = in_message
            if in_message:
                self.arm(self.limits.server_data_timeout)

    def earn(self, octets: int) -> None:
        """Content read: Postfix's smtpd_min_data_rate credit, capped at the
        data timeout from now (min_data_rate 0: every read re-arms it)."""
        rate = self.limits.min_data_rate
        limit = self.limits.server_data_timeout
        self._deadline.extend(octets / rate if rate else limit, limit)

"""``wait_for``: the one way a test waits for mail, on any catcher.

``CaughtMail`` is what a test holds: ``messages()``, ``clear()`` and
``wait_for(to=, sender=, subject=, query=, timeout=)``, which returns the
newest message already caught that matches, else the first to arrive, as
a ``CaughtMessage``. When none does within ``timeout`` seconds it fails
with an AssertionError that lists what did arrive (sender, recipients,
subject of each), since "the mail went to the wrong address" or "the
subject changed" is the usual reason and the list shows it at once.

``ServerMail`` answers it for an in-process ``ServerThread``: it waits on
the server's ``Messages`` (a condition variable, so no polling) and
matches here (``Criteria``). ``InboxClient`` (``client.py``) answers it
for a running catcher over the HTTP API.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .criteria import Criteria
from .message import CaughtMessage

if TYPE_CHECKING:
    from ..server.envelope import Envelope
    from ..testing import Messages

__all__ = ["CaughtMail", "ServerMail", "timed_out", "LISTED"]

LISTED = 20  # messages a failure lists, the newest


def timed_out(criteria: Criteria, timeout: float, arrived: Sequence[CaughtMessage | str], total: int) -> AssertionError:
    """The failure of a wait: what was waited for, and what did arrive
    (the newest ``LISTED`` of ``total``; each a message or its line)."""
    head = f"no message {criteria} arrived within {timeout:g} s"
    if not total:
        return AssertionError(f"{head}; no message arrived at all")
    lines = [m if isinstance(m, str) else m.describe() for m in arrived[-LISTED:]]
    more = f", the newest {len(lines)}" if total > len(lines) else ""
    listed = "\n".join(f"  {line}" for line in lines)
    return AssertionError(f"{head}; {total} message(s) did{more}:\n{listed}")


class CaughtMail(ABC):
    """The mail a catcher caught, and the wait for one message of it."""

    @abstractmethod
    def messages(self) -> list[CaughtMessage]:
        """Every message caught (in scope), oldest first."""

    @abstractmethod
    def clear(self) -> None:
        """Forget (delete) every message caught (in scope)."""

    @abstractmethod
    def wait_for(self, *, to: str | None = None, sender: str | None = None, subject: str | None = None,
                 query: str | None = None, timeout: float = 10.0) -> CaughtMessage:
        """The newest message caught that matches, else the first to arrive
        within ``timeout`` seconds; AssertionError listing what did arrive."""


class ServerMail(CaughtMail):
    """The mail of an in-process server (``ServerThread.mail``): its
    ``Messages``, each read as a ``CaughtMessage`` once (kept as long as
    the server keeps the envelope)."""

    def __init__(self, messages: Messages) -> None:
        self._messages = messages
        self._read: dict[int, tuple[Envelope, CaughtMessage]] = {}

    def messages(self) -> list[CaughtMessage]:
        envelopes = self._messages.snapshot()
        read = self._read
        self._read = {id(e): read.get(id(e)) or (e, CaughtMessage.from_envelope(e)) for e in envelopes}
        return [self._read[id(e)][1] for e in envelopes]

    def clear(self) -> None:
        self._messages.clear()
        self._read = {}

    def wait_for(self, *, to: str | None = None, sender: str | None = None, subject: str | None = None,
                 query: str | None = None, timeout: float = 10.0) -> CaughtMessage:
        criteria = Criteria(to, sender, subject, query)
        parsed = criteria.local_query()
        deadline = time.monotonic() + timeout
        caught = self.messages()
        for message in reversed(caught):
            if criteria.matches(message, parsed):
                return message
        while True:
            try:
                self._messages.wait_for(len(caught) + 1, max(deadline - time.monotonic(), 0.0))
            except TimeoutError:
                caught = self.messages()
                raise timed_out(criteria, timeout, caught, len(caught)) from None
            checked, caught = len(caught), self.messages()
            for message in caught[checked:]:
                if criteria.matches(message, parsed):
                    return message

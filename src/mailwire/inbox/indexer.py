"""``Indexer``: the catcher's messages indexed in batches, in a thread of its own, when it pays.

Indexing a message costs about as much CPU as receiving and storing it
(reading it back, parsing its headers, an SQLite transaction): done for
each message before its 250, it halved the catcher's SMTP rate. So the
catcher only queues each stored message's name (``submit``: no I/O, no
thread hop) and answers 250 once the file is in ``new/``; this thread
reads and indexes the queue in batches, one transaction each, when one of
these holds:

* someone is waiting for mail (``Inbox.wait``, ``Inbox.arrivals``): at once;
* a reader needs the index (``flush``: every ``Inbox`` read does it), so a
  list made after a client heard 250 shows its message;
* deliveries paused for ``idle`` seconds, or the oldest queued message has
  waited ``max_delay`` seconds (None: no such limit), or ``backlog``
  messages are queued: so a burst is indexed in large batches after (or
  between) its messages, and another process reading the shared index
  sees a message within about ``max_delay`` seconds. A server that is the
  only reader of its index (one process) can do without ``max_delay``:
  its reads flush the queue, and a long stream of mail is then indexed
  only when it pauses, when someone reads, or every ``backlog`` messages.

Nothing is lost if this fails or the process dies: the message is in the
Maildir, and ``Index.sync`` (made when an inbox opens) indexes what the
index lacks.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

__all__ = ["Indexer"]

log = logging.getLogger(__name__)


class Indexer:
    """Calls ``index(names)`` in a daemon thread for the names submitted,
    in batches (see the module doc); ``eager()`` says whether someone waits."""

    def __init__(
        self, index: Callable[[Sequence[str]], None], eager: Callable[[], bool], *, idle: float = 0.25,
        max_delay: float | None = 5.0, backlog: int = 5000,
    ) -> None:
        self._index = index
        self._eager = eager
        self.idle = idle
        self.max_delay = max_delay
        self.backlog = backlog
        self._cond = threading.Condition()
        self._queue: list[str] = []
        self._first = 0.0  # when the oldest queued name came
        self._last = 0.0  # when the newest did
        self._submitted = 0  # names ever submitted
        self._done = 0  # of them, indexed (or given up on)
        self._wanted = 0  # a flush waits for _done to reach this
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="mailwire-indexer", daemon=True)
        self._thread.start()

    def submit(self, name: str) -> None:
        """Queue a stored message's name; returns at once.

        The thread is woken only when that changes what it waits for: the
        first name of a batch (it slept with nothing queued), a full
        backlog, or someone waiting for mail. Otherwise it already sleeps
        until the batch's deadline and reads the newer ``_last`` when it
        wakes; waking it per message cost a thread switch each.
        """
        with self._cond:
            now = time.monotonic()
            first = not self._queue
            if first:
                self._first = now
            self._last = now
            self._queue.append(name)
            self._submitted += 1
            if first or len(self._queue) >= self.backlog or self._eager():
                self._cond.notify_all()

    def wake(self) -> None:
        """Someone started waiting for mail: index what is queued now."""
        with self._cond:
            self._cond.notify_all()

    def flush(self, timeout: float | None = 60.0) -> bool:
        """Wait until every name submitted before this call is indexed;
        whether it was within ``timeout`` seconds."""
        with self._cond:
            target = self._submitted
            if self._done >= target:
                return True
            self._wanted = max(self._wanted, target)
            self._cond.notify_all()
            return self._cond.wait_for(lambda: self._done >= target or self._closed, timeout) and \
                self._done >= target

    def close(self, timeout: float = 10.0) -> None:
        """Index what is queued, then stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout)

    def _due(self) -> float | None:
        """None if the queue should be indexed now, else how long to wait."""
        if not self._queue:
            return 60.0
        if self._closed or self._wanted > self._done or len(self._queue) >= self.backlog or self._eager():
            return None
        now = time.monotonic()
        wait = self._last + self.idle - now
        if self.max_delay is not None:
            wait = min(wait, self._first + self.max_delay - now)
        return None if wait <= 0 else wait

    def _run(self) -> None:
        while True:
            with self._cond:
                while (wait := self._due()) is not None:
                    if self._closed and not self._queue:
                        return
                    self._cond.wait(wait)
                batch, self._queue = self._queue, []
            try:
                self._index(batch)
            except Exception:
                log.exception("could not index %d message(s) (kept in the Maildir; indexed at the next sync)",
                              len(batch))
            with self._cond:
                self._done += len(batch)
                self._cond.notify_all()

"""``mailwire serve --max-messages N --max-age DURATION``: a catcher that never fills the disk.

Retention is the inbox's (``Inbox.max_messages``/``max_age``: the oldest
messages go first, files and index rows together); this module turns the
options on for the Maildir store. With the web inbox running, its
``Inbox`` is the one; without it (``--no-web``, or the extra missing) the
store becomes a ``Catcher`` over an ``Inbox`` of its own, so that what
arrives is indexed and can be pruned oldest first without reading every
file. It is applied as messages are indexed (on arrival, in batches), once
at start (a store that already holds too much), and every ``interval``
seconds by a companion of the server (``Retention``), so that ``--max-age``
also empties an idle catcher.

A DURATION is a number and a unit: ``90s``, ``30m``, ``2h``, ``7d``,
``1w``. Retention needs the Maildir store and ``--workers 1`` (the
workers store without an index); a value that does not parse, or either
conflict, is a usage error in one line.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re

from ..inbox import Catcher, Inbox
from ..server.backends import Maildir
from .options import UsageError
from .serve_run import Plan, RuntimeFailure

__all__ = ["add_options", "attach", "duration", "Retention"]

log = logging.getLogger("mailwire.serve")

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)([smhdw])")
LONGEST_INTERVAL = 60.0  # seconds between two prunes at most
SHORTEST_INTERVAL = 1.0


def duration(text: str) -> float:
    """``30m``, ``2h``, ``7d`` ... in seconds (argparse's type)."""
    found = _DURATION.fullmatch(text.strip().lower())
    if found is None or float(found[1]) <= 0:
        raise argparse.ArgumentTypeError(f"expected a duration such as 90s, 30m, 2h or 7d, not {text!r}")
    return float(found[1]) * _UNITS[found[2]]


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, not {text!r}")
    return int(text)


def add_options(serve: argparse.ArgumentParser) -> None:
    keep = serve.add_argument_group("retention (the Maildir store; the oldest go first)")
    keep.add_argument("--max-messages", type=_positive, metavar="N", help="keep at most N messages")
    keep.add_argument("--max-age", type=duration, metavar="DURATION",
                      help="delete messages older than this: 90s, 30m, 2h, 7d, 1w")


def _words(seconds: float) -> str:
    for unit, size in sorted(_UNITS.items(), key=lambda item: -item[1]):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


class Retention:
    """A companion of the server (``serve_run.Companion``): prunes ``inbox``
    at start and every ``interval`` seconds; closes it at stop if ``owned``."""

    def __init__(self, inbox: Inbox, interval: float, *, owned: bool) -> None:
        self.inbox = inbox
        self.interval = interval
        self.owned = owned
        self._task: asyncio.Task[None] | None = None

    @property
    def where(self) -> str:
        return self.inbox.path

    async def start(self) -> str:
        await self._prune()
        self._task = asyncio.create_task(self._every())
        kept = []
        if self.inbox.max_messages is not None:
            kept.append(f"at most {self.inbox.max_messages} messages")
        if self.inbox.max_age is not None:
            kept.append(f"none older than {_words(self.inbox.max_age)}")
        return "keeping " + " and ".join(kept)

    async def _prune(self) -> None:
        try:
            gone = await asyncio.to_thread(self.inbox.prune)
        except Exception:  # the next round tries again; the server goes on
            log.exception("pruning %s failed", self.inbox.path)
            return
        if gone:
            log.info("retention: %d message(s) deleted from %s", gone, self.inbox.path)

    async def _every(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self._prune()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self.owned:
            self.inbox.close()


def attach(args: argparse.Namespace, plan: Plan) -> None:
    """Apply ``--max-messages``/``--max-age`` to ``plan``'s store (see above)."""
    if args.max_messages is None and args.max_age is None:
        return
    if not isinstance(plan.backend, Maildir):
        raise UsageError("--max-messages and --max-age prune the Maildir store: not with --print, --sink or --relay")
    if plan.workers > 1:
        raise UsageError("--max-messages and --max-age need --workers 1")
    backend = plan.backend
    owned = not isinstance(backend, Catcher)
    if isinstance(backend, Catcher):
        inbox = backend.inbox
    else:
        try:
            inbox = Inbox(backend.path)
        except Exception as err:  # OSError, sqlite3.Error: the index cannot be made
            raise RuntimeFailure(f"cannot open the index in {backend.path}: {err}") from None
        plan.backend = Catcher(inbox)
    inbox.max_messages = args.max_messages
    inbox.max_age = args.max_age
    interval = LONGEST_INTERVAL if args.max_age is None else args.max_age / 10
    interval = min(max(interval, SHORTEST_INTERVAL), LONGEST_INTERVAL)
    # First: it stops before the web inbox, which closes the inbox it prunes.
    plan.companions = (Retention(inbox, interval, owned=owned), *plan.companions)

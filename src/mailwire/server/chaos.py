"""Fault injection ("chaos"): the failures a server is told to make, and when.

Code that sends mail retries, and retry logic is only tested if the server
fails when asked to: "refuse this recipient with 451 twice, then accept
it". ``Chaos`` holds that plan, a list of ``Fault`` rules, and the counters
that make it deterministic; it is a plain object with no I/O, consulted by
the server where it asks its backend (``policy.py`` for the greeting, MAIL,
RCPT and the message, ``auth.py`` for AUTH): a fault that fires answers in
place of the backend, which never hears of the command. ``ServerConfig``'s
``chaos`` setting holds one; the CLI (``--chaos``), the web API
(``/api/v1/chaos``, Mailpit's shape: ``chaos_triggers.py``) and the pytest
fixture ``smtp_chaos`` all change the same object while the server runs.

A fault names a stage (``connect``, ``mail``, ``rcpt``, ``data``,
``auth``), a reply (a 4xx or 5xx code; an RFC 3463 enhanced code and a
text, by default ``X.3.0`` and "injected failure (chaos)"), optionally an
address pattern (``match``, shell-style, case-insensitive: the sender for
MAIL and the message, each recipient for RCPT, and for the message any
recipient too; the client's IP address for the greeting; the user for
AUTH), and when it fires among the attempts it matches: ``times=N`` fires
the first N then never again; ``probability=p`` fires each with chance p,
drawn from a ``random.Random`` seeded with ``seed`` (the same seed, the
same attempts in the same order: the same failures); both: with chance p,
until it fired N times; neither: always. Faults are tried in order and the
first that fires answers. A 421 closes the connection after it (RFC 5321
3.8), at any stage; a refused greeting ends the connection whatever its code.

Counters and draws happen under a lock: one ``Chaos`` serves every
connection of a server, and the web API changes it from another thread.
``fired`` counts what each fault did, for tests to check.
"""

from __future__ import annotations

import fnmatch
import random
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ..reply import Reply

__all__ = ["Chaos", "Fault", "STAGES", "DEFAULT_TEXT"]

STAGES = ("connect", "mail", "rcpt", "data", "auth")
DEFAULT_TEXT = "injected failure (chaos)"


@dataclass(frozen=True)
class Fault:
    """One rule: at ``stage``, answer ``code`` (see the module doc)."""

    stage: str
    code: int
    times: int | None = None
    probability: float | None = None
    match: str | None = None
    text: str = DEFAULT_TEXT
    enhanced: str | None = None
    reply: Reply = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"unknown stage {self.stage!r}: one of {', '.join(STAGES)}")
        if isinstance(self.code, bool) or not isinstance(self.code, int) or not 400 <= self.code <= 599:
            raise ValueError(f"a failure's reply code is 400 to 599, not {self.code!r}")
        if self.times is not None and (isinstance(self.times, bool) or not isinstance(self.times, int)
                                       or self.times < 1):
            raise ValueError(f"times is a whole number of at least 1, not {self.times!r}")
        if self.probability is not None and not (
                isinstance(self.probability, (int, float)) and not isinstance(self.probability, bool)
                and 0.0 <= self.probability <= 1.0):
            raise ValueError(f"probability is 0 to 1, not {self.probability!r}")
        if self.match is not None and not self.match:
            raise ValueError("match is a non-empty pattern such as *@flaky.test")
        if "\r" in self.text or "\n" in self.text:
            raise ValueError("the reply text is one line")
        klass = self.code // 100
        enhanced = self.enhanced or f"{klass}.{7 if self.stage == 'auth' else 3}.0"
        object.__setattr__(self, "reply", Reply.of(self.code, enhanced, self.text))  # ValueError if bad

    def matches(self, subjects: Sequence[str]) -> bool:
        if self.match is None:
            return True
        pattern = self.match.lower()
        return any(fnmatch.fnmatchcase(s.lower(), pattern) for s in subjects)


class Chaos:
    """The faults a server injects, and their counters (see the module doc).

    ``fail(stage, code, ...)`` adds one; ``replace(faults, seed=...)`` sets
    them all afresh (counters and random draws start over); ``clear()``
    drops them. ``refusal(stage, *subjects)`` is the server's question.
    """

    def __init__(self, faults: Iterable[Fault] = (), *, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._faults: tuple[Fault, ...]
        self._fired: list[int]  # per fault, under the lock
        self._stages: frozenset[str]  # those with a fault: the others answer without the lock
        self.seed: int | None
        self._random: random.Random
        self.replace(faults, seed=seed)

    @property
    def faults(self) -> tuple[Fault, ...]:
        return self._faults

    @property
    def fired(self) -> tuple[int, ...]:
        """How many times each fault fired, in the order of ``faults``."""
        with self._lock:
            return tuple(self._fired)

    def fail(self, stage: str, code: int, *, times: int | None = None, probability: float | None = None,
             match: str | None = None, text: str = DEFAULT_TEXT, enhanced: str | None = None) -> Fault:
        """Add a fault (after those there are); ValueError if it makes no sense."""
        fault = Fault(stage, code, times, probability, match, text, enhanced)
        with self._lock:
            self._set((*self._faults, fault), [*self._fired, 0])
        return fault

    def replace(self, faults: Iterable[Fault], *, seed: int | None = None) -> None:
        """Every fault afresh, counters at zero, the random draws restarted from ``seed``."""
        faults = tuple(faults)
        with self._lock:
            self.seed = seed
            self._random = random.Random(seed)
            self._set(faults, [0] * len(faults))

    def clear(self) -> None:
        self.replace((), seed=self.seed)

    def _set(self, faults: tuple[Fault, ...], fired: list[int]) -> None:
        self._faults = faults
        self._fired = fired
        self._stages = frozenset(f.stage for f in faults)

    def refusal(self, stage: str, *subjects: str) -> Reply | None:
        """The reply a fault answers at ``stage`` for these subjects (see the
        module doc), counted; None: ask the backend as usual."""
        if stage not in self._stages:  # the usual case, without the lock
            return None
        with self._lock:
            for number, fault in enumerate(self._faults):
                if fault.stage != stage or not fault.matches(subjects):
                    continue
                if fault.times is not None and self._fired[number] >= fault.times:
                    continue
                if fault.probability is not None and self._random.random() >= fault.probability:
                    continue
                self._fired[number] += 1
                return fault.reply
        return None

    def __repr__(self) -> str:
        return f"Chaos({list(self._faults)!r}, seed={self.seed!r})"

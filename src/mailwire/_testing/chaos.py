"""``RemoteChaos``: set the failures a running ``mailwire serve`` injects, over its API.

A test in another process than the catcher (a ``mailwire serve`` started
by the CI, a container) makes it fail on purpose as a test with the
in-process server does with the ``smtp_chaos`` fixture, with the same
call::

    with RemoteChaos("http://127.0.0.1:8026") as chaos:
        chaos.fail("rcpt", 451, times=2, match="*@flaky.test")
        ...  # the code under test retries
    # leaving the block turns every failure off

It speaks ``GET/PUT /api/v1/chaos`` (``server/chaos_triggers.py`` has the
body) through an ``InboxClient`` (its URL, auth and errors: a refusal by
the API is an ``InboxError`` with its status and message), so a test needs
nothing installed for it; ``InboxClient.chaos`` is the same for a client
in hand. ``fail`` adds to what the server has (a PUT replaces the whole
set, so it reads it first; every counter restarts); ``clear`` turns all
off.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from ..server.chaos import DEFAULT_TEXT, Fault
from ..server.chaos_triggers import KEYS, trigger
from .client import InboxClient

__all__ = ["RemoteChaos"]

PATH = "/api/v1/chaos"


class RemoteChaos:
    """The chaos of the ``mailwire serve`` (or Mailpit, for its own three
    triggers) whose web API is at ``url`` (or that ``InboxClient`` asks);
    ``auth``: its ``--web-auth``."""

    def __init__(self, url: str | InboxClient, *, auth: tuple[str, str] | None = None,
                 timeout: float = 10.0) -> None:
        self.client = url if isinstance(url, InboxClient) else InboxClient(url, auth=auth, timeout=timeout)

    @property
    def url(self) -> str:
        return self.client.url + PATH

    def triggers(self) -> dict[str, Any]:
        """What the server injects now, as ``GET /api/v1/chaos`` answers."""
        answer: dict[str, Any] = self.client._json(PATH)
        return answer

    def set(self, triggers: dict[str, Any]) -> dict[str, Any]:
        """Replace every trigger (``PUT /api/v1/chaos``); what the server answers."""
        answer: dict[str, Any] = self.client._json(PATH, method="PUT", body=triggers)
        return answer

    def fail(self, stage: str, code: int, *, times: int | None = None, probability: float | None = None,
             match: str | None = None, text: str = DEFAULT_TEXT, enhanced: str | None = None,
             seed: int | None = None) -> dict[str, Any]:
        """Add a failure (``Chaos.fail``'s arguments; ValueError if the
        server refuses it), keeping the ones there are; ``seed`` restarts
        the random draws from it."""
        fault = Fault(stage, code, times, probability, match, text, enhanced)  # checked here first
        current = self.triggers()
        body: dict[str, Any] = {"Seed": current.get("Seed") if seed is None else seed}
        for key in KEYS.values():
            value = current.get(key)
            kept = [t for t in (value if isinstance(value, list) else [value]) if t and t.get("Probability")]
            body[key] = kept
        body[KEYS[fault.stage]].append(trigger(fault))
        return self.set(body)

    def clear(self) -> None:
        """No failures any more."""
        self.set({})

    def __enter__(self) -> RemoteChaos:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.clear()

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
body) with the standard library's ``urllib``, so a test needs nothing
installed for it. ``fail`` adds to what the server has (a PUT replaces the
whole set, so it reads it first; every counter restarts); ``clear`` turns
all off. A refusal by the API is ``ValueError`` with its message.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from types import TracebackType
from typing import Any

from .server.chaos import DEFAULT_TEXT, Fault
from .server.chaos_triggers import KEYS, trigger

__all__ = ["RemoteChaos"]


class RemoteChaos:
    """The chaos of the ``mailwire serve`` (or Mailpit, for its own three
    triggers) whose web API is at ``url``; ``auth``: its ``--web-auth``."""

    def __init__(self, url: str, *, auth: tuple[str, str] | None = None, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/") + "/api/v1/chaos"
        self.timeout = timeout
        self._headers = {"Content-Type": "application/json"}
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            self._headers["Authorization"] = f"Basic {token}"

    def _call(self, method: str, body: Any = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url, data=data, method=method, headers=self._headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                answer: dict[str, Any] = json.loads(response.read())
                return answer
        except urllib.error.HTTPError as err:
            with err:
                text = err.read().decode("utf-8", "replace")
            try:
                text = json.loads(text)["Error"]
            except (ValueError, KeyError, TypeError):
                pass
            raise ValueError(f"{method} {self.url}: {err.code} {text}") from None

    def triggers(self) -> dict[str, Any]:
        """What the server injects now, as ``GET /api/v1/chaos`` answers."""
        return self._call("GET")

    def set(self, triggers: dict[str, Any]) -> dict[str, Any]:
        """Replace every trigger (``PUT /api/v1/chaos``); what the server answers."""
        return self._call("PUT", triggers)

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

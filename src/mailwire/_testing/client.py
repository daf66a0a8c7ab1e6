"""``InboxClient``: the test helpers for a catcher running in another process.

A test run may send mail through an application in another process (a
web server under test, a container) to a catcher that runs on its own:
``mailwire serve`` or Mailpit. ``InboxClient(url)`` asks that catcher over
Mailpit's API v1, which both speak, and gives the same ``wait_for``,
``messages`` and ``clear`` as ``ServerMail`` does in-process, and the same
``CaughtMessage`` (read from the raw source the API serves, so text, links
and codes are found by the same code in both cases).

Waiting: ``mailwire serve`` answers ``GET /api/v1/wait`` as soon as a
message matches (one request, no polling); Mailpit has no such route and
answers it 404, so the client then polls ``/api/v1/search`` (every
``poll`` seconds) and remembers not to ask again. ``scoped(to)`` gives a
client that sees only the mail to one address: a unique address per test
keeps tests that share a catcher (``pytest -n``) apart.

Only the standard library (``urllib``): the test helpers add no
dependency. Basic auth (``--web-auth``) from ``auth=`` or the URL's
``user:password@``. Every failure is an ``InboxError`` saying what was
asked and why it failed: the server unreachable, or its status and the
message of its JSON error.
"""

from __future__ import annotations

import base64
import copy
import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import TYPE_CHECKING, Any

from .criteria import Criteria
from .message import CaughtMessage
from .waiting import LISTED, CaughtMail, timed_out

if TYPE_CHECKING:
    from .chaos import RemoteChaos

__all__ = ["InboxClient", "InboxError"]

PAGE = 500  # messages asked for at a time when listing them all


class InboxError(Exception):
    """A request to a catcher's API failed; ``status`` is the HTTP status,
    None when the server could not be reached or did not answer."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _error_text(body: bytes) -> str:
    """The message of a JSON error (mailwire and Mailpit: ``{"Error": ...}``), else the body."""
    text = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text[:300]
    return str(data.get("Error", text))[:300] if isinstance(data, dict) else text[:300]


def _addresses(summary: dict[str, Any], *fields: str) -> list[str]:
    return [a["Address"] for f in fields for a in (summary.get(f) or []) if isinstance(a, dict) and a.get("Address")]


def _line(summary: dict[str, Any]) -> str:
    """A summary as a failure lists it (``CaughtMessage.describe``'s shape)."""
    sender = (summary.get("From") or {}).get("Address") or "<>"
    to = ", ".join(_addresses(summary, "To", "Cc", "Bcc")) or "(nobody)"
    return f"from {sender} to {to}: {summary.get('Subject', '')!r}"


class InboxClient(CaughtMail):
    """A running ``mailwire serve`` (web inbox on) or Mailpit, at ``url``
    (``http://127.0.0.1:8026``). ``auth``: (user, password); ``timeout``:
    seconds a request may take (a wait: its own timeout plus this);
    ``to``: see only the mail to this address (``scoped``); ``poll``:
    seconds between searches where the server cannot wait."""

    wait_round = 300.0  # seconds one /api/v1/wait may ask for (mailwire's most); a longer wait asks again

    def __init__(self, url: str, *, auth: tuple[str, str] | None = None, timeout: float = 30.0,
                 to: str | None = None, poll: float = 0.1) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        if auth is None and parts.username is not None:
            auth = (urllib.parse.unquote(parts.username), urllib.parse.unquote(parts.password or ""))
        host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        netloc = host if parts.port is None else f"{host}:{parts.port}"
        self.url = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
        self.auth = auth
        self.timeout = timeout
        self.to = to
        self.poll = poll
        self.waits: bool | None = None  # whether the server has /api/v1/wait; None: not asked yet

    def scoped(self, to: str | None) -> InboxClient:
        """This client, seeing only the mail to ``to`` (None: all)."""
        scoped = copy.copy(self)  # its settings, and what it learnt of the server
        scoped.to = to
        return scoped

    # -- HTTP --------------------------------------------------------------------------------

    def _request(self, method: str, path: str, params: dict[str, str] | None = None, *,
                 timeout: float | None = None, ok: tuple[int, ...] = (), body: Any = None) -> tuple[int, bytes]:
        """(status, body) of a request (``body``: sent as JSON); InboxError
        unless 2xx or in ``ok``."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path + query, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.auth is not None:
            token = base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode("ascii")
            request.add_header("Authorization", f"Basic {token}")
        what = f"{method} {path}{query}"
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as err:
            with err:
                answer = err.read()
            if err.code in ok:
                return err.code, answer
            raise InboxError(f"{what} at {self.url}: {err.code} {_error_text(answer)}", err.code) from None
        except urllib.error.URLError as err:
            raise InboxError(f"cannot reach the inbox at {self.url} ({what}): {err.reason}") from None
        except (socket.timeout, TimeoutError, ConnectionError) as err:
            raise InboxError(f"the inbox at {self.url} did not answer {what}: {err}") from None

    def _json(self, path: str, params: dict[str, str] | None = None, *, method: str = "GET",
              body: Any = None) -> Any:
        answer = self._request(method, path, params, body=body)[1]
        try:
            return json.loads(answer)
        except ValueError:
            raise InboxError(f"{method} {path} at {self.url} answered no JSON: {answer[:100]!r}") from None

    @property
    def chaos(self) -> RemoteChaos:
        """The failures this ``mailwire serve`` injects, set over its API."""
        from .chaos import RemoteChaos

        return RemoteChaos(self)

    # -- reading -----------------------------------------------------------------------------

    def _query(self, query: str | None) -> str:
        return Criteria(to=self.to, query=query).as_query()

    def info(self) -> dict[str, Any]:
        """The server's ``/api/v1/info`` (Mailpit's AppInformation)."""
        found: dict[str, Any] = self._json("/api/v1/info")
        return found

    def summaries(self, query: str | None = None, *, start: int = 0, limit: int = 50) -> dict[str, Any]:
        """A page of the list (newest first; Mailpit's MessagesSummary, the
        messages as MessageSummary), of what ``query`` matches if given."""
        text = self._query(query)
        page = {"start": str(start), "limit": str(limit)}
        found: dict[str, Any] = (self._json("/api/v1/search", {"query": text, **page}) if text
                                 else self._json("/api/v1/messages", page))
        return found

    def raw(self, id: str) -> bytes:
        """The message's source as the server stored it."""
        return self._request("GET", f"/api/v1/message/{urllib.parse.quote(id, safe='')}/raw")[1]

    def _caught(self, summary: dict[str, Any]) -> CaughtMessage:
        return CaughtMessage(self.raw(summary["ID"]), recipients=_addresses(summary, "To", "Cc", "Bcc"),
                             id=summary["ID"])

    def message(self, id: str = "latest") -> CaughtMessage:
        """One message by its ID (``latest``: the newest)."""
        return self._caught(self._json(f"/api/v1/message/{urllib.parse.quote(id, safe='')}"))

    def messages(self, query: str | None = None) -> list[CaughtMessage]:
        """Every message (that ``query`` matches), oldest first."""
        summaries: list[dict[str, Any]] = []
        while True:
            page = self.summaries(query, start=len(summaries), limit=PAGE)
            summaries += page["messages"]
            if not page["messages"] or len(summaries) >= page["messages_count"]:
                return [self._caught(s) for s in reversed(summaries)]

    def clear(self) -> None:
        """Delete every message (in scope: the mail to ``to``)."""
        if self.to is None:
            self._request("DELETE", "/api/v1/messages")
        else:
            self._request("DELETE", "/api/v1/search", {"query": self._query(None)})

    # -- waiting -----------------------------------------------------------------------------

    def wait_for(self, *, to: str | None = None, sender: str | None = None, subject: str | None = None,
                 query: str | None = None, timeout: float = 10.0) -> CaughtMessage:
        """See ``CaughtMail.wait_for``; ``to`` defaults to the scope's."""
        criteria = Criteria(to if to is not None else self.to, sender, subject, query)
        text = criteria.as_query()
        deadline = time.monotonic() + timeout
        while self.waits is not False:
            wait = min(max(deadline - time.monotonic(), 0.0), self.wait_round)
            status, body = self._request("GET", "/api/v1/wait", {"query": text, "timeout": f"{wait:g}"},
                                         timeout=wait + self.timeout, ok=(404, 408))
            if status == 404:
                self.waits = False  # Mailpit: no such route
                break
            self.waits = True
            if status == 200:
                return self._caught(json.loads(body))
            if time.monotonic() >= deadline:
                raise self._timed_out(criteria, timeout)
        while True:
            found = self.scoped(None).summaries(text or None, limit=1)
            if found["messages"]:
                return self._caught(found["messages"][0])
            if time.monotonic() >= deadline:
                raise self._timed_out(criteria, timeout)
            time.sleep(min(self.poll, max(deadline - time.monotonic(), 0.0)))

    def _timed_out(self, criteria: Criteria, timeout: float) -> AssertionError:
        """The failure, listing the newest messages of the whole inbox (the
        wanted one may have gone to another address)."""
        page = self.scoped(None).summaries(limit=LISTED)
        lines = [_line(s) for s in reversed(page["messages"])]
        return timed_out(criteria, timeout, lines, int(page.get("total", len(lines))))

"""The web application: Mailpit's API v1 routes over an ``Inbox``, with errors and auth.

``make_app(inbox)`` builds the aiohttp application: the route tables of
``messages.py``, ``message.py``, ``view.py``, ``watch.py``, ``tags.py``,
``chaos.py`` (given the SMTP server's ``Chaos``), ``release.py`` (with
``relay``, the server released messages go to) and ``send.py`` (storing
through ``catcher``, the SMTP side's), and here
``/api/v1/info`` and ``/api/v1/webui``; the page itself (``page.py``) at
``/``. Middlewares wrap every route,
outermost first:

* on a loopback listener, ``_local_only``: a request whose ``Host`` is not
  a loopback name is refused (403), so a web page elsewhere cannot read
  the inbox through DNS rebinding;
* ``--web-auth``'s basic auth (``basic_auth``), comparing the whole
  ``user:password`` in constant time;
* errors as JSON ``{"Error": "..."}`` with their status: a query that does
  not parse (``QueryError``) or a bad parameter 400, an unknown message or
  part 404, and aiohttp's own (an unknown route 404, a method 405, a body
  over ``MAX_BODY`` 413) in the same shape.

``Stats`` counts what Mailpit's ``info`` reports of the SMTP side (its
``delivered`` is the server's ``on_delivered`` hook).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import importlib.metadata
import os
import resource
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from ..inbox import Catcher, Inbox, MessageNotFound, PartNotFound, Query, QueryError, Term
from ..server.envelope import Envelope
from ..inbox.release import ReleaseRelay
from ..server.chaos import Chaos
from . import chaos as chaos_routes
from . import message, messages, params, release, send, view, watch
from . import tags as tag_routes
from .page import add_page
from .hosts import is_loopback
from .messages import INBOX

__all__ = ["make_app", "Stats", "STATS"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Stats:
    """What the SMTP side did since start, for ``info``'s RuntimeStats."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.accepted = 0
        self.accepted_size = 0

    def delivered(self, envelope: Envelope, recipients: Sequence[str]) -> None:
        self.accepted += 1
        self.accepted_size += envelope.size


STATS = web.AppKey("stats", Stats)


def _basic_auth(expected: bytes) -> Middleware:
    @web.middleware
    async def basic_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        try:
            given = base64.b64decode(value.strip(), validate=True) if scheme.lower() == "basic" else b""
        except (binascii.Error, ValueError):
            given = b""
        if not hmac.compare_digest(given, expected):
            response = params.error_response(401, "authentication required")
            response.headers["WWW-Authenticate"] = 'Basic realm="mailwire", charset="UTF-8"'
            return response
        return await handler(request)

    return basic_auth


@web.middleware
async def _local_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    """On a loopback listener, a request must name a loopback host: one
    under another name is a page elsewhere reaching in (DNS rebinding)."""
    if not is_loopback(request.url.host or ""):
        return params.error_response(403, f"this inbox answers requests for localhost only, not {request.host!r}")
    return await handler(request)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as err:
        if err.status < 400:
            raise
        text = err.text or err.reason
        if text.startswith(f"{err.status}: "):
            text = text[len(f"{err.status}: "):]
        response = params.error_response(err.status, text)
        for name in ("Allow", "WWW-Authenticate"):
            if name in err.headers:
                response.headers[name] = err.headers[name]
        return response
    except (QueryError, params.BadRequest) as err:
        return params.error_response(400, str(err))
    except (MessageNotFound, PartNotFound) as err:
        what = "part" if isinstance(err, PartNotFound) else "message"
        return params.error_response(404, f"no {what} {err.args[0] if err.args else ''}".strip())


def _memory() -> int:
    """This process's resident memory in octets (its peak where /proc is missing)."""
    try:
        with open("/proc/self/statm") as file:
            return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _version() -> str:
    try:
        return importlib.metadata.version("mailwire")
    except importlib.metadata.PackageNotFoundError:
        return ""


def _info(inbox: Inbox, stats: Stats) -> dict[str, Any]:
    """Mailpit's AppInformation."""
    everything = inbox.list(0, 0)
    tags = {tag: inbox.list(0, 0, Query((Term("tag", tag),))).matched for tag in inbox.tags()}
    database = inbox.index.path
    try:
        size = os.path.getsize(database)
    except OSError:
        size = 0
    return {
        "Version": _version(), "LatestVersion": "", "Database": database, "DatabaseSize": size,
        "Messages": everything.total, "Unread": everything.unread, "Tags": tags,
        "RuntimeStats": {
            "Uptime": int(time.monotonic() - stats.started), "Memory": _memory(), "MessagesDeleted": 0,
            "SMTPAccepted": stats.accepted, "SMTPAcceptedSize": stats.accepted_size, "SMTPRejected": 0,
            "SMTPIgnored": 0,
        },
    }


async def info(request: web.Request) -> web.Response:
    data = await asyncio.to_thread(_info, request.app[INBOX], request.app[STATS])
    return web.json_response(data)


async def webui(request: web.Request) -> web.Response:
    """Mailpit's WebUIConfiguration: the release relay and whether chaos is on; no SpamAssassin here."""
    relay = release.relay_info(request.app.get(release.RELAY))
    chaos_on = request.app.get(chaos_routes.CHAOS) is not None
    return web.json_response({"Label": "", "MessageRelay": relay, "SpamAssassin": False, "ChaosEnabled": chaos_on,
                              "DuplicatesIgnored": False, "HideDeleteAllButton": False})


async def _end_streams(app: web.Application) -> None:
    """On shutdown: end the waits and event streams now (they would hold it)."""
    app[watch.STREAMS].stop()


def make_app(inbox: Inbox, *, auth: tuple[str, str] | None = None, stats: Stats | None = None,
             local_only: bool = False, relay: ReleaseRelay | None = None,
             catcher: Catcher | None = None, chaos: Chaos | None = None) -> web.Application:
    """The application serving ``inbox``; ``auth``: (user, password) for
    basic auth; ``local_only``: only requests for a loopback host (403);
    ``relay``: where ``release`` sends (None: releasing is refused, 400);
    ``catcher``: what ``send`` stores through (None: one of its own);
    ``chaos``: the SMTP server's injected failures, for ``/api/v1/chaos``."""
    middlewares: list[Middleware] = [_errors]
    if auth is not None:
        middlewares.insert(0, _basic_auth(f"{auth[0]}:{auth[1]}".encode()))
    if local_only:
        middlewares.insert(0, _local_only)
    app = web.Application(middlewares=middlewares, client_max_size=params.MAX_BODY)
    app[INBOX] = inbox
    app[STATS] = stats or Stats()
    app[watch.STREAMS] = watch.Streams()
    if relay is not None:
        app[release.RELAY] = relay
    app[send.CATCHER] = catcher if catcher is not None else Catcher(inbox)
    app[chaos_routes.CHAOS] = chaos
    for table in (messages.routes, message.routes, view.routes, watch.routes, release.routes, send.routes,
                  tag_routes.routes, chaos_routes.routes):
        app.add_routes(table)
    app.router.add_get("/api/v1/info", info)
    app.router.add_get("/api/v1/webui", webui)
    add_page(app)
    app.on_shutdown.append(_end_streams)
    return app

"""The routes on many messages: list, search, delete, mark read (Mailpit's ``/messages``, ``/search``).

Each handler validates its parameters (``params.py``), then asks the
``Inbox`` in a thread (``asyncio.to_thread``: its calls are short, but
SQLite and the file system block, and the event loop also serves SMTP).
A list is one snapshot of the index (``Inbox.list``): the counts and the
page agree. Deleting or marking answers Mailpit's plain ``ok``.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from ..inbox import Inbox, parse
from . import params, shapes

__all__ = ["routes", "INBOX"]

INBOX = web.AppKey("inbox", Inbox)
routes = web.RouteTableDef()


def _ok() -> web.Response:
    return web.Response(text="ok", content_type="text/plain")


async def _page(request: web.Request, required: bool) -> web.Response:
    inbox = request.app[INBOX]
    start = params.integer(request, "start", 0)
    limit = params.integer(request, "limit", 50, params.MAX_LIMIT)
    query = params.query(request, required=required)
    mailbox = params.mailbox(request)

    def read() -> web.Response:
        found = inbox.list(start, limit, query, mailbox)
        return web.json_response(shapes.page(found, inbox.tags()))

    return await asyncio.to_thread(read)


@routes.get("/api/v1/messages")
async def list_messages(request: web.Request) -> web.Response:
    """Newest first: ``start`` (offset, default 0), ``limit`` (default 50)."""
    return await _page(request, required=False)


@routes.get("/api/v1/search")
async def search(request: web.Request) -> web.Response:
    """Mailpit's search syntax in ``query`` (required), with ``start``, ``limit``, ``tz``."""
    return await _page(request, required=True)


@routes.delete("/api/v1/messages")
async def delete_messages(request: web.Request) -> web.Response:
    """``{"IDs": [...]}`` deletes those; no IDs (or no body) deletes every
    message (of ``mailbox``, if given)."""
    inbox = request.app[INBOX]
    mailbox = params.mailbox(request)
    chosen = params.ids(await params.json_body(request))
    if chosen:
        await asyncio.to_thread(inbox.delete, chosen)
    else:
        await asyncio.to_thread(inbox.delete_matching, None, mailbox)
    return _ok()


@routes.delete("/api/v1/search")
async def delete_search(request: web.Request) -> web.Response:
    """Deletes what ``query`` (required: never "everything" by omission)
    matches (in ``mailbox``, if given)."""
    inbox = request.app[INBOX]
    query = params.query(request, required=True)
    mailbox = params.mailbox(request)
    await asyncio.to_thread(inbox.delete_matching, query, mailbox)
    return _ok()


@routes.get("/api/v1/mailboxes")
async def mailboxes(request: web.Request) -> web.Response:
    """mailwire's: every mailbox (envelope recipient or AUTH user), with
    its counts: ``{"mailboxes": [{"Mailbox", "Total", "Unread"}]}``."""
    found = await asyncio.to_thread(request.app[INBOX].mailboxes)
    return web.json_response({"mailboxes": [{"Mailbox": name, "Total": total, "Unread": unread}
                                            for name, total, unread in found]})


@routes.put("/api/v1/messages")
async def mark(request: web.Request) -> web.Response:
    """``{"Read": bool}`` with ``IDs`` (those), or ``Search`` (what it
    matches), or neither (every message). An unknown ID is a 404."""
    inbox = request.app[INBOX]
    body = await params.json_body(request)
    read = body.get("Read", False)
    if not isinstance(read, bool):
        raise params.BadRequest("Read must be true or false")
    chosen = params.ids(body)
    search = body.get("Search")
    if search is not None and not isinstance(search, str):
        raise params.BadRequest("Search must be a string")
    if chosen:
        await asyncio.to_thread(inbox.mark_read, chosen, read)
    else:
        query = parse(search, tz=params.tz(request)) if search and search.strip() else None
        await asyncio.to_thread(inbox.mark_matching, read, query)
    return _ok()

"""Mailpit's tag routes: list them, set a message's, rename one, delete one (``/api/v1/tags``).

Tags come with a message in its ``X-Tags`` header (comma-separated, as
Mailpit reads it) and are changed here; they are in every message summary
(``Tags``), in the list's ``tags`` and ``info``'s counts, and searched with
``tag:NAME`` (``is:tagged``). The work is the ``Inbox``'s (``set_tags``,
``rename_tag``, ``delete_tag``: the index, in a thread); here the bodies
are validated: ``{"IDs": [...], "Tags": [...]}`` to set (both required;
an empty ``Tags`` untags), ``{"Name": "..."}`` to rename. A tag that is
empty, over 100 characters, or holds a comma or a control character is a
400; an unknown message ID a 404 (and no message changed), as is an
unknown tag to rename. Changes answer Mailpit's plain ``ok``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from . import params
from .messages import INBOX

__all__ = ["routes"]

routes = web.RouteTableDef()


def _ok() -> web.Response:
    return web.Response(text="ok", content_type="text/plain")


def _tags(body: dict[str, Any]) -> list[str]:
    tags = body.get("Tags")
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise params.BadRequest("Tags must be a list of tag names (strings); [] removes every tag")
    return tags


@routes.get("/api/v1/tags")
async def list_tags(request: web.Request) -> web.Response:
    """Every tag in use, sorted."""
    return web.json_response(list(await asyncio.to_thread(request.app[INBOX].tags)))


@routes.put("/api/v1/tags")
async def set_tags(request: web.Request) -> web.Response:
    """``{"IDs": [...], "Tags": [...]}``: those messages get exactly those tags."""
    body = await params.json_body(request)
    if "IDs" not in body:
        raise params.BadRequest("IDs is required: the messages to tag")
    chosen, tags = params.ids(body), _tags(body)
    try:
        await asyncio.to_thread(request.app[INBOX].set_tags, chosen, tags)
    except ValueError as err:
        raise params.BadRequest(str(err)) from None
    return _ok()


@routes.put("/api/v1/tags/{tag}")
async def rename_tag(request: web.Request) -> web.Response:
    """``{"Name": "..."}``: the tag in the path becomes that on every message."""
    body = await params.json_body(request)
    name = body.get("Name")
    if not isinstance(name, str):
        raise params.BadRequest("Name is required: the tag's new name")
    old = request.match_info["tag"]
    try:
        renamed = await asyncio.to_thread(request.app[INBOX].rename_tag, old, name)
    except ValueError as err:
        raise params.BadRequest(str(err)) from None
    if not renamed:
        raise web.HTTPNotFound(text=f"no tag {old!r}")
    return _ok()


@routes.delete("/api/v1/tags/{tag}")
async def delete_tag(request: web.Request) -> web.Response:
    """The tag is taken off every message (which stay)."""
    await asyncio.to_thread(request.app[INBOX].delete_tag, request.match_info["tag"])
    return _ok()

"""``/view/{ID}.html`` and ``/view/{ID}.txt``: a message's bodies as documents to show.

The HTML body is the sender's content, served from the API's own origin,
so it is made safe twice over. First it is sanitised with nh3 (a binding
of the Rust crate ammonia, an allow-list sanitiser built on a browser-grade
HTML5 parser): scripts, style elements, event handlers, forms, frames and
``javascript:`` URLs go; inline styles keep only presentational properties.
Then the response carries a Content-Security-Policy that would stop what
a sanitiser missed: ``sandbox`` without ``allow-scripts`` (no script runs,
no form posts, a unique origin), nothing loads from anywhere (``default-src
'none'``) but this server's own parts and ``data:`` images, so a remote
image (a read receipt) or CSS exfiltration calls nobody. ``?remote=1``
lets remote images load, for a user who asks to see them.

``cid:`` references (inline images, RFC 2392) are rewritten to the part's
URL on this server, as Mailpit does. ``?embed=1`` opens links in a new
window (``target="_blank"``), for a page that shows the view in an iframe.
"""

from __future__ import annotations

import asyncio
import re
from urllib.parse import unquote

import nh3
from aiohttp import web

from ..inbox import Message
from . import params
from .messages import INBOX

__all__ = ["routes", "sanitise", "policy"]

routes = web.RouteTableDef()

_STYLE_PROPERTIES = {
    "color", "background-color", "font", "font-family", "font-size", "font-style", "font-weight",
    "text-align", "text-decoration", "text-transform", "line-height", "letter-spacing", "vertical-align",
    "white-space", "margin", "margin-top", "margin-right", "margin-bottom", "margin-left", "padding",
    "padding-top", "padding-right", "padding-bottom", "padding-left", "border", "border-top", "border-right",
    "border-bottom", "border-left", "border-color", "border-style", "border-width", "border-radius",
    "border-collapse", "border-spacing", "width", "min-width", "max-width", "height", "min-height", "max-height",
    "display", "direction",
}
_PRESENTATION = {"style", "align", "valign", "bgcolor", "width", "height", "border", "cellpadding",
                 "cellspacing", "dir", "lang", "title", "color"}
_ATTRIBUTES = {tag: set(names) for tag, names in nh3.ALLOWED_ATTRIBUTES.items()}
_ATTRIBUTES["*"] = _ATTRIBUTES.get("*", set()) | _PRESENTATION
_ATTRIBUTES.setdefault("font", set()).update({"face", "size", "color"})
_TAGS = set(nh3.ALLOWED_TAGS) | {"font", "tfoot"}
_CID = re.compile(r"""(\b(?:src|href|background)\s*=\s*["']?)cid:([^"'\s>]+)""", re.IGNORECASE)


def _inline_urls(html: str, message: Message) -> str:
    """``cid:`` URLs to this server's part URLs (an unknown one is left to the sanitiser)."""
    parts = {p.content_id: p.part_id for p in message.inline + message.attachments if p.content_id}
    base = f"/api/v1/message/{message.summary.id}/part/"

    def swap(found: re.Match[str]) -> str:
        part = parts.get(unquote(found.group(2)))
        return found.group(0) if part is None else f"{found.group(1)}{base}{part}"

    return _CID.sub(swap, html)


def sanitise(html: str, *, embed: bool = False) -> str:
    """The HTML with everything that could run, submit or frame removed."""
    return nh3.clean(
        html, tags=_TAGS, attributes=_ATTRIBUTES, filter_style_properties=_STYLE_PROPERTIES,
        clean_content_tags={"script", "style", "title", "head", "template"},
        strip_comments=True, link_rel="noopener noreferrer",
        set_tag_attribute_values={"a": {"target": "_blank"}} if embed else None,
    )


def policy(remote: bool) -> str:
    """The Content-Security-Policy of a view: nothing runs, nothing remote
    loads (unless ``remote``: then images may)."""
    images = "'self' data: https: http:" if remote else "'self' data:"
    return (f"default-src 'none'; img-src {images}; style-src 'unsafe-inline'; font-src data:; "
            "form-action 'none'; base-uri 'none'; frame-ancestors 'self'; "
            "sandbox allow-popups allow-popups-to-escape-sandbox")


def _document(body: str) -> str:
    return ('<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
            '<meta name="referrer" content="no-referrer"></head>\n<body>' + body + "</body></html>\n")


@routes.get(r"/view/{id:[A-Za-z0-9_-]+}.html")
async def html(request: web.Request) -> web.Response:
    inbox = request.app[INBOX]
    message_id = await params.latest_id(inbox, request.match_info["id"])
    embed = request.query.get("embed") in ("1", "true")
    remote = request.query.get("remote") in ("1", "true")
    found = await asyncio.to_thread(inbox.message, message_id)
    if not found.html:
        return params.error_response(404, "this message has no HTML part")
    body = await asyncio.to_thread(sanitise, _inline_urls(found.html, found), embed=embed)
    return web.Response(text=_document(body), content_type="text/html", charset="utf-8", headers={
        "Content-Security-Policy": policy(remote), "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    })


@routes.get(r"/view/{id:[A-Za-z0-9_-]+}.txt")
async def text(request: web.Request) -> web.Response:
    inbox = request.app[INBOX]
    message_id = await params.latest_id(inbox, request.match_info["id"])
    found = await asyncio.to_thread(inbox.message, message_id)
    return web.Response(text=found.text, content_type="text/plain", charset="utf-8",
                        headers={"X-Content-Type-Options": "nosniff"})

"""Request parameters, validated, and errors as Mailpit's JSON error object.

Every parameter a route reads goes through one function here, so each is
checked the same way: a value that is not what the route needs is a
``BadRequest`` (400), never an exception deeper down or a silent default.
An error's body is Mailpit's ``JSONErrorResponse``, ``{"Error": "..."}``
(Mailpit itself answers most errors as plain text; a JSON object carries
the same message and is what its send API and this API's clients parse).
"""

from __future__ import annotations

import asyncio
import json
from datetime import timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web

from ..inbox import Inbox, MessageNotFound, Query, parse

__all__ = ["BadRequest", "error_response", "integer", "number", "tz", "query", "json_body", "ids",
           "latest_id", "mailbox", "MAX_LIMIT", "MAX_BODY"]

MAX_LIMIT = 10_000  # messages in one page; a larger limit is answered with this many
MAX_BODY = 1 << 20  # octets of a PUT or DELETE body (some 40,000 IDs)
_MAX_INT = 1 << 62


class BadRequest(Exception):
    """A parameter the route cannot use: 400 with this message."""


def error_response(status: int, message: str) -> web.Response:
    return web.json_response({"Error": message}, status=status)


def integer(request: web.Request, name: str, default: int, maximum: int = _MAX_INT) -> int:
    """A whole number of at least 0 (``start``, ``limit``), at most ``maximum``."""
    text = request.query.get(name)
    if text is None or text == "":
        return default
    if not text.isdigit() or not text.isascii():
        raise BadRequest(f"{name} must be a whole number of at least 0, not {text!r}")
    value = int(text) if len(text) < 20 else _MAX_INT
    return min(value, maximum)


def number(request: web.Request, name: str, default: float, maximum: float) -> float:
    """A number of seconds from 0 to ``maximum``."""
    text = request.query.get(name)
    if text is None or text == "":
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= maximum:
        raise BadRequest(f"{name} must be a number of seconds from 0 to {maximum:g}, not {text!r}")
    return value


def tz(request: web.Request) -> tzinfo:
    """``tz``: the zone of dates without one in ``before:``/``after:`` (UTC by default)."""
    name = request.query.get("tz", "")
    if not name:
        return timezone.utc
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadRequest(f"unknown time zone {name!r}") from None


def query(request: web.Request, *, required: bool) -> Query | None:
    """The ``query`` parameter parsed in Mailpit's search syntax
    (``QueryError``, a 400, if it cannot be); required and not blank for
    the search routes, so a missing one never means "everything"."""
    text = request.query.get("query")
    if text is None or not text.strip():
        if required:
            raise BadRequest("query is required")
        return None
    return parse(text, tz=tz(request))


def mailbox(request: web.Request) -> str | None:
    """``mailbox``: mailwire's filter beyond Mailpit, the messages of one
    envelope recipient or AUTH user (``GET /api/v1/mailboxes`` lists them);
    absent or blank is every message."""
    text = request.query.get("mailbox", "").strip()
    if not text:
        return None
    if len(text) > 998 or not text.isprintable():
        raise BadRequest("mailbox must be an address or a user name (printable, at most 998 characters)")
    return text.lower()


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object (empty if there is no body); bounded by the
    application's ``client_max_size`` (413 beyond)."""
    if not request.can_read_body:
        return {}
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the body is not JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    return data


def ids(body: dict[str, Any]) -> list[str]:
    """``IDs``: a list of message IDs (strings); absent or null is none."""
    found = body.get("IDs")
    if found is None:
        return []
    if not isinstance(found, list) or not all(isinstance(i, str) for i in found):
        raise BadRequest("IDs must be a list of message IDs (strings)")
    return found


async def latest_id(inbox: Inbox, message_id: str) -> str:
    """Mailpit's ``latest``: the newest message's ID (MessageNotFound if none)."""
    if message_id != "latest":
        return message_id
    page = await asyncio.to_thread(inbox.list, 0, 1)
    if not page.messages:
        raise MessageNotFound("latest")
    return page.messages[0].id

"""Beyond Mailpit: a blocking wait for a message, and the arrivals as an event stream.

``GET /api/v1/wait?query=...&timeout=...`` answers as soon as a message
matching the query (Mailpit's search syntax; none: any message) is in the
inbox: the newest already there, or the first to arrive. It answers the
message's summary (Mailpit's MessageSummary) with 200, or, when nothing
matched within ``timeout`` seconds (default 10, at most ``MAX_WAIT``), 408
with ``{"Error": ...}``. A test asks once instead of polling. ``existing=0``
waits for a new message only.

``GET /api/v1/events?query=...`` is a stream of server-sent events (the
``text/event-stream`` a browser's ``EventSource`` reads): one ``new``
event per arriving message that matches, its data the MessageSummary, and
a comment line every ``KEEPALIVE`` seconds so proxies and clients see the
stream alive (and a client gone is noticed).

``GET /api/events`` is Mailpit's WebSocket of the same (``{"Type": "new",
"Data": summary}``), for clients written for it.

All are ``Inbox.arrivals``: asyncio-native, woken by the inbox's indexer,
so a waiter holds no thread. Each open stream is tracked (``STREAMS``) so
stopping the server ends them at once rather than waiting on them; one
that begins once the stop has (a connection accepted as the listener
closed) is answered 503 at once, since nothing would ever end it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any
from collections.abc import AsyncIterator, Iterator

from aiohttp import web

from ..inbox import Inbox, Query, Summary
from . import params, shapes
from .messages import INBOX

__all__ = ["routes", "MAX_WAIT", "KEEPALIVE", "STREAMS", "Streams"]

MAX_WAIT = 300.0  # seconds a wait may ask for
KEEPALIVE = 15.0  # seconds between keep-alive comments on an idle event stream


class Streams:
    """The tasks serving event streams and waits, and whether the server stops."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[Any]] = set()
        self.stopped = False

    def stop(self) -> None:
        """End every open one, and refuse those yet to begin."""
        self.stopped = True
        for task in list(self.tasks):
            task.cancel()


STREAMS: web.AppKey[Streams] = web.AppKey("streams", Streams)
routes = web.RouteTableDef()


async def _first(inbox: Inbox, query: Query | None, mailbox: str | None, existing: bool) -> Summary:
    async with contextlib.aclosing(inbox.arrivals(query, mailbox=mailbox, existing=existing)) as arrivals:
        async for summary in arrivals:
            return summary
    raise AssertionError("arrivals ended")  # it never does: it waits for ever


@contextlib.contextmanager
def _tracked(request: web.Request) -> Iterator[None]:
    task = asyncio.current_task()
    streams = request.app[STREAMS]
    if streams.stopped:
        raise web.HTTPServiceUnavailable(reason="the server is stopping")
    if task is not None:
        streams.tasks.add(task)
    try:
        yield
    finally:
        if task is not None:
            streams.tasks.discard(task)


@routes.get("/api/v1/wait")
async def wait(request: web.Request) -> web.Response:
    inbox = request.app[INBOX]
    query = params.query(request, required=False)
    mailbox = params.mailbox(request)
    timeout = params.number(request, "timeout", 10.0, MAX_WAIT)
    existing = request.query.get("existing", "1") not in ("0", "false")
    with _tracked(request):
        try:
            found = await asyncio.wait_for(_first(inbox, query, mailbox, existing), timeout)
        except asyncio.TimeoutError:
            text = request.query.get("query", "")
            what = f"matching {text!r} " if text.strip() else ""
            return params.error_response(408, f"no message {what}arrived within {timeout:g} s")
    return web.json_response(shapes.summary(found))


@contextlib.asynccontextmanager
async def _watching(inbox: Inbox, query: Query | None,
                    mailbox: str | None = None) -> AsyncIterator[asyncio.Queue[Summary]]:
    """A queue of the arrivals from now on, filled by a task while in the block."""
    queue: asyncio.Queue[Summary] = asyncio.Queue(maxsize=1000)

    async def pump() -> None:
        async with contextlib.aclosing(inbox.arrivals(query, mailbox=mailbox)) as arrivals:
            async for summary in arrivals:
                await queue.put(summary)

    task = asyncio.ensure_future(pump())
    try:
        yield queue
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


@routes.get("/api/v1/events")
async def events(request: web.Request) -> web.StreamResponse:
    inbox = request.app[INBOX]
    query = params.query(request, required=False)
    mailbox = params.mailbox(request)
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no",
    })
    try:
        async with _watching(inbox, query, mailbox) as queue:
            with _tracked(request):
                await response.prepare(request)
                await response.write(b": mailwire events\n\n")
                while True:
                    try:
                        summary = await asyncio.wait_for(queue.get(), KEEPALIVE)
                    except asyncio.TimeoutError:
                        await response.write(b": keep-alive\n\n")
                        continue
                    data = json.dumps(shapes.summary(summary), separators=(",", ":"))
                    await response.write(f"event: new\nid: {summary.id}\ndata: {data}\n\n".encode())
    except ConnectionResetError:
        pass  # the client went away
    return response


async def _drain(socket: web.WebSocketResponse) -> None:
    async for _ in socket:  # what the client says is not listened to; its close is
        pass


@routes.get("/api/events")
async def websocket(request: web.Request) -> web.WebSocketResponse:
    """Mailpit's WebSocket of events: ``{"Type": "new", "Data": MessageSummary}``
    per arrival (Mailpit's other event types are not sent)."""
    if request.app[STREAMS].stopped:
        raise web.HTTPServiceUnavailable(reason="the server is stopping")
    socket = web.WebSocketResponse(heartbeat=KEEPALIVE)
    await socket.prepare(request)
    async with _watching(request.app[INBOX], None) as queue:
        with _tracked(request):
            reader = asyncio.ensure_future(_drain(socket))
            try:
                while not reader.done():
                    getter = asyncio.ensure_future(queue.get())
                    done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
                    if getter not in done:
                        getter.cancel()
                        break
                    await socket.send_json({"Type": "new", "Data": shapes.summary(getter.result())})
            except ConnectionResetError:
                pass
            finally:
                reader.cancel()
    await socket.close()
    return socket

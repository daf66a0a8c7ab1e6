"""The routes on one message: its view, headers, raw source and parts (Mailpit's ``/message/{ID}``).

``{ID}`` is a message's ID or ``latest`` (the newest), as in Mailpit. The
raw source and a part are streamed: a chunk is read in a thread and
written before the next is read, so a 50 MB message costs a chunk of
memory, not 50 MB, and a slow reader slows the reads (aiohttp's writes
wait for the socket to drain). A part is served with its own
Content-Type, and a Content-Disposition that names its file; since it
comes from the same origin as the API, it also gets a Content-Security-
Policy that runs nothing (an HTML attachment opened in a browser can
neither script nor load anything).

The message view gives each attachment Mailpit's ``Checksums`` (MD5,
SHA-1, SHA-256 of the decoded content): the file is scanned once and the
parts hashed as they stream, in bounded memory whatever their size.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Iterator
from typing import IO
from urllib.parse import quote

from aiohttp import web

from ..inbox import Inbox, PartContent
from ..inbox.mime import iter_decoded, scan
from . import params, shapes
from .messages import INBOX

__all__ = ["routes", "CHUNK", "PART_POLICY", "checksums"]

CHUNK = 1 << 18  # octets read, then written, at a time
# An attachment is the sender's content on our origin: it may not run or load anything.
PART_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox"
routes = web.RouteTableDef()


def checksums(inbox: Inbox, message_id: str) -> dict[str, dict[str, str]]:
    """Mailpit's Checksums of every attachment and inline part, by part ID."""
    found: dict[str, dict[str, str]] = {}
    with inbox.raw(message_id) as file:
        structure = scan(file)
        for part in structure.parts:
            if part.is_attachment or part.is_inline:
                found[part.part_id] = _hashes(iter_decoded(file, part))
    return found


def _hashes(chunks: Iterator[bytes]) -> dict[str, str]:
    md5, sha1, sha256 = hashlib.md5(usedforsecurity=False), hashlib.sha1(usedforsecurity=False), hashlib.sha256()
    for chunk in chunks:
        md5.update(chunk)
        sha1.update(chunk)
        sha256.update(chunk)
    return {"MD5": md5.hexdigest(), "SHA1": sha1.hexdigest(), "SHA256": sha256.hexdigest()}


@routes.get("/api/v1/message/{id}")
async def message(request: web.Request) -> web.Response:
    inbox = request.app[INBOX]
    message_id = await params.latest_id(inbox, request.match_info["id"])

    def read() -> web.Response:
        view = inbox.message(message_id)
        return web.json_response(shapes.message(view, checksums(inbox, message_id)))

    return await asyncio.to_thread(read)


@routes.get("/api/v1/message/{id}/headers")
async def headers(request: web.Request) -> web.Response:
    inbox = request.app[INBOX]
    message_id = await params.latest_id(inbox, request.match_info["id"])
    found = await asyncio.to_thread(inbox.headers, message_id)
    return web.json_response(shapes.headers(found))


async def _stream(request: web.Request, response: web.StreamResponse, read: Callable[[], bytes],
                  close: Callable[[], None]) -> None:
    """Write what ``read`` gives (a chunk a call, b"" at the end) to the
    client, each read in a thread; ``close`` at the end, whatever happens."""
    try:
        await response.prepare(request)
        while chunk := await asyncio.to_thread(read):
            await response.write(chunk)
        await response.write_eof()
    finally:
        await asyncio.to_thread(close)


@routes.get("/api/v1/message/{id}/raw")
async def raw(request: web.Request) -> web.StreamResponse:
    """The stored file: the trace lines (Return-Path, the envelope) and the
    message as received; ``?dl=1`` offers it as a download (``{ID}.eml``)."""
    inbox = request.app[INBOX]
    message_id = await params.latest_id(inbox, request.match_info["id"])
    file = await asyncio.to_thread(inbox.raw, message_id)
    response = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8",
                                           "X-Content-Type-Options": "nosniff"})
    if request.query.get("dl") in ("1", "true"):
        response.headers["Content-Disposition"] = f'attachment; filename="{message_id}.eml"'
    try:
        response.content_length = await asyncio.to_thread(lambda: _size(file))
    except BaseException:
        file.close()
        raise
    await _stream(request, response, lambda: file.read(CHUNK), file.close)
    return response


def _size(file: IO[bytes]) -> int:
    file.seek(0, 2)
    size = file.tell()
    file.seek(0)
    return size


def disposition(part: PartContent, kind: str) -> str:
    """``kind; filename="..."`` with the name as ASCII and, if it is not,
    as RFC 5987 UTF-8 too (RFC 6266)."""
    if not part.filename:
        return kind
    ascii_name = part.filename.encode("ascii", "replace").decode().replace("\\", "_").replace('"', "_")
    ascii_name = "".join(c if c.isprintable() else "_" for c in ascii_name)
    value = f'{kind}; filename="{ascii_name}"'
    if ascii_name != part.filename:
        value += f"; filename*=UTF-8''{quote(part.filename, safe='')}"
    return value


def _gathered(chunks: Iterator[bytes]) -> Callable[[], bytes]:
    """A reader of ``chunks`` that gives about CHUNK octets a call (a
    decoded part comes in smaller pieces: one thread hop for several)."""
    def read() -> bytes:
        out: list[bytes] = []
        size = 0
        for chunk in chunks:
            out.append(chunk)
            size += len(chunk)
            if size >= CHUNK:
                break
        return b"".join(out)

    return read


@routes.get("/api/v1/message/{id}/part/{part}")
async def part(request: web.Request) -> web.StreamResponse:
    """A part, decoded from its transfer encoding as it streams: an
    attachment as a download, anything else inline."""
    inbox = request.app[INBOX]
    message_id = await params.latest_id(inbox, request.match_info["id"])
    found = await asyncio.to_thread(inbox.part, message_id, request.match_info["part"])
    kind = "inline" if found.content_type.startswith(("image/", "text/")) and not found.filename else "attachment"
    if found.content_id and found.content_type.startswith("image/"):
        kind = "inline"
    response = web.StreamResponse(headers={
        "Content-Type": found.content_type or "application/octet-stream",
        "Content-Disposition": disposition(found, kind),
        "Content-Security-Policy": PART_POLICY, "X-Content-Type-Options": "nosniff",
    })
    await _stream(request, response, _gathered(found.chunks), found.close)
    return response

"""The web inbox page: ``/`` and its files, hand-written HTML, CSS and JavaScript modules.

No build step and no CDN: the page is a handful of files shipped as package
data (``web/static/``, in the wheel through ``pyproject.toml``), read once
when the application is made and served from memory. The page is a client
of the same API as any other (the list, search, message and event-stream
routes), so nothing it shows is reachable only from it.

Everything is served under a Content-Security-Policy that lets the page run
its own scripts and nothing else (``script-src 'self'``: no inline script,
no ``eval``), talk only to this server, and frame only this server's
``/view/{ID}.html`` (itself sanitised and sandboxed, ``view.py``). The
scripts insert message data as text, never as markup, so a subject or an
address holding HTML shows as the characters it is.
"""

from __future__ import annotations

import importlib.resources
import mimetypes

from aiohttp import web

__all__ = ["add_page", "POLICY", "FILES"]

POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
          "frame-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
FILES: web.AppKey[dict[str, tuple[bytes, str]]] = web.AppKey("page_files")
_TYPES = {".html": "text/html", ".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}


def _files() -> dict[str, tuple[bytes, str]]:
    """Every file of ``static/`` by name: (content, Content-Type)."""
    found: dict[str, tuple[bytes, str]] = {}
    for entry in importlib.resources.files(__package__).joinpath("static").iterdir():
        if entry.is_file() and not entry.name.startswith("."):
            suffix = entry.name[entry.name.rfind("."):]
            kind = _TYPES.get(suffix) or mimetypes.guess_type(entry.name)[0] or "application/octet-stream"
            found[entry.name] = (entry.read_bytes(), kind)
    return found


def _response(request: web.Request, name: str) -> web.Response:
    found = request.app[FILES].get(name)
    if found is None:
        raise web.HTTPNotFound(text=f"no file {name}")
    body, kind = found
    return web.Response(body=body, content_type=kind, charset="utf-8" if kind.startswith("text/") else None,
                        headers={"Content-Security-Policy": POLICY, "X-Content-Type-Options": "nosniff",
                                 "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
                                 "Cache-Control": "no-cache"})


async def index(request: web.Request) -> web.Response:
    return _response(request, "index.html")


async def static(request: web.Request) -> web.Response:
    return _response(request, request.match_info["name"])


def add_page(app: web.Application) -> None:
    """Serve the page at ``/`` and its files at ``/static/{name}``."""
    app[FILES] = _files()
    app.router.add_get("/", index)
    app.router.add_get(r"/static/{name:[A-Za-z0-9_.-]+}", static)

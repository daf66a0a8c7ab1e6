"""``GET/PUT /api/v1/chaos``: the failures the SMTP side injects, as Mailpit's API has them.

The body is Mailpit's ``ChaosTriggers`` with mailwire's additions
(``server/chaos_triggers.py`` says which; the failures themselves are
``server/chaos.py``'s). A PUT replaces every trigger (one left out is
off, ``{}`` turns all off) and restarts the counters, and answers as a GET
does. The ``Chaos`` object is the SMTP server's own (``ServerConfig.chaos``),
so a change applies to the next command of every connection. Without one
(an inbox served beside a server that injects nothing) both answer 400,
as Mailpit's do when it runs without ``--enable-chaos``.
"""

from __future__ import annotations

from aiohttp import web

from ..server.chaos import Chaos
from ..server.chaos_triggers import from_json, to_json
from . import params

__all__ = ["routes", "CHAOS"]

# The application's Chaos; an app made without one holds None under it.
CHAOS = web.AppKey("chaos", object)
routes = web.RouteTableDef()


def _chaos(request: web.Request) -> Chaos:
    chaos = request.app.get(CHAOS)
    if not isinstance(chaos, Chaos):
        raise params.BadRequest("chaos is not enabled on this server")
    return chaos


@routes.get("/api/v1/chaos")
async def get_chaos(request: web.Request) -> web.Response:
    return web.json_response(to_json(_chaos(request)))


@routes.put("/api/v1/chaos")
async def put_chaos(request: web.Request) -> web.Response:
    chaos = _chaos(request)
    try:
        faults, seed = from_json(await params.json_body(request))
    except ValueError as err:
        raise params.BadRequest(str(err)) from None
    chaos.replace(faults, seed=seed)
    return web.json_response(to_json(chaos))

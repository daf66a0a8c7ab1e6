"""Mailpit's ``POST /api/v1/message/{ID}/release``: a caught message sent on to a real server.

The body is Mailpit's ``{"To": ["a@example.com", ...]}``; the relay is the
one ``mailwire serve --release-to`` configured (``RELAY`` in the
application; ``inbox/release.py`` does the sending, streamed, TLS
verified). Answers, in the order they are checked:

* 404: no message with this ID (``latest``: the newest, as everywhere);
* 400: no relay configured, a body that is not ``{"To": [strings]}``, a
  recipient that is no address or that the relay's allowed/blocked
  recipients refuse, a message with no sender address;
* 502: the relay could not be reached, TLS failed (an unverifiable
  certificate included), or it refused: its reply is in the message;
* 200 with ``ok`` (text/plain, Mailpit's answer) once the relay took it.

``relay_info`` is the ``MessageRelay`` block of ``/api/v1/webui``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from ..inbox.release import ReleaseFailed, ReleaseRefused, ReleaseRelay, release as release_message
from . import params
from .messages import INBOX

__all__ = ["routes", "RELAY", "relay_info", "NOT_CONFIGURED"]

RELAY = web.AppKey("relay", ReleaseRelay)
NOT_CONFIGURED = "message relay is not configured: start mailwire serve with --release-to HOST[:PORT]"
routes = web.RouteTableDef()


def relay_info(relay: ReleaseRelay | None) -> dict[str, Any]:
    """Mailpit's WebUIConfiguration.MessageRelay for ``relay`` (None: off)."""
    if relay is None:
        return {"Enabled": False, "SMTPServer": "", "AllowedRecipients": "", "BlockedRecipients": "",
                "ReturnPath": "", "OverrideFrom": "", "PreserveMessageIDs": False}
    allowed, blocked = relay.allowed_recipients, relay.blocked_recipients
    return {"Enabled": True, "SMTPServer": relay.server,
            "AllowedRecipients": allowed.pattern if allowed is not None else "",
            "BlockedRecipients": blocked.pattern if blocked is not None else "",
            "ReturnPath": relay.return_path, "OverrideFrom": "", "PreserveMessageIDs": relay.preserve_message_ids}


def _recipients(body: dict[str, Any]) -> list[str]:
    found = body.get("To")
    if not isinstance(found, list) or not found or not all(isinstance(a, str) for a in found):
        raise params.BadRequest('the body must be {"To": ["address", ...]} with at least one address')
    return found


@routes.post("/api/v1/message/{id}/release")
async def release(request: web.Request) -> web.Response:
    inbox = request.app[INBOX]
    message_id = await params.latest_id(inbox, request.match_info["id"])
    await asyncio.to_thread(inbox.summary, message_id)  # MessageNotFound: 404 before anything else
    relay = request.app.get(RELAY)
    if relay is None:
        raise params.BadRequest(NOT_CONFIGURED)
    recipients = _recipients(await params.json_body(request))
    try:
        await release_message(inbox, message_id, recipients, relay)
    except ReleaseRefused as err:
        raise params.BadRequest(str(err)) from None
    except ReleaseFailed as err:
        return params.error_response(502, str(err))
    return web.Response(text="ok")

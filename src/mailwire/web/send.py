"""Mailpit's ``POST /api/v1/send``: a message described in JSON, built and caught as if it came over SMTP.

The body is Mailpit's SendRequest (``From``, ``To``, ``Cc``, ``Bcc``,
``ReplyTo``, ``Subject``, ``Text``, ``HTML``, ``Attachments``, ``Headers``,
``Tags``). Every field is checked before anything is built, and the first
that is not what Mailpit documents is a 400 naming it (fields Mailpit does
not know are ignored, as Mailpit does, so a client written for a newer
Mailpit still sends). The message is built with the standard library's
``email`` (``EmailMessage``, CRLF): a text part, an HTML alternative, the
attachments (an attachment with a ``ContentID`` goes inline, beside the
HTML it belongs to), ``Tags`` as ``X-Tags`` (Mailpit's tag header). The
headers Mailpit keeps for itself (From, To, Date ...) cannot be set
through ``Headers``. It is stored by the catcher's backend
(``Catcher.deliver``: the path SMTP mail takes, so it is indexed and
waiters and event streams hear of it), with To, Cc and Bcc as the
envelope's recipients; the answer is ``{"ID": ...}``.

The body may be larger than other routes' (``MAX_SEND_BODY``: attachments
come base64-encoded in it); it is read, decoded and built in a thread.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import email.policy
import email.utils
import json
import mimetypes
import re
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from typing import Any

from aiohttp import web

from ..errors import LocalProtocolError
from ..inbox import Catcher
from ..protocol.grammar import check_address
from ..server.envelope import Envelope
from . import params

__all__ = ["routes", "CATCHER", "MAX_SEND_BODY", "build"]

CATCHER = web.AppKey("catcher", Catcher)
MAX_SEND_BODY = 64 << 20  # octets of a send request: some 45 MB of attachments, base64-encoded
# What Mailpit builds itself; Headers may not set them (X-Tags: only through Tags).
RESTRICTED = frozenset({"to", "from", "cc", "bcc", "reply-to", "date", "subject", "content-type",
                        "mime-version", "x-tags"})
_FIELD_NAME = re.compile(r"[!-9;-~]+")  # RFC 5322 2.2: printable US-ASCII but the colon
_CONTENT_TYPE = re.compile(r"[A-Za-z0-9][\w!#$&^.+-]*/[A-Za-z0-9][\w!#$&^.+-]*")
routes = web.RouteTableDef()


@dataclass(frozen=True)
class Built:
    sender: str
    recipients: list[str]
    content: bytes


def _string(body: dict[str, Any], name: str, where: str = "") -> str:
    value = body.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise params.BadRequest(f"{where}{name} must be a string")
    return value


def _line(value: str, what: str) -> str:
    """A header value: no line breaks (they would start a header of the sender's choosing)."""
    if "\r" in value or "\n" in value or "\0" in value:
        raise params.BadRequest(f"{what} must be one line")
    return value


def _email(value: object, what: str) -> str:
    """A bare address, fit for the envelope and a header."""
    if not isinstance(value, str) or not value:
        raise params.BadRequest(f"{what} must be an email address")
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain or email.utils.parseaddr(value)[1] != value:
        raise params.BadRequest(f"{what} is not an email address: {value!r}")
    try:
        check_address(value, what)
    except LocalProtocolError as err:
        raise params.BadRequest(str(err)) from None
    return value


def _mailbox(value: object, what: str) -> Address:
    """Mailpit's ``{"Email": ..., "Name": ...}``."""
    if not isinstance(value, dict):
        raise params.BadRequest(f'{what} must be an object {{"Email": ..., "Name": ...}}')
    address = _email(value.get("Email"), f"{what}.Email")
    name = _line(_string(value, "Name", f"{what}."), f"{what}.Name")
    try:
        return Address(display_name=name, addr_spec=address)
    except (ValueError, IndexError) as err:  # headerregistry's own parser disagrees
        raise params.BadRequest(f"{what}.Email is not an email address: {address!r} ({err})") from None


def _list(body: dict[str, Any], name: str) -> list[Any]:
    value = body.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise params.BadRequest(f"{name} must be a list")
    return value


def _content_type(given: str, filename: str, what: str) -> tuple[str, str]:
    if given:
        if not _CONTENT_TYPE.fullmatch(given):
            raise params.BadRequest(f"{what}.ContentType must be type/subtype, not {given!r}")
        content_type = given
    else:
        content_type = mimetypes.guess_type(filename, strict=False)[0] or "application/octet-stream"
    maintype, _, subtype = content_type.lower().partition("/")
    return maintype, subtype


@dataclass(frozen=True)
class _Attachment:
    data: bytes
    filename: str
    maintype: str
    subtype: str
    content_id: str


def _attachment(value: object, what: str) -> _Attachment:
    if not isinstance(value, dict):
        raise params.BadRequest(f'{what} must be an object {{"Content": base64, "Filename": ...}}')
    filename = _line(_string(value, "Filename", f"{what}."), f"{what}.Filename")
    if not filename.strip():
        raise params.BadRequest(f"{what}.Filename is required")
    encoded = _string(value, "Content", f"{what}.")
    # A data URL (what a browser's readAsDataURL gives) is taken too, as Mailpit does.
    encoded = encoded.rpartition(",")[2]
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise params.BadRequest(f"{what}.Content is not base64 ({filename!r})") from None
    content_id = _line(_string(value, "ContentID", f"{what}."), f"{what}.ContentID").strip().strip("<>")
    if any(c in content_id for c in " <>\t"):
        raise params.BadRequest(f"{what}.ContentID must not hold spaces or angle brackets")
    maintype, subtype = _content_type(_string(value, "ContentType", f"{what}."), filename, what)
    return _Attachment(data, filename, maintype, subtype, content_id)


def _headers(body: dict[str, Any]) -> list[tuple[str, str]]:
    value = body.get("Headers")
    if value is None:
        return []
    if not isinstance(value, dict):
        raise params.BadRequest('Headers must be an object {"Name": "value"}')
    found = []
    for name, text in value.items():
        if not _FIELD_NAME.fullmatch(name):
            raise params.BadRequest(f"Headers: not a header name: {name!r}")
        if name.lower() in RESTRICTED:
            raise params.BadRequest(f"Headers: {name} cannot be set here (it is built from the other fields)")
        if not isinstance(text, str):
            raise params.BadRequest(f"Headers.{name} must be a string")
        found.append((name, _line(text, f"Headers.{name}")))
    return found


def _tags(body: dict[str, Any]) -> list[str]:
    tags = []
    for i, tag in enumerate(_list(body, "Tags")):
        if not isinstance(tag, str):
            raise params.BadRequest(f"Tags[{i}] must be a string")
        tag = " ".join(_line(tag, f"Tags[{i}]").split())
        if "," in tag:
            raise params.BadRequest(f"Tags[{i}] must not hold a comma (X-Tags separates tags with commas)")
        if tag:
            tags.append(tag)
    return list(dict.fromkeys(tags))


def _body_parts(message: EmailMessage, text: str, html: str, attachments: list[_Attachment]) -> None:
    if text or not html:
        message.set_content(text)
        if html:
            message.add_alternative(html, subtype="html")
    else:
        message.set_content(html, subtype="html")
    html_part = message.get_body(("html",)) if html else None
    for a in attachments:
        if a.content_id and isinstance(html_part, EmailMessage):
            html_part.add_related(a.data, a.maintype, a.subtype, cid=f"<{a.content_id}>", filename=a.filename,
                                  disposition="inline")
            continue
        message.add_attachment(a.data, a.maintype, a.subtype, filename=a.filename,
                               disposition="inline" if a.content_id else "attachment",
                               cid=f"<{a.content_id}>" if a.content_id else None)


def build(body: dict[str, Any]) -> Built:
    """The message Mailpit's SendRequest ``body`` describes, its envelope
    sender and recipients (``BadRequest`` naming the first bad field)."""
    if body.get("From") is None:
        raise params.BadRequest('From is required: {"Email": ..., "Name": ...}')
    sender = _mailbox(body["From"], "From")
    lists = {name: [_mailbox(v, f"{name}[{i}]") for i, v in enumerate(_list(body, name))]
             for name in ("To", "Cc", "ReplyTo")}
    bcc = [_email(v, f"Bcc[{i}]") for i, v in enumerate(_list(body, "Bcc"))]
    subject = _line(_string(body, "Subject"), "Subject")
    text, html = _string(body, "Text"), _string(body, "HTML")
    attachments = [_attachment(v, f"Attachments[{i}]") for i, v in enumerate(_list(body, "Attachments"))]
    headers, tags = _headers(body), _tags(body)

    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = sender
    for name, header in (("To", "To"), ("Cc", "Cc"), ("ReplyTo", "Reply-To")):
        if lists[name]:
            message[header] = lists[name]
    message["Subject"] = subject
    message["Date"] = email.utils.formatdate(localtime=True)
    message["Message-ID"] = email.utils.make_msgid(domain="mailwire")
    if tags:
        message["X-Tags"] = ", ".join(tags)
    try:
        for name, value in headers:
            message[name] = value
        _body_parts(message, text, html, attachments)
        content = message.as_bytes()
    except (ValueError, TypeError) as err:  # email's own checks (a header it will not fold, say)
        raise params.BadRequest(f"cannot build the message: {err}") from None
    recipients = [a.addr_spec for a in (*lists["To"], *lists["Cc"])] + bcc
    return Built(sender.addr_spec, list(dict.fromkeys(recipients)), content)


async def _read(request: web.Request) -> dict[str, Any]:
    """The JSON object of a body up to MAX_SEND_BODY (413 beyond): larger
    than the application's limit for other routes, read past it."""
    if request.content_length is not None and request.content_length > MAX_SEND_BODY:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_SEND_BODY, actual_size=request.content_length)
    chunks, size = [], 0
    while chunk := await request.content.read(1 << 20):
        size += len(chunk)
        if size > MAX_SEND_BODY:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_SEND_BODY, actual_size=size)
        chunks.append(chunk)
    raw = b"".join(chunks)
    try:
        data = json.loads(raw) if raw.strip() else {}
    except (ValueError, UnicodeDecodeError):
        raise params.BadRequest("the body is not JSON") from None
    if not isinstance(data, dict):
        raise params.BadRequest("the body must be a JSON object")
    return data


@routes.post("/api/v1/send")
async def send(request: web.Request) -> web.Response:
    body = await _read(request)
    catcher = request.app[CATCHER]

    def store() -> str:
        built = build(body)
        return catcher.deliver(Envelope(built.sender, rcpt_to=built.recipients, content=built.content))

    return web.json_response({"ID": await asyncio.to_thread(store)})

"""The store's values as Mailpit's JSON objects, field for field.

Each function gives one definition of Mailpit's API description
(``MessageSummary``, ``MessagesSummary``, ``Message``, ``Address``,
``Attachment``, ``ListUnsubscribe``), with its field names and types, so a
client written for Mailpit reads these unchanged. Dates are RFC 3339, UTC
as ``Z`` (as Go writes them). Where the store has no such datum the field
is there with its zero value (Mailpit's own convention for an unset field).
The one field beyond Mailpit's description is the list's ``count`` (the
messages on this page), which Mailpit's list also sends.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

from ..inbox import Address, Attachment, Message, Page, Summary

__all__ = ["address", "summary", "page", "message", "attachment", "headers", "when"]


def when(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def address(value: Address | None) -> dict[str, str] | None:
    return None if value is None else {"Name": value.name, "Address": value.address}


def _addresses(values: tuple[Address, ...]) -> list[dict[str, str] | None]:
    return [address(a) for a in values]


def summary(s: Summary) -> dict[str, Any]:
    """Mailpit's MessageSummary."""
    return {
        "ID": s.id, "MessageID": s.message_id, "Read": s.read, "From": address(s.from_),
        "To": _addresses(s.to), "Cc": _addresses(s.cc), "Bcc": _addresses(s.bcc),
        "ReplyTo": _addresses(s.reply_to), "Subject": s.subject, "Created": when(s.created),
        "Username": s.username, "Tags": list(s.tags), "Size": s.size, "Attachments": s.attachments,
        "Snippet": s.snippet,
    }


def page(p: Page, tags: tuple[str, ...]) -> dict[str, Any]:
    """Mailpit's MessagesSummary: ``total``/``unread`` count the inbox,
    ``messages_count``/``messages_unread`` what the query matched."""
    return {
        "total": p.total, "unread": p.unread, "count": len(p.messages), "messages_count": p.matched,
        "messages_unread": p.matched_unread, "start": p.start, "tags": list(tags),
        "messages": [summary(s) for s in p.messages],
    }


def attachment(a: Attachment, checksums: dict[str, str]) -> dict[str, Any]:
    """Mailpit's Attachment; ``checksums`` is ``{"MD5": ..., "SHA1": ..., "SHA256": ...}``."""
    return {"PartID": a.part_id, "FileName": a.filename, "ContentType": a.content_type,
            "ContentID": a.content_id, "Size": a.size, "Checksums": checksums}


_LINK = re.compile(r"<([^<>]*)>")


def _first(pairs: tuple[tuple[str, str], ...], name: str) -> str:
    return next((v for k, v in pairs if k.lower() == name), "")


def _unsubscribe(pairs: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    """Mailpit's ListUnsubscribe, from the List-Unsubscribe (RFC 2369) and
    List-Unsubscribe-Post (RFC 8058) headers."""
    header = _first(pairs, "list-unsubscribe")
    links = [link.strip() for link in _LINK.findall(header)]
    errors = "" if not header or links else "List-Unsubscribe holds no <URL>"
    return {"Header": header, "HeaderPost": _first(pairs, "list-unsubscribe-post"), "Links": links,
            "Errors": errors}


def headers(pairs: tuple[tuple[str, str], ...]) -> dict[str, list[str]]:
    """Mailpit's headers object: each name (as first written) with its values in order."""
    out: dict[str, list[str]] = {}
    names: dict[str, str] = {}
    for name, value in pairs:
        out.setdefault(names.setdefault(name.lower(), name), []).append(value)
    return out


def message(m: Message, checksums: dict[str, dict[str, str]]) -> dict[str, Any]:
    """Mailpit's Message; ``checksums`` by part ID (parts not in it get ``{}``)."""
    s = m.summary
    return {
        "ID": s.id, "MessageID": s.message_id, "From": address(s.from_), "To": _addresses(s.to),
        "Cc": _addresses(s.cc), "Bcc": _addresses(s.bcc), "ReplyTo": _addresses(s.reply_to),
        "ReturnPath": s.return_path, "Subject": s.subject, "ListUnsubscribe": _unsubscribe(m.headers),
        "Date": when(s.sent), "Tags": list(s.tags), "Username": s.username, "Text": m.text, "HTML": m.html,
        "Size": s.size, "Inline": [attachment(a, checksums.get(a.part_id, {})) for a in m.inline],
        "Attachments": [attachment(a, checksums.get(a.part_id, {})) for a in m.attachments],
        # mailwire's: the MIME tree, in the message's order (Mailpit has none).
        "Structure": [{"PartID": n.part_id, "ContentType": n.content_type, "Kind": n.kind, "Depth": n.depth,
                       "FileName": n.filename, "Size": n.size} for n in m.structure],
    }

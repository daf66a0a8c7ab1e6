"""What every deliverer shares: the ``Deliverer`` protocol, its ``Report``, the trace lines.

A deliverer gets an entry, the message as delivered (the body with the trace
lines before it) and the recipients still to deliver, and says for each
whether it was delivered or how it failed: a ``Failure`` is temporary (the
worker retries that recipient later) or permanent (the worker bounces it).
Anything a deliverer raises counts as a temporary failure of every
recipient: a lost connection, a full disk. Deliverers never retry, never
bounce, never touch the broker: the worker does, once, for all of them.

The trace lines are a ``Received:`` line naming the client the front end
saw (behind PROXY, the real one) and ``X-Mailwire-Queue-Id:``, so a message
can be followed from the front end's 250 to its delivery.
"""

from __future__ import annotations

import email.utils
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from ..entry import QueueEntry

__all__ = ["Deliverer", "Failure", "Report", "trace_lines", "line_ending", "QUEUE_ID_HEADER"]

QUEUE_ID_HEADER = "X-Mailwire-Queue-Id"


@dataclass(frozen=True, slots=True)
class Failure:
    permanent: bool
    status: str  # the enhanced status code (RFC 3463): "5.1.1", "4.3.0"
    diagnostic: str  # RFC 3464's Diagnostic-Code: "smtp; 550 5.1.1 No such user"


@dataclass(frozen=True, slots=True)
class Report:
    # Each recipient that was not delivered, and why (absent: delivered).
    failed: dict[str, Failure] = field(default_factory=dict)
    # The message was there already (a repeat of a delivery): nothing stored anew.
    duplicate: bool = False


@runtime_checkable
class Deliverer(Protocol):
    # The log's target=... ("maildir", "lmtp", "relay").
    target: str
    # Whether the deliverer itself never delivers one queue id twice (a
    # Maildir does); if not, the worker keeps delivered recipients in the broker.
    idempotent: bool

    async def deliver(self, entry: QueueEntry, message: bytes, recipients: Sequence[str]) -> Report:
        """Deliver ``message`` (trace lines included) to ``recipients`` of ``entry``."""
        ...

    async def close(self) -> None:
        ...


def _client_text(entry: QueueEntry) -> str:
    client = entry.client
    if client is None:
        return "unknown"
    if isinstance(client, str):
        return f"local ({client})" if client else "local"
    host = client[0]
    try:
        literal = f"IPv6:{host}" if ipaddress.ip_address(host).version == 6 else host
    except ValueError:
        literal = host
    return f"[{literal}]"


def trace_lines(entry: QueueEntry, eol: bytes = b"\r\n", by: str | None = None) -> bytes:
    """``Received:`` (from the entry's client, RFC 5321 4.4) and the queue id, each ended by ``eol``."""
    helo = (entry.helo_name or "unknown").replace("\r", "").replace("\n", "")
    protocol = "ESMTP" + ("S" if entry.tls_version else "") + ("A" if entry.auth_identity else "")
    date = email.utils.formatdate(entry.received_at or None, localtime=False)
    received = (f"Received: from {helo} ({_client_text(entry)}) by {by or socket.gethostname()} (mailwire)"
                f" with {protocol} id {entry.queue_id}; {date}")
    return received.encode("utf-8", "surrogateescape") + eol + f"{QUEUE_ID_HEADER}: {entry.queue_id}".encode() + eol


def line_ending(body: bytes) -> bytes:
    """The line ending of the message's first line (CRLF if none ended)."""
    end = body.find(b"\n")
    return b"\n" if end > 0 and body[end - 1:end] != b"\r" or end == 0 else b"\r\n"

"""Bounces: the delivery status notification (RFC 3464) for recipients that failed for good.

``bounce`` builds, with the standard library's ``email`` package, the
``multipart/report; report-type=delivery-status`` message a sender gets
when some of its recipients could not be delivered: a human-readable part,
the ``message/delivery-status`` part (one group of fields per failed
recipient: Final-Recipient, Original-Recipient from ORCPT, Action, Status,
Diagnostic-Code) and the original message's header (``text/rfc822-headers``)
or, when the sender asked for ``RET=FULL``, the whole message. It returns a
new ``QueueEntry`` from the null sender (``MAIL FROM:<>``, so a bounce never
bounces: RFC 5321 4.5.5) to the original sender, which the worker publishes
into the queue like any other mail.

``wants_bounce`` applies the recipient's NOTIFY (RFC 3461 4.1): NEVER, or a
list without FAILURE, means no bounce for it; no NOTIFY means the default,
a bounce on failure. A message from the null sender never gets one.
"""

from __future__ import annotations

import email.policy
import email.utils
import hashlib
import socket
import time
from collections.abc import Mapping
from email.message import EmailMessage, Message
from typing import cast
from email.parser import BytesHeaderParser

from ..protocol.params import RcptOptions
from .deliver.base import Failure
from .entry import QueueEntry, new_queue_id

__all__ = ["bounce", "wants_bounce"]

_POLICY = email.policy.SMTP  # CRLF line endings, as on the wire


def wants_bounce(entry: QueueEntry, options: RcptOptions) -> bool:
    """Whether a permanent failure of this recipient is bounced to the sender."""
    if not entry.mail_from:  # the null sender: bounces and the like never bounce
        return False
    return options.notify is None or "FAILURE" in options.notify


def bounce(entry: QueueEntry, message: bytes, failed: Mapping[str, Failure], *,
           reporting_mta: str | None = None) -> QueueEntry:
    """The DSN entry telling ``entry.mail_from`` that ``failed`` recipients failed;
    ``message`` is the original, as delivery tried it."""
    mta = reporting_mta or socket.gethostname()  # not getfqdn: it may wait on DNS
    options = dict(entry.recipients())
    report = EmailMessage(policy=_POLICY)
    report["From"] = f"Mail Delivery System <MAILER-DAEMON@{mta}>"
    report["To"] = entry.mail_from
    report["Subject"] = "Undelivered Mail Returned to Sender"
    report["Date"] = email.utils.formatdate(localtime=False)
    report["Message-ID"] = email.utils.make_msgid(domain=mta)
    report["Auto-Submitted"] = "auto-replied"  # RFC 3834: no automatic reply to this
    lines = ["Your message could not be delivered to these recipients:", ""]
    lines += [f"  <{rcpt}>: {failure.diagnostic}" for rcpt, failure in failed.items()]
    lines += ["", f"Its queue id: {entry.queue_id}"]
    report.set_content("\n".join(lines) + "\n")
    report.make_mixed()  # then made multipart/report below
    report.replace_header("Content-Type", "multipart/report; report-type=delivery-status")
    queue_id = new_queue_id()
    report.set_boundary(f"dsn-{queue_id}")
    report.attach(_status_part(entry, failed, options, mta))
    report.attach(_returned(message, full=entry.mail_options.ret == "FULL"))
    body = report.as_bytes(policy=_POLICY)
    return QueueEntry(
        queue_id=queue_id, mail_from="", rcpt_to=(entry.mail_from,),
        sha256=hashlib.sha256(body).hexdigest(), size=len(body), body=body, received_at=time.time(),
        client=None, helo_name=mta,
    )


def _status_part(entry: QueueEntry, failed: Mapping[str, Failure], options: Mapping[str, RcptOptions],
                 mta: str) -> EmailMessage:
    """The ``message/delivery-status`` part: per-message fields, then one block per recipient."""
    first = [("Reporting-MTA", f"dns; {mta}"), ("X-Mailwire-Queue-Id", entry.queue_id)]
    if entry.mail_options.envid:
        first.insert(0, ("Original-Envelope-Id", entry.mail_options.envid))
    if entry.received_at:
        first.append(("Arrival-Date", email.utils.formatdate(entry.received_at, localtime=False)))
    blocks = [first]
    for rcpt, failure in failed.items():
        block = [("Final-Recipient", f"rfc822; {rcpt}")]
        orcpt = options.get(rcpt, RcptOptions()).orcpt
        if orcpt is not None:
            block.append(("Original-Recipient", f"{orcpt[0]}; {orcpt[1]}"))
        block += [("Action", "failed"), ("Status", failure.status), ("Diagnostic-Code", failure.diagnostic)]
        blocks.append(block)
    part = EmailMessage(policy=_POLICY)
    part["Content-Type"] = "message/delivery-status"
    groups = []
    for block in blocks:
        group = EmailMessage(policy=_POLICY)
        for name, value in block:
            group[name] = value
        groups.append(group)
    part.set_payload(cast("list[Message[str, str] | str]", groups))  # typeshed: a list of Message, not of its subclass
    return part


def _returned(message: bytes, *, full: bool) -> EmailMessage:
    """The original: whole (RET=FULL) or its header section only (the default)."""
    part = EmailMessage(policy=_POLICY)
    if full:
        part["Content-Type"] = "message/rfc822"
        part["Content-Disposition"] = "inline"
        part.set_payload([email.message_from_bytes(message, policy=_POLICY)])
        return part
    headers = BytesHeaderParser(policy=_POLICY).parsebytes(message)
    part["Content-Type"] = "text/rfc822-headers"
    part.set_payload("".join(f"{k}: {v}\r\n" for k, v in headers.raw_items()))
    return part

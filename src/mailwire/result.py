"""What a send reports: every recipient's own reply.

SMTP gives one reply per RCPT and one for the message; LMTP (RFC 2033 4.2)
gives one per accepted recipient after the data. ``SendResult.recipients``
folds both into the outcome that matters to a caller: for each recipient, the
reply that decided its fate. Nothing is summarised away, so a partial success
is always visible as a non-empty ``refused``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .reply import Reply

__all__ = ["SendResult"]


@dataclass(frozen=True, slots=True)
class SendResult:
    mail_from: str
    # Recipient -> the reply that decided it: the RCPT refusal, or the data
    # reply (SMTP), or its own post-data reply (LMTP).
    recipients: dict[str, Reply]
    # The reply to MAIL FROM and to each RCPT, as received.
    mail_reply: Reply
    rcpt_replies: dict[str, Reply]
    # The reply to the end of data (SMTP); None when no data was sent or LMTP.
    data_reply: Reply | None = None
    # Octets of message content sent (before dot-stuffing).
    size: int = 0

    @property
    def accepted(self) -> list[str]:
        return [rcpt for rcpt, reply in self.recipients.items() if reply.is_positive]

    @property
    def refused(self) -> dict[str, Reply]:
        return {rcpt: reply for rcpt, reply in self.recipients.items() if not reply.is_positive}

    @property
    def ok(self) -> bool:
        """Every recipient accepted."""
        return bool(self.recipients) and not self.refused

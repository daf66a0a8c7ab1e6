"""``LMTPDeliverer`` and ``RelayDeliverer``: the message handed on with mailwire's pools.

Both send through a pool (``LMTPPool``: one reply per recipient after the
data, RFC 2033; ``SMTPPool``: one per RCPT and one for the data) and turn
its ``SendResult`` (or the refusal it raised) into a ``Failure`` per
recipient not delivered: a 4xx reply is temporary, a 5xx permanent, and a
message the far side cannot take (an extension it lacks, such as SMTPUTF8)
permanent too. A connection that fails raises, and the worker retries every
recipient. The far side cannot tell a repeat, so these deliverers are not
idempotent: the worker remembers delivered recipients in the broker.

Upstream, the envelope keeps BODY and SMTPUTF8; the DSN parameters (NOTIFY,
ORCPT, RET, ENVID) are not passed on: the worker honours them itself, and
bounces what fails here, so the far side need not support DSN.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...client.pool import LMTPPool, SMTPPool
from ...errors import NotSupportedError, SMTPError
from ...protocol.params import MailOptions
from ...reply import Reply
from ...result import SendResult
from ..entry import QueueEntry
from .base import Failure, Report

__all__ = ["LMTPDeliverer", "RelayDeliverer", "failure_of"]


def failure_of(reply: Reply) -> Failure:
    """A refusal as a ``Failure``: 5xx permanent, anything else temporary."""
    enhanced = str(reply.enhanced) if reply.enhanced is not None else f"{reply.code // 100}.0.0"
    return Failure(reply.code >= 500, enhanced, f"smtp; {reply}")


class _PoolDeliverer:
    target = "relay"
    idempotent = False

    def __init__(self, pool: SMTPPool) -> None:
        self.pool = pool

    async def deliver(self, entry: QueueEntry, message: bytes, recipients: Sequence[str]) -> Report:
        options = MailOptions(body=entry.mail_options.body, smtputf8=entry.mail_options.smtputf8)
        result: SendResult | None
        try:
            result = await self.pool.send(message, entry.mail_from, list(recipients), mail_options=options)
        except NotSupportedError as err:
            return Report({r: Failure(True, "5.3.3", f"x-local; {err}") for r in recipients})
        except SMTPError as err:
            result = getattr(err, "result", None)
            if not isinstance(result, SendResult):  # MAIL or the data refused for everyone
                return Report({r: failure_of(err.reply) for r in recipients})
            return Report({r: failure_of(result.recipients.get(r, err.reply)) for r in recipients
                           if not result.recipients.get(r, err.reply).is_positive})
        return Report({r: failure_of(reply) for r, reply in result.recipients.items() if not reply.is_positive})

    async def close(self) -> None:
        await self.pool.close()


class RelayDeliverer(_PoolDeliverer):
    """To an SMTP server (a smarthost, an MTA) through an ``SMTPPool``."""

    target = "relay"

    @classmethod
    def to(cls, host: str, port: int | None, **settings: Any) -> RelayDeliverer:
        return cls(SMTPPool(host, port, **settings))


class LMTPDeliverer(_PoolDeliverer):
    """To an LMTP server (a mailbox store: Dovecot, Cyrus) through an ``LMTPPool``;
    ``host`` may be a Unix socket path (``port`` None)."""

    target = "lmtp"

    @classmethod
    def to(cls, host: str, port: int | None, **settings: Any) -> LMTPDeliverer:
        return cls(LMTPPool(host, port, **settings))

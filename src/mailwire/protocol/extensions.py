"""What a server's advertised extensions allow in MAIL and RCPT.

The parser turns parameters into typed options whatever the server supports;
whether a given session may use them depends on what the server advertised
(and on TLS, for REQUIRETLS). These checks are protocol rules, not policy, so
they live here and every driver applies the same ones.
"""

from __future__ import annotations

from ..reply import (
    NEEDS_SMTPUTF8, PARAMETER_NOT_IMPLEMENTED, REQUIRETLS_NEEDS_TLS, Reply,
)
from .capabilities import Capabilities
from .events import Mail, Rcpt

__all__ = ["mail_refusal", "rcpt_refusal", "smtputf8_refusal"]


def smtputf8_refusal(address: str, smtputf8: bool) -> Reply | None:
    """RFC 6531 3.4: a non-ASCII address needs SMTPUTF8 on the transaction."""
    if smtputf8 or address.isascii():
        return None
    return NEEDS_SMTPUTF8


def mail_refusal(event: Mail, caps: Capabilities, *, tls: bool) -> Reply | None:
    """The reply refusing ``event`` under ``caps``, or None if it is acceptable."""
    options = event.options
    if options.extra:
        return PARAMETER_NOT_IMPLEMENTED  # RFC 5321 4.1.1.11: 555
    unsupported = (
        (options.size is not None and caps.max_size is None)
        or (options.body == "8BITMIME" and not caps.eightbitmime)
        or (options.body == "BINARYMIME" and not (caps.binarymime and caps.chunking))
        or (options.smtputf8 and not caps.smtputf8)
        or ((options.ret is not None or options.envid is not None) and not caps.dsn)
        or (options.auth is not None and not caps.has("auth"))
        or (options.mt_priority is not None and not caps.has("mt-priority"))
    )
    if unsupported:
        return PARAMETER_NOT_IMPLEMENTED
    if options.requiretls and not (tls and caps.requiretls):
        return REQUIRETLS_NEEDS_TLS
    return smtputf8_refusal(event.address, options.smtputf8)


def rcpt_refusal(event: Rcpt, caps: Capabilities, *, smtputf8: bool) -> Reply | None:
    options = event.options
    if options.extra or ((options.notify is not None or options.orcpt is not None) and not caps.dsn):
        return PARAMETER_NOT_IMPLEMENTED
    return smtputf8_refusal(event.address, smtputf8)

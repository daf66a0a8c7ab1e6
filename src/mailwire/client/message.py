"""From an ``email`` message to an envelope and wire bytes (pure functions).

The rules are the standard library's ``smtplib.send_message`` rules, kept in
one place so that the drop-in adapter and the native client agree: the
envelope sender is Sender (else From), recipients are To, Cc and Bcc; when the
message carries one Resent- block (RFC 5322 3.6.6) the Resent- fields are used
instead, and more than one block is an error rather than a guess. Bcc and
Resent-Bcc are never transmitted.

Flattening picks the encoding the server allows: with non-ASCII addresses the
message needs SMTPUTF8 (and is flattened with ``utf8=True``); with 8-bit
content and no 8BITMIME the generator re-encodes parts as 7-bit
(quoted-printable or base64) instead of sending bytes the server did not agree
to take.
"""

from __future__ import annotations

import copy
import email.generator
import email.policy
import email.utils
import io
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import Message
from email.policy import Policy

__all__ = ["Envelope", "envelope_from_headers", "flatten", "needs_smtputf8", "has_8bit"]


@dataclass(frozen=True, slots=True)
class Envelope:
    mail_from: str
    rcpt_to: tuple[str, ...]


def envelope_from_headers(
    msg: Message, mail_from: str | None = None, rcpt_to: Sequence[str] | None = None
) -> Envelope:
    """The envelope for ``msg``: given values win, the rest come from headers."""
    resent = msg.get_all("Resent-Date")
    if resent is None:
        prefix = ""
    elif len(resent) == 1:
        prefix = "Resent-"
    else:
        raise ValueError("message has more than one 'Resent-' header block")
    if mail_from is None:
        field = msg[prefix + "Sender"] if (prefix + "Sender") in msg else msg[prefix + "From"]
        if field is None:
            raise ValueError(f"message has no {prefix}From or {prefix}Sender header and no sender was given")
        mail_from = email.utils.getaddresses([str(field)])[0][1]
    if rcpt_to is None:
        fields = [str(f) for f in (msg[prefix + "To"], msg[prefix + "Bcc"], msg[prefix + "Cc"]) if f is not None]
        rcpt_to = [addr for _, addr in email.utils.getaddresses(fields) if addr]
    return Envelope(mail_from, tuple(rcpt_to))


def needs_smtputf8(envelope: Envelope) -> bool:
    return not "".join([envelope.mail_from, *envelope.rcpt_to]).isascii()


def has_8bit(data: bytes) -> bool:
    return not data.isascii()


def flatten(
    msg: Message, *, utf8: bool = False, allow_8bit: bool = True, mangle_from: bool | None = None
) -> bytes:
    """Wire bytes of ``msg`` without Bcc headers, CRLF line endings.

    ``utf8`` flattens headers as UTF-8 (SMTPUTF8); without ``allow_8bit`` the
    policy is cloned with ``cte_type="7bit"`` so 8-bit parts are re-encoded.
    ``mangle_from`` overrides the policy's ``mangle_from_`` (``>From `` in the
    body): ``smtplib.send_message`` mangles unless the message needs SMTPUTF8.
    """
    copy_ = copy.copy(msg)
    del copy_["Bcc"]
    del copy_["Resent-Bcc"]
    policy: Policy = msg.policy
    if utf8:
        # compat32 (plain Message) has no utf8 switch; SMTPUTF8 is its equivalent.
        policy = policy.clone(utf8=True) if isinstance(policy, email.policy.EmailPolicy) else email.policy.SMTPUTF8
    elif not allow_8bit:
        policy = policy.clone(cte_type="7bit")
    with io.BytesIO() as out:
        generator = email.generator.BytesGenerator(out, mangle_from_=mangle_from, policy=policy)
        generator.flatten(copy_, linesep="\r\n")
        return out.getvalue()

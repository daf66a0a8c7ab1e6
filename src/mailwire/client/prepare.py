"""Turn what a caller hands ``send()`` into a ``Transaction`` the server can take.

This is where the message meets the server's capabilities, before any byte is
written: the envelope comes from the headers unless given, SMTPUTF8 and
8BITMIME are asked for when the message needs them (and refused locally when
the server lacks them), SIZE is declared and checked against the server's
limit, DSN and REQUIRETLS need their extensions. Failing here, with a clear
message, beats failing halfway through a pipelined transaction.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterable, Iterable, Mapping, Sequence
from email.message import Message
from typing import BinaryIO, Union

from ..errors import NotSupportedError, SMTPError
from ..protocol.capabilities import Capabilities
from ..protocol.grammar import check_address
from ..protocol.params import MailOptions, RcptOptions, mail_params_text, rcpt_params_text
from .transaction import Content, Transaction
from ..result import SendResult
from .message import Envelope, envelope_from_headers, flatten, has_8bit, needs_smtputf8

__all__ = [
    "MessageLike", "RcptOptionsArg", "Item", "prepare", "prepare_items", "outcome_or_raise", "check_content",
]

# A message, or its content: whole, a binary file, or an iterable of bytes
# pieces sent as they come (async: for the asyncio client only).
MessageLike = Union[Message, bytes, bytearray, memoryview, BinaryIO, Iterable[bytes], AsyncIterable[bytes]]
RcptOptionsArg = Union[RcptOptions, Mapping[str, RcptOptions], None]
# What send_many takes: a message, or (message, mail_from, rcpt_to).
Item = Union[MessageLike, tuple[MessageLike, Union[str, None], Union[Sequence[str], None]]]


def prepare_items(
    items: Iterable[Item], caps: Capabilities, *, chunking: bool, tls_active: bool, asynchronous: bool = True,
) -> list[Transaction]:
    """Every item of a batch prepared before anything is sent."""
    batch = []
    for item in items:
        message, mail_from, rcpt_to = item if isinstance(item, tuple) else (item, None, None)
        batch.append(prepare(
            message, mail_from, rcpt_to, caps, chunking=chunking, tls_active=tls_active,
            asynchronous=asynchronous,
        ))
    return batch


def check_content(content: object, *, asynchronous: bool) -> None:
    """Refuse, before anything is written, content no client can send (text)
    and an async iterable given to the blocking client."""
    if isinstance(content, str):
        raise TypeError("message content must be bytes (or a Message), not str")
    if not asynchronous and isinstance(content, AsyncIterable):
        raise TypeError("an async iterable of content needs the asyncio client (AsyncSMTPClient)")


def outcome_or_raise(outcome: SendResult | SMTPError) -> SendResult:
    """``send()``'s rule: a result, or the error that says nothing was delivered."""
    if isinstance(outcome, SMTPError):
        raise outcome
    return outcome


_NO_OPTIONS = MailOptions()


def prepare(
    message: MessageLike,
    mail_from: str | None,
    rcpt_to: Sequence[str] | str | None,
    caps: Capabilities,
    *,
    mail_options: MailOptions | None = None,
    rcpt_options: RcptOptionsArg = None,
    chunking: bool = False,
    tls_active: bool = False,
    asynchronous: bool = True,
) -> Transaction:
    options = mail_options or _NO_OPTIONS
    if isinstance(rcpt_to, str):
        rcpt_to = [rcpt_to]
    if isinstance(message, Message):
        envelope = envelope_from_headers(message, mail_from, rcpt_to)
        utf8 = needs_smtputf8(envelope) or options.smtputf8
        content: Content = _flatten(message, utf8 and caps.smtputf8, caps.eightbitmime)
    else:
        check_content(message, asynchronous=asynchronous)
        if mail_from is None or rcpt_to is None:
            raise TypeError("a message given as bytes needs mail_from and rcpt_to")
        envelope = Envelope(mail_from, tuple(rcpt_to))
        utf8 = needs_smtputf8(envelope) or options.smtputf8
        content = bytes(message) if isinstance(message, (bytearray, memoryview)) else message
    if not envelope.rcpt_to:
        raise ValueError("no recipients: give rcpt_to or To/Cc/Bcc headers")
    check_address(envelope.mail_from, "sender")
    for rcpt in envelope.rcpt_to:
        check_address(rcpt, "recipient")
    options = _negotiate(options, content, utf8, caps, chunking, tls_active)
    per_rcpt = _rcpt_options(rcpt_options, envelope.rcpt_to, caps)
    size = _known_size(content)
    if size is not None and caps.has("size"):
        refusal = caps.size_refusal(size)
        if refusal is not None:
            raise SMTPError(refusal)
        options = options.with_(size=size)
    # Format the parameters once here: a bad value (a CR in an extra
    # parameter, an unknown NOTIFY) is refused before anything is written,
    # not halfway through a pipelined group, which would cost the connection.
    mail_params_text(options)
    for distinct in set(per_rcpt):
        rcpt_params_text(distinct)
    return Transaction(envelope.mail_from, envelope.rcpt_to, content, options, per_rcpt)


def _flatten(message: Message, utf8: bool, allow_8bit: bool) -> bytes:
    try:
        return flatten(message, utf8=utf8, allow_8bit=allow_8bit)
    except UnicodeEncodeError:
        # The 7-bit generator re-encodes 8-bit parts by their charset; a part
        # without one (parsed from raw bytes) cannot be, and must not go raw.
        raise NotSupportedError(
            "the message has an 8-bit part without a charset, and the server does not "
            "advertise 8BITMIME (RFC 6152): it cannot be sent as 7-bit"
        ) from None


def _negotiate(
    options: MailOptions, content: Content, utf8: bool, caps: Capabilities,
    chunking: bool, tls_active: bool,
) -> MailOptions:
    if utf8:
        if not caps.smtputf8:
            raise NotSupportedError(
                "the addresses need SMTPUTF8 (RFC 6531), which the server does not advertise"
            )
        options = options.with_(smtputf8=True)
    if options.body == "BINARYMIME" and not (caps.binarymime and chunking):
        raise NotSupportedError("BODY=BINARYMIME needs BINARYMIME and CHUNKING (RFC 3030)")
    if options.body is None and isinstance(content, bytes) and has_8bit(content) and caps.eightbitmime:
        options = options.with_(body="8BITMIME")
    if (options.ret or options.envid) and not caps.dsn:
        raise NotSupportedError("DSN options given, but the server does not advertise DSN (RFC 3461)")
    if options.requiretls and not (tls_active and caps.requiretls):
        raise NotSupportedError("REQUIRETLS needs a TLS session and the REQUIRETLS extension (RFC 8689)")
    if options.mt_priority is not None and not caps.has("mt-priority"):
        raise NotSupportedError("MT-PRIORITY given, but the server does not advertise it (RFC 6710)")
    return options


def _rcpt_options(arg: RcptOptionsArg, rcpts: Sequence[str], caps: Capabilities) -> list[RcptOptions]:
    if arg is None:
        return []
    if isinstance(arg, RcptOptions):
        chosen = [arg] * len(rcpts)
    else:
        unknown = set(arg) - set(rcpts)
        if unknown:
            raise ValueError(f"rcpt_options for addresses not among the recipients: {sorted(unknown)}")
        chosen = [arg.get(rcpt, RcptOptions()) for rcpt in rcpts]
    if any(o.notify is not None or o.orcpt is not None for o in chosen) and not caps.dsn:
        raise NotSupportedError("DSN options given, but the server does not advertise DSN (RFC 3461)")
    return chosen


def _known_size(content: Content) -> int | None:
    if isinstance(content, bytes):
        return len(content)
    if not hasattr(content, "read"):
        return None  # an iterable: its size is known at its end
    file: BinaryIO = content  # type: ignore[assignment]  # it reads: a file
    try:
        return os.fstat(file.fileno()).st_size - file.tell()
    except (AttributeError, OSError, ValueError):
        return None

"""Releasing a caught message: its stored file, streamed to a real server by mailwire's own client.

``release(inbox, message_id, recipients, relay)`` is what Mailpit's
``POST /api/v1/message/{ID}/release`` does, without HTTP: the stored file
is read a chunk at a time in a thread and handed, as an async iterable,
to the server's ``Relay`` backend (``Relay.forward_stream``: mailwire's
``AsyncSMTPClient``, its failures turned into replies in one place), so a
20 MB message costs a chunk of memory, not 20 MB. The client verifies the
relay's certificate (``ReleaseRelay.ssl_context``: the system's trust, or
a private CA's); nothing here turns that off.

What is sent is the message as received with Mailpit's changes and no
others, made to the header section as it streams past (each field is
judged by its first line, so no field is ever held whole):

* the catcher's trace lines (``Return-Path:``, ``X-Mailwire-Envelope:``)
  and any other ``Return-Path`` are dropped: RFC 5321 4.4 has the final
  delivery add it, and the sender must not bring one;
* ``Bcc`` is dropped, as every sender does;
* ``Date`` is set to now and ``Message-ID`` to a new one (kept with
  ``preserve_message_ids``, Mailpit's option), added if missing: the relay
  sees a new message, not a replay a spam filter would flag.

The envelope sender is the ``Sender`` header's address, else ``From``'s,
or the relay's ``return_path`` when set (Mailpit's ReturnPath). Refusals
before anything is sent (a recipient that is no address, one the relay's
``allowed_recipients`` does not match or ``blocked_recipients`` does, a
message without a sender) are ``ReleaseRefused`` (a ``ValueError``: 400);
a relay that cannot be reached, fails TLS, or refuses is ``ReleaseFailed``
with what it said (502).
"""

from __future__ import annotations

import asyncio
import email.utils
import re
import ssl
import uuid
from collections.abc import AsyncIterator, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Literal

from ..errors import LocalProtocolError, SMTPError
from ..protocol.grammar import check_address
from ..protocol.params import MailOptions
from ..result import SendResult
from ..server.backends.relay import Relay
from ..server.envelope import Envelope
from .store import Inbox
from .summary import TRACE_HEADER

__all__ = ["ReleaseRelay", "RelayTLS", "ReleaseRefused", "ReleaseFailed", "release", "recipient",
           "check_recipients", "envelope_sender", "pieces", "CHUNK", "MAX_RECIPIENTS"]

CHUNK = 1 << 18  # octets read from the stored file, then sent, at a time
MAX_RECIPIENTS = 100
_SENDER_CAP = 1 << 16  # octets of a From or Sender field read to find the envelope sender
RelayTLS = Literal["starttls", "implicit", "none"]


class ReleaseRefused(ValueError):
    """The release cannot be made as asked; nothing was sent (400)."""


class ReleaseFailed(Exception):
    """The relay could not be reached, failed TLS, or refused (502)."""


@dataclass(frozen=True)
class ReleaseRelay:
    """Where released messages go and what may be released there.

    ``ssl_context`` verifies the relay (None: a default context, the
    system's trust); ``tls`` "none" sends in plaintext and is for a relay
    on this machine only (the CLI asks for it explicitly and warns).
    ``allowed_recipients``/``blocked_recipients`` are searched in each
    recipient's address, case-insensitively, as Mailpit's regexps are.
    """

    host: str
    port: int = 25
    tls: RelayTLS = "starttls"
    auth: tuple[str, str] | None = field(default=None, repr=False)
    ssl_context: ssl.SSLContext | None = field(default=None, compare=False)
    allowed_recipients: re.Pattern[str] | None = None
    blocked_recipients: re.Pattern[str] | None = None
    return_path: str = ""
    preserve_message_ids: bool = False
    timeout: float = 60.0
    upstream: Relay = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # The server's Relay backend forwards: one place for how a message
        # goes upstream (streamed, TLS verified, 8BITMIME, failures as replies).
        object.__setattr__(self, "upstream", Relay(
            self.host, self.port, tls=self.tls, auth=self.auth, ssl_context=self.ssl_context, timeout=self.timeout))

    @property
    def server(self) -> str:
        """``host:port`` (an IPv6 address in brackets), for messages and the web UI."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def recipient(text: str) -> str:
    """The address of one recipient given as ``a@x`` or ``Name <a@x>``
    (``ReleaseRefused`` if it is not exactly one address fit for RCPT)."""
    found = email.utils.getaddresses([text]) if isinstance(text, str) else []
    # getaddresses() mends what it cannot parse ('a@b c' gives 'a@bc'): refuse that.
    if len(found) != 1 or not found[0][1] or found[0][1] not in text:
        raise ReleaseRefused(f"not an email address: {text!r}")
    address = found[0][1]
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise ReleaseRefused(f"not an email address: {text!r}")
    try:
        check_address(address, "recipient")
    except LocalProtocolError as err:
        raise ReleaseRefused(str(err)) from None
    return address


def check_recipients(relay: ReleaseRelay, given: Sequence[str]) -> list[str]:
    """The addresses to release to, each checked against the relay's
    allowed and blocked patterns; every one that fails is named."""
    if not given:
        raise ReleaseRefused("no recipients: To must list at least one address")
    if len(given) > MAX_RECIPIENTS:
        raise ReleaseRefused(f"too many recipients: at most {MAX_RECIPIENTS}")
    addresses = [recipient(text) for text in given]
    allowed, blocked = relay.allowed_recipients, relay.blocked_recipients
    not_allowed = [a for a in addresses if allowed is not None and not allowed.search(a)]
    if not_allowed:
        raise ReleaseRefused(f"not allowed by the relay's allowed recipients ({allowed.pattern if allowed else ''}): "
                             + ", ".join(not_allowed))
    refused = [a for a in addresses if blocked is not None and blocked.search(a)]
    if refused:
        raise ReleaseRefused("blocked by the relay's blocked recipients: " + ", ".join(refused))
    return list(dict.fromkeys(addresses))


# -- the stored file -----------------------------------------------------------------


def _head(file: IO[bytes]) -> Iterator[tuple[str | None, bool, bytes]]:
    """Each line of the header section as (the lower-case name of the field
    it belongs to, whether it starts that field, the line); the empty line
    ending the section comes last with the name None. A line longer than
    CHUNK comes in pieces, the later ones as continuations."""
    name = ""
    at_start = True
    while line := file.readline(CHUNK):
        first = False
        if at_start:
            if line in (b"\r\n", b"\n"):
                yield None, True, line
                return
            if line[:1] not in (b" ", b"\t"):
                first = True
                colon = line.find(b":")
                name = line[:colon].strip().lower().decode("latin-1") if colon > 0 else ""
        yield name, first, line
        at_start = line.endswith(b"\n")


def envelope_sender(file: IO[bytes]) -> str:
    """The address of the first ``Sender`` field, else of the first ``From``
    (empty if neither has one); the file is left where the header section ends."""
    fields: dict[str, bytes] = {}
    taking = ""
    for name, first, line in _head(file):
        if first:
            taking = name if name in ("from", "sender") and name not in fields else ""
            if taking:
                fields[taking] = b""
        if taking and len(fields[taking]) < _SENDER_CAP:
            fields[taking] += line
    for name in ("sender", "from"):
        value = fields.get(name, b"").partition(b":")[2].decode("utf-8", "replace")
        found = [a for _, a in email.utils.getaddresses([" ".join(value.split())]) if "@" in a]
        if found:
            return found[0]
    return ""


def _new_fields(relay: ReleaseRelay) -> dict[str, bytes]:
    """The fields set on the way out, by lower-case name: each replaces the
    message's own (or is added before the header section ends)."""
    fields = {"date": b"Date: " + email.utils.formatdate(localtime=True).encode("ascii")}
    if not relay.preserve_message_ids:
        fields["message-id"] = f"Message-ID: <{uuid.uuid4().hex}@mailwire>".encode("ascii")
    return fields


_DROPPED = frozenset({"bcc", "return-path"})


def pieces(file: IO[bytes], relay: ReleaseRelay) -> Generator[bytes, None, None]:
    """The message to release, about CHUNK octets a piece: the header
    section changed as the module says, then the body as stored."""
    setting = _new_fields(relay)
    done: set[str] = set()  # fields set: another of the same name is dropped
    out: list[bytes] = []
    size = count = 0
    eol, last = b"\r\n", b"\n"
    keep = ended = top_return_path = False
    for name, first, line in _head(file):
        if name is None:
            ended = True
            out.extend(value + eol for value in setting.values())
            out.append(line)
            break
        if first:
            count += 1
            eol = b"\r\n" if line.endswith(b"\r\n") else b"\n" if line.endswith(b"\n") else eol
            trace = count == 2 and top_return_path and name == TRACE_HEADER.lower()
            top_return_path = top_return_path or (count == 1 and name == "return-path")
            keep = not (name in _DROPPED or trace or name in done)
            if name in setting:
                out.append(setting.pop(name) + eol)
                done.add(name)
                keep = False
        if keep:
            out.append(line)
            size += len(line)
            last = line
            if size >= CHUNK:
                yield b"".join(out)
                out, size = [], 0
    if not ended:  # no body: the fields still to set end the header section
        if not last.endswith(b"\n"):
            out.append(eol)
        out.extend(value + eol for value in setting.values())
    yield b"".join(out)
    while chunk := file.read(CHUNK):
        yield chunk


# -- sending -------------------------------------------------------------------------


async def _threaded(source: Iterator[bytes]) -> AsyncIterator[bytes]:
    """``source``'s pieces, each read in a thread (file I/O off the loop)."""
    while (piece := await asyncio.to_thread(next, source, None)) is not None:
        yield piece


def _failure(relay: ReleaseRelay, err: SMTPError) -> ReleaseFailed:
    """What the caller hears of ``Relay``'s refusal ``err`` (its reply
    carries the upstream's own, or what went wrong on the way)."""
    if isinstance(err.__cause__, ssl.SSLCertVerificationError):
        return ReleaseFailed(
            f"TLS with {relay.server} failed: its certificate cannot be verified "
            f"({err.__cause__.verify_message}); a relay with a private CA needs its CA certificate "
            "(mailwire serve --release-ca FILE)")
    reply = err.reply
    if reply.text.startswith(_UPSTREAM):  # the relay's own reply, as Relay passes it on
        said = " ".join(str(p) for p in (reply.code, reply.enhanced, reply.text[len(_UPSTREAM):]) if p)
        return ReleaseFailed(f"the relay {relay.server} refused the message: {said}")
    return ReleaseFailed(f"cannot release to {relay.server}: {reply.text}")


_UPSTREAM = "upstream: "


async def _send(relay: ReleaseRelay, sender: str, recipients: list[str], content: AsyncIterator[bytes]) -> SendResult:
    # 8BITMIME is declared where the upstream offers it (RFC 6152 allows it for
    # any content); where it does not, Relay refuses 8-bit content as it passes.
    envelope = Envelope(sender, MailOptions(body="8BITMIME"), recipients)
    try:
        result = await relay.upstream.forward_stream(envelope, content)
    except SMTPError as err:
        raise _failure(relay, err) from None
    if result.refused:
        refused = "; ".join(f"{rcpt}: {reply}" for rcpt, reply in result.refused.items())
        raise ReleaseFailed(f"the relay {relay.server} took the message for {', '.join(result.accepted)} "
                            f"but refused {refused}")
    return result


async def release(inbox: Inbox, message_id: str, recipients: Sequence[str], relay: ReleaseRelay) -> SendResult:
    """Send the stored message ``message_id`` to ``recipients`` through
    ``relay`` (see the module); the message stays in the inbox.
    ``MessageNotFound``, ``ReleaseRefused`` or ``ReleaseFailed`` if not."""
    addresses = check_recipients(relay, recipients)
    file = await asyncio.to_thread(inbox.raw, message_id)
    source: Generator[bytes, None, None] | None = None
    try:
        sender = relay.return_path or await asyncio.to_thread(envelope_sender, file)
        if not sender:
            raise ReleaseRefused("the message has no From or Sender address to send it from "
                                 "(mailwire serve --release-return-path gives one)")
        await asyncio.to_thread(file.seek, 0)
        source = pieces(file, relay)
        return await _send(relay, sender, addresses, _threaded(source))
    finally:
        if source is not None:
            try:
                source.close()
            except ValueError:
                pass  # still reading in a thread (the request was cancelled): the file's close ends it
        await asyncio.to_thread(file.close)

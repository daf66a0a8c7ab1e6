"""What a backend is told: the session it serves and the message it gets.

``SessionInfo`` describes the connection — who the peer is (the real client
when the PROXY protocol is on), what it called itself, whether the channel is
encrypted and how, who authenticated. It is updated by the driver as the
session goes (EHLO, STARTTLS, AUTH) and handed to the backend by reference.
``Envelope`` is one complete transaction: sender and recipients with their
typed options, and the message bytes, only ever built once the data ended.
A message streamed to its session (``streaming.py``) is not kept whole, so
its envelope's ``content`` is empty; what describes it still is there: its
``size`` and its header section (``head``), which is what a log line, a
test's assertion or an ``on_delivered`` hook reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..protocol.params import MailOptions, RcptOptions

__all__ = ["SessionInfo", "TLSInfo", "ProxyInfo", "Envelope", "HEAD_LIMIT"]

# The most of a streamed message's start its envelope keeps (``head``): a
# header section longer than this is cut (and its end not found in it).
HEAD_LIMIT = 65536

# (host, port) for TCP over IPv4, (host, port, flowinfo, scope_id) over IPv6
# (as the socket names its peer), a path for Unix sockets.
Address = tuple[str, int] | tuple[str, int, int, int] | str


@dataclass(frozen=True, slots=True)
class TLSInfo:
    version: str
    cipher: str
    bits: int
    # The client's certificate (as ``SSLSocket.getpeercert()`` gives it), if any.
    peer_certificate: dict[str, object] | None = None
    implicit: bool = False  # port-465 style rather than STARTTLS

    @classmethod
    def of(cls, ssl_object: Any, *, implicit: bool) -> TLSInfo:
        """What an ``ssl.SSLObject`` (a transport's ``ssl_object``) says."""
        cipher = ssl_object.cipher()
        return cls(
            version=ssl_object.version() or "", cipher=cipher[0] if cipher else "",
            bits=cipher[2] if cipher else 0, peer_certificate=ssl_object.getpeercert() or None,
            implicit=implicit,
        )


@dataclass(frozen=True, slots=True)
class ProxyInfo:
    """What a PROXY protocol header said (v1 or v2)."""

    version: int
    source: Address | None
    destination: Address | None
    # The proxy's own address: the TCP peer we actually talk to.
    proxy: Address | None = None
    tlvs: tuple[tuple[int, bytes], ...] = ()


@dataclass(slots=True)
class SessionInfo:
    peer: Address | None
    local: Address | None = None
    hostname: str = "localhost"  # our name, in the greeting and EHLO reply
    lmtp: bool = False
    helo_name: str | None = None
    esmtp: bool = False  # EHLO/LHLO rather than HELO
    tls: TLSInfo | None = None
    auth_identity: str | None = None
    auth_mechanism: str | None = None
    proxy: ProxyInfo | None = None

    @property
    def secure(self) -> bool:
        return self.tls is not None


@dataclass(slots=True)
class Envelope:
    """One transaction, complete: what ``Session.data`` receives."""

    mail_from: str
    mail_options: MailOptions = field(default_factory=MailOptions)
    rcpt_to: list[str] = field(default_factory=list)
    rcpt_options: list[RcptOptions] = field(default_factory=list)
    content: bytes = b""
    session: SessionInfo | None = None
    # Octets of the message as received (the server sets it at the end of
    # the data, whichever way the session took it).
    size: int = 0
    # A streamed message's header section as received, up to and with the
    # empty line that ends it (at most HEAD_LIMIT octets); empty for a
    # message held whole, whose ``content`` has it: see ``header_section``.
    head: bytes = b""

    @property
    def smtputf8(self) -> bool:
        return self.mail_options.smtputf8

    def __post_init__(self) -> None:
        if not self.size:
            self.size = len(self.content)

    def header_section(self) -> bytes:
        """The message's header section, up to and with the empty line that
        ends it (at most HEAD_LIMIT octets), however the message was taken:
        streamed (``head``) or whole (``content``)."""
        if not self.content:
            return self.head
        end = _end_of_head(self.content, HEAD_LIMIT)
        return self.content[: end if end >= 0 else HEAD_LIMIT]


def _end_of_head(data: bytes, stop: int) -> int:
    """Where the empty line ending a header section (CRLF or LF) ends in
    ``data[:stop]``, or -1."""
    ends = [i + n for i, n in ((data.find(b"\r\n\r\n", 0, stop), 4), (data.find(b"\n\n", 0, stop), 2)) if i >= 0]
    return min(ends) if ends else -1


def keep_head(envelope: Envelope, data: bytes) -> bool:
    """Add a streamed message's next ``data`` to ``envelope.head``; whether
    the head is complete (ended, or HEAD_LIMIT reached): nothing more to add."""
    old = envelope.head
    if old:  # a header section longer than the first chunk: rare, and small
        data = old + data[: HEAD_LIMIT - len(old)]
    end = _end_of_head(data, HEAD_LIMIT)
    envelope.head = data[: end if end >= 0 else HEAD_LIMIT]
    return end >= 0 or len(envelope.head) >= HEAD_LIMIT

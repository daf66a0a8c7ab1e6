"""What a backend is told: the session it serves and the message it gets.

``SessionInfo`` describes the connection — who the peer is (the real client
when the PROXY protocol is on), what it called itself, whether the channel is
encrypted and how, who authenticated. It is updated by the driver as the
session goes (EHLO, STARTTLS, AUTH) and handed to the backend by reference.
``Envelope`` is one complete transaction: sender and recipients with their
typed options, and the message bytes, only ever built once the data ended.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..protocol.params import MailOptions, RcptOptions

__all__ = ["SessionInfo", "TLSInfo", "ProxyInfo", "Envelope"]

Address = tuple[str, int] | str  # (host, port) for TCP, a path for Unix sockets


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

    @property
    def smtputf8(self) -> bool:
        return self.mail_options.smtputf8

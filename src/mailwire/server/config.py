"""A server's settings, in one frozen object shared by all its connections.

Everything a connection needs to decide what to say — names, limits, TLS, the
AUTH mechanisms on offer, the PROXY protocol — is here, so the per-connection
code reads one object and nothing global. ``keywords`` is what EHLO
advertises, derived from the settings: what is advertised is exactly what is
then enforced.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass, field

from ..limits import DEFAULT_LIMITS, Limits
from ..protocol.capabilities import Capabilities, server_keywords
from ..protocol.data import BareLineEndings
from ..sasl import SERVER_MECHANISMS
from .clients import parse_networks

__all__ = ["ServerConfig"]


@dataclass(frozen=True)
class ServerConfig:
    hostname: str = field(default_factory=socket.getfqdn)
    greeting: str = "ESMTP mailwire"
    limits: Limits = DEFAULT_LIMITS
    lmtp: bool = False
    # STARTTLS is offered when a context is given; with implicit_tls every
    # connection is TLS from its first byte (port 465 style, RFC 8314).
    tls_context: ssl.SSLContext | None = None
    implicit_tls: bool = False
    auth_mechanisms: tuple[str, ...] = ("PLAIN", "LOGIN")
    # RFC 4954 4: AUTH over plaintext is refused (538) unless allowed.
    allow_plaintext_auth: bool = False
    proxy_protocol: bool = False
    bare_line_endings: BareLineEndings = BareLineEndings.REFUSE
    chunking: bool = True
    dsn: bool = True
    smtputf8: bool = True
    # Clients the per-address limits (Limits.connections_per_client, the AUTH
    # failure budget) do not apply to: loopback, as Postfix exempts
    # $mynetworks; see server/clients.py. () applies them to every client.
    client_limit_exempt: tuple[str, ...] = ("127.0.0.0/8", "::1/128")

    def __post_init__(self) -> None:
        unknown = [m for m in self.auth_mechanisms if m.upper() not in SERVER_MECHANISMS]
        if unknown:
            raise ValueError(f"unknown AUTH mechanisms: {unknown}; known: {sorted(SERVER_MECHANISMS)}")
        if self.implicit_tls and self.tls_context is None:
            raise ValueError("implicit_tls needs a tls_context")
        parse_networks(self.client_limit_exempt)  # ValueError for a bad one, now

    def keywords(self, *, tls: bool, auth: bool) -> list[str]:
        """EHLO keywords for a session in this TLS state (with an AUTH-capable backend)."""
        offer_auth = auth and bool(self.auth_mechanisms) and (tls or self.allow_plaintext_auth)
        return server_keywords(
            max_size=self.limits.message_size,
            starttls=self.tls_context is not None and not tls,
            auth=[m.upper() for m in self.auth_mechanisms] if offer_auth else [],
            requiretls=tls,
            chunking=self.chunking,
            dsn=self.dsn,
            smtputf8=self.smtputf8,
        )

    def capabilities(self, *, tls: bool, auth: bool) -> Capabilities:
        features: dict[str, str] = {}
        for keyword in self.keywords(tls=tls, auth=auth):
            name, _, params = keyword.partition(" ")
            features[name.lower()] = params
        return Capabilities(self.hostname, features)

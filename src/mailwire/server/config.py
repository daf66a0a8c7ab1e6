"""A server's settings, in one frozen object shared by all its connections.

Everything a connection needs to decide what to say — names, limits, TLS, the
AUTH mechanisms on offer, the PROXY protocol — is here, so the per-connection
code reads one object and nothing global. What EHLO advertises is not listed
here but derived: ``extensions`` gives the core its ``ServerExtensions``, from
which the core both writes the EHLO keywords and refuses what they do not
allow, so what is advertised is exactly what is enforced.

Three hooks make a server do more without a wrapper around its backend:
``authenticator`` checks credentials for every session (AUTH is offered with
it, as with a session that implements ``AuthSession``), and ``on_delivered``
is told of every message a session accepted (``mailwire serve`` prints its
line there, ``mailwire.testing`` records the envelope); ``chaos`` makes it
fail when told to (``chaos.py``).
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass, field, replace

from ..limits import DEFAULT_LIMITS, Limits
from ..protocol.data import BareLineEndings
from ..protocol.extensions import ServerExtensions
from .chaos import Chaos
from .envelope import Address
from .networks import Network, parse_networks
from .proxy_protocol import trusted_proxy
from .session import Authenticator, Delivered

__all__ = ["ServerConfig", "check_unix_mode"]


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
    # Who may send a PROXY header (with proxy_protocol on): the networks of
    # the proxies. Any other TCP peer is closed before a byte is read: the
    # header rewrites the client's address, so from anyone else it is a lie
    # waiting to be told (HAProxy's proxy-protocol.txt, section 1). Unix
    # socket peers are local and always trusted.
    proxy_from: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    _proxy_networks: tuple[Network, ...] = field(default=(), init=False, repr=False, compare=False)
    bare_line_endings: BareLineEndings = BareLineEndings.REFUSE
    chunking: bool = True
    dsn: bool = True
    smtputf8: bool = True
    # The permissions of a Unix socket the server listens on (start_unix).
    # A client needs write permission on the socket to connect, and an MTA's
    # LMTP client runs as its own user (Postfix: postfix), so the default is
    # Postfix's own for its sockets, 0666: access is controlled by the
    # directory the socket is put in, not by the socket.
    unix_mode: int = 0o666
    # Clients the per-address limits (Limits.connections_per_client, the AUTH
    # failure budget) do not apply to: loopback, as Postfix exempts
    # $mynetworks; see server/clients.py. () applies them to every client.
    client_limit_exempt: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    # Checks credentials for every session, instead of the session's own
    # AuthSession.authenticate; raise SMTPError (535 5.7.8) to refuse.
    authenticator: Authenticator | None = field(default=None, compare=False)
    # MAIL is refused (530 5.7.0, RFC 4954 6) until the client authenticated.
    require_auth: bool = False
    # Told of each message delivered (see session.Delivered).
    on_delivered: Delivered | None = field(default=None, compare=False)
    # Failures to inject (chaos.py): consulted where the server asks the
    # backend; the object is shared and may be changed while serving.
    chaos: Chaos | None = field(default=None, compare=False)
    # What the core is told it offers: without AUTH, and with it.
    _offers: tuple[ServerExtensions, ServerExtensions] = field(
        default=(ServerExtensions(), ServerExtensions()), init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        offer = ServerExtensions(
            chunking=self.chunking, dsn=self.dsn, smtputf8=self.smtputf8, starttls=self.tls_context is not None,
            auth_mechanisms=self.auth_mechanisms, plaintext_auth=self.allow_plaintext_auth,
            auth_required=self.require_auth,
        )  # ValueError for an AUTH mechanism the core cannot run
        object.__setattr__(self, "_offers", (replace(offer, auth_mechanisms=()), offer))
        if self.implicit_tls and self.tls_context is None:
            raise ValueError("implicit_tls needs a tls_context")
        check_unix_mode(self.unix_mode)
        networks = parse_networks(self.proxy_from)
        object.__setattr__(self, "proxy_from", tuple(str(n) for n in networks))
        object.__setattr__(self, "_proxy_networks", networks)
        parse_networks(self.client_limit_exempt)  # ValueError for a bad one, now

    def proxy_trusted(self, peer: Address | None) -> bool:
        """May this peer send a PROXY header (see ``proxy_from``)?"""
        return trusted_proxy(peer, self._proxy_networks)

    def extensions(self, *, auth: bool) -> ServerExtensions:
        """What a session of this server offers; ``auth``: something can
        check its credentials (``authenticator``, or an ``AuthSession``)."""
        return self._offers[auth]


def check_unix_mode(mode: int) -> int:
    """``mode`` if it is a socket's permission bits (0 to 0o777), else ValueError."""
    if isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 0o777:
        raise ValueError(f"a Unix socket mode is permission bits 0 to 0o777, not {mode!r}")
    return mode

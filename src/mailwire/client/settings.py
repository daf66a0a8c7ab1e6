"""How a client connects, in one frozen object both drivers share.

The blocking and the asyncio client take the same keyword arguments and mean
the same by them; holding them here keeps the two from drifting apart and
lets a pool hand one settings object to every connection it opens.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass, field

from ..limits import DEFAULT_LIMITS, Limits
from .dialog import AuthArg, TLSMode

__all__ = ["ClientSettings", "TLS_MODES", "local_name"]

TLS_MODES = ("starttls", "implicit", "none", "opportunistic")


@dataclass(frozen=True)
class ClientSettings:
    host: str = "localhost"
    port: int = 25
    tls: TLSMode = "starttls"
    auth: AuthArg = None
    # Seconds for each reply to arrive whole (a deadline per reply, never
    # re-armed by bytes trickling in), for the TLS handshake and for each
    # write; None waits for ever. RFC 5321 4.5.3.2 suggests minutes per
    # command for a relay; a program usually wants less.
    timeout: float | None = 60.0
    connect_timeout: float | None = None  # the TCP connect (and implicit TLS's handshake); default: timeout
    local_hostname: str | None = None
    source_address: tuple[str, int] | None = None
    ssl_context: ssl.SSLContext | None = field(default=None, compare=False)
    allow_plaintext_auth: bool = False
    pipelining: bool = True
    chunking: bool = True
    limits: Limits = DEFAULT_LIMITS
    lmtp: bool = False

    def __post_init__(self) -> None:
        if self.tls not in TLS_MODES:
            raise ValueError(f"tls must be one of {', '.join(TLS_MODES)}, not {self.tls!r}")
        if self.ssl_context is None and self.tls != "none":
            # Verified by default: the native API's promise, unlike smtplib's.
            object.__setattr__(self, "ssl_context", ssl.create_default_context())
        if self.is_unix and self.tls != "none" and self.context.check_hostname:
            raise ValueError(
                f"tls={self.tls!r} over the Unix socket {self.host} needs an ssl_context with "
                "check_hostname=False (a path has no host name to verify); or use tls='none'"
            )

    @classmethod
    def default_port(cls, tls: str, lmtp: bool) -> int:
        if tls == "implicit":
            return 465
        return 2003 if lmtp else 25

    @property
    def is_unix(self) -> bool:
        return self.host.startswith("/")

    @property
    def context(self) -> ssl.SSLContext:
        if self.ssl_context is None:
            object.__setattr__(self, "ssl_context", ssl.create_default_context())
        assert self.ssl_context is not None
        return self.ssl_context

    @property
    def server_hostname(self) -> str | None:
        """The name TLS verifies (SNI); a Unix socket path has none."""
        return None if self.is_unix else self.host

    @property
    def dial_timeout(self) -> float | None:
        return self.connect_timeout if self.connect_timeout is not None else self.timeout


def local_name(sock: socket.socket) -> str:
    """Our EHLO name: the host name if it is qualified, else an address literal.

    ``socket.getfqdn()`` (smtplib's choice) can stall on DNS for seconds;
    RFC 5321 4.1.4 allows an address literal when there is no usable name.
    """
    name = socket.gethostname()
    if "." in name:
        return name
    if sock.family == socket.AF_INET:
        return f"[{sock.getsockname()[0]}]"
    if sock.family == socket.AF_INET6:
        return f"[IPv6:{sock.getsockname()[0]}]"
    return name or "localhost"

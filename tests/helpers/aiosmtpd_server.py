"""aiosmtpd as a real peer: a threaded Controller on a free loopback port.

``aiosmtpd_server(...)`` starts aiosmtpd's ``Controller`` (or its LMTP class)
with the options a test asks for: a STARTTLS context, an implicit-TLS context
(port 465 style), AUTH against a dict of users. The ``RecordingHandler``
keeps every envelope and can refuse chosen senders, recipients or messages.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword

__all__ = ["RecordingHandler", "Running", "aiosmtpd_server"]


@dataclass
class RecordingHandler:
    """Keeps each delivered envelope; refuses what the test says to refuse."""

    refuse_rcpt: dict[str, str] = field(default_factory=dict)
    data_reply: str | None = None
    envelopes: list[Envelope] = field(default_factory=list)

    async def handle_RCPT(
        self, server: SMTP, session: Any, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        refusal = self.refuse_rcpt.get(address)
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Envelope) -> str:
        if self.data_reply is not None:
            return self.data_reply
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


class _FreePortController(Controller):
    """Binds port 0 and learns the real port before aiosmtpd probes it."""

    def __init__(self, handler: Any, *, lmtp: bool = False, **kwargs: Any) -> None:
        super().__init__(handler, port=0, **kwargs)
        self.lmtp = lmtp

    def factory(self) -> SMTP:
        cls = LMTP if self.lmtp else SMTP
        return cls(self.handler, **self.SMTP_kwargs)

    def _trigger_server(self) -> None:
        assert isinstance(self.server, asyncio.Server)
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]


@dataclass
class Running:
    controller: Controller
    handler: RecordingHandler

    @property
    def address(self) -> tuple[str, int]:
        return self.controller.hostname, self.controller.port


def _authenticator(users: dict[str, str]) -> Any:
    def check(server: SMTP, session: Any, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        if isinstance(data, LoginPassword):
            user, password = data.login.decode(), data.password.decode()
            if users.get(user) == password:
                return AuthResult(success=True, auth_data=user)
        return AuthResult(success=False, handled=False)

    return check


@contextmanager
def aiosmtpd_server(
    *,
    host: str = "127.0.0.1",
    starttls: ssl.SSLContext | None = None,
    implicit: ssl.SSLContext | None = None,
    users: dict[str, str] | None = None,
    handler: RecordingHandler | None = None,
    lmtp: bool = False,
    **smtp_kwargs: Any,
) -> Iterator[Running]:
    """A running aiosmtpd; ``starttls`` offers STARTTLS, ``implicit`` wraps the port in TLS."""
    handler = handler or RecordingHandler()
    if starttls is not None:
        smtp_kwargs["tls_context"] = starttls
    if users is not None:
        smtp_kwargs["authenticator"] = _authenticator(users)
    controller = _FreePortController(
        handler, lmtp=lmtp, hostname=host, ssl_context=implicit, ready_timeout=5.0, **smtp_kwargs
    )
    controller.start()
    try:
        yield Running(controller, handler)
    finally:
        controller.stop()

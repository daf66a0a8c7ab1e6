"""Servers for the smtplib parity tests: aiosmtpd that records every byte, and scripts.

``recording_server`` runs aiosmtpd (SMTP or LMTP, TCP or a Unix socket) in a
thread. Its protocol class records every byte each connection delivered, after
any TLS layer (``data_received`` sees plaintext), so a test can compare what
the stdlib's smtplib and the drop-in put on the wire, STARTTLS included. The
handler refuses what a test asks it to, answers VRFY, does CRAM-MD5 with a
fixed challenge (so both clients send the same bytes) and can answer LMTP's
end of data with one reply per recipient.

``scripted_server`` is for exact control over the replies: a function plays
the server on a real loopback socket; everything the client sent is recorded.

``parity`` and ``scripted_parity`` run one scenario (a function of the module
under test) with CPython's ``smtplib`` and then with ``mailwire.smtplib``, and
compare each step's outcome, the bytes the server received and the debug
output on stderr.
"""

from __future__ import annotations

import contextlib
import hmac
import io
import smtplib as std
import socket
import ssl
import sys
import tempfile
import threading
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller, UnixSocketController
from aiosmtpd.lmtp import LMTP as AioLMTP
from aiosmtpd.smtp import SMTP as AioSMTP, AuthResult, Envelope, LoginPassword, Session

import mailwire.smtplib as mw

TIMEOUT = 5.0
# How the running Python's smtplib spells MAIL's argument (3.13: "mail from:").
MAIL_FROM = b"from:" if sys.version_info >= (3, 13) else b"FROM:"
USERS = {"alice": "wonderland"}
CRAM_CHALLENGE = b"<1896.697170952@postoffice.example.net>"


@dataclass
class Handler:
    """What the server refuses and how it answers; keeps each delivered envelope."""

    refuse_mail: dict[str, str] = field(default_factory=dict)
    refuse_rcpt: dict[str, str] = field(default_factory=dict)
    data_reply: str | None = None
    lmtp_per_recipient: bool = False
    envelopes: list[Envelope] = field(default_factory=list)

    async def handle_MAIL(
        self, server: AioSMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        refusal = self.refuse_mail.get(address)
        if refusal is not None:
            return refusal
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: AioSMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        refusal = self.refuse_rcpt.get(address)
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: AioSMTP, session: Session, envelope: Envelope) -> str:
        if self.data_reply is not None:
            return self.data_reply
        self.envelopes.append(envelope)
        if self.lmtp_per_recipient:
            return "\r\n".join(f"250 2.0.0 <{r}> delivered" for r in envelope.rcpt_tos)
        return "250 Message accepted for delivery"

    async def handle_VRFY(self, server: AioSMTP, session: Session, envelope: Envelope, address: str) -> str:
        if address == "alice@example.com":
            return "250 Alice <alice@example.com>"
        return "550 No such user here"

    async def auth_CRAM__MD5(self, server: AioSMTP, args: list[str]) -> AuthResult:
        answer = await server.challenge_auth(CRAM_CHALLENGE)
        if not isinstance(answer, bytes):
            return AuthResult(success=False)  # challenge_auth() already answered
        user, _, digest = answer.decode().partition(" ")
        password = USERS.get(user, "")
        expected = hmac.new(password.encode(), CRAM_CHALLENGE, "md5").hexdigest()
        ok = bool(password) and hmac.compare_digest(digest, expected)
        return AuthResult(success=ok, handled=False, auth_data=user if ok else None)


def _authenticator(server: AioSMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
    if isinstance(data, LoginPassword) and USERS.get(data.login.decode()) == data.password.decode():
        return AuthResult(success=True, auth_data=data.login)
    return AuthResult(success=False, handled=False)


class _Recording:
    """Mixed into aiosmtpd's protocol: every byte a connection delivers, in order."""

    sessions: list[bytearray]

    def connection_made(self, transport: Any) -> None:
        if not hasattr(self, "received"):  # STARTTLS calls this again: same connection
            self.received = bytearray()
            self.sessions.append(self.received)
        super().connection_made(transport)  # type: ignore[misc]

    def data_received(self, data: bytes) -> None:
        self.received += data
        super().data_received(data)  # type: ignore[misc]


@dataclass
class Server:
    controller: Any
    handler: Handler
    sessions: list[bytearray]
    host: str
    port: int

    def received(self) -> list[bytes]:
        """The bytes of each connection so far (empty probes left out), then forget them."""
        out = [bytes(s) for s in self.sessions if s]
        self.sessions.clear()
        return out


class _TCP(Controller):
    def __init__(self, factory: Callable[[], AioSMTP], **kwargs: Any) -> None:
        super().__init__(None, hostname="127.0.0.1", port=0, ready_timeout=TIMEOUT, **kwargs)
        self._make = factory

    def factory(self) -> AioSMTP:
        return self._make()

    def _trigger_server(self) -> None:
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class _Unix(UnixSocketController):
    def __init__(self, factory: Callable[[], AioSMTP], path: str, **kwargs: Any) -> None:
        super().__init__(None, unix_socket=path, ready_timeout=TIMEOUT, **kwargs)
        self._make = factory

    def factory(self) -> AioSMTP:
        return self._make()


@contextmanager
def recording_server(
    handler: Handler | None = None,
    *,
    lmtp: bool = False,
    unix: bool = False,
    starttls: ssl.SSLContext | None = None,
    implicit: ssl.SSLContext | None = None,
    auth: bool = False,
    **smtp_kwargs: Any,
) -> Iterator[Server]:
    handler = handler or Handler()
    sessions: list[bytearray] = []
    base = AioLMTP if lmtp else AioSMTP
    protocol = type("RecordingProtocol", (_Recording, base), {"sessions": sessions})
    if starttls is not None:
        smtp_kwargs["tls_context"] = starttls
    if auth:
        smtp_kwargs.update(authenticator=_authenticator, auth_require_tls=False)
    smtp_kwargs.setdefault("hostname", "mx.example.com")
    smtp_kwargs.setdefault("enable_SMTPUTF8", True)

    def make() -> AioSMTP:
        return protocol(handler, **smtp_kwargs)  # type: ignore[no-any-return]

    with tempfile.TemporaryDirectory() as tmp:
        if unix:
            controller: Any = _Unix(make, str(Path(tmp) / "lmtp.sock"), ssl_context=implicit)
        else:
            controller = _TCP(make, ssl_context=implicit)
        controller.start()
        try:
            sessions.clear()  # the controller's own probe
            host = controller.unix_socket if unix else "127.0.0.1"
            yield Server(controller, handler, sessions, host, 0 if unix else controller.port)
        finally:
            controller.stop()


# -- scripted servers ------------------------------------------------------------


class Peer:
    """The server's side of one scripted connection."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.received = bytearray()
        self._buffer = bytearray()
        sock.settimeout(TIMEOUT)

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client left; what it sent is still recorded

    def _recv(self) -> bytes:
        try:
            return self.sock.recv(65536)
        except ConnectionResetError:
            return b""

    def line(self) -> bytes:
        """The next line the client sent, CRLF included (b"" at end of stream)."""
        while b"\n" not in self._buffer:
            chunk = self._recv()
            if not chunk:
                rest, self._buffer = bytes(self._buffer), bytearray()
                return rest
            self.received += chunk
            self._buffer += chunk
        end = self._buffer.index(b"\n") + 1
        line, self._buffer = bytes(self._buffer[:end]), self._buffer[end:]
        return line

    def until(self, marker: bytes) -> bytes:
        """Everything up to and including ``marker`` (the end of a message)."""
        while marker not in self._buffer:
            chunk = self._recv()
            if not chunk:
                raise EOFError(f"client closed before {marker!r}")
            self.received += chunk
            self._buffer += chunk
        end = self._buffer.index(marker) + len(marker)
        data, self._buffer = bytes(self._buffer[:end]), self._buffer[end:]
        return data

    def start_tls(self, context: ssl.SSLContext) -> bool:
        """Server side of the handshake (False if the client never made one)."""
        self._buffer.clear()
        try:
            self.sock = context.wrap_socket(self.sock, server_side=True)
        except (ssl.SSLError, OSError):
            return False
        self.sock.settimeout(TIMEOUT)
        return True

    def drain(self) -> None:
        """Read until the client closes (or the timeout)."""
        try:
            while self.line():
                pass
        except OSError:
            pass


class ScriptedServer:
    """Runs ``script(peer)`` for each connection, one after the other."""

    def __init__(self, script: Callable[[Peer], None], connections: int = 1) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(TIMEOUT)
        self.port = self.listener.getsockname()[1]
        self.peers: list[Peer] = []
        self.errors: list[BaseException] = []
        self._script = script
        self._connections = connections
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        for _ in range(self._connections):
            try:
                conn, _ = self.listener.accept()
            except OSError as err:
                self.errors.append(err)
                return
            peer = Peer(conn)
            self.peers.append(peer)
            try:
                self._script(peer)
            except Exception as err:  # reported by close()
                self.errors.append(err)
            finally:
                conn.close()

    def close(self) -> None:
        self._thread.join(TIMEOUT * 2)
        self.listener.close()
        assert not self._thread.is_alive(), "scripted server still running"
        if self.errors:
            raise self.errors[0]


@contextmanager
def scripted_server(script: Callable[[Peer], None], connections: int = 1) -> Iterator[ScriptedServer]:
    server = ScriptedServer(script, connections)
    try:
        yield server
    finally:
        server.close()


# -- certificates ------------------------------------------------------------------


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    return context


@pytest.fixture(scope="session")
def client_tls(ca: trustme.CA) -> ssl.SSLContext:
    return ssl.create_default_context(cadata=ca.cert_pem.bytes().decode("ascii"))


# -- running a scenario through both modules ---------------------------------------

CLIENT = "client.example"
Scenario = Callable[[types.ModuleType, Server, "Steps"], None]


def summary(exc: BaseException) -> tuple[Any, ...]:
    return (
        type(exc), exc.args, getattr(exc, "smtp_code", None), getattr(exc, "smtp_error", None),
        getattr(exc, "recipients", None), getattr(exc, "sender", None),
    )


class Steps(list[Any]):
    """Records what each call returned or raised."""

    def __call__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            value = fn(*args, **kwargs)
        except Exception as exc:  # recorded, compared with the other module's
            self.append(("raised", fn.__name__, summary(exc)))
            return None
        self.append(("returned", fn.__name__, value))
        return value


def run(scenario: Scenario, module: types.ModuleType, server: Server) -> tuple[list[Any], list[bytes], str]:
    steps = Steps()
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        scenario(module, server, steps)
    return list(steps), server.received(), err.getvalue()


def parity(scenario: Scenario, server: Server) -> tuple[list[Any], list[bytes], str]:
    expected = run(scenario, std, server)
    actual = run(scenario, mw, server)
    assert actual[0] == expected[0]
    assert actual[1] == expected[1]
    assert actual[2] == expected[2]
    assert expected[1], "the scenario sent nothing"
    return actual


def connect(module: types.ModuleType, server: Server | ScriptedServer, **kwargs: Any) -> Any:
    host = server.host if isinstance(server, Server) else "127.0.0.1"
    return module.SMTP(host, server.port, local_hostname=CLIENT, timeout=TIMEOUT, **kwargs)


ScriptedScenario = Callable[[types.ModuleType, ScriptedServer, Steps], None]


def scripted_parity(
    script: Callable[[Peer], None], scenario: ScriptedScenario, connections: int = 1
) -> tuple[list[Any], list[bytes], str]:
    """``scenario`` against a fresh scripted server per module; outcomes and bytes compared."""
    results = []
    for module in (std, mw):
        steps = Steps()
        err = io.StringIO()
        with scripted_server(script, connections) as server, contextlib.redirect_stderr(err):
            scenario(module, server, steps)
        output = err.getvalue().replace(f", {server.port})", ", PORT)")  # each run has its own server
        results.append((list(steps), [bytes(p.received) for p in server.peers], output))
    expected, actual = results
    assert actual[0] == expected[0]
    assert actual[1] == expected[1]
    assert actual[2] == expected[2]
    return actual



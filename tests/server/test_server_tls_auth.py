"""STARTTLS, implicit TLS and AUTH on the server, over real sockets (trustme certificates).

STARTTLS: whatever a client pipelines after the command is thrown away before
the handshake (RFC 3207 5), and the session starts afresh after it (RFC 3207
4.2): EHLO again, the earlier MAIL and AUTH forgotten. AUTH: refused with 538
on plaintext unless allowed (RFC 4954 4), working over STARTTLS and implicit
TLS, 503 a second time, 535 for bad credentials, 501 when the client cancels,
and no secret ever reaches a log record.
"""

from __future__ import annotations

import base64
import logging
import socket
import ssl
from collections.abc import Callable

import pytest
import trustme

from mailwire import SMTPClient
from mailwire.errors import AuthenticationError, SMTPError

from .conftest import USERS, RawClient, RecordingBackend, ServerThread

Factory = Callable[..., ServerThread]
PASSWORD = USERS["alice"]


def b64(data: bytes | str) -> bytes:
    return base64.b64encode(data.encode() if isinstance(data, str) else data)


def plain(user: str = "alice", password: str = PASSWORD) -> bytes:
    return b64(f"\0{user}\0{password}")


@pytest.fixture
def tls_server(server_factory: Factory, server_tls: ssl.SSLContext) -> ServerThread:
    """STARTTLS offered, sessions that authenticate."""
    return server_factory(RecordingBackend(auth=True), tls_context=server_tls)


def starttls(client: RawClient, context: ssl.SSLContext) -> None:
    client.cmd("STARTTLS", 220)
    client.starttls(context)


# -- STARTTLS -----------------------------------------------------------------------------


def test_starttls_offered_then_not_and_tls_reaches_the_backend(
    tls_server: ServerThread, client_tls: ssl.SSLContext
) -> None:
    client = tls_server.raw()
    before = client.ehlo().lines
    assert "STARTTLS" in before and not any(line.startswith("AUTH") for line in before)
    starttls(client, client_tls)
    after = client.ehlo().lines
    assert "STARTTLS" not in after and "AUTH PLAIN LOGIN" in after
    client.cmd("STARTTLS", 503)  # not twice
    client.cmd("MAIL FROM:<a@example.com>", 250)
    client.cmd("RCPT TO:<b@example.com>", 250)
    client.cmd("DATA", 354)
    client.send(b"secret\r\n.\r\n")
    client.expect(250)
    assert tls_server.backend.wait_messages(1)
    info = tls_server.backend.messages[0].session
    assert info is not None and info.tls is not None and not info.tls.implicit
    assert info.tls.version.startswith("TLS")


def test_bytes_pipelined_after_starttls_are_discarded(
    tls_server: ServerThread, client_tls: ssl.SSLContext
) -> None:
    client = tls_server.raw()
    client.ehlo()
    # The injection: commands after STARTTLS in the same segment, in plaintext.
    client.send(b"STARTTLS\r\nMAIL FROM:<evil@attacker.test>\r\nRCPT TO:<victim@example.com>\r\n"
                b"AUTH PLAIN " + plain() + b"\r\n")
    client.expect(220)
    assert client.nothing_more(0.2) == b""  # no plaintext reply to the injected commands
    client.starttls(client_tls)
    # After the handshake nothing of the injection survives: no MAIL in progress...
    client.cmd("MAIL FROM:<a@example.com>", 503)  # ...and EHLO is required again
    client.ehlo()
    client.cmd("RCPT TO:<b@example.com>", 503)  # no transaction from before
    client.cmd("AUTH PLAIN " + plain().decode(), 235)  # not authenticated before either
    assert tls_server.backend.calls("mail") == []
    assert tls_server.backend.calls("authenticate") == [("PLAIN", "alice")]


def test_starttls_forgets_auth_and_transaction_from_before(
    server_factory: Factory, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    server = server_factory(RecordingBackend(auth=True), tls_context=server_tls, allow_plaintext_auth=True)
    client = server.raw()
    client.ehlo()
    client.cmd("AUTH PLAIN " + plain("bob", USERS["bob"]).decode(), 235)
    client.cmd("MAIL FROM:<a@example.com>", 250)
    client.cmd("STARTTLS", 503, "5.5.1")  # not inside a transaction
    client.cmd("RSET", 250)
    starttls(client, client_tls)
    client.cmd("MAIL FROM:<a@example.com>", 503)  # EHLO first, again
    client.ehlo()
    client.cmd("AUTH PLAIN " + plain().decode(), 235)  # bob's AUTH is gone: a new one is allowed
    client.cmd("MAIL FROM:<a@example.com>", 250)
    client.cmd("RCPT TO:<b@example.com>", 250)
    client.cmd("DATA", 354)
    client.send(b"x\r\n.\r\n")
    client.expect(250)
    assert server.backend.wait_messages(1)
    info = server.backend.messages[0].session
    assert info is not None and info.auth_identity == "alice" and info.tls is not None


def _handshake_then_burst(client: RawClient, context: ssl.SSLContext, data: bytes) -> bytes:
    """TLS over memory BIOs: the client's last handshake flight and ``data``
    (encrypted) leave in one write, as a fast client's often do. What the
    server answers within a second, decrypted."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    for _ in range(100):
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            if outgoing.pending:
                client.sock.sendall(outgoing.read())
            received = client.sock.recv(65536)
            assert received, "closed during the handshake"
            incoming.write(received)
    assert tls.version() == "TLSv1.3"
    tls.write(data)
    client.sock.sendall(outgoing.read())  # Finished + the encrypted command, one segment
    client.sock.settimeout(1.0)
    answer = bytearray()
    try:
        while b"\r\n" not in answer:
            try:
                answer += tls.read(65536)
            except ssl.SSLWantReadError:
                received = client.sock.recv(65536)
                if not received:
                    break
                incoming.write(received)
    except (socket.timeout, TimeoutError):
        pass
    return bytes(answer)


def test_first_command_in_the_handshake_flight(tls_server: ServerThread, client_tls: ssl.SSLContext) -> None:
    """Regression: the EHLO that shares a read with the client's TLS Finished
    is decrypted before the server's start_tls() returns; it must be kept (it
    is not the plaintext pipelined before the handshake) and answered."""
    client = tls_server.raw()
    client.ehlo()
    client.cmd("STARTTLS", 220)
    answer = _handshake_then_burst(client, client_tls, b"EHLO client.test\r\n")
    assert answer.startswith(b"250-mx.test"), f"no reply to EHLO sent with the Finished: {answer!r}"


def test_starttls_without_a_context_is_454(recording_server: ServerThread) -> None:
    client = recording_server.raw()
    assert "STARTTLS" not in client.ehlo().lines
    client.cmd("STARTTLS", 454, "4.7.0")
    client.cmd("NOOP", 250)


def test_failed_handshake_closes_only_that_connection(
    tls_server: ServerThread, client_tls: ssl.SSLContext
) -> None:
    other = tls_server.raw()
    other.ehlo()
    client = tls_server.raw()
    client.ehlo()
    client.cmd("STARTTLS", 220)
    client.send(b"this is not a TLS ClientHello\r\n" * 10)
    assert client.closed()
    other.cmd("NOOP", 250)
    starttls(other, client_tls)
    other.ehlo()


# -- AUTH ----------------------------------------------------------------------------------------


def test_auth_refused_on_plaintext(tls_server: ServerThread) -> None:
    client = tls_server.raw()
    client.ehlo()
    client.cmd("AUTH PLAIN " + plain().decode(), 538, "5.7.11")
    client.cmd("AUTH LOGIN", 538)
    assert tls_server.backend.calls("authenticate") == []
    client.cmd("NOOP", 250)


def test_auth_on_plaintext_when_allowed(server_factory: Factory) -> None:
    server = server_factory(RecordingBackend(auth=True), allow_plaintext_auth=True)
    client = server.raw()
    assert "AUTH PLAIN LOGIN" in client.ehlo().lines
    client.cmd("AUTH PLAIN " + plain().decode(), 235, "2.7.0")


def test_auth_plain_and_login_over_starttls(tls_server: ServerThread, client_tls: ssl.SSLContext) -> None:
    for dialog in ("plain-initial", "plain-challenge", "login", "login-initial"):
        client = tls_server.raw()
        client.ehlo()
        starttls(client, client_tls)
        client.ehlo()
        if dialog == "plain-initial":
            client.cmd(b"AUTH PLAIN " + plain(), 235)
        elif dialog == "plain-challenge":
            client.cmd("AUTH PLAIN", 334)
            client.cmd(plain(), 235)
        elif dialog == "login":
            assert base64.b64decode(client.cmd("AUTH LOGIN", 334).text).lower().startswith(b"user")
            assert base64.b64decode(client.cmd(b64("alice"), 334).text).lower().startswith(b"pass")
            client.cmd(b64(PASSWORD), 235)
        else:
            client.cmd(b"AUTH LOGIN " + b64("alice"), 334)
            client.cmd(b64(PASSWORD), 235)
        client.cmd("QUIT", 221)
    assert tls_server.backend.calls("authenticate") == [
        ("PLAIN", "alice"), ("PLAIN", "alice"), ("LOGIN", "alice"), ("LOGIN", "alice")
    ]


def test_auth_over_implicit_tls(
    server_factory: Factory, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    server = server_factory(RecordingBackend(auth=True), tls_context=server_tls, implicit_tls=True)
    sock = client_tls.wrap_socket(socket.create_connection(server.address, timeout=5), server_hostname="localhost")
    client = RawClient(sock)
    client.expect(220)
    lines = client.ehlo().lines
    assert "STARTTLS" not in lines and "AUTH PLAIN LOGIN" in lines
    client.cmd("STARTTLS", 503)
    client.cmd(b"AUTH PLAIN " + plain(), 235)
    client.cmd("MAIL FROM:<a@example.com>", 250)
    client.cmd("RCPT TO:<b@example.com>", 250)
    client.cmd("DATA", 354)
    client.send(b"x\r\n.\r\n")
    client.expect(250)
    assert server.backend.wait_messages(1)
    info = server.backend.messages[0].session
    assert info is not None and info.tls is not None and info.tls.implicit
    assert info.auth_identity == "alice" and info.auth_mechanism == "PLAIN"


def test_second_auth_is_503(tls_server: ServerThread, client_tls: ssl.SSLContext) -> None:
    client = tls_server.raw()
    client.ehlo()
    starttls(client, client_tls)
    client.ehlo()
    client.cmd(b"AUTH PLAIN " + plain(), 235)
    client.cmd(b"AUTH PLAIN " + plain("bob", USERS["bob"]), 503, "5.5.1")
    assert tls_server.backend.calls("authenticate") == [("PLAIN", "alice")]


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_wrong_password_is_535_then_retry_works(
    tls_server: ServerThread, client_tls: ssl.SSLContext, mechanism: str
) -> None:
    client = tls_server.raw()
    client.ehlo()
    starttls(client, client_tls)
    client.ehlo()
    if mechanism == "PLAIN":
        client.cmd(b"AUTH PLAIN " + plain(password="wrong"), 535, "5.7.8")
        client.cmd(b"AUTH PLAIN " + plain("nobody", "x"), 535, "5.7.8")
    else:
        client.cmd("AUTH LOGIN", 334)
        client.cmd(b64("alice"), 334)
        client.cmd(b64("wrong"), 535, "5.7.8")
    client.cmd(b"AUTH PLAIN " + plain(), 235)


def test_auth_cancelled_with_star(tls_server: ServerThread, client_tls: ssl.SSLContext) -> None:
    client = tls_server.raw()
    client.ehlo()
    starttls(client, client_tls)
    client.ehlo()
    client.cmd("AUTH LOGIN", 334)
    client.cmd("*", 501)
    client.cmd("AUTH PLAIN", 334)
    client.cmd("*", 501)
    client.cmd("NOOP", 250)  # back to commands
    client.cmd(b"AUTH PLAIN " + plain(), 235)
    assert tls_server.backend.calls("authenticate") == [("PLAIN", "alice")]


def test_auth_bad_base64_and_unknown_mechanism(tls_server: ServerThread, client_tls: ssl.SSLContext) -> None:
    client = tls_server.raw()
    client.ehlo()
    starttls(client, client_tls)
    client.ehlo()
    client.cmd("AUTH CRAM-MD5", 504, "5.5.4")
    client.cmd("AUTH NOSUCH", 504)
    client.cmd("AUTH PLAIN", 334)
    assert client.cmd("!!not base64!!", 501).code == 501
    client.cmd("NOOP", 250)
    client.cmd(b"AUTH PLAIN " + plain(), 235)


def test_auth_without_an_auth_session_is_not_offered(
    server_factory: Factory, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    server = server_factory(RecordingBackend(auth=False), tls_context=server_tls)
    client = server.raw()
    client.ehlo()
    starttls(client, client_tls)
    assert not any(line.startswith("AUTH") for line in client.ehlo().lines)
    client.cmd(b"AUTH PLAIN " + plain(), 502)


def test_secrets_never_reach_the_logs(
    tls_server: ServerThread, client_tls: ssl.SSLContext, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="mailwire")
    secrets = [PASSWORD, "wrong-Secret-42", USERS["bob"]]
    client = tls_server.raw()
    client.ehlo()
    starttls(client, client_tls)
    client.ehlo()
    client.cmd(b"AUTH PLAIN " + plain(password=secrets[1]), 535)
    client.cmd("AUTH LOGIN", 334)
    client.cmd(b64("bob"), 334)
    client.cmd(b64(secrets[2]), 235)
    client.cmd("QUIT", 221)
    # A client-side login over the native API, logging at DEBUG as well.
    with SMTPClient("127.0.0.1", tls_server.port, ssl_context=client_tls, auth=("alice", PASSWORD),
                    local_hostname="client.test", timeout=5) as native:
        native.noop()
    with pytest.raises(AuthenticationError):
        SMTPClient("127.0.0.1", tls_server.port, ssl_context=client_tls, auth=("alice", secrets[1]),
                   local_hostname="client.test", timeout=5)
    assert tls_server.backend.wait_closed(3)
    assert caplog.records, "nothing was logged at DEBUG: the check would prove nothing"
    forbidden = set(secrets)
    for secret in secrets:
        forbidden |= {b64(secret).decode(), plain("alice", secret).decode(), plain("bob", secret).decode()}
    for record in caplog.records:
        text = record.getMessage() + (record.exc_text or "") + repr(record.args)
        for secret in forbidden:
            assert secret not in text, f"secret in log record {record.name}: {text!r}"


def test_native_client_starttls_and_login(
    tls_server: ServerThread, client_tls: ssl.SSLContext
) -> None:
    with SMTPClient("127.0.0.1", tls_server.port, ssl_context=client_tls, auth=("alice", PASSWORD),
                    local_hostname="client.test", timeout=5) as client:
        assert client.is_tls
        result = client.send(b"Subject: hi\r\n\r\nbody\r\n", "a@example.com", ["b@example.com"])
        assert result.ok
    assert tls_server.backend.wait_messages(1)
    info = tls_server.backend.messages[0].session
    assert info is not None and info.auth_identity == "alice" and info.tls is not None
    with pytest.raises(SMTPError) as refused:
        SMTPClient("127.0.0.1", tls_server.port, ssl_context=client_tls, auth=("alice", "nope"),
                   local_hostname="client.test", timeout=5)
    assert refused.value.code == 535


def test_untrusted_certificate_is_refused_by_a_verifying_client(
    tls_server: ServerThread
) -> None:
    """The server's certificate is from the test CA only: a client trusting
    another CA fails the handshake, and the server carries on."""
    stranger = ssl.create_default_context(cadata=trustme.CA().cert_pem.bytes().decode())
    with pytest.raises((ssl.SSLError, OSError)):
        SMTPClient("localhost", tls_server.port, ssl_context=stranger, local_hostname="client.test", timeout=5)
    tls_server.raw().cmd("NOOP", 250)

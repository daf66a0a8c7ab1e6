"""SMTPClient against aiosmtpd: STARTTLS, implicit TLS, certificate checks, AUTH.

aiosmtpd runs in a thread on a free loopback port with a trustme certificate;
the client trusts the test CA through ``ssl_context``. Certificate failures
must surface as ``ssl.SSLCertVerificationError`` and leave the client closed.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from email.message import EmailMessage

import pytest
import trustme

from mailwire import AuthenticationError, SMTPClient, TLSRequiredError
from mailwire.sasl import Login, Plain

from helpers.aiosmtpd_server import Running
from helpers.certs import server_context

USERS = {"alice": "correct horse battery staple"}
Factory = Callable[..., Running]


def _message() -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "alice@example.org"
    msg["To"] = "bob@example.net"
    msg["Subject"] = "over TLS"
    msg.set_content("hello over TLS\n")
    return msg


def test_starttls_verified_and_message_delivered(
    aiosmtpd_factory: Factory, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    server = aiosmtpd_factory(starttls=server_tls, require_starttls=True)
    with SMTPClient(*server.address, tls="starttls", ssl_context=client_tls, timeout=5) as client:
        assert client.is_tls
        assert not client.capabilities.starttls  # the post-TLS EHLO no longer offers it
        result = client.send(_message())
    assert result.ok and result.accepted == ["bob@example.net"]
    [envelope] = server.handler.envelopes
    assert envelope.mail_from == "alice@example.org"
    assert isinstance(envelope.content, bytes) and b"hello over TLS" in envelope.content


def test_certificate_for_another_host_fails_verification(
    aiosmtpd_factory: Factory, ca: trustme.CA, client_tls: ssl.SSLContext
) -> None:
    server = aiosmtpd_factory(starttls=server_context(ca, "wrong.example"))
    client = SMTPClient(*server.address, ssl_context=client_tls, timeout=5, connect=False)
    with pytest.raises(ssl.SSLCertVerificationError, match="wrong.example|IP address mismatch|hostname"):
        client.connect()
    assert not client.connected
    assert server.handler.envelopes == []


def test_default_context_does_not_trust_the_test_ca(
    aiosmtpd_factory: Factory, server_tls: ssl.SSLContext
) -> None:
    server = aiosmtpd_factory(starttls=server_tls)
    client = SMTPClient(*server.address, tls="starttls", timeout=5, connect=False)
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        client.connect()
    assert not client.connected
    assert client.ssl_context is not None and client.ssl_context.verify_mode is ssl.CERT_REQUIRED


@pytest.mark.parametrize("mechanism", [Plain, Login])
def test_auth_mechanisms_succeed(
    aiosmtpd_factory: Factory, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext,
    mechanism: type[Plain] | type[Login],
) -> None:
    server = aiosmtpd_factory(starttls=server_tls, users=USERS, auth_required=True)
    auth = mechanism("alice", USERS["alice"])
    with SMTPClient(*server.address, ssl_context=client_tls, auth=auth, timeout=5) as client:
        assert client.capabilities.auth_mechanisms >= {"PLAIN", "LOGIN"}
        client.send(_message())
    assert len(server.handler.envelopes) == 1


def test_auth_tuple_chooses_a_mechanism(
    aiosmtpd_factory: Factory, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    server = aiosmtpd_factory(starttls=server_tls, users=USERS, auth_required=True)
    with SMTPClient(*server.address, ssl_context=client_tls, auth=("alice", USERS["alice"]), timeout=5) as client:
        reply = client.noop()
    assert reply.code == 250


@pytest.mark.parametrize("mechanism", [Plain, Login])
def test_wrong_password_is_535(
    aiosmtpd_factory: Factory, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext,
    mechanism: type[Plain] | type[Login],
) -> None:
    server = aiosmtpd_factory(starttls=server_tls, users=USERS)
    client = SMTPClient(
        *server.address, ssl_context=client_tls, auth=mechanism("alice", "wrong"), timeout=5, connect=False
    )
    with pytest.raises(AuthenticationError) as caught:
        client.connect()
    assert caught.value.code == 535
    assert str(caught.value.enhanced) == "5.7.8"
    assert not client.connected


def test_login_later_with_wrong_password_keeps_the_connection(
    aiosmtpd_factory: Factory, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    server = aiosmtpd_factory(starttls=server_tls, users=USERS)
    with SMTPClient(*server.address, ssl_context=client_tls, timeout=5) as client:
        with pytest.raises(AuthenticationError) as caught:
            client.login(("alice", "nope"))
        assert caught.value.code == 535
        # A refusal is a reply, not a broken conversation: the session goes on.
        assert client.login(("alice", USERS["alice"])).code == 235
        client.send(_message())
    assert len(server.handler.envelopes) == 1


def test_implicit_tls(
    aiosmtpd_factory: Factory, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    server = aiosmtpd_factory(implicit=server_tls, users=USERS, auth_require_tls=False)
    with SMTPClient(
        *server.address, tls="implicit", ssl_context=client_tls, auth=("alice", USERS["alice"]), timeout=5
    ) as client:
        assert client.is_tls
        assert client.greeting is not None and client.greeting.code == 220
        client.send(_message())
    assert len(server.handler.envelopes) == 1


def test_implicit_tls_verifies_the_certificate(
    aiosmtpd_factory: Factory, ca: trustme.CA, client_tls: ssl.SSLContext
) -> None:
    server = aiosmtpd_factory(implicit=server_context(ca, "wrong.example"))
    client = SMTPClient(*server.address, tls="implicit", ssl_context=client_tls, timeout=5, connect=False)
    with pytest.raises(ssl.SSLCertVerificationError):
        client.connect()
    assert not client.connected


def test_opportunistic_uses_starttls_when_offered(
    aiosmtpd_factory: Factory, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    server = aiosmtpd_factory(starttls=server_tls)
    with SMTPClient(*server.address, tls="opportunistic", ssl_context=client_tls, timeout=5) as client:
        assert client.is_tls
        client.send(_message())
    assert len(server.handler.envelopes) == 1


def test_opportunistic_never_falls_back_after_a_failed_handshake(
    aiosmtpd_factory: Factory, ca: trustme.CA, client_tls: ssl.SSLContext
) -> None:
    server = aiosmtpd_factory(starttls=server_context(ca, "wrong.example"))
    client = SMTPClient(*server.address, tls="opportunistic", ssl_context=client_tls, timeout=5, connect=False)
    with pytest.raises(ssl.SSLCertVerificationError):
        client.connect()
    assert not client.connected
    assert server.handler.envelopes == []


def test_opportunistic_stays_plain_when_not_offered(aiosmtpd_factory: Factory) -> None:
    server = aiosmtpd_factory()
    with SMTPClient(*server.address, tls="opportunistic", timeout=5) as client:
        assert not client.is_tls
        client.send(_message())
    assert len(server.handler.envelopes) == 1


def test_starttls_required_but_not_offered(aiosmtpd_factory: Factory) -> None:
    server = aiosmtpd_factory()
    client = SMTPClient(*server.address, tls="starttls", timeout=5, connect=False)
    with pytest.raises(TLSRequiredError, match="does not offer STARTTLS"):
        client.connect()
    assert not client.connected
    assert server.handler.envelopes == []


def test_auth_refused_over_plaintext_with_opportunistic_and_no_starttls(aiosmtpd_factory: Factory) -> None:
    server = aiosmtpd_factory(users=USERS, auth_require_tls=False)
    client = SMTPClient(
        *server.address, tls="opportunistic", auth=("alice", USERS["alice"]), timeout=5, connect=False
    )
    with pytest.raises(TLSRequiredError, match="plaintext"):
        client.connect()
    assert not client.connected


def test_plaintext_auth_when_explicitly_allowed(aiosmtpd_factory: Factory) -> None:
    server = aiosmtpd_factory(users=USERS, auth_require_tls=False)
    with SMTPClient(
        *server.address, tls="none", auth=("alice", USERS["alice"]), allow_plaintext_auth=True, timeout=5
    ) as client:
        assert not client.is_tls
        client.send(_message())
    assert len(server.handler.envelopes) == 1

"""TLS and AUTH: aiosmtpd with STARTTLS and AUTH required, implicit TLS,
mailwire's server asking for a client certificate, ``mailwire serve`` with
a certificate and an auth file; certificates always verified.

The servers' certificates come from a trustme CA no system trusts: a test
trusts it through ``ssl_cafile`` (or ``ssl_context``), which is how a
private CA is trusted; without it the certificate must fail verification,
with the error Django's own backend raises (compared by running Django's
backend with the CA made the system's through ``SSL_CERT_FILE``).
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
import trustme
from django.core import mail

from mailwire.testing import run_server

from helpers.aiosmtpd_server import Running

from .support import BACKEND, DJANGO_BACKEND, MODES, QUIET, mail_settings, maildir_messages, parse, serve

pytestmark = [QUIET, pytest.mark.parametrize("mode", MODES)]
USERS = {"alice": "correct horse battery staple"}
Factory = Callable[..., Running]


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def some_mail(count: int = 3) -> list[tuple[str, str, str, list[str]]]:
    return [(f"over TLS {i}", f"body {i}", "alice@example.org", [f"r{i}@example.net"]) for i in range(count)]


def test_starttls_and_auth_through_a_private_ca(
    mode: str, aiosmtpd_factory: Factory, server_tls: ssl.SSLContext, ca_file: str
) -> None:
    server = aiosmtpd_factory(starttls=server_tls, users=USERS, require_starttls=True, auth_required=True)
    with mail_settings(mode, *server.address, use_tls=True, username="alice", password=USERS["alice"],
                       ssl_cafile=ca_file):
        assert mail.send_mass_mail(some_mail()) == 3
    assert [e.rcpt_tos for e in server.handler.envelopes] == [[f"r{i}@example.net"] for i in range(3)]


def test_an_ssl_context_option_is_used_as_given(
    mode: str, aiosmtpd_factory: Factory, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    server = aiosmtpd_factory(starttls=server_tls, users=USERS, require_starttls=True, auth_required=True)
    with mail_settings(mode, *server.address, use_tls=True, username="alice", password=USERS["alice"],
                       ssl_context=client_tls):
        assert mail.send_mail("S", "B", "alice@example.org", ["bob@example.net"]) == 1
    assert len(server.handler.envelopes) == 1


def test_implicit_tls(mode: str, aiosmtpd_factory: Factory, server_tls: ssl.SSLContext, ca_file: str) -> None:
    # aiosmtpd counts only STARTTLS as TLS for AUTH; over implicit TLS it must be told.
    server = aiosmtpd_factory(implicit=server_tls, users=USERS, auth_require_tls=False)
    with mail_settings(mode, *server.address, use_ssl=True, username="alice", password=USERS["alice"],
                       ssl_cafile=ca_file):
        assert mail.send_mass_mail(some_mail()) == 3
    assert len(server.handler.envelopes) == 3


@pytest.mark.parametrize("fail_silently", [False, True])
def test_an_untrusted_certificate_fails_as_in_django(
    mode: str, aiosmtpd_factory: Factory, server_tls: ssl.SSLContext, fail_silently: bool
) -> None:
    server = aiosmtpd_factory(starttls=server_tls)
    outcomes = []
    for name in (DJANGO_BACKEND, BACKEND):
        with mail_settings(mode, *server.address, backend=name, use_tls=True):
            try:
                outcomes.append(mail.send_mail("S", "B", "a@example.org", ["b@example.net"], fail_silently=fail_silently))
            except ssl.SSLCertVerificationError as err:
                outcomes.append(err.verify_message)
    assert outcomes[0] == outcomes[1] == (0 if fail_silently else "unable to get local issuer certificate")
    assert server.handler.envelopes == []


def test_a_wrong_password_is_smtplibs_authentication_error_as_in_django(
    mode: str, aiosmtpd_factory: Factory, server_tls: ssl.SSLContext, ca_file: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", ca_file)  # Django's backend can trust only what the system does
    server = aiosmtpd_factory(starttls=server_tls, users=USERS, require_starttls=True, auth_required=True)
    errors = []
    for name in (DJANGO_BACKEND, BACKEND):
        with mail_settings(mode, *server.address, backend=name, use_tls=True, username="alice", password="wrong"):
            connection = mail.get_connection()
            try:
                with pytest.raises(smtplib.SMTPAuthenticationError) as caught:
                    connection.send_messages([mail.EmailMessage("S", "B", "a@example.org", ["b@example.net"])])
            finally:
                connection.close()  # Django's keeps the half-open connection until then
        errors.append(caught.value.smtp_code)
    assert errors == [535, 535]


def test_starttls_required_but_not_offered_as_in_django(mode: str, aiosmtpd_factory: Factory) -> None:
    server = aiosmtpd_factory()
    for name in (DJANGO_BACKEND, BACKEND):
        with mail_settings(mode, *server.address, backend=name, use_tls=True):
            with pytest.raises(smtplib.SMTPNotSupportedError):
                mail.send_mail("S", "B", "a@example.org", ["b@example.net"])
    assert server.handler.envelopes == []


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
def test_credentials_never_cross_plaintext_unless_allowed(mode: str, aiosmtpd_factory: Factory) -> None:
    # Django's backend logs in over plaintext here; mailwire refuses unless told.
    server = aiosmtpd_factory(users=USERS, auth_require_tls=False, auth_required=True)
    with mail_settings(mode, *server.address, username="alice", password=USERS["alice"]):
        with pytest.raises(smtplib.SMTPNotSupportedError, match="allow_plaintext_auth"):
            mail.send_mail("S", "B", "a@example.org", ["b@example.net"])
        assert mail.send_mail("S", "B", "a@example.org", ["b@example.net"], fail_silently=True) == 0
    with mail_settings(mode, *server.address, username="alice", password=USERS["alice"], allow_plaintext_auth=True):
        assert mail.send_mail("S", "B", "a@example.org", ["b@example.net"]) == 1
    assert len(server.handler.envelopes) == 1


def test_opportunistic_tls_is_used_when_offered(mode: str, server_tls: ssl.SSLContext, ca_file: str) -> None:
    with run_server(tls_context=server_tls) as server:
        with mail_settings(mode, *server.address, tls="opportunistic", ssl_cafile=ca_file):
            assert mail.send_mail("S", "B", "a@example.org", ["b@example.net"]) == 1
        [envelope] = server.wait_for(1)
    assert envelope.session is not None and envelope.session.tls is not None


def test_a_client_certificate_from_email_ssl_certfile_and_keyfile(
    mode: str, ca: trustme.CA, server_tls: ssl.SSLContext, ca_file: str, tmp_path: Path
) -> None:
    server_tls.verify_mode = ssl.CERT_REQUIRED
    server_tls.load_verify_locations(cadata=ca.cert_pem.bytes().decode("ascii"))
    client = ca.issue_cert("client.example.org")
    certfile, keyfile = tmp_path / "client.pem", tmp_path / "client.key"
    client.cert_chain_pems[0].write_to_path(str(certfile))
    client.private_key_pem.write_to_path(str(keyfile))
    with run_server(tls_context=server_tls) as server:
        with mail_settings(mode, *server.address, use_tls=True, ssl_cafile=ca_file, ssl_certfile=str(certfile),
                           ssl_keyfile=str(keyfile)):
            assert mail.send_mail("S", "B", "a@example.org", ["b@example.net"]) == 1
        [envelope] = server.wait_for(1)
    assert envelope.session is not None and envelope.session.tls is not None
    certificate = envelope.session.tls.peer_certificate
    assert certificate is not None
    assert "client.example.org" in str(certificate.get("subjectAltName"))


def test_mailwire_serve_with_a_certificate_and_an_auth_file(
    mode: str, ca: trustme.CA, ca_file: str, tmp_path: Path
) -> None:
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    cert = tmp_path / "server.pem"
    leaf.private_key_and_cert_chain_pem.write_to_path(str(cert))
    (tmp_path / "users").write_text("alice:" + USERS["alice"] + "\n")
    maildir = tmp_path / "mail"
    with serve("--maildir", str(maildir), "--tls-cert", str(cert), "--auth-file", str(tmp_path / "users"),
               cwd=tmp_path) as server:
        with mail_settings(mode, "127.0.0.1", server.port, use_tls=True, username="alice",
                           password=USERS["alice"], ssl_cafile=ca_file):
            assert mail.send_mass_mail(some_mail(5)) == 5
    stored = maildir_messages(maildir)
    assert sorted(parse(m)["Subject"] for m in stored) == [f"over TLS {i}" for i in range(5)]

"""What each setting and option means, and the answer to each contradiction.

Django's own settings are read with its backend's meanings: the attributes
of both backends, built from the same settings or OPTIONS, must agree.
mailwire's options are checked when the backend is made, so a mistake is a
ValueError (or Django's ImproperlyConfigured/InvalidMailer for a setting)
at once, not at the first send.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest
import trustme
from django.core import mail
from django.core.exceptions import ImproperlyConfigured
from django.core.mail.utils import DNS_NAME
from django.test.utils import override_settings

from mailwire.testing import run_server

from .support import BACKEND, DJANGO_BACKEND, HAS_MAILERS, MODES, QUIET, backend, mail_settings

pytestmark = [QUIET]
DJANGO_ATTRIBUTES = ("host", "port", "username", "password", "use_tls", "use_ssl", "timeout", "ssl_keyfile", "ssl_certfile")
needs_mailers = pytest.mark.skipif(not HAS_MAILERS, reason="MAILERS is Django 6.1's")


def attributes(connection: Any) -> dict[str, Any]:
    return {name: getattr(connection, name) for name in DJANGO_ATTRIBUTES}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("given", [
    {},
    {"use_tls": True, "username": "u", "password": "p", "timeout": 3},
    {"use_ssl": True, "ssl_certfile": "/c.pem", "ssl_keyfile": "/k.pem"},
])
def test_settings_mean_what_they_mean_to_django(mode: str, given: dict[str, Any]) -> None:
    port = 2525 if mode == "settings" else None  # MAILERS: the port follows the TLS mode
    seen = []
    for name in (DJANGO_BACKEND, BACKEND):
        if mode == "settings":
            with mail_settings(mode, "mx.example.com", 2525, backend=name, **given):
                seen.append(attributes(mail.get_connection()))
        else:
            options = {"host": "mx.example.com", **given}
            with override_settings(MAILERS={"default": {"BACKEND": name, "OPTIONS": options}}):
                seen.append(attributes(mail.mailers["default"]))
    assert seen[0] == seen[1]
    if port is None:
        assert seen[1]["port"] == (465 if given.get("use_ssl") else 587 if given.get("use_tls") else 25)


def test_constructor_arguments_override_settings_as_in_django() -> None:
    seen = []
    for name in (DJANGO_BACKEND, BACKEND):
        with mail_settings("settings", "mx.example.com", 2525, backend=name, use_tls=True):
            seen.append(attributes(mail.get_connection(
                host="other.example.com", port=587, username="me", password="pw", use_tls=False, timeout=7,
            )))
    assert seen[0] == seen[1]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("given, tls", [
    ({}, "none"), ({"use_tls": True}, "starttls"), ({"use_ssl": True}, "implicit"),
    ({"tls": "opportunistic"}, "opportunistic"), ({"use_tls": True, "tls": "starttls"}, "starttls"),
])
def test_the_tls_mode(mode: str, given: dict[str, Any], tls: str) -> None:
    with mail_settings(mode, "mx.example.com", 25, **given):
        assert backend(mode).tls == tls


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("given, message", [
    ({"tls": "required"}, "tls must be one of"),
    ({"use_ssl": True, "tls": "starttls"}, "contradicts use_ssl"),
    ({"use_tls": True, "tls": "opportunistic"}, "contradicts use_tls"),
    ({"pool_size": 0}, "pool_size"),
    ({"pool_size": "4"}, "pool_size"),
    ({"lmtp": True, "pool_size": 2}, "pooled LMTP"),
    ({"ssl_context": ssl.create_default_context(), "ssl_cafile": "/ca.pem"}, "not both"),
])
def test_contradictions_are_value_errors_at_once(mode: str, given: dict[str, Any], message: str) -> None:
    with mail_settings(mode, "mx.example.com", 25, **given):
        with pytest.raises(ValueError, match=message):
            backend(mode)


@pytest.mark.parametrize("value, message", [
    ({"pool_sise": 4}, "unknown options pool_sise"),
    (["pool_size", 4], "must be a dict"),
])
def test_a_bad_mailwire_email_options_setting(value: Any, message: str) -> None:
    with mail_settings("settings", "mx.example.com", 25), override_settings(MAILWIRE_EMAIL_OPTIONS=value):
        with pytest.raises(ImproperlyConfigured, match=message):
            mail.get_connection()


@needs_mailers
def test_an_unknown_mailers_option_is_djangos_invalid_mailer() -> None:
    errors = []
    for name in (DJANGO_BACKEND, BACKEND):
        options = {"host": "mx.example.com", "bogus": 1}
        with override_settings(MAILERS={"default": {"BACKEND": name, "OPTIONS": options}}):
            with pytest.raises(mail.InvalidMailer) as caught:
                mail.mailers["default"]
        errors.append(str(caught.value))
    assert errors[0] == errors[1] == "MAILERS['default']: Unknown options 'bogus'."


@needs_mailers
def test_a_mailers_entry_without_host_is_refused_alike() -> None:
    errors = []
    for name in (DJANGO_BACKEND, BACKEND):
        with override_settings(MAILERS={"default": {"BACKEND": name, "OPTIONS": {"port": 25}}}):
            with pytest.raises(mail.InvalidMailer) as caught:
                mail.mailers["default"]
        errors.append(str(caught.value))
    assert errors[0] == errors[1] == "MAILERS['default']: OPTIONS must define 'host'."


def test_the_ssl_context_verifies_even_with_a_client_certificate(ca: trustme.CA, tmp_path: Path) -> None:
    client = ca.issue_cert("client.example.org")
    pem, ca_file = tmp_path / "client.pem", tmp_path / "ca.pem"
    client.private_key_and_cert_chain_pem.write_to_path(str(pem))
    ca.cert_pem.write_to_path(str(ca_file))
    with mail_settings("settings", "mx.example.com", 25, use_tls=True, ssl_certfile=str(pem), ssl_cafile=str(ca_file)):
        context = mail.get_connection().ssl_context
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.cert_store_stats()["x509_ca"] >= 1


@pytest.mark.parametrize("mode", MODES)
def test_ehlo_name_and_timeout(mode: str) -> None:
    with run_server() as server:
        with mail_settings(mode, *server.address, timeout=None):
            connection = backend(mode)
            with connection:
                assert connection.timeout is None
                # EMAIL_TIMEOUT None is mailwire's deadline per reply, never none.
                assert connection.connection.settings.timeout == 60
                connection.send_messages([mail.EmailMessage("S", "B", "a@example.com", ["b@example.com"])])
        with mail_settings(mode, *server.address, local_hostname="app.example.com"):
            mail.send_mail("S", "B", "a@example.com", ["b@example.com"])
        first, second = server.wait_for(2)
    assert first.session is not None and first.session.helo_name == DNS_NAME.get_fqdn()
    assert second.session is not None and second.session.helo_name == "app.example.com"

"""The debug log shows the dialog and never an AUTH secret.

With the ``mailwire.client`` logger at DEBUG, every command and reply is
logged, but AUTH lines are redacted: neither the password nor any base64 form
of it (the PLAIN message, the LOGIN answers) may appear in any record.
"""

from __future__ import annotations

import base64
import logging
import ssl
from collections.abc import Callable

import pytest

from mailwire import AuthenticationError, SMTPClient
from mailwire.sasl import Login, Plain

from helpers.aiosmtpd_server import Running
from helpers.minismtp import MiniSMTP
from helpers.scripted import ScriptedServer

USER, PASSWORD = "alice", "Pa55-w0rd!unique"


def _secrets() -> list[str]:
    """The password, and the base64 of it at each of the three alignments.

    Inside any base64 text that encodes the password (the PLAIN message, a
    LOGIN answer), one of these fragments appears: they are the characters
    that depend on the password's bytes alone.
    """
    forms = [PASSWORD, base64.b64encode(USER.encode()).decode()]
    for pad in range(3):
        encoded = base64.b64encode(b"\0" * pad + PASSWORD.encode()).decode()
        forms.append(encoded[4:-4])
    return forms


def _mailwire_log(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("mailwire"))


def _assert_no_secret(text: str) -> None:
    for secret in _secrets():
        assert secret and secret not in text, f"secret form {secret!r} leaked into the log"


@pytest.mark.parametrize("mechanism", [Plain, Login])
def test_dialog_logged_and_secrets_redacted(
    aiosmtpd_factory: Callable[..., Running], server_tls: ssl.SSLContext, client_tls: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture, mechanism: type[Plain] | type[Login],
) -> None:
    caplog.set_level(logging.DEBUG, logger="mailwire.client")
    server = aiosmtpd_factory(starttls=server_tls, users={USER: PASSWORD})
    with SMTPClient(*server.address, ssl_context=client_tls, auth=mechanism(USER, PASSWORD), timeout=5) as client:
        client.send(b"Subject: s\r\n\r\nsecret body text\r\n", "a@example.org", ["b@example.net"])
    text = _mailwire_log(caplog)
    for expected in ("< 220 ", "> EHLO ", "> STARTTLS", f"> AUTH {mechanism.name}", "< 235 2.7.0",
                     "> MAIL FROM:<a@example.org>", "> RCPT TO:<b@example.net>", "> DATA", "< 354",
                     "octets of content>", "> <end of data>", "> QUIT", "< 221"):
        assert expected in text, f"{expected!r} missing from the debug log"
    assert "<redacted>" in text
    assert "secret body text" not in text  # content is summarised, not logged
    _assert_no_secret(text)
    _assert_no_secret(caplog.text)


def test_secrets_stay_out_of_the_log_and_the_error_on_failure(
    scripted: Callable[..., ScriptedServer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="mailwire.client")
    smtp = MiniSMTP(extensions=("AUTH LOGIN",), credentials=(USER, "something else"))
    server = scripted(smtp)
    client = SMTPClient(
        *server.address, tls="none", auth=(USER, PASSWORD), allow_plaintext_auth=True, timeout=2, connect=False
    )
    with pytest.raises(AuthenticationError) as caught:
        client.connect()
    assert caught.value.code == 535
    _assert_no_secret(str(caught.value) + repr(caught.value))
    _assert_no_secret(_mailwire_log(caplog))
    assert "> AUTH LOGIN" in _mailwire_log(caplog)
    # The secret did cross the wire (the server needed it); only the log hides it.
    assert base64.b64encode(PASSWORD.encode()) in server.received
    assert any(fragment.encode() in server.received for fragment in _secrets()[2:])  # the detector works


def test_mechanism_repr_hides_credentials() -> None:
    for mechanism in (Plain(USER, PASSWORD), Login(USER, PASSWORD)):
        assert PASSWORD not in repr(mechanism)


def test_send_many_logs_each_message_once_in_the_order_it_went(
    scripted: Callable[..., ScriptedServer], caplog: pytest.LogCaptureFixture
) -> None:
    """Content written on the bytes of the replies, before they are parsed,
    is logged too: once per message, like every other write."""
    caplog.set_level(logging.DEBUG, logger="mailwire.client")
    server = scripted(MiniSMTP())
    items = [(b"m%d\r\n" % i * (i + 1), "a@example.org", ["b@example.net"]) for i in range(3)]
    with SMTPClient(*server.address, tls="none", timeout=2) as client:
        outcomes = client.send_many(items)
    assert all(not isinstance(o, Exception) for o in outcomes)
    text = _mailwire_log(caplog)
    sizes = [len(content) for content, _, _ in items]
    assert [f"<{n} octets of content>" in text for n in sizes] == [True] * 3
    assert text.count("octets of content>") == 3 and text.count("> <end of data>") == 3
    assert text.count("> MAIL FROM:<a@example.org>") == 3 and text.count("< 354") == 3

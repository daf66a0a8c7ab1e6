"""The client's TLS and AUTH policy, proved against scripted servers.

The scripted server records every byte, so these tests show not only that the
client raised, but that nothing it refused to do reached the wire: no AUTH over
plaintext, no mail after a refused STARTTLS.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable

import pytest

from mailwire import SMTPClient, TLSRequiredError

from helpers.minismtp import MiniSMTP
from helpers.scripted import ScriptedServer

Start = Callable[..., ScriptedServer]
AUTH_EXT = ("PIPELINING", "AUTH PLAIN LOGIN", "ENHANCEDSTATUSCODES")


@pytest.mark.parametrize("tls", ["none", "opportunistic"])
def test_no_auth_over_plaintext_unless_allowed(scripted: Start, tls: str) -> None:
    smtp = MiniSMTP(extensions=AUTH_EXT, credentials=("u", "p"))
    server = scripted(smtp)
    client = SMTPClient(*server.address, tls=tls, auth=("u", "p"), timeout=5, connect=False)  # type: ignore[arg-type]
    with pytest.raises(TLSRequiredError, match="plaintext connection"):
        client.connect()
    assert not client.connected
    server.close()
    assert [c.split(" ")[0] for c in smtp.commands] == ["EHLO"]
    assert b"AUTH" not in server.received
    assert b"dQ" not in server.received  # no base64 of the credentials either


def test_login_refused_in_the_clear_keeps_the_session(scripted: Start) -> None:
    smtp = MiniSMTP(extensions=AUTH_EXT, credentials=("u", "p"))
    server = scripted(smtp)
    with SMTPClient(*server.address, tls="none", timeout=5) as client:
        with pytest.raises(TLSRequiredError, match="plaintext connection"):
            client.login(("u", "p"))
        # Nothing was sent: the session is intact and goes on.
        assert client.connected and client.noop().code == 250
    assert [c.split(" ")[0] for c in smtp.commands] == ["EHLO", "NOOP", "QUIT"]


def test_plaintext_auth_allowed_explicitly(scripted: Start) -> None:
    smtp = MiniSMTP(extensions=AUTH_EXT, credentials=("u", "p"))
    server = scripted(smtp)
    with SMTPClient(*server.address, tls="none", auth=("u", "p"), allow_plaintext_auth=True, timeout=5) as client:
        assert client.noop().code == 250
    assert smtp.commands[1].startswith("AUTH PLAIN ")


def test_starttls_required_but_not_offered(scripted: Start) -> None:
    smtp = MiniSMTP(extensions=("PIPELINING", "8BITMIME"))
    server = scripted(smtp)
    client = SMTPClient(*server.address, tls="starttls", timeout=5, connect=False)
    with pytest.raises(TLSRequiredError, match="does not offer STARTTLS"):
        client.connect()
    assert not client.connected
    server.close()
    assert [c.split(" ")[0] for c in smtp.commands] == ["EHLO"]


@pytest.mark.parametrize("tls", ["starttls", "opportunistic"])
def test_starttls_refused_with_454_is_never_a_silent_downgrade(
    scripted: Start, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext, tls: str
) -> None:
    smtp = MiniSMTP(
        extensions=("PIPELINING", "STARTTLS"), starttls_reply="454 4.7.0 TLS not available due to temporary reason",
        tls_context=server_tls,
    )
    server = scripted(smtp)
    client = SMTPClient(*server.address, tls=tls, ssl_context=client_tls, timeout=5, connect=False)  # type: ignore[arg-type]
    with pytest.raises(TLSRequiredError, match="refused STARTTLS: 454 4.7.0 TLS not available"):
        client.connect()
    assert not client.connected
    server.close()
    assert [c.split(" ")[0] for c in smtp.commands] == ["EHLO", "STARTTLS"]
    assert server.received.endswith(b"STARTTLS\r\n")


def test_starttls_against_scripted_server_then_auth(
    scripted: Start, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    smtp = MiniSMTP(extensions=("PIPELINING", "STARTTLS", *AUTH_EXT[1:]), tls_context=server_tls, credentials=("u", "p"))
    server = scripted(smtp)
    with SMTPClient(*server.address, ssl_context=client_tls, auth=("u", "p"), timeout=5) as client:
        assert client.is_tls
        client.send(b"Subject: s\r\n\r\nbody\r\n", "a@example.org", ["b@example.net"])
    verbs = [c.split(" ")[0] for c in smtp.commands]
    assert verbs[:4] == ["EHLO", "STARTTLS", "EHLO", "AUTH"]
    # The credentials crossed only the encrypted part of the connection.
    assert b"AUTH" not in server.peers[0].received.split(b"STARTTLS\r\n")[0]

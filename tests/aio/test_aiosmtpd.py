"""AsyncSMTPClient against aiosmtpd: STARTTLS, implicit TLS, certificate checks, AUTH.

aiosmtpd runs in its own thread on a free loopback port with a trustme
certificate; the client trusts the test CA through ``ssl_context``. The
plaintext-AUTH refusal is also checked against the scripted MiniSMTP, whose
command record proves that no AUTH line was ever written.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from email.message import EmailMessage

import pytest
import trustme

from mailwire import AsyncSMTPClient, AuthenticationError, TLSRequiredError
from mailwire.sasl import Login, Plain

from helpers.aiosmtpd_server import Running
from helpers.certs import server_context
from helpers.minismtp import MiniSMTP
from helpers.scripted import ScriptedServer

from .support import run

USERS = {"alice": "correct horse battery staple"}
Factory = Callable[..., Running]
pytestmark = pytest.mark.timeout(30)


def _message(subject: str = "over TLS") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "alice@example.org"
    msg["To"] = "bob@example.net"
    msg["Subject"] = subject
    msg.set_content("hello over TLS\n")
    return msg


def test_starttls_verified_and_delivered(
    aiosmtpd_factory: Factory, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    server = aiosmtpd_factory(starttls=server_tls, require_starttls=True)

    async def main() -> None:
        async with AsyncSMTPClient(*server.address, ssl_context=client_tls, timeout=5) as client:
            assert client.is_tls
            assert not client.capabilities.starttls  # the EHLO after TLS no longer offers it
            result = await client.send(_message())
            assert result.ok and result.accepted == ["bob@example.net"]
            assert (await client.noop()).code == 250
        assert not client.connected

    run(main())
    [envelope] = server.handler.envelopes
    assert envelope.mail_from == "alice@example.org"
    assert isinstance(envelope.content, bytes) and b"hello over TLS" in envelope.content


def test_starttls_is_the_default_and_required(aiosmtpd_factory: Factory) -> None:
    server = aiosmtpd_factory()  # no STARTTLS on offer

    async def main() -> None:
        client = AsyncSMTPClient(*server.address, timeout=5)
        with pytest.raises(TLSRequiredError, match="does not offer STARTTLS"):
            await client.send(_message())
        assert not client.connected

    run(main())
    assert server.handler.envelopes == []


def test_implicit_tls(aiosmtpd_factory: Factory, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext) -> None:
    server = aiosmtpd_factory(implicit=server_tls)

    async def main() -> None:
        async with AsyncSMTPClient(*server.address, tls="implicit", ssl_context=client_tls, timeout=5) as client:
            assert client.is_tls
            assert (await client.send(_message("implicit"))).ok

    run(main())
    assert len(server.handler.envelopes) == 1


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
def test_certificate_for_another_host_fails(
    aiosmtpd_factory: Factory, ca: trustme.CA, client_tls: ssl.SSLContext, tls: str
) -> None:
    wrong = server_context(ca, "wrong.example")
    server = aiosmtpd_factory(**{"starttls" if tls == "starttls" else "implicit": wrong})

    async def main() -> None:
        client = AsyncSMTPClient(*server.address, tls=tls, ssl_context=client_tls, timeout=5)  # type: ignore[arg-type]
        with pytest.raises(ssl.SSLCertVerificationError, match="wrong.example|IP address mismatch|hostname"):
            await client.connect()
        assert not client.connected

    run(main())
    assert server.handler.envelopes == []


def test_default_context_does_not_trust_the_test_ca(aiosmtpd_factory: Factory, server_tls: ssl.SSLContext) -> None:
    server = aiosmtpd_factory(starttls=server_tls)

    async def main() -> None:
        client = AsyncSMTPClient(*server.address, timeout=5)
        with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
            await client.connect()
        assert not client.connected

    run(main())


@pytest.mark.parametrize("mechanism", [Plain, Login, None], ids=["PLAIN", "LOGIN", "chosen"])
def test_auth_over_starttls(
    aiosmtpd_factory: Factory, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext,
    mechanism: type[Plain] | type[Login] | None,
) -> None:
    server = aiosmtpd_factory(starttls=server_tls, users=USERS, auth_required=True)
    auth = mechanism("alice", USERS["alice"]) if mechanism is not None else ("alice", USERS["alice"])

    async def main() -> None:
        async with AsyncSMTPClient(*server.address, ssl_context=client_tls, auth=auth, timeout=5) as client:
            assert client.capabilities.auth_mechanisms >= {"PLAIN", "LOGIN"}
            assert (await client.send(_message("authenticated"))).ok

    run(main())
    assert len(server.handler.envelopes) == 1


def test_wrong_password(aiosmtpd_factory: Factory, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext) -> None:
    server = aiosmtpd_factory(starttls=server_tls, users=USERS, auth_required=True)

    async def main() -> None:
        client = AsyncSMTPClient(*server.address, ssl_context=client_tls, auth=("alice", "wrong"), timeout=5)
        with pytest.raises(AuthenticationError) as caught:
            await client.connect()
        assert caught.value.code == 535

    run(main())


def test_login_later_on_the_same_session(
    aiosmtpd_factory: Factory, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    server = aiosmtpd_factory(starttls=server_tls, users=USERS, auth_required=True)

    async def main() -> None:
        async with AsyncSMTPClient(*server.address, ssl_context=client_tls, timeout=5) as client:
            assert (await client.login(("alice", USERS["alice"]))).code == 235
            assert (await client.send(_message("login()"))).ok

    run(main())


def test_plaintext_auth_refused_against_aiosmtpd(aiosmtpd_factory: Factory) -> None:
    server = aiosmtpd_factory(users=USERS, auth_require_tls=False)

    async def main() -> None:
        client = AsyncSMTPClient(*server.address, tls="none", auth=("alice", USERS["alice"]), timeout=5)
        with pytest.raises(TLSRequiredError, match="plaintext"):
            await client.connect()
        assert not client.connected
        # Allowed explicitly, the same server takes it.
        allowed = AsyncSMTPClient(
            *server.address, tls="none", auth=("alice", USERS["alice"]), allow_plaintext_auth=True, timeout=5
        )
        async with allowed:
            assert (await allowed.send(_message("plaintext, allowed"))).ok

    run(main())


def test_plaintext_auth_is_refused_before_any_auth_is_written(scripted: Callable[..., ScriptedServer]) -> None:
    smtp = MiniSMTP(extensions=("PIPELINING", "AUTH PLAIN LOGIN"), credentials=("alice", "pw"))
    server = scripted(smtp)

    async def main() -> None:
        client = AsyncSMTPClient(*server.address, tls="none", auth=("alice", "pw"), timeout=2)
        with pytest.raises(TLSRequiredError, match="plaintext"):
            await client.connect()
        assert not client.connected

    run(main())
    server.close()
    assert [c.split(" ")[0] for c in smtp.commands] == ["EHLO"]
    assert b"AUTH" not in server.received and b"alice" not in server.received


def test_login_on_a_plaintext_session_is_refused(scripted: Callable[..., ScriptedServer]) -> None:
    smtp = MiniSMTP(extensions=("PIPELINING", "AUTH PLAIN LOGIN"), credentials=("alice", "pw"))
    server = scripted(smtp)

    async def main() -> None:
        client = AsyncSMTPClient(*server.address, tls="none", timeout=2)
        await client.connect()
        assert (await client.noop()).code == 250
        with pytest.raises(TLSRequiredError, match="plaintext"):
            await client.login(("alice", "pw"))
        await client.close()

    run(main())
    server.close()
    assert [c.split(" ")[0] for c in smtp.commands] == ["EHLO", "NOOP"]
    assert b"AUTH" not in server.received and b"alice" not in server.received

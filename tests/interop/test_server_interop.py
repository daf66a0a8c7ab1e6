"""mailwire's server against real clients: smtplib, aiosmtplib, mailwire's own
SMTPClient, swaks and Postfix's smtp-source.

Each client drives the server the way it drives any MTA; the backend
(``RecordingBackend`` from ``tests/server/conftest.py``) records what arrived,
so every test checks both ends: what the client was told and what the backend
got.
"""

from __future__ import annotations

import asyncio
import email.message
import shutil
import smtplib
import ssl
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import aiosmtplib
import pytest

from mailwire import MailOptions, RcptOptions, SMTPClient
from mailwire.errors import SMTPError

_TESTS = str(Path(__file__).resolve().parents[1])
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from server.conftest import USERS, RecordingBackend, ServerThread, server_factory, wait_for  # noqa: E402

__all__ = ["server_factory"]  # a fixture, used by name

Factory = Callable[..., ServerThread]
SWAKS = shutil.which("swaks") or "/usr/bin/swaks"
SMTP_SOURCE = "/usr/sbin/smtp-source"


def refuse_nobody(address: str, options: object) -> None:
    if address.startswith("nobody@"):
        raise SMTPError(550, "5.1.1", "No such user here")


@pytest.fixture
def server(server_factory: Factory, server_tls: ssl.SSLContext) -> ServerThread:
    """STARTTLS, AUTH (under TLS), a refused recipient 'nobody@...'."""
    return server_factory(RecordingBackend(auth=True, on_rcpt=refuse_nobody), tls_context=server_tls)


def message(subject: str = "interop", to: str = "b@example.com", sender: str = "a@example.com") -> email.message.EmailMessage:
    msg = email.message.EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content("Hello from the interop suite.\n.leading dot\n")
    return msg


# -- smtplib ------------------------------------------------------------------------------


def test_smtplib_every_command(server: ServerThread, client_tls: ssl.SSLContext) -> None:
    with smtplib.SMTP("127.0.0.1", server.port, local_hostname="client.test", timeout=5) as smtp:
        code, text = smtp.helo()
        assert code == 250 and text == b"mx.test"
        code, _ = smtp.ehlo()
        assert code == 250
        assert smtp.has_extn("pipelining") and smtp.has_extn("starttls") and smtp.has_extn("size")
        assert not smtp.has_extn("auth")  # not on plaintext
        assert smtp.noop()[0] == 250
        assert smtp.help()[:3] == b"2.0"  # smtplib returns the text: "2.0.0 See ..."
        assert smtp.vrfy("someone@example.com")[0] == 252
        assert smtp.expn("list")[0] == 502
        assert smtp.rset()[0] == 250
        # mail/rcpt/data by hand
        assert smtp.mail("a@example.com")[0] == 250
        assert smtp.rcpt("b@example.com")[0] == 250
        assert smtp.rcpt("nobody@example.com")[0] == 550
        assert smtp.data(b"Subject: by hand\r\n\r\n.dot line\r\nend\r\n")[0] == 250
        with pytest.raises(smtplib.SMTPNotSupportedError):
            smtp.login("alice", USERS["alice"])  # no AUTH before TLS
        # STARTTLS, then AUTH PLAIN (smtplib's choice) and LOGIN by hand.
        assert smtp.starttls(context=client_tls)[0] == 220
        smtp.ehlo()
        assert smtp.has_extn("auth") and not smtp.has_extn("starttls")
        assert smtp.login("alice", USERS["alice"])[0] == 235
        refused = smtp.sendmail("a@example.com", ["c@example.com", "nobody@example.com"],
                                b"Subject: sendmail\r\n\r\nsome refused\r\n")
        assert list(refused) == ["nobody@example.com"] and refused["nobody@example.com"][0] == 550
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            smtp.sendmail("a@example.com", ["nobody@example.com"], b"Subject: x\r\n\r\nx\r\n")
        assert smtp.send_message(message("send_message")) == {}
        code, _ = smtp.quit()
        assert code == 221
    with smtplib.SMTP("127.0.0.1", server.port, local_hostname="client.test", timeout=5) as smtp:
        smtp.starttls(context=client_tls)
        smtp.ehlo()
        smtp.user, smtp.password = "bob", USERS["bob"]
        assert smtp.auth("LOGIN", smtp.auth_login)[0] == 235
        # A second AUTH is refused with 503, which smtplib's auth() reports as a result.
        assert smtp.login("bob", "wrong")[0] == 503
    backend = server.backend
    assert backend.wait_messages(3)
    by_hand, sendmail, sent = backend.messages
    assert by_hand.content == b"Subject: by hand\r\n\r\n.dot line\r\nend\r\n"
    assert by_hand.rcpt_to == ["b@example.com"] and by_hand.session is not None
    assert sendmail.rcpt_to == ["c@example.com"]
    assert sendmail.session is not None and sendmail.session.auth_identity == "alice"
    assert b"Subject: send_message" in sent.content and b"\r\n..leading dot" not in sent.content
    assert b"\r\n.leading dot\r\n" in sent.content
    assert backend.calls("authenticate") == [("PLAIN", "alice"), ("LOGIN", "bob")]


def test_smtplib_smtputf8_send_message(server: ServerThread) -> None:
    with smtplib.SMTP("127.0.0.1", server.port, local_hostname="client.test", timeout=5) as smtp:
        smtp.send_message(message("unicode", to="józef@bücher.example", sender="ñandú@example.com"))
    assert server.backend.wait_messages(1)
    envelope = server.backend.messages[0]
    assert envelope.mail_from == "ñandú@example.com" and envelope.rcpt_to == ["józef@bücher.example"]
    assert envelope.smtputf8 and envelope.mail_options.smtputf8


def test_smtplib_implicit_tls(server_factory: Factory, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext) -> None:
    server = server_factory(RecordingBackend(auth=True), tls_context=server_tls, implicit_tls=True)
    with smtplib.SMTP_SSL("127.0.0.1", server.port, local_hostname="client.test", context=client_tls,
                          timeout=5) as smtp:
        smtp.login("alice", USERS["alice"])
        smtp.send_message(message("implicit"))
    assert server.backend.wait_messages(1)
    info = server.backend.messages[0].session
    assert info is not None and info.tls is not None and info.tls.implicit and info.auth_identity == "alice"


# -- aiosmtplib ------------------------------------------------------------------------------


def test_aiosmtplib_starttls_login_send_message(
    server: ServerThread, client_tls: ssl.SSLContext
) -> None:

    async def run() -> None:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=server.port, start_tls=False, tls_context=client_tls,
                               local_hostname="client.test", timeout=5)
        await smtp.connect()
        await smtp.ehlo()
        assert smtp.supports_extension("starttls")
        await smtp.starttls()
        await smtp.ehlo()
        assert "auth" in smtp.esmtp_extensions
        response = await smtp.login("alice", USERS["alice"])
        assert response.code == 235
        errors, _ = await smtp.send_message(message("aio one"))
        assert errors == {}
        errors, _ = await smtp.send_message(message("aio two", to="b@example.com, nobody@example.com"))
        assert list(errors) == ["nobody@example.com"]
        await smtp.quit()
        # The module-level helper, with STARTTLS and LOGIN chosen by the client.
        await aiosmtplib.send(message("aio send"), hostname="127.0.0.1", port=server.port, start_tls=True,
                              tls_context=client_tls, username="bob", password=USERS["bob"], timeout=5)

    asyncio.run(asyncio.wait_for(run(), 30))
    backend = server.backend
    assert backend.wait_messages(3)
    subjects = [m.content.split(b"Subject: ", 1)[1].split(b"\r\n", 1)[0] for m in backend.messages]
    assert subjects == [b"aio one", b"aio two", b"aio send"]
    assert backend.messages[1].rcpt_to == ["b@example.com"]
    assert [m.session.auth_identity for m in backend.messages] == ["alice", "alice", "bob"]  # type: ignore[union-attr]
    assert all(m.session is not None and m.session.tls is not None for m in backend.messages)


# -- mailwire's own client ---------------------------------------------------------------------


def native(server: ServerThread, **kwargs: object) -> SMTPClient:
    return SMTPClient("127.0.0.1", server.port, tls="none", local_hostname="client.test", timeout=5,
                      **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("chunking", [True, False], ids=["bdat", "data"])
def test_native_client_pipelining(server_factory: Factory, chunking: bool) -> None:
    server = server_factory(RecordingBackend(on_rcpt=refuse_nobody))
    with native(server, chunking=chunking) as client:
        assert client.capabilities.pipelining and client.capabilities.chunking
        single = client.send(b"Subject: single\r\n\r\n.dot\r\n", "a@example.com",
                             ["b@example.com", "nobody@example.com"])
        assert single.accepted == ["b@example.com"] and list(single.refused) == ["nobody@example.com"]
        before = client.round_trips
        outcomes = client.send_many(
            (b"Subject: many %d\r\n\r\n" % i + (b"x" * 98 + b"\r\n") * (i * 10), "a@example.com", [f"r{i}@example.com"])
            for i in range(20)
        )
        trips = client.round_trips - before
        assert all(not isinstance(o, SMTPError) and o.ok for o in outcomes)
        # BDAT pipelines whole transactions; DATA waits for each 354 (RFC 2920 3.1).
        limit = 5 if chunking else 22
        assert trips <= limit, f"{trips} round trips for 20 pipelined messages"
    backend = server.backend
    assert backend.wait_messages(21)
    assert backend.messages[0].content == b"Subject: single\r\n\r\n.dot\r\n"
    for i, envelope in enumerate(backend.messages[1:]):
        assert envelope.content == b"Subject: many %d\r\n\r\n" % i + (b"x" * 98 + b"\r\n") * (i * 10)
        assert envelope.rcpt_to == [f"r{i}@example.com"]


def test_native_client_bdat_binary_content(recording_server_plain: ServerThread) -> None:
    """With CHUNKING, content that DATA could not carry as is (a line '.', no
    final CRLF) arrives byte for byte."""
    content = b"Subject: raw\r\n\r\n.\r\n..\r\nno final newline"
    with native(recording_server_plain) as client:
        client.send(content, "a@example.com", ["b@example.com"])
        client.send_many([(content + b"%d" % i, "a@example.com", ["b@example.com"]) for i in range(3)])
    assert recording_server_plain.backend.wait_messages(4)
    assert [m.content for m in recording_server_plain.backend.messages] == [content] + [
        content + b"%d" % i for i in range(3)
    ]


@pytest.fixture
def recording_server_plain(server_factory: Factory) -> ServerThread:
    return server_factory()


def test_native_client_smtputf8(recording_server_plain: ServerThread) -> None:
    with native(recording_server_plain) as client:
        client.send(message("utf8", to="用户@例子.广告", sender="ñandú@example.com"))
    assert recording_server_plain.backend.wait_messages(1)
    envelope = recording_server_plain.backend.messages[0]
    assert envelope.mail_from == "ñandú@example.com" and envelope.rcpt_to == ["用户@例子.广告"]
    assert envelope.mail_options.smtputf8


def test_native_client_dsn_options_reach_the_backend_typed(recording_server_plain: ServerThread) -> None:
    options = MailOptions(ret="HDRS", envid="QQ314159+x=Case")
    per_rcpt = {
        "b@example.com": RcptOptions(notify=("SUCCESS", "FAILURE"), orcpt=("rfc822", "Orig+B@Example.com")),
        "c@example.com": RcptOptions(notify=()),  # NOTIFY=NEVER
    }
    with native(recording_server_plain) as client:
        client.send(b"Subject: dsn\r\n\r\nx\r\n", "a@example.com", ["b@example.com", "c@example.com"],
                    mail_options=options, rcpt_options=per_rcpt)
    backend = recording_server_plain.backend
    assert backend.wait_messages(1)
    (mail_options,) = [o for _, o in backend.calls("mail")]
    assert mail_options.ret == "HDRS" and mail_options.envid == "QQ314159+x=Case"
    assert mail_options.size == len(b"Subject: dsn\r\n\r\nx\r\n")
    rcpts = dict(backend.calls("rcpt"))
    assert rcpts["b@example.com"].notify == ("SUCCESS", "FAILURE")
    assert rcpts["b@example.com"].orcpt == ("rfc822", "Orig+B@Example.com")
    assert rcpts["c@example.com"].notify == ()
    envelope = backend.messages[0]
    assert envelope.rcpt_options == [rcpts["b@example.com"], rcpts["c@example.com"]]


def test_native_client_ipv6(server_factory: Factory) -> None:
    server = server_factory(host="::1")
    with SMTPClient("::1", server.port, tls="none", local_hostname="client.test", timeout=5) as client:
        client.send(b"Subject: v6\r\n\r\nx\r\n", "a@example.com", ["b@example.com"])
    assert server.backend.wait_messages(1)
    assert server.backend.messages[0].session.peer[0] == "::1"  # type: ignore[index,union-attr]


# -- swaks -----------------------------------------------------------------------------------------


def swaks(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SWAKS, "--server", "127.0.0.1", "--port", str(port), "--helo", "client.test",
         "--from", "a@example.com", "--to", "b@example.com", "--timeout", "5", *args],
        capture_output=True, text=True, timeout=30,
    )


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_swaks_starttls_auth(server: ServerThread, mechanism: str) -> None:
    run = swaks(server.port, "--tls", "--auth", mechanism, "--auth-user", "alice",
                "--auth-password", USERS["alice"], "--header", f"Subject: swaks {mechanism}")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "235" in run.stdout
    assert server.backend.wait_messages(1)
    envelope = server.backend.messages[0]
    assert envelope.session is not None and envelope.session.tls is not None
    assert envelope.session.auth_identity == "alice" and envelope.session.auth_mechanism == mechanism
    assert f"Subject: swaks {mechanism}".encode() in envelope.content


def test_swaks_auth_refused(server: ServerThread) -> None:
    run = swaks(server.port, "--tls", "--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "wrong")
    assert run.returncode != 0
    assert "535" in run.stdout
    assert server.backend.messages == []


def test_swaks_pipeline(server: ServerThread) -> None:
    run = swaks(server.port, "--pipeline", "--to", "b@example.com,c@example.com,nobody@example.com",
                "--header", "Subject: swaks pipeline")
    assert run.returncode == 0, run.stdout + run.stderr
    # Pipelined: MAIL, the RCPTs and DATA all went out before the first reply came.
    assert run.stdout.index(" -> DATA") < run.stdout.index("<-  250 2.1.0")
    assert "<** " in run.stdout  # the refused recipient (swaks marks errors so)
    assert server.backend.wait_messages(1)
    envelope = server.backend.messages[0]
    assert envelope.rcpt_to == ["b@example.com", "c@example.com"]
    assert b"Subject: swaks pipeline" in envelope.content


# -- Postfix smtp-source ------------------------------------------------------------------------------


@pytest.mark.timeout(300)  # 20,000 messages: over 60 s under coverage on a loaded machine
def test_smtp_source_20000_messages_20_sessions(server_factory: Factory) -> None:
    server = server_factory()
    # The subprocess timeout only bounds a hang; speed is measured in bench/, never here.
    run = subprocess.run(
        [SMTP_SOURCE, "-d", "-s", "20", "-m", "20000", "-l", "1024", "-M", "client.test",
         "-f", "sender@example.com", "-t", "rcpt@example.com", f"127.0.0.1:{server.port}"],
        capture_output=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr.decode(errors="replace")
    backend = server.backend
    assert wait_for(lambda: len(backend.messages) >= 20000, timeout=10)
    assert len(backend.messages) == 20000, "messages lost or duplicated"
    assert len(backend.sessions) == 20
    assert wait_for(lambda: all(s.closed.is_set() for s in backend.sessions), timeout=10)
    assert all(len(m.content) >= 1024 and m.rcpt_to == ["rcpt@example.com"] for m in backend.messages)

"""AsyncSMTPClient and AsyncLMTPClient against mailwire's own asyncio server.

Both ends run in the test's event loop. The server offers CHUNKING,
BINARYMIME, SMTPUTF8 and DSN by default, so this is where BDAT, LMTP (over
TCP and a Unix socket), internationalised addresses and DSN parameters are
checked end to end: the backend's ``Envelope`` shows exactly what arrived.
"""

from __future__ import annotations

import logging
import ssl
from email.message import EmailMessage
from pathlib import Path

import pytest

from mailwire import (
    AsyncLMTPClient, AsyncSMTPClient, MailOptions, RcptOptions, RecipientsRefused, SMTPError,
)

from .support import CountingBackend, mailwire_server, run

pytestmark = pytest.mark.timeout(30)
CONTENT = b"Subject: mailwire\r\n\r\nhello\r\n.leading dot\r\n"


def test_bdat_carries_binary_content_exactly(caplog: pytest.LogCaptureFixture) -> None:
    # BODY=BINARYMIME content (NULs, bare CR and LF, a lone dot line) can only
    # travel in BDAT chunks: its arrival intact proves BDAT was used.
    content = bytes(range(256)) * 64 + b"\r\n.\r\n" + b"\n\r\x00" * 100
    backend = CountingBackend()
    caplog.set_level(logging.DEBUG, logger="mailwire.client")

    async def main() -> None:
        async with mailwire_server(backend) as server:
            async with AsyncSMTPClient("127.0.0.1", server.port, tls="none", timeout=5) as client:
                assert client.capabilities.chunking and client.capabilities.binarymime
                result = await client.send(
                    content, "s@example.org", ["r@example.net"], mail_options=MailOptions(body="BINARYMIME")
                )
                assert result.ok and result.size == len(content)

    run(main())
    [envelope] = backend.envelopes
    assert envelope.content == content
    assert envelope.mail_options.body == "BINARYMIME"
    assert f"BDAT {len(content)} LAST" in caplog.text and "> DATA" not in caplog.text


def test_bdat_multi_chunk_and_pipelined_batch() -> None:
    big = (b"x" * 998 + b"\r\n") * 2600  # 2.6 MB: three 1 MiB BDAT chunks
    backend = CountingBackend()

    async def main() -> None:
        async with mailwire_server(backend) as server:
            async with AsyncSMTPClient("127.0.0.1", server.port, tls="none", timeout=5) as client:
                assert (await client.send(big, "s@example.org", ["r@example.net"])).ok
                items = [(CONTENT + str(i).encode() + b"\r\n", f"s{i}@example.org", [f"r{i}@example.net"])
                         for i in range(50)]
                start = client.round_trips
                outcomes = await client.send_many(items)
                # Whole BDAT transactions are written back to back: at most one wait per message.
                assert client.round_trips - start <= 50
        assert all(not isinstance(o, Exception) and o.ok for o in outcomes)

    run(main())
    assert backend.envelopes[0].content == big
    assert [e.mail_from for e in backend.envelopes[1:]] == [f"s{i}@example.org" for i in range(50)]
    assert all(e.content == CONTENT + str(i).encode() + b"\r\n" for i, e in enumerate(backend.envelopes[1:]))
    assert backend.sink.messages == 51


def test_data_when_chunking_is_turned_off(caplog: pytest.LogCaptureFixture) -> None:
    backend = CountingBackend()
    caplog.set_level(logging.DEBUG, logger="mailwire.client")

    async def main() -> None:
        async with mailwire_server(backend) as server:
            async with AsyncSMTPClient("127.0.0.1", server.port, tls="none", chunking=False, timeout=5) as client:
                assert (await client.send(CONTENT, "s@example.org", ["r@example.net"])).ok

    run(main())
    assert backend.envelopes[0].content == CONTENT  # dot-stuffed on the wire, unstuffed on arrival
    assert "> DATA" in caplog.text and "BDAT" not in caplog.text


def _per_recipient(rcpt: str) -> SMTPError | None:
    if rcpt.startswith("full"):
        return SMTPError(452, "4.2.2", "Mailbox full")
    if rcpt.startswith("gone"):
        return SMTPError(550, "5.1.1", "No such mailbox")
    return None


@pytest.mark.parametrize("where", ["tcp", "unix"])
@pytest.mark.parametrize("chunking", [True, False], ids=["bdat", "data"])
def test_lmtp_one_reply_per_recipient(short_tmp: Path, where: str, chunking: bool) -> None:
    backend = CountingBackend(lmtp=True, lmtp_outcome=_per_recipient)
    path = str(short_tmp / "lmtp.sock")
    rcpts = ["a@example.net", "full@example.net", "b@example.net", "gone@example.net"]

    async def main() -> None:
        async with mailwire_server(backend, tcp=where == "tcp", unix_path=path if where == "unix" else None,
                                   lmtp=True) as server:
            host, port = ("127.0.0.1", server.port) if where == "tcp" else (path, 0)
            async with AsyncLMTPClient(host, port, chunking=chunking, timeout=5) as client:
                assert not client.is_tls
                result = await client.send(CONTENT, "s@example.org", rcpts)
                assert result.data_reply is None
                assert result.accepted == ["a@example.net", "b@example.net"]
                assert {r: reply.code for r, reply in result.refused.items()} == {
                    "full@example.net": 452, "gone@example.net": 550,
                }
                assert result.rcpt_replies["full@example.net"].code == 250  # RCPT itself was accepted
                # All refused after the data: RecipientsRefused, with every reply.
                with pytest.raises(RecipientsRefused) as caught:
                    await client.send(CONTENT, "s@example.org", ["full@example.net", "gone@example.net"])
                assert {r: x.code for r, x in caught.value.result.recipients.items()} == {
                    "full@example.net": 452, "gone@example.net": 550,
                }
                # And the session is still in step.
                assert (await client.send(CONTENT, "s@example.org", ["c@example.net"])).ok

    run(main())
    assert [e.rcpt_to for e in backend.envelopes] == [
        rcpts, ["full@example.net", "gone@example.net"], ["c@example.net"],
    ]
    assert all(e.content == CONTENT for e in backend.envelopes)


def test_lmtp_client_refused_by_an_smtp_server() -> None:
    async def main() -> None:
        async with mailwire_server(CountingBackend()) as server:
            client = AsyncLMTPClient("127.0.0.1", server.port, timeout=5)
            with pytest.raises(SMTPError) as caught:
                await client.connect()
            assert caught.value.code >= 500
            assert not client.connected

    run(main())


def test_smtputf8_addresses() -> None:
    backend = CountingBackend()
    msg = EmailMessage()
    msg["From"] = "jörg@exämple.org"
    msg["To"] = "zoë@exämple.net, plain@example.net"
    msg["Subject"] = "grüße"
    msg.set_content("Grüße aus Köln\n")

    async def main() -> None:
        async with mailwire_server(backend) as server:
            async with AsyncSMTPClient("127.0.0.1", server.port, tls="none", timeout=5) as client:
                assert client.capabilities.smtputf8
                result = await client.send(msg)
                assert result.ok and result.accepted == ["zoë@exämple.net", "plain@example.net"]

    run(main())
    [envelope] = backend.envelopes
    assert envelope.smtputf8 and envelope.mail_from == "jörg@exämple.org"
    assert envelope.rcpt_to == ["zoë@exämple.net", "plain@example.net"]
    assert "Grüße aus Köln".encode() in envelope.content or b"=?utf-8?" in envelope.content


def test_dsn_options_reach_the_backend() -> None:
    backend = CountingBackend()
    mail_options = MailOptions(ret="HDRS", envid="Env+ID=Case 1")
    rcpt_options = {
        "a@example.net": RcptOptions(notify=("SUCCESS", "FAILURE"), orcpt=("rfc822", "Orig+A@Example.net")),
        "b@example.net": RcptOptions(notify=()),  # NOTIFY=NEVER
    }

    async def main() -> None:
        async with mailwire_server(backend) as server:
            async with AsyncSMTPClient("127.0.0.1", server.port, tls="none", timeout=5) as client:
                assert client.capabilities.dsn
                result = await client.send(
                    CONTENT, "s@example.org", ["a@example.net", "b@example.net", "c@example.net"],
                    mail_options=mail_options, rcpt_options=rcpt_options,
                )
                assert result.ok

    run(main())
    [envelope] = backend.envelopes
    assert envelope.mail_options.ret == "HDRS"
    assert envelope.mail_options.envid == "Env+ID=Case 1"  # xtext on the wire, decoded, case kept
    assert envelope.mail_options.size == len(CONTENT)
    a, b, c = envelope.rcpt_options
    assert a.notify == ("SUCCESS", "FAILURE") and a.orcpt == ("rfc822", "Orig+A@Example.net")
    assert b.notify == () and b.orcpt is None
    assert c == RcptOptions()


def test_starttls_against_mailwire(server_tls: ssl.SSLContext, client_tls: ssl.SSLContext) -> None:
    backend = CountingBackend()

    async def main() -> None:
        async with mailwire_server(backend, tls_context=server_tls) as server:
            async with AsyncSMTPClient("127.0.0.1", server.port, ssl_context=client_tls, timeout=5) as client:
                assert client.is_tls and client.capabilities.has("requiretls")
                result = await client.send(
                    CONTENT, "s@example.org", ["r@example.net"], mail_options=MailOptions(requiretls=True)
                )
                assert result.ok

    run(main())
    [envelope] = backend.envelopes
    assert envelope.session is not None and envelope.session.tls is not None
    assert envelope.mail_options.requiretls

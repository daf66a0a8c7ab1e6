"""``mailwire.send``: connect, send one message, QUIT — and the client's own basics.

The recording server shows the whole conversation of a one-shot send; the
basics (envelope from headers, Bcc kept off the wire, partial refusals,
NOOP/RSET/VRFY, quit twice) are checked once here for the asyncio client.
"""

from __future__ import annotations

import ssl
from email.message import EmailMessage

import pytest

import mailwire
from mailwire import (
    AsyncSMTPClient, ConnectionClosed, LocalProtocolError, RecipientsRefused, SenderRefused, SMTPError,
    TLSRequiredError,
)

from .support import CountingBackend, Recorder, mailwire_server, run, wait_until

pytestmark = pytest.mark.timeout(30)


def _message() -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "alice@example.org"
    msg["To"] = "bob@example.net"
    msg["Cc"] = "carol@example.net"
    msg["Bcc"] = "dave@example.net"
    msg["Subject"] = "one shot"
    msg.set_content("sent with mailwire.send\n")
    return msg


def test_one_shot_send() -> None:
    async def main() -> None:
        async with Recorder() as rec:
            result = await mailwire.send(_message(), host=rec.host, port=rec.port, tls="none", timeout=5)
            assert result.ok
            assert sorted(result.accepted) == ["bob@example.net", "carol@example.net", "dave@example.net"]
            [conn] = rec.conns
            assert [line.split(" ")[0] for line in conn.lines] == ["EHLO", "MAIL", "RCPT", "RCPT", "RCPT", "DATA", "QUIT"]
            assert conn.quit
            [txn] = conn.transactions
            assert txn.mail_from == "alice@example.org"
            assert b"sent with mailwire.send" in txn.content and b"dave@" not in txn.content  # Bcc stays off

    run(main())


def test_one_shot_with_bytes_and_explicit_envelope() -> None:
    backend = CountingBackend()

    async def main() -> None:
        async with mailwire_server(backend) as server:
            result = await mailwire.send(
                b"Subject: raw\r\n\r\nraw bytes\r\n", "s@example.org", "r@example.net",
                host="127.0.0.1", port=server.port, tls="none", timeout=5,
            )
            assert result.ok and result.accepted == ["r@example.net"]

    run(main())
    [envelope] = backend.envelopes
    assert envelope.content == b"Subject: raw\r\n\r\nraw bytes\r\n"


def test_one_shot_refusal_raises_and_closes() -> None:
    async def refuse(envelope: object) -> None:
        raise SMTPError(550, "5.7.1", "no thanks")

    backend = CountingBackend(on_data=refuse)

    async def main() -> None:
        async with mailwire_server(backend) as server:
            with pytest.raises(mailwire.DataRefused, match="no thanks"):
                await mailwire.send(_message(), host="127.0.0.1", port=server.port, tls="none", timeout=5)
            assert await wait_until(lambda: backend.open == 0)  # the client hung up

    run(main())
    assert [s.closed for s in backend.sessions] == [True]


def test_one_shot_keeps_the_safe_defaults() -> None:
    async def main() -> None:
        async with Recorder() as rec:  # no STARTTLS on offer
            with pytest.raises(TLSRequiredError):
                await mailwire.send(_message(), host=rec.host, port=rec.port, timeout=5)
            assert rec.transactions == []

    run(main())


def test_one_shot_implicit_tls(server_tls: ssl.SSLContext, client_tls: ssl.SSLContext) -> None:
    backend = CountingBackend()

    async def main() -> None:
        async with mailwire_server(backend, tls_context=server_tls, implicit_tls=True) as server:
            result = await mailwire.send(_message(), host="127.0.0.1", port=server.port, tls="implicit",
                                         ssl_context=client_tls, timeout=5)
            assert result.ok

    run(main())
    [envelope] = backend.envelopes
    assert envelope.session is not None and envelope.session.tls is not None and envelope.session.tls.implicit


def _refuse(address: str) -> SMTPError | None:
    if address.startswith("blocked"):
        return SMTPError(550, "5.7.1", f"{address} is blocked")
    if address.startswith("unknown"):
        return SMTPError(550, "5.1.1", "No such user")
    return None


def test_partial_and_total_refusals() -> None:
    backend = CountingBackend(refuse=_refuse)

    async def main() -> None:
        async with mailwire_server(backend) as server:
            async with AsyncSMTPClient("127.0.0.1", server.port, tls="none", timeout=5) as client:
                partial = await client.send(b"x\r\n", "s@example.org", ["a@example.net", "unknown@example.net"])
                assert partial.accepted == ["a@example.net"] and not partial.ok
                assert partial.refused["unknown@example.net"].code == 550
                with pytest.raises(RecipientsRefused) as total:
                    await client.send(b"x\r\n", "s@example.org", ["unknown1@example.net", "unknown2@example.net"])
                assert sorted(total.value.result.refused) == ["unknown1@example.net", "unknown2@example.net"]
                with pytest.raises(SenderRefused) as sender:
                    await client.send(b"x\r\n", "blocked@example.org", ["a@example.net"])
                assert sender.value.sender == "blocked@example.org" and str(sender.value.enhanced) == "5.7.1"
                outcomes = await client.send_many([
                    (b"1\r\n", "s@example.org", ["a@example.net"]),
                    (b"2\r\n", "blocked@example.org", ["a@example.net"]),
                    (b"3\r\n", "s@example.org", ["unknown@example.net"]),
                    (b"4\r\n", "s@example.org", ["b@example.net"]),
                ])
                assert [type(o).__name__ for o in outcomes] == [
                    "SendResult", "SenderRefused", "RecipientsRefused", "SendResult",
                ]
                # After refusals mid-batch the session is still in step.
                assert (await client.noop()).code == 250
                assert (await client.send(b"5\r\n", "s@example.org", ["c@example.net"])).ok

    run(main())
    assert [e.content for e in backend.envelopes] == [b"x\r\n", b"1\r\n", b"4\r\n", b"5\r\n"]


def test_other_commands_and_local_refusals() -> None:
    async def main() -> None:
        async with Recorder() as rec:
            async with AsyncSMTPClient(*rec.address, tls="none", timeout=5) as client:
                assert (await client.noop()).code == 250
                assert (await client.rset()).code == 250
                assert (await client.verify("someone")).code == 500  # the recorder knows no VRFY
                with pytest.raises(TypeError):
                    await client.send(b"x\r\n")  # bytes need an envelope
                with pytest.raises(ValueError, match="no recipients"):
                    await client.send(b"x\r\n", "s@example.org", [])
                assert (await client.send(b"x\r\n", "s@example.org", "r@example.net")).ok
                assert client.messages_sent == 1
            assert not client.connected
            assert await client.quit() is None  # a second QUIT is not an error
            [conn] = rec.conns
            assert [line.split(" ")[0] for line in conn.lines] == [
                "EHLO", "NOOP", "RSET", "VRFY", "MAIL", "RCPT", "DATA", "QUIT",
            ]

    run(main())


def test_use_after_quit_with_auto_reconnect_off() -> None:
    async def main() -> None:
        async with Recorder() as rec:
            client = AsyncSMTPClient(*rec.address, tls="none", timeout=5, auto_reconnect=False)
            async with client:
                with pytest.raises(LocalProtocolError, match="already connected"):
                    await client.connect()
            with pytest.raises(ConnectionClosed):
                await client.noop()
            with pytest.raises(ConnectionClosed):
                await client.send(b"x\r\n", "s@example.org", ["r@example.net"])
            assert rec.attempts == 1

    run(main())


def test_mail_rcpt_and_data_one_step_at_a_time() -> None:
    backend = CountingBackend(refuse=_refuse)

    async def main() -> None:
        async with mailwire_server(backend) as server:
            async with mailwire.AsyncSMTPClient("127.0.0.1", server.port, tls="none", timeout=5) as client:
                assert (await client.mail("s@example.org")).code == 250
                assert (await client.rcpt("r@example.net")).code == 250
                refused = await client.rcpt("unknown@example.net")
                assert (refused.code, str(refused.enhanced)) == (550, "5.1.1")
                assert (await client.data(b"Subject: steps\r\n\r\n.dot\r\n")).code == 250

    run(main())
    [envelope] = backend.envelopes
    assert envelope.rcpt_to == ["r@example.net"] and envelope.content == b"Subject: steps\r\n\r\n.dot\r\n"

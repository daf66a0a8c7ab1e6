"""SMTPClient.send(): envelopes, per-recipient results, refusals, extensions.

Exact wire checks use ``MiniSMTP`` (it keeps every command line as received);
delivery checks use aiosmtpd. Each refusal test then sends again on the same
connection: a refused transaction must not leave the server inside it.
"""

from __future__ import annotations

import email
import email.policy
import io
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

import pytest

from mailwire import (
    DataRefused, MailOptions, NotSupportedError, RcptOptions, RecipientsRefused, SenderRefused,
    SMTPClient, SMTPError, SendResult,
)

from helpers.aiosmtpd_server import RecordingHandler, Running
from helpers.minismtp import MiniSMTP
from helpers.scripted import Peer, ScriptedServer

Start = Callable[..., ScriptedServer]
Factory = Callable[..., Running]
BODY = b"Subject: test\r\n\r\nline one\r\n.leading dot\r\n..two dots\r\n.\r\nlast\r\n"


def _message() -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Alice <alice@example.org>"
    msg["To"] = "bob@example.net, Carol <carol@example.net>"
    msg["Cc"] = "dave@example.com"
    msg["Bcc"] = "Eve <eve@example.com>"
    msg["Subject"] = "envelope from headers"
    msg.set_content("hello\n")
    return msg


def _mini(**options: object) -> MiniSMTP:
    return MiniSMTP(**options)  # type: ignore[arg-type]


def _client(server: ScriptedServer, **options: object) -> SMTPClient:
    return SMTPClient(*server.address, tls="none", timeout=5, **options)  # type: ignore[arg-type]


def _refuse(*addresses: str, reply: str = "550 5.1.1 No such user") -> Callable[[str], str | None]:
    return lambda address: reply if address in addresses else None


# -- envelopes ----------------------------------------------------------------


def test_email_message_envelope_from_headers_and_bcc_not_transmitted(aiosmtpd_factory: Factory) -> None:
    server = aiosmtpd_factory()
    with SMTPClient(*server.address, tls="none", timeout=5) as client:
        result = client.send(_message())
    everyone = ["bob@example.net", "carol@example.net", "eve@example.com", "dave@example.com"]
    assert result.mail_from == "alice@example.org"
    assert sorted(result.accepted) == sorted(everyone)
    assert result.ok and result.refused == {}
    [envelope] = server.handler.envelopes
    assert envelope.mail_from == "alice@example.org"
    assert sorted(envelope.rcpt_tos) == sorted(everyone)
    assert isinstance(envelope.content, bytes)
    assert b"Bcc" not in envelope.content and b"eve@" not in envelope.content
    assert b"Cc: dave@example.com" in envelope.content


def test_bcc_never_reaches_the_wire(scripted: Start) -> None:
    smtp = _mini()
    server = scripted(smtp)
    with _client(server) as client:
        client.send(_message())
    [txn] = smtp.transactions
    assert "eve@example.com" in txn.rcpt_to
    assert b"Bcc" not in txn.content
    assert server.received.count(b"eve@example.com") == 1  # only in RCPT TO


def test_bytes_with_explicit_envelope_arrive_exactly(scripted: Start) -> None:
    smtp = _mini()
    server = scripted(smtp)
    with _client(server) as client:
        result = client.send(BODY, "sender@example.org", ["r1@example.net", "r2@example.net"])
    assert result.size == len(BODY)
    [txn] = smtp.transactions
    assert txn.mail == "MAIL FROM:<sender@example.org>"
    assert txn.rcpts == ["RCPT TO:<r1@example.net>", "RCPT TO:<r2@example.net>"]
    assert txn.via == "DATA" and txn.content == BODY
    # Dot-stuffing on the wire, undone by the receiver.
    assert b"\r\n..leading dot\r\n...two dots\r\n..\r\nlast\r\n.\r\n" in server.received


def test_null_sender_and_single_recipient_string(scripted: Start) -> None:
    smtp = _mini()
    server = scripted(smtp)
    with _client(server) as client:
        client.send(BODY, "", "postmaster@example.net")
    assert smtp.transactions[0].mail == "MAIL FROM:<>"
    assert smtp.transactions[0].rcpts == ["RCPT TO:<postmaster@example.net>"]


def test_bytes_without_envelope_is_a_type_error(scripted: Start) -> None:
    server = scripted(_mini())
    with _client(server) as client:
        with pytest.raises(TypeError, match="needs mail_from and rcpt_to"):
            client.send(BODY)
        assert client.noop().code == 250


# -- refusals -----------------------------------------------------------------


@pytest.mark.parametrize("pipelining", [True, False])
def test_some_recipients_refused(scripted: Start, pipelining: bool) -> None:
    smtp = _mini(rcpt_reply=_refuse("nobody@example.net", "gone@example.net"))
    server = scripted(smtp)
    rcpts = ["a@example.net", "nobody@example.net", "b@example.net", "gone@example.net"]
    with _client(server, pipelining=pipelining) as client:
        result = client.send(BODY, "s@example.org", rcpts)
    assert result.accepted == ["a@example.net", "b@example.net"]
    assert set(result.refused) == {"nobody@example.net", "gone@example.net"}
    assert all(r.code == 550 and str(r.enhanced) == "5.1.1" for r in result.refused.values())
    assert not result.ok
    assert result.data_reply is not None and result.data_reply.code == 250
    assert result.recipients["a@example.net"] == result.data_reply
    assert smtp.transactions[0].accepted == ["a@example.net", "b@example.net"]


def test_some_recipients_refused_by_aiosmtpd(aiosmtpd_factory: Factory) -> None:
    handler = RecordingHandler(refuse_rcpt={"carol@example.net": "550 5.1.1 Unknown user"})
    server = aiosmtpd_factory(handler=handler)
    with SMTPClient(*server.address, tls="none", timeout=5) as client:
        result = client.send(_message())
    assert list(result.refused) == ["carol@example.net"]
    assert result.refused["carol@example.net"].code == 550
    assert "carol@example.net" not in handler.envelopes[0].rcpt_tos
    assert len(result.accepted) == 3


@pytest.mark.parametrize("pipelining", [True, False])
def test_all_recipients_refused_then_the_connection_goes_on(scripted: Start, pipelining: bool) -> None:
    smtp = _mini(rcpt_reply=_refuse("x@example.net", "y@example.net", reply="550 5.1.1 No such user here"))
    server = scripted(smtp)
    with _client(server, pipelining=pipelining) as client:
        with pytest.raises(RecipientsRefused) as caught:
            client.send(BODY, "s@example.org", ["x@example.net", "y@example.net"])
        err = caught.value
        assert err.code == 550
        assert set(err.result.recipients) == {"x@example.net", "y@example.net"}
        assert all(r.code == 550 for r in err.result.recipients.values())
        assert str(err) == (
            "all recipients refused: x@example.net: 550 5.1.1 No such user here; "
            "y@example.net: 550 5.1.1 No such user here"
        )
        # The refused transaction is closed: the next one is accepted.
        result = client.send(BODY, "s@example.org", ["ok@example.net"])
        assert result.ok
    assert [t.rcpt_to for t in smtp.transactions] == [["ok@example.net"]]
    assert not any(c.startswith("503") for c in smtp.commands)


def test_all_recipients_refused_by_aiosmtpd(aiosmtpd_factory: Factory) -> None:
    refuse = {a: "550 5.1.1 Unknown" for a in ("bob@example.net", "carol@example.net", "dave@example.com", "eve@example.com")}
    server = aiosmtpd_factory(handler=RecordingHandler(refuse_rcpt=refuse))
    with SMTPClient(*server.address, tls="none", timeout=5) as client:
        with pytest.raises(RecipientsRefused) as caught:
            client.send(_message())
        assert set(caught.value.result.recipients) == set(refuse)
        assert client.send(BODY, "a@example.org", ["fine@example.org"]).ok


@pytest.mark.parametrize("pipelining", [True, False])
def test_sender_refused(scripted: Start, pipelining: bool) -> None:
    smtp = _mini(mail_reply="550 5.7.1 Sender blocked")
    server = scripted(smtp)
    with _client(server, pipelining=pipelining) as client:
        with pytest.raises(SenderRefused) as caught:
            client.send(BODY, "spammer@example.org", ["r@example.net"])
        assert caught.value.code == 550
        assert caught.value.sender == "spammer@example.org"
        assert "Sender blocked" in str(caught.value)
        assert client.connected
    assert smtp.transactions == []
    if not pipelining:  # nothing after a refused MAIL when waiting for each reply
        assert [c.split(" ")[0] for c in smtp.commands] == ["EHLO", "MAIL", "QUIT"]


@pytest.mark.parametrize("pipelining", [True, False])
def test_data_command_refused_then_the_connection_goes_on(scripted: Start, pipelining: bool) -> None:
    smtp = _mini(data_reply="451 4.3.0 Try again later")
    server = scripted(smtp)
    with _client(server, pipelining=pipelining) as client:
        with pytest.raises(DataRefused) as caught:
            client.send(BODY, "s@example.org", ["r@example.net"])
        assert caught.value.code == 451
        assert caught.value.result is not None
        assert caught.value.result.rcpt_replies["r@example.net"].code == 250
        # A new transaction must start cleanly: no "503 nested MAIL".
        smtp.data_reply = "354 go ahead"
        assert client.send(BODY, "s@example.org", ["r@example.net"]).ok
    assert len(smtp.transactions) == 1


def test_message_refused_after_content(aiosmtpd_factory: Factory) -> None:
    server = aiosmtpd_factory(handler=RecordingHandler(data_reply="554 5.6.0 Message rejected: spam"))
    with SMTPClient(*server.address, tls="none", timeout=5) as client:
        with pytest.raises(DataRefused) as caught:
            client.send(_message())
        assert caught.value.code == 554 and str(caught.value.enhanced) == "5.6.0"
        assert caught.value.result is not None and caught.value.result.size > 0
        server.handler.data_reply = None
        assert client.send(_message()).ok
    assert len(server.handler.envelopes) == 1


def test_message_refused_after_content_pipelined(scripted: Start) -> None:
    smtp = _mini(final_reply=lambda txn, rcpt: "554 5.6.0 Content refused")
    server = scripted(smtp)
    with _client(server) as client:
        with pytest.raises(DataRefused, match="554 5.6.0 Content refused"):
            client.send(BODY, "s@example.org", ["r@example.net"])
        smtp.final_reply = None
        assert client.send(BODY, "s@example.org", ["r@example.net"]).ok


# -- SMTPUTF8, 8BITMIME, SIZE -----------------------------------------------------


def test_smtputf8_address_asks_for_smtputf8(scripted: Start) -> None:
    smtp = _mini(extensions=("PIPELINING", "8BITMIME", "SMTPUTF8"))
    server = scripted(smtp)
    with _client(server) as client:
        client.send(BODY, "jöran@exämple.org", ["用户@例子.广告"])
    [txn] = smtp.transactions
    assert txn.mail == "MAIL FROM:<jöran@exämple.org> SMTPUTF8"
    assert txn.rcpts == ["RCPT TO:<用户@例子.广告>"]
    assert "MAIL FROM:<jöran@exämple.org> SMTPUTF8\r\n".encode() in server.received


def test_smtputf8_email_message_against_aiosmtpd(aiosmtpd_factory: Factory) -> None:
    server = aiosmtpd_factory()
    msg = EmailMessage()
    msg["From"] = "Jöran <jöran@exämple.org>"
    msg["To"] = "用户@例子.广告"
    msg["Subject"] = "ünïcödé"
    msg.set_content("grüße\n")
    with SMTPClient(*server.address, tls="none", timeout=5) as client:
        assert client.capabilities.smtputf8
        client.send(msg)
    [envelope] = server.handler.envelopes
    assert envelope.smtp_utf8
    assert envelope.mail_from == "jöran@exämple.org"
    assert envelope.rcpt_tos == ["用户@例子.广告"]
    assert isinstance(envelope.content, bytes)
    assert "To: 用户@例子.广告".encode() in envelope.content  # UTF-8 headers, not encoded words


def test_smtputf8_address_without_extension_is_refused_locally(scripted: Start) -> None:
    smtp = _mini(extensions=("PIPELINING", "8BITMIME"))
    server = scripted(smtp)
    with _client(server) as client:
        with pytest.raises(NotSupportedError, match="SMTPUTF8"):
            client.send(BODY, "s@example.org", ["ünï@example.net"])
        assert client.noop().code == 250
    assert not any(c.startswith(("MAIL", "RCPT")) for c in smtp.commands)


def test_8bit_content_declares_8bitmime(scripted: Start) -> None:
    smtp = _mini(extensions=("PIPELINING", "8BITMIME"))
    server = scripted(smtp)
    content = "Subject: 8bit\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGrüße\r\n".encode()
    with _client(server) as client:
        client.send(content, "s@example.org", ["r@example.net"])
        client.send(b"Subject: ascii\r\n\r\nplain\r\n", "s@example.org", ["r@example.net"])
    eight, seven = smtp.transactions
    assert eight.mail == "MAIL FROM:<s@example.org> BODY=8BITMIME"
    assert eight.content == content
    assert seven.mail == "MAIL FROM:<s@example.org>"


def test_8bit_message_reencoded_as_7bit_without_8bitmime(scripted: Start) -> None:
    smtp = _mini(extensions=("PIPELINING",))
    server = scripted(smtp)
    msg = EmailMessage()
    msg["From"] = "a@example.org"
    msg["To"] = "b@example.net"
    msg["Subject"] = "Grüße"
    text = "Grüße aus Köln – ünïcödé\n"
    msg.set_content(text, cte="8bit")
    with _client(server) as client:
        client.send(msg)
    [txn] = smtp.transactions
    assert "BODY=" not in txn.mail
    assert txn.content.isascii()
    parsed = email.message_from_bytes(txn.content, policy=email.policy.default)
    assert parsed["Content-Transfer-Encoding"] in ("quoted-printable", "base64")
    assert parsed.get_content() == text
    assert str(parsed["Subject"]) == "Grüße"


def test_8bit_part_without_charset_cannot_be_reencoded(scripted: Start) -> None:
    # Parsed from bytes, an 8-bit body with no charset has nothing to re-encode
    # with; a 7-bit server must not get it raw, and the caller gets a clear error.
    smtp = _mini(extensions=("PIPELINING",))
    server = scripted(smtp)
    raw = "From: a@example.org\r\nTo: b@example.net\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGrüße\r\n"
    msg = email.message_from_bytes(raw.encode())
    with _client(server) as client:
        with pytest.raises(NotSupportedError, match="8BITMIME"):
            client.send(msg)
        assert client.noop().code == 250
    assert not any(c.startswith("MAIL") for c in smtp.commands)


def test_8bit_compat32_message_with_charset_is_reencoded(scripted: Start) -> None:
    smtp = _mini(extensions=("PIPELINING",))
    server = scripted(smtp)
    raw = (
        "From: a@example.org\r\nTo: b@example.net\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGrüße\r\n"
    )
    with _client(server) as client:
        client.send(email.message_from_bytes(raw.encode()))
    [txn] = smtp.transactions
    assert txn.content.isascii()
    parsed = email.message_from_bytes(txn.content, policy=email.policy.default)
    assert parsed.get_content().rstrip("\r\n") == "Grüße"


def test_8bit_message_sent_as_is_with_8bitmime(scripted: Start) -> None:
    smtp = _mini(extensions=("PIPELINING", "8BITMIME"))
    server = scripted(smtp)
    msg = EmailMessage()
    msg["From"] = "a@example.org"
    msg["To"] = "b@example.net"
    msg.set_content("Grüße\n", cte="8bit")
    with _client(server) as client:
        client.send(msg)
    [txn] = smtp.transactions
    assert txn.mail.endswith(" BODY=8BITMIME")
    assert "Grüße".encode() in txn.content


def test_size_is_declared(scripted: Start) -> None:
    smtp = _mini(extensions=("PIPELINING", "SIZE 100000"))
    server = scripted(smtp)
    with _client(server) as client:
        client.send(BODY, "s@example.org", ["r@example.net"])
    assert smtp.transactions[0].mail == f"MAIL FROM:<s@example.org> SIZE={len(BODY)}"


def test_message_over_the_size_limit_is_refused_locally(scripted: Start) -> None:
    smtp = _mini(extensions=("PIPELINING", "SIZE 1000"))
    server = scripted(smtp)
    big = b"Subject: big\r\n\r\n" + b"x" * 998 + b"\r\n"
    with _client(server) as client:
        with pytest.raises(SMTPError) as caught:
            client.send(big, "s@example.org", ["r@example.net"])
        assert caught.value.code == 552 and str(caught.value.enhanced) == "5.3.4"
        assert "exceeds the server's limit of 1000" in str(caught.value)
        assert client.noop().code == 250
    assert not any(c.startswith("MAIL") for c in smtp.commands)


def test_size_limit_against_aiosmtpd(aiosmtpd_factory: Factory) -> None:
    server = aiosmtpd_factory(data_size_limit=2048)
    with SMTPClient(*server.address, tls="none", timeout=5) as client:
        assert client.capabilities.max_size == 2048
        with pytest.raises(SMTPError) as caught:
            client.send(b"x" * 4096 + b"\r\n", "s@example.org", ["r@example.net"])
        assert caught.value.code == 552
        assert client.send(b"small\r\n", "s@example.org", ["r@example.net"]).ok


# -- DSN ----------------------------------------------------------------------


def test_dsn_options_reach_the_server_exactly(scripted: Start) -> None:
    smtp = _mini(extensions=("PIPELINING", "DSN"))
    server = scripted(smtp)
    mail_options = MailOptions(ret="HDRS", envid="QQ314159+Case=kept")
    rcpt_options = {
        "Bob@Example.net": RcptOptions(notify=("SUCCESS", "FAILURE"), orcpt=("rfc822", "Bob@Example.net")),
        "carol@example.net": RcptOptions(notify=()),
        "dave@example.net": RcptOptions(notify=("DELAY",), orcpt=("rfc822", "dave+tag@example.net")),
    }
    with _client(server) as client:
        client.send(
            BODY, "s@example.org", list(rcpt_options), mail_options=mail_options, rcpt_options=rcpt_options,
        )
    [txn] = smtp.transactions
    assert txn.mail == "MAIL FROM:<s@example.org> RET=HDRS ENVID=QQ314159+2BCase+3Dkept"
    assert txn.rcpts == [
        "RCPT TO:<Bob@Example.net> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Bob@Example.net",
        "RCPT TO:<carol@example.net> NOTIFY=NEVER",
        "RCPT TO:<dave@example.net> NOTIFY=DELAY ORCPT=rfc822;dave+2Btag@example.net",
    ]


def test_one_rcpt_options_value_applies_to_every_recipient(scripted: Start) -> None:
    smtp = _mini(extensions=("PIPELINING", "DSN"))
    server = scripted(smtp)
    with _client(server) as client:
        client.send(BODY, "s@example.org", ["a@example.net", "b@example.net"],
                    rcpt_options=RcptOptions(notify=("FAILURE",)))
    assert smtp.transactions[0].rcpts == [
        "RCPT TO:<a@example.net> NOTIFY=FAILURE", "RCPT TO:<b@example.net> NOTIFY=FAILURE",
    ]


@pytest.mark.parametrize("kwargs", [
    {"mail_options": MailOptions(ret="FULL")},
    {"mail_options": MailOptions(envid="x")},
    {"rcpt_options": RcptOptions(notify=("SUCCESS",))},
    {"rcpt_options": RcptOptions(orcpt=("rfc822", "r@example.net"))},
])
def test_dsn_without_the_extension_is_refused_locally(scripted: Start, kwargs: dict[str, object]) -> None:
    smtp = _mini(extensions=("PIPELINING",))
    server = scripted(smtp)
    with _client(server) as client:
        with pytest.raises(NotSupportedError, match="DSN"):
            client.send(BODY, "s@example.org", ["r@example.net"], **kwargs)  # type: ignore[arg-type]
    assert not any(c.startswith("MAIL") for c in smtp.commands)


def test_rcpt_options_for_an_unknown_recipient(scripted: Start) -> None:
    server = scripted(_mini(extensions=("PIPELINING", "DSN")))
    with _client(server) as client:
        with pytest.raises(ValueError, match="not among the recipients"):
            client.send(BODY, "s@example.org", ["r@example.net"],
                        rcpt_options={"other@example.net": RcptOptions(notify=())})


# -- streamed content -------------------------------------------------------------


def _streamed_content() -> bytes:
    # Lines that start with a dot land on every 1 MiB chunk boundary.
    line = b"." + b"y" * 1021 + b"\r\n"  # 1024 octets: chunk boundaries fall on line starts
    return b"Subject: big\r\n\r\n" + line * 3000 + b".\r\n" + b"end\r\n"


def test_file_content_is_streamed_and_arrives_exactly(scripted: Start, tmp_path: Path) -> None:
    smtp = _mini(extensions=("PIPELINING", "SIZE 100000000"))
    server = scripted(smtp)
    content = _streamed_content()
    path = tmp_path / "message.eml"
    path.write_bytes(content)
    with _client(server) as client, path.open("rb") as stream:
        result = client.send(stream, "s@example.org", ["r@example.net"])
    assert result.size == len(content)
    [txn] = smtp.transactions
    assert txn.mail == f"MAIL FROM:<s@example.org> SIZE={len(content)}"
    assert txn.content == content


def test_unseekable_stream_has_no_size_declared(scripted: Start) -> None:
    smtp = _mini(extensions=("PIPELINING", "SIZE 100000000"))
    server = scripted(smtp)
    content = _streamed_content()
    with _client(server) as client:
        result = client.send(io.BytesIO(content), "s@example.org", ["r@example.net"])
    assert result.size == len(content)
    [txn] = smtp.transactions
    assert txn.mail == "MAIL FROM:<s@example.org>"
    assert txn.content == content


def test_bare_line_endings_are_normalised_on_the_wire(scripted: Start) -> None:
    smtp = _mini()
    server = scripted(smtp)
    with _client(server) as client:
        client.send(b"Subject: x\n\nbare lf\n.dot\rcr\r\n", "s@example.org", ["r@example.net"])
    assert smtp.transactions[0].content == b"Subject: x\r\n\r\nbare lf\r\n.dot\r\ncr\r\n"
    wire = server.received.split(b"DATA\r\n", 1)[1]
    assert b"\n" not in wire.replace(b"\r\n", b"")
    assert b"\r" not in wire.replace(b"\r\n", b"")


# -- batches and old servers ----------------------------------------------------


@pytest.mark.parametrize("pipelining", [True, False])
def test_send_many_with_refusals_in_the_middle_and_at_the_end(scripted: Start, pipelining: bool) -> None:
    smtp = _mini(rcpt_reply=lambda a: "550 5.1.1 No such user" if a.startswith("bad") else None)
    server = scripted(smtp)
    items = [
        (b"one\r\n", "s@example.org", ["ok1@example.net"]),
        (b"two\r\n", "s@example.org", ["bad2@example.net"]),
        (b"three\r\n", "s@example.org", ["bad3@example.net", "ok3@example.net"]),
        (b"four\r\n", "s@example.org", ["bad4@example.net", "bad44@example.net"]),
    ]
    with _client(server, pipelining=pipelining) as client:
        one, two, three, four = client.send_many(items)
        assert isinstance(one, SendResult) and one.ok
        assert isinstance(two, RecipientsRefused) and list(two.result.recipients) == ["bad2@example.net"]
        assert isinstance(three, SendResult) and three.accepted == ["ok3@example.net"]
        assert isinstance(four, RecipientsRefused) and len(four.result.recipients) == 2
        assert client.send(b"five\r\n", "s@example.org", ["ok5@example.net"]).ok
    assert [t.content for t in smtp.transactions] == [b"one\r\n", b"three\r\n", b"five\r\n"]


def test_send_many_accepts_email_messages(scripted: Start) -> None:
    smtp = _mini()
    server = scripted(smtp)
    first, second = _message(), _message()
    del second["Subject"]
    second["Subject"] = "second"
    with _client(server) as client:
        outcomes = client.send_many([first, second])
    assert all(isinstance(o, SendResult) and len(o.accepted) == 4 for o in outcomes)
    assert [b"Subject: second" in t.content for t in smtp.transactions] == [False, True]


def test_helo_fallback_for_a_pre_esmtp_server(scripted: Start) -> None:
    commands: list[bytes] = []

    def script(peer: Peer) -> None:
        peer.reply("220 old SMTP")
        while line := peer.recv_line():
            commands.append(line)
            verb = line[:4].upper()
            if verb == b"EHLO":
                peer.reply("502 Command not implemented")
            elif verb == b"DATA":
                peer.reply("354 go")
                peer.recv_until(b"\r\n.\r\n")
                peer.reply("250 ok")
            elif verb == b"QUIT":
                peer.reply("221 bye")
                return
            else:
                peer.reply("250 ok")

    server = scripted(script)
    with _client(server) as client:
        assert not client.capabilities.features
        assert client.send(BODY, "s@example.org", ["r@example.net"]).ok
    assert [c.split(b" ")[0].rstrip(b"\r\n") for c in commands] == [b"EHLO", b"HELO", b"MAIL", b"RCPT", b"DATA", b"QUIT"]


# -- one step at a time ---------------------------------------------------------


def test_mail_rcpt_and_data_one_step_at_a_time(scripted: Start) -> None:
    """For a caller answering its own client's commands as they come (a
    relay): each step's reply comes back, refusals included, unraised."""
    smtp = _mini(rcpt_reply=_refuse("nobody@example.net"))
    server = scripted(smtp)
    with _client(server) as client:
        assert client.mail("s@example.org").code == 250
        assert client.rcpt("r@example.net").code == 250
        refused = client.rcpt("nobody@example.net")
        assert (refused.code, str(refused.enhanced)) == (550, "5.1.1")
        assert client.data(b"Subject: steps\r\n\r\n.dot\nbare lf\r\n").code == 250
        assert client.send(BODY, "s@example.org", ["next@example.net"]).ok  # and the connection goes on
    first = smtp.transactions[0]
    assert first.accepted == ["r@example.net"]
    assert first.content == b"Subject: steps\r\n\r\n.dot\r\nbare lf\r\n"  # stuffed and CRLF on the wire


def test_data_step_refused_before_the_content(scripted: Start) -> None:
    smtp = _mini(data_reply="554 5.5.1 No valid recipients")
    server = scripted(smtp)
    with _client(server) as client:
        client.mail("s@example.org")
        client.rcpt("r@example.net")
        assert client.data(b"never sent\r\n").code == 554
        assert client.rset().code == 250
    assert b"never sent" not in server.peers[0].received

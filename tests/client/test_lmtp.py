"""LMTPClient: LHLO, and one reply per accepted recipient after the data (RFC 2033 4.2).

A scripted LMTP server decides each recipient's fate after the content, over
TCP and over a Unix socket path; aiosmtpd's LMTP class is a real peer for the
single-recipient case.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from mailwire import LMTPClient, RecipientsRefused

from helpers.aiosmtpd_server import Running
from helpers.minismtp import MiniSMTP, Received
from helpers.scripted import ScriptedServer

Start = Callable[..., ScriptedServer]
CONTENT = b"Subject: lmtp\r\n\r\nlocal delivery\r\n"


def _per_recipient(txn: Received, rcpt: str | None) -> str:
    if rcpt is not None and rcpt.startswith("full"):
        return "452 4.2.2 Mailbox full"
    if rcpt is not None and rcpt.startswith("gone"):
        return "550 5.1.1 No such mailbox"
    return f"250 2.0.0 <{rcpt}> delivered"


@pytest.fixture(params=["tcp", "unix"])
def lmtp_server(request: pytest.FixtureRequest, scripted: Start, short_tmp: Path) -> tuple[MiniSMTP, ScriptedServer]:
    smtp = MiniSMTP(extensions=("PIPELINING", "ENHANCEDSTATUSCODES"), lmtp=True, final_reply=_per_recipient,
                    rcpt_reply=lambda a: "550 5.1.1 Unknown user" if a.startswith("unknown") else None)
    if request.param == "unix":
        return smtp, scripted(smtp, unix_path=str(short_tmp / "lmtp.sock"))
    return smtp, scripted(smtp)


def test_one_reply_per_recipient_after_data(lmtp_server: tuple[MiniSMTP, ScriptedServer]) -> None:
    smtp, server = lmtp_server
    rcpts = ["a@example.net", "full@example.net", "unknown@example.net", "b@example.net", "gone@example.net"]
    with LMTPClient(*server.address, timeout=5) as client:
        assert not client.is_tls
        result = client.send(CONTENT, "s@example.org", rcpts)
    assert smtp.commands[0].startswith("LHLO ")
    assert result.data_reply is None
    assert result.accepted == ["a@example.net", "b@example.net"]
    assert {r: reply.code for r, reply in result.refused.items()} == {
        "full@example.net": 452, "unknown@example.net": 550, "gone@example.net": 550,
    }
    assert result.recipients["a@example.net"].text == "<a@example.net> delivered"
    # The RCPT reply is kept separately from the post-data one.
    assert result.rcpt_replies["full@example.net"].code == 250
    [txn] = smtp.transactions
    assert txn.content == CONTENT
    assert txn.accepted == ["a@example.net", "full@example.net", "b@example.net", "gone@example.net"]


def test_every_recipient_refused_after_data(lmtp_server: tuple[MiniSMTP, ScriptedServer]) -> None:
    smtp, server = lmtp_server
    with LMTPClient(*server.address, timeout=5) as client:
        with pytest.raises(RecipientsRefused) as caught:
            client.send(CONTENT, "s@example.org", ["full@example.net", "gone@example.net"])
        assert {r: reply.code for r, reply in caught.value.result.recipients.items()} == {
            "full@example.net": 452, "gone@example.net": 550,
        }
        # The replies were all read: the connection is in step for the next message.
        assert client.send(CONTENT, "s@example.org", ["ok@example.net"]).ok


def test_send_many_keeps_per_recipient_replies_in_step(lmtp_server: tuple[MiniSMTP, ScriptedServer]) -> None:
    smtp, server = lmtp_server
    items = [
        (CONTENT, "s@example.org", ["a@example.net", "full@example.net"]),
        (CONTENT, "s@example.org", ["b@example.net", "c@example.net", "d@example.net"]),
        (CONTENT, "s@example.org", ["gone@example.net"]),
        (CONTENT, "s@example.org", ["e@example.net"]),
    ]
    with LMTPClient(*server.address, timeout=5) as client:
        first, second, third, fourth = client.send_many(items)
    assert not isinstance(first, Exception) and first.accepted == ["a@example.net"]
    assert not isinstance(second, Exception) and second.ok and len(second.accepted) == 3
    assert isinstance(third, RecipientsRefused)
    assert not isinstance(fourth, Exception) and fourth.accepted == ["e@example.net"]


def test_lmtp_over_bdat(scripted: Start, short_tmp: Path) -> None:
    smtp = MiniSMTP(extensions=("PIPELINING", "CHUNKING"), lmtp=True, final_reply=_per_recipient)
    server = scripted(smtp, unix_path=str(short_tmp / "lmtp.sock"))
    with LMTPClient(server.address[0], timeout=5) as client:
        result = client.send(CONTENT, "s@example.org", ["a@example.net", "full@example.net"])
    assert smtp.transactions[0].via == "BDAT"
    assert result.accepted == ["a@example.net"]
    assert result.refused["full@example.net"].code == 452


def test_lmtp_without_pipelining(scripted: Start) -> None:
    smtp = MiniSMTP(extensions=("ENHANCEDSTATUSCODES",), lmtp=True, final_reply=_per_recipient)
    server = scripted(smtp)
    with LMTPClient(*server.address, timeout=5) as client:
        result = client.send(CONTENT, "s@example.org", ["a@example.net", "gone@example.net", "b@example.net"])
    assert result.accepted == ["a@example.net", "b@example.net"]
    assert smtp.sent_ahead == 0


def test_aiosmtpd_lmtp(aiosmtpd_factory: Callable[..., Running]) -> None:
    server = aiosmtpd_factory(lmtp=True)
    with LMTPClient(*server.address, timeout=5) as client:
        assert client.greeting is not None and client.greeting.code == 220
        result = client.send(CONTENT, "s@example.org", ["only@example.net"])
    assert result.ok and result.data_reply is None
    [envelope] = server.handler.envelopes
    assert envelope.rcpt_tos == ["only@example.net"]
    assert envelope.content == CONTENT


def test_lmtp_send_many_over_pipelined_bdat(scripted: Start) -> None:
    smtp = MiniSMTP(extensions=("PIPELINING", "CHUNKING"), lmtp=True, final_reply=_per_recipient,
                    rcpt_reply=lambda a: "550 5.1.1 Unknown user" if a.startswith("unknown") else None)
    server = scripted(smtp)
    items = [
        (CONTENT, "s@example.org", ["a@example.net", "full@example.net", "unknown@example.net"]),
        (CONTENT, "s@example.org", ["unknown@example.net"]),
        (CONTENT, "s@example.org", ["gone@example.net", "b@example.net"]),
        (CONTENT, "s@example.org", ["full@example.net"]),
    ]
    with LMTPClient(*server.address, timeout=5) as client:
        first, second, third, fourth = client.send_many(items)
        assert client.send(CONTENT, "s@example.org", ["c@example.net"]).ok
    assert not isinstance(first, Exception)
    assert first.accepted == ["a@example.net"] and set(first.refused) == {"full@example.net", "unknown@example.net"}
    assert isinstance(second, RecipientsRefused)
    assert not isinstance(third, Exception) and third.accepted == ["b@example.net"]
    assert isinstance(fourth, RecipientsRefused) and fourth.result.recipients["full@example.net"].code == 452
    assert all(t.via == "BDAT" for t in smtp.transactions)

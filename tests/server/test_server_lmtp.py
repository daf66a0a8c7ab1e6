"""LMTP mode (RFC 2033) over TCP and a Unix socket.

LHLO instead of EHLO/HELO; after the end of the data (DATA, or BDAT LAST) one
reply per accepted recipient, in RCPT order. A session implementing
``LMTPSession`` decides each recipient's outcome; a plain session's single
outcome is repeated for every recipient. Peers: raw sockets, mailwire's
``LMTPClient`` and Postfix's ``smtp-source -L``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from mailwire import LMTPClient
from mailwire.errors import SMTPError
from mailwire.protocol.data import BareLineEndings

from .conftest import RawClient, RecordingBackend, ServerThread

Factory = Callable[..., ServerThread]
SMTP_SOURCE = "/usr/sbin/smtp-source"


def outcome(address: str) -> SMTPError | None:
    """Per-recipient outcomes: 'full' mailboxes are full, 'gone' ones gone."""
    if address.startswith("full"):
        return SMTPError(452, "4.2.2", "Mailbox full")
    if address.startswith("gone"):
        return SMTPError(550, "5.1.1", "No such mailbox")
    return None


def lmtp_backend(**kwargs: object) -> RecordingBackend:
    return RecordingBackend(lmtp_sessions=True, lmtp_outcome=outcome, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def lmtp_server(server_factory: Factory, short_tmp: Path) -> ServerThread:
    return server_factory(lmtp_backend(), lmtp=True, unix_path=str(short_tmp / "lmtp.sock"))


def envelope(client: RawClient, rcpts: list[str]) -> None:
    client.cmd("MAIL FROM:<sender@example.com>", 250)
    for rcpt in rcpts:
        client.send(f"RCPT TO:<{rcpt}>\r\n".encode())
        client.reply()


def test_lhlo_only(lmtp_server: ServerThread) -> None:
    client = lmtp_server.raw()
    client.cmd("EHLO client.test", 500, "5.5.1")
    client.cmd("HELO client.test", 500, "5.5.1")
    client.cmd("MAIL FROM:<a@example.com>", 503)
    lines = client.ehlo(verb="LHLO").lines
    assert lines[0] == "mx.test" and "PIPELINING" in lines and "CHUNKING" in lines
    client.cmd("LHLO client.test", 250)  # again: fine


@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_one_reply_per_recipient_after_data(lmtp_server: ServerThread, transport: str) -> None:
    client = lmtp_server.raw() if transport == "tcp" else lmtp_server.raw_unix()
    client.ehlo(verb="LHLO")
    lmtp_server.backend.on_rcpt = lambda address, options: _refuse_unknown(address)
    envelope(client, ["one@example.com", "full@example.com", "unknown@example.com", "gone@example.com",
                      "two@example.com"])
    client.cmd("DATA", 354)
    client.send(b"Subject: lmtp\r\n\r\nhello\r\n.\r\nNOOP\r\n")
    replies = [client.reply() for _ in range(4)]  # the unknown recipient was refused at RCPT
    assert [(r.code, r.enhanced) for r in replies] == [
        (250, "2.0.0"), (452, "4.2.2"), (550, "5.1.1"), (250, "2.0.0")
    ]
    client.expect(250)  # the NOOP: exactly four replies came
    assert lmtp_server.backend.wait_messages(1)
    message = lmtp_server.backend.messages[0]
    assert message.rcpt_to == ["one@example.com", "full@example.com", "gone@example.com", "two@example.com"]
    assert message.content == b"Subject: lmtp\r\n\r\nhello\r\n"
    assert message.session is not None and message.session.lmtp


def _refuse_unknown(address: str) -> None:
    if address.startswith("unknown"):
        raise SMTPError(550, "5.1.1", "Unknown user")


@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_one_reply_per_recipient_after_bdat_last(lmtp_server: ServerThread, transport: str) -> None:
    client = lmtp_server.raw() if transport == "tcp" else lmtp_server.raw_unix()
    client.ehlo(verb="LHLO")
    envelope(client, ["one@example.com", "full@example.com", "two@example.com"])
    client.send(b"BDAT 6\r\nchunk1BDAT 6\r\nchunk2BDAT 4 LAST\r\nlast")
    client.expect(250)  # chunk 1: one reply
    client.expect(250)  # chunk 2: one reply
    replies = [client.reply() for _ in range(3)]  # LAST: one per recipient
    assert [r.code for r in replies] == [250, 452, 250]
    assert client.nothing_more(0.1) == b""
    assert lmtp_server.backend.wait_messages(1)
    assert lmtp_server.backend.messages[0].content == b"chunk1chunk2last"


def test_refused_content_is_refused_for_every_recipient(lmtp_server: ServerThread) -> None:
    client = lmtp_server.raw()
    client.ehlo(verb="LHLO")
    envelope(client, ["one@example.com", "two@example.com", "three@example.com"])
    client.cmd("DATA", 354)
    client.send(b"bare\nLF\r\n.\r\n")
    assert [(r.code, r.enhanced) for r in (client.reply() for _ in range(3))] == [(550, "5.5.2")] * 3
    client.cmd("NOOP", 250)
    assert lmtp_server.backend.messages == []


def test_plain_session_outcome_repeated_per_recipient(server_factory: Factory) -> None:
    def refuse(envelope: object) -> None:
        raise SMTPError(452, "4.3.1", "Disk full")

    server = server_factory(RecordingBackend(on_data=refuse), lmtp=True)
    client = server.raw()
    client.ehlo(verb="LHLO")
    envelope(client, ["a@example.com", "b@example.com"])
    client.cmd("DATA", 354)
    client.send(b"x\r\n.\r\n")
    assert [(r.code, r.enhanced) for r in (client.reply() for _ in range(2))] == [(452, "4.3.1")] * 2
    client.cmd("NOOP", 250)


def test_deliver_exception_is_451_per_recipient(server_factory: Factory) -> None:
    def explode(address: str) -> SMTPError | None:
        raise RuntimeError("mailbox store down")

    server = server_factory(RecordingBackend(lmtp_sessions=True, lmtp_outcome=explode), lmtp=True)
    client = server.raw()
    client.ehlo(verb="LHLO")
    envelope(client, ["a@example.com", "b@example.com"])
    client.cmd("DATA", 354)
    client.send(b"x\r\n.\r\n")
    assert [(r.code, r.enhanced) for r in (client.reply() for _ in range(2))] == [(451, "4.3.0")] * 2
    client.cmd("NOOP", 250)  # the session goes on


@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_lmtp_client(lmtp_server: ServerThread, transport: str) -> None:
    host, port = ("127.0.0.1", lmtp_server.port) if transport == "tcp" else (lmtp_server.unix_path, None)
    assert host is not None
    with LMTPClient(host, port, local_hostname="client.test", timeout=5) as client:
        result = client.send(b"Subject: hi\r\n\r\nbody\r\n", "sender@example.com",
                             ["one@example.com", "full@example.com", "gone@example.com"])
        assert result.accepted == ["one@example.com"]
        assert {rcpt: reply.code for rcpt, reply in result.refused.items()} == {
            "full@example.com": 452, "gone@example.com": 550
        }
        # Pipelined across transactions, with BDAT (the server offers CHUNKING).
        outcomes = client.send_many(
            (b"n%d\r\n" % i, "sender@example.com", [f"r{i}@example.com", "full@example.com"]) for i in range(5)
        )
        assert all(not isinstance(o, SMTPError) and o.accepted == [f"r{i}@example.com"]
                   for i, o in enumerate(outcomes))
    assert lmtp_server.backend.wait_messages(6)
    assert [m.content for m in lmtp_server.backend.messages[1:]] == [b"n%d\r\n" % i for i in range(5)]


@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_smtp_source_lmtp(server_factory: Factory, short_tmp: Path, transport: str) -> None:
    server = server_factory(lmtp_backend(), lmtp=True, unix_path=str(short_tmp / "src.sock"),
                            bare_line_endings=BareLineEndings.REFUSE)
    target = f"127.0.0.1:{server.port}" if transport == "tcp" else f"unix:{server.unix_path}"
    run = subprocess.run(
        [SMTP_SOURCE, "-L", "-d", "-s", "4", "-m", "200", "-r", "3", "-l", "512", "-M", "client.test",
         "-f", "sender@example.com", "-t", "rcpt@example.com", target],
        capture_output=True, timeout=30,
    )
    assert run.returncode == 0, run.stderr.decode(errors="replace")
    assert server.backend.wait_messages(200)
    assert len(server.backend.messages) == 200
    assert all(len(m.rcpt_to) == 3 for m in server.backend.messages)
    assert all(m.content.endswith(b"\r\n") and len(m.content) > 512 for m in server.backend.messages)

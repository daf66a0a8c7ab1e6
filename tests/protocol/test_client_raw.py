"""ClientConnection.send_raw: a line outside the state table, still checked, still paired.

The smtplib drop-in sends smtplib's exact lines (``mail FROM:<a> size=3``) and
any line a program puts on the wire; the core checks each, expects a reply for
each, and leaves their meaning to the program. Bytes only, no sockets.
"""

from __future__ import annotations

import pytest

from mailwire.errors import LocalProtocolError, RemoteProtocolError
from mailwire.protocol import LineTooLong
from mailwire.protocol.client import ClientConnection
from mailwire.protocol.events import NEED_DATA, Data, Mail, RawCommand, Rcpt, StartTLS
from mailwire.protocol.state import ClientState
from mailwire.reply import Reply


def feed(client: ClientConnection, wire: bytes) -> list[Reply]:
    client.receive_data(wire)
    out = []
    while (event := client.next_event()) is not NEED_DATA:
        assert isinstance(event, Reply)
        out.append(event)
    return out


def greeted(**kwargs: bool) -> ClientConnection:
    client = ClientConnection(**kwargs)
    feed(client, b"220 mx\r\n")
    return client


def test_raw_lines_go_as_given_and_each_expects_a_reply() -> None:
    client = greeted(lmtp=True)
    assert client.send_raw(RawCommand("lhlo", "c")) == b"lhlo c\r\n"
    assert client.send_raw(RawCommand("mail", "FROM:<a@x> size=3")) == b"mail FROM:<a@x> size=3\r\n"
    assert client.send_raw(RawCommand("rcpt", "TO:<b@x>")) == b"rcpt TO:<b@x>\r\n"
    assert client.send_raw(RawCommand("data")) == b"data\r\n"
    assert client.pending_replies == 4
    got = feed(client, b"250 lmtp\r\n250 ok\r\n250 ok\r\n354 go\r\n")
    assert [r.code for r in got] == [250, 250, 250, 354] and client.pending_replies == 0
    # What the lines meant is the program's business: the state table did not move.
    assert client.state is ClientState.READY and client.capabilities is None


def test_raw_lines_pair_with_their_replies_among_typed_commands() -> None:
    client = greeted()
    client.send(Mail("a@x"))
    client.send_raw(RawCommand("NOOP"))
    client.send(Rcpt("b@x"))
    client.send(Data())
    got = feed(client, b"250 sender\r\n250 noop\r\n250 rcpt\r\n354 go\r\n")
    assert [r.text for r in got] == ["sender", "noop", "rcpt", "go"]
    assert client.state is ClientState.CONTENT and client.content_allowed()


def test_auth_lines_as_given() -> None:
    client = greeted()
    assert client.send_raw(RawCommand("AUTH", "PLAIN ")) == b"AUTH PLAIN \r\n"
    feed(client, b"334 \r\n")
    assert client.send_raw(RawCommand("")) == b"\r\n"
    assert client.pending_replies == 1


@pytest.mark.parametrize("line", [RawCommand("mail", "FROM:<a@x>\r\nRSET"), RawCommand("ma\x00il", "")])
def test_a_raw_line_is_checked_like_any_command(line: RawCommand) -> None:
    client = greeted()
    with pytest.raises(LocalProtocolError):
        client.send_raw(line)
    assert client.pending_replies == 0


def test_a_raw_connection_starts_tls_when_the_program_says() -> None:
    client = greeted()
    client.send_raw(RawCommand("STARTTLS"))
    client.receive_data(b"220 go ahead\r\n250 injected\r\n")
    reply = client.next_event()
    assert isinstance(reply, Reply) and reply.code == 220
    client.tls_established()  # anything the server sent before the handshake is gone
    assert client.discarded_after_starttls > 0
    client.send_raw(RawCommand("ehlo", "c"))
    assert [r.text for r in feed(client, b"250 mx\r\n")] == ["mx"]


def test_a_typed_connection_starts_tls_only_after_the_220() -> None:
    client = greeted()
    with pytest.raises(LocalProtocolError):
        client.tls_established()
    client.send(StartTLS())
    feed(client, b"220 go ahead\r\n")
    client.tls_established()
    assert client.state is ClientState.READY


def test_an_overlong_reply_line_keeps_its_cause() -> None:
    client = ClientConnection()
    client.receive_data(b"220 " + b"x" * 5000)
    with pytest.raises(RemoteProtocolError) as info:
        client.next_event()
    assert isinstance(info.value.__cause__, LineTooLong)

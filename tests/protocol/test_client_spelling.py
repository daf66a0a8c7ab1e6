"""ClientConnection.send(event, spelling=...): another line on the wire, the same tracking.

The smtplib drop-in sends smtplib's exact lines (``mail FROM:<a> size=3``)
while the core tracks them as typed events; bytes only, no sockets.
"""

from __future__ import annotations

import pytest

from mailwire.errors import LocalProtocolError, RemoteProtocolError
from mailwire.protocol.buffer import LineTooLong
from mailwire.protocol.client import ClientConnection
from mailwire.protocol.events import (
    NEED_DATA, Auth, AuthResponse, Data, EndOfData, Lhlo, Mail, MessageData, RawCommand, Rcpt,
)
from mailwire.protocol.state import ClientState
from mailwire.reply import Reply


def feed(client: ClientConnection, wire: bytes) -> list[Reply]:
    client.receive_data(wire)
    out = []
    while (event := client.next_event()) is not NEED_DATA:
        assert isinstance(event, Reply)
        out.append(event)
    return out


def test_spelled_commands_are_tracked_as_their_events() -> None:
    client = ClientConnection(lmtp=True)
    feed(client, b"220 lmtp\r\n")
    assert client.send(Lhlo("c"), spelling=RawCommand("lhlo", "c")) == b"lhlo c\r\n"
    assert client.send(Mail("a@x"), spelling=RawCommand("mail", "FROM:<a@x> size=3")) == b"mail FROM:<a@x> size=3\r\n"
    for rcpt in ("b@x", "c@x"):
        assert client.send(Rcpt(rcpt), spelling=RawCommand("rcpt", f"TO:<{rcpt}>")) == f"rcpt TO:<{rcpt}>\r\n".encode()
    assert client.send(Data(), spelling=RawCommand("data")) == b"data\r\n"
    feed(client, b"250 lmtp\r\n250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n")
    assert client.state is ClientState.CONTENT
    client.send(MessageData(b"hi\r\n"))
    client.send(EndOfData())
    # Two accepted recipients: two replies to the end of data (RFC 2033 4.2).
    assert len(feed(client, b"250 one\r\n")) == 1 and client.pending_replies == 1
    assert len(feed(client, b"452 two\r\n")) == 1 and client.pending_replies == 0


def test_auth_spelled_as_given() -> None:
    client = ClientConnection()
    feed(client, b"220 mx\r\n")
    assert client.send(Auth("PLAIN", b""), spelling=RawCommand("AUTH", "PLAIN ")) == b"AUTH PLAIN \r\n"
    feed(client, b"334 \r\n")
    assert client.state is ClientState.AUTH_CHALLENGE
    assert client.send(AuthResponse(b""), spelling=RawCommand("")) == b"\r\n"
    assert client.state is ClientState.AUTH_WAIT


@pytest.mark.parametrize("spelling", [RawCommand("mail", "FROM:<a@x>\r\nRSET"), RawCommand("ma\x00il", "")])
def test_a_spelling_is_checked_like_any_command(spelling: RawCommand) -> None:
    client = ClientConnection()
    feed(client, b"220 mx\r\n")
    with pytest.raises(LocalProtocolError):
        client.send(Mail("a@x"), spelling=spelling)
    assert client.pending_replies == 0


def test_content_has_no_spelling() -> None:
    client = ClientConnection()
    with pytest.raises(LocalProtocolError):
        client.send(MessageData(b"x"), spelling=RawCommand("x"))


def test_an_overlong_reply_line_keeps_its_cause() -> None:
    client = ClientConnection()
    client.receive_data(b"220 " + b"x" * 5000)
    with pytest.raises(RemoteProtocolError) as info:
        client.next_event()
    assert isinstance(info.value.__cause__, LineTooLong)

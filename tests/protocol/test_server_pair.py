"""ClientConnection against ServerConnection, in memory.

The two cores must agree on every byte: what the client sends, the server
parses into the same events; what the server answers, the client reads as the
replies it expects, pipelined or not, for DATA, BDAT, LMTP, STARTTLS and AUTH.
"""

from __future__ import annotations

from mailwire.protocol.capabilities import format_ehlo_reply
from mailwire.protocol.client import ClientConnection, Sendable
from mailwire.protocol.events import (
    NEED_DATA, Auth, Bdat, Data, Ehlo, EndOfData, Lhlo, Mail, MessageData, Quit, Rcpt, StartTLS,
)
from mailwire.protocol.params import MailOptions
from mailwire.protocol.server import ServerEvent
from mailwire.protocol.state import ClientState, ServerState
from mailwire.reply import Reply

from server_harness import Content, Driver, default_policy

KEYWORDS = ["PIPELINING", "CHUNKING", "8BITMIME", "SIZE 1000000", "ENHANCEDSTATUSCODES", "STARTTLS",
            "AUTH PLAIN"]


def policy(event: ServerEvent, index: int) -> Reply:
    if isinstance(event, (Ehlo, Lhlo)):
        return format_ehlo_reply("mx.example", KEYWORDS)
    return default_policy(event, index)


class Pair:
    def __init__(self, *, lmtp: bool = False) -> None:
        self.client = ClientConnection(lmtp=lmtp)
        self.server = Driver(policy=policy, lmtp=lmtp)
        self._read = 0
        assert [r.code for r in self._replies()] == [220]

    def send(self, *events: Sendable) -> list[int]:
        """Send ``events`` in one write; the codes of the replies that came back."""
        self.server.feed(b"".join(self.client.send(e) for e in events))
        return [r.code for r in self._replies()]

    def _replies(self) -> list[Reply]:
        out = bytes(self.server.out[self._read:])
        self._read += len(out)
        self.client.receive_data(out)
        replies = []
        while (event := self.client.next_event()) is not NEED_DATA:
            assert isinstance(event, Reply)
            replies.append(event)
        return replies

    def delivered(self) -> list[bytes]:
        return [entry.data for entry in self.server.log if isinstance(entry, Content)]


def test_pipelined_transactions() -> None:
    pair = Pair()
    assert pair.send(Ehlo("client.example")) == [250]
    assert pair.client.capabilities is not None and pair.client.capabilities.pipelining
    # One write for the whole envelope, answered in order.
    assert pair.send(Mail("a@x.example", MailOptions(size=40)), Rcpt("b@y.example"),
                     Rcpt("bad@y.example"), Data()) == [250, 250, 550, 354]
    assert pair.client.state is ClientState.CONTENT
    assert pair.send(MessageData(b"Subject: one\n\n.leading dot\r"), MessageData(b"\nend"), EndOfData(),
                     # the next envelope rides with the end of this message
                     Mail("a@x.example"), Rcpt("c@y.example"), Data()) == [250, 250, 250, 354]
    assert pair.send(MessageData(b".\r\n"), EndOfData(), Quit()) == [250, 221]
    assert pair.delivered() == [b"Subject: one\r\n\r\n.leading dot\r\nend\r\n", b".\r\n"]
    assert pair.client.state is ClientState.CLOSED
    assert pair.server.conn.state is ServerState.CLOSED
    events = [e for e in pair.server.log if isinstance(e, (Mail, Rcpt))]
    assert events == [Mail("a@x.example", MailOptions(size=40)), Rcpt("b@y.example"),
                      Rcpt("bad@y.example"), Mail("a@x.example"), Rcpt("c@y.example")]


def test_bdat_transaction() -> None:
    pair = Pair()
    pair.send(Ehlo("client.example"))
    first = b"QUIT\r\n.\r\nRSET\r\n"
    second = b"\x00binary\r\n.\n\xff"
    assert pair.send(Mail("a@x.example", MailOptions(body="BINARYMIME")), Rcpt("b@y.example"),
                     Bdat(len(first)), MessageData(first),
                     Bdat(len(second), last=True), MessageData(second)) == [250, 250, 250, 250]
    assert pair.delivered() == [first, second]
    assert pair.send(Bdat(0, last=True)) == [503]  # no transaction any more
    assert pair.send(Mail("a@x.example"), Rcpt("b@y.example"), Bdat(0, last=True)) == [250, 250, 250]
    assert pair.delivered()[-1] == b""


def test_lmtp_transaction() -> None:
    pair = Pair(lmtp=True)
    assert pair.send(Lhlo("client.example")) == [250]
    assert pair.send(Mail("a@x.example"), Rcpt("b@y.example"), Rcpt("bad@y.example"),
                     Rcpt("c@y.example"), Data()) == [250, 250, 550, 250, 354]
    # One reply per accepted recipient, and the client expects exactly that many.
    assert pair.send(MessageData(b"hello\n"), EndOfData()) == [250, 250]
    assert pair.client.pending_replies == 0 and pair.client.state is ClientState.READY
    assert pair.server.conn.state is ServerState.READY
    assert pair.send(Mail("a@x.example"), Rcpt("b@y.example"), Rcpt("c@y.example"),
                     Bdat(2), MessageData(b"ab"), Bdat(1, last=True), MessageData(b"c")) == [
        250, 250, 250, 250, 250, 250]
    assert pair.delivered() == [b"hello\r\n", b"ab", b"c"]
    assert pair.client.pending_replies == 0


def test_starttls_and_auth() -> None:
    pair = Pair()
    pair.send(Ehlo("client.example"))
    assert pair.send(StartTLS()) == [220]
    assert pair.client.state is ClientState.TLS_HANDSHAKE
    assert pair.server.conn.state is ServerState.TLS_HANDSHAKE
    pair.client.tls_established()
    pair.server.conn.tls_established()
    assert pair.send(Ehlo("client.example")) == [250]
    assert pair.send(Auth("PLAIN", b"\0user\0secret")) == [235]
    assert pair.server.conn.authenticated and pair.server.conn.tls
    assert pair.send(Auth("PLAIN")) == [503]

"""PIPELINING proved by withholding replies (RFC 2920).

These scripted servers answer nothing until the whole group they expect has
arrived. A client that waited for a reply between MAIL, RCPT and DATA (or, in
``send_many``, between one message's end and the next envelope) would stall
against them and fail on its timeout; a pipelining client goes through.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mailwire import RecipientsRefused, SMTPClient, SendResult
from mailwire.client import dialog
from mailwire.errors import LocalProtocolError
from mailwire.protocol.client import ClientConnection, prepare_write
from mailwire.protocol.events import Data, Mail, Rcpt
from mailwire.protocol.state import ClientState

from helpers.minismtp import MiniSMTP, Received
from helpers.scripted import Peer, ScriptedServer

Start = Callable[..., ScriptedServer]
RCPTS = ["a@example.net", "b@example.net", "c@example.net"]
CONTENT = b"Subject: pipelined\r\n\r\nbody\r\n"


def _hello(peer: Peer) -> None:
    peer.reply("220 scripted ESMTP")
    assert peer.recv_line().startswith(b"EHLO ")
    peer.reply("250-scripted", "250-PIPELINING", "250 8BITMIME")


def _envelope_replies(peer: Peer) -> None:
    peer.reply("250 2.1.0 sender ok", *["250 2.1.5 rcpt ok"] * len(RCPTS), "354 go ahead")


def _quit(peer: Peer) -> None:
    assert peer.recv_line() == b"QUIT\r\n"
    peer.reply("221 bye")


def test_envelope_and_data_go_out_in_one_write(scripted: Start) -> None:
    groups: list[bytes] = []

    def script(peer: Peer) -> None:
        _hello(peer)
        for _ in range(3):
            reads_before = len(peer.reads)
            groups.append(peer.recv_until(b"DATA\r\n"))  # no reply until DATA is here
            assert peer.buffered() == 0  # nothing beyond DATA: the client waits for 354
            assert len(peer.reads) - reads_before == 1  # the whole group in one segment
            _envelope_replies(peer)
            peer.recv_until(b"\r\n.\r\n")
            peer.reply("250 2.0.0 queued")
        _quit(peer)

    server = scripted(script)
    with SMTPClient(*server.address, tls="none", timeout=2) as client:
        for _ in range(3):
            result = client.send(CONTENT, "s@example.org", RCPTS)
            assert result.ok
    assert groups[0] == (
        b"MAIL FROM:<s@example.org>\r\n"
        b"RCPT TO:<a@example.net>\r\nRCPT TO:<b@example.net>\r\nRCPT TO:<c@example.net>\r\n"
        b"DATA\r\n"
    )


def test_send_many_sends_each_end_of_data_with_the_next_envelope(scripted: Start) -> None:
    count = 5
    joined: list[bytes] = []

    def script(peer: Peer) -> None:
        _hello(peer)
        peer.recv_until(b"DATA\r\n")
        _envelope_replies(peer)
        for i in range(count):
            ending = peer.recv_until(b"\r\n.\r\n")
            assert ending.endswith(b"body\r\n.\r\n")
            if i < count - 1:
                # The reply to this message's end is withheld until the next
                # envelope has arrived: it must not be needed to send it.
                joined.append(peer.recv_until(b"DATA\r\n"))
                peer.reply("250 2.0.0 queued")
                _envelope_replies(peer)
            else:
                peer.reply("250 2.0.0 queued")
        _quit(peer)

    server = scripted(script)
    with SMTPClient(*server.address, tls="none", timeout=2) as client:
        start = client.round_trips
        outcomes = client.send_many([(CONTENT, "s@example.org", RCPTS)] * count)
        assert client.round_trips - start == count + 1
    assert all(isinstance(o, SendResult) and o.ok for o in outcomes)
    assert all(group.startswith(b"MAIL FROM:<s@example.org>\r\n") for group in joined)
    # Each message's end and the next envelope were one write.
    reads = server.peers[0].reads
    assert sum(b"\r\n.\r\nMAIL FROM:" in chunk for chunk in reads) == count - 1


def test_data_accepted_with_every_recipient_refused_sends_no_content(scripted: Start) -> None:
    """RFC 2920 3.1: a server may answer DATA with 354 after refusing every
    RCPT; the client then ends the data at once, and the content it had
    formatted ahead for that message never reaches the wire."""
    endings: list[bytes] = []

    def script(peer: Peer) -> None:
        _hello(peer)
        peer.recv_until(b"DATA\r\n")
        peer.reply("250 2.1.0 sender ok", *["550 5.1.1 no such user"] * len(RCPTS), "354 go ahead")
        endings.append(peer.recv_until(b"DATA\r\n"))  # the dot, then the next envelope
        peer.reply("554 5.5.1 no valid recipients")
        _envelope_replies(peer)
        endings.append(peer.recv_until(b"\r\n.\r\n"))
        peer.reply("250 2.0.0 queued")
        _quit(peer)

    server = scripted(script)
    with SMTPClient(*server.address, tls="none", timeout=2) as client:
        first, second = client.send_many([
            (b"Subject: secret\r\n\r\nfor nobody\r\n", "s@example.org", RCPTS),
            (CONTENT, "s@example.org", RCPTS),
        ])
    assert isinstance(first, RecipientsRefused)
    assert isinstance(second, SendResult) and second.ok
    assert endings[0].startswith(b".\r\nMAIL FROM:<s@example.org>\r\n")
    assert b"for nobody" not in server.peers[0].received
    assert endings[1] == CONTENT + b".\r\n"


def test_a_prepared_write_that_cannot_follow_the_354_closes_the_connection(scripted: Start) -> None:
    """The server now waits for content; if what was prepared cannot be sent,
    going on would read its next reply as the answer to something else."""
    def script(peer: Peer) -> None:
        _hello(peer)
        peer.recv_until(b"DATA\r\n")
        peer.reply("250 ok", "250 ok", "354 go ahead")
        assert peer.wait_closed() == b""  # closed, and nothing sent as content

    def program() -> dialog.Program[None]:
        yield dialog.Write([Mail("s@example.org"), Rcpt("r@example.net"), Data()])
        # Not content: a group that starts from READY cannot follow a 354.
        yield dialog.Read(3, prepare_write([Mail("s@example.org")]), 1)

    server = scripted(script)
    client = SMTPClient(*server.address, tls="none", timeout=2)
    with pytest.raises(LocalProtocolError):
        client._run(program())
    assert not client.connected


@pytest.mark.parametrize("split", [False, True], ids=["one segment", "reply by reply"])
@pytest.mark.parametrize("multi_line", [False, True], ids=["one-line", "multi-line"])
def test_send_many_content_follows_each_354_however_the_group_arrives(
    scripted: Start, split: bool, multi_line: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plain one-line groups let the content go on their bytes, before they
    are parsed; a multi-line reply, or a group arriving in pieces, takes the
    parsed path. Every way, each message goes once and the replies pair up."""
    count = 4
    rcpt = ("250-2.1.5 recipient ok", "250 2.1.5 forwarding too") if multi_line else ("250 2.1.5 ok",)

    def script(peer: Peer) -> None:
        _hello(peer)
        peer.recv_until(b"DATA\r\n")
        group: list[str] = ["250 2.1.0 sender ok", *rcpt * len(RCPTS), "354 go ahead"]
        for i in range(count):
            if split:
                for line in group:
                    peer.reply(line)
            else:
                peer.reply(*group)
            peer.recv_until(b"\r\n.\r\n")
            if i < count - 1:
                peer.recv_until(b"DATA\r\n")
            group = [f"250 2.0.0 queued {i}", "250 2.1.0 sender ok", *rcpt * len(RCPTS), "354 go ahead"]
        peer.reply(f"250 2.0.0 queued {count - 1}")
        _quit(peer)

    early: list[bool] = []  # for each content sent: on the bytes, before parsing?
    judge = ClientConnection.content_allowed

    def spy(self: ClientConnection) -> bool:
        unparsed = self.state is ClientState.DATA_WAIT
        allowed = judge(self)
        if allowed:  # a driver sends the content it holds at once
            early.append(unparsed)
        return allowed

    monkeypatch.setattr(ClientConnection, "content_allowed", spy)
    server = scripted(script)
    with SMTPClient(*server.address, tls="none", timeout=2) as client:
        start = client.round_trips
        outcomes = client.send_many([(CONTENT + b"%d\r\n" % i, "s@example.org", RCPTS) for i in range(count)])
        assert client.round_trips - start == count + 1
    if not multi_line:
        assert early.count(True) == count  # every content went on the bytes alone
    elif not split:
        assert early.count(True) == 0  # each group had a multi-line reply to parse
    assert [o.data_reply.text for o in outcomes if isinstance(o, SendResult)] == [
        f"queued {i}" for i in range(count)
    ]
    received = server.peers[0].received
    assert [received.count(CONTENT + b"%d\r\n.\r\n" % i) for i in range(count)] == [1] * count
    if multi_line:
        assert outcomes[0].rcpt_replies[RCPTS[0]].lines == ("2.1.5 recipient ok", "2.1.5 forwarding too")  # type: ignore[union-attr]


def test_send_many_resets_only_a_transaction_left_open(scripted: Start) -> None:
    """RFC 5321: RSET after an aborted transaction only. A refused DATA leaves
    the transaction open (RSET); a refused MAIL opened none, and an end of
    data answered, accepted or not, closed it (4.1.1.4): no RSET."""
    def final(txn: Received, rcpt: str | None) -> str:
        return "554 5.7.1 Spam" if b"spam" in txn.content else "250 2.0.0 queued"

    smtp = MiniSMTP(
        mail_policy=lambda a: "550 5.7.1 Sender blocked" if a.startswith("blocked") else None,
        rcpt_reply=lambda a: "550 5.1.1 No such user" if a.startswith("bad") else None,
        final_reply=final,
    )
    server = scripted(smtp)
    items = [
        (b"one\r\n", "s@example.org", ["ok@example.net"]),
        (b"two\r\n", "s@example.org", ["bad@example.net"]),  # DATA refused: open
        (b"three\r\n", "blocked@example.org", ["ok@example.net"]),  # MAIL refused
        (b"spam\r\n", "s@example.org", ["ok@example.net"]),  # refused after its content
        (b"five\r\n", "s@example.org", ["ok@example.net"]),
        (b"spam again\r\n", "s@example.org", ["ok@example.net"]),
    ]
    with SMTPClient(*server.address, tls="none", timeout=5, chunking=False) as client:
        outcomes = client.send_many(items)
        assert client.send(b"six\r\n", "s@example.org", ["ok@example.net"]).ok
    assert [type(o).__name__ for o in outcomes] == [
        "SendResult", "RecipientsRefused", "SenderRefused", "DataRefused", "SendResult", "DataRefused"]
    verbs = [c.split(" ")[0] for c in smtp.commands if not c.startswith(("EHLO", "QUIT"))]
    assert verbs.count("RSET") == 1
    assert verbs.index("RSET") == 6  # MAIL, RCPT, DATA, MAIL, RCPT, DATA (refused), RSET
    assert [t.content for t in smtp.transactions] == [
        b"one\r\n", b"spam\r\n", b"five\r\n", b"spam again\r\n", b"six\r\n"]

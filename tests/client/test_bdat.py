"""BDAT (RFC 3030 CHUNKING) against a scripted server that parses it exactly.

``MiniSMTP`` reads each BDAT chunk by its octet count and records the command
lines, so these tests see the framing itself: chunk sizes, ``LAST`` on the
final chunk only, no dot-stuffing, RSET only where a transaction may be left
open, and one command at a time when PIPELINING is not offered.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mailwire import (
    MailOptions, NotSupportedError, RecipientsRefused, SendResult, SMTPClient, SenderRefused,
)
from mailwire.client.transaction import CHUNK

from helpers.minismtp import MiniSMTP
from helpers.scripted import ScriptedServer

Start = Callable[..., ScriptedServer]
PIPELINED = ("PIPELINING", "CHUNKING", "8BITMIME", "ENHANCEDSTATUSCODES")
LOCKSTEP = ("CHUNKING", "8BITMIME", "ENHANCEDSTATUSCODES")
# Everything DATA would have to escape, sent raw.
TRICKY = b"Subject: raw\r\n\r\n.leading dot\r\n..two\r\n.\r\n\r\n.\r\nafter the fake end\r\n\x00\xff binary-ish\r\n"


def _client(server: ScriptedServer, **options: object) -> SMTPClient:
    return SMTPClient(*server.address, tls="none", timeout=5, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("extensions", [PIPELINED, LOCKSTEP], ids=["pipelined", "lockstep"])
def test_bdat_arrives_byte_exact(scripted: Start, extensions: tuple[str, ...]) -> None:
    smtp = MiniSMTP(extensions=extensions)
    server = scripted(smtp)
    with _client(server) as client:
        result = client.send(TRICKY, "s@example.org", ["r@example.net"])
    assert result.ok and result.size == len(TRICKY)
    [txn] = smtp.transactions
    assert txn.via == "BDAT"
    assert txn.bdat_lines == [f"BDAT {len(TRICKY)} LAST"]
    assert txn.content == TRICKY
    assert f"BDAT {len(TRICKY)} LAST\r\n".encode() + TRICKY in server.received
    assert b"DATA" not in server.received.replace(TRICKY, b"")


@pytest.mark.parametrize("extensions", [PIPELINED, LOCKSTEP], ids=["pipelined", "lockstep"])
def test_large_message_is_split_with_last_on_the_final_chunk(scripted: Start, extensions: tuple[str, ...]) -> None:
    smtp = MiniSMTP(extensions=extensions)
    server = scripted(smtp)
    content = (b"x" * 62 + b"\r\n") * (CHUNK * 5 // 2 // 64) + b"tail"
    with _client(server) as client:
        rounds = client.round_trips
        client.send(content, "s@example.org", ["r@example.net"])
        rounds = client.round_trips - rounds
    [txn] = smtp.transactions
    sizes = [len(chunk) for chunk in txn.chunks]
    assert sizes == [CHUNK, CHUNK, len(content) - 2 * CHUNK]
    assert txn.bdat_lines == [f"BDAT {CHUNK}", f"BDAT {CHUNK}", f"BDAT {sizes[2]} LAST"]
    assert txn.content == content
    # Pipelined: one wait for everything. Lock-step: MAIL, RCPT, and each chunk.
    assert rounds == (1 if "PIPELINING" in extensions else 5)


@pytest.mark.parametrize(("raw", "sent"), [
    (b"a\nb\rc\r\n", b"a\r\nb\r\nc\r\n"),
    (b"split CR\r", b"split CR\r\n"),
    (b"\n", b"\r\n"),
])
def test_bdat_text_gets_crlf_line_endings_like_data(scripted: Start, raw: bytes, sent: bytes) -> None:
    # RFC 3030 3: only BINARYMIME content goes as raw octets; a 7BIT/8BITMIME
    # body is still CRLF text, whether it travels by DATA or by BDAT.
    smtp = MiniSMTP(extensions=PIPELINED)
    server = scripted(smtp)
    with _client(server) as client:
        client.send(raw, "s@example.org", ["r@example.net"])
    [txn] = smtp.transactions
    assert txn.content == sent and txn.bdat_lines == [f"BDAT {len(sent)} LAST"]


def test_empty_message_is_bdat_0_last(scripted: Start) -> None:
    smtp = MiniSMTP(extensions=PIPELINED)
    server = scripted(smtp)
    with _client(server) as client:
        result = client.send(b"", "s@example.org", ["r@example.net"])
    assert result.ok and result.size == 0
    [txn] = smtp.transactions
    assert txn.bdat_lines == ["BDAT 0 LAST"] and txn.content == b""


def test_chunking_disabled_by_the_caller_uses_data(scripted: Start) -> None:
    smtp = MiniSMTP(extensions=PIPELINED)
    server = scripted(smtp)
    with _client(server, chunking=False) as client:
        client.send(TRICKY, "s@example.org", ["r@example.net"])
    assert smtp.transactions[0].via == "DATA"
    assert smtp.transactions[0].content == TRICKY


def test_binarymime_needs_chunking(scripted: Start) -> None:
    smtp = MiniSMTP(extensions=("PIPELINING", "BINARYMIME"))
    server = scripted(smtp)
    with _client(server) as client:
        with pytest.raises(NotSupportedError, match="BINARYMIME and CHUNKING"):
            client.send(TRICKY, "s@example.org", ["r@example.net"], mail_options=MailOptions(body="BINARYMIME"))
    assert not any(c.startswith("MAIL") for c in smtp.commands)


def test_binarymime_refused_when_the_caller_disables_chunking(scripted: Start) -> None:
    server = scripted(MiniSMTP(extensions=(*PIPELINED, "BINARYMIME")))
    with _client(server, chunking=False) as client:
        with pytest.raises(NotSupportedError, match="BINARYMIME"):
            client.send(TRICKY, "s@example.org", ["r@example.net"], mail_options=MailOptions(body="BINARYMIME"))


def test_binarymime_over_bdat(scripted: Start) -> None:
    smtp = MiniSMTP(extensions=(*PIPELINED, "BINARYMIME"))
    server = scripted(smtp)
    binary = bytes(range(256)) * 4
    with _client(server) as client:
        client.send(binary, "s@example.org", ["r@example.net"], mail_options=MailOptions(body="BINARYMIME"))
    [txn] = smtp.transactions
    assert txn.mail == "MAIL FROM:<s@example.org> BODY=BINARYMIME"
    assert txn.content == binary


def test_send_many_pipelines_whole_transactions_without_rset(scripted: Start) -> None:
    # RFC 5321 needs no RSET after a completed transaction (Postfix counted
    # rset=19 for 20 messages): the transactions go back to back, one wait.
    smtp = MiniSMTP(extensions=PIPELINED)
    server = scripted(smtp)
    items = [(f"Subject: {i}\r\n\r\nbody {i}\r\n".encode(), "s@example.org", [f"r{i}@example.net"]) for i in range(10)]
    with _client(server) as client:
        rounds = client.round_trips
        outcomes = client.send_many(items)
        rounds = client.round_trips - rounds
    assert all(not isinstance(o, Exception) and o.ok for o in outcomes)
    assert rounds == 1  # ten transactions, one wait
    assert [t.content for t in smtp.transactions] == [item[0] for item in items]
    verbs = [c.split(" ")[0] for c in smtp.commands if not c.startswith(("EHLO", "QUIT"))]
    assert verbs == ["MAIL", "RCPT", "BDAT"] * 10
    assert smtp.sent_ahead > 0  # the commands of a transaction went without waiting


def test_send_many_over_bdat_resets_only_what_was_aborted(scripted: Start) -> None:
    # RFC 3030 2: after a refused BDAT the state is indeterminate until RSET.
    # The next MAIL, written behind it, tells: MiniSMTP keeps the MAIL of a
    # transaction with no recipient and lets the next one join it (the same
    # sender: delivered as sent). Only the last, which nothing follows, is
    # reset (tests/client/test_bdat_window.py has the other servers).
    refused = {"bad@example.net", "bad4@example.net"}
    smtp = MiniSMTP(extensions=PIPELINED, rcpt_reply=lambda a: "550 5.1.1 No such user" if a in refused else None)
    server = scripted(smtp)
    items = [(f"m{i}\r\n".encode(), "s@example.org", [r]) for i, r in enumerate(
        ["ok0@example.net", "bad@example.net", "ok2@example.net", "ok3@example.net", "bad4@example.net"])]
    with _client(server) as client:
        outcomes = client.send_many(items)
    assert [type(o).__name__ for o in outcomes] == [
        "SendResult", "RecipientsRefused", "SendResult", "SendResult", "RecipientsRefused"]
    verbs = [c.split(" ")[0] for c in smtp.commands if not c.startswith(("EHLO", "QUIT"))]
    assert verbs == [
        "MAIL", "RCPT", "BDAT",
        "MAIL", "RCPT", "BDAT",  # refused: the next MAIL tells
        "MAIL", "RCPT", "BDAT",
        "MAIL", "RCPT", "BDAT",
        "MAIL", "RCPT", "BDAT", "RSET",  # the last refused: reset before the batch returns
    ]
    assert [t.content for t in smtp.delivered] == [b"m0\r\n", b"m2\r\n", b"m3\r\n"]


def test_send_many_over_bdat_with_refusals_in_the_batch(scripted: Start) -> None:
    smtp = MiniSMTP(
        extensions=PIPELINED, rcpt_reply=lambda a: "550 5.1.1 No such user" if a.startswith("bad") else None,
    )
    server = scripted(smtp)
    items = [
        (b"one\r\n", "s@example.org", ["ok1@example.net"]),
        (b"two\r\n", "s@example.org", ["bad@example.net"]),
        (b"three\r\n", "s@example.org", ["ok3@example.net", "bad3@example.net"]),
        (b"four\r\n", "s@example.org", ["bad4@example.net"]),
    ]
    with _client(server) as client:
        one, two, three, four = client.send_many(items)
        assert not isinstance(one, Exception) and one.ok
        assert isinstance(two, RecipientsRefused) and two.code == 550
        assert not isinstance(three, Exception)
        assert three.accepted == ["ok3@example.net"] and list(three.refused) == ["bad3@example.net"]
        assert isinstance(four, RecipientsRefused)
        # The batch ended inside a refused transaction: the next send still starts clean.
        assert client.send(b"five\r\n", "s@example.org", ["ok5@example.net"]).ok
    assert [t.content for t in smtp.transactions] == [b"one\r\n", b"three\r\n", b"five\r\n"]
    assert not any(line.startswith("503") for line in smtp.commands)


def test_sender_refused_over_bdat(scripted: Start) -> None:
    smtp = MiniSMTP(extensions=PIPELINED, mail_reply="553 5.7.1 Not you")
    server = scripted(smtp)
    with _client(server) as client:
        with pytest.raises(SenderRefused, match="Not you"):
            client.send(b"x\r\n", "s@example.org", ["r@example.net"])
        smtp.mail_reply = None
        assert client.send(b"y\r\n", "s@example.org", ["r@example.net"]).ok
    assert [t.content for t in smtp.transactions] == [b"y\r\n"]


def test_without_pipelining_one_command_at_a_time(scripted: Start) -> None:
    smtp = MiniSMTP(extensions=LOCKSTEP)
    server = scripted(smtp)
    items = [(f"message {i}\r\n".encode(), "s@example.org", ["a@example.net", "b@example.net"]) for i in range(5)]
    with _client(server) as client:
        rounds = client.round_trips
        outcomes = client.send_many(items)
        rounds = client.round_trips - rounds
    assert all(not isinstance(o, Exception) and o.ok for o in outcomes)
    assert smtp.sent_ahead == 0  # the client never wrote before the previous reply came
    assert rounds == 5 * 4  # MAIL, RCPT, RCPT, BDAT LAST
    verbs = [c.split(" ")[0] for c in smtp.commands if not c.startswith(("EHLO", "QUIT"))]
    assert verbs == ["MAIL", "RCPT", "RCPT", "BDAT"] * 5


def test_without_pipelining_all_refused_sends_rset_and_goes_on(scripted: Start) -> None:
    smtp = MiniSMTP(extensions=LOCKSTEP, rcpt_reply=lambda a: "550 5.1.1 No" if a.startswith("bad") else None)
    server = scripted(smtp)
    with _client(server) as client:
        with pytest.raises(RecipientsRefused):
            client.send(b"x\r\n", "s@example.org", ["bad@example.net"])
        assert client.send(b"y\r\n", "s@example.org", ["ok@example.net"]).ok
    verbs = [c.split(" ")[0] for c in smtp.commands if not c.startswith(("EHLO", "QUIT"))]
    assert verbs == ["MAIL", "RCPT", "RSET", "MAIL", "RCPT", "BDAT"]
    assert smtp.sent_ahead == 0


def test_refused_chunk_stops_the_transaction(scripted: Start) -> None:
    def final(txn: object, rcpt: str | None) -> str:
        return "552 5.3.4 Message too big for system"

    smtp = MiniSMTP(extensions=LOCKSTEP, final_reply=final)
    server = scripted(smtp)
    with _client(server) as client:
        with pytest.raises(Exception) as caught:
            client.send(b"x\r\n", "s@example.org", ["r@example.net"])
        assert getattr(caught.value, "code", None) == 552
        smtp.final_reply = None
        assert client.send(b"y\r\n", "s@example.org", ["r@example.net"]).ok


def test_send_many_of_a_hundred_messages_over_bdat(scripted: Start) -> None:
    smtp = MiniSMTP(extensions=PIPELINED)
    server = scripted(smtp)
    count = 101  # more than any window a driver or server might keep
    items = [(f"message {i}\r\n".encode(), "s@example.org", [f"r{i}@example.net"]) for i in range(count)]
    with _client(server) as client:
        rounds = client.round_trips
        outcomes = client.send_many(items)
        rounds = client.round_trips - rounds
    assert all(isinstance(o, SendResult) and o.accepted == [f"r{i}@example.net"] for i, o in enumerate(outcomes))
    assert [t.content for t in smtp.transactions] == [item[0] for item in items]
    assert rounds <= 6  # a window of 32, then a round trip per half window

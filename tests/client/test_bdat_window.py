"""Pipelined BDAT: a window of whole transactions, no RSET between them.

RFC 3030 2 leaves the server's state after a refused BDAT to the server. A
client that writes the next transactions without waiting must find out from
the replies which it was, and end with every message delivered once, or
refused, and reported exactly so. ``MiniSMTP`` plays each kind of server:

* one that ends the transaction with its refusal (Postfix, mailwire);
* one that stays in it until RSET, refusing MAIL and RCPT with 503 and
  discarding BDAT chunks (``after_refused_bdat="stuck"``), or until the next
  BDAT LAST as well (``"stuck-until-last"``: Postfix after a refused chunk);
* one that keeps the MAIL of a transaction refused for want of a recipient
  and lets the next RCPTs join it (its default there, as Exim does).

Each is driven through the blocking client, the asyncio client and the
pool, since they all run the same dialog.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable, Sequence
from typing import BinaryIO, Union

import pytest

from mailwire import (
    AsyncSMTPClient, DataRefused, LMTPClient, RecipientsRefused, SendResult, SenderRefused, SMTPClient,
    SMTPError, SMTPPool,
)
from mailwire.client.bdat import BDAT_WINDOW
from mailwire.client.transaction import CHUNK

from helpers.minismtp import MiniSMTP, Received
from helpers.scripted import Peer, ScriptedServer

Start = Callable[..., ScriptedServer]
Outcome = Union[SendResult, SMTPError]
Content = Union[bytes, BinaryIO]
Item = tuple[Content, str, list[str]]
PIPELINED = ("PIPELINING", "CHUNKING", "8BITMIME", "ENHANCEDSTATUSCODES")
DRIVERS = ["sync", "async", "pool"]
SPAM = b"spam"


def _items(count: int, spam: Sequence[int] = (), sender: str = "s@example.org") -> list[Item]:
    return [
        (b"Subject: %d\r\n\r\n%s %d\r\n" % (i, SPAM if i in spam else b"body", i), sender, [f"r{i}@example.net"])
        for i in range(count)
    ]


def _refuse_spam(txn: Received, rcpt: str | None) -> str:
    return "554 5.7.1 Spam" if SPAM in txn.content else "250 2.0.0 Queued"


def _send_many(driver: str, server: ScriptedServer, items: Sequence[Item]) -> tuple[list[Outcome], int]:
    """``send_many`` through ``driver``: the outcomes, and the round trips
    (the pool's are not counted: 0)."""
    host, port = server.address
    if driver == "sync":
        with SMTPClient(host, port, tls="none", timeout=5) as client:
            before = client.round_trips
            outcomes = client.send_many(items)
            return outcomes, client.round_trips - before

    async def on_asyncio() -> tuple[list[Outcome], int]:
        if driver == "async":
            async with AsyncSMTPClient(host, port, tls="none", timeout=5) as client:
                before = client.round_trips
                outcomes = await client.send_many(items)
                return outcomes, client.round_trips - before
        # One connection, every message in one share: the same dialog as send_many.
        async with SMTPPool(host, port, size=1, batch=len(items), tls="none", timeout=5) as pool:
            sent = await asyncio.gather(*(pool.send(*item) for item in items), return_exceptions=True)
        for outcome in sent:
            if not isinstance(outcome, (SendResult, SMTPError)):
                raise outcome
        return [o for o in sent if isinstance(o, (SendResult, SMTPError))], 0

    return asyncio.run(asyncio.wait_for(on_asyncio(), 30))


def _verbs(smtp: MiniSMTP) -> list[str]:
    return [c.split(" ")[0] for c in smtp.commands if not c.startswith(("EHLO", "QUIT"))]


def _delivered(smtp: MiniSMTP) -> list[bytes]:
    return [txn.content for txn in smtp.delivered]


def _content(item: Item) -> bytes:
    content = item[0]
    assert isinstance(content, bytes)
    return content


# -- a server that ends the transaction with its refusal ---------------------------------------


@pytest.mark.parametrize("driver", DRIVERS)
def test_20_messages_are_one_window_and_no_rset(scripted: Start, driver: str) -> None:
    smtp = MiniSMTP(extensions=PIPELINED)
    server = scripted(smtp, connections=1)
    items = _items(20)
    outcomes, rounds = _send_many(driver, server, items)
    assert all(isinstance(o, SendResult) and o.ok for o in outcomes)
    assert _delivered(smtp) == [_content(item) for item in items]
    assert _verbs(smtp) == ["MAIL", "RCPT", "BDAT"] * 20
    assert rounds <= 1  # written back to back, read once (the pool's are not counted)
    assert smtp.sent_ahead >= 19 * 3


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_refused_last_that_ends_the_transaction_needs_no_rset(scripted: Start, driver: str) -> None:
    # Postfix and mailwire end the transaction with the reply to BDAT LAST,
    # whatever it is: the next MAIL, already written, is simply accepted.
    smtp = MiniSMTP(extensions=PIPELINED, final_reply=_refuse_spam)
    server = scripted(smtp, connections=1)
    items = _items(20, spam=[3, 11])
    outcomes, rounds = _send_many(driver, server, items)
    for i, outcome in enumerate(outcomes):
        if i in (3, 11):
            assert isinstance(outcome, DataRefused) and str(outcome) == "554 5.7.1 Spam"
            assert outcome.result is not None and outcome.result.refused == {f"r{i}@example.net": outcome.reply}
        else:
            assert isinstance(outcome, SendResult) and outcome.accepted == [f"r{i}@example.net"]
    assert _delivered(smtp) == [_content(item) for i, item in enumerate(items) if i not in (3, 11)]
    assert _verbs(smtp) == ["MAIL", "RCPT", "BDAT"] * 20  # nothing sent twice, no RSET
    assert rounds <= 1


# -- a server that stays inside the refused transaction ---------------------------------------


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize(("mode", "rsets"), [("stuck", 1), ("stuck-until-last", 0)])
def test_a_server_stuck_after_a_refused_last_gets_one_rset_and_the_rest_again(
    scripted: Start, driver: str, mode: str, rsets: int,
) -> None:
    # What follows the refused message was written before its refusal came:
    # MAIL 503, RCPT 503, BDAT discarded. Nothing of it was delivered, so it
    # goes again once the server is reset. A server that ends the failed
    # state at the next BDAT LAST (Postfix after a refused chunk) took the
    # one after that as usual: only the first is sent again, and no RSET.
    smtp = MiniSMTP(extensions=PIPELINED, final_reply=_refuse_spam, after_refused_bdat=mode)  # type: ignore[arg-type]
    server = scripted(smtp, connections=1)
    items = _items(20, spam=[3])
    outcomes, rounds = _send_many(driver, server, items)
    assert isinstance(outcomes[3], DataRefused) and outcomes[3].code == 554
    for i, outcome in enumerate(outcomes):
        if i != 3:
            assert isinstance(outcome, SendResult) and outcome.ok and outcome.mail_reply.code == 250, (i, outcome)
            assert outcome.accepted == [f"r{i}@example.net"]
    delivered = _delivered(smtp)
    assert sorted(delivered) == sorted(_content(item) for i, item in enumerate(items) if i != 3)  # each once
    verbs = _verbs(smtp)
    assert verbs.count("RSET") == rsets
    if rsets:
        # All 20 went in the first window; after the refusal the server took
        # nothing more, and once reset, everything after it went again.
        assert verbs.index("RSET") == 20 * 3
        assert verbs[20 * 3 + 1:] == ["MAIL", "RCPT", "BDAT"] * 16
        assert delivered[3:] == [_content(item) for item in items[4:]]
    else:
        assert verbs.count("MAIL") == 21 and delivered[-1] == _content(items[4])
    assert smtp.discarded  # the octets already in the pipeline were read and thrown away
    if driver != "pool":
        assert rounds <= 2  # the first window, and the one sent again


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_stuck_server_at_the_end_of_a_batch_is_reset_before_it_returns(scripted: Start, driver: str) -> None:
    smtp = MiniSMTP(extensions=PIPELINED, final_reply=_refuse_spam, after_refused_bdat="stuck")
    server = scripted(smtp, connections=1)
    items = _items(5, spam=[4])
    outcomes, _ = _send_many(driver, server, items)
    assert [type(o) for o in outcomes] == [SendResult] * 4 + [DataRefused]
    assert _verbs(smtp) == ["MAIL", "RCPT", "BDAT"] * 5 + ["RSET"]


def test_a_stuck_server_gets_streams_again_from_where_they_started(scripted: Start) -> None:
    # A stream is sent again from where it was when first read; one that
    # cannot be read again gets the server's 503, as it was never taken.
    class OneWay(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self.data = data

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
            piece, self.data = self.data[: len(buffer)], self.data[len(buffer):]
            buffer[: len(piece)] = piece
            return len(piece)

    smtp = MiniSMTP(extensions=PIPELINED, final_reply=_refuse_spam, after_refused_bdat="stuck")
    server = scripted(smtp, connections=1)
    seekable = io.BytesIO(b"skipped header\r\nSubject: stream\r\n\r\nread twice\r\n")
    seekable.seek(16)
    items: list[Item] = [
        (b"spam\r\n", "s@example.org", ["a@example.net"]),
        (seekable, "s@example.org", ["b@example.net"]),
        (io.BufferedReader(OneWay(b"Subject: once\r\n\r\nnot again\r\n")), "s@example.org", ["c@example.net"]),
    ]
    with SMTPClient(*server.address, tls="none", timeout=5) as client:
        spam, stream, one_way = client.send_many(items)
        assert client.send(b"after\r\n", "s@example.org", ["d@example.net"]).ok
    assert isinstance(spam, DataRefused)
    assert isinstance(stream, SendResult) and stream.ok and stream.size == 31
    assert isinstance(one_way, SenderRefused) and one_way.code == 503
    assert _delivered(smtp) == [b"Subject: stream\r\n\r\nread twice\r\n", b"after\r\n"]


# -- a server that keeps the MAIL and lets the next RCPTs join ----------------------------------


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_kept_transaction_that_the_next_one_joins_is_reported_as_delivered(scripted: Start, driver: str) -> None:
    # "554 no valid recipients" to BDAT, the MAIL kept: the next message's
    # MAIL gets 503, its RCPT and content go into the kept transaction, whose
    # sender and parameters are its own (the same MAIL): delivered as sent,
    # once, and reported from the replies it got.
    smtp = MiniSMTP(extensions=PIPELINED, rcpt_reply=lambda a: "550 5.1.1 No such user" if a.startswith("bad") else None)
    server = scripted(smtp, connections=1)
    items = _items(5)
    items[1] = (b"to nobody\r\n", "s@example.org", ["bad1@example.net"])
    items[4] = (b"to nobody either\r\n", "s@example.org", ["bad4@example.net"])
    outcomes, rounds = _send_many(driver, server, items)
    assert [type(o) for o in outcomes] == [SendResult, RecipientsRefused, SendResult, SendResult, RecipientsRefused]
    joined = outcomes[2]
    assert isinstance(joined, SendResult) and joined.accepted == ["r2@example.net"] and joined.mail_reply.code == 503
    assert all(isinstance(o, SendResult) and o.mail_reply.code == 250 for o in (outcomes[0], outcomes[3]))
    assert [(t.mail_from, t.accepted, t.content) for t in smtp.delivered] == [
        ("s@example.org", [f"r{i}@example.net"], _content(items[i])) for i in (0, 2, 3)
    ]
    # The last one may have left the server inside a transaction: reset.
    assert _verbs(smtp) == ["MAIL", "RCPT", "BDAT"] * 5 + ["RSET"]
    if driver != "pool":
        assert rounds <= 2  # the window, and the RSET


def test_rset_goes_in_front_of_a_different_sender_while_the_one_before_is_unanswered(scripted: Start) -> None:
    # Joined to the kept transaction, a message would be delivered under the
    # sender of the one before; an RSET in front (no round trip) prevents it.
    smtp = MiniSMTP(extensions=PIPELINED, rcpt_reply=lambda a: "550 5.1.1 No such user" if a.startswith("bad") else None)
    server = scripted(smtp, connections=1)
    items: list[Item] = [
        (b"one\r\n", "a@example.org", ["ok1@example.net"]),
        (b"two\r\n", "a@example.org", ["bad@example.net"]),
        (b"three\r\n", "c@example.org", ["ok3@example.net"]),
        (b"four\r\n", "c@example.org", ["ok4@example.net"]),
    ]
    with SMTPClient(*server.address, tls="none", timeout=5) as client:
        before = client.round_trips
        one, two, three, four = client.send_many(items)
        rounds = client.round_trips - before
    assert isinstance(two, RecipientsRefused)
    assert all(isinstance(o, SendResult) and o.ok and o.mail_reply.code == 250 for o in (one, three, four))
    assert [(t.mail_from, t.content) for t in smtp.delivered] == [
        ("a@example.org", b"one\r\n"), ("c@example.org", b"three\r\n"), ("c@example.org", b"four\r\n")]
    assert _verbs(smtp) == ["MAIL", "RCPT", "BDAT"] * 2 + ["RSET"] + ["MAIL", "RCPT", "BDAT"] * 2
    assert rounds == 1


# -- a chunk refused in the middle of a message --------------------------------------------------


BIG = (b"x" * 62 + b"\r\n") * (CHUNK * 5 // 2 // 64)  # three chunks


def _refuse_big(txn: Received, chunk: bytes) -> str | None:
    return "552 5.3.4 Message too big" if chunk.startswith(b"x") else None


@pytest.mark.parametrize(("mode", "rsets"), [(None, 0), ("stuck-until-last", 0), ("stuck", 1)])
def test_a_refused_chunk_ends_the_message_and_the_rest_goes_through(
    scripted: Start, mode: str | None, rsets: int,
) -> None:
    # RFC 3030 2: no chunk of a message after a refused one. Written already,
    # the server discards them; its state is then whatever it makes it.
    smtp = MiniSMTP(extensions=PIPELINED, chunk_reply=_refuse_big, after_refused_bdat=mode)  # type: ignore[arg-type]
    server = scripted(smtp, connections=1)
    items: list[Item] = [
        (b"one\r\n", "s@example.org", ["a@example.net"]),
        (BIG, "s@example.org", ["b@example.net"]),
        (b"three\r\n", "s@example.org", ["c@example.net"]),
    ]
    with SMTPClient(*server.address, tls="none", timeout=10) as client:
        one, big, three = client.send_many(items)
    assert isinstance(big, DataRefused) and big.code == 552
    assert isinstance(one, SendResult) and one.ok and isinstance(three, SendResult) and three.ok
    assert _delivered(smtp) == [b"one\r\n", b"three\r\n"]
    assert _verbs(smtp).count("RSET") == rsets
    if mode is not None:
        assert [len(chunk) for chunk in smtp.discarded[:2]] == [CHUNK, len(BIG) - 2 * CHUNK]


# -- LMTP ---------------------------------------------------------------------------------------


LMTP = ("PIPELINING", "CHUNKING", "ENHANCEDSTATUSCODES")


def _per_recipient(txn: Received, rcpt: str | None) -> str:
    return "452 4.2.2 Mailbox full" if rcpt is not None and rcpt.startswith("full") else "250 2.0.0 Delivered"


def test_lmtp_window_with_per_recipient_replies_and_a_stuck_server(scripted: Start) -> None:
    # Each LAST gets a reply per accepted recipient; one with none accepted
    # gets one refusal, and a server stuck after it refuses what follows.
    smtp = MiniSMTP(
        extensions=LMTP, lmtp=True, final_reply=_per_recipient, after_refused_bdat="stuck",
        rcpt_reply=lambda a: "550 5.1.1 Unknown user" if a.startswith("unknown") else None,
    )
    server = scripted(smtp, connections=1)
    items: list[Item] = [
        (b"one\r\n", "s@example.org", ["a@example.net", "full@example.net", "unknown@example.net"]),
        (b"two\r\n", "s@example.org", ["unknown2@example.net"]),
        (b"three\r\n", "s@example.org", ["b@example.net", "c@example.net"]),
        (b"four\r\n", "s@example.org", ["full4@example.net"]),
    ]
    with LMTPClient(*server.address, timeout=5) as client:
        before = client.round_trips
        one, two, three, four = client.send_many(items)
        rounds = client.round_trips - before
    assert isinstance(one, SendResult) and one.accepted == ["a@example.net"]
    assert {r: reply.code for r, reply in one.refused.items()} == {"full@example.net": 452, "unknown@example.net": 550}
    assert isinstance(two, RecipientsRefused) and two.code == 550
    assert isinstance(three, SendResult) and three.accepted == ["b@example.net", "c@example.net"]
    assert isinstance(four, RecipientsRefused) and four.result.recipients["full4@example.net"].code == 452
    assert [t.content for t in smtp.transactions] == [b"one\r\n", b"three\r\n", b"four\r\n"]
    verbs = _verbs(smtp)
    assert verbs.count("RSET") == 1
    assert verbs[verbs.index("RSET") + 1:] == ["MAIL", "RCPT", "RCPT", "BDAT", "MAIL", "RCPT", "BDAT"]
    assert rounds <= 2


@pytest.mark.parametrize("mode", [None, "stuck"])
def test_lmtp_holds_the_last_chunk_until_the_others_are_answered(scripted: Start, mode: str | None) -> None:
    # Over LMTP a LAST gets one reply per recipient the server holds, which
    # is not known after a refused chunk: the LAST of a message in several
    # chunks waits for the others' replies, and after a refusal is not sent
    # (RFC 3030 2) but an RSET is.
    smtp = MiniSMTP(extensions=LMTP, lmtp=True, final_reply=_per_recipient, chunk_reply=_refuse_big,
                    after_refused_bdat=mode)  # type: ignore[arg-type]
    server = scripted(smtp, connections=1)
    fits = (b"y" * 62 + b"\r\n") * (CHUNK * 3 // 2 // 64)  # two chunks, both taken
    items: list[Item] = [
        (b"one\r\n", "s@example.org", ["a@example.net", "full@example.net"]),
        (BIG, "s@example.org", ["b@example.net", "c@example.net"]),
        (fits, "s@example.org", ["d@example.net", "full2@example.net"]),
        (b"four\r\n", "s@example.org", ["e@example.net"]),
    ]
    with LMTPClient(*server.address, timeout=10) as client:
        one, big, two_chunks, four = client.send_many(items)
    assert isinstance(one, SendResult) and one.accepted == ["a@example.net"]
    assert isinstance(big, DataRefused) and big.code == 552
    assert isinstance(two_chunks, SendResult) and two_chunks.accepted == ["d@example.net"]
    assert list(two_chunks.refused) == ["full2@example.net"]
    assert isinstance(four, SendResult) and four.ok
    assert [t.content for t in smtp.delivered] == [b"one\r\n", fits, b"four\r\n"]
    # The big message's two chunks that are not the LAST went together; its
    # LAST never did, an RSET came next. The next one's LAST followed its
    # chunk once that was answered.
    lines = smtp.commands
    first = lines.index(f"BDAT {CHUNK}")
    assert lines[first:first + 3] == [f"BDAT {CHUNK}", f"BDAT {CHUNK}", "RSET"]
    assert lines[first + 6:first + 8] == [f"BDAT {CHUNK}", f"BDAT {len(fits) - CHUNK} LAST"]


def test_the_window_is_bounded(scripted: Start) -> None:
    smtp = MiniSMTP(extensions=PIPELINED)
    server = scripted(smtp, connections=1)
    count = 3 * BDAT_WINDOW
    items = _items(count)
    with SMTPClient(*server.address, tls="none", timeout=5) as client:
        before = client.round_trips
        outcomes = client.send_many(items)
        rounds = client.round_trips - before
    assert all(isinstance(o, SendResult) and o.ok for o in outcomes)
    assert _delivered(smtp) == [_content(item) for item in items]
    # A round trip per half window after the first window.
    assert rounds <= 1 + (count - BDAT_WINDOW) // (BDAT_WINDOW // 2) + 1
    assert rounds > 1  # not all written before reading


class _ClosingAfter(MiniSMTP):
    """Says 421 and closes at the first MAIL after ``count`` messages."""

    class Gone(Exception):
        pass

    def __init__(self, count: int, **options: object) -> None:
        super().__init__(**options)  # type: ignore[arg-type]
        self.count = count

    def __call__(self, peer: Peer) -> None:
        try:
            super().__call__(peer)
        except self.Gone:
            peer.close()

    def _dispatch(self, peer: Peer, verb: str, text: str, txn: Received | None) -> Received | None:
        if verb == "MAIL" and len(self.transactions) >= self.count:
            peer.reply("421 4.3.2 Shutting down")
            raise self.Gone
        return super()._dispatch(peer, verb, text, txn)


def test_a_pool_keeps_what_was_answered_when_the_connection_fails_mid_batch(scripted: Start) -> None:
    # A pipelined batch has many transactions answered at any moment: when
    # the connection fails, those are delivered and reported so, and only
    # the rest get the error (they may be sent again without duplicates).
    smtp = _ClosingAfter(7, extensions=PIPELINED)
    server = scripted(smtp, connections=1)
    items = _items(12)

    async def main() -> list[object]:
        async with SMTPPool(*server.address, size=1, batch=12, tls="none", timeout=5) as pool:
            return await asyncio.gather(*(pool.send(*item) for item in items), return_exceptions=True)

    sent = asyncio.run(asyncio.wait_for(main(), 30))
    assert all(isinstance(o, SendResult) and o.ok for o in sent[:7]), sent
    assert all(isinstance(o, SMTPError) and o.code == 421 for o in sent[7:]), sent
    assert _delivered(smtp) == [_content(item) for item in items[:7]]


def test_what_sets_an_rset_in_front_is_the_mail_parameters_not_the_size(scripted: Start) -> None:
    # SIZE differs from message to message and changes nothing; BODY does.
    smtp = MiniSMTP(extensions=(*PIPELINED, "SIZE 1000000"))
    server = scripted(smtp, connections=1)
    items = _items(4)
    items[2] = ("Subject: 2\r\n\r\ncaf\u00e9 2\r\n".encode(), "s@example.org", ["r2@example.net"])  # 8BITMIME
    with SMTPClient(*server.address, tls="none", timeout=5) as client:
        outcomes = client.send_many(items)
    assert all(isinstance(o, SendResult) and o.ok for o in outcomes)
    mails = [c for c in smtp.commands if c.startswith(("MAIL", "RSET"))]
    assert [m.split(" ")[0] for m in mails] == ["MAIL", "MAIL", "RSET", "MAIL", "RSET", "MAIL"]
    assert "BODY=8BITMIME" in mails[3] and all(" SIZE=" in m for m in mails if m.startswith("MAIL"))

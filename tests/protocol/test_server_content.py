"""ServerConnection message content: DATA framing, smuggling, bare line endings, BDAT, sizes.

Only <CRLF>.<CRLF> ends DATA; a BDAT chunk is counted, never parsed; content
refused by the core ends its stream with ``Rejected`` instead of ``EndOfMessage``.
Every property holds however the bytes are cut into reads.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailwire.errors import LocalProtocolError
from mailwire.limits import Limits
from mailwire.protocol.data import BareLineEndings, stuff
from mailwire.protocol.events import (
    NEED_DATA, Bdat, Closed, Data, Ehlo, EndOfChunk, EndOfMessage, Mail, MessageData, Noop, Rcpt, Rejected, Rset,
)
from mailwire.protocol.server import ServerConnection, ServerEvent
from mailwire.protocol.state import ServerState
from mailwire.reply import Reply

from server_harness import GREETING, Content, Driver, Refused, converse, converse_every_way

S = ServerState
EHLO, E = b"EHLO c.example\r\n", Ehlo("c.example")
MAIL, M = b"MAIL FROM:<a@x.example>\r\n", Mail("a@x.example")
RCPT, R = b"RCPT TO:<b@y.example>\r\n", Rcpt("b@y.example")
START = EHLO + MAIL + RCPT
OPEN = [E, 250, M, 250, R, 250]
SEQ = Refused(503, "5.5.1")
BARE = Refused(550, "5.5.2")
BIG = Refused(552, "5.3.4")
NORMALIZE = {"bare_line_endings": BareLineEndings.NORMALIZE}


def cut(wire: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted(set(cuts))
    pieces = [wire[a:b] for a, b in zip([0, *points], [*points, len(wire)])]
    return [p for p in pieces if p]  # b"" would mean the client closed


def normalized(data: bytes) -> bytes:
    return re.sub(rb"\r\n|\r|\n", b"\r\n", data)


# --------------------------------------------------------------------------
# DATA: the events themselves


def in_data(**kwargs: object) -> ServerConnection:
    conn = ServerConnection(**kwargs)  # type: ignore[arg-type]
    conn.send(GREETING)
    conn.receive_data(START + b"DATA\r\n")
    for code in (250, 250, 250):
        conn.next_event()
        conn.send(Reply.of(code, "2.0.0", "ok"))
    assert conn.next_event() == Data()
    conn.send(Reply.of(354, None, "go ahead"))
    assert conn.state is S.DATA and conn.reply_due == 0
    return conn


def test_data_events() -> None:
    conn = in_data()
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"Subject: hi\r\n\r\n..leading dot\r\n.\r\nNOOP\r\n")
    assert conn.next_event() == MessageData(b"Subject: hi\r\n\r\n.leading dot\r\n")
    assert conn.reply_due == 0
    assert conn.next_event() == EndOfMessage()
    assert conn.reply_due == 1
    with pytest.raises(LocalProtocolError):
        conn.next_event()
    assert conn.send(Reply.of(250, "2.0.0", "queued")) == b"250 2.0.0 queued\r\n"
    assert conn.state is S.READY and conn.accepted_recipients == 0
    assert conn.next_event() == Noop()  # the bytes after the terminator are commands


def test_empty_message() -> None:
    driver = converse_every_way(START + b"DATA\r\n.\r\nNOOP\r\n")
    assert driver.log == [*OPEN, Data(), 354, Content(b""), 250, Noop(), 250]


def test_refused_data_does_not_enter_content() -> None:
    def refuse_data(event: ServerEvent, index: int) -> Reply:
        if isinstance(event, Data):
            return Reply.of(554, "5.5.1", "No valid recipients")
        return Reply.of(250, "2.0.0", "OK")

    # A client that pipelines past DATA gets its content parsed as commands:
    # that is RFC 2920's rule (DATA ends a pipelined group), not a leak.
    driver = converse(START + b"DATA\r\nNOOP\r\n.\r\n", policy=refuse_data)
    assert driver.log == [*OPEN, Data(), 554, Noop(), 250, Refused(500, "5.5.1")]


def test_data_closed_in_the_middle() -> None:
    conn = in_data()
    conn.receive_data(b"half a mess\r")
    # The CR may begin the terminator: it waits for what follows, the rest goes on.
    assert conn.next_event() == MessageData(b"half a mess")
    conn.receive_data(b"")
    # The stream ends with Closed, not EndOfMessage: the driver delivers nothing.
    assert conn.next_event() == Closed()
    assert conn.state is S.CLOSED and conn.next_event() == Closed()


def test_data_closed_in_the_middle_transcript() -> None:
    driver = converse_every_way(START + b"DATA\r\nsomething\r\n", close=True)
    assert driver.log == [*OPEN, Data(), 354, Closed()]


# --------------------------------------------------------------------------
# smuggling: nothing but <CRLF>.<CRLF> ends DATA (RFC 5321 4.1.1.4, 2.3.8)

SMUGGLE = b"MAIL FROM:<evil@x.example>\r\nRCPT TO:<victim@y.example>\r\nDATA\r\nforged\r\n"
SMUGGLING_CASES = [
    # (fake terminator, the content when bare line endings are normalised)
    (b"\n.\n", b"a\r\n.\r\n"),
    (b"\n.\r\n", b"a\r\n.\r\n"),
    (b"\r\n.\n", b"a\r\n\r\n"),
    (b"\r.\r", b"a\r\n.\r\n"),
    (b"\r\n.\r", b"a\r\n\r\n"),
    (b"\r\r\n.\r\r\n", b"a\r\n\r\n\r\n\r\n"),
    (b"\n.\r", b"a\r\n.\r\n"),
    (b"\r.\n", b"a\r\n.\r\n"),
]


@pytest.mark.parametrize(("fake", "content"), SMUGGLING_CASES, ids=[repr(c[0]) for c in SMUGGLING_CASES])
def test_fake_terminators_never_end_data(fake: bytes, content: bytes) -> None:
    wire = START + b"DATA\r\na" + fake + SMUGGLE + b".\r\n" + RCPT + b"NOOP\r\n"
    refused = converse_every_way(wire)
    # Refused as a whole (RFC 5321 2.3.8); the transaction is over, so the
    # RCPT after it is out of sequence; the forged MAIL never became a command.
    assert refused.log == [*OPEN, Data(), 354, BARE, SEQ, Noop(), 250]
    assert all(not isinstance(e, Mail) or e == M for e in refused.events)
    lenient = converse_every_way(wire, **NORMALIZE)
    assert lenient.log == [*OPEN, Data(), 354, Content(content + SMUGGLE), 250, SEQ, Noop(), 250]


def test_stuffed_dot_line_is_content() -> None:
    wire = START + b"DATA\r\n..\r\n...\r\n.x\r\n.\r\n"
    assert converse_every_way(wire).log == [*OPEN, Data(), 354, Content(b".\r\n..\r\nx\r\n"), 250]


def test_bare_line_endings_refused_after_content_was_streamed() -> None:
    conn = in_data()
    conn.receive_data(b"clean line\r\n")
    assert conn.next_event() == MessageData(b"clean line")  # the CRLF waits: it might start the end
    conn.receive_data(b"next")
    assert conn.next_event() == MessageData(b"\r\nnext")
    conn.receive_data(b" has a bare\nLF\r\n.\r\nRSET\r\n")
    # The stream ends with Rejected: the MessageData already given is void.
    event = conn.next_event()
    assert event == Rejected(Reply.of(550, "5.5.2", "Message contains bare CR or LF (RFC 5321 2.3.8)"))
    assert conn.reply_due == 1
    conn.send(event.reply)
    assert conn.state is S.READY and not conn.in_transaction
    assert conn.next_event() == Rset()


@pytest.mark.parametrize(("raw", "content"), [
    (b"a\nb\r\n", b"a\r\nb\r\n"),
    (b"a\rb\r\n", b"a\r\nb\r\n"),
    (b"a\r\r\n", b"a\r\n\r\n"),
    (b"end with bare LF\n", b"end with bare LF\r\n"),
])
def test_bare_line_endings_normalised_when_configured(raw: bytes, content: bytes) -> None:
    wire = START + b"DATA\r\n" + raw + b"\r\n.\r\n"
    assert converse_every_way(wire, **NORMALIZE).log == [*OPEN, Data(), 354, Content(content + b"\r\n"), 250]
    assert converse_every_way(wire).log == [*OPEN, Data(), 354, BARE]


# --------------------------------------------------------------------------
# message size (RFC 1870)


@pytest.mark.parametrize(("size", "expected"), [
    (100, [Content(b"x" * 98 + b"\r\n"), 250]),
    (101, [BIG]),
    (5000, [BIG]),
])
def test_data_size_limit(size: int, expected: list[object]) -> None:
    body = b"x" * (size - 2) + b"\r\n"
    wire = START + b"DATA\r\n" + body + b".\r\n" + RCPT + MAIL
    driver = converse_every_way(wire, limits=Limits(message_size=100))
    assert driver.log == [*OPEN, Data(), 354, *expected, SEQ, M, 250]


def test_oversized_data_stops_streaming() -> None:
    conn = in_data(limits=Limits(message_size=1000))
    streamed = 0
    for _ in range(50):
        conn.receive_data(b"y" * 98 + b"\r\n")
        while isinstance(event := conn.next_event(), MessageData):
            streamed += len(event.data)
    assert streamed <= 1000
    conn.receive_data(b".\r\n")
    event = conn.next_event()
    assert event == Rejected(Reply.of(552, "5.3.4", "Message too big"))
    conn.send(event.reply)
    assert conn.state is S.READY


def test_no_size_limit() -> None:
    body = b"z" * 70 + b"\r\n"
    wire = START + b"DATA\r\n" + body * 100 + b".\r\n"
    driver = converse(wire, limits=Limits(message_size=0))
    assert driver.log == [*OPEN, Data(), 354, Content(body * 100), 250]


# --------------------------------------------------------------------------
# BDAT (RFC 3030)

BDAT_CASES: list[tuple[str, bytes, dict[str, object], list[object]]] = [
    ("commands inside a chunk are content", START + b"BDAT 15 LAST\r\nQUIT\r\n.\r\nRSET\r\nNOOP\r\n", {},
     [*OPEN, Bdat(15, True), Content(b"QUIT\r\n.\r\nRSET\r\n"), 250, Noop(), 250]),
    ("zero-size last chunk", START + b"BDAT 5\r\nhelloBDAT 0 LAST\r\nNOOP\r\n", {},
     [*OPEN, Bdat(5), Content(b"hello"), 250, Bdat(0, True), Content(b""), 250, Noop(), 250]),
    ("zero-size first chunk", START + b"BDAT 0\r\nBDAT 2 last\r\nhi", {},
     [*OPEN, Bdat(0), Content(b""), 250, Bdat(2, True), Content(b"hi"), 250]),
    ("pipelined chunks", START + b"BDAT 4\r\nab\r\nBDAT 3\r\n\n\r.BDAT 1 LAST\r\n.", {},
     [*OPEN, Bdat(4), Content(b"ab\r\n"), 250, Bdat(3), Content(b"\n\r."), 250,
      Bdat(1, True), Content(b"."), 250]),
    ("bare line endings are no concern of BDAT", START + b"BDAT 3 LAST\r\na\nb", {},
     [*OPEN, Bdat(3, True), Content(b"a\nb"), 250]),
    ("refused bdat swallows its chunk", EHLO + b"BDAT 20\r\nMAIL FROM:<e@x.ex>\r\n" + MAIL, {},
     [E, 250, SEQ, M, 250]),
    ("refused bdat last swallows its chunk", EHLO + MAIL + b"BDAT 6 LAST\r\nQUIT\r\nNOOP\r\n", {},
     [E, 250, M, 250, SEQ, Noop(), 250]),
    # RFC 3030 2 leaves the state open; ended, as Postfix does, a pipelined
    # next transaction starts clean: its MAIL taken, its RCPTs its own.
    ("a refused bdat ends the transaction it came in", EHLO + MAIL + b"BDAT 3 LAST\r\nabc" + MAIL + RCPT, {},
     [E, 250, M, 250, SEQ, M, 250, R, 250]),
    ("a refused bdat chunk ends it too", EHLO + MAIL + b"BDAT 3\r\nabcBDAT 2 LAST\r\nde" + MAIL, {},
     [E, 250, M, 250, SEQ, SEQ, M, 250]),
    ("a transaction ends with the last chunk", START + b"BDAT 1 LAST\r\nxBDAT 1\r\ny" + RCPT, {},
     [*OPEN, Bdat(1, True), Content(b"x"), 250, SEQ, SEQ]),
    ("size counts every chunk", START + b"BDAT 6\r\n123456BDAT 6\r\n789012BDAT 2 LAST\r\nab" + RCPT + MAIL,
     {"limits": Limits(message_size=10)},
     [*OPEN, Bdat(6), Content(b"123456"), 250, Bdat(6), BIG, SEQ, SEQ, M, 250]),
    ("one chunk above the size", START + b"BDAT 11 LAST\r\nhello world" + MAIL,
     {"limits": Limits(message_size=10)}, [*OPEN, Bdat(11, True), BIG, M, 250]),
    ("exactly the size", START + b"BDAT 10 LAST\r\nhelloworld",
     {"limits": Limits(message_size=10)}, [*OPEN, Bdat(10, True), Content(b"helloworld"), 250]),
    ("unparseable bdat cannot be framed", START + b"BDAT ten\r\nNOOP\r\n", {},
     [*OPEN, Refused(501, "5.5.4"), Noop(), 250]),
    ("closed in the middle of a chunk", START + b"BDAT 100 LAST\r\nabc", {"close": True},
     [*OPEN, Bdat(100, True), Closed()]),
    ("closed in the middle of a refused chunk", EHLO + b"BDAT 100 LAST\r\nabc", {"close": True},
     [E, 250, Closed()]),
]


@pytest.mark.parametrize(("wire", "kwargs", "expected"),
                         [c[1:] for c in BDAT_CASES], ids=[c[0] for c in BDAT_CASES])
def test_bdat(wire: bytes, kwargs: dict[str, object], expected: list[object]) -> None:
    assert converse_every_way(wire, **kwargs).log == expected


def test_bdat_events_and_the_reply_after_the_chunk() -> None:
    conn = ServerConnection()
    conn.send(GREETING)
    conn.receive_data(START)
    for _ in range(3):
        conn.next_event()
        conn.send(Reply.of(250, "2.0.0", "ok"))
    conn.receive_data(b"BDAT 9 LAST\r\nQUIT")
    assert conn.next_event() == Bdat(9, True)
    assert conn.reply_due == 0
    assert conn.next_event() == MessageData(b"QUIT")
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"\r\n.\r\nNOOP\r\n")
    assert conn.next_event() == MessageData(b"\r\n.\r\n")
    assert conn.next_event() == EndOfMessage()
    assert conn.reply_due == 1
    conn.send(Reply.of(250, "2.0.0", "Message accepted"))
    assert conn.state is S.READY and conn.message_size == 0
    assert conn.next_event() == Noop()


def test_bdat_chunk_refused_by_the_driver_fails_the_transaction() -> None:
    def refuse_second(event: ServerEvent, index: int) -> Reply:
        if isinstance(event, (EndOfChunk, EndOfMessage)) and driver.conn.message_size > 3:
            return Reply.of(554, "5.6.0", "Content refused")
        return Reply.of(250, "2.0.0", "OK")

    driver = Driver(policy=refuse_second)
    # RFC 3030 2: chunks already pipelined after a failed one are discarded.
    driver.feed(START + b"BDAT 3\r\nabcBDAT 3\r\ndefBDAT 4 LAST\r\nQUITNOOP\r\n")
    assert driver.log == [*OPEN, Bdat(3), Content(b"abc"), 250, Bdat(3), Content(b"def"), 554, SEQ,
                          Noop(), 250]
    assert driver.conn.state is S.READY


def test_bdat_does_not_parse_commands_split_anywhere() -> None:
    chunk = b"QUIT\r\nDATA\r\n.\r\nBDAT 3\r\n"
    wire = START + b"BDAT %d LAST\r\n" % len(chunk) + chunk + b"NOOP\r\n"
    for step in range(1, len(wire) + 1):
        driver = converse(wire, step=step)
        assert driver.log == [*OPEN, Bdat(len(chunk), True), Content(chunk), 250, Noop(), 250], step


# --------------------------------------------------------------------------
# properties: any message, any chunking


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.data())
def test_stuffed_messages_round_trip_under_any_chunking(message: bytes, data: st.DataObject) -> None:
    wire = START + b"DATA\r\n" + stuff(message) + b"NOOP\r\n"
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=12))
    driver = Driver().feed_all(cut(wire, cuts))
    expected = normalized(message)
    if expected and not expected.endswith(b"\r\n"):
        expected += b"\r\n"
    assert driver.log == [*OPEN, Data(), 354, Content(expected), 250, Noop(), 250]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200).map(lambda b: b.replace(b"\x00", b".")), st.data(), st.booleans())
def test_raw_content_ends_at_the_first_real_terminator(raw: bytes, data: st.DataObject, lenient: bool) -> None:
    # Arbitrary bytes, with dots, bare CRs and LFs, then a real terminator.
    wire = START + b"DATA\r\n" + raw + b"\r\n.\r\n"
    kwargs: dict[str, object] = NORMALIZE if lenient else {}
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=12))
    chunked = Driver(**kwargs).feed_all(cut(wire, cuts))  # type: ignore[arg-type]
    whole = converse(wire, **kwargs)
    assert chunked.log == whole.log and chunked.out == whole.out
    # The oracle: the first <CRLF>.<CRLF>, counting the CRLF before the content.
    full = b"\r\n" + raw + b"\r\n.\r\n"
    end = full.find(b"\r\n.\r\n")
    content = full[: end + 2].replace(b"\r\n.", b"\r\n")[2:]
    has_bare = content.count(b"\r") != content.count(b"\r\n") or content.count(b"\n") != content.count(b"\r\n")
    if has_bare and not lenient:
        verdict: list[object] = [BARE]
    else:
        verdict = [Content(normalized(content)), 250]
    assert whole.log[: len(OPEN) + 2 + len(verdict)] == [*OPEN, Data(), 354, *verdict]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=40), min_size=1, max_size=5), st.data())
def test_bdat_chunks_round_trip_under_any_chunking(chunks: list[bytes], data: st.DataObject) -> None:
    wire = START
    expected: list[object] = list(OPEN)
    for i, chunk in enumerate(chunks):
        last = i == len(chunks) - 1
        wire += b"BDAT %d%s\r\n" % (len(chunk), b" LAST" if last else b"") + chunk
        expected += [Bdat(len(chunk), last), Content(chunk), 250]
    wire += b"NOOP\r\n"
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=12))
    driver = Driver().feed_all(cut(wire, cuts))
    assert driver.log == [*expected, Noop(), 250]


# --------------------------------------------------------------------------
# the hot path stays in C: one event per read, not per line


def test_one_message_data_per_read_not_per_line() -> None:
    conn = in_data(limits=Limits(message_size=0))
    block = b"A short line of text, as mail has.\r\n" * 2000  # 72 kB, 2000 lines
    events = 0
    total = 0
    for _ in range(20):
        conn.receive_data(block)
        while isinstance(event := conn.next_event(), MessageData):
            events += 1
            total += len(event.data)
    conn.receive_data(b".\r\n")
    while isinstance(event := conn.next_event(), MessageData):
        total += len(event.data)
    assert event == EndOfMessage()
    assert total == len(block) * 20
    assert events <= 20


# --------------------------------------------------------------------------
# the text line limit (RFC 5321 4.5.3.1.6), however the reads are cut

LONG = Refused(550, "5.6.0")
SHORT_LINES = {"limits": Limits(text_line=20)}


@pytest.mark.parametrize(("body", "log"), [
    (b"x" * 18 + b"\r\n", [Content(b"x" * 18 + b"\r\n")]),
    (b"ok\r\n" + b"x" * 19 + b"\r\nok\r\n", [LONG]),
    (b"." + b"x" * 18 + b"\r\n", [Content(b"x" * 18 + b"\r\n")]),  # the stuffed dot is not content
])
def test_data_line_limit(body: bytes, log: list[object]) -> None:
    driver = converse_every_way(START + b"DATA\r\n" + body + b".\r\nNOOP\r\n", **SHORT_LINES)
    assert driver.log == [*OPEN, Data(), 354, *log, *([250] if log[0] != LONG else []), Noop(), 250]


@pytest.mark.parametrize(("chunks", "refused"), [
    ([b"x" * 10, b"y" * 8 + b"\r\n"], False),  # one 20-octet line across two chunks
    ([b"x" * 10, b"y" * 9 + b"\r\n"], True),
])
def test_bdat_line_limit_across_chunks(chunks: list[bytes], refused: bool) -> None:
    wire = START + b"".join(
        b"BDAT %d%s\r\n" % (len(c), b" LAST" if i == len(chunks) - 1 else b"") + c
        for i, c in enumerate(chunks)
    ) + b"NOOP\r\n"
    driver = converse_every_way(wire, **SHORT_LINES)
    assert (LONG in driver.log) is refused
    assert driver.log[-2:] == [Noop(), 250]
    if not refused:  # each chunk is recorded as it ends
        assert b"".join(e.data for e in driver.log if isinstance(e, Content)) == b"".join(chunks)

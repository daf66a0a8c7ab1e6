"""ServerConnection streams content: each read's unstuffed octets leave as they
arrive, and a refusal part-way is told at once (``ContentRefused``).

The properties a streaming backend relies on, checked on the core alone:
the octets streamed are exactly the message, for DATA and BDAT, wherever the
reads are cut (at every offset of the terminator and of a dot-stuffed line);
one ``MessageData`` per read at most, nothing accumulated; and a message
refused part-way gives ``ContentRefused`` once, nothing after it, and the
``Rejected`` at the end of its framing.
"""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from mailwire.limits import Limits
from mailwire.protocol.data import stuff
from mailwire.protocol.events import (
    NEED_DATA, Bdat, Closed, ContentRefused, Data, EndOfChunk, EndOfMessage, MessageData, Rejected,
)
from mailwire.protocol.server import ServerConnection
from mailwire.protocol.state import ServerState
from mailwire.reply import Reply

from server_harness import GREETING

START = b"EHLO c.example\r\nMAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\n"
LMTP_START = b"LHLO c.example\r\nMAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\nRCPT TO:<c@y.example>\r\n"
OK = Reply.of(250, "2.0.0", "OK")
GO_AHEAD = Reply.of(354, None, "go ahead")
TOO_BIG = Reply.of(552, "5.3.4", "Message too big")
BARE = Reply.of(550, "5.5.2", "Message contains bare CR or LF (RFC 5321 2.3.8)")


def line_too_long(limit: int) -> Reply:
    return Reply.of(550, "5.6.0", f"Message has a line longer than {limit} octets (RFC 5321 4.5.3.1.6)")


class Stream:
    """Feeds reads to a core, answers every command 250 (354 to DATA), and
    records what a streaming driver sees: the pieces of content, the events
    that end or void a message, and the reads each piece came from."""

    def __init__(self, **kwargs: object) -> None:
        self.conn = ServerConnection(**kwargs)  # type: ignore[arg-type]
        self.conn.send(GREETING)
        self.pieces: list[bytes] = []  # MessageData, in order
        self.ends: list[object] = []  # EndOfChunk, EndOfMessage, ContentRefused, Rejected, Closed
        self.reads = 0  # receive_data calls while a message's content was read
        self.pieces_per_read: list[int] = []

    def feed(self, data: bytes) -> Stream:
        if self.conn.receiving_content:
            self.reads += 1
        self.conn.receive_data(data)
        before = len(self.pieces)
        while True:
            event = self.conn.next_event()
            if event is NEED_DATA:
                break
            if isinstance(event, MessageData):
                assert event.data
                self.pieces.append(event.data)
                continue
            if isinstance(event, (EndOfChunk, EndOfMessage, ContentRefused, Rejected, Closed)):
                self.ends.append(event)
            if isinstance(event, Closed):
                break
            for _ in range(self.conn.reply_due):
                reply = event.reply if isinstance(event, Rejected) else GO_AHEAD if isinstance(event, Data) else OK
                self.conn.send(reply)
        self.pieces_per_read.append(len(self.pieces) - before)
        return self

    def feed_cut(self, wire: bytes, cuts: list[int]) -> Stream:
        points = sorted({c for c in cuts if 0 < c < len(wire)})
        for a, b in zip([0, *points], [*points, len(wire)]):
            self.feed(wire[a:b])
        return self

    @property
    def content(self) -> bytes:
        return b"".join(self.pieces)


def offsets_around(wire: bytes, pattern: bytes, start: int, reach: int = 2) -> list[int]:
    """Every offset within ``reach`` of each occurrence of ``pattern`` after ``start``."""
    out: set[int] = set()
    pos = wire.find(pattern, start)
    while pos >= 0:
        out.update(range(pos - reach, pos + len(pattern) + reach + 1))
        pos = wire.find(pattern, pos + 1)
    return sorted(o for o in out if 0 < o < len(wire))


# --------------------------------------------------------------------------
# DATA: the octets streamed are the message, however the reads are cut

lines = st.lists(
    st.one_of(
        st.sampled_from([b".", b"..", b".x", b"", b"a.b", b". ", b"..."]),
        st.binary(max_size=12).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
    ),
    min_size=1, max_size=12,
)


@settings(max_examples=60, deadline=None)
@given(lines)
def test_data_streams_the_message_cut_at_every_offset_of_the_end_and_of_dot_lines(message_lines: list[bytes]) -> None:
    message = b"".join(line + b"\r\n" for line in message_lines)
    head = START + b"DATA\r\n"
    wire = head + stuff(message) + b"NOOP\r\n"
    cuts = sorted(set(offsets_around(wire, b"\r\n.", len(head) - 2)) | {len(head)})
    for cut in cuts:
        for cut2 in (cut + 1, cut + 3):
            stream = Stream().feed_cut(wire, [len(head), cut, cut2])
            assert stream.content == message, (cut, cut2)
            assert stream.ends == [EndOfMessage()]
            assert max(stream.pieces_per_read) <= 1  # one piece per read, never more
            assert stream.conn.state is ServerState.READY


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=1, max_size=300), st.lists(st.integers(0, 400), max_size=8))
def test_data_streams_any_binary_message_under_any_cuts(message: bytes, cuts: list[int]) -> None:
    # What DotStuffer sends: CR, LF and CRLF all as CRLF, and a last CRLF.
    expected = re.sub(rb"\r\n|\r|\n", b"\r\n", message)
    if not expected.endswith(b"\r\n"):
        expected += b"\r\n"
    head = START + b"DATA\r\n"
    wire = head + stuff(message)
    stream = Stream(limits=Limits(text_line=0)).feed_cut(wire, [len(head), *(len(head) + c for c in cuts)])
    assert stream.content == expected
    assert stream.ends == [EndOfMessage()]
    # Each piece is handed on as the read brought it: no piece spans two reads.
    assert len(stream.pieces) <= stream.reads


def test_a_read_that_ends_mid_line_is_handed_on_as_it_came() -> None:
    stream = Stream().feed(START + b"DATA\r\n")
    read = b"Subject: a read that ends mid-line\r\n\r\nsome text, and more to co"
    stream.feed(read)
    assert stream.pieces == [read]
    assert stream.pieces[0] is read  # passed on, not copied


def test_a_large_message_is_never_held() -> None:
    stream = Stream(limits=Limits(message_size=0)).feed(START + b"DATA\r\n")
    block = b"base64base64base64base64base64base64base64base64base64base64base64+/\r\n" * 900
    for _ in range(200):  # 12.8 MB
        stream.feed(block)
        assert stream.conn.buffered == 0  # nothing stays in the core
        stream.pieces.clear()
    stream.feed(b".\r\n")
    assert stream.ends == [EndOfMessage()]


# --------------------------------------------------------------------------
# BDAT: the chunks' octets, never parsed


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([b"\r\n.\r\n", b"\r\n..", b"BDAT 3\r\n", b"x", b"\r", b"\n", b"."]), max_size=30),
       st.integers(1, 5))
def test_bdat_streams_the_message_cut_at_every_offset_of_the_end_and_of_dot_lines(
        parts: list[bytes], count: int) -> None:
    message = b"".join(parts)
    size = -(-len(message) // count) or 1
    chunks = [message[i:i + size] for i in range(0, len(message), size)] or [b""]
    wire = START
    for i, chunk in enumerate(chunks):
        wire += b"BDAT %d%s\r\n" % (len(chunk), b" LAST" if i == len(chunks) - 1 else b"") + chunk
    cuts = sorted(set(offsets_around(wire, b"\r\n.", len(START))) | set(offsets_around(wire, b"BDAT", len(START))))
    for cut in cuts or [len(START)]:
        stream = Stream(limits=Limits(text_line=0)).feed_cut(wire, [cut, cut + 2])
        assert stream.content == message, cut
        assert stream.ends == [EndOfChunk()] * (len(chunks) - 1) + [EndOfMessage()]


# --------------------------------------------------------------------------
# refused part-way: ContentRefused at once, Rejected at the end of the framing


def in_data(**kwargs: object) -> Stream:
    return Stream(**kwargs).feed(START + b"DATA\r\n")


def test_data_over_the_size_is_void_at_once_and_refused_at_its_end() -> None:
    stream = in_data(limits=Limits(message_size=1000))
    for _ in range(5):
        stream.feed(b"y" * 298 + b"\r\n")
    assert stream.ends == [ContentRefused(TOO_BIG)]
    assert len(stream.content) <= 1000
    handed = len(stream.pieces)
    stream.feed(b"z" * 5000 + b"\r\n")  # swallowed: nothing more handed out
    assert len(stream.pieces) == handed and stream.conn.reply_due == 0
    stream.feed(b".\r\nNOOP\r\n")
    assert stream.ends == [ContentRefused(TOO_BIG), Rejected(TOO_BIG)]
    assert stream.conn.state is ServerState.READY  # and the NOOP after it was answered


def test_bare_line_ending_in_a_later_read_voids_the_message() -> None:
    stream = in_data()
    stream.feed(b"clean\r\nlines\r\n")
    stream.feed(b"a bare\nLF, and more to come")
    assert stream.ends == [ContentRefused(BARE)]
    stream.feed(b"\r\n.\r\n")
    assert stream.ends == [ContentRefused(BARE), Rejected(BARE)]


def test_refused_with_the_end_in_hand_is_rejected_at_once() -> None:
    stream = in_data()
    stream.feed(b"a bare\nLF\r\n.\r\n")
    assert stream.ends == [Rejected(BARE)]


def test_a_line_too_long_voids_data_and_bdat_as_it_passes() -> None:
    limits = Limits(text_line=100)
    stream = in_data(limits=limits)
    stream.feed(b"x" * 150)
    assert stream.ends == [ContentRefused(line_too_long(100))] and stream.pieces == []
    stream.feed(b"\r\n.\r\n")
    assert stream.ends[-1] == Rejected(line_too_long(100))

    stream = Stream(limits=limits).feed(START + b"BDAT 1000 LAST\r\n" + b"y" * 150)
    assert stream.ends == [ContentRefused(line_too_long(100))]
    stream.feed(b"y" * 850)
    assert stream.ends == [ContentRefused(line_too_long(100)), Rejected(line_too_long(100))]


def test_bdat_over_the_size_is_void_at_the_command() -> None:
    stream = Stream(limits=Limits(message_size=100)).feed(START + b"BDAT 60\r\n" + b"a" * 60)
    assert stream.ends == [EndOfChunk()]
    stream.feed(b"BDAT 60 LAST\r\n")
    assert stream.ends == [EndOfChunk(), ContentRefused(TOO_BIG)]
    stream.feed(b"b" * 60)
    assert stream.ends == [EndOfChunk(), ContentRefused(TOO_BIG), Rejected(TOO_BIG)]
    assert stream.content == b"a" * 60  # the refused chunk was never handed out


def test_lmtp_voids_once_and_refuses_per_recipient() -> None:
    stream = Stream(lmtp=True, limits=Limits(message_size=100)).feed(LMTP_START + b"DATA\r\n")
    stream.feed(b"a" * 200)
    stream.feed(b"\r\n.\r\n")
    assert stream.ends == [ContentRefused(TOO_BIG), Rejected(TOO_BIG), Rejected(TOO_BIG)]


def test_closed_mid_stream() -> None:
    stream = in_data()
    stream.feed(b"half a message\r\n")
    stream.feed(b"")
    assert stream.ends == [Closed()]


# --------------------------------------------------------------------------
# how the end and stuffed dots are found: periods hopped over while sparse


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([b".", b"a. b. c. d. e. f. g. h. i.", b"x" * 300, b"\r\n", b"\r\n..", b"\r\n.x",
                                 b"base64+/"]),
                max_size=40))
def test_dot_lines_found_among_dense_and_sparse_periods(parts: list[bytes]) -> None:
    raw = b"".join(parts)
    # A message made of those lines; DATA's own stuffing is the oracle.
    message = raw.replace(b"\r\n..", b"\r\n.")
    head = START + b"DATA\r\n"
    wire = head + stuff(message)
    whole = Stream(limits=Limits(text_line=0)).feed(wire)
    expected = message if message.endswith(b"\r\n") or not message else message + b"\r\n"
    assert whole.content == expected
    assert whole.ends == [EndOfMessage()]


def test_a_stuffed_dot_after_many_periods_is_found() -> None:
    prose = b"Sentences. Many of them. Each ends. With a period. Then more. And more.\r\n" * 20
    message = prose + b".a line that starts with a period\r\n" + prose
    stream = in_data().feed(stuff(message))
    assert stream.content == message
    assert stream.ends == [EndOfMessage()]


def test_a_refused_message_is_only_read_to_its_end() -> None:
    stream = in_data(limits=Limits(message_size=100, text_line=50))
    stream.feed(b"x" * 40 + b"\r\n" + b"y" * 80)  # over the size; the line too long comes second
    assert stream.ends == [ContentRefused(TOO_BIG)]
    stream.feed(b"\r\na bare\nLF, " + b"z" * 500 + b"\r\n.\r\n")  # swallowed unchecked
    assert stream.ends == [ContentRefused(TOO_BIG), Rejected(TOO_BIG)]
    assert stream.conn.state is ServerState.READY

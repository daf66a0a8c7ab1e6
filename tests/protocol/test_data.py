"""Message content on the wire: DotStuffer (sending) and DataReader (receiving)."""

from __future__ import annotations

import hashlib
import re
import smtplib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailwire.protocol.data import (
    BareLineEndings, DataReader, DotStuffer, LineLengthCheck, stuff, unstuff,
)

END = b"\r\n.\r\n"


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c for c in cuts if 0 < c < len(data)})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)])] if data else []


def stuff_chunks(chunks: list[bytes]) -> bytes:
    stuffer = DotStuffer()
    return b"".join(stuffer.feed(c) for c in chunks) + stuffer.end()


def read_chunks(
    chunks: list[bytes], policy: BareLineEndings = BareLineEndings.REFUSE
) -> tuple[bytes, bytes | None, DataReader]:
    """Feed chunks until the end is seen; (content, rest or None, reader)."""
    reader = DataReader(policy)
    content = []
    rest: bytes | None = None
    for i, chunk in enumerate(chunks):
        piece, rest = reader.feed(chunk)
        content.append(piece)
        if rest is not None:
            rest += b"".join(chunks[i + 1:])
            break
    return b"".join(content), rest, reader


def normalize(data: bytes) -> bytes:
    """Line endings as smtplib fixes them: CRLF, LF and lone CR all become CRLF."""
    return re.sub(rb"\r\n|\n|\r(?!\n)", b"\r\n", data)


def reference_decode(wire: bytes) -> tuple[bytes, bytes] | None:
    """An independent, line-at-a-time decoder: (content, rest) or None if unterminated."""
    out: list[bytes] = []
    pos = 0
    while True:
        end = wire.find(b"\r\n", pos)
        if end < 0:
            return None
        line = wire[pos:end]
        if line == b".":
            return b"".join(out), wire[end + 2:]
        out.append((line[1:] if line.startswith(b".") else line) + b"\r\n")
        pos = end + 2


def has_bare(data: bytes) -> bool:
    return re.search(rb"\r(?!\n)|(?<!\r)\n", data) is not None


# --------------------------------------------------------------------------
# DotStuffer


@pytest.mark.parametrize(
    ("message", "wire"),
    [
        (b"", b".\r\n"),
        (b"hello\r\n", b"hello\r\n.\r\n"),
        (b"hello", b"hello\r\n.\r\n"),
        (b".", b"..\r\n.\r\n"),
        (b".\r\n", b"..\r\n.\r\n"),
        (b"a\r\n.b\r\n..c\r\n", b"a\r\n..b\r\n...c\r\n.\r\n"),
        (b"a\n.\n", b"a\r\n..\r\n.\r\n"),
        (b"a\r.\r", b"a\r\n..\r\n.\r\n"),
        (b"a\r\r\n.\r\r\n", b"a\r\n\r\n..\r\n\r\n.\r\n"),
        (b"\n", b"\r\n.\r\n"),
        (b"\r", b"\r\n.\r\n"),
        (b"x.y\r\n", b"x.y\r\n.\r\n"),
    ],
)
def test_stuff_table(message: bytes, wire: bytes) -> None:
    assert stuff(message) == wire


@pytest.mark.parametrize(
    ("chunks", "wire"),
    [
        ([b"a\r", b"\nb\r\n"], b"a\r\nb\r\n"),
        ([b"a\r", b"\n", b".b\r\n"], b"a\r\n..b\r\n"),
        ([b"a\r", b".b\r\n"], b"a\r\n..b\r\n"),  # lone CR then a dot on the next line
        ([b"a\r\n", b".b\r\n"], b"a\r\n..b\r\n"),
        ([b"a\n", b"."], b"a\r\n.."),
        ([b".", b"."], b"..."),
        ([b"a", b"", b"\r", b"", b"\n"], b"a\r\n"),
    ],
)
def test_stuffer_chunk_boundaries(chunks: list[bytes], wire: bytes) -> None:
    stuffer = DotStuffer()
    assert b"".join(stuffer.feed(c) for c in chunks) == wire


texts = st.lists(
    st.one_of(st.sampled_from(["\r", "\n", ".", "\r\n", "a"]), st.text(st.characters(exclude_categories=["Cs"]))),
    max_size=20,
).map("".join)


@given(texts, st.lists(st.integers(0, 200), max_size=10))
def test_stuffer_matches_smtplib_quotedata(text: str, cuts: list[int]) -> None:
    data = text.encode("utf-8")
    stuffer = DotStuffer()
    out = b"".join(stuffer.feed(c) for c in chunked(data, cuts))
    assert out == smtplib.quotedata(text).encode("utf-8")


messages = st.lists(
    st.one_of(st.sampled_from([b"\r", b"\n", b".", b"\r\n", b"..", b"\r\n.\r\n", b"\n.\n"]), st.binary(max_size=8)),
    max_size=20,
).map(b"".join)


@given(messages, st.lists(st.integers(0, 200), max_size=10), st.lists(st.integers(0, 300), max_size=10))
def test_stuff_unstuff_round_trip_any_chunking(message: bytes, send_cuts: list[int], recv_cuts: list[int]) -> None:
    wire = stuff_chunks(chunked(message, send_cuts))
    # The wire itself is clean: CRLF only, and exactly one terminator, at the end.
    assert not has_bare(wire)
    assert wire.endswith(b".\r\n")
    assert (b"\r\n" + wire).find(END) == len(wire) - 3

    trailer = b"QUIT\r\n"
    content, rest, reader = read_chunks(chunked(wire + trailer, recv_cuts))
    expected = normalize(message)
    if expected and not expected.endswith(b"\r\n"):
        expected += b"\r\n"
    assert content == expected
    assert rest == trailer
    assert reader.done and not reader.bare_line_endings
    assert reader.size == len(content)


# --------------------------------------------------------------------------
# DataReader


@pytest.mark.parametrize(
    ("wire", "content", "rest"),
    [
        (b".\r\n", b"", b""),
        (b"\r\n.\r\n", b"\r\n", b""),
        (b"hello\r\n.\r\n", b"hello\r\n", b""),
        (b"hello\r\n.\r\nQUIT\r\n", b"hello\r\n", b"QUIT\r\n"),
        (b"a\r\n..b\r\n.\r\n", b"a\r\n.b\r\n", b""),
        (b"..\r\n.\r\n", b".\r\n", b""),
        (b"...\r\n.\r\n", b"..\r\n", b""),
        (b"a\r\n..\r\n.\r\n", b"a\r\n.\r\n", b""),
        (b"x.\r\n.\r\n", b"x.\r\n", b""),
        (b"a\r\n.\r\n.\r\n", b"a\r\n", b".\r\n"),
        (b"a\r\n.\r\nMAIL FROM:<x@y>\r\nRCPT TO:<z@w>\r\n", b"a\r\n", b"MAIL FROM:<x@y>\r\nRCPT TO:<z@w>\r\n"),
    ],
)
def test_reader_table(wire: bytes, content: bytes, rest: bytes) -> None:
    assert unstuff(wire) == (content, rest)
    # Byte at a time gives the same.
    got, got_rest, reader = read_chunks([wire[i:i + 1] for i in range(len(wire))])
    assert (got, got_rest) == (content, rest)
    assert reader.done


SMUGGLING = [
    b"\n.\n",
    b"\n.\r\n",
    b"\r\n.\n",
    b"\r.\r",
    b"\r\n.\r",
    b"\r\r\n.\r\r\n",
    b"\r.\r\n",
    b"\n.\r",
    b"\r\n.\r\r\n",
    b"\r\n..\r\n",  # stuffed dot: content, not an end
    b"\r\n. \r\n",
    b"\r\n\x00.\r\n",
]


@pytest.mark.parametrize("variant", SMUGGLING, ids=[repr(v) for v in SMUGGLING])
@pytest.mark.parametrize("policy", list(BareLineEndings))
@pytest.mark.parametrize("chunk", [1, 2, 3, 1000])
def test_only_crlf_dot_crlf_ends_the_data(variant: bytes, policy: BareLineEndings, chunk: int) -> None:
    smuggled = b"MAIL FROM:<evil@example.com>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\n"
    wire = b"Subject: hi\r\n\r\nbody" + variant + smuggled
    content, rest, reader = read_chunks([wire[i:i + chunk] for i in range(0, len(wire), chunk)], policy)
    assert rest is None and not reader.done
    # Now the real end arrives: everything before it was content.
    piece, rest = reader.feed(END + b"QUIT\r\n")
    assert rest == b"QUIT\r\n"
    content += piece
    assert b"evil@example.com" in content
    bare = has_bare(variant)
    assert reader.bare_line_endings is bare
    if policy is BareLineEndings.NORMALIZE:
        assert not has_bare(content)
    else:
        expected = reference_decode(wire + END)
        assert expected is not None and content == expected[0]


@pytest.mark.parametrize(
    ("wire", "refuse", "normalize_"),
    [
        (b"a\nb\r\n.\r\n", b"a\nb\r\n", b"a\r\nb\r\n"),
        (b"a\rb\r\n.\r\n", b"a\rb\r\n", b"a\r\nb\r\n"),
        (b"a\r\rb\r\n.\r\n", b"a\r\rb\r\n", b"a\r\n\r\nb\r\n"),
        (b"a\n\r\n.\r\n", b"a\n\r\n", b"a\r\n\r\n"),
    ],
)
def test_bare_line_endings_flag_and_policy(wire: bytes, refuse: bytes, normalize_: bytes) -> None:
    reader = DataReader()
    assert reader.feed(wire) == (refuse, b"")
    assert reader.bare_line_endings
    reader = DataReader(BareLineEndings.NORMALIZE)
    assert reader.feed(wire) == (normalize_, b"")
    assert reader.bare_line_endings  # still reported, so a server can log it


def test_clean_message_has_no_bare_flag() -> None:
    reader = DataReader()
    reader.feed(b"a\r\nb\r\n\r\n.\r\n")
    assert not reader.bare_line_endings


def test_crlf_split_across_chunks_is_not_bare() -> None:
    for wire in (b"a\r\nb\r\n.\r\n", b"a\r\n..b\r\n.\r\n"):
        for cut in range(1, len(wire)):
            content, rest, reader = read_chunks([wire[:cut], wire[cut:]])
            assert rest == b"" and not reader.bare_line_endings, cut
            assert content == unstuff(wire)[0]


def test_feed_after_end_is_an_error() -> None:
    reader = DataReader()
    reader.feed(b".\r\n")
    with pytest.raises(RuntimeError):
        reader.feed(b"more")


def test_size_counts_content_octets() -> None:
    reader = DataReader()
    reader.feed(b"..abc\r\n")
    reader.feed(b"def\r\n.\r\n")
    assert reader.size == len(b".abc\r\ndef\r\n")


wires = st.lists(
    st.one_of(st.sampled_from([b"\r", b"\n", b".", b"\r\n", b"\r\n.", b"..", b"\r\n.\r\n"]), st.binary(max_size=6)),
    max_size=25,
).map(b"".join)


@given(wires, st.lists(st.integers(0, 200), max_size=12), st.sampled_from(list(BareLineEndings)))
def test_reader_chunking_never_matters(wire: bytes, cuts: list[int], policy: BareLineEndings) -> None:
    whole, whole_rest, whole_reader = read_chunks([wire] if wire else [], policy)
    parts, parts_rest, parts_reader = read_chunks(chunked(wire, cuts), policy)
    assert (parts, parts_rest) == (whole, whole_rest)
    assert parts_reader.bare_line_endings == whole_reader.bare_line_endings
    assert parts_reader.size == whole_reader.size == len(whole)


@given(wires, st.lists(st.integers(0, 200), max_size=12))
def test_reader_agrees_with_a_line_decoder(wire: bytes, cuts: list[int]) -> None:
    content, rest, reader = read_chunks(chunked(wire, cuts))
    expected = reference_decode(wire)
    if expected is None:
        assert rest is None
        # What was handed out so far is the start of whatever the content will be.
        final = reference_decode(wire + END)
        assert final is not None and final[0].startswith(content)
    else:
        assert (content, rest) == expected
        assert reader.bare_line_endings == has_bare(content)


def test_streaming_50_mb_keeps_the_buffer_bounded() -> None:
    line = b".leading dot and a line of text that is long enough to be realistic....\r\n"
    chunk = (line * (65536 // len(line) + 1))[:65536]  # cuts lines mid-way, CR/LF included
    total = 50 * 1024 * 1024
    stuffer, reader = DotStuffer(), DataReader()
    sent, received = hashlib.sha256(), hashlib.sha256()
    biggest = 0
    for _ in range(total // len(chunk)):
        sent.update(chunk)
        content, rest = reader.feed(stuffer.feed(chunk))
        assert rest is None
        received.update(content)
        biggest = max(biggest, len(reader._buf))
    content, rest = reader.feed(stuffer.end() + b"QUIT\r\n")
    received.update(content)
    assert rest == b"QUIT\r\n"
    # At most a few octets are held back between chunks, never the message.
    assert biggest <= 8
    # The last chunk ends mid-line: the stuffer adds the CRLF the terminator needs.
    assert not chunk.endswith(b"\r\n")
    assert reader.size == total + 2
    sent.update(b"\r\n")
    assert received.hexdigest() == sent.hexdigest()


# --------------------------------------------------------------------------
# LineLengthCheck: lines longer than the limit, however the stream is cut


def _too_long(data: bytes, limit: int) -> bool:
    """The reference: some run of ``limit`` octets has no LF in it (a line
    that long cannot end, LF included, within ``limit`` octets)."""
    return max(len(segment) for segment in data.split(b"\n")) >= limit


@given(
    st.lists(st.sampled_from([b"x" * 7, b"\r\n", b"\n", b"y" * 31, b"\r"]), max_size=60),
    st.integers(min_value=2, max_value=40),
    st.lists(st.integers(min_value=0, max_value=400), max_size=6),
)
def test_line_length_check_matches_the_reference(parts: list[bytes], limit: int, cuts: list[int]) -> None:
    data = b"".join(parts)
    check = LineLengthCheck(limit)
    bounds = sorted({0, len(data), *(c for c in cuts if c < len(data))})
    for start, end in zip(bounds, bounds[1:]):
        check.feed(data[start:end])
    assert check.exceeded == _too_long(data, limit)


@pytest.mark.parametrize(("content", "exceeded"), [
    (b"x" * 998 + b"\r\n", False),  # 1000 octets with CRLF: the most RFC 5321 allows
    (b"x" * 999 + b"\r\n", True),
    (b"short\r\n" + b"x" * 998 + b"\r\nshort\r\n", False),
    (b"x" * 999, False),  # not ended yet: still within the limit
    (b"x" * 1000, True),  # can no longer end within it
])
def test_line_length_check_at_the_limit(content: bytes, exceeded: bool) -> None:
    check = LineLengthCheck(1000)
    check.feed(content)
    assert check.exceeded is exceeded


def test_no_limit_checks_nothing() -> None:
    check = LineLengthCheck(0)
    check.feed(b"x" * 100_000)
    assert not check.exceeded

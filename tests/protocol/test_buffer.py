"""ReceiveBuffer: strict CRLF lines, the line cap, skip_line, linear scanning."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailwire.protocol.buffer import LineTooLong, ReceiveBuffer


def fed(*chunks: bytes) -> ReceiveBuffer:
    buf = ReceiveBuffer()
    for chunk in chunks:
        buf.feed(chunk)
    return buf


def lines_of(buf: ReceiveBuffer, limit: int = 1000) -> list[bytes]:
    out = []
    while (line := buf.take_line(limit)) is not None:
        out.append(line)
    return out


@pytest.mark.parametrize(
    ("chunks", "lines", "left"),
    [
        ([b"HELO a\r\n"], [b"HELO a"], b""),
        ([b"HELO a\r\nNOOP\r\n"], [b"HELO a", b"NOOP"], b""),
        ([b"HELO a\r"], [], b"HELO a\r"),
        ([b"HELO a\r", b"\n"], [b"HELO a"], b""),
        ([b"HE", b"LO", b" a\r", b"\nNO", b"OP\r\n"], [b"HELO a", b"NOOP"], b""),
        # Only CRLF ends a line: bare LF and bare CR stay inside it.
        ([b"a\nb\r\n"], [b"a\nb"], b""),
        ([b"a\rb\r\n"], [b"a\rb"], b""),
        ([b"a\n\rb\r\n"], [b"a\n\rb"], b""),
        ([b"a\r\r\n"], [b"a\r"], b""),
        ([b"\r\n\r\n"], [b"", b""], b""),
        ([b"line\n"], [], b"line\n"),
    ],
)
def test_lines_table(chunks: list[bytes], lines: list[bytes], left: bytes) -> None:
    buf = fed(*chunks)
    assert lines_of(buf) == lines
    assert buf.take_all() == left
    assert not buf


@given(st.lists(st.binary(max_size=30).filter(lambda b: b"\r\n" not in b and not b.endswith(b"\r")),
                max_size=10),
       st.data())
def test_any_chunking_gives_the_same_lines(lines: list[bytes], data: st.DataObject) -> None:
    wire = b"".join(line + b"\r\n" for line in lines)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=8)))
    buf = ReceiveBuffer()
    got: list[bytes] = []
    for start, end in zip([0, *cuts], [*cuts, len(wire)]):
        buf.feed(wire[start:end])
        got += lines_of(buf)
    assert got == lines
    assert len(buf) == 0


def test_limit_counts_the_crlf() -> None:
    # A line of exactly `limit` octets including CRLF is fine ...
    assert fed(b"x" * 8 + b"\r\n").take_line(10) == b"x" * 8
    # ... one more octet is not.
    with pytest.raises(LineTooLong):
        fed(b"x" * 9 + b"\r\n").take_line(10)


def test_incomplete_line_below_the_limit_waits() -> None:
    buf = fed(b"x" * 9)
    assert buf.take_line(10) is None
    # Ten octets and no CRLF among them: no line of at most ten octets can follow.
    buf.feed(b"x")
    with pytest.raises(LineTooLong):
        buf.take_line(10)


def test_trailing_cr_at_the_limit_may_still_complete() -> None:
    buf = fed(b"x" * 8 + b"\r")
    assert buf.take_line(10) is None
    buf.feed(b"\n")
    assert buf.take_line(10) == b"x" * 8


def test_too_long_line_stays_until_skipped() -> None:
    buf = fed(b"x" * 50)
    with pytest.raises(LineTooLong):
        buf.take_line(10)
    assert len(buf) == 50  # still there: the caller decides
    assert buf.skip_line() is False
    buf.feed(b"yyy\r\nNEXT\r\n")
    assert buf.skip_line() is True
    assert buf.take_line(10) == b"NEXT"


def test_skip_line_finds_a_crlf_beyond_the_limit_already_buffered() -> None:
    # Regression: take_line used to mark the whole buffer as searched even
    # though it only looked up to the limit, so skip_line then jumped over the
    # overlong line's CRLF *and* the next command.
    buf = fed(b"A" * 3000 + b"\r\nNEXT\r\nMORE\r\n")
    with pytest.raises(LineTooLong):
        buf.take_line(2048)
    assert buf.skip_line() is True
    assert lines_of(buf, 2048) == [b"NEXT", b"MORE"]


def test_skip_line_keeps_a_trailing_cr() -> None:
    buf = fed(b"garbage\r")
    assert buf.skip_line() is False
    buf.feed(b"\nNOOP\r\n")
    assert buf.skip_line() is True
    assert buf.take_line(100) == b"NOOP"


def test_skip_line_across_many_chunks() -> None:
    buf = ReceiveBuffer()
    for _ in range(100):
        buf.feed(b"z" * 1000)
        assert buf.skip_line() is False
        assert len(buf) == 0  # nothing of the skipped line is retained
    buf.feed(b"\r\nQUIT\r\n")
    assert buf.skip_line() is True
    assert buf.take_line(100) == b"QUIT"


def test_take_and_take_all() -> None:
    buf = fed(b"0123456789LINE\r\n")
    assert buf.take(4) == b"0123"
    assert buf.take(6) == b"456789"
    assert buf.take_line(100) == b"LINE"
    assert buf.take(10) == b""
    buf.feed(b"abc")
    assert buf.take(10) == b"abc"
    buf.feed(b"rest\r\n")
    assert buf.take_all() == b"rest\r\n"


def test_take_then_line_does_not_find_a_crlf_inside_taken_bytes() -> None:
    buf = fed(b"ab\r\ncd\r\n")
    assert buf.take(4) == b"ab\r\n"
    assert buf.take_line(100) == b"cd"


def test_clear_discards_everything() -> None:
    buf = fed(b"250 ok\r\n250 more\r\npartial")
    buf.clear()
    assert len(buf) == 0 and not buf
    assert buf.take_line(100) is None
    buf.feed(b"fresh\r\n")
    assert buf.take_line(100) == b"fresh"


def test_len_and_bool_follow_consumption() -> None:
    buf = fed(b"a\r\nbc")
    assert len(buf) == 5 and buf
    buf.take_line(100)
    assert len(buf) == 2
    buf.take_all()
    assert len(buf) == 0 and not buf


class CountingBytearray(bytearray):
    """A bytearray that adds up how many bytes ``find`` was asked to search."""

    scanned = 0

    def find(self, sub, start=None, end=None):  # type: ignore[no-untyped-def]
        lo = 0 if start is None else start
        hi = len(self) if end is None else min(end, len(self))
        CountingBytearray.scanned += max(hi - lo, 0)
        return super().find(sub, start, end)


def counting_buffer() -> ReceiveBuffer:
    buf = ReceiveBuffer()
    CountingBytearray.scanned = 0
    buf._data = CountingBytearray()
    return buf


def test_long_line_in_small_chunks_is_scanned_linearly() -> None:
    # A 1 MB line fed 4 KB at a time: without remembering where the last
    # search stopped this is ~256 rescans of a growing prefix (~128 MB).
    buf = counting_buffer()
    size, step = 1 << 20, 4096
    line = b"x" * size
    for i in range(0, size, step):
        buf.feed(line[i:i + step])
        assert buf.take_line(2 * size) is None
    buf.feed(b"\r\n")
    assert buf.take_line(2 * size) == line
    assert CountingBytearray.scanned <= 2 * size + 2 * (size // step) + 16


def test_many_short_lines_are_scanned_linearly_and_compacted() -> None:
    buf = counting_buffer()
    total = 0
    for i in range(20000):
        chunk = b"RCPT TO:<user%d@example.com>\r\n" % i
        total += len(chunk)
        buf.feed(chunk)
        assert buf.take_line(512) == chunk[:-2]
    assert CountingBytearray.scanned <= 2 * total
    # Consumed bytes are dropped from the underlying storage, not kept forever.
    assert len(buf._data) < 200

"""Replies: the Reply value itself, and how ClientConnection parses them off the wire.

Reply parsing is driven through a ClientConnection waiting for its greeting
(or for the replies to pipelined NOOPs), which is where replies are read in
the real client.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailwire.errors import MalformedReply, RemoteProtocolError
from mailwire.limits import Limits
from mailwire.protocol.client import ClientConnection
from mailwire.protocol.events import NEED_DATA, Closed, Noop
from mailwire.reply import EnhancedStatus, Reply

# --------------------------------------------------------------------------
# helpers


def ready_client(expected: int = 1, limits: Limits | None = None) -> ClientConnection:
    """A client past its greeting with ``expected`` NOOP replies outstanding."""
    client = ClientConnection(limits=limits) if limits else ClientConnection()
    client.receive_data(b"220 mx\r\n")
    assert isinstance(client.next_event(), Reply)
    for _ in range(expected):
        client.send(Noop())
    return client


def drain(client: ClientConnection) -> list[object]:
    events: list[object] = []
    while True:
        event = client.next_event()
        if event is NEED_DATA:
            return events
        events.append(event)
        if isinstance(event, Closed):
            return events


def parse_one(wire: bytes) -> Reply:
    client = ready_client()
    client.receive_data(wire)
    events = drain(client)
    assert len(events) == 1, events
    reply = events[0]
    assert isinstance(reply, Reply)
    return reply


# --------------------------------------------------------------------------
# EnhancedStatus


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("2.0.0", EnhancedStatus(2, 0, 0)),
        ("5.1.1 User unknown", EnhancedStatus(5, 1, 1)),
        ("4.7.123", EnhancedStatus(4, 7, 123)),
        ("5.999.999 x", EnhancedStatus(5, 999, 999)),
    ],
)
def test_enhanced_status_parse(text: str, status: EnhancedStatus) -> None:
    assert EnhancedStatus.parse(text) == status
    assert str(status) == text.split(" ")[0]


@pytest.mark.parametrize(
    "text",
    ["", "3.0.0", "1.2.3", "6.0.0", "5.1", "5.1.", "5.1000.1", "5.1.1000", "5.1.1x", "x5.1.1",
     "5.\u0661.1"],  # Arabic-Indic digit: RFC 3463 digits are ASCII
)
def test_enhanced_status_parse_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        EnhancedStatus.parse(text)


@pytest.mark.parametrize("parts", [(3, 0, 0), (1, 0, 0), (6, 0, 0), (2, 1000, 0), (2, 0, -1)])
def test_enhanced_status_refuses_out_of_range_parts(parts: tuple[int, int, int]) -> None:
    # Regression: EnhancedStatus(3, 0, 0) used to be accepted, so Reply.of(354,
    # EnhancedStatus(3, 0, 0)) put a code on the wire that no parser reads back.
    with pytest.raises(ValueError):
        EnhancedStatus(*parts)


# --------------------------------------------------------------------------
# Reply.of / text / to_bytes


def test_reply_of_puts_the_enhanced_code_on_every_line() -> None:
    reply = Reply.of(550, "5.1.1", "No such user\nTry again")
    assert reply.lines == ("5.1.1 No such user", "5.1.1 Try again")
    assert reply.enhanced == EnhancedStatus(5, 1, 1)
    assert reply.text == "No such user\nTry again"
    assert reply.to_bytes() == b"550-5.1.1 No such user\r\n550 5.1.1 Try again\r\n"
    assert str(reply) == "550 5.1.1 No such user Try again"  # one line, enhanced code kept


def test_reply_of_without_text_or_status() -> None:
    assert Reply.of(250, None).to_bytes() == b"250 \r\n"
    assert Reply.of(250, "2.0.0").to_bytes() == b"250 2.0.0\r\n"
    assert Reply.of(250, EnhancedStatus(2, 1, 0), "ok").lines == ("2.1.0 ok",)


@pytest.mark.parametrize(
    ("code", "enhanced"),
    [(199, None), (600, None), (0, None), (550, "4.1.1"), (250, "5.0.0"), (354, "2.0.0")],
)
def test_reply_of_refuses_bad_codes(code: int, enhanced: str | None) -> None:
    with pytest.raises(ValueError):
        Reply.of(code, enhanced, "x")


@pytest.mark.parametrize(
    "text",
    [
        "ok\r\n250 forged",
        "ok\n250 forged",
        "ok\r250 forged",
        "ok\r\n\r\n250 forged",
        "ok\n\r250 forged",
    ],
)
def test_line_breaks_in_text_never_forge_a_reply(text: str) -> None:
    reply = Reply.of(550, "5.7.1", text)
    wire = reply.to_bytes()
    # Every CRLF-terminated line on the wire carries our code; only the last
    # has a space after it, so a client reads exactly one reply.
    lines = wire.split(b"\r\n")
    assert lines[-1] == b""
    assert all(line.startswith(b"550-") for line in lines[:-2])
    assert lines[-2].startswith(b"550 ")
    assert b"\r" not in wire.replace(b"\r\n", b"") and b"\n" not in wire.replace(b"\r\n", b"")
    parsed = parse_one(wire)
    assert parsed == reply
    assert parsed.text.split("\n")[-1] == "250 forged"


def test_other_controls_in_text_are_replaced() -> None:
    reply = Reply.of(250, None, "a\x00b\x1bc\x7fd\te")
    assert reply.lines == ("a?b?c?d\te",)


@pytest.mark.parametrize(("wire", "shown"), [
    (b"550 5.1.1 No such user\r\n", "550 5.1.1 No such user"),
    (b"250 OK\r\n", "250 OK"),  # no enhanced code: none is made up
    (b"421\r\n", "421"),
    (b"250 2.0.0\r\n", "250 2.0.0"),
    # A 4xx reply with a 5.x.x code: that is no enhanced code of this reply, only text.
    (b"450 5.1.1 odd\r\n", "450 5.1.1 odd"),
    # Gmail's multi-line refusal: the code once, the lines' text joined on one line.
    (b"550-5.1.1 The email account that you tried to reach does not exist.\r\n"
     b"550-5.1.1 Please try double-checking\r\n550 5.1.1 the address.\r\n",
     "550 5.1.1 The email account that you tried to reach does not exist. Please try double-checking the address."),
    # The server's text never breaks the line or drives a terminal, and bytes
    # that are not UTF-8 print.
    (b"554 5.7.1 spam\x1b[2J\tgone\x7f \xe9t\xe9\r\n", "554 5.7.1 spam?[2J\tgone? ?t?"),
])
def test_str_is_code_enhanced_code_and_text_on_one_line(wire: bytes, shown: str) -> None:
    (reply,) = drain(_greeted(wire))
    assert str(reply) == shown
    assert str(reply).encode("utf-8").decode("utf-8") == shown  # a surrogate would raise here


def _greeted(wire: bytes) -> ClientConnection:
    client = ready_client()
    client.receive_data(wire)
    return client


def test_reply_predicates() -> None:
    assert Reply(250).is_positive and not Reply(250).is_intermediate
    assert Reply(354).is_positive and Reply(354).is_intermediate
    assert Reply(421).is_transient and not Reply(421).is_positive
    assert Reply(554).is_permanent and not Reply(554).is_transient


def test_message_is_what_smtplib_returns() -> None:
    reply = Reply(250, ("mx.example.com", "PIPELINING", "SIZE 100"))
    assert reply.message == b"mx.example.com\nPIPELINING\nSIZE 100"


@pytest.mark.parametrize(
    ("code", "lines", "enhanced", "text"),
    [
        (250, ("2.1.0 Ok",), EnhancedStatus(2, 1, 0), "Ok"),
        # The class digit must match the reply code, or it is just text.
        (250, ("5.1.0 Ok",), None, "5.1.0 Ok"),
        (550, ("2.1.0 Ok",), None, "2.1.0 Ok"),
        # Not followed by a space: not a status code.
        (250, ("2.1.0Ok",), None, "2.1.0Ok"),
        (250, ("2.1.0",), EnhancedStatus(2, 1, 0), ""),
        # Only the first line decides `enhanced`; text strips codes per line.
        (550, ("5.1.1 a", "5.1.1 b"), EnhancedStatus(5, 1, 1), "a\nb"),
        (550, ("a", "5.1.1 b"), None, "a\nb"),
        (250, (), None, ""),
    ],
)
def test_from_lines(code: int, lines: tuple[str, ...], enhanced: EnhancedStatus | None, text: str) -> None:
    reply = Reply.from_lines(code, lines)
    assert reply.enhanced == enhanced
    assert reply.text == text
    assert reply.lines == (lines or ("",))


# Text without surrogates (a backend's str) and codes in range.
codes = st.integers(200, 599)
texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=60)


@st.composite
def built_replies(draw: st.DrawFn) -> tuple[Reply, bool]:
    code = draw(codes)
    use_status = code // 100 != 3 and draw(st.booleans())
    status = None
    if use_status:
        status = EnhancedStatus(code // 100, draw(st.integers(0, 999)), draw(st.integers(0, 999)))
    return Reply.of(code, status, draw(texts)), use_status


@given(built_replies())
def test_of_to_bytes_parse_round_trip(built: tuple[Reply, bool]) -> None:
    reply, had_status = built
    wire = reply.to_bytes()
    assert wire.endswith(b"\r\n")
    assert wire.count(b"\r\n") == len(reply.lines)
    parsed = parse_one(wire)
    assert parsed.code == reply.code
    assert parsed.lines == reply.lines
    assert parsed == Reply.from_lines(reply.code, reply.lines)
    assert parsed.to_bytes() == wire
    if had_status:
        assert parsed.enhanced == reply.enhanced
        assert parsed.text == reply.text


# Wire lines: arbitrary bytes that do not contain CRLF (bare CR/LF allowed).
wire_text = st.binary(max_size=40).filter(lambda b: b"\r\n" not in b and not b.endswith(b"\r"))


@given(codes, st.lists(wire_text, min_size=1, max_size=6))
def test_wire_parse_to_bytes_round_trip(code: int, lines: list[bytes]) -> None:
    wire = b"".join(
        b"%d%s%s\r\n" % (code, b" " if i == len(lines) - 1 else b"-", line)
        for i, line in enumerate(lines)
    )
    parsed = parse_one(wire)
    assert parsed.code == code
    assert parsed.to_bytes() == wire
    assert parsed == Reply.from_lines(code, parsed.lines)


# --------------------------------------------------------------------------
# parsing in ClientConnection: table


@pytest.mark.parametrize(
    ("wire", "code", "lines", "enhanced"),
    [
        (b"250 ok\r\n", 250, ("ok",), None),
        (b"250\r\n", 250, ("",), None),
        (b"250 \r\n", 250, ("",), None),
        (b"250-first\r\n250-second\r\n250 last\r\n", 250, ("first", "second", "last"), None),
        (b"550 5.1.1 No such user\r\n", 550, ("5.1.1 No such user",), EnhancedStatus(5, 1, 1)),
        (b"451-4.3.0 a\r\n451 4.3.0 b\r\n", 451, ("4.3.0 a", "4.3.0 b"), EnhancedStatus(4, 3, 0)),
        # Class digit disagrees with the code: not split out.
        (b"250 5.1.1 odd\r\n", 250, ("5.1.1 odd",), None),
        (b"550 2.0.0 odd\r\n", 550, ("2.0.0 odd",), None),
        # Text is kept exactly, trailing spaces and tabs included.
        (b"250 ok  \t\r\n", 250, ("ok  \t",), None),
        # A bare LF or CR is not a line end.
        (b"250 a\nb\r\n", 250, ("a\nb",), None),
        # Non-UTF-8 survives (surrogateescape).
        (b"250 caf\xe9\r\n", 250, ("caf\udce9",), None),
        (b"250 caf\xc3\xa9\r\n", 250, ("caf\u00e9",), None),
        (b"299 x\r\n", 299, ("x",), None),
        (b"599 x\r\n", 599, ("x",), None),
    ],
)
def test_reply_parse_table(wire: bytes, code: int, lines: tuple[str, ...], enhanced: EnhancedStatus | None) -> None:
    reply = parse_one(wire)
    assert (reply.code, reply.lines, reply.enhanced) == (code, lines, enhanced)
    if wire[3:4] in (b" ", b"-"):
        assert reply.to_bytes() == wire


@pytest.mark.parametrize(
    "wire",
    [
        b"abc hello\r\n",
        b"\r\n",
        b"25\r\n",
        b"2x0 ok\r\n",
        b"199 informational\r\n",
        b"100 continue\r\n",
        b"600 beyond\r\n",
        b"000 zero\r\n",
        b"2500 four digits\r\n",
        b"250_ok\r\n",
        b"250\tok\r\n",
        b" 250 ok\r\n",
        b"+250 ok\r\n",
        b"\xd9\xa2\xd9\xa5\xd9\xa0 arabic digits\r\n",
    ],
)
def test_garbage_reply_lines(wire: bytes) -> None:
    client = ready_client()
    client.receive_data(wire)
    with pytest.raises(RemoteProtocolError, match="malformed reply line"):
        client.next_event()
    assert client.state.name == "CLOSED"


@pytest.mark.parametrize(
    "wire",
    [b"250-a\r\n550 b\r\n", b"250-a\r\n251-b\r\n250 c\r\n", b"550-a\r\n551 b\r\n"],
)
def test_inconsistent_codes_across_lines(wire: bytes) -> None:
    client = ready_client()
    client.receive_data(wire)
    with pytest.raises(RemoteProtocolError, match="disagree on the code"):
        client.next_event()


@pytest.mark.parametrize(
    "wire, code, lines",
    [
        (b"199 no hello for you!\r\n", 199, ("no hello for you!",)),
        (b"600 out of range\r\n", 600, ("out of range",)),
        (b"2x0 odd code\r\n", None, ("odd code",)),
        (b"2500 four digits\r\n", 250, (" four digits",)),
        (b"25\r\n", None, ("",)),
        (b"250-a\r\n251 b\r\n", 251, ("a", "b")),
        (b"250-a\r\n250-b\r\nxyz c\r\n", None, ("a", "b", "c")),
        (b"250-a\r\n099 c\r\n", 99, ("a", "c")),
    ],
)
def test_a_malformed_reply_carries_what_could_be_read(wire: bytes, code: int | None, lines: tuple[str, ...]) -> None:
    # RFC 5321 4.2.1: an out-of-range code is fatal, but a caller reporting
    # the reply (smtplib's SMTPConnectError for a "199" greeting) needs it.
    client = ready_client()
    client.receive_data(wire)
    with pytest.raises(MalformedReply) as info:
        client.next_event()
    assert (info.value.code, info.value.lines) == (code, lines)
    assert client.state.name == "CLOSED"


def test_error_is_sticky() -> None:
    client = ready_client()
    client.receive_data(b"garbage\r\n250 fine\r\n")
    with pytest.raises(RemoteProtocolError) as first:
        client.next_event()
    with pytest.raises(RemoteProtocolError) as second:
        client.next_event()
    assert second.value is first.value


# --------------------------------------------------------------------------
# caps on reply size


def test_overlong_reply_line_fails_without_a_crlf() -> None:
    client = ready_client()
    client.receive_data(b"250 " + b"x" * 8192)
    with pytest.raises(RemoteProtocolError, match="reply line longer than 2048 octets"):
        client.next_event()


def test_overlong_reply_line_fails_even_with_a_crlf() -> None:
    client = ready_client()
    client.receive_data(b"250 " + b"x" * 8192 + b"\r\n")
    with pytest.raises(RemoteProtocolError, match="reply line longer than 2048 octets"):
        client.next_event()


def test_overlong_reply_line_fails_when_fed_slowly() -> None:
    # The cap applies as the line grows, not only once a CRLF shows up.
    client = ready_client()
    client.receive_data(b"250 ")
    with pytest.raises(RemoteProtocolError, match="longer than 2048"):
        for _ in range(100):
            client.receive_data(b"x" * 100)
            assert client.next_event() is NEED_DATA
    assert len(client._buffer) <= 2048 + 100


def test_reply_line_at_the_cap_is_accepted() -> None:
    text = b"x" * (2048 - 6)
    reply = parse_one(b"250 " + text + b"\r\n")
    assert reply.lines == (text.decode(),)


def test_reply_line_cap_is_configurable() -> None:
    client = ready_client(limits=Limits(reply_line=16))
    client.receive_data(b"250 0123456789ab\r\n")
    with pytest.raises(RemoteProtocolError, match="longer than 16"):
        client.next_event()


def test_endless_continuation_lines_hit_the_total_cap() -> None:
    client = ready_client()
    with pytest.raises(RemoteProtocolError, match="reply longer than 65536 octets"):
        for _ in range(10000):
            client.receive_data(b"250-" + b"y" * 60 + b"\r\n")
            assert client.next_event() is NEED_DATA
    assert client.state.name == "CLOSED"


def test_total_cap_is_per_reply() -> None:
    # Many replies that are each under the cap are fine together.
    client = ready_client(expected=100, limits=Limits(reply_total=1000))
    client.receive_data((b"250-" + b"z" * 100 + b"\r\n250 end\r\n") * 100)
    events = drain(client)
    assert len(events) == 100 and all(isinstance(e, Reply) for e in events)


# --------------------------------------------------------------------------
# the peer closing


def test_clean_close_gives_closed() -> None:
    client = ready_client()
    client.receive_data(b"250 ok\r\n")
    client.receive_data(b"")
    events = drain(client)
    assert isinstance(events[0], Reply) and isinstance(events[1], Closed)
    assert client.next_event() == Closed()


@pytest.mark.parametrize("partial", [b"25", b"250-first line\r\n", b"250-a\r\n250 b", b"250 ok\r"])
def test_close_mid_reply(partial: bytes) -> None:
    client = ready_client()
    client.receive_data(partial)
    assert client.next_event() is NEED_DATA
    client.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="in the middle of a reply"):
        client.next_event()


# --------------------------------------------------------------------------
# chunking


replies_wire = st.lists(
    st.tuples(codes, st.lists(wire_text, min_size=1, max_size=4)), min_size=1, max_size=6
).map(lambda rs: [
    b"".join(b"%d%s%s\r\n" % (code, b" " if i == len(lines) - 1 else b"-", line)
             for i, line in enumerate(lines))
    for code, lines in rs
])


@given(replies_wire, st.data())
def test_any_chunking_gives_identical_replies(replies: list[bytes], data: st.DataObject) -> None:
    wire = b"".join(replies)
    whole = ready_client(expected=len(replies))
    whole.receive_data(wire)
    expected = drain(whole)
    assert len(expected) == len(replies)

    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=12)))
    chunked = ready_client(expected=len(replies))
    got: list[object] = []
    for start, end in zip([0, *cuts], [*cuts, len(wire)]):
        if end > start:  # b"" would mean the server closed
            chunked.receive_data(wire[start:end])
        got += drain(chunked)
    assert got == expected
    assert [r.to_bytes() for r in got] == replies  # type: ignore[attr-defined]
    assert chunked.pending_replies == 0


@pytest.mark.parametrize(("text", "code", "enhanced", "lines"), [
    ("250 OK", 250, None, ("OK",)),
    ("550 5.1.1 No such user", 550, "5.1.1", ("5.1.1 No such user",)),
    ("550-first\r\n550 second", 550, None, ("first", "second")),
    ("421", 421, None, ("",)),
])
def test_reply_parse_from_text(text: str, code: int, enhanced: str | None, lines: tuple[str, ...]) -> None:
    reply = Reply.parse(text)
    assert reply.code == code and reply.lines == lines
    assert (str(reply.enhanced) if reply.enhanced else None) == enhanced


@pytest.mark.parametrize("text", ["", "hello", "199 too low", "250-a\r\n550 b", "25O x", "250x"])
def test_reply_parse_refuses_what_is_not_a_reply(text: str) -> None:
    with pytest.raises(ValueError):
        Reply.parse(text)


def test_wire_never_lets_a_line_break_forge_a_second_reply() -> None:
    forged = Reply(550, ("no such user\r\n250 2.0.0 ok, delivered", "bare\nlf and bare\rcr"))
    assert forged.to_bytes().count(b"\r\n") == 3  # the exact form keeps them
    assert forged.wire == (
        b"550-no such user\r\n550-250 2.0.0 ok, delivered\r\n550-bare\r\n550-lf and bare\r\n550 cr\r\n"
    )
    plain = Reply.of(250, "2.1.0", "Sender OK")
    assert plain.wire == plain.to_bytes() == b"250 2.1.0 Sender OK\r\n"
    assert plain.wire is plain.wire  # computed once
    assert plain == Reply(250, ("2.1.0 Sender OK",)) and hash(plain) == hash(Reply(250, ("2.1.0 Sender OK",)))

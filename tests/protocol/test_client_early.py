"""``ClientConnection.content_allowed``: the one judge of whether content may
follow a group of replies, parsed or still unread; unread, it judges the bytes
of the group, before they are parsed (``lookahead.judge``), and a driver sends
the content formatted ahead (``send(prepared)``) at once.

The promise is narrow and checked both ways: content goes only when parsing
the same bytes and applying the RFC 2920 rule (all replies in, no 421, DATA
got 354, some RCPT accepted) would have let it go too, and the connection is
left in the very state ``next_event`` + ``send`` would leave; and for a group
of plain one-line replies it never holds back what the rule allows.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from mailwire.errors import LocalProtocolError
from mailwire.limits import Limits
from mailwire.protocol.client import ClientConnection, PreparedWrite, prepare_write
from mailwire.protocol.events import Data, EndOfData, Lhlo, Mail, MessageData, Noop, Rcpt, Rset
from mailwire.protocol.state import ClientState
from mailwire.reply import Reply

S = ClientState


def replies(client: ClientConnection, wire: bytes = b"") -> list[Reply]:
    """Feed ``wire`` and take every complete reply."""
    if wire:
        client.receive_data(wire)
    out = []
    while isinstance(event := client.next_event(), Reply):
        out.append(event)
    return out


def send_when_allowed(client: ClientConnection, prepared: PreparedWrite) -> bytes | None:
    """What a driver does with content formatted ahead: send it once the
    replies allow it."""
    return client.send(prepared) if client.content_allowed() else None


def greeted() -> ClientConnection:
    client = ClientConnection()
    replies(client, b"220 mx ESMTP\r\n")
    return client
NEXT = b"Subject: next\r\n\r\n.leading dot\r\n"


def _next_write(rcpts: int) -> PreparedWrite:
    """The next message's content and end, then another envelope and DATA."""
    return prepare_write([
        MessageData(NEXT), EndOfData(), Mail("a@x.org"),
        *[Rcpt(f"r{i}@x.org") for i in range(rcpts)], Data(),
    ])


def in_group(*, rcpts: int = 1, lmtp: bool = False, before: int = 1, limits: Limits | None = None) -> ClientConnection:
    """A connection that sent a message's end with the next envelope and DATA
    (``rcpts`` RCPTs) and awaits that group's replies. Under LMTP the message
    ended had ``before`` recipients accepted, so its end gets as many replies."""
    client = ClientConnection(lmtp=lmtp, limits=limits) if limits else ClientConnection(lmtp=lmtp)
    replies(client, b"220 mx ESMTP\r\n")
    if lmtp:
        client.send(Lhlo("c.example"))
        replies(client, b"250 PIPELINING\r\n")
    client.send(Mail("a@x.org"))
    for i in range(before if lmtp else 1):
        client.send(Rcpt(f"p{i}@x.org"))
    client.send(Data())
    replies(client, b"250 ok\r\n" + b"250 ok\r\n" * (before if lmtp else 1) + b"354 go\r\n")
    assert client.state is S.CONTENT
    client.send(prepare_write([MessageData(b"first\r\n"), EndOfData(), Mail("a@x.org"),
                               *[Rcpt(f"r{i}@x.org") for i in range(rcpts)], Data()]))
    assert client.state is S.DATA_WAIT
    return client


GROUP = b"250 2.0.0 queued\r\n250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go ahead\r\n"


def _snapshot(client: ClientConnection) -> tuple[object, ...]:
    return (client.state, client.pending_replies, list(client.pending), client.pending.accepted)


# --------------------------------------------------------------------------
# the cases, one by one


def test_a_plain_group_lets_the_content_go_before_any_reply_is_parsed() -> None:
    early, late = in_group(), in_group()
    prepared = _next_write(1)
    early.receive_data(GROUP)
    assert send_when_allowed(early, prepared) == prepared.data
    # As if the four replies had been taken and the write sent after them:
    late.receive_data(GROUP)
    taken_late = replies(late)
    assert late.send(prepared) == prepared.data
    taken_early = replies(early)
    assert taken_early == taken_late and [r.code for r in taken_early] == [250, 250, 250, 354]
    assert _snapshot(early) == _snapshot(late)
    # ... and the next group moves both alike.
    for client in (early, late):
        client.receive_data(GROUP)
    assert replies(early) == replies(late) and early.state is late.state is S.CONTENT


def test_only_part_of_the_group_is_not_enough() -> None:
    client = in_group()
    prepared = _next_write(1)
    client.receive_data(GROUP[:-5])
    assert send_when_allowed(client, prepared) is None
    assert [r.code for r in replies(client)] == [250, 250, 250]  # taken meanwhile: fine
    client.receive_data(GROUP[-5:])
    assert send_when_allowed(client, prepared) == prepared.data
    assert [r.code for r in replies(client)] == [354]
    assert client.state is S.DATA_WAIT and client.pending_replies == 4


def test_no_recipient_accepted_means_no_content() -> None:
    client = in_group(rcpts=2)
    client.receive_data(b"250 queued\r\n250 ok\r\n550 no\r\n450 later\r\n354 go\r\n")
    before = _snapshot(client)
    assert send_when_allowed(client, _next_write(2)) is None
    assert _snapshot(client) == before


def test_one_recipient_of_several_is_enough() -> None:
    client = in_group(rcpts=3)
    client.receive_data(b"250 queued\r\n250 ok\r\n550 no\r\n251 forwarded\r\n450 later\r\n354 go\r\n")
    assert send_when_allowed(client, _next_write(3)) is not None


def test_a_refused_data_or_a_421_holds_the_content_back() -> None:
    for group in (
        b"250 queued\r\n250 ok\r\n250 ok\r\n554 no data\r\n",
        b"250 queued\r\n421 closing\r\n250 ok\r\n354 go\r\n",
        b"421 4.3.0 bye\r\n",
    ):
        client = in_group()
        client.receive_data(group)
        assert send_when_allowed(client, _next_write(1)) is None, group


def test_a_multi_line_reply_is_left_to_next_event() -> None:
    client = in_group()
    client.receive_data(b"250 queued\r\n250-sender\r\n250 ok\r\n250 ok\r\n354 go\r\n")
    assert send_when_allowed(client, _next_write(1)) is None
    assert [r.code for r in replies(client)] == [250, 250, 250, 354]
    assert client.state is S.CONTENT  # the driver judges and sends as usual
    assert client.send(_next_write(1))


def test_malformed_or_overlong_lines_are_left_to_next_event() -> None:
    for group, limits in (
        (b"250 queued\r\n25x ok\r\n250 ok\r\n354 go\r\n", None),
        (b"250 queued\r\n250 " + b"o" * 200 + b"\r\n250 ok\r\n354 go\r\n", Limits(reply_line=100)),
    ):
        client = in_group(limits=limits)
        client.receive_data(group)
        assert send_when_allowed(client, _next_write(1)) is None


def test_a_group_longer_than_one_line_may_be_is_judged_line_by_line() -> None:
    # 40 octets a line at most: every line here fits, the group does not.
    client = in_group(limits=Limits(reply_line=40))
    client.receive_data(GROUP)
    assert len(GROUP) > 40
    assert send_when_allowed(client, _next_write(1)) is not None


def test_the_shape_of_a_prepared_group_is_forgotten_once_commands_go_one_by_one() -> None:
    # Four replies pending again, as for the prepared group, but without any
    # RCPT: all 2xx and a 354 must not pass for "a recipient was accepted".
    client = in_group()
    replies(client, b"250 queued\r\n250 ok\r\n250 ok\r\n554 no\r\n")
    assert client.state is S.READY
    for event in (Rset(), Mail("a@x.org"), Noop(), Data()):
        client.send(event)
    client.receive_data(b"250 reset\r\n250 ok\r\n250 noop\r\n354 go\r\n")
    assert send_when_allowed(client, _next_write(1)) is None


def test_replies_already_parsed_are_judged_too() -> None:
    for group, allowed in (
        (GROUP, True),
        (b"250 queued\r\n250 ok\r\n550 no\r\n354 go\r\n", False),  # nobody to deliver to
        (b"250 queued\r\n421 closing\r\n250 ok\r\n354 go\r\n", False),  # the server is leaving
    ):
        client = in_group()
        replies(client, group)
        assert client.state is S.CONTENT
        sent = send_when_allowed(client, _next_write(1))
        assert (sent is not None) == allowed, group
        assert client.state is (S.DATA_WAIT if allowed else S.CONTENT)


def test_content_allowed_but_not_what_was_prepared_is_an_error() -> None:
    client = in_group()
    replies(client, GROUP)
    with pytest.raises(LocalProtocolError):
        send_when_allowed(client, prepare_write([Mail("a@x.org")]))
    assert client.state is S.CONTENT  # nothing changed: the driver must not go on


def test_only_from_a_data_wait_and_only_content() -> None:
    client = greeted()
    client.receive_data(b"250 ok\r\n")
    assert send_when_allowed(client, _next_write(1)) is None  # nothing asked yet
    waiting = in_group()
    waiting.receive_data(GROUP)
    assert waiting.content_allowed()  # the group allows content, and only content:
    with pytest.raises(LocalProtocolError):
        waiting.send(prepare_write([Mail("a@x.org")]))
    assert waiting.pending_replies == 4  # nothing was sent


def test_not_after_the_server_closed() -> None:
    client = in_group()
    client.receive_data(GROUP)
    client.receive_data(b"")
    assert send_when_allowed(client, _next_write(1)) is None


def test_lmtp_waits_for_a_reply_per_recipient_of_the_message_ended() -> None:
    client = in_group(lmtp=True, before=2)
    prepared = _next_write(1)
    client.receive_data(b"250 r0 delivered\r\n250 r1 delivered\r\n250 ok\r\n250 ok\r\n")
    assert send_when_allowed(client, prepared) is None  # DATA's reply is still to come
    client.receive_data(b"354 go\r\n")
    assert send_when_allowed(client, prepared) == prepared.data
    assert [r.code for r in replies(client)] == [250, 250, 250, 250, 354]
    assert client.state is S.DATA_WAIT and client.pending_replies == 4


# --------------------------------------------------------------------------
# the promise, over every group


def _allowed(got: list[Reply], dot_replies: int, rcpts: int) -> bool:
    """The rule of RFC 2920 3.1 on parsed replies."""
    count = dot_replies + 1 + rcpts + 1
    if len(got) < count or any(r.code == 421 for r in got[:count]):
        return False
    group = got[:count]
    return group[-1].code == 354 and any(r.code < 400 for r in group[dot_replies + 1:-1])


_LINE_CODES = {
    "dot": [250, 451, 554],
    "mail": [250, 451, 550, 421],
    "rcpt": [250, 251, 450, 550, 421],
    "data": [354, 503, 554, 421],
}


def _reply_wire(code: int, lines: int) -> bytes:
    return b"".join(b"%d%s line %d\r\n" % (code, b"-" if i < lines - 1 else b" ", i) for i in range(lines))


@st.composite
def groups(draw: st.DrawFn) -> tuple[bool, int, int, list[tuple[int, int]], list[int]]:
    lmtp = draw(st.booleans())
    before = draw(st.integers(1, 3)) if lmtp else 1
    rcpts = draw(st.integers(1, 3))
    kinds = ["dot"] * before + ["mail"] + ["rcpt"] * rcpts + ["data"]
    multi = st.sampled_from([1, 1, 1, 1, 2])
    group = [(draw(st.sampled_from(_LINE_CODES[k])), draw(multi)) for k in kinds]
    size = sum(len(_reply_wire(c, n)) for c, n in group)
    cuts = sorted(draw(st.lists(st.integers(0, size), max_size=4)))
    return lmtp, before, rcpts, group, cuts


@settings(max_examples=400, deadline=None)
@given(groups())
def test_early_sends_exactly_when_parsing_first_would(case: tuple[bool, int, int, list[tuple[int, int]], list[int]]) -> None:
    lmtp, before, rcpts, group, cuts = case
    wire = b"".join(_reply_wire(code, lines) for code, lines in group)
    early, late = in_group(rcpts=rcpts, lmtp=lmtp, before=before), in_group(rcpts=rcpts, lmtp=lmtp, before=before)
    prepared = _next_write(rcpts)

    sent = None
    for start, end in zip([0, *cuts], [*cuts, len(wire)]):
        if start == end:
            continue  # b"" would say the server closed
        early.receive_data(wire[start:end])
        if sent is None:
            sent = send_when_allowed(early, prepared)
    taken_early = replies(early)

    late.receive_data(wire)
    taken_late = replies(late)
    allowed = _allowed(taken_late, before, rcpts)

    assert taken_early == taken_late  # looking ahead changes no reply
    if sent is not None:
        assert allowed and sent == prepared.data
        late.send(prepared)
        assert _snapshot(early) == _snapshot(late)
    else:
        if all(lines == 1 for _, lines in group):
            assert not allowed  # plain one-line groups are never held back
        # Once parsed, the same judge gives the same answer as the rule.
        assert (send_when_allowed(early, prepared) is not None) == allowed

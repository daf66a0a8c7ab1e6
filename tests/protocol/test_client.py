"""ClientConnection: which sends are legal when, pipelining, and the sub-dialogs.

Everything is bytes in, bytes out: a scripted server is just the reply bytes
we feed to ``receive_data``.
"""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest

from mailwire.errors import LocalProtocolError, RemoteProtocolError
from mailwire.protocol.client import ClientConnection, prepare_write
from mailwire.protocol.events import (
    NEED_DATA, Auth, AuthResponse, Bdat, Closed, Data, Ehlo, EndOfData, Expn, Helo, Help,
    Lhlo, Mail, MessageData, Noop, Quit, RawCommand, Rcpt, Rset, StartTLS, Vrfy,
)
from mailwire.protocol.state import ClientState
from mailwire.reply import Reply

S = ClientState
EHLO_REPLY = b"250-mx.example.com\r\n250-PIPELINING\r\n250-STARTTLS\r\n250-CHUNKING\r\n250 SIZE 1000\r\n"


def replies(client: ClientConnection, wire: bytes = b"") -> list[Reply]:
    """Feed ``wire`` and take every complete reply."""
    if wire:
        client.receive_data(wire)
    out = []
    while (event := client.next_event()) is not NEED_DATA:
        assert isinstance(event, Reply), event
        out.append(event)
    return out


def greeted(*, lmtp: bool = False) -> ClientConnection:
    client = ClientConnection(lmtp=lmtp)
    assert client.state is S.GREETING and client.pending_replies == 1
    [greeting] = replies(client, b"220 mx.example.com ESMTP\r\n")
    assert greeting.code == 220
    assert client.state is S.READY and client.pending_replies == 0
    return client


def in_content() -> ClientConnection:
    client = greeted()
    client.send(Mail("a@example.com"))
    client.send(Rcpt("b@example.com"))
    client.send(Data())
    replies(client, b"250 ok\r\n250 ok\r\n354 go ahead\r\n")
    assert client.state is S.CONTENT
    return client


# --------------------------------------------------------------------------
# a whole transaction, pipelined


def test_pipelined_transaction() -> None:
    client = greeted()
    wire = b"".join(client.send(e) for e in (Ehlo("client.example"),))
    assert wire == b"EHLO client.example\r\n"
    assert [r.code for r in replies(client, EHLO_REPLY)] == [250]
    assert client.capabilities is not None and client.capabilities.pipelining

    wire = b"".join(client.send(e) for e in (
        Mail("a@example.com"), Rcpt("b@example.com"), Rcpt("c@example.com"), Data(),
    ))
    assert wire == (
        b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n"
        b"RCPT TO:<c@example.com>\r\nDATA\r\n"
    )
    assert client.pending_replies == 4
    assert client.state is S.DATA_WAIT

    # Replies one at a time: the state moves only on the reply to DATA.
    assert [r.code for r in replies(client, b"250 2.1.0 ok\r\n")] == [250]
    assert client.state is S.DATA_WAIT
    assert [r.code for r in replies(client, b"250 ok\r\n550 5.1.1 no\r\n")] == [250, 550]
    assert client.state is S.DATA_WAIT
    assert [r.code for r in replies(client, b"354 go\r\n")] == [354]
    assert client.state is S.CONTENT and client.pending_replies == 0

    assert client.send(MessageData(b"Subject: hi\n\n.dot\n")) == b"Subject: hi\r\n\r\n..dot\r\n"
    assert client.send(EndOfData()) == b".\r\n"
    assert client.state is S.READY and client.pending_replies == 1
    assert [r.code for r in replies(client, b"250 queued\r\n")] == [250]

    assert client.send(Quit()) == b"QUIT\r\n"
    assert client.state is S.QUIT_SENT
    assert [r.code for r in replies(client, b"221 bye\r\n")] == [221]
    assert client.state is S.CLOSED
    client.receive_data(b"")
    assert client.next_event() == Closed()


def test_replies_arriving_all_at_once() -> None:
    client = greeted()
    for event in (Mail("a@x.org"), Rcpt("b@x.org"), Data()):
        client.send(event)
    got = replies(client, b"250 ok\r\n250 ok\r\n354 go\r\n")
    assert [r.code for r in got] == [250, 250, 354]
    assert client.state is S.CONTENT


def test_data_refused_returns_to_ready() -> None:
    client = greeted()
    for event in (Mail("a@x.org"), Rcpt("b@x.org"), Data()):
        client.send(event)
    replies(client, b"250 ok\r\n550 no\r\n554 no valid recipients\r\n")
    assert client.state is S.READY
    with pytest.raises(LocalProtocolError):
        client.send(MessageData(b"x"))
    client.send(Rset())


def test_empty_message_sends_only_the_terminator() -> None:
    # Regression: EndOfData straight after 354 used to trip an assert.
    client = in_content()
    assert client.send(EndOfData()) == b".\r\n"
    assert client.state is S.READY


def test_last_line_without_newline_gets_a_crlf_before_the_dot() -> None:
    client = in_content()
    assert client.send(MessageData(b"no newline")) == b"no newline"
    assert client.send(EndOfData()) == b"\r\n.\r\n"


def test_each_message_gets_a_fresh_stuffer() -> None:
    client = in_content()
    client.send(MessageData(b"unterminated"))
    client.send(EndOfData())
    client.send(Mail("a@x.org"))
    client.send(Rcpt("b@x.org"))
    client.send(Data())
    replies(client, b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n")
    # A new message starts at a line start: a leading dot is doubled.
    assert client.send(MessageData(b".x\r\n")) == b"..x\r\n"


def test_greeting_refusal_and_quit_before_greeting() -> None:
    client = ClientConnection()
    assert client.send(Quit()) == b"QUIT\r\n"
    assert client.pending_replies == 2
    assert [r.code for r in replies(client, b"554 go away\r\n221 bye\r\n")] == [554, 221]
    assert client.state is S.CLOSED


def test_helo_sets_minimal_capabilities() -> None:
    client = greeted()
    client.send(Helo("client.example"))
    replies(client, b"250 mx.example.com\r\n")
    assert client.capabilities is not None
    assert client.capabilities.greeting == "mx.example.com"
    assert client.capabilities.features == {}


def test_refused_ehlo_leaves_capabilities_alone() -> None:
    client = greeted()
    client.send(Ehlo("client.example"))
    replies(client, b"502 not implemented\r\n")
    assert client.capabilities is None


def test_unsolicited_reply_is_returned_without_changing_state() -> None:
    client = greeted()
    [reply] = replies(client, b"421 4.4.2 timeout\r\n")
    assert reply.code == 421
    assert client.state is S.READY and client.pending_replies == 0
    assert client.closing  # the drivers stop reading here


def test_a_421_in_a_pipelined_group_says_the_server_is_closing() -> None:
    client = greeted()
    for event in (Mail("a@example.com"), Rcpt("b@example.com"), Data()):
        client.send(event)
    [ok] = replies(client, b"250 ok\r\n")
    assert ok.code == 250 and not client.closing
    [bye] = replies(client, b"421 4.3.2 shutting down\r\n")
    assert bye.code == 421 and client.closing


# --------------------------------------------------------------------------
# illegal sends: table of (how to get there, what to send)


def _greeting_wait() -> ClientConnection:
    return ClientConnection()


def _data_wait() -> ClientConnection:
    client = greeted()
    client.send(Data())
    return client


def _starttls_wait() -> ClientConnection:
    client = greeted()
    client.send(StartTLS())
    return client


def _tls_handshake() -> ClientConnection:
    client = _starttls_wait()
    replies(client, b"220 go ahead\r\n")
    return client


def _auth_wait() -> ClientConnection:
    client = greeted()
    client.send(Auth("PLAIN"))
    return client


def _quit_sent() -> ClientConnection:
    client = greeted()
    client.send(Quit())
    return client


def _closed() -> ClientConnection:
    client = _quit_sent()
    replies(client, b"221 bye\r\n")
    return client


def _bdat_content() -> ClientConnection:
    client = greeted()
    client.send(Bdat(10))
    return client


ANY_COMMAND = [
    Ehlo("c.example"), Helo("c.example"), Mail("a@x.org"), Rcpt("b@x.org"), Data(),
    Bdat(1), Rset(), Noop(), Vrfy("x"), Expn("x"), Help(), StartTLS(), Auth("PLAIN"),
    RawCommand("XFOO"),
]

ILLEGAL: list[tuple[str, Callable[[], ClientConnection], object]] = [
    ("content before DATA", greeted, MessageData(b"x")),
    ("end of data before DATA", greeted, EndOfData()),
    ("auth response without challenge", greeted, AuthResponse(b"x")),
    *[("before greeting", _greeting_wait, e) for e in ANY_COMMAND],
    ("content before 354", _data_wait, MessageData(b"x")),
    ("end before 354", _data_wait, EndOfData()),
    *[("after DATA before its reply", _data_wait, e) for e in ANY_COMMAND],
    ("quit after DATA before its reply", _data_wait, Quit()),
    *[("command in DATA content", in_content, e) for e in ANY_COMMAND],
    *[("after STARTTLS before 220", _starttls_wait, e) for e in ANY_COMMAND],
    *[("during TLS handshake", _tls_handshake, e) for e in [*ANY_COMMAND, Quit()]],
    *[("after AUTH before its reply", _auth_wait, e) for e in [*ANY_COMMAND, AuthResponse(b"")]],
    *[("after QUIT", _quit_sent, e) for e in [*ANY_COMMAND, Quit(), MessageData(b"x")]],
    *[("after close", _closed, e) for e in [*ANY_COMMAND, Quit()]],
    *[("command inside a BDAT chunk", _bdat_content, e) for e in ANY_COMMAND],
    ("end of data inside BDAT", _bdat_content, EndOfData()),
    ("a string is not an event", greeted, "NOOP"),
]


@pytest.mark.parametrize(
    ("make", "event"),
    [pytest.param(make, event, id=f"{why}-{type(event).__name__}") for why, make, event in ILLEGAL],
)
def test_illegal_send_raises_and_changes_nothing(make: Callable[[], ClientConnection], event: object) -> None:
    client = make()
    state, pending = client.state, client.pending_replies
    with pytest.raises(LocalProtocolError):
        client.send(event)  # type: ignore[arg-type]
    assert client.state is state
    assert client.pending_replies == pending


def test_bad_argument_changes_nothing() -> None:
    client = greeted()
    with pytest.raises(LocalProtocolError):
        client.send(Mail("a@x.org>\r\nRCPT TO:<evil@x.org"))
    assert client.pending_replies == 0 and client.state is S.READY
    client.send(Mail("a@x.org"))
    assert client.pending_replies == 1


def test_nothing_can_be_sent_after_a_protocol_error() -> None:
    client = greeted()
    client.send(Noop())
    client.receive_data(b"xyz\r\n")
    with pytest.raises(RemoteProtocolError):
        client.next_event()
    assert client.state is S.CLOSED
    with pytest.raises(LocalProtocolError, match="broken"):
        client.send(Quit())


# --------------------------------------------------------------------------
# STARTTLS


def test_starttls_discards_what_followed_the_220() -> None:
    client = greeted()
    client.send(Ehlo("c.example"))
    replies(client, EHLO_REPLY)
    assert client.capabilities is not None and client.capabilities.starttls
    assert client.send(StartTLS()) == b"STARTTLS\r\n"
    assert client.state is S.STARTTLS_WAIT

    injected = b"250-mx\r\n250 AUTH PLAIN\r\n"
    [reply] = replies(client, b"220 2.0.0 ready\r\n" + injected)
    assert reply.code == 220
    assert client.state is S.TLS_HANDSHAKE
    assert client.discarded_after_starttls == len(injected)
    # Anything arriving before the driver says the handshake is done: also dropped.
    client.receive_data(b"250 more\r\n")
    assert client.discarded_after_starttls == len(injected) + 10
    assert client.next_event() is NEED_DATA

    with pytest.raises(LocalProtocolError):
        client.send(Ehlo("c.example"))

    client.tls_established()
    assert client.state is S.READY
    assert client.capabilities is None  # RFC 3207 4.2: forget what we knew
    assert client.next_event() is NEED_DATA  # the injected replies are gone
    assert client.send(Ehlo("c.example")) == b"EHLO c.example\r\n"
    [reply] = replies(client, b"250-mx\r\n250 AUTH LOGIN\r\n")
    assert client.capabilities is not None
    assert client.capabilities.auth_mechanisms == {"LOGIN"}
    assert client.discarded_after_starttls == len(injected) + 10


def test_starttls_discard_when_220_and_injection_arrive_in_separate_reads() -> None:
    client = greeted()
    client.send(StartTLS())
    client.receive_data(b"220 ready\r\n")
    client.receive_data(b"250 injected\r\n")  # read before next_event was called
    [reply] = replies(client)
    assert reply.code == 220
    assert client.discarded_after_starttls == 14
    client.tls_established()
    assert client.next_event() is NEED_DATA


def test_starttls_pipelined_behind_ehlo() -> None:
    client = greeted()
    client.send(Ehlo("c.example"))
    client.send(StartTLS())
    got = replies(client, EHLO_REPLY + b"220 ready\r\n")
    assert [r.code for r in got] == [250, 220]
    assert client.state is S.TLS_HANDSHAKE


def test_starttls_refused() -> None:
    client = greeted()
    client.send(StartTLS())
    replies(client, b"454 4.7.0 TLS not available\r\n250 next\r\n")
    assert client.state is S.READY
    assert client.discarded_after_starttls == 0
    with pytest.raises(LocalProtocolError):
        client.tls_established()


def test_tls_established_outside_a_handshake() -> None:
    with pytest.raises(LocalProtocolError):
        greeted().tls_established()


# --------------------------------------------------------------------------
# AUTH


def test_auth_login_challenges() -> None:
    client = greeted()
    assert client.send(Auth("login")) == b"AUTH LOGIN\r\n"
    assert client.state is S.AUTH_WAIT
    [challenge] = replies(client, b"334 VXNlcm5hbWU6\r\n")
    assert base64.b64decode(challenge.lines[0]) == b"Username:"
    assert client.state is S.AUTH_CHALLENGE
    assert client.send(AuthResponse(b"user")) == b"dXNlcg==\r\n"
    assert client.state is S.AUTH_WAIT
    replies(client, b"334 UGFzc3dvcmQ6\r\n")
    assert client.send(AuthResponse(b"secret")) == b"c2VjcmV0\r\n"
    [done] = replies(client, b"235 2.7.0 ok\r\n")
    assert done.code == 235 and client.state is S.READY


def test_auth_initial_response_forms() -> None:
    client = greeted()
    assert client.send(Auth("PLAIN", b"\0u\0p")) == b"AUTH PLAIN AHUAcA==\r\n"
    replies(client, b"535 5.7.8 no\r\n")
    assert client.state is S.READY
    assert client.send(Auth("PLAIN", b"")) == b"AUTH PLAIN =\r\n"
    replies(client, b"334 \r\n")
    assert client.send(AuthResponse(b"")) == b"=\r\n"
    replies(client, b"334 \r\n")
    assert client.send(AuthResponse(None)) == b"*\r\n"
    replies(client, b"501 cancelled\r\n")
    assert client.state is S.READY


def test_auth_pipelined_behind_ehlo_waits_for_its_own_reply() -> None:
    client = greeted()
    client.send(Ehlo("c.example"))
    client.send(Auth("PLAIN"))
    replies(client, EHLO_REPLY)
    assert client.state is S.AUTH_WAIT  # the EHLO reply does not answer AUTH
    replies(client, b"334 \r\n")
    assert client.state is S.AUTH_CHALLENGE


# --------------------------------------------------------------------------
# BDAT


def test_bdat_chunks() -> None:
    client = greeted()
    client.send(Mail("a@x.org"))
    client.send(Rcpt("b@x.org"))
    assert client.send(Bdat(5)) == b"BDAT 5\r\n"
    assert client.state is S.BDAT_CONTENT
    # Content goes out raw: no dot-stuffing, no line-ending fixes.
    assert client.send(MessageData(b".\n")) == b".\n"
    assert client.state is S.BDAT_CONTENT
    assert client.send(MessageData(b"\r.\r")) == b"\r.\r"
    assert client.state is S.READY
    assert client.send(Bdat(0, last=True)) == b"BDAT 0 LAST\r\n"
    assert client.state is S.READY
    assert client.pending_replies == 4
    got = replies(client, b"250 ok\r\n250 ok\r\n250 5 octets\r\n250 queued\r\n")
    assert [r.code for r in got] == [250] * 4
    assert client.pending_replies == 0


def test_bdat_overrun_refused_and_chunk_still_open() -> None:
    client = greeted()
    client.send(Bdat(4, last=True))
    with pytest.raises(LocalProtocolError, match="overrun"):
        client.send(MessageData(b"12345"))
    assert client.state is S.BDAT_CONTENT
    client.send(MessageData(b"12"))
    with pytest.raises(LocalProtocolError, match="overrun"):
        client.send(MessageData(b"345"))
    assert client.send(MessageData(b"34")) == b"34"
    assert client.state is S.READY
    with pytest.raises(LocalProtocolError):
        client.send(MessageData(b"x"))


def test_bdat_negative_size_refused() -> None:
    client = greeted()
    with pytest.raises(LocalProtocolError):
        client.send(Bdat(-1))
    assert client.state is S.READY and client.pending_replies == 0


# --------------------------------------------------------------------------
# LMTP


def lmtp_transaction(client: ClientConnection, n_rcpt: int) -> None:
    client.send(Lhlo("c.example"))
    client.send(Mail("a@x.org"))
    for i in range(n_rcpt):
        client.send(Rcpt(f"r{i}@x.org"))


def test_lmtp_one_reply_per_accepted_recipient_after_data() -> None:
    client = greeted(lmtp=True)
    lmtp_transaction(client, 3)
    client.send(Data())
    got = replies(client, b"250-lmtp\r\n250 PIPELINING\r\n250 ok\r\n250 ok\r\n550 no\r\n250 ok\r\n354 go\r\n")
    assert [r.code for r in got] == [250, 250, 250, 550, 250, 354]
    assert client.state is S.CONTENT
    client.send(MessageData(b"hi\r\n"))
    client.send(EndOfData())
    # Two recipients were accepted: two replies, counted as one pending entry.
    assert client.pending_replies == 1
    [first] = replies(client, b"250 2.0.0 r0 delivered\r\n")
    assert first.code == 250 and client.pending_replies == 1
    [second] = replies(client, b"452 4.2.2 r2 over quota\r\n")
    assert second.code == 452 and client.pending_replies == 0
    # A further reply is no longer expected.
    client.send(Quit())
    replies(client, b"221 bye\r\n")
    assert client.state is S.CLOSED


def test_lmtp_replies_after_bdat_last() -> None:
    client = greeted(lmtp=True)
    lmtp_transaction(client, 2)
    replies(client, b"250 lmtp\r\n250 ok\r\n250 ok\r\n250 ok\r\n")
    client.send(Bdat(3))
    client.send(MessageData(b"abc"))
    client.send(Bdat(2, last=True))
    client.send(MessageData(b"de"))
    assert client.pending_replies == 2
    got = replies(client, b"250 chunk\r\n250 r0 ok\r\n")
    assert [r.code for r in got] == [250, 250] and client.pending_replies == 1
    replies(client, b"250 r1 ok\r\n")
    assert client.pending_replies == 0


def test_lmtp_pipelined_bdat_rcpt_replies_arrive_after_bdat_was_sent() -> None:
    client = greeted(lmtp=True)
    lmtp_transaction(client, 3)
    client.send(Bdat(4, last=True))
    client.send(MessageData(b"body"))
    assert client.pending_replies == 6  # LHLO, MAIL, 3 RCPT, BDAT LAST
    got = replies(
        client,
        b"250 lmtp\r\n250 ok\r\n250 ok\r\n550 no\r\n250 ok\r\n"  # r1 refused
        b"250 r0 delivered\r\n",
    )
    assert len(got) == 6 and client.pending_replies == 1
    replies(client, b"250 r2 delivered\r\n")
    assert client.pending_replies == 0


def test_lmtp_counts_reset_per_transaction() -> None:
    client = greeted(lmtp=True)
    lmtp_transaction(client, 2)
    client.send(Data())
    replies(client, b"250 lmtp\r\n250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n")
    client.send(EndOfData())
    replies(client, b"250 a\r\n250 b\r\n")
    assert client.pending_replies == 0
    # Second transaction with one recipient: one reply after the data.
    client.send(Mail("a@x.org"))
    client.send(Rcpt("z@x.org"))
    client.send(Data())
    replies(client, b"250 ok\r\n250 ok\r\n354 go\r\n")
    client.send(EndOfData())
    replies(client, b"250 z\r\n")
    assert client.pending_replies == 0


def test_lmtp_rset_forgets_accepted_recipients() -> None:
    client = greeted(lmtp=True)
    lmtp_transaction(client, 2)
    client.send(Rset())
    client.send(Mail("a@x.org"))
    client.send(Rcpt("only@x.org"))
    client.send(Bdat(0, last=True))
    replies(client, b"250 lmtp\r\n250 ok\r\n250 ok\r\n250 ok\r\n250 reset\r\n250 ok\r\n250 ok\r\n")
    assert client.pending_replies == 1
    replies(client, b"250 only delivered\r\n")
    assert client.pending_replies == 0


def test_smtp_end_of_data_has_one_reply_however_many_recipients() -> None:
    client = greeted()
    for event in (Mail("a@x.org"), Rcpt("b@x.org"), Rcpt("c@x.org"), Data()):
        client.send(event)
    replies(client, b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n")
    client.send(EndOfData())
    replies(client, b"250 queued\r\n")
    assert client.pending_replies == 0


# --------------------------------------------------------------------------
# writes formatted ahead of time (prepare_write, then send)


def _one_by_one(client: ClientConnection, events: list[object]) -> bytes:
    return b"".join(client.send(event) for event in events)  # type: ignore[arg-type]


@pytest.mark.parametrize("content", [b"", b"plain\r\n", b".dot\r\nbare\nlf\r.x", b"no newline"])
def test_prepared_write_is_byte_for_byte_what_send_writes(content: bytes) -> None:
    events = [MessageData(content)] if content else []
    events += [EndOfData(), Mail("a@x.org"), Rcpt("b@x.org"), Data()]
    prepared = prepare_write(events)
    by_send, by_prepared = in_content(), in_content()
    assert by_prepared.send(prepared) == _one_by_one(by_send, events)
    assert prepared.data == b"".join(prepared.parts)
    assert by_prepared.state is by_send.state is S.DATA_WAIT
    assert by_prepared.pending_replies == by_send.pending_replies == 4
    got = replies(by_prepared, b"250 queued\r\n250 ok\r\n250 ok\r\n354 go\r\n")
    assert [r.code for r in got] == [250, 250, 250, 354] and by_prepared.state is S.CONTENT


def test_prepared_write_checks_commands_when_formatted() -> None:
    with pytest.raises(LocalProtocolError):
        prepare_write([EndOfData(), Mail("a@x.org\r\nRSET")])


@pytest.mark.parametrize("events", [
    [MessageData(b"never ended")],
    [Bdat(3, True), MessageData(b"abc")],
])
def test_prepared_content_must_be_a_whole_message_sent_with_data(events: list[object]) -> None:
    with pytest.raises(LocalProtocolError):
        prepare_write(events)  # type: ignore[arg-type]


def test_send_prepared_is_all_or_nothing() -> None:
    client = greeted()
    client.send(Mail("a@x.org"))
    client.send(Rcpt("b@x.org"))
    client.send(Data())
    # The 354 has not come: the content is not legal yet, and nothing changes.
    prepared = prepare_write([MessageData(b"x\r\n"), EndOfData(), Mail("a@x.org")])
    with pytest.raises(LocalProtocolError):
        client.send(prepared)
    assert client.state is S.DATA_WAIT and client.pending_replies == 3
    replies(client, b"250 ok\r\n250 ok\r\n354 go\r\n")
    assert client.send(prepared) == b"x\r\n.\r\nMAIL FROM:<a@x.org>\r\n"
    assert client.state is S.READY


def test_prepared_content_never_continues_a_message_begun_with_send() -> None:
    client = in_content()
    client.send(MessageData(b"first half, no newline"))
    with pytest.raises(LocalProtocolError):
        client.send(prepare_write([EndOfData()]))
    assert client.send(EndOfData()) == b"\r\n.\r\n"


def test_prepared_content_is_not_a_bdat_chunk() -> None:
    client = greeted()
    client.send(Bdat(3, True))
    with pytest.raises(LocalProtocolError):
        client.send(prepare_write([MessageData(b"abc"), EndOfData()]))
    assert client.send(MessageData(b"abc")) == b"abc"


def test_lmtp_prepared_end_of_data_expects_a_reply_per_recipient() -> None:
    client = greeted(lmtp=True)
    lmtp_transaction(client, 2)
    client.send(Data())
    replies(client, b"250-lmtp\r\n250 PIPELINING\r\n250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n")
    client.send(prepare_write([MessageData(b"hi\r\n"), EndOfData()]))
    assert [r.code for r in replies(client, b"250 r0\r\n452 r1\r\n")] == [250, 452]
    assert client.pending_replies == 0

"""ServerConnection: sequence, pipelining, AUTH, STARTTLS, limits, LMTP, the driver contract.

Bytes only, no sockets. Most cases are a table of (client bytes, transcript):
see ``server_harness`` for the transcript's vocabulary. Every table case also
runs with the input cut into 1- and 7-octet pieces and must give the same
transcript and the same reply bytes.
"""

from __future__ import annotations

import base64

import pytest

from mailwire.errors import LocalProtocolError
from mailwire.limits import Limits
from mailwire.protocol.events import (
    NEED_DATA, Auth, AuthResponse, Bdat, Closed, Credentials, Data, Ehlo, EndOfChunk, EndOfMessage, Expn,
    Helo, Help, Lhlo, Mail, MessageData, Noop, Quit, RawCommand, Rcpt, Rejected, Rset, StartTLS, Vrfy,
)
from mailwire.protocol.extensions import ServerExtensions
from mailwire.protocol.commands import CommandCache
from mailwire.protocol.params import MailOptions
from mailwire.protocol.server import ServerConnection, ServerEvent
from mailwire.protocol.state import (
    SERVER_COMMANDS, SERVER_GUARDS, Greeting, ServerFlag, ServerState,
)
from mailwire.reply import Reply

from server_harness import (
    GREETING, Content, Refused, converse, converse_every_way, default_policy,
)

S = ServerState
EHLO, E = b"EHLO c.example\r\n", Ehlo("c.example")
LHLO, L = b"LHLO c.example\r\n", Lhlo("c.example")
MAIL, M = b"MAIL FROM:<a@x.example>\r\n", Mail("a@x.example")
RCPT, R = b"RCPT TO:<b@y.example>\r\n", Rcpt("b@y.example")
BAD_RCPT, BR = b"RCPT TO:<bad@y.example>\r\n", Rcpt("bad@y.example")
SEQ = Refused(503, "5.5.1")
PLAIN = base64.b64encode(b"\0user\0secret")
USER = Credentials("PLAIN", "", "user", password="secret")


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


# --------------------------------------------------------------------------
# the sequence table: RFC 5321 4.1.4 and the extensions' sub-dialogs

SEQUENCE_CASES: list[tuple[str, bytes, dict[str, object], list[object]]] = [
    ("mail before ehlo", MAIL + EHLO + MAIL, {}, [SEQ, E, 250, M, 250]),
    ("rcpt before mail", EHLO + RCPT, {}, [E, 250, SEQ]),
    ("data with no transaction", EHLO + b"DATA\r\n", {}, [E, 250, SEQ]),
    ("data before rcpt", EHLO + MAIL + b"DATA\r\n", {}, [E, 250, M, 250, SEQ]),
    ("data after only refused rcpts", EHLO + MAIL + BAD_RCPT + b"DATA\r\n", {},
     [E, 250, M, 250, BR, 550, SEQ]),
    ("a refused rcpt does not undo an accepted one", EHLO + MAIL + RCPT + BAD_RCPT + b"DATA\r\n", {},
     [E, 250, M, 250, R, 250, BR, 550, Data(), 354]),
    ("nested mail", EHLO + MAIL + MAIL, {}, [E, 250, M, 250, SEQ]),
    ("nested mail after rcpt", EHLO + MAIL + RCPT + MAIL, {}, [E, 250, M, 250, R, 250, SEQ]),
    ("starttls before ehlo", b"STARTTLS\r\n", {}, [SEQ]),
    ("starttls during a transaction", EHLO + MAIL + b"STARTTLS\r\n", {}, [E, 250, M, 250, SEQ]),
    ("starttls on implicit tls", EHLO + b"STARTTLS\r\n", {"tls": True}, [E, 250, SEQ]),
    ("auth before ehlo", b"AUTH PLAIN\r\n", {}, [SEQ]),
    ("auth during a transaction", EHLO + MAIL + RCPT + b"AUTH PLAIN " + PLAIN + b"\r\n", {},
     [E, 250, M, 250, R, 250, SEQ]),
    ("rset ends the transaction", EHLO + MAIL + b"RSET\r\n" + RCPT, {},
     [E, 250, M, 250, Rset(), 250, SEQ]),
    ("ehlo ends the transaction", EHLO + MAIL + RCPT + EHLO + b"DATA\r\n", {},
     [E, 250, M, 250, R, 250, E, 250, SEQ]),
    ("helo greets as well", b"HELO c.example\r\n" + MAIL, {}, [Helo("c.example"), 250, M, 250]),
    ("noop help vrfy expn rset need no greeting",
     b"NOOP\r\nHELP MAIL\r\nVRFY joe\r\nEXPN list\r\nRSET\r\n" + MAIL, {},
     [Noop(), 250, Help("MAIL"), 250, Vrfy("joe"), 250, Expn("list"), 250, Rset(), 250, SEQ]),
    ("rset before hello does not greet", b"RSET\r\n" + MAIL, {}, [Rset(), 250, SEQ]),
    ("unknown verb", EHLO + b"XYZZY plugh\r\n", {}, [E, 250, Refused(500, "5.5.1")]),
    ("empty line", b"\r\n" + EHLO, {}, [Refused(500, "5.5.1"), E, 250]),
    ("extra verb reaches the driver", b"XCLIENT ADDR=192.0.2.1\r\n" + EHLO, {"extra_verbs": {"xclient"}},
     [RawCommand("XCLIENT", "ADDR=192.0.2.1"), 250, E, 250]),
    ("lhlo is not smtp", LHLO, {}, [Refused(500, "5.5.1")]),
    ("ehlo and helo are not lmtp", EHLO + b"HELO c.example\r\n" + LHLO + MAIL, {"lmtp": True},
     [Refused(500, "5.5.1"), Refused(500, "5.5.1"), L, 250, M, 250]),
    ("syntax errors come from the parser", EHLO + b"MAIL FROM:a@x\r\nRCPT TO:<>\r\nDATA now\r\n", {},
     [E, 250, Refused(501, "5.5.4"), Refused(553, "5.1.3"), Refused(501, "5.5.4")]),
    ("mail size above the limit", EHLO + b"MAIL FROM:<a@x.example> SIZE=1001\r\n"
     + b"MAIL FROM:<a@x.example> SIZE=1000\r\n", {"limits": Limits(message_size=1000)},
     [E, 250, Refused(552, "5.3.4"), Mail("a@x.example", MailOptions(size=1000)), 250]),
    ("mail size with no limit", EHLO + b"MAIL FROM:<a@x.example> SIZE=999999999999\r\n",
     {"limits": Limits(message_size=0)}, [E, 250, Mail("a@x.example", MailOptions(size=999999999999)), 250]),
    ("too many recipients", EHLO + MAIL + RCPT + BAD_RCPT + RCPT + RCPT + b"DATA\r\n",
     {"limits": Limits(recipients=2)},
     [E, 250, M, 250, R, 250, BR, 550, R, 250, Refused(452, "4.5.3"), Data(), 354]),
    ("binarymime needs bdat", EHLO + b"MAIL FROM:<a@x.example> BODY=BINARYMIME\r\n" + RCPT
     + b"DATA\r\nRSET\r\n" + MAIL + RCPT + b"DATA\r\n", {},
     [E, 250, Mail("a@x.example", MailOptions(body="BINARYMIME")), 250, R, 250, SEQ, Rset(), 250,
      M, 250, R, 250, Data(), 354]),
    ("binarymime with bdat", EHLO + b"MAIL FROM:<a@x.example> BODY=BINARYMIME\r\n" + RCPT
     + b"BDAT 3 LAST\r\n\0\r\xff", {},
     [E, 250, Mail("a@x.example", MailOptions(body="BINARYMIME")), 250, R, 250,
      Bdat(3, True), Content(b"\0\r\xff"), 250]),
    ("data after bdat", EHLO + MAIL + RCPT + b"BDAT 3\r\nabcDATA\r\n", {},
     [E, 250, M, 250, R, 250, Bdat(3), Content(b"abc"), 250, SEQ]),
    ("rcpt after bdat", EHLO + MAIL + RCPT + b"BDAT 3\r\nabc" + RCPT, {},
     [E, 250, M, 250, R, 250, Bdat(3), Content(b"abc"), 250, SEQ]),
    ("bdat before rcpt: the chunk is swallowed", EHLO + MAIL + b"BDAT 6\r\nQUIT\r\nNOOP\r\n", {},
     [E, 250, M, 250, SEQ, Noop(), 250]),
    ("bdat before hello: the chunk is swallowed", b"BDAT 12 LAST\r\nMAIL FROM:<>" + EHLO, {},
     [SEQ, E, 250]),
    ("quit closes and nothing after counts", EHLO + b"QUIT\r\nNOOP\r\n", {}, [E, 250, Quit(), 221]),
    ("refused greeting: only quit", EHLO + MAIL + b"NOOP\r\nQUIT\r\n",
     {"greeting": Reply.of(554, "5.3.2", "No service")}, [SEQ, SEQ, SEQ, Quit(), 221]),
    ("421 greeting closes", EHLO, {"greeting": Reply.of(421, "4.3.2", "Busy")}, []),
]


@pytest.mark.parametrize(("wire", "kwargs", "expected"),
                         [c[1:] for c in SEQUENCE_CASES], ids=[c[0] for c in SEQUENCE_CASES])
def test_sequence(wire: bytes, kwargs: dict[str, object], expected: list[object]) -> None:
    assert converse_every_way(wire, **kwargs).log == expected


def test_every_sequence_refusal_says_why() -> None:
    driver = converse(MAIL + EHLO + RCPT + MAIL + MAIL + b"STARTTLS\r\n")
    texts = [e.reply.text for e in driver.events if isinstance(e, Rejected)]
    assert texts == [
        "Bad sequence of commands: send EHLO/HELO first",
        "Bad sequence of commands: need MAIL before RCPT",
        "Bad sequence of commands: nested MAIL command",
        "Bad sequence of commands: not permitted during a mail transaction",
    ]
    lmtp = converse(MAIL, lmtp=True)
    assert lmtp.events[0] == Rejected(Reply.of(503, "5.5.1", "Bad sequence of commands: send LHLO first"))


def test_transitions_are_data() -> None:
    # The table, not the code, says what is legal: every state has a row, and
    # every command type the parser produces appears in the table somewhere.
    assert set(SERVER_COMMANDS) == set(ServerState)
    legal = {kind for row in SERVER_COMMANDS.values() for kind in row}
    for kind in (Ehlo, Helo, Lhlo, Mail, Rcpt, Data, Bdat, Rset, Noop, Quit, Vrfy, Expn, Help,
                 StartTLS, Auth, AuthResponse, RawCommand, EndOfChunk, EndOfMessage, Credentials, Greeting):
        assert kind in legal
    assert set(SERVER_GUARDS) == {StartTLS, Auth, Data}


def test_every_core_reply_has_an_enhanced_code() -> None:
    wire = (MAIL + EHLO + b"XYZZY\r\n" + b"MAIL FROM:<a@x.example> SIZE=99\r\n" + MAIL + RCPT + RCPT
            + b"NOOP " + b"x" * 600 + b"\r\nDATA\r\nbare\nLF\r\n.\r\n")
    driver = converse(wire, limits=Limits(message_size=50, recipients=1))
    refusals = [e.reply for e in driver.events if isinstance(e, Rejected)]
    assert [r.code for r in refusals] == [503, 500, 552, 452, 500, 550]
    assert all(r.enhanced is not None for r in refusals)


# --------------------------------------------------------------------------
# pipelining: many commands in one read, answered one by one, in order


def test_pipelined_commands_are_answered_in_order() -> None:
    conn = ServerConnection()
    assert conn.send(GREETING) == b"220 mx.example ESMTP\r\n"
    conn.receive_data(EHLO + MAIL + RCPT + BAD_RCPT + b"DATA\r\n")
    wire = b""
    seen = []
    for answer in [Reply.of(250, None, "mx.example"), Reply.of(250, "2.1.0", "ok"),
                   Reply.of(250, "2.1.5", "ok"), Reply.of(550, "5.1.1", "no"), Reply.of(354, None, "go")]:
        event = conn.next_event()
        seen.append(event)
        # Strict alternation: the next command waits until this one is answered.
        with pytest.raises(LocalProtocolError):
            conn.next_event()
        wire += conn.send(answer)
    assert seen == [E, M, R, BR, Data()]
    assert wire == (b"250 mx.example\r\n250 2.1.0 ok\r\n250 2.1.5 ok\r\n550 5.1.1 no\r\n354 go\r\n")
    assert conn.state is S.DATA
    assert conn.next_event() is NEED_DATA


def test_pipelined_transactions_back_to_back() -> None:
    one = MAIL + RCPT + b"DATA\r\nfirst\r\n.\r\n"
    two = MAIL + RCPT + b"BDAT 7 LAST\r\nsecond\n"
    driver = converse_every_way(EHLO + one + two + b"QUIT\r\n")
    assert driver.log == [E, 250, M, 250, R, 250, Data(), 354, Content(b"first\r\n"), 250,
                          M, 250, R, 250, Bdat(7, True), Content(b"second\n"), 250, Quit(), 221]
    assert driver.out.count(b"\r\n250 2.0.0 Queued 0\r\n") == 2


# --------------------------------------------------------------------------
# AUTH (RFC 4954)

AUTH_CASES: list[tuple[str, bytes, list[object], bool]] = [
    ("initial response", b"AUTH PLAIN " + PLAIN + b"\r\n", [USER, 235], True),
    ("challenge then response", b"AUTH PLAIN\r\n" + PLAIN + b"\r\n", [334, USER, 235], True),
    ("a mechanism named in lower case", b"auth plain " + PLAIN + b"\r\n", [USER, 235], True),
    ("empty initial response", b"AUTH PLAIN =\r\n", [Refused(501, "5.5.2")], False),
    ("two challenges", b"AUTH LOGIN\r\n" + b64(b"user") + b"\r\n" + b64(b"secret") + b"\r\n",
     [334, 334, Credentials("LOGIN", "", "user", password="secret"), 235], True),
    ("username in the initial response", b"AUTH LOGIN " + b64(b"user") + b"\r\n" + b64(b"secret") + b"\r\n",
     [334, Credentials("LOGIN", "", "user", password="secret"), 235], True),
    ("cancel", b"AUTH LOGIN\r\n*\r\n", [334, Refused(501, "5.0.0")], False),
    ("wrong credentials", b"AUTH PLAIN\r\n" + b64(b"\0user\0wrong") + b"\r\n",
     [334, Credentials("PLAIN", "", "user", password="wrong"), 535], False),
    ("undecodable response aborts", b"AUTH PLAIN\r\n!!!\r\n", [334, Refused(501, "5.5.2")], False),
    ("a mechanism not offered", b"AUTH XOAUTH2\r\n", [Refused(504, "5.5.4")], False),
    ("an unknown mechanism", b"AUTH X\r\n", [Refused(504, "5.5.4")], False),
    # During the exchange a line is an answer, never a command.
    ("a response that looks like QUIT", b"AUTH PLAIN\r\nQUIT\r\n", [334, Refused(501, "5.5.2")], False),
]


@pytest.mark.parametrize(("wire", "expected", "authenticated"),
                         [c[1:] for c in AUTH_CASES], ids=[c[0] for c in AUTH_CASES])
def test_auth(wire: bytes, expected: list[object], authenticated: bool) -> None:
    driver = converse_every_way(EHLO + wire + b"NOOP\r\n")
    assert driver.log == [E, 250, *expected, Noop(), 250]
    assert driver.conn.authenticated is authenticated
    assert driver.conn.state is S.READY
    # A failed exchange is an error (RFC 4954 gives no budget); a success is not.
    assert driver.conn.bad_commands == (0 if authenticated else 1)


def test_auth_where_it_is_not_offered() -> None:
    none = converse_every_way(EHLO + b"AUTH PLAIN " + PLAIN + b"\r\n", extensions=ServerExtensions())
    assert none.log == [E, 250, Refused(502, "5.5.1")]
    plaintext = ServerExtensions(auth_mechanisms=("PLAIN",))
    refused = converse_every_way(EHLO + b"AUTH PLAIN " + PLAIN + b"\r\n" + MAIL, extensions=plaintext)
    assert refused.log == [E, 250, Refused(538, "5.7.11"), M, 250]
    over_tls = converse_every_way(EHLO + b"AUTH PLAIN " + PLAIN + b"\r\n", extensions=plaintext, tls=True)
    assert over_tls.log == [E, 250, USER, 235]
    # What EHLO says is what is enforced: AUTH listed exactly where it is accepted.
    for driver, listed in ((none, False), (refused, False), (over_tls, True)):
        keywords = driver.conn.hello_reply(E).lines[1:]
        assert any(k.startswith("AUTH ") for k in keywords) is listed


def test_cram_md5_runs_in_the_core() -> None:
    driver = converse(EHLO + b"AUTH CRAM-MD5\r\n")
    challenge = base64.b64decode(driver.out.split(b"334 ")[-1].split(b"\r\n")[0])
    assert challenge.startswith(b"<") and challenge.endswith(b"@localhost>")
    import hmac
    digest = hmac.new(b"secret", challenge, "md5").hexdigest()
    driver.feed(b64(b"user " + digest.encode()) + b"\r\n")
    (credentials,) = [e for e in driver.events if isinstance(e, Credentials)]
    assert credentials.mechanism == "CRAM-MD5" and credentials.check_password("secret")
    assert driver.log[-1] == 235 and driver.conn.authenticated


def test_auth_twice_is_a_sequence_error_but_retry_after_failure_is_fine() -> None:
    wire = EHLO + b"AUTH PLAIN\r\n*\r\nAUTH PLAIN " + PLAIN + b"\r\nAUTH PLAIN " + PLAIN + b"\r\n"
    driver = converse_every_way(wire)
    assert driver.log == [E, 250, 334, Refused(501, "5.0.0"), USER, 235, SEQ]
    rejected = [e for e in driver.events if isinstance(e, Rejected)]
    assert rejected[-1].reply.text == "Bad sequence of commands: already authenticated (RFC 4954 4)"


def test_auth_lines_may_be_longer_than_commands() -> None:
    token = b64(b"\0user\0" + b"t" * 3000)
    driver = converse_every_way(EHLO + b"AUTH PLAIN " + token + b"\r\nAUTH PLAIN\r\n" + token + b"\r\n")
    long = Credentials("PLAIN", "", "user", password="t" * 3000)
    assert driver.log == [E, 250, long, 535, 334, long, 535]


def test_overlong_auth_response_aborts_the_exchange() -> None:
    limits = Limits(auth_line=100)
    driver = converse_every_way(EHLO + b"AUTH PLAIN\r\n" + b"A" * 200 + b"\r\nNOOP\r\n", limits=limits)
    assert driver.log == [E, 250, 334, Refused(500, "5.5.6"), Noop(), 250]
    assert driver.conn.state is S.READY and not driver.conn.authenticated


def test_failed_auth_counts_toward_the_error_limit() -> None:
    wire = EHLO + (b"AUTH PLAIN " + b64(b"\0user\0wrong") + b"\r\n") * 3 + b"NOOP\r\n"
    driver = converse_every_way(wire, limits=Limits(bad_commands=2))
    wrong = Credentials("PLAIN", "", "user", password="wrong")
    # The third failure is answered, then the session ends.
    assert driver.log == [E, 250, wrong, 535, wrong, 535, wrong, 535, Refused(421, "4.7.0")]


# --------------------------------------------------------------------------
# STARTTLS (RFC 3207)


def test_starttls_discards_what_was_pipelined_after_it() -> None:
    injected = MAIL + RCPT + b"DATA\r\n"
    driver = converse(EHLO + b"STARTTLS\r\n" + injected)
    conn = driver.conn
    assert driver.log == [E, 250, StartTLS(), 220]
    assert conn.state is S.TLS_HANDSHAKE
    assert conn.discarded_after_starttls == len(injected)
    with pytest.raises(LocalProtocolError):
        conn.next_event()  # nothing to parse until the handshake is done
    conn.receive_data(b"more plaintext")  # a driver mistake: still never parsed
    assert conn.discarded_after_starttls == len(injected) + 14
    conn.tls_established()
    assert conn.tls and conn.state is S.FRESH
    # A fresh start: EHLO again, and STARTTLS is now out of sequence.
    driver.feed(MAIL + EHLO + b"STARTTLS\r\n" + MAIL)
    assert driver.log[4:] == [SEQ, E, 250, SEQ, M, 250]
    texts = [e.reply.text for e in driver.events if isinstance(e, Rejected)]
    assert texts[-1] == "Bad sequence of commands: TLS is already active (RFC 3207 4.2)"


def test_starttls_injection_split_anywhere() -> None:
    for cut in range(1, 40):
        wire = EHLO + b"STARTTLS\r\n" + MAIL + RCPT
        driver = converse(wire, step=cut)
        assert driver.log == [E, 250, StartTLS(), 220]
        assert driver.conn.discarded_after_starttls == len(MAIL + RCPT)


def test_refused_starttls_goes_on_in_plaintext() -> None:
    def no_tls(event: ServerEvent, index: int) -> Reply:
        if isinstance(event, StartTLS):
            return Reply.of(454, "4.7.0", "TLS not available")
        return Reply.of(250, "2.0.0", "OK")

    driver = converse(EHLO + b"STARTTLS\r\n" + MAIL, policy=no_tls)
    assert driver.log == [E, 250, StartTLS(), 454, M, 250]
    assert driver.conn.discarded_after_starttls == 0 and not driver.conn.tls


def test_starttls_where_no_handshake_can_follow_is_454() -> None:
    driver = converse_every_way(EHLO + b"STARTTLS\r\n" + MAIL, extensions=ServerExtensions())
    assert driver.log == [E, 250, Refused(454, "4.7.0"), M, 250]
    assert "STARTTLS" not in driver.conn.hello_reply(E).lines


def test_tls_forgets_authentication() -> None:
    driver = converse(EHLO + b"AUTH PLAIN " + PLAIN + b"\r\nSTARTTLS\r\n")
    assert driver.conn.state is S.TLS_HANDSHAKE and driver.conn.authenticated
    driver.conn.tls_established()
    assert not driver.conn.authenticated
    driver.feed(EHLO + b"AUTH PLAIN " + PLAIN + b"\r\n")
    assert driver.log[-3:] == [250, USER, 235]


def test_tls_established_only_after_220() -> None:
    conn = ServerConnection()
    conn.send(GREETING)
    with pytest.raises(LocalProtocolError):
        conn.tls_established()


# --------------------------------------------------------------------------
# line length and bad commands


@pytest.mark.parametrize(("wire", "expected"), [
    # 512 octets including CRLF is the limit (RFC 5321 4.5.3.1.4) ...
    (b"NOOP " + b"x" * 505 + b"\r\n", [Noop("x" * 505), 250]),
    # ... one more is refused, and the line skipped up to its CRLF.
    (b"NOOP " + b"x" * 506 + b"\r\n", [Refused(500, "5.5.6")]),
    (b"MAIL FROM:<a@x.example> " + b"X" * 700 + b"\r\n", [Refused(500, "5.5.6")]),
    # Longer than even an AUTH line: skipped without being buffered.
    (b"NOOP " + b"x" * 20000 + b"\r\n", [Refused(500, "5.5.6")]),
    (b"x" * 20000 + b"\r" + b"\r\n", [Refused(500, "5.5.6")]),
    # Two overlong lines in a row are two refusals.
    (b"y" * 600 + b"\r\n" + b"z" * 13000 + b"\r\n", [Refused(500, "5.5.6"), Refused(500, "5.5.6")]),
])
def test_line_length(wire: bytes, expected: list[object]) -> None:
    driver = converse_every_way(EHLO + wire + b"NOOP\r\n")
    assert driver.log == [E, 250, *expected, Noop(), 250]


def test_skipped_line_is_not_kept_in_memory() -> None:
    conn = ServerConnection()
    conn.send(GREETING)
    conn.receive_data(b"NOOP ")
    for _ in range(1000):
        conn.receive_data(b"x" * 1000)
        assert conn.next_event() is NEED_DATA
        assert len(conn._buffer) <= conn.limits.auth_line  # bounded, whatever the line's length
    conn.receive_data(b"\r\nNOOP\r\n")
    event = conn.next_event()
    assert event == Rejected(Reply.of(500, "5.5.6", "Line too long"))
    conn.send(event.reply)
    assert conn.next_event() == Noop()


def test_too_many_bad_commands_close_the_session() -> None:
    bad = [b"XYZZY\r\n", b"MAIL FROM:broken\r\n", b"N" * 600 + b"\r\n"]
    wire = EHLO + b"".join(bad) + b"NOOP\r\n" + RCPT + b"BOGUS\r\nNOOP\r\n"
    driver = converse_every_way(wire, limits=Limits(bad_commands=3), hostname="mx.example")
    assert driver.log == [E, 250, Refused(500, "5.5.1"), Refused(501, "5.5.4"), Refused(500, "5.5.6"),
                          Noop(), 250, SEQ, Refused(421, "4.7.0")]
    last = driver.events[-1]
    assert isinstance(last, Rejected) and last.close
    assert last.reply == Reply.of(421, "4.7.0", "mx.example Too many errors")
    assert driver.out.endswith(b"421 4.7.0 mx.example Too many errors\r\n")
    assert driver.conn.state is S.CLOSED
    # Sequence errors are not counted: a legitimate client makes them.
    assert driver.conn.bad_commands == 4


# --------------------------------------------------------------------------
# LMTP (RFC 2033): one reply per accepted recipient after the message


def test_lmtp_replies_per_recipient() -> None:
    wire = LHLO + MAIL + RCPT + BAD_RCPT + b"RCPT TO:<c@y.example>\r\nDATA\r\nhi\r\n.\r\n" + b"NOOP\r\n"
    driver = converse_every_way(wire, lmtp=True)
    assert driver.log == [L, 250, M, 250, R, 250, BR, 550, Rcpt("c@y.example"), 250, Data(), 354,
                          Content(b"hi\r\n"), 250, 250, Noop(), 250]
    assert b"250 2.0.0 Queued 0\r\n250 2.0.0 Queued 1\r\n250 2.0.0 OK\r\n" in driver.out


def test_lmtp_reply_count_is_enforced() -> None:
    conn = ServerConnection(lmtp=True)
    conn.send(GREETING)
    conn.receive_data(LHLO + MAIL + RCPT + RCPT + b"DATA\r\n.\r\nNOOP\r\n")
    for reply in (250, 250, 250, 250, 354):
        conn.next_event()
        conn.send(Reply.of(reply, "2.0.0" if reply == 250 else None, "ok"))
    assert conn.next_event() == EndOfMessage()
    assert conn.reply_due == 2
    conn.send(Reply.of(250, "2.0.0", "one"))
    with pytest.raises(LocalProtocolError):
        conn.next_event()  # the second recipient's reply is still due
    with pytest.raises(LocalProtocolError):
        conn.send(Reply.of(354, None, "not a final reply"))
    conn.send(Reply.of(452, "4.2.2", "two is over quota"))
    with pytest.raises(LocalProtocolError):
        conn.send(Reply.of(250, "2.0.0", "a third reply"))
    assert conn.state is S.READY and conn.accepted_recipients == 0
    assert conn.next_event() == Noop()


def test_lmtp_refused_content_is_refused_per_recipient() -> None:
    wire = LHLO + MAIL + RCPT + RCPT + RCPT + b"DATA\r\nbare\nLF\r\n.\r\n" + MAIL
    driver = converse_every_way(wire, lmtp=True)
    bare = Refused(550, "5.5.2")
    assert driver.log == [L, 250, M, 250, R, 250, R, 250, R, 250, Data(), 354, bare, bare, bare, M, 250]


def test_lmtp_bdat_last_replies_per_recipient_and_other_chunks_once() -> None:
    wire = LHLO + MAIL + RCPT + BAD_RCPT + RCPT + b"BDAT 2\r\nabBDAT 1 LAST\r\nc" + b"NOOP\r\n"
    driver = converse_every_way(wire, lmtp=True)
    assert driver.log == [L, 250, M, 250, R, 250, BR, 550, R, 250,
                          Bdat(2), Content(b"ab"), 250, Bdat(1, True), Content(b"c"), 250, 250,
                          Noop(), 250]


def test_lmtp_oversized_bdat_is_refused_per_recipient() -> None:
    wire = LHLO + MAIL + RCPT + RCPT + b"BDAT 20 LAST\r\n" + b"x" * 20 + b"NOOP\r\n"
    driver = converse_every_way(wire, lmtp=True, limits=Limits(message_size=10))
    big = Refused(552, "5.3.4")
    assert driver.log == [L, 250, M, 250, R, 250, R, 250, Bdat(20, True), big, big, Noop(), 250]


# --------------------------------------------------------------------------
# the driver contract


def test_greeting_first() -> None:
    conn = ServerConnection()
    assert conn.state is S.GREETING and conn.reply_due == 1
    conn.receive_data(EHLO)  # an early talker: kept for later
    with pytest.raises(LocalProtocolError):
        conn.next_event()
    with pytest.raises(LocalProtocolError):
        conn.send(Reply.of(354, None, "not a greeting"))
    conn.send(GREETING)
    assert conn.state is S.FRESH
    assert conn.next_event() == E


def test_send_checks_the_reply_fits() -> None:
    conn = ServerConnection()
    conn.send(GREETING)
    with pytest.raises(LocalProtocolError):
        conn.send(Reply.of(250, "2.0.0", "nothing was asked"))
    conn.receive_data(EHLO + b"NOOP\r\n" + MAIL + RCPT + b"DATA\r\n")
    conn.next_event()
    conn.send(Reply.of(250, None, "hi"))
    assert conn.next_event() == Noop()
    with pytest.raises(LocalProtocolError):
        conn.send(Reply.of(354, None, "354 only answers DATA"))
    assert conn.reply_due == 1  # the failed send changed nothing
    conn.send(Reply.of(250, "2.0.0", "ok"))
    for _ in range(2):
        conn.next_event()
        conn.send(Reply.of(250, "2.0.0", "ok"))
    assert conn.next_event() == Data()
    with pytest.raises(LocalProtocolError):
        conn.send(Reply.of(250, "2.0.0", "DATA wants 354 or a refusal"))
    conn.send(Reply.of(554, "5.5.1", "no valid recipients"))
    assert conn.state is S.RCPT


def test_no_reply_in_the_middle_of_content_except_421() -> None:
    conn = ServerConnection()
    conn.send(GREETING)
    conn.receive_data(EHLO + MAIL + RCPT + b"BDAT 10\r\nabc")
    for code in (250, 250, 250):
        conn.next_event()
        conn.send(Reply.of(code, "2.0.0", "ok"))
    assert conn.next_event() == Bdat(10)
    assert conn.reply_due == 0  # the reply comes after the chunk
    assert conn.next_event() == MessageData(b"abc")
    with pytest.raises(LocalProtocolError):
        conn.send(Reply.of(250, "2.0.0", "too early"))
    # RFC 5321 3.8: a 421 (shutdown, timeout) may come at any time.
    assert conn.send(Reply.of(421, "4.4.2", "Timeout")) == b"421 4.4.2 Timeout\r\n"
    assert conn.state is S.CLOSED
    assert conn.next_event() == Closed()
    with pytest.raises(LocalProtocolError):
        conn.send(Reply.of(250, "2.0.0", "closed"))


def test_peer_close_between_commands() -> None:
    driver = converse_every_way(EHLO + b"NOOP\r\nQUI", close=True)
    assert driver.log == [E, 250, Noop(), 250, Closed()]
    with pytest.raises(LocalProtocolError):
        driver.conn.receive_data(b"more")


def test_commands_received_before_the_close_are_still_answered() -> None:
    driver = converse_every_way(EHLO + b"NOOP\r\nQUIT\r\n", close=True)
    assert driver.log == [E, 250, Noop(), 250, Quit(), 221]


def test_extra_verbs_follow_the_sequence_table() -> None:
    wire = b"XFOO\r\n" + EHLO + MAIL + b"XFOO bar\r\n" + RCPT
    driver = converse_every_way(wire, extra_verbs=["XFOO"])
    assert driver.log == [RawCommand("XFOO"), 250, E, 250, M, 250, RawCommand("XFOO", "bar"), 250, R, 250]
    refused = converse_every_way(b"QUIT\r\n", extra_verbs=["XFOO"],
                                 greeting=Reply.of(554, "5.3.2", "no"))
    assert refused.log == [Quit(), 221]


def test_a_refused_hello_keeps_the_state() -> None:
    def picky(event: ServerEvent, index: int) -> Reply:
        if isinstance(event, Ehlo) and event.name == "bad.example":
            return Reply.of(550, "5.7.1", "Go away")
        return default_policy(event, index)

    driver = converse(b"EHLO bad.example\r\n" + MAIL + EHLO + MAIL + RCPT + b"EHLO bad.example\r\n"
                      + b"DATA\r\n", policy=picky)
    assert driver.log == [Ehlo("bad.example"), 550, SEQ, E, 250, M, 250, R, 250,
                          Ehlo("bad.example"), 550, Data(), 354]


def test_flags_and_properties() -> None:
    conn = ServerConnection(tls=True)
    assert conn.flags == {ServerFlag.TLS} and conn.tls and not conn.authenticated
    conn.send(GREETING)
    conn.receive_data(EHLO + MAIL)
    conn.next_event()
    conn.send(Reply.of(250, None, "hi"))
    assert not conn.in_transaction
    conn.next_event()
    conn.send(Reply.of(250, "2.1.0", "ok"))
    assert conn.in_transaction and conn.state is S.MAIL


# --------------------------------------------------------------------------
# the memo of parsed command lines


def test_remembered_commands_parse_the_same_every_time() -> None:
    wire = EHLO + MAIL + RCPT + b"DATA\r\nhi\r\n.\r\n"
    cache = CommandCache()  # one server's, shared by its connections
    first = converse(wire, commands=cache)
    again = converse(wire, commands=cache)
    assert again.log == first.log and again.out == first.out
    assert again.events[1] is first.events[1]  # the same immutable Mail, parsed once


def test_auth_lines_and_junk_are_never_remembered() -> None:
    cache = CommandCache()
    secret = b"AUTH PLAIN " + PLAIN + b"\r\n"
    converse(EHLO + secret + b"XYZZY plugh\r\n" + b"MAIL FROM:<bad address>\r\n", tls=True, commands=cache)
    assert b"EHLO c.example" in cache and len(cache) == 1
    for line in (secret[:-2], b"XYZZY plugh", b"MAIL FROM:<bad address>"):
        assert line not in cache


def test_the_memo_stays_bounded() -> None:
    cache = CommandCache(size=64)
    wire = EHLO + b"".join(b"MAIL FROM:<s%d@x.example>\r\nRSET\r\n" % i for i in range(3 * 64))
    converse(wire, commands=cache)
    assert 0 < len(cache) <= 64

"""What the core counts as an error besides malformed lines: junk commands
past their limit and failed AUTH exchanges (bytes only, no sockets).

Postfix's model: ``smtpd_junk_command_limit`` NOOP/RSET/VRFY... are free,
then each one is an error; the count starts again with each delivered
message; errors past ``smtpd_hard_error_limit`` end the session (here
``Limits.junk_commands`` and ``Limits.bad_commands``, 421 4.7.0). A failed
AUTH is an error too, so a client pipelining wrong passwords is cut off at
the limit rather than answered two thousand times.
"""

from __future__ import annotations

import base64

import pytest

from mailwire.limits import Limits
from mailwire.protocol.events import (
    AuthChallenge, Credentials, Ehlo, Expn, Help, Noop, Quit, Rejected, Rset, Vrfy,
)
from mailwire.protocol.extensions import ServerExtensions
from mailwire.protocol.server import JUNK_COMMANDS, ServerConnection
from mailwire.protocol.state import ServerState
from mailwire.reply import Reply

from server_harness import Content, Refused, converse_every_way

EHLO, E = b"EHLO c.example\r\n", Ehlo("c.example")
MESSAGE = b"MAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\nDATA\r\nhi\r\n.\r\n"
TOO_MANY = Refused(421, "4.7.0")
AUTH = ServerExtensions(auth_mechanisms=("PLAIN", "LOGIN"), plaintext_auth=True)


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def test_junk_commands_are_free_up_to_the_limit_then_errors() -> None:
    wire = EHLO + b"NOOP\r\n" * 5 + b"NOOP\r\nNOOP\r\n"
    driver = converse_every_way(wire, limits=Limits(junk_commands=3, bad_commands=2), hostname="mx.example")
    # EHLO is junk too: EHLO + 2 NOOPs are free, the next 2 are errors 1 and 2,
    # the one after that is error 3, past the limit of 2: 421 and closed.
    assert driver.log == [E, 250, *[Noop(), 250] * 4, TOO_MANY]
    assert driver.conn.state is ServerState.CLOSED
    assert driver.out.endswith(b"421 4.7.0 mx.example Too many errors\r\n")


@pytest.mark.parametrize("line, event", [
    (b"NOOP\r\n", Noop()), (b"RSET\r\n", Rset()), (b"VRFY bob\r\n", Vrfy("bob")),
    (b"EXPN list\r\n", Expn("list")), (b"HELP\r\n", Help("")), (EHLO, E),
])
def test_each_junk_command_counts(line: bytes, event: object) -> None:
    assert type(event) in JUNK_COMMANDS
    driver = converse_every_way(EHLO + line * 3, limits=Limits(junk_commands=2, bad_commands=1))
    assert driver.log[-1] == TOO_MANY
    assert driver.conn.bad_commands == 2


def test_the_junk_count_starts_again_after_a_delivery() -> None:
    wire = EHLO + b"NOOP\r\n" * 2 + MESSAGE + b"NOOP\r\n" * 3 + b"QUIT\r\n"
    driver = converse_every_way(wire, limits=Limits(junk_commands=3, bad_commands=0))
    # bad_commands=0: a single error would close; none is made.
    assert driver.log[-10:] == [Content(b"hi\r\n"), 250, *[Noop(), 250] * 3, Quit(), 221]
    assert driver.conn.bad_commands == 0


def test_junk_limit_zero_means_no_limit() -> None:
    driver = converse_every_way(EHLO + b"NOOP\r\n" * 500, limits=Limits(junk_commands=0, bad_commands=0))
    assert driver.log[-2:] == [Noop(), 250]
    assert driver.conn.junk_commands == 501


def test_failed_auth_counts_as_an_error_and_ends_at_the_limit() -> None:
    wrong = b"AUTH PLAIN " + b64(b"\0user\0wrong") + b"\r\n"
    right = b"AUTH PLAIN " + b64(b"\0user\0secret") + b"\r\n"
    driver = converse_every_way(EHLO + wrong * 2000 + right, limits=Limits(bad_commands=3),
                                hostname="mx.example")
    auth = Credentials("PLAIN", "", "user", password="wrong")
    assert driver.log == [E, 250, *[auth, 535] * 4, TOO_MANY]
    assert driver.conn.state is ServerState.CLOSED
    assert not driver.conn.authenticated


def test_failed_auth_after_a_challenge_counts_too() -> None:
    wire = EHLO + (b"AUTH LOGIN\r\n" + b64(b"user") + b"\r\n" + b64(b"wrong") + b"\r\n") * 3
    driver = converse_every_way(wire, limits=Limits(bad_commands=1))
    wrong = Credentials("LOGIN", "", "user", password="wrong")
    assert driver.log == [E, 250, 334, 334, wrong, 535, 334, 334, wrong, 535, TOO_MANY]


def test_a_malformed_auth_response_is_counted_once() -> None:
    conn = ServerConnection(limits=Limits(bad_commands=5), extensions=AUTH)
    conn.send(Reply.of(220, None, "hi"))
    conn.receive_data(EHLO + b"AUTH PLAIN\r\n!!notbase64!!\r\n")
    assert conn.next_event() == E
    conn.send(Reply.of(250, None, "hi"))
    challenge = conn.next_event()
    assert isinstance(challenge, AuthChallenge) and challenge.reply.code == 334
    conn.send(challenge.reply)
    refused = conn.next_event()
    assert isinstance(refused, Rejected) and refused.reply.code == 501
    conn.send(refused.reply)
    assert conn.bad_commands == 1


def test_a_successful_or_temporary_auth_answer_is_no_error() -> None:
    for reply in (Reply.of(235, "2.7.0", "ok"), Reply.of(454, "4.7.0", "try later")):
        conn = ServerConnection(limits=Limits(bad_commands=0), extensions=AUTH)
        conn.send(Reply.of(220, None, "hi"))
        conn.receive_data(EHLO + b"AUTH PLAIN " + b64(b"\0u\0p") + b"\r\nNOOP\r\n")
        conn.next_event()
        conn.send(Reply.of(250, None, "hi"))
        assert isinstance(conn.next_event(), Credentials)
        conn.send(reply)
        assert conn.bad_commands == 0
        assert conn.authenticated is (reply.code == 235)
        assert conn.next_event() == Noop()

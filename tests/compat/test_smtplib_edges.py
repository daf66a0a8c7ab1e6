"""Edges of the drop-in against scripted servers: limits, disconnects, odd replies.

Most tests run both modules against the same script (``scripted_parity``) and
expect identical outcomes, bytes and debug output. The last section pins the
documented differences, where the drop-in is deliberately not the stdlib.
"""

from __future__ import annotations

import base64
import smtplib as std
import socket
import ssl
import sys
import types
from typing import Any

import pytest
from compat_servers import CLIENT, MAIL_FROM, TIMEOUT, Peer, ScriptedServer, Steps, connect, scripted_parity, scripted_server
from hypothesis import given, settings
from hypothesis import strategies as st

import mailwire.smtplib as mw

GREETING = b"220 mx.example.com ESMTP\r\n"
EHLO = b"250-mx.example.com\r\n250-PIPELINING\r\n250 8BITMIME\r\n"


def serve(*replies: bytes, greeting: bytes = GREETING) -> Any:
    """A script: greet, then answer each client line with the next reply in turn."""

    def script(peer: Peer) -> None:
        peer.send(greeting)
        for reply in replies:
            if not peer.line():
                return
            peer.send(reply)
        peer.drain()

    return script


def quit_after(*calls: tuple[str, tuple[Any, ...]]) -> Any:
    def scenario(m: types.ModuleType, srv: ScriptedServer, step: Steps) -> None:
        s = connect(m, srv)
        for name, args in calls:
            step(getattr(s, name), *args)
        step(s.close)

    return scenario


# -- reply limits and disconnects --------------------------------------------------------


@pytest.mark.parametrize("length, ok", [(8192, True), (8193, False), (20000, False)])
def test_reply_line_limit_is_smtplibs(length: int, ok: bool) -> None:
    line = b"250 " + b"x" * (length - 6) + b"\r\n"
    assert len(line) == length
    steps, _, _ = scripted_parity(serve(line, b"250 OK\r\n"), quit_after(("ehlo", ()), ("noop", ()), ("close", ())))
    if ok:
        assert steps[0][2][0] == 250 and steps[1][2] == (250, b"OK")
    else:
        assert steps[0][2][:2] == (std.SMTPResponseException, (500, "Line too long."))
        assert steps[1][2][0] is std.SMTPServerDisconnected


def test_overlong_continuation_line() -> None:
    scripted_parity(serve(b"250-ok\r\n250-" + b"y" * 9000 + b"\r\n250 end\r\n"), quit_after(("ehlo", ()), ("noop", ())))


def test_server_closes_instead_of_replying() -> None:
    def script(peer: Peer) -> None:
        peer.send(GREETING)
        peer.line()

    steps, _, _ = scripted_parity(script, quit_after(("ehlo", ()), ("noop", ())))
    assert steps[0][2][:2] == (std.SMTPServerDisconnected, ("Connection unexpectedly closed",))
    assert steps[1][2][:2] == (std.SMTPServerDisconnected, ("please run connect() first",))


def test_timeout_while_waiting_for_a_reply() -> None:
    def script(peer: Peer) -> None:
        peer.send(GREETING)
        peer.drain()

    def scenario(m: types.ModuleType, srv: ScriptedServer, step: Steps) -> None:
        s = m.SMTP("127.0.0.1", srv.port, local_hostname=CLIENT, timeout=0.3)
        step(s.noop)
        step(lambda: s.sock)

    steps, _, _ = scripted_parity(script, scenario)
    assert steps[0][2][:2] == (std.SMTPServerDisconnected, ("Connection unexpectedly closed: timed out",))


def test_refused_greeting_is_a_connect_error() -> None:
    def scenario(m: types.ModuleType, srv: ScriptedServer, step: Steps) -> None:
        step(m.SMTP, "127.0.0.1", srv.port, local_hostname=CLIENT, timeout=TIMEOUT)

    steps, _, _ = scripted_parity(serve(greeting=b"554-no service\r\n554 go away\r\n"), scenario)
    assert steps[0][2][:2] == (std.SMTPConnectError, (554, b"no service\ngo away"))


def test_multiline_replies_are_stripped_and_joined() -> None:
    reply = b"250-first \t\r\n250-\r\n250-  indented\r\n250 last  \r\n"
    steps, _, _ = scripted_parity(serve(reply, reply), quit_after(("noop", ()), ("help", ())))
    assert steps[0][2] == (250, b"first\n\nindented\nlast")


# -- EHLO, HELO and the features --------------------------------------------------------


def test_ehlo_features_old_style_auth_and_odd_lines() -> None:
    ehlo = (b"250-mx.example.com greets you\r\n250-AUTH=LOGIN PLAIN\r\n250-auth CRAM-MD5  \r\n"
            b"250-SIZE\t 1000 \r\n250-x-Custom=param a=b\r\n250- leading-space\r\n250-8BITMIME\r\n"
            b"250-\xc3\xa9t\xc3\xa9 param\r\n250 STARTTLS\r\n")

    def scenario(m: types.ModuleType, srv: ScriptedServer, step: Steps) -> None:
        s = connect(m, srv)
        step(s.ehlo)
        step(lambda: (s.esmtp_features, s.does_esmtp, s.ehlo_resp))
        step(s.has_extn, "Auth")
        step(s.close)

    steps, _, _ = scripted_parity(serve(ehlo), scenario)
    assert steps[1][2][0]["auth"] == " LOGIN PLAIN CRAM-MD5"


def test_ehlo_refused_falls_back_to_helo() -> None:
    script = serve(b"502 5.5.1 EHLO not implemented\r\n", b"250 mx.example.com\r\n", b"250 OK\r\n",
                   b"250 OK\r\n", b"354 go\r\n", b"250 queued\r\n", b"221 bye\r\n")

    def scenario(m: types.ModuleType, srv: ScriptedServer, step: Steps) -> None:
        s = connect(m, srv)
        step(s.sendmail, "a@example.com", "b@example.com", b"x\r\n", ["BODY=8BITMIME"])
        step(lambda: (s.helo_resp, s.ehlo_resp, s.does_esmtp, s.esmtp_features))
        step(s.quit)

    _, wire, _ = scripted_parity(script, scenario)
    assert wire[0].startswith(b"ehlo client.example\r\nhelo client.example\r\nmail %s<a@example.com>\r\n" % MAIL_FROM)


def test_both_greetings_refused() -> None:
    script = serve(b"502 no\r\n", b"501 no either\r\n")
    steps, _, _ = scripted_parity(script, quit_after(("sendmail", ("a@example.com", ["b@example.com"], b"x"))))
    assert steps[0][2][:2] == (std.SMTPHeloError, (501, b"no either"))


# -- transactions ------------------------------------------------------------------------


def test_421_to_mail_closes() -> None:
    script = serve(EHLO, b"421 4.3.2 shutting down\r\n")
    steps, _, _ = scripted_parity(script, quit_after(("sendmail", ("a@example.com", ["b@example.com"], b"x")),
                                                    ("noop", ())))
    assert steps[0][2][0] is std.SMTPSenderRefused and steps[1][2][0] is std.SMTPServerDisconnected


def test_data_not_accepted_then_reset() -> None:
    # smtplib's sendmail() lets data()'s SMTPDataError through: no RSET here.
    script = serve(EHLO, b"250 OK\r\n", b"250 OK\r\n", b"451 4.3.0 try later\r\n", b"250 OK\r\n")
    steps, wire, _ = scripted_parity(script, quit_after(("sendmail", ("a@example.com", ["b@example.com"], b"x")),
                                                       ("noop", ())))
    assert steps[0][2][:2] == (std.SMTPDataError, (451, b"4.3.0 try later"))
    assert wire[0].endswith(b"data\r\nnoop\r\n")


def test_data_refused_at_the_end_then_reset() -> None:
    def script(peer: Peer) -> None:
        peer.send(GREETING)
        for reply in (EHLO, b"250 OK\r\n", b"250 OK\r\n", b"354 go\r\n"):
            peer.line()
            peer.send(reply)
        peer.until(b"\r\n.\r\n")
        peer.send(b"554 5.7.1 spam\r\n")
        peer.line()
        peer.send(b"250 reset\r\n")
        peer.drain()

    steps, wire, _ = scripted_parity(script, quit_after(("sendmail", ("a@example.com", ["b@example.com"],
                                                                      "one\n.two\r\n..three\rfour")),))
    assert steps[0][2][:2] == (std.SMTPDataError, (554, b"5.7.1 spam"))
    assert b"one\r\n..two\r\n...three\r\nfour\r\n.\r\n" in wire[0]


def test_non_ascii_str_message_after_354_keeps_the_stdlibs_wire() -> None:
    # smtplib sends DATA, gets 354, then fails to encode: the session is left in
    # the DATA phase and whatever the program sends next is message content.
    def script(peer: Peer) -> None:
        peer.send(GREETING)
        peer.line()
        peer.send(b"354 go\r\n")
        peer.line()
        peer.send(b"250 took that as content\r\n")
        peer.drain()

    def scenario(m: types.ModuleType, srv: ScriptedServer, step: Steps) -> None:
        s = connect(m, srv)
        step(s.data, "caf\xe9")
        step(s.docmd, "NOOP")
        step(s.close)

    steps, wire, _ = scripted_parity(script, scenario)
    assert steps[0][2][0] is UnicodeEncodeError
    assert wire[0] == b"data\r\nNOOP\r\n"


# -- AUTH --------------------------------------------------------------------------------


def test_auth_challenge_loop_gives_up_then_the_next_line_answers_it() -> None:
    challenge = b"334 " + base64.b64encode(b"again?") + b"\r\n"
    # An initial response and five answers to challenges, then smtplib gives up.
    script = serve(EHLO, *[challenge] * 6, b"501 5.5.2 cannot decode\r\n", b"250 OK\r\n")

    def scenario(m: types.ModuleType, srv: ScriptedServer, step: Steps) -> None:
        s = connect(m, srv)
        step(s.ehlo)
        step(s.auth, "X-LOOP", lambda challenge=None: "answer")
        step(s.noop)  # the server reads this as the answer to its last 334
        step(s.noop)
        step(s.close)

    steps, _, _ = scripted_parity(script, scenario)
    assert steps[1][2][0] is std.SMTPException
    assert steps[2][2] == (501, b"5.5.2 cannot decode") and steps[3][2] == (250, b"OK")


def test_authobject_failing_mid_exchange() -> None:
    def answer(challenge: bytes | None = None) -> str:
        if challenge is None:
            return "first"
        raise KeyError("no second answer")

    script = serve(EHLO, b"334 " + base64.b64encode(b"more") + b"\r\n", b"501 5.5.2 huh\r\n", b"250 OK\r\n")

    def scenario(m: types.ModuleType, srv: ScriptedServer, step: Steps) -> None:
        s = connect(m, srv)
        step(s.ehlo)
        step(s.auth, "x-two-step", answer)
        step(s.rset)
        step(s.noop)
        step(s.close)

    steps, wire, _ = scripted_parity(script, scenario)
    assert steps[1][2][0] is KeyError
    assert wire[0] == b"ehlo client.example\r\nAUTH X-TWO-STEP Zmlyc3Q=\r\nrset\r\nnoop\r\n"


def test_login_with_cram_md5_and_empty_initial_response() -> None:
    challenge = b"334 " + base64.b64encode(b"<123@mx>") + b"\r\n"
    ehlo = b"250-mx\r\n250 AUTH CRAM-MD5 PLAIN LOGIN\r\n"
    script = serve(ehlo, challenge, b"535 no\r\n", b"535 no\r\n", b"334 VXNlcm5hbWU6\r\n",
                   b"334 UGFzc3dvcmQ6\r\n", b"235 ok\r\n")

    def scenario(m: types.ModuleType, srv: ScriptedServer, step: Steps) -> None:
        s = connect(m, srv)
        step(s.login, "user", "")
        step(s.close)

    steps, wire, _ = scripted_parity(script, scenario)
    assert steps[0][2] == (235, b"ok")
    assert b"AUTH PLAIN AHVzZXIA\r\n" in wire[0] and b"\r\n\r\n" in wire[0]  # LOGIN's empty password


# -- STARTTLS ----------------------------------------------------------------------------


def _tls_script(server_tls: ssl.SSLContext, starttls_reply: bytes) -> Any:
    def script(peer: Peer) -> None:
        peer.send(GREETING)
        peer.line()
        peer.send(b"250-mx.example.com\r\n250 STARTTLS\r\n")
        peer.line()
        peer.send(starttls_reply)
        if not starttls_reply.startswith(b"220"):
            peer.drain()
            return
        if not peer.start_tls(server_tls):
            return
        peer.line()
        peer.send(b"250 mx.example.com\r\n")
        peer.line()
        peer.send(b"250 OK\r\n")
        peer.drain()

    return script


def test_starttls_discards_what_the_server_pipelined_before_the_handshake(server_tls: ssl.SSLContext) -> None:
    def scenario(m: types.ModuleType, srv: ScriptedServer, step: Steps) -> None:
        s = connect(m, srv)
        step(s.starttls)
        step(s.ehlo)
        step(s.noop)
        step(s.close)

    steps, _, _ = scripted_parity(_tls_script(server_tls, b"220 go ahead\r\n250 injected\r\n"), scenario)
    assert steps[1][2] == (250, b"mx.example.com") and steps[2][2] == (250, b"OK")


def test_starttls_refused() -> None:
    steps, _, _ = scripted_parity(_tls_script(ssl.create_default_context(), b"454 4.7.0 not now\r\n"),
                                  quit_after(("starttls", ()), ("close", ())))
    assert steps[0][2][:2] == (std.SMTPResponseException, (454, b"4.7.0 not now"))


@pytest.mark.parametrize("reply", [b"220 go ahead\r\n", b"220 go ahead\r\n250 injected\r\n"])
def test_program_wraps_the_socket_itself(server_tls: ssl.SSLContext, client_tls: ssl.SSLContext, reply: bytes) -> None:
    # Programs that predate starttls() did it by hand; ``sock`` is theirs to replace.
    def scenario(m: types.ModuleType, srv: ScriptedServer, step: Steps) -> None:
        s = connect(m, srv)
        step(s.ehlo)
        step(s.docmd, "STARTTLS")
        s.sock = client_tls.wrap_socket(s.sock, server_hostname="localhost")
        s.file = None
        step(s.ehlo)
        step(s.noop)
        step(lambda: s.sock.version() is not None)
        step(s.close)

    steps, _, _ = scripted_parity(_tls_script(server_tls, reply), scenario)
    assert steps[2][2] == (250, b"mx.example.com")


def test_starttls_with_bad_arguments_after_220(server_tls: ssl.SSLContext) -> None:
    def scenario(m: types.ModuleType, srv: ScriptedServer, step: Steps) -> None:
        s = connect(m, srv)
        step(s.starttls, "key.pem", None, ssl.create_default_context())
        step(s.close)

    steps, _, _ = scripted_parity(_tls_script(server_tls, b"220 go ahead\r\n454 x\r\n"), scenario)
    if sys.version_info >= (3, 12):  # starttls(*, context=None): refused before anything is sent
        assert steps[0][2][0] is TypeError
    else:
        assert steps[0][2][:2] == (ValueError, ("context and keyfile arguments are mutually exclusive",))


# -- LMTP --------------------------------------------------------------------------------


def _lmtp_script(*final: bytes) -> Any:
    def script(peer: Peer) -> None:
        peer.send(b"220 lmtp ready\r\n")
        for reply in (b"250-lmtp\r\n250 PIPELINING\r\n", b"250 OK\r\n", b"250 OK\r\n", b"550 unknown\r\n",
                      b"250 OK\r\n", b"354 go\r\n"):
            peer.line()
            peer.send(reply)
        peer.until(b"\r\n.\r\n")
        peer.send(b"".join(final))
        while peer.line():
            peer.send(b"250 later reply\r\n")

    return script


def _lmtp_scenario(m: types.ModuleType, srv: ScriptedServer, step: Steps) -> None:
    s = m.LMTP("127.0.0.1", srv.port, local_hostname=CLIENT, timeout=TIMEOUT)
    s.set_debuglevel(1)
    step(s.sendmail, "a@example.com", ["one@example.com", "bad@example.com", "two@example.com"], b"x\r\n")
    step(s.noop)
    step(s.noop)
    step(s.quit)


def test_lmtp_first_reply_decides_the_rest_come_later() -> None:
    steps, _, _ = scripted_parity(_lmtp_script(b"250 2.0.0 one ok\r\n", b"452 4.2.2 two over quota\r\n"),
                                  _lmtp_scenario)
    assert steps[0][2] == {"bad@example.com": (550, b"unknown")}
    assert steps[1][2] == (452, b"4.2.2 two over quota")  # as smtplib: the stale second reply
    assert steps[2][2] == (250, b"later reply")


def test_lmtp_first_reply_refused() -> None:
    steps, _, _ = scripted_parity(_lmtp_script(b"552 5.2.2 one full\r\n", b"250 2.0.0 two ok\r\n"), _lmtp_scenario)
    assert steps[0][2][:2] == (std.SMTPDataError, (552, b"5.2.2 one full"))


def test_lmtp_replies_records_each_accepted_recipient() -> None:
    with scripted_server(_lmtp_script(b"250 2.0.0 one ok\r\n", b"452 4.2.2 two over quota\r\n")) as srv:
        s = mw.LMTP("127.0.0.1", srv.port, local_hostname=CLIENT, timeout=TIMEOUT)
        refused = s.sendmail("a@example.com", ["one@example.com", "bad@example.com", "two@example.com"], b"x\r\n")
        assert refused == {"bad@example.com": (550, b"unknown")}
        assert s.lmtp_replies == {"one@example.com": (250, b"2.0.0 one ok"),
                                  "two@example.com": (452, b"4.2.2 two over quota")}
        assert s.getreply() == (452, b"4.2.2 two over quota")
        s.close()


def test_lmtp_server_leaves_after_the_first_reply() -> None:
    def script(peer: Peer) -> None:
        peer.send(b"220 lmtp ready\r\n")
        for reply in (b"250 lmtp\r\n", b"250 OK\r\n", b"250 OK\r\n", b"250 OK\r\n", b"354 go\r\n"):
            peer.line()
            peer.send(reply)
        peer.until(b"\r\n.\r\n")
        peer.send(b"250 2.0.0 one ok\r\n")

    def scenario(m: types.ModuleType, srv: ScriptedServer, step: Steps) -> None:
        s = m.LMTP("127.0.0.1", srv.port, local_hostname=CLIENT, timeout=TIMEOUT)
        step(s.sendmail, "a@example.com", ["one@example.com", "two@example.com"], b"x\r\n")
        step(lambda: s.lmtp_replies if m is mw else {"one@example.com": (250, b"2.0.0 one ok")})
        with pytest.raises(std.SMTPServerDisconnected):  # smtplib learns it later, on reading
            s.noop()

    steps, _, _ = scripted_parity(script, scenario)
    assert steps[0][2] == {}


def test_lmtp_unix_socket_connect_failure_and_debug() -> None:
    def scenario(m: types.ModuleType, srv: ScriptedServer, step: Steps) -> None:
        s = m.LMTP(local_hostname=CLIENT, timeout=TIMEOUT)
        s.set_debuglevel(1)
        step(s.connect, "/nonexistent/lmtp.sock")
        step(lambda: s.sock)
        step(m.LMTP(local_hostname=CLIENT, timeout=0).connect, "/nonexistent/lmtp.sock")
        step(s.connect, "127.0.0.1", srv.port)
        step(s.close)

    scripted_parity(serve(greeting=b"220 lmtp\r\n"), scenario)


# -- pure functions ---------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(["\r", "\n", ".", "a", " ", "é", "\x00", "\udc80"]), max_size=40))
def test_quotedata_is_the_stdlibs(text: str) -> None:
    assert mw.quotedata(text) == std.quotedata(text)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_quoteaddr_is_the_stdlibs(text: str) -> None:
    assert mw.quoteaddr(text) == std.quoteaddr(text)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet=st.sampled_from(["A", "a", "u", "t", "h", "=", " ", "-", "\t", "1", "é", "x"]),
                        max_size=12), max_size=6))
def test_features_are_parsed_as_the_stdlib_does(lines: list[str]) -> None:
    # smtplib's own ehlo() on a canned reply against the drop-in's parse of it.
    # Lines as getreply() hands them over: each stripped of spaces, tabs, CR, LF.
    msg = "\n".join(["mx.example.com", *(line.strip(" \t\r\n") for line in lines)]).encode("latin-1")
    theirs = std.SMTP(local_hostname=CLIENT)
    theirs.putcmd = lambda cmd, args="": None  # type: ignore[method-assign]
    theirs.getreply = lambda: (250, msg)  # type: ignore[method-assign]
    theirs.ehlo()
    ours = mw.SMTP(local_hostname=CLIENT)
    ours.putcmd = lambda cmd, args="": None  # type: ignore[method-assign]
    ours.getreply = lambda: (250, msg)  # type: ignore[method-assign]
    ours.ehlo()
    assert ours.esmtp_features == theirs.esmtp_features


# -- documented differences -------------------------------------------------------------


def test_bare_line_endings_in_bytes_are_normalised() -> None:
    def script(peer: Peer) -> None:
        peer.send(GREETING)
        peer.line()
        peer.send(b"354 go\r\n")
        peer.until(b"\r\n.\r\n")
        peer.send(b"250 ok\r\n")
        peer.drain()

    with scripted_server(script) as srv:
        s = mw.SMTP("127.0.0.1", srv.port, local_hostname=CLIENT, timeout=TIMEOUT)
        assert s.data(b"one\ntwo\r.\nthree") == (250, b"ok")
        s.close()
    # smtplib would send b"one\ntwo\r.\nthree\r\n.\r\n": a lax server may end the data early.
    assert srv.peers[0].received == b"data\r\none\r\ntwo\r\n..\r\nthree\r\n.\r\n"


@pytest.mark.parametrize("reply, expected", [
    (b"2x0 odd code\r\n", (-1, b"odd code")),
    (b"600 out of range\r\n", (600, b"out of range")),
    (b"250-a\r\n251 b\r\n", (251, b"a\nb")),
])
def test_malformed_replies_are_handed_out_as_smtplib_reads_them(reply: bytes, expected: tuple[int, bytes]) -> None:
    def scenario(m: types.ModuleType, srv: ScriptedServer, step: Steps) -> None:
        s = connect(m, srv)
        step(s.noop)
        s.close()

    steps, _, _ = scripted_parity(serve(reply), scenario)
    assert steps[0][2] == expected


@pytest.mark.parametrize("reply", [b"2x0 odd code\r\n", b"600 out of range\r\n", b"250-a\r\n251 b\r\n",
                                   b"250 bare LF\n" + b"z" * 9000])
def test_malformed_replies_end_the_connection(reply: bytes) -> None:
    # RFC 5321 4.2.1: fatal. smtplib would read on, taking whatever follows as
    # the replies to later commands.
    with scripted_server(serve(reply, b"250 OK\r\n")) as srv:
        s = mw.SMTP("127.0.0.1", srv.port, local_hostname=CLIENT, timeout=TIMEOUT)
        try:
            s.noop()
        except std.SMTPResponseException as err:  # the bare LF: a line too long
            assert (err.smtp_code, err.smtp_error) == (500, "Line too long.")
        assert s.sock is None and s.file is None
        with pytest.raises(std.SMTPServerDisconnected, match="please run connect"):
            s.noop()


@pytest.mark.parametrize("greeting, code, text", [
    (b"199 no hello for you!\r\n", 199, b"no hello for you!"),
    (b"600 beyond\r\n", 600, b"beyond"),
    (b"hello there\r\n", -1, b"o there"),  # smtplib: the text after four octets
    (b"220-mx\r\n221 mixed\r\n", 221, b"mx\nmixed"),
])
def test_a_greeting_with_an_invalid_code_is_a_connect_error(greeting: bytes, code: int, text: bytes) -> None:
    def scenario(m: types.ModuleType, srv: ScriptedServer, step: Steps) -> None:
        step(m.SMTP, "127.0.0.1", srv.port, local_hostname=CLIENT, timeout=TIMEOUT)

    steps, _, _ = scripted_parity(serve(greeting=greeting), scenario)
    assert steps[0][2][:2] == (std.SMTPConnectError, (code, text))


def test_getreply_without_a_connection() -> None:
    s = mw.SMTP(local_hostname=CLIENT)
    with pytest.raises(std.SMTPServerDisconnected, match="please run connect"):
        s.getreply()


def test_sock_is_the_live_socket_and_file_stays_none() -> None:
    with scripted_server(serve(b"250 OK\r\n")) as srv:
        s = mw.SMTP("127.0.0.1", srv.port, local_hostname=CLIENT, timeout=TIMEOUT)
        assert isinstance(s.sock, socket.socket) and s.sock.getpeername()[1] == srv.port
        assert s.noop() == (250, b"OK")
        assert s.file is None
        s.close()
        assert s.sock is None

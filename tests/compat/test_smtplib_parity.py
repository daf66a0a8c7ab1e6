"""The stdlib's smtplib and mailwire.smtplib, side by side against the same server.

Each scenario is a function of the module under test. It runs once with
CPython's ``smtplib`` and once with ``mailwire.smtplib`` against one recording
aiosmtpd; the test compares every step's outcome (return value, or the
exception's type, args, ``smtp_code``, ``smtp_error``, ``recipients``,
``sender``) and the exact bytes the server received on each connection.
"""

from __future__ import annotations

import re
import smtplib as std
import ssl
import types
from email.message import EmailMessage

import pytest
from compat_servers import CLIENT, MAIL_FROM, TIMEOUT, USERS, Handler, Server, Steps, connect, parity, recording_server, run

import mailwire.smtplib as mw


def message(**headers: str) -> EmailMessage:
    msg = EmailMessage()
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content("Hello.\n.A line with a dot\nFrom the start of a line\n")
    return msg


# -- sendmail ------------------------------------------------------------------------


def test_sendmail_with_refused_recipients_returns_them() -> None:
    handler = Handler(refuse_rcpt={"bad@example.com": "550 5.1.1 No such user", "later@example.com": "450 4.2.0 Try later"})

    def scenario(m: types.ModuleType, srv: Server, step: Steps) -> None:
        s = connect(m, srv)
        step(s.sendmail, "a@example.com", ["b@example.com", "bad@example.com", "later@example.com"],
             "Subject: hi\n\n.dot\nbody")
        step(s.sendmail, "a@example.com", "b@example.com", b"")
        step(s.quit)

    with recording_server(handler) as srv:
        steps, _, _ = parity(scenario, srv)
    assert steps[0][2] == {
        "bad@example.com": (550, b"5.1.1 No such user"), "later@example.com": (450, b"4.2.0 Try later"),
    }


def test_all_recipients_refused_raises_and_resets() -> None:
    handler = Handler(refuse_rcpt={"x@example.com": "550 nope", "y@example.com": "553 bad"})

    def scenario(m: types.ModuleType, srv: Server, step: Steps) -> None:
        s = connect(m, srv)
        step(s.sendmail, "a@example.com", ["x@example.com", "y@example.com"], b"body\r\n")
        step(s.noop)
        step(s.quit)

    with recording_server(handler) as srv:
        steps, wire, _ = parity(scenario, srv)
    assert steps[0][0] == "raised" and steps[0][2][0] is mw.SMTPRecipientsRefused
    assert b"rset\r\n" in wire[0] and b"data\r\n" not in wire[0]


def test_sender_refused() -> None:
    handler = Handler(refuse_mail={"spammer@example.com": "550 5.7.1 Go away"})

    def scenario(m: types.ModuleType, srv: Server, step: Steps) -> None:
        s = connect(m, srv)
        step(s.sendmail, "spammer@example.com", ["b@example.com"], b"body\r\n")
        step(s.sendmail, "Good Sender <good@example.com>", ["b@example.com"], b"body\r\n")
        step(s.quit)

    with recording_server(handler) as srv:
        steps, _, _ = parity(scenario, srv)
    assert steps[0][2][0] is mw.SMTPSenderRefused and steps[0][2][5] == "spammer@example.com"


def test_data_refused() -> None:
    def scenario(m: types.ModuleType, srv: Server, step: Steps) -> None:
        s = connect(m, srv)
        step(s.sendmail, "a@example.com", ["b@example.com"], b"body\r\n")
        step(s.rset)
        step(s.quit)

    with recording_server(Handler(data_reply="554 5.6.0 Content rejected")) as srv:
        steps, _, _ = parity(scenario, srv)
    assert steps[0][2][:4] == (mw.SMTPDataError, (554, b"5.6.0 Content rejected"), 554, b"5.6.0 Content rejected")


def test_421_on_rcpt_closes_the_connection() -> None:
    def scenario(m: types.ModuleType, srv: Server, step: Steps) -> None:
        s = connect(m, srv)
        step(s.sendmail, "a@example.com", ["ok@example.com", "bye@example.com"], b"body\r\n")
        step(lambda: s.sock)
        step(s.noop)

    with recording_server(Handler(refuse_rcpt={"bye@example.com": "421 4.3.0 Closing"})) as srv:
        steps, _, _ = parity(scenario, srv)
    assert steps[1][2] is None
    assert steps[2][2][0] is mw.SMTPServerDisconnected


def test_mail_rcpt_data_one_by_one_with_options() -> None:
    def scenario(m: types.ModuleType, srv: Server, step: Steps) -> None:
        s = connect(m, srv)
        step(s.ehlo_or_helo_if_needed)
        step(s.mail, "Someone <a@example.com>", ["BODY=8BITMIME", "size=10"])
        step(s.rcpt, "b@example.com", ["NOTIFY=NEVER"])
        step(s.data, "line one\rline two\nline three\r\n.\r\n..")
        step(s.rset)
        step(s.mail, "a@example.com", ["SMTPUTF8"])
        step(lambda: s.command_encoding)
        step(s.rset)
        step(lambda: s.command_encoding)
        step(s.quit)

    with recording_server() as srv:
        parity(scenario, srv)


# -- send_message --------------------------------------------------------------------


def test_send_message_bcc_is_never_transmitted() -> None:
    def scenario(m: types.ModuleType, srv: Server, step: Steps) -> None:
        s = connect(m, srv)
        msg = message(From="Alice <alice@example.com>", To="bob@example.com, Carol <carol@example.com>",
                      Cc="dave@example.com", Bcc="eve@example.com", Subject="hello")
        step(s.send_message, msg)
        step(s.send_message, message(Sender="sender@example.com", From="a@example.com, b@example.com", To="x@example.com"))
        step(s.send_message, msg, "override@example.com", ["only@example.com"])
        step(s.send_message, msg, None, "single@example.com")
        step(s.quit)

    with recording_server() as srv:
        _, wire, _ = parity(scenario, srv)
        envelopes = srv.handler.envelopes[-4:]  # the drop-in's run
    assert b"eve@example.com" in wire[0]  # in the envelope ...
    assert all(b"eve@" not in e.original_content for e in envelopes)  # ... never in the content
    assert envelopes[0].rcpt_tos == ["bob@example.com", "carol@example.com", "eve@example.com", "dave@example.com"]
    assert envelopes[1].mail_from == "sender@example.com"
    assert envelopes[2].mail_from == "override@example.com" and envelopes[2].rcpt_tos == ["only@example.com"]
    assert envelopes[3].rcpt_tos == ["single@example.com"]


def test_send_message_resent_headers() -> None:
    def scenario(m: types.ModuleType, srv: Server, step: Steps) -> None:
        s = connect(m, srv)
        msg = message(From="orig@example.com", To="first@example.com", Bcc="hidden@example.com")
        msg["Resent-Date"] = "Mon, 1 Jan 2024 00:00:00 +0000"
        msg["Resent-From"] = "resender@example.com"
        msg["Resent-To"] = "again@example.com"
        msg["Resent-Bcc"] = "secret@example.com"
        step(s.send_message, msg)
        msg["Resent-Date"] = "Tue, 2 Jan 2024 00:00:00 +0000"
        step(s.send_message, msg)
        step(s.quit)

    with recording_server() as srv:
        steps, _, _ = parity(scenario, srv)
        [envelope] = srv.handler.envelopes[-1:]
    assert envelope.mail_from == "resender@example.com"
    assert envelope.rcpt_tos == ["again@example.com", "secret@example.com"]
    assert b"secret@" not in envelope.original_content and b"hidden@" not in envelope.original_content
    assert steps[1][2][0] is ValueError


def test_send_message_smtputf8() -> None:
    def scenario(m: types.ModuleType, srv: Server, step: Steps) -> None:
        s = connect(m, srv)
        msg = message(From="Jörg <jörg@exämple.com>", To="日本@example.jp", Subject="Grüße")
        step(s.send_message, msg)
        step(lambda: s.command_encoding)
        step(s.rset)
        step(s.quit)

    with recording_server() as srv:
        _, wire, _ = parity(scenario, srv)
    assert b"mail %s<j\xc3\xb6rg@ex\xc3\xa4mple.com> size=" % MAIL_FROM in wire[0]
    assert b"SMTPUTF8 BODY=8BITMIME\r\n" in wire[0]


def test_send_message_smtputf8_not_supported() -> None:
    def scenario(m: types.ModuleType, srv: Server, step: Steps) -> None:
        s = connect(m, srv)
        step(s.send_message, message(From="jörg@example.com", To="b@example.com"))
        step(s.sendmail, "jörg@example.com", ["b@example.com"], b"x")
        step(s.mail, "a@example.com", ["smtputf8"])
        step(s.quit)

    with recording_server(enable_SMTPUTF8=False) as srv:
        steps, _, _ = parity(scenario, srv)
    assert steps[0][2][0] is mw.SMTPNotSupportedError
    assert steps[1][2][0] is UnicodeEncodeError


# -- AUTH ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "exclude, initial_response_ok",
    [([], True), (["CRAM-MD5"], True), (["CRAM-MD5"], False), (["CRAM-MD5", "PLAIN"], True)],
    ids=["cram-md5", "plain", "plain-no-initial-response", "login"],
)
def test_login_each_mechanism(exclude: list[str], initial_response_ok: bool) -> None:
    def scenario(m: types.ModuleType, srv: Server, step: Steps) -> None:
        s = connect(m, srv)
        step(s.login, "alice", "wrong", initial_response_ok=initial_response_ok)
        step(s.login, "alice", USERS["alice"], initial_response_ok=initial_response_ok)
        step(s.sendmail, "alice@example.com", ["b@example.com"], b"hi\r\n")
        step(s.quit)

    with recording_server(auth=True, auth_exclude_mechanism=exclude) as srv:
        steps, wire, _ = parity(scenario, srv)
    assert steps[0][2][0] is mw.SMTPAuthenticationError
    assert steps[1][2][0] == 235
    mechanism = ["CRAM-MD5", "PLAIN", "PLAIN", "LOGIN"][[[], ["CRAM-MD5"], ["CRAM-MD5"], ["CRAM-MD5", "PLAIN"]].index(exclude)]
    assert f"AUTH {mechanism}".encode() in wire[0]


def test_auth_without_support_and_custom_authobject() -> None:
    def scenario(m: types.ModuleType, srv: Server, step: Steps) -> None:
        s = connect(m, srv)
        step(s.login, "alice", "wonderland")
        step(s.auth, "plain", lambda challenge=None: "\0alice\0wonderland")
        step(s.quit)

    with recording_server() as srv:
        steps, _, _ = parity(scenario, srv)
    assert steps[0][2][0] is mw.SMTPNotSupportedError


def test_auth_with_authobject_and_no_common_mechanism() -> None:
    def answer(challenge: bytes | None = None) -> str:
        return "alice" if challenge is None or challenge.startswith(b"User") else "wonderland"

    def scenario(m: types.ModuleType, srv: Server, step: Steps) -> None:
        s = connect(m, srv)
        step(s.ehlo)
        s.esmtp_features["auth"] = " XOAUTH2 GSSAPI"
        step(s.login, "alice", "wonderland")
        step(s.auth, "login", answer, initial_response_ok=False)
        step(s.auth, "login", answer)
        step(s.noop)
        step(s.quit)

    with recording_server(auth=True) as srv:
        steps, _, _ = parity(scenario, srv)
    assert steps[1][2][:2] == (mw.SMTPException, ("No suitable authentication method found.",))
    assert steps[2][2][0] == 235


# -- STARTTLS and SMTP_SSL ---------------------------------------------------------


def test_starttls_unverified_by_default_then_a_transaction(server_tls: ssl.SSLContext) -> None:
    def scenario(m: types.ModuleType, srv: Server, step: Steps) -> None:
        s = connect(m, srv)
        step(s.starttls)
        step(lambda: (s.ehlo_resp, s.helo_resp, s.esmtp_features, s.does_esmtp))
        step(lambda: isinstance(s.sock, ssl.SSLSocket))
        step(s.ehlo)
        step(s.has_extn, "starttls")
        step(s.starttls)
        step(s.sendmail, "a@example.com", ["b@example.com"], b"over TLS\r\n")
        step(s.quit)

    with recording_server(starttls=server_tls) as srv:
        steps, wire, _ = parity(scenario, srv)
    assert b"STARTTLS\r\n" in wire[0] and b"over TLS" in wire[0]
    assert steps[5][2][0] is mw.SMTPNotSupportedError


def test_starttls_with_a_verifying_context(server_tls: ssl.SSLContext, client_tls: ssl.SSLContext) -> None:
    def scenario(m: types.ModuleType, srv: Server, step: Steps) -> None:
        s = m.SMTP(local_hostname=CLIENT, timeout=TIMEOUT)
        step(s.connect, "127.0.0.1", srv.port)
        s._host = "localhost"  # the name the certificate is for (SMTP(host) would set it)
        step(s.starttls, context=client_tls)
        step(s.noop)
        step(s.quit)
        s2 = connect(m, srv)
        step(s2.starttls, context=client_tls)  # server_hostname="127.0.0.1": in the cert too
        step(s2.quit)

    with recording_server(starttls=server_tls) as srv:
        parity(scenario, srv)


def test_starttls_not_offered() -> None:
    def scenario(m: types.ModuleType, srv: Server, step: Steps) -> None:
        s = connect(m, srv)
        step(s.starttls)
        step(s.quit)

    with recording_server() as srv:
        steps, _, _ = parity(scenario, srv)
    assert steps[0][2][:2] == (mw.SMTPNotSupportedError, ("STARTTLS extension not supported by server.",))


def test_smtp_ssl(server_tls: ssl.SSLContext, client_tls: ssl.SSLContext) -> None:
    def scenario(m: types.ModuleType, srv: Server, step: Steps) -> None:
        with m.SMTP_SSL(srv.host, srv.port, local_hostname=CLIENT, timeout=TIMEOUT) as s:
            step(s.sendmail, "a@example.com", ["b@example.com"], b"implicit TLS\r\n")
            step(lambda: s.sock.version() is not None)
        with m.SMTP_SSL(srv.host, srv.port, local_hostname=CLIENT, timeout=TIMEOUT, context=client_tls) as s:
            step(s.noop)

    with recording_server(implicit=server_tls) as srv:
        parity(scenario, srv)


# -- other commands ------------------------------------------------------------------


def test_verify_expn_help_noop_rset_docmd_helo() -> None:
    def scenario(m: types.ModuleType, srv: Server, step: Steps) -> None:
        s = connect(m, srv)
        step(s.verify, "Alice <alice@example.com>")
        step(s.vrfy, "nobody@example.com")
        step(s.expn, "staff")
        step(s.help)
        step(s.help, "MAIL")
        step(s.noop)
        step(s.rset)
        step(s.docmd, "XFOO", "bar baz")
        step(s.docmd, "NOOP")
        step(s.putcmd, "noop")
        step(s.getreply)
        step(s.send, "NOOP\r\n")
        step(s.getreply)
        step(s.send, b"NOOP\r\n")
        step(s.getreply)
        step(s.helo)
        step(lambda: (s.helo_resp, s.ehlo_resp, s.does_esmtp))
        step(s.ehlo, "other.example")
        step(lambda: (s.ehlo_resp, s.esmtp_features, s.does_esmtp, s.has_extn("SIZE"), s.has_extn("nope")))
        step(s.quit)
        step(lambda: (s.ehlo_resp, s.esmtp_features, s.sock, s.file))
        step(s.noop)
        step(s.connect, srv.host, srv.port)
        step(s.noop)
        step(s.close)
        step(s.close)

    with recording_server() as srv:
        parity(scenario, srv)


def test_context_manager_and_host_port_string() -> None:
    def scenario(m: types.ModuleType, srv: Server, step: Steps) -> None:
        with m.SMTP(f"{srv.host}:{srv.port}", local_hostname=CLIENT, timeout=TIMEOUT) as s:
            step(s.noop)
        step(lambda: s.sock)
        s = m.SMTP(local_hostname=CLIENT, timeout=TIMEOUT)
        step(s.noop)
        step(s.connect, f"{srv.host}:{srv.port}")
        step(s.ehlo)
        step(s.quit)
        step(s.connect, srv.host, "x")  # nonnumeric port: connect() passes it on
        step(m.SMTP(local_hostname=CLIENT).connect, f"{srv.host}:x")

    with recording_server() as srv:
        parity(scenario, srv)


# -- LMTP over a Unix socket -----------------------------------------------------------


def test_lmtp_over_a_unix_socket() -> None:
    def scenario(m: types.ModuleType, srv: Server, step: Steps) -> None:
        s = m.LMTP(srv.host, local_hostname=CLIENT, timeout=TIMEOUT)
        step(s.ehlo)
        step(s.sendmail, "a@example.com", ["one@example.com", "two@example.com", "bad@example.com"], b"hi\r\n")
        step(s.getreply)  # the reply for the second recipient, as smtplib reads it
        step(s.noop)
        step(s.quit)

    handler = Handler(refuse_rcpt={"bad@example.com": "550 5.1.1 unknown"}, lmtp_per_recipient=True)
    with recording_server(handler, lmtp=True, unix=True) as srv:
        steps, wire, _ = parity(scenario, srv)
    assert wire[0].startswith(b"lhlo client.example\r\n")
    assert steps[1][2] == {"bad@example.com": (550, b"5.1.1 unknown")}
    assert steps[2][2] == (250, b"2.0.0 <two@example.com> delivered")


def test_lmtp_replies_per_recipient() -> None:
    handler = Handler(lmtp_per_recipient=True)
    with recording_server(handler, lmtp=True, unix=True) as srv:
        s = mw.LMTP(srv.host, local_hostname=CLIENT, timeout=TIMEOUT)
        assert s.lmtp_replies is None
        assert s.sendmail("a@example.com", ["one@example.com", "two@example.com"], b"hi\r\n") == {}
        assert s.lmtp_replies == {
            "one@example.com": (250, b"2.0.0 <one@example.com> delivered"),
            "two@example.com": (250, b"2.0.0 <two@example.com> delivered"),
        }
        assert s.getreply() == (250, b"2.0.0 <two@example.com> delivered")  # drained as with smtplib
        assert s.noop() == (250, b"OK")  # and back in step
        s.quit()


# -- debug output ----------------------------------------------------------------------


def test_debuglevel_1_output_is_the_stdlibs() -> None:
    def scenario(m: types.ModuleType, srv: Server, step: Steps) -> None:
        s = m.SMTP(local_hostname=CLIENT, timeout=TIMEOUT)
        s.set_debuglevel(1)
        step(s.connect, srv.host, srv.port)
        step(s.sendmail, "a@example.com", ["b@example.com", "bad@example.com"], b"Subject: x\r\n\r\n.dot\r\n")
        step(s.login, "alice", "wonderland")
        step(s.verify, "alice@example.com")
        step(s.quit)

    with recording_server(Handler(refuse_rcpt={"bad@example.com": "550 no"}), auth=True) as srv:
        _, _, output = parity(scenario, srv)
    assert "connect: to ('127.0.0.1'," in output
    assert "send: 'ehlo client.example\\r\\n'" in output
    assert "reply: b'250-mx.example.com\\r\\n'" in output
    assert "reply: retcode (250); Msg: b'mx.example.com\\n" in output
    assert "data: (354, b'End data with <CR><LF>.<CR><LF>')" in output
    assert "send: b'Subject: x\\r\\n\\r\\n..dot\\r\\n.\\r\\n'" in output


def test_debuglevel_2_adds_timestamps(server_tls: ssl.SSLContext) -> None:
    def scenario(m: types.ModuleType, srv: Server, step: Steps) -> None:
        s = m.SMTP_SSL(local_hostname=CLIENT, timeout=TIMEOUT)
        s.set_debuglevel(2)
        step(s.connect, srv.host, srv.port)
        step(s.noop)
        step(s.quit)

    with recording_server(implicit=server_tls) as srv:
        expected = run(scenario, std, srv)
        actual = run(scenario, mw, srv)
    stamp = re.compile(r"^\d\d:\d\d:\d\d\.\d+ ", re.M)
    assert stamp.match(actual[2]) and len(stamp.findall(actual[2])) == len(actual[2].splitlines())
    assert stamp.sub("", actual[2]) == stamp.sub("", expected[2])
    assert actual[:2] == expected[:2]

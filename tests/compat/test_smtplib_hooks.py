"""Programs that hook the drop-in: a subclass overriding send, putcmd, docmd or getreply.

smtplib writes every byte through ``send`` (commands via ``putcmd``, the
message from ``data``), and its methods call ``putcmd``/``docmd``/``getreply``
in a fixed pattern. Programs rely on that: Django's own test
``test_email_msg_uses_crlf`` patches ``SMTP.send`` to capture the wire. Each
scenario runs with both modules (``parity``): the calls a tracing subclass
sees, with their arguments and results, must be the stdlib's, and the bytes
that went through ``send`` must be every byte the server received.
"""

from __future__ import annotations

import ssl
import types
from typing import Any

import pytest
from compat_servers import CLIENT, TIMEOUT, USERS, Handler, Server, Steps, parity, recording_server

import mailwire.smtplib as mw


def tracing(cls: type) -> Any:
    """``cls`` with send, putcmd, docmd and getreply recorded in ``trace``."""

    class Tracing(cls):  # type: ignore[valid-type,misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.trace: list[tuple[Any, ...]] = []
            super().__init__(*args, **kwargs)

        def send(self, s: str | bytes) -> None:
            self.trace.append(("send", s))
            super().send(s)

        def putcmd(self, cmd: str, args: str = "") -> None:
            self.trace.append(("putcmd", cmd, args))
            super().putcmd(cmd, args)

        def docmd(self, cmd: str, args: str = "") -> tuple[int, bytes]:
            self.trace.append(("docmd", cmd, args))
            return super().docmd(cmd, args)  # type: ignore[no-any-return]

        def getreply(self) -> tuple[int, bytes]:
            reply = super().getreply()
            self.trace.append(("getreply", reply))
            return reply  # type: ignore[no-any-return]

    return Tracing


def sent(trace: list[tuple[Any, ...]]) -> bytes:
    """Every byte that went through ``send``, as it encodes it (ASCII or UTF-8)."""
    return b"".join(s if isinstance(s, bytes) else s.encode("utf-8") for kind, s, *_ in trace if kind == "send")


def traced_parity(scenario: Any, srv: Server) -> list[tuple[Any, ...]]:
    """Run ``scenario`` with both modules; its last step must return the trace."""
    steps, wire, _ = parity(scenario, srv)
    trace: list[tuple[Any, ...]] = steps[-1][2]
    assert sent(trace) == b"".join(wire)
    return trace


def test_a_whole_session_goes_through_send_putcmd_docmd_and_getreply() -> None:
    handler = Handler(refuse_rcpt={"bad@example.com": "550 5.1.1 No such user"})

    def scenario(m: types.ModuleType, srv: Server, step: Steps) -> None:
        s = tracing(m.SMTP)(srv.host, srv.port, local_hostname=CLIENT, timeout=TIMEOUT)
        step(s.login, "alice", USERS["alice"])  # EHLO, then AUTH CRAM-MD5 and its answer
        step(s.sendmail, "alice@example.com", ["b@example.com", "bad@example.com"], "Subject: hi\n\n.dot\nbare\rCR\n")
        step(s.sendmail, "alice@example.com", ["bad@example.com"], b"refused\r\n")  # RSET after
        step(s.mail, "alice@example.com", ["BODY=8BITMIME"])
        step(s.rcpt, "b@example.com")
        step(s.data, b"by hand\r\n")
        step(s.verify, "alice@example.com")
        step(s.expn, "staff")
        step(s.help)
        step(s.noop)
        step(s.rset)
        step(s.docmd, "NOOP", "x")
        step(s.quit)
        step(lambda: s.trace)

    with recording_server(handler, auth=True) as srv:
        trace = traced_parity(scenario, srv)
    # What Django looks for: the message is the send() right after "data".
    data = trace.index(("send", "data\r\n"))
    assert trace[data + 2] == ("send", b"Subject: hi\r\n\r\n..dot\r\nbare\r\nCR\r\n.\r\n")


@pytest.mark.parametrize("mechanism, initial_response_ok", [("LOGIN", False), ("PLAIN", True), ("PLAIN", False)])
def test_auth_answers_go_through_docmd(mechanism: str, initial_response_ok: bool) -> None:
    def scenario(m: types.ModuleType, srv: Server, step: Steps) -> None:
        s = tracing(m.SMTP)(srv.host, srv.port, local_hostname=CLIENT, timeout=TIMEOUT)
        step(s.ehlo)
        s.user, s.password = "alice", "wrong"
        method = s.auth_login if mechanism == "LOGIN" else s.auth_plain
        step(s.auth, mechanism, method, initial_response_ok=initial_response_ok)
        s.user, s.password = "alice", USERS["alice"]
        step(s.auth, mechanism, method, initial_response_ok=initial_response_ok)
        step(s.quit)
        step(lambda: s.trace)

    with recording_server(auth=True) as srv:
        traced_parity(scenario, srv)


def test_starttls_and_what_follows_go_through_send(server_tls: ssl.SSLContext) -> None:
    def scenario(m: types.ModuleType, srv: Server, step: Steps) -> None:
        s = tracing(m.SMTP)(srv.host, srv.port, local_hostname=CLIENT, timeout=TIMEOUT)
        step(s.starttls)
        step(s.sendmail, "a@example.com", ["b@example.com"], b"over TLS\r\n")
        step(s.quit)
        step(lambda: s.trace)

    with recording_server(starttls=server_tls) as srv:
        trace = traced_parity(scenario, srv)
    assert ("docmd", "STARTTLS", "") in trace


def test_smtp_ssl_goes_through_send(server_tls: ssl.SSLContext) -> None:
    def scenario(m: types.ModuleType, srv: Server, step: Steps) -> None:
        with tracing(m.SMTP_SSL)(srv.host, srv.port, local_hostname=CLIENT, timeout=TIMEOUT) as s:
            step(s.sendmail, "a@example.com", ["b@example.com"], b"implicit TLS\r\n")
        step(lambda: s.trace)

    with recording_server(implicit=server_tls) as srv:
        traced_parity(scenario, srv)


def test_lmtp_goes_through_send() -> None:
    def scenario(m: types.ModuleType, srv: Server, step: Steps) -> None:
        s = tracing(m.LMTP)(srv.host, local_hostname=CLIENT, timeout=TIMEOUT)
        step(s.sendmail, "a@example.com", ["one@example.com", "two@example.com", "bad@example.com"], b"hi\r\n")
        step(s.getreply)  # the second recipient's reply, as smtplib reads it
        step(s.quit)
        step(lambda: s.trace)

    handler = Handler(refuse_rcpt={"bad@example.com": "550 5.1.1 unknown"}, lmtp_per_recipient=True)
    with recording_server(handler, lmtp=True, unix=True) as srv:
        traced_parity(scenario, srv)


def test_a_hook_that_rewrites_commands_is_obeyed() -> None:
    # The program's putcmd changes MAIL's argument and its send one RCPT's:
    # the wire carries what the program made of each line, and the replies
    # still pair up with the commands.
    def scenario(m: types.ModuleType, srv: Server, step: Steps) -> None:
        class Rewriting(m.SMTP):  # type: ignore[name-defined,misc]
            def putcmd(self, cmd: str, args: str = "") -> None:
                if cmd == "mail":
                    args = args.replace("<a@", "<rewritten@")
                super().putcmd(cmd, args)

            def send(self, s: str | bytes) -> None:
                if isinstance(s, str) and s.startswith("rcpt"):
                    s = s.replace("<c@", "<d@")
                super().send(s)

        s = Rewriting(srv.host, srv.port, local_hostname=CLIENT, timeout=TIMEOUT)
        step(s.sendmail, "a@example.com", ["b@example.com"], b"x\r\n")
        step(s.sendmail, "a@example.com", ["b@example.com", "c@example.com"], b"y\r\n")
        step(s.noop)
        step(s.quit)

    with recording_server() as srv:
        _, wire, _ = parity(scenario, srv)
        envelopes = srv.handler.envelopes
    assert [e.mail_from for e in envelopes] == ["rewritten@example.com"] * 4
    assert [e.rcpt_tos for e in envelopes[2:]] == [["b@example.com"], ["b@example.com", "d@example.com"]]
    assert b"<a@" not in wire[0] and b"<c@" not in wire[0]


# -- Django's own check, through Django's SMTP backend --------------------------------


def test_djangos_email_msg_uses_crlf(monkeypatch: pytest.MonkeyPatch) -> None:
    """Django's ``test_email_msg_uses_crlf``, with its backend on the drop-in.

    Django's test patches ``SMTP.send`` on the class, sends a message with its
    SMTP backend, takes the ``send()`` after the one starting ``data`` as the
    message, and checks that every line ends with CRLF. Here ``smtplib`` in
    Django's backend is ``mailwire.smtplib``, as in a program that swapped it.

    Django 6.1 (on Python 3.12+) still sends with ``smtplib``'s ``sendmail``,
    so the premise holds; what changed is how a backend is had: 6.1
    deprecates ``get_connection(backend, **options)`` for a ``MAILERS`` entry,
    so on 6.1 the backend comes from ``mail.mailers`` (the form its own test
    now uses), on 5.2 from ``get_connection``.
    """
    import django
    from django.conf import settings
    from django.core import mail
    from django.core.mail.backends import smtp as django_smtp
    from django.test.utils import override_settings

    if not settings.configured:
        settings.configure()
    monkeypatch.setattr(django_smtp, "smtplib", mw)
    captured: list[str | bytes] = []
    send = mw.SMTP.send

    def mock_send(self: mw.SMTP, s: str | bytes) -> None:
        captured.append(s)
        return send(self, s)

    monkeypatch.setattr(mw.SMTP, "send", mock_send)
    backend = "django.core.mail.backends.smtp.EmailBackend"
    with recording_server() as srv:
        email = mail.EmailMessage("Subject", "Content\nwith a bare LF", "from@example.com", ["to@example.com"])
        if django.VERSION >= (6, 1):
            options = {"host": srv.host, "port": srv.port}
            with override_settings(MAILERS={"default": {"BACKEND": backend, "OPTIONS": options}}):
                connection = mail.mailers["default"]
        else:
            connection = mail.get_connection(backend, host=srv.host, port=srv.port)
        assert connection.send_messages([email]) == 1
        wire = srv.received()
    msg = None
    for i, m in enumerate(captured):
        if m[:4] == "data":
            msg = captured[i + 1]
            break
    assert msg
    assert isinstance(msg, bytes)
    text = msg.decode()
    assert "Content\r\nwith a bare LF" in text
    text = text.replace("\r\n", "")
    assert "\r" not in text and "\n" not in text
    assert b"".join(s if isinstance(s, bytes) else s.encode() for s in captured) == b"".join(wire)

"""CR/LF in anything that becomes a command line raises as CPython 3.11's smtplib does.

smtplib (3.11) raises ``ValueError`` from ``putcmd`` when a command or its
arguments contain CR or LF, before anything is written. Every public path
that builds a command line must do the same in the drop-in, with the same
message, and the server must receive exactly what it receives from smtplib.
"""

from __future__ import annotations

import types
from email.message import Message
from typing import Any

import pytest
from compat_servers import CLIENT, TIMEOUT, Server, Steps, connect, parity, recording_server

import mailwire.smtplib as mw
from mailwire.errors import LocalProtocolError

EVIL = "x@example.com\r\nRSET"

CALLS: dict[str, Any] = {
    "putcmd-verb": lambda s: s.putcmd("NOOP\r\nRSET"),
    "putcmd-args": lambda s: s.putcmd("NOOP", "a\nb"),
    "docmd": lambda s: s.docmd("VRFY", EVIL),
    "helo": lambda s: s.helo("evil\r\nRSET"),
    "ehlo": lambda s: s.ehlo("evil\rRSET"),
    "mail": lambda s: s.mail(EVIL),
    "mail-options": lambda s: s.mail("a@example.com", ["SIZE=10\r\nRSET"]),
    "rcpt": lambda s: s.rcpt(EVIL),
    "rcpt-options": lambda s: s.rcpt("a@example.com", ["NOTIFY=NEVER\nRSET"]),
    "verify": lambda s: s.verify(EVIL),
    "expn": lambda s: s.expn("list\nRSET"),
    "help": lambda s: s.help("MAIL\r\nRSET"),
    "auth-mechanism": lambda s: s.auth("PLAIN\r\nRSET", lambda challenge=None: None),
    "sendmail-sender": lambda s: s.sendmail(EVIL, ["b@example.com"], b"x"),
    "sendmail-recipient": lambda s: s.sendmail("a@example.com", ["b@example.com", EVIL], b"x"),
    "sendmail-option": lambda s: s.sendmail("a@example.com", ["b@example.com"], b"x", ["BODY=8BITMIME\r\nRSET"]),
    "send_message-header": lambda s: s.send_message(_compat32_message(To="b@example.com,\r\n c@example.com")),
    "send_message-from": lambda s: s.send_message(_compat32_message(), from_addr=EVIL),
}


def _compat32_message(**headers: str) -> Message:
    msg = Message()
    msg["From"] = "a@example.com"
    for name, value in headers.items():
        msg[name] = value
    msg.set_payload("body\n")
    return msg


@pytest.mark.parametrize("name", list(CALLS))
def test_crlf_raises_as_the_stdlib_does(name: str) -> None:
    def scenario(m: types.ModuleType, srv: Server, step: Steps) -> None:
        s = connect(m, srv)
        step(s.ehlo)
        step(CALLS[name], s)
        step(s.rset)  # the session goes on, in step with the server
        step(s.noop)
        step(s.quit)

    with recording_server() as srv:
        steps, wire, _ = parity(scenario, srv)
    assert b"\r\nRSET\r\n" not in wire[0].replace(b"rset\r\nnoop", b"")


def test_crlf_in_local_hostname() -> None:
    def scenario(m: types.ModuleType, srv: Server, step: Steps) -> None:
        s = m.SMTP(srv.host, srv.port, local_hostname="client\r\nRSET", timeout=TIMEOUT)
        step(s.ehlo_or_helo_if_needed)
        step(s.sendmail, "a@example.com", ["b@example.com"], b"x")
        step(s.helo, CLIENT)
        step(s.quit)

    with recording_server() as srv:
        steps, _, _ = parity(scenario, srv)
    assert steps[0][2][0] is ValueError
    assert "prohibited newline characters" in steps[0][2][1][0]


@pytest.mark.parametrize("char", ["\x00", "\t", "\x1b", "\x7f"])
def test_other_control_characters_are_refused_before_sending(char: str) -> None:
    # A documented difference: smtplib sends these; the core refuses them.
    with recording_server() as srv:
        s = mw.SMTP(srv.host, srv.port, local_hostname=CLIENT, timeout=TIMEOUT)
        with pytest.raises(ValueError) as info:
            s.putcmd("NOOP", f"a{char}b")
        assert isinstance(info.value, LocalProtocolError)
        assert s.noop() == (250, b"OK")
        s.quit()
        [wire] = srv.received()
    assert char.encode() not in wire
    assert wire == b"noop\r\nquit\r\n"

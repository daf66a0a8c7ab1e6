"""CR, LF and NUL in anything the client puts on a command line.

Addresses, the EHLO name, VRFY arguments and ESMTP parameter values are
refused with ``LocalProtocolError`` before a byte of the command is written;
the scripted server's record shows that nothing of the payload arrived.
Values that DSN carries as xtext (ENVID, ORCPT) are encoded, not refused:
``+0D+0A`` cannot end a line.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mailwire import LocalProtocolError, MailOptions, RcptOptions, SMTPClient

from helpers.minismtp import MiniSMTP
from helpers.scripted import ScriptedServer

Start = Callable[..., ScriptedServer]
EXTENSIONS = ("PIPELINING", "8BITMIME", "DSN", "SMTPUTF8", "MT-PRIORITY")
PAYLOAD = "RCPT TO:<evil@attacker.example>"
BAD_ADDRESSES = [
    f"a@example.org\r\n{PAYLOAD}",
    f"a@example.org\n{PAYLOAD}",
    f"a@example.org\r{PAYLOAD}",
    "a@exa\x00mple.org",
    "a@example.org> NOTIFY=NEVER",
    "<a@example.org>",
    "a b@example.org",
]


def _session(scripted: Start) -> tuple[MiniSMTP, ScriptedServer]:
    smtp = MiniSMTP(extensions=EXTENSIONS)
    return smtp, scripted(smtp)


def _only_hello_and_quit(smtp: MiniSMTP, server: ScriptedServer) -> None:
    server.close()
    assert [c.split(" ")[0] for c in smtp.commands] in (["EHLO", "NOOP", "QUIT"], ["EHLO", "NOOP"])
    assert b"evil" not in server.received and b"\x00" not in server.received
    assert b"MAIL" not in server.received and b"RCPT" not in server.received


@pytest.mark.parametrize("address", BAD_ADDRESSES)
def test_bad_sender(scripted: Start, address: str) -> None:
    smtp, server = _session(scripted)
    with SMTPClient(*server.address, tls="none", timeout=2) as client:
        with pytest.raises(LocalProtocolError, match="sender"):
            client.send(b"x\r\n", address, ["r@example.net"])
        assert client.noop().code == 250  # refused locally: the session is intact
    _only_hello_and_quit(smtp, server)


@pytest.mark.parametrize("address", BAD_ADDRESSES)
def test_bad_recipient(scripted: Start, address: str) -> None:
    smtp, server = _session(scripted)
    with SMTPClient(*server.address, tls="none", timeout=2) as client:
        with pytest.raises(LocalProtocolError, match="recipient"):
            client.send(b"x\r\n", "s@example.org", ["ok@example.net", address])
        assert client.noop().code == 250
    _only_hello_and_quit(smtp, server)


def test_quoted_local_part_may_hold_a_space_but_not_a_line_break(scripted: Start) -> None:
    smtp, server = _session(scripted)
    with SMTPClient(*server.address, tls="none", timeout=2) as client:
        client.send(b"x\r\n", '"john smith"@example.org', ["r@example.net"])
        with pytest.raises(LocalProtocolError):
            client.send(b"x\r\n", '"john\r\nsmith"@example.org', ["r@example.net"])
    assert smtp.transactions[0].mail == 'MAIL FROM:<"john smith"@example.org>'


@pytest.mark.parametrize("name", ["host\r\nMAIL FROM:<evil@attacker.example>", "host\nx", "ho\x00st", "two words", ""])
def test_bad_ehlo_name(scripted: Start, name: str) -> None:
    server = scripted(MiniSMTP(), strict=False)
    client = SMTPClient(*server.address, tls="none", timeout=2, local_hostname=name or None, connect=False)
    if not name:  # empty means "choose one": not an error
        client.connect()
        client.quit()
        return
    with pytest.raises(LocalProtocolError, match="EHLO name"):
        client.connect()
    assert not client.connected
    server.close()
    assert server.received == b""  # not even part of the EHLO line


@pytest.mark.parametrize("options", [
    RcptOptions(extra=(("X-TAG", f"v\r\n{PAYLOAD}"),)),
    RcptOptions(extra=(("X-TAG", "v\x00"),)),
    RcptOptions(extra=(("X-TAG\r\nRSET", None),)),
    RcptOptions(notify=(f"SUCCESS\r\n{PAYLOAD}",)),  # type: ignore[arg-type]
    RcptOptions(orcpt=(f"rfc822\r\n{PAYLOAD}", "r@example.net")),
], ids=["extra-value-crlf", "extra-value-nul", "extra-keyword", "notify", "orcpt-type"])
def test_bad_rcpt_options(scripted: Start, options: RcptOptions) -> None:
    smtp, server = _session(scripted)
    with SMTPClient(*server.address, tls="none", timeout=2) as client:
        with pytest.raises(LocalProtocolError):
            client.send(b"x\r\n", "s@example.org", ["r@example.net"], rcpt_options=options)
        # Refused while preparing, before the pipelined group was written.
        assert client.connected
        assert client.noop().code == 250
    _only_hello_and_quit(smtp, server)


@pytest.mark.parametrize("options", [
    MailOptions(extra=(("X-TAG", f"v\r\n{PAYLOAD}"),)),
    MailOptions(extra=(("X-\nTAG", None),)),
    MailOptions(mt_priority=99),
], ids=["extra-value", "extra-keyword", "mt-priority-range"])
def test_bad_mail_options(scripted: Start, options: MailOptions) -> None:
    smtp, server = _session(scripted)
    with SMTPClient(*server.address, tls="none", timeout=2) as client:
        with pytest.raises(LocalProtocolError):
            client.send(b"x\r\n", "s@example.org", ["r@example.net"], mail_options=options)
        assert client.connected
        assert client.noop().code == 250
    _only_hello_and_quit(smtp, server)


def test_xtext_values_are_encoded_not_refused(scripted: Start) -> None:
    smtp, server = _session(scripted)
    with SMTPClient(*server.address, tls="none", timeout=2) as client:
        client.send(
            b"x\r\n", "s@example.org", ["r@example.net"],
            mail_options=MailOptions(envid="id\r\nRSET"),
            rcpt_options=RcptOptions(orcpt=("rfc822", f"r@example.net\r\n{PAYLOAD}")),
        )
    [txn] = smtp.transactions
    assert txn.mail == "MAIL FROM:<s@example.org> ENVID=id+0D+0ARSET"
    assert txn.rcpts == [
        "RCPT TO:<r@example.net> ORCPT=rfc822;r@example.net+0D+0ARCPT+20TO:<evil@attacker.example>"
    ]  # "<" and ">" are plain xchars (RFC 3461 4); the line break is what had to go
    assert [c.split(" ")[0] for c in smtp.commands] == ["EHLO", "MAIL", "RCPT", "DATA", "QUIT"]


@pytest.mark.parametrize("argument", ["a\r\nRSET", "a\nb", "a\x00b"])
def test_bad_vrfy_argument(scripted: Start, argument: str) -> None:
    smtp, server = _session(scripted)
    client = SMTPClient(*server.address, tls="none", timeout=2)
    with pytest.raises(LocalProtocolError, match="control character"):
        client.verify(argument)
    # Nothing was sent, so the session is still in step and goes on.
    assert client.connected
    assert client.noop().code == 250
    client.quit()
    server.close()
    assert b"VRFY" not in server.received
    assert [c.split(" ")[0] for c in smtp.commands] == ["EHLO", "NOOP", "QUIT"]

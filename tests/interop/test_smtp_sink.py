"""SMTPClient and LMTPClient against Postfix's smtp-sink.

smtp-sink pipelines for real, so it is where the client's round trips are
counted: ``client.round_trips`` is the number of times the client waited for
the server. A pipelined ``send`` waits twice per message (envelope with DATA,
then content with its end); ``send_many`` writes each message's end together
with the next envelope, so it waits once per message. With ``-D`` smtp-sink
dumps what it received (``X-Mail-Args``, ``X-Rcpt-Args``), which shows the
exact parameters that crossed the wire.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mailwire import (
    AuthenticationError, ConnectionClosed, LMTPClient, MailOptions, NotSupportedError, RcptOptions, RecipientsRefused, SMTPClient, SMTPError,
    SendResult,
)

from helpers.smtp_sink import Sink

SinkFactory = Callable[..., Sink]
MESSAGES = 200
CONTENT = b"From: a@example.org\r\nTo: b@example.net\r\nSubject: sink\r\n\r\nhello\r\n.dot line\r\n"


def _all_250(result: SendResult) -> bool:
    replies = [result.mail_reply, *result.rcpt_replies.values(), *result.recipients.values()]
    return result.data_reply is not None and result.data_reply.code == 250 and all(r.code == 250 for r in replies)


def _wait_for_dump(sink: Sink, count: int) -> str:
    deadline = time.monotonic() + 5
    text = sink.dumped()
    while text.count("X-Mail-Args:") < count and time.monotonic() < deadline:
        time.sleep(0.02)
        text = sink.dumped()
    return text


def test_capabilities(sink: Sink) -> None:
    with SMTPClient(*sink.address, tls="none", timeout=5) as client:
        caps = client.capabilities
    assert caps.pipelining and caps.eightbitmime and caps.dsn and caps.enhanced_status_codes
    assert not caps.chunking and not caps.starttls
    assert caps.auth_mechanisms == {"PLAIN", "LOGIN"}


def test_send_costs_two_round_trips_per_message(sink: Sink) -> None:
    with SMTPClient(*sink.address, tls="none", timeout=5) as client:
        assert client.round_trips == 2  # greeting, EHLO
        start = client.round_trips
        results = [client.send(CONTENT, "a@example.org", ["b@example.net", "c@example.net", "d@example.net"])
                   for _ in range(MESSAGES)]
        per_message = (client.round_trips - start) / MESSAGES
    # MAIL, three RCPTs and DATA went out in one write (one wait), the content
    # and its end in another: never a wait per command.
    assert per_message == 2
    assert all(_all_250(r) for r in results)


def test_send_many_costs_one_round_trip_per_message(sink: Sink) -> None:
    items = [(CONTENT, "a@example.org", ["b@example.net", "c@example.net"]) for _ in range(MESSAGES)]
    with SMTPClient(*sink.address, tls="none", timeout=5) as client:
        start = client.round_trips
        outcomes = client.send_many(items)
        waits = client.round_trips - start
    # The first envelope costs one extra wait (for its 354); every message's
    # end then travels with the next envelope.
    assert waits == MESSAGES + 1
    assert all(isinstance(o, SendResult) and _all_250(o) for o in outcomes)


def test_without_pipelining_each_command_waits(sink: Sink) -> None:
    with SMTPClient(*sink.address, tls="none", timeout=5, pipelining=False) as client:
        start = client.round_trips
        client.send(CONTENT, "a@example.org", ["b@example.net", "c@example.net"])
        waits = client.round_trips - start
    assert waits == 5  # MAIL, RCPT, RCPT, DATA, end of data


def test_every_message_is_delivered_intact(sink_factory: SinkFactory) -> None:
    sink = sink_factory(dump=True)
    items = [(CONTENT + f"number {i}\r\n".encode(), "a@example.org", [f"r{i}@example.net"]) for i in range(50)]
    with SMTPClient(*sink.address, tls="none", timeout=5) as client:
        client.send_many(items)
    dump = _wait_for_dump(sink, 50)
    assert dump.count("X-Mail-Args: <a@example.org>") == 50
    assert re.findall(r"X-Rcpt-Args: <(r\d+)@example.net>", dump) == [f"r{i}" for i in range(50)]
    assert re.findall(r"number (\d+)", dump) == [str(i) for i in range(50)]
    assert dump.count("\n.dot line\n") == 50  # unstuffed by the server: sent stuffed


def test_dsn_parameters_reach_smtp_sink_exactly(sink_factory: SinkFactory) -> None:
    sink = sink_factory(dump=True)
    with SMTPClient(*sink.address, tls="none", timeout=5) as client:
        client.send(
            CONTENT, "a@example.org", ["b@example.net", "c@example.net"],
            mail_options=MailOptions(ret="FULL", envid="Env+Id=42"),
            rcpt_options={
                "b@example.net": RcptOptions(notify=("SUCCESS", "DELAY"), orcpt=("rfc822", "B@Example.NET")),
                "c@example.net": RcptOptions(notify=()),
            },
        )
    dump = _wait_for_dump(sink, 1)
    assert "X-Mail-Args: <a@example.org> RET=FULL ENVID=Env+2BId+3D42\n" in dump
    assert "X-Rcpt-Args: <b@example.net> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;B@Example.NET\n" in dump
    assert "X-Rcpt-Args: <c@example.net> NOTIFY=NEVER\n" in dump


def test_8bit_content_gets_body_8bitmime(sink_factory: SinkFactory) -> None:
    sink = sink_factory(dump=True)
    with SMTPClient(*sink.address, tls="none", timeout=5) as client:
        client.send("Subject: ü\r\n\r\nGrüße\r\n".encode(), "a@example.org", ["b@example.net"])
    assert "X-Mail-Args: <a@example.org> BODY=8BITMIME\n" in _wait_for_dump(sink, 1)


def test_smtputf8_not_offered_by_smtp_sink(sink: Sink) -> None:
    with SMTPClient(*sink.address, tls="none", timeout=5) as client:
        with pytest.raises(NotSupportedError, match="SMTPUTF8"):
            client.send(CONTENT, "a@example.org", ["bö@example.net"])
        assert client.send(CONTENT, "a@example.org", ["b@example.net"]).ok


def test_refused_recipients_then_the_session_goes_on(sink_factory: SinkFactory) -> None:
    sink = sink_factory(["-f", "RCPT"])  # every RCPT gets 5xx (this turns PIPELINING off)
    with SMTPClient(*sink.address, tls="none", timeout=5) as client:
        assert not client.capabilities.pipelining
        for _ in range(3):
            with pytest.raises(RecipientsRefused) as caught:
                client.send(CONTENT, "a@example.org", ["b@example.net", "c@example.net"])
            assert [r.code for r in caught.value.result.recipients.values()] == [500, 500]
        assert client.noop().code == 250


def test_silent_hangup_after_rcpt(sink_factory: SinkFactory) -> None:
    sink = sink_factory(["-q", "RCPT"])  # disconnect without replying
    client = SMTPClient(*sink.address, tls="none", timeout=5)
    with pytest.raises(ConnectionClosed, match="closed the connection"):
        client.send(CONTENT, "a@example.org", ["b@example.net"])
    assert not client.connected


def test_421_after_mail_closes_the_connection(sink_factory: SinkFactory) -> None:
    sink = sink_factory(["-Q", "MAIL"])
    client = SMTPClient(*sink.address, tls="none", timeout=5)
    with pytest.raises(SMTPError) as caught:
        client.send(CONTENT, "a@example.org", ["b@example.net"])
    assert caught.value.code == 421
    assert not client.connected


def test_smtp_sink_answers_auth_with_250_which_is_not_success(sink: Sink) -> None:
    # RFC 4954 4: success is 235. smtp-sink says "250 2.0.0 Ok", which swaks
    # also reports as a failure; the client must not take it as a login.
    client = SMTPClient(*sink.address, tls="none", timeout=5, auth=("user", "pw"), allow_plaintext_auth=True,
                        connect=False)
    with pytest.raises(AuthenticationError) as caught:
        client.connect()
    assert caught.value.code == 250
    assert not client.connected
    if shutil.which("swaks") is None:
        return
    swaks = subprocess.run(
        ["swaks", "--server", f"{sink.host}:{sink.port}", "--from", "a@example.org", "--to", "b@example.net",
         "-a", "PLAIN", "-au", "user", "-ap", "pw", "--quit-after", "AUTH"],
        capture_output=True, text=True, timeout=20,
    )
    assert "No authentication type succeeded" in swaks.stdout + swaks.stderr


def test_ipv6_loopback(sink_factory: SinkFactory) -> None:
    sink = sink_factory(["-6"], host="::1")
    with SMTPClient("::1", sink.port, tls="none", timeout=5) as client:
        assert client._transport is not None
        assert client._transport.sock.getpeername()[0] == "::1"
        assert client.send(CONTENT, "a@example.org", ["b@example.net"]).ok


def test_lmtp_over_a_unix_socket(sink_factory: SinkFactory, short_tmp: Path) -> None:
    sink = sink_factory(["-L"], unix_path=str(short_tmp / "sink.sock"))
    with LMTPClient(sink.host, timeout=5) as client:
        result = client.send(CONTENT, "a@example.org", ["b@example.net", "c@example.net", "d@example.net"])
        outcomes = client.send_many([(CONTENT, "a@example.org", ["x@example.net", "y@example.net"])] * 20)
    assert result.data_reply is None
    assert [r.code for r in result.recipients.values()] == [250, 250, 250]
    assert all(isinstance(o, SendResult) and len(o.accepted) == 2 for o in outcomes)


def test_lmtp_over_tcp(sink_factory: SinkFactory) -> None:
    sink = sink_factory(["-L"])
    with LMTPClient(*sink.address, timeout=5) as client:
        result = client.send(CONTENT, "a@example.org", ["b@example.net", "c@example.net"])
    assert result.ok and result.data_reply is None

"""Fault injection (``mailwire.server.chaos``): real clients see the failures asked for, then success.

The stdlib's ``smtplib`` and mailwire's ``SMTPClient`` talk to a real
server (the ``smtp_server``/``smtp_chaos`` fixtures, or a ``ServerThread``
given a ``Chaos``); the tests say what reached the backend and what the
client heard, at each stage, for ``times``, a seeded probability, an
address pattern, a 421 that closes, AUTH and the greeting, and a message
refused while a streaming backend (the Maildir) was storing it.
"""

from __future__ import annotations

import base64
import smtplib
import threading
from pathlib import Path

import pytest

from mailwire import SMTPClient
from mailwire.errors import DataRefused, RecipientsRefused
from mailwire.server.backends import Maildir
from mailwire.server.chaos import Chaos, Fault
from mailwire.testing import ServerThread, run_server

MSG = b"From: a@example.org\r\nSubject: hi\r\n\r\nhello\r\n"
TIMEOUT = 10


def test_rcpt_451_twice_then_250_with_smtplib(smtp_server: ServerThread, smtp_chaos: Chaos) -> None:
    smtp_chaos.fail("rcpt", 451, times=2)
    codes = []
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=TIMEOUT) as client:
        for _ in range(3):
            try:
                client.sendmail("a@example.org", ["b@example.net"], MSG)
                codes.append(250)
            except smtplib.SMTPRecipientsRefused as err:
                code, text = err.recipients["b@example.net"]
                assert text == b"4.3.0 injected failure (chaos)"
                codes.append(code)
    assert codes == [451, 451, 250]
    assert [e.rcpt_to for e in smtp_server.messages] == [["b@example.net"]]
    assert smtp_chaos.fired == (2,)


def test_mail_451_twice_then_250_with_the_mailwire_client(smtp_server: ServerThread, smtp_chaos: Chaos) -> None:
    smtp_chaos.fail("mail", 451, times=2, text="try again later")
    outcomes = []
    with SMTPClient(smtp_server.host, smtp_server.port, tls="none", timeout=TIMEOUT) as client:
        for _ in range(3):
            try:
                client.send(MSG, "a@example.org", ["b@example.net"])
                outcomes.append("sent")
            except Exception as err:
                outcomes.append(str(err))
    assert outcomes[2] == "sent"
    assert all("451" in o and "4.3.0 try again later" in o for o in outcomes[:2]), outcomes
    assert len(smtp_server.messages) == 1


def test_rcpt_pattern_refuses_only_matching_recipients(smtp_server: ServerThread, smtp_chaos: Chaos) -> None:
    smtp_chaos.fail("rcpt", 450, match="*@FLAKY.test", enhanced="4.2.1")
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=TIMEOUT) as client:
        refused = client.sendmail("a@example.org", ["x@flaky.test", "ok@steady.test", "y@Flaky.Test"], MSG)
    assert refused == {"x@flaky.test": (450, b"4.2.1 injected failure (chaos)"),
                       "y@Flaky.Test": (450, b"4.2.1 injected failure (chaos)")}
    (envelope,) = smtp_server.wait_for(1)
    assert envelope.rcpt_to == ["ok@steady.test"]


def _pattern(seed: int, attempts: int = 24) -> list[int]:
    chaos = Chaos(seed=seed)
    chaos.fail("rcpt", 451, probability=0.5)
    with run_server(chaos=chaos) as server:
        with SMTPClient(server.host, server.port, tls="none", timeout=TIMEOUT) as client:
            client.mail("a@example.org")
            return [client.rcpt(f"r{n}@example.net").code for n in range(attempts)]


def test_a_seeded_probability_gives_the_same_pattern_every_run() -> None:
    first, second, other = _pattern(7), _pattern(7), _pattern(8)
    assert first == second
    assert set(first) == {250, 451}  # 24 draws at one half: both, for this seed
    assert other != first


def test_a_421_closes_the_connection(smtp_server: ServerThread, smtp_chaos: Chaos) -> None:
    smtp_chaos.fail("mail", 421, times=1)
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=TIMEOUT) as client:
        client.ehlo()
        assert client.mail("a@example.org") == (421, b"4.3.0 injected failure (chaos)")
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.noop()
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=TIMEOUT) as client:
        client.sendmail("a@example.org", ["b@example.net"], MSG)  # once only
    assert len(smtp_server.wait_for(1)) == 1


def test_connect_stage_421_then_a_greeting(smtp_server: ServerThread, smtp_chaos: Chaos) -> None:
    smtp_chaos.fail("connect", 421, times=1, match="127.0.0.*")
    with pytest.raises(smtplib.SMTPConnectError) as refused:
        smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=TIMEOUT)
    assert refused.value.smtp_code == 421
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=TIMEOUT) as client:
        assert client.noop()[0] == 250
    assert smtp_chaos.fired == (1,)


def test_data_refused_once_is_not_delivered_and_the_session_goes_on(
        smtp_server: ServerThread, smtp_chaos: Chaos) -> None:
    smtp_chaos.fail("data", 452, times=1, match="*@big.test")
    with SMTPClient(smtp_server.host, smtp_server.port, tls="none", timeout=TIMEOUT) as client:
        with pytest.raises(DataRefused) as refused:
            client.send(MSG, "a@example.org", ["b@big.test"])
        assert refused.value.code == 452
        client.send(MSG, "c@example.org", ["d@small.test"])
        client.send(MSG, "a@example.org", ["b@big.test"])
    assert [e.mail_from for e in smtp_server.wait_for(2)] == ["c@example.org", "a@example.org"]


def test_data_refused_while_a_maildir_streams_it_stores_nothing(tmp_path: Path) -> None:
    chaos = Chaos([Fault("data", 451, times=1)])
    big = MSG + (b"0123456789" * 99 + b"\r\n") * 300  # some 300 KB: streamed in many reads
    with run_server(Maildir(str(tmp_path)), chaos=chaos) as server:
        with smtplib.SMTP(server.host, server.port, timeout=TIMEOUT) as client:
            with pytest.raises(smtplib.SMTPDataError) as refused:
                client.sendmail("a@example.org", ["b@example.net"], big)
            assert refused.value.smtp_code == 451
            client.sendmail("a@example.org", ["b@example.net"], big)
        server.wait_for(1)
    assert len(list((tmp_path / "new").iterdir())) == 1
    assert list((tmp_path / "tmp").iterdir()) == []


def test_auth_refused_then_accepted() -> None:
    chaos = Chaos()
    chaos.fail("auth", 454, times=1, match="app*")
    with run_server(chaos=chaos, authenticator=lambda credentials: None, allow_plaintext_auth=True) as server:
        with smtplib.SMTP(server.host, server.port, timeout=TIMEOUT) as client:
            client.ehlo()
            plain = "AUTH PLAIN " + base64.b64encode(b"\0application\0secret").decode()
            assert client.docmd(plain) == (454, b"4.7.0 injected failure (chaos)")
            assert client.docmd(plain)[0] == 235


def test_lmtp_data_refusal_answers_each_recipient() -> None:
    chaos = Chaos([Fault("data", 451, times=1)])
    with run_server(chaos=chaos, lmtp=True) as server:
        with smtplib.LMTP(server.host, server.port, timeout=TIMEOUT) as client:
            client.ehlo()
            client.mail("a@example.org")
            client.rcpt("b@example.net")
            client.rcpt("c@example.net")
            assert client.docmd("DATA")[0] == 354
            client.send(MSG + b".\r\n")
            # One reply per recipient (RFC 2033 4.2), then the session goes on.
            assert [client.getreply()[0], client.getreply()[0]] == [451, 451]
            assert client.noop()[0] == 250
    assert len(server.messages) == 0


def test_counters_are_exact_under_threads() -> None:
    chaos = Chaos([Fault("rcpt", 451, times=50)])
    fired = []

    def ask() -> None:
        fired.extend(r for r in (chaos.refusal("rcpt", "x@y") for _ in range(100)) if r is not None)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(fired) == 50 and chaos.fired == (50,)


def test_faults_are_tried_in_order_and_replace_restarts_them() -> None:
    chaos = Chaos()
    chaos.fail("rcpt", 550, times=1, match="*@gone.test")
    chaos.fail("rcpt", 451, times=1)
    assert [r and r.code for r in (chaos.refusal("rcpt", "x@gone.test") for _ in range(3))] == [550, 451, None]
    chaos.replace(chaos.faults)
    assert chaos.fired == (0, 0)
    assert chaos.refusal("rcpt", "x@other.test") is not None
    chaos.clear()
    assert chaos.faults == () and chaos.refusal("rcpt", "x@gone.test") is None


@pytest.mark.parametrize("settings, message", [
    (dict(stage="helo", code=451), "unknown stage"),
    (dict(stage="rcpt", code=250), "400 to 599"),
    (dict(stage="rcpt", code=451, times=0), "times"),
    (dict(stage="rcpt", code=451, probability=1.5), "probability"),
    (dict(stage="rcpt", code=451, match=""), "match"),
    (dict(stage="rcpt", code=451, text="a\r\n250 ok"), "one line"),
    (dict(stage="rcpt", code=451, enhanced="5.1.1"), "does not match"),
])
def test_a_fault_that_makes_no_sense_is_refused(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Fault(**settings)  # type: ignore[arg-type]


def test_a_recipient_refused_by_chaos_in_a_pipelined_send(smtp_server: ServerThread, smtp_chaos: Chaos) -> None:
    smtp_chaos.fail("rcpt", 451, times=1, match="b@*")
    with SMTPClient(smtp_server.host, smtp_server.port, tls="none", timeout=TIMEOUT) as client:
        with pytest.raises(RecipientsRefused):
            client.send(MSG, "a@example.org", ["b@example.net"])
        result = client.send(MSG, "a@example.org", ["b@example.net", "c@example.net"])
    assert not result.refused

"""``GET/PUT /api/v1/chaos``: Mailpit's body unchanged and mailwire's additions, over a real catcher.

The catcher's SMTP server and its web inbox share one ``Chaos``; tests set
it over HTTP (by hand, and with ``RemoteChaos``) and send real mail with
``smtplib``; ``mailwire serve --chaos`` is run as a process too.
"""

from __future__ import annotations

import re
import smtplib
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mailwire.testing import InboxError, RemoteChaos
from mailwire.server.chaos import Chaos

from server.test_cli_serve import MSG, TIMEOUT, Serve, serve  # noqa: F401 - the fixture

from .conftest import Catching, start_catching, stop_catching

WEB = re.compile(r", web inbox on (http://127\.0\.0\.1:\d+/)$")
OFF = {"ErrorCode": 451, "Probability": 0}


@pytest.fixture
def chaotic(tmp_path: Path) -> Iterator[Catching]:
    catching = start_catching(tmp_path / "mail", chaos=Chaos())
    try:
        yield catching
    finally:
        stop_catching(catching)


def _rcpt_codes(catching: Catching, count: int, address: str = "b@example.net") -> list[int]:
    with smtplib.SMTP(*catching.smtp.address, timeout=TIMEOUT) as client:
        client.ehlo()
        client.mail("a@example.org")
        return [client.rcpt(address)[0] for _ in range(count)]


def test_get_answers_mailpits_shape_with_every_trigger_off(chaotic: Catching) -> None:
    reply = chaotic.get("/api/v1/chaos")
    assert reply.status == 200
    assert reply.json() == {"Sender": OFF, "Recipient": OFF, "Authentication": {"ErrorCode": 535, "Probability": 0},
                            "Connect": {"ErrorCode": 421, "Probability": 0}, "Data": OFF, "Seed": None}
    assert chaotic.get("/api/v1/webui").json()["ChaosEnabled"] is True


def test_mailpits_own_body_works_unchanged(chaotic: Catching) -> None:
    body = {"Sender": {"ErrorCode": 452, "Probability": 100}, "Recipient": {"ErrorCode": 451, "Probability": 0}}
    reply = chaotic.request("PUT", "/api/v1/chaos", body)
    assert reply.status == 200
    assert reply.json()["Sender"] == {"ErrorCode": 452, "Probability": 100, "Fired": 0}
    assert reply.json()["Recipient"] == OFF
    with smtplib.SMTP(*chaotic.smtp.address, timeout=TIMEOUT) as client:
        client.ehlo()
        assert client.mail("a@example.org") == (452, b"4.3.0 injected failure (chaos)")
    assert chaotic.get("/api/v1/chaos").json()["Sender"]["Fired"] == 1
    assert chaotic.request("PUT", "/api/v1/chaos", {}).json()["Sender"] == OFF
    with smtplib.SMTP(*chaotic.smtp.address, timeout=TIMEOUT) as client:
        client.sendmail("a@example.org", ["b@example.net"], MSG)


def test_times_and_match_then_success(chaotic: Catching) -> None:
    body = {"Recipient": {"ErrorCode": 451, "Times": 2, "Match": "*@flaky.test", "Text": "greylisted",
                          "EnhancedCode": "4.7.1"}}
    reply = chaotic.request("PUT", "/api/v1/chaos", body)
    assert reply.json()["Recipient"] == {**body["Recipient"], "Probability": 100, "Fired": 0}
    assert _rcpt_codes(chaotic, 2, "b@steady.test") == [250, 250]
    with smtplib.SMTP(*chaotic.smtp.address, timeout=TIMEOUT) as client:
        client.ehlo()
        client.mail("a@example.org")
        assert client.rcpt("x@flaky.test") == (451, b"4.7.1 greylisted")
        assert client.rcpt("x@flaky.test")[0] == 451
        assert client.rcpt("x@flaky.test")[0] == 250


def test_a_seed_gives_the_same_pattern_again(chaotic: Catching) -> None:
    body = {"Recipient": {"ErrorCode": 451, "Probability": 50}, "Seed": 11}
    patterns = []
    for _ in range(2):
        assert chaotic.request("PUT", "/api/v1/chaos", body).json()["Seed"] == 11
        patterns.append(_rcpt_codes(chaotic, 20))
    assert patterns[0] == patterns[1] and set(patterns[0]) == {250, 451}


def test_a_list_of_triggers_is_tried_in_order(chaotic: Catching) -> None:
    body = {"Recipient": [{"ErrorCode": 550, "Times": 1, "Match": "gone@*"}, {"ErrorCode": 451, "Times": 1}]}
    assert len(chaotic.request("PUT", "/api/v1/chaos", body).json()["Recipient"]) == 2
    assert _rcpt_codes(chaotic, 3, "gone@example.net") == [550, 451, 250]


@pytest.mark.parametrize("raw, message", [
    (b"not json", "not JSON"),
    (b"[1]", "JSON object"),
    (b'{"Sendr": {"ErrorCode": 451, "Probability": 5}}', "unknown trigger 'Sendr'"),
    (b'{"Sender": {"ErrorCode": 250, "Probability": 5}}', "Sender: a failure's reply code is 400 to 599"),
    (b'{"Sender": {"ErrorCode": "451", "Probability": 5}}', "Sender.ErrorCode"),
    (b'{"Sender": {"ErrorCode": 451, "Probability": 101}}', "Sender.Probability must be 0 to 100"),
    (b'{"Sender": {"ErrorCode": 451, "Times": 0}}', "Sender.Times"),
    (b'{"Sender": {"ErrorCode": 451, "Times": 1, "Match": 5}}', "Sender.Match must be a string"),
    (b'{"Sender": {"ErrorCode": 451, "Times": 1, "Colour": "red"}}', "unknown field 'Colour'"),
    (b'{"Sender": 451}', "Sender must be an object"),
    (b'{"Seed": "x"}', "Seed must be a whole number"),
    (b'{"Data": {"ErrorCode": 451, "Times": 1, "Text": "a\\r\\n250 ok"}}', "one line"),
])
def test_a_bad_body_is_400_and_changes_nothing(chaotic: Catching, raw: bytes, message: str) -> None:
    chaotic.request("PUT", "/api/v1/chaos", {"Recipient": {"ErrorCode": 451, "Times": 1}})
    reply = chaotic.request("PUT", "/api/v1/chaos", raw=raw)
    assert reply.status == 400 and message in reply.json()["Error"], reply.json()
    assert chaotic.get("/api/v1/chaos").json()["Recipient"]["Times"] == 1


def test_without_chaos_the_api_says_so(catcher: Catching) -> None:
    reply = catcher.get("/api/v1/chaos")
    assert reply.status == 400 and reply.json() == {"Error": "chaos is not enabled on this server"}
    assert catcher.request("PUT", "/api/v1/chaos", {}).status == 400
    assert catcher.get("/api/v1/webui").json()["ChaosEnabled"] is False


def test_remote_chaos_adds_failures_and_clears_them(chaotic: Catching) -> None:
    with RemoteChaos(chaotic.url) as remote:
        remote.fail("rcpt", 451, times=1)
        remote.fail("data", 452, times=1, match="d@*", seed=5)
        state = remote.triggers()
        assert state["Recipient"]["Times"] == 1 and state["Data"]["ErrorCode"] == 452 and state["Seed"] == 5
        with smtplib.SMTP(*chaotic.smtp.address, timeout=TIMEOUT) as client:
            assert client.sendmail("a@example.org", ["b@example.net", "c@example.net"], MSG) == {
                "b@example.net": (451, b"4.3.0 injected failure (chaos)")}
            with pytest.raises(smtplib.SMTPDataError):  # the data failure: once
                client.sendmail("a@example.org", ["d@example.net"], MSG)
            client.sendmail("a@example.org", ["d@example.net"], MSG)
        with pytest.raises(InboxError, match="400 unknown trigger"):
            remote.set({"Bogus": {}})
    assert remote.triggers()["Recipient"] == OFF


@pytest.fixture
def checked_after(chaotic: Catching) -> Iterator[Catching]:
    """``chaotic``, checked after the fixtures a test asked for later have gone."""
    yield chaotic
    chaos = chaotic.smtp.server.config.chaos
    assert chaos is not None and chaos.faults == (), "remote_chaos left failures on"


def test_the_remote_chaos_fixture_turns_failures_off_after_the_test(
        checked_after: Catching, remote_chaos: Callable[..., RemoteChaos]) -> None:
    remote_chaos(checked_after.url).fail("mail", 451, times=3)
    with smtplib.SMTP(*checked_after.smtp.address, timeout=TIMEOUT) as client:
        client.ehlo()
        assert client.mail("a@example.org")[0] == 451
    assert checked_after.get("/api/v1/chaos").json()["Sender"]["Fired"] == 1


def _spec_error(*args: str) -> tuple[int, str]:
    done = subprocess.run([sys.executable, "-m", "mailwire", "serve", "--port", "0", *args],
                          # A bound for a hang only: a cold start once took over 10 s on a loaded machine.
                          capture_output=True, text=True, timeout=60)
    return done.returncode, done.stderr


@pytest.mark.parametrize("spec, message", [
    ("rcpt", "expected STAGE:CODE"),
    ("rcpt:45x", "expected STAGE:CODE"),
    ("helo:451", "unknown stage 'helo'"),
    ("rcpt:200", "400 to 599"),
    ("rcpt:451:times=none", "times is a whole number"),
    ("rcpt:451:p=2", "p is a probability"),
    ("rcpt:451:colour=red", "unknown option 'colour'"),
    ("rcpt:451:match", "expected NAME=VALUE"),
])
def test_a_bad_chaos_spec_is_one_line_and_exit_2(spec: str, message: str) -> None:
    code, stderr = _spec_error("--chaos", spec)
    assert code == 2 and stderr.count("\n") == 1 and message in stderr, stderr
    assert stderr.startswith("mailwire serve: error: argument --chaos:")


def test_serve_with_chaos_from_the_command_line_and_the_api(serve: Callable[..., Serve]) -> None:
    server = serve("--port", "0", "--chaos", "rcpt:451:times=2:match=*@flaky.test",
                   "--chaos", "sender:550:p=100%:match=spam@*:text=go away", web=True)
    found = WEB.search(server.banner)
    assert found, server.banner
    codes: list[Any] = []
    with smtplib.SMTP("127.0.0.1", server.port, timeout=TIMEOUT) as client:
        client.ehlo()
        assert client.mail("spam@example.org") == (550, b"5.3.0 go away")
        client.mail("a@example.org")
        codes = [client.rcpt("b@flaky.test")[0] for _ in range(3)]
    assert codes == [451, 451, 250]
    remote = RemoteChaos(found[1])
    assert remote.triggers()["Recipient"]["Fired"] == 2
    remote.fail("connect", 421, times=1)
    with pytest.raises(smtplib.SMTPConnectError):
        smtplib.SMTP("127.0.0.1", server.port, timeout=TIMEOUT)
    remote.clear()
    with smtplib.SMTP("127.0.0.1", server.port, timeout=TIMEOUT) as client:
        client.sendmail("spam@example.org", ["b@flaky.test"], MSG)
    assert server.stop() == 0

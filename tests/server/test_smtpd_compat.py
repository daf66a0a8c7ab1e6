"""``mailwire.smtpd``: the removed ``smtpd`` module's API on mailwire's asyncio server.

Everything goes over real sockets on 127.0.0.1 with the standard library's
``smtplib`` as the client, every wait bounded. Where CPython 3.11's own
``smtpd`` is importable it runs side by side with ours (``asyncore`` in a
thread) and the two must hand ``process_message`` the same arguments, answer
the client the same way and print the same debugging output; on 3.12+ those
parity tests skip. A classic smtpd program, converted by the two documented
edits, runs in a subprocess and is stopped with Ctrl-C (SIGINT).
"""

from __future__ import annotations

import contextlib
import io
import logging
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest

import mailwire.smtpd as msmtpd
from mailwire.errors import SMTPError
from mailwire.protocol.params import RcptOptions
from mailwire.reply import Reply
from mailwire.server.envelope import SessionInfo
from mailwire.server.session import BaseSession, Session
from mailwire.testing import run_server

TIMEOUT = 5.0
NOBODY = "nobody@example.com"
REFUSAL = "554 5.7.1 No such user here"


def _stdlib() -> tuple[ModuleType, ModuleType]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import asyncore
            import smtpd
    except ImportError:  # Python 3.12+
        pytest.skip("the standard library has no smtpd/asyncore (Python 3.12+)")
    return smtpd, asyncore


Call = tuple[Any, str, list[str], Any, dict[str, Any]]


def recorder(base: type) -> type:
    """A subclass of ``base`` (either module's SMTPServer) recording its calls."""

    class Recorder(base):  # type: ignore[misc,valid-type]
        calls: list[Call]

        def process_message(self, peer: Any, mailfrom: str, rcpttos: list[str], data: Any, **kwargs: Any) -> Any:
            self.calls.append((peer, mailfrom, rcpttos, data, kwargs))
            if NOBODY in rcpttos:
                return REFUSAL
            return None

    return Recorder


@contextlib.contextmanager
def stdlib_running(cls: type, **kwargs: Any) -> Iterator[Any]:
    """CPython's smtpd server ``cls`` served by asyncore in a thread."""
    _, asyncore = _stdlib()
    socket_map: dict[int, Any] = {}
    server = cls(("127.0.0.1", 0), kwargs.pop("remoteaddr", None), map=socket_map, **kwargs)
    server.calls = []
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            asyncore.loop(timeout=0.02, map=socket_map, count=1)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        stop.set()
        thread.join(TIMEOUT)
        asyncore.close_all(map=socket_map)
    assert not thread.is_alive()


@contextlib.contextmanager
def ours_running(cls: type, **kwargs: Any) -> Iterator[Any]:
    server = cls(("127.0.0.1", 0), kwargs.pop("remoteaddr", None), map={}, **kwargs)
    server.calls = []
    try:
        with msmtpd.run_in_thread(server):
            yield server
    finally:
        server.close()


def port_of(server: Any) -> int:
    return int(server.socket.getsockname()[1])


Outcome = tuple[Any, ...]


def attempt(outcomes: list[Outcome], action: Callable[[], Any]) -> None:
    try:
        outcomes.append(("ok", action()))
    except smtplib.SMTPResponseException as err:
        outcomes.append((type(err).__name__, err.smtp_code, err.smtp_error))
    except smtplib.SMTPRecipientsRefused as err:
        outcomes.append(("SMTPRecipientsRefused", err.recipients))


def scenario(port: int, *, decode_data: bool = False, utf8: bool = False) -> tuple[list[Outcome], list[Any]]:
    """The same conversation for either server: what the client saw, and its
    local addresses (the ``peer`` the server should report), per connection."""
    outcomes: list[Outcome] = []
    peers: list[Any] = []
    with smtplib.SMTP("127.0.0.1", port, timeout=TIMEOUT) as client:
        peers.append(client.sock.getsockname())
        send = client.sendmail
        attempt(outcomes, lambda: send("alice@example.com", ["bob@example.com"],
                                       b"Subject: hi\r\n\r\n.leading dot\r\n..two dots\r\nbody\r\n"))
        attempt(outcomes, lambda: send("", ["a@example.com", "<b@example.org>"], b""))
        attempt(outcomes, lambda: send("s@example.com", ["r@example.com"], "Subject: t\n\nline one\nline two\n"))
        attempt(outcomes, lambda: send("s@example.com", ["r@example.com"], b"Subject: bare\n\nlf only\n"))
        attempt(outcomes, lambda: send("s@example.com", ["r@example.com", NOBODY], b"Subject: x\r\n\r\ny\r\n"))
        attempt(outcomes, lambda: send("s@example.com", ["r@example.com"], b"no headers, no final newline"))
        if decode_data:
            attempt(outcomes, lambda: send("s@example.com", ["r@example.com"],
                                           "Subject: caf\u00e9\r\n\r\n\u20ac\r\n".encode()))
        else:
            attempt(outcomes, lambda: send("s@example.com", ["r@example.com"],
                                           "Subject: caf\u00e9\r\n\r\n\u20ac\r\n".encode(),
                                           mail_options=["BODY=8BITMIME"]))
        if utf8:
            attempt(outcomes, lambda: send("j\u00f6rg@example.com", ["\u00fc@example.com"],
                                           "Subject: \u00fc\r\n\r\nx\r\n".encode(), mail_options=["SMTPUTF8"]))
    with smtplib.SMTP("127.0.0.1", port, timeout=TIMEOUT) as client:
        client.helo("old.example")  # plain SMTP: no SIZE, no parameters
        peers.append(client.sock.getsockname())
        attempt(outcomes, lambda: client.sendmail("s@example.com", ["r@example.com"], b"Subject: helo\r\n\r\nz\r\n"))
    return outcomes, peers


def normalised(calls: list[Call], peers: list[Any]) -> list[Call]:
    """Calls with ``peer`` replaced by which connection it was (checked exact)."""
    out = []
    for peer, mailfrom, rcpttos, data, kwargs in calls:
        assert type(peer) is tuple and peer in peers, (peer, peers)
        assert type(rcpttos) is list
        out.append((peers.index(peer), mailfrom, rcpttos, (type(data).__name__, data), kwargs))
    return out


MODES = [
    pytest.param({}, id="bytes"),
    pytest.param({"decode_data": True}, id="decode_data"),
    pytest.param({"enable_SMTPUTF8": True}, id="SMTPUTF8"),
]


# -- parity with CPython's smtpd ------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_process_message_arguments_and_replies_match_cpython_smtpd(mode: dict[str, Any]) -> None:
    std_smtpd, _ = _stdlib()
    options = {"decode_data": mode.get("decode_data", False), "utf8": mode.get("enable_SMTPUTF8", False)}
    with stdlib_running(recorder(std_smtpd.SMTPServer), **mode) as theirs:
        their_outcomes, their_peers = scenario(port_of(theirs), **options)
    with ours_running(recorder(msmtpd.SMTPServer), **mode) as ours:
        our_outcomes, our_peers = scenario(port_of(ours), **options)

    assert our_outcomes == their_outcomes
    assert [o[0] for o in our_outcomes].count("SMTPDataError") == 1  # the 554 for NOBODY
    assert normalised(ours.calls, our_peers) == normalised(theirs.calls, their_peers)
    # A few facts spelled out, so a shared mistake cannot hide behind parity.
    null_sender = ours.calls[1]
    assert null_sender[1] == "<>" and null_sender[2] == ["a@example.com", "b@example.org"]
    if mode.get("decode_data"):
        assert ours.calls[0][3] == "Subject: hi\n\n.leading dot\n..two dots\nbody"
        assert all(kwargs == {} for *_, kwargs in ours.calls)
    else:
        assert ours.calls[0][3] == b"Subject: hi\n\n.leading dot\n..two dots\nbody"
        assert ours.calls[0][4] == {"mail_options": ["SIZE=47"], "rcpt_options": []}
        assert ours.calls[-1][4] == {"mail_options": [], "rcpt_options": []}  # HELO


@pytest.mark.parametrize("mode", [pytest.param({}, id="bytes"), pytest.param({"decode_data": True}, id="decode_data")])
def test_debugging_server_prints_what_cpython_smtpd_printed(
    mode: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    std_smtpd, _ = _stdlib()
    message = b"From: a@example.com\r\nSubject: debug\r\n\r\nbody line\r\n.dot\r\n\r\nafter a blank\r\n"

    def send(port: int) -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=TIMEOUT) as client:
            client.sendmail("a@example.com", ["b@example.com"], message)
            client.sendmail("a@example.com", ["b@example.com"], b"no header block")

    capsys.readouterr()
    with stdlib_running(std_smtpd.DebuggingServer, **mode) as theirs:
        send(port_of(theirs))
    theirs_printed = capsys.readouterr().out
    with ours_running(msmtpd.DebuggingServer, **mode) as ours:
        send(port_of(ours))
    ours_printed = capsys.readouterr().out

    assert ours_printed == theirs_printed
    assert "X-Peer: 127.0.0.1" in ours_printed
    if not mode:
        assert "mail options: ['SIZE=" in ours_printed and "b'body line'" in ours_printed


# -- replies from process_message ---------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "enhanced", "lines"),
    [
        ("550 No such user", 550, None, ("No such user",)),
        ("550 5.1.1 No such user", 550, "5.1.1", ("5.1.1 No such user",)),
        ("250 Queued as 42", 250, None, ("Queued as 42",)),
        ("451 4.3.0 later\r\n", 451, "4.3.0", ("4.3.0 later",)),
        ("552", 552, None, ("",)),
        ("550-first\r\n550 second", 550, None, ("first", "second")),
        ("550 4.1.1 class mismatch", 550, None, ("4.1.1 class mismatch",)),
    ],
)
def test_parse_status(status: str, code: int, enhanced: str | None, lines: tuple[str, ...]) -> None:
    reply = msmtpd.parse_status(status)
    assert reply is not None
    assert (reply.code, reply.lines) == (code, lines)
    assert (str(reply.enhanced) if reply.enhanced else None) == enhanced


@pytest.mark.parametrize("status", ["hello", "354 go ahead", "600 nope", "55 short", b"550 bytes", 550,
                                    "550-a\r\n551 b", "OK 250"])
def test_parse_status_refuses_malformed(status: object) -> None:
    with pytest.raises(ValueError):
        msmtpd.parse_status(status)


def test_parse_status_none_and_empty_mean_250() -> None:
    assert msmtpd.parse_status(None) is None
    assert msmtpd.parse_status("") is None


class Scripted(msmtpd.SMTPServer):
    """process_message answers what the first recipient's local part says."""

    answers: dict[str, Any] = {
        "queued": "250 Queued as 42",
        "nouser": "550 5.1.1 No such user",
        "plain": "550 No such user",
        "multi": "550-first line\r\n550 second line",
        "malformed": "hello there",
        "intermediate": "354 go on",
        "notstr": b"550 bytes",
        "empty": "",
        "closing": "421 4.3.2 going away",
    }

    def process_message(self, peer: Any, mailfrom: str, rcpttos: list[str], data: Any, **kwargs: Any) -> Any:
        local = rcpttos[0].partition("@")[0]
        if local == "boom":
            raise RuntimeError("the handler broke")
        return self.answers.get(local)


@pytest.fixture
def scripted() -> Iterator[int]:
    with Scripted(("127.0.0.1", 0), None, map={}) as server, msmtpd.run_in_thread(server):
        yield port_of(server)


def transaction(client: smtplib.SMTP, rcpt: str) -> tuple[int, bytes]:
    client.ehlo_or_helo_if_needed()
    assert client.mail("s@example.com")[0] == 250
    assert client.rcpt(rcpt)[0] == 250
    return client.data(b"Subject: x\r\n\r\ny\r\n")


@pytest.mark.parametrize(
    ("local", "expected"),
    [
        ("queued", (250, b"Queued as 42")),
        ("nouser", (550, b"5.1.1 No such user")),
        ("plain", (550, b"No such user")),
        ("multi", (550, b"first line\nsecond line")),
        ("none", (250, b"2.0.0 Message accepted for delivery")),
        ("empty", (250, b"2.0.0 Message accepted for delivery")),
    ],
)
def test_the_returned_string_is_the_reply(scripted: int, local: str, expected: tuple[int, bytes]) -> None:
    with smtplib.SMTP("127.0.0.1", scripted, timeout=TIMEOUT) as client:
        assert transaction(client, f"{local}@example.com") == expected
        assert client.noop()[0] == 250  # the session goes on


@pytest.mark.parametrize("local", ["malformed", "intermediate", "notstr", "boom"])
def test_a_malformed_reply_or_an_exception_is_451_and_logged(
    scripted: int, local: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="mailwire.smtpd"):
        with smtplib.SMTP("127.0.0.1", scripted, timeout=TIMEOUT) as client:
            code, text = transaction(client, f"{local}@example.com")
            assert (code, text[:5]) == (451, b"4.3.0")
            assert transaction(client, "queued@example.com") == (250, b"Queued as 42")  # goes on
    assert any(r.name == "mailwire.smtpd" and r.levelno == logging.ERROR for r in caplog.records)


def test_a_421_reply_closes_the_connection(scripted: int) -> None:
    with smtplib.SMTP("127.0.0.1", scripted, timeout=TIMEOUT) as client:
        assert transaction(client, "closing@example.com") == (421, b"4.3.2 going away")
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.noop()


def test_base_class_process_message_is_not_implemented(caplog: pytest.LogCaptureFixture) -> None:
    with msmtpd.SMTPServer(("127.0.0.1", 0), None, map={}) as server, msmtpd.run_in_thread(server):
        with caplog.at_level(logging.ERROR, logger="mailwire.smtpd"):
            with smtplib.SMTP("127.0.0.1", port_of(server), timeout=TIMEOUT) as client:
                assert transaction(client, "a@example.com")[0] == 451
    assert any(r.exc_info and r.exc_info[0] is NotImplementedError for r in caplog.records)


def test_decode_data_refuses_data_that_is_not_utf8() -> None:
    with ours_running(recorder(msmtpd.SMTPServer), decode_data=True) as server:
        with smtplib.SMTP("127.0.0.1", port_of(server), timeout=TIMEOUT) as client:
            client.ehlo()
            client.mail("s@example.com")
            client.rcpt("r@example.com")
            assert client.data(b"Subject: latin-1 \xe9\r\n\r\n") == (554, b"5.6.0 Message is not valid UTF-8")
        assert server.calls == []


# -- construction, binding, the map -----------------------------------------------------


def test_binds_on_construction_and_close_releases_the_port() -> None:
    server = msmtpd.SMTPServer(("127.0.0.1", 0), None, map={})
    host, port = server.address
    assert host == "127.0.0.1" and port > 0 and server.socket is not None
    assert server.addr == ("127.0.0.1", 0)  # what was asked for, as asyncore kept it
    # Listening already: a client can connect before any loop runs; the
    # greeting comes once the loop serves the server.
    early = socket.create_connection((host, port), timeout=TIMEOUT)
    try:
        with msmtpd.run_in_thread(server):
            greeting = early.recv(1024)
            assert greeting.startswith(b"220 ") and b"Python SMTP proxy version 0.3" in greeting
    finally:
        early.close()
    # Still bound between loops, like an asyncore dispatcher.
    assert server.address == (host, port)
    server.close()
    assert server.socket is None
    with socket.socket() as again:
        again.bind((host, port))  # free again


def test_servers_are_recorded_in_the_module_map_until_closed() -> None:
    server = msmtpd.SMTPServer(("127.0.0.1", 0), None)
    try:
        assert server in msmtpd.socket_map.values()
    finally:
        server.close()
    assert server not in msmtpd.socket_map.values()
    own: dict[int, Any] = {}
    other = msmtpd.SMTPServer(("127.0.0.1", 0), None, map=own)
    try:
        assert list(own.values()) == [other] and other not in msmtpd.socket_map.values()
    finally:
        other.close()
    assert own == {}


def test_constructor_checks_as_smtpd_did() -> None:
    with pytest.raises(ValueError, match="decode_data and enable_SMTPUTF8"):
        msmtpd.SMTPServer(("127.0.0.1", 0), None, map={}, enable_SMTPUTF8=True, decode_data=True)
    with pytest.raises(ValueError, match="SMTPUTF8"):
        msmtpd.PureProxy(("127.0.0.1", 0), ("127.0.0.1", 25), map={}, enable_SMTPUTF8=True)
    busy = msmtpd.SMTPServer(("127.0.0.1", 0), None, map={})
    try:
        with pytest.raises(OSError):
            msmtpd.SMTPServer(busy.address, None, map={})
    finally:
        busy.close()


def test_public_names() -> None:
    assert msmtpd.__all__ == ["SMTPChannel", "SMTPServer", "DebuggingServer", "PureProxy"]
    for name in msmtpd.__all__:
        assert isinstance(getattr(msmtpd, name), type)
    assert msmtpd.DATA_SIZE_DEFAULT == 33554432 and msmtpd.NEWLINE == "\n" and msmtpd.COMMASPACE == ", "
    assert isinstance(msmtpd.DEBUGSTREAM, msmtpd.Devnull)  # silent unless assigned


def test_public_names_are_cpythons() -> None:
    std_smtpd, _ = _stdlib()
    assert set(msmtpd.__all__) == set(std_smtpd.__all__) - {"MailmanProxy"}  # MailmanProxy: gone in 3.11


def test_data_size_limit_is_advertised_and_enforced() -> None:
    with ours_running(recorder(msmtpd.SMTPServer), data_size_limit=100) as server:
        with smtplib.SMTP("127.0.0.1", port_of(server), timeout=TIMEOUT) as client:
            client.ehlo()
            assert client.esmtp_features["size"] == "100"
            with pytest.raises(smtplib.SMTPSenderRefused) as refused:
                client.sendmail("s@example.com", ["r@example.com"], b"x" * 200)
            assert refused.value.smtp_code == 552
            client.rset()
            assert client.sendmail("s@example.com", ["r@example.com"], b"x" * 50) == {}
    assert len(server.calls) == 1


@pytest.mark.parametrize("limit", [None, 0])
def test_no_data_size_limit(limit: int | None) -> None:
    """Without a limit EHLO offers no SIZE, as smtpd's did, so smtplib sends
    none and mail_options is smtpd's; a SIZE sent anyway is taken, as smtpd took it."""
    with ours_running(recorder(msmtpd.SMTPServer), data_size_limit=limit) as server:
        with smtplib.SMTP("127.0.0.1", port_of(server), timeout=TIMEOUT) as client:
            client.ehlo()
            assert not client.has_extn("size")
            assert client.sendmail("s@example.com", ["r@example.com"], b"x" * 100_000) == {}
            assert client.mail("s@example.com", ["SIZE=100000"])[0] == 250
            client.rset()
    assert len(server.calls[0][3]) == 100_000
    assert server.calls[0][4]["mail_options"] == []


def test_no_data_size_limit_as_smtpd() -> None:
    std_smtpd, _ = _stdlib()
    with stdlib_running(recorder(std_smtpd.SMTPServer), data_size_limit=None) as server:
        with smtplib.SMTP("127.0.0.1", port_of(server), timeout=TIMEOUT) as client:
            client.ehlo()
            assert not client.has_extn("size")
            assert client.sendmail("s@example.com", ["r@example.com"], b"x" * 100) == {}
            assert client.mail("s@example.com", ["SIZE=100000"])[0] == 250
    assert server.calls[0][4]["mail_options"] == []


def test_debugstream_gets_the_conversation(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(msmtpd, "DEBUGSTREAM", stream)
    with ours_running(recorder(msmtpd.SMTPServer)) as server:
        with smtplib.SMTP("127.0.0.1", port_of(server), timeout=TIMEOUT) as client:
            client.sendmail("s@example.com", ["r@example.com"], b"x")
    text = stream.getvalue()
    assert "Recorder started at" in text and "Local addr: ('127.0.0.1', 0)" in text
    assert "Incoming connection from ('127.0.0.1'," in text
    assert "sender: s@example.com" in text and "recips: ['r@example.com']" in text


def test_make_config_can_be_overridden() -> None:
    class Branded(msmtpd.DebuggingServer):
        def make_config(self) -> Any:
            import dataclasses

            return dataclasses.replace(super().make_config(), hostname="mx.example", greeting="hello")

    with Branded(("127.0.0.1", 0), None, map={}) as server, msmtpd.run_in_thread(server):
        with smtplib.SMTP("127.0.0.1", port_of(server), timeout=TIMEOUT) as client:
            assert client.ehlo()[1].startswith(b"mx.example")


# -- running: loop() and run_in_thread() ------------------------------------------------


def test_loop_without_servers_returns_at_once() -> None:
    started = time.monotonic()
    msmtpd.loop(map={})
    assert time.monotonic() - started < 1.0


def test_loop_serves_every_server_until_its_timeout_and_can_run_again() -> None:
    own: dict[int, Any] = {}
    first = recorder(msmtpd.SMTPServer)(("127.0.0.1", 0), None, map=own)
    second = recorder(msmtpd.SMTPServer)(("127.0.0.1", 0), None, map=own)
    first.calls, second.calls = [], []
    results: list[Any] = []

    def client() -> None:
        for server in (first, second):
            with smtplib.SMTP("127.0.0.1", port_of(server), timeout=TIMEOUT) as smtp:
                results.append(smtp.sendmail("s@example.com", [f"r{port_of(server)}@example.com"], b"x"))

    try:
        sender = threading.Thread(target=client)
        sender.start()  # connects at once: the sockets listen since construction
        started = time.monotonic()
        msmtpd.loop(1.0, map=own)
        assert 0.9 <= time.monotonic() - started < TIMEOUT
        sender.join(TIMEOUT)
        assert results == [{}, {}]
        assert [c[2] for c in first.calls] == [[f"r{port_of(first)}@example.com"]]
        assert [c[2] for c in second.calls] == [[f"r{port_of(second)}@example.com"]]
        with msmtpd.run_in_thread(map=own):  # the same servers, served again
            client()
        assert len(first.calls) == len(second.calls) == 2
    finally:
        first.close()
        second.close()


def test_run_in_thread_leaves_no_thread_behind() -> None:
    before = set(threading.enumerate())
    with msmtpd.DebuggingServer(("127.0.0.1", 0), None, map={}) as server:
        with msmtpd.run_in_thread(server) as running:
            assert running.is_alive()
            with smtplib.SMTP("127.0.0.1", port_of(server), timeout=TIMEOUT) as client:
                client.noop()
        assert not running.is_alive()
    assert set(threading.enumerate()) <= before
    with pytest.raises(ValueError):
        msmtpd.run_in_thread(map={})


def test_process_message_calls_never_overlap_and_do_not_block_the_loop() -> None:
    active = 0
    most = 0
    lock = threading.Lock()

    class Slow(msmtpd.SMTPServer):
        def process_message(self, peer: Any, mailfrom: str, rcpttos: list[str], data: Any, **kwargs: Any) -> None:
            nonlocal active, most
            with lock:
                active += 1
                most = max(most, active)
            time.sleep(0.5)
            with lock:
                active -= 1

    with Slow(("127.0.0.1", 0), None, map={}) as server, msmtpd.run_in_thread(server):
        port = port_of(server)

        def send() -> None:
            with smtplib.SMTP("127.0.0.1", port, timeout=TIMEOUT) as client:
                client.sendmail("s@example.com", ["r@example.com"], b"x")

        senders = [threading.Thread(target=send) for _ in range(3)]
        for thread in senders:
            thread.start()
        time.sleep(0.1)  # one is inside process_message now
        started = time.monotonic()
        with smtplib.SMTP("127.0.0.1", port, timeout=TIMEOUT) as client:
            assert client.noop()[0] == 250
        assert time.monotonic() - started < 0.4  # not waiting for the 1.5 s of process_message
        for thread in senders:
            thread.join(TIMEOUT)
    assert most == 1


# -- PureProxy ---------------------------------------------------------------------------


class _Picky(BaseSession):
    async def rcpt(self, address: str, options: RcptOptions) -> None:
        if address.startswith("nobody"):
            raise SMTPError(550, "5.1.1", "No such user")


class Picky:
    async def new_session(self, info: SessionInfo) -> Session:
        return _Picky(info)


def test_pure_proxy_forwards_with_an_x_peer_header() -> None:
    with run_server(Picky()) as upstream:
        for decode_data in (False, True):
            with msmtpd.PureProxy(("127.0.0.1", 0), (upstream.host, upstream.port), map={},
                                  decode_data=decode_data) as proxy, msmtpd.run_in_thread(proxy):
                with smtplib.SMTP("127.0.0.1", port_of(proxy), timeout=TIMEOUT) as client:
                    refused = client.sendmail("a@example.com", ["b@example.com", "nobody@example.com"],
                                              b"Subject: via proxy\r\n\r\nbody\r\n")
                # As smtpd: the client hears 250 for everyone; refusals go to DEBUGSTREAM.
                assert refused == {}
        first, second = upstream.wait_for(2)
    for envelope in (first, second):
        assert envelope.mail_from == "a@example.com" and envelope.rcpt_to == ["b@example.com"]
        assert envelope.content == b"Subject: via proxy\r\nX-Peer: 127.0.0.1\r\n\r\nbody\r\n"


def _refusal_parity_cases(upstream_port: int, closed_port: int) -> list[tuple[tuple[str, int], list[str]]]:
    return [
        (("127.0.0.1", upstream_port), ["b@example.com"]),
        (("127.0.0.1", upstream_port), ["b@example.com", "nobody1@example.com"]),
        (("127.0.0.1", upstream_port), ["nobody1@example.com", "nobody2@example.com"]),
        (("127.0.0.1", closed_port), ["b@example.com", "c@example.com"]),
    ]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_pure_proxy_deliver_returns_what_cpython_smtpd_returned(closed_port: int) -> None:
    std_smtpd, _ = _stdlib()
    with run_server(Picky()) as upstream:
        for remote, rcpts in _refusal_parity_cases(upstream.port, closed_port):
            theirs = std_smtpd.PureProxy(("127.0.0.1", 0), remote, map={}, decode_data=True)
            ours = msmtpd.PureProxy(("127.0.0.1", 0), remote, map={}, decode_data=True)
            try:
                data = "Subject: x\n\nbody\n"
                assert ours._deliver("a@example.com", rcpts, data) == theirs._deliver("a@example.com", rcpts, data)
            finally:
                theirs.close()
                ours.close()


def test_pure_proxy_refusals_without_cpython(closed_port: int) -> None:
    with run_server(Picky()) as upstream:
        cases = _refusal_parity_cases(upstream.port, closed_port)
        expected: list[dict[str, tuple[int, Any]]] = [
            {},
            {"nobody1@example.com": (550, b"5.1.1 No such user")},
            {"nobody1@example.com": (550, b"5.1.1 No such user"), "nobody2@example.com": (550, b"5.1.1 No such user")},
            {"b@example.com": (-1, "ignore"), "c@example.com": (-1, "ignore")},
        ]
        for (remote, rcpts), want in zip(cases, expected):
            with msmtpd.PureProxy(("127.0.0.1", 0), remote, map={}) as proxy:
                assert proxy._deliver("<>", rcpts, b"Subject: x\n\nbody\n") == want
        # The null sender went upstream as <> (smtpd's '<>' is not an address).
        assert upstream.wait_for(2)[0].mail_from == ""


# -- a classic smtpd program, converted by the two documented edits ------------------------

CLASSIC_PROGRAM = """\
import smtpd
import asyncore


class CustomSMTPServer(smtpd.SMTPServer):

    def process_message(self, peer, mailfrom, rcpttos, data, **kwargs):
        print('Receiving message from:', peer)
        print('Message addressed from:', mailfrom)
        print('Message addressed to  :', rcpttos)
        print('Message length        :', len(data))
        if 'nobody@example.com' in rcpttos:
            return '554 5.1.1 No such user here'
        return


server = CustomSMTPServer(('127.0.0.1', 1025), None)

asyncore.loop()
"""


def converted(program: str, port: int) -> str:
    source = program.replace("import smtpd\n", "import mailwire.smtpd as smtpd\n")
    source = source.replace("asyncore.loop()", "smtpd.loop()")
    # Python 3.12 has no asyncore: the import goes too (on 3.11 it may stay).
    source = source.replace("import asyncore\n", "")
    return source.replace("1025", str(port))


def _connect_when_up(port: int, process: subprocess.Popen[str]) -> smtplib.SMTP:
    deadline = time.monotonic() + 15.0
    while True:
        assert process.poll() is None, process.communicate()
        try:
            return smtplib.SMTP("127.0.0.1", port, timeout=TIMEOUT)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process is POSIX")
def test_a_classic_smtpd_program_runs_with_two_edits_and_stops_on_ctrl_c() -> None:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", converted(CLASSIC_PROGRAM, port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # Ctrl-C as at a terminal: a child inherits an ignored SIGINT (pytest
        # started in the background by a script), and Python then never turns
        # SIGINT into KeyboardInterrupt.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL) and None,
    )
    try:
        with _connect_when_up(port, process) as client:
            assert client.sendmail("me@example.com", ["you@example.com"], b"Subject: hi\r\n\r\nhello\r\n") == {}
            with pytest.raises(smtplib.SMTPDataError) as refused:
                client.sendmail("me@example.com", [NOBODY], b"Subject: hi\r\n\r\nhello\r\n")
            assert (refused.value.smtp_code, refused.value.smtp_error) == (554, b"5.1.1 No such user here")
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert "Traceback" not in err
    assert "Message addressed to  : ['you@example.com']" in out
    assert "Message addressed from: me@example.com" in out
    assert "Message length        : 18" in out  # b"Subject: hi\n\nhello"
    assert "Receiving message from: ('127.0.0.1'," in out

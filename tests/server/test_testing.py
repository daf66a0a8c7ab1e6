"""``mailwire.testing`` (a server in a thread for sync tests) and the pytest plugin.

Real sockets on 127.0.0.1, stdlib ``smtplib`` as the client, every wait
bounded. Each test checks what it leaves behind: the server thread is gone
and the port can be bound again. The plugin is exercised the way a user meets
it, through its ``pytest11`` entry point, in ``pytester`` runs of small test
files; its import cost is checked in a fresh interpreter.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import smtplib
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import Any

import pytest

from mailwire import Limits
from mailwire.errors import SMTPError
from mailwire.protocol.params import RcptOptions
from mailwire.reply import Reply
from mailwire.sasl import Credentials
from mailwire.server.aio import SMTPServer
from mailwire.server.envelope import Envelope, SessionInfo
from mailwire.server.session import AuthSession, BaseSession, LMTPSession, Session, VerifySession
from mailwire.testing import Messages, ServerThread, run_server

pytest_plugins = ["pytester"]

TIMEOUT = 5.0
MESSAGE = b"From: a@example.com\r\nSubject: hi\r\n\r\nhello\r\n"


def server_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "mailwire-test-server"]


def assert_released(port: int) -> None:
    assert server_threads() == []
    with socket.socket() as probe:
        # Nobody listens there any more: a new server can have the port (our
        # side's TIME_WAIT connections need SO_REUSEADDR, as servers set).
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))
        probe.listen()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()


def send(port: int, rcpts: Sequence[str] = ("b@example.com",), message: bytes = MESSAGE) -> dict[str, Any]:
    with smtplib.SMTP("127.0.0.1", port, timeout=TIMEOUT) as client:
        return client.sendmail("a@example.com", list(rcpts), message)


# -- run_server ----------------------------------------------------------------------


def test_run_server_collects_messages_and_cleans_up() -> None:
    with run_server() as server:
        assert server.host == "127.0.0.1" and server.port > 0
        assert server.address == ("127.0.0.1", server.port)
        assert isinstance(server.server, SMTPServer)
        assert len(server_threads()) == 1
        assert send(server.port, ["b@example.com", "c@example.org"]) == {}
        (envelope,) = server.wait_for(1, timeout=TIMEOUT)
        assert envelope.mail_from == "a@example.com"
        assert envelope.rcpt_to == ["b@example.com", "c@example.org"]
        assert envelope.content == MESSAGE
        assert envelope.session is not None and envelope.session.peer is not None
        assert server.messages == [envelope] and len(server.messages) == 1
        assert server.messages[0] is envelope and server.messages[:] == [envelope]
        server.clear()
        assert server.messages == [] and not server.messages
        port = server.port
    assert_released(port)


def test_messages_is_live_and_wait_for_times_out() -> None:
    with run_server() as server:
        messages = server.messages
        with pytest.raises(TimeoutError, match="0 message"):
            server.wait_for(1, timeout=0.2)
        send(server.port)
        send(server.port)
        assert len(server.wait_for(2, timeout=TIMEOUT)) == 2
        assert len(messages) == 2  # the same object saw them arrive
        assert "Messages([" in repr(messages)


def test_messages_from_many_threads_at_once() -> None:
    with run_server() as server:
        errors: list[BaseException] = []

        def one(i: int) -> None:
            try:
                send(server.port, [f"r{i}@example.com"])
            except BaseException as err:  # reported below
                errors.append(err)

        senders = [threading.Thread(target=one, args=(i,)) for i in range(20)]
        for thread in senders:
            thread.start()
        got = server.wait_for(20, timeout=TIMEOUT * 2)
        for thread in senders:
            thread.join(TIMEOUT)
        assert errors == []
        assert sorted(e.rcpt_to[0] for e in got) == sorted(f"r{i}@example.com" for i in range(20))


def test_a_function_handler_runs_and_refusals_are_not_recorded() -> None:
    seen: list[str] = []

    async def handle(envelope: Envelope) -> None:
        seen.append(envelope.rcpt_to[0])
        if envelope.rcpt_to[0].startswith("bad"):
            raise SMTPError(550, "5.7.1", "Refused by the handler")

    with run_server(handle) as server:
        send(server.port, ["good@example.com"])
        with pytest.raises(smtplib.SMTPDataError) as refused:
            send(server.port, ["bad@example.com"])
        assert (refused.value.smtp_code, refused.value.smtp_error) == (550, b"5.7.1 Refused by the handler")
        assert [e.rcpt_to for e in server.messages] == [["good@example.com"]]
    assert seen == ["good@example.com", "bad@example.com"]


class FullSession(BaseSession):
    """Every optional ability: AUTH, LMTP per-recipient delivery, VRFY."""

    async def rcpt(self, address: str, options: RcptOptions) -> None:
        if address.startswith("nobody"):
            raise SMTPError(550, "5.1.1", "No such user")

    async def authenticate(self, credentials: Credentials) -> None:
        if not credentials.check_password("secret"):
            raise SMTPError(535, "5.7.8", "Bad credentials")

    async def deliver(self, envelope: Envelope) -> Sequence[SMTPError | None]:
        return [SMTPError(452, "4.2.2", "Mailbox full") if r.startswith("full") else None
                for r in envelope.rcpt_to]

    async def verify(self, argument: str) -> Reply:
        return Reply.of(250, "2.1.5", f"<{argument}@example.com>")


class PlainSession(BaseSession):
    pass


class Backend:
    def __init__(self, session: type[BaseSession]) -> None:
        self.session = session

    async def new_session(self, info: SessionInfo) -> Session:
        return self.session(info)


def test_a_backend_keeps_its_optional_abilities() -> None:
    with run_server(Backend(FullSession), allow_plaintext_auth=True) as server:
        with smtplib.SMTP("127.0.0.1", server.port, timeout=TIMEOUT) as client:
            client.ehlo()
            assert client.has_extn("auth")
            with pytest.raises(smtplib.SMTPAuthenticationError):
                client.login("alice", "wrong")
            client.login("alice", "secret")
            assert client.verify("alice") == (250, b"2.1.5 <alice@example.com>")
            refused = client.sendmail("a@example.com", ["b@example.com", "nobody@example.com"], MESSAGE)
            assert refused == {"nobody@example.com": (550, b"5.1.1 No such user")}
        (envelope,) = server.wait_for(1)
        assert envelope.rcpt_to == ["b@example.com"]
        assert envelope.session is not None and envelope.session.auth_identity == "alice"


def test_a_plain_backend_gains_no_abilities() -> None:
    with run_server(Backend(PlainSession), allow_plaintext_auth=True) as server:
        with smtplib.SMTP("127.0.0.1", server.port, timeout=TIMEOUT) as client:
            client.ehlo()
            assert not client.has_extn("auth")
            assert client.verify("alice")[0] == 252
    # The server gets the backend itself, not a wrapper: its sessions have
    # exactly their abilities.
    info = SessionInfo(peer=("127.0.0.1", 1))
    for backend in (Backend(FullSession), Backend(PlainSession)):
        with run_server(backend) as server:
            assert server.server.backend is backend
    full = asyncio.run(Backend(FullSession).new_session(info))
    plain = asyncio.run(Backend(PlainSession).new_session(info))
    assert isinstance(full, AuthSession) and isinstance(full, LMTPSession) and isinstance(full, VerifySession)
    assert not isinstance(plain, (AuthSession, LMTPSession, VerifySession))


def test_lmtp_records_a_message_delivered_to_anyone() -> None:
    with run_server(Backend(FullSession), lmtp=True) as server:
        with smtplib.LMTP("127.0.0.1", server.port, timeout=TIMEOUT) as client:
            # smtplib reads one reply to the data; LMTP gives one per recipient.
            client.ehlo()  # smtplib.LMTP says LHLO
            for rcpts in (["b@example.com", "full@example.com"], ["full@example.com"]):
                client.mail("a@example.com")
                for rcpt in rcpts:
                    client.rcpt(rcpt)
                replies = [client.data(MESSAGE)] + [client.getreply() for _ in rcpts[1:]]
                assert [code for code, _ in replies] == [250 if r.startswith("b") else 452 for r in rcpts]
        assert [e.rcpt_to for e in server.messages] == [["b@example.com", "full@example.com"]]


def test_config_reaches_the_server() -> None:
    with run_server(hostname="mx.example", limits=Limits(message_size=100)) as server:
        assert server.server.config.hostname == "mx.example"
        with smtplib.SMTP("127.0.0.1", server.port, timeout=TIMEOUT) as client:
            code, text = client.ehlo()
            assert code == 250 and text.startswith(b"mx.example") and client.esmtp_features["size"] == "100"
            with pytest.raises(smtplib.SMTPSenderRefused):
                client.sendmail("a@example.com", ["b@example.com"], b"x" * 200)


def test_the_default_hostname_needs_no_dns() -> None:
    with run_server() as server:
        assert server.server.config.hostname == "localhost"


def test_a_port_in_use_fails_start_and_leaves_nothing() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError):
            with run_server(port=port):
                pass  # pragma: no cover - never reached
        assert server_threads() == []


def test_server_thread_start_stop_by_hand() -> None:
    thread = ServerThread()
    thread.stop()  # not started: nothing to do
    thread.start()
    with pytest.raises(RuntimeError):
        thread.start()
    port = thread.port
    send(port)
    thread.stop()
    thread.stop()  # twice is fine
    assert len(thread.messages) == 1  # still readable after the stop
    assert_released(port)


def test_stopping_with_a_client_still_connected() -> None:
    with run_server(grace=0.5) as server:
        client = smtplib.SMTP("127.0.0.1", server.port, timeout=TIMEOUT)
        client.ehlo()
        port = server.port
    try:
        try:
            code = client.noop()[0]  # the 421 the server said before closing
        except smtplib.SMTPServerDisconnected:
            code = 421
        assert code == 421
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.noop()
    finally:
        client.close()
    assert_released(port)


def test_messages_compares_like_a_list() -> None:
    messages = Messages()
    envelope = Envelope("a@example.com", rcpt_to=["b@example.com"])
    messages.append(envelope)
    assert messages == [envelope] and messages == (envelope,) and messages != []
    assert list(messages) == [envelope]
    other = Messages()
    other.append(envelope)
    assert messages == other
    assert messages.snapshot() == [envelope]


# -- the pytest plugin ---------------------------------------------------------------------


def test_the_plugin_is_registered_as_a_pytest11_entry_point() -> None:
    points = [e for e in importlib.metadata.entry_points(group="pytest11") if e.name == "mailwire"]
    assert [e.value for e in points] == ["mailwire.pytest_plugin"]


PLUGIN_USER = '''
import smtplib
import socket
import threading

import pytest

from mailwire.errors import SMTPError

seen = {}


def test_send_and_read(smtp_server, smtp_messages):
    assert smtp_messages is smtp_server.messages
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=5) as client:
        client.sendmail("a@example.com", ["b@example.com"], b"Subject: hi\\r\\n\\r\\nhello\\r\\n")
    (envelope,) = smtp_server.wait_for(1, timeout=5)
    assert envelope.rcpt_to == ["b@example.com"]
    assert smtp_messages[0].content == b"Subject: hi\\r\\n\\r\\nhello\\r\\n"
    seen["server"], seen["port"] = smtp_server, smtp_server.port


def test_a_fresh_server_per_test_and_the_last_one_gone(smtp_server, smtp_messages):
    assert smtp_messages == []
    assert smtp_server is not seen["server"]
    assert [t.name for t in threading.enumerate()].count("mailwire-test-server") == 1
    # The last one's port is free again, unless the kernel handed it to this
    # server (port 0 may well give the same number twice): then this server
    # listening on it shows the last one let it go.
    if smtp_server.port != seen["port"]:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(("127.0.0.1", seen["port"]))
            probe.listen()


async def refuse(envelope):
    raise SMTPError(554, "5.7.1", "Not today")


@pytest.mark.mailwire_server(refuse, hostname="mx.example")
def test_the_marker_configures_the_server(smtp_server, smtp_messages):
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=5) as client:
        assert client.ehlo()[1].startswith(b"mx.example")
        with pytest.raises(smtplib.SMTPDataError):
            client.sendmail("a@example.com", ["b@example.com"], b"x")
    assert smtp_messages == []
'''


def test_the_fixtures_in_a_pytest_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=PLUGIN_USER)
    result = pytester.runpytest("-p", "no:randomly", "-W", "error::pytest.PytestUnknownMarkWarning")
    result.assert_outcomes(passed=3)
    assert server_threads() == []


def test_a_pytest_run_without_the_fixtures_is_unaffected(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain="""
        def test_plain(request):
            assert request.config.pluginmanager.has_plugin("mailwire")
            assert 1 + 1 == 2
    """)
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    assert server_threads() == []
    # Disabled, the run is unaffected, and the fixtures are simply not there.
    pytester.makepyfile(test_plain="""
        def test_plain(request):
            assert not request.config.pluginmanager.has_plugin("mailwire")
    """)
    pytester.makepyfile(test_uses="def test_uses(smtp_server):\n    pass\n")
    result = pytester.runpytest("-p", "no:mailwire")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*fixture 'smtp_server' not found*"])


def test_a_projects_own_fixture_of_the_same_name_wins(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("""
        import pytest

        @pytest.fixture
        def smtp_server():
            return "the project's own"
    """)
    pytester.makepyfile(test_own="""
        def test_own(smtp_server):
            assert smtp_server == "the project's own"
    """)
    pytester.runpytest().assert_outcomes(passed=1)


def test_the_plugin_imports_no_server_code() -> None:
    probe = (
        "import sys, mailwire.pytest_plugin\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(('mailwire.server', 'mailwire.testing',"
        " 'mailwire.client.sync')) or m in ('asyncio', 'ssl'))\n"
        "print(loaded)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"

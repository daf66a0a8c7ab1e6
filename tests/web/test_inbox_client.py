"""``InboxClient``: the test helpers over the HTTP API of a catcher in another process.

Against real servers only, no mock of ``urllib``: the in-process catcher
(``start_catching``: SMTP, the store and the web inbox on one loop), the
same with ``/api/v1/wait`` answered 404 as Mailpit does (so the client
polls the search instead), and a ``mailwire serve`` process. Mail goes in
over SMTP (``smtplib``), as an application sends it.
"""

from __future__ import annotations

import json
import smtplib
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.typedefs import Handler

from mailwire.testing import InboxClient, InboxError

from server.test_cli_serve import Serve, serve  # noqa: F401 - the fixture
from .conftest import Catching, mail, start_catching, stop_catching
from .test_cli_web import WEB

pytest_plugins = ["pytester"]

TIMEOUT = 10.0


@web.middleware
async def like_mailpit(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Mailpit has no wait route: it answers it as any unknown path."""
    if request.path == "/api/v1/wait":
        return web.Response(status=404, text="404 page not found\n")
    return await handler(request)


@pytest.fixture(params=["mailwire", "mailpit"])
def catching(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Catching]:
    """A catcher that waits (mailwire) and one that cannot (Mailpit's API)."""
    middlewares = (like_mailpit,) if request.param == "mailpit" else ()
    running = start_catching(tmp_path / "mail", middlewares=middlewares)
    try:
        yield running
    finally:
        stop_catching(running)


def test_wait_for_and_read_a_message(catching: Catching) -> None:
    client = InboxClient(catching.url)
    catching.send(mail("Confirm your account", to="new@user.example", text="Your code is 482913",
                       html='<p>Code <b>482913</b></p><a href="https://app.example/c?t=1&amp;u=2">Go</a>'),
                  to=("new@user.example",))
    catching.send(mail("Other", to="other@user.example"), to=("other@user.example",))
    found = client.wait_for(to="new@user.example", subject="confirm", timeout=TIMEOUT)
    assert found.code() == "482913" and found.link("app.example") == "https://app.example/c?t=1&u=2"
    assert found.sender == "alice@example.com" and found.to == ["new@user.example"]
    assert found.id and client.message(found.id).raw == found.raw == client.raw(found.id)
    assert client.wait_for(sender="alice", timeout=TIMEOUT).subject == "Other"  # the newest match
    assert client.wait_for(query="subject:Other", timeout=TIMEOUT).to == ["other@user.example"]
    assert client.message().subject == "Other"  # latest
    assert [m.subject for m in client.messages()] == ["Confirm your account", "Other"]
    assert client.summaries("subject:confirm")["messages_count"] == 1
    assert client.info()["Messages"] == 2


def test_a_message_arriving_during_the_wait(catching: Catching) -> None:
    client = InboxClient(catching.url)
    later = threading.Timer(0.3, catching.send, (mail("Reset", to="late@user.example", text="PIN 7391"),),
                            {"to": ("late@user.example",)})
    later.start()
    try:
        assert client.wait_for(to="late@user.example", timeout=TIMEOUT).code() == "7391"
    finally:
        later.join(TIMEOUT)
    assert client.waits is (catching.web.app.middlewares[0] is not like_mailpit)


def test_a_long_wait_asks_again_after_each_round(catching: Catching) -> None:
    client = InboxClient(catching.url)
    client.wait_round = 0.1  # the server's most is 300 s: a wait longer than that takes rounds
    later = threading.Timer(0.5, catching.send, (mail("Slow"),))
    later.start()
    try:
        assert client.wait_for(subject="slow", timeout=TIMEOUT).subject == "Slow"
    finally:
        later.join(TIMEOUT)
    with pytest.raises(AssertionError, match=r"no message subject='never' arrived within 0.35 s; 1 message"):
        client.wait_for(subject="never", timeout=0.35)


def test_a_timeout_lists_what_did_arrive(catching: Catching) -> None:
    client = InboxClient(catching.url)
    catching.send(mail("Welcome"), to=("bob@example.org",))
    with pytest.raises(AssertionError) as failed:
        client.wait_for(to="carol@example.org", timeout=0.3)
    assert str(failed.value) == (
        "no message to='carol@example.org' arrived within 0.3 s; 1 message(s) did:\n"
        "  from alice@example.com to bob@example.org: 'Welcome'"
    )


def test_a_scoped_client_sees_and_clears_only_its_address(catching: Catching) -> None:
    client = InboxClient(catching.url)
    mine, theirs = client.scoped("t-1@mailwire.test"), client.scoped("t-2@mailwire.test")
    for to in ("t-1@mailwire.test", "t-2@mailwire.test", "t-1@mailwire.test"):
        catching.send(mail(f"to {to}", to=to), to=(to,))
    assert mine.wait_for(timeout=TIMEOUT).to == ["t-1@mailwire.test"]
    assert [m.to for m in mine.messages()] == [["t-1@mailwire.test"]] * 2
    theirs.clear()
    assert [m.subject for m in client.messages()] == ["to t-1@mailwire.test"] * 2
    with pytest.raises(AssertionError, match="no message to='t-2@mailwire.test' arrived"):
        theirs.wait_for(timeout=0.2)
    client.clear()
    assert client.messages() == []


def test_basic_auth_from_the_url_or_the_argument(tmp_path: Path) -> None:
    running = start_catching(tmp_path / "mail", auth=("admin", "s3cr:t"))
    try:
        running.send(mail("Secret"))
        port = running.url.rsplit(":", 1)[1]
        assert InboxClient(running.url, auth=("admin", "s3cr:t")).wait_for(timeout=TIMEOUT).subject == "Secret"
        assert InboxClient(f"http://admin:s3cr%3At@127.0.0.1:{port}/").message().subject == "Secret"
        with pytest.raises(InboxError, match=r"GET /api/v1/messages\?start=0&limit=500 at http://127.0.0.1:\d+: 401 "
                                             r"authentication required") as refused:
            InboxClient(running.url, auth=("admin", "wrong")).messages()
        assert refused.value.status == 401
    finally:
        stop_catching(running)


def test_errors_say_what_failed(catching: Catching) -> None:
    client = InboxClient(catching.url)
    with pytest.raises(InboxError, match=r"GET /api/v1/message/nope at .*: 404 no message nope") as missing:
        client.message("nope")
    assert missing.value.status == 404
    with pytest.raises(InboxError, match=r": 400 .*unclosed quote"):
        client.summaries('subject:"open')
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    with pytest.raises(InboxError, match=rf"cannot reach the inbox at http://127.0.0.1:{port} "
                                         r"\(GET /api/v1/info\): .*refused") as unreachable:
        InboxClient(f"http://127.0.0.1:{port}", timeout=5).info()
    assert unreachable.value.status is None
    with pytest.raises(ValueError, match="not an http"):
        InboxClient("smtp://127.0.0.1:25")
    with pytest.raises(ValueError, match="double quote"):
        client.wait_for(subject='say "hi"', timeout=0)


def test_against_a_mailwire_serve_process(serve: Callable[..., Serve]) -> None:  # noqa: F811
    server = serve("--port", "0", web=True)
    found = WEB.search(server.banner)
    assert found, server.banner
    client = InboxClient(found[1])
    with smtplib.SMTP("127.0.0.1", server.port, timeout=TIMEOUT) as smtp:
        smtp.send_message(mail("Verify", to="x@user.example", text="Your verification code: 66120"))
    assert client.wait_for(to="x@user.example", timeout=TIMEOUT).code() == "66120"
    assert client.waits is True
    assert server.stop() == 0


# -- tests in parallel ------------------------------------------------------------------

PARALLEL_USER = '''
import os
import pathlib
import smtplib
import time

import pytest

SMTP = ("127.0.0.1", int(os.environ["CATCHER_SMTP_PORT"]))


def _sync(name):
    """Each test says it has sent, then waits until the other has too."""
    here = pathlib.Path(os.environ["BARRIER_DIR"])
    (here / name).touch()
    deadline = time.monotonic() + 30
    while len(list(here.iterdir())) < 2:
        assert time.monotonic() < deadline, "the other test never sent"
        time.sleep(0.05)


@pytest.mark.parametrize("name", ["one", "two"])
def test_sign_up(name, mail_address, inbox_client):
    assert mail_address.endswith(("-gw0@mailwire.test", "-gw1@mailwire.test"))
    with smtplib.SMTP(*SMTP, timeout=10) as client:
        for i in range(2):
            client.sendmail("app@example.com", [mail_address],
                            f"To: {mail_address}\\r\\nSubject: {name} {i}\\r\\n\\r\\ncode 10{i}7\\r\\n".encode())
    _sync(name)
    message = inbox_client.wait_for(subject=f"{name} 1", timeout=10)
    assert message.to == [mail_address] and message.code() == "1017"
    assert sorted(m.subject for m in inbox_client.messages()) == [f"{name} 0", f"{name} 1"]
    with pytest.raises(AssertionError):
        inbox_client.wait_for(subject="one" if name == "two" else "two", timeout=0.2)
    assert len(inbox_client.scoped(None).messages()) == 4  # the other's mail is there, unseen
'''


def test_parallel_tests_never_see_each_others_mail(pytester: pytest.Pytester, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    running = start_catching(tmp_path / "mail")
    try:
        (tmp_path / "barrier").mkdir()
        monkeypatch.setenv("CATCHER_SMTP_PORT", str(running.smtp.port))
        monkeypatch.setenv("BARRIER_DIR", str(tmp_path / "barrier"))
        pytester.makepyfile(test_parallel=PARALLEL_USER)
        result = pytester.runpytest_subprocess("-n", "2", "-p", "no:randomly", "--mailwire-url", running.url)
        result.assert_outcomes(passed=2)
        assert len(json.loads(running.get("/api/v1/messages").body)["messages"]) == 4
    finally:
        stop_catching(running)


def test_the_inbox_client_fixture_takes_the_url_from_the_environment(
        pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    running = start_catching(tmp_path / "mail")
    try:
        monkeypatch.setenv("MAILWIRE_URL", running.url)
        monkeypatch.setenv("CATCHER_SMTP_PORT", str(running.smtp.port))
        pytester.makepyfile(test_env="""
            import os
            import smtplib

            def test_reset(mail_address, inbox_client):
                assert inbox_client.to == mail_address
                with smtplib.SMTP("127.0.0.1", int(os.environ["CATCHER_SMTP_PORT"]), timeout=10) as client:
                    client.sendmail("app@example.com", [mail_address],
                                    f"To: {mail_address}\\r\\nSubject: Reset\\r\\n\\r\\nPIN: 8080\\r\\n".encode())
                assert inbox_client.wait_for(timeout=10).code() == "8080"
        """)
        pytester.runpytest("-p", "no:randomly").assert_outcomes(passed=1)
    finally:
        stop_catching(running)

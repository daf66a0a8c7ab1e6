"""``mailwire serve`` with its web inbox: the banner, the options, auth, and without the extra."""

from __future__ import annotations

import argparse
import base64
import json
import re
import smtplib
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from mailwire.cli.main import _parser
from mailwire.cli.serve import plan
from mailwire.cli.serve_run import Plan
from mailwire.inbox import Catcher

from server.test_cli_serve import MSG, TIMEOUT, Serve, serve  # noqa: F401 - the fixture

WEB = re.compile(r", web inbox on (http://127\.0\.0\.1:(\d+)/)$")


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=TIMEOUT) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.read()


def test_serve_runs_the_web_inbox_beside_smtp(serve: Callable[..., Serve], tmp_path: Path) -> None:
    server = serve("--port", "0", web=True)
    found = WEB.search(server.banner)
    assert found, server.banner
    assert server.banner.startswith(f"mailwire serve: listening on 127.0.0.1:{server.port}, storing in ./mail")
    url = found[1]
    with smtplib.SMTP("127.0.0.1", server.port, timeout=TIMEOUT) as client:
        client.sendmail("alice@example.org", ["bob@example.net", "hidden@example.net"], MSG)
    status, body = _get(url + "api/v1/wait?query=subject:Hello&timeout=10")
    assert status == 200 and json.loads(body)["Bcc"] == [{"Name": "", "Address": "hidden@example.net"}]
    status, body = _get(url + "api/v1/info")
    assert json.loads(body)["RuntimeStats"]["SMTPAccepted"] == 1
    assert (tmp_path / "mail" / "mailwire-index.sqlite3").exists()
    assert server.stop() == 0 and server.stderr == ""


def test_web_auth(serve: Callable[..., Serve], tmp_path: Path) -> None:
    server = serve("--port", "0", "--web", "127.0.0.1:0", "--web-auth", "admin:s3cr:et", web=True)
    found = WEB.search(server.banner)
    assert found, server.banner
    status, body = _get(found[1] + "api/v1/messages")
    assert status == 401 and json.loads(body) == {"Error": "authentication required"}
    wrong = base64.b64encode(b"admin:s3cr").decode()
    assert _get(found[1] + "api/v1/messages", {"Authorization": f"Basic {wrong}"})[0] == 401
    right = base64.b64encode(b"admin:s3cr:et").decode()
    assert _get(found[1] + "api/v1/messages", {"Authorization": f"Basic {right}"})[0] == 200
    assert server.stop() == 0


def test_no_web_and_the_web_port_in_use(serve: Callable[..., Serve], tmp_path: Path) -> None:
    first = serve("--port", "0", web=True)
    found = WEB.search(first.banner)
    assert found
    second = serve("--port", "0", "--web", f"127.0.0.1:{found[2]}", "--maildir", "other", web=True, wait=False)
    assert second.wait() == 1
    assert second.stderr == (f"mailwire serve: cannot listen on 127.0.0.1:{found[2]}: address already in use "
                             "(is another server running there?)\n")
    assert "web inbox" not in serve("--port", "0", "--no-web", "--maildir", "third", web=True).banner


def _plan(*args: str) -> Plan:
    return plan(_parser().parse_args(["serve", *args]))


def _close(made: Plan) -> None:
    for companion in made.companions:
        getattr(companion, "inbox").close()


@pytest.mark.parametrize("args, words", [
    (("--sink", "--web", "127.0.0.1:0"), "--web needs it"),
    (("--print", "--web-auth", "a:b"), "--web needs it"),
    (("--workers", "2", "--web", "127.0.0.1:0"), "--workers 1 only"),
    (("--no-web", "--web", "127.0.0.1:0"), "contradicts"),
])
def test_usage_errors(args: tuple[str, ...], words: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mailwire.cli.options import UsageError

    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match=re.escape(words)):
        _plan(*args)


def test_plans(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    made = _plan()
    assert isinstance(made.backend, Catcher) and [c.where for c in made.companions] == ["127.0.0.1:8026"]
    _close(made)
    made = _plan("--port", "0")
    assert [c.where for c in made.companions] == ["127.0.0.1:0"]  # a free port beside a free SMTP port
    _close(made)
    for args in (("--sink",), ("--no-web",), ("--workers", "2")):
        made = _plan(*args)
        assert made.companions == () and type(made.backend).__name__ != "Catcher", args
    assert capsys.readouterr().err == "mailwire serve: no web inbox with --workers above 1 (--no-web silences this)\n"
    made = _plan("--web", "0.0.0.0:0")
    _close(made)
    assert "warning: the web inbox listens on 0.0.0.0, beyond this machine" in capsys.readouterr().err
    made = _plan("--web", "[::1]:0")
    _close(made)
    assert capsys.readouterr().err == ""


def test_without_the_extra_serve_says_how_to_get_it(tmp_path: Path) -> None:
    script = ("import sys; sys.modules['aiohttp'] = None; from mailwire.cli.main import main; "
              "sys.exit(main(['serve', '--port', '0']))")
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        assert banner.startswith("mailwire serve: listening on 127.0.0.1:") and "web" not in banner
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=TIMEOUT)
    assert err == "mailwire serve: the web inbox needs aiohttp and nh3: pip install 'mailwire[web]' (serving SMTP only)\n"
    assert proc.returncode == 0

"""``mailwire serve --release-to``: the release options, checked, and a real serve releasing to a TLS relay."""

from __future__ import annotations

import json
import re
import smtplib
import ssl
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme

from mailwire.cli.main import _parser
from mailwire.cli.options import UsageError
from mailwire.cli.serve import plan
from mailwire.cli.serve_relay import PASSWORD_ENV
from mailwire.cli.serve_run import Plan
from mailwire.inbox.release import ReleaseRelay
from mailwire.testing import ServerThread
from mailwire.web.release import RELAY

from server.test_cli_serve import MSG, TIMEOUT, Serve, serve  # noqa: F401 - the fixture

_TESTS = str(Path(__file__).resolve().parents[1])
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from helpers.certs import server_context  # noqa: E402

WEB = re.compile(r", web inbox on (http://127\.0\.0\.1:(\d+)/)$")


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def planned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., ReleaseRelay | None]]:
    """``planned(*args)``: the relay ``serve`` with these options gives its web inbox."""
    monkeypatch.chdir(tmp_path)
    made: list[Plan] = []

    def relay_of(*args: str) -> ReleaseRelay | None:
        checked = plan(_parser().parse_args(["serve", "--port", "0", *args]))
        made.append(checked)
        [web] = checked.companions
        return getattr(web, "app").get(RELAY)  # type: ignore[no-any-return]

    yield relay_of
    for checked in made:
        for companion in checked.companions:
            getattr(companion, "inbox").close()


def test_the_options_make_the_relay(planned: Callable[..., ReleaseRelay | None], ca_file: str,
                                    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert planned() is None
    relay = planned("--release-to", "smtp.example.com")
    assert relay is not None and (relay.host, relay.port, relay.tls, relay.auth) == ("smtp.example.com", 25,
                                                                                    "starttls", None)
    assert relay.ssl_context is not None and relay.ssl_context.verify_mode == ssl.CERT_REQUIRED
    assert relay.ssl_context.check_hostname
    relay = planned("--release-to", "[::1]:2465", "--release-tls", "tls", "--release-ca", ca_file,
                    "--release-auth", "u:p:w", "--release-allowed-recipients", "@example\\.net$",
                    "--release-blocked-recipients", "^no@", "--release-return-path", "b@example.com",
                    "--release-preserve-message-ids")
    assert relay is not None and (relay.host, relay.port, relay.tls, relay.auth) == ("::1", 2465, "implicit",
                                                                                    ("u", "p:w"))
    assert relay.server == "[::1]:2465" and relay.return_path == "b@example.com" and relay.preserve_message_ids
    assert relay.allowed_recipients is not None and relay.allowed_recipients.search("A@EXAMPLE.NET")
    assert relay.blocked_recipients is not None and relay.blocked_recipients.search("no@example.net")
    assert relay.ssl_context is not None and relay.ssl_context.cert_store_stats()["x509_ca"] == 1
    assert planned("--release-to", "h", "--release-tls", "tls").port == 465  # type: ignore[union-attr]
    monkeypatch.setenv(PASSWORD_ENV, "from-env")
    assert planned("--release-to", "h", "--release-auth", "user").auth == ("user", "from-env")  # type: ignore[union-attr]
    assert capsys.readouterr().err == ""
    relay = planned("--release-to", "localhost:2525", "--release-tls", "none")
    assert relay is not None and relay.tls == "none" and relay.ssl_context is None
    assert "warning: --release-tls none" in capsys.readouterr().err


@pytest.mark.parametrize("args, words", [
    (("--release-tls", "tls"), "--release-tls needs --release-to"),
    (("--release-ca", "x.pem"), "--release-ca needs --release-to"),
    (("--release-to", "h", "--release-tls", "none", "--release-auth", "u:p"), "plaintext"),
    (("--release-to", "h", "--release-auth", "u"), PASSWORD_ENV),
    (("--release-to", "h", "--release-ca", "missing.pem"), "cannot load CA certificates"),
    (("--release-to", "h", "--no-web"), "contradicts"),
    (("--release-to", "h", "--sink"), "--release-to"),
    (("--release-to", "h", "--workers", "2"), "--release-to"),
])
def test_usage_errors(args: tuple[str, ...], words: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    with pytest.raises(UsageError, match=re.escape(words)):
        plan(_parser().parse_args(["serve", *args]))


@pytest.mark.parametrize("args", [
    ("--release-to", "h:0"), ("--release-to", "h", "--release-tls", "ssl"),
    ("--release-to", "h", "--release-allowed-recipients", "(unclosed"),
    ("--release-to", "h", "--release-return-path", "a b@c"),
])
def test_bad_values_are_argument_errors(args: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        _parser().parse_args(["serve", *args])
    assert exit_.value.code == 2 and "--release-" in capsys.readouterr().err


def _post(url: str, body: object) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.read()


def test_serve_releases_to_a_starttls_relay_with_auth_from_the_environment(
        serve: Callable[..., Serve], ca: trustme.CA, ca_file: str) -> None:
    from mailwire.cli.serve_run import Users

    with ServerThread(tls_context=server_context(ca), authenticator=Users({"relay": "pw"}),
                      require_auth=True) as relay:
        server = serve("--port", "0", "--release-to", f"localhost:{relay.address[1]}", "--release-ca", ca_file,
                       "--release-auth", "relay", "--release-allowed-recipients", "@example\\.net$",
                       web=True, env={PASSWORD_ENV: "pw"})
        found = WEB.search(server.banner)
        assert found, server.banner
        url = found[1]
        with urllib.request.urlopen(url + "api/v1/webui", timeout=TIMEOUT) as reply:
            shown = json.loads(reply.read())["MessageRelay"]
        assert shown["Enabled"] and shown["SMTPServer"] == f"localhost:{relay.address[1]}"
        assert shown["AllowedRecipients"] == "@example\\.net$"
        with smtplib.SMTP("127.0.0.1", server.port, timeout=TIMEOUT) as client:
            client.sendmail("alice@example.org", ["bob@example.net"], MSG)
        assert _post(url + "api/v1/message/latest/release", {"To": ["eve@evil.test"]})[0] == 400
        assert _post(url + "api/v1/message/latest/release", {"To": ["carol@example.net"]}) == (200, b"ok")
        [envelope] = relay.wait_for(1)
        assert envelope.rcpt_to == ["carol@example.net"]
        assert envelope.session is not None and envelope.session.auth_identity == "relay"
        assert envelope.session.tls is not None
        assert server.stop() == 0 and server.stderr == ""

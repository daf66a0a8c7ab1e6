"""``mailwire serve --auth-accept-any``: AUTH offered, any credentials taken, the user recorded.

The server is the one ``serve``'s options build (``serve.plan``), run in a
thread for the clients of this process (the standard library's ``smtplib``
with each mechanism, mailwire's own client) and as ``mailwire serve`` itself
for swaks, a real client from outside, and for the banner and the line per
message.
"""

from __future__ import annotations

import shutil
import smtplib
import subprocess
import sys
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from mailwire import SMTPClient
from mailwire.cli.main import _parser
from mailwire.cli.serve import UsageError, plan
from mailwire.testing import ServerThread

from .test_cli_serve import Serve, serve  # noqa: F401  (the fixture)

ALICE, BOB = "alice@example.org", "bob@example.net"


def _message() -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = ALICE, BOB, "Hi"
    msg.set_content("hello")
    return msg


@pytest.fixture
def catcher(tmp_path: Path) -> Iterator[ServerThread]:
    """The server ``mailwire serve --auth-accept-any`` runs, in a thread."""
    built = plan(_parser().parse_args(["serve", "--auth-accept-any", "--maildir", str(tmp_path / "mail"), "-q"]))
    with ServerThread(built.backend, config=built.config) as server:
        yield server


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5"])
def test_any_password_with_each_mechanism_over_plaintext(catcher: ServerThread, mechanism: str) -> None:
    with smtplib.SMTP(catcher.host, catcher.port, timeout=10) as client:
        client.ehlo()
        offered = client.esmtp_features["auth"].split()
        assert offered == ["PLAIN", "LOGIN", "CRAM-MD5"]
        client.user, client.password = f"user-{mechanism}", "any password at all"
        code, _ = client.auth(mechanism, getattr(client, "auth_" + mechanism.lower().replace("-", "_")))
        assert code == 235
        client.send_message(_message())
    (envelope,) = catcher.wait_for(1)
    assert envelope.session is not None
    assert envelope.session.auth_identity == f"user-{mechanism}"  # recorded, for per-user mailboxes
    assert envelope.session.auth_mechanism == mechanism


def test_mail_without_auth_is_taken_too(catcher: ServerThread) -> None:
    with smtplib.SMTP(catcher.host, catcher.port, timeout=10) as client:
        assert client.send_message(_message()) == {}
    (envelope,) = catcher.wait_for(1)
    assert envelope.session is not None and envelope.session.auth_identity is None


def test_mailwire_client_with_credentials_unchanged(catcher: ServerThread) -> None:
    with SMTPClient(catcher.host, catcher.port, tls="none", auth=("app", "s3cret"), allow_plaintext_auth=True) as c:
        assert c.send(_message()).ok
    (envelope,) = catcher.wait_for(1)
    assert envelope.session is not None and envelope.session.auth_identity == "app"


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks is not installed")
@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5"])
def test_swaks_against_mailwire_serve(serve: object, tmp_path: Path, mechanism: str) -> None:
    server: Serve = serve("--port", "0", "--auth-accept-any", "--maildir", str(tmp_path / "mail"))  # type: ignore[operator]
    assert server.banner.startswith("mailwire serve: listening on 127.0.0.1:")
    assert "(AUTH accepting any)" in server.banner
    done = subprocess.run(
        ["swaks", "--server", f"127.0.0.1:{server.port}", "--from", ALICE, "--to", BOB, "--auth", mechanism,
         "--auth-user", "swaks-user", "--auth-password", "whatever"],
        capture_output=True, text=True, timeout=30,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "235 " in done.stdout
    line = server.line()
    assert line is not None and line.startswith(f"from=<{ALICE}> to=<{BOB}> subject=")
    assert len(list((tmp_path / "mail" / "new").iterdir())) == 1


def test_conflicts_and_help() -> None:
    with pytest.raises(UsageError, match="--auth-accept-any and --auth-file: give one"):
        plan(_parser().parse_args(["serve", "--auth-accept-any", "--auth-file", "users", "--sink"]))
    built = plan(_parser().parse_args(["serve", "--auth-accept-any", "--allow-plaintext-auth", "--sink"]))
    assert built.config.allow_plaintext_auth and not built.config.require_auth
    done = subprocess.run([sys.executable, "-m", "mailwire", "serve", "--help"], capture_output=True, text=True, timeout=30)
    assert "--auth-accept-any" in done.stdout and "Allowed without TLS" in " ".join(done.stdout.split())

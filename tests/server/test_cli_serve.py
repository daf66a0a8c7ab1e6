"""``mailwire serve`` as a user runs it: a real process, real sockets on 127.0.0.1.

Every test starts ``python -m mailwire serve`` as a subprocess (``--port 0``:
the banner names the port chosen), talks to it with the standard library's
``smtplib``, mailwire's own clients or a raw socket, and checks what a user
would: the Maildir file byte for byte (the message plus the Return-Path line
the Maildir backend adds), the line per message on stdout, the replies, and
the exit code and stderr when the process ends. Signals are sent for real.
A handful of in-process checks cover the pure pieces (defaults, the summary
line, the auth file). Every wait is bounded.
"""

from __future__ import annotations

import base64
import os
import queue
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
import trustme

from mailwire import AuthenticationError, LMTPClient, SMTPClient
from mailwire.cli.main import _parser
from mailwire.cli.serve import UsageError, plan, read_auth_file
from mailwire.cli.serve_run import summary_line
from mailwire.server.envelope import Envelope

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and Unix sockets")

TIMEOUT = 10.0  # any single wait in these tests
# Up to the banner: a new interpreter imports mailwire (under coverage, on a
# shared machine); the wait ends as soon as the banner comes.
START_TIMEOUT = 30.0
MSG = (
    b"From: alice@example.org\r\nTo: bob@example.net\r\nSubject: Hello there\r\n"
    b"Message-ID: <1@example.org>\r\n\r\nBody line\r\n.a line starting with a dot\r\n\r\nend\r\n"
)
STUFFED = MSG.replace(b"\r\n.", b"\r\n..")  # as DATA carries it (RFC 5321 4.5.2)
SUMMARY = f'from=<alice@example.org> to=<bob@example.net> subject="Hello there" size={len(MSG)}'
BANNER = re.compile(r"^mailwire serve: listening on (?P<where>.+?)(?: \((?P<features>[^)]*)\))?, (?P<what>.+)$")


def stored(message: bytes = MSG, sender: str = "alice@example.org") -> bytes:
    return b"Return-Path: <" + sender.encode() + b">\r\n" + message


class Serve:
    """One ``mailwire serve`` process, its stdout read line by line in a thread."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str] | None = None, umask: int = -1) -> None:
        self.args = args
        full_env = {**os.environ, "PYTHONIOENCODING": "utf-8", **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mailwire", "serve", *args], cwd=cwd, env=full_env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8", umask=umask,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._err: list[str] = []
        self._threads = [
            threading.Thread(target=self._pump_out, daemon=True),
            threading.Thread(target=self._pump_err, daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        self.banner = ""
        self.port = 0

    def _pump_out(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def _pump_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._err.append(line)

    def line(self, timeout: float = TIMEOUT) -> str | None:
        """The next stdout line; None at end of output."""
        try:
            return self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no output within {timeout}s; stderr: {self.stderr!r}") from None

    def wait_banner(self) -> Serve:
        line = self.line(START_TIMEOUT)
        assert line is not None, f"exited before listening: rc={self.proc.wait(TIMEOUT)} stderr={self.stderr!r}"
        match = BANNER.match(line)
        assert match, line
        self.banner = line
        tcp = re.search(r"127\.0\.0\.1:(\d+)", match["where"])
        self.port = int(tcp[1]) if tcp else 0
        return self

    def rest(self) -> list[str]:
        """The remaining stdout lines (the process must have ended)."""
        lines = []
        while (line := self.line()) is not None:
            lines.append(line)
        return lines

    def stop(self, signum: int = signal.SIGTERM, timeout: float = TIMEOUT) -> int:
        self.proc.send_signal(signum)
        return self.wait(timeout)

    def wait(self, timeout: float = TIMEOUT) -> int:
        rc = self.proc.wait(timeout)
        for thread in self._threads:
            thread.join(TIMEOUT)
        return rc

    @property
    def stderr(self) -> str:
        return "".join(self._err)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(TIMEOUT)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Serve]]:
    """``serve(*args, cwd=..., env=..., wait=True)``: a started process, killed at teardown.

    These are tests of the SMTP side: they run it without the web inbox
    (``--no-web``: the plain Maildir store, the banner without the web
    listener) unless ``web=True``; tests/web/ tests it with."""
    started: list[Serve] = []

    def start(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, wait: bool = True,
              umask: int = -1, web: bool = False) -> Serve:
        process = Serve(list(args) if web else ["--no-web", *args], cwd or tmp_path, env, umask)
        started.append(process)
        return process.wait_banner() if wait else process

    yield start
    for process in started:
        process.kill()


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short directory for Unix socket paths (sun_path holds ~107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="mw-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def cert_files(ca: trustme.CA, tmp_path: Path) -> tuple[str, str]:
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    for pem in cert.cert_chain_pems:
        pem.write_to_path(str(cert_path), append=True)
    cert.private_key_pem.write_to_path(str(key_path))
    return str(cert_path), str(key_path)


@pytest.fixture
def client_tls(ca: trustme.CA) -> Any:
    import ssl

    return ssl.create_default_context(cadata=ca.cert_pem.bytes().decode("ascii"))


@pytest.fixture
def auth_file(tmp_path: Path) -> str:
    path = tmp_path / "users"
    path.write_text("# test users\nalice:s3cret:with colon\n\nbob:hunter2\n", encoding="utf-8")
    return str(path)


def maildir_files(root: Path) -> list[bytes]:
    new = root / "new"
    return [p.read_bytes() for p in sorted(new.iterdir())] if new.is_dir() else []


class Raw:
    """A hand-driven SMTP client on a plain socket."""

    def __init__(self, port: int, *, prefix: bytes = b"") -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        if prefix:
            self.sock.sendall(prefix)
        self.file = self.sock.makefile("rb")

    def reply(self) -> tuple[int, str]:
        lines = []
        while True:
            line = self.file.readline(4096)
            if not line:
                return 0, "".join(lines)  # closed
            lines.append(line.decode())
            if line[3:4] != b"-":
                return int(line[:3]), "".join(lines)

    def cmd(self, line: bytes) -> tuple[int, str]:
        self.sock.sendall(line + b"\r\n")
        return self.reply()

    def close(self) -> None:
        self.file.close()
        self.sock.close()


# -- in-process: defaults and the pure pieces ------------------------------------------------


def test_defaults_listen_on_8025_and_store_in_mail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    made = plan(_parser().parse_args(["serve"]))
    assert made.tcp == ("127.0.0.1", 8025) and made.unix is None
    assert made.storing == "storing in ./mail (Maildir)"
    assert (tmp_path / "mail" / "new").is_dir()
    assert made.config.authenticator is None and not made.config.require_auth
    assert made.config.tls_context is None and not made.config.lmtp


def test_unix_alone_does_not_listen_on_tcp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    made = plan(_parser().parse_args(["serve", "--sink", "--unix", "x.sock"]))
    assert made.tcp is None and made.unix == "x.sock"


def test_summary_line_decodes_the_subject_and_counts_octets() -> None:
    content = b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= \"quoted\"\r\n\r\nSubject: not this\r\n"
    envelope = Envelope("", rcpt_to=["a@x.org", "b@y.org"], content=content)
    line = summary_line(envelope, envelope.rcpt_to)
    assert line == f'from=<> to=<a@x.org>,<b@y.org> subject="Grüße \\"quoted\\"" size={len(content)}'
    assert summary_line(Envelope("s@x", content=b"no headers"), ["r@x"]).endswith('subject="" size=10')


def test_auth_file_lines(tmp_path: Path) -> None:
    path = tmp_path / "users"
    path.write_text("# comment\n\nalice:pa:ss\r\nbob:\n", encoding="utf-8")
    assert read_auth_file(str(path)) == {"alice": "pa:ss", "bob": ""}
    for text, words in [("nocolon\n", "line 1"), ("a:1\na:2\n", "twice"), ("# only\n", "no user")]:
        path.write_text(text, encoding="utf-8")
        with pytest.raises(UsageError, match=words):
            read_auth_file(str(path))


# -- storing, printing, discarding -------------------------------------------------------------


def test_banner_and_maildir_with_smtplib(serve: Callable[..., Serve], tmp_path: Path) -> None:
    server = serve("--port", "0")
    assert server.banner == f"mailwire serve: listening on 127.0.0.1:{server.port}, storing in ./mail (Maildir)"
    with smtplib.SMTP("127.0.0.1", server.port, timeout=TIMEOUT) as client:
        assert client.sendmail("alice@example.org", ["bob@example.net"], MSG) == {}
    assert server.line() == SUMMARY
    assert maildir_files(tmp_path / "mail") == [stored()]
    assert server.stop() == 0
    assert server.rest() == [] and server.stderr == ""


def test_maildir_option_with_mailwire_client(serve: Callable[..., Serve], tmp_path: Path) -> None:
    box = tmp_path / "box"
    server = serve("--port", "0", "--maildir", str(box))
    assert server.banner.endswith(f", storing in {box} (Maildir)")
    with SMTPClient("127.0.0.1", server.port, tls="none", timeout=TIMEOUT) as client:
        result = client.send(MSG, "alice@example.org", ["bob@example.net", "carol@example.net"])
        assert result.ok
        client.send(MSG, "", ["bob@example.net"])  # the null sender (a bounce)
    assert server.line() == SUMMARY.replace("<bob@example.net>", "<bob@example.net>,<carol@example.net>")
    assert server.line() == SUMMARY.replace("from=<alice@example.org>", "from=<>")
    assert sorted(maildir_files(box)) == sorted([stored(), stored(sender="")])
    assert server.stop() == 0


def test_sink_discards(serve: Callable[..., Serve], tmp_path: Path) -> None:
    server = serve("--port", "0", "--sink")
    assert server.banner.endswith(", discarding messages (--sink)")
    with smtplib.SMTP("127.0.0.1", server.port, timeout=TIMEOUT) as client:
        assert client.sendmail("alice@example.org", ["bob@example.net"], MSG) == {}
    assert server.line() == SUMMARY
    assert server.stop() == 0
    assert not (tmp_path / "mail").exists()


def test_quiet_prints_no_line_per_message(serve: Callable[..., Serve], tmp_path: Path) -> None:
    server = serve("--port", "0", "-q")
    with smtplib.SMTP("127.0.0.1", server.port, timeout=TIMEOUT) as client:
        client.sendmail("alice@example.org", ["bob@example.net"], MSG)
    assert server.stop() == 0
    assert server.rest() == []
    assert maildir_files(tmp_path / "mail") == [stored()]


def test_print_shows_whole_messages_like_debugging_server(serve: Callable[..., Serve]) -> None:
    server = serve("--port", "0", "--print")
    assert server.banner.endswith(", printing messages to stdout")
    with smtplib.SMTP("127.0.0.1", server.port, timeout=TIMEOUT) as client:
        client.sendmail("alice@example.org", ["bob@example.net"], MSG)
    lines = [server.line() for _ in range(11)]
    assert lines == [
        "---------- MESSAGE FOLLOWS ----------",
        "From: alice@example.org", "To: bob@example.net", "Subject: Hello there",
        "Message-ID: <1@example.org>", "X-Peer: 127.0.0.1", "",
        "Body line", ".a line starting with a dot", "", "end",
    ]
    assert server.line() == "------------ END MESSAGE ------------"
    assert server.stop() == 0
    assert server.rest() == []


@pytest.mark.parametrize("with_ehlo", [
    False,
    True,
], ids=["header-alone", "header-then-ehlo"])
def test_proxy_protocol_reports_the_real_client(serve: Callable[..., Serve], with_ehlo: bool) -> None:
    server = serve("--port", "0", "--print", "--proxy-protocol", "--hostname", "mx.test.example")
    assert "(PROXY)" in server.banner
    header = b"PROXY TCP4 192.0.2.7 192.0.2.1 40000 25\r\n"
    raw = Raw(server.port, prefix=header + (b"EHLO client.example\r\n" if with_ehlo else b""))
    try:
        assert raw.reply() == (220, "220 mx.test.example ESMTP mailwire\r\n")
        assert (raw.reply() if with_ehlo else raw.cmd(b"EHLO client.example"))[0] == 250
        assert raw.cmd(b"MAIL FROM:<alice@example.org>")[0] == 250
        assert raw.cmd(b"RCPT TO:<bob@example.net>")[0] == 250
        assert raw.cmd(b"DATA")[0] == 354
        assert raw.cmd(b"Subject: s\r\n\r\nhi\r\n.")[0] == 250
        assert raw.cmd(b"QUIT")[0] == 221
    finally:
        raw.close()
    lines = [server.line() for _ in range(5)]
    assert lines[:3] == ["---------- MESSAGE FOLLOWS ----------", "Subject: s", "X-Peer: 192.0.2.7"]
    assert server.stop() == 0


def test_lmtp_on_a_unix_socket(serve: Callable[..., Serve], short_tmp: Path) -> None:
    path = short_tmp / "lmtp.sock"
    server = serve("--lmtp", "--unix", str(path), "--maildir", str(short_tmp / "box"))
    assert server.banner == f"mailwire serve: listening on {path} (LMTP), storing in {short_tmp / 'box'} (Maildir)"
    with LMTPClient(str(path), timeout=TIMEOUT) as client:
        result = client.send(MSG, "alice@example.org", ["bob@example.net", "carol@example.net"])
    assert result.ok and len(result.recipients) == 2
    assert maildir_files(short_tmp / "box") == [stored()]
    assert server.stop() == 0
    assert not path.exists()


def test_unix_and_tcp_together(serve: Callable[..., Serve], short_tmp: Path) -> None:
    path = short_tmp / "smtp.sock"
    server = serve("--unix", str(path), "--port", "0", "--sink", "-q")
    assert f"listening on {path} and 127.0.0.1:{server.port}," in server.banner
    with SMTPClient(str(path), tls="none", timeout=TIMEOUT) as client:
        assert client.send(MSG, "alice@example.org", ["bob@example.net"]).ok
    with SMTPClient("127.0.0.1", server.port, tls="none", timeout=TIMEOUT) as client:
        assert client.send(MSG, "alice@example.org", ["bob@example.net"]).ok
    assert server.stop() == 0


# -- TLS and AUTH --------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", ["1", "2"])  # 2: the TLS context crosses the fork
def test_starttls(
    serve: Callable[..., Serve], cert_files: tuple[str, str], client_tls: Any, tmp_path: Path, workers: str
) -> None:
    cert, key = cert_files
    server = serve("--port", "0", "--tls-cert", cert, "--tls-key", key, "--workers", workers)
    assert "(STARTTLS)" in server.banner
    with smtplib.SMTP("127.0.0.1", server.port, timeout=TIMEOUT) as client:
        client.ehlo()
        assert client.has_extn("starttls")
        client.starttls(context=client_tls)
        client.ehlo()
        assert client.sock.version() is not None and not client.has_extn("starttls")
        client.sendmail("alice@example.org", ["bob@example.net"], MSG)
    assert maildir_files(tmp_path / "mail") == [stored()]
    assert server.line() == SUMMARY
    assert server.stop() == 0


def test_starttls_with_mailwire_client(
    serve: Callable[..., Serve], cert_files: tuple[str, str], client_tls: Any, tmp_path: Path
) -> None:
    cert, key = cert_files
    server = serve("--port", "0", "--tls-cert", cert, "--tls-key", key)
    with SMTPClient("127.0.0.1", server.port, tls="starttls", ssl_context=client_tls, timeout=3) as client:
        assert client.is_tls
        assert client.send(MSG, "alice@example.org", ["bob@example.net"]).ok
    assert maildir_files(tmp_path / "mail") == [stored()]


def test_implicit_tls_with_key_in_the_cert_file(
    serve: Callable[..., Serve], cert_files: tuple[str, str], client_tls: Any, tmp_path: Path
) -> None:
    cert, key = cert_files
    both = tmp_path / "both.pem"
    both.write_bytes(Path(key).read_bytes() + Path(cert).read_bytes())
    server = serve("--port", "0", "--tls-cert", str(both), "--implicit-tls")
    assert "(implicit TLS)" in server.banner
    with SMTPClient("127.0.0.1", server.port, tls="implicit", ssl_context=client_tls, timeout=TIMEOUT) as client:
        assert client.send(MSG, "alice@example.org", ["bob@example.net"]).ok
    assert maildir_files(tmp_path / "mail") == [stored()]
    assert server.stop() == 0


@pytest.fixture
def auth_server(serve: Callable[..., Serve], cert_files: tuple[str, str], auth_file: str) -> Serve:
    cert, key = cert_files
    server = serve("--port", "0", "--tls-cert", cert, "--tls-key", key, "--implicit-tls", "--auth-file", auth_file,
                   "-v")
    assert "(implicit TLS, AUTH)" in server.banner
    return server


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5"])
def test_auth_right_password(auth_server: Serve, client_tls: Any, tmp_path: Path, mechanism: str) -> None:
    with smtplib.SMTP_SSL("127.0.0.1", auth_server.port, timeout=TIMEOUT, context=client_tls) as client:
        client.ehlo()
        assert "PLAIN LOGIN CRAM-MD5" in client.esmtp_features["auth"].upper()
        client.user, client.password = "alice", "s3cret:with colon"
        method = {"PLAIN": client.auth_plain, "LOGIN": client.auth_login, "CRAM-MD5": client.auth_cram_md5}
        assert client.auth(mechanism, method[mechanism])[0] == 235
        client.sendmail("alice@example.org", ["bob@example.net"], MSG)
    assert maildir_files(tmp_path / "mail") == [stored()]
    assert auth_server.line() == SUMMARY
    assert auth_server.stop() == 0
    assert "authenticated as alice" in auth_server.stderr


def test_auth_with_mailwire_client_over_implicit_tls(
    serve: Callable[..., Serve], cert_files: tuple[str, str], auth_file: str, client_tls: Any, tmp_path: Path
) -> None:
    cert, key = cert_files
    server = serve("--port", "0", "--tls-cert", cert, "--tls-key", key, "--implicit-tls", "--auth-file", auth_file)
    assert "(implicit TLS, AUTH)" in server.banner
    with SMTPClient("127.0.0.1", server.port, tls="implicit", auth=("bob", "hunter2"), ssl_context=client_tls,
                    timeout=TIMEOUT) as client:
        assert client.send(MSG, "alice@example.org", ["bob@example.net"]).ok
    with pytest.raises(AuthenticationError):
        SMTPClient("127.0.0.1", server.port, tls="implicit", auth=("bob", "nope"), ssl_context=client_tls,
                   timeout=TIMEOUT)
    assert maildir_files(tmp_path / "mail") == [stored()]
    assert server.stop() == 0


@pytest.mark.parametrize("user, password", [("alice", "wrong"), ("mallory", "hunter2"), ("bob", "")])
def test_auth_wrong_password_and_mail_without_auth(
    auth_server: Serve, client_tls: Any, tmp_path: Path, user: str, password: str
) -> None:
    with smtplib.SMTP_SSL("127.0.0.1", auth_server.port, timeout=TIMEOUT, context=client_tls) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            client.login(user, password)
        assert refused.value.smtp_code == 535
        assert client.mail("alice@example.org")[0] == 530
    assert maildir_files(tmp_path / "mail") == []
    assert auth_server.stop() == 0
    assert f"refused for {user!r}" in auth_server.stderr


def test_auth_refused_without_tls(serve: Callable[..., Serve], auth_file: str, tmp_path: Path) -> None:
    server = serve("--port", "0", "--auth-file", auth_file)
    raw = Raw(server.port)
    try:
        assert raw.reply()[0] == 220
        code, ehlo = raw.cmd(b"EHLO client.example")
        assert code == 250 and "AUTH" not in ehlo
        token = base64.b64encode(b"\0alice\0s3cret:with colon")
        assert raw.cmd(b"AUTH PLAIN " + token)[0] == 538
        assert raw.cmd(b"MAIL FROM:<alice@example.org>")[0] == 530
    finally:
        raw.close()
    assert server.stop() == 0
    assert "no client can send" in server.stderr


def test_allow_plaintext_auth(serve: Callable[..., Serve], auth_file: str, tmp_path: Path) -> None:
    server = serve("--port", "0", "--auth-file", auth_file, "--allow-plaintext-auth")
    with smtplib.SMTP("127.0.0.1", server.port, timeout=TIMEOUT) as client:
        assert client.login("bob", "hunter2")[0] == 235
        client.sendmail("alice@example.org", ["bob@example.net"], MSG)
    assert maildir_files(tmp_path / "mail") == [stored()]
    assert server.stop() == 0


# -- limits ------------------------------------------------------------------------------------------


def test_max_size(serve: Callable[..., Serve], tmp_path: Path) -> None:
    server = serve("--port", "0", "--max-size", "1000")
    big = MSG + b"x" * 70 + b"\r\n" + (b"y" * 998 + b"\r\n") * 2
    with smtplib.SMTP("127.0.0.1", server.port, timeout=TIMEOUT) as client:
        client.ehlo()
        assert client.esmtp_features["size"] == "1000"
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:  # smtplib declares SIZE=
            client.sendmail("alice@example.org", ["bob@example.net"], big)
        assert refused.value.smtp_code == 552
        client.rset()
        assert client.mail("alice@example.org")[0] == 250  # no SIZE: refused at the end of data
        assert client.rcpt("bob@example.net")[0] == 250
        assert client.data(big)[0] == 552
        assert client.sendmail("alice@example.org", ["bob@example.net"], MSG) == {}
    assert maildir_files(tmp_path / "mail") == [stored()]
    assert server.stop() == 0


@pytest.mark.parametrize(("option", "accepted"), [((), False), (("--max-line", "0"), True)])
def test_max_line(serve: Callable[..., Serve], tmp_path: Path, option: tuple[str, ...], accepted: bool) -> None:
    server = serve("--port", "0", *option)
    long_line = MSG + b"x" * 1200 + b"\r\n"
    with smtplib.SMTP("127.0.0.1", server.port, timeout=TIMEOUT) as client:
        if accepted:
            assert client.sendmail("alice@example.org", ["bob@example.net"], long_line) == {}
        else:
            with pytest.raises(smtplib.SMTPDataError) as refused:
                client.sendmail("alice@example.org", ["bob@example.net"], long_line)
            assert refused.value.smtp_code == 550 and refused.value.smtp_error.startswith(b"5.6.0 ")
        assert client.sendmail("alice@example.org", ["bob@example.net"], MSG) == {}
    assert len(maildir_files(tmp_path / "mail")) == (2 if accepted else 1)
    assert server.stop() == 0


# -- relaying ----------------------------------------------------------------------------------------


def test_relay_to_another_mailwire_serve(serve: Callable[..., Serve], tmp_path: Path) -> None:
    upstream = serve("--port", "0", "--maildir", str(tmp_path / "up"), "--max-size", "1000")
    front = serve("--port", "0", "--relay", f"127.0.0.1:{upstream.port}")
    assert front.banner.endswith(f", relaying to 127.0.0.1:{upstream.port} (TLS: none)")
    with smtplib.SMTP("127.0.0.1", front.port, timeout=TIMEOUT) as client:
        assert client.sendmail("alice@example.org", ["bob@example.net"], MSG) == {}
        # The upstream's refusal comes back to the sender with its own code.
        client.mail("alice@example.org")
        client.rcpt("bob@example.net")
        code, text = client.data(MSG + (b"z" * 500 + b"\r\n") * 4)
        assert code == 552 and b"upstream: " in text
    assert front.line() == SUMMARY and upstream.line() == SUMMARY
    assert maildir_files(tmp_path / "up") == [stored()]
    assert front.stop() == 0 and upstream.stop() == 0


@pytest.mark.parametrize("tls", [
    "implicit", "starttls",
])
def test_relay_with_tls_and_auth(
    serve: Callable[..., Serve], cert_files: tuple[str, str], auth_file: str, ca: trustme.CA, tmp_path: Path,
    tls: str,
) -> None:
    cert, key = cert_files
    implicit = ["--implicit-tls"] if tls == "implicit" else []
    upstream = serve("--port", "0", "--maildir", str(tmp_path / "up"), "--tls-cert", cert, "--tls-key", key,
                     *implicit, "--auth-file", auth_file)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))  # the relay verifies the upstream against the default CA store
    relay_tls = ["--relay-tls"] if tls == "starttls" else ["--relay-tls", tls]
    front = serve("--port", "0", "--relay", f"127.0.0.1:{upstream.port}", *relay_tls,
                  "--relay-auth", "bob:hunter2", env={"SSL_CERT_FILE": str(ca_file)})
    assert front.banner.endswith(f"(TLS: {tls})")
    with smtplib.SMTP("127.0.0.1", front.port, timeout=TIMEOUT) as client:
        assert client.sendmail("alice@example.org", ["bob@example.net"], MSG) == {}
    assert maildir_files(tmp_path / "up") == [stored()]
    assert front.stop() == 0 and upstream.stop() == 0


# -- shutting down -----------------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_exits_zero_quickly(serve: Callable[..., Serve], signum: int) -> None:
    server = serve("--port", "0", "-v")
    start = time.monotonic()
    assert server.stop(signum, timeout=5) == 0
    assert time.monotonic() - start < 5
    assert f"{signal.Signals(signum).name}: stopping" in server.stderr
    assert "Traceback" not in server.stderr
    assert server.rest() == []


def _begin_message(port: int) -> Raw:
    raw = Raw(port)
    assert raw.reply()[0] == 220
    assert raw.cmd(b"EHLO client.example")[0] == 250
    assert raw.cmd(b"MAIL FROM:<alice@example.org>")[0] == 250
    assert raw.cmd(b"RCPT TO:<bob@example.net>")[0] == 250
    assert raw.cmd(b"DATA")[0] == 354
    return raw


def test_sigterm_with_a_message_in_flight_stores_it_whole(serve: Callable[..., Serve], tmp_path: Path) -> None:
    server = serve("--port", "0")
    raw = _begin_message(server.port)
    try:
        half = len(STUFFED) // 2
        raw.sock.sendall(STUFFED[:half])
        time.sleep(0.2)
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        raw.sock.sendall(STUFFED[half:] + b".\r\n")
        code, _ = raw.reply()
        assert code in (250, 421, 0)
        if code == 250:
            assert maildir_files(tmp_path / "mail") == [stored()]
            assert raw.reply()[0] == 421  # then the server says goodbye
        else:
            assert maildir_files(tmp_path / "mail") == []
    finally:
        raw.close()
    assert server.wait() == 0
    assert list((tmp_path / "mail" / "tmp").iterdir()) == []


def test_sigterm_with_a_stalled_message_stores_nothing(serve: Callable[..., Serve], tmp_path: Path) -> None:
    server = serve("--port", "0", "--grace", "0.5")
    raw = _begin_message(server.port)
    try:
        raw.sock.sendall(MSG[: len(MSG) // 2])
        time.sleep(0.2)
        start = time.monotonic()
        assert server.stop(signal.SIGTERM, timeout=5) == 0
        assert time.monotonic() - start < 4
        assert raw.reply()[0] in (0, 421)  # closed, maybe with a 421 first
    finally:
        raw.close()
    mail = tmp_path / "mail"
    assert maildir_files(mail) == [] and list((mail / "tmp").iterdir()) == []
    assert server.rest() == []


@pytest.mark.parametrize("workers, said", [
    ("1", "SIGINT again, stopping now"),
    ("2", "SIGINT again: stopping the workers now"),  # the supervisor's log line (test_workers.py)
])
def test_second_signal_stops_at_once(serve: Callable[..., Serve], tmp_path: Path, workers: str, said: str) -> None:
    server = serve("--port", "0", "--grace", "60", "--workers", workers)
    raw = _begin_message(server.port)
    try:
        raw.sock.sendall(b"Subject: stalled\r\n")
        time.sleep(0.2)
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert server.proc.poll() is None  # waiting for the message, up to --grace
        assert server.stop(signal.SIGINT, timeout=5) == 1
    finally:
        raw.close()
    assert said in server.stderr
    assert maildir_files(tmp_path / "mail") == []


# -- errors ------------------------------------------------------------------------------------------


def test_port_in_use(serve: Callable[..., Serve]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        server = serve("--port", str(port), wait=False)
        assert server.wait() == 1
    assert server.rest() == []
    lines = server.stderr.splitlines()
    assert lines == [f"mailwire serve: cannot listen on 127.0.0.1:{port}: address already in use"
                     " (is another server running there?)"]


@pytest.mark.parametrize("args, words", [
    (["--port", "65536"], "argument --port"),
    (["--port", "eighty"], "argument --port"),
    (["--max-size", "-5"], "argument --max-size"),
    (["--max-line", "long"], "argument --max-line"),
    (["--max-line", "78"], "at least 1000 octets"),
    (["--tls-cert", "missing.pem"], "cannot read --tls-cert missing.pem"),
    (["--tls-cert", "{cert}", "--tls-key", "missing.pem"], "cannot read --tls-key missing.pem"),
    (["--tls-cert", "{users}"], "as a certificate and key"),
    (["--tls-key", "{key}"], "--tls-key needs --tls-cert"),
    (["--implicit-tls"], "--implicit-tls needs --tls-cert"),
    (["--auth-file", "missing.txt"], "cannot read --auth-file missing.txt"),
    (["--auth-file", "{dir}"], "cannot read --auth-file"),
    (["--auth-file", "{bad_users}"], "line 1: expected user:password"),
    (["--allow-plaintext-auth"], "--allow-plaintext-auth needs --auth-file"),
    (["--sink", "--print"], "not allowed with"),
    (["--maildir", "m", "--relay", "127.0.0.1:25"], "not allowed with"),
    (["--relay", "nowhere"], "expected HOST:PORT"),
    (["--relay-tls"], "--relay-tls needs --relay"),
    (["--relay", "127.0.0.1:25", "--relay-auth", "u:p"], "--relay-auth needs --relay-tls"),
    (["--relay-tls", "sometimes"], "invalid choice"),
    (["--grace", "-1"], "argument --grace"),
    (["--no-such-option"], "unrecognized arguments"),
])
def test_bad_arguments_one_line_exit_2(
    serve: Callable[..., Serve], tmp_path: Path, cert_files: tuple[str, str], args: list[str], words: str
) -> None:
    (tmp_path / "users").write_text("alice:x\n", encoding="utf-8")
    (tmp_path / "bad_users").write_text("no colon here\n", encoding="utf-8")
    (tmp_path / "dir").mkdir()
    names = {"cert": cert_files[0], "key": cert_files[1], "users": str(tmp_path / "users"),
             "bad_users": str(tmp_path / "bad_users"), "dir": str(tmp_path / "dir")}
    server = serve(*(a.format(**names) for a in args), wait=False)
    assert server.wait() == 2
    assert server.rest() == []
    lines = server.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("mailwire") and words in lines[0], lines


def test_maildir_that_is_not_one(serve: Callable[..., Serve], tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("x", encoding="utf-8")
    server = serve("--port", "0", "--maildir", "notes", wait=False)
    assert server.wait() == 1
    assert server.stderr.splitlines() == ["mailwire serve: --maildir notes is a directory but not a Maildir"
                                          " (no tmp/new/cur)"]


def test_console_script_and_send_still_work(serve: Callable[..., Serve], tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("mailwire")
    if not script.exists():
        pytest.skip("no console script next to this interpreter")
    shown = subprocess.run([str(script), "serve", "--help"], capture_output=True, text=True, timeout=TIMEOUT)
    assert shown.returncode == 0 and "--auth-file" in shown.stdout
    server = serve("--port", "0")
    sent = subprocess.run(
        [str(script), "send", "--server", f"127.0.0.1:{server.port}", "--tls", "none",
         "--from", "alice@example.org", "--to", "bob@example.net", "--subject", "Hi", "--body", "text"],
        capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL,
    )
    assert sent.returncode == 0, sent.stderr
    line = server.line()
    assert line is not None and line.startswith('from=<alice@example.org> to=<bob@example.net> subject="Hi" size=')
    assert server.stop() == 0

"""``mailwire send`` run for real: the command as a subprocess, a real server on loopback.

The server is ``mailwire.testing.run_server`` (a thread in this process that
records what its backend accepted) or ``mailwire serve`` as a subprocess (for
LMTP over a Unix socket, and for a server that dies mid-run). Every
subprocess has a timeout, and every failure the user can cause is checked to
be one line on stderr and the documented exit code, never a traceback.
"""

from __future__ import annotations

import mailbox
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path

import pytest
import trustme

from mailwire import SMTPError
from mailwire.protocol.params import RcptOptions
from mailwire.sasl import Credentials
from mailwire.server.envelope import Envelope, SessionInfo
from mailwire.server.session import BaseSession, FunctionBackend, Session
from mailwire.testing import ServerThread, run_server

SEND = [sys.executable, "-m", "mailwire", "send"]
ALICE, BOB, CAROL, DAVE = "alice@example.org", "bob@example.net", "carol@example.net", "dave@example.net"

EML = (
    "From: Alice <alice@example.org>\n"
    "To: Bob <bob@example.net>\n"
    "Bcc: carol@example.net\n"
    "Subject: from a file\n"
    "X-Test: kept as it is\n"
    "\n"
    "Hello from an .eml file.\n"
).encode()


def send(*args: str, input: bytes | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """``mailwire send ARGS``; stdin is ``input``, or /dev/null (never a terminal)."""
    proc = subprocess.run(
        [*SEND, *args], input=input, stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True, timeout=timeout,
    )
    return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode(), proc.stderr.decode())


def at(server: ServerThread) -> list[str]:
    return ["--server", f"{server.host}:{server.port}", "--tls", "none"]


def headers(envelope: Envelope) -> dict[str, str]:
    msg = message_from_bytes(envelope.content, policy=default_policy)
    return {name: str(value) for name, value in msg.items()}


def one_line(text: str) -> str:
    assert "Traceback" not in text
    lines = text.splitlines()
    assert len(lines) == 1, lines
    return lines[0]


# -- one message -----------------------------------------------------------------------------


def test_one_message_from_arguments() -> None:
    with run_server() as server:
        done = send(*at(server), "--from", f"Alice <{ALICE}>", "--to", BOB, "--to", CAROL, "--cc", DAVE,
                    "--subject", "Hello there", "--body", "It works.", "--helo", "client.example.org")
        (envelope,) = server.wait_for(1)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"{r}: 250 2.0.0 Message accepted for delivery" for r in (BOB, CAROL, DAVE)]
    assert done.stderr == ""  # no progress output for one message
    assert envelope.mail_from == ALICE
    assert envelope.rcpt_to == [BOB, CAROL, DAVE]
    assert envelope.session is not None and envelope.session.helo_name == "client.example.org"
    head = headers(envelope)
    assert head["From"] == f"Alice <{ALICE}>"
    assert head["To"] == f"{BOB}, {CAROL}"
    assert head["Cc"] == DAVE
    assert head["Subject"] == "Hello there"
    assert "Date" in head and head["Message-ID"].endswith("@example.org>")
    assert envelope.content.endswith(b"\r\n\r\nIt works.\r\n")


@pytest.mark.parametrize("how", ["positional", "--eml"])
def test_eml_file(tmp_path: Path, how: str) -> None:
    path = tmp_path / "message.eml"
    path.write_bytes(EML)
    with run_server() as server:
        done = send(*at(server), *([str(path)] if how == "positional" else ["--eml", str(path)]))
        (envelope,) = server.wait_for(1)
    assert done.returncode == 0, done.stderr
    assert envelope.mail_from == ALICE
    assert envelope.rcpt_to == [BOB, CAROL]  # To and Bcc
    assert b"Bcc" not in envelope.content  # never on the wire
    assert envelope.content == EML.replace(b"Bcc: carol@example.net\n", b"").replace(b"\n", b"\r\n")


def test_eml_file_with_envelope_overridden(tmp_path: Path) -> None:
    path = tmp_path / "message.eml"
    path.write_bytes(EML)
    with run_server() as server:
        done = send(*at(server), str(path), "--from", "bounces@example.org", "--to", DAVE)
        (envelope,) = server.wait_for(1)
    assert done.returncode == 0, done.stderr
    assert (envelope.mail_from, envelope.rcpt_to) == ("bounces@example.org", [DAVE])
    assert headers(envelope)["To"] == f"Bob <{BOB}>"  # the headers stay as written


def test_whole_message_on_stdin() -> None:
    with run_server() as server:
        done = send(*at(server), input=EML)
        (envelope,) = server.wait_for(1)
    assert done.returncode == 0, done.stderr
    assert (envelope.mail_from, envelope.rcpt_to) == (ALICE, [BOB, CAROL])
    assert headers(envelope)["X-Test"] == "kept as it is"


def test_body_on_stdin() -> None:
    with run_server() as server:
        done = send(*at(server), "--from", ALICE, "--to", BOB, "--subject", "piped", input=b"line one\nline two\n")
        (envelope,) = server.wait_for(1)
    assert done.returncode == 0, done.stderr
    assert headers(envelope)["Subject"] == "piped"
    assert envelope.content.endswith(b"\r\n\r\nline one\r\nline two\r\n")


# -- many messages ---------------------------------------------------------------------------


def test_mbox_of_50_messages(tmp_path: Path) -> None:
    box = mailbox.mbox(str(tmp_path / "box.mbox"))
    for i in range(50):
        box.add(f"From: {ALICE}\nTo: rcpt{i}@example.net\nSubject: message {i}\n\nbody {i}\n".encode())
    box.close()
    with run_server() as server:
        done = send(*at(server), "--mbox", str(tmp_path / "box.mbox"), "-c", "3")
        received = server.wait_for(50)
    assert done.returncode == 0, done.stderr
    assert sorted(e.rcpt_to[0] for e in received) == sorted(f"rcpt{i}@example.net" for i in range(50))
    assert {headers(e)["Subject"] for e in received} == {f"message {i}" for i in range(50)}
    lines = done.stdout.splitlines()
    assert re.fullmatch(r"sent 50/50 messages in [\d.]+ s \(\d+ msg/s\)", lines[0])
    assert lines[1] == "accepted 50, partly refused 0, refused 0, connection errors 0"


def test_maildir_with_recipients_given(tmp_path: Path) -> None:
    box = mailbox.Maildir(str(tmp_path / "md"))
    for i in range(5):
        box.add(f"From: {ALICE}\nTo: {BOB}\nSubject: stored {i}\n\nbody\n".encode())
    with run_server() as server:
        done = send(*at(server), "--maildir", str(tmp_path / "md"), "--to", DAVE)
        received = server.wait_for(5)
    assert done.returncode == 0, done.stderr
    assert all(e.rcpt_to == [DAVE] and e.mail_from == ALICE for e in received)
    assert sorted(headers(e)["Subject"] for e in received) == [f"stored {i}" for i in range(5)]
    assert "accepted 5," in done.stdout


def test_repeat_2000_over_10_connections() -> None:
    with run_server() as server:
        done = send(*at(server), "--from", ALICE, "--to", BOB, "--subject", "load", "--body", "x",
                    "--repeat", "2000", "-c", "10", timeout=60)
        received = server.wait_for(2000, timeout=10)
        time.sleep(0.2)
        assert len(server.messages) == 2000  # and not one more
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("sent 2000/2000 messages in ")
    assert lines[1] == "accepted 2000, partly refused 0, refused 0, connection errors 0"
    assert len(lines) == 2
    peers = {e.session.peer for e in received if e.session is not None}
    assert 1 < len(peers) <= 10  # several connections, never more than -c


def test_progress_lines_when_stderr_is_not_a_terminal() -> None:
    with run_server() as server:
        done = send(*at(server), "--from", ALICE, "--to", BOB, "--body", "x", "--repeat", "300")
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert lines and all(re.fullmatch(r"sent \d+/300 \(\d+%\), \d+ msg/s", line) for line in lines), lines
    assert lines[-1].startswith("sent 300/300 (100%)")
    assert len(lines) <= 11  # every 10%, not every message


def _on_a_terminal(command: list[str]) -> tuple[int, str, str]:
    """Run ``command`` with its stderr a pseudo-terminal: (exit code, what it drew there, stdout)."""
    master, slave = os.openpty()
    try:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave)
        os.close(slave)
        seen = b""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child closed its end
                    break
                if not chunk:
                    break
                seen += chunk
            elif proc.poll() is not None:
                break
        stdout = proc.communicate(timeout=30)[0].decode()
    finally:
        os.close(master)
    return proc.returncode, seen.decode("utf-8", "replace"), stdout


def test_progress_bar_on_a_terminal() -> None:
    """stderr is a pseudo-terminal: tqdm draws its bar there (rate, count)."""
    with run_server() as server:
        code, bar, stdout = _on_a_terminal(
            [*SEND, *at(server), "--from", ALICE, "--to", BOB, "--body", "x", "--repeat", "300"])
    assert code == 0
    assert "300/300" in bar and "msg/s" in bar and "100%" in bar and "sending" in bar, bar
    assert "\r" in bar  # redrawn in place, not line after line
    assert "accepted 300," in stdout


# mailwire send as a Python without tqdm runs it: tqdm is the progress extra, not a dependency.
WITHOUT_TQDM = [sys.executable, "-c",
                "import sys; sys.modules['tqdm'] = None; from mailwire.cli.main import main; sys.exit(main())"]


def test_progress_lines_on_a_terminal_without_tqdm() -> None:
    """Without the progress extra, a terminal gets the plain lines instead of the bar."""
    with run_server() as server:
        code, drawn, stdout = _on_a_terminal(
            [*WITHOUT_TQDM, "send", *at(server), "--from", ALICE, "--to", BOB, "--body", "x", "--repeat", "300"])
    assert code == 0, drawn
    lines = drawn.splitlines()
    assert lines and all(re.fullmatch(r"sent \d+/300 \(\d+%\), \d+ msg/s", line) for line in lines), lines
    assert lines[-1].startswith("sent 300/300 (100%)") and "\r" not in drawn.replace("\r\n", "")
    assert "accepted 300," in stdout


class _RefuseNobody(BaseSession):
    async def rcpt(self, address: str, options: RcptOptions) -> None:
        if address.startswith("nobody"):
            raise SMTPError(550, "5.1.1", "No such user")


class _RefusingBackend:
    async def new_session(self, info: SessionInfo) -> Session:
        return _RefuseNobody(info)


def test_refused_recipients_are_summed_up_by_reply(tmp_path: Path) -> None:
    box = mailbox.mbox(str(tmp_path / "box.mbox"))
    for i in range(30):  # 10 to a good and a bad address, 10 to a bad one only, 10 fine
        to = [f"{BOB}, nobody{i}@example.net", f"nobody{i}@example.net", BOB][i % 3]
        box.add(f"From: {ALICE}\nTo: {to}\nSubject: {i}\n\nbody\n".encode())
    box.close()
    with run_server(_RefusingBackend()) as server:
        done = send(*at(server), "--mbox", str(tmp_path / "box.mbox"), "-c", "2")
        server.wait_for(20)
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines[0].startswith("sent 30/30 messages")
    assert lines[1] == "accepted 10, partly refused 10, refused 10, connection errors 0"
    assert lines[2:] == ["refused recipients, by reply:", "  550 5.1.1 No such user: 20"]


def test_one_message_with_a_refused_recipient() -> None:
    with run_server(_RefusingBackend()) as server:
        done = send(*at(server), "--from", ALICE, "--to", BOB, "--to", "nobody@example.net", "--body", "x")
    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        f"{BOB}: 250 2.0.0 Message accepted for delivery", "nobody@example.net: 550 5.1.1 No such user",
    ]
    with run_server(_RefusingBackend()) as server:
        done = send(*at(server), "--from", ALICE, "--to", "nobody@example.net", "--body", "x")
    assert done.returncode == 1
    assert done.stdout.splitlines() == ["nobody@example.net: 550 5.1.1 No such user"]


# -- failures: one line, an exit code ------------------------------------------------------------


def test_unreachable_server() -> None:
    with socket.socket() as held:  # bound, not listening: refused, and no other test can take the port
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        done = send("--server", f"127.0.0.1:{port}", "--from", ALICE, "--to", BOB, "--body", "x")
    assert done.returncode == 3
    assert one_line(done.stderr) == f"mailwire send: cannot reach 127.0.0.1:{port}: Connection refused"
    assert done.stdout == ""
    done = send("--unix", "/nonexistent/mailwire.sock", "--from", ALICE, "--to", BOB, "--repeat", "5", "--body", "x")
    assert done.returncode == 3
    assert "cannot reach /nonexistent/mailwire.sock" in one_line(done.stderr)


@pytest.mark.parametrize("args, says", [
    (["--from", ALICE, "--body", "x"], "no recipients"),
    (["--to", BOB, "--body", "x"], "no sender"),
    (["--server", "localhost:99999", "--from", ALICE, "--to", BOB], "argument --server"),
    (["--server", "localhost:", "--from", ALICE, "--to", BOB], "argument --server"),
    (["/nonexistent/message.eml"], "cannot read FILE /nonexistent/message.eml: No such file"),
    (["--eml", "/"], "cannot read --eml /: Is a directory"),
    (["--mbox", "/nonexistent/box"], "cannot read --mbox /nonexistent/box"),
    (["--maildir", "/tmp"], "not a Maildir"),
    (["--from", ALICE, "--to", "bob@example.net>", "--body", "x"], "--to 'bob@example.net>': not an address"),
    (["--from", ALICE, "--to", "bob@example.net NOTIFY=NEVER", "--body", "x"], "not an address"),
    (["--from", "a b@example.org", "--to", BOB, "--body", "x"], "--from contains ' '"),
    (["--from", ALICE, "--to", BOB, "--tls", "none", "--auth", "u:p"], "plaintext"),
    (["--from", ALICE, "--to", BOB, "--ca", "/nonexistent.pem"], "cannot read --ca"),
    (["--from", ALICE, "--to", BOB, "--insecure", "--ca", "/etc/hostname"], "contradict"),
    (["--from", ALICE, "--to", BOB, "--repeat", "0"], "argument --repeat"),
    (["--from", ALICE, "--to", BOB, "-c", "x"], "argument -c"),
    (["--from", ALICE, "--to", BOB, "--timeout", "-1"], "argument --timeout"),
    (["--server", "h:25", "--unix", "/tmp/s", "--from", ALICE, "--to", BOB], "give one"),
    (["--mbox", "/dev/null", "--subject", "x"], "brings its own"),
])
def test_bad_arguments(args: list[str], says: str) -> None:
    done = send(*args)
    assert done.returncode == 2, done
    line = one_line(done.stderr)
    assert line.startswith("mailwire send: error: ") and says in line, line
    assert done.stdout == ""


def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "secret.eml"
    path.write_bytes(EML)
    path.chmod(0)
    if os.access(path, os.R_OK):
        pytest.skip("running as root: every file is readable")
    done = send(str(path))
    assert done.returncode == 2
    assert "Permission denied" in one_line(done.stderr)


# -- TLS and AUTH -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def _auth_server(ca: trustme.CA, logins: list[str]) -> ServerThread:
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)

    async def handle(envelope: Envelope) -> None:
        pass

    async def authenticate(credentials: Credentials) -> None:
        logins.append(credentials.username)
        if not credentials.check_password("secret"):
            raise SMTPError(535, "5.7.8", "Authentication credentials invalid")

    return ServerThread(FunctionBackend(handle, authenticate), tls_context=context)


def test_auth_over_starttls_with_a_trusted_ca(tmp_path: Path, ca: trustme.CA) -> None:
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    logins: list[str] = []
    with _auth_server(ca, logins) as server:
        where = ["--server", f"127.0.0.1:{server.port}", "--from", ALICE, "--to", BOB, "--body", "x"]
        done = send(*where, "--tls", "starttls", "--ca", str(ca_file), "--auth", "alice:secret")
        (envelope,) = server.wait_for(1)
        assert done.returncode == 0, done.stderr
        assert envelope.session is not None and envelope.session.tls is not None
        assert envelope.session.auth_identity == "alice"

        wrong = send(*where, "--ca", str(ca_file), "--auth", "alice:wrong")  # opportunistic: STARTTLS offered
        assert wrong.returncode == 1
        assert one_line(wrong.stderr).startswith("mailwire send: authentication failed at 127.0.0.1:")
        assert "535 5.7.8" in wrong.stderr

        untrusted = send(*where, "--tls", "starttls", "--auth", "alice:secret")
        assert untrusted.returncode == 1
        assert "certificate did not verify" in one_line(untrusted.stderr) and "--ca" in untrusted.stderr

        insecure = send(*where, "--tls", "starttls", "--insecure", "--auth", "alice:secret")
        assert insecure.returncode == 0, insecure.stderr
    assert logins == ["alice", "alice", "alice"]


def test_auth_is_not_sent_in_plaintext() -> None:
    with run_server() as server:  # no STARTTLS on offer
        done = send("--server", f"127.0.0.1:{server.port}", "--from", ALICE, "--to", BOB, "--body", "x",
                    "--auth", "alice:secret")
    assert done.returncode == 1
    assert "refusing to send --auth credentials in plaintext" in one_line(done.stderr)


# -- LMTP over a Unix socket, and mailwire serve as the peer ------------------------------------------


class Serve:
    """``mailwire serve ARGS`` as a subprocess; the banner is read before returning."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mailwire", "serve", *args], stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 15)
        assert ready, "mailwire serve printed no banner"
        self.banner = self.proc.stdout.readline().decode()
        assert "listening on" in self.banner, self.banner + self.proc.stderr.read().decode()  # type: ignore[union-attr]

    @property
    def port(self) -> int:
        return int(re.search(r"127\.0\.0\.1:(\d+)", self.banner)[1])  # type: ignore[index]

    def stop(self, signum: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        self.proc.communicate(timeout=15)


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="mw-"))  # a Unix socket path must be short
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_lmtp_over_a_unix_socket(short_tmp: Path) -> None:
    sock, box = str(short_tmp / "lmtp.sock"), short_tmp / "mail"
    server = Serve("--lmtp", "--unix", sock, "--maildir", str(box), "-q")
    try:
        one = send("--lmtp", "--unix", sock, "--from", ALICE, "--to", BOB, "--to", CAROL, "--subject", "via LMTP",
                   "--body", "x")
        many = send("--lmtp", "--unix", sock, "--from", ALICE, "--to", BOB, "--body", "x", "--repeat", "40", "-c", "3")
    finally:
        server.stop()
    assert one.returncode == 0, one.stderr
    # LMTP: a reply per recipient, after the data.
    assert [line.split(": ")[0] for line in one.stdout.splitlines()] == [BOB, CAROL]
    assert all(" 250 " in f" {line.split(': ', 1)[1]}" for line in one.stdout.splitlines())
    assert many.returncode == 0, many.stderr
    assert many.stdout.splitlines()[1] == "accepted 40, partly refused 0, refused 0, connection errors 0"
    assert len(os.listdir(box / "new")) == 41


def test_server_gone_mid_run() -> None:
    """The server dies: the run stops soon after, with a summary, exit 1."""
    server = Serve("--port", "0", "--sink")  # a line per message on stdout
    try:
        proc = subprocess.Popen(
            [*SEND, "--server", f"127.0.0.1:{server.port}", "--tls", "none", "--from", ALICE, "--to", BOB,
             "--body", "x", "--repeat", "2000000", "-c", "4"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        # The server prints a line per message. Once it has taken more than
        # four connections' first batches (4 x 100), some batch is complete
        # and its outcomes are on their way back when the server dies, however
        # slowly this machine (or a coverage run, tracing both processes)
        # makes the client go.
        assert server.proc.stdout is not None
        seen, deadline = 0, time.monotonic() + 30
        while seen <= 400 and time.monotonic() < deadline:
            ready, _, _ = select.select([server.proc.stdout], [], [], 1)
            if ready:
                seen += server.proc.stdout.read1(65536).count(b"\n")
        assert seen > 400
        time.sleep(0.3)
    finally:
        server.stop(signal.SIGKILL)
    started = time.monotonic()
    out, err = proc.communicate(timeout=30)
    assert time.monotonic() - started < 20
    assert proc.returncode == 1, err
    stdout, stderr = out.decode(), err.decode()
    assert "Traceback" not in stderr
    assert re.match(r"sent [1-9]\d*/2000000 messages", stdout), stdout
    assert "not sent" in stdout.splitlines()[1]
    # Refused, or closed (or reset, as the kernel tore its listener down) when
    # the check connected while the server was dying.
    assert re.search(
        r"can no longer be reached: (Connection refused|the server closed the connection|Connection reset by peer)$",
        stderr.splitlines()[-1]), stderr
    assert "backing off" not in stderr  # the pool's log is not shown without -v


def test_interrupt_stops_with_a_summary() -> None:
    import asyncio

    async def slow(envelope: Envelope) -> None:
        await asyncio.sleep(0.005)

    with run_server(slow) as server:
        proc = subprocess.Popen(
            [*SEND, *at(server), "--from", ALICE, "--to", BOB, "--body", "x", "--repeat", "100000", "-c", "2"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        server.wait_for(1, timeout=20)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
        received = len(server.messages)
    stdout, stderr = out.decode(), err.decode()
    assert proc.returncode == 1
    assert "Traceback" not in stderr
    assert stderr.splitlines()[-1] == "mailwire send: stopped by SIGINT"
    sent = int(re.match(r"sent (\d+)/100000 messages", stdout)[1])  # type: ignore[index]
    assert 0 < sent < 100000
    assert sent == received  # what it says was accepted is what arrived
    assert f"accepted {sent}," in stdout and f"not sent {100000 - sent}" in stdout


class _PerConnection:
    """A backend that counts the connections (one session each, even one that
    sends nothing) and the messages each one carried."""

    def __init__(self) -> None:
        self.sessions: list[_CountingSession] = []

    async def new_session(self, info: SessionInfo) -> Session:
        session = _CountingSession(info)
        self.sessions.append(session)
        return session


class _CountingSession(BaseSession):
    def __init__(self, info: SessionInfo) -> None:
        super().__init__(info)
        self.messages = 0

    async def data(self, envelope: Envelope) -> None:
        self.messages += 1


def test_c_4_opens_4_connections_and_shares_the_messages_out_evenly() -> None:
    """-c N is N connections (the check before sending is the pool's first
    one, not an extra), each carrying about total/N: 500 over 4 used to be
    a fifth connection with no message and one carrying 200. The pool shares
    out dynamically, so the bound is total/N give or take 20% (see
    tests/aio/test_pool_fairness.py for why)."""
    backend = _PerConnection()
    with run_server(backend) as server:
        done = send(*at(server), "--from", ALICE, "--to", BOB, "--body", "x", "--repeat", "500", "-c", "4",
                    timeout=60)
        server.wait_for(500, timeout=10)
        counts = sorted(session.messages for session in backend.sessions)
    assert done.returncode == 0, done.stderr
    assert len(counts) == 4, counts
    assert sum(counts) == 500
    assert all(100 <= n <= 150 for n in counts), counts


def test_c_1_is_one_connection() -> None:
    backend = _PerConnection()
    with run_server(backend) as server:
        done = send(*at(server), "--from", ALICE, "--to", BOB, "--body", "x", "--repeat", "50")
        server.wait_for(50, timeout=10)
        counts = [session.messages for session in backend.sessions]
    assert done.returncode == 0, done.stderr
    assert counts == [50]

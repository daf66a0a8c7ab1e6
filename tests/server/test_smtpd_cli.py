"""``python -m mailwire.smtpd``, run as the READMEs run ``python -m smtpd``, beside CPython 3.11's own.

Both commands run as subprocesses on free ports of 127.0.0.1; the standard
library's ``smtplib`` (of the Python running the tests, 3.13 included) sends
the same mail to each; both are stopped with SIGINT, as Ctrl-C stops them,
and what they printed is compared. The reference is always pyenv's 3.11
(``python3.11 -m smtpd``, with its DeprecationWarnings silenced): on 3.12+
that is the only smtpd there is, and the comparisons skip without it.

Every bad-argument case is run through both and compared: exit code, stdout
and stderr, the usage text included (only the program path differs, as each
prints its own file's). Where smtpd answered with a traceback, the exit code
is compared and ours must be the defined message instead.

Every wait is bounded: the listener is polled with a deadline, each process
has a timeout, and a process still running at the end is killed.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import smtplib
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mailwire.cli import smtpd as smtpd_cli

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="signals and setuid are POSIX")

START_TIMEOUT = 20.0
TIMEOUT = 10.0


def _reference() -> Path | None:
    """CPython 3.11 with its smtpd: the reference (``MAILWIRE_SMTPD_REFERENCE`` names another)."""
    named = os.environ.get("MAILWIRE_SMTPD_REFERENCE")
    candidates = [Path(named)] if named else sorted(
        Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")).glob("versions/3.11*/bin/python3.11"))
    for python in reversed(candidates):
        if python.exists() and any(python.parent.parent.glob("lib/python3.11/smtpd.py")):
            return python
    return None


REFERENCE = _reference()
needs_reference = pytest.mark.skipif(REFERENCE is None, reason="no CPython 3.11 with smtpd under pyenv")

OURS = [sys.executable, "-m", "mailwire.smtpd"]
THEIRS = [str(REFERENCE), "-W", "ignore::DeprecationWarning", "-m", "smtpd"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _sigint(disposition: Any) -> Callable[[], None]:
    # A child inherits an ignored SIGINT (a test run started with `&` from a
    # script); the reference smtpd would then not stop on Ctrl-C at all.
    return lambda: signal.signal(signal.SIGINT, disposition) and None


def run(cmd: list[str], *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """A command that is expected to end by itself."""
    return subprocess.run(
        [*cmd, *args], capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60, cwd=cwd,
        preexec_fn=_sigint(signal.SIG_DFL),
    )


class PortTaken(AssertionError):
    """Another process listens on the port chosen for the server (free_port's race)."""


def _listener_owned_by(pid: int, port: int) -> bool | None:
    """Whether process ``pid`` holds the socket listening on ``port``
    (None: nothing listens there yet). A port found free may be taken by
    another test's server before ours binds it; talking to that one would
    compare its replies with smtpd's."""
    inodes = set()
    wanted = f":{port:04X}"
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):  # any address: the tests also use localhost
        with open(name) as table:
            for line in table.readlines()[1:]:
                fields = line.split()
                if fields[1].endswith(wanted) and fields[3] == "0A":  # LISTEN
                    inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return None
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except FileNotFoundError:
        return False
    for fd in fds:
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                return True
    return False


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    out: str = ""
    err: str = ""
    outcomes: list[Any] = field(default_factory=list)

    def connect(self) -> smtplib.SMTP:
        """An smtplib client, once the server listens (polled, within START_TIMEOUT)."""
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                out, err = self.process.communicate(timeout=TIMEOUT)
                raise AssertionError(f"exited {self.process.returncode}: {out!r} {err!r}")
            owned = _listener_owned_by(self.process.pid, self.port)
            if owned:
                return smtplib.SMTP("127.0.0.1", self.port, timeout=TIMEOUT)
            if owned is False:
                raise PortTaken(f"port {self.port} is another process's")
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing listens on port {self.port} after {START_TIMEOUT} s")
            time.sleep(0.05)

    def read_stdout_until(self, marker: str) -> str:
        """What the running server printed so far, read until ``marker`` (bounded)."""
        fd = self.process.stdout.fileno()  # type: ignore[union-attr]
        seen = b""
        deadline = time.monotonic() + TIMEOUT
        while marker.encode() not in seen:
            left = deadline - time.monotonic()
            assert left > 0, f"{marker!r} not printed while running; got {seen!r}"
            if select.select([fd], [], [], left)[0]:
                chunk = os.read(fd, 65536)
                assert chunk, f"stdout closed; got {seen!r}"
                seen += chunk
        return seen.decode()

    def stop(self, sig: int = signal.SIGINT) -> None:
        # Sent twice if need be: the standard library's asyncore can swallow
        # a KeyboardInterrupt raised at the wrong moment (seen once under load).
        out = err = None
        for _ in range(2):
            if self.process.poll() is None:
                self.process.send_signal(sig)
            try:
                out, err = self.process.communicate(timeout=TIMEOUT / 2)
                break
            except subprocess.TimeoutExpired:
                continue
        if out is None or err is None:
            self.process.kill()
            self.process.communicate(timeout=TIMEOUT)
            raise AssertionError(f"did not stop on signal {sig}")
        self.out, self.err = out.decode(), err.decode()


@contextlib.contextmanager
def serving(cmd: list[str], *args: str, cwd: Path | None = None, sigint: Any = signal.SIG_DFL,
            port: int | None = None, env: dict[str, str] | None = None) -> Iterator[Server]:
    """``cmd args 127.0.0.1:PORT`` running; stopped (SIGINT, else killed) on the way out.

    ``args`` may hold ``{port}``, replaced by the port chosen; without it the
    address goes last."""
    port = port or free_port()
    argv = [arg.format(port=port) for arg in args]
    if not any(str(port) in arg for arg in argv):
        argv.append(f"127.0.0.1:{port}")
    process = subprocess.Popen(
        [*cmd, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, cwd=cwd,
        preexec_fn=_sigint(sigint), env=env,
    )
    server = Server(process, port)
    try:
        yield server
    finally:
        if process.poll() is None:  # the test failed before stopping it
            with contextlib.suppress(AssertionError):
                server.stop()


Exchange = Callable[[Server], None]


def both(args: list[str], exchange: Exchange, *, ours_args: list[str] | None = None,
         cwd: Path | None = None) -> tuple[Server, Server]:
    """The same arguments (``ours_args`` if ours needs others), the same
    exchange, against ours and 3.11's smtpd at once; both stopped with SIGINT.
    Started again on other ports if one was taken before its server bound it."""
    for attempt in range(3):
        try:
            with serving(OURS, *(args if ours_args is None else ours_args), cwd=cwd) as ours, \
                    serving(THEIRS, *args, cwd=cwd) as theirs:
                for server in (ours, theirs):
                    exchange(server)
                for server in (ours, theirs):
                    server.stop()
            return ours, theirs
        except PortTaken:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def outcome(server: Server, action: Callable[[], Any]) -> None:
    """The client's result of ``action``: its value, or the smtplib error's class and code."""
    try:
        server.outcomes.append(("ok", action()))
    except smtplib.SMTPResponseException as err:
        server.outcomes.append((type(err).__name__, err.smtp_code))
    except smtplib.SMTPException as err:
        server.outcomes.append((type(err).__name__,))


# -- DebuggingServer, side by side ------------------------------------------------------

SUBJECT = "Subject: hello\r\nFrom: alice@example.org\r\nTo: bob@example.net\r\n"


def plain(server: Server) -> None:
    with server.connect() as client:
        outcome(server, lambda: client.sendmail(
            "alice@example.org", ["bob@example.net", "carol@example.net"],
            SUBJECT + "\r\nfirst line\r\n.a line starting with a dot\r\n..two dots\r\n\r\nlast\r\n"))
        outcome(server, lambda: client.sendmail("alice@example.org", ["bob@example.net"], "Subject: headers only\r\n"))
    with server.connect() as client:
        outcome(server, lambda: client.sendmail("", ["bob@example.net"], ""))
        outcome(server, lambda: client.sendmail(
            "alice@example.org", ["bob@example.net"], "Subject: 8-bit\r\n\r\ncaf\xe9 \u2603\r\n".encode(),
            mail_options=["BODY=8BITMIME"]))


def odd_lines(server: Server) -> None:
    # Bytes are sent as they are: bare LF, bare CR, a line of 2000 octets
    # (smtpd had no line limit; neither does mailwire.smtpd).
    with server.connect() as client:
        outcome(server, lambda: client.sendmail(
            "alice@example.org", ["bob@example.net"],
            b"Subject: odd\r\n\r\nbare\nLF\r\nbare\rCR\r\n" + b"x" * 2000 + b"\r\ntrailing space \r\n"))


def sized(server: Server) -> None:
    with server.connect() as client:
        outcome(server, lambda: client.sendmail("alice@example.org", ["bob@example.net"], SUBJECT + "\r\nsmall\r\n"))
        outcome(server, lambda: client.sendmail("alice@example.org", ["bob@example.net"], "x" * 2000))


def utf8(server: Server, options: tuple[str, ...] = ("BODY=8BITMIME", "SMTPUTF8")) -> None:
    with server.connect() as client:
        outcome(server, lambda: client.sendmail(
            "j\xf6rg@example.org", ["\u5f20@example.net"], "Subject: \u2603\r\n\r\nGr\xfc\xdfe\r\n".encode(),
            mail_options=list(options)))


SCENARIOS = {
    "plain": (["-n", "-c", "DebuggingServer"], plain),
    "odd lines": (["-n", "-c", "DebuggingServer"], odd_lines),
    "-s": (["-n", "-c", "DebuggingServer", "-s", "1000"], sized),
    "-u": (["-n", "-c", "DebuggingServer", "-u"], utf8),
    "long options": (["--nosetuid", "--class=DebuggingServer", "--size", "1000", "--smtputf8"], sized),
}


@needs_reference
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_debugging_server_prints_what_smtpd_printed(scenario: str) -> None:
    args, exchange = SCENARIOS[scenario]
    ours, theirs = both(args, exchange)
    assert theirs.process.returncode == 0 and theirs.err == ""
    assert ours.outcomes == theirs.outcomes
    assert ours.out == theirs.out
    assert (ours.process.returncode, ours.err) == (0, "")
    assert "---------- MESSAGE FOLLOWS ----------" in ours.out
    assert "------------ END MESSAGE ------------" in ours.out


@needs_reference
def test_mail_options_come_in_mailwires_order() -> None:
    """The one known difference in what is printed (mailwire.smtpd's
    docstring): MAIL parameters are parsed into typed options, so
    ``mail_options`` lists them in a fixed order, not the client's."""
    ours, theirs = both(["-n", "-c", "DebuggingServer", "-u"], lambda server: utf8(server, ("SMTPUTF8", "BODY=8BITMIME")))
    assert "mail options: ['SMTPUTF8', 'BODY=8BITMIME']" in theirs.out
    assert ours.out == theirs.out.replace("['SMTPUTF8', 'BODY=8BITMIME']", "['BODY=8BITMIME', 'SMTPUTF8']")


def test_what_is_printed_is_what_was_sent() -> None:
    # The same checks without the reference, so 3.12+ without a 3.11 still has them.
    with serving(OURS, "-n", "-c", "DebuggingServer") as ours:
        plain(ours)
        ours.stop()
    assert ours.outcomes == [("ok", {})] * 4
    assert ours.out.splitlines()[:13] == [
        "---------- MESSAGE FOLLOWS ----------",
        "b'Subject: hello'", "b'From: alice@example.org'", "b'To: bob@example.net'",
        "b'X-Peer: 127.0.0.1'", "b''",
        "b'first line'", "b'.a line starting with a dot'", "b'..two dots'", "b''", "b'last'",
        "------------ END MESSAGE ------------",
        "---------- MESSAGE FOLLOWS ----------",
    ]
    assert "mail options: ['BODY=8BITMIME']" in ours.out


def _normal_debug(text: str) -> list[str]:
    text = re.sub(r"started at .*", "started at TIME", text)
    text = re.sub(r"\('127\.0\.0\.1', \d+\)", "('127.0.0.1', PORT)", text)
    return text.splitlines()


@needs_reference
def test_debug_prints_smtpds_lines_less_the_raw_protocol() -> None:
    ours, theirs = both(["-n", "-d", "-c", "DebuggingServer"], plain)
    assert ours.out == theirs.out
    mine, reference = _normal_debug(ours.err), _normal_debug(theirs.err)
    # The start-up lines are smtpd's; after them every line of ours is one of
    # smtpd's, in its order: smtpd printed the raw protocol lines besides.
    assert mine[:3] == reference[:3] == [
        "DebuggingServer started at TIME", "\tLocal addr: ('127.0.0.1', PORT)", "\tRemote addr:('localhost', 25)"]
    rest = iter(reference[3:])
    assert all(line in rest for line in mine[3:]), (mine, reference)
    assert mine.count("Incoming connection from ('127.0.0.1', PORT)") == 2
    assert mine.count("sender: alice@example.org") == 3


def test_debug_off_prints_nothing_on_stderr() -> None:
    with serving(OURS, "-n", "-c", "DebuggingServer") as ours:
        sized(ours)
        ours.stop()
    assert ours.err == ""


# -- the size limit -----------------------------------------------------------------------


@needs_reference
def test_size_limit_refuses_as_smtpd_did() -> None:
    def big(server: Server) -> None:
        with server.connect() as client:
            client.ehlo()
            server.outcomes.append(client.esmtp_features.get("size"))
            outcome(server, lambda: client.sendmail("a@example.org", ["b@example.net"], "x" * 101))
            outcome(server, lambda: client.sendmail("a@example.org", ["b@example.net"], "x" * 50))

    ours, theirs = both(["-n", "-c", "DebuggingServer", "-s", "100"], big)
    assert ours.outcomes == theirs.outcomes == ["100", ("SMTPSenderRefused", 552), ("ok", {})]
    assert ours.out == theirs.out


@needs_reference
def test_no_size_limit_by_default_as_smtpd() -> None:
    # smtpd's usage says 33554432, its code passes None: no SIZE, no limit.
    def probe(server: Server) -> None:
        with server.connect() as client:
            client.ehlo()
            server.outcomes.append(client.has_extn("size"))
            outcome(server, lambda: client.sendmail("a@example.org", ["b@example.net"], b"x" * 34_000_000))

    ours, theirs = both(["-n", "-c", "SMTPServer"], probe)
    # SMTPServer's process_message raises: smtpd dropped the connection, we answer 451.
    assert ours.outcomes[0] is theirs.outcomes[0] is False
    assert ours.outcomes[1] == ("SMTPDataError", 451)
    assert theirs.outcomes[1] == ("SMTPServerDisconnected",)


# -- PureProxy --------------------------------------------------------------------------

PROXY_FOR_311 = '''\
import smtpd


class Proxy(smtpd.PureProxy):
    """smtpd's PureProxy as it last worked: with decode_data=True (the command
    line's has passed process_message keywords it does not take since 3.6)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, decode_data=True, **kwargs)
'''


def relay(server: Server) -> None:
    with server.connect() as client:
        outcome(server, lambda: client.sendmail(
            "alice@example.org", ["bob@example.net", "carol@example.net"], SUBJECT + "\r\nrelayed\r\n.dot\r\n"))
        outcome(server, lambda: client.sendmail("alice@example.org", ["bob@example.net"], "no headers at all"))


@needs_reference
def test_pure_proxy_relays_as_smtpd_did(tmp_path: Path) -> None:
    """Ours is the default class with smtpd's positional arguments; the
    reference is smtpd's PureProxy with decode_data=True (below); both relay
    to a 3.11 ``smtpd -c DebuggingServer``, whose printouts must match."""
    (tmp_path / "proxy311.py").write_text(PROXY_FOR_311)
    with serving(THEIRS, "-n", "-c", "DebuggingServer") as upstream_ours, \
            serving(THEIRS, "-n", "-c", "DebuggingServer") as upstream_theirs:
        upstream_ours.connect().close()
        upstream_theirs.connect().close()
        with serving(OURS, "-n", "127.0.0.1:{port}", f"127.0.0.1:{upstream_ours.port}") as ours, \
                serving(THEIRS, "-n", "-c", "proxy311.Proxy", "127.0.0.1:{port}", f"127.0.0.1:{upstream_theirs.port}",
                        cwd=tmp_path) as theirs:
            relay(ours)
            relay(theirs)
            ours.stop()
            theirs.stop()
        upstream_ours.stop()
        upstream_theirs.stop()
    assert ours.outcomes == theirs.outcomes == [("ok", {}), ("ok", {})]
    assert upstream_ours.out == upstream_theirs.out
    # The proxy's header, and the upstream's own line where the headers end
    # (the message without headers has no such place: the proxy's goes last).
    assert upstream_ours.out.count("b'X-Peer: 127.0.0.1'") == 3
    assert (ours.process.returncode, ours.err) == (0, "")


@needs_reference
def test_smtpds_own_command_line_proxy_drops_the_client_ours_relays() -> None:
    """Why the reference above is not ``python3.11 -m smtpd``: its PureProxy
    has failed on every message since 3.6 (process_message() got an unexpected
    keyword argument 'mail_options') and dropped the connection."""
    with serving(THEIRS, "-n", "-c", "DebuggingServer") as upstream:
        upstream.connect().close()
        remote = f"127.0.0.1:{upstream.port}"
        ours, theirs = both(["-n", "127.0.0.1:{port}", remote], relay)
        upstream.stop()
    assert theirs.outcomes == [("SMTPServerDisconnected",), ("SMTPServerDisconnected",)]
    assert "unexpected keyword argument 'mail_options'" in theirs.out  # asyncore prints there
    assert ours.outcomes == [("ok", {}), ("ok", {})]
    assert upstream.out.count("---------- MESSAGE FOLLOWS ----------") == 2


# -- a class of the user's own: -c module.Class ------------------------------------------

USER_MODULE = '''\
{import_line}


class Shouting(smtpd.SMTPServer):
    def process_message(self, peer, mailfrom, rcpttos, data, **kwargs):
        print("from", mailfrom, "to", rcpttos, "options", kwargs.get("mail_options"))
        print(data.decode().upper())
        if "nobody@example.net" in rcpttos:
            return "550 No such user here"
'''


def shout(server: Server) -> None:
    with server.connect() as client:
        outcome(server, lambda: client.sendmail("a@example.org", ["b@example.net"], "Subject: hi\r\n\r\nhello\r\n"))
        outcome(server, lambda: client.sendmail("a@example.org", ["nobody@example.net"], "Subject: no\r\n\r\nx\r\n"))


@needs_reference
def test_a_class_of_the_users_own(tmp_path: Path) -> None:
    ours_dir, theirs_dir = tmp_path / "ours", tmp_path / "theirs"
    for where, line in ((ours_dir, "import mailwire.smtpd as smtpd"), (theirs_dir, "import smtpd")):
        where.mkdir()
        (where / "myserver.py").write_text(USER_MODULE.format(import_line=line))
    with serving(OURS, "-n", "-c", "myserver.Shouting", cwd=ours_dir) as ours, \
            serving(THEIRS, "-n", "-c", "myserver.Shouting", cwd=theirs_dir) as theirs:
        for server in (ours, theirs):
            shout(server)
            server.stop()
    assert ours.outcomes == theirs.outcomes == [("ok", {}), ("SMTPDataError", 550)]
    assert ours.out == theirs.out
    assert "SUBJECT: HI\n\nHELLO" in ours.out


def test_a_module_written_for_the_stdlib_smtpd_is_told_the_two_edits(tmp_path: Path) -> None:
    (tmp_path / "legacy.py").write_text(USER_MODULE.format(import_line="import smtpd"))
    result = run(OURS, "-n", "-c", "legacy.Shouting", f"127.0.0.1:{free_port()}", cwd=tmp_path)
    assert result.returncode == 1 and result.stdout == "" and "Traceback" not in result.stderr
    assert "import mailwire.smtpd as smtpd" in result.stderr and "smtpd.loop()" in result.stderr
    if sys.version_info >= (3, 12):  # no smtpd to import
        assert result.stderr == (
            "Cannot import legacy: No module named 'smtpd' (on Python 3.12+ write `import mailwire.smtpd as smtpd`"
            " and call smtpd.loop(), not asyncore.loop())\n")
    else:  # the stdlib's class, which mailwire cannot serve
        assert result.stderr.splitlines()[-1].startswith("Not a mailwire.smtpd.SMTPServer class: legacy.Shouting (")


def test_a_channel_subclass_stops_the_command_line_naming_the_alternative(tmp_path: Path) -> None:
    (tmp_path / "authsrv.py").write_text(
        "import mailwire.smtpd as smtpd\n\n"
        "class AuthChannel(smtpd.SMTPChannel):\n"
        "    def smtp_AUTH(self, arg):\n        self.push('235 ok')\n\n"
        "class AuthServer(smtpd.SMTPServer):\n    channel_class = AuthChannel\n")
    result = run(OURS, "-n", "-c", "authsrv.AuthServer", f"127.0.0.1:{free_port()}", cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("AuthChannel subclasses SMTPChannel (it defines smtp_AUTH), which would never run.")
    assert "process_message" in result.stderr and "AuthSession.authenticate" in result.stderr


def test_an_error_in_the_users_module_is_its_traceback(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("import mailwire.smtpd as smtpd\nimport no_such_module_here\n")
    result = run(OURS, "-n", "-c", "broken.Server", f"127.0.0.1:{free_port()}", cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "No module named 'no_such_module_here'" in result.stderr


# -- bad arguments: smtpd's answer, exactly -------------------------------------------------


def _normal(text: str) -> str:
    return re.sub(r"^Usage: \S+ ", "Usage: PROGRAM ", text, flags=re.M)


SAME_ANSWER = [
    ["-x"], ["--bogus"], ["-c"], ["--class"], ["-s"], ["--s", "5"], ["--nosetuid=yes"], ["--help=1"],
    ["-h"], ["--help"], ["--he"], ["-n", "-h", "-x"], ["-V"], ["--version"], ["--vers"], ["-V", "-h"],
    ["-s", "abc"], ["--size=1.5"], ["-s", ""], ["a:1", "b:2", "c:3"],
    ["localhost"], ["localhost:"], ["localhost:abc"], ["::1:8025"], ["127.0.0.1:25", "remote"],
    ["127.0.0.1:25", "remote:x"], ["127.0.0.1:25", "-n"], ["-n", "", ""],
]


@needs_reference
@pytest.mark.parametrize("args", SAME_ANSWER, ids=" ".join)
def test_bad_arguments_get_smtpds_answer(args: list[str]) -> None:
    ours, theirs = run(OURS, *args), run(THEIRS, *args)
    assert theirs.returncode in (0, 1)
    assert (ours.returncode, ours.stdout, _normal(ours.stderr)) == (
        theirs.returncode, theirs.stdout, _normal(theirs.stderr))


def test_the_usage_text_names_the_program_as_smtpd_did() -> None:
    result = run(OURS, "--help")
    assert result.returncode == 0 and result.stdout == ""
    assert re.search(r"^Usage: \S+mailwire[/\\]smtpd\.py \[options\] \[localhost:localport", result.stderr, re.M)
    assert "Version: Python SMTP proxy version 0.3" in result.stderr


# Where smtpd printed a traceback: the same exit code, and a defined answer.
TRACEBACKS = [
    (["-n", "-c", "NoSuchClass", "127.0.0.1:{port}"], "AttributeError", "usage", "Unknown class: NoSuchClass"),
    (["-n", "-c", "no_such_module.Server", "127.0.0.1:{port}"], "ModuleNotFoundError", "usage",
     "Unknown class: no_such_module.Server (no module named 'no_such_module')"),
    (["-n", "-c", "", "127.0.0.1:{port}"], "AttributeError", "usage", "Unknown class: "),
    (["-n", "-c", ".Relative", "127.0.0.1:{port}"], "ValueError", "usage", "Unknown class: .Relative"),
    (["-n", "-c", "Devnull", "127.0.0.1:{port}"], "TypeError", "usage",
     "Not a mailwire.smtpd.SMTPServer class: Devnull"),
    (["-n", "127.0.0.1:99999"], "OverflowError", "usage", "Bad local port: 127.0.0.1:99999"),
    (["-n", "127.0.0.1:-1"], "gaierror", "usage", "Bad local port: 127.0.0.1:-1"),
    (["-n", "-u", "127.0.0.1:{port}"], "ValueError", "line",
     "Cannot start PureProxy on 127.0.0.1:{port}: PureProxy does not support SMTPUTF8."),
    (["-n", "-c", "DebuggingServer", "no-such-host.invalid:{port}"], "gaierror", "line",
     "Cannot start DebuggingServer on no-such-host.invalid:{port}: "),
]


@needs_reference
@pytest.mark.parametrize(("args", "their_error", "form", "answer"), TRACEBACKS, ids=lambda v: str(v))
def test_where_smtpd_crashed_the_exit_code_is_smtpds_and_the_answer_defined(
        args: list[str], their_error: str, form: str, answer: str) -> None:
    port = free_port()
    argv = [arg.format(port=port) for arg in args]
    ours, theirs = run(OURS, *argv), run(THEIRS, *argv)
    assert theirs.returncode == ours.returncode == 1
    assert "Traceback" in theirs.stderr and their_error in theirs.stderr.splitlines()[-1]
    assert "Traceback" not in ours.stderr and ours.stdout == ""
    expected = answer.format(port=port)
    if form == "usage":
        usage = _normal(run(THEIRS, "-h").stderr)
        assert _normal(ours.stderr) == usage + expected + "\n"
    else:
        assert ours.stderr.startswith(expected) and ours.stderr.count("\n") == 1


@needs_reference
def test_a_port_in_use_is_one_line_where_smtpd_crashed() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        spec = "127.0.0.1:%d" % taken.getsockname()[1]
        ours, theirs = run(OURS, "-n", "-c", "DebuggingServer", spec), run(THEIRS, "-n", "-c", "DebuggingServer", spec)
    assert theirs.returncode == ours.returncode == 1
    assert "Address already in use" in theirs.stderr.splitlines()[-1]
    assert ours.stderr == f"Cannot start DebuggingServer on {spec}: [Errno 98] Address already in use\n"


@needs_reference
def test_a_negative_size_is_invalid_where_smtpd_refused_every_message() -> None:
    ours = run(OURS, "-n", "-c", "DebuggingServer", "-s", "-5", f"127.0.0.1:{free_port()}")
    assert (ours.returncode, ours.stdout, ours.stderr) == (1, "", "Invalid size: -5\n")

    def one(server: Server) -> None:
        with server.connect() as client:
            outcome(server, lambda: client.sendmail("a@example.org", ["b@example.net"], "x"))

    with serving(THEIRS, "-n", "-c", "DebuggingServer", "-s", "-5") as theirs:
        one(theirs)
        theirs.stop()
    assert theirs.outcomes == [("SMTPSenderRefused", 552)]


def test_parseargs_reads_what_smtpd_read() -> None:
    options = smtpd_cli.parseargs([])
    assert (options.setuid, options.classname, options.size_limit, options.enable_SMTPUTF8) == (
        True, "PureProxy", None, False)
    assert (options.localhost, options.localport, options.remotehost, options.remoteport) == (
        "localhost", 8025, "localhost", 25)
    options = smtpd_cli.parseargs(["--nos", "--cl", "mod.Cls", "-s1_000", "-u", "0.0.0.0:25", "mx:2525"])
    assert (options.setuid, options.classname, options.size_limit, options.enable_SMTPUTF8) == (
        False, "mod.Cls", 1000, True)
    assert (options.localhost, options.localport, options.remotehost, options.remoteport) == (
        "0.0.0.0", 25, "mx", 2525)
    assert smtpd_cli.parseargs(["-cDebuggingServer", "h:1"]).remoteport == 25


def test_debug_points_debugstream_at_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    import mailwire.smtpd as msmtpd

    monkeypatch.setattr(msmtpd, "DEBUGSTREAM", msmtpd.DEBUGSTREAM)
    smtpd_cli.parseargs(["-d"])
    assert msmtpd.DEBUGSTREAM is sys.stderr


# -- setuid nobody, signals, output as it comes ----------------------------------------------


@needs_reference
def test_setuid_messages_are_smtpds(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert REFERENCE is not None
    source = next(REFERENCE.parent.parent.glob("lib/python3.11/smtpd.py")).read_text()

    def refused(*args: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "setuid", refused)
    monkeypatch.setattr(os, "setgroups", refused)
    with pytest.raises(SystemExit) as exited:
        smtpd_cli.become_nobody()
    assert exited.value.code == 1
    message = capsys.readouterr().err
    assert message == 'Cannot setuid "nobody"; try running with -n option.\n'
    assert f"print({message.strip()!r}, file=sys.stderr)" in source


def _ids(pid: int) -> dict[str, list[str]]:
    status = Path(f"/proc/{pid}/status").read_text()
    return {line.split(":")[0]: line.split()[1:] for line in status.splitlines() if line.startswith(("Uid", "Gid", "Groups"))}


@needs_reference
@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="only root can become nobody")
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
def test_without_n_root_serves_as_nobody_as_smtpd_did() -> None:
    """As root, without -n, both bind and then become nobody; ours drops the
    groups too (smtpd kept group 0). Serving, as nobody, still works, for the
    proxy too (whose client is loaded before the switch)."""
    import pwd

    nobody = pwd.getpwnam("nobody")
    ids: dict[str, dict[str, list[str]]] = {}

    def exchange(server: Server) -> None:
        plain(server)
        ids["ours" if server.process.args[0] == sys.executable else "theirs"] = _ids(server.process.pid)

    ours, theirs = both(["-c", "DebuggingServer"], exchange)
    assert ours.out == theirs.out and ours.outcomes == theirs.outcomes
    assert ours.process.returncode == theirs.process.returncode == 0
    uid = str(nobody.pw_uid)
    assert ids["ours"]["Uid"] == ids["theirs"]["Uid"] == [uid] * 4
    assert ids["ours"]["Gid"] == [str(nobody.pw_gid)] * 4 and ids["ours"]["Groups"] == []
    assert ids["theirs"]["Gid"] == ["0"] * 4

    with serving(THEIRS, "-n", "-c", "DebuggingServer") as upstream:
        upstream.connect().close()
        with serving(OURS, "127.0.0.1:{port}", f"127.0.0.1:{upstream.port}") as proxy:
            relay(proxy)
            proxy_ids = _ids(proxy.process.pid)
            proxy.stop()
        upstream.stop()
    assert proxy.outcomes == [("ok", {}), ("ok", {})] and proxy_ids["Uid"] == [uid] * 4
    assert upstream.out.count("---------- MESSAGE FOLLOWS ----------") == 2


def buffered() -> dict[str, str]:
    """The environment with Python's default buffering (no PYTHONUNBUFFERED)."""
    return {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}


def test_sigterm_stops_it_cleanly() -> None:
    with serving(OURS, "-n", "-c", "DebuggingServer", env=buffered()) as ours:
        sized(ours)
        ours.stop(signal.SIGTERM)
    assert (ours.process.returncode, ours.err) == (0, "")
    assert ours.out.count("------------ END MESSAGE ------------") == 2


def test_ctrl_c_works_even_when_started_with_sigint_ignored() -> None:
    with serving(OURS, "-n", "-c", "DebuggingServer", sigint=signal.SIG_IGN) as ours:
        sized(ours)
        ours.stop(signal.SIGINT)
    assert (ours.process.returncode, ours.err) == (0, "")


def test_each_message_is_printed_as_it_arrives() -> None:
    # stdout is a pipe here, as under docker or tee: smtpd's output waited in
    # a buffer until exit (unless PYTHONUNBUFFERED); ours is line-buffered.
    with serving(OURS, "-n", "-c", "DebuggingServer", env=buffered()) as ours:
        with ours.connect() as client:
            client.sendmail("a@example.org", ["b@example.net"], "Subject: now\r\n\r\nnow\r\n")
            printed = ours.read_stdout_until("------------ END MESSAGE ------------")
            assert ours.process.poll() is None
        ours.stop()
    assert "b'Subject: now'" in printed

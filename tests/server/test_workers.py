"""Several server processes on one address: ``mailwire serve --workers N`` and ``serve_workers``.

Every test runs the supervisor as a process of its own (``python -m
mailwire serve``, or ``workers_app.py``, a program that embeds
``mailwire.server.serve_workers``): it forks, and the test process has
threads. Workers are told apart by their pids, which the Maildir names its
files by. Signals are sent for real, loopback only, and every wait and loop
is bounded; nothing is asserted about time.
"""

from __future__ import annotations

import json
import os
import re
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .test_cli_serve import (  # noqa: F401 - fixtures
    MSG, STUFFED, Raw, Serve, _begin_message, maildir_files, serve, short_tmp, stored,
)

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="workers are forked (POSIX)")

TIMEOUT = 10.0
START_TIMEOUT = 30.0
APP = Path(__file__).with_name("workers_app.py")
LINUX_PROC = Path("/proc/self/stat").exists()


def pid_of(name: str) -> int:
    """The pid in a Maildir file name (time.MusecPpidQn.host)."""
    match = re.search(r"P(\d+)Q", name)
    assert match, name
    return int(match[1])


def stored_pids(maildir: Path) -> set[int]:
    new = maildir / "new"
    return {pid_of(p.name) for p in new.iterdir()} if new.is_dir() else set()


def stored_ids(maildir: Path) -> list[str]:
    ids = []
    for path in (maildir / "new").iterdir():
        match = re.search(rb"Message-ID: <([^>]+)>", path.read_bytes())
        assert match, path
        ids.append(match[1].decode())
    return ids


def children(pid: int) -> set[int]:
    """Live processes whose parent is ``pid`` (Linux: /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry.name))
    return found


def wait_for(check: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    """Until ``check()`` is true, polled; fails the test with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def send(port: int, message: bytes = MSG) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=TIMEOUT) as client:
        client.sendmail("alice@example.org", ["bob@example.net"], message)


class App:
    """``workers_app.py`` in a process; stderr collected by a thread."""

    def __init__(self, root: Path, *args: str) -> None:
        self.root = root
        self.proc = subprocess.Popen([sys.executable, str(APP), str(root), *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self._err: list[str] = []
        self._pump = threading.Thread(target=self._read_err, daemon=True)
        self._pump.start()
        self.port = 0

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._err.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self._err)

    def listening(self) -> App:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # the process prints it or ends
        assert line.startswith("listening on "), (line, self.wait(), self.stderr)
        self.port = int(line.split()[-1])
        return self

    def wait(self) -> int:
        rc = self.proc.wait(TIMEOUT * 3)
        self._pump.join(TIMEOUT)
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(TIMEOUT)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Callable[..., App]]:
    started: list[App] = []

    def start(*args: str) -> App:
        started.append(App(tmp_path, *args))
        return started[-1]

    yield start
    for process in started:
        process.kill()


# -- the command line --------------------------------------------------------------------------


@pytest.mark.parametrize("args, words", [
    (["--workers", "0"], "argument --workers: expected a number of processes of at least 1, or auto, not '0'"),
    (["--workers", "-1"], "argument --workers"),
    (["--workers", "x"], "argument --workers: expected a number of processes of at least 1, or auto, not 'x'"),
    (["--workers", "2", "--print"], "--print needs --workers 1"),
])
def test_bad_workers_one_line_exit_2(serve: Callable[..., Serve], args: list[str], words: str) -> None:
    server = serve(*args, wait=False)
    assert server.wait() == 2
    lines = server.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("mailwire") and words in lines[0], lines


def test_port_in_use_is_refused_even_by_another_pool(serve: Callable[..., Serve]) -> None:
    """SO_REUSEPORT would let a second server join the first's port: the
    supervisor checks that nothing listens there first."""
    first = serve("--port", "0", "--workers", "2")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        for port in (first.port, busy.getsockname()[1]):
            second = serve("--port", str(port), "--workers", "2", wait=False)
            assert second.wait() == 1
            assert second.stderr.splitlines() == [f"mailwire serve: cannot listen on 127.0.0.1:{port}: address "
                                                  "already in use (is another server running there?)"]
    assert first.stop(signal.SIGTERM) == 0


def test_workers_auto_is_the_usable_cores() -> None:
    from mailwire.cli.main import _parser

    args = _parser().parse_args(["serve", "--workers", "auto"])
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    assert args.workers == cores
    assert _parser().parse_args(["serve"]).workers == 1


def _long_subject_message(number: int) -> tuple[bytes, str]:
    """A message whose summary line is longer than a pipe writes at once
    (PIPE_BUF, 4096): a folded Subject of 700 words. And that line's subject."""
    words = [f"word{i:03d}" for i in range(700)]
    folded = "\r\n ".join(" ".join(words[i:i + 50]) for i in range(0, 700, 50))
    message = (f"From: alice@example.org\r\nSubject: {folded}\r\nMessage-ID: <{number:04d}@example.org>\r\n"
               f"\r\nbody {number:04d}\r\n").encode()
    return message, json.dumps(" ".join(words))


def test_workers_share_one_port_and_lines_stay_whole(serve: Callable[..., Serve], tmp_path: Path) -> None:
    server = serve("--port", "0", "--workers", "2")
    assert server.banner.endswith(", storing in ./mail (Maildir), workers: 2"), server.banner
    sent: list[bytes] = []
    lock = threading.Lock()

    def sender(first: int) -> None:
        for number in range(first, first + 5):
            message, _ = _long_subject_message(number)
            send(server.port, message)  # a connection each: the kernel spreads them
            with lock:
                sent.append(message)

    threads = [threading.Thread(target=sender, args=(n * 5,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT * 3)
    assert len(sent) == 40
    _, subject = _long_subject_message(0)
    expected = f"from=<alice@example.org> to=<bob@example.net> subject={subject} size={len(sent[0])}"
    assert len(expected) > 4096
    lines = [server.line() for _ in sent]
    assert lines == [expected] * 40  # every line whole: none cut, none mixed with another
    files = maildir_files(tmp_path / "mail")
    assert sorted(files) == sorted(stored(m) for m in sent)
    if sys.platform.startswith("linux"):  # SO_REUSEPORT spreads 40 connections over both
        assert len(stored_pids(tmp_path / "mail")) == 2
    assert server.stop(signal.SIGTERM) == 0
    assert server.rest() == []


def test_sigterm_lets_a_message_in_flight_end(serve: Callable[..., Serve], tmp_path: Path) -> None:
    server = serve("--port", "0", "--workers", "2", "--grace", "30", "-v")
    raw = _begin_message(server.port)
    try:
        raw.sock.sendall(STUFFED[: len(STUFFED) // 2])
        time.sleep(0.2)
        server.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: "SIGTERM: stopping the workers" in server.stderr, "the supervisor to stop")
        raw.sock.sendall(STUFFED[len(STUFFED) // 2:] + b".\r\n")
        assert raw.reply()[0] == 250  # its grace is 30 s
        assert raw.reply()[0] == 421  # then goodbye
    finally:
        raw.close()
    assert server.wait() == 0
    assert maildir_files(tmp_path / "mail") == [stored()]
    assert server.rest() == [SUMMARY_LINE]
    assert len(re.findall(r"worker \d \(pid \d+\) exited with status 0", server.stderr)) == 2


SUMMARY_LINE = f'from=<alice@example.org> to=<bob@example.net> subject="Hello there" size={len(MSG)}'


def test_unix_socket_is_shared_by_the_workers(serve: Callable[..., Serve], short_tmp: Path, tmp_path: Path) -> None:
    path = short_tmp / "lmtp.sock"
    server = serve("--unix", str(path), "--lmtp", "--workers", "2")
    assert f"listening on {path} (LMTP)" in server.banner and server.banner.endswith("workers: 2")
    from mailwire import LMTPClient

    for _ in range(3):
        with LMTPClient(str(path), timeout=TIMEOUT) as client:
            assert client.send(MSG, "alice@example.org", ["bob@example.net"]).ok
    assert maildir_files(tmp_path / "mail") == [stored()] * 3
    assert server.stop(signal.SIGTERM) == 0
    assert not path.exists()


@pytest.mark.skipif(not LINUX_PROC, reason="finds the workers in /proc")
def test_sigkill_under_load_loses_no_message_answered_250(serve: Callable[..., Serve], tmp_path: Path) -> None:
    """Workers killed one after another while two clients send without a
    pause: each is replaced, and every message answered 250 is stored."""
    server = serve("--port", "0", "--workers", "2")
    accepted: list[str] = []
    failed = [0]
    stop = threading.Event()

    def sender(name: str) -> None:
        number = 0
        while not stop.is_set() and number < 5000:
            try:
                with smtplib.SMTP("127.0.0.1", server.port, timeout=TIMEOUT) as client:
                    for _ in range(5):
                        number += 1
                        ident = f"{name}-{number}@example.org"
                        client.sendmail("alice@example.org", ["bob@example.net"],
                                        f"Message-ID: <{ident}>\r\nSubject: load\r\n\r\nbody\r\n".encode())
                        accepted.append(ident)  # answered 250
            except (OSError, smtplib.SMTPException):
                failed[0] += 1  # its worker was killed: a new connection

    threads = [threading.Thread(target=sender, args=(f"c{n}",)) for n in range(2)]
    for thread in threads:
        thread.start()
    try:
        for round_ in range(3):
            goal = len(accepted) + 20
            wait_for(lambda: len(accepted) >= goal, f"messages before kill {round_}")
            workers = children(server.proc.pid)
            assert len(workers) == 2, workers
            victim = min(workers)
            os.kill(victim, signal.SIGKILL)
            wait_for(lambda: len(children(server.proc.pid) - {victim}) == 2, "a replacement worker")
        goal = len(accepted) + 20
        wait_for(lambda: len(accepted) >= goal, "messages after the last kill")
    finally:
        stop.set()
        for thread in threads:
            thread.join(TIMEOUT * 3)
    assert server.stop(signal.SIGTERM) == 0
    kills = re.findall(r"worker \d \(pid \d+\) was killed by SIGKILL; restarting it", server.stderr)
    assert len(kills) == 3, server.stderr
    ids = stored_ids(tmp_path / "mail")
    assert len(ids) >= len(accepted)
    assert set(accepted) <= set(ids)  # nothing answered 250 is missing
    assert len(set(accepted)) == len(accepted)


@pytest.mark.skipif(not LINUX_PROC, reason="finds the workers in /proc")
def test_workers_stop_when_the_supervisor_is_killed(serve: Callable[..., Serve]) -> None:
    server = serve("--port", "0", "--workers", "2")
    workers = children(server.proc.pid)
    assert len(workers) == 2
    server.proc.kill()
    server.proc.wait(TIMEOUT)

    def gone() -> bool:
        for pid in workers:
            try:
                state = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            if state[state.rindex(")") + 2] != "Z":
                return False
        return True

    wait_for(gone, "the orphaned workers to stop")


# -- the library: serve_workers in a program of its own ---------------------------------------------


def test_shared_socket_fallback_spreads_connections(app: Callable[..., App], tmp_path: Path) -> None:
    """Without SO_REUSEPORT the workers accept from one inherited socket: a
    worker whose loop is held cannot accept, so the next connection goes
    to the other, whose pid the stored message carries."""
    server = app("--shared").listening()
    blocked: list[BaseException] = []

    def send_block() -> None:
        try:
            send(server.port, b"Subject: block\r\nMessage-ID: <block@example.org>\r\n\r\nheld\r\n")
        except BaseException as err:  # reported below
            blocked.append(err)

    thread = threading.Thread(target=send_block)
    thread.start()
    wait_for(lambda: list(tmp_path.glob("blocked.*")), "a worker to hold its loop")
    held = int(next(tmp_path.glob("blocked.*")).suffix[1:])
    send(server.port)  # the other worker takes it
    other = stored_pids(tmp_path / "mail")
    assert len(other) == 1 and held not in other
    (tmp_path / "release").touch()
    thread.join(TIMEOUT * 3)
    assert blocked == []
    assert stored_pids(tmp_path / "mail") == other | {held}
    server.proc.send_signal(signal.SIGTERM)
    assert server.wait() == 0


def test_a_crashing_worker_is_restarted(app: Callable[..., App], tmp_path: Path) -> None:
    server = app().listening()
    with pytest.raises((smtplib.SMTPServerDisconnected, ConnectionError)):
        send(server.port, b"Subject: crash\r\n\r\nbye\r\n")
    wait_for(lambda: "exited with status 3; restarting it" in server.stderr, "the restart")
    crash = re.search(r"workers: worker (\d) \(pid (\d+)\) exited with status 3; restarting it", server.stderr)
    assert crash, server.stderr
    wait_for(lambda: len(re.findall(rf"worker {crash[1]} \(pid \d+\) started", server.stderr)) == 2, "its start")
    new = int(re.findall(rf"worker {crash[1]} \(pid (\d+)\) started", server.stderr)[-1])
    assert new != int(crash[2])
    for _ in range(40):  # until a connection lands on the new worker (REUSEPORT picks by a hash)
        send(server.port)
        if new in stored_pids(tmp_path / "mail"):
            break
    assert new in stored_pids(tmp_path / "mail")  # it serves
    server.proc.send_signal(signal.SIGTERM)
    assert server.wait() == 0


def test_workers_that_cannot_start_end_with_their_error(app: Callable[..., App], tmp_path: Path) -> None:
    (tmp_path / "fail").touch()
    server = app()
    assert server.wait() == 1
    assert server.proc.stdout is not None and server.proc.stdout.read() == ""  # never listened
    last = server.stderr.splitlines()[-1]
    assert re.fullmatch(r"workers_app: worker \d could not start: RuntimeError: told to fail", last), server.stderr


def test_a_worker_that_keeps_failing_to_restart_backs_off_then_gives_up(app: Callable[..., App], tmp_path: Path) -> None:
    server = app("--give-up", "3").listening()
    send(server.port)
    victim = stored_pids(tmp_path / "mail").pop()
    (tmp_path / "fail").touch()
    os.kill(victim, signal.SIGKILL)
    assert server.wait() == 1
    err = server.stderr
    assert re.search(rf"\(pid {victim}\) was killed by SIGKILL; restarting it( in 0.05s)?\n", err), err
    delays = re.findall(r"exited with status 1 \(RuntimeError: told to fail\); restarting it in ([\d.]+)s", err)
    assert delays == ["0.05", "0.1"], err  # doubling from Restart.first_delay
    assert re.search(r"workers_app: worker \d failed to start 3 times in a row: RuntimeError: told to fail\n$", err)


# -- the stores across processes ---------------------------------------------------------------------

WRITER = """
import sys
from mailwire.server import Envelope, Maildir, Mbox
from mailwire.server.backends.maildir import MaildirFile
kind, path, name, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
store = Maildir(path) if kind == "maildir" else Mbox(path)
for n in range(count):
    content = f"Message-ID: <{name}-{n}@example.org>\\r\\n\\r\\n{'body ' * 50}{name}-{n}\\r\\n".encode()
    envelope = Envelope("alice@example.org", rcpt_to=["bob@example.net"], content=content)
    if kind == "maildir":
        MaildirFile(store, envelope).commit([content[:40], content[40:]])  # the streaming path
    else:
        store.store(envelope)
"""


@pytest.mark.parametrize("kind", ["maildir", "mbox"])
def test_concurrent_writers_in_several_processes_lose_nothing(tmp_path: Path, kind: str) -> None:
    path = tmp_path / ("mail" if kind == "maildir" else "mbox")  # each writer creates it if need be
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, kind, str(path), f"w{n}", "100"],
                                stderr=subprocess.PIPE) for n in range(4)]
    for writer in writers:
        _, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err
    expected = {f"w{n}-{i}" for n in range(4) for i in range(100)}
    if kind == "maildir":
        files = list((path / "new").iterdir())
        assert len(files) == 400 and list((path / "tmp").iterdir()) == []
        bodies = [f.read_bytes() for f in files]
    else:
        import mailbox

        bodies = [bytes(m) for m in mailbox.mbox(path)]
        assert len(bodies) == 400
    found = set()
    for body in bodies:
        match = re.search(rb"Message-ID: <(w\d-\d+)@example.org>\r?\n\r?\n(?:body ){50}(w\d-\d+)\r?\n$", body)
        assert match and match[1] == match[2], body  # whole, and nothing of another message inside
        found.add(match[1].decode())
    assert found == expected

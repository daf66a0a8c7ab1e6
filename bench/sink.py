"""Postfix's smtp-sink as a benchmark target: start it on a free loopback port, count, stop.

smtp-sink is a C server that accepts mail and throws it away; it is far faster than any Python
client, so what a benchmark against it measures is the client. It advertises PIPELINING and no
CHUNKING. It binds its own socket, so we pick a free port by binding port 0 and releasing it, then
retry on the (rare) race where someone else takes it first. Run as root it must drop privileges
(``-u nobody``). With ``-c`` it prints a running ``mesg=N`` counter after every message; the
counter goes to a temporary file that we read on demand, which lets the benchmark check that every
message of a run really arrived without trusting the client under test.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Final

SMTP_SINK: Final = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
BACKLOG: Final = 1000
_COUNTER: Final = re.compile(rb"mesg=(\d+)")


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_greeting(
    host: str, port: int, timeout: float = 5.0, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Block until the server at host:port answers a connection with a 220 greeting.

    If ``process`` is given and exits first (say, the port was taken), fail at once.
    """
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise TimeoutError(f"server exited with status {process.returncode}")
        try:
            with socket.create_connection((host, port), timeout=1.0) as sock:
                if sock.recv(512).startswith(b"220"):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"no SMTP greeting from {host}:{port} within {timeout} s")
        time.sleep(0.02)


class SmtpSink:
    """One smtp-sink child process on 127.0.0.1; use as a context manager or start()/stop()."""

    def __init__(self, host: str = "127.0.0.1", extra_args: tuple[str, ...] = ()) -> None:
        self.host = host
        self.port = 0
        self._extra_args = extra_args
        self._proc: subprocess.Popen[bytes] | None = None
        self._counter_file: Path | None = None

    def start(self, attempts: int = 5) -> int:
        """Start the sink on a free port and wait until it greets; return the port."""
        for _ in range(attempts):
            port = free_port(self.host)
            self._spawn(port)
            try:
                wait_for_greeting(self.host, port, process=self._proc)
            except TimeoutError:
                self.stop()  # most likely the port was taken between free_port() and bind()
                continue
            self.port = port
            return port
        raise RuntimeError(f"could not start {SMTP_SINK}")

    def messages(self) -> int:
        """How many messages the sink has accepted so far (its -c counter)."""
        if self._counter_file is None:
            return 0
        counts = _COUNTER.findall(self._counter_file.read_bytes())
        return int(counts[-1]) if counts else 0

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        if self._counter_file is not None:
            self._counter_file.unlink(missing_ok=True)
            self._counter_file = None

    def __enter__(self) -> SmtpSink:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(self, port: int) -> None:
        fd, name = tempfile.mkstemp(prefix="smtp-sink-", suffix=".count")
        self._counter_file = Path(name)
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        args = [SMTP_SINK, "-c", *user, *self._extra_args, f"{self.host}:{port}", str(BACKLOG)]
        with os.fdopen(fd, "wb") as counter:
            self._proc = subprocess.Popen(args, stdout=counter, stdin=subprocess.DEVNULL)

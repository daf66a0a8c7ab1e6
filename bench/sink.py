"""Postfix's smtp-sink as a benchmark target: start it on a free loopback port, count, stop.

smtp-sink is a C server that accepts mail and throws it away; it is far faster than any Python
client, so what a benchmark against it measures is the client. It advertises PIPELINING and no
CHUNKING. It binds its own socket, so we pick a free port by binding port 0 and releasing it, then
retry on the (rare) race where someone else takes it first. Run as root it must drop privileges
(``-u nobody``). It runs without ``-c``: that option prints a counter line per message, a write
the sink would pay for in every transaction, which would lower the very ceiling the benchmarks
measure. What the sink received is read instead from the kernel's I/O accounting of the process
(``/proc/PID/io``: bytes it read and wrote through system calls), which lets a benchmark check
that the bytes of every message of a run really reached the sink without trusting the client
under test.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from typing import Final

SMTP_SINK: Final = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
BACKLOG: Final = 1000


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

    def traffic(self) -> tuple[int, int] | None:
        """Bytes the sink process has read and written so far (``rchar``, ``wchar``), or None
        where the kernel does not account them (no ``/proc/PID/io``)."""
        if self._proc is None:
            return None
        try:
            with open(f"/proc/{self._proc.pid}/io", "rb") as io:
                fields = dict(line.split(b":", 1) for line in io.read().splitlines())
        except OSError:
            return None
        return int(fields[b"rchar"]), int(fields[b"wchar"])

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    def __enter__(self) -> SmtpSink:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(self, port: int) -> None:
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        args = [SMTP_SINK, *user, *self._extra_args, f"{self.host}:{port}", str(BACKLOG)]
        self._proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)


def plain_maildir_options(mailwire: str) -> list[str]:
    """``--no-web`` for an install whose ``serve --maildir`` runs the web inbox by default (its
    catcher indexes every message, a different backend, measured as such), and ``--loop asyncio``
    for one that would take uvloop when installed (the fast paths have rows of their own in
    server_bench.py), else nothing: older installs have no such options."""
    shown = subprocess.run([mailwire, "serve", "--help"], capture_output=True, text=True, timeout=60).stdout
    return [*(["--no-web"] if "--no-web" in shown else []), *(["--loop", "asyncio"] if "--loop" in shown else [])]

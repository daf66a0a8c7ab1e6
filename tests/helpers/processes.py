"""A ``python -m mailwire ...`` process a test starts, kills and restarts.

Output goes to files in the test's directory (a pipe nobody reads would fill
and stall the process under load); ``ready`` is a line its stdout prints once
it serves (``mailwire serve``'s banner) or a callable probed until true.
``start`` waits for it, bounded; ``kill`` is SIGKILL (no clean-up at all, as
a crash), ``stop`` SIGTERM then SIGKILL after a grace. Restarting reuses the
same arguments, so the same port and directories.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["MailwireProcess", "terminate", "free_ports"]

START_TIMEOUT = 30.0  # a fresh interpreter importing mailwire on a loaded 2-core machine


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports: all bound at once, then let go
    (probed one at a time, two could come back the same)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def terminate(process: subprocess.Popen[bytes], grace: float = 10.0) -> int | None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; the exit code (None if it had to be killed)."""
    process.terminate()
    try:
        return process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10.0)
        return None


class MailwireProcess:
    def __init__(self, name: str, args: Sequence[str], directory: Path, *,
                 ready: str | Callable[[], bool], traced: bool = True) -> None:
        # traced False: not followed by coverage (which dev/test.sh's first run
        # turns on in every child through COVERAGE_PROCESS_CONFIG): a cluster's
        # front ends and workers handle thousands of messages each, and tracing
        # them doubled the cluster tests' time; their code is covered by the
        # tests of each part.
        self.traced = traced
        self.name = name
        self.args = list(args)
        self.directory = directory
        self.ready = ready
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def stdout_path(self) -> Path:
        return self.directory / f"{self.name}.out"

    @property
    def stderr_path(self) -> Path:
        return self.directory / f"{self.name}.err"

    def output(self, tail: int = 3000) -> str:
        """The last ``tail`` characters of its stdout and of its stderr (0: all), over every start."""
        parts = []
        for path in (self.stdout_path, self.stderr_path):
            if path.exists():
                parts.append(path.read_text(errors="replace")[-tail:])
        return "\n".join(parts)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = START_TIMEOUT) -> None:
        assert not self.alive, f"{self.name} is running"
        offset = self.stdout_path.stat().st_size if self.stdout_path.exists() else 0
        env = {**os.environ, "PYTHONIOENCODING": "utf-8", "PYTHONUNBUFFERED": "1"}
        if not self.traced:
            env = {k: v for k, v in env.items() if not k.startswith("COVERAGE_PROCESS")}
        with self.stdout_path.open("ab") as out, self.stderr_path.open("ab") as err:
            self.process = subprocess.Popen([sys.executable, "-m", "mailwire", *self.args],
                                            stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env)
        self.starts += 1
        deadline = time.monotonic() + timeout
        while not self._ready(offset):
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.process.returncode}):\n{self.output()}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"{self.name} not ready after {timeout}s:\n{self.output()}")
            time.sleep(0.05)

    def _ready(self, offset: int) -> bool:
        if callable(self.ready):
            return self.ready()
        with self.stdout_path.open("rb") as out:
            out.seek(offset)
            return self.ready.encode() in out.read()

    def kill(self) -> None:
        """SIGKILL, as a crash: nothing of the process's own clean-up runs."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGKILL)
            self.process.wait(10.0)
            self.process = None

    def stop(self, grace: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL after ``grace``; the exit code (None if killed)."""
        if self.process is None:
            return None
        rc = terminate(self.process, grace)
        self.process = None
        return rc

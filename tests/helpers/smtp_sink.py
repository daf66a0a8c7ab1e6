"""Postfix's smtp-sink as a test peer, on a free loopback port or a Unix socket.

smtp-sink is a real, fast, pipelining SMTP/LMTP server that throws mail away.
With ``-D`` it appends every transaction to a dump file, headed by records of
exactly what it received (``X-Mail-Args``, ``X-Rcpt-Args``), which lets a test
check the wire without a server of our own; with ``-v`` it logs every command
line it read (never the message content), which ``Sink.commands()`` returns. It must start as root and drop to
``nobody`` (``-u nobody``); without root the fixture skips.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

__all__ = ["SMTP_SINK", "Sink", "smtp_sink", "free_port", "refused_port"]

SMTP_SINK = "/usr/sbin/smtp-sink"
_START_TIMEOUT = 5.0


def free_port(host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@contextmanager
def refused_port(host: str = "127.0.0.1") -> Iterator[int]:
    """A port bound but not listening, for the block: a connection there is
    refused. Held, not probed and released: tests run side by side, and a port
    let go could be taken by another one's server before the refusal."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as held:
        held.bind((host, 0))
        yield int(held.getsockname()[1])


@dataclass
class Sink:
    host: str  # an address, or the socket path for a Unix socket
    port: int  # 0 for a Unix socket
    dump: Path | None
    process: "subprocess.Popen[bytes]"
    stderr: IO[bytes] | None = None

    def commands(self) -> list[str]:
        """The command lines smtp-sink logged so far (it must run with ``-v``),
        "." for each end of data."""
        assert self.stderr is not None
        self.stderr.seek(0)
        prefix = f"{os.path.basename(SMTP_SINK)}: "
        lines = self.stderr.read().decode("utf-8", "replace").splitlines()
        found = [line.split(prefix, 1)[1] for line in lines if prefix in line]
        noise = ("connect", "disconnect", "name_mask", "trying...", "vstream_", "fd=", "smtp_stream_")
        return [line for line in found if not line.startswith(noise)]

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def dumped(self) -> str:
        """The dump file's text (empty if nothing was delivered yet)."""
        if self.dump is None or not self.dump.exists():
            return ""
        return self.dump.read_text("utf-8", "replace")


def _connectable(host: str, port: int) -> bool:
    try:
        if port == 0:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(0.5)
                sock.connect(host)
        else:
            with socket.create_connection((host, port), timeout=0.5):
                pass
    except OSError:
        return False
    return True


@contextmanager
def smtp_sink(
    options: Sequence[str] = (),
    *,
    host: str = "127.0.0.1",
    unix_path: str | None = None,
    dump_dir: Path | None = None,
) -> Iterator[Sink]:
    """Run smtp-sink with ``options`` until the block ends.

    ``dump_dir`` (made writable for ``nobody``) gets a ``dump`` file with
    every transaction. Starting is retried on a fresh port if the one probed
    was taken in between.
    """
    if not os.path.exists(SMTP_SINK):
        pytest.skip("smtp-sink is not installed")
    if os.geteuid() != 0:
        pytest.skip("smtp-sink must start as root to drop to nobody")
    dump = None
    args = [SMTP_SINK, "-u", "nobody", *options]
    if dump_dir is not None:
        dump_dir.chmod(0o777)
        dump = dump_dir / "dump"
        args += ["-D", str(dump)]
    last_error = ""
    for _attempt in range(3):
        if unix_path is not None:
            port, endpoint = 0, f"unix:{unix_path}"
            target = unix_path
        else:
            port = free_port(host)
            endpoint = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            target = host
        errors = tempfile.TemporaryFile()
        process = subprocess.Popen([*args, endpoint, "64"], stdout=subprocess.DEVNULL, stderr=errors)
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline and process.poll() is None and not _connectable(target, port):
            time.sleep(0.02)
        if process.poll() is None and _connectable(target, port):
            break
        process.kill()
        process.wait(timeout=5)
        errors.seek(0)
        last_error = errors.read().decode("utf-8", "replace")
        errors.close()
    else:
        raise RuntimeError(f"smtp-sink did not start: {last_error}")
    try:
        yield Sink(target, port, dump, process, errors)
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        errors.close()

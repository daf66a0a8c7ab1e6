"""Server memory under large messages: ``mailwire serve --maildir``, fed by plain sockets.

Two runs per ``mailwire`` executable given (interleaved, so the machine's
load hits each alike):

- *concurrent*: ``--sessions`` clients (20) each send one message of
  ``--size`` MB (50) at the same time;
- *large*: one client sends one message of ``--large`` MB (500), with the
  server's ``--max-size`` raised to fit it.

Reported per run: the server's RSS at rest before the run, its peak during
the run (``VmHWM`` from ``/proc/PID/status``, the kernel's own high-water
mark, so no sample is missed), and the peak's growth over rest. Then every
message the server answered 250 is looked for in the Maildir and compared by
SHA-256 (the stored file is ``Return-Path:`` and then the content exactly as
received); a missing or different message makes the run fail, so a figure
is never shown for a server that lost mail.

The clients stream each message from a repeated block of generated lines
(no line starts with a dot, so nothing needs stuffing), hashing as they
send: they hold 64 KB each, whatever the size. Figures only, no assertion on
speed::

    python bench/memory_bench.py /work/wt/e-base/.venv/bin/mailwire .venv/bin/mailwire
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from sink import plain_maildir_options

HOST = "127.0.0.1"
BLOCK_LINES = 840  # 840 lines of 78 octets: a block of 65,520 octets


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def status_kib(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {key} for pid {pid}")


def block(seed: int) -> bytes:
    """65,520 octets of printable lines, different for each client."""
    lines = []
    for number in range(BLOCK_LINES):
        digest = hashlib.sha256(f"{seed}:{number}".encode()).hexdigest()
        lines.append((digest + digest)[:76].encode() + b"\r\n")
    return b"".join(lines)


@dataclass
class Sent:
    """One client's message: its hash, and the server's final reply."""

    digest: str = ""
    reply: str = ""
    error: str = ""


def send(port: int, seed: int, size: int, outcome: Sent) -> None:
    """Send one message of about ``size`` octets over a blocking socket."""
    try:
        with socket.create_connection((HOST, port), timeout=120) as sock:
            reader = sock.makefile("rb")

            def reply() -> str:
                while True:
                    line = reader.readline().decode("ascii", "replace")
                    if not line:
                        raise ConnectionError("closed by the server")
                    if line[3:4] != "-":
                        return line.strip()

            reply()
            for command in (b"EHLO bench\r\n", b"MAIL FROM:<a@example.com>\r\n",
                            b"RCPT TO:<b@example.com>\r\n", b"DATA\r\n"):
                sock.sendall(command)
                answer = reply()
                if answer[:1] not in "23":
                    raise ConnectionError(f"{command.strip().decode()}: {answer}")
            digest = hashlib.sha256()
            head = f"Message-ID: <{seed}@memory-bench>\r\nSubject: memory {seed}\r\n\r\n".encode()
            digest.update(head)
            sock.sendall(head)
            body = block(seed)
            for _ in range(max(1, size // len(body))):
                digest.update(body)
                sock.sendall(body)
            sock.sendall(b".\r\n")
            outcome.reply = reply()
            outcome.digest = digest.hexdigest()
            sock.sendall(b"QUIT\r\n")
    except OSError as err:
        outcome.error = f"{type(err).__name__}: {err}"


def stored_digests(maildir: str) -> set[str]:
    digests = set()
    folder = os.path.join(maildir, "new")
    for name in os.listdir(folder):
        digest = hashlib.sha256()
        with open(os.path.join(folder, name), "rb") as stored:
            first = stored.readline()
            if not first.startswith(b"Return-Path:"):
                digest.update(first)
            while chunk := stored.read(1 << 20):
                digest.update(chunk)
        digests.add(digest.hexdigest())
    return digests


@dataclass
class Run:
    rest_kib: int = 0
    peak_kib: int = 0
    seconds: float = 0.0
    accepted: int = 0
    problems: list[str] = field(default_factory=list)


def run(mailwire: str, clients: int, size_mb: int) -> Run:
    port = free_port()
    box = tempfile.mkdtemp(prefix="mw-memory-")
    maildir = os.path.join(box, "Maildir")
    max_size = str(size_mb * 1024 * 1024 + (1 << 20))
    server = subprocess.Popen([mailwire, "serve", "--maildir", maildir, *plain_maildir_options(mailwire),
                               "-q", "--host", HOST,
                               "--port", str(port), "--max-size", max_size],
                              stdout=subprocess.DEVNULL)
    result = Run()
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((HOST, port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.05)
        time.sleep(0.3)
        result.rest_kib = status_kib(server.pid, "VmRSS")
        outcomes = [Sent() for _ in range(clients)]
        threads = [threading.Thread(target=send, args=(port, seed, size_mb << 20, outcome))
                   for seed, outcome in enumerate(outcomes)]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(600)
        result.seconds = time.perf_counter() - start
        result.peak_kib = status_kib(server.pid, "VmHWM")
        stored = stored_digests(maildir)
        for seed, outcome in enumerate(outcomes):
            if outcome.error or not outcome.reply.startswith("250"):
                result.problems.append(f"client {seed}: {outcome.error or outcome.reply}")
            elif outcome.digest not in stored:
                result.problems.append(f"client {seed}: answered 250 but not stored whole")
            else:
                result.accepted += 1
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(box, ignore_errors=True)
    return result


def describe(label: str, name: str, outcome: Run) -> str:
    growth = (outcome.peak_kib - outcome.rest_kib) / 1024
    line = (f"{label:<34} {name:<10} rest {outcome.rest_kib / 1024:6.1f} MB  peak {outcome.peak_kib / 1024:7.1f} MB"
            f"  growth {growth:7.1f} MB  {outcome.accepted} stored whole, sha256 equal"
            f"  ({outcome.seconds:.1f} s)")
    if outcome.problems:
        line += "\n    PROBLEMS: " + "; ".join(outcome.problems[:5])
    return line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("mailwire", nargs="+", help="`mailwire` executables; the last is the one measured")
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--size", type=int, default=50, help="MB per message of the concurrent run")
    parser.add_argument("--large", type=int, default=500, help="MB of the large run's message (0: skip)")
    args = parser.parse_args(argv)
    names = ["before", "after"] if len(args.mailwire) == 2 else [f"#{n}" for n in range(len(args.mailwire))]
    failed = False
    runs = [(f"{args.sessions} x {args.size} MB at once", args.sessions, args.size)]
    if args.large:
        runs.append((f"1 x {args.large} MB", 1, args.large))
    for label, clients, size in runs:
        for name, mailwire in zip(names, args.mailwire):
            outcome = run(mailwire, clients, size)
            failed = failed or bool(outcome.problems)
            print(describe(label, name, outcome), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

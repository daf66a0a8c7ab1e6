"""Storing backends' throughput, two mailwire installs side by side: ``mailwire serve --maildir`` (or ``--mbox``, ``--relay``) fed by smtp-source.

For each message size, runs alternate between the executables (interleaved,
so a change in the machine's load hits both alike) and the table shows the
median messages per second of each and their ratio. Each run starts a fresh
server on a fresh Maildir or mbox (every message is fsynced, so the disk
counts as much as the CPU); ``--backend relay`` relays to Postfix's
smtp-sink, started once for all runs. ``serve`` has no ``--mbox``: the mbox
runs serve ``Mbox`` through the library (``SMTPServer``) with the Python
next to each executable. No timed assertions: figures only.

    python bench/maildir_bench.py /work/main/.venv/bin/mailwire .venv/bin/mailwire
    python bench/maildir_bench.py --backend mbox BEFORE AFTER
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time

from sink import plain_maildir_options

SMTP_SOURCE = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
SMTP_SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
SESSIONS = 20


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


# The mbox server: ``python -c MBOX_SERVER PATH PORT``.
MBOX_SERVER = """
import asyncio, sys
from mailwire.server import Mbox, SMTPServer

async def main():
    server = SMTPServer(Mbox(sys.argv[1]), hostname="localhost")
    await server.start("127.0.0.1", int(sys.argv[2]))
    await server.serve_forever()

asyncio.run(main())
"""


def server_command(mailwire: str, backend: str, box: str, port: int, upstream: int | None) -> list[str]:
    if backend == "mbox":
        python = os.path.join(os.path.dirname(mailwire), "python")
        return [python, "-c", MBOX_SERVER, f"{box}/mbox", str(port)]
    if backend == "relay":
        where = ["--relay", f"127.0.0.1:{upstream}"]
    elif backend == "catcher":  # the web inbox's catcher: Maildir and its index
        where = ["--maildir", box]
    else:
        where = ["--maildir", box, *plain_maildir_options(mailwire)]
    return [mailwire, "serve", *where, "-q", "--host", "127.0.0.1", "--port", str(port)]


def cpu_seconds(pid: int) -> float:
    """User and system CPU a process has used so far (Linux /proc), or NaN."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(
    mailwire: str, size: int, messages: int, backend: str = "maildir", upstream: int | None = None,
) -> tuple[float, float]:
    """Messages per second of one smtp-source run against a fresh server, and
    the server's CPU milliseconds per message (less swayed by a busy machine)."""
    port = free_port()
    box = tempfile.mkdtemp(prefix="mw-bench-")
    server = subprocess.Popen(server_command(mailwire, backend, box, port, upstream), stdout=subprocess.DEVNULL)
    try:
        wait_listening(port)
        cpu = cpu_seconds(server.pid)
        start = time.perf_counter()
        subprocess.run([SMTP_SOURCE, "-d", "-s", str(SESSIONS), "-m", str(messages), "-l", str(size),
                        "-M", "localhost", "-f", "a@example.com", "-t", "b@example.com",
                        f"127.0.0.1:{port}"], check=True, capture_output=True, timeout=600)
        rate = messages / (time.perf_counter() - start)
        return rate, (cpu_seconds(server.pid) - cpu) * 1000 / messages
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(box, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", help="the `mailwire` executable to compare against")
    parser.add_argument("after", help="the `mailwire` executable measured")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--messages", type=int, nargs=2, default=(3000, 1000), metavar=("1KB", "100KB"))
    parser.add_argument("--backend", choices=("maildir", "catcher", "mbox", "relay"), default="maildir",
                        help="maildir: serve --maildir without the web inbox; catcher: with it (the index)")
    args = parser.parse_args()
    upstream = sink = None
    if args.backend == "relay":  # one upstream for every run: Postfix's smtp-sink, which keeps nothing
        upstream = free_port()
        user = ["-u", "nobody"] if os.geteuid() == 0 else []  # as root it must drop privileges
        sink = subprocess.Popen([SMTP_SINK, *user, f"127.0.0.1:{upstream}", "1000"], stdout=subprocess.DEVNULL)
        wait_listening(upstream)
    try:
        measure(args, upstream)
    finally:
        if sink is not None:
            sink.terminate()
            sink.wait(10)


def measure(args: argparse.Namespace, upstream: int | None) -> None:
    print(f"serve --{args.backend}, {SESSIONS} sessions", flush=True)
    for size, messages in zip((1024, 102400), args.messages):
        rates: dict[str, list[float]] = {"before": [], "after": []}
        cpus: dict[str, list[float]] = {"before": [], "after": []}
        for _ in range(args.repeat):
            for name in ("before", "after"):
                rate, cpu = run(getattr(args, name), size, messages, args.backend, upstream)
                rates[name].append(rate)
                cpus[name].append(cpu)
        before, after = (statistics.median(rates[n]) for n in ("before", "after"))
        cpu_before, cpu_after = (statistics.median(cpus[n]) for n in ("before", "after"))
        print(f"{size // 1024:>4} KB x {messages}: before {before:8.0f} msg/s  after {after:8.0f} msg/s  "
              f"after/before {after / before:.2f}  (runs: {[round(r) for r in rates['before']]} / "
              f"{[round(r) for r in rates['after']]})", flush=True)
        print(f"{'':>14} server CPU ms/msg: before {cpu_before:.3f}  after {cpu_after:.3f}  "
              f"after/before {cpu_after / cpu_before:.2f}", flush=True)


if __name__ == "__main__":
    main()

"""Maildir throughput, two mailwire installs side by side: ``mailwire serve --maildir`` fed by smtp-source.

For each message size, runs alternate between the executables (interleaved,
so a change in the machine's load hits both alike) and the table shows the
median messages per second of each and their ratio. Each run starts a fresh
server on a fresh Maildir (every message is fsynced, so the disk counts as
much as the CPU). No timed assertions: figures only.

    python bench/maildir_bench.py /work/main/.venv/bin/mailwire .venv/bin/mailwire
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import subprocess
import tempfile
import time

SMTP_SOURCE = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
SESSIONS = 20


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(mailwire: str, size: int, messages: int) -> float:
    """Messages per second of one smtp-source run against a fresh server."""
    port = free_port()
    box = tempfile.mkdtemp(prefix="mw-bench-")
    server = subprocess.Popen([mailwire, "serve", "--maildir", box, "-q", "--host", "127.0.0.1",
                               "--port", str(port)], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        start = time.perf_counter()
        subprocess.run([SMTP_SOURCE, "-d", "-s", str(SESSIONS), "-m", str(messages), "-l", str(size),
                        "-M", "localhost", "-f", "a@example.com", "-t", "b@example.com",
                        f"127.0.0.1:{port}"], check=True, capture_output=True, timeout=600)
        return messages / (time.perf_counter() - start)
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
    args = parser.parse_args()
    for size, messages in zip((1024, 102400), args.messages):
        rates: dict[str, list[float]] = {"before": [], "after": []}
        for _ in range(args.repeat):
            for name in ("before", "after"):
                rates[name].append(run(getattr(args, name), size, messages))
        before, after = (statistics.median(rates[n]) for n in ("before", "after"))
        print(f"{size // 1024:>4} KB x {messages}: before {before:8.0f} msg/s  after {after:8.0f} msg/s  "
              f"after/before {after / before:.2f}  (runs: {[round(r) for r in rates['before']]} / "
              f"{[round(r) for r in rates['after']]})", flush=True)


if __name__ == "__main__":
    main()

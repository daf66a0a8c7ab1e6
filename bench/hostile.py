"""Hostile clients against ``mailwire serve --sink`` and Postfix's ``smtp-sink``, side by side.

What a server on the open Internet must survive, measured from outside its process:

- flood: 10, then 50 connections pipelining NOOPs as fast as the server answers (reconnecting
  whenever it hangs up); meanwhile an honest client times its greeting and its NOOPs;
- unread: connections that pipeline commands and never read a reply, until the server stops
  reading them; the server's RSS per such connection;
- idle: 1,000 then 5,000 connections that only read the greeting; RSS per connection;
- slowloris: 1,000 connections each sending one octet a second of a command line that never ends;
  how long they hold their slots, and whether an honest client gets a 220 meanwhile.

Each server runs in its own process on a free loopback port; RSS is VmRSS from /proc/PID/status.
``--python`` chooses the interpreter (and so the mailwire) that runs the server, to measure the
code of another worktree: ``--python /work/wt/e-base/.venv/bin/python``. When that mailwire's
``serve`` lacks ``--max-connections`` (the code before these limits), the same server is started
from a few lines of Python instead (``SMTPServer`` with ``ServeBackend(Sink())``, as ``serve --sink
-q`` builds it) with the connection cap and idle timeout as ``Limits``; the header says which.
See bench/README.md for what each row means.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import select
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sink import SMTP_SINK, free_port, wait_for_greeting  # noqa: E402

HOST = "127.0.0.1"
ATTACKER = "127.0.0.2"  # another address of this host, for the per-client rows
LONG_HOSTNAME = ".".join(["h" * 63, "x" * 63, "y" * 63, "example"])

# The server the code before these limits ran: what `mailwire serve --sink -q` builds.
LAUNCHER = r"""
import asyncio, sys
from mailwire.cli_serve import ServeBackend
from mailwire.limits import Limits
from mailwire.server.aio import SMTPServer
from mailwire.server.handlers import Sink
connections, idle, hostname = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
async def main():
    server = SMTPServer(ServeBackend(Sink(), report=False), hostname=hostname,
                        limits=Limits(connections=connections, server_idle_timeout=idle))
    await server.start("127.0.0.1", 0)
    print(f"listening on 127.0.0.1:{server.port}", flush=True)
    await server.serve_forever()
asyncio.run(main())
"""


# -- the servers ------------------------------------------------------------------------------------


@dataclass
class Options:
    connections: int = 6000
    command_timeout: float = 300.0
    hostname: str = "localhost"
    per_client_everywhere: bool = False  # --client-limit-exempt none


class Server:
    """One server process; ``rss_kib()`` reads its VmRSS."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, name: str) -> None:
        self.proc = proc
        self.port = port
        self.name = name

    def rss_kib(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def mailwire_has_limits(python: str) -> bool:
    out = subprocess.run([python, "-m", "mailwire", "serve", "--help"], capture_output=True, text=True, timeout=60)
    return "--max-connections" in out.stdout


def start_mailwire(python: str, options: Options, cli: bool) -> Server:
    if cli:
        args = [python, "-m", "mailwire", "serve", "--sink", "-q", "--port", "0", "--hostname", options.hostname,
                "--max-connections", str(options.connections), "--command-timeout", f"{options.command_timeout:g}"]
        if options.per_client_everywhere:
            args += ["--client-limit-exempt", "none"]
    else:
        args = [python, "-c", LAUNCHER, str(options.connections), f"{options.command_timeout:g}", options.hostname]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    if "127.0.0.1:" not in line:
        proc.kill()
        raise RuntimeError(f"mailwire did not start: {line!r}")
    port = int(line.split("127.0.0.1:")[1].split(",")[0].split()[0])
    wait_for_greeting(HOST, port)
    return Server(proc, port, "mailwire")


def start_smtp_sink(options: Options) -> Server:
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    for _ in range(5):
        port = free_port(HOST)
        # -m: its connection cap (default 256; beyond it, connections wait in the kernel's queue);
        # -t: its time limit for a command (per read, its manual says), as mailwire's.
        limits = ["-m", str(options.connections), "-t", str(max(1, round(options.command_timeout)))]
        proc = subprocess.Popen([SMTP_SINK, *user, *limits, "-h", options.hostname, f"{HOST}:{port}", "1000"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_greeting(HOST, port, process=proc)  # type: ignore[arg-type]
        except TimeoutError:
            proc.kill()
            proc.wait()
            continue
        return Server(proc, port, "smtp-sink")
    raise RuntimeError(f"could not start {SMTP_SINK}")


@contextmanager
def running(name: str, options: Options, python: str, cli: bool) -> Iterator[Server]:
    """``name`` ("mailwire" or "smtp-sink") started with ``options``, stopped after."""
    server = start_mailwire(python, options, cli) if name == "mailwire" else start_smtp_sink(options)
    try:
        time.sleep(0.3)
        yield server
    finally:
        server.stop()


# -- small blocking clients ---------------------------------------------------------------------------


def greeting_ms(port: int, timeout: float = 30.0) -> tuple[float, bytes]:
    """Milliseconds from connect() to the greeting's first line, and that line."""
    started = time.perf_counter()
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        data = b""
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    return (time.perf_counter() - started) * 1000, data.split(b"\r\n", 1)[0]


def round_trip_ms(sock: socket.socket, line: bytes) -> float:
    started = time.perf_counter()
    sock.sendall(line)
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return (time.perf_counter() - started) * 1000


def open_held(port: int, count: int, source: str = HOST) -> tuple[list[socket.socket], int]:
    """``count`` connections that read their greeting and stay open; and how many were refused."""
    held = []
    refused = 0
    for _ in range(count):
        sock = socket.create_connection((HOST, port), timeout=30, source_address=(source, 0))
        if not sock.recv(512).startswith(b"220"):
            refused += 1
        held.append(sock)
    return held, refused


def close_all(socks: Sequence[socket.socket]) -> None:
    for sock in socks:
        try:
            sock.close()
        except OSError:
            pass


# -- flood: the flooders run in a child process ------------------------------------------------------------


async def _flood_one(port: int, command: bytes, stop: float, stats: dict[str, int]) -> None:
    block = command * 1000
    while time.monotonic() < stop:
        try:
            reader, writer = await asyncio.open_connection(HOST, port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        stats["connections"] += 1
        sent = answered = 0
        try:
            while time.monotonic() < stop:
                if sent - answered < 4000:
                    writer.write(block)
                    sent += 1000
                data = await asyncio.wait_for(reader.read(65536), 5)
                if not data:
                    break
                answered += data.count(b"\n")
                stats["replies"] += data.count(b"\n")
        except (OSError, asyncio.TimeoutError):
            pass
        finally:
            writer.close()


async def _flood(port: int, count: int, seconds: float, command: bytes) -> dict[str, int]:
    stats = {"connections": 0, "replies": 0}
    stop = time.monotonic() + seconds
    await asyncio.gather(*(_flood_one(port, command, stop, stats) for _ in range(count)))
    return stats


@contextmanager
def flooding(port: int, count: int, seconds: float, command: bytes) -> Iterator[dict[str, float]]:
    """A child process flooding for ``seconds``; the dict gets its stats at the end."""
    proc = subprocess.Popen([sys.executable, __file__, "--_flood", str(port), str(count), str(seconds),
                             command.decode()],
                            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    result: dict[str, float] = {}
    try:
        time.sleep(1.0)  # let the flood start
        yield result
    finally:
        out, _ = proc.communicate(timeout=seconds + 60)
        result.update(json.loads(out or b"{}"))


# -- the measurements ---------------------------------------------------------------------------------


@dataclass
class Row:
    label: str
    cells: dict[str, str] = field(default_factory=dict)


def measure_flood(server: Server, flooders: int, budget: float, command: bytes) -> tuple[str, str, str]:
    """Honest greeting and NOOP latency (median / max ms) under ``flooders``; and the flood's size."""
    seconds = budget + 3
    with flooding(server.port, flooders, seconds, command) as stats:
        started = time.monotonic()
        greetings = []
        while len(greetings) < 5 and time.monotonic() - started < budget / 2:
            greetings.append(greeting_ms(server.port)[0])
            time.sleep(0.1)
        noops = []
        with socket.create_connection((HOST, server.port), timeout=60) as sock:
            sock.recv(4096)
            round_trip_ms(sock, b"EHLO honest.example\r\n")
            while len(noops) < 10 and time.monotonic() - started < budget:
                noops.append(round_trip_ms(sock, b"NOOP\r\n"))
                time.sleep(0.05)
    flood = f"{stats.get('replies', 0) / seconds:,.0f} replies/s, {stats.get('connections', 0)} conns"
    return _latency(greetings), _latency(noops), flood


def _latency(samples: list[float]) -> str:
    if not samples:
        return "none in time"
    return f"{statistics.median(samples):,.0f} / {max(samples):,.0f}"


def measure_unread(server: Server, count: int, command: bytes) -> str:
    """RSS per connection once ``count`` clients pipelining ``command`` without reading have
    stalled (the server stopped reading them), and how many are still open."""
    base = server.rss_kib()
    socks = []
    for _ in range(count):
        sock = socket.create_connection((HOST, server.port), timeout=10)
        sock.setblocking(False)
        socks.append(sock)
    block = command * (65536 // len(command))
    stalled = [0.0] * count
    started = time.monotonic()
    peak, steady_since = server.rss_kib(), time.monotonic()
    # Until no client has been able to send for 3 s and the server's memory
    # has not grown for 3 s: it stopped reading every one of them (at most 90 s).
    while time.monotonic() - started < 90:
        for i, sock in enumerate(socks):
            try:
                sock.send(block)
                stalled[i] = 0.0
            except (BlockingIOError, OSError):
                stalled[i] = stalled[i] or time.monotonic()
        rss = server.rss_kib()
        if rss > peak + 64:
            peak, steady_since = rss, time.monotonic()
        now = time.monotonic()
        if all(s and now - s > 3.0 for s in stalled) and now - steady_since > 3.0:
            break
        time.sleep(0.01)
    grown = server.rss_kib() - base
    open_now = sum(1 for sock in socks if _still_open(sock))
    close_all(socks)
    return f"{grown / count:,.0f} KiB ({open_now}/{count} open)"


def _still_open(sock: socket.socket) -> bool:
    """Not closed by the server (unread replies do not count as a close)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return True
        while True:
            data = sock.recv(1 << 20)
            if not data:
                return False
    except BlockingIOError:
        return True
    except OSError:
        return False


def measure_idle(server: Server, count: int) -> str:
    warm, _ = open_held(server.port, 20)
    time.sleep(0.5)
    base = server.rss_kib()
    held, refused = open_held(server.port, count)
    time.sleep(1.0)
    grown = server.rss_kib() - base
    close_all(held + warm)
    return f"{grown * 1024 / count:,.0f} B" + (f" ({refused} refused)" if refused else "")


def measure_slowloris(server: Server, count: int, observe: float, source: str) -> tuple[str, str]:
    """``count`` connections from ``source`` trickle one octet a second of an endless line.
    How long they hold their slots; what an honest client (from 127.0.0.1) gets meanwhile."""
    socks: list[socket.socket] = []
    refused = 0
    started = time.monotonic()
    for _ in range(count):
        try:
            sock = socket.create_connection((HOST, server.port), timeout=10, source_address=(source, 0))
        except OSError:
            refused += 1
            continue
        sock.setblocking(False)
        socks.append(sock)
    time.sleep(0.5)
    live = {sock: True for sock in socks}
    for sock in socks:  # read the greetings; a 421 at accept is a refusal
        if not _still_open(sock):
            live[sock] = False
            refused += 1
    admitted = sum(live.values())
    released_at: float | None = None
    honest: list[tuple[float, bytes]] = []
    next_honest = started
    tick = 0
    while time.monotonic() - started < observe:
        tick += 1
        octet = b"NOOP"[tick - 1:tick] if tick <= 4 else b"x"
        for sock, alive in live.items():
            if not alive:
                continue
            try:
                sock.send(octet)
            except BlockingIOError:
                pass
            except OSError:
                live[sock] = False
        for sock, alive in live.items():
            if alive and not _still_open(sock):
                live[sock] = False
        if released_at is None and admitted and not any(live.values()):
            released_at = time.monotonic() - started
        if time.monotonic() >= next_honest:
            try:
                _, line = greeting_ms(server.port, timeout=2)
            except OSError:
                line = b"no answer"
            honest.append((time.monotonic() - started, line[:3]))
            next_honest += 2.0
        if released_at is not None and len(honest) >= 2 and honest[-1][1] == b"220":
            break
        time.sleep(max(0.0, started + tick - time.monotonic()))
    still = sum(live.values())
    close_all(socks)
    if not admitted:
        held = f"all {count} refused at accept"
    elif released_at is not None:
        held = f"{admitted} held, all closed at {released_at:.0f} s"
    else:
        held = f"{admitted} held, {still} still open at {observe:.0f} s"
    if refused and admitted:
        held += f" ({refused} refused at accept)"
    return held, _honest(honest)


def _honest(tries: list[tuple[float, bytes]]) -> str:
    got = [t for t, code in tries if code == b"220"]
    if len(got) == len(tries):
        return "220 at once"
    refused = sum(code == b"421" for _, code in tries)
    unanswered = len(tries) - len(got) - refused
    how = ", ".join(part for part in (f"{refused} x 421" if refused else "",
                                      f"{unanswered} x no answer in 2 s" if unanswered else "") if part)
    if not got:
        return f"no 220 in {len(tries)} tries ({how})"
    return f"no 220 until {got[0]:.0f} s ({how}), then 220"


# -- the run ---------------------------------------------------------------------------------------------


def raise_fd_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


def run(args: argparse.Namespace) -> list[Row]:
    cli = mailwire_has_limits(args.python)
    rows: list[Row] = []
    names = ["mailwire"] + ([] if args.no_sink else ["smtp-sink"])
    print(f"mailwire: {args.python} -m mailwire serve --sink -q" if cli else
          f"mailwire: {args.python}, launched from Python (its serve has no --max-connections)")
    print(f"smtp-sink: {SMTP_SINK}" if not args.no_sink else "smtp-sink: skipped")

    def row(label: str) -> Row:
        rows.append(Row(label))
        print(f"  {label} ...", flush=True)
        return rows[-1]

    if "flood" in args.rows:
        floods = [(10, "NOOP", b"NOOP\r\n"), (50, "NOOP", b"NOOP\r\n"),
                  (50, "RCPT before MAIL", b"RCPT TO:<a@example.com>\r\n")]
        for flooders, what, command in floods:
            greet, noop, flood = (row(f"honest greeting ms, {flooders} flooding {what} (median / max)"),
                                  row(f"honest NOOP ms, {flooders} flooding {what} (median / max)"),
                                  row(f"   the flood: {flooders} x {what}"))
            for name in names:
                with running(name, Options(), args.python, cli) as server:
                    greet.cells[name], noop.cells[name], flood.cells[name] = measure_flood(
                        server, flooders, args.budget, command)
    if "unread" in args.rows:
        cases = [("NOOP", b"NOOP\r\n", "localhost"),
                 ("MAIL ... SIZE too big", b"MAIL FROM:<a@example.com> SIZE=99999999999\r\n", "localhost"),
                 ("EHLO, 255-octet hostname", b"EHLO c\r\n", LONG_HOSTNAME)]
        for label, command, hostname in cases:
            line = row(f"RSS per connection not reading, {label} x{args.unread}")
            for name in names:
                with running(name, Options(hostname=hostname), args.python, cli) as server:
                    line.cells[name] = measure_unread(server, args.unread, command)
    if "idle" in args.rows:
        for count in args.idle:
            line = row(f"RSS per idle connection, {count:,} held")
            for name in names:
                with running(name, Options(connections=max(args.idle) + 1000), args.python, cli) as server:
                    line.cells[name] = measure_idle(server, count)
    if "slowloris" in args.rows:
        variants = [("from 127.0.0.1 (loopback, exempt by default)", HOST, False),
                    (f"from {ATTACKER}, per-client cap on", ATTACKER, True)]
        for label, source, everywhere in variants:
            held, honest = row(f"{args.slowloris:,} slowloris {label}: slots"), row("   honest client meanwhile")
            for name in names:
                if name != "mailwire" and everywhere:
                    continue  # smtp-sink has no per-client cap: the first variant says it all
                options = Options(connections=1000, command_timeout=args.timeout, per_client_everywhere=everywhere)
                with running(name, options, args.python, cli) as server:
                    held.cells[name], honest.cells[name] = measure_slowloris(
                        server, args.slowloris, args.observe, source)
    return rows


def format_rows(rows: Sequence[Row], names: Sequence[str]) -> str:
    width = max(len(r.label) for r in rows) + 2
    cols = {n: max([len(n)] + [len(r.cells.get(n, "")) for r in rows]) + 2 for n in names}
    lines = ["".ljust(width) + "".join(n.rjust(cols[n]) for n in names)]
    lines.append("-" * len(lines[0]))
    for r in rows:
        lines.append(r.label.ljust(width) + "".join(r.cells.get(n, "-").rjust(cols[n]) for n in names))
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter whose mailwire runs the server (default: this one)")
    parser.add_argument("--rows", default="flood,unread,idle,slowloris",
                        help="which measurements, comma-separated (default: all)")
    parser.add_argument("--quick", action="store_true", help="smaller counts: about 3 minutes instead of 6")
    parser.add_argument("--no-sink", action="store_true", help="mailwire only")
    parser.add_argument("--slowloris", type=int, default=1000, help="slowloris connections (default 1000)")
    parser.add_argument("--timeout", type=float, default=20.0,
                        help="the command timeout the server gets for the slowloris rows (default 20 s)")
    parser.add_argument("--observe", type=float, default=0.0,
                        help="how long to watch the slowloris (default: the timeout + 25 s)")
    parser.add_argument("--_flood", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.rows = set(args.rows.split(","))
    args.idle = [1000, 2000] if args.quick else [1000, 5000]
    args.unread = 10
    args.budget = 8.0 if args.quick else 20.0
    args.observe = args.observe or args.timeout + 25
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args._flood:
        port, count, seconds, command = args._flood
        print(json.dumps(asyncio.run(_flood(int(port), int(count), float(seconds),
                                            command.encode()))))
        return
    raise_fd_limit(20000)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    started = time.monotonic()
    rows = run(args)
    names = ["mailwire"] + ([] if args.no_sink else ["smtp-sink"])
    print()
    print(format_rows(rows, names))
    print(f"\n{time.monotonic() - started:.0f} s in all")


if __name__ == "__main__":
    main()

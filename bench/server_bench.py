"""Server throughput side by side: smtp-sink, aiosmtpd, smtpd and mailwire, fed by smtp-source.

Four accept-and-discard servers each run in a process of their own on a free loopback port:
Postfix's ``smtp-sink`` (the C reference), ``aiosmtpd`` with its ``Sink`` handler, CPython 3.11's
``smtpd`` on ``asyncore`` (``process_message`` returns None) and ``mailwire serve --sink`` (or,
while the CLI lacks that command, the same server from ``serve_sink.py``). The load is Postfix's
``smtp-source``: N messages of 1 KB, then of 100 KB, over 20 parallel sessions that each keep their
connection (``-d``). A run is timed with the wall clock around the smtp-source process, and the
server's CPU time (its worker processes' too) is read from ``/proc`` just before and after it.

How the numbers are kept honest on a small, noisy machine: each server gets one untimed warm-up
run per size; repeats are interleaved across servers, and the order rotates every repeat, so drift
in the machine's load hits every server alike; the table shows medians. smtp-source gives up at the
first reply that is not the expected success, so a run counts only if it exits 0 with nothing on
stderr: then every one of the N messages was answered 250. The CPU columns are the steadier
figures: on two cores, smtp-source alone takes most of one. There are no timed assertions.

The ``mailwire`` row is pure Python on asyncio's loop. ``--uvloop`` and ``--compiled`` add the
optional fast paths as rows of the same run (``mailwire+uvloop``, ``compiled``, ``compiled+uvloop``;
the compiled build is ``.venv-compiled``'s, made by ``dev/compiled.sh``), each with its target rows.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Final

from sink import SMTP_SINK, free_port, wait_for_greeting

HOST: Final = "127.0.0.1"
MAIL_FROM: Final = "a@example.com"
RCPT_TO: Final = "b@example.com"
SIZES: Final = (1024, 100 * 1024)
SESSIONS: Final = 20
SMTP_SOURCE: Final = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
LAUNCHER: Final = Path(__file__).resolve().parent / "serve_sink.py"
PYTHON311_CANDIDATES: Final = (
    "/root/.pyenv/versions/3.11.7/bin/python3.11",
    shutil.which("python3.11") or "python3.11",
)
BASELINE: Final = "mailwire"  # the ratios are mailwire / each other server
START_TIMEOUT: Final = 30.0  # seconds for a server to greet (Python start-up on a loaded machine)
RUN_TIMEOUT: Final = 300.0  # seconds for one smtp-source run before it counts as an error
CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")


# -- the servers ------------------------------------------------------------------------------

Command = Callable[[int], list[str]]  # the command line that serves on a given port


@dataclass(frozen=True)
class ServerSpec:
    name: str
    command: Command | None  # None: not available here, see ``how``
    how: str  # how it is run, or why it is not available


def smtp_sink_spec() -> ServerSpec:
    user = ["-u", "nobody"] if os.geteuid() == 0 else []  # as root it must drop privileges
    backlog = "1000"  # smtp-sink's listen backlog; no -c: its counter would flood stdout
    return ServerSpec("smtp-sink", lambda port: [SMTP_SINK, *user, f"{HOST}:{port}", backlog],
                      SMTP_SINK)  # fmt: skip


def aiosmtpd_spec() -> ServerSpec:
    version = importlib.metadata.version("aiosmtpd")
    return ServerSpec(
        "aiosmtpd",
        lambda port: [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"{HOST}:{port}",
                      "-c", "aiosmtpd.handlers.Sink"],  # fmt: skip
        f"aiosmtpd {version}: python -m aiosmtpd -c aiosmtpd.handlers.Sink",
    )


def python311() -> tuple[str | None, str]:
    """An interpreter that can import smtpd and asyncore, and what was tried."""
    candidates = ([sys.executable] if sys.version_info < (3, 12) else []) + list(
        PYTHON311_CANDIDATES
    )
    for python in dict.fromkeys(candidates):
        check = [python, "-W", "ignore::DeprecationWarning", "-c", "import smtpd, asyncore"]
        try:
            if subprocess.run(check, capture_output=True, timeout=30).returncode == 0:
                return python, python
        except (OSError, subprocess.TimeoutExpired):
            continue
    return None, "n/a: no interpreter here can import smtpd (tried " + ", ".join(candidates) + ")"


def smtpd_spec() -> ServerSpec:
    python, how = python311()
    if python is None:
        return ServerSpec("smtpd", None, how)
    return ServerSpec(
        "smtpd",
        lambda port: [python, "-W", "ignore::DeprecationWarning", str(LAUNCHER), "smtpd",
                      "--host", HOST, "--port", str(port)],  # fmt: skip
        f"smtpd + asyncore on {python} (serve_sink.py smtpd)",
    )


def bare_spec() -> ServerSpec:
    """The reference ceiling: what any asyncio server could reach here."""
    return ServerSpec(
        "ref: bare",
        lambda port: [sys.executable, str(LAUNCHER), "bare", "--host", HOST, "--port", str(port)],
        "serve_sink.py bare: asyncio Protocol, bytes.find and canned replies (a ceiling, not a server)",
    )


def compare_spec(cli: str) -> ServerSpec:
    """Another mailwire's ``serve --sink`` (another checkout's virtualenv, say the commit before a
    change), in the same run, so that before and after are a ratio taken under the same load."""
    try:
        usage = subprocess.run([cli, "serve", "--help"], capture_output=True, text=True, timeout=30).stdout
    except OSError:
        usage = ""
    loop = ["--loop", "asyncio"] if "--loop" in usage else []  # as the mailwire row
    args = ["serve", "--sink", "-q", *loop, "--hostname", "localhost", "--host", HOST]
    return ServerSpec("mailwire@compare", lambda port: [cli, *args, "--port", str(port)],
                      f"{cli} {' '.join(args[:-2])}")  # fmt: skip


def stream_spec() -> ServerSpec:
    """mailwire with a session that streams each message and drops it (``--stream``)."""
    return ServerSpec(
        "mailwire stream",
        lambda port: [sys.executable, str(LAUNCHER), "mailwire-stream", "--host", HOST, "--port", str(port)],
        "serve_sink.py mailwire-stream: a StreamingSession reading each message to its end",
    )


def workers_spec(workers: int) -> ServerSpec:
    """``mailwire serve --sink --workers N``: N processes on one port (the CPU column sums them)."""
    cli = Path(sys.executable).with_name("mailwire")
    args = ["serve", "--sink", "-q", "--workers", str(workers), "--loop", "asyncio", "--hostname", "localhost",
            "--host", HOST]
    return ServerSpec(f"mailwire x{workers}", lambda port: [str(cli), *args, "--port", str(port)],
                      f"{cli} {' '.join(args[:-2])}")  # fmt: skip


def mailwire_spec(cli_allowed: bool = True) -> ServerSpec:
    """``mailwire serve --sink`` if the CLI has it, else the same server from serve_sink.py."""
    script = Path(sys.executable).with_name("mailwire")
    cli = str(script) if script.exists() else shutil.which("mailwire")
    if cli is not None and cli_allowed:
        try:
            usage = subprocess.run([cli, "serve", "--help"], capture_output=True, text=True,
                                   timeout=30).stdout  # fmt: skip
        except (OSError, subprocess.TimeoutExpired):
            usage = ""
        if "--sink" in usage:
            # -q: no line per message on stdout, which smtp-sink, aiosmtpd and smtpd don't print
            quiet = ["-q"] if "--quiet" in usage else []
            # asyncio's loop, as before --loop (whose auto takes uvloop): --uvloop adds that row
            loop = ["--loop", "asyncio"] if "--loop" in usage else []
            args = ["serve", "--sink", *quiet, *loop, "--hostname", "localhost", "--host", HOST]
            return ServerSpec("mailwire", lambda port: [cli, *args, "--port", str(port)],
                              f"{cli} {' '.join(args[:-2])}")  # fmt: skip
    return ServerSpec(
        "mailwire",
        lambda port: [sys.executable, str(LAUNCHER), "mailwire", "--host", HOST,
                      "--port", str(port)],  # fmt: skip
        "serve_sink.py mailwire" + ("" if cli_allowed else " (--launcher)")
        + ("" if cli is None or not cli_allowed else " (the CLI has no `serve --sink` yet)"),
    )


COMPILED_CLI: Final = Path(__file__).resolve().parent.parent / ".venv-compiled" / "bin" / "mailwire"


def fast_specs(compiled: str | None, uvloop: bool) -> list[ServerSpec]:
    """The fast paths beside the pure-Python ``mailwire`` row: ``mailwire+uvloop`` (``--uvloop``),
    ``compiled`` (``--compiled``: another install's ``mailwire``, which must say it runs the
    compiled core) and, with both, ``compiled+uvloop``."""
    here = Path(sys.executable).with_name("mailwire")
    rows = [("mailwire+uvloop", str(here), "uvloop")] if uvloop else []
    if compiled is not None:
        rows += [("compiled", compiled, "asyncio")] + ([("compiled+uvloop", compiled, "uvloop")] if uvloop else [])
    specs = []
    for name, cli, loop in rows:
        try:
            version = subprocess.run([cli, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
        except OSError as exc:
            version = f"cannot run {cli}: {exc}"
        if ("compiled core" in version) != name.startswith("compiled"):
            specs.append(ServerSpec(name, None, f"n/a: {cli} --version says {version!r}"))
            continue
        args = ["serve", "--sink", "-q", "--loop", loop, "--hostname", "localhost", "--host", HOST]
        specs.append(ServerSpec(name, _serving(cli, args), f"{cli} {' '.join(args[:-2])}"))
    return specs


def _serving(cli: str, args: list[str]) -> Command:
    return lambda port: [cli, *args, "--port", str(port)]


class ServerProcess:
    """One server child process on a free loopback port, its CPU clock, and its stderr."""

    def __init__(self, spec: ServerSpec) -> None:
        self.spec = spec
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Path | None = None

    def start(self, attempts: int = 5) -> None:
        """Start on a free port and wait for the 220 greeting (retrying if the port was taken)."""
        assert self.spec.command is not None
        why = "no attempt made"
        for _ in range(attempts):
            port = free_port(HOST)
            fd, name = tempfile.mkstemp(prefix=f"server-bench-{self.spec.name}-", suffix=".log")
            self._log = Path(name)
            with os.fdopen(fd, "wb") as log:
                self._proc = subprocess.Popen(self.spec.command(port), stdin=subprocess.DEVNULL,
                                              stdout=subprocess.DEVNULL, stderr=log)  # fmt: skip
            try:
                wait_for_greeting(HOST, port, timeout=START_TIMEOUT, process=self._proc)
            except TimeoutError as exc:
                why = f"{exc}; {self.log_tail()}"
                self.stop()
                continue
            self.port = port
            return
        raise RuntimeError(f"could not start {self.spec.name}: {why}")

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def cpu_seconds(self) -> float:
        """User + system CPU time the server has used so far, its worker processes included (from
        /proc/PID/stat: its own, its reaped children's, and each live child's)."""
        assert self._proc is not None
        ticks = 0
        for entry in Path("/proc").iterdir():
            try:
                stat = (entry / "stat").read_text() if entry.name.isdigit() else ""
            except OSError:
                continue  # ended meanwhile
            fields = stat[stat.rindex(")") + 2 :].split() if stat else ["", "0"]  # field 3 onwards
            if entry.name == str(self._proc.pid):  # fields 14-17: utime, stime, cutime, cstime
                ticks += sum(int(f) for f in fields[11:15])
            elif int(fields[1]) == self._proc.pid:  # field 4: the parent
                ticks += int(fields[11]) + int(fields[12])
        return ticks / CLOCK_TICKS

    def log_tail(self, limit: int = 300) -> str:
        text = self._log.read_text(errors="replace") if self._log and self._log.exists() else ""
        text = " ".join(text.split())
        return "stderr: " + (text[-limit:] if text else "(empty)")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        if self._log is not None:
            self._log.unlink(missing_ok=True)
            self._log = None


# -- running ----------------------------------------------------------------------------------


@dataclass
class Cell:
    """Results of one (server, size) over the repeats."""

    rates: list[float] = field(default_factory=list)  # messages per second
    cpu: list[float] = field(default_factory=list)  # server CPU seconds per 1000 messages
    source_cpu: list[float] = field(default_factory=list)  # smtp-source's, likewise
    error: str | None = None

    def median(self, values: list[float]) -> float | None:
        return statistics.median(values) if values and not self.error else None


def smtp_source(port: int, size: int, messages: int) -> list[str]:
    return [SMTP_SOURCE, "-d", "-s", str(SESSIONS), "-m", str(messages), "-l", str(size),
            "-M", "localhost", "-f", MAIL_FROM, "-t", RCPT_TO, f"{HOST}:{port}"]  # fmt: skip


def children_cpu() -> float:
    """CPU time of the children reaped so far: the smtp-source runs (servers are reaped last)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once(server: ServerProcess, size: int, messages: int, cell: Cell | None) -> None:
    """One smtp-source run against ``server``; record it in ``cell`` (None: a warm-up)."""
    elapsed = server_cpu = 0.0
    if not server.alive():
        error = f"{server.spec.name} is not running; {server.log_tail()}"
    else:
        source_before, server_before = children_cpu(), server.cpu_seconds()
        started = time.perf_counter()
        try:
            done = subprocess.run(smtp_source(server.port, size, messages), capture_output=True,
                                  timeout=RUN_TIMEOUT)  # fmt: skip
        except subprocess.TimeoutExpired:
            error = f"smtp-source still running after {RUN_TIMEOUT:g} s"
        else:
            elapsed = time.perf_counter() - started
            server_cpu = server.cpu_seconds() - server_before  # dead: a zombie till polled
            output = (done.stderr + done.stdout).decode(errors="replace").strip()
            bad = done.returncode or output
            error = f"smtp-source exited {done.returncode}: {output}" if bad else ""
        if not server.alive():
            error = f"{server.spec.name} died ({error or 'during the run'}); {server.log_tail()}"
    if error:
        if cell is not None:
            cell.error = "error: " + error
        else:
            raise RuntimeError(f"warm-up of {server.spec.name} failed: {error}")
        return
    if cell is not None:
        cell.rates.append(messages / elapsed)
        cell.cpu.append(server_cpu / messages * 1000)
        cell.source_cpu.append((children_cpu() - source_before) / messages * 1000)


Results = dict[tuple[str, int], Cell]


def run_all(servers: Sequence[ServerProcess], counts: dict[int, int], repeat: int) -> Results:
    results: Results = {}
    for size in SIZES:
        cells = {s.spec.name: results.setdefault((s.spec.name, size), Cell()) for s in servers}
        for server in servers:
            try:
                run_once(server, size, 2 * SESSIONS, None)
            except RuntimeError as exc:
                cells[server.spec.name].error = f"error: {exc}"
        for turn in range(repeat):  # interleaved, order rotated, so drift hits every server alike
            shift = turn % len(servers)
            for server in [*servers[shift:], *servers[:shift]]:
                if cells[server.spec.name].error is None:
                    run_once(server, size, counts[size], cells[server.spec.name])
        print(f"  done: {size // 1024} KB", flush=True)
    return results


# -- reporting --------------------------------------------------------------------------------

_WIDTHS: Final = (9, 15, 15, 15, 17)
COLUMNS: Final = ("msg/s", "mailwire/this", "CPU s/1k msgs", "mailwire/this", "source CPU s/1k")


def _line(label: str, name: str, cells: Sequence[str], free: bool = False) -> str:
    tail = "".join(cells) if free else "".join(c.rjust(w) for c, w in zip(cells, _WIDTHS))
    return f"{label:>6}  {name:<16}{tail}"


def _ratio(value: float | None, base: float | None) -> str:
    return "-" if value is None or base is None or not value else f"{base / value:.2f}x"


def _number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def format_table(results: Results, specs: Sequence[ServerSpec], failed: dict[str, str]) -> str:
    header = _line("size", "server", COLUMNS)
    lines = [header, "-" * len(header)]
    for size in SIZES:
        label = f"{size // 1024} KB"
        base = results.get((BASELINE, size))
        base_rate = base.median(base.rates) if base else None
        base_cpu = base.median(base.cpu) if base else None
        for spec in specs:
            cell = results.get((spec.name, size))
            if cell is None:  # never started: not available here, or it would not start
                why = failed.get(spec.name, spec.how)
                lines.append(_line(label, spec.name, ["  " + _shorten(why, 90)], free=True))
            elif cell.error:
                lines.append(_line(label, spec.name, ["  " + _shorten(cell.error, 90)], free=True))
            else:
                rate, cpu = cell.median(cell.rates), cell.median(cell.cpu)
                lines.append(_line(label, spec.name, [
                    _number(rate, ",.0f"), _ratio(rate, base_rate),
                    _number(cpu, ".3f"), _ratio(cpu, base_cpu),
                    _number(cell.median(cell.source_cpu), ".3f"),
                ]))  # fmt: skip
        lines.append("")
    lines.append("msg/s: higher is better; its mailwire/this above 1 means mailwire is faster.")
    lines.append("CPU s/1k msgs: server CPU seconds per 1000 messages; its mailwire/this below 1")
    lines.append("means mailwire is cheaper. source CPU: smtp-source's own, per 1000 messages.")
    return "\n".join(lines)


@dataclass(frozen=True)
class Target:
    """A floor of issue 12 as a ratio within one run: ``measure`` of mailwire over ``other``'s,
    at ``size``; met when the ratio is at most (``most``) or at least ``bound``."""

    label: str
    other: str
    size: int
    measure: str  # "cpu" or "rates"
    bound: float
    most: bool


TARGETS: Final = (
    Target("CPU per message, 1 KB", "smtp-sink", SIZES[0], "cpu", 2.0, most=True),
    Target("CPU per message, 100 KB", "smtp-sink", SIZES[1], "cpu", 1.2, most=True),
    Target("messages per second, 1 KB", "aiosmtpd", SIZES[0], "rates", 6.0, most=False),
)


def format_targets(results: Results, names: Sequence[str] = (BASELINE,)) -> str:
    """The targets as rows: each of ``names``' median over the other server's, the bound, and
    whether this run meets it (``-`` where either side has no figure)."""
    lines = [f"{'target (mailwire / other, medians of this run)':<56}{'ratio':>8}{'target':>10}  met"]
    lines.append("-" * len(lines[0]))
    for target, name in [(target, name) for name in names for target in TARGETS]:
        ours, theirs = results.get((name, target.size)), results.get((target.other, target.size))
        mine = ours.median(getattr(ours, target.measure)) if ours else None
        other = theirs.median(getattr(theirs, target.measure)) if theirs else None
        ratio = mine / other if mine is not None and other else None
        within = ratio is not None and (ratio <= target.bound if target.most else ratio >= target.bound)
        met = "-" if ratio is None else "yes" if within else "no"
        bound = f"{'<=' if target.most else '>='} {target.bound:.1f}x"
        label = f"{target.label}: {name} / {target.other}"
        shown = "-" if ratio is None else f"{ratio:.2f}x"
        lines.append(f"{label:<56}{shown:>8}{bound:>10}  {met}")
    return "\n".join(lines)


# -- command line -----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, help="messages per timed run, both sizes "
                        "(default: 16000 of 1 KB and 2500 of 100 KB; --quick: 6000 and 1000)")
    parser.add_argument("--repeat", type=int, help="runs per server and size; the median is shown "
                        "(default 5; --quick: 3)")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="a smaller run, about 30 s")
    parser.add_argument("--launcher", action="store_true", help="run mailwire from serve_sink.py "
                        "even when the CLI has `serve --sink`")  # fmt: skip
    parser.add_argument("--compare", metavar="MAILWIRE", help="also run this `mailwire` executable's "
                        "`serve --sink` (e.g. another checkout's .venv/bin/mailwire), as mailwire@compare")
    parser.add_argument("--stream", action="store_true", help="also run mailwire with a streaming "
                        "session (serve_sink.py mailwire-stream), as `mailwire stream`")
    parser.add_argument("--workers", type=int, metavar="N", help="also run `mailwire serve --sink "
                        "--workers N`, as `mailwire xN` (its ratios are against one process)")
    parser.add_argument("--uvloop", action="store_true", help="also run mailwire (and --compiled) "
                        "on uvloop (`serve --loop uvloop`), as mailwire+uvloop; the mailwire row is on asyncio's")
    parser.add_argument("--compiled", nargs="?", const=str(COMPILED_CLI), metavar="MAILWIRE",
                        help="also run the compiled core, this `mailwire` executable's (default: "
                        ".venv-compiled's, made by dev/compiled.sh), as compiled; the targets are shown for it too")
    parser.add_argument("--memory", action="store_true", help="then the large-message memory run of "
                        "memory_bench.py (20 x 50 MB at once, one 500 MB message) against `serve --maildir`, "
                        "the --compare executable first when given")
    parser.add_argument("--pin", action="store_true", help="run the servers on CPU 1 and smtp-source "
                        "on CPU 0 (sched_setaffinity), so the load generator takes no server core")
    return parser.parse_args(argv)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the ExitStack, which stops the servers


@contextlib.contextmanager
def started(specs: Sequence[ServerSpec], failed: dict[str, str]) -> Iterator[list[ServerProcess]]:
    """Start every available server (noting in ``failed`` any that will not start); stop every
    one of them on the way out, however it goes."""
    with contextlib.ExitStack() as stack:
        servers = []
        for spec in specs:
            if spec.command is None:
                continue
            server = ServerProcess(spec)
            stack.callback(server.stop)
            try:
                server.start()
            except RuntimeError as exc:
                failed[spec.name] = f"error: {exc}"
                print(f"  {failed[spec.name]}", flush=True)
                continue
            servers.append(server)
        yield servers


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    repeat = args.repeat or (3 if args.quick else 5)
    small, large = (6000, 1000) if args.quick else (16000, 2500)
    counts = {SIZES[0]: args.messages or small, SIZES[1]: args.messages or large}
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    specs = [smtp_sink_spec(), aiosmtpd_spec(), smtpd_spec(), bare_spec(), mailwire_spec(not args.launcher)]
    if args.stream:
        specs.append(stream_spec())
    if args.compare:
        specs.append(compare_spec(args.compare))
    if args.workers:
        specs.append(workers_spec(args.workers))
    fast = fast_specs(args.compiled, args.uvloop)
    specs += fast
    if args.pin:  # servers (and the workers they fork) inherit CPU 1; smtp-source, started later, CPU 0
        os.sched_setaffinity(0, {1})
    print(f"Python {platform.python_version()}; smtp-source -d -s {SESSIONS}; "
          f"{counts[SIZES[0]]} msgs/run of 1 KB, {counts[SIZES[1]]} of 100 KB; "
          f"median of {repeat}", flush=True)  # fmt: skip
    for spec in specs:
        print(f"  {spec.name}: {spec.how}", flush=True)
    began = time.perf_counter()
    failed: dict[str, str] = {}
    try:
        with started(specs, failed) as servers:
            if args.pin:
                os.sched_setaffinity(0, {0})
            results = run_all(servers, counts, repeat)
    except KeyboardInterrupt:
        print("interrupted; every server is stopped", file=sys.stderr)
        raise SystemExit(128 + signal.SIGINT) from None
    print()
    print(format_table(results, specs, failed))
    print()
    print(format_targets(results, [BASELINE, *(spec.name for spec in fast)]))
    if args.memory:
        print()
        memory_run(args.compare)
    print(f"total time {time.perf_counter() - began:.0f} s")


def memory_run(compare: str | None) -> None:
    """Peak RSS of ``serve --maildir`` under large messages (memory_bench.py),
    every 250'd message checked by SHA-256."""
    import memory_bench  # bench/ is on sys.path when this file runs as a script

    executables = [*([compare] if compare else []), str(Path(sys.executable).with_name("mailwire"))]
    if memory_bench.main(executables) != 0:
        print("memory run: a message was lost or changed (above)", flush=True)


if __name__ == "__main__":
    main()

"""Client throughput side by side: stdlib smtplib, aiosmtplib and mailwire against one smtp-sink.

Every client sends the same prepared messages over one connection to the same smtp-sink, once
on direct loopback and once through a proxy that delays each direction by 1 ms. On loopback the
figure is mostly CPU per message; through the delay it is mostly round trips per message, which
the proxy counts (see delay_proxy.py), so the two columns together explain a ratio.

How the numbers are kept honest on a small, noisy machine: each run opens a fresh connection
and sends one untimed warm-up message (so EHLO and lazy set-up are outside the window), then
times only the message loop; repeats are interleaved across clients, so drift in the machine's
load hits every client alike, and the table shows the median of the repeats. The sink must have
read at least the bytes of every message sent (its kernel I/O counter, see sink.py), and every
client checks its replies, or the run is reported as an error. The proxy runs in a child process
so it does not share the GIL with the client being measured. A reference row, a bare socket with
canned bytes that pipelines each message's content with the next envelope (raw_client.py), shows
the ceiling on this machine in the same run. mailwire is imported lazily: while its client is being
written, its rows say so instead of failing. ``--all`` then runs async_bench.py on the same sink.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import platform
import smtplib
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import aiosmtplib
from delay_proxy import DEFAULT_DELAY, ProxyProcess, ProxyStats
from raw_client import DOT, ENVELOPE, raw_pipelined_loop
from sink import SmtpSink

HOST: Final = "127.0.0.1"
MAIL_FROM: Final = "a@example.com"
RCPT_TO: Final = ["b@example.com"]
SIZES: Final = (1024, 100 * 1024)
BODY_LINE: Final = 70  # characters before CRLF; lines stay under 78 even when padded by two
TIMEOUT: Final = 30.0
MINIMAL_TRANSACTION: Final = len(ENVELOPE) + len(DOT)  # bytes besides the content, at least


# -- messages ---------------------------------------------------------------------------------


def make_message(size: int, index: int) -> bytes:
    """A message of exactly ``size`` bytes: From/To/Subject, CRLF endings, lines under 78 chars."""
    head = (
        f"From: <{MAIL_FROM}>\r\nTo: <{RCPT_TO[0]}>\r\n"
        f"Subject: mailwire benchmark message {index} of {size} bytes\r\n\r\n"
    ).encode("ascii")
    full, rest = divmod(size - len(head), BODY_LINE + 2)
    if full < 2:
        raise ValueError(f"size {size} is too small for a benchmark message")
    widths = [BODY_LINE] * full
    if rest >= 3:
        widths.append(rest - 2)
    else:  # too little for a line of its own: widen the first lines by one character each
        widths[:rest] = [BODY_LINE + 1] * rest
    body = b"".join(_body_line(index, n, width) for n, width in enumerate(widths))
    message = head + body
    assert len(message) == size
    return message


def _body_line(index: int, number: int, width: int) -> bytes:
    text = f"m{index:05d} l{number:05d} " + "the quick brown fox jumps over the lazy dog " * 2
    return text[:width].encode("ascii") + b"\r\n"


# -- measurement window -----------------------------------------------------------------------


@dataclass
class Window:
    """The timed part of one run, bracketed by proxy counter snapshots when there is a proxy.

    Snapshots are taken outside the timed interval: before the clock starts, after it stops.
    The sink's byte counters are read when the window opens, so what the sink reads from then on
    is the timed messages (and QUIT), whatever the warm-up was.
    """

    probe: Callable[[], ProxyStats] | None
    traffic: Callable[[], tuple[int, int] | None] | None = None
    started: float = 0.0
    stopped: float = 0.0
    before: ProxyStats | None = None
    after: ProxyStats | None = None
    sink_before: tuple[int, int] | None = None

    def open(self) -> None:
        self.sink_before = self.traffic() if self.traffic else None
        self.before = self.probe() if self.probe else None
        self.started = time.perf_counter()

    def close(self) -> None:
        self.stopped = time.perf_counter()
        self.after = self.probe() if self.probe else None

    def proxy_delta(self) -> ProxyStats | None:
        if self.before is None or self.after is None:
            return None
        return self.after - self.before


# -- the clients ------------------------------------------------------------------------------
# Each sends messages[0] untimed as a warm-up, then all of ``messages`` inside the window.

SendLoop = Callable[[int, Sequence[bytes], Window], None]


def smtplib_loop(port: int, messages: Sequence[bytes], window: Window) -> None:
    with smtplib.SMTP(HOST, port, local_hostname="localhost", timeout=TIMEOUT) as client:
        client.sendmail(MAIL_FROM, RCPT_TO, messages[0])
        window.open()
        for message in messages:
            client.sendmail(MAIL_FROM, RCPT_TO, message)
        window.close()


def aiosmtplib_loop(port: int, messages: Sequence[bytes], window: Window) -> None:
    asyncio.run(_aiosmtplib_loop(port, messages, window))


async def _aiosmtplib_loop(port: int, messages: Sequence[bytes], window: Window) -> None:
    client = aiosmtplib.SMTP(
        hostname=HOST, port=port, local_hostname="localhost", timeout=TIMEOUT, start_tls=False
    )
    async with client:
        await client.sendmail(MAIL_FROM, RCPT_TO, messages[0])
        window.open()
        for message in messages:
            await client.sendmail(MAIL_FROM, RCPT_TO, message)
        window.close()


def _mailwire_client(port: int) -> Any:
    mailwire = importlib.import_module("mailwire")  # lazily: it is being written alongside
    return mailwire.SMTPClient(HOST, port, tls="none", timeout=TIMEOUT)


def mailwire_send_loop(port: int, messages: Sequence[bytes], window: Window) -> None:
    with _mailwire_client(port) as client:
        client.send(messages[0], mail_from=MAIL_FROM, rcpt_to=RCPT_TO)
        window.open()
        for message in messages:
            client.send(message, mail_from=MAIL_FROM, rcpt_to=RCPT_TO)
        window.close()


def mailwire_send_many_loop(port: int, messages: Sequence[bytes], window: Window) -> None:
    batch = [(message, MAIL_FROM, RCPT_TO) for message in messages]
    with _mailwire_client(port) as client:
        client.send(messages[0], mail_from=MAIL_FROM, rcpt_to=RCPT_TO)
        window.open()
        outcomes = client.send_many(batch)
        window.close()
    check_outcomes(outcomes)


def check_outcomes(outcomes: Sequence[object]) -> None:
    """send_many reports refusals as outcomes instead of raising: raise the first one."""
    for outcome in outcomes:
        if isinstance(outcome, Exception):
            raise outcome


def mailwire_unavailable() -> str | None:
    """None if mailwire's client imports, else why not."""
    try:
        importlib.import_module("mailwire").SMTPClient
    except Exception as exc:  # ImportError, or any error while the package is half-written
        return f"{type(exc).__name__}: {exc}"
    return None


CLIENTS: Final[dict[str, SendLoop]] = {
    "smtplib": smtplib_loop,
    "aiosmtplib": aiosmtplib_loop,
    "mailwire send": mailwire_send_loop,
    "mailwire send_many": mailwire_send_many_loop,
    "ref: raw pipelined": raw_pipelined_loop,  # the ceiling, not a competitor: see raw_client.py
}
BASELINE: Final = "smtplib"


# -- running ----------------------------------------------------------------------------------


@dataclass
class Cell:
    """Results of one (client, size, path) over the repeats."""

    rates: list[float] = field(default_factory=list)  # messages per second
    turns: list[float] = field(default_factory=list)  # round trips per message (proxy only)
    delays: list[float] = field(default_factory=list)  # achieved one-way proxy delay, seconds
    connections: list[int] = field(default_factory=list)  # opened per run, warm-up included (proxy)
    error: str | None = None

    def rate(self) -> float | None:
        return statistics.median(self.rates) if self.rates and not self.error else None

    def round_trips(self) -> float | None:
        return statistics.median(self.turns) if self.turns and not self.error else None


@dataclass(frozen=True)
class Route:
    name: str
    port: int
    probe: Callable[[], ProxyStats] | None


def run_once(
    loop: SendLoop, route: Route, sink: SmtpSink, messages: Sequence[bytes], cell: Cell
) -> None:
    """One warm-up, one timed loop; record the result or the error in ``cell``."""
    window = Window(route.probe, sink.traffic)
    opened = route.probe() if route.probe else None
    try:
        loop(route.port, messages, window)
    except Exception as exc:
        cell.error = f"error: {type(exc).__name__}: {exc}"
        return
    if (error := check_received(sink, window.sink_before, messages)) is not None:
        cell.error = error
        return
    cell.rates.append(len(messages) / (window.stopped - window.started))
    delta = window.proxy_delta()
    if delta is not None:
        cell.turns.append(delta.turns / len(messages))
        cell.delays.append(delta.mean_delay)
    if opened is not None and route.probe is not None:
        cell.connections.append(route.probe().connections - opened.connections)


def check_received(
    sink: SmtpSink, before: tuple[int, int] | None, messages: Sequence[bytes]
) -> str | None:
    """An error if the sink read fewer bytes since the window opened than the messages need.

    Each message takes at least its content plus the shortest MAIL, RCPT, DATA and dot
    (``MINIMAL_TRANSACTION`` bytes), so a missing 1 KB message shows even after the few bytes of
    QUIT. Every client waits for the reply to its last message before it returns, so by then the
    sink has read all of it. Where the kernel keeps no I/O accounting the check is skipped.
    """
    after = sink.traffic()
    if before is None or after is None:
        return None
    read = after[0] - before[0]
    expected = sum(len(message) + MINIMAL_TRANSACTION for message in messages)
    if read < expected:
        return f"error: the sink read {read} bytes, {len(messages)} messages need {expected}"
    return None


Results = dict[tuple[str, int, str], Cell]


def run_all(
    routes: Sequence[Route],
    sink: SmtpSink,
    counts: dict[str, int],
    repeat: int,
    clients: Sequence[str],
) -> Results:
    results: Results = {}
    for size in SIZES:
        for route in routes:
            messages = [make_message(size, i) for i in range(counts[route.name])]
            cells = {name: results.setdefault((name, size, route.name), Cell()) for name in clients}
            for _ in range(repeat):  # interleaved, so drift in load hits every client alike
                for name in clients:
                    if cells[name].error is None:
                        run_once(CLIENTS[name], route, sink, messages, cells[name])
            print(f"  done: {size // 1024} KB, {route.name}", flush=True)
    return results


# -- reporting --------------------------------------------------------------------------------


def _fmt_rate(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:,.0f}"


def _fmt_ratio(rate: float | None, base: float | None) -> str:
    return "-" if rate is None or not base else f"{rate / base:.2f}x"


def _fmt_trips(trips: float | None) -> str:
    return "-" if trips is None else f"{trips:.2f}"


def format_table(results: Results, unavailable: dict[str, str], delay: float) -> str:
    """One row per size and client: both paths side by side, then the round trips."""
    delayed_rate = f"+{delay * 1000:g}ms msg/s"
    columns = ["loopback msg/s", "vs smtplib", delayed_rate, "vs smtplib", "round trips/msg"]
    header = _line("size", "client", columns)
    lines = [header, "-" * len(header)]
    for size in SIZES:
        label = f"{size // 1024} KB"
        base = [results[(BASELINE, size, route)].rate() for route in ("loopback", "delayed")]
        for name in CLIENTS:
            if name in unavailable:
                lines.append(_line(label, name, ["  mailwire: not available"], free=True))
                continue
            direct, delayed = results[(name, size, "loopback")], results[(name, size, "delayed")]
            if error := direct.error or delayed.error:
                lines.append(_line(label, name, ["  " + _shorten(error, 90)], free=True))
                continue
            lines.append(_line(label, name, [
                _fmt_rate(direct.rate()), _fmt_ratio(direct.rate(), base[0]),
                _fmt_rate(delayed.rate()), _fmt_ratio(delayed.rate(), base[1]),
                _fmt_trips(delayed.round_trips()),
            ]))  # fmt: skip
        lines.append("")
    return "\n".join(lines)


_COLUMN_WIDTHS: Final = (15, 11, 13, 11, 17)


def _line(label: str, name: str, cells: Sequence[str], free: bool = False) -> str:
    """Size and client name, then right-aligned columns (or, if ``free``, text as it comes)."""
    tail = "".join(cells) if free else "".join(c.rjust(w) for c, w in zip(cells, _COLUMN_WIDTHS))
    return f"{label:>6}  {name:<20}{tail}"


def _shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def mean_proxy_delay(results: Results) -> float | None:
    delays = [d for cell in results.values() for d in cell.delays]
    return statistics.mean(delays) if delays else None


# -- command line -----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, help="messages per timed run on both paths "
                        "(default: 1000 on loopback, 500 through the delay; --quick: 300 and 100)")
    parser.add_argument("--repeat", type=int, help="runs per client and case; the median is shown "
                        "(default 5; --quick: 3)")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="a smaller run, about 30 s")
    parser.add_argument("--all", action="store_true", help="then run async_bench.py's cases "
                        "on the same sink and proxy (with its own defaults)")  # fmt: skip
    parser.add_argument("--delay", type=float, default=DEFAULT_DELAY, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    repeat = args.repeat or (3 if args.quick else 5)
    direct_n, delayed_n = (300, 100) if args.quick else (1000, 500)
    counts = {"loopback": args.messages or direct_n, "delayed": args.messages or delayed_n}
    unavailable = {}
    if (why := mailwire_unavailable()) is not None:
        unavailable = {name: why for name in CLIENTS if name.startswith("mailwire")}
    clients = [name for name in CLIENTS if name not in unavailable]
    print(f"Python {platform.python_version()}, aiosmtplib {aiosmtplib.__version__}; "
          f"{counts['loopback']} msgs/run on loopback, {counts['delayed']} through "
          f"{args.delay * 1000:g} ms each way; median of {repeat}", flush=True)  # fmt: skip
    if unavailable:
        print(f"mailwire: not available ({next(iter(unavailable.values()))})", flush=True)
    started = time.perf_counter()
    with SmtpSink(HOST) as sink, ProxyProcess(HOST, sink.port, args.delay) as proxy:
        routes = [Route("loopback", sink.port, None), Route("delayed", proxy.port, proxy.stats)]
        results = run_all(routes, sink, counts, repeat, clients)
        print()
        print(format_table(results, unavailable, args.delay))
        delay = mean_proxy_delay(results)
        if delay is not None:
            print(f"proxy one-way delay achieved: {delay * 1000:.2f} ms on average "
                  f"(asked {args.delay * 1000:g} ms)")  # fmt: skip
        print(f"total time {time.perf_counter() - started:.0f} s", flush=True)
        if args.all:
            import async_bench  # here, not above: it imports this module

            shared = ["--delay", repr(args.delay)] + (["--quick"] if args.quick else [])
            shared += ["--repeat", str(args.repeat)] if args.repeat else []
            print()
            async_bench.run(async_bench.parse_args(shared), sink, proxy)


if __name__ == "__main__":
    main()

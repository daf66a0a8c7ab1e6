"""Asyncio client throughput: aiosmtplib, AsyncSMTPClient and SMTPPool against one smtp-sink.

Two layouts, each for 1 KB and 100 KB messages, on direct loopback and through the proxy that
delays each direction by 1 ms:

- one connection: aiosmtplib's ``sendmail`` in a loop, ``AsyncSMTPClient.send`` in a loop, and one
  ``AsyncSMTPClient.send_many`` call with every message; ratios are against aiosmtplib;
- ten connections: ten aiosmtplib clients each sending its share in a loop, all at once
  (``asyncio.gather``), and one ``SMTPPool(size=10)`` given every message at once (``gather`` of
  ``pool.send``); ratios are against the ten aiosmtplib clients.

Each layout ends with reference rows from raw_client.py: a bare blocking socket with canned bytes,
at 4 round trips per message (what smtplib and aiosmtplib pay) and pipelined at 1 (the least SMTP
allows without CHUNKING). They are not competitors but the ceiling: what Python can push into this
sink on this machine, in the same run, so "of ceiling" reads how close a client gets.

The method is client_bench.py's, and so are the message maker, the window, the checks and the
table's units: a fresh connection (or ten) per run, an untimed warm-up message on each, repeats
interleaved across the clients of a layout, medians, the sink's read counter checked against the
bytes sent, and round trips per message counted by the delay proxy. The pool's warm-up is
``size * batch`` small messages at once, which makes every worker open its connection before the
clock starts.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Final

import aiosmtplib
from client_bench import (
    HOST, MAIL_FROM, RCPT_TO, SIZES, TIMEOUT, Cell, Results, Route, SendLoop, Window,
    aiosmtplib_loop, check_outcomes, make_message, mean_proxy_delay, run_once,
)  # fmt: skip
from delay_proxy import DEFAULT_DELAY, ProxyProcess
from mailwire import AsyncSMTPClient, SMTPPool
from raw_client import raw_lockstep_loop, raw_pipelined_loop, raw_pipelined_threads
from sink import SmtpSink

CONNECTIONS: Final = 10


# -- one connection ---------------------------------------------------------------------------


def _mailwire_client(port: int) -> AsyncSMTPClient:
    return AsyncSMTPClient(HOST, port, tls="none", timeout=TIMEOUT)


def async_send_loop(port: int, messages: Sequence[bytes], window: Window) -> None:
    asyncio.run(_async_send_loop(port, messages, window))


async def _async_send_loop(port: int, messages: Sequence[bytes], window: Window) -> None:
    async with _mailwire_client(port) as client:
        await client.send(messages[0], MAIL_FROM, RCPT_TO)
        window.open()
        for message in messages:
            await client.send(message, MAIL_FROM, RCPT_TO)
        window.close()


def async_send_many_loop(port: int, messages: Sequence[bytes], window: Window) -> None:
    asyncio.run(_async_send_many_loop(port, messages, window))


async def _async_send_many_loop(port: int, messages: Sequence[bytes], window: Window) -> None:
    batch = [(message, MAIL_FROM, RCPT_TO) for message in messages]
    async with _mailwire_client(port) as client:
        await client.send(messages[0], MAIL_FROM, RCPT_TO)
        window.open()
        outcomes = await client.send_many(batch)
        window.close()
    check_outcomes(outcomes)


# -- ten connections --------------------------------------------------------------------------


def aiosmtplib_clients_loop(port: int, messages: Sequence[bytes], window: Window) -> None:
    asyncio.run(_aiosmtplib_clients_loop(port, messages, window))


async def _aiosmtplib_clients_loop(port: int, messages: Sequence[bytes], window: Window) -> None:
    """Ten clients, message i on client i % 10, each sending its share in order."""
    async with AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(aiosmtplib.SMTP(
                hostname=HOST, port=port, local_hostname="localhost", timeout=TIMEOUT,
                start_tls=False,
            ))
            for _ in range(CONNECTIONS)
        ]  # fmt: skip
        await asyncio.gather(*(c.sendmail(MAIL_FROM, RCPT_TO, messages[0]) for c in clients))
        window.open()
        await asyncio.gather(*(
            _send_each(client, messages[i::CONNECTIONS]) for i, client in enumerate(clients)
        ))  # fmt: skip
        window.close()


async def _send_each(client: aiosmtplib.SMTP, messages: Sequence[bytes]) -> None:
    for message in messages:
        await client.sendmail(MAIL_FROM, RCPT_TO, message)


def pool_loop(port: int, messages: Sequence[bytes], window: Window) -> None:
    asyncio.run(_pool_loop(port, messages, window))


async def _pool_loop(port: int, messages: Sequence[bytes], window: Window) -> None:
    warm_up = make_message(SIZES[0], 0)
    async with SMTPPool(HOST, port, tls="none", size=CONNECTIONS, timeout=TIMEOUT) as pool:
        # A burst this large keeps every worker busy: each opens its connection.
        await asyncio.gather(*(
            pool.send(warm_up, MAIL_FROM, RCPT_TO) for _ in range(pool.size * pool.batch)
        ))  # fmt: skip
        window.open()
        await asyncio.gather(*(pool.send(message, MAIL_FROM, RCPT_TO) for message in messages))
        window.close()


def raw_threads_loop(port: int, messages: Sequence[bytes], window: Window) -> None:
    raw_pipelined_threads(port, messages, window, CONNECTIONS)


# -- layouts ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    name: str
    clients: dict[str, SendLoop]
    baseline: str  # ratios are against this row
    ceiling: str  # "of ceiling" is against this row


ONE: Final = Layout(
    "one connection",
    {
        "aiosmtplib": aiosmtplib_loop,
        "AsyncSMTPClient.send": async_send_loop,
        "AsyncSMTPClient.send_many": async_send_many_loop,
        "ref: raw, 4 round trips": raw_lockstep_loop,
        "ref: raw pipelined": raw_pipelined_loop,
    },
    baseline="aiosmtplib",
    ceiling="ref: raw pipelined",
)
TEN: Final = Layout(
    "ten connections",
    {
        "10 x aiosmtplib": aiosmtplib_clients_loop,
        "SMTPPool(size=10)": pool_loop,
        "ref: 10 x raw pipelined": raw_threads_loop,
    },
    baseline="10 x aiosmtplib",
    ceiling="ref: 10 x raw pipelined",
)
LAYOUTS: Final = (ONE, TEN)

Counts = dict[tuple[str, str], int]  # (layout, route) -> messages per timed run


def run_all(routes: Sequence[Route], sink: SmtpSink, counts: Counts, repeat: int) -> Results:
    results: Results = {}
    for size in SIZES:
        for route in routes:
            for layout in LAYOUTS:
                messages = [make_message(size, i) for i in range(counts[(layout.name, route.name)])]
                keys = {name: (name, size, route.name) for name in layout.clients}
                cells = {name: results.setdefault(key, Cell()) for name, key in keys.items()}
                for _ in range(repeat):  # interleaved, so drift in load hits every client alike
                    for name, loop in layout.clients.items():
                        if cells[name].error is None:
                            run_once(loop, route, sink, messages, cells[name])
                print(f"  done: {size // 1024} KB, {route.name}, {layout.name}", flush=True)
    return results


# -- reporting --------------------------------------------------------------------------------


def _rate(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:,.0f}"


def _ratio(rate: float | None, base: float | None) -> str:
    return "-" if rate is None or not base else f"{rate / base:.2f}x"


def _share(rate: float | None, ceiling: float | None) -> str:
    return "-" if rate is None or not ceiling else f"{rate / ceiling:.0%}"


def _shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def format_table(layout: Layout, results: Results, counts: Counts, delay: float) -> str:
    """One row per size and client: loopback, then the delayed path and its round trips."""
    ratio = f"vs {layout.baseline}"
    headers = ["msg/s", ratio, "of ceiling", "msg/s", ratio, "of ceiling", "round trips/msg"]
    if layout is TEN:
        headers.append("conns")
    widths = [max(len(h) + 2, 9) for h in headers]
    name_width = max(map(len, layout.clients)) + 2
    loopback = f"loopback, {counts[(layout.name, 'loopback')]} msgs/run"
    delayed = f"+{delay * 1000:g} ms each way, {counts[(layout.name, 'delayed')]} msgs/run"
    lines = [
        f"{layout.name.upper():<{6 + 2 + name_width}}{loopback:^{sum(widths[:3])}}"
        f"{delayed:^{sum(widths[3:])}}",
        f"{'size':>6}  {'client':<{name_width}}"
        + "".join(header.rjust(width) for header, width in zip(headers, widths)),
    ]  # fmt: skip
    lines.append("-" * len(lines[1]))
    for size in SIZES:
        label = f"{size // 1024} KB"
        paths = ("loopback", "delayed")
        base = [results[(layout.baseline, size, path)].rate() for path in paths]
        top = [results[(layout.ceiling, size, path)].rate() for path in paths]
        for name in layout.clients:
            direct, far = (results[(name, size, path)] for path in paths)
            head = f"{label:>6}  {name:<{name_width}}"
            if error := direct.error or far.error:
                lines.append(head + "  " + _shorten(error, 90))
                continue
            trips = far.round_trips()
            cells = [
                _rate(direct.rate()), _ratio(direct.rate(), base[0]), _share(direct.rate(), top[0]),
                _rate(far.rate()), _ratio(far.rate(), base[1]), _share(far.rate(), top[1]),
                "-" if trips is None else f"{trips:.2f}",
            ]  # fmt: skip
            if layout is TEN:
                cells.append(f"{statistics.median(far.connections):g}" if far.connections else "-")
            lines.append(head + "".join(c.rjust(w) for c, w in zip(cells, widths)))
        lines.append("")
    return "\n".join(lines)


# -- command line -----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, help="messages per timed run, every case "
                        "(default: one connection 1000 on loopback and 500 through the delay, "
                        "ten connections 1000; --quick: 300, 100 and 300)")  # fmt: skip
    parser.add_argument("--repeat", type=int, help="runs per client and case; the median is shown "
                        "(default 5; --quick: 3)")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="a smaller run, about 40 s")
    parser.add_argument("--delay", type=float, default=DEFAULT_DELAY, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def message_counts(args: argparse.Namespace) -> Counts:
    one = (300, 100) if args.quick else (1000, 500)
    ten = 300 if args.quick else 1000
    defaults = {
        (ONE.name, "loopback"): one[0], (ONE.name, "delayed"): one[1],
        (TEN.name, "loopback"): ten, (TEN.name, "delayed"): ten,
    }  # fmt: skip
    return {key: args.messages or n for key, n in defaults.items()}


def run(args: argparse.Namespace, sink: SmtpSink, proxy: ProxyProcess) -> None:
    """Every case against a running sink and proxy, then the tables."""
    repeat = args.repeat or (3 if args.quick else 5)
    counts = message_counts(args)
    print(f"Python {platform.python_version()}, aiosmtplib {aiosmtplib.__version__}; asyncio "
          f"clients, {args.delay * 1000:g} ms each way through the proxy; median of {repeat}",
          flush=True)  # fmt: skip
    started = time.perf_counter()
    routes = [Route("loopback", sink.port, None), Route("delayed", proxy.port, proxy.stats)]
    results = run_all(routes, sink, counts, repeat)
    for layout in LAYOUTS:
        print()
        print(format_table(layout, results, counts, args.delay))
    delay = mean_proxy_delay(results)
    if delay is not None:
        print(f"proxy one-way delay achieved: {delay * 1000:.2f} ms on average "
              f"(asked {args.delay * 1000:g} ms)")  # fmt: skip
    print(f"total time {time.perf_counter() - started:.0f} s")


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    with SmtpSink(HOST) as sink, ProxyProcess(HOST, sink.port, args.delay) as proxy:
        run(args, sink, proxy)


if __name__ == "__main__":
    main()

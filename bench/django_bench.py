"""Django's send_mass_mail, through Django's own SMTP backend and through mailwire.django's.

The same 500 messages (Django ``EmailMessage``s, about 1 KB each once rendered) go through
``django.core.mail.send_mass_mail(datatuple, connection=backend)`` with each backend, to two
servers: Postfix's ``smtp-sink`` (PIPELINING, no CHUNKING: mailwire sends DATA, one round trip a
message) and ``mailwire serve --sink`` (CHUNKING: mailwire sends BDAT, a window of messages a round
trip), each straight over loopback and through the delay proxy (1 ms each way; see
delay_proxy.py, which also counts the round trips each backend pays a message). Django's backend
is smtplib's ``sendmail`` in a loop: four round trips a message.

What is timed is the whole ``send_mass_mail`` call, as a Django program sees it: opening the
connection (EHLO), rendering every message (``message()``), sending, QUIT. Django and both
backends are warmed up by one untimed call first. Repeats are interleaved across backends, so
drift in the machine's load hits each alike, and the table shows medians; every run must return
the count of messages (both backends count only messages the server answered 250), and
smtp-sink must have read at least their bytes (its kernel I/O counter, as in sink.py; asyncio's
``recv`` does not show in that counter, so for ``mailwire serve`` the count is the check), else
the row says ``error``. Rows:

- ``django smtp``: Django's ``django.core.mail.backends.smtp.EmailBackend`` (the baseline);
- ``mailwire.django``: ``mailwire.django.EmailBackend``, one connection (the default);
- ``mailwire.django pool_size=4``: the list shared over four connections;
- ``ref: raw pipelined``: the ceiling for one connection over DATA, a bare socket sending the
  same messages pre-rendered (raw_client.py), so Django's rendering is outside its window;
- ``ref: Django's part alone``: what any backend must have Django do, and nothing else, no
  network: each message's envelope by Django's address rules and its bytes from ``message()``
  (mailwire.django's own ``_items``, which mirrors Django's backend). The ceiling of any Django
  backend on loopback, where this is most of the work.

Run: ``.venv/bin/python bench/django_bench.py`` (about 2 minutes; ``--quick``: 100 messages, 3
repeats). Needs ``smtp-sink`` (Debian's ``postfix``), Django and Linux's ``/proc``.
"""

from __future__ import annotations

import argparse
import platform
import queue
import re
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import django
from django.conf import settings

settings.configure(DEFAULT_FROM_EMAIL="news@example.com", EMAIL_TIMEOUT=30)
django.setup()

from django.core import mail  # noqa: E402

from client_bench import Window  # noqa: E402
from delay_proxy import DEFAULT_DELAY, ProxyProcess, ProxyStats  # noqa: E402
from raw_client import raw_pipelined_loop  # noqa: E402
from sink import SmtpSink  # noqa: E402

HOST: Final = "127.0.0.1"
TIMEOUT: Final = 30.0
BODY: Final = "The quick brown fox jumps over the lazy dog, again and again and again.\n" * 12
DJANGO: Final = "django.core.mail.backends.smtp.EmailBackend"
MAILWIRE: Final = "mailwire.django.EmailBackend"
BACKENDS: Final[dict[str, tuple[str, dict[str, Any]]]] = {
    "django smtp": (DJANGO, {}),
    "mailwire.django": (MAILWIRE, {}),
    "mailwire.django pool_size=4": (MAILWIRE, {"pool_size": 4}),
}
REF: Final = "ref: raw pipelined"
RENDER: Final = "ref: Django's part alone"
BASELINE: Final = "django smtp"


def datatuple(count: int) -> list[tuple[str, str, str, list[str]]]:
    """What send_mass_mail takes: (subject, message, from, recipients), one a message."""
    return [(f"Newsletter {i}", f"Dear reader {i},\n\n{BODY}", "news@example.com", [f"reader{i}@example.com"])
            for i in range(count)]


def rendered(count: int) -> list[bytes]:
    """The same messages as Django's backends send them (5.2's and 6.1's ways), for the
    reference row and the delivery check."""
    from mailwire.django import EmailBackend

    messages = [mail.EmailMessage(*fields) for fields in datatuple(count)]
    return [item.content for item in EmailBackend(host=HOST)._items(messages, [])]


# -- servers -----------------------------------------------------------------------------------


class MailwireSink:
    """``mailwire serve --sink`` on a free port (from its banner): accepts, discards, offers CHUNKING."""

    def __init__(self) -> None:
        self.port = 0
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> MailwireSink:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "mailwire", "serve", "--sink", "--port", "0", "-q"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        lines: queue.Queue[str] = queue.Queue()
        stdout = self._proc.stdout
        assert stdout is not None
        threading.Thread(target=lambda: [lines.put(line) for line in stdout], daemon=True).start()
        match = re.search(r"127\.0\.0\.1:(\d+)", lines.get(timeout=10))
        assert match, "mailwire serve printed no port"
        self.port = int(match[1])
        return self

    def traffic(self) -> tuple[int, int] | None:
        return None  # its reads are recv() calls, which /proc/PID/io's rchar does not count

    def __exit__(self, *exc: object) -> None:
        assert self._proc is not None
        self._proc.terminate()
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


Server = Any  # SmtpSink or MailwireSink: .port and .traffic()


# -- runs --------------------------------------------------------------------------------------


@dataclass
class Cell:
    rates: list[float] = field(default_factory=list)
    turns: list[float] = field(default_factory=list)
    error: str | None = None

    def rate(self) -> float | None:
        return statistics.median(self.rates) if self.rates and not self.error else None

    def round_trips(self) -> float | None:
        return statistics.median(self.turns) if self.turns and not self.error else None


def send_mass_mail(name: str, port: int, count: int, window: Window) -> None:
    path, options = BACKENDS[name]
    connection = mail.get_connection(path, host=HOST, port=port, timeout=TIMEOUT, **options)
    messages = datatuple(count)
    window.open()
    sent = mail.send_mass_mail(messages, connection=connection)  # makes the EmailMessages too
    window.close()
    if sent != count:
        raise RuntimeError(f"send_mass_mail returned {sent}, not {count}")


def render(count: int, window: Window) -> None:
    from mailwire.django import EmailBackend

    backend = EmailBackend(host=HOST)
    messages = [mail.EmailMessage(*fields) for fields in datatuple(count)]
    window.open()
    items = list(backend._items(messages, []))
    window.close()
    assert len(items) == count


def run_once(
    name: str, port: int, probe: Callable[[], ProxyStats] | None, server: Server, count: int,
    floor: int, cell: Cell,
) -> None:
    window = Window(probe, server.traffic)
    try:
        if name == RENDER:
            render(count, window)
        elif name == REF:
            raw_pipelined_loop(port, rendered(count), window)  # plus its first again, untimed, first
        else:
            send_mass_mail(name, port, count, window)
    except Exception as exc:
        cell.error = f"error: {type(exc).__name__}: {exc}"
        return
    after = server.traffic() if name != RENDER else None
    if window.sink_before is not None and after is not None and after[0] - window.sink_before[0] < floor:
        cell.error = f"error: the server read {after[0] - window.sink_before[0]} bytes, expected {floor}+"
        return
    cell.rates.append(count / (window.stopped - window.started))
    if window.before is not None and window.after is not None:
        cell.turns.append((window.after - window.before).turns / count)


Results = dict[tuple[str, str, str], Cell]  # (server, route, row)


def run_all(count: int, repeat: int, delay: float) -> Results:
    rows = [*BACKENDS, REF, RENDER]
    floor = sum(len(m) for m in rendered(count))  # the content alone; the envelopes come on top
    for name in BACKENDS:  # warm up Django, smtplib and mailwire's modules, untimed
        with SmtpSink(HOST) as sink:
            send_mass_mail(name, sink.port, 1, Window(None))
    results: Results = {}
    for server_name, make in (("smtp-sink", lambda: SmtpSink(HOST)), ("mailwire serve --sink", MailwireSink)):
        with make() as server, ProxyProcess(HOST, server.port, delay) as proxy:
            routes = [("loopback", server.port, None), ("delayed", proxy.port, proxy.stats)]
            for route, port, probe in routes:
                # Rendering alone needs no server: measured once, on the first route.
                here = [row for row in rows if row != RENDER or (server_name, route) == ("smtp-sink", "loopback")]
                cells = {row: results.setdefault((server_name, route, row), Cell()) for row in here}
                for _ in range(repeat):
                    for row in here:
                        if cells[row].error is None:
                            run_once(row, port, probe, server, count, floor, cells[row])
                print(f"  done: {server_name}, {route}", flush=True)
    return results


# -- report ------------------------------------------------------------------------------------


def format_table(results: Results, delay: float) -> str:
    columns = ("loopback msg/s", "vs django", f"+{delay * 1000:g}ms msg/s", "vs django", "round trips/msg")
    widths = (15, 10, 13, 10, 17)
    header = f"{'server':<22}{'backend':<30}" + "".join(c.rjust(w) for c, w in zip(columns, widths))
    lines = [header, "-" * len(header)]
    for server in ("smtp-sink", "mailwire serve --sink"):
        base = {route: results[(server, route, BASELINE)].rate() for route in ("loopback", "delayed")}
        for row in [*BACKENDS, REF, RENDER]:
            if row == RENDER:
                if server == "smtp-sink":
                    rate = results[(server, "loopback", row)].rate()
                    cells = (_rate(rate), _ratio(rate, base["loopback"]), "-", "-", "-")
                    lines.append(f"{'(none)':<22}{row:<30}" + "".join(c.rjust(w) for c, w in zip(cells, widths)))
                continue
            direct, delayed = results[(server, "loopback", row)], results[(server, "delayed", row)]
            if error := direct.error or delayed.error:
                lines.append(f"{server:<22}{row:<30}  {error[:90]}")
                continue
            cells = (
                _rate(direct.rate()), _ratio(direct.rate(), base["loopback"]),
                _rate(delayed.rate()), _ratio(delayed.rate(), base["delayed"]),
                "-" if delayed.round_trips() is None else f"{delayed.round_trips():.2f}",
            )
            lines.append(f"{server:<22}{row:<30}" + "".join(c.rjust(w) for c, w in zip(cells, widths)))
        lines.append("")
    return "\n".join(lines)


def _rate(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:,.0f}"


def _ratio(rate: float | None, base: float | None) -> str:
    return "-" if rate is None or not base else f"{rate / base:.2f}x"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, help="messages per send_mass_mail (default 500; --quick 100)")
    parser.add_argument("--repeat", type=int, help="runs per backend and case, median shown (default 5; --quick 3)")
    parser.add_argument("--quick", action="store_true", help="a smaller run")
    parser.add_argument("--delay", type=float, default=DEFAULT_DELAY, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    count = args.messages or (100 if args.quick else 500)
    repeat = args.repeat or (3 if args.quick else 5)
    print(f"Python {platform.python_version()}, Django {django.get_version()}; send_mass_mail of {count} "
          f"messages, loopback and {args.delay * 1000:g} ms each way; median of {repeat}", flush=True)
    started = time.perf_counter()
    results = run_all(count, repeat, args.delay)
    print()
    print(format_table(results, args.delay))
    print(f"total time {time.perf_counter() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()

"""The server's own CPU per message, without sockets: smtp-source's reads fed to one connection.

``server_bench.py`` measures whole servers, where the kernel, the event loop and a noisy machine
make a change of a few percent invisible. This drives one ``SMTPConnection`` of an
``SMTPServer(Sink())`` in-process, through the same protocol callbacks asyncio calls
(``get_buffer``/``buffer_updated``) and a transport that only counts writes, with the reads
``smtp-source -d`` makes for a message (checked with a capture: HELO once, then per message
``MAIL``, ``RCPT``, ``DATA`` and the content with its dot, each after the reply to the one before;
no RSET between messages). It prints:

- CPU microseconds per message (``time.process_time``), the minimum and the median of the repeats
  (the minimum is the figure to compare on a shared machine: other load only adds to it);
- with ``--calls``, Python-level function calls per message, counted by ``cProfile`` over one run:
  a deterministic figure, what a change to the per-command path removes whatever the machine does.

Run it for two checkouts in turn to compare them, e.g.
``PYTHONPATH=/other/checkout/src .venv/bin/python bench/server_path.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import statistics
import time
from collections.abc import Sequence
from typing import Any

from mailwire.server import Sink
from mailwire.server.aio import SMTPServer
from mailwire.server.connection import SMTPConnection

BODY_LINE = b"X" * 78 + b"\r\n"


def message(size: int = 1024) -> bytes:
    """A message as smtp-source -l SIZE sends it: four header lines, then SIZE octets of body."""
    head = (b"From: <a@example.com>\r\nTo: <b@example.com>\r\nDate: Sun,  6 Dec 2026 11:01:00 +0000 (UTC)\r\n"
            b"Message-Id: <3584.0003.0001@localhost>\r\n\r\n")  # fmt: skip
    lines, rest = divmod(size, len(BODY_LINE))
    body = BODY_LINE * lines + (b"X" * (rest - 2) + b"\r\n" if rest > 2 else b"")
    return head + body + b".\r\n"


READS = (b"MAIL FROM:<a@example.com>\r\n", b"RCPT TO:<b@example.com>\r\n", b"DATA\r\n", message())


class CountingTransport:
    """What the connection asks of a transport, writes counted and dropped."""

    def __init__(self) -> None:
        self.writes = 0
        self.closing = False

    def write(self, data: bytes) -> None:
        self.writes += 1

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 5555) if name in ("peername", "sockname") else default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    abort = close

    def get_write_buffer_size(self) -> int:
        return 0


async def one_run(server: SMTPServer, messages: int) -> float:
    """CPU seconds per message over one session of ``messages`` messages."""
    conn = SMTPConnection(server)
    transport = CountingTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]

    def feed(data: bytes) -> None:
        view = conn.get_buffer(len(data))
        view[: len(data)] = data
        conn.buffer_updated(len(data))

    for _ in range(5):  # the greeting: the task opens the session and waits
        await asyncio.sleep(0)
    feed(b"HELO localhost\r\n")
    started = time.process_time()
    for _ in range(messages):
        for read in READS:
            feed(read)
    spent = time.process_time() - started
    if transport.writes < 1 + len(READS) * messages:
        raise RuntimeError(f"{transport.writes} writes for {messages} messages: replies missing")
    feed(b"QUIT\r\n")
    for _ in range(5):
        await asyncio.sleep(0)
    return spent / messages


async def main_async(args: argparse.Namespace) -> None:
    server = SMTPServer(Sink(), hostname="localhost")
    await one_run(server, 200)  # warm-up: imports, the command memo
    times = [await one_run(server, args.messages) for _ in range(args.repeat)]
    micro = [t * 1e6 for t in times]
    print(f"CPU per message: min {min(micro):.2f} us, median {statistics.median(micro):.2f} us "
          f"({args.repeat} runs of {args.messages})")  # fmt: skip
    if args.calls:
        profile = cProfile.Profile()
        profile.enable()
        await one_run(server, args.messages)
        profile.disable()
        stats: Any = pstats.Stats(profile).stats
        python = sum(v[1] for k, v in stats.items() if k[0] != "~")
        print(f"Python calls per message: {python / args.messages:.1f}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000, help="messages per run (default 5000)")
    parser.add_argument("--repeat", type=int, default=7, help="runs (default 7)")
    parser.add_argument("--calls", action="store_true", help="also count Python calls per message")
    asyncio.run(main_async(parser.parse_args(argv)))


if __name__ == "__main__":
    main()

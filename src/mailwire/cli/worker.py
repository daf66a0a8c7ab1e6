"""``mailwire worker``: deliver what the durable queue holds, until SIGTERM.

A thin shell over ``mailwire.queue.worker.Worker``: this module turns the
options into a broker (``--queue redis://HOST:PORT/STREAM``), one deliverer
(``--maildir``, ``--lmtp``/``--lmtp-unix`` or ``--relay``, with the TLS and
AUTH options ``mailwire send`` has), a retry policy and an optional health
endpoint (``--health HOST:PORT``: 200 while the broker answers, 503 while
not, with the worker's counts), then runs the worker. SIGTERM or SIGINT
stop it: no new entry is read, deliveries under way finish and are
acknowledged, and the exit code is 0.

Mistakes in the arguments (a bad URL, no deliverer, a Maildir that cannot be
written) end in one line on stderr and exit 2 (or 1 for the Maildir). A
broker that does not answer at start is no mistake: the worker says so on
stderr and waits, trying again with a back-off, as it does whenever the
broker goes away later. stdout carries one banner line once it runs; the
log lines (``event=delivered ...``) go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import logging
import signal
import sys
from typing import TYPE_CHECKING

from .._aio.health import Health, HealthServer
from .options import UsageError, add_tls_auth_options, destination, seconds, server_address
from .queue_blobs import add_blob_options, blob_store, check_blobs
from .serve_queue import _host_port, redacted

if TYPE_CHECKING:
    from ..queue.deliver.base import Deliverer
    from ..queue.redis_broker import RedisBroker

__all__ = ["configure_parser", "run", "open_broker"]

PROG = "mailwire worker"
EXIT_OK, EXIT_RUNTIME, EXIT_USAGE = 0, 1, 2


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, not {text!r}")
    return int(text)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--queue", required=True, metavar="redis://HOST:PORT/STREAM",
                        help="the queue to drain (the stream the front ends publish to)")
    target = parser.add_argument_group("where to deliver (one)").add_mutually_exclusive_group(required=True)
    target.add_argument("--maildir", metavar="DIR", help="store in this Maildir, once per queue id")
    target.add_argument("--lmtp", type=server_address, metavar="HOST:PORT", help="hand to this LMTP server")
    target.add_argument("--lmtp-unix", metavar="PATH", help="hand to the LMTP server on this Unix socket")
    target.add_argument("--relay", type=server_address, metavar="HOST:PORT", help="relay to this SMTP server")
    queue = parser.add_argument_group("the queue")
    add_blob_options(queue, "the blob store the front ends write large bodies to")
    queue.add_argument("--queue-timeout", type=seconds, default=5.0, metavar="SECONDS",
                       help="the most one broker call may take (default 5)")
    queue.add_argument("--group", default="mailwire", help="the consumer group (default mailwire; one per stream)")
    queue.add_argument("--consumer", help="this worker's name in the group (default HOST-PID)")
    queue.add_argument("--concurrency", type=_count, default=4, metavar="N", help="deliveries at once (default 4)")
    queue.add_argument("--reclaim-after", type=seconds, default=120.0, metavar="SECONDS",
                       help="take over entries another worker held this long unacknowledged (default 120; "
                            "longer than any delivery takes)")
    queue.add_argument("--max-deliveries", type=_count, default=5, metavar="N",
                       help="dead-letter an entry reclaimed after this many hand-outs that no worker "
                            "settled: a poison message (default 5)")
    retry = parser.add_argument_group("retries")
    retry.add_argument("--retry-delay", type=seconds, default=60.0, metavar="SECONDS",
                       help="before the second attempt, doubled for each after (default 60)")
    retry.add_argument("--retry-max-delay", type=seconds, default=3600.0, metavar="SECONDS",
                       help="the longest wait between attempts (default 3600)")
    retry.add_argument("--max-attempts", type=_count, default=10, metavar="N",
                       help="attempts before a temporary failure bounces (default 10)")
    retry.add_argument("--max-age", type=seconds, default=5 * 86400.0, metavar="SECONDS",
                       help="age (since the front end's 250) past which it bounces (default 5 days)")
    connection = parser.add_argument_group("LMTP and relay connections")
    add_tls_auth_options(connection)
    connection.add_argument("--timeout", type=seconds, default=60.0, metavar="SECONDS",
                            help="per network operation (default 60)")
    connection.add_argument("--helo", metavar="NAME", help="the name to greet with (default: this host's)")
    connection.add_argument("--pool-size", type=_count, default=None, metavar="N",
                            help="connections at most (default: --concurrency)")
    parser.add_argument("--health", type=_host_port, metavar="HOST:PORT",
                        help="serve GET /health here: 200 while the broker answers, 503 while not")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log lines (-vv: debug)")


def _deliverer(args: argparse.Namespace) -> Deliverer:
    from ..queue.deliver import LMTPDeliverer, MaildirDeliverer, RelayDeliverer

    if args.maildir is not None:
        try:
            return MaildirDeliverer(args.maildir)
        except OSError as err:
            raise RuntimeError(f"cannot write to the Maildir {args.maildir}: {err.strerror or err}") from None
    lmtp = args.relay is None
    where = destination(args, args.lmtp or args.relay, args.lmtp_unix, lmtp=lmtp)
    size = args.pool_size or args.concurrency
    kind = LMTPDeliverer if lmtp else RelayDeliverer
    return kind.to(where.host, where.port, size=size, **where.settings)


def open_broker(args: argparse.Namespace) -> RedisBroker:
    """The broker ``--queue`` names (UsageError for a bad address, or without the redis package)."""
    if importlib.util.find_spec("redis") is None:
        raise UsageError("--queue needs the redis package: pip install 'mailwire[redis]'")
    from ..queue.redis_broker import RedisBroker

    try:
        return RedisBroker.from_url(args.queue, timeout=args.queue_timeout)
    except ValueError as err:
        raise UsageError(f"--queue: {err}") from None


def run(args: argparse.Namespace) -> int:
    """``mailwire worker`` with parsed arguments; the exit code."""
    level = logging.WARNING if args.verbose == 0 else logging.INFO if args.verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    logging.getLogger("mailwire.queue").setLevel(min(level, logging.INFO))  # its event= lines, always
    try:
        broker = open_broker(args)
        check_blobs(args)
        deliverer = _deliverer(args)
    except UsageError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except RuntimeError as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return EXIT_RUNTIME
    try:
        return asyncio.run(_main(args, broker, deliverer))
    except OSError as err:  # the health port in use
        print(f"{PROG}: {err.strerror or err}", file=sys.stderr)
        return EXIT_RUNTIME


async def _main(args: argparse.Namespace, broker: RedisBroker, deliverer: Deliverer) -> int:
    from ..queue.worker import RetryPolicy, Worker

    retry = RetryPolicy(first_delay=args.retry_delay, max_delay=args.retry_max_delay,
                        max_attempts=args.max_attempts, max_age=args.max_age)
    blobs = blob_store(args.queue_blobs, args.queue_blobs_endpoint, timeout=args.queue_timeout)
    worker = Worker(broker, deliverer, group=args.group, consumer=args.consumer, concurrency=args.concurrency,
                    reclaim_after=args.reclaim_after, blobs=blobs, retry=retry,
                    max_deliveries=args.max_deliveries)
    health = None
    try:
        if args.health is not None:
            async def check() -> Health:
                return Health(await broker.health(), {**worker.facts(), "queue": redacted(args.queue)})

            health = HealthServer(check, *args.health)
            await health.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stop)
        if not await broker.health():
            print(f"{PROG}: the queue at {redacted(args.queue)} does not answer yet: waiting for it",
                  file=sys.stderr, flush=True)
        print(f"{PROG}: delivering from {redacted(args.queue)} (group {worker.group}, consumer {worker.consumer})"
              f" to {deliverer.target}" + (f"; health on port {health.port}" if health else ""), flush=True)
        await worker.run()
    finally:
        if health is not None:
            await health.stop()
        await deliverer.close()
        await broker.close()
    return EXIT_OK

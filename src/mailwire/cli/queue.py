"""``mailwire queue stats|health``: what the durable queue holds, and whether it answers.

``stats`` prints the queue as a consumer group sees it (``Broker.stats``):
the entries in the stream, those no worker has read yet (lag), the age of
the oldest not yet delivered, the entries each worker holds unacknowledged,
and (Redis) the entries waiting for a retry and the dead letters; ``--json``
prints the same as one JSON object, for scripts. ``health`` says whether the
broker answers and holds entries durably: exit 0 if it answers, 1 if not.
A broker that cannot be reached is one line on stderr and exit 1; a
mistake in the arguments exit 2.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import TYPE_CHECKING

from ..queue.broker import BrokerError, NotDurable
from .options import UsageError, seconds
from .serve_queue import redacted
from .worker import open_broker

if TYPE_CHECKING:
    from ..queue.redis_broker import RedisBroker

__all__ = ["configure_parser", "run"]

PROG = "mailwire queue"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def configure_parser(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True)
    stats = actions.add_parser("stats", help="length, lag, oldest age, pending per worker, retries, dead letters")
    health = actions.add_parser("health", help="whether the broker answers (exit 0) or not (exit 1)")
    for sub in (stats, health):
        sub.add_argument("--queue", required=True, metavar="redis://HOST:PORT/STREAM")
        sub.add_argument("--queue-timeout", type=seconds, default=5.0, metavar="SECONDS",
                         help="the most one broker call may take (default 5)")
    stats.add_argument("--group", default="mailwire", help="the consumer group (default mailwire)")
    stats.add_argument("--json", action="store_true", help="one JSON object")


def run(args: argparse.Namespace) -> int:
    try:
        broker = open_broker(args)
    except UsageError as err:
        print(f"{PROG} {args.action}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    job = _stats if args.action == "stats" else _health
    return asyncio.run(job(args, broker))


async def _stats(args: argparse.Namespace, broker: RedisBroker) -> int:
    try:
        stats = await broker.stats(args.group)
        delayed, dead = await broker.delayed_count(), await broker.dead_count()
    except BrokerError as err:
        print(f"{PROG} stats: {err}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        await broker.close()
    facts = {"queue": redacted(args.queue), "group": args.group, "length": stats.length, "lag": stats.lag,
             "oldest_age": None if stats.oldest_age is None else round(stats.oldest_age, 3),
             "pending_total": stats.pending_total, "pending": stats.pending, "delayed": delayed, "dead": dead}
    if args.json:
        print(json.dumps(facts))
        return EXIT_OK
    oldest = "-" if stats.oldest_age is None else f"{stats.oldest_age:.1f}s"
    lines = [f"queue    {facts['queue']} (group {args.group})", f"length   {stats.length}",
             f"lag      {'-' if stats.lag is None else stats.lag}", f"oldest   {oldest}",
             f"pending  {stats.pending_total}"]
    lines += [f"  {consumer}  {count}" for consumer, count in sorted(stats.pending.items())]
    lines += [f"delayed  {delayed}", f"dead     {dead}"]
    print("\n".join(lines))
    return EXIT_OK


async def _health(args: argparse.Namespace, broker: RedisBroker) -> int:
    try:
        if not await broker.health():
            print(f"not ok: {redacted(args.queue)} does not answer")
            return EXIT_FAILED
        try:
            await broker.check_durable()
            durable = "durable"
        except NotDurable as err:
            durable = f"NOT durable: {err}"
        except BrokerError as err:
            durable = f"durability unknown: {err}"
        print(f"ok: {redacted(args.queue)} answers; {durable}")
        return EXIT_OK
    finally:
        await broker.close()

"""``mailwire serve --queue``: a front end that hands every message to the durable queue.

``--queue redis://HOST:PORT/STREAM`` makes the backend a ``Handoff``
(``mailwire.queue.handoff``): ``250 2.0.0 queued as <id>`` once the broker
holds the entry, 451 otherwise, refusal at MAIL while the broker is down.
Bodies over ``--queue-inline-max`` octets go to ``--queue-blobs DIR`` (a
directory the workers share) or ``s3://BUCKET[/PREFIX]`` (``queue_blobs.py``);
without it every body rides inline.

Before anything listens, the broker's durability is checked once
(``RedisBroker.check_durable``): a broker that may lose an acknowledged
entry stops the command with its message (exit 1) unless
``--queue-allow-not-durable`` is given, which is warned about and shown in
the health facts; a broker that does not answer yet is a warning, and mail is
refused at MAIL until it does. ``--health HOST:PORT`` serves ``GET /health``
(``_aio/health.py``): 200 while mail is accepted, 503 while not, with the
broker's state, the durable flag and the counts.

``QueueFrontEnd`` is the process's part: the backend the server is given
(it hands each session to the ``Handoff``) and what starts the handoff's
watcher and the health endpoint on the server's event loop: as a companion
(``serve_run.Plan.companions``) in one process; with ``--workers N``, in
each worker as the factory makes it there, after the fork, so each worker
has its own broker connection (and its health endpoint shares the port
through SO_REUSEPORT, each answering with its own counts and pid).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import sys
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from .._aio.health import Health, HealthServer
from ..server.envelope import SessionInfo
from ..server.session import Session
from .options import UsageError, seconds
from .queue_blobs import add_blob_options, blob_store, check_blobs
from .serve_run import PROG, Plan, RuntimeFailure

if TYPE_CHECKING:  # redis is an extra: imported when --queue is given
    from ..queue.redis_broker import RedisBroker

__all__ = ["add_options", "check_conflicts", "backend", "attach", "QueueFrontEnd", "redacted"]

_OPTIONS = ("queue_blobs", "queue_blobs_endpoint", "queue_inline_max", "queue_timeout", "queue_allow_not_durable",
            "health")


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT (port 0: any free one), not {text!r}")
    return host.strip("[]"), int(port)


def _octets(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a number of octets, not {text!r}")
    return int(text)


def add_options(serve: argparse.ArgumentParser) -> None:
    group = serve.add_argument_group("a front end to the durable queue (needs mailwire[redis])")
    group.add_argument("--queue", metavar="redis://HOST:PORT/STREAM",
                       help="hand every message to this queue: 250 only once the broker holds it durably")
    add_blob_options(group, "where bodies over --queue-inline-max go (a directory the workers share, or "
                            "a bucket); without it every body rides inline in its entry")
    group.add_argument("--queue-inline-max", type=_octets, metavar="BYTES",
                       help="largest body kept inline in the entry (default 65536)")
    group.add_argument("--queue-timeout", type=seconds, metavar="SECONDS",
                       help="the most a publish (or a ping) of the broker may take before it counts as "
                            "failed: 451 (default 5)")
    group.add_argument("--queue-allow-not-durable", action="store_true",
                       help="start even if the broker may lose an acknowledged entry (Redis without "
                            "appendfsync always): a warning, and durable=false in the health facts")
    group.add_argument("--health", type=_host_port, metavar="HOST:PORT",
                       help="serve GET /health here: 200 while mail is accepted, 503 while not (JSON facts)")


def redacted(url: str) -> str:
    """The queue's address without its password (for the banner and the health facts)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f":***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def check_conflicts(args: argparse.Namespace) -> None:
    """UsageError for options that do not go with --queue (or need it)."""
    if args.queue is None:
        given = [name for name in _OPTIONS if getattr(args, name) not in (None, False)]
        if given:
            raise UsageError(f"--{given[0].replace('_', '-')} needs --queue redis://HOST:PORT/STREAM")
        return
    other = next((flag for flag, on in (("--maildir", args.maildir is not None), ("--print", args.print),
                                       ("--sink", args.sink), ("--relay", args.relay is not None)) if on), None)
    if other is not None:
        raise UsageError(f"--queue and {other}: give one (with --queue, every message goes to the queue)")
    if importlib.util.find_spec("redis") is None:
        raise UsageError("--queue needs the redis package: pip install 'mailwire[redis]'")
    _broker(args)  # the address, checked now
    check_blobs(args)
    if args.health is not None and args.health[1] == 0 and args.workers > 1:
        raise UsageError("--health with --workers above 1 needs a port (the workers share it), not 0")


def _broker(args: argparse.Namespace) -> RedisBroker:
    from ..queue.redis_broker import RedisBroker

    try:
        return RedisBroker.from_url(args.queue, timeout=args.queue_timeout or 5.0)
    except ValueError as err:
        raise UsageError(f"--queue: {err}") from None


class QueueFrontEnd:
    """The server's backend with --queue, and what runs beside it (see the module's docstring)."""

    def __init__(self, args: argparse.Namespace, *, reuse_port: bool = False) -> None:
        from ..queue.handoff import INLINE_MAX, Handoff

        try:
            blobs = blob_store(args.queue_blobs, args.queue_blobs_endpoint, timeout=args.queue_timeout or 5.0)
        except OSError as err:
            raise RuntimeFailure(f"cannot use --queue-blobs {args.queue_blobs}: {err.strerror or err}") from None
        self.queue = redacted(args.queue)
        self.handoff = Handoff(
            _broker(args), blobs,
            inline_max=INLINE_MAX if args.queue_inline_max is None else args.queue_inline_max,
            timeout=args.queue_timeout or 5.0, allow_not_durable=args.queue_allow_not_durable,
        )
        self.health_address: tuple[str, int] | None = args.health
        self._reuse_port = reuse_port
        self.health: HealthServer | None = None

    @property
    def where(self) -> str:
        host, port = self.health_address or ("", 0)
        return f"--health {host}:{port}"

    async def new_session(self, info: SessionInfo) -> Session:
        return await self.handoff.new_session(info)

    async def check(self) -> Health:
        ok = await self.handoff.check()
        return Health(ok, {"role": "front end", "queue": self.queue, **self.handoff.facts()})

    async def start(self) -> str:
        """Start the handoff's watcher and the health endpoint; words for the banner."""
        await self.handoff.start()
        words = "broker up" if self.handoff.broker_up else "broker down: refusing at MAIL until it answers"
        if self.health_address is None:
            return words
        self.health = HealthServer(self.check, *self.health_address, reuse_port=self._reuse_port)
        await self.health.start()
        return f"{words}, health on http://{self.health_address[0]}:{self.health.port}/health"

    async def stop(self) -> None:
        if self.health is not None:
            await self.health.stop()
        await self.handoff.close()


async def _preflight(args: argparse.Namespace) -> str | None:
    """Check the broker's durability once, before anything listens; a warning to print, or None."""
    from ..queue import BrokerError, NotDurable

    broker = _broker(args)
    try:
        if not await broker.health():
            return f"the queue {redacted(args.queue)} does not answer: mail is refused at MAIL until it does"
        await broker.check_durable()
    except NotDurable as err:
        if not args.queue_allow_not_durable:
            raise RuntimeFailure(f"{err} (or pass --queue-allow-not-durable)") from None
        return f"--queue-allow-not-durable: {err}"
    except BrokerError as err:
        return f"the queue {redacted(args.queue)} failed its check ({err}): mail is refused at MAIL until it answers"
    finally:
        await broker.close()
    return None


def backend(args: argparse.Namespace) -> tuple[QueueFrontEnd, str]:
    """The backend for --queue, and the banner's words for it."""
    front = QueueFrontEnd(args)
    inline = "every body inline" if args.queue_blobs is None else \
        f"bodies over {front.handoff.inline_max} octets in {args.queue_blobs}"
    return front, f"queueing on {front.queue} ({inline})"


def attach(args: argparse.Namespace, plan: Plan) -> None:
    """With --queue: check the broker, and have the front end start beside the server."""
    if args.queue is None:
        return
    warning = asyncio.run(_preflight(args))
    if warning is not None:
        print(f"{PROG}: warning: {warning}", file=sys.stderr)
    assert isinstance(plan.backend, QueueFrontEnd)
    if plan.workers == 1:
        plan.companions = (*plan.companions, plan.backend)
        return

    async def in_worker() -> QueueFrontEnd:  # in each worker, on its loop, after the fork, before it listens
        front = QueueFrontEnd(args, reuse_port=True)
        await front.start()
        return front

    plan.make_backend = in_worker
    if args.health is not None:
        plan.storing += f", health on http://{args.health[0]}:{args.health[1]}/health (each worker's)"

"""What the front ends and workers need of a broker: the ``Broker`` protocol.

The handoff backend and the workers are written against this protocol only,
so a second broker (RabbitMQ quorum queues with publisher confirms, NATS
JetStream) is one new module, not a change to them. The contract:

- ``publish`` returns only once the entry is durable *as the broker
  promises it* (Redis: ``appendfsync always`` makes the reply to XADD mean
  "on disk"); ``check_durable`` says whether that promise holds and refuses,
  with what to change, when it does not.
- ``consume`` hands out entries to one consumer of a group; each stays
  pending, owned by that consumer, until ``ack``. ``reclaim`` takes over
  entries a consumer held longer than ``min_idle`` (it died): at-least-once.
- Any failure to reach the broker is ``BrokerUnavailable``, within bounded
  time, never a hang: the front end turns it into 451 and its health flag.

An entry the broker holds but that does not decode comes back from
``consume``/``reclaim`` as a ``MalformedEntry`` in place of the entry, with
its stream id, so the worker can dead-letter and acknowledge it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Iterable
from typing import Protocol, runtime_checkable

from ..errors import MailwireError
from .entry import MalformedEntry, QueueEntry

__all__ = [
    "Broker", "WorkerBroker", "BrokerStats", "BrokerError", "BrokerUnavailable", "NotDurable", "Delivery",
]

# What consume and reclaim hand out: the broker's id for the entry, and the
# entry (or why it could not be read).
Delivery = tuple[str, "QueueEntry | MalformedEntry"]


class BrokerError(MailwireError):
    """The broker refused or failed an operation."""


class BrokerUnavailable(BrokerError, ConnectionError):
    """The broker could not be reached (or stopped answering) in time."""


class NotDurable(BrokerError):
    """The broker is set up so that an acknowledged entry may be lost."""


@dataclass(frozen=True, slots=True)
class BrokerStats:
    length: int  # entries in the stream (delivered or not)
    pending: dict[str, int] = field(default_factory=dict)  # consumer -> entries it holds unacknowledged
    oldest_age: float | None = None  # seconds since the oldest entry not yet consumed or acked; None if none
    lag: int | None = None  # entries not yet handed to any consumer of the group, if the broker knows

    @property
    def pending_total(self) -> int:
        return sum(self.pending.values())


@runtime_checkable
class Broker(Protocol):
    async def publish(self, entry: QueueEntry) -> str:
        """Store ``entry``; its broker id, once durable."""
        ...

    async def consume(self, group: str, consumer: str, *, count: int = 10,
                      block: float | None = None) -> list[Delivery]:
        """Up to ``count`` new entries for ``consumer`` of ``group`` (made if
        missing), waiting up to ``block`` seconds for one (None: no wait)."""
        ...

    async def ack(self, group: str, *ids: str) -> int:
        """Mark entries handled by ``group``; how many were pending."""
        ...

    async def reclaim(self, group: str, consumer: str, *, min_idle: float,
                      count: int = 100) -> list[Delivery]:
        """Take over for ``consumer`` entries another consumer of ``group`` has held for
        at least ``min_idle`` seconds without acknowledging them."""
        ...

    async def stats(self, group: str) -> BrokerStats:
        """The queue as ``group`` sees it (``pending`` empty if it does not exist yet)."""
        ...

    async def health(self) -> bool:
        """Whether the broker answers now (never raises, bounded in time)."""
        ...

    async def check_durable(self) -> None:
        """Raise ``NotDurable`` (saying what to set) unless an entry
        ``publish`` returned for survives a crash of the broker."""
        ...

    async def close(self) -> None:
        ...


@runtime_checkable
class WorkerBroker(Broker, Protocol):
    """What a worker needs beyond ``Broker``: settling an entry in one step.

    Each method acknowledges the entry it is given *and* does what comes
    with that, atomically where the broker can (Redis: one MULTI or one
    script), so a worker that dies between the two steps cannot leave an
    entry both acknowledged and lost, nor retried and still pending. One
    group consumes a stream: ``finish`` removes what it acknowledged, so a
    second group on the same stream would miss entries.

    - ``finish``: acknowledge and remove delivered entries (the broker never
      grows with mail already delivered).
    - ``retry_later``: acknowledge an entry and hand ``entry`` (the same one
      with ``attempt`` + 1, or fewer recipients) out again after ``delay``
      seconds. Redis keeps it in a sorted set and moves it back to the
      stream when due; NATS JetStream would nak with a delay, RabbitMQ
      publish to a delayed queue.
    - ``dead_letter``: acknowledge the entry and keep its fields, with
      ``reason``, where an operator looks (Redis: the stream ``<stream>:dead``).
    - ``delivered``/``mark_delivered``: recipients of a queue id delivered
      already, kept ``ttl`` seconds, for deliverers whose far side cannot
      tell a repeat (LMTP, SMTP relay).
    """

    async def finish(self, group: str, *ids: str) -> int:
        """Acknowledge ``ids`` and remove them from the queue; how many were pending."""
        ...

    async def retry_later(self, group: str, stream_id: str, entry: QueueEntry, delay: float) -> None:
        """Acknowledge ``stream_id``; hand ``entry`` out again in ``delay`` seconds."""
        ...

    async def dead_letter(self, group: str, stream_id: str, reason: str, entry: QueueEntry | None = None) -> None:
        """Acknowledge ``stream_id`` and keep its fields (or ``entry``'s, if given:
        part of its recipients) with ``reason`` for an operator."""
        ...

    async def delivered(self, queue_id: str) -> set[str]:
        """The recipients of ``queue_id`` marked delivered (and not expired)."""
        ...

    async def mark_delivered(self, queue_id: str, recipients: Iterable[str], ttl: float) -> None:
        """Remember for ``ttl`` seconds that ``recipients`` of ``queue_id`` were handled."""
        ...

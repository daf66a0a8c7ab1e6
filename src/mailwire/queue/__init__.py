"""The durable queue between front ends and delivery workers (issue 14).

A front end turns each accepted message into a ``QueueEntry`` (``entry``),
writes a large body to a ``BlobStore`` (``blobs``) and publishes the entry
to a ``Broker`` (``broker``; Redis Streams in ``redis_broker``, an extra),
answering 250 only once the broker holds it durably (``handoff``: the
front end's backend). Workers consume the entries with a consumer group,
deliver, and acknowledge (``worker``, with the deliverers of ``deliver``
and the bounces of ``dsn``). No HTTP and no
command line here: those sit above, in ``cli/``.
"""

from __future__ import annotations

from .blobs import BlobStore, DirectoryBlobs
from .broker import Broker, BrokerError, BrokerStats, BrokerUnavailable, NotDurable, WorkerBroker
from .entry import ENTRY_VERSION, MalformedEntry, QueueEntry, is_queue_id, new_queue_id
from .handoff import Handoff

__all__ = [
    "QueueEntry", "MalformedEntry", "new_queue_id", "is_queue_id", "ENTRY_VERSION",
    "Broker", "WorkerBroker", "BrokerStats", "BrokerError", "BrokerUnavailable", "NotDurable",
    "BlobStore", "DirectoryBlobs", "Handoff",
]

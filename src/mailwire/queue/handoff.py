"""The front end's backend: every accepted message handed to the durable queue (``Handoff``).

A message is streamed (``server/streaming.py``): its SHA-256 and size are
taken as the chunks pass; up to ``inline_max`` octets it rides inline in the
entry, beyond that it goes to the ``BlobStore`` *before* the entry that names
it is published. The sender hears ``250 2.0.0 queued as <queue id>`` only
once ``Broker.publish`` returned, i.e. once the broker holds the entry
durably. Any failure of the blob store or the broker answers ``451 4.3.0``
and removes the blob: nothing is half-queued, and the sender, told 4xx,
tries again later.

The health flag: after a broker failure, and at start until the broker
first answers, the front end refuses at MAIL (``451 4.3.0 Queue
unavailable``), in ``HandoffSession.mail``, the one place a backend answers
MAIL. A watcher task pings the broker (every ``watch_interval`` seconds
while it is up, so an outage is noticed without traffic; with a doubling
back-off up to ``probe_max`` while it is down) and clears the flag once it
answers: the front end recovers by itself. The durability check
(``Broker.check_durable``) runs at ``start``, and at the first answer of a
broker that was down then: a broker that may lose acknowledged entries is
refused (``NotDurable``) unless ``allow_not_durable`` says otherwise, which
is logged and shown in the health facts.

The caveat no front end escapes: a publish that times out may still land
(the broker was slow, not gone: a stopped Redis resumes and executes the
XADD it had buffered). The sender has heard 451 and will send the message
again. What this module does: removes the blob anyway (a late entry naming it
then finds no body, so no worker delivers a copy of a message the sender
is re-sending), and names the queue id in the
451 text and in the ``event=refused`` log line, so an operator can match a
late entry with the refusal. A late entry with an inline body is delivered,
and the re-sent message too: the duplicate RFC 1047 describes for every MTA
that loses a reply, the price of never losing a message.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

from ..errors import SMTPError
from ..protocol.params import MailOptions
from ..reply import Reply
from ..server.envelope import Address, Envelope, SessionInfo
from ..server.session import BaseSession, Step
from ..server.streaming import MessageAborted, MessageContent
from .blobs import BlobStore
from .broker import Broker, BrokerError, BrokerUnavailable, NotDurable
from .entry import QueueEntry, new_queue_id

__all__ = ["Handoff", "HandoffSession", "INLINE_MAX", "QUEUE_UNAVAILABLE", "QUEUE_NOT_DURABLE"]

log = logging.getLogger("mailwire.queue")

INLINE_MAX = 64 * 1024  # a body up to this rides in the entry; beyond, in the blob store
QUEUE_UNAVAILABLE = Reply.of(451, "4.3.0", "Queue unavailable, try again later")
QUEUE_NOT_DURABLE = Reply.of(451, "4.3.0", "Queue not durable, mail is not accepted; try again later")

# What a failed blob write or publish raises: the broker's errors (BrokerUnavailable
# is one), a timeout, and the disk's (OSError).
_FAILURES = (BrokerError, asyncio.TimeoutError, OSError)


def _client(address: Address | None) -> str:
    if isinstance(address, tuple):
        return f"{address[0]}:{address[1]}"
    return "-" if address is None else address


class Handoff:
    """A backend that queues each message on ``broker`` (see the module's docstring).

    ``blobs``: where bodies over ``inline_max`` octets go; None keeps every
    body inline. ``timeout``: the most a publish may take before it counts
    as failed (451). Call ``start`` on the event loop before serving (the
    server's first session starts it otherwise) and ``close`` after.
    """

    def __init__(self, broker: Broker, blobs: BlobStore | None = None, *, inline_max: int = INLINE_MAX,
                 timeout: float = 5.0, allow_not_durable: bool = False, watch_interval: float = 1.0,
                 probe_min: float = 0.1, probe_max: float = 5.0) -> None:
        self.broker = broker
        self.blobs = blobs
        self.inline_max = inline_max
        self.timeout = timeout
        self.allow_not_durable = allow_not_durable
        self.watch_interval = watch_interval
        self.probe_min = probe_min
        self.probe_max = probe_max
        self.broker_up = False  # the health flag: False refuses at MAIL
        self.durable: bool | None = None  # None: not known yet (the broker has not answered)
        self.not_durable: str | None = None  # why it is not, when that refuses mail
        self.counts = {"queued": 0, "refused": 0, "failed": 0}
        self._watcher: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None

    # -- life --------------------------------------------------------------------

    async def start(self) -> None:
        """Check durability (``NotDurable`` unless allowed) and start watching the broker.
        A broker that does not answer yet is no error: mail is refused at MAIL
        until it does."""
        answered = await self.broker.health()
        if answered:
            try:
                await self._check_durable()
            except NotDurable:
                raise
            except BrokerError:  # it went away between the two
                answered = False
        if not answered:
            log.warning("event=broker_down reason=unreachable_at_start (refusing at MAIL until it answers)")
        self._start_watching()

    async def _check_durable(self) -> None:
        """Learn whether the broker is durable, and mark it up; raises
        ``NotDurable`` (unless allowed) and BrokerErrors."""
        try:
            await self.broker.check_durable()
        except NotDurable as err:
            self.durable = False
            if not self.allow_not_durable:
                self.not_durable = str(err)
                raise
            log.warning("event=not_durable allowed=yes %s", err)
        else:
            self.durable = True
        self.not_durable = None
        self.broker_up = True

    def _start_watching(self) -> None:
        if self._watcher is None or self._watcher.done():
            self._wake = asyncio.Event()
            self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def close(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        await self.broker.close()

    async def _watch(self) -> None:
        """Ping the broker: now and then while it is up, with back-off while it is down."""
        assert self._wake is not None
        backoff = self.probe_min
        while True:
            try:
                await self._probe()
            except Exception:  # a watcher that dies would leave the flag stuck: log, go on
                log.exception("the queue's broker watcher failed; probing again")
            if self.broker_up:
                backoff, delay = self.probe_min, self.watch_interval
            else:
                delay, backoff = backoff, min(backoff * 2, self.probe_max)
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except asyncio.TimeoutError:
                pass

    async def _probe(self) -> None:
        """One ping: the flag goes down if it fails, up if it answers (and is durable)."""
        answered = await self.broker.health()
        if answered and not self.broker_up:
            known = self.not_durable
            try:
                await self._check_durable()
            except NotDurable as err:
                if known is None:  # once, not at every probe
                    log.error("event=refused reason=not_durable %s", err)
            except BrokerError:
                pass  # gone again between the ping and the check: the next probe tells
            else:
                log.info("event=broker_up (accepting mail again)")
        elif not answered and self.broker_up:
            self._broker_down("ping failed")

    def _broker_down(self, why: str) -> None:
        if self.broker_up:
            log.warning("event=broker_down reason=%s (refusing at MAIL until it answers)", why.replace(" ", "_"))
        self.broker_up = False
        if self._wake is not None:
            self._wake.set()  # probe now, not at the end of a long wait

    # -- what the health endpoint shows ------------------------------------------------

    async def check(self) -> bool:
        """Whether mail is accepted now: the broker answers (asked now) and the flag is up."""
        if not await self.broker.health():
            self._broker_down("ping failed")
            return False
        return self.broker_up

    def facts(self) -> dict[str, object]:
        """The front end's state, for the health endpoint."""
        return {
            "broker": "up" if self.broker_up else "down", "durable": self.durable,
            "not_durable_allowed": self.allow_not_durable, **self.counts, "pid": os.getpid(),
            **({"not_durable": self.not_durable} if self.not_durable else {}),
        }

    # -- the backend -----------------------------------------------------------------

    async def new_session(self, info: SessionInfo) -> HandoffSession:
        if self._watcher is None:
            self._start_watching()  # not started by its owner: learn the broker's state now
        return HandoffSession(info, self)

    def refusal(self) -> Reply | None:
        """The reply refusing a transaction now (None: one may start)."""
        if self.broker_up:
            return None
        return QUEUE_NOT_DURABLE if self.not_durable else QUEUE_UNAVAILABLE

    async def queue(self, envelope: Envelope, content: MessageContent) -> Reply:
        """Queue the message as it arrives; the 250 to answer, or SMTPError (451)."""
        queue_id = new_queue_id()
        digest = hashlib.sha256()
        held: list[bytes] = []
        size = 0
        async for chunk in content:
            digest.update(chunk)
            held.append(chunk)
            size += len(chunk)
            if self.blobs is not None and size > self.inline_max:
                break
        else:  # the whole message, within inline_max (or no blob store)
            entry = QueueEntry.of(envelope, sha256=digest.hexdigest(), size=size, body=b"".join(held),
                                  queue_id=queue_id)
            return await self._publish(entry, blob=False)
        assert self.blobs is not None
        sizes = [size]

        async def rest() -> AsyncIterator[bytes]:
            for chunk in held:
                yield chunk
            held.clear()
            async for chunk in content:
                digest.update(chunk)
                sizes[0] += len(chunk)
                yield chunk

        try:
            await self.blobs.write(queue_id, rest())
        except MessageAborted:
            raise
        except _FAILURES as err:
            self._failed("blob_write_failed", queue_id, envelope, err)
            raise SMTPError(451, "4.3.0", f"Cannot store the message now (queue id {queue_id}); "
                                          "try again later") from err
        entry = QueueEntry.of(envelope, sha256=digest.hexdigest(), size=sizes[0], blob_key=queue_id,
                              queue_id=queue_id)
        try:
            return await self._publish(entry, blob=True)
        except BaseException:
            await self._remove_blob(queue_id)
            raise

    async def _publish(self, entry: QueueEntry, *, blob: bool) -> Reply:
        try:
            await asyncio.wait_for(self.broker.publish(entry), self.timeout)
        except _FAILURES as err:
            if isinstance(err, BrokerUnavailable) or not isinstance(err, BrokerError):  # unreachable, or slow
                self._broker_down(type(err).__name__)
            self._failed("publish_failed", entry.queue_id, entry, err)
            raise SMTPError(451, "4.3.0", f"Queue unavailable, not queued (queue id {entry.queue_id}); "
                                          "try again later") from err
        self.counts["queued"] += 1
        log.info("event=queued queue_id=%s client=%s size=%d sha256=%s rcpts=%d blob=%s", entry.queue_id,
                 _client(entry.client), entry.size, entry.sha256, len(entry.rcpt_to), "yes" if blob else "no")
        return Reply.of(250, "2.0.0", f"queued as {entry.queue_id}")

    async def _remove_blob(self, key: str) -> None:
        """Remove a blob whose entry was not published; even if we are being
        cancelled (the thread finishes the removal whatever happens to us)."""
        assert self.blobs is not None
        removal = asyncio.ensure_future(self.blobs.delete(key))
        try:
            await asyncio.shield(removal)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # noqa: BLE001 -- the 451 stands; the blob is left for an operator
            log.error("event=blob_left queue_id=%s error=%r", key, err)

    def _failed(self, reason: str, queue_id: str, about: Any, err: BaseException) -> None:
        self.counts["failed"] += 1
        client = about.client if isinstance(about, QueueEntry) else \
            (about.session.peer if about.session is not None else None)
        log.warning("event=refused reason=%s queue_id=%s client=%s error=%s", reason, queue_id,
                    _client(client), repr(str(err) or type(err).__name__))

    def refused_at_mail(self, info: SessionInfo, reply: Reply) -> None:
        self.counts["refused"] += 1
        reason = "not_durable" if reply is QUEUE_NOT_DURABLE else "broker_down"
        log.info("event=refused reason=%s client=%s", reason, _client(info.peer))


class HandoffSession(BaseSession):
    """A ``Handoff``'s session: refuses at MAIL while the queue is unavailable,
    queues each message as it arrives."""

    def __init__(self, info: SessionInfo, handoff: Handoff) -> None:
        super().__init__(info)
        self.handoff = handoff

    def mail(self, address: str, options: MailOptions) -> Step:
        refusal = self.handoff.refusal()
        if refusal is not None:
            self.handoff.refused_at_mail(self.info, refusal)
            raise SMTPError(refusal)
        return None

    async def data_stream(self, envelope: Envelope, content: MessageContent) -> Reply:
        return await self.handoff.queue(envelope, content)

    def data(self, envelope: Envelope) -> Step:
        """Never called by the server (this session streams); code that drives
        a session by hand must not think a message it hands here was queued."""
        raise TypeError("HandoffSession queues a message as it arrives: call data_stream")

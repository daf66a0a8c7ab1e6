"""The streaming form of the backend contract: a message as it arrives.

A session that implements ``StreamingSession`` is handed each message's
content while it is being received, as an async iterator of chunks
(``MessageContent``), and answers once, at the end: its ``data_stream``
returns (the message is accepted) or raises ``SMTPError`` (refused), as
``Session.data`` does for a message held whole. This is go-smtp's
``Session.Data(io.Reader)`` in asyncio's terms. A session without it gets the
whole message in ``Envelope.content``, which the server collects from the very
same stream of chunks; that form suits small messages and simple code, this
one a message of any size: a store writes each chunk as it comes, a relay
forwards it, and no connection holds more than its buffers.

Why an iterator and not a spooled file: a spool writes the message before the
backend sees a byte of it, so a store writes it twice (spool, then its own
file) and a relay forwards nothing until the end; and writing it would block
the event loop. With the iterator each backend does the one right thing,
and a spool, where one is wanted, is a loop over it.

What a streaming session can rely on:

* ``data_stream`` starts at the message's first chunk (or at its end, for an
  empty one) and runs in a task of its own, beside the connection's; the
  envelope is complete, ``envelope.content`` is empty (also in the envelope
  ``ServerConfig.on_delivered`` is given).
* Every chunk is in order and exactly what ``Envelope.content`` would hold
  (DATA unstuffed, BDAT as framed); the iteration ends when the message is
  whole, and only then. Returning before the end is a backend error (451):
  a message read in part cannot be said to be accepted.
* If the message does not end whole (the client leaves, sends RSET between
  BDAT chunks, or the server refuses it part-way: over the size limit, a line
  too long, a bare CR or LF), the next step of the iteration raises
  ``MessageAborted``: nothing of the message may be kept. The session
  removes what it wrote (``try``/``except``/``finally``) and may let the
  exception go; the client hears the server's refusal, given once the
  session has finished.
* Flow control: once more than ``Limits.receive_buffer`` octets wait for a
  session that reads slowly, the server takes no more from the client until
  the session catches up, so a connection holds about twice that at most
  (what waits, and what the server had read meanwhile); the client's data
  deadline starts afresh then, for the wait was the server's.

In LMTP, ``LMTPStreamingSession.deliver_stream`` gives one outcome per
recipient, as ``LMTPSession.deliver`` does for a whole message. Which form a
session is asked in: in LMTP, ``deliver_stream``, else ``deliver``, else
``data_stream``, else ``data``; in SMTP, ``data_stream``, else ``data``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from ..errors import SMTPError
from ..reply import Reply
from .envelope import Envelope

__all__ = ["MessageContent", "MessageAborted", "StreamingSession", "LMTPStreamingSession"]


class MessageAborted(Exception):
    """The message did not end whole: keep nothing of it. Raised by
    ``MessageContent``'s iteration; the server expects a streaming session
    to let it (or an ``SMTPError``) out of ``data_stream``."""


# The states of a MessageContent, as the server leaves them.
_OPEN, _ENDED, _ABORTED = 0, 1, 2


class MessageContent:
    """A message's content as it arrives: ``async for chunk in content``.

    The consumer's side is the iteration, ``size``, ``buffered`` and ``ended``; the
    server's is ``put``, ``end`` and ``abort`` (and ``consumer_done``).
    One consumer at a time: it is made for the one ``data_stream`` call.
    """

    __slots__ = ("_chunks", "_buffered", "_limit", "_state", "_waiter", "_room", "_stopped", "size", "complete")

    def __init__(self, limit: int) -> None:
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._limit = limit
        self._state = _OPEN
        self._waiter: asyncio.Future[None] | None = None  # the consumer, waiting for a chunk
        self._room: asyncio.Future[None] | None = None  # the server, waiting for the consumer
        self._stopped = False  # the consumer finished: what comes is dropped
        self.size = 0  # octets received so far (all of the message, once it ended)
        self.complete = False  # the consumer iterated to the end of a whole message

    # -- the consumer's side ----------------------------------------------------

    def __aiter__(self) -> MessageContent:
        return self

    async def __anext__(self) -> bytes:
        chunks = self._chunks
        while not chunks:
            if self._state == _ENDED:
                self.complete = True
                raise StopAsyncIteration
            if self._state == _ABORTED:
                raise MessageAborted("the message did not end whole")
            self._waiter = waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        chunk = chunks.popleft()
        self._buffered -= len(chunk)
        room = self._room
        if room is not None and self._buffered <= self._limit:
            self._room = None
            if not room.done():
                room.set_result(None)
        return chunk

    @property
    def buffered(self) -> int:
        """Octets received and not yet taken by the consumer."""
        return self._buffered

    @property
    def ended(self) -> bool:
        """The message has ended whole: what is ``buffered`` is all that is
        left of it (a consumer may then take it as one piece)."""
        return self._state == _ENDED

    # -- the server's side --------------------------------------------------------

    def put(self, chunk: bytes) -> asyncio.Future[None] | None:
        """A chunk received. None, or a future to await before reading
        more from the client: the consumer has too much waiting."""
        self.size += len(chunk)
        if self._stopped or self._state != _OPEN:
            return None  # nobody will read it
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        self._wake()
        if self._buffered <= self._limit:
            return None
        if self._room is None:
            self._room = asyncio.get_running_loop().create_future()
        return self._room

    def end(self) -> None:
        """The message is whole: the iteration ends after the last chunk."""
        if self._state == _OPEN:
            self._state = _ENDED
            self._wake()

    def abort(self) -> None:
        """The message will not end whole: drop what waits, and make the
        consumer's next step raise ``MessageAborted``."""
        if self._state != _ABORTED:
            self._state = _ABORTED
            self._drop()
            self._wake()

    def consumer_done(self) -> None:
        """The consumer returned or raised: keep nothing more for it."""
        self._stopped = True
        self._drop()

    def _drop(self) -> None:
        self._chunks.clear()
        self._buffered = 0
        room = self._room
        self._room = None
        if room is not None and not room.done():
            room.set_result(None)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


@runtime_checkable
class StreamingSession(Protocol):
    async def data_stream(self, envelope: Envelope, content: MessageContent) -> Reply | None:
        """The message as it arrives (see the module doc): iterate
        ``content`` to its end and return to accept it (None, or the 2xx
        ``Reply`` to accept it with: ``250 2.0.0 queued as <id>``); raise
        SMTPError to refuse it (any other exception: ``451 4.3.0``). In
        LMTP, the same answer for every recipient."""


@runtime_checkable
class LMTPStreamingSession(Protocol):
    async def deliver_stream(self, envelope: Envelope, content: MessageContent) -> Sequence[SMTPError | None]:
        """LMTP (RFC 2033 4.2), the message as it arrives: iterate
        ``content`` to its end, then give one outcome per recipient, in
        order: None for delivered, an SMTPError for refused."""

"""The I/O requests a dialog yields, and the smallest steps built on them.

A dialog (see ``dialog.py``) is a generator: it yields ``Write(events)``,
``Read(n)`` for the next replies, ``Pull`` for the next piece of a message
given as an iterable, or ``UPGRADE`` for the TLS handshake, and is sent back
the replies (or the piece). These are that vocabulary, the one-command step every
dialog is made of, and the rule both drivers apply when a dialog fails: may
the connection be used again?
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar, Union

from ..errors import LocalProtocolError, RemoteProtocolError, SMTPError, TLSRequiredError
from ..protocol.client import PreparedWrite, Sendable
from ..reply import Reply

__all__ = [
    "Write", "Read", "Pull", "UPGRADE", "Request", "Program", "read", "read_many", "read_group", "command",
    "checked_data_reply", "leaves_connection_usable",
]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Write:
    events: Sequence[Sendable] | PreparedWrite


@dataclass(slots=True)
class Read:
    """Read ``count`` replies; the driver sends back a tuple of them. Asking
    for a pipelined group's replies at once saves a driver round per reply.

    With ``then``, the group ends in DATA and ``then`` is the message content
    that follows it, formatted ahead: the driver writes it the moment the
    core says the replies allow it (``content_allowed``), before
    handing them back, so no dialog code runs between the 354 and the
    content going out; and sets ``written`` to say it did.
    """

    count: int = 1
    then: PreparedWrite | None = None
    written: bool = False


@dataclass(frozen=True, slots=True)
class Pull:
    """The next piece of a message's content from the caller's iterable; the
    driver sends back ``bytes``, or None once it is exhausted.

    Reading an async iterable needs ``await``, which only the driver has, so
    every iterable is read by the driver (``take`` or ``take_async``), never
    by the dialog. What the iterable raises is the caller's, not the
    server's: the driver closes the connection (content may be half sent,
    and only closing ends a DATA or BDAT without delivering it) and lets the
    exception go as it was raised; the dialog never sees it.
    """

    source: Iterator[bytes] | AsyncIterator[bytes]

    def take(self) -> bytes | None:
        source = self.source
        if not isinstance(source, Iterator):
            raise TypeError("an async iterable of content needs the asyncio client")
        return _checked_piece(next(source, None))

    async def take_async(self) -> bytes | None:
        source = self.source
        if isinstance(source, Iterator):
            return _checked_piece(next(source, None))
        return _checked_piece(await anext(source, None))


def _checked_piece(piece: object) -> bytes | None:
    if piece is None or type(piece) is bytes:
        return piece
    if isinstance(piece, (bytes, bytearray, memoryview)):
        return bytes(piece)
    raise TypeError(f"message content must be an iterable of bytes, not of {type(piece).__name__}")


class _Upgrade:
    def __repr__(self) -> str:
        return "UPGRADE"


UPGRADE = _Upgrade()
Request = Union[Write, Read, Pull, _Upgrade]
Program = Generator[Request, Union[tuple[Reply, ...], bytes, None], T]


def leaves_connection_usable(error: BaseException) -> bool:
    """After ``error`` ended a dialog, may the connection be used again?

    Yes when nothing is left in flight: a command refused before it was sent
    (LocalProtocolError, TLSRequiredError) or a refusal the server answered
    (an SMTPError other than 421, which says it is closing). No for anything
    else — timeouts, cancellation, I/O and protocol errors — since a reply
    may still be on its way and would be read as the answer to another
    command.
    """
    if isinstance(error, (LocalProtocolError, TLSRequiredError)):
        return True
    return isinstance(error, SMTPError) and error.code != 421


def read_many(count: int) -> Program[tuple[Reply, ...]]:
    """The next ``count`` replies; a 421 means the server is closing: raise."""
    return (yield from read_group(Read(count)))


def read_group(request: Read) -> Program[tuple[Reply, ...]]:
    """The replies ``request`` asks for; a 421 means the server is closing: raise."""
    replies = yield request
    assert isinstance(replies, tuple)
    for reply in replies:
        if reply.code == 421:
            raise SMTPError(reply)
    assert len(replies) == request.count
    return replies


def read() -> Program[Reply]:
    """The next reply; a 421 means the server is closing: raise."""
    return (yield from read_many(1))[0]


def command(event: Sendable) -> Program[Reply]:
    yield Write([event])
    return (yield from read())


def checked_data_reply(reply: Reply) -> Reply:
    """The reply to DATA: 354, or a refusal. A positive reply that is not 354
    would report a message as delivered when no content was ever sent."""
    if reply.is_positive and reply.code != 354:
        raise RemoteProtocolError(f"the server answered DATA with {reply}, not 354")
    return reply

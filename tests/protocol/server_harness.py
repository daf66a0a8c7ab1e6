"""A minimal server driver for the ServerConnection tests, and its transcript.

``Driver`` does what a real driver does, minus the sockets: it feeds bytes,
takes events, answers each one with a fixed policy and collects the bytes it
would write. It also checks the driver contract as it goes (MessageData only
inside a content stream, a reply exactly when one is due), so every test run
through it checks the contract too.

``ContentRefused`` is checked (inside a stream, no MessageData after it, the
stream then ends in ``Rejected`` with its reply, or ``Closed``) but not
logged: whether it comes depends on how the reads were cut, and the
transcript does not.

The transcript is a list of: command events as they came; ``Content(bytes)``
where a content stream ended with ``EndOfChunk`` or ``EndOfMessage`` (the
octets since the stream, or the chunk, began); ``Refused(code, enhanced)`` for
a ``Rejected``; ``Credentials`` as they came; reply codes (ints) for the
replies the driver chose and for the core's SASL challenges (334); ``Closed()``.

Unless told otherwise the core offers STARTTLS and AUTH (PLAIN, LOGIN,
CRAM-MD5, over plaintext too), so that their dialogs can be driven here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from mailwire.protocol.events import (
    AuthChallenge, Bdat, Closed, ContentRefused, Credentials, Data, EndOfChunk, EndOfMessage, Mail, MessageData,
    NeedData, Quit, Rcpt, Rejected, StartTLS,
)
from mailwire.protocol.extensions import ServerExtensions
from mailwire.protocol.server import ServerConnection, ServerEvent
from mailwire.protocol.state import ServerState
from mailwire.reply import Reply

GREETING = Reply.of(220, None, "mx.example ESMTP")
OFFER_ALL = ServerExtensions(starttls=True, auth_mechanisms=("PLAIN", "LOGIN", "CRAM-MD5"), plaintext_auth=True)


@dataclass(frozen=True)
class Content:
    data: bytes


@dataclass(frozen=True)
class Refused:
    code: int
    enhanced: str


Entry = object
Policy = Callable[[ServerEvent, int], Reply]


def default_policy(event: ServerEvent, index: int) -> Reply:
    """What a permissive backend answers; ``index`` counts LMTP's per-recipient replies."""
    if isinstance(event, Mail):
        return Reply.of(250, "2.1.0", "Sender OK")
    if isinstance(event, Rcpt):
        if event.address.startswith("bad"):
            return Reply.of(550, "5.1.1", "No such user")
        return Reply.of(250, "2.1.5", "Recipient OK")
    if isinstance(event, Data):
        return Reply.of(354, None, "End data with <CR><LF>.<CR><LF>")
    if isinstance(event, EndOfMessage):
        return Reply.of(250, "2.0.0", f"Queued {index}")
    if isinstance(event, Quit):
        return Reply.of(221, "2.0.0", "Bye")
    if isinstance(event, StartTLS):
        return Reply.of(220, "2.0.0", "Ready to start TLS")
    if isinstance(event, Credentials):
        return _judge(event)
    return Reply.of(250, "2.0.0", "OK")


def _judge(credentials: Credentials) -> Reply:
    if credentials.username == "user" and credentials.check_password("secret"):
        return Reply.of(235, "2.7.0", "Authentication successful")
    return Reply.of(535, "5.7.8", "Authentication credentials invalid")


class Driver:
    def __init__(
        self,
        conn: ServerConnection | None = None,
        *,
        policy: Policy = default_policy,
        greeting: Reply = GREETING,
        **kwargs: object,
    ) -> None:
        kwargs.setdefault("extensions", OFFER_ALL)
        self.conn = conn if conn is not None else ServerConnection(**kwargs)  # type: ignore[arg-type]
        self.policy = policy
        self.log: list[Entry] = []
        self.out = bytearray(self.conn.send(greeting))
        self.in_content = False
        self.content = bytearray()
        self.void: Reply | None = None  # the ContentRefused of the stream under way
        self.events: list[ServerEvent] = []  # every event, MessageData included

    def feed(self, data: bytes) -> "Driver":
        self.conn.receive_data(data)
        self.pump()
        return self

    def feed_all(self, pieces: Iterable[bytes], *, close: bool = False) -> "Driver":
        for piece in pieces:
            self.feed(piece)
        if close:
            self.feed(b"")
        return self

    def pump(self) -> None:
        conn = self.conn
        if conn.state is ServerState.CLOSED:
            assert conn.next_event() == Closed()  # and nothing else, ever
            return
        if conn.state is ServerState.TLS_HANDSHAKE:
            return
        while True:
            event = conn.next_event()
            if isinstance(event, NeedData):
                assert conn.reply_due == 0
                return
            self.events.append(event)
            self._record(event)
            if isinstance(event, Closed):
                assert conn.state is ServerState.CLOSED
                return
            for index in range(conn.reply_due):
                decided = isinstance(event, (Rejected, AuthChallenge))
                reply = event.reply if decided else self.policy(event, index)
                self.out += conn.send(reply)
                if not isinstance(event, Rejected):
                    self.log.append(reply.code)
            assert conn.reply_due == 0
            if isinstance(event, Data) and conn.state is ServerState.DATA:
                self.in_content = True
            if conn.state in (ServerState.CLOSED, ServerState.TLS_HANDSHAKE):
                return  # a TLS handshake is the test's to finish: tls_established()

    def _record(self, event: ServerEvent) -> None:
        if isinstance(event, MessageData):
            assert self.in_content, "MessageData outside a content stream"
            assert event.data, "empty MessageData"
            assert self.void is None, "MessageData after ContentRefused"
            self.content += event.data
            return
        if isinstance(event, ContentRefused):
            assert self.in_content, "ContentRefused outside a content stream"
            assert self.void is None, "ContentRefused twice"
            self.void = event.reply
            return
        if self.void is not None:
            assert isinstance(event, (Rejected, Closed)), f"{event!r} ends a refused stream"
            assert not isinstance(event, Rejected) or event.reply == self.void, "Rejected with another reply"
        if isinstance(event, AuthChallenge):
            return  # its 334 is logged as it is sent
        if isinstance(event, (EndOfChunk, EndOfMessage)):
            assert self.in_content, f"{event!r} outside a content stream"
            self.log.append(Content(bytes(self.content)))
            self._end_stream()
        elif isinstance(event, Rejected):
            self.log.append(Refused(event.reply.code, str(event.reply.enhanced)))
            self._end_stream()  # a Rejected inside a stream refuses the content
        elif isinstance(event, Closed):
            self.log.append(event)
            self._end_stream()
        else:
            assert not self.in_content, f"{event!r} inside a content stream"
            self.log.append(event)
            if isinstance(event, Bdat):
                self.in_content = True

    def _end_stream(self) -> None:
        self.in_content = False
        self.content.clear()
        self.void = None

def split(wire: bytes, step: int) -> list[bytes]:
    return [wire[i:i + step] for i in range(0, len(wire), step)] or [b""]


def converse(wire: bytes, *, step: int = 0, close: bool = False, **kwargs: object) -> Driver:
    """Run ``wire`` through a fresh Driver, whole or ``step`` octets at a time."""
    driver = Driver(**kwargs)  # type: ignore[arg-type]
    pieces = split(wire, step) if step else [wire]
    return driver.feed_all(pieces, close=close)


def converse_every_way(wire: bytes, **kwargs: object) -> Driver:
    """Whole, one octet at a time, and in 7-octet pieces: all must agree."""
    whole = converse(wire, **kwargs)  # type: ignore[arg-type]
    for step in (1, 7):
        other = converse(wire, step=step, **kwargs)  # type: ignore[arg-type]
        assert other.log == whole.log, f"step {step}"
        assert other.out == whole.out, f"step {step}"
    return whole

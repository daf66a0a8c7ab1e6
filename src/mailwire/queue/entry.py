"""One accepted message as the queue holds it: ``QueueEntry``.

A front end writes an entry once the message ended and a worker reads it
back on another machine, so the entry carries everything delivery needs and
nothing that lives only in the front end's process: the queue id (a UUIDv7,
so ids sort by the time they were made and never collide), the envelope with
its ESMTP parameters (kept as the text the client sent, parsed again by the
protocol's own parser on the way back), the client's address (``info.peer``,
which behind the PROXY protocol is the real client, not HAProxy), the TLS and
AUTH facts, the body's SHA-256 and size, and the body itself: inline, or the
key of a blob written to a ``BlobStore`` before the entry.

A broker stores a flat map of field name to bytes (a Redis stream entry);
``to_fields``/``from_fields`` are that encoding. Decoding validates every
field and raises ``MalformedEntry`` naming the one at fault: a worker
dead-letters such an entry rather than guessing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from ..errors import MailwireError
from ..protocol.params import (
    MailOptions, RcptOptions, mail_params_text, parse_mail_options, parse_rcpt_options, rcpt_params_text,
)
from ..server.envelope import Address, Envelope, SessionInfo

__all__ = ["QueueEntry", "MalformedEntry", "new_queue_id", "is_queue_id", "ENTRY_VERSION"]

# The layout of the field map; a worker refuses entries of a version it does not know.
ENTRY_VERSION = 1

_QUEUE_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
N = TypeVar("N", int, float)

_SHA256 = re.compile(r"[0-9a-f]{64}")


class MalformedEntry(MailwireError, ValueError):
    """A field map that is not a queue entry; ``field`` names the culprit."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"malformed queue entry: field {field!r}: {problem}")
        self.field = field
        self.problem = problem


class _UUID7:
    """UUIDv7 (RFC 9562 5.7): 48 bits of Unix milliseconds, version 7, then
    random bits. Within one process ids also sort in the order they were
    made: in the same millisecond (or if the clock steps back) the 74 bits
    after the time count up from the last id instead of being drawn anew."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = 0
        self._last_rand = 0

    def __call__(self) -> str:
        with self._lock:
            ms = time.time_ns() // 1_000_000
            if ms > self._last_ms:
                self._last_ms = ms
                # The top bit left clear, so counting up has room before it overflows.
                self._last_rand = int.from_bytes(os.urandom(10), "big") >> 7
            else:
                self._last_rand += 1 + (int.from_bytes(os.urandom(2), "big") & 0xFFF)
                if self._last_rand >> 74:  # overflowed: borrow the next millisecond
                    self._last_ms += 1
                    self._last_rand = int.from_bytes(os.urandom(10), "big") >> 7
            ms, rand = self._last_ms, self._last_rand
        rand_a, rand_b = rand >> 62, rand & ((1 << 62) - 1)
        value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b
        return str(uuid.UUID(int=value))


new_queue_id = _UUID7()
new_queue_id.__doc__ = "A new queue id: a UUIDv7 string, sortable by creation time, unique."


def is_queue_id(text: str) -> bool:
    """Whether ``text`` is a queue id as ``new_queue_id`` writes them
    (lower-case UUIDv7); blob keys are checked with it, so no path part sneaks in."""
    return _QUEUE_ID.fullmatch(text) is not None


@dataclass(frozen=True, slots=True)
class QueueEntry:
    queue_id: str
    mail_from: str
    rcpt_to: tuple[str, ...]
    sha256: str
    size: int
    mail_options: MailOptions = field(default_factory=MailOptions)
    rcpt_options: tuple[RcptOptions, ...] = ()  # one per recipient (none given: the defaults)
    # The client: the real one behind PROXY. (host, port) or a Unix path; None if unknown.
    client: Address | None = None
    helo_name: str | None = None
    tls_version: str | None = None
    tls_cipher: str | None = None
    auth_identity: str | None = None
    auth_mechanism: str | None = None
    body: bytes | None = None  # inline, or ...
    blob_key: str | None = None  # ... the key of the body in the blob store
    received_at: float = 0.0  # Unix time the front end accepted the message
    # Which delivery attempt this is: a worker that retries later publishes the
    # entry again with attempt + 1 (written only past the first, read if there).
    attempt: int = 1

    def __post_init__(self) -> None:
        if (self.body is None) == (self.blob_key is None):
            raise ValueError("a queue entry holds its body inline or a blob key, exactly one")
        if not self.rcpt_options:  # none given: the defaults, so a decoded entry equals this one
            object.__setattr__(self, "rcpt_options", tuple(RcptOptions() for _ in self.rcpt_to))
        if len(self.rcpt_options) != len(self.rcpt_to):
            raise ValueError("rcpt_options needs one entry per recipient")

    @classmethod
    def of(cls, envelope: Envelope, *, sha256: str, size: int, body: bytes | None = None,
           blob_key: str | None = None, queue_id: str | None = None) -> QueueEntry:
        """The entry for a transaction the server completed; the body's digest
        and size are the caller's (a streaming session computes them as it goes)."""
        info = envelope.session or SessionInfo(peer=None)
        return cls(
            queue_id=queue_id or new_queue_id(), mail_from=envelope.mail_from,
            rcpt_to=tuple(envelope.rcpt_to), sha256=sha256, size=size, mail_options=envelope.mail_options,
            rcpt_options=tuple(envelope.rcpt_options), client=info.peer, helo_name=info.helo_name,
            tls_version=info.tls.version if info.tls else None, tls_cipher=info.tls.cipher if info.tls else None,
            auth_identity=info.auth_identity, auth_mechanism=info.auth_mechanism,
            body=body, blob_key=blob_key, received_at=time.time(),
        )

    @classmethod
    def inline(cls, envelope: Envelope, body: bytes, *, queue_id: str | None = None) -> QueueEntry:
        """The entry for a message held whole, its body inline."""
        return cls.of(envelope, sha256=hashlib.sha256(body).hexdigest(), size=len(body), body=body,
                      queue_id=queue_id)

    def recipients(self) -> list[tuple[str, RcptOptions]]:
        """Each recipient with its options (defaults where none were kept)."""
        return list(zip(self.rcpt_to, self.rcpt_options))

    # -- the broker's field map ------------------------------------------------

    def to_fields(self) -> dict[str, bytes]:
        """The entry as a flat map of field name to bytes (a stream entry)."""
        rcpts = [[addr, rcpt_params_text(opts).lstrip(" ")] for addr, opts in self.recipients()]
        out: dict[str, bytes] = {
            "v": str(ENTRY_VERSION).encode(),
            "id": self.queue_id.encode(),
            "from": self.mail_from.encode("utf-8", "surrogateescape"),
            "from_params": mail_params_text(self.mail_options).lstrip(" ").encode("utf-8", "surrogateescape"),
            "rcpts": _json(rcpts),
            "sha256": self.sha256.encode(),
            "size": str(self.size).encode(),
            "received_at": repr(self.received_at).encode(),
            "session": _json({
                "client": list(self.client) if isinstance(self.client, tuple) else self.client,
                "helo": self.helo_name, "tls_version": self.tls_version, "tls_cipher": self.tls_cipher,
                "auth_identity": self.auth_identity, "auth_mechanism": self.auth_mechanism,
            }),
        }
        if self.attempt != 1:
            out["attempt"] = str(self.attempt).encode()
        if self.body is not None:
            out["body"] = self.body
        else:
            assert self.blob_key is not None
            out["blob"] = self.blob_key.encode()
        return out

    @classmethod
    def from_fields(cls, fields: dict[str, bytes] | dict[bytes, bytes]) -> QueueEntry:
        """Read back what ``to_fields`` wrote; ``MalformedEntry`` names any bad field."""
        got = {(k.decode("utf-8", "replace") if isinstance(k, bytes) else k): v for k, v in fields.items()}
        if _text(got, "v") != str(ENTRY_VERSION):
            raise MalformedEntry("v", f"unknown entry version {got['v']!r}")
        queue_id = _text(got, "id")
        if not is_queue_id(queue_id):
            raise MalformedEntry("id", f"not a queue id: {queue_id!r}")
        sha256 = _text(got, "sha256")
        if not _SHA256.fullmatch(sha256):
            raise MalformedEntry("sha256", "not a hex SHA-256 digest")
        size = _number(got, "size", int)
        received_at = _number(got, "received_at", float)
        attempt = _number(got, "attempt", int) if "attempt" in got else 1
        mail_from = _text(got, "from", errors="surrogateescape")
        mail_options = _mail_options(got, "from_params")
        rcpt_to, rcpt_options = _rcpts(got)
        session = _json_field(got, "session")
        if not isinstance(session, dict):
            raise MalformedEntry("session", "not a JSON object")
        body, blob = got.get("body"), got.get("blob")
        if (body is None) == (blob is None):
            raise MalformedEntry("body", "exactly one of 'body' and 'blob' must be present")
        if body is not None and len(body) != size:
            raise MalformedEntry("body", f"{len(body)} octets where 'size' says {size}")
        blob_key = None if blob is None else _text(got, "blob")
        if blob_key is not None and not is_queue_id(blob_key):
            raise MalformedEntry("blob", f"not a blob key: {blob_key!r}")
        try:
            return cls(
                queue_id=queue_id, mail_from=mail_from, rcpt_to=rcpt_to, sha256=sha256, size=size,
                mail_options=mail_options, rcpt_options=rcpt_options, client=_address(session.get("client")),
                helo_name=_opt_str(session, "helo"), tls_version=_opt_str(session, "tls_version"),
                tls_cipher=_opt_str(session, "tls_cipher"), auth_identity=_opt_str(session, "auth_identity"),
                auth_mechanism=_opt_str(session, "auth_mechanism"), body=body, blob_key=blob_key,
                received_at=received_at, attempt=attempt,
            )
        except (TypeError, ValueError) as err:
            raise MalformedEntry("session", str(err)) from None


def _json(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogateescape")


def _text(got: dict[str, bytes], name: str, errors: str = "strict") -> str:
    if name not in got:
        raise MalformedEntry(name, "missing")
    try:
        return got[name].decode("utf-8", errors)
    except UnicodeDecodeError:
        raise MalformedEntry(name, "not UTF-8") from None


def _number(got: dict[str, bytes], name: str, kind: Callable[[str], N]) -> N:
    text = _text(got, name)
    try:
        value = kind(text)
    except ValueError:
        raise MalformedEntry(name, f"not a number: {text!r}") from None
    if not 0 <= value < float("inf"):  # also refuses NaN
        raise MalformedEntry(name, f"out of range: {text!r}")
    return value


def _mail_options(got: dict[str, bytes], name: str) -> MailOptions:
    text = _text(got, name, errors="surrogateescape")
    try:
        return parse_mail_options(text)
    except Exception as err:
        raise MalformedEntry(name, f"bad parameters {text!r}: {err}") from None


def _json_field(got: dict[str, bytes], name: str) -> object:
    try:
        return json.loads(_text(got, name, errors="surrogateescape"))
    except ValueError as err:
        raise MalformedEntry(name, f"not JSON: {err}") from None


def _rcpts(got: dict[str, bytes]) -> tuple[tuple[str, ...], tuple[RcptOptions, ...]]:
    pairs = _json_field(got, "rcpts")
    if not isinstance(pairs, list) or not pairs or not all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p) for p in pairs
    ):
        raise MalformedEntry("rcpts", "not a non-empty list of [address, parameters]")
    options = []
    for address, params in pairs:
        try:
            options.append(parse_rcpt_options(params))
        except Exception as err:
            raise MalformedEntry("rcpts", f"bad parameters for {address!r}: {err}") from None
    return tuple(a for a, _ in pairs), tuple(options)


def _address(value: object) -> Address | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list) and len(value) in (2, 4) and isinstance(value[0], str) and all(
        isinstance(x, int) and not isinstance(x, bool) for x in value[1:]
    ):
        return tuple(value)  # two or four items, checked above
    raise ValueError(f"'client' is not an address: {value!r}")


def _opt_str(session: dict[str, object], key: str) -> str | None:
    value = session.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{key!r} is not a string: {value!r}")
    return value

"""QueueEntry: ids, the field map round trip, and refusals naming the bad field."""

from __future__ import annotations

import hashlib
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailwire.protocol.params import MailOptions, RcptOptions
from mailwire.queue import MalformedEntry, QueueEntry, is_queue_id, new_queue_id
from mailwire.server.envelope import Envelope, ProxyInfo, SessionInfo, TLSInfo


def test_queue_ids_are_uuid7_sorted_and_unique() -> None:
    ids = [new_queue_id() for _ in range(5000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    parsed = uuid.UUID(ids[0])
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
    assert all(is_queue_id(i) for i in ids)
    assert not is_queue_id("../" + ids[0][3:]) and not is_queue_id(ids[0].upper()) and not is_queue_id("")


def _envelope() -> Envelope:
    info = SessionInfo(peer=("127.0.0.1", 45000), helo_name="client.example",
                       tls=TLSInfo("TLSv1.3", "TLS_AES_256_GCM_SHA384", 256),
                       auth_identity="alice", auth_mechanism="PLAIN")
    return Envelope(
        "a@example.com", MailOptions(size=5, body="8BITMIME", envid="x+y", extra=(("X-FOO", "1"),)),
        ["b@example.com", "c@example.com"],
        [RcptOptions(notify=("SUCCESS", "FAILURE"), orcpt=("rfc822", "b@example.com")), RcptOptions()],
        content=b"hi\r\n", session=info,
    )


def test_an_entry_keeps_the_envelope_the_session_and_the_body() -> None:
    entry = QueueEntry.inline(_envelope(), b"hi\r\n")
    back = QueueEntry.from_fields(entry.to_fields())
    assert back == entry
    assert back.client == ("127.0.0.1", 45000) and back.tls_version == "TLSv1.3" and back.auth_identity == "alice"
    assert back.mail_options.envid == "x+y" and back.rcpt_options[0].notify == ("SUCCESS", "FAILURE")
    assert back.sha256 == hashlib.sha256(b"hi\r\n").hexdigest() and back.size == 4


def test_behind_proxy_the_entry_names_the_real_client() -> None:
    # The server replaces info.peer with the PROXY header's source (connection.py); the entry takes info.peer.
    envelope = _envelope()
    assert envelope.session is not None
    envelope.session.proxy = ProxyInfo(2, ("203.0.113.9", 5555), ("10.0.0.1", 25), proxy=("127.0.0.1", 40000))
    envelope.session.peer = ("203.0.113.9", 5555)
    entry = QueueEntry.from_fields(QueueEntry.inline(envelope, b"x").to_fields())
    assert entry.client == ("203.0.113.9", 5555)


def test_a_blob_entry_carries_the_key_not_the_body() -> None:
    key = new_queue_id()
    entry = QueueEntry.of(_envelope(), sha256="0" * 64, size=10_000_000, blob_key=key, queue_id=key)
    fields = entry.to_fields()
    assert "body" not in fields and fields["blob"] == key.encode()
    assert QueueEntry.from_fields(fields) == entry
    with pytest.raises(ValueError):
        QueueEntry.of(_envelope(), sha256="0" * 64, size=1, body=b"x", blob_key=key)


addresses = st.text(st.characters(blacklist_categories=["Cs", "Cc"]), min_size=1, max_size=30)
clients = st.one_of(
    st.none(), st.tuples(st.ip_addresses().map(str), st.integers(0, 65535)),
    st.text(st.characters(blacklist_categories=["Cs"]), max_size=20),
)


@given(
    mail_from=st.text(st.characters(blacklist_categories=["Cs"]), max_size=40),
    rcpts=st.lists(addresses, min_size=1, max_size=5),
    body=st.binary(max_size=300),
    client=clients,
    size=st.one_of(st.none(), st.integers(0, 10**12)),
    smtputf8=st.booleans(),
    notify=st.one_of(st.none(), st.just(()), st.just(("DELAY",))),
    auth=st.one_of(st.none(), addresses),
)
def test_any_entry_survives_the_round_trip(mail_from: str, rcpts: list[str], body: bytes,
                                           client: object, size: int | None, smtputf8: bool,
                                           notify: tuple[str, ...] | None, auth: str | None) -> None:
    envelope = Envelope(mail_from, MailOptions(size=size, smtputf8=smtputf8), rcpts,
                        [RcptOptions(notify=notify) for _ in rcpts],  # type: ignore[arg-type]
                        session=SessionInfo(peer=client, auth_identity=auth))  # type: ignore[arg-type]
    entry = QueueEntry.inline(envelope, body)
    fields = entry.to_fields()
    assert all(isinstance(k, str) and isinstance(v, bytes) for k, v in fields.items())
    # A broker hands keys back as bytes (Redis does).
    assert QueueEntry.from_fields({k.encode(): v for k, v in fields.items()}) == entry


def _good() -> dict[str, bytes]:
    return QueueEntry.inline(_envelope(), b"hi\r\n").to_fields()


@pytest.mark.parametrize("field, value", [
    ("v", b"99"), ("v", None), ("id", b"../../etc/passwd"), ("id", None), ("sha256", b"abc"),
    ("size", b"-1"), ("size", b"many"), ("received_at", b"nan"), ("sha256", b"\xff\xfe"), ("from", None),
    ("from_params", b"SIZE=big"), ("rcpts", b"[]"), ("rcpts", b"not json"),
    ("rcpts", b'[["b@example.com","NOTIFY=SOMETIMES"]]'), ("session", b"[]"),
    ("session", b'{"client": ["h", "port"]}'), ("session", b'{"helo": 5}'), ("body", None),
    ("body", b"longer than size says"), ("blob", b"../x"),
])
def test_a_malformed_entry_names_its_field(field: str, value: bytes | None) -> None:
    fields = _good()
    if value is None:
        fields.pop(field)
    else:
        fields[field] = value
    if field == "blob":
        fields.pop("body")
    with pytest.raises(MalformedEntry) as caught:
        QueueEntry.from_fields(fields)
    assert caught.value.field == field and repr(field) in str(caught.value)


def test_body_and_blob_together_are_refused() -> None:
    fields = _good()
    fields["blob"] = new_queue_id().encode()
    with pytest.raises(MalformedEntry, match="exactly one"):
        QueueEntry.from_fields(fields)

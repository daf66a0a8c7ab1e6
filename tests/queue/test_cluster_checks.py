"""The end-to-end and fault tests' verdict (``check_exactly_once``) fails where it must.

A check that cannot fail would make those tests prove nothing, so it is
given, without any cluster, delivered Maildirs that break the promise each
in one way (a confirmed message missing, one delivered twice by queue id or
by content, a wrong client, a stranger) and one that keeps it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from helpers.queue_cluster import Stored, check_exactly_once, read_maildir
from helpers.queue_load import Outcome, message


def _outcomes() -> list[Outcome]:
    sent = []
    for number, status in enumerate(("queued", "queued", "refused", "broken", "broken")):
        _data, body = message(number, "tok")
        queue_id = f"id{number}" if status == "queued" else None
        sent.append(Outcome(number, "127.0.0.3", hashlib.sha256(body).hexdigest(), status, queue_id))
    return sent


def _stored(outcome: Outcome, queue_id: str | None = None, client: str = "127.0.0.3") -> Stored:
    name = queue_id or outcome.queue_id or f"late{outcome.number}"
    return Stored(name, name, client, outcome.sha256, Path(name))


def test_the_promise_kept_passes_and_is_counted() -> None:
    sent = _outcomes()
    # The two confirmed, and one whose 250 was lost (its front end died after the publish).
    tally = check_exactly_once(sent, [_stored(sent[0]), _stored(sent[1]), _stored(sent[3])])
    assert (tally.queued, tally.refused, tally.broken, tally.delivered, tally.delivered_unconfirmed) == (2, 1, 2, 3, 1)


@pytest.mark.parametrize("broken", ["missing", "same id twice", "same content twice", "wrong client",
                                    "stranger", "ids differ"])
def test_each_broken_promise_fails(broken: str) -> None:
    sent = _outcomes()
    stored = [_stored(sent[0]), _stored(sent[1])]
    if broken == "missing":
        stored.pop()
    elif broken == "same id twice":
        stored.append(Stored("id1", "id1", "127.0.0.3", sent[1].sha256, Path("other")))
    elif broken == "same content twice":
        stored.append(_stored(sent[1], queue_id="again"))
    elif broken == "wrong client":
        stored[1] = _stored(sent[1], client="127.0.0.2")
    elif broken == "stranger":
        stored.append(Stored("x", "x", "127.0.0.3", "0" * 64, Path("x")))
    else:
        stored[0] = Stored("id0", "other", "127.0.0.3", sent[0].sha256, Path("id0"))
    with pytest.raises(AssertionError):
        check_exactly_once(sent, stored)


def test_a_delivered_file_is_read_back(tmp_path: Path) -> None:
    data, body = message(7, "tok")
    (tmp_path / "new").mkdir()
    (tmp_path / "cur").mkdir()
    trace = (b"Return-Path: <load@example.org>\r\nReceived: from load-127.0.0.4 ([127.0.0.4]) by here (mailwire)"
             b" with ESMTP id 0193-ab; Sun, 6 Dec 2026 17:00:00 +0000\r\nX-Mailwire-Queue-Id: 0193-ab\r\n")
    (tmp_path / "cur" / "0193-ab.mailwire:2,S").write_bytes(trace + data)
    [stored] = read_maildir(tmp_path)
    assert (stored.name_id, stored.header_id, stored.client) == ("0193-ab", "0193-ab", "127.0.0.4")
    assert stored.body_sha256 == hashlib.sha256(body).hexdigest()

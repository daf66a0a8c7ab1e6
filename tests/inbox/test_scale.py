"""A store of 10,000 messages: rebuilt from the Maildir, listed and searched from the index.

Answers only; how fast is measured in ``bench/inbox_bench.py`` (no timed
assertion here).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mailwire.inbox import Inbox
from mailwire.inbox.summary import envelope_trace

COUNT = 10_000


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("big")
    for sub in ("tmp", "new", "cur"):
        (path / sub).mkdir()
    for i in range(COUNT):
        attachment = i % 10 == 0
        body = (f"Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\n\r\ncode {100000 + i}\r\n--B\r\n"
                f"Content-Type: application/pdf; name=r{i}.pdf\r\n\r\nPDF\r\n--B--\r\n") if attachment \
            else f"\r\ncode {100000 + i}\r\n"
        name = path / "new" / f"1700000000.M{i}P1.scale"
        trace = envelope_trace([f"user{i % 50}@example.org"], None, b"\r\n")
        name.write_bytes(b"Return-Path: <s@example.com>\r\n" + trace
                         + (f"From: sender{i % 20}@example.com\r\nTo: user{i % 50}@example.org\r\n"
                            f"Subject: Message {i}\r\n" + body).encode())
        os.utime(name, (1_700_000_000 + i, 1_700_000_000 + i))
    return path


def test_ten_thousand_messages(big: Path) -> None:
    with Inbox(big) as inbox:  # no index yet: rebuilt from the Maildir
        first = inbox.list(0, 50)
        assert first.total == first.unread == COUNT and len(first.messages) == 50
        assert [s.subject for s in first.messages[:2]] == ["Message 9999", "Message 9998"]
        assert [s.subject for s in inbox.list(COUNT - 1, 50).messages] == ["Message 0"]
        assert [s.subject for s in inbox.list(0, 50, "104242").messages] == ["Message 4242"]
        assert inbox.list(0, 50, "from:sender7@").matched == COUNT // 20
        assert inbox.list(0, 50, "has:attachment").matched == COUNT // 10
        assert inbox.list(0, 50, "r4240.pdf").matched == 1
        page = inbox.list(0, 50, "has:attachment", mailbox="user10@example.org")  # i = 10 (mod 50): all
        assert (page.total, page.matched) == (COUNT // 50, COUNT // 50)
        assert inbox.list(0, 50, "has:attachment", mailbox="user7@example.org").matched == 0
        assert inbox.sync() == (0, 0)

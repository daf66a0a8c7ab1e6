"""``inbox/release.py`` without a network: the message as it leaves (header changes made as it streams), its sender, the recipients."""

from __future__ import annotations

import io
import re

import pytest

from mailwire.inbox import release as rel
from mailwire.inbox.release import ReleaseRefused, ReleaseRelay, check_recipients, envelope_sender, pieces, recipient

RELAY = ReleaseRelay("relay.example", tls="none")
KEEP_IDS = ReleaseRelay("relay.example", tls="none", preserve_message_ids=True)
DATE = re.compile(rb"Date: [A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [+-]\d{4}")


def _out(data: bytes, relay: ReleaseRelay = RELAY) -> bytes:
    return b"".join(pieces(io.BytesIO(data), relay))


def test_the_trace_lines_bcc_date_and_message_id() -> None:
    stored = (b"Return-Path: <a@example.com>\r\nX-Mailwire-Envelope: {\"rcpt\":[\"b@example.net\",\r\n"
              b" \"c@example.net\"],\"user\":null}\r\nFrom: a@example.com\r\nBcc: c@example.net,\r\n"
              b"\td@example.net\r\nDate: Mon, 01 Jan 2024\r\n 10:00:00 +0000\r\nMessage-ID: <x@y>\r\n"
              b"X-Mailwire-Envelope: the sender's own\r\nReturn-Path: <late@example.com>\r\n"
              b"Date: a second one\r\n\r\nBody\r\nDate: not a header\r\n")
    out = _out(stored)
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"From: a@example.com"
    assert DATE.fullmatch(lines[1]) and re.fullmatch(rb"Message-ID: <[0-9a-f]{32}@mailwire>", lines[2])
    assert lines[3:] == [b"X-Mailwire-Envelope: the sender's own"]
    assert body == b"Body\r\nDate: not a header\r\n"
    kept = _out(stored, KEEP_IDS)
    assert b"\r\nMessage-ID: <x@y>\r\n" in kept and kept.count(b"Message-ID") == 1


def test_missing_fields_are_added_in_the_message_s_line_endings() -> None:
    out = _out(b"From: a@example.com\nSubject: LF only\n\nbody\n")
    head, sep, body = out.partition(b"\n\n")
    assert sep and b"\r" not in out and body == b"body\n"
    lines = head.split(b"\n")
    assert lines[:2] == [b"From: a@example.com", b"Subject: LF only"] and DATE.fullmatch(lines[2])
    assert lines[3].startswith(b"Message-ID: <")


def test_a_message_without_a_body() -> None:
    out = _out(b"From: a@example.com\r\nSubject: no body")
    assert out.startswith(b"From: a@example.com\r\nSubject: no body\r\nDate: ") and out.endswith(b"@mailwire>\r\n")
    assert out.count(b"\r\n") == 4


def test_a_header_line_longer_than_a_chunk_streams(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rel, "CHUNK", 64)
    long_kept = b"X-Long: " + b"k" * 500 + b"\r\n"
    long_dropped = b"Bcc: " + b"d" * 500 + b"@example.com\r\n"
    body = b"b" * 1000 + b"\r\n"
    stored = b"Date: x\r\n" + long_kept + long_dropped + b"Message-ID: <m@x>\r\n\r\n" + body
    chunks = list(pieces(io.BytesIO(stored), KEEP_IDS))
    assert max(len(c) for c in chunks) <= 64 + 64
    out = b"".join(chunks)
    assert DATE.match(out) and long_kept in out and b"ddd" not in out and out.endswith(b"\r\n\r\n" + body)


def test_the_envelope_sender() -> None:
    assert envelope_sender(io.BytesIO(b"From: =?utf-8?q?J=C3=B6rg?= <jorg@example.com>\r\n\r\n")) == "jorg@example.com"
    assert envelope_sender(io.BytesIO(b"From: A\r\n <a@example.com>\r\nSender: s@example.com\r\n\r\n")) == \
        "s@example.com"
    assert envelope_sender(io.BytesIO(b"Return-Path: <r@example.com>\r\nSubject: x\r\n\r\nFrom: b@x\r\n")) == ""
    assert envelope_sender(io.BytesIO(b"From: undisclosed\r\n\r\n")) == ""


def test_recipients() -> None:
    assert recipient("Dave <dave@example.net>") == "dave@example.net"
    for bad in ("dave", "a@b, c@d", "@example.net", "x@", "<a@b> NOTIFY=NEVER", "a@b\r\nRSET", 5):
        with pytest.raises(ReleaseRefused):
            recipient(bad)  # type: ignore[arg-type]
    assert check_recipients(RELAY, ["a@x.net", "A <a@x.net>", "b@x.net"]) == ["a@x.net", "b@x.net"]
    with pytest.raises(ReleaseRefused, match="no recipients"):
        check_recipients(RELAY, [])
    with pytest.raises(ReleaseRefused, match="too many"):
        check_recipients(RELAY, [f"r{i}@x.net" for i in range(rel.MAX_RECIPIENTS + 1)])
    limited = ReleaseRelay("h", tls="none", allowed_recipients=re.compile("@x\\.net$", re.I),
                           blocked_recipients=re.compile("^no@", re.I))
    with pytest.raises(ReleaseRefused, match="evil@y.org, bad@z.org"):
        check_recipients(limited, ["ok@X.NET", "evil@y.org", "bad@z.org"])
    with pytest.raises(ReleaseRefused, match="blocked.*no@x.net"):
        check_recipients(limited, ["no@x.net"])

"""A 50 MB attachment is listed, indexed and downloaded with bounded memory."""

from __future__ import annotations

import base64
import hashlib
import os
import tracemalloc
from pathlib import Path

from mailwire.inbox import Inbox

SIZE = 50 * 1024 * 1024  # octets of base64 in the stored file (about 37.5 MB decoded)
BOUND = 8 * 1024 * 1024  # the most Python may allocate at once while reading it


def _write_big(path: Path) -> str:
    """A message with a text part and a ~50 MB base64 attachment, written a
    block at a time; the attachment's sha256."""
    digest = hashlib.sha256()
    block = bytes(range(256)) * 228  # 58,368 octets: 77,824 of base64, whole lines of 76
    with open(path, "wb") as file:
        file.write(b"Return-Path: <a@example.com>\r\nFrom: a@example.com\r\nTo: b@example.com\r\n"
                   b"Subject: the big one\r\nContent-Type: multipart/mixed; boundary=BIG\r\n\r\n"
                   b"--BIG\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
                   b"--BIG\r\nContent-Type: application/octet-stream\r\n"
                   b"Content-Disposition: attachment; filename=big.bin\r\nContent-Transfer-Encoding: base64\r\n\r\n")
        written = 0
        counter = 0
        while written < SIZE:
            data = counter.to_bytes(8, "big") + block[8:]
            counter += 1
            digest.update(data)
            encoded = base64.encodebytes(data).replace(b"\n", b"\r\n")
            file.write(encoded)
            written += len(encoded)
        file.write(b"--BIG--\r\n")
    return digest.hexdigest()


def test_a_50_mb_attachment_with_bounded_memory(tmp_path: Path) -> None:
    maildir = tmp_path / "mail"
    (maildir / "new").mkdir(parents=True)
    expected = _write_big(maildir / "new" / "1.M1P1.big")
    tracemalloc.start()
    try:
        with Inbox(maildir) as inbox:  # indexes it: the structure is scanned, the attachment counted
            listed = inbox.list().messages
            indexed_peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.reset_peak()
            (summary,) = listed
            assert summary.subject == "the big one" and summary.attachments == 1
            assert summary.size == os.path.getsize(maildir / "new" / "1.M1P1.big")
            view = inbox.message(summary.id)
            assert view.text == "see attached" and view.attachments[0].filename == "big.bin"
            assert inbox.list(query="attached").matched == 1
            part = inbox.part(summary.id, view.attachments[0].part_id)
            digest = hashlib.sha256()
            size = 0
            for chunk in part.chunks:
                digest.update(chunk)
                size += len(chunk)
            assert digest.hexdigest() == expected and size == part.size
            stream_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert indexed_peak < BOUND, f"indexing held {indexed_peak} octets"
    assert stream_peak < BOUND, f"viewing and downloading held {stream_peak} octets"

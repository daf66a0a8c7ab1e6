"""A 20 MB message: its raw source and its attachment are streamed, never held whole."""

from __future__ import annotations

import hashlib
import os
import tracemalloc
import urllib.request

from .conftest import TIMEOUT, Catching, mail

ATTACHMENT = 15 * 1024 * 1024  # base64: some 20 MB on the wire and on disk


def _download(url: str) -> tuple[str, int, dict[str, str]]:
    digest, size = hashlib.sha256(), 0
    with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
        while chunk := response.read(1 << 16):
            digest.update(chunk)
            size += len(chunk)
        return digest.hexdigest(), size, dict(response.headers)


def test_a_20_mb_message_streams_in_bounded_memory(catcher: Catching) -> None:
    data = os.urandom(ATTACHMENT)
    catcher.send(mail("Big", attachments=(("big.bin", data, "application/octet-stream"),)))
    summary = catcher.get("/api/v1/messages").json()["messages"][0]
    assert summary["Size"] > 20_000_000 and summary["Attachments"] == 1
    [stored] = [os.path.join(catcher.inbox.path, "new", n) for n in os.listdir(os.path.join(catcher.inbox.path, "new"))]
    with open(stored, "rb") as file:
        expected = hashlib.sha256(file.read()).hexdigest()
    part = catcher.get(f"/api/v1/message/{summary['ID']}").json()["Attachments"][0]
    assert part["Size"] == ATTACHMENT and part["Checksums"]["SHA256"] == hashlib.sha256(data).hexdigest()
    del data

    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        raw = _download(f"{catcher.url}/api/v1/message/{summary['ID']}/raw")
        _, raw_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        attachment = _download(f"{catcher.url}/api/v1/message/{summary['ID']}/part/{part['PartID']}")
        _, part_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert raw[:2] == (expected, os.path.getsize(stored)) and int(raw[2]["Content-Length"]) == raw[1]
    assert attachment[:2] == (part["Checksums"]["SHA256"], ATTACHMENT)
    # Server and client together, in this process: a few chunks, not 20 MB.
    assert raw_peak < 8 * 1024 * 1024 and part_peak < 8 * 1024 * 1024, (raw_peak, part_peak)

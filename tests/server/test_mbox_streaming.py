"""``Mbox`` stores a message as it arrives, and the file is what ``mailbox.mbox`` writes, byte for byte.

``MboxQuoter`` (the mbox form, piece by piece) is checked with hypothesis
against the standard library writing the same message whole; the session is
driven with the message cut at every offset, in memory and spooled; then
through the server: stdlib smtplib's messages read back by ``mailbox.mbox``,
a message that does not end whole or a failed append leaving nothing (no
partial message, no spool file), a slow sender never holding the lock, and
a lock held by another process making the delivery wait.
"""

from __future__ import annotations

import asyncio
import errno
import mailbox
import os
import re
import smtplib
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailwire.limits import Limits
from mailwire.server import Envelope, Mbox, StreamingSession
from mailwire.server.backends.mbox import MboxQuoter, MboxSession
from mailwire.server.envelope import SessionInfo
from mailwire.server.streaming import MessageContent

from helpers.pieces import pieces

from .conftest import ServerThread, wait_for
from .test_backends import as_mbox, read_mbox
from .test_streaming import begin, message, stuffed

Factory = Callable[..., ServerThread]
FROM_LINE = re.compile(rb"^From (\S+) .*$", re.M)

contents = st.lists(
    st.one_of(
        st.sampled_from([b"\r", b"\n", b"\r\n", b"From ", b"\nFrom ", b"\r\nFrom ", b">From ", b"From", b"F"]),
        st.binary(max_size=6),
    ),
    max_size=24,
).map(b"".join)
cuts = st.lists(st.integers(0, 120), max_size=12)


def stdlib_form(content: bytes, sender: str = "a@example.com") -> bytes:
    """What ``mailbox.mbox.add`` writes for the message, as ``Mbox`` once
    gave it (From_ line, Return-Path, LF line endings), From_ line included."""
    with tempfile.TemporaryDirectory() as folder:
        box = mailbox.mbox(os.path.join(folder, "mbox"))
        box.add(b"From " + sender.encode() + b" Thu Jan  1 00:00:00 1970\n"
                + f"Return-Path: <{sender}>\n".encode() + content.replace(b"\r\n", b"\n"))
        box.close()
        return Path(folder, "mbox").read_bytes()


def same_date(raw: bytes) -> bytes:
    return FROM_LINE.sub(rb"From \1 Thu Jan  1 00:00:00 1970", raw)


@settings(max_examples=300, deadline=None)
@given(contents, cuts)
def test_the_quoter_writes_what_mailbox_writes(content: bytes, at: list[int]) -> None:
    quoter = MboxQuoter()
    out = quoter.feed(b"Return-Path: <a@example.com>\n")
    out += b"".join(quoter.feed(piece) for piece in pieces(content, at)) + quoter.end()
    expected = stdlib_form(content)
    assert out == expected[expected.index(b"\n") + 1:]


def envelope(content: bytes = b"", sender: str = "a@example.com") -> Envelope:
    return Envelope(sender, rcpt_to=["b@example.com"], content=content)


async def stream(session: StreamingSession, env: Envelope, parts: list[bytes]) -> None:
    content = MessageContent(1 << 20)
    for part in parts:
        content.put(part)
    content.end()
    await session.data_stream(env, content)


TRICKY = (b"Subject: tricky\r\n\r\nFrom the start\r\n>From quoted\r\nnot From here\r\n"
          b"\r\nFrom \r\nFrom\r\nbare\rCR and LF\nFrom after LF\r\nno newline at the end")


@pytest.mark.parametrize("batch", [1 << 19, 7], ids=["in-memory", "spooled"])
def test_every_cut_stores_what_the_stdlib_writes(tmp_path: Path, batch: int) -> None:
    path = tmp_path / "mbox"
    mbox = Mbox(path)
    mbox.write_batch = batch

    async def main() -> None:
        session = await mbox.new_session(SessionInfo(peer=None))
        assert isinstance(session, MboxSession) and isinstance(session, StreamingSession)
        for cut in range(len(TRICKY) + 1):
            await stream(session, envelope(), [TRICKY[:cut], TRICKY[cut:]])

    asyncio.run(main())
    mbox.close()
    assert same_date(path.read_bytes()) == stdlib_form(TRICKY) * (len(TRICKY) + 1)
    assert os.listdir(tmp_path) == ["mbox"]  # no spool left behind
    box = mailbox.mbox(path, create=False)
    assert len(box) == len(TRICKY) + 1
    box.close()


def test_smtplib_messages_read_back_by_mailbox(server_factory: Factory, tmp_path: Path) -> None:
    path, mbox, server = spooling(server_factory, tmp_path)  # the large one is spooled
    large = message(3 << 20).replace(b"line 0001", b"From 0001")
    sent = [large, b"Subject: small\r\n\r\nFrom me\r\nbye\r\n", b"Subject: no end\r\n\r\nlast line"]
    with smtplib.SMTP(*server.address, timeout=30) as client:
        for content in sent:
            client.sendmail("a@example.com", ["b@example.com"], content)
    mbox.close()
    expected = [c if c.endswith(b"\r\n") else c + b"\r\n" for c in sent]  # smtplib ends the last line
    assert read_mbox(path) == [as_mbox(c, "a@example.com") for c in expected]
    assert same_date(path.read_bytes()) == b"".join(stdlib_form(c) for c in expected)
    assert os.listdir(tmp_path) == ["mbox"]


def spooling(server_factory: Factory, tmp_path: Path, **settings: Any) -> tuple[Path, Mbox, ServerThread]:
    """An mbox whose messages are spooled beyond 64 KiB, and a server storing in it."""
    path = tmp_path / "mbox"
    mbox = Mbox(path)
    mbox.write_batch = 64 << 10
    return path, mbox, server_factory(mbox, **settings)


def spool_files(folder: Path) -> list[str]:
    return [name for name in os.listdir(folder) if name.endswith(".spool")]


def half_sent(server: ServerThread, folder: Path) -> Any:
    client = server.raw()
    begin(client)
    client.cmd("DATA", 354)
    wire = stuffed(message(2 << 20))
    client.send(wire[:1 << 20])
    assert wait_for(lambda: spool_files(folder) != [])  # spooled as it came
    return client, wire


def test_a_client_gone_mid_stream_leaves_the_mbox_and_no_spool(server_factory: Factory, tmp_path: Path) -> None:
    path, mbox, server = spooling(server_factory, tmp_path)
    client, _ = half_sent(server, tmp_path)
    client.close()
    assert wait_for(lambda: spool_files(tmp_path) == [])
    assert path.read_bytes() == b""


def test_a_size_refusal_mid_stream_leaves_the_mbox_and_no_spool(server_factory: Factory, tmp_path: Path) -> None:
    path, mbox, server = spooling(server_factory, tmp_path, limits=Limits(message_size=3 << 19))
    client, wire = half_sent(server, tmp_path)
    client.send(wire[1 << 20:])
    client.expect(552, "5.3.4")
    assert spool_files(tmp_path) == [] and path.read_bytes() == b""
    client.cmd("MAIL FROM:<a@example.com>", 250)  # the session goes on


def test_a_slow_sender_does_not_hold_the_lock(server_factory: Factory, tmp_path: Path) -> None:
    path, mbox, server = spooling(server_factory, tmp_path)
    slow, wire = half_sent(server, tmp_path)
    with smtplib.SMTP(*server.address, timeout=10) as other:  # delivered while the slow one streams
        other.sendmail("c@example.com", ["b@example.com"], b"Subject: quick\r\n\r\nquick\r\n")
    assert read_mbox(path) == [as_mbox(b"Subject: quick\r\n\r\nquick\r\n", "c@example.com")]
    slow.send(wire[1 << 20:])
    slow.expect(250)
    mbox.close()
    assert len(read_mbox(path)) == 2 and spool_files(tmp_path) == []


def test_a_failed_append_of_a_spooled_message_rolls_back(
    server_factory: Factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    path, mbox, server = spooling(server_factory, tmp_path)
    with smtplib.SMTP(*server.address, timeout=10) as client:
        client.sendmail("a@example.com", ["b@example.com"], b"Subject: first\r\n\r\nkept\r\n")
    before = path.read_bytes()
    target = os.stat(path).st_ino
    real_write = os.write
    writes: list[int] = []

    def write(fd: int, data: Any) -> int:
        if os.fstat(fd).st_ino == target:
            writes.append(len(data))
            if len(writes) == 3:  # the From_ line and two blocks of the copy went in
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    with smtplib.SMTP(*server.address, timeout=30) as client:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            client.sendmail("a@example.com", ["b@example.com"], message(3 << 20))
    assert refused.value.smtp_code == 452
    assert path.read_bytes() == before and spool_files(tmp_path) == []
    assert not os.path.exists(str(path) + ".lock")


LOCKER = """
import mailbox, sys, time
box = mailbox.mbox(sys.argv[1])
box.lock()
print("locked", flush=True)
sys.stdin.readline()
box.unlock()
box.close()
"""


@pytest.mark.skipif(sys.platform == "win32", reason="fcntl")
def test_a_lock_held_by_another_process_is_waited_for(tmp_path: Path) -> None:
    path = tmp_path / "mbox"
    mbox = Mbox(path)
    mbox.lock_timeout = 0.3
    locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert locker.stdout is not None and locker.stdout.readline() == b"locked\n"

        async def deliver() -> None:
            session = await mbox.new_session(SessionInfo(peer=None))
            assert isinstance(session, StreamingSession)
            await stream(session, envelope(), [b"Subject: waited\r\n\r\n", b"body\r\n"])

        with pytest.raises(Exception) as busy:
            asyncio.run(deliver())
        assert getattr(busy.value, "code", None) == 450
        assert path.read_bytes() == b""
    finally:
        assert locker.stdin is not None
        locker.stdin.write(b"\n")
        locker.stdin.close()
        locker.wait(10)
    asyncio.run(deliver())
    mbox.close()
    assert read_mbox(path) == [as_mbox(b"Subject: waited\r\n\r\nbody\r\n", "a@example.com")]

"""``Maildir`` stores a message as it arrives: the bytes are the bytes sent, a refusal leaves no file, memory stays flat.

The server streams each message to ``MaildirSession.data_stream``, which
writes it to ``tmp/`` in batches by worker threads and links it into ``new/``
at the end. Peers: the standard library's ``smtplib``, aiosmtplib, mailwire's
client (BDAT) and raw sockets (to cut the message where a test needs it).
``MaildirFile`` is also driven directly, cut at every offset, against what
the whole-message path (``Maildir.store``) writes. One test runs
``mailwire serve --maildir`` with a 200 MB message and reads its peak RSS.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import smtplib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import aiosmtplib
import pytest

import mailwire
from mailwire.limits import Limits
from mailwire.server import Envelope, Maildir, StreamingSession
from mailwire.server.backends.maildir import MaildirFile, MaildirSession
from mailwire.server.envelope import SessionInfo

from helpers.raw_smtp import in_data

from .conftest import RawClient, ServerThread, wait_for
from .test_cli_serve import Serve, serve  # noqa: F401 - the fixture
from .test_streaming import begin, bdat, message, sha, stuffed

Factory = Callable[..., ServerThread]
RETURN_PATH = b"Return-Path: <a@example.com>\r\n"


def stored(box: Path) -> list[bytes]:
    return sorted((box / "new" / name).read_bytes() for name in os.listdir(box / "new"))


def leftovers(box: Path) -> list[str]:
    return os.listdir(box / "tmp") + os.listdir(box / "new")


def test_a_maildir_session_streams() -> None:
    session = asyncio.run(Maildir.new_session(Maildir.__new__(Maildir), SessionInfo(peer=None)))
    assert isinstance(session, MaildirSession) and isinstance(session, StreamingSession)


# -- the bytes stored are the bytes sent -------------------------------------------------


def test_smtplib_data_is_stored_byte_identical(server_factory: Factory, tmp_path: Path) -> None:
    box = tmp_path / "Maildir"
    server = server_factory(Maildir(box))
    content = message(3 << 20)
    with smtplib.SMTP(*server.address, timeout=30) as client:
        client.sendmail("a@example.com", ["b@example.com"], content)
    [kept] = stored(box)
    assert sha(kept) == sha(RETURN_PATH + content)
    assert os.listdir(box / "tmp") == []
    # What describes the message is in its envelope, though its content is not.
    [envelope] = server.messages.wait_for(1)
    assert envelope.content == b"" and envelope.size == len(content)
    assert envelope.head == b"Subject: streamed\r\n\r\n" == envelope.header_section()


def test_aiosmtplib_data_is_stored_byte_identical(server_factory: Factory, tmp_path: Path) -> None:
    box = tmp_path / "Maildir"
    server = server_factory(Maildir(box))
    content = message(2 << 20)
    host, port = server.address
    asyncio.run(aiosmtplib.send(content, sender="a@example.com", recipients=["b@example.com"],
                                hostname=host, port=port, start_tls=False, timeout=30))
    assert [sha(s) for s in stored(box)] == [sha(RETURN_PATH + content)]


def test_mailwire_bdat_is_stored_byte_identical(server_factory: Factory, tmp_path: Path) -> None:
    box = tmp_path / "Maildir"
    server = server_factory(Maildir(box))
    contents = [message(2 << 20), message(100), message(700 << 10, dots=False)]
    with mailwire.SMTPClient(*server.address, tls="none", timeout=30) as client:
        assert client.capabilities.chunking  # so it sends BDAT
        for content in contents:
            client.send(content, mail_from="a@example.com", rcpt_to=["b@example.com"])
    assert sorted(sha(s) for s in stored(box)) == sorted(sha(RETURN_PATH + c) for c in contents)


class Tiny(Maildir):
    write_batch = 1  # every chunk its own write: the first line's end split across them


def test_raw_bdat_chunks_cut_inside_the_first_line(server_factory: Factory, tmp_path: Path) -> None:
    box = tmp_path / "Maildir"
    server = server_factory(Tiny(box))
    client = server.raw()
    begin(client)
    parts = [b"Subj", b"ect: x\r", b"\n\r\n", b"body\r\n"]
    for i, part in enumerate(parts):
        bdat(client, part, last=i == len(parts) - 1)
        client.expect(250)
    assert stored(box) == [RETURN_PATH + b"".join(parts)]


MESSAGES = [
    b"Subject: crlf\r\n\r\nbody\r\n.line\r\n",
    b"Subject: lf\n\nbody\n",
    b"\nstarts with a line feed\r\n",
    b"no line ends",
    b"",
]


def whole(box: Path, content: bytes) -> bytes:
    """What ``Maildir.store`` (the message held whole) writes for ``content``."""
    Maildir(box).store(Envelope("a@example.com", rcpt_to=["b@example.com"], content=content))
    [kept] = stored(box)
    return kept


@pytest.mark.parametrize("content", MESSAGES)
def test_every_cut_stores_what_the_whole_message_stores(tmp_path: Path, content: bytes) -> None:
    expected = whole(tmp_path / "whole", content)
    maildir = Maildir(tmp_path / "streamed")
    for cut in range(len(content) + 1):
        for second in range(cut, len(content) + 1):
            file = MaildirFile(maildir, Envelope("a@example.com", content=b""))
            file.write([content[:cut]])
            file.write([content[cut:second]])
            name = file.commit([content[second:]])
            path = tmp_path / "streamed" / "new" / name
            assert path.read_bytes() == expected, (cut, second)
            path.unlink()
    assert leftovers(tmp_path / "streamed") == []


# -- refused part-way, failed or gone: nothing stored -----------------------------------


def send_part(server: ServerThread, size: int, box: Path) -> tuple[RawClient, bytes]:
    """A client in DATA that has sent ``size`` octets, once they are in a file in tmp/."""
    client = server.raw()
    begin(client)
    client.cmd("DATA", 354)
    wire = stuffed(message(3 << 20))
    client.send(wire[:size])
    assert wait_for(lambda: os.listdir(box / "tmp") != [])  # written as it came
    return client, wire


def test_size_refusal_mid_stream_leaves_no_file(server_factory: Factory, tmp_path: Path) -> None:
    box = tmp_path / "Maildir"
    server = server_factory(Tiny(box), limits=Limits(message_size=1 << 20))
    client, wire = send_part(server, 900 << 10, box)
    client.send(wire[900 << 10:])
    client.expect(552, "5.3.4")
    assert wait_for(lambda: leftovers(box) == [])
    client.cmd("MAIL FROM:<a@example.com>", 250)


def test_client_gone_mid_stream_leaves_no_file(server_factory: Factory, tmp_path: Path) -> None:
    box = tmp_path / "Maildir"
    server = server_factory(Tiny(box))
    client, _ = send_part(server, 900 << 10, box)
    client.close()
    assert wait_for(lambda: leftovers(box) == [])


def test_a_full_disk_mid_stream_is_452_and_leaves_no_file(
    server_factory: Factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written: list[int] = []
    real_write = MaildirFile.write

    def write(self: MaildirFile, chunks: list[bytes]) -> None:
        real_write(self, chunks)
        written.append(1)
        if len(written) == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(MaildirFile, "write", write)
    box = tmp_path / "Maildir"
    server = server_factory(Tiny(box))
    client = server.raw()
    begin(client)
    client.cmd("DATA", 354)
    client.send(stuffed(message(2 << 20)))
    client.expect(452, "4.3.1")
    assert leftovers(box) == [] and len(written) == 3


def test_stopping_the_server_mid_stream_leaves_no_file(server_factory: Factory, tmp_path: Path) -> None:
    box = tmp_path / "Maildir"
    server = server_factory(Tiny(box), grace=0.2)
    send_part(server, 900 << 10, box)
    server.stop()  # cancelled: the thread writing finishes, then the file goes
    assert wait_for(lambda: leftovers(box) == [])


# -- a large message costs no more memory than its batches -----------------------------


def peak_rss(pid: int) -> int:
    """The process's peak resident set (VmHWM), in octets."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


BLOCK = b"".join(b"line %07d of a large message, to fill it with text\r\n" % i for i in range(19000))  # ~1 MB


def lines(blocks: int) -> Iterator[bytes]:
    """A message of ``blocks`` blocks of CRLF lines (none starting with a period)."""
    yield b"Subject: large\r\n\r\n"
    for _ in range(blocks):
        yield BLOCK


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads /proc")
def test_a_200_mb_message_is_stored_with_flat_memory(serve: Callable[..., Serve], tmp_path: Path) -> None:
    blocks = 200
    size = len(b"Subject: large\r\n\r\n") + blocks * len(BLOCK)  # 209 MB
    process = serve("--maildir", str(tmp_path / "Maildir"), "--port", "0", "--max-size", str(2 * size))
    before = peak_rss(process.proc.pid)
    digest = hashlib.sha256(RETURN_PATH)
    with in_data(("127.0.0.1", process.port), "a@example.com", "b@example.com") as (sock, reply):
        for part in lines(blocks):
            digest.update(part)
            sock.sendall(part)
        sock.sendall(b".\r\n")
        assert reply().startswith(b"250")
    after = peak_rss(process.proc.pid)
    [name] = os.listdir(tmp_path / "Maildir" / "new")
    kept = hashlib.sha256()
    with open(tmp_path / "Maildir" / "new" / name, "rb") as file:
        while block := file.read(1 << 20):
            kept.update(block)
    assert kept.hexdigest() == digest.hexdigest()
    growth = after - before
    print(f"\nserve --maildir, {size >> 20} MB message: peak RSS {before >> 20} MB before, "
          f"{after >> 20} MB after (+{growth >> 20} MB)", file=sys.stderr)
    assert growth < size // 8  # 25 MB: the batches and buffers, never the message
    line = process.line()
    assert line is not None and line.endswith(f'subject="large" size={size}'), line
    process.stop()


# -- what describes a streamed message: its size and header section ----------------------


def test_a_streamed_envelope_keeps_its_size_and_a_header_cut_across_chunks(
    server_factory: Factory, tmp_path: Path
) -> None:
    box = tmp_path / "Maildir"
    server = server_factory(Maildir(box))
    client = server.raw()
    begin(client)
    parts = [b"Subject: cut\r", b"\nX-Long: " + b"y" * 800 + b"\r\n\r", b"\nFrom: not a header\r\n\r\n"]
    for i, part in enumerate(parts):
        bdat(client, part, last=i == len(parts) - 1)
        client.expect(250)
    [envelope] = server.messages.wait_for(1)
    assert envelope.content == b"" and envelope.size == sum(map(len, parts))
    assert envelope.head == b"".join(parts)[: -len(b"From: not a header\r\n\r\n")]
    assert stored(box) == [RETURN_PATH + b"".join(parts)]


def test_the_head_stops_at_its_limit(server_factory: Factory, tmp_path: Path) -> None:
    from mailwire.server.envelope import HEAD_LIMIT

    box = tmp_path / "Maildir"
    server = server_factory(Maildir(box), limits=Limits(text_line=0))
    client = server.raw()
    begin(client)
    content = b"X: " + b"z" * (HEAD_LIMIT + 10) + b"\r\n\r\nbody\r\n"
    bdat(client, content[:1000])
    client.expect(250)
    bdat(client, content[1000:], last=True)
    client.expect(250)
    [envelope] = server.messages.wait_for(1)
    assert envelope.head == content[:HEAD_LIMIT] and envelope.size == len(content)


@pytest.mark.parametrize("content", [b"Subject: a\r\n\r\nbody\r\n", b"Subject: lf\n\nbody\n", b"no end", b""])
def test_header_section_of_a_whole_message(content: bytes) -> None:
    envelope = Envelope("a@x", content=content)
    assert envelope.size == len(content)
    end = min((i + n for i, n in ((content.find(b"\r\n\r\n"), 4), (content.find(b"\n\n"), 2)) if i >= 0),
              default=len(content))
    assert envelope.header_section() == content[:end]


# -- cancelled: the file goes, now or once its thread is done ---------------------------


@pytest.mark.parametrize("where", ["waiting for a chunk", "in the worker thread"])
def test_a_cancelled_session_leaves_no_file(tmp_path: Path, where: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from mailwire.server import MessageContent

    box = tmp_path / "Maildir"
    maildir = Tiny(box)
    release = threading.Event()
    real_write = MaildirFile.write

    def write(self: MaildirFile, chunks: list[bytes]) -> None:
        real_write(self, chunks)
        if where == "in the worker thread" and b"second" in b"".join(chunks):
            release.wait(10)  # the session is cancelled while the thread writes

    monkeypatch.setattr(MaildirFile, "write", write)

    async def main() -> None:
        session = MaildirSession(SessionInfo(peer=None), maildir)
        content = MessageContent(1 << 20)
        task = asyncio.ensure_future(session.data_stream(Envelope("a@example.com"), content))
        content.put(b"Subject: first\r\n")
        assert await wait_async(lambda: os.listdir(box / "tmp") != [])
        content.put(b"second\r\n")
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        if where == "in the worker thread":
            assert os.listdir(box / "tmp") != []  # the thread still has it
            release.set()
        assert await wait_async(lambda: leftovers(box) == [])

    asyncio.run(main())


async def wait_async(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True

"""S3Blobs against moto's S3 server (an S3 emulator on loopback; MinIO cannot be
installed here): round trips, multipart, all or nothing, keys, failures as
OSError, a missing object as FileNotFoundError; then a Handoff and a Worker on
one bucket with a real redis-server, in process and as ``mailwire`` commands."""

from __future__ import annotations

import asyncio
import hashlib
import os
import smtplib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from mailwire.queue import BlobStore, new_queue_id

from helpers.processes import MailwireProcess, free_ports
from helpers.redis_server import RedisServer

pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")
from mailwire.queue.s3_blobs import S3Blobs  # noqa: E402

BUCKET = "mail-blobs"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """moto's S3 server on a free loopback port, with one bucket; its endpoint URL."""
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)
    port = free_ports(1)[0]
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        import boto3
        import urllib.request
        # moto's state is the process's: start from none
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=10)
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        server.stop()


def _objects(endpoint: str) -> list[str]:
    import boto3
    listing = boto3.client("s3", endpoint_url=endpoint).list_objects_v2(Bucket=BUCKET)
    return sorted(item["Key"] for item in listing.get("Contents", []))


async def _chunks(*parts: bytes, fail_after: int | None = None, pause: float = 0) -> AsyncIterator[bytes]:
    for n, part in enumerate(parts):
        if n == fail_after:
            raise OSError("the client went away")
        await asyncio.sleep(pause)
        yield part


async def _read(blobs: S3Blobs, key: str) -> bytes:
    return b"".join([chunk async for chunk in blobs.read(key)])


def test_write_read_delete_with_a_multipart_body(s3: str) -> None:
    blobs = S3Blobs(BUCKET, "q/", endpoint_url=s3, part_size=5 * 1024 * 1024)  # S3's smallest part
    assert isinstance(blobs, BlobStore)
    small, large = new_queue_id(), new_queue_id()
    big = os.urandom(11 * 1024 * 1024)  # three parts, and past the spool's memory bound

    async def main() -> None:
        assert await blobs.write(small, _chunks(b"head\r\n", b"tail")) == 10
        assert await blobs.write(large, _chunks(*(big[i:i + 65536] for i in range(0, len(big), 65536)))) \
            == len(big)
        assert sorted(_objects(s3)) == sorted([f"q/{small}", f"q/{large}"])
        assert await _read(blobs, small) == b"head\r\ntail"
        assert hashlib.sha256(await _read(blobs, large)).digest() == hashlib.sha256(big).digest()
        assert await blobs.delete(large) is True
        assert await blobs.delete(large) is False
        assert _objects(s3) == [f"q/{small}"]

    asyncio.run(main())


def test_a_failed_or_cancelled_write_leaves_no_object(s3: str) -> None:
    blobs = S3Blobs(BUCKET, endpoint_url=s3)

    async def main() -> None:
        with pytest.raises(OSError, match="went away"):
            await blobs.write(new_queue_id(), _chunks(b"a" * 1000, b"b", fail_after=1))
        writing = asyncio.ensure_future(blobs.write(new_queue_id(), _chunks(*[b"x" * 1000] * 100, pause=0.01)))
        await asyncio.sleep(0.1)
        writing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await writing
        # Cancelled while the upload runs in its thread: the object is deleted once it is made.
        key = new_queue_id()
        uploading = asyncio.ensure_future(blobs.write(key, _chunks(os.urandom(3 * 1024 * 1024))))
        await asyncio.sleep(0.05)  # spooled, most likely uploading
        uploading.cancel()
        try:
            await uploading
        except asyncio.CancelledError:
            # The upload's thread runs on: once it (and every thread of the
            # loop) ended, the object is gone or its removal under way.
            await asyncio.get_running_loop().shutdown_default_executor()
            deadline = time.monotonic() + 10
            while _objects(s3) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert _objects(s3) == []
            return
        else:  # finished before the cancel reached it: a whole object
            assert await _read(blobs, key) and _objects(s3) == [key]
            await blobs.delete(key)
        assert _objects(s3) == []

    asyncio.run(main())


def test_keys_are_queue_ids(s3: str) -> None:
    blobs = S3Blobs(BUCKET, endpoint_url=s3)

    async def main() -> None:
        for bad in ("../x", "", "a/b", "not-an-id"):
            with pytest.raises(ValueError, match="not a blob key"):
                await blobs.write(bad, _chunks(b"x"))
            with pytest.raises(ValueError):
                await blobs.delete(bad)
            with pytest.raises(ValueError):
                await _read(blobs, bad)
        assert _objects(s3) == []

    asyncio.run(main())


def test_a_missing_object_or_bucket_and_a_stopped_server(s3: str) -> None:
    async def main() -> None:
        blobs = S3Blobs(BUCKET, endpoint_url=s3)
        with pytest.raises(FileNotFoundError, match="no such object"):
            await _read(blobs, new_queue_id())
        nowhere = S3Blobs("no-such-bucket", endpoint_url=s3)
        with pytest.raises(OSError, match="no-such-bucket.*NoSuchBucket"):
            await nowhere.write(new_queue_id(), _chunks(b"x"))
        port = free_ports(1)[0]  # nothing listens there
        down = S3Blobs(BUCKET, endpoint_url=f"http://127.0.0.1:{port}", timeout=1.0)
        for call in (down.write(new_queue_id(), _chunks(b"x")), _read(down, new_queue_id()),
                     down.delete(new_queue_id())):
            with pytest.raises(OSError, match=f"s3://{BUCKET}/") as raised:
                await asyncio.wait_for(call, 30)
            assert not isinstance(raised.value, FileNotFoundError)

    asyncio.run(main())


def _message(size: int, subject: str) -> bytes:
    head = f"From: alice@example.com\r\nTo: bob@example.org\r\nSubject: {subject}\r\n\r\n".encode()
    return head + (b"x" * 76 + b"\r\n") * (size // 78) + b"end\r\n"


def _queued_as(reply: bytes) -> str:
    text = reply.decode()
    assert text.startswith("2.0.0 queued as "), text
    return text.rsplit(" ", 1)[1]


def test_a_handoff_and_a_worker_share_a_bucket(s3: str, redis_server: RedisServer, tmp_path: Path) -> None:
    pytest.importorskip("redis")
    from mailwire.queue.deliver import MaildirDeliverer
    from mailwire.queue.handoff import Handoff
    from mailwire.queue.redis_broker import RedisBroker
    from mailwire.queue.worker import Worker
    from mailwire.testing import ServerThread

    from worker_helpers import maildir_files, run_until

    message = _message(300_000, "large")  # over the inline threshold: a blob
    handoff = Handoff(RedisBroker.from_url(redis_server.url, timeout=5), S3Blobs(BUCKET, "b/", endpoint_url=s3),
                      timeout=5)
    server = ServerThread(handoff).start()
    assert server.loop is not None
    asyncio.run_coroutine_threadsafe(handoff.start(), server.loop).result(15)
    try:
        with smtplib.SMTP(*server.address, timeout=30) as client:
            client.ehlo("client.example")
            assert client.mail("alice@example.com")[0] == 250
            assert client.rcpt("bob@example.org")[0] == 250
            code, reply = client.data(message)
        assert code == 250
        queue_id = _queued_as(reply)
        assert _objects(s3) == [f"b/{queue_id}"]  # the body, whole, in the bucket
    finally:
        asyncio.run_coroutine_threadsafe(handoff.close(), server.loop).result(15)
        server.stop()

    async def deliver() -> None:
        broker = RedisBroker.from_url(redis_server.url, timeout=5)
        worker = Worker(broker, MaildirDeliverer(tmp_path / "mail"), blobs=S3Blobs(BUCKET, "b/", endpoint_url=s3))
        try:
            await run_until(worker, lambda: bool(maildir_files(tmp_path / "mail")) and not _objects(s3))
        finally:
            await broker.close()

    asyncio.run(deliver())
    stored = maildir_files(tmp_path / "mail")
    assert list(stored) == [queue_id] and len(stored[queue_id]) == 1
    assert stored[queue_id][0].endswith(message)
    assert _objects(s3) == []  # deleted once delivered


def test_serve_and_worker_commands_with_s3_blobs(s3: str, redis_server: RedisServer, tmp_path: Path) -> None:
    pytest.importorskip("redis")
    from worker_helpers import maildir_files

    port = free_ports(1)[0]
    blobs = ["--queue-blobs", f"s3://{BUCKET}/front", "--queue-blobs-endpoint", s3]
    front = MailwireProcess("front", ["serve", "--no-web", "--port", str(port), "--queue", redis_server.url,
                                      "--queue-inline-max", "1000", *blobs], tmp_path, ready="listening on")
    worker = MailwireProcess("worker", ["worker", "--queue", redis_server.url, "--maildir", str(tmp_path / "mail"),
                                        *blobs], tmp_path, ready="delivering from")
    message = _message(50_000, "via the commands")
    try:
        front.start()
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            assert client.sendmail("alice@example.com", ["bob@example.org"], message) == {}
        assert _objects(s3) and _objects(s3)[0].startswith("front/")
        worker.start()
        deadline = time.monotonic() + 30
        while (not maildir_files(tmp_path / "mail") or _objects(s3)) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        worker.stop()
        front.stop()
    stored = maildir_files(tmp_path / "mail")
    assert len(stored) == 1, front.output() + worker.output()
    assert next(iter(stored.values()))[0].endswith(message)
    assert _objects(s3) == []


NO_BOTO3 = "import sys; sys.modules['boto3'] = None; from mailwire.cli.main import main; sys.exit(main(sys.argv[1:]))"


@pytest.mark.parametrize("command", [["worker", "--maildir", "m"], ["serve", "--no-web", "--port", "0"]])
@pytest.mark.parametrize("blobs, message, without_boto3", [
    (["--queue-blobs", "s3://"], "expected s3://BUCKET[/PREFIX], not 's3://'", False),
    (["--queue-blobs", "s3://Bad_Bucket/x"], "expected s3://BUCKET[/PREFIX]", False),
    (["--queue-blobs", "dir", "--queue-blobs-endpoint", "http://h"], "--queue-blobs-endpoint needs", False),
    (["--queue-blobs", "s3://b", "--queue-blobs-endpoint", "h:9000"], "expected an http:// or https://", False),
    (["--queue-blobs", "s3://bucket"], "needs boto3: pip install 'mailwire[s3]'", True),
], ids=["empty", "bad-bucket", "endpoint-without-s3", "endpoint-not-url", "no-boto3"])
def test_bad_blob_options_are_one_line(command: list[str], blobs: list[str], message: str,
                                       without_boto3: bool) -> None:
    import subprocess
    import sys

    pytest.importorskip("redis")
    start = ["-c", NO_BOTO3] if without_boto3 else ["-m", "mailwire"]
    result = subprocess.run([sys.executable, *start, *command, "--queue", "redis://127.0.0.1:1/s", *blobs],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr

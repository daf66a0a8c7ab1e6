"""DirectoryBlobs: streamed durable writes, all or nothing; reads; deletes; keys checked."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailwire.queue import BlobStore, DirectoryBlobs, is_queue_id, new_queue_id


async def _chunks(*parts: bytes, fail_after: int | None = None) -> AsyncIterator[bytes]:
    for n, part in enumerate(parts):
        if n == fail_after:
            raise OSError("the client went away")
        await asyncio.sleep(0)
        yield part


async def _read(blobs: DirectoryBlobs, key: str) -> bytes:
    return b"".join([chunk async for chunk in blobs.read(key)])


def _files(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())


def test_write_read_delete(tmp_path: Path) -> None:
    blobs = DirectoryBlobs(tmp_path / "blobs")
    assert isinstance(blobs, BlobStore)
    key = new_queue_id()
    big = os.urandom(600_000)  # more than one read chunk

    async def main() -> None:
        assert await blobs.write(key, _chunks(b"head\r\n", big, b"tail")) == len(big) + 10
        assert _files(tmp_path / "blobs") == [key]  # nothing left in .tmp
        data = await _read(blobs, key)
        assert hashlib.sha256(data).digest() == hashlib.sha256(b"head\r\n" + big + b"tail").digest()
        assert await blobs.delete(key) is True
        assert await blobs.delete(key) is False
        with pytest.raises(FileNotFoundError):
            await _read(blobs, key)

    asyncio.run(main())


def test_a_failed_or_cancelled_write_leaves_nothing(tmp_path: Path) -> None:
    blobs = DirectoryBlobs(tmp_path)

    async def endless() -> AsyncIterator[bytes]:
        while True:
            yield b"x" * 65536
            await asyncio.sleep(0.001)

    async def main() -> None:
        key = new_queue_id()
        with pytest.raises(OSError, match="went away"):
            await blobs.write(key, _chunks(b"a", b"b", b"c", fail_after=2))
        assert _files(tmp_path) == []
        task = asyncio.ensure_future(blobs.write(key, endless()))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(200):  # a thread still writing removes its file once done
            if not _files(tmp_path):
                break
            await asyncio.sleep(0.01)
        assert _files(tmp_path) == []

    asyncio.run(main())


def test_a_write_that_cannot_be_committed_leaves_nothing(tmp_path: Path) -> None:
    blobs = DirectoryBlobs(tmp_path)
    key = new_queue_id()
    (tmp_path / key).mkdir()  # the rename onto it fails

    async def main() -> None:
        with pytest.raises(OSError):
            await blobs.write(key, _chunks(b"data"))

    asyncio.run(main())
    assert _files(tmp_path) == []


_ID = "01a24c17-40c4-73e6-9fb1-1168de62f487"  # a fixed one: xdist's workers must collect the same names


@pytest.mark.parametrize("key", ["../escape", "/etc/passwd", "", ".tmp", "a/b", _ID.upper(),
                                 _ID + "/..", "..", _ID + "\x00", "../" + _ID])
def test_keys_that_are_not_queue_ids_are_refused(tmp_path: Path, key: str) -> None:
    assert is_queue_id(_ID)  # the rest are variations on a good key
    blobs = DirectoryBlobs(tmp_path / "blobs")

    async def main() -> None:
        with pytest.raises(ValueError, match="not a blob key"):
            await blobs.write(key, _chunks(b"x"))
        with pytest.raises(ValueError, match="not a blob key"):
            await _read(blobs, key)
        with pytest.raises(ValueError, match="not a blob key"):
            await blobs.delete(key)

    asyncio.run(main())
    assert _files(tmp_path) == []


def test_a_blob_whose_directory_cannot_be_synced_is_not_left(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mailwire.queue.blobs as module

    def broken(path: str) -> None:
        raise OSError("EIO")

    monkeypatch.setattr(module, "fsync_directory", broken)
    blobs = DirectoryBlobs(tmp_path)

    async def main() -> None:
        with pytest.raises(OSError, match="EIO"):
            await blobs.write(new_queue_id(), _chunks(b"data"))

    asyncio.run(main())
    assert _files(tmp_path) == []

"""Bodies too large to ride inside a queue entry: ``BlobStore``.

A front end writes the body *before* it publishes the entry that names it,
and only a complete, durable blob may ever be named: so a blob is written
to a temporary file, fsynced, renamed to its key and its directory fsynced
(``fsync_directory``, the server's stores' own), and a write that fails or
is cancelled leaves nothing behind. Keys are queue ids, checked as such, so
no key can name a path outside the store. Writes stream: chunks come from
an async iterator and go to disk in worker threads, the event loop never
waiting on the disk. ``DirectoryBlobs`` is a directory, on one machine or on
a volume the workers share; an S3-compatible store is another ``BlobStore``.
"""

from __future__ import annotations

import asyncio
import functools
import os
import secrets
from collections.abc import AsyncIterable, AsyncIterator
from typing import IO, Any, Protocol, runtime_checkable

from ..server.backends.store import fsync_directory
from .entry import is_queue_id

__all__ = ["BlobStore", "DirectoryBlobs", "CHUNK"]

CHUNK = 256 * 1024  # what a read hands out at a time


@runtime_checkable
class BlobStore(Protocol):
    async def write(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        """Store the chunks under ``key``, durably, all or nothing; octets written."""
        ...

    def read(self, key: str) -> AsyncIterator[bytes]:
        """The blob's bytes, in chunks (``FileNotFoundError`` if none)."""
        ...

    async def delete(self, key: str) -> bool:
        """Remove the blob; whether there was one."""
        ...


class DirectoryBlobs:
    """Blobs as files in ``path`` (made if missing); temporary files in ``path/.tmp``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._tmp = os.path.join(self.path, ".tmp")
        os.makedirs(self._tmp, exist_ok=True)

    def _file(self, key: str) -> str:
        if not is_queue_id(key):
            raise ValueError(f"not a blob key (a queue id): {key!r}")
        return os.path.join(self.path, key)

    async def write(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        final = self._file(key)
        tmp = os.path.join(self._tmp, f"{key}.{secrets.token_hex(6)}")
        opening = asyncio.ensure_future(asyncio.to_thread(open, tmp, "xb"))
        try:
            file = await asyncio.shield(opening)
        except BaseException:  # cancelled while the thread opens: it removes what it made
            opening.add_done_callback(functools.partial(_discard_opened, tmp=tmp))
            raise
        size = 0
        pending: asyncio.Future[Any] | None = None
        try:
            async for chunk in chunks:
                pending = written = asyncio.ensure_future(asyncio.to_thread(file.write, chunk))
                await asyncio.shield(written)
                size += len(chunk)
            pending = committed = asyncio.ensure_future(asyncio.to_thread(self._commit, file, tmp, final))
            await asyncio.shield(committed)
        except BaseException:
            # A thread cannot be stopped: one still writing removes the file when done.
            if pending is not None and not pending.done():
                pending.add_done_callback(lambda _: _discard(file, tmp))
            else:
                await asyncio.to_thread(_discard, file, tmp)
            raise
        return size

    def _commit(self, file: IO[bytes], tmp: str, final: str) -> None:
        file.flush()
        os.fsync(file.fileno())
        file.close()
        os.rename(tmp, final)
        try:
            fsync_directory(self.path)
        except BaseException:  # not known durable: not there at all
            os.unlink(final)
            raise

    async def read(self, key: str) -> AsyncIterator[bytes]:
        file = await asyncio.to_thread(open, self._file(key), "rb")
        try:
            while chunk := await asyncio.to_thread(file.read, CHUNK):
                yield chunk
        finally:
            file.close()

    async def delete(self, key: str) -> bool:
        return await asyncio.to_thread(self._delete, self._file(key))

    def _delete(self, name: str) -> bool:
        try:
            os.unlink(name)
        except FileNotFoundError:
            return False
        fsync_directory(self.path)
        return True


def _discard_opened(opening: asyncio.Future[IO[bytes]], *, tmp: str) -> None:
    if not opening.cancelled() and opening.exception() is None:
        _discard(opening.result(), tmp)


def _discard(file: IO[bytes], tmp: str) -> None:
    file.close()
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass  # renamed, then removed by _commit; or never made

"""Bodies in an S3-compatible object store: ``S3Blobs`` (the ``s3`` extra, boto3).

The same ``BlobStore`` contract as ``DirectoryBlobs``: a blob is named by an
entry only once it exists whole. S3 gives that for free: an object appears
only when its PUT (or its multipart upload's completion) succeeds. So a
write spools the chunks (``SpooledTemporaryFile``: memory up to a bound,
then a temporary file) and uploads the spool with ``upload_fileobj``, in
parts for large bodies; a write that fails or is cancelled leaves no object
(an upload a thread still finishes after a cancellation is deleted again).

boto3's client is blocking: every call runs in a thread (``asyncio.to_thread``)
with bounded timeouts and few retries, so a store that does not answer fails
within seconds. Every failure is an ``OSError`` with the bucket and key in its
message, which the handoff answers with 451 and the worker retries; a missing
object on read is ``FileNotFoundError``, which the worker dead-letters. Only
the CLI imports this module, so ``mailwire.queue`` loads without boto3.
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import IO, Any, TypeVar

import boto3
import boto3.s3.transfer
import botocore.config
import botocore.exceptions
import urllib3.exceptions

from .blobs import CHUNK
from .entry import is_queue_id

__all__ = ["S3Blobs"]

T = TypeVar("T")

SPOOL_MAX = 1024 * 1024  # bodies spooled in memory up to this, on disk beyond
PART_SIZE = 8 * 1024 * 1024  # multipart upload above this, in parts of this size
_MISSING = ("404", "NoSuchKey", "NotFound")
_FAILURES = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError, urllib3.exceptions.HTTPError)


class S3Blobs:
    """Blobs as objects ``prefix + key`` in ``bucket``.

    ``endpoint_url`` and ``region`` default to boto3's own lookup (the
    AWS_ENDPOINT_URL, AWS_REGION... variables and files), as do credentials.
    ``timeout`` bounds connecting and each read of the store; ``attempts``
    is boto3's total tries per call.
    """

    def __init__(self, bucket: str, prefix: str = "", *, endpoint_url: str | None = None,
                 region: str | None = None, timeout: float = 5.0, attempts: int = 2,
                 part_size: int = PART_SIZE) -> None:
        self.bucket, self.prefix = bucket, prefix
        config = botocore.config.Config(
            connect_timeout=timeout, read_timeout=timeout,
            retries={"total_max_attempts": attempts, "mode": "standard"},
            # Path-style addresses work with every S3-compatible server (MinIO, Ceph...)
            s3={"addressing_style": "path"} if endpoint_url else None,
        )
        self._client: Any = boto3.session.Session().client(
            "s3", endpoint_url=endpoint_url, region_name=region, config=config)
        self._transfer = boto3.s3.transfer.TransferConfig(
            multipart_threshold=part_size, multipart_chunksize=part_size, use_threads=False)

    def _name(self, key: str) -> str:
        if not is_queue_id(key):
            raise ValueError(f"not a blob key (a queue id): {key!r}")
        return self.prefix + key

    def _where(self, name: str) -> str:
        return f"s3://{self.bucket}/{name}"

    async def _call(self, name: str, doing: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn`` in a thread, its failures as OSError (FileNotFoundError for a missing object)."""
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except _FAILURES as err:
            raise _os_error(err, f"cannot {doing} {self._where(name)}") from err

    async def write(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        name = self._name(key)
        spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_MAX)  # noqa: SIM115 (closed below)
        abandoned = threading.Event()
        upload: asyncio.Future[bool] | None = None
        size = 0
        try:
            async for chunk in chunks:
                await asyncio.to_thread(spool.write, chunk)  # to disk past SPOOL_MAX
                size += len(chunk)
            spool.seek(0)
            upload = asyncio.ensure_future(self._call(name, "write", self._upload, spool, name, abandoned))
            await asyncio.shield(upload)
        except BaseException:
            abandoned.set()
            if upload is None:
                spool.close()
            elif upload.done():  # it finished as the cancellation came: undo what it made
                self._undo(upload, name)
            else:  # the thread goes on: it deletes what it made, or _undo does once it is done
                upload.add_done_callback(lambda done: self._undo(done, name))
            raise
        spool.close()
        return size

    def _upload(self, spool: IO[bytes], name: str, abandoned: threading.Event) -> bool:
        """Upload the spool; if the write was abandoned meanwhile, remove it again (True then)."""
        try:
            self._client.upload_fileobj(spool, self.bucket, name, Config=self._transfer)
        finally:
            spool.close()
        if abandoned.is_set():
            self._client.delete_object(Bucket=self.bucket, Key=name)
            return True
        return False

    def _undo(self, upload: asyncio.Future[bool], name: str) -> None:
        """An abandoned upload that finished before seeing so: delete its object (in a thread)."""
        if not upload.cancelled() and upload.exception() is None and not upload.result():
            threading.Thread(target=self._quiet_delete, args=(name,), daemon=True).start()

    def _quiet_delete(self, name: str) -> None:
        try:
            self._client.delete_object(Bucket=self.bucket, Key=name)
        except _FAILURES:
            pass  # nothing names it: an orphan, not a half-queued message

    async def read(self, key: str) -> AsyncIterator[bytes]:
        name = self._name(key)
        reply = await self._call(name, "read", self._client.get_object, Bucket=self.bucket, Key=name)
        body = reply["Body"]
        try:
            while chunk := await self._call(name, "read", body.read, CHUNK):
                yield chunk
        finally:
            body.close()

    async def delete(self, key: str) -> bool:
        name = self._name(key)
        try:
            await self._call(name, "find", self._client.head_object, Bucket=self.bucket, Key=name)
        except FileNotFoundError:
            return False
        await self._call(name, "delete", self._client.delete_object, Bucket=self.bucket, Key=name)
        return True


def _os_error(err: Exception, doing: str) -> OSError:
    if isinstance(err, botocore.exceptions.ClientError):
        error = err.response.get("Error", {})
        code, message = str(error.get("Code", "")), error.get("Message") or code
        if code in _MISSING:
            return FileNotFoundError(f"{doing}: no such object")
        return OSError(f"{doing}: {code} {message}".rstrip())
    return OSError(f"{doing}: {err}")

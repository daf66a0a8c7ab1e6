"""``--queue-blobs DIR|s3://BUCKET[/PREFIX]``: the blob store of ``serve --queue`` and ``worker``.

One helper for both commands, so a front end and its workers read the same
spec the same way: a directory (``DirectoryBlobs``) or an S3-compatible
bucket (``S3Blobs``, the ``s3`` extra), its endpoint from
``--queue-blobs-endpoint`` or boto3's own lookup (AWS_ENDPOINT_URL,
AWS_REGION, AWS_ACCESS_KEY_ID...). A bad spec or a missing boto3 is a
``UsageError`` (one line), found before anything starts.
"""

from __future__ import annotations

import argparse
import importlib.util
from typing import TYPE_CHECKING

from .options import UsageError

if TYPE_CHECKING:
    from ..queue.blobs import BlobStore

__all__ = ["add_blob_options", "check_blobs", "blob_store"]

METAVAR = "DIR|s3://BUCKET[/PREFIX]"


def add_blob_options(group: argparse._ArgumentGroup, what: str) -> None:
    group.add_argument("--queue-blobs", metavar=METAVAR, help=what + " (s3:// needs mailwire[s3])")
    group.add_argument("--queue-blobs-endpoint", metavar="URL",
                       help="the S3-compatible server of --queue-blobs s3://... (default: AWS_ENDPOINT_URL, "
                            "else AWS itself)")


def _s3(spec: str) -> tuple[str, str] | None:
    """(bucket, prefix) of an s3:// spec; None for a directory."""
    if not spec.startswith("s3://"):
        return None
    bucket, _, prefix = spec[len("s3://"):].partition("/")
    if not bucket or not bucket.replace("-", "").replace(".", "").isalnum() or bucket != bucket.lower():
        raise UsageError(f"--queue-blobs: expected s3://BUCKET[/PREFIX], not {spec!r}")
    return bucket, prefix.rstrip("/") + "/" if prefix else ""


def check_blobs(args: argparse.Namespace) -> None:
    """UsageError for a bad --queue-blobs, a missing boto3, or an endpoint without s3://."""
    spec, endpoint = args.queue_blobs, args.queue_blobs_endpoint
    s3 = _s3(spec) if spec is not None else None
    if endpoint is not None and s3 is None:
        raise UsageError("--queue-blobs-endpoint needs --queue-blobs s3://BUCKET[/PREFIX]")
    if endpoint is not None and not endpoint.startswith(("http://", "https://")):
        raise UsageError(f"--queue-blobs-endpoint: expected an http:// or https:// URL, not {endpoint!r}")
    if s3 is not None and importlib.util.find_spec("boto3") is None:
        raise UsageError("--queue-blobs s3://... needs boto3: pip install 'mailwire[s3]'")


def blob_store(spec: str | None, endpoint: str | None, *, timeout: float = 5.0) -> BlobStore | None:
    """The store ``spec`` names (None: bodies ride inline); OSError if a directory cannot be made."""
    if spec is None:
        return None
    s3 = _s3(spec)
    if s3 is None:
        from ..queue.blobs import DirectoryBlobs

        return DirectoryBlobs(spec)
    from ..queue.s3_blobs import S3Blobs

    return S3Blobs(s3[0], s3[1], endpoint_url=endpoint, timeout=timeout)

"""S3 access (boto3): URIs, reads, writes, listing.

Credentials and endpoint come from :class:`~trainyard.core.settings.Settings` (the standard AWS
variables); nothing here hard-codes an endpoint or a key.
"""

from __future__ import annotations

import io
import mimetypes
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator

    import pandas as pd

    from trainyard.core.settings import Settings


@dataclass(frozen=True)
class S3Uri:
    """An ``s3://bucket/key`` address."""

    bucket: str
    key: str

    @classmethod
    def parse(cls, uri: str) -> S3Uri:
        """Split ``s3://bucket/key``.

        Raises:
            ValueError: The string is not an s3:// URI with a bucket.
        """
        if not uri.startswith("s3://"):
            raise ValueError(f"not an s3:// URI: {uri!r}")
        bucket, _, key = uri[len("s3://") :].partition("/")
        if not bucket:
            raise ValueError(f"s3 URI without a bucket: {uri!r}")
        return cls(bucket, key)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@cache
def _client(
    endpoint_url: str | None,
    region: str,
    key_id: str | None,
    secret: str | None,
    timeout_seconds: int,
    retries: int,
) -> Any:
    import boto3
    from botocore.config import Config

    # A session of its own: boto3's default session keeps the first credentials it resolved.
    session = boto3.session.Session(
        aws_access_key_id=key_id, aws_secret_access_key=secret, region_name=region
    )
    return session.client(
        "s3",
        endpoint_url=endpoint_url,
        # Bounded: botocore's defaults (60 s connect and read timeouts, 5 attempts) keep a step
        # waiting minutes on an S3 that is down or hung. Connecting to a live endpoint takes
        # milliseconds; reads may legitimately wait longer (a large object, a busy server).
        config=Config(
            connect_timeout=min(5, timeout_seconds),
            read_timeout=timeout_seconds,
            retries={"total_max_attempts": retries + 1, "mode": "standard"},
        ),
    )


def client(settings: Settings) -> Any:
    """A boto3 S3 client for the settings' endpoint and credentials (cached per both).

    Keys come from the settings (``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``) when set,
    else from boto3's usual chain (profile, instance role, ...). Timeouts and retries are the
    settings' ``service_timeout_seconds`` / ``service_retries``.
    """
    return _client(
        settings.s3_endpoint_url,
        settings.region,
        settings.s3_access_key_id,
        settings.s3_secret_access_key,
        settings.service_timeout_seconds,
        settings.service_retries,
    )


def put_bytes(settings: Settings, uri: str, body: bytes, content_type: str | None = None) -> None:
    """Write an object."""
    target = S3Uri.parse(uri)
    extra = {"ContentType": content_type} if content_type else {}
    client(settings).put_object(Bucket=target.bucket, Key=target.key, Body=body, **extra)


def put_if_absent(
    settings: Settings, uri: str, body: bytes, content_type: str | None = None
) -> bool:
    """Write an object only if there is none at ``uri`` (a conditional ``If-None-Match: *`` put).

    Returns:
        True if this call wrote it, False if an object was already there.
    """
    from botocore.exceptions import ClientError

    target = S3Uri.parse(uri)
    extra = {"ContentType": content_type} if content_type else {}
    try:
        client(settings).put_object(
            Bucket=target.bucket, Key=target.key, Body=body, IfNoneMatch="*", **extra
        )
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code")
        if code in {"PreconditionFailed", "412", "ConditionalRequestConflict"}:
            return False
        raise
    return True


def put_file(settings: Settings, uri: str, path: Path, content_type: str | None = None) -> None:
    """Upload a local file (multipart for large files: memory stays bounded)."""
    target = S3Uri.parse(uri)
    extra = {"ExtraArgs": {"ContentType": content_type}} if content_type else {}
    client(settings).upload_file(str(path), target.bucket, target.key, **extra)


def get_bytes(settings: Settings, uri: str) -> bytes:
    """Read a whole object."""
    source = S3Uri.parse(uri)
    return client(settings).get_object(Bucket=source.bucket, Key=source.key)["Body"].read()


def iter_object(settings: Settings, uri: str, block_bytes: int = 1 << 23) -> Iterator[bytes]:
    """Read an object in blocks (memory holds one block, whatever the object's size)."""
    source = S3Uri.parse(uri)
    body = client(settings).get_object(Bucket=source.bucket, Key=source.key)["Body"]
    try:
        yield from body.iter_chunks(block_bytes)
    finally:
        body.close()


def exists(settings: Settings, uri: str) -> bool:
    """Whether an object exists (other errors propagate)."""
    from botocore.exceptions import ClientError

    target = S3Uri.parse(uri)
    try:
        client(settings).head_object(Bucket=target.bucket, Key=target.key)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
            return False
        raise
    return True


def list_keys(settings: Settings, bucket: str, prefix: str) -> list[str]:
    """All keys under a prefix, sorted."""
    paginator = client(settings).get_paginator("list_objects_v2")
    keys: list[str] = []
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(item["Key"] for item in page.get("Contents", []))
    return sorted(keys)


def ensure_buckets(settings: Settings, buckets: list[str], wait_seconds: float = 0.0) -> list[str]:
    """Create the buckets that do not exist yet (the one bucket set-up everything uses).

    Args:
        settings: Endpoint and credentials.
        buckets: Bucket names.
        wait_seconds: How long to keep trying while S3 does not answer yet (a server that is
            still starting); 0 tries once.

    Returns:
        The buckets created.

    Raises:
        botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError: S3 did not accept
            the request within ``wait_seconds``.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            existing = {b["Name"] for b in client(settings).list_buckets().get("Buckets", [])}
            created = [name for name in buckets if name not in existing]
            for name in created:
                client(settings).create_bucket(Bucket=name)
            return created
        except (BotoCoreError, ClientError):
            if time.monotonic() >= deadline:
                raise
            time.sleep(1)


def upload_directory(settings: Settings, directory: Path, uri_prefix: str) -> int:
    """Upload every file below ``directory`` under ``uri_prefix`` (keeping relative paths).

    Returns:
        The number of files uploaded.
    """
    count = 0
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        relative = path.relative_to(directory).as_posix()
        content_type = mimetypes.guess_type(path.name)[0]
        put_bytes(settings, f"{uri_prefix.rstrip('/')}/{relative}", path.read_bytes(), content_type)
        count += 1
    return count


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    """Serialise a frame to Parquet deterministically (same data and library versions, same bytes).

    Args:
        frame: The data; its index is dropped.

    Returns:
        The Parquet file contents.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


def read_parquet(settings: Settings, uri: str) -> pd.DataFrame:
    """Read one Parquet object from S3 into pandas."""
    import pyarrow.parquet as pq

    return pq.read_table(io.BytesIO(get_bytes(settings, uri))).to_pandas()


def presigned_url(settings: Settings, uri: str, expires_seconds: int = 7 * 24 * 3600) -> str:
    """A browser-openable URL for an object (for reports and Data Docs)."""
    target = S3Uri.parse(uri)
    return client(settings).generate_presigned_url(
        "get_object",
        Params={"Bucket": target.bucket, "Key": target.key},
        ExpiresIn=expires_seconds,
    )

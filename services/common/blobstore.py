"""Content-addressed blob store: a local directory (``file://DIR``) or an S3 bucket
(``s3://BUCKET/PREFIX``). Objects are named by the sha256 of their bytes, so writing the same
content twice (a redelivered job) leaves exactly one object. Kafka messages carry the returned
URIs, never the bytes."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from services.common.errors import ConfigurationError, LimitExceededError, NotFoundError

CHUNK = 1 << 20


@dataclass(frozen=True)
class StoredBlob:
    uri: str
    sha256: str
    size_bytes: int


class BlobStore(Protocol):
    def put_bytes(self, data: bytes, *, suffix: str = "") -> StoredBlob: ...
    def put_file(self, path: Path, *, suffix: str = "") -> StoredBlob: ...
    def get_bytes(self, uri: str) -> bytes: ...
    def iter_chunks(self, uri: str) -> Iterator[bytes]: ...
    def exists(self, uri: str) -> bool: ...
    def delete(self, uri: str) -> None: ...


def _key(sha: str, suffix: str) -> str:
    suffix = suffix if not suffix or suffix.startswith(".") else "." + suffix
    if any(c in suffix for c in "/\\") or len(suffix) > 12:
        raise ValueError(f"bad blob suffix {suffix!r}")
    return f"sha256/{sha[:2]}/{sha}{suffix}"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


class LocalBlobStore:
    """Blobs as files under one directory; writes are atomic (temp file + rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, uri: str) -> Path:
        if not uri.startswith("file://"):
            raise NotFoundError(f"not a local blob: {uri}")
        path = Path(uri[len("file://") :]).resolve()
        if self.root not in path.parents:
            raise NotFoundError(f"blob outside the store: {uri}")
        return path

    def _commit(self, tmp: Path, sha: str, suffix: str, size: int) -> StoredBlob:
        dest = self.root / _key(sha, suffix)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, dest)
        return StoredBlob(uri=f"file://{dest}", sha256=sha, size_bytes=size)

    def put_bytes(self, data: bytes, *, suffix: str = "") -> StoredBlob:
        sha = hashlib.sha256(data).hexdigest()
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".incoming-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return self._commit(Path(tmp), sha, suffix, len(data))

    def put_file(self, path: Path, *, suffix: str = "") -> StoredBlob:
        sha = sha256_file(path)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".incoming-")
        os.close(fd)
        shutil.copyfile(path, tmp)
        return self._commit(Path(tmp), sha, suffix, path.stat().st_size)

    def get_bytes(self, uri: str) -> bytes:
        path = self._path(uri)
        if not path.is_file():
            raise NotFoundError(f"blob not found: {uri}")
        return path.read_bytes()

    def iter_chunks(self, uri: str) -> Iterator[bytes]:
        path = self._path(uri)
        if not path.is_file():
            raise NotFoundError(f"blob not found: {uri}")
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk

    def exists(self, uri: str) -> bool:
        return self._path(uri).is_file()

    def delete(self, uri: str) -> None:
        self._path(uri).unlink(missing_ok=True)


class S3BlobStore:
    """Blobs as objects under ``s3://BUCKET/PREFIX`` (boto3; any S3-compatible endpoint)."""

    def __init__(self, bucket: str, prefix: str, *, endpoint_url: str | None = None) -> None:
        import boto3  # imported here: only distributed deployments with S3 need it loaded

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = boto3.client("s3", endpoint_url=endpoint_url)

    def _object_key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _split(self, uri: str) -> str:
        head = f"s3://{self.bucket}/"
        if not uri.startswith(head):
            raise NotFoundError(f"blob not in bucket {self.bucket}: {uri}")
        return uri[len(head) :]

    def _put(self, body: BinaryIO | bytes, sha: str, suffix: str, size: int) -> StoredBlob:
        key = self._object_key(_key(sha, suffix))
        self.client.put_object(Bucket=self.bucket, Key=key, Body=body)
        return StoredBlob(uri=f"s3://{self.bucket}/{key}", sha256=sha, size_bytes=size)

    def put_bytes(self, data: bytes, *, suffix: str = "") -> StoredBlob:
        return self._put(data, hashlib.sha256(data).hexdigest(), suffix, len(data))

    def put_file(self, path: Path, *, suffix: str = "") -> StoredBlob:
        sha = sha256_file(path)
        key = self._object_key(_key(sha, suffix))
        self.client.upload_file(str(path), self.bucket, key)
        return StoredBlob(
            uri=f"s3://{self.bucket}/{key}", sha256=sha, size_bytes=path.stat().st_size
        )

    def _get(self, uri: str):  # type: ignore[no-untyped-def]
        from botocore.exceptions import ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._split(uri))["Body"]
        except ClientError as exc:
            raise NotFoundError(f"blob not found: {uri}") from exc

    def get_bytes(self, uri: str) -> bytes:
        return bytes(self._get(uri).read())

    def iter_chunks(self, uri: str) -> Iterator[bytes]:
        body = self._get(uri)
        yield from body.iter_chunks(CHUNK)

    def exists(self, uri: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._split(uri))
        except ClientError:
            return False
        return True

    def delete(self, uri: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._split(uri))

    # Objects put in the bucket by others (a tenant's import area), by bucket-absolute key.

    def list_keys(self, prefix: str) -> Iterator[tuple[str, int]]:
        """``(key, size in bytes)`` of every object whose key starts with ``prefix``, in key
        order, a page (1000) at a time."""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        )
        for page in pages:
            for obj in page.get("Contents", []):
                yield str(obj["Key"]), int(obj["Size"])

    def download_key(self, key: str, path: Path, *, max_bytes: int) -> None:
        """Stream the object ``key`` to ``path``, refusing it as soon as it passes
        ``max_bytes``.

        Raises
        ------
        NotFoundError
            No such object (any more).
        LimitExceededError
            Larger than ``max_bytes``.
        """
        body = self._get(f"s3://{self.bucket}/{key}")
        written = 0
        with open(path, "wb") as f:
            for chunk in body.iter_chunks(CHUNK):
                written += len(chunk)
                if written > max_bytes:
                    raise LimitExceededError(
                        f"upload exceeds the limit of {max_bytes / 2**20:.3g} MB"
                    )
                f.write(chunk)


def open_blob_store(url: str, *, s3_endpoint_url: str | None = None) -> BlobStore:
    """``file://DIR`` or ``s3://BUCKET[/PREFIX]`` -> a blob store."""
    if url.startswith("file://"):
        return LocalBlobStore(Path(url[len("file://") :]))
    if url.startswith("s3://"):
        bucket, _, prefix = url[len("s3://") :].partition("/")
        if not bucket:
            raise ConfigurationError("MIXPILOT_BLOB_URL: s3:// URL needs a bucket name")
        return S3BlobStore(bucket, prefix, endpoint_url=s3_endpoint_url)
    raise ConfigurationError(f"MIXPILOT_BLOB_URL: unsupported scheme in {url!r}")

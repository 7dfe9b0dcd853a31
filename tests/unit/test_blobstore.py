"""Content-addressed blob store: file:// for real; s3:// against moto's S3 server (the one
mock we allow: there is no S3 here) over real HTTP with boto3."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.common.blobstore import BlobStore, LocalBlobStore, S3BlobStore, open_blob_store
from services.common.errors import ConfigurationError, LimitExceededError, NotFoundError


@pytest.fixture
def s3_store(s3_endpoint: str) -> Iterator[S3BlobStore]:
    bucket = f"mixpilot-test-{uuid.uuid4().hex[:8]}"
    store = open_blob_store(f"s3://{bucket}/blobs", s3_endpoint_url=s3_endpoint)
    assert isinstance(store, S3BlobStore)
    store.client.create_bucket(Bucket=bucket)
    yield store


def _exercise(store: BlobStore, tmp_path: Path) -> None:
    data = b"RIFF" + bytes(range(256)) * 5000
    a = store.put_bytes(data, suffix=".wav")
    b = store.put_bytes(data, suffix=".wav")
    assert a == b and a.sha256 == hashlib.sha256(data).hexdigest() and a.size_bytes == len(data)
    assert store.exists(a.uri) and store.get_bytes(a.uri) == data
    assert b"".join(store.iter_chunks(a.uri)) == data
    f = tmp_path / "upload.bin"
    f.write_bytes(data[::-1])
    c = store.put_file(f, suffix="bin")
    assert c.sha256 == hashlib.sha256(data[::-1]).hexdigest() and c.uri != a.uri
    store.delete(c.uri)
    assert not store.exists(c.uri)
    with pytest.raises(NotFoundError):
        store.get_bytes(c.uri)


def test_local_store(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    _exercise(store, tmp_path)
    files = [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()]
    assert len(files) == 1  # the same content twice is one object; the other was deleted


def test_local_store_refuses_paths_outside_it(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    (tmp_path / "secret").write_text("x")
    for uri in (f"file://{tmp_path / 'secret'}", f"file://{tmp_path}/blobs/../secret", "s3://b/k"):
        with pytest.raises(NotFoundError):
            store.get_bytes(uri)


def test_s3_store(s3_store: S3BlobStore, tmp_path: Path) -> None:
    _exercise(s3_store, tmp_path)
    a = s3_store.put_bytes(b"abc", suffix=".json")
    assert a.uri.startswith(f"s3://{s3_store.bucket}/blobs/sha256/")


def test_unknown_scheme() -> None:
    with pytest.raises(ConfigurationError):
        open_blob_store("ftp://x")


def test_s3_lists_and_downloads_objects_put_by_others(
    s3_store: S3BlobStore, tmp_path: Path
) -> None:
    """A tenant's import area: objects listed by prefix in key order, across pages, and
    downloaded within a size limit."""
    client, bucket = s3_store.client, s3_store.bucket
    keys = [f"imports/t/a/{i:04d}.wav" for i in range(1005)]  # more than one page
    for key in keys:
        client.put_object(Bucket=bucket, Key=key, Body=b"x" * (1 + len(key) % 7))
    client.put_object(Bucket=bucket, Key="imports/t/b/other.wav", Body=b"y")
    listed = list(s3_store.list_keys("imports/t/a/"))
    assert [k for k, _ in listed] == keys
    assert all(size == 1 + len(k) % 7 for k, size in listed)
    assert list(s3_store.list_keys("imports/nobody/")) == []
    dest = tmp_path / "one"
    s3_store.download_key(keys[3], dest, max_bytes=100)
    assert dest.read_bytes() == b"x" * (1 + len(keys[3]) % 7)
    big = "imports/t/big.wav"
    client.put_object(Bucket=bucket, Key=big, Body=b"z" * 3_000_000)
    with pytest.raises(LimitExceededError, match="limit of 1 MB"):
        s3_store.download_key(big, dest, max_bytes=1 << 20)
    with pytest.raises(NotFoundError):
        s3_store.download_key("imports/t/gone.wav", dest, max_bytes=100)

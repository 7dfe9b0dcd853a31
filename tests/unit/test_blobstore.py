"""Content-addressed blob store: file:// for real; s3:// against moto's S3 server (the one
mock we allow: there is no S3 here) over real HTTP with boto3."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.common.blobstore import BlobStore, LocalBlobStore, S3BlobStore, open_blob_store
from services.common.errors import ConfigurationError, NotFoundError


@pytest.fixture
def s3_store(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3BlobStore]:
    from moto.server import ThreadedMotoServer

    from tests.infra import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    try:
        store = open_blob_store(
            "s3://mixpilot-test/blobs", s3_endpoint_url=f"http://127.0.0.1:{port}"
        )
        assert isinstance(store, S3BlobStore)
        store.client.create_bucket(Bucket="mixpilot-test")
        yield store
    finally:
        server.stop()


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
    assert a.uri.startswith("s3://mixpilot-test/blobs/sha256/")


def test_unknown_scheme() -> None:
    with pytest.raises(ConfigurationError):
        open_blob_store("ftp://x")

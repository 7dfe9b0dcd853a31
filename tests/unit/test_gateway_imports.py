"""Batches imported from the tenant's bucket (`POST /v1/batches/import`) with an S3 blob store
(moto's S3 server over real HTTP: there is no S3 here), in `mixpilot serve` wiring: every
object becomes a job or a failed item with its reason, only the tenant's own area is read, and
an importer that died mid-batch is taken over without duplicating jobs."""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from gateway.imports import Importer, batch_imports, item_job_id
from tests.gateway_app import bare_gateway, flac_song, gateway_world


@pytest.fixture(scope="module")
def world(s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    bucket = f"label-deliveries-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket=bucket)
    with gateway_world(
        tmp_path_factory.mktemp("imports"),
        blob_url=f"s3://{bucket}/blobs",
        s3_endpoint_url=s3_endpoint,
    ) as w:
        yield {**w, "s3": s3, "bucket": bucket}


def _put(world: dict[str, Any], key: str, body: bytes) -> None:
    world["s3"].put_object(Bucket=world["bucket"], Key=key, Body=body)


def _wait_batch(client: TestClient, batch_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        batch = client.get(f"/v1/batches/{batch_id}").json()
        if batch["done"]:
            return batch  # type: ignore[no-any-return]
        time.sleep(0.2)
    raise AssertionError(f"batch {batch_id} did not finish: {batch}")


def test_every_object_under_the_prefix_becomes_a_job_or_a_failed_item(
    world: dict[str, Any],
) -> None:
    a: TestClient = world["a"]
    song = world["song"]
    _put(world, "imports/label-a/album-1/01 Intro.flac", song)
    _put(world, "imports/label-a/album-1/02 Song.flac", flac_song(2.0))
    _put(world, "imports/label-a/album-1/liner notes.txt", b"not audio" * 100)
    _put(world, "imports/label-a/album-1/empty/", b"")  # a folder marker: not a file
    _put(world, "imports/label-a/album-2/other.flac", song)  # another prefix
    _put(world, "imports/label-b/album-1/theirs.flac", song)  # another tenant
    resp = a.post("/v1/batches/import", json={"prefix": "album-1/", "name": "Album 1"})
    assert resp.status_code == 202, resp.text
    batch = resp.json()
    assert batch["total"] == 3 and batch["name"] == "Album 1"
    assert batch["source"] == f"s3://{world['bucket']}/imports/label-a/album-1/"
    assert sum(batch["counts"].values()) == 3  # not yet imported ones count as importing

    done = _wait_batch(a, batch["batch_id"])
    assert done["counts"] == {"done": 2, "failed": 1}, done
    rows = a.get(f"/v1/batches/{batch['batch_id']}/manifest").json()["items"]
    by_name = {r["filename"]: r for r in rows}
    assert set(by_name) == {"01 Intro.flac", "02 Song.flac", "liner notes.txt"}
    assert by_name["liner notes.txt"]["error_code"] == "unsupported_format"
    job = a.get(f"/v1/jobs/{by_name['02 Song.flac']['job_id']}").json()
    audio, sr = sf.read(io.BytesIO(a.get(job["versions"]["strategy"]["url"]).content))
    assert sr == 22050 and audio.shape[0] == 2 * 22050

    # The job keeps its own copy: changing or deleting the object afterwards changes nothing.
    world["s3"].delete_object(Bucket=world["bucket"], Key="imports/label-a/album-1/02 Song.flac")
    assert a.get(f"/v1/jobs/{job['job_id']}/report").status_code == 200
    # The other tenant's area and the other prefix were not read.
    assert all("theirs" not in r["filename"] and "other" not in r["filename"] for r in rows)


def test_tenants_import_only_from_their_own_area(world: dict[str, Any]) -> None:
    b: TestClient = world["b"]
    _put(world, "imports/label-b/only/mine.flac", world["song"])
    _put(world, "imports/label-a/only/not-yours.flac", world["song"])
    batch = b.post("/v1/batches/import", json={"prefix": "only/"}).json()
    assert batch["total"] == 1 and "/imports/label-b/only/" in batch["source"]
    names = [r["filename"] for r in _manifest(b, _wait_batch(b, batch["batch_id"]))]
    assert names == ["mine.flac"]
    assert world["a"].get(f"/v1/batches/{batch['batch_id']}").status_code == 404


def _manifest(client: TestClient, batch: dict[str, Any]) -> list[dict[str, Any]]:
    return client.get(f"/v1/batches/{batch['batch_id']}/manifest").json()["items"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "prefix",
    ["../label-b/", "/imports/label-b/", "album/../../label-b/", "a//b/", "./a", "a\\b", "a\x00"],
)
def test_a_prefix_that_looks_like_a_way_out_is_refused(world: dict[str, Any], prefix: str) -> None:
    resp = world["a"].post("/v1/batches/import", json={"prefix": prefix})
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["code"] == "invalid_parameter"


def test_an_empty_prefix_is_a_clear_error(world: dict[str, Any]) -> None:
    resp = world["a"].post("/v1/batches/import", json={"prefix": "no-such-album/"})
    assert resp.status_code == 400
    assert "no objects under s3://" in resp.json()["error"]["message"]


def test_imports_need_an_s3_blob_store(tmp_path: Path) -> None:
    client, _ = bare_gateway(tmp_path)
    resp = client.post("/v1/batches/import", json={"prefix": "x/"})
    assert resp.status_code == 409 and "S3 blob store" in resp.json()["error"]["message"]


def test_a_stale_claim_is_taken_over_and_an_item_is_never_two_jobs(
    s3_endpoint: str, tmp_path: Path
) -> None:
    check_stale_claims(s3_endpoint, tmp_path)


def check_stale_claims(s3_endpoint: str, tmp_path: Path, **overrides: Any) -> None:
    """An importer died mid-item: its claim goes stale and another takes the item; an item
    whose job was created before the crash is not created again. Objects over the upload limit
    fail without being downloaded. (Also run on PostgreSQL: tests/integration.)"""
    bucket = f"stale-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket=bucket)
    client, gw = bare_gateway(
        tmp_path,
        blob_url=f"s3://{bucket}/blobs",
        s3_endpoint_url=s3_endpoint,
        max_upload_mb=0.15,
        **overrides,
    )
    small, large = flac_song(1.5, sr=8000), flac_song(8.0)
    assert len(small) < 0.15 * 2**20 < len(large)
    for name, body in (("a.flac", small), ("b.flac", small), ("c.flac", small), ("d.flac", large)):
        s3.put_object(Bucket=bucket, Key=f"imports/solo/in/{name}", Body=body)
    importer: Importer = gw.importer  # never started here: this test pumps it by hand
    source, objects = importer.objects("solo", "in/")
    gw.store.create_batch("b1", "solo", "", len(objects))
    importer.add(
        "b1",
        "solo",
        objects,
        {
            "target_lufs": -14.0,
            "true_peak_ceiling_dbtp": -1.0,
            "genre": None,
            "intensity_pct": 100.0,
        },
    )
    with gw.store.engine.begin() as conn:
        # Item 0: claimed by an importer that died 11 minutes ago. Item 1: claimed just now by a
        # live one (left alone). Item 2: its job exists already.
        conn.execute(
            batch_imports.update()
            .where(batch_imports.c.seq == 0)
            .values(claimed_at=datetime.now(UTC) - timedelta(minutes=11))
        )
        conn.execute(
            batch_imports.update()
            .where(batch_imports.c.seq == 1)
            .values(claimed_at=datetime.now(UTC))
        )
    gw.store.fail_new_job(item_job_id("b1", 2), "solo", "c.flac", "b1", "internal", "earlier")
    assert importer.pump() == 3  # items 0, 2 and 3
    assert importer.pending("b1") == 1  # item 1, still claimed by the live importer
    jobs = {j.filename: j for j in gw.store.batch_jobs("b1")}
    assert set(jobs) == {"a.flac", "c.flac", "d.flac"}
    assert jobs["a.flac"].state == "queued" and jobs["a.flac"].job_id == item_job_id("b1", 0)
    assert jobs["c.flac"].error == {"code": "internal", "message": "earlier", "stage": "gateway"}
    assert jobs["d.flac"].error is not None and jobs["d.flac"].error["code"] == "limit_exceeded"
    batch = client.get("/v1/batches/b1").json()
    assert batch["counts"]["importing"] == 1 and not batch["done"]
    assert source.endswith("/imports/solo/in/")

"""The REST API in `mixpilot serve` wiring for tests (in-memory bus, SQLite, local blobs, the
three stages in threads), two tenants with keys, and helpers to submit songs and wait."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import soundfile as sf
from fastapi.testclient import TestClient

from gateway import plans
from gateway.accounts import Accounts
from gateway.api import Gateway, create_app
from gateway.plans import Plan
from gateway.runtime import build_one_machine
from gateway.store import JobStore
from services.common.blobstore import open_blob_store
from services.common.bus import InMemoryBus
from services.common.settings import load_settings
from services.common.stage_worker import ALL_TOPICS
from tests.signals import little_song


def flac_song(duration_s: float, sr: int = 22050) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, little_song(sr=sr, duration_s=duration_s).T, sr, format="FLAC")
    return buf.getvalue()


@contextmanager
def gateway_world(tmp: Path, *, song_s: float = 3.0, **overrides: Any) -> Iterator[dict[str, Any]]:
    """Clients ``a`` and ``b`` (tenants label-a and label-b), ``anon`` (no key), a revoked key
    of label-a, a generated FLAC ``song`` and the ``blobs`` directory; ``overrides`` are
    settings (an S3 blob store, say)."""
    settings = load_settings(
        **{
            "auth": "api_key",  # keys even on loopback: the tests use them
            "database_url": f"sqlite:///{tmp / 'jobs.sqlite3'}",
            "blob_url": f"file://{tmp / 'blobs'}",
            "cache_dir": tmp / "cache",
            **overrides,
        }
    )
    app, stop = build_one_machine(settings)
    accounts = Accounts(JobStore(settings.database_url).engine)
    keys = {t: accounts.create_key(t, plan="label")[0] for t in ("label-a", "label-b")}
    revoked, info = accounts.create_key("label-a", label="old")
    accounts.revoke(info.key_id)
    clients = {
        t: TestClient(app, headers={"Authorization": f"Bearer {k}"}) for t, k in keys.items()
    }
    try:
        yield {
            "app": app,
            "a": clients["label-a"],
            "b": clients["label-b"],
            "anon": TestClient(app),
            "revoked": revoked,
            "song": flac_song(song_s),
            "blobs": tmp / "blobs",
        }
    finally:
        stop()


def submit(client: TestClient, song: bytes, **headers: str) -> Any:
    return client.post("/v1/jobs", files={"file": ("s.flac", song)}, headers=headers)


def wait_done(client: TestClient, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["state"] in ("done", "failed"):
            return job  # type: ignore[no-any-return]
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish")


def bare_gateway(
    tmp_path: Path, plan: Plan | None = None, **overrides: Any
) -> tuple[TestClient, Gateway]:
    """The API with no stage workers and no background threads (jobs stay queued) and one
    tenant, ``solo``, on ``plan`` (registered in :data:`gateway.plans.PLANS`: use the
    ``tight_plans`` fixture to undo that); ``overrides`` are settings."""
    settings = load_settings(
        **{
            "database_url": f"sqlite:///{tmp_path / 'jobs.sqlite3'}",
            "blob_url": f"file://{tmp_path / 'b'}",
            "cache_dir": tmp_path / "cache",
            **overrides,
        }
    )
    bus = InMemoryBus()
    bus.ensure_topics(ALL_TOPICS)
    gw = Gateway(
        settings=settings,
        store=JobStore(settings.database_url),
        blobs=open_blob_store(settings.blob_url, s3_endpoint_url=settings.s3_endpoint_url),
        producer=bus.producer(),
    )
    key = gw.accounts.create_key("solo", plan="label")[0]
    if plan is not None:
        plans.PLANS[plan.name] = plan
        gw.accounts.set_plan("solo", plan.name)
    return TestClient(create_app(gw), headers={"Authorization": f"Bearer {key}"}), gw

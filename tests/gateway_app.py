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

from gateway.accounts import Accounts
from gateway.runtime import build_one_machine
from gateway.store import JobStore
from services.common.settings import load_settings
from tests.signals import little_song


def flac_song(duration_s: float, sr: int = 22050) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, little_song(sr=sr, duration_s=duration_s).T, sr, format="FLAC")
    return buf.getvalue()


@contextmanager
def gateway_world(tmp: Path, *, song_s: float = 3.0) -> Iterator[dict[str, Any]]:
    """Clients ``a`` and ``b`` (tenants label-a and label-b), ``anon`` (no key), a revoked key
    of label-a, a generated FLAC ``song`` and the ``blobs`` directory."""
    settings = load_settings(
        database_url=f"sqlite:///{tmp / 'jobs.sqlite3'}",
        blob_url=f"file://{tmp / 'blobs'}",
        cache_dir=tmp / "cache",
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

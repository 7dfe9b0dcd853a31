"""`mixpilot serve` wiring (in-memory bus, SQLite, local blobs, all stages in one process),
driven through the real REST app."""

from __future__ import annotations

import io
import re
import time
from pathlib import Path

import soundfile as sf
from fastapi.testclient import TestClient

from gateway.runtime import build_one_machine
from services.common.loudness import integrated_loudness
from services.common.settings import load_settings
from tests.cluster import create_api_key
from tests.signals import little_song


def test_job_flows_through_every_stage(tmp_path: Path) -> None:
    settings = load_settings(
        auth="api_key",  # keys even on loopback: the tests use them
        database_url=f"sqlite:///{tmp_path / 'jobs.sqlite3'}",
        blob_url=f"file://{tmp_path / 'blobs'}",
        cache_dir=tmp_path / "cache",
    )
    app, stop = build_one_machine(settings)
    try:
        key = create_api_key(settings.database_url, "serve-test")
        client = TestClient(app, headers={"Authorization": f"Bearer {key}"})
        buf = io.BytesIO()
        sr = 22050
        sf.write(buf, little_song(sr=sr, duration_s=5.0).T, sr, format="FLAC")
        resp = client.post(
            "/v1/jobs",
            files={"file": ("s.flac", buf.getvalue())},
            data={"target_lufs": "-16", "genre": "jazz"},
        )
        assert resp.status_code == 202, resp.text
        job_id = resp.json()["job_id"]
        deadline = time.monotonic() + 120
        job = resp.json()
        while job["state"] not in ("done", "failed") and time.monotonic() < deadline:
            time.sleep(0.1)
            job = client.get(f"/v1/jobs/{job_id}").json()
        assert job["state"] == "done", job
        report = client.get(f"/v1/jobs/{job_id}/report").json()
        assert report["analysis"]["genre"] == "jazz"
        assert report["analysis"]["genre_method"] == "override"
        audio = client.get(f"/v1/jobs/{job_id}/outputs/strategy")
        assert audio.status_code == 200
        data, out_sr = sf.read(io.BytesIO(audio.content), always_2d=True)
        assert out_sr == sr and abs(integrated_loudness(data.T, sr) + 16.0) <= 0.5
        assert client.get(f"/v1/jobs/{job_id}/outputs/nope").status_code == 404
        bad = client.post(
            "/v1/jobs", files={"file": ("s.flac", buf.getvalue())}, data={"genre": "polka"}
        )
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_parameter"
        metrics = client.get("/metrics/").text
        assert re.search(r"mixpilot_renderer_jobs_processed_total [1-9]", metrics)
        assert "mixpilot_gateway_jobs_submitted_total" in metrics
    finally:
        stop()

"""`mixpilot serve` as a real process: one machine, no broker or database server; and its logs
are structured JSON lines carrying the job id."""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

import httpx
import soundfile as sf

from tests.infra import free_port, log_tail, start_process, stop_process, wait_until
from tests.signals import little_song


def test_serve_runs_a_job_end_to_end(tmp_path: Path) -> None:
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "MIXPILOT_GATEWAY_PORT": str(port),
        "MIXPILOT_DATABASE_URL": f"sqlite:///{tmp_path / 'jobs.sqlite3'}",
        "MIXPILOT_BLOB_URL": f"file://{tmp_path / 'blobs'}",
        "MIXPILOT_CACHE_DIR": str(tmp_path / "cache"),
        "MIXPILOT_AUTH": "none",  # one user's machine: one open tenant, no keys
    }
    log = tmp_path / "serve.log"
    proc = start_process([sys.executable, "-m", "gateway.cli", "serve"], env=env, log_path=log)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: httpx.get(f"{base}/readyz", timeout=2).status_code == 200,
            timeout_s=90,
            what=f"mixpilot serve\n{log_tail(log)}",
            ignore=(httpx.HTTPError,),
        )
        buf = io.BytesIO()
        sf.write(
            buf, little_song(sr=48000, duration_s=6.0).T, 48000, format="WAV", subtype="PCM_24"
        )
        job = httpx.post(
            f"{base}/v1/jobs", files={"file": ("take 1.wav", buf.getvalue())}, timeout=30
        ).json()
        state: dict = {}

        def finished() -> bool:
            state.update(httpx.get(f"{base}/v1/jobs/{job['job_id']}", timeout=5).json())
            return state["state"] in ("done", "failed")

        wait_until(finished, timeout_s=120, what="the job to finish")
        assert state["state"] == "done", state
        wav = httpx.get(f"{base}/v1/jobs/{job['job_id']}/outputs/original", timeout=30)
        assert wav.status_code == 200
        assert 'filename="take_1-original.wav"' in wav.headers["content-disposition"]
        assert sf.info(io.BytesIO(wav.content)).samplerate == 48000
    finally:
        stop_process(proc)
    lines = [json.loads(x) for x in log.read_text().splitlines() if x.startswith("{")]
    assert lines, log_tail(log)
    for_job = [x for x in lines if x.get("job_id") == job["job_id"]]
    assert {x.get("stage") for x in for_job} >= {"analyzer", "predictor", "renderer"}
    assert all({"ts", "level", "logger", "msg"} <= set(x) for x in lines)

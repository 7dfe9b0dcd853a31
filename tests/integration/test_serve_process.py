"""`mixpilot serve` as a real process: one machine, no broker or database server; and its logs
are structured JSON lines carrying the job id."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import httpx
import soundfile as sf

from gateway.client import MixPilotClient
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
        song = tmp_path / "take 1.wav"
        sf.write(song, little_song(sr=48000, duration_s=6.0).T, 48000, subtype="PCM_24")
        # The integrators' client over real HTTP (no key: MIXPILOT_AUTH=none).
        with MixPilotClient(base, None) as client:
            job = client.submit(song)
            states: list[str] = []
            done = client.wait(job["job_id"], on_progress=lambda j: states.append(j["state"]))
            assert done["state"] == "done", done
            assert states[-1] == "done" and len(states) >= 2
            out = client.download(job["job_id"], "original", tmp_path / "take_1-original.wav")
            assert sf.info(out).samplerate == 48000
        wav = httpx.get(f"{base}/v1/jobs/{job['job_id']}/outputs/original", timeout=30)
        assert wav.status_code == 200
        assert 'filename="take_1-original.wav"' in wav.headers["content-disposition"]
    finally:
        stop_process(proc)
    lines = [json.loads(x) for x in log.read_text().splitlines() if x.startswith("{")]
    assert lines, log_tail(log)
    for_job = [x for x in lines if x.get("job_id") == job["job_id"]]
    assert {x.get("stage") for x in for_job} >= {"analyzer", "predictor", "renderer"}
    assert all({"ts", "level", "logger", "msg"} <= set(x) for x in lines)

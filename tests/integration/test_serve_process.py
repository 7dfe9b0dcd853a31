"""`mixpilot serve` as a real process: one machine, no broker or database server; and its logs
are structured JSON lines carrying the job id."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import httpx
import soundfile as sf

from gateway.client import MixPilotClient
from tests.infra import log_tail, serve_process
from tests.signals import little_song


def test_serve_runs_a_job_end_to_end(tmp_path: Path) -> None:
    # MIXPILOT_AUTH unset (auto): on loopback, one user's machine needs no key.
    with serve_process(tmp_path) as (_, base, log):
        song = tmp_path / "take 1.wav"
        sf.write(song, little_song(sr=48000, duration_s=6.0).T, 48000, subtype="PCM_24")
        # The integrators' client over real HTTP (no key: serve on loopback needs none).
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
        _hostile_requests_get_clear_errors(base, int(base.rsplit(":", 1)[1]))
    lines = [json.loads(x) for x in log.read_text().splitlines() if x.startswith("{")]
    assert lines, log_tail(log)
    for_job = [x for x in lines if x.get("job_id") == job["job_id"]]
    assert {x.get("stage") for x in for_job} >= {"analyzer", "predictor", "renderer"}
    assert all({"ts", "level", "logger", "msg"} <= set(x) for x in lines)


def _status_of_raw_request(port: int, request: bytes) -> bytes:
    """The status line the server answers ``request`` (sent over a bare socket) with."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        return sock.recv(4096).split(b"\r\n", 1)[0]


def _hostile_requests_get_clear_errors(base: str, port: int) -> None:
    """Over real HTTP (uvicorn's parser, not a test client): oversized headers, a wrong
    content type, malformed JSON. Each gets an error and the server keeps serving."""
    get = b"GET /v1/jobs HTTP/1.1\r\nHost: x\r\nX-Filler: %s\r\n\r\n"
    assert _status_of_raw_request(port, get % (b"a" * 1000)) == b"HTTP/1.1 200 OK"
    big = httpx.get(f"{base}/v1/jobs", headers={"X-Filler": "a" * 40_000}, timeout=10)
    assert big.status_code == 431 and big.json()["error"]["code"] == "limit_exceeded"
    assert "at most 16 KiB" in big.json()["error"]["message"]
    # Far larger: uvicorn's own parser refuses it before the app sees it.
    assert _status_of_raw_request(port, get % (b"a" * 2_000_000)).startswith(b"HTTP/1.1 4")
    as_json = httpx.post(f"{base}/v1/jobs", json={"file": "song.wav"}, timeout=10)
    assert as_json.status_code == 400 and "file" in as_json.json()["error"]["message"]
    broken = httpx.post(
        f"{base}/v1/webhooks",
        content=b'{"url": ',
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert broken.status_code == 400 and "JSON" in broken.json()["error"]["message"]
    xml = httpx.post(
        f"{base}/v1/webhooks",
        content=b"<url/>",
        headers={"Content-Type": "application/xml"},
        timeout=10,
    )
    assert xml.status_code == 400 and xml.json()["error"]["code"] == "invalid_request"
    assert httpx.get(f"{base}/readyz", timeout=10).status_code == 200

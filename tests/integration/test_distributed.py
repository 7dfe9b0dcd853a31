"""Distributed mode end to end: the four services as separate processes on loopback, chained
through the real Kafka-protocol broker, job state in real PostgreSQL, audio in a file:// blob
store. Covers the round trip, direct gRPC calls, a kill -9 of the renderer mid-job, a poison
message, and bad uploads."""

from __future__ import annotations

import io
import json
import os
import signal
import time
import uuid
from collections.abc import Iterator

import grpc
import httpx
import numpy as np
import pytest
import soundfile as sf

from gateway.store import JobStore
from mixpilot.v1 import mixpilot_pb2 as pb
from mixpilot.v1 import mixpilot_pb2_grpc as pb_grpc
from services.analyzer.analysis import analyze
from services.common.audio_io import read_audio
from services.common.bus import DLQ, RENDERED, KafkaBus
from services.common.jobs import to_dict
from services.common.loudness import integrated_loudness, true_peak_dbtp
from services.predictor.inference import AI_VERSIONS
from tests.cluster import Cluster, messages_for, running_cluster, submit, wait_state, wav_bytes
from tests.infra import stop_process
from tests.signals import little_song

MAX_UPLOAD_MB = 16
MAX_DURATION_S = 300


@pytest.fixture(scope="module")
def cluster(
    kafka_bootstrap: str, postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    with running_cluster(
        kafka_bootstrap,
        postgres_url,
        tmp_path_factory.mktemp("cluster"),
        MIXPILOT_MAX_UPLOAD_MB=str(MAX_UPLOAD_MB),
        MIXPILOT_MAX_DURATION_S=str(MAX_DURATION_S),
        MIXPILOT_WEBHOOK_ALLOW_PRIVATE="true",  # the test's receiver is on loopback
        MIXPILOT_WEBHOOK_BACKOFF_S="0.2",
    ) as c:
        yield c


def test_job_round_trip_over_rest(cluster: Cluster) -> None:
    sr = 44100
    song = little_song(sr=sr, duration_s=10.0)
    start = time.perf_counter()
    resp = submit(cluster, wav_bytes(song, sr), name="../../etc/My Song\x00.wav")
    assert resp.status_code == 202, resp.text
    job = resp.json()
    assert job["state"] == "queued"
    assert ".." not in job["filename"] and "/" not in job["filename"]
    done = wait_state(cluster, job["job_id"], {"done", "failed"})
    elapsed = time.perf_counter() - start
    assert done["state"] == "done", done
    assert set(done["stage_times"]) >= {"queued", "analyzing", "predicting", "rendering", "done"}
    assert done["progress"] == 1.0
    print(f"distributed round trip of a 10 s song: {elapsed:.2f} s")

    report = cluster.api("GET", f"/v1/jobs/{job['job_id']}/report", timeout=10).json()
    assert report["analysis"]["sample_rate"] == sr
    assert abs(report["analysis"]["tempo_bpm"] - 120.0) < 2.4
    assert set(report["versions"]) == {"original", "strategy", *AI_VERSIONS.values()}
    assert report["versions"]["ai_enhanced_cnn"]["model"]["stereo_width"]["raw"] > 0
    for name in report["versions"]:
        r = cluster.api("GET", f"/v1/jobs/{job['job_id']}/outputs/{name}", timeout=30)
        assert r.status_code == 200
        assert r.headers["content-type"] == "audio/wav"
        audio, out_sr = sf.read(io.BytesIO(r.content), dtype="float32", always_2d=True)
        assert out_sr == sr and audio.shape == (song.shape[1], 2)
        assert abs(integrated_loudness(audio.T, sr) - (-14.0)) <= 0.5
        assert true_peak_dbtp(audio.T) <= -1.0 + 1e-3


def test_every_process_exposes_metrics(cluster: Cluster) -> None:
    """After the round trip above, each stage's Prometheus endpoint shows its work."""
    for role in ("analyzer", "predictor", "renderer"):
        text = httpx.get(f"http://127.0.0.1:{cluster.metrics_ports[role]}/metrics").text
        assert f"mixpilot_{role}_duration_seconds_bucket" in text
        assert f"mixpilot_{role}_in_flight_jobs" in text
        processed = [
            line
            for line in text.splitlines()
            if line.startswith(f"mixpilot_{role}_jobs_processed_total ")
        ]
        assert processed and float(processed[0].split()[1]) >= 1, role
    text = httpx.get(f"{cluster.gateway_url}/metrics/").text
    assert "mixpilot_gateway_jobs_submitted_total" in text


def test_stages_answer_grpc_directly(cluster: Cluster) -> None:
    """The gateway can call a stage directly (e.g. a re-render): Analyze, Predict, Render."""
    sr = 22050
    upload = wav_bytes(little_song(sr=sr, duration_s=6.0), sr)
    resp = submit(cluster, upload)
    job_id = resp.json()["job_id"]
    wait_state(cluster, job_id, {"done"})
    store = JobStore(cluster.database_url)
    record = store.get_job(job_id)
    assert record is not None
    env = pb.JobEnvelope(
        job_id="direct-" + job_id,
        tenant="t",
        input=pb.AudioRef(uri=record.input_uri, sha256=record.input_sha256),
    )
    env.options.target_lufs = -16.0
    env.options.true_peak_ceiling_dbtp = -1.0

    def stub(role: str, cls: type) -> object:
        return cls(grpc.insecure_channel(f"127.0.0.1:{cluster.grpc_ports[role]}"))

    analyzed = (
        stub("analyzer", pb_grpc.AnalyzerStub)
        .Analyze(  # type: ignore[attr-defined]
            pb.AnalyzeRequest(job=env), timeout=60
        )
        .job
    )
    assert analyzed.analysis.sample_rate == sr and analyzed.analysis.key
    # One analysis, three doors: the gRPC call, the Kafka stage (the job's report) and the
    # in-process function behind `mixpilot analyze --json` give the same fields and values.
    report = cluster.api("GET", f"/v1/jobs/{job_id}/report", timeout=10).json()
    assert to_dict(analyzed.analysis) == report["analysis"]
    audio, rate, _ = read_audio(upload, max_duration_s=MAX_DURATION_S)
    assert analyze(audio, rate) == analyzed.analysis
    predicted = (
        stub("predictor", pb_grpc.PredictorStub)
        .Predict(  # type: ignore[attr-defined]
            pb.PredictRequest(job=analyzed), timeout=30
        )
        .job
    )
    user = pb.MixParams(version="user", values={"eq_high_shelf_gain_db": 4.0}, source="user")
    rendered = (
        stub("renderer", pb_grpc.RendererStub)
        .Render(  # type: ignore[attr-defined]
            pb.RenderRequest(job=predicted, extra=[user]), timeout=120
        )
        .job
    )
    names = [o.name for o in rendered.outputs]
    assert names == ["original", "strategy", *AI_VERSIONS.values(), "user"]
    ai = {p.version: p for p in predicted.predictions if p.raw}
    assert list(ai) == list(AI_VERSIONS.values())
    for o in rendered.outputs:
        assert abs(o.loudness_lufs - (-16.0)) <= 0.5 and o.true_peak_dbtp <= -1.0

    with pytest.raises(grpc.RpcError) as err:
        stub("predictor", pb_grpc.PredictorStub).Predict(  # type: ignore[attr-defined]
            pb.PredictRequest(job=pb.JobEnvelope(job_id="x")), timeout=10
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_kill9_renderer_mid_job_completes_once(cluster: Cluster) -> None:
    sr = 44100
    song = little_song(sr=sr, duration_s=150.0, channels=1)  # ~13 MB: a few seconds to render
    job_id = submit(cluster, wav_bytes(song, sr)).json()["job_id"]
    wait_state(cluster, job_id, {"rendering", "done", "failed"})
    state = cluster.api("GET", f"/v1/jobs/{job_id}").json()["state"]
    assert state == "rendering", f"renderer was too quick to be killed mid-job ({state})"
    renderer = cluster.procs["renderer"]
    os.killpg(renderer.pid, signal.SIGKILL)  # type: ignore[attr-defined]
    renderer.wait(timeout=10)  # type: ignore[attr-defined]
    cluster.start("renderer")
    cluster.wait_serving("renderer")

    done = wait_state(cluster, job_id, {"done", "failed"}, timeout_s=240)
    assert done["state"] == "done", done
    store = JobStore(cluster.database_url)
    assert store.count_events(job_id, "done") == 1
    assert store.get_job(job_id).state == "done"  # type: ignore[union-attr]
    # Outputs exist once: one rendered message, one blob per version.
    assert len(messages_for(cluster.bootstrap, RENDERED, job_id)) == 1
    blobs = cluster.workdir / "blobs"
    report = cluster.api("GET", f"/v1/jobs/{job_id}/report").json()
    for v in report["versions"].values():
        assert len(list(blobs.rglob(f"{v['sha256']}*"))) == 1


def _side_share(audio: np.ndarray) -> float:
    """Side energy over mid energy: how wide a stereo signal is."""
    mid, side = audio[0] + audio[1], audio[0] - audio[1]
    return float(np.sum(side**2) / np.sum(mid**2))


def test_rerender_and_preview_are_rendered_by_the_renderer_over_grpc(cluster: Cluster) -> None:
    sr = 44100
    job_id = submit(cluster, wav_bytes(little_song(sr=sr, duration_s=12.0), sr)).json()["job_id"]
    assert wait_state(cluster, job_id, {"done", "failed"})["state"] == "done"
    url = f"/v1/jobs/{job_id}/renders"
    edit = {"base": "ai_enhanced_cnn", "params": {"stereo_width": 1.8}}
    full = cluster.api("POST", url, json=edit, timeout=120)
    assert full.status_code == 201, full.text
    assert full.json()["name"] == "user-1"
    edited, rate = sf.read(
        io.BytesIO(cluster.api("GET", full.json()["url"]).content), always_2d=True
    )
    base_url = cluster.api("GET", f"/v1/jobs/{job_id}").json()["versions"]["ai_enhanced_cnn"]
    base, _ = sf.read(io.BytesIO(cluster.api("GET", base_url["url"]).content), always_2d=True)
    assert rate == sr and edited.shape == base.shape == (12 * sr, 2)
    assert _side_share(edited.T) > 1.5 * _side_share(base.T)  # wider, as edited

    body = {**edit, "preview": {"start_s": 2.0, "duration_s": 8.0}}
    preview = cluster.api("POST", url, json=body, timeout=60)
    assert preview.status_code == 200, preview.text
    excerpt, _ = sf.read(io.BytesIO(preview.content), always_2d=True)
    region = edited[2 * sr : 10 * sr]
    assert excerpt.shape == region.shape
    corr = np.sum(excerpt * region) / np.sqrt(np.sum(excerpt**2) * np.sum(region**2))
    assert corr > 0.99, corr

    # The renderer service did the work, not the gateway: without it a preview is a clear 503
    # naming it, and with it back the same preview comes back byte for byte.
    stop_process(cluster.procs["renderer"])
    down = cluster.api("POST", url, json=body, timeout=60)
    assert down.status_code == 503, down.text
    assert down.json()["error"]["code"] == "unavailable"
    assert f"127.0.0.1:{cluster.grpc_ports['renderer']}" in down.json()["error"]["message"]
    cluster.start("renderer")
    cluster.wait_serving("renderer")
    again = cluster.api("POST", url, json=body, timeout=60)
    assert again.status_code == 200 and again.content == preview.content


def test_poison_message_goes_to_dlq_and_flow_continues(cluster: Cluster) -> None:
    key = f"poison-{uuid.uuid4().hex[:8]}"
    producer = KafkaBus(cluster.bootstrap).producer()
    producer.send("mixpilot.jobs.submitted", key=key, value=b"\xff\x00 not a protobuf \x13")
    producer.close()
    dead = messages_for(cluster.bootstrap, DLQ, key, timeout_s=90)
    assert len(dead) == 1
    assert dead[0].headers["error_code"] == "invalid_message"
    assert dead[0].headers["source_topic"] == "mixpilot.jobs.submitted"

    sr = 32000
    job_id = submit(cluster, wav_bytes(little_song(sr=sr, duration_s=5.0), sr)).json()["job_id"]
    assert wait_state(cluster, job_id, {"done", "failed"})["state"] == "done"


@pytest.mark.parametrize(
    ("name", "make", "status", "code"),
    [
        ("empty.wav", lambda: b"", 400, "invalid_audio"),
        ("notes.txt", lambda: b"this is not audio at all" * 100, 415, "unsupported_format"),
        (
            "silence.wav",
            lambda: wav_bytes(np.zeros((2, 44100 * 3), np.float32), 44100),
            400,
            "invalid_audio",
        ),
        (
            "nan.wav",
            lambda: wav_bytes(np.full((2, 44100 * 2), np.nan, np.float32), 44100, "FLOAT"),
            400,
            "invalid_audio",
        ),
        (
            "huge.wav",
            lambda: b"RIFF" + os.urandom(MAX_UPLOAD_MB * 1024 * 1024 + 10),
            413,
            "limit_exceeded",
        ),
        (
            "long.wav",
            lambda: wav_bytes(
                little_song(sr=8000, duration_s=MAX_DURATION_S + 20, channels=1), 8000
            ),
            413,
            "limit_exceeded",
        ),
    ],
)
def test_bad_uploads_get_json_errors(
    cluster: Cluster, name: str, make, status: int, code: str
) -> None:
    resp = submit(cluster, make(), name=name)
    assert resp.status_code == status, resp.text
    assert resp.json()["error"]["code"] == code
    assert resp.json()["error"]["message"]


def test_unknown_job_is_404_json(cluster: Cluster) -> None:
    resp = cluster.api("GET", "/v1/jobs/nope")
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "not_found"


def test_webhook_delivered_signed_from_the_distributed_gateway(cluster: Cluster) -> None:
    """PostgreSQL path: the delivery is owed in the event's transaction and leased with
    FOR UPDATE SKIP LOCKED; the first try fails (503) and the retry arrives, signed."""
    from gateway.webhooks import verify
    from tests.infra import Receiver, wait_until

    receiver = Receiver()
    try:
        receiver.script[:] = [503]
        hook = cluster.api("POST", "/v1/webhooks", json={"url": receiver.url}).json()
        job_id = submit(cluster, wav_bytes(little_song(sr=22050, duration_s=4.0), 22050)).json()[
            "job_id"
        ]
        assert wait_state(cluster, job_id, {"done", "failed"})["state"] == "done"
        wait_until(lambda: len(receiver.requests) >= 2, timeout_s=60, what="the retried delivery")
        headers, body = receiver.requests[1]
        assert verify(hook["secret"], headers["mixpilot-signature"], body)
        assert json.loads(body)["data"]["job_id"] == job_id
        log = cluster.api("GET", f"/v1/webhooks/{hook['webhook_id']}/deliveries").json()
        assert (log["items"][0]["status"], log["items"][0]["attempts"]) == ("delivered", 2)
    finally:
        receiver.close()

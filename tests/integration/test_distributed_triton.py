"""The distributed pipeline with the predictor on Triton (``MIXPILOT_TRITON_URL``): a job
reaches ``done`` with the three AI versions computed by Triton, and a Triton outage makes the
predictor report NOT_SERVING and hold the job in its topic until Triton is back, when the job
completes, once, with nothing in the dead-letter topic."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import tritonclient.grpc as grpcclient

from gateway.store import JobStore
from services.common.bus import DLQ
from services.predictor.inference import AI_VERSIONS
from services.predictor.training.config import MODEL_NAMES
from tests.cluster import Cluster, messages_for, running_cluster, submit, wait_state, wav_bytes
from tests.infra import TritonServer, start_or_fail, start_triton, wait_until
from tests.signals import little_song

SR = 44100


@pytest.fixture(scope="module")
def own_triton(
    triton_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TritonServer]:
    """A Triton of this module's own: the outage test stops and restarts it."""
    server = start_or_fail(
        "Triton", lambda: start_triton(tmp_path_factory.mktemp("triton-outage"), triton_repository)
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def cluster(
    kafka_bootstrap: str,
    postgres_url: str,
    own_triton: TritonServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cluster]:
    with running_cluster(
        kafka_bootstrap,
        postgres_url,
        tmp_path_factory.mktemp("cluster-triton"),
        MIXPILOT_TRITON_URL=own_triton.url,
        MIXPILOT_TRITON_RETRY_S="60",
    ) as c:
        yield c


def _inferences(url: str) -> dict[str, int]:
    client = grpcclient.InferenceServerClient(url)
    try:
        stats = client.get_inference_statistics(as_json=True)["model_stats"]
    finally:
        client.close()
    return {s["name"]: int(s.get("inference_count", 0)) for s in stats}


def _metric(cluster: Cluster, role: str, prefix: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{cluster.metrics_ports[role]}/metrics", timeout=10).text
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(prefix)]
    assert values, f"no metric {prefix}"
    return sum(values)


def test_job_done_with_three_ai_versions_from_triton(
    cluster: Cluster, own_triton: TritonServer
) -> None:
    before = _inferences(own_triton.url)
    song = little_song(sr=SR, duration_s=20.0)
    job_id = submit(cluster, wav_bytes(song, SR)).json()["job_id"]
    done = wait_state(cluster, job_id, {"done", "failed"})
    assert done["state"] == "done", done
    report = cluster.api("GET", f"/v1/jobs/{job_id}/report", timeout=10).json()
    assert set(report["versions"]) == {"original", "strategy", *AI_VERSIONS.values()}
    # Every model ran on Triton: two 8 s clips of this song each.
    after = _inferences(own_triton.url)
    assert {m: after[m] - before.get(m, 0) for m in MODEL_NAMES} == {m: 2 for m in MODEL_NAMES}
    for model in MODEL_NAMES:
        count = f'mixpilot_predictor_triton_request_seconds_count{{model="{model}"}}'
        assert _metric(cluster, "predictor", count) >= 1
    assert (
        _metric(cluster, "predictor", 'mixpilot_stage_dependencies_ready{stage="predictor"}') == 1
    )


def test_triton_outage_holds_the_job_until_triton_returns(
    cluster: Cluster, own_triton: TritonServer
) -> None:
    own_triton.stop()
    try:
        wait_until(lambda: not cluster.serving("predictor"), timeout_s=20, what="NOT_SERVING")
        assert (
            _metric(cluster, "predictor", 'mixpilot_stage_dependencies_ready{stage="predictor"}')
            == 0
        )
        song = little_song(sr=SR, duration_s=12.0)
        job_id = submit(cluster, wav_bytes(song, SR)).json()["job_id"]
        time.sleep(8.0)  # the analyzer is done long before this; the predictor must wait
        state = cluster.api("GET", f"/v1/jobs/{job_id}", timeout=5).json()["state"]
        assert state in {"queued", "analyzing"}, state
        assert cluster.serving("analyzer") and not cluster.serving("predictor")
    finally:
        own_triton.start()
    cluster.wait_serving("predictor", timeout_s=60)
    done = wait_state(cluster, job_id, {"done", "failed"}, timeout_s=180)
    assert done["state"] == "done", done
    report = cluster.api("GET", f"/v1/jobs/{job_id}/report", timeout=10).json()
    assert set(report["versions"]) >= set(AI_VERSIONS.values())
    store = JobStore(cluster.database_url)
    assert store.count_events(job_id, "done") == 1
    assert store.count_events(job_id, "failed") == 0
    assert messages_for(cluster.bootstrap, DLQ, job_id, timeout_s=8) == []

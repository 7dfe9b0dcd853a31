"""The predictor against a real Triton server (``tritonserver`` 2.51 from the nvidia-pytriton
wheel, Python backend, the repository of ``mixpilot triton-repo``): parity with local inference
for all three models, dynamic batching seen in Triton's own statistics, readiness, clear errors
for a wrong input and a missing model, and bounded retries across a restart."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from services.analyzer.analysis import analyze
from services.common.errors import ModelMismatchError, ModelUnavailableError
from services.predictor.inference import LocalModels, model_inputs
from services.predictor.training.config import MODEL_NAMES
from services.predictor.triton_client import TritonModels
from services.predictor.triton_parity import parity
from tests.infra import (
    TritonServer,
    free_port,
    log_tail,
    start_process,
    start_triton,
    stop_process,
    wait_until,
)
from tests.signals import little_song

SR = 44100


@pytest.fixture(scope="module")
def song() -> tuple[np.ndarray, object]:
    audio = little_song(sr=SR, duration_s=30.0)
    return audio, analyze(audio, SR)


def test_parity_with_local_inference_for_all_three_models(triton: TritonServer, song) -> None:
    audio, analysis = song
    result = parity(triton.url, audio, SR, analysis)
    assert result.clips == 3  # three 8 s clips of a 30 s song
    assert max(result.normalised.values()) <= 1e-5, result.normalised
    # In physical units (dB, width), as the predictor reports them: within 1e-4.
    assert max(result.physical.values()) <= 1e-4, result.physical
    assert result.ok
    # Each name reached its own network: the three answers differ.
    eq = [list(result.raw[n].values()) for n in MODEL_NAMES]
    assert min(np.abs(np.subtract(eq[i], eq[j])).max() for i, j in ((0, 1), (0, 2), (1, 2))) > 1e-3


def test_triton_check_command_reports_agreement(triton: TritonServer, capsys) -> None:  # type: ignore[no-untyped-def]
    from gateway.cli import main

    assert main(["triton-check", triton.url, "--seconds", "20"]) == 0
    out = capsys.readouterr().out
    assert "agree" in out and "DISAGREE" not in out
    assert all(name in out for name in MODEL_NAMES)


def _stats(url: str, model: str) -> tuple[int, int]:
    """(inferences, executions) Triton counted for ``model``."""
    client = grpcclient.InferenceServerClient(url)
    stats = client.get_inference_statistics(model, as_json=True)["model_stats"][0]
    client.close()
    return int(stats.get("inference_count", 0)), int(stats.get("execution_count", 0))


def test_dynamic_batching_merges_concurrent_songs(triton: TritonServer, song) -> None:
    """Sixteen songs sent at once run in fewer forward passes than requests: Triton's
    statistics count more inferences (clips) per execution than one request carries."""
    audio, analysis = song
    mel, context = model_inputs(audio, SR, analysis)
    runner = TritonModels(triton.url, retry_s=5.0)
    before = _stats(triton.url, "baseline_cnn")
    barrier = threading.Barrier(16)
    results: list[np.ndarray] = []

    def one() -> None:
        barrier.wait()
        results.append(runner.infer("baseline_cnn", mel, context))

    threads = [threading.Thread(target=one) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 16
    for r in results:  # batching changes nothing in the answers
        assert np.abs(r - results[0]).max() <= 1e-5
    # Triton updates its statistics as it finishes each execution: wait until all are in.
    wait_until(
        lambda: _stats(triton.url, "baseline_cnn")[0] - before[0] >= 16 * mel.shape[0],
        timeout_s=30,
        what="Triton's statistics to count every inference",
    )
    after = _stats(triton.url, "baseline_cnn")
    inferences, executions = after[0] - before[0], after[1] - before[1]
    assert inferences == 16 * mel.shape[0]
    assert executions < 16, f"{executions} executions for 16 requests: nothing was batched"


def test_wrong_input_shape_is_a_clear_error(triton: TritonServer, song) -> None:
    audio, analysis = song
    mel, context = model_inputs(audio, SR, analysis)
    runner = TritonModels(triton.url, retry_s=5.0)
    with pytest.raises(
        ModelMismatchError, match=r"ast .*refused its input.*Expected \[-1,2,64,345\]"
    ):
        runner.infer("ast", np.ascontiguousarray(mel[:, :, :, :300]), context)
    with pytest.raises(ModelMismatchError, match="batch size does not match"):
        runner.infer("ast", mel, context[:1])


def test_missing_model_fails_after_the_retry_bound(triton: TritonServer, song) -> None:
    audio, analysis = song
    mel, context = model_inputs(audio, SR, analysis)
    runner = TritonModels(triton.url, retry_s=1.0, backoff_s=0.1, models=("no_such_model",))
    ready, reason = runner.status()
    assert not ready and "no ready model no_such_model" in reason
    started = time.monotonic()
    with pytest.raises(
        ModelUnavailableError, match=r"no_such_model .*unavailable after \d+ tries .*not found"
    ):
        runner.infer("no_such_model", mel, context)
    assert time.monotonic() - started < 10


def test_unloaded_model_is_not_ready_until_loaded_again(triton: TritonServer) -> None:
    runner = TritonModels(triton.url, retry_s=2.0)
    client = grpcclient.InferenceServerClient(triton.url)
    try:
        client.unload_model("ast")
        wait_until(lambda: not runner.status()[0], timeout_s=30, what="ast to unload")
        ready, reason = runner.status()
        assert "no ready model ast" in reason
        with pytest.raises(ModelUnavailableError, match="no ready model ast"):
            runner.check()
    finally:
        client.load_model("ast")
        client.close()
    wait_until(lambda: runner.status()[0], timeout_s=60, what="ast to load again")
    runner.check()


def test_a_call_in_flight_survives_a_triton_restart(
    triton_repository: Path, tmp_path: Path, song
) -> None:
    """Triton goes away and comes back on the same port within the retry bound: a call made
    meanwhile is retried with backoff and returns the right answer."""
    audio, analysis = song
    mel, context = model_inputs(audio, SR, analysis)
    server = start_triton(tmp_path, triton_repository)
    try:
        runner = TritonModels(server.url, retry_s=120.0, backoff_s=0.2, max_backoff_s=1.0)
        expected = LocalModels().predict(["enhanced_cnn"], mel, context)["enhanced_cnn"]
        np.testing.assert_allclose(runner.infer("enhanced_cnn", mel, context), expected, atol=1e-5)
        server.stop()
        assert not runner.status()[0]
        out: dict[str, object] = {}

        def call() -> None:
            try:
                out["value"] = runner.infer("enhanced_cnn", mel, context)
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                out["error"] = exc

        thread = threading.Thread(target=call)
        thread.start()
        time.sleep(2.0)  # the call is now retrying against a closed port
        assert thread.is_alive()
        server.start()
        thread.join(120)
        assert "error" not in out, out
        np.testing.assert_allclose(out["value"], expected, atol=1e-5)
    finally:
        server.stop()


def test_triton_exports_prometheus_metrics(triton: TritonServer) -> None:
    text = httpx.get(triton.metrics_url, timeout=10).text
    for name in MODEL_NAMES:
        assert f'nv_inference_request_success{{model="{name}",version="1"}}' in text
    assert "nv_inference_queue_duration_us" in text


def test_mixpilot_triton_command_serves_the_three_models(tmp_path: Path) -> None:
    """`mixpilot triton` (the development command) writes the repository and runs Triton."""
    ports = [free_port() for _ in range(3)]
    cmd = [sys.executable, "-m", "gateway.cli", "triton", "--dir", str(tmp_path / "triton")]
    cmd += ["--grpc-port", str(ports[0]), "--http-port", str(ports[1])]
    cmd += ["--metrics-port", str(ports[2])]
    process = start_process(cmd, log_path=tmp_path / "triton.log")
    try:
        runner = TritonModels(f"127.0.0.1:{ports[0]}")
        wait_until(
            lambda: process.poll() is None and runner.status()[0],
            timeout_s=120,
            interval_s=0.5,
            what="`mixpilot triton` to serve the models",
        )
        runner.check()
        assert (tmp_path / "triton" / "repository" / "ast" / "1" / "model.pt").is_file()
        assert f"MIXPILOT_TRITON_URL=127.0.0.1:{ports[0]}" in (tmp_path / "triton.log").read_text()
    except TimeoutError as exc:
        raise AssertionError(f"{exc}; log:\n{log_tail(tmp_path / 'triton.log', 40)}") from None
    finally:
        stop_process(process, timeout_s=20)

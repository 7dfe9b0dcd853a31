"""Re-renders of a finished job through the REST API (`mixpilot serve` wiring: the renderer
runs in the gateway's process): a user's edit as a new version, previews of an excerpt, and
every way a request can be wrong. The distributed path (gRPC to the renderer service) is in
tests/integration/test_distributed.py."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import schemathesis
import soundfile as sf
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from services.common.loudness import integrated_loudness, true_peak_dbtp
from tests.gateway_app import gateway_world, submit, wait_done

SR = 22050
SONG_S = 12.0


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with gateway_world(tmp_path_factory.mktemp("renders"), song_s=SONG_S) as w:
        job = submit(w["a"], w["song"]).json()
        assert wait_done(w["a"], job["job_id"])["state"] == "done"
        w["job_id"] = job["job_id"]
        yield w


def _audio(resp: Any) -> tuple[np.ndarray, int]:
    audio, sr = sf.read(io.BytesIO(resp.content), dtype="float32", always_2d=True)
    return audio.T, int(sr)


def _high_share(audio: np.ndarray, sr: int, above_hz: float = 4000.0) -> float:
    """Share of the signal's energy above ``above_hz``."""
    spectrum = np.abs(np.fft.rfft(audio.mean(axis=0))) ** 2
    freqs = np.fft.rfftfreq(audio.shape[1], 1 / sr)
    return float(spectrum[freqs >= above_hz].sum() / spectrum.sum())


def _blob_files(world: dict[str, Any]) -> set[Path]:
    return {p for p in Path(world["blobs"]).rglob("*") if p.is_file()}


def test_an_edit_renders_as_a_new_version_that_sounds_like_the_edit(
    world: dict[str, Any],
) -> None:
    a: TestClient = world["a"]
    job_id = world["job_id"]
    url = f"/v1/jobs/{job_id}/renders"
    edit = {"eq_high_shelf_gain_db": 9.0, "eq_high_shelf_freq_hz": 4000.0}
    resp = a.post(url, json={"base": "strategy", "params": edit})
    assert resp.status_code == 201, resp.text
    version = resp.json()
    assert version["name"] == "user-1" and version["job_id"] == job_id
    assert version["label"] == "Your edit 1"
    assert version["params"]["eq_high_shelf_gain_db"] == 9.0
    job = a.get(f"/v1/jobs/{job_id}").json()
    strategy = job["versions"]["strategy"]["params"]
    # Everything not edited keeps the base version's value.
    assert {k: v for k, v in version["params"].items() if k not in edit} == {
        k: v for k, v in strategy.items() if k not in edit
    }
    assert job["versions"]["user-1"] == {
        k: v for k, v in version.items() if k not in ("name", "job_id")
    }

    # As audio: same length and rate as the input, on the loudness target, under the ceiling,
    # and brighter than the version it was edited from by about what a +9 dB shelf gives.
    edited, sr = _audio(a.get(version["url"]))
    base, _ = _audio(a.get(job["versions"]["strategy"]["url"]))
    assert sr == SR and edited.shape == base.shape == (2, int(SONG_S * SR))
    assert abs(integrated_loudness(edited, sr) - job["options"]["target_lufs"]) <= 0.5
    assert true_peak_dbtp(edited) <= -1.0 + 1e-6
    gain = _high_share(edited, sr) / _high_share(base, sr)
    assert 3.0 < gain < 12.0, gain

    # The report and the ZIP hold it too.
    report = a.get(f"/v1/jobs/{job_id}/report").json()
    entry = report["versions"]["user-1"]
    assert entry["based_on"] == "strategy" and entry["source"] == "user"
    assert entry["sha256"] and entry["params"]["eq_high_shelf_gain_db"] == 9.0
    archive = a.get(f"/v1/jobs/{job_id}/archive", params={"format": "flac"})
    with zipfile.ZipFile(io.BytesIO(archive.content)) as z:
        assert "s-user-1.flac" in z.namelist()


def test_the_same_edit_twice_is_one_version_and_another_edit_a_second(
    world: dict[str, Any],
) -> None:
    a: TestClient = world["a"]
    url = f"/v1/jobs/{world['job_id']}/renders"
    body = {"base": "ai_ast", "params": {"reverb_mix_pct": 25.0, "reverb_style": "hall"}}
    first = a.post(url, json=body)
    assert first.status_code == 201, first.text
    again = a.post(url, json=body)
    assert again.status_code == 200 and again.json()["name"] == first.json()["name"]
    other = a.post(url, json={**body, "params": {"reverb_mix_pct": 10.0}})
    assert other.status_code == 201
    names = {first.json()["name"], other.json()["name"]}
    assert len(names) == 2 and all(n.startswith("user-") for n in names)
    versions = a.get(f"/v1/jobs/{world['job_id']}").json()["versions"]
    assert names <= set(versions)
    assert versions[first.json()["name"]]["params"]["reverb_style"] == 2.0  # "hall"'s index


def test_a_preview_is_the_excerpt_of_the_full_render_and_stores_nothing(
    world: dict[str, Any],
) -> None:
    a: TestClient = world["a"]
    job_id = world["job_id"]
    edit = {"base": "strategy", "params": {"comp_ratio": 4.0, "comp_threshold_db": -24.0}}
    before_blobs = _blob_files(world)
    before_job = a.get(f"/v1/jobs/{job_id}").json()
    resp = a.post(
        f"/v1/jobs/{job_id}/renders", json={**edit, "preview": {"start_s": 4.0, "duration_s": 5.0}}
    )
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "audio/wav"
    assert float(resp.headers["x-mixpilot-excerpt-start-s"]) == 4.0
    assert float(resp.headers["x-mixpilot-excerpt-duration-s"]) == 5.0
    preview, sr = _audio(resp)
    assert sr == SR and preview.shape == (2, 5 * SR)
    assert float(resp.headers["x-mixpilot-true-peak-dbtp"]) <= -1.0 + 1e-6
    # Nothing stored, nothing added to the job.
    assert _blob_files(world) == before_blobs
    assert a.get(f"/v1/jobs/{job_id}").json()["versions"] == before_job["versions"]

    # The preview is what the full render of the same edit sounds like there, at its level.
    full = a.post(f"/v1/jobs/{job_id}/renders", json=edit).json()
    region, _ = _audio(a.get(full["url"]))
    region = region[:, 4 * SR : 9 * SR]
    corr = np.sum(preview * region) / np.sqrt(np.sum(preview**2) * np.sum(region**2))
    assert corr > 0.99, corr
    assert abs(integrated_loudness(preview, sr) - integrated_loudness(region, sr)) < 1.0

    # An excerpt past the end is cut at the song's end.
    tail = a.post(
        f"/v1/jobs/{job_id}/renders", json={**edit, "preview": {"start_s": 10.0, "duration_s": 5}}
    )
    assert tail.status_code == 200
    assert float(tail.headers["x-mixpilot-excerpt-duration-s"]) == pytest.approx(2.0)
    assert _audio(tail)[0].shape == (2, 2 * SR)


@pytest.mark.parametrize(
    ("body", "status", "code", "says"),
    [
        ({"params": {"eq_sparkle_db": 3}}, 400, "invalid_parameter", "eq_sparkle_db"),
        ({"params": {"comp_ratio": 50}}, 400, "invalid_parameter", "comp_ratio=50"),
        ({"params": {"reverb_style": "cathedral"}}, 400, "invalid_parameter", "cathedral"),
        ({"base": "user-99"}, 400, "invalid_parameter", "no version 'user-99'"),
        ({"preview": {"start_s": 11.5}}, 400, "invalid_parameter", "outside the song"),
        ({"preview": {"duration_s": 31}}, 400, "invalid_request", "duration_s"),
        ({"preview": {"duration_s": 0.5}}, 400, "invalid_request", "duration_s"),
        ({"preview": {"start_s": -1}}, 400, "invalid_request", "start_s"),
        ({"params": {"comp_ratio": "NaN"}}, 400, "invalid_parameter", "comp_ratio"),
        ({"params": {"comp_ratio": "abc"}}, 400, "invalid_parameter", "'abc' is not a number"),
        ({"params": []}, 400, "invalid_request", "params"),
    ],
)
def test_a_bad_edit_gets_a_clear_error(
    world: dict[str, Any], body: dict[str, Any], status: int, code: str, says: str
) -> None:
    resp = world["a"].post(f"/v1/jobs/{world['job_id']}/renders", json=body)
    assert resp.status_code == status, resp.text
    assert resp.json()["error"]["code"] == code
    assert says in resp.json()["error"]["message"]


def test_renders_of_unfinished_unknown_and_other_tenants_jobs(world: dict[str, Any]) -> None:
    a, b = world["a"], world["b"]
    job_id = world["job_id"]
    for body in ({}, {"preview": {"start_s": 1}}):
        theirs = b.post(f"/v1/jobs/{job_id}/renders", json=body)
        missing = b.post(f"/v1/jobs/{'0' * 32}/renders", json=body)
        assert theirs.status_code == missing.status_code == 404
    assert world["anon"].post(f"/v1/jobs/{job_id}/renders", json={}).status_code == 401
    # A job still in the pipeline cannot be re-rendered yet (409), and malformed JSON is a 400.
    queued = submit(a, world["song"]).json()["job_id"]
    early = a.post(f"/v1/jobs/{queued}/renders", json={})
    if early.status_code != 201:  # it may have finished already on a fast machine
        assert early.status_code == 409 and early.json()["error"]["code"] == "conflict"
    wait_done(a, queued)
    bad = a.post(
        f"/v1/jobs/{job_id}/renders",
        content=b'{"base": ',
        headers={"Content-Type": "application/json"},
    )
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_request"


def test_generated_edits_of_a_real_job_never_get_a_server_error(world: dict[str, Any]) -> None:
    """Schemathesis' valid and invalid bodies for this operation, sent for the finished job
    (the whole-API fuzz only reaches it with job ids that do not exist)."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", world["app"])
    operation = schema["/v1/jobs/{job_id}/renders"]["POST"]
    headers = {"Authorization": world["a"].headers["authorization"]}
    seen: list[int] = []

    @settings(
        max_examples=25,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=GenerationMode.POSITIVE))
    def run(case: Any) -> None:
        case.path_parameters = {"job_id": world["job_id"]}
        response = case.call(headers=headers)
        assert response.status_code < 500, response.text
        seen.append(response.status_code)

    run()
    assert len(seen) >= 20 and {200, 201} & set(seen), seen


def test_every_version_has_its_pictures(world: dict[str, Any]) -> None:
    a: TestClient = world["a"]
    job = a.get(f"/v1/jobs/{world['job_id']}").json()
    for name in ("original", "strategy"):
        data = a.get(f"/v1/jobs/{world['job_id']}/outputs/{name}/visual").json()
        assert data["sample_rate"] == SR and data["duration_s"] == SONG_S
        assert len(data["waveform"]["max"]) == 1200
        assert len(data["spectrum"]["hz"]) == len(data["spectrum"]["db"]) > 40
        assert max(data["spectrum"]["db"]) > -40  # music, not silence
    assert a.get(f"/v1/jobs/{world['job_id']}/outputs/nope/visual").status_code == 404
    assert world["b"].get(f"/v1/jobs/{world['job_id']}/outputs/original/visual").status_code == 404
    assert job["versions"]["original"]["url"].endswith("/outputs/original")


def test_the_report_names_the_options_of_choice_parameters(world: dict[str, Any]) -> None:
    from services.common.params import PARAMETERS

    parameters = world["a"].get(f"/v1/jobs/{world['job_id']}/report").json()["parameters"]
    for p in PARAMETERS:
        if p.choices:
            assert parameters[p.name]["choices"] == list(p.choices)
            assert parameters[p.name]["max"] == len(p.choices) - 1
        else:
            assert "choices" not in parameters[p.name]

"""The Python client (gateway/client.py) against the real app (`mixpilot serve` wiring, in
process): submit, wait on the event stream, download, page, errors as ApiError."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from gateway.accounts import Accounts
from gateway.client import ApiError, MixPilotClient
from gateway.runtime import build_one_machine
from gateway.store import JobStore
from services.common.settings import load_settings
from tests.signals import little_song


@pytest.fixture(scope="module")
def mp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MixPilotClient, Any, Path]]:
    tmp = tmp_path_factory.mktemp("client")
    settings = load_settings(
        auth="api_key",  # keys even on loopback: the tests use them
        database_url=f"sqlite:///{tmp / 'jobs.sqlite3'}",
        blob_url=f"file://{tmp / 'blobs'}",
        cache_dir=tmp / "cache",
    )
    app, stop = build_one_machine(settings)
    key = Accounts(JobStore(settings.database_url).engine).create_key("client", plan="label")[0]
    song = tmp / "my song.flac"
    sf.write(song, little_song(sr=22050, duration_s=3.0).T, 22050, format="FLAC")
    client = MixPilotClient("http://testserver", key, http=TestClient(app))
    try:
        yield client, app, song
    finally:
        stop()


def test_submit_wait_and_download(mp: tuple[MixPilotClient, Any, Path], tmp_path: Path) -> None:
    client, _, song = mp
    job = client.submit(song, target_lufs=-16, idempotency_key="k1")
    assert job["state"] == "queued" and job["filename"] == "my song.flac"
    assert client.submit(song, target_lufs=-16, idempotency_key="k1")["job_id"] == job["job_id"]
    seen: list[tuple[str, float]] = []
    done = client.wait(
        job["job_id"], on_progress=lambda j: seen.append((j["state"], j["progress"]))
    )
    assert done["state"] == "done" and seen[-1] == ("done", 1.0)
    assert [p for _, p in seen] == sorted(p for _, p in seen)
    out = client.download(job["job_id"], "ai_ast", tmp_path / "x" / "ai.flac", format="flac")
    audio, sr = sf.read(out, always_2d=True)
    assert sr == 22050 and audio.shape == (3 * 22050, 2)
    assert not list(tmp_path.rglob("*.part"))
    archive = client.archive(job["job_id"], tmp_path / "all.zip", format="mp3")
    with zipfile.ZipFile(archive) as z:
        assert "report.json" in z.namelist()
        assert sum(n.endswith(".mp3") for n in z.namelist()) == len(done["versions"])
    assert client.report(job["job_id"])["analysis"]["sample_rate"] == 22050
    with open(song, "rb") as f:
        second = client.submit(f, filename="take.flac")
    assert second["filename"] == "take.flac"
    client.wait(second["job_id"])
    # An edit: a preview of 1 s from 1 s, then the whole song as a new version.
    wav = client.preview(job["job_id"], {"stereo_width": 1.4}, start_s=1.0, duration_s=1.0)
    assert sf.read(io.BytesIO(wav), always_2d=True)[0].shape == (22050, 2)
    mine = client.render(job["job_id"], {"stereo_width": 1.4}, base="ai_ast")
    assert mine["name"] == "user-1" and mine["params"]["stereo_width"] == 1.4
    assert "user-1" in client.job(job["job_id"])["versions"]
    # A batch: two songs and a file that is not audio, each accounted for in the manifest.
    notes = tmp_path / "notes.txt"
    notes.write_text("not audio" * 100)
    batch = client.submit_batch([song, song, notes], name="EP", target_lufs=-16)
    assert batch["total"] == 3 and batch["name"] == "EP"
    seen_batches: list[dict[str, Any]] = []
    finished = client.wait_batch(batch["batch_id"], poll_s=0.1, on_progress=seen_batches.append)
    assert finished["counts"] == {"done": 2, "failed": 1} and seen_batches[-1] == finished
    rows = client.manifest(batch["batch_id"])
    assert sorted(r["state"] for r in rows) == ["done", "done", "failed"]
    with pytest.raises(ApiError) as err:
        client.import_batch("album/")  # local blob store here: imports need S3
    assert err.value.status == 409
    ids = [j["job_id"] for j in client.jobs(page_size=1)]
    assert ids.index(second["job_id"]) < ids.index(job["job_id"])  # newest first, every page
    assert len(ids) == 5  # two jobs and three batch items
    assert client.usage()["jobs"] == 4  # two jobs, two batch files (the text file never was)


def test_errors_are_api_errors(mp: tuple[MixPilotClient, Any, Path]) -> None:
    client, app, song = mp
    with pytest.raises(ApiError) as err:
        client.job("0" * 32)
    assert (err.value.status, err.value.code) == (404, "not_found")
    stranger = MixPilotClient(
        "http://testserver", "mpk_000000000000_" + "x" * 43, http=TestClient(app)
    )
    with pytest.raises(ApiError) as err:
        list(stranger.jobs())
    assert (err.value.status, err.value.code) == (401, "unauthenticated")
    with pytest.raises(ApiError) as err:
        client.submit(io.BytesIO(b"not audio at all" * 100), filename="notes.txt")
    assert (err.value.status, err.value.code) == (415, "unsupported_format")
    with pytest.raises(ApiError) as err:
        client.download("0" * 32, "strategy", "/tmp/never.wav")
    assert err.value.code == "not_found"
    with pytest.raises(ApiError) as err:
        client.create_webhook("http://127.0.0.1:9/x")
    assert err.value.code == "invalid_parameter" and "non-public" in err.value.message

"""The REST API's tenants and keys, listing, idempotency, cancel and delete, through the real
app (`mixpilot serve` wiring: in-memory bus, SQLite, local blobs, the three stages)."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from gateway import plans
from gateway.api import Gateway
from gateway.plans import Plan
from tests.gateway_app import bare_gateway, flac_song, gateway_world, submit, wait_done


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with gateway_world(tmp_path_factory.mktemp("gateway")) as w:
        yield w


def test_missing_malformed_wrong_and_revoked_keys_are_401(world: dict[str, Any]) -> None:
    anon: TestClient = world["anon"]
    cases = {
        "missing": {},
        "not bearer": {"Authorization": "Basic dXNlcjpwYXNz"},
        "malformed": {"Authorization": "Bearer not-a-key"},
        "unknown": {"Authorization": "Bearer mpk_000000000000_" + "A" * 43},
        "revoked": {"Authorization": f"Bearer {world['revoked']}"},
    }
    for what, headers in cases.items():
        for method, path in (("GET", "/v1/jobs"), ("GET", "/v1/jobs/x"), ("POST", "/v1/jobs")):
            resp = anon.request(method, path, headers=headers)
            assert resp.status_code == 401, (what, method, path)
            assert resp.json()["error"]["code"] == "unauthenticated"
            assert resp.headers["www-authenticate"] == "Bearer"
    # A right key with a wrong secret does not pass either.
    good = world["a"].headers["authorization"]
    tampered = good[:-1] + ("A" if good[-1] != "A" else "B")
    assert anon.get("/v1/jobs", headers={"Authorization": tampered}).status_code == 401
    # Health, metrics and the OpenAPI document need no key.
    for path in ("/healthz", "/readyz", "/openapi.json"):
        assert anon.get(path).status_code == 200, path


def test_an_unauthenticated_upload_is_refused_before_its_body_is_read(
    world: dict[str, Any],
) -> None:
    """The 401 comes from the headers alone: the body is a generator that fails if read."""

    def body() -> Iterator[bytes]:
        raise AssertionError("the body of an unauthenticated request was read")
        yield b""  # pragma: no cover

    resp = world["anon"].post(
        "/v1/jobs", content=body(), headers={"Content-Type": "multipart/form-data; boundary=x"}
    )
    assert resp.status_code == 401


def test_tenants_cannot_see_or_touch_each_others_jobs(world: dict[str, Any]) -> None:
    a, b = world["a"], world["b"]
    resp = submit(a, world["song"])
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["job_id"]
    done = wait_done(a, job_id)
    assert done["state"] == "done", done
    assert a.get(f"/v1/jobs/{job_id}/report").status_code == 200
    assert a.get(f"/v1/jobs/{job_id}/outputs/strategy").status_code == 200
    for method, path in (
        ("GET", f"/v1/jobs/{job_id}"),
        ("GET", f"/v1/jobs/{job_id}/report"),
        ("GET", f"/v1/jobs/{job_id}/outputs/strategy"),
        ("POST", f"/v1/jobs/{job_id}/cancel"),
        ("DELETE", f"/v1/jobs/{job_id}"),
    ):
        other = b.request(method, path)
        missing = b.request(method, path.replace(job_id, "0" * 32))
        # Exactly what a job that does not exist gets: nothing tells B that A's job exists.
        assert other.status_code == missing.status_code == 404, (method, path)
        assert other.json()["error"]["code"] == "not_found"
        assert other.json()["error"]["message"] == missing.json()["error"]["message"].replace(
            "0" * 32, job_id
        )
    assert job_id not in [j["job_id"] for j in b.get("/v1/jobs").json()["items"]]
    assert a.get(f"/v1/jobs/{job_id}").json()["state"] == "done"  # B changed nothing


def test_list_pages_newest_first_and_filters_by_state(world: dict[str, Any]) -> None:
    b: TestClient = world["b"]
    ids = [submit(b, world["song"]).json()["job_id"] for _ in range(5)]
    for job_id in ids:
        wait_done(b, job_id)
    b.post(f"/v1/jobs/{ids[0]}/cancel")  # already done: stays done (409)
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = b.get("/v1/jobs", params=params).json()
        assert len(page["items"]) <= 2
        seen += [j["job_id"] for j in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen[:5] == ids[::-1]  # newest first, each once
    assert len(seen) == len(set(seen))
    done = b.get("/v1/jobs", params={"state": "done", "limit": 200}).json()["items"]
    assert {j["job_id"] for j in done} >= set(ids)
    assert b.get("/v1/jobs", params={"state": "failed"}).json()["items"] == []
    bad = b.get("/v1/jobs", params={"state": "sleeping"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_request"
    assert b.get("/v1/jobs", params={"cursor": "!!"}).json()["error"]["code"] == (
        "invalid_parameter"
    )
    assert b.get("/v1/jobs", params={"limit": 0}).status_code == 400


def test_idempotency_key_creates_one_job(world: dict[str, Any]) -> None:
    a: TestClient = world["a"]
    first = submit(a, world["song"], **{"Idempotency-Key": "upload-42"})
    again = submit(a, world["song"], **{"Idempotency-Key": "upload-42"})
    assert first.status_code == again.status_code == 202
    assert first.json()["job_id"] == again.json()["job_id"]
    assert again.headers["idempotent-replayed"] == "true"
    # The same key for a different request is a conflict, never a silent second job.
    other = a.post(
        "/v1/jobs",
        files={"file": ("s.flac", world["song"])},
        data={"target_lufs": "-20"},
        headers={"Idempotency-Key": "upload-42"},
    )
    assert other.status_code == 409 and other.json()["error"]["code"] == "conflict"
    # Keys are per tenant: B may use the same key for its own job.
    theirs = submit(world["b"], world["song"], **{"Idempotency-Key": "upload-42"})
    assert theirs.status_code == 202 and theirs.json()["job_id"] != first.json()["job_id"]
    for job_id in (first.json()["job_id"], theirs.json()["job_id"]):
        wait_done(a if job_id == first.json()["job_id"] else world["b"], job_id)


def test_cancel_then_delete_removes_the_job_and_unshared_blobs(world: dict[str, Any]) -> None:
    a: TestClient = world["a"]
    # Delete a finished job: its outputs go, the shared input stays while another job uses it.
    keep = submit(a, world["song"]).json()["job_id"]
    gone = submit(a, world["song"]).json()["job_id"]
    wait_done(a, keep)
    finished = wait_done(a, gone)
    assert a.post(f"/v1/jobs/{gone}/cancel").status_code == 409  # finished: not cancellable
    blobs: Path = world["blobs"]
    before = {p.name for p in blobs.rglob("*") if p.is_file()}
    assert a.delete(f"/v1/jobs/{gone}").status_code == 204
    assert a.get(f"/v1/jobs/{gone}").status_code == 404
    assert a.delete(f"/v1/jobs/{gone}").status_code == 404
    after = {p.name for p in blobs.rglob("*") if p.is_file()}
    assert after < before  # something was removed ...
    assert a.get(f"/v1/jobs/{keep}/outputs/original").status_code == 200  # ... nothing shared
    assert a.get(f"/v1/jobs/{keep}/report").status_code == 200
    assert finished["state"] == "done"


@pytest.fixture
def tight_plans(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plans under test are registered for the test only."""
    monkeypatch.setattr(plans, "PLANS", dict(plans.PLANS))


def test_cancel_a_queued_job(tmp_path: Path) -> None:
    """A job nobody works on (no stage workers here) is cancelled: failed, code cancelled;
    a running job cannot be deleted before."""
    client, _ = bare_gateway(tmp_path)
    job_id = submit(client, flac_song(2.0)).json()["job_id"]
    assert client.delete(f"/v1/jobs/{job_id}").status_code == 409  # queued: cancel first
    cancelled = client.post(f"/v1/jobs/{job_id}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["state"] == "failed"
    assert cancelled.json()["error"]["code"] == "cancelled"
    assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 409
    assert client.delete(f"/v1/jobs/{job_id}").status_code == 204


def test_jobs_over_the_plans_concurrency_wait_and_the_queue_is_bounded(
    tmp_path: Path, tight_plans: None
) -> None:
    client, gw = bare_gateway(tmp_path, Plan("one-at-a-time", 1, 100.0, 50.0, 600.0, 1000, 1))
    first = submit(client, flac_song(2.0))
    assert first.status_code == 202 and not first.json()["admitted"]  # waits for admission
    assert gw.admission.pump() == 1  # (the serving process's thread does this at once)
    assert client.get(f"/v1/jobs/{first.json()['job_id']}").json()["admitted"]
    second = submit(client, flac_song(2.0))
    assert second.status_code == 202
    assert gw.admission.pump() == 0  # the plan lets one run: the second waits its turn
    assert not client.get(f"/v1/jobs/{second.json()['job_id']}").json()["admitted"]
    third = submit(client, flac_song(2.0))
    assert third.status_code == 429
    error = third.json()["error"]
    assert error["code"] == "quota_exceeded"
    assert error["limit"] == {"name": "queued_jobs", "limit": 1, "used": 1}
    assert "one-at-a-time plan lets 1 wait" in error["message"]
    client.post(f"/v1/jobs/{first.json()['job_id']}/cancel")
    assert gw.admission.pump() == 1  # the place freed goes to the waiting job
    assert client.get(f"/v1/jobs/{second.json()['job_id']}").json()["admitted"]
    assert submit(client, flac_song(2.0)).status_code == 202


def test_monthly_minutes_are_metered_and_limited_even_after_deletes(
    tmp_path: Path, tight_plans: None
) -> None:
    client, _ = bare_gateway(tmp_path, Plan("six-seconds", 10, 0.1, 50.0, 600.0, 1000))
    first = submit(client, flac_song(4.0))
    assert first.status_code == 202
    over = submit(client, flac_song(4.0))
    assert over.status_code == 402
    limit = over.json()["error"]["limit"]
    assert limit["name"] == "audio_minutes_per_month" and limit["limit"] == 0.1
    assert limit["used"] == pytest.approx(4.0 / 60, abs=1e-3)
    usage = client.get("/v1/usage").json()
    assert (usage["tenant"], usage["plan"], usage["jobs"]) == ("solo", "six-seconds", 1)
    assert usage["audio_minutes"] == pytest.approx(4.0 / 60, abs=1e-3)
    assert usage["in_flight_jobs"] == 1
    assert usage["limits"]["audio_minutes_per_month"] == 0.1
    job_id = first.json()["job_id"]
    client.post(f"/v1/jobs/{job_id}/cancel")
    assert client.delete(f"/v1/jobs/{job_id}").status_code == 204
    after = client.get("/v1/usage").json()
    assert (after["jobs"], after["audio_minutes"]) == (1, usage["audio_minutes"])  # still billed
    assert after["in_flight_jobs"] == 0
    assert client.get("/v1/usage", params={"month": "2020-01"}).json()["jobs"] == 0
    assert client.get("/v1/usage", params={"month": "2020-13"}).status_code == 400
    for month in ("0000-01", "9999-12"):  # found by schemathesis: were 500
        assert client.get("/v1/usage", params={"month": month}).status_code == 400, month


def test_plan_size_and_duration_limits(tmp_path: Path, tight_plans: None) -> None:
    client, _ = bare_gateway(tmp_path, Plan("small", 10, 100.0, 0.05, 2.5, 1000))
    long = submit(client, flac_song(3.0, sr=8000))  # small enough, too long
    assert long.status_code == 413 and long.json()["error"]["code"] == "limit_exceeded"
    big = submit(client, flac_song(2.0, sr=48000))  # short enough, over 0.05 MB
    assert big.status_code == 413 and big.json()["error"]["code"] == "limit_exceeded"

    def body() -> Iterator[bytes]:
        raise AssertionError("an upload over the declared limit was read")
        yield b""  # pragma: no cover

    early = client.post(
        "/v1/jobs",
        content=body(),
        headers={"Content-Type": "multipart/form-data; boundary=x", "Content-Length": "10000000"},
    )
    assert (
        early.status_code == 413 and "upload of 9.54 MB exceeds the limit of 0.05 MB" in early.text
    )


def test_rate_limit_per_tenant(tmp_path: Path, tight_plans: None) -> None:
    client, gw = bare_gateway(tmp_path, Plan("slow", 10, 100.0, 50.0, 600.0, 5))
    statuses = [client.get("/v1/jobs").status_code for _ in range(6)]
    assert statuses == [200] * 5 + [429]
    limited = client.get("/v1/jobs")
    assert limited.json()["error"]["code"] == "rate_limited"
    assert int(limited.headers["retry-after"]) >= 1
    other = gw.accounts.create_key("other", plan="standard")[0]
    assert client.get("/v1/jobs", headers={"Authorization": f"Bearer {other}"}).status_code == 200


def test_every_download_format_decodes_to_the_version(world: dict[str, Any]) -> None:
    a: TestClient = world["a"]
    resp = submit(a, world["song"])
    job_id = resp.json()["job_id"]
    assert wait_done(a, job_id)["state"] == "done"
    stored = a.get(f"/v1/jobs/{job_id}/outputs/strategy")
    reference, sr = sf.read(io.BytesIO(stored.content), dtype="float32", always_2d=True)
    assert sr == 22050 and reference.shape[0] == 3 * 22050
    expected = {
        "wav24": ("audio/wav", "WAV", "PCM_24"),
        "wav16": ("audio/wav", "WAV", "PCM_16"),
        "flac": ("audio/flac", "FLAC", "PCM_24"),
        "mp3": ("audio/mpeg", "MP3", "MPEG_LAYER_III"),
    }
    for fmt, (media, container, subtype) in expected.items():
        r = a.get(f"/v1/jobs/{job_id}/outputs/strategy", params={"format": fmt})
        assert r.status_code == 200, (fmt, r.text)
        assert r.headers["content-type"] == media
        assert (
            f'-strategy.{"wav" if fmt.startswith("wav") else fmt}"'
            in r.headers["content-disposition"]
        )
        info = sf.info(io.BytesIO(r.content))
        assert (info.format, info.subtype, info.samplerate) == (container, subtype, 22050), fmt
        audio, _ = sf.read(io.BytesIO(r.content), dtype="float32", always_2d=True)
        assert audio.shape == reference.shape, fmt
        if fmt != "mp3":  # lossless up to 16-bit dither: within 2 LSB of 16 bits
            assert float(abs(audio - reference).max()) < 2.0**-14, fmt
        else:  # a perceptual codec: the same music, not the same samples
            corr = float(
                (audio * reference).sum() / ((audio**2).sum() * (reference**2).sum()) ** 0.5
            )
            assert corr > 0.98
    bad = a.get(f"/v1/jobs/{job_id}/outputs/strategy", params={"format": "ogg"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_parameter"

    # Byte ranges of an encoded file: the same bytes as the whole, 206 with Content-Range.
    whole = a.get(f"/v1/jobs/{job_id}/outputs/original", params={"format": "flac"}).content
    part = a.get(
        f"/v1/jobs/{job_id}/outputs/original",
        params={"format": "flac"},
        headers={"Range": "bytes=100-1123"},
    )
    assert part.status_code == 206
    assert part.content == whole[100:1124]
    assert part.headers["content-range"] == f"bytes 100-1123/{len(whole)}"
    tail = a.get(f"/v1/jobs/{job_id}/outputs/original", headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and len(tail.content) == 10

    # The ZIP: every version in one format, the report and a manifest.
    z = a.get(f"/v1/jobs/{job_id}/archive", params={"format": "flac"})
    assert z.status_code == 200 and z.headers["content-type"] == "application/zip"
    import json
    import zipfile

    with zipfile.ZipFile(io.BytesIO(z.content)) as archive:
        names = set(archive.namelist())
        versions = set(a.get(f"/v1/jobs/{job_id}").json()["versions"])
        assert names == {f"s-{v}.flac" for v in versions} | {"report.json", "manifest.json"}
        assert json.loads(archive.read("report.json"))["analysis"]["sample_rate"] == 22050
        for v in versions:
            audio, rate = sf.read(io.BytesIO(archive.read(f"s-{v}.flac")), always_2d=True)
            assert rate == 22050 and audio.shape == reference.shape
    assert world["b"].get(f"/v1/jobs/{job_id}/archive").status_code == 404


def test_preferences_are_recorded_per_tenant_and_summarised(world: dict[str, Any]) -> None:
    a, b = world["a"], world["b"]
    job_id = submit(a, world["song"]).json()["job_id"]
    assert wait_done(a, job_id)["state"] == "done"
    url = f"/v1/jobs/{job_id}/preferences"
    first = a.post(
        url,
        json={
            "chosen": "ai_enhanced_cnn",
            "compared": ["strategy", "ai_enhanced_cnn"],
            "edited": {"eq_mid_gain_db": 1.5, "reverb_style": "hall"},
            "listener": "user-7",
        },
    )
    assert first.status_code == 201, first.text
    record = first.json()
    assert record["edited"]["eq_mid_gain_db"] == 1.5
    assert isinstance(record["edited"]["reverb_style"], float)  # choice stored as its index
    a.post(url, json={"chosen": "strategy", "compared": ["strategy", "ai_enhanced_cnn"]})
    a.post(url, json={"chosen": "ai_enhanced_cnn", "compared": ["ai_enhanced_cnn", "original"]})
    summary = a.get("/v1/preferences/summary").json()
    assert summary["choices"] == 3
    assert summary["versions"]["ai_enhanced_cnn"] == {
        "compared": 3,
        "chosen": 2,
        "win_rate": 0.6667,
    }
    assert summary["versions"]["strategy"]["win_rate"] == 0.5
    assert summary["edited_parameters"] == {"eq_mid_gain_db": 1, "reverb_style": 1}
    items = a.get("/v1/preferences", params={"job_id": job_id}).json()["items"]
    assert [i["chosen"] for i in items][-1] == "ai_enhanced_cnn" and len(items) == 3
    # Bad choices are 400 with the reason; another tenant sees nothing and cannot write.
    for body, reason in (
        ({"chosen": "ai_gpt"}, "no version ai_gpt"),
        ({"chosen": "strategy", "compared": ["original", "ai_ast"]}, "one of the compared"),
        ({"chosen": "strategy", "edited": {"eq_mid_gain_db": 99}}, "outside"),
        ({"chosen": "strategy", "edited": {"volume_knob": 11}}, "unknown mix parameter"),
    ):
        bad = a.post(url, json=body)
        assert bad.status_code == 400 and reason in bad.json()["error"]["message"], body
    assert b.post(url, json={"chosen": "strategy"}).status_code == 404
    assert b.get("/v1/preferences").json()["items"] == []
    assert b.get("/v1/preferences/summary").json()["choices"] == 0


def test_a_chunked_upload_over_the_limit_is_cut_off_while_streaming(
    tmp_path: Path, tight_plans: None
) -> None:
    """Over real HTTP (uvicorn, a raw socket) with no Content-Length: the 413 arrives once the
    bytes received pass the plan's limit, while the sender still has most of its upload to
    send; the server never reads the rest."""
    import socket
    import threading

    import uvicorn

    from tests.infra import free_port

    client, gw = bare_gateway(tmp_path, Plan("small-chunks", 10, 100.0, 0.5, 600.0, 1000))
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(client.app, host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    key = client.headers["authorization"]
    chunk = b"\0" * 65536
    sent = 0
    answer = b""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(
                b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                b"Content-Type: multipart/form-data; boundary=x\r\n"
                + f"Authorization: {key}\r\n\r\n".encode()
            )
            head = b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
            sock.sendall(f"{len(head):x}\r\n".encode() + head + b"\r\n")
            sock.setblocking(False)
            for _ in range(400):  # up to 25 MiB, 50 times the limit
                try:
                    answer += sock.recv(65536)
                except BlockingIOError:
                    pass
                if answer:
                    break
                try:
                    sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                    time.sleep(0.01)
                    continue
                sent += 1
                time.sleep(0.002)
            sock.setblocking(True)
            try:
                while b"\r\n\r\n" not in answer:
                    answer += sock.recv(65536) or b""
            except OSError:
                pass
    finally:
        server.should_exit = True
        thread.join(10)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"refused while it was arriving" in answer
    print("chunks sent before the 413:", sent)
    assert sent < 40, f"{sent} chunks of 64 KiB went out before the refusal (limit: 8)"


def _finish(gw: Gateway, job_id: str) -> None:
    """What the renderer's ``done`` event does to a job (no stages run here)."""
    from mixpilot.v1 import mixpilot_pb2 as pb

    event = pb.JobEvent(
        event_id=f"{job_id}:done", job_id=job_id, state=pb.JOB_STATE_DONE, progress=1.0
    )
    event.at.GetCurrentTime()
    assert gw.store.apply_event(event)


def _served_ahead_of_a_single_job(tmp_path: Path, batch: int) -> int:
    """Tenant A queues ``batch`` jobs, then B one; jobs finish one at a time, oldest first.
    Returns how many of A's jobs entered the pipeline after B's was submitted and before it."""
    client, gw = bare_gateway(tmp_path, admission_window=4)
    b_key = gw.accounts.create_key("subscriber", plan="standard")[0]
    b = TestClient(client.app, headers={"Authorization": f"Bearer {b_key}"})
    song = flac_song(1.5)
    for _ in range(batch):
        assert submit(client, song).status_code == 202
    assert gw.admission.pump() == 4  # the label's batch fills the pipeline
    single = submit(b, song).json()["job_id"]
    ahead = 0
    for _ in range(batch + 1):
        if (
            client.get("/v1/jobs", params={"limit": 1}).status_code
            and b.get(f"/v1/jobs/{single}").json()["admitted"]
        ):
            break
        running = [
            j
            for j in client.get("/v1/jobs", params={"limit": 200}).json()["items"]
            if j["admitted"] and not j["done"]
        ]
        _finish(gw, min(running, key=lambda j: j["created_at"])["job_id"])
        before = sum(
            j["admitted"] for j in client.get("/v1/jobs", params={"limit": 200}).json()["items"]
        )
        gw.admission.pump()
        after = sum(
            j["admitted"] for j in client.get("/v1/jobs", params={"limit": 200}).json()["items"]
        )
        ahead += after - before
    assert b.get(f"/v1/jobs/{single}").json()["admitted"]
    return ahead


def test_a_labels_batch_does_not_starve_a_subscribers_song(tmp_path: Path) -> None:
    """Fair admission: with 4 places in the pipeline taken by a label's queued batch, a
    subscriber's single job takes the next place that frees; the jobs served ahead of it do
    not grow with the batch (a FIFO queue would serve the whole batch first)."""
    small = _served_ahead_of_a_single_job(tmp_path / "small", 10)
    large = _served_ahead_of_a_single_job(tmp_path / "large", 40)
    assert small == large == 0, (small, large)


def test_a_batch_runs_every_file_and_reports_each_in_its_manifest(world: dict[str, Any]) -> None:
    """Three songs and one bad file in one batch: three jobs are done, the bad file is a
    failed item with its reason, the manifest (JSON and CSV) lists all four with links, and
    another tenant cannot see the batch."""
    import csv

    a, b = world["a"], world["b"]
    files = [("files", (f"track {i}.flac", world["song"])) for i in range(3)]
    files.append(("files", ("liner notes.txt", b"not audio" * 200)))
    resp = a.post("/v1/batches", files=files, data={"name": "EP", "target_lufs": "-16"})
    assert resp.status_code == 202, resp.text
    batch = resp.json()
    assert (batch["total"], batch["name"]) == (4, "EP")
    assert batch["counts"].get("failed") == 1
    deadline = time.monotonic() + 180
    while not batch["done"] and time.monotonic() < deadline:
        time.sleep(0.2)
        batch = a.get(f"/v1/batches/{batch['batch_id']}").json()
    assert batch["done"] and batch["counts"] == {"done": 3, "failed": 1}, batch
    manifest = a.get(batch["links"]["manifest"]).json()["items"]
    assert [m["filename"] for m in manifest] == [
        "track 0.flac",
        "track 1.flac",
        "track 2.flac",
        "liner notes.txt",
    ]
    bad = manifest[3]
    assert (bad["state"], bad["error_code"]) == ("failed", "unsupported_format")
    for item in manifest[:3]:
        assert item["state"] == "done"
        url = item["versions"]["strategy"]["url"]
        assert a.get(url).status_code == 200
        job = a.get(f"/v1/jobs/{item['job_id']}").json()
        assert job["batch_id"] == batch["batch_id"] and job["options"]["target_lufs"] == -16
    rows = list(csv.DictReader(io.StringIO(a.get(batch["links"]["csv"]).text)))
    assert [r["filename"] for r in rows] == [m["filename"] for m in manifest]
    assert rows[0]["url_strategy"].endswith("/outputs/strategy") and rows[3]["url_strategy"] == ""
    assert b.get(f"/v1/batches/{batch['batch_id']}").status_code == 404
    assert b.get(f"/v1/batches/{batch['batch_id']}/manifest").status_code == 404
    assert batch["batch_id"] in [x["batch_id"] for x in a.get("/v1/batches").json()["items"]]

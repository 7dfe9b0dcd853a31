"""Webhooks and server-sent events through the real app (`mixpilot serve` wiring): signed
deliveries to a real HTTP receiver on loopback, retries with backoff and the delivery log,
tenant isolation, refused private targets, and a job's progress as an event stream."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from gateway.accounts import Accounts
from gateway.runtime import build_one_machine
from gateway.store import JobStore
from gateway.webhooks import check_target, sign, verify
from services.common.errors import InvalidParameterError
from services.common.settings import load_settings
from tests.infra import Receiver
from tests.signals import little_song


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("webhooks")
    settings = load_settings(
        auth="api_key",  # keys even on loopback: the tests use them
        database_url=f"sqlite:///{tmp / 'jobs.sqlite3'}",
        blob_url=f"file://{tmp / 'blobs'}",
        cache_dir=tmp / "cache",
        webhook_allow_private=True,
        webhook_backoff_s=0.05,
        webhook_max_attempts=3,
    )
    app, stop = build_one_machine(settings)
    accounts = Accounts(JobStore(settings.database_url).engine)
    clients = {
        t: TestClient(
            app, headers={"Authorization": f"Bearer {accounts.create_key(t, plan='label')[0]}"}
        )
        for t in ("a", "b")
    }
    buf = io.BytesIO()
    sf.write(buf, little_song(sr=22050, duration_s=3.0).T, 22050, format="FLAC")
    receiver = Receiver()
    try:
        yield {**clients, "song": buf.getvalue(), "receiver": receiver}
    finally:
        receiver.close()
        stop()


def _until(predicate: Any, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _run_job(client: TestClient, song: bytes) -> str:
    job_id = client.post("/v1/jobs", files={"file": ("s.flac", song)}).json()["job_id"]
    _until(lambda: client.get(f"/v1/jobs/{job_id}").json()["done"])
    return str(job_id)


def test_signatures_verify_and_reject_tampering_and_replays() -> None:
    body = b'{"type": "job.done"}'
    header = sign("whsec_x", body, 1_800_000_000)
    assert verify("whsec_x", header, body, now=1_800_000_010)
    assert not verify("whsec_x", header, body + b" ", now=1_800_000_010)  # body changed
    assert not verify("whsec_y", header, body, now=1_800_000_010)  # other secret
    assert not verify("whsec_x", header, body, now=1_800_000_000 + 301)  # too old: a replay
    assert not verify("whsec_x", "garbage", body)


def test_private_targets_are_refused_unless_allowed() -> None:
    for url in ("http://127.0.0.1/x", "http://10.1.2.3/x", "http://169.254.169.254/latest"):
        with pytest.raises(InvalidParameterError, match="non-public address"):
            check_target(url, allow_private=False)
    with pytest.raises(InvalidParameterError, match="http"):
        check_target("file:///etc/passwd", allow_private=True)
    assert check_target("http://127.0.0.1/x", allow_private=True)


def test_a_done_job_is_delivered_signed_once(env: dict[str, Any]) -> None:
    a: TestClient = env["a"]
    receiver: Receiver = env["receiver"]
    created = a.post("/v1/webhooks", json={"url": receiver.url, "description": "ci"})
    assert created.status_code == 201, created.text
    hook = created.json()
    secret = hook["secret"]
    assert secret.startswith("whsec_")
    assert hook["events"] == ["batch.done", "job.done", "job.failed"]
    assert "secret" not in a.get("/v1/webhooks").json()["items"][0]

    start = len(receiver.requests)
    job_id = _run_job(a, env["song"])
    _until(lambda: len(receiver.requests) > start)
    headers, body = receiver.requests[start]
    assert verify(secret, headers["mixpilot-signature"], body)
    payload = json.loads(body)
    assert payload["type"] == "job.done" == headers["mixpilot-event"]
    assert payload["data"]["job_id"] == job_id and payload["data"]["state"] == "done"
    assert payload["id"] == headers["mixpilot-delivery"]
    time.sleep(1.0)
    assert len(receiver.requests) == start + 1  # exactly once
    log = a.get(f"/v1/webhooks/{hook['webhook_id']}/deliveries").json()["items"]
    assert log[0]["job_id"] == job_id and log[0]["status"] == "delivered"
    assert (log[0]["attempts"], log[0]["last_status_code"]) == (1, 200)
    a.delete(f"/v1/webhooks/{hook['webhook_id']}")


def test_a_failing_receiver_is_retried_with_backoff_and_logged(env: dict[str, Any]) -> None:
    a: TestClient = env["a"]
    receiver: Receiver = env["receiver"]
    hook = a.post("/v1/webhooks", json={"url": receiver.url, "events": ["job.done"]}).json()
    log_url = f"/v1/webhooks/{hook['webhook_id']}/deliveries"

    receiver.script[:] = [500, 503]  # two failures, then 200
    job_id = _run_job(a, env["song"])
    _until(
        lambda: (
            a.get(log_url).json()["items"][:1]
            and a.get(log_url).json()["items"][0]["status"] != "pending"
        )
    )
    entry = a.get(log_url).json()["items"][0]
    assert (entry["job_id"], entry["status"], entry["attempts"]) == (job_id, "delivered", 3)

    receiver.script[:] = [500, 500, 500, 500]  # never succeeds within 3 tries
    second = _run_job(a, env["song"])
    _until(
        lambda: (
            a.get(log_url).json()["items"][0]["job_id"] == second
            and a.get(log_url).json()["items"][0]["status"] != "pending"
        )
    )
    failed = a.get(log_url).json()["items"][0]
    assert (failed["status"], failed["attempts"], failed["last_status_code"]) == ("failed", 3, 500)
    assert failed["last_error"] == "HTTP 500"
    receiver.script.clear()
    a.delete(f"/v1/webhooks/{hook['webhook_id']}")


def test_webhooks_belong_to_their_tenant(env: dict[str, Any]) -> None:
    a, b = env["a"], env["b"]
    hook = a.post("/v1/webhooks", json={"url": env["receiver"].url}).json()
    path = f"/v1/webhooks/{hook['webhook_id']}"
    assert b.get(f"{path}/deliveries").status_code == 404
    assert b.delete(path).status_code == 404
    assert b.get("/v1/webhooks").json()["items"] == []
    assert a.delete(path).status_code == 204
    assert a.delete(path).status_code == 404
    bad = a.post("/v1/webhooks", json={"url": env["receiver"].url, "events": ["job.exploded"]})
    assert bad.status_code == 400 and "job.exploded" in bad.json()["error"]["message"]


def test_progress_streams_as_server_sent_events(env: dict[str, Any]) -> None:
    a: TestClient = env["a"]
    job_id = a.post("/v1/jobs", files={"file": ("s.flac", env["song"])}).json()["job_id"]
    events: list[tuple[str, dict[str, Any]]] = []
    with a.stream("GET", f"/v1/jobs/{job_id}/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        kind = None
        for line in stream.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                events.append((str(kind), json.loads(line[6:])))
    kinds = [k for k, _ in events]
    assert kinds[-1] == "done" and set(kinds[:-1]) <= {"progress"}
    progress = [e["progress"] for _, e in events]
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert events[-1][1]["job_id"] == job_id and events[-1][1]["versions"]
    assert env["b"].get(f"/v1/jobs/{job_id}/events").status_code == 404


def test_batch_done_is_delivered_once_when_every_file_finished(env: dict[str, Any]) -> None:
    a: TestClient = env["a"]
    receiver = env["receiver"]
    hook = a.post("/v1/webhooks", json={"url": receiver.url, "events": ["batch.done"]}).json()
    start = len(receiver.requests)
    files = [("files", (f"t{i}.flac", env["song"])) for i in range(2)]
    batch = a.post("/v1/batches", files=files).json()
    _until(lambda: a.get(f"/v1/batches/{batch['batch_id']}").json()["done"], timeout_s=120)
    _until(lambda: len(receiver.requests) > start)
    time.sleep(1.0)
    batch_events = [json.loads(body) for _, body in receiver.requests[start:]]
    assert [e["type"] for e in batch_events] == ["batch.done"]  # once, and no job events
    assert batch_events[0]["data"]["batch_id"] == batch["batch_id"]
    assert batch_events[0]["data"]["counts"] == {"done": 2}
    a.delete(f"/v1/webhooks/{hook['webhook_id']}")

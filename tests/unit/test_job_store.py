"""Job store semantics on SQLite (the same code runs on PostgreSQL in the integration tests)."""

import threading
from pathlib import Path

import pytest

from gateway.store import JobStore
from mixpilot.v1 import mixpilot_pb2 as pb
from services.common.jobs import make_event


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    s = JobStore(f"sqlite:///{tmp_path / 'jobs.sqlite3'}")
    s.create_job(
        job_id="j1",
        tenant="t",
        filename="a.wav",
        input_uri="file:///a",
        input_sha256="0" * 64,
        options={},
    )
    return s


def _event(state: int, **kw) -> pb.JobEvent:
    return make_event(pb.JobEnvelope(job_id="j1", tenant="t"), state, stage="x", progress=0.5, **kw)


def test_same_event_twice_changes_nothing(store: JobStore) -> None:
    assert store.apply_event(_event(pb.JOB_STATE_ANALYZING))
    before = store.get_job("j1")
    assert not store.apply_event(_event(pb.JOB_STATE_ANALYZING))
    after = store.get_job("j1")
    assert before is not None and after is not None
    assert after.state == "analyzing" and after.updated_at == before.updated_at
    assert store.count_events("j1", "analyzing") == 1


def test_no_regression_and_terminal_states_are_final(store: JobStore) -> None:
    store.apply_event(_event(pb.JOB_STATE_RENDERING))
    assert not store.apply_event(_event(pb.JOB_STATE_ANALYZING))  # stale redelivery
    assert store.get_job("j1").state == "rendering"  # type: ignore[union-attr]
    assert store.apply_event(_event(pb.JOB_STATE_DONE))
    err = pb.JobError(code="invalid_audio", message="x", stage="analyzer")
    assert not store.apply_event(_event(pb.JOB_STATE_FAILED, error=err))
    job = store.get_job("j1")
    assert job is not None and job.state == "done" and job.done and job.error is None
    assert set(job.stage_times) >= {"queued", "rendering", "done"}


def test_failure_keeps_a_readable_reason(store: JobStore) -> None:
    err = pb.JobError(code="invalid_audio", message="the audio is silent", stage="analyzer")
    assert store.apply_event(_event(pb.JOB_STATE_FAILED, error=err))
    job = store.get_job("j1")
    assert job is not None and job.state == "failed"
    assert job.error == {
        "code": "invalid_audio",
        "message": "the audio is silent",
        "stage": "analyzer",
    }


def test_event_for_unknown_job_is_recorded_but_not_applied(store: JobStore) -> None:
    ev = make_event(pb.JobEnvelope(job_id="ghost"), pb.JOB_STATE_FAILED, stage="x", progress=1)
    assert not store.apply_event(ev)
    assert store.get_job("ghost") is None


def test_event_applier_waits_out_a_store_outage(tmp_path: Path) -> None:
    """The store goes away (its file is replaced by a directory); events keep arriving. The
    applier retries instead of dying or skipping, and applies them once the store is back."""
    from gateway.events import EventApplier
    from services.common import bus as busmod
    from tests.infra import wait_until

    db = tmp_path / "jobs.sqlite3"
    store = JobStore(f"sqlite:///{db}")
    store.create_job(
        job_id="j1",
        tenant="t",
        filename="a.wav",
        input_uri="file:///a",
        input_sha256="0" * 64,
        options={},
    )
    bus = busmod.InMemoryBus()
    applier = EventApplier(bus=bus, store=store, group_id="g")
    broken = threading.Event()
    real_apply = store.apply_event
    failures: list[int] = []

    def flaky(event: pb.JobEvent) -> bool:
        if broken.is_set():
            failures.append(1)
            from sqlalchemy.exc import OperationalError

            raise OperationalError("UPDATE jobs", {}, Exception("database is unavailable"))
        return real_apply(event)

    store.apply_event = flaky  # type: ignore[method-assign]
    broken.set()
    thread = applier.start()
    bus.producer().send(
        busmod.EVENTS, key="j1", value=_event(pb.JOB_STATE_ANALYZING).SerializeToString()
    )
    wait_until(lambda: len(failures) >= 3, timeout_s=20, what="retries during the outage")
    assert thread.is_alive() and store.get_job("j1").state == "queued"  # type: ignore[union-attr]
    broken.clear()
    wait_until(
        lambda: store.get_job("j1").state == "analyzing",  # type: ignore[union-attr]
        timeout_s=20,
        what="the event to apply once the store is back",
    )
    applier.stop()
    thread.join(5)
    assert store.get_job("j1").state == "analyzing"  # type: ignore[union-attr]


def test_versions_added_at_once_get_distinct_names_and_one_report_holds_all(
    store: JobStore,
) -> None:
    """Eight edits rendered at once: user-1..user-8, each report written over the one before
    (so the last holds every version), never two with one name."""
    finished = _event(pb.JOB_STATE_DONE)
    finished.report.uri = "r0"
    assert store.apply_event(finished)
    reports: dict[str, list[str]] = {"r0": []}
    lock = threading.Lock()

    def write_report(name: str, uri: str | None) -> str:
        with lock:
            new = f"r{len(reports)}"
            reports[new] = [*reports[uri or ""], name]
        return new

    names: list[str] = []
    barrier = threading.Barrier(8)

    def add(i: int) -> None:
        barrier.wait()
        name, _ = store.add_version("j1", "user", {"params": {"x": i}}, write_report)
        with lock:
            names.append(name)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(names) == sorted(f"user-{n}" for n in range(1, 9))
    job = store.get_job("j1")
    assert job is not None and set(job.outputs) >= set(names)
    assert sorted(reports[job.report_uri or ""]) == sorted(names)

"""Job store semantics on SQLite (the same code runs on PostgreSQL in the integration tests)."""

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

"""The at-least-once stage loop on the in-memory bus: output then commit, retries, DLQ, one bad
message never stops the worker."""

from __future__ import annotations

import threading

import pytest
from prometheus_client import CollectorRegistry

from mixpilot.v1 import mixpilot_pb2 as pb
from services.common import bus as busmod
from services.common.errors import InvalidAudioError, ModelUnavailableError
from services.common.stage_worker import ALL_TOPICS, STAGES, StageWorker, run_in_thread
from services.common.telemetry import StageMetrics


def _worker(bus: busmod.InMemoryBus, handler, **kw) -> StageWorker:
    return StageWorker(
        spec=STAGES["predictor"],
        bus=bus,
        handler=handler,
        group_id="g",
        max_attempts=3,
        retry_backoff_s=0.01,
        metrics=StageMetrics("predictor", CollectorRegistry()),
        **kw,
    )


def _events(bus: busmod.InMemoryBus, job_id: str) -> list[pb.JobEvent]:
    c = bus.consumer([busmod.EVENTS], group_id=f"reader-{threading.get_ident()}-{job_id}")
    out = []
    while batch := c.poll(0.2):
        for m in batch:
            ev = pb.JobEvent.FromString(m.value)
            if ev.job_id == job_id:
                out.append(ev)
            c.commit(m)
    c.close()
    return out


def _drain(bus: busmod.InMemoryBus, topic: str) -> list[busmod.Message]:
    c = bus.consumer([topic], group_id=f"drain-{topic}-{threading.get_ident()}")
    out = []
    while batch := c.poll(0.2):
        out.extend(batch)
        for m in batch:
            c.commit(m)
    c.close()
    return out


def _run_until_idle(bus: busmod.InMemoryBus, worker: StageWorker) -> None:
    thread = run_in_thread(worker)
    consumer_group = worker.group_id
    import time

    deadline = time.monotonic() + 20
    total = sum(1 for _ in _drain(bus, worker.spec.in_topic))
    while time.monotonic() < deadline:
        committed = sum(
            (bus.committed(consumer_group, worker.spec.in_topic, p) or 0)
            for p in range(bus.partitions(worker.spec.in_topic))
        )
        if committed >= total:
            break
        time.sleep(0.02)
    worker.stop()
    thread.join(10)


@pytest.fixture
def bus() -> busmod.InMemoryBus:
    b = busmod.InMemoryBus()
    b.ensure_topics(ALL_TOPICS)
    return b


def _submit(bus: busmod.InMemoryBus, job_id: str) -> None:
    bus.producer().send(
        busmod.ANALYZED, key=job_id, value=pb.JobEnvelope(job_id=job_id).SerializeToString()
    )


def test_success_produces_output_and_running_event(bus: busmod.InMemoryBus) -> None:
    def handler(job: pb.JobEnvelope) -> pb.JobEnvelope:
        out = pb.JobEnvelope()
        out.CopyFrom(job)
        out.stage = pb.STAGE_PREDICTED
        return out

    _submit(bus, "ok")
    _run_until_idle(bus, _worker(bus, handler))
    outs = _drain(bus, busmod.PREDICTED)
    assert [m.key for m in outs] == ["ok"]
    assert pb.JobEnvelope.FromString(outs[0].value).attempt == 1
    assert [e.state for e in _events(bus, "ok")] == [pb.JOB_STATE_PREDICTING]
    assert _drain(bus, busmod.DLQ) == []


def test_poison_then_good_message(bus: busmod.InMemoryBus) -> None:
    bus.producer().send(busmod.ANALYZED, key="bad", value=b"\xff\xfe garbage")
    _submit(bus, "good")
    _run_until_idle(bus, _worker(bus, lambda job: job))
    dlq = _drain(bus, busmod.DLQ)
    assert [m.key for m in dlq] == ["bad"]
    assert dlq[0].headers["error_code"] == "invalid_message"
    assert [m.key for m in _drain(bus, busmod.PREDICTED)] == ["good"]
    failed = [e for e in _events(bus, "bad") if e.state == pb.JOB_STATE_FAILED]
    assert failed and failed[0].error.code == "invalid_message"


def test_non_retriable_error_fails_at_once_with_reason(bus: busmod.InMemoryBus) -> None:
    calls = []

    def handler(job: pb.JobEnvelope) -> pb.JobEnvelope:
        calls.append(1)
        raise InvalidAudioError("the audio is silent")

    _submit(bus, "silent")
    _run_until_idle(bus, _worker(bus, handler))
    assert len(calls) == 1
    ev = [e for e in _events(bus, "silent") if e.state == pb.JOB_STATE_FAILED][0]
    assert (ev.error.code, ev.error.message, ev.error.stage) == (
        "invalid_audio",
        "the audio is silent",
        "predictor",
    )
    assert _drain(bus, busmod.PREDICTED) == []


def test_transient_errors_are_retried_then_dead_lettered(bus: busmod.InMemoryBus) -> None:
    calls = {"flaky": 0, "down": 0}

    def handler(job: pb.JobEnvelope) -> pb.JobEnvelope:
        calls[job.job_id] += 1
        if job.job_id == "down" or calls[job.job_id] < 2:
            raise ModelUnavailableError("model not ready")
        return job

    _submit(bus, "flaky")
    _submit(bus, "down")
    _run_until_idle(bus, _worker(bus, handler))
    assert calls == {"flaky": 2, "down": 3}
    assert [m.key for m in _drain(bus, busmod.PREDICTED)] == ["flaky"]
    assert [m.key for m in _drain(bus, busmod.DLQ)] == ["down"]


def test_unexpected_exception_does_not_kill_the_loop(bus: busmod.InMemoryBus) -> None:
    def handler(job: pb.JobEnvelope) -> pb.JobEnvelope:
        if job.job_id == "boom":
            raise ZeroDivisionError("bug")
        return job

    _submit(bus, "boom")
    _submit(bus, "after")
    _run_until_idle(bus, _worker(bus, handler))
    assert [m.key for m in _drain(bus, busmod.PREDICTED)] == ["after"]
    ev = [e for e in _events(bus, "boom") if e.state == pb.JOB_STATE_FAILED][0]
    assert ev.error.code == "internal" and "ZeroDivisionError" in ev.error.message


def test_concurrency_runs_jobs_at_once_and_commits_each_after_its_output() -> None:
    """Four jobs of one poll run together (they wait for each other at a barrier, which a
    one-at-a-time worker would never pass), and every input is committed with its output."""
    bus = busmod.InMemoryBus(max_poll_records=4)
    bus.ensure_topics(ALL_TOPICS)
    barrier = threading.Barrier(4, timeout=10)

    def handler(job: pb.JobEnvelope) -> pb.JobEnvelope:
        barrier.wait()
        return job

    for i in range(8):
        _submit(bus, f"job{i}")
    _run_until_idle(bus, _worker(bus, handler, concurrency=4))
    assert sorted(m.key for m in _drain(bus, busmod.PREDICTED)) == [f"job{i}" for i in range(8)]
    assert _drain(bus, busmod.DLQ) == []
    committed = sum(
        bus.committed("g", busmod.ANALYZED, p) or 0 for p in range(bus.partitions(busmod.ANALYZED))
    )
    assert committed == 8


def test_closed_gate_leaves_jobs_in_the_topic_until_it_opens(bus: busmod.InMemoryBus) -> None:
    import time

    open_ = threading.Event()
    seen: list[str] = []

    def handler(job: pb.JobEnvelope) -> pb.JobEnvelope:
        seen.append(job.job_id)
        return job

    _submit(bus, "waits")
    worker = _worker(bus, handler, gate=open_.is_set)
    thread = run_in_thread(worker)
    time.sleep(1.0)
    assert seen == [] and bus.committed("g", busmod.ANALYZED, 0) is None
    open_.set()
    deadline = time.monotonic() + 10
    while not seen and time.monotonic() < deadline:
        time.sleep(0.02)
    worker.stop()
    thread.join(10)
    assert seen == ["waits"]
    assert [m.key for m in _drain(bus, busmod.PREDICTED)] == ["waits"]


def test_concurrency_must_be_positive(bus: busmod.InMemoryBus) -> None:
    with pytest.raises(ValueError, match="concurrency"):
        _worker(bus, lambda job: job, concurrency=0)

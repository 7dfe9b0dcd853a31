"""Job envelope and event helpers shared by every stage and the gateway: state order, event
construction with deterministic ids (so a redelivery repeats the same event), error mapping."""

from __future__ import annotations

import time
import uuid
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message as ProtoMessage
from google.protobuf.timestamp_pb2 import Timestamp

from mixpilot.v1 import mixpilot_pb2 as pb
from services.common.errors import MixPilotError

STATE_NAMES: dict[int, str] = {
    pb.JOB_STATE_QUEUED: "queued",
    pb.JOB_STATE_ANALYZING: "analyzing",
    pb.JOB_STATE_PREDICTING: "predicting",
    pb.JOB_STATE_RENDERING: "rendering",
    pb.JOB_STATE_DONE: "done",
    pb.JOB_STATE_FAILED: "failed",
}
#: A job only moves forward; ``done`` and ``failed`` are final.
STATE_RANK: dict[str, int] = {
    "queued": 0,
    "analyzing": 1,
    "predicting": 2,
    "rendering": 3,
    "done": 4,
    "failed": 4,
}
TERMINAL = frozenset({"done", "failed"})


def new_job_id() -> str:
    return uuid.uuid4().hex


def now_timestamp() -> Timestamp:
    ts = Timestamp()
    ts.GetCurrentTime()
    return ts


def new_envelope(
    *,
    job_id: str,
    tenant: str,
    input_ref: pb.AudioRef,
    target_lufs: float,
    ceiling_dbtp: float,
    genre_override: str = "",
    versions: list[str] | None = None,
    intensity_pct: float = 100.0,
) -> pb.JobEnvelope:
    return pb.JobEnvelope(
        job_id=job_id,
        tenant=tenant,
        attempt=0,
        stage=pb.STAGE_SUBMITTED,
        options=pb.JobOptions(
            target_lufs=target_lufs,
            true_peak_ceiling_dbtp=ceiling_dbtp,
            genre_override=genre_override,
            versions=versions or [],
            intensity_pct=intensity_pct,
        ),
        input=input_ref,
        submitted_at=now_timestamp(),
    )


def intensity_of(options: pb.JobOptions) -> float:
    """The job's intensity control (unset means 100 %)."""
    return options.intensity_pct if options.HasField("intensity_pct") else 100.0


def job_error(exc: BaseException, *, stage: str) -> pb.JobError:
    """A readable failure reason for any exception (typed errors keep their code)."""
    if isinstance(exc, MixPilotError):
        return pb.JobError(code=exc.code, message=exc.message, stage=stage)
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return pb.JobError(code="internal", message=text[:500], stage=stage)


def make_event(
    job: pb.JobEnvelope,
    state: int,
    *,
    stage: str,
    progress: float,
    error: pb.JobError | None = None,
) -> pb.JobEvent:
    """An event whose id depends only on (job, state): a redelivered message repeats it."""
    name = STATE_NAMES[state]
    event = pb.JobEvent(
        event_id=f"{job.job_id}:{name}",
        job_id=job.job_id,
        tenant=job.tenant,
        state=state,
        progress=progress,
        stage=stage,
        at=now_timestamp(),
    )
    event.timings_s.update(job.timings_s)
    if error is not None:
        event.error.CopyFrom(error)
    if state == pb.JOB_STATE_DONE:
        event.outputs.extend(job.outputs)
        event.report.CopyFrom(job.report)
    return event


def to_dict(message: ProtoMessage) -> dict[str, Any]:
    """Proto -> JSON-ready dict with the proto's snake_case field names."""
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


class Stopwatch:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def elapsed_s(self) -> float:
        return time.perf_counter() - self.start

"""The predictor stage on a job envelope: parameter sets from the analysis. Shared by the gRPC
server and the Kafka worker. (The neural models join in a later issue.)"""

from __future__ import annotations

from mixpilot.v1 import mixpilot_pb2 as pb
from services.common.errors import InvalidMessageError
from services.common.jobs import Stopwatch
from services.predictor.strategy import strategy_params


def predict_job(job: pb.JobEnvelope) -> pb.JobEnvelope:
    """Return a copy of ``job`` with ``predictions`` (replaced, so a redelivery is idempotent)."""
    if not job.HasField("analysis") or job.analysis.sample_rate == 0:
        raise InvalidMessageError("job envelope reached the predictor without an analysis")
    clock = Stopwatch()
    out = pb.JobEnvelope()
    out.CopyFrom(job)
    del out.predictions[:]
    out.predictions.append(
        pb.MixParams(version="strategy", values=strategy_params(job.analysis), source="rules")
    )
    out.stage = pb.STAGE_PREDICTED
    out.timings_s["predict_s"] = clock.elapsed_s
    return out

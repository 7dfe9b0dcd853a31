"""The predictor stage on a job envelope: the strategy's parameter set from the analysis, and the
three models' AI versions from the audio (:mod:`services.predictor.inference`), run by the models
in this process or on Triton (:func:`model_runner`). Shared by the gRPC server and the Kafka
worker."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mixpilot.v1 import mixpilot_pb2 as pb
from services.common.audio_io import read_audio
from services.common.blobstore import BlobStore
from services.common.errors import InvalidMessageError
from services.common.jobs import Stopwatch
from services.common.settings import Settings
from services.predictor.inference import AI_VERSIONS, LocalModels, ModelRunner, ai_predictions
from services.predictor.strategy import strategy_params


def model_runner(settings: Settings) -> ModelRunner:
    """Triton (``tritonclient.grpc``) when ``MIXPILOT_TRITON_URL`` is set, local torch otherwise."""
    if settings.triton_url:
        from services.predictor.triton_client import TritonModels

        return TritonModels(
            settings.triton_url,
            timeout_s=settings.triton_timeout_s,
            retry_s=settings.triton_retry_s,
        )
    return LocalModels()


def wanted_models(options: pb.JobOptions) -> list[str]:
    """The models whose AI versions ``options`` asks for (all when it names no versions)."""
    wanted = set(options.versions)
    return [m for m, v in AI_VERSIONS.items() if not wanted or v in wanted]


def job_predictions(
    analysis: pb.Analysis,
    options: pb.JobOptions,
    audio: Callable[[], tuple[np.ndarray, int]],
    runner: ModelRunner | None = None,
) -> list[pb.MixParams]:
    """``strategy`` first, then ``ai_<model>`` for every model ``options`` wants. ``audio``
    gives ``(samples, rate)`` and is called only when a model is wanted; ``runner`` runs the
    models (local by default)."""
    strategy = strategy_params(analysis)
    result = [pb.MixParams(version="strategy", values=strategy, source="rules")]
    models = wanted_models(options)
    if models:
        samples, sr = audio()
        result.extend(ai_predictions(samples, sr, analysis, strategy, models, runner))
    return result


def predict_job(
    job: pb.JobEnvelope,
    *,
    blobs: BlobStore,
    max_duration_s: float,
    runner: ModelRunner | None = None,
) -> pb.JobEnvelope:
    """Return a copy of ``job`` with ``predictions`` (replaced, so a redelivery is idempotent):
    :func:`job_predictions` of its analysis and input audio."""
    if not job.HasField("analysis") or job.analysis.sample_rate == 0:
        raise InvalidMessageError("job envelope reached the predictor without an analysis")

    def audio() -> tuple[np.ndarray, int]:
        if not job.input.uri:
            raise InvalidMessageError("job envelope reached the predictor without its input audio")
        samples, sr, _ = read_audio(blobs.get_bytes(job.input.uri), max_duration_s=max_duration_s)
        return samples, sr

    clock = Stopwatch()
    predictions = job_predictions(job.analysis, job.options, audio, runner)
    out = pb.JobEnvelope()
    out.CopyFrom(job)
    del out.predictions[:]
    out.predictions.extend(predictions)
    out.stage = pb.STAGE_PREDICTED
    out.timings_s["predict_s"] = clock.elapsed_s
    return out

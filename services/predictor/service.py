"""The predictor deployable: gRPC servicer and Kafka handler over the same stage function, with
the models in this process or on Triton (``MIXPILOT_TRITON_URL``)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from services.common.blobstore import BlobStore
from services.common.errors import ModelMismatchError, ModelUnavailableError
from services.common.service_runner import StageParts
from services.common.settings import Settings
from services.predictor.features import CLIP_S
from services.predictor.inference import clip_features
from services.predictor.server import SERVICE_NAME, PredictorServicer, register
from services.predictor.stage import model_runner, predict_job
from services.predictor.training.config import MODEL_NAMES

log = logging.getLogger(__name__)


def warm_up_features() -> None:
    """Compute one clip's features before the first job.

    librosa's first mel spectrogram in a process compiles its numba kernels: 13 s on a 2-core
    machine with an empty numba cache, as a new pod has. Without this, every new predictor pod
    (a KEDA scale-up) would report SERVING and then spend that on its first job."""
    sr = 44100
    t = np.arange(int(CLIP_S * sr), dtype=np.float32) / sr
    tone = (0.1 * np.sin(2 * np.pi * 220.0 * t)).astype(np.float32)
    clip_features(np.stack([tone, 0.5 * tone]), sr)


def warm_up() -> None:
    """Load the shipped models and compute one clip's features, before the first job."""
    from services.predictor.weights import load_model

    for name in MODEL_NAMES:
        load_model(name)
    warm_up_features()


def parts(settings: Settings, blobs: BlobStore) -> StageParts:
    limit = settings.max_duration_s
    runner = model_runner(settings)
    ready: Callable[[], tuple[bool, str]] | None = None
    start: Callable[[], None] = warm_up
    if settings.triton_url:
        from services.predictor.triton_client import TritonModels

        assert isinstance(runner, TritonModels)
        triton = runner

        def ready() -> tuple[bool, str]:
            try:
                triton.check()
            except (ModelUnavailableError, ModelMismatchError) as exc:
                return False, exc.message
            return True, f"Triton at {triton.url} serves {', '.join(triton.models)}"

        def start() -> None:
            """Wait (bounded) for Triton's models; a mismatch stops start-up, an absent Triton
            does not: the service then starts NOT_SERVING and takes jobs once Triton is ready."""
            warm_up_features()
            try:
                triton.wait_ready(settings.triton_retry_s)
            except ModelUnavailableError as exc:
                log.warning("starting without Triton", extra={"reason": exc.message})

    return StageParts(
        role="predictor",
        service_name=SERVICE_NAME,
        port=settings.predictor_port,
        register=register(PredictorServicer(blobs=blobs, max_duration_s=limit, runner=runner)),
        handler=lambda job: predict_job(job, blobs=blobs, max_duration_s=limit, runner=runner),
        warm_up=start,
        ready=ready,
        concurrency=settings.predictor_jobs_at_once,
    )

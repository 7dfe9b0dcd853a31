"""The predictor deployable: gRPC servicer and Kafka handler over the same stage function."""

from __future__ import annotations

from services.common.blobstore import BlobStore
from services.common.service_runner import StageParts
from services.common.settings import Settings
from services.predictor.server import SERVICE_NAME, PredictorServicer, register
from services.predictor.stage import predict_job
from services.predictor.training.config import MODEL_NAMES


def warm_up() -> None:
    """Load the shipped models once, before the first job."""
    from services.predictor.weights import load_model

    for name in MODEL_NAMES:
        load_model(name)


def parts(settings: Settings, blobs: BlobStore) -> StageParts:
    limit = settings.max_duration_s
    return StageParts(
        role="predictor",
        service_name=SERVICE_NAME,
        port=settings.predictor_port,
        register=register(PredictorServicer(blobs=blobs, max_duration_s=limit)),
        handler=lambda job: predict_job(job, blobs=blobs, max_duration_s=limit),
        warm_up=warm_up,
    )

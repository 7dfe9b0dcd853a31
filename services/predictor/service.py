"""The predictor deployable: gRPC servicer and Kafka handler over the same stage function."""

from __future__ import annotations

from services.common.blobstore import BlobStore
from services.common.service_runner import StageParts
from services.common.settings import Settings
from services.predictor.server import SERVICE_NAME, PredictorServicer, register
from services.predictor.stage import predict_job


def parts(settings: Settings, blobs: BlobStore) -> StageParts:
    return StageParts(
        role="predictor",
        service_name=SERVICE_NAME,
        port=settings.predictor_port,
        register=register(PredictorServicer()),
        handler=predict_job,
    )

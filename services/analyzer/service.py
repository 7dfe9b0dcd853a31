"""The analyzer deployable: gRPC servicer and Kafka handler over the same stage function."""

from __future__ import annotations

from services.analyzer.analysis import warm_up
from services.analyzer.server import SERVICE_NAME, AnalyzerServicer, register
from services.analyzer.stage import analyze_job
from services.common.blobstore import BlobStore
from services.common.service_runner import StageParts
from services.common.settings import Settings


def parts(settings: Settings, blobs: BlobStore) -> StageParts:
    limit = settings.max_duration_s
    return StageParts(
        role="analyzer",
        service_name=SERVICE_NAME,
        port=settings.analyzer_port,
        register=register(AnalyzerServicer(blobs=blobs, max_duration_s=limit)),
        handler=lambda job: analyze_job(job, blobs=blobs, max_duration_s=limit),
        warm_up=warm_up,
    )

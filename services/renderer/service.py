"""The renderer deployable: gRPC servicer and Kafka handler over the same stage function."""

from __future__ import annotations

from services.common.blobstore import BlobStore
from services.common.service_runner import StageParts
from services.common.settings import Settings
from services.renderer.chain import warm_up
from services.renderer.server import SERVICE_NAME, RendererServicer, register
from services.renderer.stage import render_job


def parts(settings: Settings, blobs: BlobStore) -> StageParts:
    limit = settings.max_duration_s
    workers = settings.render_workers
    return StageParts(
        role="renderer",
        service_name=SERVICE_NAME,
        port=settings.renderer_port,
        register=register(
            RendererServicer(
                blobs=blobs,
                max_duration_s=limit,
                workers=workers,
                cache_bytes=settings.render_cache_bytes,
            )
        ),
        handler=lambda job: render_job(job, blobs=blobs, max_duration_s=limit, workers=workers),
        warm_up=warm_up,
    )

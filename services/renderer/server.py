"""gRPC adapter: ``Renderer.Render`` over the renderer stage (also used for a fast re-render of
a user's edited parameters, with the stored analysis)."""

from __future__ import annotations

import grpc

from mixpilot.v1 import mixpilot_pb2 as pb
from mixpilot.v1 import mixpilot_pb2_grpc as pb_grpc
from services.common.blobstore import BlobStore
from services.common.grpc_server import map_errors
from services.renderer.inputs import InputCache
from services.renderer.stage import render_request

SERVICE_NAME = "mixpilot.v1.Renderer"


class RendererServicer(pb_grpc.RendererServicer):
    def __init__(
        self,
        *,
        blobs: BlobStore,
        max_duration_s: float,
        workers: int = 0,
        cache_bytes: int = 0,
    ) -> None:
        self.blobs = blobs
        self.max_duration_s = max_duration_s
        self.workers = workers
        self.inputs = InputCache(blobs, max_bytes=cache_bytes, max_duration_s=max_duration_s)

    @map_errors
    def Render(  # noqa: N802 - gRPC method name
        self, request: pb.RenderRequest, context: grpc.ServicerContext
    ) -> pb.RenderResponse:
        return render_request(
            request,
            blobs=self.blobs,
            max_duration_s=self.max_duration_s,
            workers=self.workers,
            inputs=self.inputs,
        )


def register(servicer: RendererServicer):  # type: ignore[no-untyped-def]
    return lambda server: pb_grpc.add_RendererServicer_to_server(servicer, server)

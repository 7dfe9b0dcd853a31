"""gRPC adapter: ``Analyzer.Analyze`` over the analyzer stage."""

from __future__ import annotations

import grpc

from mixpilot.v1 import mixpilot_pb2 as pb
from mixpilot.v1 import mixpilot_pb2_grpc as pb_grpc
from services.analyzer.stage import analyze_job
from services.common.blobstore import BlobStore
from services.common.grpc_server import map_errors

SERVICE_NAME = "mixpilot.v1.Analyzer"


class AnalyzerServicer(pb_grpc.AnalyzerServicer):
    def __init__(self, *, blobs: BlobStore, max_duration_s: float) -> None:
        self.blobs = blobs
        self.max_duration_s = max_duration_s

    @map_errors
    def Analyze(  # noqa: N802 - gRPC method name
        self, request: pb.AnalyzeRequest, context: grpc.ServicerContext
    ) -> pb.AnalyzeResponse:
        job = analyze_job(request.job, blobs=self.blobs, max_duration_s=self.max_duration_s)
        return pb.AnalyzeResponse(job=job)


def register(servicer: AnalyzerServicer):  # type: ignore[no-untyped-def]
    return lambda server: pb_grpc.add_AnalyzerServicer_to_server(servicer, server)

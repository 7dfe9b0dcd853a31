"""gRPC adapter: ``Predictor.Predict`` over the predictor stage."""

from __future__ import annotations

import grpc

from mixpilot.v1 import mixpilot_pb2 as pb
from mixpilot.v1 import mixpilot_pb2_grpc as pb_grpc
from services.common.blobstore import BlobStore
from services.common.grpc_server import map_errors
from services.predictor.inference import ModelRunner
from services.predictor.stage import predict_job

SERVICE_NAME = "mixpilot.v1.Predictor"


class PredictorServicer(pb_grpc.PredictorServicer):
    def __init__(
        self, *, blobs: BlobStore, max_duration_s: float, runner: ModelRunner | None = None
    ) -> None:
        self._blobs = blobs
        self._max_duration_s = max_duration_s
        self._runner = runner

    @map_errors
    def Predict(  # noqa: N802 - gRPC method name
        self, request: pb.PredictRequest, context: grpc.ServicerContext
    ) -> pb.PredictResponse:
        job = predict_job(
            request.job, blobs=self._blobs, max_duration_s=self._max_duration_s, runner=self._runner
        )
        return pb.PredictResponse(job=job)


def register(servicer: PredictorServicer):  # type: ignore[no-untyped-def]
    return lambda server: pb_grpc.add_PredictorServicer_to_server(servicer, server)

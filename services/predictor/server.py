"""gRPC adapter: ``Predictor.Predict`` over the predictor stage."""

from __future__ import annotations

import grpc

from mixpilot.v1 import mixpilot_pb2 as pb
from mixpilot.v1 import mixpilot_pb2_grpc as pb_grpc
from services.common.grpc_server import map_errors
from services.predictor.stage import predict_job

SERVICE_NAME = "mixpilot.v1.Predictor"


class PredictorServicer(pb_grpc.PredictorServicer):
    @map_errors
    def Predict(  # noqa: N802 - gRPC method name
        self, request: pb.PredictRequest, context: grpc.ServicerContext
    ) -> pb.PredictResponse:
        return pb.PredictResponse(job=predict_job(request.job))


def register(servicer: PredictorServicer):  # type: ignore[no-untyped-def]
    return lambda server: pb_grpc.add_PredictorServicer_to_server(servicer, server)

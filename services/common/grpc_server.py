"""gRPC plumbing shared by the stage servers: ``create_server(address) -> (server, port)`` so
tests bind port 0, the stock health service, and typed errors mapped to status codes once."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from concurrent import futures
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from services.common.errors import MixPilotError

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

MAX_MESSAGE_BYTES = 16 * 1024 * 1024


def create_server(
    address: str, register: Callable[[grpc.Server], None], *, max_workers: int = 4
) -> tuple[grpc.Server, int, health.HealthServicer]:
    """Build (not start) a server on ``address`` ("host:0" picks a free port).

    Returns the server, the bound port and its health servicer (initially NOT_SERVING: the
    caller flips it once the stage is really ready)."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers),
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ],
    )
    register(server)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    health_servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot bind gRPC server to {address}")
    return server, port, health_servicer


def set_serving(health_servicer: health.HealthServicer, services: list[str], serving: bool) -> None:
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    for name in ["", *services]:
        health_servicer.set(name, status)


def map_errors(method: F) -> F:
    """Servicer method decorator: typed errors -> their status code with the one-line message;
    anything else -> INTERNAL (logged with its traceback)."""

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except MixPilotError as exc:
            context.abort(grpc.StatusCode[exc.grpc_status], f"{exc.code}: {exc.message}")
        except Exception as exc:  # noqa: BLE001 - mapped to a status, never swallowed
            log.exception("unhandled error in %s", method.__name__)
            context.abort(grpc.StatusCode.INTERNAL, f"internal: {type(exc).__name__}: {exc}")

    return wrapper  # type: ignore[return-value]

"""`mixpilot healthcheck ROLE`: whether the service of this container is ready, for Docker's
HEALTHCHECK (Kubernetes probes the same endpoints itself: gRPC health, HTTP /readyz). Exit 0
when ready; otherwise 1 and the reason on stderr."""

from __future__ import annotations

import urllib.error
import urllib.request

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.settings import Settings


def check(role: str, settings: Settings, *, timeout_s: float = 3.0) -> str | None:
    """None if ``role``'s service on this machine answers ready, else why not."""
    if role == "gateway":
        url = f"http://127.0.0.1:{settings.gateway_port}/readyz"
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - loopback
                return None if response.status == 200 else f"{url} answered {response.status}"
        except (urllib.error.URLError, OSError) as exc:
            return f"{url}: {exc}"
    ports = {
        "analyzer": settings.analyzer_port,
        "predictor": settings.predictor_port,
        "renderer": settings.renderer_port,
    }
    if role not in ports:
        return f"unknown role {role!r}: one of gateway, {', '.join(ports)}"
    target = f"127.0.0.1:{ports[role]}"
    try:
        status = grpc_health(target, timeout_s=timeout_s)
    except grpc.RpcError as exc:
        return f"{target}: {exc.code().name}"  # type: ignore[attr-defined]
    return None if status == "SERVING" else f"{target}: {status}"


def grpc_health(target: str, *, service: str = "", timeout_s: float = 3.0) -> str:
    """What the gRPC health service at ``target`` answers for ``service`` ("" is the whole
    server): ``SERVING``, ``NOT_SERVING``, ... Raises grpc.RpcError when it does not answer."""
    with grpc.insecure_channel(target) as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=timeout_s
        )
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status))

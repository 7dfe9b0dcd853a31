"""Start one stage as a deployable: its gRPC server (with health), its Kafka worker and its
Prometheus endpoint; SIGTERM drains in-flight work, then stops."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from prometheus_client import start_http_server

from services.common.blobstore import BlobStore, open_blob_store
from services.common.bus import KafkaBus
from services.common.grpc_server import create_server, set_serving
from services.common.settings import Role, Settings
from services.common.stage_worker import ALL_TOPICS, STAGES, Handler, StageWorker, run_in_thread
from services.common.telemetry import StageMetrics, configure_logging

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StageParts:
    """What a stage service contributes: its gRPC registration and its job handler."""

    role: Role
    service_name: str
    port: int
    register: Callable[[grpc.Server], None]
    handler: Handler
    warm_up: Callable[[], None] | None = None  # pays lazy imports / JIT before SERVING


PartsFactory = Callable[[Settings, BlobStore], StageParts]


def build_worker(parts: StageParts, settings: Settings, bus: object) -> StageWorker:
    return StageWorker(
        spec=STAGES[parts.role],
        bus=bus,  # type: ignore[arg-type]
        handler=parts.handler,
        group_id=f"{settings.consumer_group_prefix}-{parts.role}",
        max_attempts=settings.max_attempts,
        retry_backoff_s=settings.retry_backoff_s,
        metrics=StageMetrics.for_stage(parts.role),
    )


def run_stage_service(factory: PartsFactory, settings: Settings, role: Role) -> None:
    """Block until SIGTERM/SIGINT. Health is SERVING only while the worker loop is alive."""
    configure_logging(settings.log_level, json_lines=settings.log_json)
    settings.require_distributed(role)
    blobs = open_blob_store(settings.blob_url, s3_endpoint_url=settings.s3_endpoint_url)
    parts = factory(settings, blobs)
    if parts.warm_up is not None:
        parts.warm_up()
    metrics_port = settings.metrics_port_for(role)
    if metrics_port:
        start_http_server(metrics_port, addr=settings.host)
    bus = KafkaBus(
        settings.kafka_bootstrap or "", session_timeout_ms=settings.kafka_session_timeout_ms
    )
    bus.ensure_topics(ALL_TOPICS, partitions=settings.topic_partitions)
    server, port, health = create_server(f"{settings.host}:{parts.port}", parts.register)
    server.start()
    worker = build_worker(parts, settings, bus)
    thread = run_in_thread(worker)
    set_serving(health, [parts.service_name], True)
    log.info(
        "service started", extra={"role": role, "grpc_port": port, "metrics_port": metrics_port}
    )

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(1.0):
        if not thread.is_alive():
            log.error("worker loop died; reporting NOT_SERVING", extra={"role": role})
            set_serving(health, [parts.service_name], False)
            break
    stop.wait()
    log.info("shutting down", extra={"role": role})
    health.enter_graceful_shutdown()
    worker.stop()
    thread.join(settings.grace_s)
    server.stop(settings.grace_s).wait()


def service_main(factory: PartsFactory, role: Role) -> int:
    """Entry point of a stage process: settings from the environment, one-line errors."""
    import sys

    from services.common.errors import MixPilotError
    from services.common.settings import load_settings

    try:
        run_stage_service(factory, load_settings(), role)
    except MixPilotError as exc:
        print(f"mixpilot {role}: error: {exc.message}", file=sys.stderr)
        return 2
    return 0

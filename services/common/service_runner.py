"""Start one stage as a deployable: its gRPC server (with health), its Kafka worker and its
Prometheus endpoint; SIGTERM drains in-flight work, then stops.

A stage whose work depends on another server (the predictor on Triton) gives a ``ready``
check: a :class:`ReadinessMonitor` runs it every second, the gRPC health reports
``NOT_SERVING`` while it fails, and the Kafka worker stops taking jobs until it passes again."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from prometheus_client import Gauge, start_http_server

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
    #: The stage's dependencies are usable: (ready, reason). None: nothing to wait for.
    ready: Callable[[], tuple[bool, str]] | None = None
    #: Jobs the Kafka worker processes at once.
    concurrency: int = 1


PartsFactory = Callable[[Settings, BlobStore], StageParts]

DEPENDENCIES_READY = Gauge(
    "mixpilot_stage_dependencies_ready",
    "1 while the servers a stage depends on (Triton for the predictor) are ready",
    ["stage"],
)


class ReadinessMonitor:
    """Runs a stage's ``ready`` check every ``interval_s`` in a daemon thread; logs each
    change and exports it as ``mixpilot_stage_dependencies_ready{stage}``."""

    def __init__(
        self, role: str, check: Callable[[], tuple[bool, str]], *, interval_s: float = 1.0
    ) -> None:
        self.role = role
        self._check = check
        self._interval_s = interval_s
        self._ready = threading.Event()
        self._stop = threading.Event()
        self.reason = "not checked yet"
        self._thread = threading.Thread(target=self._run, name=f"{role}-readiness", daemon=True)

    def start(self) -> ReadinessMonitor:
        self.poll()
        self._thread.start()
        return self

    def poll(self) -> bool:
        """Run the check once now; return and record its verdict."""
        try:
            ok, reason = self._check()
        except Exception as exc:  # noqa: BLE001 - a failing check means not ready
            ok, reason = False, f"readiness check failed: {exc}"
        if ok != self._ready.is_set() or reason != self.reason:
            level = logging.INFO if ok else logging.WARNING
            log.log(
                level,
                "dependencies %s",
                "ready" if ok else "not ready",
                extra={"role": self.role, "reason": reason},
            )
        self.reason = reason
        (self._ready.set if ok else self._ready.clear)()
        DEPENDENCIES_READY.labels(stage=self.role).set(1 if ok else 0)
        return ok

    def is_ready(self) -> bool:
        return self._ready.is_set()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.poll()

    def stop(self) -> None:
        self._stop.set()


def build_worker(
    parts: StageParts, settings: Settings, bus: object, monitor: ReadinessMonitor | None = None
) -> StageWorker:
    return StageWorker(
        spec=STAGES[parts.role],
        bus=bus,  # type: ignore[arg-type]
        handler=parts.handler,
        group_id=f"{settings.consumer_group_prefix}-{parts.role}",
        max_attempts=settings.max_attempts,
        retry_backoff_s=settings.retry_backoff_s,
        metrics=StageMetrics.for_stage(parts.role),
        concurrency=parts.concurrency,
        gate=None if monitor is None else monitor.is_ready,
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
        settings.kafka_bootstrap or "",
        session_timeout_ms=settings.kafka_session_timeout_ms,
        max_poll_records=parts.concurrency,
    )
    bus.ensure_topics(ALL_TOPICS, partitions=settings.topic_partitions)
    server, port, health = create_server(f"{settings.host}:{parts.port}", parts.register)
    server.start()
    monitor = ReadinessMonitor(role, parts.ready).start() if parts.ready else None
    worker = build_worker(parts, settings, bus, monitor)
    thread = run_in_thread(worker)
    log.info(
        "service started", extra={"role": role, "grpc_port": port, "metrics_port": metrics_port}
    )

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    serving: bool | None = None
    while True:
        if not thread.is_alive():
            log.error("worker loop died; reporting NOT_SERVING", extra={"role": role})
            set_serving(health, [parts.service_name], False)
            break
        now = monitor is None or monitor.is_ready()
        if now != serving:
            set_serving(health, [parts.service_name], now)
            serving = now
        if stop.wait(0.5):
            break
    stop.wait()
    if monitor is not None:
        monitor.stop()
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

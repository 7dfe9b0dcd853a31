"""Process assembly for the gateway: distributed (`mixpilot gateway`: Kafka, PostgreSQL) and one
machine (`mixpilot serve`: in-memory bus, SQLite, local blobs, every stage in this process)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import uvicorn
from fastapi import FastAPI

from gateway.api import Gateway, create_app
from gateway.events import EventApplier
from gateway.store import JobStore
from gateway.webhooks import Dispatcher
from services.analyzer.service import parts as analyzer_parts
from services.common.blobstore import BlobStore, open_blob_store
from services.common.bus import Bus, InMemoryBus, KafkaBus
from services.common.service_runner import ReadinessMonitor, build_worker
from services.common.settings import Settings
from services.common.stage_worker import ALL_TOPICS, run_in_thread
from services.common.telemetry import configure_logging
from services.predictor.service import parts as predictor_parts
from services.renderer.service import parts as renderer_parts

log = logging.getLogger(__name__)

STAGE_FACTORIES = (analyzer_parts, predictor_parts, renderer_parts)


def build_gateway(
    settings: Settings, bus: Bus, blobs: BlobStore, store: JobStore
) -> tuple[FastAPI, Callable[[], None]]:
    """The API app with its event consumer running; returns (app, stop)."""
    applier = EventApplier(
        bus=bus, store=store, group_id=f"{settings.consumer_group_prefix}-gateway"
    )
    applier.start()
    dispatcher = Dispatcher(
        store.engine,
        max_attempts=settings.webhook_max_attempts,
        backoff_s=settings.webhook_backoff_s,
        timeout_s=settings.webhook_timeout_s,
        allow_private=settings.webhook_allow_private,
    ).start()
    gateway = Gateway(settings=settings, store=store, blobs=blobs, producer=bus.producer())
    gateway.admission.start()
    gateway.importer.start()
    app = create_app(gateway)

    def stop() -> None:
        gateway.admission.stop()
        gateway.importer.stop()
        applier.stop()
        dispatcher.stop()

    return app, stop


def build_one_machine(settings: Settings) -> tuple[FastAPI, Callable[[], None]]:
    """Gateway plus the three stage workers on an in-memory bus; returns (app, stop)."""
    settings = settings.model_copy(update={"auth": settings.one_machine_auth()})
    if settings.auth == "none":
        log.info(
            "no API keys: this server listens on loopback only (MIXPILOT_AUTH=api_key to"
            " require them)",
            extra={"host": settings.host},
        )
    blobs = open_blob_store(settings.blob_url, s3_endpoint_url=settings.s3_endpoint_url)
    stages = [f(settings, blobs) for f in STAGE_FACTORIES]
    bus = InMemoryBus(max_poll_records=max(p.concurrency for p in stages))
    bus.ensure_topics(ALL_TOPICS)
    store = JobStore(settings.database_url)
    monitors = [ReadinessMonitor(p.role, p.ready).start() for p in stages if p.ready]
    gates = {m.role: m for m in monitors}
    workers = [build_worker(p, settings, bus, gates.get(p.role)) for p in stages]
    for worker in workers:
        run_in_thread(worker)
    app, stop_gateway = build_gateway(settings, bus, blobs, store)

    def stop() -> None:
        stop_gateway()
        for worker in workers:
            worker.stop()
        for monitor in monitors:
            monitor.stop()

    return app, stop


def _serve(settings: Settings, app: FastAPI, stop: Callable[[], None]) -> None:
    log.info("gateway listening", extra={"host": settings.host, "port": settings.gateway_port})
    try:
        uvicorn.run(
            app,
            host=settings.host,
            port=settings.gateway_port,
            log_config=None,
            timeout_graceful_shutdown=int(settings.grace_s),
        )
    finally:
        stop()


def run_gateway(settings: Settings) -> None:
    """`mixpilot gateway`: the distributed gateway."""
    configure_logging(settings.log_level, json_lines=settings.log_json)
    settings.require_distributed("gateway")
    bus = KafkaBus(
        settings.kafka_bootstrap or "", session_timeout_ms=settings.kafka_session_timeout_ms
    )
    bus.ensure_topics(ALL_TOPICS, partitions=settings.topic_partitions)
    blobs = open_blob_store(settings.blob_url, s3_endpoint_url=settings.s3_endpoint_url)
    _serve(settings, *build_gateway(settings, bus, blobs, JobStore(settings.database_url)))


def run_serve(settings: Settings) -> None:
    """`mixpilot serve`: everything in one process on one machine."""
    configure_logging(settings.log_level, json_lines=settings.log_json)
    _serve(settings, *build_one_machine(settings))

"""The gateway's event consumer: mixpilot.jobs.events -> job store, committed after applying
(applying is idempotent, so a redelivery is harmless)."""

from __future__ import annotations

import logging
import threading

from google.protobuf.message import DecodeError
from prometheus_client import Counter
from sqlalchemy.exc import SQLAlchemyError

from gateway.store import JobStore
from mixpilot.v1 import mixpilot_pb2 as pb
from services.common import bus as busmod

log = logging.getLogger(__name__)

APPLIED = Counter("mixpilot_gateway_events_total", "Job events consumed", ["result"])


class EventApplier:
    def __init__(self, *, bus: busmod.Bus, store: JobStore, group_id: str) -> None:
        self.bus = bus
        self.store = store
        self.group_id = group_id
        self._stop = threading.Event()
        self.ready = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        consumer = self.bus.consumer([busmod.EVENTS], group_id=self.group_id)
        self.ready.set()
        try:
            while not self._stop.is_set():
                for message in consumer.poll(0.5):
                    if not self._apply_until_stored(message):
                        return  # stopping: leave it uncommitted for the next consumer
                    consumer.commit(message)
        finally:
            consumer.close()

    def _apply_until_stored(self, message: busmod.Message) -> bool:
        """Events apply in order: while the job store is unreachable, keep retrying this one
        (with backoff) rather than skipping it or dying."""
        delay = 0.2
        while True:
            try:
                self.apply(message)
                return True
            except SQLAlchemyError as exc:
                APPLIED.labels(result="store_error").inc()
                log.warning(
                    "job store unavailable; retrying event",
                    extra={"offset": message.offset, "error": str(exc)[:300]},
                )
                if self._stop.wait(delay):
                    return False
                delay = min(delay * 2, 5.0)

    def apply(self, message: busmod.Message) -> None:
        try:
            event = pb.JobEvent.FromString(message.value)
        except DecodeError:
            APPLIED.labels(result="malformed").inc()
            log.warning(
                "malformed event skipped", extra={"offset": message.offset, "key": message.key}
            )
            return
        applied = self.store.apply_event(event)
        APPLIED.labels(result="applied" if applied else "ignored").inc()
        log.debug(
            "event", extra={"job_id": event.job_id, "event_id": event.event_id, "applied": applied}
        )

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="gateway-events", daemon=True)
        thread.start()
        if not self.ready.wait(60):
            raise RuntimeError("gateway event consumer did not start")
        return thread

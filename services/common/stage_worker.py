"""The streaming loop every stage runs: consume a job envelope, process it, produce the result,
then commit — at-least-once, in that fixed order (the producer's send returns only after the
broker acknowledged, and only then is the input offset committed).

A message that cannot be parsed, a job that fails with a non-retriable error, or one that keeps
failing after ``max_attempts`` tries goes to the dead-letter topic with the error in its headers,
and the job gets a ``failed`` event with a readable reason. Nothing about one message can stop
the loop.

With ``concurrency`` above 1 the messages of one poll are processed that many at a time (the
predictor on Triton does this, so that Triton's dynamic batching sees overlapping requests);
each is still committed only after it and every message before it has been produced. A
``gate`` (a dependency's readiness) stops consumption while it is closed: jobs wait in the
topic instead of failing while, say, Triton restarts."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from mixpilot.v1 import mixpilot_pb2 as pb
from services.common import bus as busmod
from services.common.errors import InvalidMessageError, MixPilotError
from services.common.jobs import job_error, make_event
from services.common.telemetry import StageMetrics, job_logger

log = logging.getLogger(__name__)

Handler = Callable[[pb.JobEnvelope], pb.JobEnvelope]


@dataclass(frozen=True)
class StageSpec:
    """Where a stage sits in the flow."""

    name: str  # analyzer | predictor | renderer
    in_topic: str
    out_topic: str
    running_state: int  # JobState while this stage works
    progress_start: float
    progress_end: float
    final: bool = False  # the last stage announces ``done``


STAGES: dict[str, StageSpec] = {
    "analyzer": StageSpec(
        "analyzer", busmod.SUBMITTED, busmod.ANALYZED, pb.JOB_STATE_ANALYZING, 0.05, 0.35
    ),
    "predictor": StageSpec(
        "predictor", busmod.ANALYZED, busmod.PREDICTED, pb.JOB_STATE_PREDICTING, 0.35, 0.45
    ),
    "renderer": StageSpec(
        "renderer", busmod.PREDICTED, busmod.RENDERED, pb.JOB_STATE_RENDERING, 0.45, 1.0, final=True
    ),
}


#: Every topic of the flow, created (idempotently) by each process at start.
ALL_TOPICS = (
    busmod.SUBMITTED,
    busmod.ANALYZED,
    busmod.PREDICTED,
    busmod.RENDERED,
    busmod.EVENTS,
    busmod.DLQ,
)


class StageWorker:
    """Runs one stage's handler over its input topic until :meth:`stop`."""

    def __init__(
        self,
        *,
        spec: StageSpec,
        bus: busmod.Bus,
        handler: Handler,
        group_id: str,
        max_attempts: int = 3,
        retry_backoff_s: float = 0.5,
        metrics: StageMetrics | None = None,
        concurrency: int = 1,
        gate: Callable[[], bool] | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        self.spec = spec
        self.concurrency = concurrency
        self.gate = gate
        self.bus = bus
        self.handler = handler
        self.group_id = group_id
        self.max_attempts = max_attempts
        self.retry_backoff_s = retry_backoff_s
        self.metrics = metrics or StageMetrics.for_stage(spec.name)
        self._stop = threading.Event()
        self.ready = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        """Consume until stopped. Safe to run in a thread."""
        producer = self.bus.producer()
        consumer = self.bus.consumer([self.spec.in_topic], group_id=self.group_id)
        self.ready.set()
        log.info(
            "stage worker started", extra={"stage": self.spec.name, "topic": self.spec.in_topic}
        )
        pool = (
            ThreadPoolExecutor(self.concurrency, thread_name_prefix=f"{self.spec.name}-job")
            if self.concurrency > 1
            else None
        )
        try:
            while not self._stop.is_set():
                if self.gate is not None and not self.gate():
                    self._stop.wait(0.5)
                    continue
                messages = consumer.poll(0.5)
                for start in range(0, len(messages), self.concurrency):
                    chunk = messages[start : start + self.concurrency]
                    if pool is None:
                        done = [lambda m=chunk[0]: self.handle_message(m, producer)]
                    else:
                        futures = [pool.submit(self.handle_message, m, producer) for m in chunk]
                        done = [f.result for f in futures]
                    for message, wait in zip(chunk, done, strict=True):
                        wait()  # a bus failure raises here: nothing after it is committed
                        consumer.commit(message)
                    if self._stop.is_set():
                        break
        finally:
            if pool is not None:
                pool.shutdown(wait=True)
            consumer.close()
            producer.close()
            log.info("stage worker stopped", extra={"stage": self.spec.name})

    # -- one message ---------------------------------------------------------------------------

    def handle_message(self, message: busmod.Message, producer: busmod.Producer) -> None:
        """Process one message completely: output or DLQ, and the events. Never raises for a bad
        message; raises only if the bus itself fails (then the offset stays uncommitted and the
        message is redelivered)."""
        try:
            job = pb.JobEnvelope.FromString(message.value)
            if not job.job_id:
                raise InvalidMessageError("job envelope without job_id")
        except (DecodeError, InvalidMessageError) as exc:
            err = InvalidMessageError(f"malformed job envelope on {message.topic}: {exc}")
            self._dead_letter(
                message,
                producer,
                job_error(err, stage=self.spec.name),
                job=pb.JobEnvelope(job_id=message.key) if message.key else None,
            )
            return
        jlog = job_logger(__name__, job.job_id, stage=self.spec.name)
        self._event(
            producer,
            make_event(
                job,
                self.spec.running_state,
                stage=self.spec.name,
                progress=self.spec.progress_start,
            ),
        )
        with self.metrics.track():
            result, error = self._process_with_retries(job, jlog)
        if error is not None:
            self.metrics.failed.labels(reason=error.code).inc()
            jlog.warning("job failed", extra={"code": error.code, "reason": error.message})
            self._dead_letter(message, producer, error, job=job)
            return
        assert result is not None
        producer.send(self.spec.out_topic, key=job.job_id, value=result.SerializeToString())
        if self.spec.final:
            self._event(
                producer, make_event(result, pb.JOB_STATE_DONE, stage=self.spec.name, progress=1.0)
            )
        self.metrics.processed.inc()
        jlog.info("job stage done", extra={"timings_s": dict(result.timings_s)})

    def _process_with_retries(
        self,
        job: pb.JobEnvelope,
        jlog: logging.LoggerAdapter,  # type: ignore[type-arg]
    ) -> tuple[pb.JobEnvelope | None, pb.JobError | None]:
        for attempt in range(1, self.max_attempts + 1):
            try:
                out = self.handler(job)
                out.attempt = attempt
                return out, None
            except MixPilotError as exc:
                if not exc.retriable or attempt == self.max_attempts:
                    return None, job_error(exc, stage=self.spec.name)
                reason: BaseException = exc
            except Exception as exc:  # noqa: BLE001 - a bug in one job must not stop the worker
                jlog.exception("unexpected error in stage handler", extra={"attempt": attempt})
                if attempt == self.max_attempts:
                    return None, job_error(exc, stage=self.spec.name)
                reason = exc
            self.metrics.retries.inc()
            jlog.warning("retrying", extra={"attempt": attempt, "reason": str(reason)})
            if self._stop.wait(self.retry_backoff_s * 2 ** (attempt - 1)):
                break
        return None, pb.JobError(
            code="interrupted", message="worker stopped during retries", stage=self.spec.name
        )

    def _dead_letter(
        self,
        message: busmod.Message,
        producer: busmod.Producer,
        error: pb.JobError,
        *,
        job: pb.JobEnvelope | None,
    ) -> None:
        headers = {
            "error_code": error.code,
            "error_message": error.message,
            "stage": self.spec.name,
            "source_topic": message.topic,
            "source_partition": str(message.partition),
            "source_offset": str(message.offset),
        }
        producer.send(busmod.DLQ, key=message.key, value=message.value, headers=headers)
        if job is not None:
            failed = make_event(
                job,
                pb.JOB_STATE_FAILED,
                stage=self.spec.name,
                progress=1.0,
                error=error,
            )
            self._event(producer, failed)

    def _event(self, producer: busmod.Producer, event: pb.JobEvent) -> None:
        producer.send(busmod.EVENTS, key=event.job_id, value=event.SerializeToString())


def run_in_thread(worker: StageWorker, *, ready_timeout_s: float = 60.0) -> threading.Thread:
    thread = threading.Thread(target=worker.run, name=f"{worker.spec.name}-worker", daemon=True)
    thread.start()
    deadline = time.monotonic() + ready_timeout_s
    while not worker.ready.wait(0.1):
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"{worker.spec.name} worker did not start")
    return thread

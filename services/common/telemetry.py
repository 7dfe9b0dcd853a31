"""Structured logs (one JSON object a line, job id bound) and Prometheus metrics named
``mixpilot_<stage>_<what>_<unit>``."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message"}


class JsonFormatter(logging.Formatter):
    """Every record as one JSON line; ``extra={...}`` fields (job_id, stage...) are kept."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k, v in record.__dict__.items():
            if k not in _RESERVED and not k.startswith("_"):
                out[k] = v
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure_logging(level: str = "INFO", *, json_lines: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if json_lines else logging.Formatter("%(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("kafka", "botocore", "urllib3", "numba"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


class JobLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A logger with the job id (and anything else) bound into every record."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        kwargs["extra"] = {**(self.extra or {}), **kwargs.get("extra", {})}
        return msg, kwargs


def job_logger(name: str, job_id: str, **fields: Any) -> JobLogger:
    return JobLogger(logging.getLogger(name), {"job_id": job_id, **fields})


class StageMetrics:
    """The metrics every stage exposes: processed, failed, duration, in flight."""

    _cache: dict[tuple[int, str], StageMetrics] = {}

    def __init__(self, stage: str, registry: CollectorRegistry) -> None:
        self.stage = stage
        self.processed = Counter(
            f"mixpilot_{stage}_jobs_processed_total",
            f"Jobs the {stage} finished",
            registry=registry,
        )
        self.failed = Counter(
            f"mixpilot_{stage}_jobs_failed_total",
            f"Jobs the {stage} failed, by reason",
            ["reason"],
            registry=registry,
        )
        self.retries = Counter(
            f"mixpilot_{stage}_retries_total", f"Retried attempts in the {stage}", registry=registry
        )
        self.duration = Histogram(
            f"mixpilot_{stage}_duration_seconds",
            f"Processing time of one job in the {stage}",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300),
            registry=registry,
        )
        self.in_flight = Gauge(
            f"mixpilot_{stage}_in_flight_jobs", f"Jobs in the {stage} right now", registry=registry
        )

    @classmethod
    def for_stage(cls, stage: str, registry: CollectorRegistry = REGISTRY) -> StageMetrics:
        """One set per (registry, stage), so several stages can share one process."""
        key = (id(registry), stage)
        if key not in cls._cache:
            cls._cache[key] = cls(stage, registry)
        return cls._cache[key]

    @contextmanager
    def track(self) -> Iterator[None]:
        self.in_flight.inc()
        start = time.perf_counter()
        try:
            yield
        finally:
            self.duration.observe(time.perf_counter() - start)
            self.in_flight.dec()

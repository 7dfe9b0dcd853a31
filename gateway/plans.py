"""Subscription plans: what a tenant may do, enforced by the gateway and shown by
``GET /v1/usage``. A tenant's plan is in its row (``mixpilot tenants set-plan T PLAN``).

The service-wide limits (``MIXPILOT_MAX_UPLOAD_MB``, ``MIXPILOT_MAX_DURATION_S``) still cap
every plan: a plan can only be stricter than the deployment.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from services.common.errors import InvalidParameterError, RateLimitedError


@dataclass(frozen=True)
class Plan:
    name: str
    concurrent_jobs: int  # jobs in the pipeline at once (more wait at the gateway, in order)
    audio_minutes_per_month: float  # minutes of uploaded audio accepted per calendar month (UTC)
    max_upload_mb: float
    max_duration_s: float
    requests_per_minute: int  # every /v1 request
    max_queued_jobs: int = 200  # jobs waiting for admission; more are refused (429)

    def limits(self) -> dict[str, float]:
        return {k: v for k, v in asdict(self).items() if k != "name"}


PLANS: dict[str, Plan] = {
    p.name: p
    for p in (
        Plan("free", 1, 30.0, 50.0, 600.0, 60, max_queued_jobs=5),
        Plan("standard", 4, 600.0, 200.0, 1200.0, 300, max_queued_jobs=200),
        Plan("label", 64, 100_000.0, 500.0, 1200.0, 3000, max_queued_jobs=20_000),
    )
}
DEFAULT_PLAN = "standard"


def plan_named(name: str) -> Plan:
    try:
        return PLANS[name]
    except KeyError:
        raise InvalidParameterError(
            f"unknown plan {name!r}; expected one of {', '.join(PLANS)}"
        ) from None


class RateLimiter:
    """A token bucket per tenant, in this gateway process: ``requests_per_minute`` tokens,
    refilled continuously. With several gateway replicas each enforces its own bucket, so a
    tenant spread over N replicas gets up to N times its rate."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # tenant -> (tokens, at)

    def take(self, tenant: str, per_minute: int) -> None:
        """Spend one request of ``tenant``'s rate or raise :class:`RateLimitedError`."""
        rate = per_minute / 60.0
        now = self._clock()
        with self._lock:
            tokens, at = self._buckets.get(tenant, (float(per_minute), now))
            tokens = min(float(per_minute), tokens + (now - at) * rate)
            if tokens < 1.0:
                self._buckets[tenant] = (tokens, now)
                wait = (1.0 - tokens) / rate
                raise RateLimitedError(
                    f"more than {per_minute} requests a minute for this plan; retry in "
                    f"{wait:.1f} s",
                    retry_after_s=wait,
                )
            self._buckets[tenant] = (tokens - 1.0, now)

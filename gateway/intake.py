"""Intake: how a song becomes a job, whichever way it arrives (an upload, a file of a batch, an
object imported from the tenant's bucket). Checked against the deployment's limits and the
tenant's plan, validated as audio block by block, metered, stored content-addressed, and
recorded with its envelope to wait for fair admission (:mod:`gateway.admission`)."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter

from gateway.plans import Plan
from mixpilot.v1 import mixpilot_pb2 as pb
from services.common.audio_io import AudioInfo, validate_audio_file
from services.common.blobstore import StoredBlob
from services.common.errors import (
    InvalidParameterError,
    LimitExceededError,
    MixPilotError,
    QuotaExceededError,
)
from services.common.jobs import new_envelope
from services.common.settings import Settings

if TYPE_CHECKING:
    from gateway.api import Gateway

log = logging.getLogger(__name__)

GENRES = ("pop", "rock", "electronic", "jazz", "ballad")
SUBMITTED = Counter("mixpilot_gateway_jobs_submitted_total", "Jobs accepted by the gateway")
REJECTED = Counter("mixpilot_gateway_uploads_rejected_total", "Uploads rejected", ["reason"])


def too_large(limit: int) -> LimitExceededError:
    return LimitExceededError(f"upload exceeds the limit of {limit / 2**20:.3g} MB")


def accept_file(
    gw: Gateway, tenant: str, plan: Plan, path: Path
) -> tuple[StoredBlob, AudioInfo, float]:
    """Validate a received file as audio (the plan's duration), check the month's minutes and
    store it: (stored blob, audio info, seconds). A refusal is counted by its reason."""
    max_duration_s = min(gw.settings.max_duration_s, plan.max_duration_s)
    try:
        info = validate_audio_file(path, max_duration_s=max_duration_s)
        audio_s = info.frames / info.sample_rate
        check_monthly_minutes(gw, tenant, plan, audio_s)
    except MixPilotError as exc:
        REJECTED.labels(reason=exc.code).inc()
        raise
    stored = gw.blobs.put_file(path, suffix="." + info.format.lower()[:5])
    return stored, info, audio_s


def upload_limit_bytes(settings: Settings, plan: Plan) -> int:
    """The largest upload the tenant's plan and the deployment both allow."""
    return min(settings.max_upload_bytes, int(plan.max_upload_mb * 1024 * 1024))


def safe_filename(name: str | None) -> str:
    """A display-safe file name: basename only, no control or path characters."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = re.sub(r"[^\w.\- ()\[\]]+", "_", base, flags=re.UNICODE).strip(" .")
    return (base or "upload")[:200]


def month_bounds(month: str | None) -> tuple[datetime, datetime]:
    """[start, end) of a calendar month in UTC ("YYYY-MM"; the current one when None)."""
    if month is None:
        now = datetime.now(UTC)
        year, number = now.year, now.month
    else:
        year, number = (int(x) for x in month.split("-"))
    try:
        start = datetime(year, number, 1, tzinfo=UTC)
        end = datetime(year + number // 12, number % 12 + 1, 1, tzinfo=UTC)
    except ValueError as exc:
        raise InvalidParameterError(f"month {month!r}: {exc}") from exc
    return start, end


def enqueue_job(
    gw: Gateway,
    job_id: str,
    tenant: str,
    filename: str,
    stored: StoredBlob,
    info: AudioInfo,
    options: dict[str, Any],
    audio_s: float,
    idempotency: tuple[str, str] | None = None,
    batch_id: str | None = None,
) -> str:
    """Store a validated upload's job, waiting for admission with its envelope; its id (an
    earlier job's id when ``idempotency`` replays)."""
    ref = pb.AudioRef(
        uri=stored.uri,
        sha256=stored.sha256,
        sample_rate=info.sample_rate,
        channels=info.channels,
        frames=info.frames,
        format=info.format,
        subtype=info.subtype,
        filename=filename,
        size_bytes=stored.size_bytes,
    )
    envelope = new_envelope(
        job_id=job_id,
        tenant=tenant,
        input_ref=ref,
        target_lufs=options["target_lufs"],
        ceiling_dbtp=options["true_peak_ceiling_dbtp"],
        genre_override=options["genre"] or "",
        intensity_pct=options["intensity_pct"],
    )
    created = gw.store.create_job(
        job_id=job_id,
        tenant=tenant,
        filename=filename,
        input_uri=stored.uri,
        input_sha256=stored.sha256,
        options=options,
        audio_s=audio_s,
        envelope=envelope.SerializeToString(),
        idempotency=idempotency,
        batch_id=batch_id,
    )
    if created == job_id:
        SUBMITTED.inc()
        log.info(
            "job submitted", extra={"job_id": job_id, "tenant": tenant, "input_filename": filename}
        )
    return created


def job_options(
    settings: Settings, target_lufs: float | None, genre: str | None, intensity_pct: float
) -> dict[str, Any]:
    target = settings.target_lufs if target_lufs is None else target_lufs
    if not -40.0 <= target <= -5.0:
        raise InvalidParameterError("target_lufs must be between -40 and -5 LUFS")
    if genre and genre not in GENRES:
        raise InvalidParameterError(f"genre must be one of {', '.join(GENRES)}")
    return {
        "target_lufs": target,
        "true_peak_ceiling_dbtp": settings.true_peak_ceiling_dbtp,
        "genre": genre or None,
        "intensity_pct": intensity_pct,
    }


def check_queue(gw: Gateway, tenant: str, plan: Plan) -> None:
    waiting = gw.store.waiting(tenant)
    if waiting >= plan.max_queued_jobs:
        raise QuotaExceededError(
            f"{waiting} jobs are waiting to start, the {plan.name} plan lets "
            f"{plan.max_queued_jobs} wait (and {plan.concurrent_jobs} run at once): "
            "wait for some to start",
            limit={"name": "queued_jobs", "limit": plan.max_queued_jobs, "used": waiting},
        )


def check_monthly_minutes(gw: Gateway, tenant: str, plan: Plan, audio_s: float) -> None:
    start, end = month_bounds(None)
    used = gw.store.usage(tenant, start, end)[1] / 60.0
    wanted = audio_s / 60.0
    if used + wanted > plan.audio_minutes_per_month:
        raise QuotaExceededError(
            f"this upload ({wanted:.1f} min) would take the month's audio to "
            f"{used + wanted:.1f} min, over the {plan.name} plan's "
            f"{plan.audio_minutes_per_month:g} min",
            limit={
                "name": "audio_minutes_per_month",
                "limit": plan.audio_minutes_per_month,
                "used": round(used, 3),
                "requested": round(wanted, 3),
            },
            monthly=True,
        )

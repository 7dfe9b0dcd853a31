"""The REST API (FastAPI): submit a job, follow it, list, cancel and delete jobs, fetch a job's
report and audio. Every error is ``{"error": {"code", "message"}}`` with the status its typed
error maps to.

Every ``/v1`` route belongs to the tenant of the API key in ``Authorization: Bearer <key>``
(:mod:`gateway.accounts`); a job of another tenant is answered exactly like a job that does not
exist (404), so nothing tells one tenant what another has."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, File, Form, Header, Query, Request, Response, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from prometheus_client import make_asgi_app
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers

from gateway import downloads, intake, renders, visuals
from gateway.accounts import Accounts
from gateway.admission import Admission
from gateway.imports import Importer
from gateway.intake import (
    REJECTED,
    check_queue,
    enqueue_job,
    job_options,
    month_bounds,
    safe_filename,
    too_large,
    upload_limit_bytes,
)
from gateway.plans import PLANS, Plan, RateLimiter
from gateway.preferences import PreferenceStore
from gateway.store import JobRecord, JobStore
from gateway.webhooks import EVENT_TYPES, WebhookStore
from services.common import bus as busmod
from services.common.audio_io import AudioInfo
from services.common.blobstore import BlobStore, StoredBlob
from services.common.errors import (
    ConflictError,
    HeadersTooLargeError,
    LimitExceededError,
    MixPilotError,
    NotFoundError,
    QuotaExceededError,
    RateLimitedError,
    UnauthenticatedError,
)
from services.common.jobs import STATE_NAMES, TERMINAL, new_job_id
from services.common.report import version_label
from services.common.settings import Settings

log = logging.getLogger(__name__)


class Gateway:
    """What the routes need, built once per process (no module globals)."""

    def __init__(
        self, *, settings: Settings, store: JobStore, blobs: BlobStore, producer: busmod.Producer
    ) -> None:
        self.settings = settings
        self.store = store
        self.blobs = blobs
        self.producer = producer
        self.accounts = Accounts(store.engine)
        self.rate_limiter = RateLimiter()
        self.cache_dir = Path(settings.cache_dir)
        self.webhooks = WebhookStore(store.engine, allow_private=settings.webhook_allow_private)
        self.preferences = PreferenceStore(store.engine)
        self.renderer = renders.open_renderer(settings, blobs)
        self.admission = Admission(
            store, producer, window=settings.admission_window, plan_of=self.plan_of
        )
        self.importer = Importer(self)

    def plan_of(self, tenant: str) -> Plan:
        return LOCAL_PLAN if self.settings.auth == "none" else self.accounts.plan_of(tenant)


def get_gateway(request: Request) -> Gateway:
    return request.app.state.gateway  # type: ignore[no-any-return]


GatewayDep = Annotated[Gateway, Depends(get_gateway)]
_bearer = HTTPBearer(
    auto_error=False, description="An API key from `mixpilot keys create --tenant T`"
)
#: The tenant of every request when ``MIXPILOT_AUTH=none`` (one user's machine), and its plan.
LOCAL_TENANT = "local"
LOCAL_PLAN = PLANS["label"]
#: The web UI's files, served at / and /ui/.
WEB_DIR = Path(__file__).resolve().parent / "web"
#: Largest request headers accepted, all together (a proxy in front usually allows 8-32 KiB).
MAX_HEADER_BYTES = 16 * 1024
#: Multipart framing allowed on top of the file when a request's Content-Length is checked.
MULTIPART_SLACK_BYTES = 64 * 1024


def _api_error(
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """The one error body of the API: ``{"error": {"code", "message", ...extra}}``."""
    return JSONResponse(
        status_code=status,
        content={"error": {"code": code, "message": message, **extra}},
        headers=headers,
    )


def error_response(exc: MixPilotError) -> JSONResponse:
    """A typed error as the API answers it (with ``Retry-After``, ``WWW-Authenticate`` or the
    exceeded ``limit`` where they apply)."""
    headers: dict[str, str] = {}
    extra: dict[str, Any] = {}
    if isinstance(exc, UnauthenticatedError):
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(exc, RateLimitedError):
        headers["Retry-After"] = str(max(1, round(exc.retry_after_s + 0.5)))
    if isinstance(exc, QuotaExceededError):
        extra["limit"] = exc.limit
    return _api_error(exc.http_status, exc.code, exc.message, headers or None, **extra)


class _BodyTooLarge(Exception):
    """Raised from the counting ``receive`` when a body passes its limit."""


class ApiKeyMiddleware:
    """Refuses headers over :data:`MAX_HEADER_BYTES` (431). Authenticates every ``/v1``
    request from its headers alone, before any of its body is read: an upload without a valid
    key is refused at once, not after it arrived. The tenant goes into
    ``request.state.tenant``.

    It also bounds every request body by the tenant's upload limit while it streams in: a
    declared ``Content-Length`` over the limit is refused before reading, and a body sent
    without one (chunked) is cut off, with ``413``, as soon as the bytes received pass it."""

    def __init__(self, app: Any, gateway: Gateway) -> None:
        self.app = app
        self.gateway = gateway

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            size = sum(len(name) + len(value) for name, value in scope["headers"])
            if size > MAX_HEADER_BYTES:
                refusal = HeadersTooLargeError(
                    f"the request's headers are {size / 1024:.0f} KiB; at most "
                    f"{MAX_HEADER_BYTES // 1024} KiB are accepted"
                )
                await error_response(refusal)(scope, receive, send)
                return
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        try:
            tenant, plan = await self._tenant(headers)
            self.gateway.rate_limiter.take(tenant, plan.requests_per_minute)
            self._check_length(scope, headers, plan)
        except MixPilotError as exc:
            await error_response(exc)(scope, receive, send)
            return
        scope.setdefault("state", {}).update(tenant=tenant, plan=plan)
        limit = upload_limit_bytes(self.gateway.settings, plan) + MULTIPART_SLACK_BYTES
        received = 0
        too_large = False

        async def counting_receive() -> Any:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    too_large = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Any) -> None:
            if not too_large:  # once cut off, the app's own answer (a parse error) is dropped
                await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except _BodyTooLarge:
            pass
        if too_large:
            error = LimitExceededError(
                f"upload exceeds the limit of {(limit - MULTIPART_SLACK_BYTES) / 2**20:.3g} MB"
                " (refused while it was arriving)"
            )
            REJECTED.labels(reason=error.code).inc()
            await error_response(error)(scope, receive, send)

    async def _tenant(self, headers: Headers) -> tuple[str, Plan]:
        if self.gateway.settings.auth == "none":
            return LOCAL_TENANT, LOCAL_PLAN
        scheme, _, key = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise UnauthenticatedError("send an API key: Authorization: Bearer <key>")
        found = await run_in_threadpool(self.gateway.accounts.tenant_for, key.strip())
        if found is None:
            raise UnauthenticatedError("the API key is not valid (unknown or revoked)")
        return found

    def _check_length(self, scope: Any, headers: Headers, plan: Plan) -> None:
        """Refuse an upload whose declared length is over the limit before reading it."""
        if scope["method"] != "POST":
            return
        limit = upload_limit_bytes(self.gateway.settings, plan)
        try:
            declared = int(headers.get("content-length", "0"))
        except ValueError:
            declared = 0
        if declared > limit + MULTIPART_SLACK_BYTES:
            raise LimitExceededError(
                f"upload of {declared / 2**20:.3g} MB exceeds the limit of {limit / 2**20:.3g} MB"
            )


def authenticate(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The tenant :class:`ApiKeyMiddleware` found (``credentials`` only documents the bearer
    scheme in the OpenAPI document)."""
    tenant = getattr(request.state, "tenant", None)
    if tenant is None:  # a route outside /v1 asked for a tenant: a programming error
        raise UnauthenticatedError("this route needs an API key")
    return str(tenant)


def tenant_plan(request: Request) -> Plan:
    plan = getattr(request.state, "plan", None)
    if not isinstance(plan, Plan):
        raise UnauthenticatedError("this route needs an API key")
    return plan


PlanDep = Annotated[Plan, Depends(tenant_plan)]


TenantDep = Annotated[str, Depends(authenticate)]


def _job_json(job: JobRecord) -> dict[str, Any]:
    base = f"/v1/jobs/{job.job_id}"
    out: dict[str, Any] = {
        "job_id": job.job_id,
        "name": f"jobs/{job.job_id}",
        "state": job.state,
        "progress": round(job.progress, 3),
        "done": job.done,
        "filename": job.filename,
        "admitted": job.admitted_at is not None,
        "batch_id": job.batch_id,
        "created_at": job.created_at.isoformat(),
        "updated_at": job.updated_at.isoformat(),
        "stage_times": job.stage_times,
        "timings": job.timings,
        "options": job.options,
        "error": job.error,
        "versions": {
            name: {
                "label": version_label(name),
                "loudness_lufs": o["loudness_lufs"],
                "true_peak_dbtp": o["true_peak_dbtp"],
                "params": o["params"],
                "url": f"{base}/outputs/{name}",
            }
            for name, o in job.outputs.items()
        },
        "links": {"self": base},
    }
    if job.state == "done":
        out["links"]["report"] = f"{base}/report"
    return out


_STATES_PATTERN = "^(" + "|".join(STATE_NAMES.values()) + ")$"


def _version_json(job: JobRecord, name: str) -> dict[str, Any]:
    """One version of ``job`` as :func:`_job_json` shows it, with its name and the job."""
    return {"name": name, "job_id": job.job_id, **_job_json(job)["versions"][name]}


def _job_or_404(gw: Gateway, job_id: str, tenant: str) -> JobRecord:
    """The tenant's job; another tenant's job is "not found" too, never "forbidden"."""
    job = gw.store.get_job(job_id)
    if job is None or job.tenant != tenant:
        raise NotFoundError(f"no job {job_id}")
    return job


def _accept_upload(
    gw: Gateway, tenant: str, plan: Plan, upload: UploadFile
) -> tuple[StoredBlob, AudioInfo, float]:
    """Save an upload (bounded by the plan) to a temporary file and take it in
    (:func:`gateway.intake.accept_file`): (stored blob, audio info, seconds)."""
    with tempfile.TemporaryDirectory(prefix="mixpilot-upload-") as tmp:
        try:
            path = _save_upload(upload, upload_limit_bytes(gw.settings, plan), Path(tmp))
        except MixPilotError as exc:
            REJECTED.labels(reason=exc.code).inc()
            raise
        return intake.accept_file(gw, tenant, plan, path)


def _check_batch_size(gw: Gateway, tenant: str, plan: Plan, files: int) -> None:
    waiting = gw.store.waiting(tenant)
    if waiting + files > plan.max_queued_jobs:
        raise QuotaExceededError(
            f"{files} files would make {waiting + files} jobs wait, the "
            f"{plan.name} plan lets {plan.max_queued_jobs} wait: send fewer",
            limit={"name": "queued_jobs", "limit": plan.max_queued_jobs, "used": waiting},
        )


def _batch_json(gw: Gateway, tenant: str, batch_id: str) -> dict[str, Any]:
    batch = gw.store.batch(batch_id)
    if batch is None or batch["tenant"] != tenant:
        raise NotFoundError(f"no batch {batch_id}")
    counts = batch["counts"]
    importing = gw.importer.pending(batch_id)
    if importing:
        counts = {**counts, "importing": importing}
    finished = sum(n for state, n in counts.items() if state in TERMINAL)
    base = f"/v1/batches/{batch_id}"
    return {
        "batch_id": batch_id,
        "name": batch["name"],
        "created_at": batch["created_at"].isoformat(),
        "total": batch["total"],
        "counts": counts,
        "done": finished == batch["total"],
        "progress": round(batch["progress"], 3),
        "links": {
            "self": base,
            "manifest": f"{base}/manifest",
            "csv": f"{base}/manifest?format=csv",
        },
    }


_MANIFEST_FIELDS = ("job_id", "filename", "state", "error_code", "error_message")


def _manifest_row(job: JobRecord) -> dict[str, Any]:
    base = f"/v1/jobs/{job.job_id}"
    return {
        "job_id": job.job_id,
        "filename": job.filename,
        "state": job.state,
        "error_code": (job.error or {}).get("code", ""),
        "error_message": (job.error or {}).get("message", ""),
        "report": f"{base}/report" if job.state == "done" else "",
        "archive": f"{base}/archive" if job.state == "done" else "",
        "versions": {
            name: {"url": f"{base}/outputs/{name}", "loudness_lufs": o["loudness_lufs"]}
            for name, o in job.outputs.items()
        },
    }


def _manifest_csv(rows: list[dict[str, Any]]) -> str:
    """The manifest as CSV: one line per file, one URL column per version."""
    versions = sorted({v for r in rows for v in r["versions"]})
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([*_MANIFEST_FIELDS, "report", "archive", *(f"url_{v}" for v in versions)])
    for r in rows:
        links = [r["versions"].get(v, {}).get("url", "") for v in versions]
        writer.writerow([*(r[f] for f in _MANIFEST_FIELDS), r["report"], r["archive"], *links])
    return out.getvalue()


#: How often an event stream looks at its job (the job store is the truth across replicas).
SSE_POLL_S = 0.25


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


class PreferenceIn(BaseModel):
    chosen: str = Field(max_length=64, description="the version the listener preferred")
    compared: list[str] = Field(
        default_factory=list, max_length=16, description="the versions compared (A/B/...)"
    )
    edited: dict[str, float | str] = Field(
        default_factory=dict, description="parameters the listener changed, physical units"
    )
    listener: str = Field("", max_length=128, description="your id for the listener, if any")


class ImportIn(BaseModel):
    prefix: str = Field(
        "",
        max_length=512,
        description="objects whose key starts with this, inside your import area (e.g."
        " `album-1/`; empty: all of it)",
    )
    name: str = Field("", max_length=256)
    target_lufs: float | None = None
    genre: str | None = None
    intensity_pct: float = Field(100.0, ge=0.0, le=100.0)


class WebhookIn(BaseModel):
    url: str = Field(description="https:// endpoint that receives POSTed JSON events")
    events: list[str] = Field(
        default_factory=lambda: list(EVENT_TYPES),
        description="any of job.done, job.failed, batch.done",
    )
    description: str = Field("", max_length=256)


_FORMATS_HELP = "wav24 (stored), wav16 (TPDF-dithered), flac (24-bit) or mp3 (320 kbit/s)"


def _stem(job: JobRecord) -> str:
    """The download name's stem: the upload's name, safe in a header."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(job.filename).stem)[:80] or "mix"


def _save_upload(upload: UploadFile, limit: int, tmpdir: Path) -> Path:
    """Stream the upload to a temp file, refusing it as soon as it passes ``limit`` bytes."""
    path = tmpdir / "upload"
    written = 0
    with open(path, "wb") as f:
        while chunk := upload.file.read(1 << 20):
            written += len(chunk)
            if written > limit:
                raise too_large(limit)
            f.write(chunk)
    return path


def create_app(gateway: Gateway) -> FastAPI:
    app = FastAPI(
        title="MixPilot API",
        version="1.0",
        description="AI mixing and mastering: submit a song, get analysis and mixed versions.",
    )
    app.state.gateway = gateway
    app.add_middleware(ApiKeyMiddleware, gateway=gateway)
    app.mount("/metrics", make_asgi_app())

    @app.exception_handler(MixPilotError)
    def _typed_error(_: Request, exc: MixPilotError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(x) for x in first.get("loc", []))
        return JSONResponse(
            status_code=400,
            content={
                "error": {"code": "invalid_request", "message": f"{where}: {first.get('msg')}"}
            },
        )

    app.mount("/ui", StaticFiles(directory=WEB_DIR), name="ui")

    @app.get("/", include_in_schema=False)
    def web_ui() -> FileResponse:
        """The web UI (gateway/web: plain HTML, CSS and JavaScript modules, no build step)."""
        return FileResponse(WEB_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz(gw: GatewayDep) -> dict[str, str]:
        gw.store.ping()
        return {"status": "ready"}

    @app.post("/v1/jobs", status_code=202)
    def create_job(
        gw: GatewayDep,
        tenant: TenantDep,
        plan: PlanDep,
        response: Response,
        file: Annotated[UploadFile, File(description="WAV, FLAC, MP3, OGG or AIFF")],
        target_lufs: Annotated[float | None, Form()] = None,
        genre: Annotated[str | None, Form()] = None,
        intensity_pct: Annotated[float, Form(ge=0.0, le=100.0)] = 100.0,
        idempotency_key: Annotated[
            str | None,
            Header(
                max_length=255,
                description="Send the same key again (after a timeout, say) and get the job the"
                " first request created instead of a second one",
            ),
        ] = None,
    ) -> dict[str, Any]:
        options = job_options(gw.settings, target_lufs, genre, intensity_pct)
        filename = safe_filename(file.filename)
        check_queue(gw, tenant, plan)
        stored, info, audio_s = _accept_upload(gw, tenant, plan, file)
        job_id = new_job_id()
        idempotency = None
        if idempotency_key:
            request_id = json.dumps([stored.sha256, options], sort_keys=True)
            idempotency = (idempotency_key, hashlib.sha256(request_id.encode()).hexdigest())
        created = enqueue_job(
            gw, job_id, tenant, filename, stored, info, options, audio_s, idempotency
        )
        if created != job_id:  # the same request again: answer with the first one's job
            response.headers["Idempotent-Replayed"] = "true"
            return _job_json(_job_or_404(gw, created, tenant))
        gw.admission.wake()  # let it in now if there is room
        return _job_json(_job_or_404(gw, job_id, tenant))

    @app.post("/v1/batches", status_code=202)
    def create_batch(
        gw: GatewayDep,
        tenant: TenantDep,
        plan: PlanDep,
        files: Annotated[list[UploadFile], File(description="the songs, one part each")],
        name: Annotated[str, Form(max_length=256)] = "",
        target_lufs: Annotated[float | None, Form()] = None,
        genre: Annotated[str | None, Form()] = None,
        intensity_pct: Annotated[float, Form(ge=0.0, le=100.0)] = 100.0,
    ) -> dict[str, Any]:
        """A batch of songs with the same options (a label's delivery). Every file becomes a
        job; a file that is not usable audio, or over a limit, becomes a ``failed`` item with
        its reason instead of failing the batch. Jobs are admitted fairly with other tenants'."""
        options = job_options(gw.settings, target_lufs, genre, intensity_pct)
        _check_batch_size(gw, tenant, plan, len(files))
        batch_id = new_job_id()[:24]
        gw.store.create_batch(batch_id, tenant, name, len(files))
        for upload in files:
            job_id = new_job_id()
            filename = safe_filename(upload.filename)
            try:
                stored, info, audio_s = _accept_upload(gw, tenant, plan, upload)
            except MixPilotError as exc:
                gw.store.fail_new_job(job_id, tenant, filename, batch_id, exc.code, exc.message)
                continue
            enqueue_job(
                gw, job_id, tenant, filename, stored, info, options, audio_s, batch_id=batch_id
            )
        gw.store.check_batch_done(batch_id)  # every file may have failed
        gw.admission.wake()
        return _batch_json(gw, tenant, batch_id)

    @app.post("/v1/batches/import", status_code=202)
    def import_batch(
        gw: GatewayDep, tenant: TenantDep, plan: PlanDep, body: ImportIn
    ) -> dict[str, Any]:
        """A batch of the objects under ``prefix`` in your import area of the bucket
        (``s3://BUCKET/imports/<tenant>/``, with an S3 blob store): each becomes a job, or a
        ``failed`` item with its reason. Answers at once; the objects are imported in the
        background (``counts.importing`` until then) and admitted fairly like uploads."""
        options = job_options(gw.settings, body.target_lufs, body.genre, body.intensity_pct)
        source, objects = gw.importer.objects(tenant, body.prefix)
        _check_batch_size(gw, tenant, plan, len(objects))
        batch_id = new_job_id()[:24]
        gw.store.create_batch(batch_id, tenant, body.name, len(objects))
        gw.importer.add(batch_id, tenant, objects, options)
        return {**_batch_json(gw, tenant, batch_id), "source": source}

    @app.get("/v1/batches")
    def list_batches(
        gw: GatewayDep, tenant: TenantDep, limit: Annotated[int, Query(ge=1, le=200)] = 50
    ) -> dict[str, Any]:
        return {"items": [_batch_json(gw, tenant, b) for b in gw.store.list_batches(tenant, limit)]}

    @app.get("/v1/batches/{batch_id}")
    def get_batch(gw: GatewayDep, tenant: TenantDep, batch_id: str) -> dict[str, Any]:
        """The batch with its jobs counted per state."""
        return _batch_json(gw, tenant, batch_id)

    @app.get("/v1/batches/{batch_id}/manifest", response_model=None)
    def batch_manifest(
        gw: GatewayDep,
        tenant: TenantDep,
        batch_id: str,
        format: Annotated[str, Query(pattern="^(json|csv)$")] = "json",
    ) -> Response | dict[str, Any]:
        """One row per file: its job, state, error and the download link of each version."""
        batch = _batch_json(gw, tenant, batch_id)
        rows = [_manifest_row(job) for job in gw.store.batch_jobs(batch_id)]
        if format == "json":
            return {"batch": batch, "items": rows}
        return Response(
            _manifest_csv(rows),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="batch-{batch_id}.csv"'},
        )

    @app.post("/v1/webhooks", status_code=201)
    def create_webhook(gw: GatewayDep, tenant: TenantDep, body: WebhookIn) -> dict[str, Any]:
        """Register an endpoint for job events. The answer carries the signing ``secret``,
        shown only this once: verify each delivery's ``MixPilot-Signature`` with it."""
        hook, secret = gw.webhooks.create(tenant, body.url, body.events, body.description)
        return {**hook.public(), "secret": secret}

    @app.get("/v1/webhooks")
    def list_webhooks(gw: GatewayDep, tenant: TenantDep) -> dict[str, Any]:
        return {"items": [h.public() for h in gw.webhooks.of_tenant(tenant)]}

    @app.delete("/v1/webhooks/{webhook_id}", status_code=204)
    def delete_webhook(gw: GatewayDep, tenant: TenantDep, webhook_id: str) -> Response:
        gw.webhooks.delete(tenant, webhook_id)
        return Response(status_code=204)

    @app.get("/v1/webhooks/{webhook_id}/deliveries")
    def webhook_deliveries(
        gw: GatewayDep,
        tenant: TenantDep,
        webhook_id: str,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
    ) -> dict[str, Any]:
        """The delivery log, newest first: status, tries, last HTTP status or error."""
        return {"items": gw.webhooks.deliveries(tenant, webhook_id, limit)}

    @app.get("/v1/jobs/{job_id}/events")
    def job_events(gw: GatewayDep, tenant: TenantDep, job_id: str) -> StreamingResponse:
        """Server-sent events: ``progress`` with the job each time its state or progress
        changes, then one ``done`` or ``failed`` with the final job, and the stream ends."""
        _job_or_404(gw, job_id, tenant)

        def stream() -> Iterator[str]:
            last: tuple[str, float] | None = None
            idle_since = time.monotonic()
            while True:
                job = gw.store.get_job(job_id)
                if job is None:
                    yield _sse("failed", {"job_id": job_id, "state": "deleted"})
                    return
                now = (job.state, round(job.progress, 3))
                if now != last:
                    last, idle_since = now, time.monotonic()
                    kind = job.state if job.done else "progress"
                    yield _sse(kind, _job_json(job))
                    if job.done:
                        return
                elif time.monotonic() - idle_since > 15:
                    idle_since = time.monotonic()
                    yield ": keep-alive\n\n"
                time.sleep(SSE_POLL_S)

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @app.post("/v1/jobs/{job_id}/preferences", status_code=201)
    def record_preference(
        gw: GatewayDep, tenant: TenantDep, job_id: str, body: PreferenceIn
    ) -> dict[str, Any]:
        """Record which version a listener chose in an A/B comparison of this job's versions,
        and the parameters they edited (physical units, by name)."""
        job = _job_or_404(gw, job_id, tenant)
        return gw.preferences.record(
            tenant,
            job.job_id,
            set(job.outputs),
            chosen=body.chosen,
            compared=body.compared,
            edited=body.edited,
            listener=body.listener,
        )

    @app.get("/v1/preferences")
    def list_preferences(
        gw: GatewayDep,
        tenant: TenantDep,
        job_id: Annotated[str | None, Query(max_length=64)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        """The tenant's recorded choices, newest first."""
        return {"items": gw.preferences.query(tenant, job_id=job_id, limit=limit)}

    @app.get("/v1/preferences/summary")
    def preference_summary(gw: GatewayDep, tenant: TenantDep) -> dict[str, Any]:
        """Per version: how often it was compared and chosen (win rate); the parameters
        listeners edit most."""
        return gw.preferences.summary(tenant)

    @app.get("/v1/usage")
    def usage(
        gw: GatewayDep,
        tenant: TenantDep,
        plan: PlanDep,
        month: Annotated[
            str | None,
            Query(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="YYYY-MM (UTC); default: now"),
        ] = None,
    ) -> dict[str, Any]:
        """The tenant's metered use in a calendar month and its plan's limits: what a
        subscription bill is computed from."""
        start, end = month_bounds(month)
        count, seconds = gw.store.usage(tenant, start, end)
        return {
            "tenant": tenant,
            "plan": plan.name,
            "month": start.strftime("%Y-%m"),
            "period": {"start": start.isoformat(), "end": end.isoformat()},
            "jobs": count,
            "audio_minutes": round(seconds / 60.0, 3),
            "in_flight_jobs": gw.store.in_flight(tenant),
            "limits": plan.limits(),
        }

    @app.get("/v1/jobs")
    def list_jobs(
        gw: GatewayDep,
        tenant: TenantDep,
        state: Annotated[
            str | None, Query(description="only jobs in this state", pattern=_STATES_PATTERN)
        ] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        cursor: Annotated[
            str | None, Query(max_length=512, description="next_cursor of the previous page")
        ] = None,
    ) -> dict[str, Any]:
        """The tenant's jobs, newest first, a page at a time."""
        records, next_cursor = gw.store.list_jobs(tenant, state=state, limit=limit, cursor=cursor)
        return {"items": [_job_json(j) for j in records], "next_cursor": next_cursor}

    @app.get("/v1/jobs/{job_id}")
    def get_job(gw: GatewayDep, tenant: TenantDep, job_id: str) -> dict[str, Any]:
        return _job_json(_job_or_404(gw, job_id, tenant))

    @app.post("/v1/jobs/{job_id}/cancel")
    def cancel_job(gw: GatewayDep, tenant: TenantDep, job_id: str) -> dict[str, Any]:
        """Stop a job that has not finished: it ends ``failed`` with code ``cancelled``."""
        job = _job_or_404(gw, job_id, tenant)
        if not gw.store.cancel_job(job.job_id):
            raise ConflictError(f"job {job_id} has already finished ({job.state})")
        return _job_json(_job_or_404(gw, job_id, tenant))

    @app.delete("/v1/jobs/{job_id}", status_code=204)
    def delete_job(gw: GatewayDep, tenant: TenantDep, job_id: str) -> Response:
        """Delete a finished job, its report and its audio (blobs no other job uses)."""
        job = _job_or_404(gw, job_id, tenant)
        if job.state not in TERMINAL:
            raise ConflictError(f"job {job_id} is {job.state}: cancel it before deleting it")
        gw.store.delete_job(job.job_id)
        uris = [job.input_uri, job.report_uri, *(o["uri"] for o in job.outputs.values())]
        unused = {uri for uri in uris if uri and not gw.store.blob_in_use(uri)}
        for uri in unused:
            gw.blobs.delete(uri)
        unshared = [o["sha256"] for o in job.outputs.values() if o["uri"] in unused]
        downloads.forget(job.job_id, unshared, gw.cache_dir)
        return Response(status_code=204)

    @app.post(
        "/v1/jobs/{job_id}/renders",
        status_code=201,
        responses={
            200: {
                "description": "A preview: the excerpt as 24-bit WAV (`X-MixPilot-*` headers"
                " say where it starts, its length, loudness and true peak); or, for an edit"
                " rendered before, that version again",
                "content": {"audio/wav": {}},
            },
            201: {"description": "The edit rendered as a new version of the job"},
        },
    )
    def create_render(
        gw: GatewayDep, tenant: TenantDep, job_id: str, body: renders.RenderIn
    ) -> Response:
        """Render an edit of a finished job's parameters with the stored analysis: the whole
        song as a new version (``user-1``, ``user-2``...), or with ``preview`` only an excerpt,
        answered as audio in well under a second and stored nowhere."""
        job = _job_or_404(gw, job_id, tenant)
        values = renders.edited_params(job, body)
        kind = "preview" if body.preview is not None else "full"
        if body.preview is None and (same := renders.same_edit(job, values)) is not None:
            return JSONResponse(_version_json(_job_or_404(gw, job_id, tenant), same))
        report = json.loads(gw.blobs.get_bytes(job.report_uri or ""))
        request = renders.render_request_for(job, report, values, body)
        with renders.RENDER_SECONDS.labels(kind=kind).time():
            answer = gw.renderer.render(request)
        rendered = answer.job.outputs[0]
        if body.preview is not None:
            return Response(
                content=answer.preview_wav,
                media_type="audio/wav",
                headers={
                    "Cache-Control": "no-store",
                    "X-MixPilot-Excerpt-Start-S": f"{answer.excerpt.start_s:.6f}",
                    "X-MixPilot-Excerpt-Duration-S": f"{answer.excerpt.duration_s:.6f}",
                    "X-MixPilot-Loudness-LUFS": f"{rendered.loudness_lufs:.2f}",
                    "X-MixPilot-True-Peak-dBTP": f"{rendered.true_peak_dbtp:.2f}",
                    "X-MixPilot-Render-S": f"{rendered.render_s:.4f}",
                },
            )
        name = renders.store_version(gw.store, gw.blobs, job, rendered, body.base)
        job = _job_or_404(gw, job_id, tenant)
        return JSONResponse(_version_json(job, name), status_code=201)

    @app.get("/v1/jobs/{job_id}/report")
    def get_report(gw: GatewayDep, tenant: TenantDep, job_id: str) -> JSONResponse:
        job = _job_or_404(gw, job_id, tenant)
        if job.state != "done" or not job.report_uri:
            raise NotFoundError(f"job {job_id} has no report yet (state: {job.state})")
        return JSONResponse(json.loads(gw.blobs.get_bytes(job.report_uri)))

    @app.get("/v1/jobs/{job_id}/outputs/{version}")
    def get_output(
        gw: GatewayDep,
        tenant: TenantDep,
        job_id: str,
        version: str,
        format: Annotated[str, Query(description=_FORMATS_HELP)] = downloads.STORED_FORMAT,
    ) -> FileResponse:
        """One version's audio; byte ranges (``Range: bytes=...``) are honoured."""
        job = _job_or_404(gw, job_id, tenant)
        fmt = downloads.check_format(format)
        out = job.outputs.get(version)
        if out is None:
            raise NotFoundError(f"job {job_id} has no version {version!r}")
        path = downloads.rendition(gw.blobs, out["uri"], out["sha256"], fmt, gw.cache_dir)
        return FileResponse(
            path,
            media_type=downloads.MEDIA_TYPES[fmt],
            filename=f"{_stem(job)}-{version}.{downloads.extension(fmt)}",
        )

    @app.get("/v1/jobs/{job_id}/outputs/{version}/visual")
    def get_visual(gw: GatewayDep, tenant: TenantDep, job_id: str, version: str) -> Any:
        """The version's waveform (``min``, ``max``, ``rms`` of the mid channel in 1200
        columns) and long-term average spectrum (``hz``, ``db``: 1/6-octave bands, a
        full-scale sine reads 0 dB), for drawing."""
        job = _job_or_404(gw, job_id, tenant)
        out = job.outputs.get(version)
        if out is None:
            raise NotFoundError(f"job {job_id} has no version {version!r}")
        data = visuals.visual(gw.blobs, out["uri"], out["sha256"], gw.cache_dir)
        return JSONResponse(data, headers={"Cache-Control": "private, max-age=86400"})

    @app.get("/v1/jobs/{job_id}/archive")
    def get_archive(
        gw: GatewayDep,
        tenant: TenantDep,
        job_id: str,
        format: Annotated[str, Query(description=_FORMATS_HELP)] = downloads.STORED_FORMAT,
    ) -> FileResponse:
        """A ZIP of every version of a finished job in one format, with ``report.json``."""
        job = _job_or_404(gw, job_id, tenant)
        fmt = downloads.check_format(format)
        if job.state != "done" or not job.report_uri:
            raise NotFoundError(f"job {job_id} has no results yet (state: {job.state})")
        path = downloads.archive(
            gw.blobs,
            job.job_id,
            _stem(job),
            job.outputs,
            gw.blobs.get_bytes(job.report_uri),
            fmt,
            gw.cache_dir,
        )
        return FileResponse(
            path, media_type="application/zip", filename=f"{_stem(job)}-mixpilot-{fmt}.zip"
        )

    return app

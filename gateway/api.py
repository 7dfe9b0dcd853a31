"""The REST API (FastAPI): submit a job, follow it, fetch its report and audio. Every error is
``{"error": {"code", "message"}}`` with the status its typed error maps to."""

from __future__ import annotations

import json
import logging
import re
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from prometheus_client import Counter, make_asgi_app

from gateway.store import JobRecord, JobStore
from mixpilot.v1 import mixpilot_pb2 as pb
from services.common import bus as busmod
from services.common.audio_io import read_audio
from services.common.blobstore import BlobStore
from services.common.errors import (
    InvalidParameterError,
    LimitExceededError,
    MixPilotError,
    NotFoundError,
)
from services.common.jobs import new_envelope, new_job_id
from services.common.settings import Settings

log = logging.getLogger(__name__)

GENRES = ("pop", "rock", "electronic", "jazz", "ballad")
SUBMITTED = Counter("mixpilot_gateway_jobs_submitted_total", "Jobs accepted by the gateway")
REJECTED = Counter("mixpilot_gateway_uploads_rejected_total", "Uploads rejected", ["reason"])


class Gateway:
    """What the routes need, built once per process (no module globals)."""

    def __init__(
        self, *, settings: Settings, store: JobStore, blobs: BlobStore, producer: busmod.Producer
    ) -> None:
        self.settings = settings
        self.store = store
        self.blobs = blobs
        self.producer = producer


def get_gateway(request: Request) -> Gateway:
    return request.app.state.gateway  # type: ignore[no-any-return]


GatewayDep = Annotated[Gateway, Depends(get_gateway)]


def safe_filename(name: str | None) -> str:
    """A display-safe file name: basename only, no control or path characters."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = re.sub(r"[^\w.\- ()\[\]]+", "_", base, flags=re.UNICODE).strip(" .")
    return (base or "upload")[:200]


def _job_json(job: JobRecord) -> dict[str, Any]:
    base = f"/v1/jobs/{job.job_id}"
    out: dict[str, Any] = {
        "job_id": job.job_id,
        "name": f"jobs/{job.job_id}",
        "state": job.state,
        "progress": round(job.progress, 3),
        "done": job.done,
        "filename": job.filename,
        "created_at": job.created_at.isoformat(),
        "updated_at": job.updated_at.isoformat(),
        "stage_times": job.stage_times,
        "timings": job.timings,
        "options": job.options,
        "error": job.error,
        "versions": {
            name: {
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


def _save_upload(upload: UploadFile, limit: int, tmpdir: Path) -> Path:
    """Stream the upload to a temp file, refusing it as soon as it passes ``limit`` bytes."""
    path = tmpdir / "upload"
    written = 0
    with open(path, "wb") as f:
        while chunk := upload.file.read(1 << 20):
            written += len(chunk)
            if written > limit:
                raise LimitExceededError(
                    f"upload exceeds the limit of {limit / (1024 * 1024):.0f} MB"
                )
            f.write(chunk)
    return path


def create_app(gateway: Gateway) -> FastAPI:
    app = FastAPI(
        title="MixPilot API",
        version="1.0",
        description="AI mixing and mastering: submit a song, get analysis and mixed versions.",
    )
    app.state.gateway = gateway
    app.mount("/metrics", make_asgi_app())

    @app.exception_handler(MixPilotError)
    def _typed_error(_: Request, exc: MixPilotError) -> JSONResponse:
        return JSONResponse(
            status_code=exc.http_status,
            content={"error": {"code": exc.code, "message": exc.message}},
        )

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
        file: Annotated[UploadFile, File(description="WAV, FLAC, MP3, OGG or AIFF")],
        target_lufs: Annotated[float | None, Form()] = None,
        genre: Annotated[str | None, Form()] = None,
        intensity_pct: Annotated[float, Form(ge=0.0, le=100.0)] = 100.0,
    ) -> dict[str, Any]:
        settings = gw.settings
        target = settings.target_lufs if target_lufs is None else target_lufs
        if not -40.0 <= target <= -5.0:
            raise InvalidParameterError("target_lufs must be between -40 and -5 LUFS")
        if genre and genre not in GENRES:
            raise InvalidParameterError(f"genre must be one of {', '.join(GENRES)}")
        filename = safe_filename(file.filename)
        with tempfile.TemporaryDirectory(prefix="mixpilot-upload-") as tmp:
            try:
                path = _save_upload(file, settings.max_upload_bytes, Path(tmp))
                _, sr, info = read_audio(path, max_duration_s=settings.max_duration_s)
            except MixPilotError as exc:
                REJECTED.labels(reason=exc.code).inc()
                raise
            stored = gw.blobs.put_file(path, suffix="." + info.format.lower()[:5])
        job_id = new_job_id()
        ref = pb.AudioRef(
            uri=stored.uri,
            sha256=stored.sha256,
            sample_rate=sr,
            channels=info.channels,
            frames=info.frames,
            format=info.format,
            subtype=info.subtype,
            filename=filename,
            size_bytes=stored.size_bytes,
        )
        envelope = new_envelope(
            job_id=job_id,
            tenant="default",
            input_ref=ref,
            target_lufs=target,
            ceiling_dbtp=settings.true_peak_ceiling_dbtp,
            genre_override=genre or "",
            intensity_pct=intensity_pct,
        )
        options = {
            "target_lufs": target,
            "true_peak_ceiling_dbtp": settings.true_peak_ceiling_dbtp,
            "genre": genre,
            "intensity_pct": intensity_pct,
        }
        gw.store.create_job(
            job_id=job_id,
            tenant="default",
            filename=filename,
            input_uri=stored.uri,
            input_sha256=stored.sha256,
            options=options,
        )
        gw.producer.send(busmod.SUBMITTED, key=job_id, value=envelope.SerializeToString())
        SUBMITTED.inc()
        log.info("job submitted", extra={"job_id": job_id, "input_filename": filename})
        job = gw.store.get_job(job_id)
        assert job is not None
        return _job_json(job)

    def _job_or_404(gw: Gateway, job_id: str) -> JobRecord:
        job = gw.store.get_job(job_id)
        if job is None:
            raise NotFoundError(f"no job {job_id}")
        return job

    @app.get("/v1/jobs/{job_id}")
    def get_job(gw: GatewayDep, job_id: str) -> dict[str, Any]:
        return _job_json(_job_or_404(gw, job_id))

    @app.get("/v1/jobs/{job_id}/report")
    def get_report(gw: GatewayDep, job_id: str) -> JSONResponse:
        job = _job_or_404(gw, job_id)
        if job.state != "done" or not job.report_uri:
            raise NotFoundError(f"job {job_id} has no report yet (state: {job.state})")
        return JSONResponse(json.loads(gw.blobs.get_bytes(job.report_uri)))

    @app.get("/v1/jobs/{job_id}/outputs/{version}")
    def get_output(gw: GatewayDep, job_id: str, version: str) -> StreamingResponse:
        job = _job_or_404(gw, job_id)
        out = job.outputs.get(version)
        if out is None:
            raise NotFoundError(f"job {job_id} has no version {version!r}")
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(job.filename).stem)[:80] or "mix"
        return StreamingResponse(
            gw.blobs.iter_chunks(out["uri"]),
            media_type="audio/wav",
            headers={
                "Content-Disposition": f'attachment; filename="{stem}-{version}.wav"',
                "Content-Length": str(out["size_bytes"]),
                "ETag": f'"{out["sha256"]}"',
            },
        )

    return app

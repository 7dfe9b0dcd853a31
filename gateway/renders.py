"""Re-renders of a finished job (``POST /v1/jobs/{id}/renders``): a listener's edit of one
version's parameters, rendered from the stored input with the stored analysis (the tempo for
the synced effects, the loudness for a preview's level) and the job's loudness target.

- A full render becomes a new version, ``user-1``, ``user-2``..., beside the others: in the job,
  its downloads and ZIP, and its report. The same edit twice gives the version made the first
  time.
- A preview renders one excerpt (20 s by default, 30 s at most) and answers with its audio;
  nothing is stored.

The renderer is reached over gRPC (``Renderer.Render``) at ``MIXPILOT_RENDERER_URL``; without
it (``mixpilot serve``) the same function runs in this process.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Mapping
from typing import Any, Protocol

import grpc
from google.protobuf import json_format
from prometheus_client import Histogram
from pydantic import BaseModel, Field

from gateway.store import JobRecord, JobStore, output_record
from mixpilot.v1 import mixpilot_pb2 as pb
from mixpilot.v1 import mixpilot_pb2_grpc as pb_grpc
from services.common.blobstore import BlobStore
from services.common.errors import (
    ConflictError,
    InvalidParameterError,
    MixPilotError,
    ServiceUnavailableError,
    error_from_details,
)
from services.common.grpc_server import MAX_MESSAGE_BYTES
from services.common.params import validate_params
from services.common.report import version_entry
from services.common.settings import Settings
from services.renderer.inputs import InputCache
from services.renderer.preview import MAX_PREVIEW_S, MIN_PREVIEW_S
from services.renderer.stage import render_request

#: Name of a preview's parameter set, and the prefix of rendered edits.
PREVIEW_NAME = "preview"
USER_PREFIX = "user"

#: How long an unreachable renderer is tried again before a re-render fails (503).
CONNECT_WAIT_S = 5.0

RENDER_SECONDS = Histogram(
    "mixpilot_gateway_rerender_seconds",
    "Re-renders and previews asked of the renderer, by kind, until their answer",
    ["kind"],
    buckets=(0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0, 120.0),
)


class PreviewIn(BaseModel):
    start_s: float = Field(0.0, ge=0.0, description="where the excerpt starts, seconds")
    duration_s: float = Field(
        20.0, ge=MIN_PREVIEW_S, le=MAX_PREVIEW_S, description="its length, seconds"
    )


class RenderIn(BaseModel):
    base: str = Field(
        "strategy",
        max_length=64,
        description="the version whose parameters the edit starts from (any of the job's)",
    )
    params: dict[str, float | str] = Field(
        default_factory=dict,
        description="the parameters changed, by name, in physical units, or an option's name"
        " for a choice (the report's `parameters` lists names, units and ranges); the rest"
        " keep the base's values",
    )
    preview: PreviewIn | None = Field(
        None,
        description="render only this excerpt and answer with its audio (24-bit WAV), storing"
        " nothing; omitted: render the whole song as a new version",
    )


class Renderer(Protocol):
    def render(self, request: pb.RenderRequest) -> pb.RenderResponse: ...


class LocalRenderer:
    """The renderer stage in this process, with its own cache of decoded songs."""

    def __init__(self, blobs: BlobStore, settings: Settings) -> None:
        self.blobs = blobs
        self.settings = settings
        self.inputs = InputCache(
            blobs, max_bytes=settings.render_cache_bytes, max_duration_s=settings.max_duration_s
        )

    def render(self, request: pb.RenderRequest) -> pb.RenderResponse:
        return render_request(
            request,
            blobs=self.blobs,
            max_duration_s=self.settings.max_duration_s,
            workers=self.settings.render_workers,
            inputs=self.inputs,
        )


class GrpcRenderer:
    """``Renderer.Render`` on the renderer service; its typed errors come back as themselves."""

    def __init__(self, url: str, *, timeout_s: float) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._stub: pb_grpc.RendererStub | None = None
        self._lock = threading.Lock()

    def _renderer(self) -> pb_grpc.RendererStub:
        with self._lock:
            if self._stub is None:
                channel = grpc.insecure_channel(
                    self.url,
                    options=[
                        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                        # A restarted renderer is found again within a second, not after
                        # gRPC's default backoff of up to two minutes.
                        ("grpc.initial_reconnect_backoff_ms", 100),
                        ("grpc.min_reconnect_backoff_ms", 100),
                        ("grpc.max_reconnect_backoff_ms", 1000),
                    ],
                )
                self._stub = pb_grpc.RendererStub(channel)
            return self._stub

    def render(self, request: pb.RenderRequest) -> pb.RenderResponse:
        """One call; an unreachable renderer is tried again for :data:`CONNECT_WAIT_S` (a pod
        restarting, a connection being re-established) before the error is given."""
        give_up = time.monotonic() + CONNECT_WAIT_S
        delay = 0.1
        while True:
            try:
                response: pb.RenderResponse = self._renderer().Render(
                    request, timeout=self.timeout_s
                )
            except grpc.RpcError as exc:
                unavailable = exc.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
                if unavailable and time.monotonic() + delay < give_up:
                    time.sleep(delay)
                    delay = min(2 * delay, 1.0)
                    continue
                raise self._error(exc) from None
            return response

    def _error(self, exc: grpc.RpcError) -> MixPilotError:
        code, details = exc.code(), exc.details()  # type: ignore[attr-defined]
        typed = error_from_details(details)
        if typed is not None:
            return typed
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return ServiceUnavailableError(
                f"the renderer at {self.url} did not answer within {self.timeout_s:g} s"
            )
        if code == grpc.StatusCode.UNAVAILABLE:
            return ServiceUnavailableError(f"the renderer at {self.url} is unavailable: {details}")
        return MixPilotError(f"the renderer failed: {code.name}: {details}")


def open_renderer(settings: Settings, blobs: BlobStore) -> Renderer:
    if settings.renderer_url:
        return GrpcRenderer(settings.renderer_url, timeout_s=settings.rerender_timeout_s)
    return LocalRenderer(blobs, settings)


def edited_params(job: JobRecord, body: RenderIn) -> dict[str, float]:
    """The base version's parameters with the edit applied, validated against the schema.

    Raises
    ------
    ConflictError
        The job has not finished.
    InvalidParameterError
        An unknown base version, parameter name or out-of-range value.
    """
    if job.state != "done":
        raise ConflictError(f"job {job.job_id} is {job.state}: only a finished job re-renders")
    base = job.outputs.get(body.base)
    if base is None:
        names = ", ".join(sorted(job.outputs))
        raise InvalidParameterError(f"base: the job has no version {body.base!r} (it has {names})")
    return validate_params({**base["params"], **body.params})


def same_edit(job: JobRecord, values: Mapping[str, float]) -> str | None:
    """The user version already rendered with exactly ``values``, if any."""
    for name, out in sorted(job.outputs.items()):
        if not name.startswith(USER_PREFIX + "-"):
            continue
        stored = out["params"]
        if stored.keys() == values.keys() and all(
            math.isclose(stored[k], values[k], rel_tol=1e-9, abs_tol=1e-9) for k in values
        ):
            return name
    return None


def render_request_for(
    job: JobRecord, report: dict[str, Any], values: Mapping[str, float], body: RenderIn
) -> pb.RenderRequest:
    """The renderer's request for an edit of ``job``, rebuilt from its report: the input, the
    stored analysis and the job's target. The edited values are rendered as they are (intensity
    100 %: the versions' parameters are stored after the job's intensity control)."""
    song = report["input"]
    target = report["target"]
    analysis = json_format.ParseDict(report["analysis"], pb.Analysis(), ignore_unknown_fields=True)
    envelope = pb.JobEnvelope(
        job_id=job.job_id,
        tenant=job.tenant,
        stage=pb.STAGE_RENDERED,
        input=pb.AudioRef(
            uri=job.input_uri,
            sha256=job.input_sha256,
            sample_rate=int(song["sample_rate"]),
            channels=int(song["channels"]),
            frames=int(song["frames"]),
            filename=job.filename,
        ),
        analysis=analysis,
        options=pb.JobOptions(
            target_lufs=float(target["loudness_lufs"]),
            true_peak_ceiling_dbtp=float(target["true_peak_ceiling_dbtp"]),
            intensity_pct=100.0,
        ),
    )
    name = PREVIEW_NAME if body.preview is not None else USER_PREFIX
    request = pb.RenderRequest(
        job=envelope,
        extra=[pb.MixParams(version=name, values=dict(values), source="user")],
        only_extra=True,
    )
    if body.preview is not None:
        request.preview.CopyFrom(
            pb.Excerpt(start_s=body.preview.start_s, duration_s=body.preview.duration_s)
        )
    return request


def store_version(
    store: JobStore, blobs: BlobStore, job: JobRecord, rendered: pb.RenderedVersion, base: str
) -> str:
    """Add ``rendered`` to ``job`` as the next ``user-N`` and to its report; returns the name.
    The report it replaced is deleted unless another job shares it."""

    def write_report(name: str, report_uri: str | None) -> str:
        if not report_uri:
            raise ConflictError(f"job {job.job_id} has no report to add a version to")
        report = json.loads(blobs.get_bytes(report_uri))
        version = pb.RenderedVersion()
        version.CopyFrom(rendered)
        version.name = name
        report["versions"][name] = {**version_entry(version), "based_on": base}
        stored = blobs.put_bytes(json.dumps(report, indent=2).encode(), suffix=".json")
        return stored.uri

    name, replaced = store.add_version(
        job.job_id, USER_PREFIX, output_record(rendered), write_report
    )
    if replaced and not store.blob_in_use(replaced):
        blobs.delete(replaced)
    return name

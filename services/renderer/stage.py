"""The renderer stage on a job envelope: render every version, store the audio and the report.
Shared by the gRPC server and the Kafka worker. Blobs are content-addressed, so a redelivered
job rewrites the same objects."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from mixpilot.v1 import mixpilot_pb2 as pb
from services.common.audio_io import encode_audio, read_audio
from services.common.blobstore import BlobStore
from services.common.errors import InvalidMessageError
from services.common.jobs import Stopwatch, intensity_of
from services.common.report import build_report
from services.renderer.chain import DEFAULT_TEMPO_BPM
from services.renderer.versions import render_versions, rendered_message, version_sets


def render_job(
    job: pb.JobEnvelope,
    *,
    blobs: BlobStore,
    max_duration_s: float,
    workers: int = 0,
    extra: Sequence[pb.MixParams] = (),
    on_progress: Callable[[str, int, int], None] | None = None,
) -> pb.JobEnvelope:
    """Return a copy of ``job`` with ``outputs``, ``report`` and ``timings_s['render_s']``.

    ``workers`` versions render at once (0: one per available CPU); each is encoded and stored
    as soon as it is done, and its audio let go."""
    if not job.input.uri or not job.predictions:
        raise InvalidMessageError("job envelope reached the renderer without predictions")
    clock = Stopwatch()
    audio, sr, _ = read_audio(blobs.get_bytes(job.input.uri), max_duration_s=max_duration_s)
    param_sets = [*job.predictions, *extra]
    sources = {p.version: p.source for p in param_sets}
    sets = version_sets(param_sets, list(job.options.versions))
    rendered = render_versions(
        audio,
        sr,
        sets,
        target_lufs=job.options.target_lufs,
        ceiling_dbtp=job.options.true_peak_ceiling_dbtp,
        tempo_bpm=job.analysis.tempo_bpm or DEFAULT_TEMPO_BPM,
        intensity_pct=intensity_of(job.options),
        workers=workers,
        on_progress=on_progress,
    )
    out = pb.JobEnvelope()
    out.CopyFrom(job)
    del out.outputs[:]
    for r in rendered:
        data = encode_audio(r.result.audio, sr, fmt="wav24")
        stored = blobs.put_bytes(data, suffix=".wav")
        ref = pb.AudioRef(uri=stored.uri, sha256=stored.sha256, size_bytes=stored.size_bytes)
        out.outputs.append(rendered_message(r, ref, sr, source=sources.get(r.name, "neutral")))
    out.stage = pb.STAGE_RENDERED
    out.timings_s["render_s"] = clock.elapsed_s
    report = json.dumps(build_report(out), indent=2).encode()
    stored = blobs.put_bytes(report, suffix=".json")
    out.report.CopyFrom(
        pb.AudioRef(
            uri=stored.uri,
            sha256=stored.sha256,
            filename="report.json",
            size_bytes=stored.size_bytes,
        )
    )
    return out

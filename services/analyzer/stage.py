"""The analyzer stage on a job envelope: fetch the input, analyse it, attach the analysis.
Shared by the gRPC server and the Kafka worker."""

from __future__ import annotations

from mixpilot.v1 import mixpilot_pb2 as pb
from services.analyzer.analysis import analyze
from services.common.audio_io import read_audio
from services.common.blobstore import BlobStore
from services.common.errors import InvalidMessageError
from services.common.jobs import Stopwatch


def analyze_job(job: pb.JobEnvelope, *, blobs: BlobStore, max_duration_s: float) -> pb.JobEnvelope:
    """Return a copy of ``job`` with ``analysis`` and ``timings_s['analyze_s']`` set."""
    if not job.job_id or not job.input.uri:
        raise InvalidMessageError("job envelope without job_id or input.uri")
    clock = Stopwatch()
    audio, sr, _ = read_audio(blobs.get_bytes(job.input.uri), max_duration_s=max_duration_s)
    analysis = analyze(audio, sr, genre_override=job.options.genre_override or None)
    out = pb.JobEnvelope()
    out.CopyFrom(job)
    out.analysis.CopyFrom(analysis)
    out.stage = pb.STAGE_ANALYZED
    out.timings_s["analyze_s"] = clock.elapsed_s
    return out

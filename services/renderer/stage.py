"""The renderer stage on a job envelope: render every version, store the audio and the report.
Shared by the gRPC server and the Kafka worker. Blobs are content-addressed, so a redelivered
job rewrites the same objects.

:func:`render_request` is the gRPC view: besides a whole job it renders a user's edit of a
finished job alone (``only_extra``), or a preview of one excerpt that comes back inline."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from mixpilot.v1 import mixpilot_pb2 as pb
from services.common.audio_io import encode_audio
from services.common.blobstore import BlobStore
from services.common.errors import InvalidMessageError, LimitExceededError
from services.common.grpc_server import MAX_MESSAGE_BYTES
from services.common.jobs import Stopwatch, intensity_of
from services.common.params import validate_params
from services.common.report import build_report
from services.renderer.chain import DEFAULT_TEMPO_BPM
from services.renderer.inputs import DecodedInput, InputCache, decode_input
from services.renderer.preview import render_preview
from services.renderer.versions import (
    RenderedAudio,
    render_versions,
    rendered_message,
    version_sets,
)

#: The largest preview (24-bit WAV) sent back: one gRPC message, with room for the rest.
PREVIEW_MAX_BYTES = MAX_MESSAGE_BYTES - (1 << 20)


def render_job(
    job: pb.JobEnvelope,
    *,
    blobs: BlobStore,
    max_duration_s: float,
    workers: int = 0,
    extra: Sequence[pb.MixParams] = (),
    on_progress: Callable[[str, int, int], None] | None = None,
    song: DecodedInput | None = None,
) -> pb.JobEnvelope:
    """Return a copy of ``job`` with ``outputs``, ``report`` and ``timings_s['render_s']``.

    ``workers`` versions render at once (0: one per available CPU); each is encoded and stored
    as soon as it is done, and its audio let go. ``song`` is the input already decoded."""
    if not job.input.uri or not job.predictions:
        raise InvalidMessageError("job envelope reached the renderer without predictions")
    clock = Stopwatch()
    song = song or decode_input(job.input, blobs, max_duration_s=max_duration_s)
    param_sets = [*job.predictions, *extra]
    sets = version_sets(param_sets, list(job.options.versions))
    out = _with_outputs(job, blobs, song, sets, param_sets, workers, on_progress)
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


def _with_outputs(
    job: pb.JobEnvelope,
    blobs: BlobStore,
    song: DecodedInput,
    sets: list[tuple[str, dict[str, float]]],
    param_sets: Iterable[pb.MixParams],
    workers: int,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> pb.JobEnvelope:
    """A copy of ``job`` whose ``outputs`` are ``sets`` rendered and stored as 24-bit WAV."""
    sources = {p.version: p.source for p in param_sets}
    rendered = render_versions(
        song.audio,
        song.sample_rate,
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
        out.outputs.append(_stored(r, blobs, song.sample_rate, sources))
    return out


def _stored(
    r: RenderedAudio, blobs: BlobStore, sample_rate: int, sources: dict[str, str]
) -> pb.RenderedVersion:
    stored = blobs.put_bytes(encode_audio(r.result.audio, sample_rate, fmt="wav24"), suffix=".wav")
    ref = pb.AudioRef(uri=stored.uri, sha256=stored.sha256, size_bytes=stored.size_bytes)
    return rendered_message(r, ref, sample_rate, source=sources.get(r.name, "neutral"))


def render_request(
    request: pb.RenderRequest,
    *,
    blobs: BlobStore,
    max_duration_s: float,
    workers: int = 0,
    inputs: InputCache | None = None,
) -> pb.RenderResponse:
    """``Renderer.Render``: a whole job, the ``extra`` sets alone, or a preview (see the proto).

    Raises
    ------
    InvalidMessageError
        ``only_extra`` or a preview without the sets they need; no input.
    InvalidParameterError, InvalidAudioError, ...
        From the parameters, the excerpt or the audio.
    """
    job = request.job
    if not job.input.uri:
        raise InvalidMessageError("render request without an input")
    preview = request.HasField("preview")
    if (request.only_extra or preview) and not request.extra:
        raise InvalidMessageError("a re-render or preview needs a parameter set in `extra`")
    if preview and len(request.extra) != 1:
        raise InvalidMessageError("a preview renders exactly one parameter set")
    # Checked before the song is decoded: a bad edit fails at once.
    sets = [(p.version, validate_params(dict(p.values))) for p in request.extra]
    if inputs is not None:
        song = inputs.get(job.input)
    else:
        song = decode_input(job.input, blobs, max_duration_s=max_duration_s)
    if preview:
        _check_preview_size(song, request.preview.duration_s)
        return _preview(job, request.extra[0], sets[0][1], request.preview, song)
    if not request.only_extra:
        full = render_job(
            job,
            blobs=blobs,
            max_duration_s=max_duration_s,
            workers=workers,
            extra=list(request.extra),
            song=song,
        )
        return pb.RenderResponse(job=full)
    clock = Stopwatch()
    out = _with_outputs(job, blobs, song, sets, request.extra, workers)
    out.timings_s["rerender_s"] = clock.elapsed_s
    return pb.RenderResponse(job=out)


def _check_preview_size(song: DecodedInput, duration_s: float) -> None:
    """A preview travels inline in one gRPC message: refuse one that would not fit."""
    channels = song.audio.shape[0]
    bytes_per_s = song.sample_rate * channels * 3
    if duration_s * bytes_per_s > PREVIEW_MAX_BYTES:
        raise LimitExceededError(
            f"a {duration_s:g} s preview at {song.sample_rate} Hz is too large to send; at "
            f"this rate previews are at most {int(PREVIEW_MAX_BYTES / bytes_per_s)} s"
        )


def _preview(
    job: pb.JobEnvelope,
    params: pb.MixParams,
    values: dict[str, float],
    excerpt: pb.Excerpt,
    song: DecodedInput,
) -> pb.RenderResponse:
    clock = Stopwatch()
    result = render_preview(
        song,
        values,
        start_s=excerpt.start_s,
        duration_s=excerpt.duration_s,
        target_lufs=job.options.target_lufs,
        ceiling_dbtp=job.options.true_peak_ceiling_dbtp,
        tempo_bpm=job.analysis.tempo_bpm or DEFAULT_TEMPO_BPM,
        intensity_pct=intensity_of(job.options),
    )
    sr = song.sample_rate
    wav = encode_audio(result.audio, sr, fmt="wav24")
    out = pb.JobEnvelope()
    out.CopyFrom(job)
    del out.outputs[:]
    channels, frames = (int(n) for n in np.shape(result.audio))
    out.outputs.append(
        pb.RenderedVersion(
            name=params.version,
            audio=pb.AudioRef(
                sample_rate=sr,
                channels=channels,
                frames=frames,
                format="WAV",
                subtype="PCM_24",
                filename=f"{params.version}-preview.wav",
                size_bytes=len(wav),
            ),
            params=pb.MixParams(version=params.version, values=result.params, source=params.source),
            loudness_lufs=result.loudness_lufs,
            true_peak_dbtp=result.true_peak_dbtp,
            render_s=clock.elapsed_s,
        )
    )
    start_s, duration_s = result.excerpt_s(sr)
    return pb.RenderResponse(
        job=out, preview_wav=wav, excerpt=pb.Excerpt(start_s=start_s, duration_s=duration_s)
    )

"""Which versions a job gets, and rendering them all: ``original`` (neutral parameters, so only
loudness-matched and peak-safe) first, then every predicted parameter set."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from mixpilot.v1 import mixpilot_pb2 as pb
from services.common.params import defaults, validate_params
from services.renderer.chain import RenderResult, render_version

ORIGINAL = "original"


@dataclass(frozen=True)
class RenderedAudio:
    name: str
    params: dict[str, float]
    result: RenderResult
    render_s: float


def version_sets(
    predictions: Sequence[pb.MixParams], wanted: Sequence[str] = ()
) -> list[tuple[str, dict[str, float]]]:
    """``[(name, physical params)]`` to render: original first, then the predictions, filtered
    by ``wanted`` when it is not empty (``original`` is always rendered: it is the reference)."""
    sets = [(ORIGINAL, defaults())]
    for p in predictions:
        if wanted and p.version not in wanted:
            continue
        sets.append((p.version, validate_params(dict(p.values))))
    return sets


def render_versions(
    audio: np.ndarray,
    sample_rate: int,
    sets: Sequence[tuple[str, Mapping[str, float]]],
    *,
    target_lufs: float,
    ceiling_dbtp: float,
    tempo_bpm: float,
    intensity_pct: float = 100.0,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> list[RenderedAudio]:
    """Render each ``(name, params)``; ``on_progress(name, done, total)`` after each. The
    intensity control scales every set (``original``'s neutral set stays neutral)."""
    out = []
    for i, (name, params) in enumerate(sets):
        start = time.perf_counter()
        result = render_version(
            audio,
            sample_rate,
            params,
            target_lufs=target_lufs,
            ceiling_dbtp=ceiling_dbtp,
            tempo_bpm=tempo_bpm,
            intensity_pct=intensity_pct,
        )
        out.append(RenderedAudio(name, result.params, result, time.perf_counter() - start))
        if on_progress is not None:
            on_progress(name, i + 1, len(sets))
    return out


def rendered_message(
    rendered: RenderedAudio, ref: pb.AudioRef, sample_rate: int, *, source: str
) -> pb.RenderedVersion:
    """The contract's view of one rendered version; ``ref`` says where its file is."""
    audio_ref = pb.AudioRef()
    audio_ref.CopyFrom(ref)
    audio_ref.sample_rate = sample_rate
    audio_ref.channels = rendered.result.audio.shape[0]
    audio_ref.frames = rendered.result.audio.shape[1]
    audio_ref.format = "WAV"
    audio_ref.subtype = "PCM_24"
    audio_ref.filename = f"{rendered.name}.wav"
    return pb.RenderedVersion(
        name=rendered.name,
        audio=audio_ref,
        params=pb.MixParams(version=rendered.name, values=rendered.params, source=source),
        loudness_lufs=rendered.result.loudness_lufs,
        true_peak_dbtp=rendered.result.true_peak_dbtp,
        render_s=rendered.render_s,
    )

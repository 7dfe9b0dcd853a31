"""Which versions a job gets, and rendering them all: ``original`` (neutral parameters, so only
loudness-matched and peak-safe) first, then every predicted parameter set.

Versions render concurrently, one per thread (the kernels release the GIL), at most
``workers`` at a time, and are handed to the caller one by one in order, so the caller can
encode and store each and let its audio go: a job holds the input, the renders in flight and at
most ``2 x workers`` finished versions waiting for their turn.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
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


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, as a container's cpuset sets it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def render_versions(
    audio: np.ndarray,
    sample_rate: int,
    sets: Sequence[tuple[str, Mapping[str, float]]],
    *,
    target_lufs: float,
    ceiling_dbtp: float,
    tempo_bpm: float,
    intensity_pct: float = 100.0,
    workers: int = 0,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> Iterator[RenderedAudio]:
    """Render each ``(name, params)``, yielding the results in the order of ``sets``.

    Parameters
    ----------
    workers : int
        Versions rendered at once; 0 means :func:`available_cpus`.
    on_progress : callable, optional
        ``on_progress(name, done, total)`` as each version is handed over.

    The intensity control scales every set (``original``'s neutral set stays neutral). Closing
    the iterator early cancels the renders not yet started.
    """
    n_workers = min(len(sets), workers or available_cpus()) or 1

    def one(name: str, params: Mapping[str, float]) -> RenderedAudio:
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
        return RenderedAudio(name, result.params, result, time.perf_counter() - start)

    if n_workers == 1:
        for i, (name, params) in enumerate(sets):
            rendered = one(name, params)
            if on_progress is not None:
                on_progress(name, i + 1, len(sets))
            yield rendered
        return
    pool = ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="render")
    # Up to 2 x workers submitted: a worker that finishes early starts the next version while a
    # slow one ahead of it is still rendering (no head-of-line stall); at most that many
    # finished versions wait to be handed over in order.
    window = 2 * n_workers
    pending: deque[Future[RenderedAudio]] = deque()
    remaining = iter(sets)
    try:
        for name, params in remaining:
            pending.append(pool.submit(one, name, params))
            if len(pending) == window:
                break
        done = 0
        while pending:
            rendered = pending.popleft().result()
            nxt = next(remaining, None)
            if nxt is not None:
                pending.append(pool.submit(one, *nxt))
            done += 1
            if on_progress is not None:
                on_progress(rendered.name, done, len(sets))
            yield rendered
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


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

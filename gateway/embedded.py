"""The embedded default (`mixpilot mix`): the three stages in this process, no servers. It calls
the same domain functions the services call, and writes the versions and report.json to a
directory."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mixpilot.v1 import mixpilot_pb2 as pb
from services.analyzer.analysis import analyze
from services.common.audio_io import encode_audio, read_audio
from services.common.jobs import new_envelope, new_job_id
from services.common.report import build_report, version_file
from services.predictor.stage import job_predictions
from services.renderer.versions import render_versions, rendered_message, version_sets

Progress = Callable[[str, float], None]  # (what is happening, fraction done 0..1)


def _noop(_: str, __: float) -> None:
    return None


def analyze_file(song: Path, *, max_duration_s: float, genre: str | None = None) -> pb.Analysis:
    audio, sr, _ = read_audio(song, max_duration_s=max_duration_s)
    return analyze(audio, sr, genre_override=genre)


def mix_file(
    song: Path,
    outdir: Path,
    *,
    target_lufs: float,
    ceiling_dbtp: float,
    max_duration_s: float,
    genre: str | None = None,
    intensity_pct: float = 100.0,
    render_workers: int = 0,
    progress: Progress = _noop,
) -> dict[str, Any]:
    """Analyse, predict and render ``song``; write ``outdir/<version>.wav`` and
    ``outdir/report.json``. Returns the report."""
    progress("reading", 0.0)
    data = Path(song).read_bytes()
    audio, sr, info = read_audio(data, max_duration_s=max_duration_s)
    ref = pb.AudioRef(
        uri=Path(song).resolve().as_uri(),
        sha256=hashlib.sha256(data).hexdigest(),
        sample_rate=sr,
        channels=info.channels,
        frames=info.frames,
        format=info.format,
        subtype=info.subtype,
        filename=Path(song).name,
        size_bytes=len(data),
    )
    job = new_envelope(
        intensity_pct=intensity_pct,
        job_id=new_job_id(),
        tenant="local",
        input_ref=ref,
        target_lufs=target_lufs,
        ceiling_dbtp=ceiling_dbtp,
        genre_override=genre or "",
    )

    progress("analyzing", 0.05)
    start = time.perf_counter()
    job.analysis.CopyFrom(analyze(audio, sr, genre_override=genre))
    job.timings_s["analyze_s"] = time.perf_counter() - start

    progress("predicting", 0.35)
    start = time.perf_counter()
    job.predictions.extend(job_predictions(job.analysis, job.options, lambda: (audio, sr)))
    job.timings_s["predict_s"] = time.perf_counter() - start

    start = time.perf_counter()
    sets = version_sets(job.predictions)
    sources = {p.version: p.source for p in job.predictions}

    def on_render(name: str, done: int, total: int) -> None:
        progress(f"rendered {name}", 0.4 + 0.55 * done / total)

    progress(f"rendering {len(sets)} versions", 0.4)
    rendered = render_versions(
        audio,
        sr,
        sets,
        target_lufs=target_lufs,
        ceiling_dbtp=ceiling_dbtp,
        tempo_bpm=job.analysis.tempo_bpm,
        intensity_pct=intensity_pct,
        workers=render_workers,
        on_progress=on_render,
    )
    outdir.mkdir(parents=True, exist_ok=True)
    for r in rendered:
        encoded = encode_audio(r.result.audio, sr, fmt="wav24")
        (outdir / version_file(r.name)).write_bytes(encoded)
        ref = pb.AudioRef(
            uri=(outdir / version_file(r.name)).resolve().as_uri(),
            sha256=hashlib.sha256(encoded).hexdigest(),
            size_bytes=len(encoded),
        )
        job.outputs.append(rendered_message(r, ref, sr, source=sources.get(r.name, "neutral")))
    job.timings_s["render_s"] = time.perf_counter() - start
    job.stage = pb.STAGE_RENDERED

    report = build_report(job)
    (outdir / "report.json").write_text(json.dumps(report, indent=2))
    progress("done", 1.0)
    return report

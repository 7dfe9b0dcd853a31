"""report.json: one document per job with the input, the analysis, every version (parameters,
loudness, true peak, file) and the timings. Schema documented in docs/report.md; bump
REPORT_SCHEMA when a field changes meaning (adding fields keeps the version)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mixpilot.v1 import mixpilot_pb2 as pb
from services.common.jobs import intensity_of, to_dict
from services.common.params import BY_NAME

REPORT_SCHEMA = "mixpilot.report/1"

VERSION_LABELS = {
    "original": "Original (loudness-matched to the other versions for a fair A/B)",
    "strategy": "Musical strategy (rule-based: genre x tempo x energy)",
    "ai_baseline_cnn": "AI: baseline CNN",
    "ai_enhanced_cnn": "AI: enhanced CNN",
    "ai_ast": "AI: AST regressor",
    "user": "Your edit",
}


def version_file(name: str, ext: str = "wav") -> str:
    return f"{name}.{ext}"


def version_label(name: str) -> str:
    """What a listener is shown for a version (user edits are ``user-1``, ``user-2``...)."""
    if name.startswith("user-") and name[5:].isdigit():
        return f"{VERSION_LABELS['user']} {name[5:]}"
    return VERSION_LABELS.get(name, name)


def version_entry(out: pb.RenderedVersion) -> dict[str, Any]:
    """One version's entry under ``versions`` (without the model block of AI versions)."""
    return {
        "label": version_label(out.name),
        "file": version_file(out.name),
        "sha256": out.audio.sha256,
        "params": {k: round(out.params.values[k], 4) for k in BY_NAME if k in out.params.values},
        "source": out.params.source,
        "loudness_lufs": round(out.loudness_lufs, 2),
        "true_peak_dbtp": round(out.true_peak_dbtp, 2),
        "render_s": round(out.render_s, 4),
    }


def model_block(params: pb.MixParams, strategy: Mapping[str, float]) -> dict[str, Any]:
    """Per parameter the model predicts: its raw value, the refined value rendered, the
    strategy's value, and what the refinement did (``null``: kept as predicted)."""
    return {
        name: {
            "raw": round(params.raw[name], 4),
            "refined": round(params.values[name], 4),
            "strategy": round(strategy[name], 4) if name in strategy else None,
            "refinement": params.refinements.get(name),
        }
        for name in BY_NAME
        if name in params.raw
    }


def build_report(job: pb.JobEnvelope) -> dict[str, Any]:
    """The report of a rendered job (``job.outputs`` filled)."""
    inp = job.input
    duration = inp.frames / inp.sample_rate if inp.sample_rate else 0.0
    timings = {k: round(v, 4) for k, v in sorted(job.timings_s.items())}
    timings["total_s"] = round(
        sum(v for k, v in job.timings_s.items() if k in ("analyze_s", "predict_s", "render_s")), 4
    )
    versions: dict[str, Any] = {}
    predicted = {p.version: p for p in job.predictions}
    strategy = predicted["strategy"].values if "strategy" in predicted else {}
    for out in job.outputs:
        versions[out.name] = version_entry(out)
        source = predicted.get(out.name)
        if source is not None and source.raw:
            versions[out.name]["model"] = model_block(source, strategy)
    return {
        "schema": REPORT_SCHEMA,
        "job_id": job.job_id,
        "input": {
            "filename": inp.filename,
            "sha256": inp.sha256,
            "format": inp.format,
            "subtype": inp.subtype,
            "sample_rate": inp.sample_rate,
            "channels": inp.channels,
            "frames": inp.frames,
            "duration_s": round(duration, 3),
        },
        "target": {
            "loudness_lufs": job.options.target_lufs,
            "true_peak_ceiling_dbtp": job.options.true_peak_ceiling_dbtp,
            "intensity_pct": intensity_of(job.options),
        },
        "analysis": to_dict(job.analysis),
        "versions": versions,
        "parameters": {
            name: {
                "unit": p.unit,
                "min": p.minimum,
                "max": p.maximum,
                "neutral": p.default,
                **({"choices": list(p.choices)} if p.choices else {}),
            }
            for name, p in BY_NAME.items()
        },
        "timings": timings,
    }

"""Score the analyzer against ground truth, side by side with the plain librosa baseline.

:func:`evaluate_analysis` generates the labelled songs of :mod:`services.analyzer.labelled`,
runs :func:`services.analyzer.analysis.analyze` and :mod:`services.analyzer.baseline` on each,
and reports:

- tempo **Acc1**: the estimate within ±4 % of the true tempo; **Acc2**: within ±4 % of the
  truth times 1, 2, 1/2, 3 or 1/3 (the MIREX definitions);
- key **exact** accuracy and the **MIREX weighted score** (``mir_eval.key.weighted_score``:
  1 same key, 0.5 a fifth away, 0.3 relative, 0.2 parallel);
- **genre** accuracy and confusion matrix (the baseline for genre is the rule-based heuristic the
  analyzer used before its trained classifier); **metre** accuracy;
- the same tempo and key scores by genre, by metre and by feel (straight or swung).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import mir_eval
import numpy as np

from services.analyzer.genre import GENRES
from services.analyzer.labelled import SAMPLE_RATE, SongSpec, render, song_specs

ACC1_TOLERANCE = 0.04
#: Metrical relations Acc2 forgives.
ACC2_FACTORS = (1.0, 2.0, 0.5, 3.0, 1.0 / 3.0)


def tempo_acc1(estimate: float, truth: float) -> bool:
    """Within ±4 % of the true tempo."""
    return abs(estimate - truth) <= ACC1_TOLERANCE * truth


def tempo_acc2(estimate: float, truth: float) -> bool:
    """Within ±4 % of the truth or of its double, half, triple or third."""
    return any(tempo_acc1(estimate, truth * f) for f in ACC2_FACTORS)


def key_score(estimate: str, truth: str) -> float:
    """MIREX weighted key score (1, 0.5 fifth, 0.3 relative, 0.2 parallel, 0 otherwise)."""
    return float(mir_eval.key.weighted_score(truth, estimate))


def _load_or_render(spec: SongSpec, cache_dir: Path | None) -> tuple[np.ndarray, dict]:
    if cache_dir is None:
        return render(spec)
    import json

    stem = cache_dir / f"{spec.seed}-{spec.genre}-{spec.key.replace(' ', '_')}-{spec.duration_s:g}"
    audio_path, truth_path = stem.with_suffix(".npy"), stem.with_suffix(".json")
    if audio_path.exists() and truth_path.exists():
        return np.load(audio_path), json.loads(truth_path.read_text())
    mix, truth = render(spec)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.save(audio_path, mix)
    truth_path.write_text(json.dumps(truth))
    return mix, truth


def score_song(spec: SongSpec, cache_dir: Path | None = None) -> dict:
    """Truth, analyzer and baseline results of one labelled song (runs in a worker process)."""
    from services.analyzer.analysis import analyze
    from services.analyzer.baseline import baseline_analysis, baseline_genre_of

    mix, truth = _load_or_render(spec, cache_dir)
    ours = analyze(mix, SAMPLE_RATE)
    base = baseline_analysis(mix, SAMPLE_RATE)
    return {
        "seed": spec.seed,
        "truth": {
            "genre": truth["genre"],
            "tempo_bpm": float(truth["tempo_bpm"]),
            "key": truth["key"],
            "meter": truth["time_signature"],
            "swung": float(truth["swing"]) > 0.5,
        },
        "ours": {
            "genre": ours.genre,
            "tempo_bpm": ours.tempo_bpm,
            "key": ours.key,
            "meter": ours.meter,
        },
        "baseline": {**base, "genre": baseline_genre_of(ours)},
    }


def _scores(rows: Sequence[dict], who: str) -> dict[str, float]:
    acc1 = [tempo_acc1(r[who]["tempo_bpm"], r["truth"]["tempo_bpm"]) for r in rows]
    acc2 = [tempo_acc2(r[who]["tempo_bpm"], r["truth"]["tempo_bpm"]) for r in rows]
    keys = [key_score(r[who]["key"], r["truth"]["key"]) for r in rows]
    genre = [r[who]["genre"] == r["truth"]["genre"] for r in rows]
    out = {
        "n": len(rows),
        "tempo_acc1": float(np.mean(acc1)),
        "tempo_acc2": float(np.mean(acc2)),
        "key_exact": float(np.mean([k == 1.0 for k in keys])),
        "key_weighted": float(np.mean(keys)),
        "genre_accuracy": float(np.mean(genre)),
    }
    if "meter" in rows[0][who]:
        out["meter_accuracy"] = float(
            np.mean([r[who]["meter"] == r["truth"]["meter"] for r in rows])
        )
    return out


def confusion(rows: Sequence[dict], who: str) -> list[list[int]]:
    """Genre confusion matrix: row = true genre, column = predicted, in :data:`GENRES` order."""
    m = np.zeros((len(GENRES), len(GENRES)), dtype=int)
    for r in rows:
        m[GENRES.index(r["truth"]["genre"]), GENRES.index(r[who]["genre"])] += 1
    return m.tolist()


def summarise(rows: Sequence[dict]) -> dict:
    """Scores overall and by genre, metre and feel, for the analyzer and the baseline."""
    groups: dict[str, list[dict]] = {"all": list(rows)}
    for g in GENRES:
        groups[f"genre={g}"] = [r for r in rows if r["truth"]["genre"] == g]
    for meter in ("4/4", "3/4"):
        groups[f"meter={meter}"] = [r for r in rows if r["truth"]["meter"] == meter]
    groups["feel=straight"] = [r for r in rows if not r["truth"]["swung"]]
    groups["feel=swung"] = [r for r in rows if r["truth"]["swung"]]
    return {
        "groups": {
            name: {"ours": _scores(g, "ours"), "baseline": _scores(g, "baseline")}
            for name, g in groups.items()
            if g
        },
        "genre_labels": list(GENRES),
        "confusion": {"ours": confusion(rows, "ours"), "baseline": confusion(rows, "baseline")},
    }


def evaluate_analysis(
    count: int,
    *,
    seed0: int,
    duration_s: float = 30.0,
    workers: int = 1,
    cache_dir: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Score ``count`` labelled songs from ``seed0`` (see :mod:`services.analyzer.labelled`).

    Returns
    -------
    dict
        ``rows`` (per song: truth, ours, baseline) and :func:`summarise` of them.
    """
    specs = song_specs(count, seed0=seed0, duration_s=duration_s)
    rows: list[dict] = []
    if workers <= 1:
        for i, spec in enumerate(specs):
            rows.append(score_song(spec, cache_dir))
            if progress is not None:
                progress(i + 1, len(specs))
    else:
        from services.analyzer.analysis import warm_up

        warm_up()  # compile librosa's numba kernels once, before the workers load them
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(score_song, s, cache_dir) for s in specs]
            for i, f in enumerate(futures):
                rows.append(f.result())
                if progress is not None:
                    progress(i + 1, len(specs))
    return {"rows": rows, **summarise(rows)}


def table_markdown(summary: dict) -> str:
    """The closing-note table: ours vs baseline per group."""
    lines = [
        "| set | n | tempo Acc1 | tempo Acc2 | key exact | key weighted | genre | metre |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, both in summary["groups"].items():
        o, b = both["ours"], both["baseline"]

        def pair(k: str, o: dict = o, b: dict = b) -> str:
            return f"{o[k]:.3f} ({b[k]:.3f})" if k in b else f"{o[k]:.3f}"

        metre = f"{o['meter_accuracy']:.3f}" if "meter_accuracy" in o else "—"
        lines.append(
            f"| {name} | {o['n']} | {pair('tempo_acc1')} | {pair('tempo_acc2')} | "
            f"{pair('key_exact')} | {pair('key_weighted')} | {pair('genre_accuracy')} | {metre} |"
        )
    return "\n".join(lines) + "\n"


def default_workers() -> int:
    """Worker processes for the evaluation: the CPUs, at most 4."""
    return max(1, min(4, os.cpu_count() or 1))

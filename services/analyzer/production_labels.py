"""Labelled examples for :mod:`services.analyzer.production`: generated songs rendered through the
renderer's real processors with known settings, and the held-out evaluation.

Each example is one song from :func:`services.predictor.songgen.generate_song` (genre cycling
through the five, seed ``seed0 + i``) with three labels drawn independently and uniformly from
``numpy.random.default_rng([seed, LABEL_STREAM])``:

- **compression**: ``uncompressed`` (no dynamics processing), ``modern``
  (:class:`~services.renderer.compressor.Compressor`: ratio 3-10, attack 0.3-5 ms, release
  30-150 ms, threshold 5-13 dB under the loud 10 ms peaks) or ``vintage``
  (:class:`~services.renderer.vintage_compressor.VintageCompressor`: ratio 3-8, attack 15-60 ms,
  release 300-1200 ms, threshold 5-13 dB under the loud 50 ms RMS levels, drive 8-18 dB,
  even share 0-100 %).
- **eq_character**: ``neutral`` (no EQ), ``bright`` (high shelf +5..+9 dB at 3-7 kHz, half the
  time with a high-mid bell +2..+5 dB at 2.5-5 kHz), ``warm`` (low shelf +4..+8 dB at 150-300 Hz
  and high shelf -3..-6 dB at 4-8 kHz) or ``muddy`` (low-mid bell +6..+10 dB at 200-450 Hz,
  Q 0.7-1.4).
- **reverb_style**: ``dry`` (no reverb) or one of the renderer's four
  :class:`~services.renderer.reverb.Reverb` styles: ``intimate`` (RT60 0.3-0.7 s), ``plate``
  (0.8-2.0 s, damping 0-40 %), ``hall`` (1.8-3.2 s, damping 40-70 %) or ``spacious``
  (3.5-6.0 s); wet level 20-40 % (``spacious`` 25-50 %).

The processors run in the renderer's chain order (EQ, compressor, vintage compressor, reverb);
the compressors' thresholds are set from the equalised song's own levels so the gain reduction
is clear whatever the song. The result is scaled to a -1 dBFS sample peak (no limiter: a
mastering limiter is compression too, see docs/production_style.md).

Seeds: 5_000_000+ train the classifiers (:func:`train_production`), 5_500_000+ evaluate them
(:func:`evaluate_production`).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize

from services.analyzer import features, production
from services.analyzer.linear import LinearModel
from services.predictor.songgen import GENRES, generate_song
from services.renderer.compressor import Compressor
from services.renderer.eq import ParametricEQ
from services.renderer.reverb import Reverb
from services.renderer.vintage_compressor import VintageCompressor

#: The labels, in the order the draws index them (the classes of the models).
COMPRESSION_LABELS = production.COMPRESSION_CLASSES
EQ_LABELS = production.EQ_CLASSES
REVERB_LABELS = production.REVERB_CLASSES

TRAIN_SEED0 = 5_000_000
EVAL_SEED0 = 5_500_000
#: Random stream of the label draws: ``default_rng([seed, LABEL_STREAM])``.
LABEL_STREAM = 77
DURATION_S = 15.0
SAMPLE_RATE = 44_100
PEAK_DBFS = -1.0

Progress = Callable[[str, float], None]


@dataclass(frozen=True)
class LabelledExample:
    """One rendered song with its known production labels.

    Attributes
    ----------
    audio : np.ndarray, shape (2, frames), float32
        Rendered, sample peak :data:`PEAK_DBFS`.
    sample_rate : int
    genre : str
    seed : int
    compression, eq_character, reverb_style : str
        The labels.
    reverb_time_s : float
        The reverb's RT60 (``reverb_decay_s``), 0 when dry.
    reverb_amount : float
        Wet share ``E_wet / (E_dry + E_wet)`` of the rendered mix (0 when dry).
    gain_reduction_db : float
        Mean gain reduction of the compressor over the frames where it acts (0 uncompressed).
    params : dict[str, float]
        The schema parameters that were rendered (``eq_*``, ``comp_*``, ``vcomp_*``,
        ``reverb_*``; missing ones neutral).
    """

    audio: np.ndarray = field(repr=False)
    sample_rate: int
    genre: str
    seed: int
    compression: str
    eq_character: str
    reverb_style: str
    reverb_time_s: float
    reverb_amount: float
    gain_reduction_db: float
    params: dict[str, float]


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def draw_labels(seed: int) -> tuple[str, str, str]:
    """The (compression, eq_character, reverb_style) labels of example ``seed``."""
    rng = np.random.default_rng([seed, LABEL_STREAM])
    return (
        COMPRESSION_LABELS[int(rng.integers(len(COMPRESSION_LABELS)))],
        EQ_LABELS[int(rng.integers(len(EQ_LABELS)))],
        REVERB_LABELS[int(rng.integers(len(REVERB_LABELS)))],
    )


def eq_params(label: str, rng: np.random.Generator) -> dict[str, float]:
    """Schema ``eq_*`` parameters for an EQ label (see the module docstring)."""
    if label == "neutral":
        return {}
    if label == "bright":
        p = {
            "eq_high_shelf_freq_hz": _u(rng, 3000.0, 7000.0),
            "eq_high_shelf_gain_db": _u(rng, 5.0, 9.0),
        }
        if rng.random() < 0.5:
            p["eq_high_mid_freq_hz"] = _u(rng, 2500.0, 5000.0)
            p["eq_high_mid_gain_db"] = _u(rng, 2.0, 5.0)
        return p
    if label == "warm":
        return {
            "eq_low_shelf_freq_hz": _u(rng, 150.0, 300.0),
            "eq_low_shelf_gain_db": _u(rng, 4.0, 8.0),
            "eq_high_shelf_freq_hz": _u(rng, 4000.0, 8000.0),
            "eq_high_shelf_gain_db": -_u(rng, 3.0, 6.0),
        }
    if label == "muddy":
        return {
            "eq_low_mid_freq_hz": _u(rng, 200.0, 450.0),
            "eq_low_mid_gain_db": _u(rng, 6.0, 10.0),
            "eq_low_mid_q": _u(rng, 0.7, 1.4),
        }
    raise ValueError(f"unknown EQ label {label!r}")


def reverb_params(label: str, rng: np.random.Generator) -> dict[str, float]:
    """Schema ``reverb_*`` parameters for a reverb label (see the module docstring)."""
    if label == "dry":
        return {}
    ranges = {
        "intimate": ((0.3, 0.7), (0.0, 10.0), (40.0, 80.0), (20.0, 40.0)),
        "plate": ((0.8, 2.0), (0.0, 25.0), (0.0, 40.0), (20.0, 40.0)),
        "hall": ((1.8, 3.2), (15.0, 40.0), (40.0, 70.0), (20.0, 40.0)),
        "spacious": ((3.5, 6.0), (30.0, 60.0), (30.0, 60.0), (25.0, 50.0)),
    }
    if label not in ranges:
        raise ValueError(f"unknown reverb label {label!r}")
    decay, predelay, damping, mix = ranges[label]
    return {
        "reverb_style": float(REVERB_LABELS.index(label) - 1),
        "reverb_decay_s": _u(rng, *decay),
        "reverb_predelay_ms": _u(rng, *predelay),
        "reverb_damping_pct": _u(rng, *damping),
        "reverb_mix_pct": _u(rng, *mix),
    }


def _loud_level_db(levels_db: np.ndarray) -> float:
    """The 90th percentile of block levels (dB) of the blocks within 40 dB of the loudest."""
    active = levels_db[levels_db > levels_db.max() - 40.0]
    return float(np.percentile(active, 90.0))


def _block_levels_db(x: np.ndarray, sr: int, block_s: float, *, rms: bool) -> np.ndarray:
    n = max(1, int(block_s * sr))
    frames = (x.shape[1] // n) * n
    blocks = x[:, :frames].reshape(x.shape[0], -1, n)
    if rms:
        # Sine-referenced like the vintage detector: 10 log10(2 * mean square).
        value = 2.0 * np.max(np.mean(blocks.astype(np.float64) ** 2, axis=2), axis=0)
        return 10.0 * np.log10(np.maximum(value, 1e-20))
    return 20.0 * np.log10(np.maximum(np.max(np.abs(blocks), axis=(0, 2)), 1e-10))


def compression_params(
    label: str, rng: np.random.Generator, audio: np.ndarray, sample_rate: int
) -> dict[str, float]:
    """Schema ``comp_*`` / ``vcomp_*`` parameters for a compression label, the threshold set
    from ``audio``'s own loud levels (see the module docstring)."""
    if label == "uncompressed":
        return {}
    if label == "modern":
        loud = _loud_level_db(_block_levels_db(audio, sample_rate, 0.01, rms=False))
        return {
            "comp_threshold_db": float(np.clip(loud - _u(rng, 5.0, 13.0), -40.0, 0.0)),
            "comp_ratio": _u(rng, 3.0, 10.0),
            "comp_attack_ms": float(np.exp(_u(rng, np.log(0.3), np.log(5.0)))),
            "comp_release_ms": float(np.exp(_u(rng, np.log(30.0), np.log(150.0)))),
            "comp_knee_db": _u(rng, 0.0, 6.0),
        }
    if label == "vintage":
        loud = _loud_level_db(_block_levels_db(audio, sample_rate, 0.05, rms=True))
        return {
            "vcomp_threshold_db": float(np.clip(loud - _u(rng, 5.0, 13.0), -40.0, 0.0)),
            "vcomp_ratio": _u(rng, 3.0, 8.0),
            "vcomp_attack_ms": float(np.exp(_u(rng, np.log(15.0), np.log(60.0)))),
            "vcomp_release_ms": float(np.exp(_u(rng, np.log(300.0), np.log(1200.0)))),
            "vcomp_drive_db": _u(rng, 8.0, 18.0),
            "vcomp_even_pct": _u(rng, 0.0, 100.0),
        }
    raise ValueError(f"unknown compression label {label!r}")


def render_labelled(
    mix: np.ndarray,
    sample_rate: int,
    *,
    compression: str,
    eq_character: str,
    reverb_style: str,
    rng: np.random.Generator,
) -> tuple[np.ndarray, dict[str, float], float, float]:
    """Render ``mix`` with settings drawn for the three labels.

    Returns
    -------
    audio : np.ndarray, shape (channels, frames), float32
        Scaled to a :data:`PEAK_DBFS` sample peak.
    params : dict[str, float]
        The schema parameters used.
    gain_reduction_db : float
        Mean compressor gain reduction over the frames with more than 0.5 dB of it.
    reverb_amount : float
        ``E_wet / (E_dry + E_wet)``.
    """
    params = eq_params(eq_character, rng)
    x = np.asarray(mix, dtype=np.float32)
    if params:
        x = ParametricEQ.from_params(params)(x, sample_rate)
    comp = compression_params(compression, rng, x, sample_rate)
    params.update(comp)
    processor: Compressor | VintageCompressor | None = None
    if compression == "modern":
        processor = Compressor.from_params(comp)
    elif compression == "vintage":
        processor = VintageCompressor.from_params(comp)
    gain_reduction_db = 0.0
    if processor is not None:
        gr = processor.gain_reduction_db(x, sample_rate)
        x = processor(x, sample_rate)
        active = gr[gr > 0.5]
        gain_reduction_db = float(active.mean()) if active.size else 0.0
    rev = reverb_params(reverb_style, rng)
    params.update(rev)
    amount = 0.0
    if rev:
        dry = x
        x = Reverb.from_params(rev)(dry, sample_rate)
        wet = x.astype(np.float64) - dry
        e_wet = float(np.sum(wet * wet))
        e_dry = float(np.sum(dry.astype(np.float64) ** 2))
        amount = e_wet / max(e_wet + e_dry, 1e-30)
    peak = float(np.max(np.abs(x)))
    if peak > 0.0:
        x = x * np.float32(10.0 ** (PEAK_DBFS / 20.0) / peak)
    return x.astype(np.float32), params, gain_reduction_db, amount


def labelled_example(
    seed: int, *, duration_s: float = DURATION_S, sample_rate: int = SAMPLE_RATE
) -> LabelledExample:
    """Example ``seed``: genre ``GENRES[seed % 5]``, labels from :func:`draw_labels`."""
    genre = GENRES[seed % len(GENRES)]
    song = generate_song(genre, seed, duration_s=duration_s, sample_rate=sample_rate, workers=1)
    compression, eq_character, reverb_style = draw_labels(seed)
    rng = np.random.default_rng([seed, LABEL_STREAM, 1])
    audio, params, gr, amount = render_labelled(
        song.mix,
        sample_rate,
        compression=compression,
        eq_character=eq_character,
        reverb_style=reverb_style,
        rng=rng,
    )
    return LabelledExample(
        audio=audio,
        sample_rate=sample_rate,
        genre=genre,
        seed=seed,
        compression=compression,
        eq_character=eq_character,
        reverb_style=reverb_style,
        reverb_time_s=float(params.get("reverb_decay_s", 0.0)),
        reverb_amount=amount,
        gain_reduction_db=gr,
        params=params,
    )


# ---------------------------------------------------------------------------------------------
# Features of labelled examples


def _spectra(audio: np.ndarray, sample_rate: int) -> features.Spectra:
    return features.compute_spectra(
        y=features.analysis_mono(audio, sample_rate),
        sr=features.ANALYSIS_SR,
        source_sample_rate=sample_rate,
    )


def example_row(seed: int, *, duration_s: float = DURATION_S) -> dict[str, Any]:
    """Example ``seed`` measured: its labels and truth plus ``features`` (the model inputs of
    :func:`services.analyzer.production.measure`) and ``free_decay_rt_s``."""
    example = labelled_example(seed, duration_s=duration_s)
    m = production.measure(
        example.audio, example.sample_rate, spectra=_spectra(example.audio, example.sample_rate)
    )
    return {
        "seed": seed,
        "genre": example.genre,
        "compression": example.compression,
        "eq_character": example.eq_character,
        "reverb_style": example.reverb_style,
        "reverb_time_s": example.reverb_time_s,
        "reverb_amount": example.reverb_amount,
        "features": m.features,
        "free_decay_rt_s": m.free_decay_rt_s,
    }


def example_rows(
    seeds: Sequence[int],
    *,
    duration_s: float = DURATION_S,
    workers: int = 1,
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """:func:`example_row` of every seed, in order, ``workers`` processes at a time."""
    task = functools.partial(example_row, duration_s=duration_s)
    rows: list[dict[str, Any]] = []
    if workers <= 1:
        for i, seed in enumerate(seeds):
            rows.append(task(seed))
            if progress is not None:
                progress("examples", (i + 1) / len(seeds))
        return rows
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for i, row in enumerate(pool.map(task, seeds)):
            rows.append(row)
            if progress is not None:
                progress("examples", (i + 1) / len(seeds))
    return rows


# ---------------------------------------------------------------------------------------------
# Fitting (numpy + scipy; no pickles: the result is plain JSON)


def standardisation(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column means and standard deviations of ``x`` ignoring NaN (scale 1 for a constant or
    empty column)."""
    with np.errstate(invalid="ignore"):
        mean = np.nanmean(x, axis=0) if x.shape[0] else np.zeros(x.shape[1])
        scale = np.nanstd(x, axis=0) if x.shape[0] else np.ones(x.shape[1])
    mean = np.where(np.isfinite(mean), mean, 0.0)
    scale = np.where(np.isfinite(scale) & (scale > 1e-9), scale, 1.0)
    return mean, scale


def standardise(x: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``(x - mean) / scale`` with NaN read as 0 (the mean), as the models do at inference."""
    z = (np.asarray(x, dtype=np.float64) - mean) / scale
    return np.where(np.isfinite(z), z, 0.0)


def fit_logistic(
    z: np.ndarray, labels: Sequence[str], classes: Sequence[str], *, l2: float
) -> dict[str, Any]:
    """Multinomial logistic regression with an L2 penalty ``l2 / 2 * |W|^2`` (intercepts free)
    on standardised features ``z`` (examples x features), fitted by L-BFGS.

    Returns
    -------
    dict
        ``classes``, ``coef`` (classes x features) and ``intercept`` (classes).
    """
    z = np.asarray(z, dtype=np.float64)
    index = {c: i for i, c in enumerate(classes)}
    target = np.zeros((z.shape[0], len(classes)))
    target[np.arange(z.shape[0]), [index[s] for s in labels]] = 1.0
    n, d = z.shape
    k = len(classes)

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w = theta[: k * d].reshape(k, d)
        logits = z @ w.T + theta[k * d :]
        logits -= logits.max(axis=1, keepdims=True)
        log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        value = -float(np.sum(target * log_p)) / n + 0.5 * l2 * float(np.sum(w * w))
        residual = (np.exp(log_p) - target) / n
        grad_w = residual.T @ z + l2 * w
        return value, np.concatenate([grad_w.ravel(), residual.sum(axis=0)])

    result = minimize(
        loss, np.zeros(k * d + k), jac=True, method="L-BFGS-B", options={"maxiter": 5000}
    )
    return {
        "classes": list(classes),
        "coef": result.x[: k * d].reshape(k, d).tolist(),
        "intercept": result.x[k * d :].tolist(),
    }


def fit_ridge(z: np.ndarray, target: np.ndarray, *, alpha: float) -> dict[str, Any]:
    """Ridge regression ``min |z w + b - t|^2 / n + alpha |w|^2`` on standardised features
    ``z`` (examples x features).

    Returns
    -------
    dict
        ``coef`` (1 x features) and ``intercept`` (1).
    """
    z = np.asarray(z, dtype=np.float64)
    t = np.asarray(target, dtype=np.float64)
    n, d = z.shape
    zc = z - z.mean(axis=0)
    w = np.linalg.solve(zc.T @ zc / n + alpha * np.eye(d), zc.T @ (t - t.mean()) / n)
    return {"coef": [w.tolist()], "intercept": [float(t.mean() - z.mean(axis=0) @ w)]}


# ---------------------------------------------------------------------------------------------
# The tonal reference curve

REFERENCE_SEED0 = 5_200_000
REFERENCE_DURATION_S = 30.0


def _clean_sub_band_shares(seed: int, *, duration_s: float) -> np.ndarray:
    genre = GENRES[seed % len(GENRES)]
    song = generate_song(genre, seed, duration_s=duration_s, sample_rate=SAMPLE_RATE, workers=1)
    power, _ = production.sub_band_powers(_spectra(song.mix, SAMPLE_RATE))
    return power / power.sum()


def reference_curve(
    n_songs: int,
    *,
    seed0: int = REFERENCE_SEED0,
    duration_s: float = REFERENCE_DURATION_S,
    workers: int = 1,
) -> tuple[float, ...]:
    """Mean sub-band share (:data:`services.analyzer.production.SUB_BAND_EDGES_HZ`) of the
    clean (unprocessed) generated mixes ``seed0 .. seed0 + n_songs - 1`` at 44.1 kHz, genres
    cycling: the reference curve of the tonal balance."""
    task = functools.partial(_clean_sub_band_shares, duration_s=duration_s)
    seeds = range(seed0, seed0 + n_songs)
    if workers <= 1:
        shares = [task(s) for s in seeds]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            shares = list(pool.map(task, seeds))
    mean = np.mean(shares, axis=0)
    return tuple(float(v) for v in mean / mean.sum())


# ---------------------------------------------------------------------------------------------
# Training and evaluation

#: Training command of the shipped weights (also stored in the weights file).
TRAIN_COMMAND = (
    ".venv/bin/python -m services.analyzer.production_labels train --songs 1200 --workers 2"
)
TRAIN_SONGS = 1200
#: Feature groups (by name prefix) each model reads, and its L2 penalty (logistic) or alpha
#: (ridge). Chosen by 5-fold cross-validation on the training songs (docs/production_style.md).
MODEL_SPECS: dict[str, dict[str, Any]] = {
    "compression": {"kind": "logistic", "groups": ("dynamics", "tonal"), "l2": 1e-3},
    "eq_character": {"kind": "logistic", "groups": ("tonal", "dynamics"), "l2": 1e-3},
    "reverb_style": {"kind": "logistic", "groups": ("decay",), "l2": 1e-3},
    "reverb_time": {"kind": "ridge", "groups": ("decay", "dynamics"), "alpha": 0.03},
    "reverb_amount": {"kind": "ridge", "groups": ("decay", "dynamics"), "alpha": 0.03},
}
CLASSES: dict[str, tuple[str, ...]] = {
    "compression": COMPRESSION_LABELS,
    "eq_character": EQ_LABELS,
    "reverb_style": REVERB_LABELS,
}


def _rounded(value: Any, digits: int) -> Any:
    """Floats in nested lists to ``digits`` significant digits (keeps the file small)."""
    if isinstance(value, list):
        return [_rounded(v, digits) for v in value]
    if isinstance(value, float):
        return float(f"{value:.{digits}g}")
    return value


def fit_models(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The standardisation and the five models of :data:`MODEL_SPECS` fitted on measured
    examples (:func:`example_rows`): the weights file's ``standardisation`` and ``models``.

    Coefficients are stored to 4 significant digits, means and scales to 6 (the outputs move by
    less than 1e-3).
    """
    names = list(rows[0]["features"])
    x_all = np.array([[r["features"][n] for n in names] for r in rows], dtype=np.float64)
    mean, scale = standardisation(x_all)
    z_all = standardise(x_all, mean, scale)
    models: dict[str, dict[str, Any]] = {}
    for task, spec in MODEL_SPECS.items():
        columns = [i for i, n in enumerate(names) if production.feature_group(n) in spec["groups"]]
        if task == "reverb_time":
            used = [i for i, r in enumerate(rows) if r["reverb_time_s"] > 0.0]
        else:
            used = list(range(len(rows)))
        z = z_all[np.ix_(used, columns)]
        if spec["kind"] == "logistic":
            fitted = fit_logistic(z, [rows[i][task] for i in used], CLASSES[task], l2=spec["l2"])
        elif task == "reverb_time":
            target = np.log([rows[i]["reverb_time_s"] for i in used])
            fitted = fit_ridge(z, target, alpha=spec["alpha"])
        else:
            fitted = fit_ridge(z, np.array([rows[i][task] for i in used]), alpha=spec["alpha"])
        models[task] = {
            "groups": list(spec["groups"]),
            **{k: _rounded(v, 4) for k, v in fitted.items()},
        }
    return {
        "standardisation": {
            "features": names,
            "mean": _rounded(mean.tolist(), 6),
            "scale": _rounded(scale.tolist(), 6),
        },
        "models": models,
    }


def train_production(
    n_songs: int = TRAIN_SONGS,
    *,
    seed0: int = TRAIN_SEED0,
    workers: int = 1,
    out: str | Path | None = production.WEIGHTS_PATH,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Render ``n_songs`` labelled examples (seeds ``seed0 ..``), fit the models and write the
    weights file.

    Parameters
    ----------
    n_songs : int
    seed0 : int
        First seed (5_000_000+ for training).
    workers : int
        Processes rendering examples at a time.
    out : path, optional
        Where to write the JSON (default the shipped ``weights/production.json``); None to
        only return it.
    progress : callable, optional
        ``progress(what, fraction)``.

    Returns
    -------
    dict
        The weights file's content (``models``, ``training`` with the seeds and command, and the
        training-set accuracy of each classifier).
    """
    rows = example_rows(range(seed0, seed0 + n_songs), workers=workers, progress=progress)
    fitted = fit_models(rows)
    loaded = production.models_from_json(fitted)
    accuracy = {
        task: float(np.mean([_predict(loaded[task], r["features"]) == r[task] for r in rows]))
        for task in CLASSES
    }
    payload = {
        "format": "mixpilot.production/1",
        "training": {
            "command": TRAIN_COMMAND,
            "seed0": seed0,
            "n_songs": n_songs,
            "duration_s": DURATION_S,
            "sample_rate": SAMPLE_RATE,
            "label_stream": LABEL_STREAM,
            "train_accuracy": accuracy,
            "model_specs": {k: {**v, "groups": list(v["groups"])} for k, v in MODEL_SPECS.items()},
        },
        **fitted,
    }
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(payload, separators=(",", ":")) + "\n")
        production.load_models.cache_clear()
    return payload


def _predict(model: LinearModel, feats: dict[str, float]) -> str:
    probs = production.class_probabilities(model, feats)
    return max(probs, key=probs.__getitem__)


def evaluation_row(seed: int, *, duration_s: float = DURATION_S) -> dict[str, Any]:
    """Example ``seed`` with its truth and what :func:`production.production_style` says."""
    example = labelled_example(seed, duration_s=duration_s)
    style = production.production_style(
        example.audio, example.sample_rate, spectra=_spectra(example.audio, example.sample_rate)
    )
    return {
        "seed": seed,
        "truth": {
            "compression": example.compression,
            "eq_character": example.eq_character,
            "reverb_style": example.reverb_style,
            "reverb_time_s": example.reverb_time_s,
            "reverb_amount": example.reverb_amount,
        },
        "predicted": {
            "compression": style.compression,
            "eq_character": style.eq_character,
            "reverb_style": style.reverb_style,
            "reverb_time_s": style.reverb_time_s,
            "reverb_amount": style.reverb_amount,
        },
    }


def evaluate_production(
    n_songs: int,
    *,
    seed0: int = EVAL_SEED0,
    workers: int = 1,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Score :func:`services.analyzer.production.production_style` on held-out examples.

    Parameters
    ----------
    n_songs : int
        Examples ``seed0 .. seed0 + n_songs - 1`` (genres cycling, labels drawn per seed).
    seed0 : int
        5_500_000+ (held out from training).
    workers : int
        Processes at a time.
    progress : callable, optional
        ``progress(what, fraction)``.

    Returns
    -------
    dict
        ``n``, ``seed0``, ``duration_s``; ``accuracy`` and ``majority_accuracy`` (always
        answering the most frequent true label) per task; ``confusion`` per task: ``labels``
        (order of rows and columns) and ``matrix`` (rows: truth, columns: predicted, counts);
        ``reverb_time_mae_s`` and ``reverb_time_median_relative_error`` over the
        ``reverb_time_n`` examples with reverb (a ``dry`` answer counts as 0 s);
        ``reverb_amount_mae`` over all examples.
    """
    seeds = list(range(seed0, seed0 + n_songs))
    task = functools.partial(evaluation_row, duration_s=DURATION_S)
    results: list[dict[str, Any]] = []
    if workers <= 1:
        for i, seed in enumerate(seeds):
            results.append(task(seed))
            if progress is not None:
                progress("evaluate", (i + 1) / len(seeds))
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for i, row in enumerate(pool.map(task, seeds)):
                results.append(row)
                if progress is not None:
                    progress("evaluate", (i + 1) / len(seeds))
    return summarise(results, seed0=seed0)


def summarise(results: Sequence[dict[str, Any]], *, seed0: int) -> dict[str, Any]:
    """The scores of :func:`evaluate_production` from its :func:`evaluation_row` results."""
    out: dict[str, Any] = {
        "n": len(results),
        "seed0": seed0,
        "duration_s": DURATION_S,
        "accuracy": {},
        "majority_accuracy": {},
        "confusion": {},
    }
    for name, labels in CLASSES.items():
        truth = [r["truth"][name] for r in results]
        predicted = [r["predicted"][name] for r in results]
        matrix = np.zeros((len(labels), len(labels)), dtype=int)
        for t, p in zip(truth, predicted, strict=True):
            matrix[labels.index(t), labels.index(p)] += 1
        n = max(1, len(results))
        out["accuracy"][name] = float(np.trace(matrix)) / n
        out["majority_accuracy"][name] = float(matrix.sum(axis=1).max()) / n
        out["confusion"][name] = {"labels": list(labels), "matrix": matrix.tolist()}
    wet = [r for r in results if r["truth"]["reverb_time_s"] > 0.0]
    t = np.array([r["truth"]["reverb_time_s"] for r in wet])
    p = np.array([r["predicted"]["reverb_time_s"] for r in wet])
    out["reverb_time_n"] = len(wet)
    out["reverb_time_mae_s"] = float(np.mean(np.abs(p - t))) if wet else math.nan
    out["reverb_time_median_relative_error"] = (
        float(np.median(np.abs(p - t) / t)) if wet else math.nan
    )
    out["reverb_amount_mae"] = (
        float(
            np.mean(
                [
                    abs(r["predicted"]["reverb_amount"] - r["truth"]["reverb_amount"])
                    for r in results
                ]
            )
        )
        if results
        else math.nan
    )
    return out


def summary_markdown(scores: dict[str, Any]) -> str:
    """:func:`evaluate_production` scores as markdown (accuracy table and confusion matrices)."""
    lines = [
        f"Held-out examples: n = {scores['n']} (seeds from {scores['seed0']}, "
        f"{scores['duration_s']:g} s each)",
        "",
        "| task | accuracy | always the majority class |",
        "|---|---|---|",
    ]
    for name in CLASSES:
        lines.append(
            f"| {name} | {scores['accuracy'][name]:.3f} | {scores['majority_accuracy'][name]:.3f} |"
        )
    lines += [
        "",
        f"Reverb time: MAE {scores['reverb_time_mae_s']:.2f} s, median relative error "
        f"{100 * scores['reverb_time_median_relative_error']:.0f} % over the "
        f"{scores['reverb_time_n']} examples with reverb; wet share MAE "
        f"{scores['reverb_amount_mae']:.3f}.",
    ]
    for name in CLASSES:
        conf = scores["confusion"][name]
        lines += ["", f"{name} (rows: truth, columns: predicted)", ""]
        lines.append("| | " + " | ".join(conf["labels"]) + " |")
        lines.append("|---" * (len(conf["labels"]) + 1) + "|")
        for label, row in zip(conf["labels"], conf["matrix"], strict=True):
            lines.append(f"| {label} | " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m services.analyzer.production_labels {reference,train,evaluate}``."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m services.analyzer.production_labels")
    sub = parser.add_subparsers(dest="command", required=True)
    ref = sub.add_parser("reference", help="measure the tonal reference curve")
    ref.add_argument("--songs", type=int, default=100)
    ref.add_argument("--seed0", type=int, default=REFERENCE_SEED0)
    ref.add_argument("--workers", type=int, default=1)
    train = sub.add_parser("train", help="fit the models and write the weights file")
    train.add_argument("--songs", type=int, default=TRAIN_SONGS)
    train.add_argument("--seed0", type=int, default=TRAIN_SEED0)
    train.add_argument("--workers", type=int, default=1)
    train.add_argument("--out", default=str(production.WEIGHTS_PATH))
    evaluate = sub.add_parser("evaluate", help="score the shipped models on held-out songs")
    evaluate.add_argument("--songs", type=int, default=200)
    evaluate.add_argument("--seed0", type=int, default=EVAL_SEED0)
    evaluate.add_argument("--workers", type=int, default=1)
    evaluate.add_argument("--json", help="also write the scores to this file")
    args = parser.parse_args(argv)

    def progress(what: str, fraction: float) -> None:
        print(f"\r{what}: {100 * fraction:5.1f} %", end="", file=sys.stderr, flush=True)

    if args.command == "reference":
        curve = reference_curve(args.songs, seed0=args.seed0, workers=args.workers)
        print("(" + ", ".join(f"{v:.6g}" for v in curve) + ")")
    elif args.command == "train":
        payload = train_production(
            args.songs, seed0=args.seed0, workers=args.workers, out=args.out, progress=progress
        )
        print(file=sys.stderr)
        print(json.dumps(payload["training"]["train_accuracy"]))
    else:
        scores = evaluate_production(
            args.songs, seed0=args.seed0, workers=args.workers, progress=progress
        )
        print(file=sys.stderr)
        if args.json:
            Path(args.json).write_text(json.dumps(scores, indent=1) + "\n")
        print(summary_markdown(scores), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Held-out evaluation of the mix models, on parameters and on audio.

On the ``test`` split (song seeds never used in training or validation):

* **MAE** on the normalised learned parameters (:data:`~.targets.LEARNED`), overall and per
  parameter, for every model and for two references: the *mean baseline* (always predicting the
  training targets' mean) and the rule-based *strategy* (its values for the learned parameters,
  from the analysis of the degraded clip). Also the MAE over all 43 parameters, where the
  derived ones are exact by construction (reported because it is the usual figure; the learned
  one is the honest one).
* **Song-level MAE**: the same after averaging the predictions of the clips that share a song and
  a target (as the product averages a song's clips, :mod:`services.predictor.inference`); the
  per-clip MAE is the harder, single-clip figure.
* **Audio score** on a subset: ``repair_ratio`` (:mod:`.metrics`) of ``render(degraded,
  song-level prediction)`` against the clean clip, both mastered: median, 90th percentile and
  the share of items the prediction moved closer to the clean mix.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
from torch import nn

from services.analyzer.analysis import analyze
from services.common.params import BY_NAME, NAMES
from services.predictor.strategy import strategy_params
from services.predictor.training.dataset import SAMPLE_RATE, Examples, example_audio
from services.predictor.training.metrics import repair_ratio
from services.predictor.training.targets import LEARNED
from services.predictor.training.train import mae, predict
from services.renderer.chain import render_version
from services.renderer.mastering import master


@dataclass
class Scores:
    """One predictor's figures on the test split."""

    mae: float
    mae_all: float
    per_parameter: dict[str, float]
    mae_song: float = float("nan")
    per_parameter_song: dict[str, float] = field(default_factory=dict)
    ratios: list[float] = field(default_factory=list)
    inference_ms: float = 0.0

    @property
    def ratio_median(self) -> float:
        return float(np.median(self.ratios)) if self.ratios else float("nan")

    @property
    def ratio_p90(self) -> float:
        return float(np.percentile(self.ratios, 90)) if self.ratios else float("nan")

    @property
    def improved_share(self) -> float:
        return float(np.mean(np.array(self.ratios) < 1.0)) if self.ratios else float("nan")


def learned_params(normalised: np.ndarray) -> dict[str, float]:
    """Physical values of the learned parameters from their normalised prediction."""
    return {
        name: BY_NAME[name].denormalise(float(x))
        for name, x in zip(LEARNED, normalised, strict=True)
    }


def strategy_targets(test: Examples, audio: Callable[[int], tuple]) -> np.ndarray:
    """The strategy's normalised values of the learned parameters for every test example."""
    rows = []
    for i in range(len(test)):
        _, degraded, _ = audio(i)
        params = strategy_params(analyze(degraded, SAMPLE_RATE))
        rows.append([BY_NAME[n].normalise(params[n]) for n in LEARNED])
    return np.array(rows, dtype=np.float32)


def scores_for(prediction: np.ndarray, target: np.ndarray) -> Scores:
    """MAE overall, over all parameters (the derived ones exact) and per learned parameter."""
    errors = np.abs(prediction - target)
    return Scores(
        mae=float(errors.mean()),
        mae_all=float(errors.sum(axis=1).mean() / len(NAMES)),
        per_parameter={name: float(errors[:, j].mean()) for j, name in enumerate(LEARNED)},
    )


def song_average(prediction: np.ndarray, test: Examples) -> np.ndarray:
    """Each example's prediction replaced by the mean over the clips of its (song, draw)."""
    keys = test.seed * 1000 + test.draw
    _, group = np.unique(keys, return_inverse=True)
    sums = np.zeros((group.max() + 1, prediction.shape[1]), dtype=np.float64)
    np.add.at(sums, group, prediction)
    counts = np.bincount(group)[:, None]
    return (sums / counts)[group].astype(np.float32)


def audio_ratios(
    predictions: np.ndarray, test: Examples, items: np.ndarray, audio: Callable[[int], tuple]
) -> list[float]:
    """``repair_ratio`` of each item in ``items`` (indices into ``test``)."""
    ratios = []
    for i in items:
        clean, degraded, _ = audio(int(i))
        clean_m = master(clean, SAMPLE_RATE).audio
        degraded_m = master(degraded, SAMPLE_RATE).audio
        repaired = render_version(degraded, SAMPLE_RATE, learned_params(predictions[i])).audio
        ratios.append(repair_ratio(repaired, degraded_m, clean_m, SAMPLE_RATE))
    return ratios


def evaluate(
    models: Mapping[str, nn.Module],
    test: Examples,
    train_mean: np.ndarray,
    *,
    audio_items: int = 60,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> dict[str, Scores]:
    """Scores of every model, the mean baseline and the strategy on ``test``."""
    cache: dict[tuple[int, int, int], tuple] = {}

    def audio(i: int) -> tuple:
        key = (int(test.seed[i]), int(test.clip[i]), int(test.draw[i]))
        if key not in cache:
            cache[key] = example_audio(*key)
        return cache[key]

    rng = np.random.default_rng(seed)
    items = np.sort(rng.choice(len(test), size=min(audio_items, len(test)), replace=False))
    predictions: dict[str, np.ndarray] = {}
    timings: dict[str, float] = {}
    for name, model in models.items():
        start = time.perf_counter()
        predictions[name] = predict(model, test)
        timings[name] = 1000.0 * (time.perf_counter() - start) / max(1, len(test))
    predictions["mean"] = np.broadcast_to(train_mean, test.target.shape).astype(np.float32)
    if log is not None:
        log("strategy: analysing the degraded test clips")
    predictions["strategy"] = strategy_targets(test, audio)
    results: dict[str, Scores] = {}
    for name, prediction in predictions.items():
        scores = scores_for(prediction, test.target)
        song = scores_for(song_average(prediction, test), test.target)
        scores.mae_song, scores.per_parameter_song = song.mae, song.per_parameter
        scores.inference_ms = timings.get(name, 0.0)
        if log is not None:
            log(f"{name}: rendering {len(items)} items for the audio score")
        scores.ratios = audio_ratios(song_average(prediction, test), test, items, audio)
        results[name] = scores
    return results


def table(results: Mapping[str, Scores]) -> str:
    """The results as a markdown table (one row per predictor; per-parameter MAE per song)."""
    lines = [
        "| predictor | MAE learned, song | MAE learned, clip | MAE all 43 | "
        + " | ".join(n.removeprefix("eq_").removesuffix("_db") for n in LEARNED)
        + " | audio ratio median | p90 | improved | inference ms/clip |",
        "|---" * (len(LEARNED) + 8) + "|",
    ]
    for name, s in results.items():
        per = " | ".join(f"{s.per_parameter_song[n]:.4f}" for n in LEARNED)
        lines.append(
            f"| {name} | {s.mae_song:.4f} | {s.mae:.4f} | {s.mae_all:.4f} | {per} | "
            f"{s.ratio_median:.3f} | "
            f"{s.ratio_p90:.3f} | {100 * s.improved_share:.0f} % | "
            + (f"{s.inference_ms:.1f}" if s.inference_ms else "–")
            + " |"
        )
    return "\n".join(lines)


__all__ = ["Scores", "evaluate", "learned_params", "mae", "song_average", "table"]

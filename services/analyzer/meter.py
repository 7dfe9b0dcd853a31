"""Metre (3/4 or 4/4) and swing from the beat grid.

Metre
-----
A bar groups beats in threes or fours; what repeats at the bar is the accent pattern (the kick
and bass on the downbeat) and the harmony (chords change on bar lines). From the tracked beats:

- the beat-synchronous onset strength of the full band and of the low band (kick, bass), and
  the beat-to-beat chord novelty (1 - cosine similarity of consecutive beat-averaged chroma
  vectors) are each autocorrelated at lags of 3, 4, 6 and 8 beats;
- the onset envelopes' own periodicity (:class:`services.analyzer.tempo.Periodicity`) is read at
  3, 4, 6 and 8 beat periods.

These 20 numbers go into a logistic regression (``weights/meter.json``, trained by
``mixpilot train-analyzer`` on generated songs in both metres). Fewer than
:data:`MIN_BEATS` beats: ``4/4`` with confidence 0. Compound and odd metres (6/8, 5/4, 7/8) are
not modelled: they read as 3/4 or 4/4. The confidence is the classifier's probability times
``min(1, tempo_confidence / 0.3)``.

Swing
-----
The swing ratio is the share of the beat the first eighth note takes (0.5 straight, 0.67 a
triplet shuffle): between consecutive beats, the strongest onset within 30-80 % of the beat
interval marks the off-beat eighth; the ratio is the onset-strength-weighted median of its
position (parabolically interpolated) over the song. 0.5 when the off-beats carry no onsets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from services.analyzer import linear
from services.analyzer.key import Chromagram
from services.analyzer.linear import LinearModel
from services.analyzer.tempo import Periodicity, TempoEstimate, _at

METERS: tuple[str, str] = ("4/4", "3/4")
DEFAULT_METER = "4/4"
MIN_BEATS = 12
#: Metre confidence is the classifier's probability scaled by min(1, tempo confidence / this):
#: a bar is only as certain as the beat it groups.
CLEAR_BEAT = 0.3
BAR_LAGS = (3, 4, 6, 8)
#: The off-beat eighth is looked for in this part of each beat interval.
OFFBEAT_WINDOW = (0.3, 0.8)
#: Off-beat onsets weaker than this fraction of the on-beat ones do not count as eighths.
OFFBEAT_SUPPORT = 0.1
STRAIGHT = 0.5

METER_FEATURES: tuple[str, ...] = tuple(
    [f"acf_{k}_beats" for k in BAR_LAGS]
    + [f"low_acf_{k}_beats" for k in BAR_LAGS]
    + [f"chord_novelty_acf_{k}" for k in BAR_LAGS]
    + [f"low_accent_acf_{k}" for k in BAR_LAGS]
    + [f"accent_acf_{k}" for k in BAR_LAGS]
)

_EPS = 1e-12


@dataclass(frozen=True)
class MeterEstimate:
    """``meter`` is ``"4/4"`` or ``"3/4"``; ``confidence`` its probability (0 when unknown)."""

    meter: str
    confidence: float
    swing_ratio: float


def _normalised_acf(x: np.ndarray, lag: int) -> float:
    x = x - x.mean()
    energy = float(np.dot(x, x))
    if x.size <= lag or energy <= _EPS:
        return 0.0
    return float(np.dot(x[lag:], x[:-lag]) / energy)


def _beat_frames(beat: TempoEstimate, frames_per_s: float, n: int) -> np.ndarray:
    return np.clip(np.rint(beat.beat_times_s * frames_per_s).astype(np.int64), 0, n - 1)


def meter_features(p: Periodicity, beat: TempoEstimate, chroma: Chromagram) -> np.ndarray | None:
    """The :data:`METER_FEATURES` of a song, or ``None`` with fewer than :data:`MIN_BEATS`."""
    if beat.beat_times_s.size < MIN_BEATS or beat.bpm <= 0:
        return None
    lag = p.lag(beat.bpm)
    top = max(_at(p.acf, lag), _EPS)
    top_low = max(float(np.abs(p.low_acf).max(initial=0.0)), _EPS)
    frames = _beat_frames(beat, p.frames_per_s, p.onset_env.size)
    accents = p.onset_env[frames]
    low_accents = p.low_env[frames]
    c = chroma.combined
    c = c / np.maximum(c.max(axis=0, keepdims=True), _EPS)
    cf = np.clip(np.rint(beat.beat_times_s * chroma.frames_per_s).astype(np.int64), 0, c.shape[1])
    spans = [c[:, a : max(a + 1, b)].mean(axis=1) for a, b in zip(cf[:-1], cf[1:], strict=True)]
    per_beat = np.stack(spans, axis=1)
    dot = np.sum(per_beat[:, 1:] * per_beat[:, :-1], axis=0)
    norms = np.linalg.norm(per_beat[:, 1:], axis=0) * np.linalg.norm(per_beat[:, :-1], axis=0)
    novelty = 1.0 - dot / np.maximum(norms, _EPS)
    row = (
        [_at(p.acf, k * lag) / top for k in BAR_LAGS]
        + [_at(p.low_acf, k * lag) / top_low for k in BAR_LAGS]
        + [_normalised_acf(novelty, k) for k in BAR_LAGS]
        + [_normalised_acf(low_accents, k) for k in BAR_LAGS]
        + [_normalised_acf(accents, k) for k in BAR_LAGS]
    )
    return np.nan_to_num(np.array(row, dtype=np.float64))


def swing_ratio(p: Periodicity, beat: TempoEstimate) -> float:
    """Share of the beat the first eighth takes (see the module docstring), 0.5-0.75."""
    if beat.beat_times_s.size < 4:
        return STRAIGHT
    env = p.onset_env
    frames = beat.beat_times_s * p.frames_per_s
    positions, weights, on_strength = [], [], []
    for a, b in zip(frames[:-1], frames[1:], strict=True):
        lo = int(np.ceil(a + OFFBEAT_WINDOW[0] * (b - a)))
        hi = int(np.floor(a + OFFBEAT_WINDOW[1] * (b - a)))
        if hi <= lo or hi >= env.size - 1:
            continue
        i = lo + int(np.argmax(env[lo : hi + 1]))
        y0, y1, y2 = env[i - 1], env[i], env[i + 1]
        denom = y0 - 2.0 * y1 + y2
        offset = 0.5 * (y0 - y2) / denom if denom < 0 else 0.0
        positions.append((i + float(np.clip(offset, -0.5, 0.5)) - a) / (b - a))
        weights.append(float(y1))
        on_strength.append(float(env[int(round(a))]))
    if not positions:
        return STRAIGHT
    w = np.array(weights)
    if float(w.mean()) < OFFBEAT_SUPPORT * max(float(np.mean(on_strength)), _EPS):
        return STRAIGHT
    order = np.argsort(positions)
    cumulative = np.cumsum(w[order])
    median = float(np.array(positions)[order][np.searchsorted(cumulative, cumulative[-1] / 2.0)])
    return float(np.clip(median, STRAIGHT, 0.75))


def estimate_meter(
    p: Periodicity, beat: TempoEstimate, chroma: Chromagram, *, model: LinearModel | None = None
) -> MeterEstimate:
    """Metre and swing of a song (see the module docstring); ``model`` defaults to the shipped
    ``weights/meter.json``."""
    swing = swing_ratio(p, beat)
    row = meter_features(p, beat, chroma)
    if row is None:
        return MeterEstimate(DEFAULT_METER, 0.0, swing)
    prob = (linear.load("meter") if model is None else model).probabilities(row)[0]
    best = int(np.argmax(prob))
    certainty = min(1.0, beat.confidence / CLEAR_BEAT)
    return MeterEstimate(METERS[best], float(prob[best]) * certainty, swing)

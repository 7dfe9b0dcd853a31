"""Valence and danceability: two descriptive scores with no ground truth, defined here.

Neither has a measurable truth in this project (no listener ratings), so both are explicit
formulas over measured features, chosen to follow the usual meaning of the words, documented in
``docs/analysis.md`` and tested by ordering: a bright, fast, major, steady song scores higher
than a dark, slow, minor, rubato one.

**Valence** (musical positiveness, 0-1): ``0.4 M + 0.25 T + 0.2 B + 0.15 A`` with

- ``M``: the key model's probability that the key is major (0.5 when there is no key);
- ``T = clip((tempo_bpm - 60) / 120, 0, 1)``: 60 BPM or slower 0, 180 BPM or faster 1;
- ``B = clip(log2(spectral_centroid_hz / 500) / 3, 0, 1)``: brightness, 500 Hz 0, 4 kHz 1;
- ``A = 1 - exp(-onset_rate_hz / 4)``: activity.

**Danceability** (0-1): ``0.3 C + 0.25 S + 0.25 D + 0.2 P`` with

- ``C``: tempo confidence (how clear the pulse is);
- ``S = 1 - clip(cv / 0.1, 0, 1)``, ``cv`` the coefficient of variation of the inter-beat
  intervals: 1 for a steady grid, 0 when beats wander by 10 % or more (rubato);
- ``D = exp(-0.5 (log2(tempo_bpm / 118) / 0.35)^2)``: closeness to the dance-floor tempo
  (118 BPM 1, 80 or 170 BPM about 0.45);
- ``P = clip(percussive_ratio / 0.5, 0, 1)``: how much of the energy is percussive.
"""

from __future__ import annotations

import math

import numpy as np


def valence(
    *, major_probability: float, tempo_bpm: float, spectral_centroid_hz: float, onset_rate_hz: float
) -> float:
    """Musical positiveness in [0, 1] (see the module docstring)."""
    m = min(1.0, max(0.0, major_probability))
    t = min(1.0, max(0.0, (tempo_bpm - 60.0) / 120.0))
    b = 0.0
    if spectral_centroid_hz > 0:
        b = min(1.0, max(0.0, math.log2(spectral_centroid_hz / 500.0) / 3.0))
    a = 1.0 - math.exp(-max(0.0, onset_rate_hz) / 4.0)
    return 0.4 * m + 0.25 * t + 0.2 * b + 0.15 * a


def beat_steadiness(beat_times_s: np.ndarray) -> float:
    """``1 - clip(cv / 0.1, 0, 1)`` of the inter-beat intervals; 0 with fewer than 4 beats."""
    if beat_times_s.size < 4:
        return 0.0
    intervals = np.diff(beat_times_s)
    mean = float(intervals.mean())
    if mean <= 0:
        return 0.0
    cv = float(intervals.std()) / mean
    return 1.0 - min(1.0, max(0.0, cv / 0.1))


def danceability(
    *,
    tempo_confidence: float,
    beat_times_s: np.ndarray,
    tempo_bpm: float,
    percussive_ratio: float,
) -> float:
    """How suitable for dancing, in [0, 1] (see the module docstring)."""
    c = min(1.0, max(0.0, tempo_confidence))
    s = beat_steadiness(beat_times_s)
    d = math.exp(-0.5 * (math.log2(max(tempo_bpm, 1.0) / 118.0) / 0.35) ** 2)
    p = min(1.0, max(0.0, percussive_ratio / 0.5))
    return 0.3 * c + 0.25 * s + 0.25 * d + 0.2 * p

"""Genre: a hand-written rule-based heuristic over a few analysis features.

Issue 5 replaces it with a classifier trained on generated songs; nothing here was fit
to data. Each genre has a hand-set typical value (:data:`TYPICAL`) and spread (:data:`SPREAD`)
for seven features; a song's score for a genre is the sum over the features of ``-0.5 * z**2``,
``z = (value - typical) / spread`` (a naive-Bayes log-likelihood with Gaussian features and equal
genre priors). Probabilities are ``softmax(score / TEMPERATURE)``; the genre is the argmax.

Features (as computed by :mod:`services.analyzer.features` and :mod:`services.analyzer.tempo`):
``tempo_octaves`` = log2(tempo_bpm / 120), ``tempo_confidence``, ``onset_rate_hz``,
``percussive_ratio``, ``centroid_octaves`` = log2(spectral_centroid_hz / 1000),
``low_band_share`` and ``crest_factor_db``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from services.common.errors import InvalidParameterError

Genre = Literal["pop", "rock", "electronic", "jazz", "ballad"]
GENRES: tuple[Genre, ...] = ("pop", "rock", "electronic", "jazz", "ballad")
METHOD_HEURISTIC = "heuristic"
METHOD_OVERRIDE = "override"
#: Softmax temperature: higher spreads probability over more genres.
TEMPERATURE = 2.0

#: Feature names the heuristic reads, in :data:`TYPICAL` column order.
HEURISTIC_FEATURES: tuple[str, ...] = (
    "tempo_octaves",
    "tempo_confidence",
    "onset_rate_hz",
    "percussive_ratio",
    "centroid_octaves",
    "low_band_share",
    "crest_factor_db",
)

#: Typical value of each feature per genre, columns as :data:`HEURISTIC_FEATURES`:
#: tempo octaves, tempo confidence, onsets/s, percussive ratio, centroid octaves, low-band share,
#: crest factor dB.
TYPICAL: dict[Genre, tuple[float, ...]] = {
    "pop": (-0.13, 0.60, 3.0, 0.35, 1.00, 0.40, 11.0),
    "rock": (0.06, 0.55, 3.8, 0.38, 1.50, 0.30, 11.0),
    "electronic": (0.07, 0.75, 3.5, 0.45, 1.10, 0.55, 10.0),
    "jazz": (0.00, 0.40, 3.5, 0.30, 0.58, 0.25, 15.0),
    "ballad": (-0.74, 0.45, 1.8, 0.18, 0.26, 0.30, 14.0),
}
#: Spread (the Gaussian's standard deviation) of each feature per genre, same columns.
SPREAD: dict[Genre, tuple[float, ...]] = {
    "pop": (0.35, 0.25, 1.2, 0.12, 0.50, 0.15, 3.5),
    "rock": (0.35, 0.25, 1.3, 0.12, 0.50, 0.15, 3.5),
    "electronic": (0.25, 0.20, 1.5, 0.12, 0.60, 0.15, 3.5),
    "jazz": (0.50, 0.25, 1.5, 0.12, 0.50, 0.15, 4.0),
    "ballad": (0.30, 0.25, 1.0, 0.10, 0.50, 0.15, 4.0),
}


@dataclass(frozen=True)
class GenreEstimate:
    """Result of :func:`classify`.

    Attributes
    ----------
    genre : str
        One of :data:`GENRES`.
    method : str
        ``"heuristic"``, or ``"override"`` when the caller named the genre.
    probabilities : dict[str, float]
        Heuristic probability of every genre (sums to 1), also when overridden.
    """

    genre: Genre
    method: str
    probabilities: dict[str, float] = field(repr=False)


def validate_genre(name: str) -> Genre:
    """Return ``name`` as a genre, or raise :class:`InvalidParameterError`.

    Matching is exact (lower case, no surrounding spaces), as the report spells genres.
    """
    for g in GENRES:
        if name == g:
            return g
    raise InvalidParameterError(f"genre {name!r} is not one of {', '.join(GENRES)}")


def heuristic_inputs(
    *,
    tempo_bpm: float,
    tempo_confidence: float,
    onset_rate_hz: float,
    percussive_ratio: float,
    spectral_centroid_hz: float,
    low_band_share: float,
    crest_factor_db: float,
) -> dict[str, float]:
    """The :data:`HEURISTIC_FEATURES` from analysis values with units."""
    return {
        "tempo_octaves": math.log2(max(tempo_bpm, 1.0) / 120.0),
        "tempo_confidence": tempo_confidence,
        "onset_rate_hz": onset_rate_hz,
        "percussive_ratio": percussive_ratio,
        "centroid_octaves": math.log2(max(spectral_centroid_hz, 20.0) / 1000.0),
        "low_band_share": low_band_share,
        "crest_factor_db": crest_factor_db,
    }


def genre_scores(inputs: Mapping[str, float]) -> dict[str, float]:
    """Log-likelihood score of each genre (higher is more likely).

    Parameters
    ----------
    inputs : Mapping[str, float]
        Every name in :data:`HEURISTIC_FEATURES` (see :func:`heuristic_inputs`).
    """
    x = np.array([float(inputs[name]) for name in HEURISTIC_FEATURES])
    scores: dict[str, float] = {}
    for g in GENRES:
        z = (x - np.array(TYPICAL[g])) / np.array(SPREAD[g])
        scores[g] = float(-0.5 * np.dot(z, z))
    return scores


def probabilities(scores: Mapping[str, float]) -> dict[str, float]:
    """``softmax(score / TEMPERATURE)`` over :data:`GENRES`."""
    s = np.array([scores[g] for g in GENRES]) / TEMPERATURE
    e = np.exp(s - s.max())
    p = e / e.sum()
    return {g: float(v) for g, v in zip(GENRES, p, strict=True)}


def classify(inputs: Mapping[str, float], *, override: str | None = None) -> GenreEstimate:
    """Genre of a song from its :data:`HEURISTIC_FEATURES`.

    Parameters
    ----------
    inputs : Mapping[str, float]
        See :func:`heuristic_inputs`.
    override : str, optional
        A genre the caller already knows; validated, then returned with method ``"override"``.

    Raises
    ------
    InvalidParameterError
        ``override`` is not one of :data:`GENRES`.
    """
    forced = validate_genre(override) if override is not None else None
    probs = probabilities(genre_scores(inputs))
    if forced is not None:
        return GenreEstimate(forced, METHOD_OVERRIDE, probs)
    best = max(GENRES, key=lambda g: probs[g])
    return GenreEstimate(best, METHOD_HEURISTIC, probs)


def table_markdown() -> str:
    """The heuristic's profile table for docs/analysis.md (generated, so it cannot drift)."""
    header = "| genre | " + " | ".join(f"`{f}`" for f in HEURISTIC_FEATURES) + " |"
    rows = [header, "|---" * (len(HEURISTIC_FEATURES) + 1) + "|"]
    for g in GENRES:
        cells = [f"{t:g} ± {s:g}" for t, s in zip(TYPICAL[g], SPREAD[g], strict=True)]
        rows.append(f"| {g} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"

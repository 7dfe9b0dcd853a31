"""The plain librosa analysis the evaluation compares the analyzer with.

This is what a first attempt with librosa looks like, used as documented and nothing more:

- tempo: ``librosa.beat.beat_track`` on the mono 22050 Hz signal (default onset envelope,
  default 120 BPM prior);
- key: the mean of ``librosa.feature.chroma_cqt`` over time, correlated with the 24 rotated
  Krumhansl-Kessler profiles (Krumhansl-Schmuckler), the best correlation wins.

- genre: the hand-written rule of thumb the analyzer used before its trained classifier (naive
  Bayes with hand-set Gaussian features: each genre's typical value and spread of seven
  features, equal priors, softmax at temperature 2).

It exists only to be measured against (``mixpilot evaluate-analysis``); the service never runs it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import librosa
import numpy as np

from services.analyzer.features import ANALYSIS_SR, analysis_mono
from services.analyzer.genre import GENRES, Genre
from services.analyzer.key import MODES, key_name

#: Krumhansl & Kessler (1982) probe-tone profiles, tonic = C.
KRUMHANSL_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KRUMHANSL_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def baseline_tempo(y: np.ndarray, sr: int = ANALYSIS_SR) -> float:
    """``librosa.beat.beat_track`` tempo, BPM."""
    tempo, _ = librosa.beat.beat_track(y=y, sr=sr)
    return float(np.atleast_1d(tempo)[0])


def baseline_key(y: np.ndarray, sr: int = ANALYSIS_SR) -> str:
    """Krumhansl-Schmuckler on the mean ``chroma_cqt``: ``"A minor"`` etc."""
    chroma = librosa.feature.chroma_cqt(y=y, sr=sr).mean(axis=1)
    corr = np.array(
        [
            [np.corrcoef(chroma, np.roll(profile, k))[0, 1] for k in range(12)]
            for profile in (KRUMHANSL_MAJOR, KRUMHANSL_MINOR)
        ]
    )
    corr = np.nan_to_num(corr, nan=-1.0)
    m, k = np.unravel_index(int(np.argmax(corr)), corr.shape)
    return key_name(tonic=int(k), mode=MODES[int(m)])


def baseline_analysis(audio: np.ndarray, sample_rate: int) -> dict[str, float | str]:
    """Tempo and key of ``audio`` (channels, frames) the plain librosa way."""
    y = analysis_mono(audio, sample_rate)
    return {"tempo_bpm": baseline_tempo(y), "key": baseline_key(y)}


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


def baseline_genre(inputs: Mapping[str, float]) -> str:
    """The heuristic's genre for its :data:`HEURISTIC_FEATURES` (see :func:`heuristic_inputs`)."""
    p = probabilities(genre_scores(inputs))
    return max(GENRES, key=lambda g: p[g])


def baseline_genre_of(analysis: object) -> str:
    """The heuristic's genre for an analysis message."""
    f = analysis.features  # type: ignore[attr-defined]
    return baseline_genre(
        heuristic_inputs(
            tempo_bpm=analysis.tempo_bpm,  # type: ignore[attr-defined]
            tempo_confidence=analysis.tempo_confidence,  # type: ignore[attr-defined]
            onset_rate_hz=f["onset_rate_hz"],
            percussive_ratio=f["percussive_ratio"],
            spectral_centroid_hz=analysis.spectral_centroid_hz,  # type: ignore[attr-defined]
            low_band_share=f["low_band_share"],
            crest_factor_db=analysis.crest_factor_db,  # type: ignore[attr-defined]
        )
    )

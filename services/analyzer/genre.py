"""Genre: a logistic-regression classifier over analysis features, trained on generated songs.

The five genres are the song generator's (:mod:`services.predictor.songgen`): pop, rock,
electronic, jazz and ballad, as that generator writes, orchestrates and mixes them with a
General MIDI soundfont. The classifier (``weights/genre.json``, trained by
``mixpilot train-analyzer``) has seen nothing else: it tells which of these five a song most
resembles, from its tempo, metre and swing, rhythm density, spectrum, timbre and stereo image.
On commercial recordings, other genres and other instrumentation it is an educated guess;
``genre_override`` is there for users who know better.

Inputs (:data:`GENRE_FEATURES`): tempo (octaves from 120 BPM) and its confidence, probability
of 3/4, swing ratio, onsets per second, percussive ratio, probability of a minor key, spectral
centroid (octaves from 1 kHz), low- and high-band shares, spectral flatness, crest factor,
stereo width and L/R correlation, and the song's timbre: the mean log power of 16 groups of
8 mel bands relative to their average (the spectral envelope), and the standard deviation over
time of 8 groups of 16 bands (how much each region moves).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from services.analyzer import linear
from services.analyzer.linear import LinearModel
from services.common.errors import InvalidParameterError

Genre = Literal["pop", "rock", "electronic", "jazz", "ballad"]
GENRES: tuple[Genre, ...] = ("pop", "rock", "electronic", "jazz", "ballad")
METHOD_CLASSIFIER = "classifier"
METHOD_OVERRIDE = "override"

#: Timbre groups: mean log power of 16 x 8 mel bands, spread over time of 8 x 16.
ENVELOPE_GROUPS = 16
MOTION_GROUPS = 8
#: Frames quieter than this (relative to the loudest) are left out of the timbre statistics.
QUIET_DB = -60.0

SCALAR_FEATURES: tuple[str, ...] = (
    "tempo_octaves",
    "tempo_confidence",
    "meter_3_4_probability",
    "swing_ratio",
    "onsets_per_s",
    "percussive_ratio",
    "minor_probability",
    "centroid_octaves",
    "low_band_share",
    "high_band_share",
    "spectral_flatness",
    "crest_factor_db",
    "stereo_width",
    "lr_correlation",
)
GENRE_FEATURES: tuple[str, ...] = (
    SCALAR_FEATURES
    + tuple(f"envelope_{i}" for i in range(ENVELOPE_GROUPS))
    + tuple(f"motion_{i}" for i in range(MOTION_GROUPS))
)

_EPS = 1e-12


@dataclass(frozen=True)
class GenreEstimate:
    """Result of :func:`classify`.

    Attributes
    ----------
    genre : str
        One of :data:`GENRES`.
    method : str
        ``"classifier"``, or ``"override"`` when the caller named the genre.
    probabilities : dict[str, float]
        The classifier's probability of every genre (sums to 1), also when overridden.
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


def timbre(mel_power: np.ndarray) -> np.ndarray:
    """Spectral envelope and motion of a mel power spectrogram (128 bands), shape (24,).

    Level-independent: a gain shifts every log power alike, and the envelope is relative to
    its own mean.
    """
    n_mels, frames = mel_power.shape
    out = np.zeros(ENVELOPE_GROUPS + MOTION_GROUPS)
    if frames == 0 or float(mel_power.max(initial=0.0)) <= _EPS:
        return out
    db = 10.0 * np.log10(np.maximum(mel_power, _EPS * float(mel_power.max())))
    frame_db = 10.0 * np.log10(np.maximum(mel_power.sum(axis=0), _EPS))
    keep = frame_db > frame_db.max() + QUIET_DB
    db = db[:, keep]
    envelope = db.reshape(ENVELOPE_GROUPS, n_mels // ENVELOPE_GROUPS, -1).mean(axis=(1, 2))
    out[:ENVELOPE_GROUPS] = envelope - envelope.mean()
    motion = db.reshape(MOTION_GROUPS, n_mels // MOTION_GROUPS, -1).mean(axis=1).std(axis=1)
    out[ENVELOPE_GROUPS:] = motion
    return out


def genre_inputs(scalars: Mapping[str, float], timbre_row: np.ndarray) -> np.ndarray:
    """The classifier's input row: :data:`SCALAR_FEATURES` from ``scalars`` (analysis values
    with units: ``tempo_bpm``, ``spectral_centroid_hz`` and the rest by name), then the
    :func:`timbre` row."""
    values = dict(scalars)
    values["tempo_octaves"] = math.log2(max(values.pop("tempo_bpm"), 1.0) / 120.0)
    values["centroid_octaves"] = math.log2(max(values.pop("spectral_centroid_hz"), 20.0) / 1000.0)
    values["stereo_width"] = min(values["stereo_width"], 4.0)
    row = [float(values[name]) for name in SCALAR_FEATURES]
    return np.nan_to_num(np.concatenate([row, timbre_row]))


def classify(
    row: np.ndarray, *, override: str | None = None, model: LinearModel | None = None
) -> GenreEstimate:
    """Genre of a song from its :func:`genre_inputs` row.

    Raises
    ------
    InvalidParameterError
        ``override`` is not one of :data:`GENRES`.
    """
    forced = validate_genre(override) if override is not None else None
    clf = linear.load("genre") if model is None else model
    p = clf.probabilities(row)[0]
    probs: dict[str, float] = {g: float(p[clf.classes.index(g)]) for g in GENRES}
    if forced is not None:
        return GenreEstimate(forced, METHOD_OVERRIDE, probs)
    best = max(GENRES, key=lambda g: probs[g])
    return GenreEstimate(best, METHOD_CLASSIFIER, probs)

"""Musical key from a long-term chroma vector and the Krumhansl-Kessler key profiles.

Method
------
1. Tuning: the deviation from A440 equal temperament, from the strongest spectral peaks
   (:func:`estimate_tuning`), so a band tuned to A = 432 Hz still reads in the right key.
2. Chroma: ``librosa.feature.chroma_cqt`` of the 22050 Hz mono analysis signal (constant-Q
   transform, 36 bins per octave from C1 over 7 octaves, shifted by the tuning, hop 2048 =
   93 ms), without per-frame normalisation, summed over the song: loud passages weigh more than
   quiet ones.
3. Profiles: the Krumhansl-Kessler (1982) probe-tone ratings for C major and C minor, rotated to
   the 12 tonics: 24 templates.
4. Score: Pearson correlation between the chroma vector and each template; the key is the best
   template, named tonic + ``" major"``/``" minor"`` with :data:`TONICS` spellings.
5. Confidence in [0, 1], the product of three factors: the fit ``clip(r_best, 0, 1)``; the
   margin ``clip((r_best - r_second) / MARGIN_SCALE, 0, 1)`` over the runner-up (often the
   relative or parallel key), ``MARGIN_SCALE = 0.15``; and the tonality
   ``clip(cv / TONALITY_SCALE, 0, 1)``, where ``cv`` is the chroma's coefficient of variation
   (std / mean; about 0.03 for white noise, 0.9 for a chord progression) and
   ``TONALITY_SCALE = 0.5``. Noise, clicks and silence therefore score near 0.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import librosa
import numpy as np

#: Pitch-class spellings used in key names (index 0 = C).
TONICS: tuple[str, ...] = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
MODES: tuple[str, str] = ("major", "minor")

#: Krumhansl & Kessler (1982) probe-tone profiles, tonic = C.
KRUMHANSL_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KRUMHANSL_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])

CHROMA_HOP = 2048
BINS_PER_OCTAVE = 36
#: Shorter signals are zero-padded to this length before the CQT (about 11.9 s at 22050 Hz).
MIN_CHROMA_SAMPLES = 2**18
MARGIN_SCALE = 0.15
TONALITY_SCALE = 0.5
#: Reported when the chroma carries no pitch information (confidence 0).
DEFAULT_KEY = "C major"

_EPS = 1e-10


@dataclass(frozen=True)
class KeyEstimate:
    """Result of :func:`estimate_key`.

    Attributes
    ----------
    key : str
        ``"<tonic> <mode>"``, e.g. ``"F# minor"``.
    confidence : float
        0..1, see the module docstring.
    correlations : np.ndarray, shape (2, 12)
        Pearson correlation with each template: row 0 major, row 1 minor; column = tonic index
        into :data:`TONICS`.
    chroma : np.ndarray, shape (12,)
        Long-term chroma vector (sums to 1; zeros when there is no pitched energy).
    tuning_cents : float
        Estimated deviation from A440 equal temperament, -50..50 cents (0 when unknown).
    """

    key: str
    confidence: float
    correlations: np.ndarray = field(repr=False)
    chroma: np.ndarray = field(repr=False)
    tuning_cents: float = 0.0


def key_name(*, tonic: int, mode: str) -> str:
    """``key_name(tonic=9, mode="minor") == "A minor"``."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    return f"{TONICS[tonic % 12]} {mode}"


def _templates() -> np.ndarray:
    """Shape (2, 12, 12): mode, tonic, pitch class."""
    out = np.empty((2, 12, 12))
    for m, profile in enumerate((KRUMHANSL_MAJOR, KRUMHANSL_MINOR)):
        for tonic in range(12):
            out[m, tonic] = np.roll(profile, tonic)
    return out


_TEMPLATES = _templates()


def estimate_tuning(*, magnitude: np.ndarray, sr: int) -> float:
    """Deviation of the song's tuning from A440 equal temperament, in semitones.

    As ``librosa.estimate_tuning`` (parabolic-interpolated spectral peaks between 150 and
    4000 Hz, the stronger half of them, folded onto the semitone grid), but 0 (A440 assumed)
    instead of a warning when there are no such peaks, and from an STFT already computed.
    librosa's ``chroma_cqt`` default folds onto its 1/3-semitone CQT bins instead, which leaves
    up to 17 cents of detuning uncorrected; A = 432 Hz (-32 cents) costs it half its key
    confidence.

    Parameters
    ----------
    magnitude : np.ndarray, shape (1 + n_fft // 2, t)
        STFT magnitude.
    sr : int

    Returns
    -------
    float
        In [-0.5, 0.5): -0.317 for A = 432 Hz.
    """
    pitch, mag = librosa.piptrack(S=magnitude, sr=sr)
    mask = pitch > 0
    if not mask.any():
        return 0.0
    strong = pitch[(mag >= np.median(mag[mask])) & mask]
    if strong.size == 0:
        return 0.0
    return float(librosa.pitch_tuning(strong, bins_per_octave=12))


def long_term_chroma(*, y: np.ndarray, sr: int, tuning_semitones: float = 0.0) -> np.ndarray:
    """Energy-weighted long-term chroma of ``y``.

    Parameters
    ----------
    y : np.ndarray, shape (n,)
        Mono signal.
    sr : int
    tuning_semitones : float
        Tuning deviation from A440 (see :func:`estimate_tuning`).

    Returns
    -------
    np.ndarray, shape (12,)
        Index 0 = C. Normalised to sum 1, or all zeros for a signal without pitched energy.
    """
    if y.size < MIN_CHROMA_SAMPLES:
        # The lowest CQT octaves need long frames; silence appended to a short signal adds
        # nothing to the summed chroma but keeps librosa from running out of signal.
        y = np.pad(y, (0, MIN_CHROMA_SAMPLES - y.size))
    chroma = librosa.feature.chroma_cqt(
        y=y,
        sr=sr,
        hop_length=CHROMA_HOP,
        norm=None,
        tuning=tuning_semitones * BINS_PER_OCTAVE / 12.0,  # librosa wants CQT bins
        bins_per_octave=BINS_PER_OCTAVE,
    )
    total = chroma.sum(axis=1, dtype=np.float64)
    s = float(total.sum())
    if not np.isfinite(s) or s <= _EPS:
        return np.zeros(12)
    return total / s


def key_from_chroma(chroma: np.ndarray) -> KeyEstimate:
    """Best of the 24 Krumhansl-Kessler keys for a long-term chroma vector.

    Parameters
    ----------
    chroma : np.ndarray, shape (12,)
        Index 0 = C.

    Returns
    -------
    KeyEstimate
    """
    c = np.asarray(chroma, dtype=np.float64).reshape(12)
    if not np.all(np.isfinite(c)) or float(c.std()) <= _EPS * max(1.0, float(np.abs(c).max())):
        return KeyEstimate(DEFAULT_KEY, 0.0, np.zeros((2, 12)), np.zeros(12))
    cz = (c - c.mean()) / c.std()
    t = _TEMPLATES
    tz = (t - t.mean(axis=-1, keepdims=True)) / t.std(axis=-1, keepdims=True)
    corr = np.einsum("mkp,p->mk", tz, cz) / 12.0
    order = np.argsort(corr, axis=None)[::-1]
    best_m, best_k = np.unravel_index(order[0], corr.shape)
    r1 = float(corr.flat[order[0]])
    r2 = float(corr.flat[order[1]])
    fit = min(1.0, max(0.0, r1))
    margin = min(1.0, max(0.0, (r1 - r2) / MARGIN_SCALE))
    tonality = min(1.0, float(c.std() / max(abs(float(c.mean())), _EPS)) / TONALITY_SCALE)
    confidence = fit * margin * tonality
    name = key_name(tonic=int(best_k), mode=MODES[int(best_m)])
    return KeyEstimate(name, float(confidence), corr, c)


def estimate_key(*, y: np.ndarray, sr: int, magnitude: np.ndarray | None = None) -> KeyEstimate:
    """Musical key of a mono signal.

    Parameters
    ----------
    y : np.ndarray, shape (n,)
        Mono signal (the 22050 Hz analysis downmix).
    sr : int
    magnitude : np.ndarray, shape (1025, t), optional
        STFT magnitude of ``y`` (n_fft 2048) for the tuning estimate; computed when omitted.

    Returns
    -------
    KeyEstimate
    """
    if magnitude is None:
        magnitude = np.abs(librosa.stft(y, n_fft=2048))
    tuning = estimate_tuning(magnitude=magnitude, sr=sr)
    estimate = key_from_chroma(long_term_chroma(y=y, sr=sr, tuning_semitones=tuning))
    return dataclasses.replace(estimate, tuning_cents=100.0 * tuning)

"""Musical key from treble and bass chroma and learned key profiles.

Method
------
1. Tuning: the deviation from A440 equal temperament, from the strongest spectral peaks
   (:func:`estimate_tuning`), so a band tuned to A = 432 Hz still reads in the right key.
2. Chroma (:func:`chromagram`): one constant-Q transform of the 22050 Hz mono analysis signal
   (36 bins per octave from C1 over 7 octaves, shifted by the tuning, hop 2048 = 93 ms), folded
   onto the 12 pitch classes twice: the lowest two octaves (C1-B2, the bass line and the kick's
   pitch) as the **bass chroma**, the rest as the **treble chroma**. Harmony and bass carry
   different evidence: the bass dwells on the tonic and the fifth, the chords on the scale.
3. Summary (:func:`chroma_summary`): each frame scaled to a maximum of 1 (so loud passages do
   not outvote the rest, and the drums' broadband frames count as flat), quiet frames dropped,
   averaged over the song; treble and bass each scaled to sum 1: 24 numbers.
4. Profiles (:class:`KeyProfiles`, ``weights/key.json``): one treble and one bass profile per
   mode, learned by maximum likelihood from generated songs in all 24 keys
   (``mixpilot train-analyzer``; real General MIDI instrument samples rendered by FluidSynth)
   instead of the Krumhansl-Kessler probe-tone ratings, which were measured on listeners and
   confuse relative and dominant keys on band material. The score of a key is its mode's
   profiles dotted with the summary rotated to its tonic; a softmax over the 24 scores gives
   each key's probability. The same profiles serve every tonic, so the model is exactly
   transposition-invariant.
5. Confidence: the probability of the chosen key times the tonality
   ``clip(cv / TONALITY_SCALE, 0, 1)``, where ``cv`` is the treble chroma's coefficient of
   variation (std / mean; about 0.03 for white noise, near 1 for a chord progression) and
   ``TONALITY_SCALE = 0.5``. Noise, clicks and silence therefore score near 0.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from pathlib import Path

import librosa
import numpy as np

from services.analyzer.features import ANALYSIS_SR
from services.analyzer.linear import read_weights

#: Pitch-class spellings used in key names (index 0 = C).
TONICS: tuple[str, ...] = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
MODES: tuple[str, str] = ("major", "minor")

CHROMA_HOP = 2048
#: Frames of the STFT the tuning estimate reads: every 4th.
TUNING_FRAME_STEP = 4
BINS_PER_OCTAVE = 36
#: Shorter signals are zero-padded to this length before the CQT (about 11.9 s at 22050 Hz).
MIN_CHROMA_SAMPLES = 2**18
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
    probabilities : np.ndarray, shape (2, 12)
        The key model's probability of each key: row 0 major, row 1 minor; column = tonic
        index into :data:`TONICS` (zeros when there is no pitched energy).
    chroma : np.ndarray, shape (12,)
        Mean treble chroma (sums to 1; zeros when there is no pitched energy).
    tuning_cents : float
        Estimated deviation from A440 equal temperament, -50..50 cents (0 when unknown).
    """

    key: str
    confidence: float
    probabilities: np.ndarray = field(repr=False)
    chroma: np.ndarray = field(repr=False)
    tuning_cents: float = 0.0


def key_name(*, tonic: int, mode: str) -> str:
    """``key_name(tonic=9, mode="minor") == "A minor"``."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    return f"{TONICS[tonic % 12]} {mode}"


def estimate_tuning(*, magnitude: np.ndarray, sr: int) -> float:
    """Deviation of the song's tuning from A440 equal temperament, in semitones.

    As ``librosa.estimate_tuning`` (parabolic-interpolated spectral peaks between 150 and
    4000 Hz, the stronger half of them, folded onto the semitone grid; every 4th frame), but
    0 (A440 assumed) instead of a warning when there are no such peaks, and from an STFT
    already computed.
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
    # Tuning is a property of the whole song: every TUNING_FRAME_STEP-th frame (about 93 ms
    # apart) gives the same estimate at a quarter of the cost.
    pitch, mag = librosa.piptrack(S=magnitude[:, ::TUNING_FRAME_STEP], sr=sr)
    mask = pitch > 0
    if not mask.any():
        return 0.0
    strong = pitch[(mag >= np.median(mag[mask])) & mask]
    if strong.size == 0:
        return 0.0
    return float(librosa.pitch_tuning(strong, bins_per_octave=12))


#: CQT range of the chroma: C1 (32.7 Hz) up over :data:`N_OCTAVES` octaves.
CQT_FMIN_HZ = 32.703195662574764
N_OCTAVES = 7
#: The lowest two octaves (C1-B2, 33-123 Hz) make the bass chroma, the rest the treble chroma.
BASS_OCTAVES = 2
#: Frames quieter than this fraction of the loudest are left out of the mean chroma.
QUIET_FRAME = 1e-3
#: Names of the :func:`chroma_summary` columns.
SUMMARY_FEATURES: tuple[str, ...] = tuple(
    f"{part}_{pc}" for part in ("treble", "bass") for pc in range(12)
)


@dataclass(frozen=True)
class Chromagram:
    """Treble and bass chroma frames of a song, hop :data:`CHROMA_HOP`.

    Attributes
    ----------
    treble, bass : np.ndarray, shape (12, t)
        Magnitude folded onto pitch classes (index 0 = C): C3 and above, and C1-B2.
    tuning_cents : float
    """

    treble: np.ndarray = field(repr=False)
    bass: np.ndarray = field(repr=False)
    tuning_cents: float = 0.0

    @property
    def frames_per_s(self) -> float:
        return ANALYSIS_SR / CHROMA_HOP

    @property
    def combined(self) -> np.ndarray:
        """Treble plus bass, shape (12, t)."""
        return self.treble + self.bass


@functools.lru_cache(maxsize=4)
def _fold(n_bins: int) -> np.ndarray:
    return librosa.filters.cq_to_chroma(
        n_bins, bins_per_octave=BINS_PER_OCTAVE, n_chroma=12, fmin=CQT_FMIN_HZ
    )


def chromagram(*, y: np.ndarray, sr: int, tuning_semitones: float = 0.0) -> Chromagram:
    """Constant-Q chroma of ``y``, split into treble and bass.

    Parameters
    ----------
    y : np.ndarray, shape (n,)
        Mono signal at :data:`ANALYSIS_SR`.
    sr : int
    tuning_semitones : float
        Tuning deviation from A440 (see :func:`estimate_tuning`).
    """
    if y.size < MIN_CHROMA_SAMPLES:
        # The lowest CQT octaves need long frames; silence appended to a short signal adds
        # nothing to the chroma but keeps librosa from running out of signal.
        y = np.pad(y, (0, MIN_CHROMA_SAMPLES - y.size))
    n_bins = N_OCTAVES * BINS_PER_OCTAVE
    cqt = np.abs(
        librosa.cqt(
            y,
            sr=sr,
            hop_length=CHROMA_HOP,
            fmin=CQT_FMIN_HZ,
            n_bins=n_bins,
            bins_per_octave=BINS_PER_OCTAVE,
            tuning=tuning_semitones * BINS_PER_OCTAVE / 12.0,  # librosa wants CQT bins
        )
    )
    fold = _fold(n_bins)
    split = BASS_OCTAVES * BINS_PER_OCTAVE
    return Chromagram(
        treble=fold[:, split:] @ cqt[split:],
        bass=fold[:, :split] @ cqt[:split],
        tuning_cents=100.0 * tuning_semitones,
    )


def _mean_profile(frames: np.ndarray) -> np.ndarray:
    """Mean of the frames, each scaled to a maximum of 1, over frames that are not quiet; then
    normalised to sum 1 (zeros when there is nothing)."""
    energy = frames.sum(axis=0)
    top = float(energy.max(initial=0.0))
    if top <= _EPS:
        return np.zeros(12)
    keep = energy > QUIET_FRAME * top
    scaled = frames[:, keep] / np.maximum(frames[:, keep].max(axis=0, keepdims=True), _EPS)
    v = scaled.mean(axis=1, dtype=np.float64)
    total = float(v.sum())
    return v / total if total > _EPS else np.zeros(12)


def chroma_summary(chroma: Chromagram) -> np.ndarray:
    """The key model's input: mean treble and mean bass chroma (each frame scaled to a maximum
    of 1, then each mean scaled to sum 1), shape (24,)."""
    return np.concatenate([_mean_profile(chroma.treble), _mean_profile(chroma.bass)])


def rotations(summary: np.ndarray) -> np.ndarray:
    """``summary`` (24,) seen from each of the 12 tonics: row ``k`` has pitch class ``k`` moved
    to index 0 in both the treble and the bass half. Shape (12, 24)."""
    out = np.empty((12, summary.size))
    for k in range(12):
        out[k] = np.concatenate([np.roll(summary[12 * g : 12 * g + 12], -k) for g in range(2)])
    return out


@dataclass(frozen=True)
class KeyProfiles:
    """Learned key profiles: the score of key (tonic ``k``, mode ``m``) is
    ``weights[m] . rotations(summary)[k] + bias[m]``, a 24-way softmax.

    ``weights`` has shape (2, 24): one treble and one bass profile per mode, tonic at index 0.
    """

    weights: np.ndarray
    bias: np.ndarray
    meta: dict

    def scores(self, summary: np.ndarray) -> np.ndarray:
        """Shape (2, 12): mode, tonic."""
        return np.einsum("md,kd->mk", self.weights, rotations(summary)) + self.bias[:, None]

    def to_json(self) -> dict:
        return {
            "schema": KEY_SCHEMA,
            "weights": self.weights.tolist(),
            "bias": self.bias.tolist(),
            "meta": self.meta,
        }


KEY_SCHEMA = "mixpilot.analyzer-key/1"
KEY_WEIGHTS = Path(__file__).resolve().parent / "weights" / "key.json"


@functools.lru_cache(maxsize=2)
def load_profiles(path: Path = KEY_WEIGHTS) -> KeyProfiles:
    """The shipped key profiles (``weights/key.json``)."""
    data = read_weights(path, KEY_SCHEMA)
    return KeyProfiles(
        np.asarray(data["weights"], dtype=np.float64).reshape(2, 24),
        np.asarray(data["bias"], dtype=np.float64).reshape(2),
        data.get("meta", {}),
    )


def fit_profiles(summaries: np.ndarray, keys: list[str], *, l2: float, meta: dict) -> KeyProfiles:
    """Learn :class:`KeyProfiles` by maximum likelihood (L-BFGS, L2 penalty ``l2``).

    The model is the same for every tonic (the profiles are rotated), so it needs no
    transposed copies of the songs.
    """
    import scipy.optimize

    feats = np.stack([rotations(s) for s in summaries])  # (n, 12, 24)
    n = feats.shape[0]
    labels = np.array([MODES.index(k.split()[1]) * 12 + TONICS.index(k.split()[0]) for k in keys])

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        weights = w[:48].reshape(2, 24)
        bias = np.array([0.0, w[48]])
        s = (np.einsum("nkd,md->nmk", feats, weights) + bias[None, :, None]).reshape(n, 24)
        s -= s.max(axis=1, keepdims=True)
        p = np.exp(s)
        p /= p.sum(axis=1, keepdims=True)
        value = -float(np.log(p[np.arange(n), labels] + 1e-300).mean()) + l2 * float(
            (weights**2).sum()
        )
        g = p
        g[np.arange(n), labels] -= 1.0
        g = (g / n).reshape(n, 2, 12)
        grad_w = np.einsum("nmk,nkd->md", g, feats) + 2.0 * l2 * weights
        return value, np.concatenate([grad_w.ravel(), [g[:, 1].sum()]])

    result = scipy.optimize.minimize(loss, np.zeros(49), jac=True, method="L-BFGS-B")
    return KeyProfiles(result.x[:48].reshape(2, 24), np.array([0.0, result.x[48]]), meta)


def key_from_summary(summary: np.ndarray, profiles: KeyProfiles | None = None) -> KeyEstimate:
    """The most probable of the 24 keys for a :func:`chroma_summary`.

    Confidence is the model's probability of the key it names, times the tonality
    ``clip(cv / TONALITY_SCALE, 0, 1)`` of the treble chroma (its coefficient of variation:
    about 0.03 for noise, near 1 for a chord progression), so noise and clicks score near 0.
    """
    s = np.asarray(summary, dtype=np.float64).reshape(24)
    treble = s[:12]
    if not np.all(np.isfinite(s)) or float(treble.std()) <= _EPS:
        return KeyEstimate(DEFAULT_KEY, 0.0, np.zeros((2, 12)), np.zeros(12))
    model = load_profiles() if profiles is None else profiles
    scores = model.scores(s)
    z = scores - scores.max()
    prob = np.exp(z) / np.exp(z).sum()
    m, k = np.unravel_index(int(np.argmax(prob)), prob.shape)
    tonality = min(1.0, float(treble.std() / max(float(treble.mean()), _EPS)) / TONALITY_SCALE)
    name = key_name(tonic=int(k), mode=MODES[int(m)])
    return KeyEstimate(name, float(prob[m, k]) * tonality, prob, treble)


def estimate_key(
    *, y: np.ndarray, sr: int, magnitude: np.ndarray | None = None
) -> tuple[KeyEstimate, Chromagram]:
    """Musical key of a mono signal, and the chromagram it was read from.

    Parameters
    ----------
    y : np.ndarray, shape (n,)
        Mono signal (the 22050 Hz analysis downmix).
    sr : int
    magnitude : np.ndarray, shape (1025, t), optional
        STFT magnitude of ``y`` (n_fft 2048) for the tuning estimate; computed when omitted.
    """
    if magnitude is None:
        magnitude = np.abs(librosa.stft(y, n_fft=2048))
    tuning = estimate_tuning(magnitude=magnitude, sr=sr)
    chroma = chromagram(y=y, sr=sr, tuning_semitones=tuning)
    estimate = key_from_summary(chroma_summary(chroma))
    return dataclasses.replace(estimate, tuning_cents=100.0 * tuning), chroma

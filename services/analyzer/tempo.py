"""Tempo, beats and onset rate: periodicity candidates at every metrical level, a trained
selector for the one that is the beat, then dynamic-programming beat tracking.

Method
------
1. Onset envelopes: positive spectral flux (``librosa.onset.onset_strength``) of the mildly
   compressed mel magnitude ``log(1 + 10 * |M| / max|M|)`` of the 22050 Hz mono analysis
   signal, hop 512 (23.2 ms); once over all 128 mel bands, once over the bands below
   :data:`LOW_BAND_HZ` (kick and bass). The compression keeps loud events ahead of quiet ones.
2. Periodicity (:func:`periodicity`): each envelope minus its 1-s moving average (so a steady
   stream of onsets, e.g. noise, is not periodic at every lag), autocorrelated in 8.9-s windows
   (``librosa.feature.tempogram``, each window normalised to 1 at lag 0) and averaged over time.
3. Candidates (:func:`level_candidates`): the strongest periodicity between 40 and 240 BPM may
   be the beat, the half bar, the bar of a waltz or the eighth note. Its lag times 1, 1/2, 2,
   1/3, 3, 2/3 and 3/2, each moved to the nearest periodicity peak, are the candidates.
4. Metrical level: a logistic regression (``weights/tempo.json``, trained by
   ``mixpilot train-analyzer`` on generated songs of every genre, straight and swung, 3/4 and
   4/4, half of them played outside their genre's tempo range, and on their drums and
   drums + bass alone) scores each candidate from :data:`LEVEL_FEATURES`: a log-normal tempo
   prior around 120 BPM (its weight learned, its centre fixed), the periodicity at the
   candidate's lag and at half, double, triple and a third of it, the low band's at the lag
   and half of it, the autocorrelation of the detected onsets as equal pulses at the lag and
   double it (:func:`onset_train_acf`: kick and snare count alike), the accent contrast
   (:func:`accent_contrast`: are the onsets on the candidate's pulses stronger than halfway
   between them?) of the full band at the lag and half of it and of the low band at the lag,
   and onsets per beat. The best-scoring candidate is the tempo.
5. Beats: ``librosa.beat.beat_track`` (dynamic programming, Ellis 2007) at that tempo, without
   librosa's trimming; leading and trailing beats with no onset near them are dropped. The tempo
   is then refined to the slope of a least-squares line through the beat times (beats indexed
   by rounding to the candidate period, so a skipped beat does not bias it), which removes the
   23 ms frame quantisation: a click track at 80-170 BPM comes out within 0.5 %.
6. Confidence: how peaked the periodicity function is,
   ``clip((max(acf) - median(acf)) / (1 - median(acf)), 0, 1)`` over the 40-240 BPM lags (near
   1 for a metronome, near 0 for noise or a sustained tone), times the selector's probability
   for the chosen candidate, times ``min(1, duration / 8.9 s)`` (a clip shorter than one
   autocorrelation window holds too few beats to be sure of).

The tempo is global: tempo changes and rubato are not followed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import librosa
import numpy as np
import scipy.ndimage

from services.analyzer import linear
from services.analyzer.linear import LinearModel

MIN_BPM = 40.0
MAX_BPM = 240.0
#: The selector's tempo prior: log-normal around 120 BPM, one octave standard deviation (its
#: weight is learned; its centre is fixed, so the generator's tempo ranges cannot become it).
PRIOR_CENTER_BPM = 120.0
PRIOR_OCTAVES = 1.0
#: Reported when the signal has no rhythmic content to measure (confidence 0, no beats).
DEFAULT_BPM = 120.0
#: Autocorrelation window, frames (384 x 23.2 ms = 8.9 s).
TEMPOGRAM_WIN = 384
#: Beat-time fit accepted only if it stays within this fraction of the autocorrelation tempo.
REFINE_TOLERANCE = 0.06
#: Length of the moving average removed from the onset envelope before autocorrelation.
DETREND_S = 1.0
#: Onset envelope from log(1 + gamma * magnitude / max): mild compression, so loud events (kick,
#: snare) count more than quiet ones (hats, reverb tails) while level changes still register.
COMPRESSION_GAMMA = 10.0
#: Leading/trailing beats whose nearby onset strength is below this fraction of the median beat's
#: are extrapolations into silence and are dropped.
BEAT_SUPPORT = 0.2

_EPS = 1e-10


@dataclass(frozen=True)
class TempoEstimate:
    """Result of :func:`estimate_tempo`.

    Attributes
    ----------
    bpm : float
        Quarter-note tempo, beats per minute.
    confidence : float
        0..1, see the module docstring.
    beat_times_s : np.ndarray, shape (n_beats,)
        Beat positions in seconds from the start.
    """

    bpm: float
    confidence: float
    beat_times_s: np.ndarray = field(repr=False)
    periodicity: Periodicity | None = field(default=None, repr=False)


def onset_envelope(*, mel_power: np.ndarray, sr: int, n_fft: int = 2048) -> np.ndarray:
    """Spectral-flux onset strength of a mel power spectrogram.

    Parameters
    ----------
    mel_power : np.ndarray, shape (n_mels, t)
    sr : int
        Sample rate the spectrogram was computed at.
    n_fft : int
        FFT size of that spectrogram (used to centre the envelope on the frames).

    Returns
    -------
    np.ndarray, shape (t,)
    """
    magnitude = np.sqrt(np.maximum(mel_power, 0.0))
    peak = float(magnitude.max(initial=0.0))
    if peak <= _EPS:
        return np.zeros(mel_power.shape[-1])
    compressed = np.log1p(COMPRESSION_GAMMA * magnitude / peak)
    return librosa.onset.onset_strength(S=compressed, sr=sr, n_fft=n_fft, center=True)


def _parabolic_peak(values: np.ndarray, index: int) -> float:
    """Fractional index of the maximum of a parabola through three points around ``index``."""
    if index <= 0 or index >= len(values) - 1:
        return float(index)
    a, b, c = values[index - 1], values[index], values[index + 1]
    denom = a - 2.0 * b + c
    if denom >= 0:  # not a maximum
        return float(index)
    offset = 0.5 * (a - c) / denom
    return float(index + max(-0.5, min(0.5, offset)))


def _trim_silent_ends(beat_frames: np.ndarray, onset_env: np.ndarray) -> np.ndarray:
    """Drop leading and trailing beats with no onset near them.

    The beat tracker extrapolates its grid into silence before the first and after the last
    note; librosa's own trimming is coarser and also drops real beats there. A beat counts as
    supported when the envelope within +-2 frames reaches :data:`BEAT_SUPPORT` times the median
    support of all beats.
    """
    if beat_frames.size == 0:
        return beat_frames
    local_max = scipy.ndimage.maximum_filter1d(onset_env, size=5, mode="constant")
    support = local_max[np.clip(beat_frames, 0, onset_env.size - 1)]
    threshold = BEAT_SUPPORT * float(np.median(support))
    strong = np.flatnonzero(support > threshold)
    if strong.size == 0:
        return beat_frames[:0]
    return beat_frames[strong[0] : strong[-1] + 1]


def _refine_with_beats(beat_times_s: np.ndarray, bpm: float) -> float:
    """Least-squares beat period from beat times; ``bpm`` unchanged when the fit disagrees."""
    if beat_times_s.size < 4:
        return bpm
    period = 60.0 / bpm
    index = np.round((beat_times_s - beat_times_s[0]) / period)
    slope, intercept = np.polyfit(index, beat_times_s, 1)
    residual = np.abs(beat_times_s - (slope * index + intercept))
    keep = residual < 0.25 * period
    if keep.sum() >= 4 and keep.sum() < beat_times_s.size:
        slope, _ = np.polyfit(index[keep], beat_times_s[keep], 1)
    if not math.isfinite(slope) or slope <= 0:
        return bpm
    refined = 60.0 / float(slope)
    if abs(refined - bpm) > REFINE_TOLERANCE * bpm:
        return bpm
    return refined


def onset_rate(*, mel_power: np.ndarray, sr: int, hop_length: int, n_fft: int = 2048) -> float:
    """Note onsets per second, as librosa detects them by default.

    Peak picking (``librosa.onset.onset_detect``) on the log-mel (dB) spectral flux: unlike
    :func:`onset_envelope`, quiet events (hats, soft notes) count as much as loud ones.

    Parameters
    ----------
    mel_power : np.ndarray, shape (n_mels, t)
    sr, hop_length, n_fft : int
        Of the spectrogram.
    """
    duration_s = mel_power.shape[-1] * hop_length / sr
    if duration_s <= 0 or float(mel_power.max(initial=0.0)) <= _EPS:
        return 0.0
    onset_env = librosa.onset.onset_strength(
        S=librosa.power_to_db(mel_power), sr=sr, n_fft=n_fft, center=True
    )
    if float(onset_env.max(initial=0.0)) <= _EPS:
        return 0.0
    onsets = librosa.onset.onset_detect(onset_envelope=onset_env, sr=sr, hop_length=hop_length)
    return float(len(onsets) / duration_s)


#: Metrical relations between the strongest periodicity and the tempo candidates it suggests.
LEVEL_RATIOS: tuple[float, ...] = (1.0, 2.0, 0.5, 3.0, 1.0 / 3.0, 1.5, 2.0 / 3.0)
#: Mel bands below this frequency make the low-band (kick and bass) onset envelope.
LOW_BAND_HZ = 200.0
#: Shape each detected onset is spread into for :func:`onset_train_acf` (±2 frames).
ONSET_SPREAD = np.array([0.25, 0.5, 1.0, 0.5, 0.25])
#: A candidate's lag is moved to the strongest periodicity within this fraction of it.
PEAK_SEARCH = 0.06
#: Inputs of the tempo-level selector (``weights/tempo.json``), in column order.
LEVEL_FEATURES: tuple[str, ...] = (
    "log_prior",
    "acf",
    "acf_half_lag",
    "acf_double_lag",
    "acf_triple_lag",
    "acf_third_lag",
    "low_acf",
    "low_acf_half_lag",
    "onset_train_acf",
    "onset_train_acf_double_lag",
    "accent_contrast",
    "accent_contrast_half_lag",
    "low_accent_contrast",
    "log_onsets_per_beat",
)


@dataclass(frozen=True)
class Periodicity:
    """The global periodicity of a song's onsets: what the tempo candidates are read from.

    Attributes
    ----------
    acf : np.ndarray, shape (TEMPOGRAM_WIN,)
        Mean windowed autocorrelation of the detrended onset envelope, by lag in frames.
    low_acf : np.ndarray
        The same for the low-band (kick and bass) onset envelope.
    onset_env, low_env : np.ndarray, shape (t,)
        The envelopes themselves.
    sr, hop_length : int
        Of the envelopes.
    onsets_per_s : float
        Peak-picked onsets per second of ``onset_env``.
    """

    acf: np.ndarray = field(repr=False)
    low_acf: np.ndarray = field(repr=False)
    onset_env: np.ndarray = field(repr=False)
    low_env: np.ndarray = field(repr=False)
    sr: int
    hop_length: int
    onsets_per_s: float

    @property
    def frames_per_s(self) -> float:
        return self.sr / self.hop_length

    def bpm(self, lag: float) -> float:
        return 60.0 * self.frames_per_s / lag

    def lag(self, bpm: float) -> float:
        return 60.0 * self.frames_per_s / bpm


def _acf(envelope: np.ndarray, *, sr: int, hop_length: int) -> np.ndarray:
    """Mean windowed autocorrelation of ``envelope`` minus its 1-s moving average (so a steady
    stream of onsets, e.g. noise, is not periodic at every lag)."""
    detrend_frames = max(3, int(round(DETREND_S * sr / hop_length)))
    fluctuation = envelope - scipy.ndimage.uniform_filter1d(envelope, detrend_frames)
    tempogram = librosa.feature.tempogram(
        onset_envelope=fluctuation, sr=sr, hop_length=hop_length, win_length=TEMPOGRAM_WIN
    )
    acf = tempogram.mean(axis=1)
    return np.nan_to_num(acf, nan=0.0, posinf=0.0, neginf=0.0)


def periodicity(
    *, onset_env: np.ndarray, low_env: np.ndarray, sr: int, hop_length: int
) -> Periodicity:
    """:class:`Periodicity` of the full-band and low-band onset envelopes."""
    frames_per_s = sr / hop_length
    duration_s = max(onset_env.size / frames_per_s, _EPS)
    onsets = (
        librosa.onset.onset_detect(onset_envelope=onset_env, sr=sr, hop_length=hop_length)
        if float(onset_env.max(initial=0.0)) > _EPS
        else np.zeros(0)
    )
    return Periodicity(
        acf=_acf(onset_env, sr=sr, hop_length=hop_length),
        low_acf=_acf(low_env, sr=sr, hop_length=hop_length),
        onset_env=onset_env,
        low_env=low_env,
        sr=sr,
        hop_length=hop_length,
        onsets_per_s=len(onsets) / duration_s,
    )


def _at(values: np.ndarray, lag: float) -> float:
    """``values`` linearly interpolated at fractional ``lag`` (0 outside 1..len-2)."""
    if lag < 1.0 or lag > values.size - 2:
        return 0.0
    return float(np.interp(lag, np.arange(values.size), values))


def _peak_near(acf: np.ndarray, lag: float) -> float:
    """The fractional lag of the strongest periodicity within ±:data:`PEAK_SEARCH` of ``lag``."""
    lo = max(1, int(math.floor(lag * (1.0 - PEAK_SEARCH))))
    hi = min(acf.size - 2, int(math.ceil(lag * (1.0 + PEAK_SEARCH))))
    if hi <= lo:
        return lag
    return _parabolic_peak(acf, lo + int(np.argmax(acf[lo : hi + 1])))


def accent_contrast(envelope: np.ndarray, lag: float) -> float:
    """How much stronger the onsets on a pulse of period ``lag`` frames are than those halfway
    between its pulses: ``(on - mid) / (on + mid)`` at the pulse phase with the strongest
    onsets, in [-1, 1]. High for a beat with weaker off-beats, near 0 when the off-beats are as
    strong (the pulse is really twice as fast)."""
    period = int(round(lag))
    n = envelope.size
    if period < 2 or n < 2 * period:
        return 0.0
    positions = np.arange(0.0, n - lag / 2.0, lag)
    on_idx = np.rint(positions[None, :] + np.arange(period)[:, None]).astype(np.int64)
    on_idx = np.minimum(on_idx, n - 1)
    on = envelope[on_idx].mean(axis=1)
    phase = int(np.argmax(on))
    mid_idx = np.minimum(np.rint(positions + phase + lag / 2.0).astype(np.int64), n - 1)
    mid = float(envelope[mid_idx].mean())
    strong = float(on[phase])
    return (strong - mid) / max(strong + mid, _EPS)


def onset_train_acf(p: Periodicity, max_lag: int) -> np.ndarray:
    """Autocorrelation (lag 0 = 1) of the song's detected onsets as equal pulses, each spread
    over ±2 frames: periodicity that does not care how loud or how different the onsets are
    (kick and snare count alike)."""
    n = p.onset_env.size
    out = np.zeros(max_lag)
    if n < 4 or float(p.onset_env.max(initial=0.0)) <= _EPS:
        return out
    onsets = librosa.onset.onset_detect(
        onset_envelope=p.onset_env, sr=p.sr, hop_length=p.hop_length
    )
    if onsets.size < 2:
        return out
    pulses = np.zeros(n)
    pulses[onsets] = 1.0
    pulses = np.convolve(pulses, ONSET_SPREAD, mode="same")
    spectrum = np.fft.rfft(pulses, 2 * n)
    acf = np.fft.irfft(spectrum * np.conj(spectrum))[: min(max_lag, n)]
    out[: acf.size] = acf / max(float(acf[0]), _EPS)
    return out


def level_candidates(p: Periodicity) -> tuple[np.ndarray, np.ndarray]:
    """Tempo candidates at the metrical levels around the strongest periodicity, with the
    selector's inputs.

    The strongest autocorrelation peak between 40 and 240 BPM may be the beat, the half-bar or
    the eighth note; its lag times 1, 1/2, 2, 1/3, 3, 2/3 and 3/2 (each moved to the nearest
    periodicity peak, kept when within 40-240 BPM) are the candidates.

    Returns
    -------
    bpm : np.ndarray, shape (k,)
    features : np.ndarray, shape (k, len(LEVEL_FEATURES))
    """
    acf, low = p.acf, p.low_acf
    lags = np.arange(acf.size, dtype=np.float64)
    with np.errstate(divide="ignore"):
        lag_bpm = np.where(lags > 0, 60.0 * p.frames_per_s / np.maximum(lags, 1.0), np.inf)
    valid = (lag_bpm >= MIN_BPM) & (lag_bpm <= MAX_BPM)
    empty = np.zeros(0), np.zeros((0, len(LEVEL_FEATURES)))
    if not np.any(valid):
        return empty
    # Scale by the strongest periodicity at or below 240 BPM, bar-level lags included (so a
    # bass line that repeats once a bar reads 1 there, not far above it).
    slow = lag_bpm <= MAX_BPM
    top = float(acf[slow].max())
    if top <= _EPS or float(acf[valid].max()) <= _EPS:
        return empty
    top_low = max(float(low[slow].max()), _EPS)
    strongest = int(np.argmax(np.where(valid, acf, -np.inf)))
    train = onset_train_acf(p, acf.size)
    bpms: list[float] = []
    rows: list[list[float]] = []
    for ratio in LEVEL_RATIOS:
        lag = _peak_near(acf, strongest / ratio)
        bpm = p.bpm(lag)
        if not MIN_BPM <= bpm <= MAX_BPM or any(abs(bpm - b) < 0.02 * b for b in bpms):
            continue
        octaves = math.log2(bpm / PRIOR_CENTER_BPM)
        rows.append(
            [
                -0.5 * (octaves / PRIOR_OCTAVES) ** 2,
                _at(acf, lag) / top,
                _at(acf, lag / 2.0) / top,
                _at(acf, 2.0 * lag) / top,
                _at(acf, 3.0 * lag) / top,
                _at(acf, lag / 3.0) / top,
                _at(low, lag) / top_low,
                _at(low, lag / 2.0) / top_low,
                _at(train, lag),
                _at(train, 2.0 * lag),
                accent_contrast(p.onset_env, lag),
                accent_contrast(p.onset_env, lag / 2.0),
                accent_contrast(p.low_env, lag),
                math.log(max(p.onsets_per_s, 0.1) * 60.0 / bpm),
            ]
        )
        bpms.append(bpm)
    return np.array(bpms), np.array(rows, dtype=np.float64).reshape(-1, len(LEVEL_FEATURES))


def estimate_tempo(p: Periodicity, *, selector: LinearModel | None = None) -> TempoEstimate:
    """Quarter-note tempo, its confidence and the beat grid.

    Parameters
    ----------
    p : Periodicity
        Of the song's onset envelopes (:func:`periodicity`).
    selector : LinearModel, optional
        The tempo-level selector; the shipped ``weights/tempo.json`` by default.

    Returns
    -------
    TempoEstimate
    """
    onset_env, sr, hop_length = p.onset_env, p.sr, p.hop_length
    no_rhythm = TempoEstimate(DEFAULT_BPM, 0.0, np.zeros(0), p)
    if onset_env.size < 4 or float(onset_env.max(initial=0.0)) <= _EPS:
        return no_rhythm
    bpms, rows = level_candidates(p)
    if bpms.size == 0:
        return no_rhythm
    model = linear.load("tempo") if selector is None else selector
    level = model.probabilities(rows)[:, 1]
    best = int(np.argmax(level))
    bpm = float(bpms[best])

    acf = p.acf
    lags = np.arange(acf.size)
    with np.errstate(divide="ignore"):
        lag_bpm = np.where(lags > 0, 60.0 * p.frames_per_s / np.maximum(lags, 1), np.inf)
    valid = (lag_bpm >= MIN_BPM) & (lag_bpm <= MAX_BPM)
    baseline = float(np.median(acf[valid]))
    height = float(acf[valid].max())
    peakedness = (height - baseline) / max(1.0 - baseline, _EPS)
    # Less than one autocorrelation window of audio is thin evidence: scale down in proportion.
    confidence = peakedness * float(level[best]) * min(1.0, onset_env.size / TEMPOGRAM_WIN)
    confidence = min(1.0, max(0.0, confidence))

    _, beat_frames = librosa.beat.beat_track(
        onset_envelope=onset_env, sr=sr, hop_length=hop_length, bpm=bpm, trim=False
    )
    beat_frames = _trim_silent_ends(np.asarray(beat_frames, dtype=np.int64), onset_env)
    beats = librosa.frames_to_time(beat_frames, sr=sr, hop_length=hop_length).astype(np.float64)
    bpm = min(MAX_BPM, max(MIN_BPM, _refine_with_beats(beats, bpm)))
    return TempoEstimate(float(bpm), float(confidence), beats, p)

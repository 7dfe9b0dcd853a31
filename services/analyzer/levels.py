"""Level, loudness, loudness-range and stereo-image features of a song, measured on the input as
given (its own sample rate and channels).

Three passes over the samples, none copying them (float32 is read as is): one K-weighting pass
(:func:`services.common.loudness.loudness_profile`: integrated, momentary and short-term
loudness, loudness range and the mono fold-down), one of sample-domain sums per 100 ms step
(RMS, DC, stereo width, L/R correlation) and the 4x-oversampled true peak; plus numpy's max and
min for the sample peak. Memory beyond the audio is a few values per 100 ms step (about 1.5 MB for
a 3-minute song)."""

from __future__ import annotations

import math

import numba
import numpy as np

from services.common.loudness import (
    SILENT_LUFS,
    loudness_profile,
    loudness_range,
    true_peak_dbtp,
)

#: Floor for levels in dB, so that digital silence gives a finite number.
FLOOR_DB = -200.0
#: Stereo width reported when the mid signal is (numerically) silent: pure antiphase.
MAX_STEREO_WIDTH = 1000.0
#: Floor of ``mono_compatibility_lu``: a fold-down that cancels completely.
MIN_MONO_COMPATIBILITY_LU = -70.0
#: Step of the sample-domain sums (s), and the correlation block in steps (400 ms).
STEP_S = 0.1
CORRELATION_BLOCK_STEPS = 4

#: Columns of :func:`_step_sums`.
_SUM_L, _SUM_R, _SQ_L, _SQ_R, _SQ_MID, _SQ_SIDE = range(6)


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _step_sums(
    left: np.ndarray, right: np.ndarray, bounds: np.ndarray
) -> np.ndarray:  # pragma: no cover - numba
    """Per step ``[bounds[s], bounds[s + 1])``, in float64: the sums of ``L``, ``R``, ``L**2``,
    ``R**2``, ``M**2`` and ``S**2`` (``M = (L + R) / 2``, ``S = (L - R) / 2``; exactly 0 for
    identical channels).

    Three short loops per step rather than one: each vectorises (sums may be reassociated,
    ~1e-16 relative), which one loop with six running sums does not.
    """
    steps = bounds.shape[0] - 1
    out = np.zeros((steps, 6))
    for s in range(steps):
        lft = left[bounds[s] : bounds[s + 1]]
        rgt = right[bounds[s] : bounds[s + 1]]
        total = square = 0.0
        for n in range(lft.shape[0]):
            v = float(lft[n])
            total += v
            square += v * v
        out[s, _SUM_L] = total
        out[s, _SQ_L] = square
        total = square = 0.0
        for n in range(rgt.shape[0]):
            v = float(rgt[n])
            total += v
            square += v * v
        out[s, _SUM_R] = total
        out[s, _SQ_R] = square
        mid_square = side_square = 0.0
        for n in range(lft.shape[0]):
            lv = float(lft[n])
            rv = float(rgt[n])
            mid = 0.5 * (lv + rv)
            side = 0.5 * (lv - rv)
            mid_square += mid * mid
            side_square += side * side
        out[s, _SQ_MID] = mid_square
        out[s, _SQ_SIDE] = side_square
    return out


def _db(value: float, *, power: bool) -> float:
    """``10 log10`` of a power or ``20 log10`` of an amplitude, floored at :data:`FLOOR_DB`."""
    if not value > 0.0:
        return FLOOR_DB
    return max(FLOOR_DB, (10.0 if power else 20.0) * math.log10(value))


def _stereo_width(e_mid: float, e_side: float) -> float:
    """``e_side / e_mid``: 0 without side energy, :data:`MAX_STEREO_WIDTH` when mid is
    (numerically) silent."""
    if e_side <= 0.0:
        return 0.0
    if e_mid <= e_side / MAX_STEREO_WIDTH:
        return MAX_STEREO_WIDTH
    return e_side / e_mid


def _lr_correlation(sums: np.ndarray) -> float:
    """Energy-weighted mean of the L/R correlation of 400 ms blocks (see :func:`level_features`).

    Parameters
    ----------
    sums : np.ndarray, shape (steps, 6)
        :func:`_step_sums`.
    """
    if float(sums[:, _SQ_SIDE].sum()) <= 0.0:
        return 1.0  # identical channels: mono, or both silent
    q = sums[:, [_SQ_L, _SQ_R, _SQ_MID, _SQ_SIDE]]
    width = min(CORRELATION_BLOCK_STEPS, q.shape[0])
    blocks = np.sum([q[i : q.shape[0] - width + 1 + i] for i in range(width)], axis=0)
    e_l, e_r, e_mid, e_side = blocks.T
    norm = np.sqrt(e_l) * np.sqrt(e_r)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(norm > 0.0, (e_mid - e_side) / norm, 0.0)  # sum(L R) = sum(M^2 - S^2)
    weight = e_l + e_r
    total = float(weight.sum())
    if total <= 0.0:
        return 0.0
    return float(min(1.0, max(-1.0, float(np.dot(weight, np.clip(r, -1.0, 1.0))) / total)))


def _mono_compatibility(
    channels: int, stereo_lufs: float, profile_fold_lufs: float, e_stereo: float, e_fold: float
) -> float:
    """Fold-down minus stereo loudness (LU), see :func:`level_features`."""
    if channels < 2:
        return 0.0
    if stereo_lufs > SILENT_LUFS and profile_fold_lufs > SILENT_LUFS:
        difference = profile_fold_lufs - stereo_lufs
    elif e_stereo <= 0.0:
        return 0.0
    elif e_fold <= 0.0:
        return MIN_MONO_COMPATIBILITY_LU
    else:
        difference = 10.0 * math.log10(e_fold / e_stereo)
    return max(MIN_MONO_COMPATIBILITY_LU, difference)


def level_features(audio: np.ndarray, sample_rate: int) -> dict[str, float]:
    """Levels, loudness, loudness range and stereo image of the whole song.

    Parameters
    ----------
    audio : np.ndarray, shape (channels, frames), float32 or float64
        One channel, or two (L, R); finite (other float types are read as float64).
    sample_rate : int
        Hz.

    Returns
    -------
    dict of str to float
        Every value finite:

        - ``loudness_lufs``: ITU-R BS.1770-4 integrated loudness (LUFS), as
          :func:`services.common.loudness.integrated_loudness`; -70 when nothing passes the
          absolute gate.
        - ``short_term_max_lufs``: largest EBU Tech 3341 short-term loudness (3 s windows every
          100 ms; the whole song when shorter than 3 s), LUFS, at least -70.
        - ``momentary_max_lufs``: largest momentary loudness (400 ms windows every 100 ms),
          LUFS, at least -70.
        - ``loudness_range_lu``: EBU Tech 3342 loudness range of the short-term values (LU; see
          :func:`services.common.loudness.loudness_range`); 0 when fewer than two values pass
          the gates, so always 0 for a song shorter than 3.1 s (one short-term value).
        - ``true_peak_dbtp``: 4x-oversampled true peak (dBTP), at least -200.
        - ``sample_peak_dbfs``: largest absolute sample (dBFS), at least -200.
        - ``rms_db``: RMS over every sample of every channel (dBFS; a full-scale sine reads
          -3.01), at least -200.
        - ``crest_factor_db``: ``sample_peak_dbfs - rms_db`` (dB; 3.01 for a sine), 0 for
          silence.
        - ``dc_offset``: mean sample value over every channel (linear full scale).
        - ``plr_db``: peak-to-loudness ratio ``true_peak_dbtp - loudness_lufs`` (dB); 0 when
          the loudness is at the -70 LUFS floor.
        - ``stereo_width``: side-to-mid energy ratio ``sum(S**2) / sum(M**2)``, ``M = (L + R) /
          2``, ``S = (L - R) / 2``: 0 for mono (one channel, or two identical), 1 for
          uncorrelated channels of equal level, above 1 with out-of-phase content,
          :data:`MAX_STEREO_WIDTH` when the mid signal is silent (exact antiphase).
        - ``lr_correlation``: what a correlation meter shows, averaged over the song: the
          correlation ``r = sum(L R) / sqrt(sum(L**2) sum(R**2))`` (no mean removed) of every
          400 ms block (starting every 100 ms), averaged with the block energy ``sum(L**2) +
          sum(R**2)`` as weight, in [-1, 1]. 1 for one channel or two identical channels
          (silence included), -1 for inverted channels, about 0 for independent ones; a block
          with one silent channel counts as 0 (so a song with a silent channel reads 0), a
          silent block not at all. Equals the whole-song ``r`` when the correlation is the
          same throughout; where it changes (a verse panned to one side, a chorus in mono) each
          block counts by its energy, as on a correlation meter watched through the song.
        - ``mono_compatibility_lu``: loudness change when the song is folded down to mono:
          integrated loudness of ``(M, M)`` (the fold-down ``M = (L + R) / 2`` played on both
          channels) minus that of ``(L, R)``, each with its own BS.1770 gates (LU). 0 for one
          channel or identical channels, -3.01 for uncorrelated channels of equal level, down
          to -70 (the floor) for channels in antiphase. When either loudness is at the -70
          LUFS floor (a song too quiet to gate, or a fold-down that cancels), the ratio of
          the ungated K-weighted energies ``10 log10(E_fold / E_stereo)`` is used instead (0
          for digital silence).
    """
    x = np.asarray(audio)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    x = np.ascontiguousarray(x)  # read once by every pass below, never copied again
    channels, frames = x.shape
    rate = int(sample_rate)

    profile = loudness_profile(x, rate)
    loudness = profile.integrated_lufs
    peak_dbtp = true_peak_dbtp(x)
    peak_dbtp = FLOOR_DB if not math.isfinite(peak_dbtp) else max(FLOOR_DB, peak_dbtp)

    step = max(1, round(STEP_S * rate))
    bounds = np.append(np.arange(0, frames, step, dtype=np.int64), np.int64(frames))
    sums = _step_sums(x[0], x[-1], bounds)  # one channel: L = R
    totals = sums.sum(axis=0)
    mean_square = 0.5 * (totals[_SQ_L] + totals[_SQ_R]) / max(frames, 1)
    rms_db = _db(mean_square, power=True)
    # numpy's max and min vectorise (a numba max loop does not): 3x faster than abs().max().
    sample_peak_dbfs = _db(max(float(x.max()), -float(x.min())), power=False)

    features = {
        "loudness_lufs": loudness,
        "short_term_max_lufs": max(SILENT_LUFS, float(profile.short_term_lufs.max())),
        "momentary_max_lufs": max(SILENT_LUFS, float(profile.momentary_lufs.max())),
        "loudness_range_lu": loudness_range(profile.short_term_lufs),
        "true_peak_dbtp": peak_dbtp,
        "sample_peak_dbfs": sample_peak_dbfs,
        "rms_db": rms_db,
        "crest_factor_db": max(0.0, sample_peak_dbfs - rms_db) if mean_square > 0.0 else 0.0,
        "dc_offset": 0.5 * (totals[_SUM_L] + totals[_SUM_R]) / max(frames, 1),
        "plr_db": peak_dbtp - loudness if loudness > SILENT_LUFS else 0.0,
        "stereo_width": _stereo_width(totals[_SQ_MID], totals[_SQ_SIDE]) if channels > 1 else 0.0,
        "lr_correlation": _lr_correlation(sums) if channels > 1 else 1.0,
        "mono_compatibility_lu": _mono_compatibility(
            channels,
            loudness,
            profile.fold_down_lufs,
            profile.kweighted_energy,
            profile.fold_down_energy,
        ),
    }
    return {name: float(value) for name, value in features.items()}

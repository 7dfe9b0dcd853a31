"""Loudness and peak measurement shared by the analyzer (what came in) and the renderer (what goes
out): ITU-R BS.1770-4 integrated loudness through pyloudnorm, and true peak measured on a 4x
oversampled signal (polyphase FIR interpolation, as BS.1770-4 Annex 2 describes)."""

from __future__ import annotations

import functools
import math

import numba
import numpy as np
import pyloudnorm
from scipy.signal import firwin

#: Loudness reported for audio with no gated block above the absolute gate (-70 LUFS).
SILENT_LUFS = -70.0
TRUE_PEAK_OVERSAMPLING = 4
_BLOCK = 4096


def integrated_loudness(audio: np.ndarray, sample_rate: int) -> float:
    """Integrated loudness in LUFS of ``audio`` with shape ``(channels, frames)``.

    Audio shorter than one 400 ms gating block is measured zero-padded to one block. Returns
    :data:`SILENT_LUFS` when nothing passes the absolute gate.
    """
    x = np.asarray(audio, dtype=np.float64)
    block = int(math.ceil(0.4 * sample_rate))
    if x.shape[1] < block:
        x = np.pad(x, ((0, 0), (0, block - x.shape[1])))
    meter = pyloudnorm.Meter(sample_rate)
    value = float(meter.integrated_loudness(x.T))
    if not math.isfinite(value) or value < SILENT_LUFS:
        return SILENT_LUFS
    return value


@functools.lru_cache(maxsize=8)
def _polyphase_taps(oversampling: int) -> np.ndarray:
    """The interpolation filter of :func:`scipy.signal.resample_poly` (``up=oversampling``,
    default Kaiser window), split into its ``oversampling`` phases.

    Returns
    -------
    np.ndarray, shape (oversampling, 2 * 10 + 1)
        ``taps[p, k + 10]`` weighs ``x[n - k]`` in the output sample ``n + p / oversampling``.
    """
    half = 10 * oversampling
    h = firwin(2 * half + 1, 1.0 / oversampling, window=("kaiser", 5.0)) * oversampling
    reach = half // oversampling
    taps = np.zeros((oversampling, 2 * reach + 1))
    for p in range(oversampling):
        for k in range(-reach, reach + 1):
            i = oversampling * k + p + half
            if 0 <= i <= 2 * half:
                taps[p, k + reach] = h[i]
    return taps


@numba.njit(cache=True, parallel=True)
def _envelope_kernel(x: np.ndarray, taps: np.ndarray) -> np.ndarray:  # pragma: no cover - numba
    channels, frames = x.shape
    phases, width = taps.shape
    reach = (width - 1) // 2
    out = np.empty(frames)
    blocks = (frames + _BLOCK - 1) // _BLOCK
    for b in numba.prange(blocks):
        for n in range(b * _BLOCK, min(frames, (b + 1) * _BLOCK)):
            peak = 0.0
            inside = n - reach >= 0 and n + reach < frames
            for c in range(channels):
                a = abs(x[c, n])
                if a > peak:
                    peak = a
                for p in range(phases):
                    s = 0.0
                    if inside:
                        for j in range(width):
                            s += taps[p, j] * x[c, n + reach - j]
                    else:
                        for j in range(width):
                            i = n + reach - j
                            if 0 <= i < frames:
                                s += taps[p, j] * x[c, i]
                    a = abs(s)
                    if a > peak:
                        peak = a
            out[n] = peak
    return out


def oversampled_peak_envelope(
    audio: np.ndarray, *, oversampling: int = TRUE_PEAK_OVERSAMPLING
) -> np.ndarray:
    """Largest magnitude in ``[n, n + 1)`` of the oversampled signal, across channels.

    The oversampled signal is exactly the one :func:`scipy.signal.resample_poly` computes
    (polyphase FIR, Kaiser window), evaluated by a parallel numba kernel without materialising
    it; the maximum of the result is the true peak (equal to resample_poly's up to
    floating-point summation order, ~1e-15 relative).

    Parameters
    ----------
    audio : np.ndarray, shape (channels, frames)
    oversampling : int

    Returns
    -------
    np.ndarray, shape (frames,), float64
    """
    x = np.ascontiguousarray(audio, dtype=np.float64)
    if x.shape[1] == 0:
        return np.zeros(0)
    return _envelope_kernel(x, _polyphase_taps(int(oversampling)))


def true_peak_linear(audio: np.ndarray, *, oversampling: int = TRUE_PEAK_OVERSAMPLING) -> float:
    """Maximum absolute value of ``audio`` (channels, frames) oversampled ``oversampling`` times
    (the sample peak included), without building the oversampled signal."""
    env = oversampled_peak_envelope(audio, oversampling=oversampling)
    return float(env.max()) if env.size else 0.0


def true_peak_dbtp(audio: np.ndarray, *, oversampling: int = TRUE_PEAK_OVERSAMPLING) -> float:
    """True peak in dBTP (dB relative to full scale, 4x oversampled by default)."""
    peak = true_peak_linear(audio, oversampling=oversampling)
    return 20.0 * math.log10(peak) if peak > 0 else -math.inf


def db_to_gain(db: float) -> float:
    return float(10.0 ** (db / 20.0))


def gain_to_db(gain: float) -> float:
    return 20.0 * math.log10(gain) if gain > 0 else -math.inf

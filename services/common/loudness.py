"""Loudness and peak measurement shared by the analyzer (what came in) and the renderer (what goes
out): ITU-R BS.1770-4 integrated loudness through pyloudnorm, and true peak measured on a 4x
oversampled signal (polyphase FIR interpolation, as BS.1770-4 Annex 2 describes)."""

from __future__ import annotations

import math

import numpy as np
import pyloudnorm
from scipy.signal import resample_poly

#: Loudness reported for audio with no gated block above the absolute gate (-70 LUFS).
SILENT_LUFS = -70.0
TRUE_PEAK_OVERSAMPLING = 4


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


def true_peak_linear(audio: np.ndarray, *, oversampling: int = TRUE_PEAK_OVERSAMPLING) -> float:
    """Maximum absolute sample value of ``audio`` oversampled ``oversampling`` times."""
    x = np.asarray(audio, dtype=np.float64)
    up = resample_poly(x, oversampling, 1, axis=-1)
    return float(max(np.max(np.abs(up)), np.max(np.abs(x))))


def true_peak_dbtp(audio: np.ndarray, *, oversampling: int = TRUE_PEAK_OVERSAMPLING) -> float:
    """True peak in dBTP (dB relative to full scale, 4x oversampled by default)."""
    peak = true_peak_linear(audio, oversampling=oversampling)
    return 20.0 * math.log10(peak) if peak > 0 else -math.inf


def db_to_gain(db: float) -> float:
    return float(10.0 ** (db / 20.0))


def gain_to_db(gain: float) -> float:
    return 20.0 * math.log10(gain) if gain > 0 else -math.inf

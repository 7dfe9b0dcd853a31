"""Stem levels, constant-power panning and the peak-normalised stereo mix.

Pan law: a mono stem at pan ``p`` in -1..1 goes to the left channel times ``cos(theta)`` and
to the right times ``sin(theta)`` with ``theta = (p + 1) * pi / 4``: the power is the same at
every position, -3 dB per channel in the centre. The mix is the sum of
``10 ** (gain_db / 20) * pan_gains(pan) * stem`` over the stems, computed in float64 and
stored as float32, with every ``gain_db`` already including the master gain that brings the
mix's sample peak to :data:`MIX_PEAK_DBFS`.
"""

from __future__ import annotations

import math

import numpy as np

from services.common.loudness import SILENT_LUFS, integrated_loudness

#: Sample peak of every mix (never clips).
MIX_PEAK_DBFS = -1.0
#: Every stem is rendered to this integrated loudness (or lower, see :data:`STEM_PEAK_DBFS`)
#: before the balance is applied, so ``balance_db`` is the stems' relative loudness.
STEM_LUFS = -24.0
STEM_PEAK_DBFS = -1.0


def pan_gains(pan: float) -> tuple[float, float]:
    """Constant-power left and right gains of ``pan`` (-1 left .. 1 right)."""
    theta = (min(1.0, max(-1.0, pan)) + 1.0) * math.pi / 4.0
    return math.cos(theta), math.sin(theta)


def normalise_stem(mono: np.ndarray, sample_rate: int) -> tuple[np.ndarray, float]:
    """Scale a ``(1, frames)`` stem to :data:`STEM_LUFS` (peak at most :data:`STEM_PEAK_DBFS`).

    Returns the float32 stem and its loudness after scaling (``SILENT_LUFS`` if silent,
    returned unscaled).
    """
    lufs = integrated_loudness(mono, sample_rate)
    peak = float(np.max(np.abs(mono))) if mono.size else 0.0
    if lufs <= SILENT_LUFS or peak == 0.0:
        return mono.astype(np.float32), SILENT_LUFS
    gain_db = min(STEM_LUFS - lufs, STEM_PEAK_DBFS - 20 * math.log10(peak))
    out = (mono * 10 ** (gain_db / 20)).astype(np.float32)
    return out, integrated_loudness(out, sample_rate)


def mix_stems(
    stems: dict[str, np.ndarray], gains_db: dict[str, float], pans: dict[str, float]
) -> np.ndarray:
    """Sum mono ``(1, frames)`` stems to a float64 ``(2, frames)`` mix (no normalisation)."""
    frames = next(iter(stems.values())).shape[-1]
    mix = np.zeros((2, frames))
    for name, stem in stems.items():
        g = 10 ** (gains_db[name] / 20)
        left, right = pan_gains(pans[name])
        mix[0] += (g * left) * stem[0]
        mix[1] += (g * right) * stem[0]
    return mix


def master_gain_db(mix: np.ndarray, peak_dbfs: float = MIX_PEAK_DBFS) -> float:
    """Gain that brings ``mix``'s sample peak to ``peak_dbfs`` (0 for silence)."""
    peak = float(np.max(np.abs(mix))) if mix.size else 0.0
    return 0.0 if peak == 0.0 else peak_dbfs - 20 * math.log10(peak)


def mixdown(
    stems: dict[str, np.ndarray], balance_db: dict[str, float], pans: dict[str, float]
) -> tuple[np.ndarray, dict[str, float], float]:
    """The float32 stereo mix peaking at :data:`MIX_PEAK_DBFS`.

    Returns
    -------
    mix : numpy.ndarray
        float32, shape ``(2, frames)``.
    gains_db : dict[str, float]
        Each stem's gain in the mix (balance plus master gain).
    master_db : float
        The master gain folded into every ``gains_db``.
    """
    master = master_gain_db(mix_stems(stems, balance_db, pans))
    gains = {name: balance_db[name] + master for name in stems}
    mix = mix_stems(stems, gains, pans)
    # Guard against the last float rounding pushing the peak a hair over the target.
    limit = 10 ** (MIX_PEAK_DBFS / 20)
    peak = float(np.max(np.abs(mix)))
    if peak > limit:
        fix = 20 * math.log10(limit / peak)
        gains = {name: g + fix for name, g in gains.items()}
        master += fix
        mix = mix_stems(stems, gains, pans)
    return mix.astype(np.float32), gains, master

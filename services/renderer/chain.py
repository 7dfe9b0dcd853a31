"""Render one version of a song from a physical mix parameter set.

The chain, in this fixed order: ``ParametricEQ -> Compressor -> VintageCompressor ->
Exciter -> StereoEnhancer -> TempoDelay -> Reverb -> master`` (loudness normalisation and
true-peak limiting). Tone first, then dynamics, then harmonics and image, then the time-based
effects on the finished dry mix; mastering always comes last, so every version meets the quality
floor. Each processor is a :class:`~services.renderer.processor.Processor` and an exact bypass
at its neutral values.

With the neutral parameter set (:func:`services.common.params.defaults`) every effect is an
exact bypass, so the result is the input, loudness-matched: that is the ``original`` version.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from services.common.params import scale_departure, validate_params
from services.renderer.compressor import Compressor
from services.renderer.delay import TempoDelay
from services.renderer.eq import ParametricEQ
from services.renderer.exciter import Exciter
from services.renderer.mastering import master
from services.renderer.processor import Chain
from services.renderer.reverb import Reverb
from services.renderer.stereo import StereoEnhancer
from services.renderer.vintage_compressor import VintageCompressor

#: Tempo assumed when none is known (tempo-synced effects only).
DEFAULT_TEMPO_BPM = 120.0


@dataclass(frozen=True)
class RenderResult:
    """One rendered version.

    Attributes
    ----------
    audio : np.ndarray, shape (channels, frames), float32
        Same shape as the input.
    loudness_lufs : float
        Measured integrated loudness (BS.1770-4) of ``audio``.
    true_peak_dbtp : float
        Measured 4x-oversampled true peak of ``audio``.
    params : dict[str, float]
        The physical parameters that were applied (after the intensity control).
    """

    audio: np.ndarray
    loudness_lufs: float
    true_peak_dbtp: float
    params: dict[str, float]


def build_chain(params: Mapping[str, float], *, tempo_bpm: float = DEFAULT_TEMPO_BPM) -> Chain:
    """The mix processors for a physical parameter set, in order (mastering not included).

    Parameters
    ----------
    params : Mapping[str, float]
        Physical values by schema name; missing names take their neutral defaults.
    tempo_bpm : float
        The song's tempo (quarter notes per minute), for tempo-synced effects.

    Raises
    ------
    InvalidParameterError
        An unknown name or a value out of range.
    """
    full = validate_params(params)
    return Chain(
        [
            ParametricEQ.from_params(full),
            Compressor.from_params(full),
            VintageCompressor.from_params(full),
            Exciter.from_params(full),
            StereoEnhancer.from_params(full),
            TempoDelay.from_params(full, tempo_bpm=tempo_bpm),
            Reverb.from_params(full),
        ]
    )


def render_version(
    audio: np.ndarray,
    sample_rate: int,
    params: Mapping[str, float],
    *,
    target_lufs: float = -14.0,
    ceiling_dbtp: float = -1.0,
    tempo_bpm: float = DEFAULT_TEMPO_BPM,
    intensity_pct: float = 100.0,
) -> RenderResult:
    """Mix ``audio`` with ``params``, then normalise and limit it.

    Parameters
    ----------
    audio : np.ndarray, shape (channels, frames), floating point
    sample_rate : int
    params : Mapping[str, float]
        Physical mix parameters by schema name (validated; missing ones are neutral).
    target_lufs : float
        Integrated loudness target.
    ceiling_dbtp : float
        True-peak ceiling (4x oversampled).
    tempo_bpm : float
        The analysed tempo, for tempo-synced effects.
    intensity_pct : float
        0..100: how far every processor departs from neutral
        (:func:`services.common.params.scale_departure`).

    Returns
    -------
    RenderResult
        ``audio`` has the input's shape; ``true_peak_dbtp <= ceiling_dbtp``; ``loudness_lufs`` is
        within 0.1 LU of the target unless the target is out of reach (see
        :func:`services.renderer.mastering.master`).

    Raises
    ------
    InvalidAudioError, InvalidParameterError
    """
    applied = scale_departure(params, intensity_pct)  # validates: fail before any audio work
    chain = build_chain(applied, tempo_bpm=tempo_bpm)
    mixed = chain.process(audio, sample_rate)
    result = master(mixed, sample_rate, target_lufs=target_lufs, ceiling_dbtp=ceiling_dbtp)
    return RenderResult(
        audio=result.audio,
        loudness_lufs=result.loudness_lufs,
        true_peak_dbtp=result.true_peak_dbtp,
        params=applied,
    )


def warm_up() -> None:
    """Render one short buffer with every processor active, so numba's kernels are compiled (or
    loaded from its cache) before a server reports SERVING."""
    sr = 22_050
    t = np.arange(sr) / sr
    x = (0.08 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    # Spikes far above the tone: brought to the target loudness, they reach the limiter, whose
    # kernel a real song needs too (tests/unit/test_warm_up.py).
    x[:: sr // 4] = 0.95
    params = {
        "eq_mid_gain_db": 3.0,
        "comp_ratio": 4.0,
        "comp_threshold_db": -20.0,
        "vcomp_ratio": 2.0,
        "vcomp_threshold_db": -20.0,
        "vcomp_drive_db": 6.0,
        "exciter_mix_pct": 10.0,
        "stereo_width": 1.2,
        "stereo_bass_mono_hz": 100.0,
        "delay_mix_pct": 10.0,
        "reverb_mix_pct": 10.0,
    }
    render_version(np.stack([x, x[::-1]]), sr, params, target_lufs=-14.0, ceiling_dbtp=-1.0)

"""Feed-forward, stereo-linked, soft-knee compressor.

The detector takes the largest absolute sample across channels (so both channels get the same
gain and the stereo image does not move) in dB; a static soft-knee curve turns that level into a
gain reduction in dB; a smooth decoupled peak detector (Giannoulis, Massberg and Reiss, "Digital
Dynamic Range Compressor Design", JAES 2012) smooths the gain reduction: instant rise with
exponential release, then exponential attack smoothing. ``attack_ms`` and ``release_ms`` are the
time constants (63 % of a step). The per-sample recursion runs in a numba kernel.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numba
import numpy as np
from scipy.signal import butter, sosfilt

from services.common.params import neutral, prefixed_kwargs
from services.renderer.processor import (
    Parameter,
    Processor,
    check_processor_input,
    check_sample_rate,
)

#: Detector floor: quieter samples count as this level (keeps log10 finite).
LEVEL_FLOOR_DB = -200.0
#: Narrower knees are hard knees (the quadratic would only add rounding noise).
KNEE_EPSILON_DB = 1e-6


def static_gain_reduction_db(
    level_db: np.ndarray, *, threshold_db: float, ratio: float, knee_db: float
) -> np.ndarray:
    """Static curve: gain reduction (>= 0 dB) for input levels in dB.

    Below ``threshold_db - knee_db / 2`` nothing happens; above ``threshold_db + knee_db / 2``
    the output rises ``1 / ratio`` dB per input dB; in between a quadratic joins the two.

    Parameters
    ----------
    level_db : np.ndarray, shape (n,)

    Returns
    -------
    np.ndarray, shape (n,), float64
    """
    x = np.asarray(level_db, dtype=np.float64)
    over = x - threshold_db
    slope = 1.0 - 1.0 / ratio
    gr = np.where(over > 0.0, slope * over, 0.0)
    if knee_db > KNEE_EPSILON_DB:
        half = knee_db / 2.0
        in_knee = np.abs(over) <= half
        gr[in_knee] = slope * (over[in_knee] + half) ** 2 / (2.0 * knee_db)
    return gr


@numba.njit(cache=True, nogil=True)
def _smooth_gain_reduction(
    gr: np.ndarray, attack_coef: float, release_coef: float, initial: float = 0.0
) -> np.ndarray:
    """Smooth decoupled peak detector on a gain-reduction signal (dB, >= 0).

    The detector starts at ``initial`` (the caller passes the reduction the opening of the file
    asks for), as if it had been running on the same signal before: a file that starts loud is
    not let through uncompressed, with the makeup gain on top, for the first attack time.
    """
    out = np.empty_like(gr)
    peak = initial
    state = initial
    for i in range(gr.shape[0]):
        g = gr[i]
        released = release_coef * peak + (1.0 - release_coef) * g
        peak = g if g > released else released
        state = attack_coef * state + (1.0 - attack_coef) * peak
        out[i] = state
    return out


#: The detector starts settled on the largest reduction the file's first 10 ms ask for.
OPENING_S = 0.010


def time_constant_coef(time_ms: float, sample_rate: int) -> float:
    """One-pole coefficient for a time constant of ``time_ms`` (63 % of a step)."""
    return math.exp(-1.0 / (time_ms * 1e-3 * sample_rate))


class Compressor(Processor):
    """Feed-forward soft-knee compressor with a stereo-linked detector.

    Parameters are the schema's ``comp_*`` parameters without the prefix; build one from a
    schema parameter set with :meth:`from_params`. ``ratio=1`` (the default) is an exact bypass
    apart from ``makeup_db``.
    """

    threshold_db = Parameter("comp_threshold_db")
    ratio = Parameter("comp_ratio")
    attack_ms = Parameter("comp_attack_ms")
    release_ms = Parameter("comp_release_ms")
    knee_db = Parameter("comp_knee_db")
    makeup_db = Parameter("comp_makeup_db")
    lookahead_ms = Parameter("comp_lookahead_ms")
    sidechain_hpf_hz = Parameter("comp_sidechain_hpf_hz")

    def __init__(
        self,
        *,
        threshold_db: float = neutral("comp_threshold_db"),
        ratio: float = neutral("comp_ratio"),
        attack_ms: float = neutral("comp_attack_ms"),
        release_ms: float = neutral("comp_release_ms"),
        knee_db: float = neutral("comp_knee_db"),
        makeup_db: float = neutral("comp_makeup_db"),
        lookahead_ms: float = neutral("comp_lookahead_ms"),
        sidechain_hpf_hz: float = neutral("comp_sidechain_hpf_hz"),
    ) -> None:
        self.threshold_db = threshold_db
        self.ratio = ratio
        self.attack_ms = attack_ms
        self.release_ms = release_ms
        self.knee_db = knee_db
        self.makeup_db = makeup_db
        self.lookahead_ms = lookahead_ms
        self.sidechain_hpf_hz = sidechain_hpf_hz

    @classmethod
    def from_params(cls, params: Mapping[str, float]) -> Compressor:
        """Build from a schema parameter set (``comp_*`` names; missing ones take defaults)."""
        return cls(**prefixed_kwargs(params, "comp_"))

    def gain_reduction_db(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """The smoothed gain reduction the compressor applies.

        Parameters
        ----------
        audio : np.ndarray, shape (channels, frames)
        sample_rate : int

        Returns
        -------
        np.ndarray, shape (frames,), float64, dB >= 0 (makeup gain not included)
        """
        x = check_processor_input(audio)
        sr = check_sample_rate(sample_rate)
        if self.ratio == 1.0:
            return np.zeros(x.shape[1])
        detector = x
        hpf_hz = min(self.sidechain_hpf_hz, 0.45 * sr)
        if hpf_hz > neutral("comp_sidechain_hpf_hz"):
            # Detector-only high-pass: bass energy no longer drives the gain (no pumping).
            detector = sosfilt(butter(4, hpf_hz, btype="highpass", fs=sr, output="sos"), x)
        peak = np.max(np.abs(detector), axis=0)
        with np.errstate(divide="ignore"):
            level_db = np.maximum(20.0 * np.log10(peak), LEVEL_FLOOR_DB)
        gr = static_gain_reduction_db(
            level_db, threshold_db=self.threshold_db, ratio=self.ratio, knee_db=self.knee_db
        )
        opening = gr[: max(1, int(OPENING_S * sr))]
        smoothed = _smooth_gain_reduction(
            np.ascontiguousarray(gr),
            time_constant_coef(self.attack_ms, sr),
            time_constant_coef(self.release_ms, sr),
            float(opening.max()) if opening.size else 0.0,
        )
        ahead = int(round(self.lookahead_ms * 1e-3 * sr))
        if ahead > 0:
            # Offline look-ahead: the gain reaches each transient `ahead` samples early; the
            # audio itself is not delayed (no added latency).
            smoothed = np.concatenate([smoothed[ahead:], np.full(ahead, smoothed[-1])])
        return smoothed

    def _process(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        if self.ratio == 1.0:
            if self.makeup_db == 0.0:
                return audio
            return audio * 10.0 ** (self.makeup_db / 20.0)
        gr = self.gain_reduction_db(audio, sample_rate)
        gain = 10.0 ** ((self.makeup_db - gr) / 20.0)
        return audio * gain[np.newaxis, :]

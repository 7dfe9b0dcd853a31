"""Feed-forward, stereo-linked, soft-knee compressor.

The detector takes the largest absolute sample across channels (so both channels get the same
gain and the stereo image does not move) in dB; a static soft-knee curve turns that level into a
gain reduction in dB; a smooth decoupled peak detector (Giannoulis, Massberg and Reiss, "Digital
Dynamic Range Compressor Design", JAES 2012) smooths the gain reduction: instant rise with
exponential release, then exponential attack smoothing. ``attack_ms`` and ``release_ms`` are the
time constants (63 % of a step). The detector, the smoothing and the gain are numba kernels
(no logarithm below the knee, no exponential where nothing is reduced).

Block processing: the detector is memoryless apart from the optional sidechain high-pass (its
settle time is the history :meth:`Compressor.context` asks for; the look-ahead is the
look-ahead time), and the release and attack states carry over from block to block
(:meth:`Compressor.resumable`), so a release of a second costs no history.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numba
import numpy as np
from scipy.signal import butter

from services.common.params import neutral, prefixed_kwargs
from services.renderer.filters import settle_frames, sos_pass
from services.renderer.processor import (
    Context,
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
def _detector_gain_reduction(
    x: np.ndarray, threshold_db: float, ratio: float, knee_db: float
) -> np.ndarray:  # pragma: no cover - numba
    """Static gain reduction (dB) per frame from the stereo-linked peak level: the curve of
    :func:`static_gain_reduction_db` with the logarithm skipped below the knee (reduction 0)."""
    channels, n = x.shape
    out = np.empty(n)
    half = 0.5 * knee_db if knee_db > KNEE_EPSILON_DB else 0.0
    lowest = 10.0 ** ((threshold_db - half) / 20.0)
    slope = 1.0 - 1.0 / ratio
    for i in range(n):
        peak = 0.0
        for c in range(channels):
            peak = max(peak, abs(x[c, i]))
        if peak <= lowest:
            out[i] = 0.0
            continue
        over = max(20.0 * math.log10(peak), LEVEL_FLOOR_DB) - threshold_db
        if half > 0.0 and abs(over) <= half:
            out[i] = slope * (over + half) ** 2 / (2.0 * knee_db)
        elif over > 0.0:
            out[i] = slope * over
        else:
            out[i] = 0.0
    return out


@numba.njit(cache=True, nogil=True)
def _smooth_gain_reduction(
    gr: np.ndarray,
    attack_coef: float,
    release_coef: float,
    state: np.ndarray,
    start: int,
    save_at: int,
    saved: np.ndarray,
) -> np.ndarray:  # pragma: no cover - numba
    """Smooth decoupled peak detector on a gain-reduction signal (dB, >= 0).

    Runs from frame ``start`` with ``state = [peak, smoothed]`` (frames before ``start`` are
    left 0); the state before frame ``save_at`` (``0 <= save_at <= len``; -1 for none) is
    copied into ``saved``.
    """
    n = gr.shape[0]
    out = np.zeros(n)
    peak = state[0]
    smoothed = state[1]
    for i in range(start, n):
        if i == save_at:
            saved[0] = peak
            saved[1] = smoothed
        g = gr[i]
        released = release_coef * peak + (1.0 - release_coef) * g
        peak = g if g > released else released
        smoothed = attack_coef * smoothed + (1.0 - attack_coef) * peak
        out[i] = smoothed
    if save_at == n:
        saved[0] = peak
        saved[1] = smoothed
    return out


@numba.njit(cache=True, nogil=True)
def _apply_gain(
    x: np.ndarray, reduction_db: np.ndarray, makeup_db: float, ahead: int
) -> np.ndarray:  # pragma: no cover - numba
    """``x * 10 ** ((makeup_db - reduction_db[t + ahead]) / 20)``, the index clamped at the end
    (look-ahead: the gain reaches each transient ``ahead`` frames early, the audio itself is
    not delayed); no exponential where there is no reduction."""
    channels, n = x.shape
    y = np.empty_like(x)
    makeup = 10.0 ** (makeup_db / 20.0)
    to_neper = math.log(10.0) / 20.0
    for i in range(n):
        r = reduction_db[min(i + ahead, n - 1)]
        g = makeup if r == 0.0 else math.exp((makeup_db - r) * to_neper)
        for c in range(channels):
            y[c, i] = x[c, i] * g
    return y


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

    @property
    def is_bypass(self) -> bool:
        """True when the compressor returns its input unchanged (ratio 1, no makeup gain)."""
        return self.ratio == 1.0 and self.makeup_db == 0.0

    def _sidechain_sos(self, sr: int) -> np.ndarray | None:
        hpf_hz = min(self.sidechain_hpf_hz, 0.45 * sr)
        if hpf_hz > neutral("comp_sidechain_hpf_hz"):
            return np.asarray(butter(4, hpf_hz, btype="highpass", fs=sr, output="sos"))
        return None

    def _lookahead_frames(self, sr: int) -> int:
        return int(round(self.lookahead_ms * 1e-3 * sr))

    def context(self, sample_rate: int) -> Context:
        """History: the sidechain high-pass's settle time (the detector is memoryless otherwise;
        the release and attack states carry over between blocks, see :meth:`resumable`).
        Look-ahead: ``lookahead_ms``."""
        sr = check_sample_rate(sample_rate)
        sos = self._sidechain_sos(sr) if self.ratio != 1.0 else None
        return Context(
            history=settle_frames(sos) if sos is not None else 0,
            lookahead=self._lookahead_frames(sr) if self.ratio != 1.0 else 0,
        )

    def resumable(self, sample_rate: int, channels: int) -> _Resumable:
        """Block processing with the detector's release and attack states carried over."""
        return _Resumable(self, check_sample_rate(sample_rate))

    def _smoothed(
        self,
        x: np.ndarray,
        sr: int,
        *,
        start: int = 0,
        state: np.ndarray | None = None,
        save_at: int = -1,
        saved: np.ndarray | None = None,
    ) -> np.ndarray:
        """Smoothed gain reduction over ``x`` from frame ``start`` (not look-ahead shifted).
        ``state`` None: the start-up state, settled on the opening :data:`OPENING_S`."""
        detector = x
        sos = self._sidechain_sos(sr)
        if sos is not None:
            # Detector-only high-pass: bass energy no longer drives the gain (no pumping).
            detector = np.array(x, dtype=np.float64, order="C")
            sos_pass(sos, detector)
        gr = _detector_gain_reduction(detector, self.threshold_db, self.ratio, self.knee_db)
        if state is None:
            opening = gr[: max(1, int(OPENING_S * sr))]
            initial = float(opening.max()) if opening.size else 0.0
            state = np.array([initial, initial])
        return _smooth_gain_reduction(
            gr,
            time_constant_coef(self.attack_ms, sr),
            time_constant_coef(self.release_ms, sr),
            state,
            start,
            save_at,
            np.zeros(2) if saved is None else saved,
        )

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
        if self.ratio == 1.0 or x.shape[1] == 0:
            return np.zeros(x.shape[1])
        smoothed = self._smoothed(x, sr)
        ahead = self._lookahead_frames(sr)
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
        x = np.ascontiguousarray(audio, dtype=np.float64)
        smoothed = self._smoothed(x, sample_rate)
        return _apply_gain(x, smoothed, self.makeup_db, self._lookahead_frames(sample_rate))


class _Resumable:
    """The compressor over overlapping block extents, its release and attack states saved at
    the frame where the next extent's kept part starts."""

    def __init__(self, compressor: Compressor, sample_rate: int) -> None:
        self.compressor = compressor
        self.sample_rate = sample_rate
        self.saved = np.zeros(2)
        self.saved_at = 0

    def __call__(self, x: np.ndarray, lo: int, kept_from: int, save_at: int | None) -> np.ndarray:
        comp = self.compressor
        if comp.ratio == 1.0:
            return comp._process(x, self.sample_rate)
        state = None  # the start-up state, when the kept part starts the file
        if kept_from > 0:
            if kept_from != self.saved_at:
                raise AssertionError(f"resumed at {kept_from}, state saved at {self.saved_at}")
            state = self.saved.copy()
        saved = np.zeros(2)
        smoothed = comp._smoothed(
            x,
            self.sample_rate,
            start=kept_from - lo,
            state=state,
            save_at=-1 if save_at is None else save_at - lo,
            saved=saved,
        )
        if save_at is not None:
            self.saved, self.saved_at = saved, save_at
        return _apply_gain(x, smoothed, comp.makeup_db, comp._lookahead_frames(self.sample_rate))

"""Feed-forward, stereo-linked, soft-knee compressor.

The detector takes the largest absolute sample across channels (so both channels get the same
gain and the stereo image does not move) in dB; a static soft-knee curve turns that level into a
gain reduction in dB; a smooth decoupled peak detector (Giannoulis, Massberg and Reiss, "Digital
Dynamic Range Compressor Design", JAES 2012) smooths the gain reduction: instant rise with
exponential release, then exponential attack smoothing. ``attack_ms`` and ``release_ms`` are the
time constants (63 % of a step).

Speed: three numba kernels, one pass each over a block: the detector level (with the optional
sidechain high-pass run on the fly, no filtered copy), the static curve with the smoothing and
the look-ahead shift, and the gain. The logarithm before the curve and the exponential before
the gain are numpy's vectorised float32 ones in place (numba's are scalar calls without Intel
SVML; vectorised they cost a few ns per frame, whatever the level, and round to about 1e-6 dB).

Block processing (:mod:`services.renderer.blocks`): apart from the peak detector the only memory
is the sidechain high-pass, whose settle time is the history :meth:`Compressor.context` asks
for; the look-ahead is the look-ahead time. The peak detector's release and attack states (a
release of seconds) carry over exactly from block to block (:meth:`Compressor.resumable`)
instead of being rebuilt from a long history; the start-up state (settled on the file's opening
10 ms) is used only by the extent that starts the file, so blocks match the whole buffer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numba
import numpy as np
from scipy.signal import butter

from services.common.params import neutral, prefixed_kwargs
from services.renderer.filters import settle_frames
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
def _peak_levels(x: np.ndarray, sos: np.ndarray) -> np.ndarray:  # pragma: no cover - numba
    """The stereo-linked detector level per frame: the largest absolute sample across channels,
    floored at :data:`LEVEL_FLOOR_DB`, float32 (linear; the caller takes the logarithm).

    ``sos`` is the sidechain high-pass (the 4th-order Butterworth: two sections) run on each
    channel from zero state, or an empty ``(0, 6)`` array for none: the recursion of
    :func:`scipy.signal.sosfilt`, without a filtered copy of the audio.
    """
    channels, n = x.shape
    out = np.empty(n, dtype=np.float32)
    floor = 10.0 ** (LEVEL_FLOOR_DB / 20.0)
    if sos.shape[0] == 0:
        for i in range(n):
            out[i] = floor
        for c in range(channels):
            for i in range(n):
                out[i] = max(out[i], abs(x[c, i]))
        return out
    b0, b1, b2, a1, a2 = sos[0, 0], sos[0, 1], sos[0, 2], sos[0, 4], sos[0, 5]
    c0, c1, c2, d1, d2 = sos[1, 0], sos[1, 1], sos[1, 2], sos[1, 4], sos[1, 5]
    # Two channels per pass (independent recursions overlap in the CPU); an odd last channel
    # is paired with itself.
    for c in range(0, channels, 2):
        c_ = min(c + 1, channels - 1)
        z1 = z2 = w1 = w2 = 0.0
        u1 = u2 = v1 = v2 = 0.0
        for i in range(n):
            s = x[c, i]
            o = b0 * s + z1
            z1 = b1 * s - a1 * o + z2
            z2 = b2 * s - a2 * o
            p = c0 * o + w1
            w1 = c1 * o - d1 * p + w2
            w2 = c2 * o - d2 * p
            t = x[c_, i]
            q = b0 * t + u1
            u1 = b1 * t - a1 * q + u2
            u2 = b2 * t - a2 * q
            r = c0 * q + v1
            v1 = c1 * q - d1 * r + v2
            v2 = c2 * q - d2 * r
            level = max(abs(p), abs(r), floor)
            out[i] = level if c == 0 else max(out[i], level)
    return out


@numba.njit(cache=True, nogil=True, inline="always")
def _knee_curve(
    level_db: float, threshold_db: float, slope: float, half: float, knee_scale: float
) -> float:  # pragma: no cover - numba
    """:func:`static_gain_reduction_db` for one level (``half``: half the knee, 0 if hard)."""
    over = level_db - threshold_db
    if over <= -half:
        return 0.0
    if over < half:
        return knee_scale * (over + half) * (over + half)
    return slope * over


@numba.njit(cache=True, nogil=True)
def _ballistics(
    level_db: np.ndarray,
    threshold_db: float,
    ratio: float,
    knee_db: float,
    attack_coef: float,
    release_coef: float,
    opening: int,
    state: np.ndarray,
    start: int,
    save_at: int,
    saved: np.ndarray,
    ahead: int,
    makeup_db: float,
    reduction: np.ndarray,
    exponent: np.ndarray,
) -> None:  # pragma: no cover - numba
    """Static curve and smooth decoupled peak detector, from detector levels in dB.

    The detector runs from frame ``start`` with ``state = [peak, smoothed]``, or, with
    ``opening > 0``, settled on the largest static reduction of the first ``opening`` frames;
    the state before frame ``save_at`` (``0 <= save_at <= len``; -1 for none) is copied into
    ``saved``. The smoothed reduction of frame ``t + ahead`` (clamped at the end; look-ahead)
    is written, for frame ``t``, into ``reduction`` (dB, float64) and/or as the gain's natural
    logarithm ``(makeup_db - reduction) ln(10) / 20`` into ``exponent`` (float32); an array
    that is not the length of ``level_db`` is skipped. Frames before ``start - ahead`` get no
    reduction.
    """
    n = level_db.shape[0]
    half = 0.5 * knee_db if knee_db > KNEE_EPSILON_DB else 0.0
    slope = 1.0 - 1.0 / ratio
    knee_scale = slope / (2.0 * knee_db) if half > 0.0 else 0.0
    peak = state[0]
    smoothed = state[1]
    if opening > 0:
        peak = 0.0
        for i in range(min(opening, n)):
            peak = max(peak, _knee_curve(level_db[i], threshold_db, slope, half, knee_scale))
        smoothed = peak
    want_reduction = reduction.shape[0] == n
    want_exponent = exponent.shape[0] == n
    to_neper = math.log(10.0) / 20.0
    first = max(0, start - ahead)
    for t in range(first):
        if want_reduction:
            reduction[t] = 0.0
        if want_exponent:
            exponent[t] = makeup_db * to_neper
    one_minus_release = 1.0 - release_coef
    one_minus_attack = 1.0 - attack_coef
    for i in range(start, n):
        if i == save_at:
            saved[0] = peak
            saved[1] = smoothed
        g = _knee_curve(level_db[i], threshold_db, slope, half, knee_scale)
        released = release_coef * peak + one_minus_release * g
        peak = g if g > released else released
        smoothed = attack_coef * smoothed + one_minus_attack * peak
        t = i - ahead
        if t >= 0:
            if want_reduction:
                reduction[t] = smoothed
            if want_exponent:
                exponent[t] = (makeup_db - smoothed) * to_neper
    if save_at == n:
        saved[0] = peak
        saved[1] = smoothed
    for t in range(max(first, n - ahead), n):
        if want_reduction:
            reduction[t] = smoothed
        if want_exponent:
            exponent[t] = (makeup_db - smoothed) * to_neper


@numba.njit(cache=True, nogil=True)
def _scale(x: np.ndarray, gain: np.ndarray) -> np.ndarray:  # pragma: no cover - numba
    """``x * gain`` with one gain per frame, float64."""
    channels, n = x.shape
    y = np.empty((channels, n))
    for c in range(channels):
        for i in range(n):
            y[c, i] = x[c, i] * gain[i]
    return y


#: The detector starts settled on the largest reduction the file's first 10 ms ask for.
OPENING_S = 0.010
#: No sidechain filter, and no output array, for the kernels (one compiled signature each).
_NO_FILTER = np.zeros((0, 6))
_NOTHING = np.zeros(0)
_NOTHING_32 = np.zeros(0, dtype=np.float32)


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
            sos = np.asarray(butter(4, hpf_hz, btype="highpass", fs=sr, output="sos"))
            assert sos.shape == (2, 6)  # what the detector kernel runs
            return sos
        return None

    def _lookahead_frames(self, sr: int) -> int:
        return int(round(self.lookahead_ms * 1e-3 * sr))

    def context(self, sample_rate: int) -> Context:
        """History: the sidechain high-pass's settle time (:func:`settle_frames`: its impulse
        response has fallen below 1e-12, so its start-up error in the detector level is far
        below 1e-9 dB); the detector is memoryless otherwise, and the release and attack states
        carry over between blocks (:meth:`resumable`). Look-ahead: ``lookahead_ms``. Nothing
        when the compressor is a plain gain (``ratio`` 1)."""
        sr = check_sample_rate(sample_rate)
        sos = self._sidechain_sos(sr) if self.ratio != 1.0 else None
        return Context(
            history=settle_frames(sos) if sos is not None else 0,
            lookahead=self._lookahead_frames(sr) if self.ratio != 1.0 else 0,
        )

    def resumable(self, sample_rate: int, channels: int) -> _Resumable:
        """Block processing with the detector's release and attack states carried over."""
        return _Resumable(self, check_sample_rate(sample_rate))

    def _detector_db(self, x: np.ndarray, sr: int) -> np.ndarray:
        """The detector level per frame in dB, float32: the stereo-linked peak (through the
        sidechain high-pass when it is on) and numpy's vectorised float32 logarithm (about
        1e-6 dB of rounding, far below what the ear or the output's resolution sees)."""
        sos = self._sidechain_sos(sr)
        level = _peak_levels(x, _NO_FILTER if sos is None else sos)
        np.log(level, out=level)
        level *= np.float32(20.0 / math.log(10.0))
        return level

    def _run(
        self,
        x: np.ndarray,
        sr: int,
        *,
        reduction: np.ndarray = _NOTHING,
        exponent: np.ndarray = _NOTHING_32,
        start: int = 0,
        state: np.ndarray | None = None,
        save_at: int = -1,
        saved: np.ndarray | None = None,
    ) -> None:
        """The smoothed, look-ahead shifted gain reduction over ``x`` from frame ``start`` into
        ``reduction`` (dB) and/or ``exponent`` (the gain's natural logarithm), see
        :func:`_ballistics`. ``state`` None: the start-up state, settled on the opening
        :data:`OPENING_S`."""
        _ballistics(
            self._detector_db(x, sr),
            self.threshold_db,
            self.ratio,
            self.knee_db,
            time_constant_coef(self.attack_ms, sr),
            time_constant_coef(self.release_ms, sr),
            max(1, int(OPENING_S * sr)) if state is None else 0,
            np.zeros(2) if state is None else state,
            start,
            save_at,
            np.zeros(2) if saved is None else saved,
            self._lookahead_frames(sr),
            self.makeup_db,
            reduction,
            exponent,
        )

    def _compress(self, x: np.ndarray, sr: int, **run: Any) -> np.ndarray:
        """The compressed audio (float64): the gain as one float32 exponential per frame
        (numpy's vectorised one; 6e-8 relative rounding, below the float32 output's)."""
        gain = np.empty(x.shape[1], dtype=np.float32)
        self._run(x, sr, exponent=gain, **run)
        np.exp(gain, out=gain)
        return _scale(x, gain)

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
        reduction = np.empty(x.shape[1])
        self._run(np.ascontiguousarray(x), sr, reduction=reduction)
        return reduction

    def _process(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        if self.ratio == 1.0:
            if self.makeup_db == 0.0:
                return audio
            return audio * 10.0 ** (self.makeup_db / 20.0)
        return self._compress(np.ascontiguousarray(audio, dtype=np.float64), sample_rate)


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
        y = comp._compress(
            np.ascontiguousarray(x, dtype=np.float64),
            self.sample_rate,
            start=kept_from - lo,
            state=state,
            save_at=-1 if save_at is None else save_at - lo,
            saved=saved,
        )
        if save_at is not None:
            self.saved, self.saved_at = saved, save_at
        return y

"""Look-ahead true-peak limiter with zero latency.

How the gain is found, per sample ``n`` (all channels share one gain, so the image holds):

1. **Peak estimate.** The signal is oversampled 4x with the polyphase FIR of
   :func:`scipy.signal.resample_poly` (the interpolator :mod:`services.common.loudness`
   measures true peak with), evaluated by a numba kernel (GIL released) that never
   materialises the 4x signal; the peak near sample ``n`` is the largest oversampled
   magnitude on either side of it, across channels. The envelope scales with a gain, so a
   caller that limits one signal at several gains (the loudness loop) computes it once and
   passes ``envelope`` and ``gain``.
2. **Required gain** ``min(1, ceiling / peak)``.
3. **Look-ahead.** A running minimum over the next ``lookahead`` samples, then a moving average
   over the previous ``lookahead`` samples: the gain ramps down linearly and reaches the
   required value *at* the peak, never later, and never exceeds the required gain anywhere.
4. **Release.** Instant attack (the ramp already is smooth), exponential release.
   Steps 2-4 are one numba kernel (:func:`_gain_curve`): a monotonic-deque running maximum of
   the peaks backwards, then the moving sum and the release forwards, in O(frames) whatever the
   look-ahead, with no division and one multiplication per frame where nothing is limited.
5. **Applied in place.** Rendering is offline, so the look-ahead reads the future of the same
   buffer: the output is not delayed (zero latency, same length, time-aligned with the input).
6. **Guarantee.** The float32 output is rendered and its 4x-oversampled true peak measured in
   one pass (:func:`~services.common.loudness.gained_true_peak`, the meter's own kernel); while
   a residual overshoot remains (gain modulation can create new inter-sample peaks) the internal
   ceiling is lowered by the overshoot and the gain recomputed; if that still does not settle, a
   final static trim closes the gap. The float32 output's true peak is <= the ceiling.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from services.common.errors import InvalidAudioError
from services.common.loudness import (
    gained_true_peak,
    oversampled_peak_envelope,
    oversampled_peak_envelope_f32,
    true_peak_linear,
)
from services.renderer.processor import (
    Parameter,
    Processor,
    check_processor_input,
    check_sample_rate,
)

__all__ = ["TruePeakLimiter", "checked_audio", "oversampled_peak_envelope"]

#: Rounds of "measure, lower the internal ceiling, recompute" before the static trim.
_MAX_ROUNDS = 4
#: The internal check keeps this relative distance below the ceiling, so that a measurement
#: whose rounding differs (another CPU fusing multiply-adds differently) cannot read above it.
_CHECK_MARGIN = 1e-6
#: The first round aims this far (relative, 0.009 dB) below the ceiling: gain modulation
#: creates new inter-sample peaks, up to ~1e-3 relative on bright material driven 12 dB into
#: the limiter, and a second round costs as much as the first.
_FIRST_ROUND_HEADROOM = 1e-3
#: A release this close to unity gain is unity (1e-12 is far below float32 resolution, so the
#: output is unchanged; the decay then stops costing a multiplication per frame).
_RELEASE_SNAP = 1e-12


def checked_audio(audio: np.ndarray) -> np.ndarray:
    """:func:`~services.renderer.processor.check_processor_input` without the float64 copy.

    float32 audio (what every processor returns) stays float32, C-contiguous; anything else is
    validated and converted as ``check_processor_input`` does.

    Raises
    ------
    InvalidAudioError
        Not a floating-point numpy array, not 2-D, no channels, or non-finite samples.
    """
    if not (
        isinstance(audio, np.ndarray)
        and audio.dtype == np.float32
        and audio.ndim == 2
        and audio.shape[0] >= 1
    ):
        return check_processor_input(audio)
    # max and min propagate NaN and show an infinity: all finite exactly when both are, without
    # a temporary array.
    if not (math.isfinite(float(audio.max())) and math.isfinite(float(audio.min()))):
        raise InvalidAudioError("the audio contains NaN or infinite samples")
    return np.ascontiguousarray(audio)


@numba.njit(cache=True, nogil=True)
def _gain_curve(
    envelope: np.ndarray, threshold: float, lookahead: int, release_coef: float, out: np.ndarray
) -> None:  # pragma: no cover - numba
    """Limiter gain for ``envelope`` against a linear ``threshold``, into ``out``.

    ``required[n] = min(1, threshold / peak[n])`` with ``peak[n] = max(envelope[n],
    envelope[n - 1])`` (interpolated values on both sides of sample ``n`` depend on its gain);
    ``future[n]`` is its minimum over ``[n, n + lookahead]`` (the end clamped); the ramp is the
    mean of ``future`` over ``[n - lookahead, n]`` (the start clamped), at most ``required[n]``;
    then instant attack and exponential release. Three passes, no division for unlimited frames.
    """
    frames = envelope.shape[0]
    if frames == 0:
        return
    size = lookahead + 1
    # 1. peak[n] into out (vectorised).
    previous = envelope[0]
    for n in range(frames):
        e = envelope[n]
        out[n] = e if e > previous else previous
        previous = e
    # 2. Backwards: the largest peak above the threshold in [n, n + lookahead] (0 if none), with
    # a monotonic deque of the limited frames (a ring of indices and peaks, decreasing from front
    # to back); unlimited frames never enter it.
    capacity = size + 1
    ring_i = np.empty(capacity, np.int64)
    ring_v = np.empty(capacity)
    front = 0
    back = 0  # one past the last entry
    count = 0
    for i in range(frames):
        n = frames - 1 - i
        peak = out[n]
        if peak > threshold:
            while count > 0:
                last = back - 1 if back > 0 else capacity - 1
                if ring_v[last] > peak:
                    break
                back = last
                count -= 1
            ring_i[back] = n
            ring_v[back] = peak
            back = back + 1 if back + 1 < capacity else 0
            count += 1
        while count > 0 and ring_i[front] > n + lookahead:
            front = front + 1 if front + 1 < capacity else 0
            count -= 1
        out[n] = ring_v[front] if count > 0 else 0.0
    # 3. Forwards, in deficits (1 - gain), which are exactly zero where nothing is limited: the
    # moving mean of 1 - min(1, threshold / that peak) over [n - lookahead, n] (a running sum,
    # reset to exactly zero whenever no frame in the window is limited), at least the required
    # deficit; then instant attack and exponential release, which for an unlimited frame is one
    # multiplication (the deficit decays), snapped to zero once negligible.
    window = np.zeros(size)
    total = 0.0
    limited = 0
    if out[0] > threshold:  # the start is clamped: frames before 0 repeat frame 0
        window[:] = 1.0 - threshold / out[0]
        total = window[0] * size
        limited = size
    state = 0.0
    slot = 0
    previous = envelope[0]
    for n in range(frames):
        if n > 0:
            slot = slot + 1 if slot + 1 < size else 0
            old = window[slot]
            new = 1.0 - threshold / out[n] if out[n] > threshold else 0.0
            if old > 0.0 or new > 0.0:
                limited += int(new > 0.0) - int(old > 0.0)
                total += new - old
                window[slot] = new
                if limited == 0:
                    total = 0.0
        ramp = total / size
        e = envelope[n]
        peak = e if e > previous else previous
        previous = e
        # Mathematically the ramp already reduces at least as required; rounding must not
        # break it.
        if peak > threshold:
            ramp = max(ramp, 1.0 - threshold / peak)
        if ramp == 0.0:
            state *= release_coef
            if state < _RELEASE_SNAP:
                state = 0.0
        else:
            state = max(ramp, release_coef * state + (1.0 - release_coef) * ramp)
        out[n] = 1.0 - state


class TruePeakLimiter(Processor):
    """Look-ahead, zero-latency, stereo-linked true-peak limiter.

    Parameters
    ----------
    ceiling_dbtp : float
        Output true peak (4x oversampled) never exceeds this; -20..0 dBTP.
    lookahead_ms : float
        Length of the gain ramp before a peak; 0.5..50 ms.
    release_ms : float
        Release time constant; 1..2000 ms.
    """

    ceiling_dbtp = Parameter(minimum=-20.0, maximum=0.0, unit="dBTP")
    lookahead_ms = Parameter(minimum=0.5, maximum=50.0, unit="ms")
    release_ms = Parameter(minimum=1.0, maximum=2000.0, unit="ms")

    def __init__(
        self, *, ceiling_dbtp: float = -1.0, lookahead_ms: float = 5.0, release_ms: float = 50.0
    ) -> None:
        self.ceiling_dbtp = ceiling_dbtp
        self.lookahead_ms = lookahead_ms
        self.release_ms = release_ms

    @property
    def ceiling_linear(self) -> float:
        return 10.0 ** (self.ceiling_dbtp / 20.0)

    @property
    def limit_linear(self) -> float:
        """The level the output's true peak is held to: the ceiling less a 1e-6 relative margin,
        so that a measurement summed in another order cannot read above the ceiling."""
        return self.ceiling_linear * (1.0 - _CHECK_MARGIN)

    def gain(self, audio: np.ndarray, sample_rate: int, *, ceiling: float) -> np.ndarray:
        """Gain curve that limits ``audio`` to the linear ``ceiling`` (before the guarantee step).

        Parameters
        ----------
        audio : np.ndarray, shape (channels, frames)
        sample_rate : int
        ceiling : float
            Linear peak ceiling.

        Returns
        -------
        np.ndarray, shape (frames,), float64, values in (0, 1]
        """
        return self.gain_curve(
            oversampled_peak_envelope(audio),
            sample_rate,
            ceiling=ceiling,
            out=np.empty(np.shape(audio)[1]),
        )

    def gain_curve(
        self,
        envelope: np.ndarray,
        sample_rate: int,
        *,
        ceiling: float | None = None,
        gain: float = 1.0,
        out: np.ndarray | None = None,
        envelope_peak: float | None = None,
    ) -> np.ndarray:
        """Gain curve that limits ``gain * audio`` to ``ceiling``, from the envelope of ``audio``.

        Parameters
        ----------
        envelope : np.ndarray, shape (frames,), float32 or float64
            :func:`oversampled_peak_envelope` (or its float32 variant) of the un-gained audio.
        sample_rate : int
        ceiling : float, optional
            Linear peak ceiling. By default, the curve :meth:`limit` starts from: all ones when
            ``gain * audio`` peaks at most at :attr:`limit_linear`, else aimed slightly below it.
        gain : float
            Linear gain applied before the limiter.
        out : np.ndarray, shape (frames,), float32 or float64, optional
            Where to write the curve (a new float32 array by default).
        envelope_peak : float, optional
            ``envelope.max()`` when the caller has it (a loudness search calls this many times).

        Returns
        -------
        np.ndarray, shape (frames,), values in (0, 1]
        """
        if out is None:
            out = np.empty(envelope.shape[0], dtype=np.float32)
        if envelope_peak is None:
            envelope_peak = float(envelope.max()) if envelope.size else 0.0
        peak = envelope_peak * gain
        if ceiling is None:
            if peak <= self.limit_linear:
                out[:] = 1.0
                return out
            # Aim a little lower at once (gain modulation creates new inter-sample peaks), so one
            # round usually suffices.
            ceiling = self.limit_linear * (1.0 - _FIRST_ROUND_HEADROOM)
        if peak <= ceiling:
            out[:] = 1.0
            return out
        lookahead = max(1, int(round(self.lookahead_ms * 1e-3 * sample_rate)))
        coef = math.exp(-1.0 / (self.release_ms * 1e-3 * sample_rate))
        _gain_curve(np.ascontiguousarray(envelope), ceiling / gain, lookahead, coef, out)
        return out

    def limit(
        self,
        audio: np.ndarray,
        sample_rate: int,
        *,
        envelope: np.ndarray | None = None,
        gain: float = 1.0,
        curve: np.ndarray | None = None,
        out: np.ndarray | None = None,
        envelope_peak: float | None = None,
    ) -> tuple[np.ndarray, float]:
        """Limit ``gain * audio`` and report the output's true peak (what :meth:`process` does,
        plus the figure).

        Parameters
        ----------
        audio : np.ndarray, shape (channels, frames), floating point
            Checked like :meth:`process` input (float32 is not copied to float64).
        sample_rate : int
        envelope : np.ndarray, shape (frames,), optional
            :func:`oversampled_peak_envelope` (or the float32 variant) of ``audio`` when the
            caller already has it: it scales with ``gain``, so a loudness loop computes it once.
        gain : float
            Linear gain applied before limiting (no gained copy of ``audio`` is made).
        curve : np.ndarray, shape (frames,), float32, optional
            ``gain_curve(envelope, sample_rate, gain=gain)`` when the caller has it (a loudness
            prediction computed it); used as the first round, then overwritten if more are
            needed.
        out : np.ndarray, shape (channels, frames), float32, optional
            Buffer for the result (a loop rendering many candidates reuses its buffers).
        envelope_peak : float, optional
            ``envelope.max()`` when the caller has it (with ``envelope``).

        Returns
        -------
        audio : np.ndarray, shape (channels, frames), float32
            ``out`` when given.
        true_peak : float
            Linear 4x-oversampled true peak of the returned audio (measured), <= the ceiling.
        """
        return self._limit(
            checked_audio(audio),
            check_sample_rate(sample_rate),
            envelope=envelope,
            gain=gain,
            curve=curve,
            out=out,
            envelope_peak=envelope_peak,
        )

    def _limit(
        self,
        x: np.ndarray,
        sample_rate: int,
        *,
        envelope: np.ndarray | None = None,
        gain: float = 1.0,
        curve: np.ndarray | None = None,
        out: np.ndarray | None = None,
        envelope_peak: float | None = None,
    ) -> tuple[np.ndarray, float]:
        """:meth:`limit` of audio already checked (:func:`checked_audio`) at a checked rate."""
        gain = float(gain)
        if not math.isfinite(gain) or gain <= 0.0:
            raise ValueError(f"gain must be positive and finite, got {gain!r}")
        if out is None:
            out = np.empty(x.shape, dtype=np.float32)
        elif out.shape != x.shape or out.dtype != np.float32:
            raise ValueError(f"out must be float32 with shape {x.shape}")
        limit = self.limit_linear
        env = oversampled_peak_envelope_f32(x) if envelope is None else envelope
        if env.shape != (x.shape[1],):
            raise ValueError(f"envelope has shape {env.shape}, expected ({x.shape[1]},)")
        if envelope_peak is None or envelope is None:
            envelope_peak = float(env.max()) if env.size else 0.0
        if env.size == 0 or envelope_peak * gain <= limit:
            # No limiting needed: a constant gain (none at all for gain 1). float32 rounding
            # moves a sample by < 1e-7 relative, but measure rather than predict.
            peak = gained_true_peak(x, scale=gain, out=out)
            if peak <= limit:
                return out, peak
        target = limit * (1.0 - _FIRST_ROUND_HEADROOM)
        if curve is None:
            curve = self.gain_curve(
                env, sample_rate, ceiling=target, gain=gain, envelope_peak=envelope_peak
            )
        elif curve.shape != (x.shape[1],) or curve.dtype != np.float32:
            raise ValueError(f"curve must be float32 with shape ({x.shape[1]},)")
        for round_ in range(_MAX_ROUNDS):
            if round_ > 0:
                self.gain_curve(
                    env,
                    sample_rate,
                    ceiling=target,
                    gain=gain,
                    out=curve,
                    envelope_peak=envelope_peak,
                )
            peak = gained_true_peak(x, scale=gain, gain=curve, out=out)
            if peak <= limit:
                return out, peak
            target *= limit / peak * (1.0 - 1e-4)
        # Static trim: the true peak scales linearly with a constant gain.
        for _ in range(64):
            np.multiply(out, limit / peak * (1.0 - 1e-4), out=out, casting="unsafe")
            peak = true_peak_linear(out)
            if peak <= limit:
                break
        return out, peak

    def _process(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        return self.limit(audio, sample_rate)[0]

"""Look-ahead true-peak limiter with zero latency.

How the gain is found, per sample ``n`` (all channels share one gain, so the image holds):

1. **Peak estimate.** The signal is oversampled 4x with the polyphase FIR of
   :func:`scipy.signal.resample_poly` (the interpolator :mod:`services.common.loudness`
   measures true peak with), evaluated by a parallel numba kernel that never materialises the
   4x signal; the peak near sample ``n`` is the largest oversampled magnitude on either side of
   it, across channels.
2. **Required gain** ``min(1, ceiling / peak)``.
3. **Look-ahead.** A running minimum over the next ``lookahead`` samples
   (:func:`scipy.ndimage.minimum_filter1d`), then a moving average over the previous
   ``lookahead`` samples: the gain ramps down linearly and reaches the required value *at* the
   peak, never later, and never exceeds the required gain anywhere.
4. **Release.** Instant attack (the ramp already is smooth), exponential release (numba kernel).
5. **Applied in place.** Rendering is offline, so the look-ahead reads the future of the same
   buffer: the output is not delayed (zero latency, same length, time-aligned with the input).
6. **Guarantee.** The output's 4x-oversampled true peak is measured; while a residual overshoot
   remains (gain modulation can create new inter-sample peaks) the internal ceiling is lowered by
   the overshoot and the gain recomputed; if that still does not settle, a final static trim
   closes the gap. The float32 output's true peak is <= the ceiling.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from scipy.ndimage import minimum_filter1d, uniform_filter1d

from services.common.loudness import oversampled_peak_envelope
from services.renderer.processor import (
    Parameter,
    Processor,
    check_processor_input,
    check_sample_rate,
)

#: Rounds of "measure, lower the internal ceiling, recompute" before the static trim.
_MAX_ROUNDS = 4
#: The internal check keeps this relative distance below the ceiling, so that a measurement
#: summed in another order (services.common.loudness) cannot read above it.
_CHECK_MARGIN = 1e-6
#: The first round aims this far (relative) below the ceiling.
_FIRST_ROUND_HEADROOM = 2e-4


@numba.njit(cache=True, nogil=True)
def _release(gain: np.ndarray, release_coef: float) -> np.ndarray:
    """Instant attack, exponential release; the output never exceeds ``gain``."""
    out = np.empty_like(gain)
    state = 1.0
    for i in range(gain.shape[0]):
        g = gain[i]
        released = release_coef * state + (1.0 - release_coef) * g
        state = g if g < released else released
        out[i] = state
    return out


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
        return self._gain_from_envelope(
            oversampled_peak_envelope(audio), sample_rate, ceiling=ceiling
        )

    def _gain_from_envelope(
        self, envelope: np.ndarray, sample_rate: int, *, ceiling: float
    ) -> np.ndarray:
        # Interpolated values on both sides of sample n depend on its gain.
        peak = envelope.copy()
        peak[1:] = np.maximum(envelope[1:], envelope[:-1])
        required = np.minimum(1.0, ceiling / np.maximum(peak, 1e-30))
        if float(required.min()) >= 1.0:
            return np.ones_like(required)
        lookahead = max(1, int(round(self.lookahead_ms * 1e-3 * sample_rate)))
        size = lookahead + 1
        # Minimum over [n, n + lookahead] ...
        future_min = minimum_filter1d(required, size=size, mode="nearest", origin=-(size // 2))
        # ... averaged over [n - lookahead, n]: a ramp that lands on the required gain in time.
        ramp = uniform_filter1d(future_min, size=size, mode="nearest", origin=lookahead // 2)
        # Mathematically ramp <= required already; rounding must not break it.
        ramp = np.minimum(ramp, required)
        coef = math.exp(-1.0 / (self.release_ms * 1e-3 * sample_rate))
        return _release(np.ascontiguousarray(ramp), coef)

    def limit(
        self, audio: np.ndarray, sample_rate: int, *, envelope: np.ndarray | None = None
    ) -> tuple[np.ndarray, float]:
        """Limit and report the output's true peak (what :meth:`process` does, plus the figure).

        Parameters
        ----------
        audio : np.ndarray, shape (channels, frames), floating point
            Checked like :meth:`process` input.
        sample_rate : int
        envelope : np.ndarray, shape (frames,), optional
            :func:`oversampled_peak_envelope` of ``audio`` when the caller already has it (it
            scales with a gain, so a loudness loop computes it once).

        Returns
        -------
        audio : np.ndarray, shape (channels, frames), float32
        true_peak : float
            Linear 4x-oversampled true peak of the returned audio, <= the ceiling.
        """
        audio = check_processor_input(audio)
        sample_rate = check_sample_rate(sample_rate)
        ceiling = self.ceiling_linear
        limit = ceiling * (1.0 - _CHECK_MARGIN)
        env = oversampled_peak_envelope(audio) if envelope is None else envelope
        if env.shape != (audio.shape[1],):
            raise ValueError(f"envelope has shape {env.shape}, expected ({audio.shape[1]},)")
        peak = float(env.max()) if env.size else 0.0
        if peak <= limit:
            # float32 rounding moves a sample by < 1e-7 relative: still under the ceiling.
            return np.asarray(audio, dtype=np.float32), peak
        # Gain modulation typically leaves overshoots of ~1e-5 relative: aim that much lower at
        # once (0.002 dB) so one round usually suffices.
        target = limit * (1.0 - _FIRST_ROUND_HEADROOM)
        out = np.asarray(audio, dtype=np.float32)
        for _ in range(_MAX_ROUNDS):
            gain = self._gain_from_envelope(env, sample_rate, ceiling=target)
            out = (audio * gain[np.newaxis, :]).astype(np.float32)
            peak = float(oversampled_peak_envelope(out).max())
            if peak <= limit:
                return out, peak
            target *= limit / peak * (1.0 - 1e-4)
        # Static trim: the true peak scales linearly with a constant gain.
        base = out.astype(np.float64)
        trim = 1.0
        for _ in range(64):
            trim *= limit / peak * (1.0 - 1e-4)
            out = (base * trim).astype(np.float32)
            peak = float(oversampled_peak_envelope(out).max())
            if peak <= limit:
                break
        return out, peak

    def _process(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        return self.limit(audio, sample_rate)[0]

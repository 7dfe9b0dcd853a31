"""Six-band parametric EQ: high-pass, low shelf, three peaking bells, high shelf.

Every band is a biquad from Robert Bristow-Johnson's *Audio EQ Cookbook*; the active bands are
stacked into one second-order-sections cascade and run in float64 by the numba kernels of
:func:`services.renderer.filters.sos_pass` (bit-identical to :func:`scipy.signal.sosfilt`,
two sections and both channels per loop). Corner and centre frequencies are clamped below
``0.45 * sample_rate`` (so 8 kHz audio works with every valid parameter set), bands at 0 dB gain
are skipped and the high-pass at the bottom of its range (20 Hz) is off, so the neutral
parameter set is an exact bypass.

Block processing: the cascade is causal, so a block needs history only
(:meth:`ParametricEQ.context`): the lag beyond which the absolute sum of the cascade's impulse
response is below :data:`~services.renderer.filters.CONTEXT_TOLERANCE` (at most about 0.45 s,
for a narrow +12 dB bell at 100 Hz; a few ms to about 0.1 s for usual settings). Cutting the
input there changes the output by at most its peak times that sum.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from scipy.signal import sosfreqz

from services.common.params import BY_NAME, neutral, prefixed_kwargs
from services.renderer.filters import CONTEXT_TOLERANCE, sos_pass, tail_frames
from services.renderer.processor import Context, Parameter, Processor

#: Corner and centre frequencies are clamped to this fraction of the sample rate.
MAX_FREQ_FRACTION = 0.45
#: Q of the 12 dB/oct high-pass (Butterworth).
HPF_Q = 1.0 / math.sqrt(2.0)
#: The high-pass at (or below) this corner is off: the bottom of its schema range.
HPF_OFF_HZ = BY_NAME["eq_hpf_freq_hz"].minimum
#: Shelf slope S of the cookbook shelves (1 = the steepest without overshoot).
SHELF_SLOPE = 1.0


def _clamp_freq(freq_hz: float, sample_rate: int) -> float:
    return min(float(freq_hz), MAX_FREQ_FRACTION * sample_rate)


def _normalise(b: tuple[float, float, float], a: tuple[float, float, float]) -> np.ndarray:
    a0 = a[0]
    return np.array([b[0] / a0, b[1] / a0, b[2] / a0, 1.0, a[1] / a0, a[2] / a0])


def highpass_section(*, freq_hz: float, sample_rate: int, q: float = HPF_Q) -> np.ndarray:
    """Cookbook 12 dB/oct high-pass.

    Returns
    -------
    np.ndarray, shape (6,)
        One second-order section ``[b0, b1, b2, 1, a1, a2]``.
    """
    w0 = 2.0 * math.pi * _clamp_freq(freq_hz, sample_rate) / sample_rate
    cw, alpha = math.cos(w0), math.sin(w0) / (2.0 * q)
    return _normalise(
        ((1.0 + cw) / 2.0, -(1.0 + cw), (1.0 + cw) / 2.0), (1.0 + alpha, -2.0 * cw, 1.0 - alpha)
    )


def peaking_section(*, freq_hz: float, gain_db: float, q: float, sample_rate: int) -> np.ndarray:
    """Cookbook peaking bell: exactly ``gain_db`` at ``freq_hz``.

    Returns
    -------
    np.ndarray, shape (6,)
    """
    a = 10.0 ** (gain_db / 40.0)
    w0 = 2.0 * math.pi * _clamp_freq(freq_hz, sample_rate) / sample_rate
    cw, alpha = math.cos(w0), math.sin(w0) / (2.0 * q)
    return _normalise(
        (1.0 + alpha * a, -2.0 * cw, 1.0 - alpha * a), (1.0 + alpha / a, -2.0 * cw, 1.0 - alpha / a)
    )


def _shelf_terms(freq_hz: float, gain_db: float, sample_rate: int) -> tuple[float, ...]:
    a = 10.0 ** (gain_db / 40.0)
    w0 = 2.0 * math.pi * _clamp_freq(freq_hz, sample_rate) / sample_rate
    cw = math.cos(w0)
    alpha = math.sin(w0) / 2.0 * math.sqrt((a + 1.0 / a) * (1.0 / SHELF_SLOPE - 1.0) + 2.0)
    return a, cw, 2.0 * math.sqrt(a) * alpha


def low_shelf_section(*, freq_hz: float, gain_db: float, sample_rate: int) -> np.ndarray:
    """Cookbook low shelf: ``gain_db`` at DC, ``gain_db / 2`` at ``freq_hz``.

    Returns
    -------
    np.ndarray, shape (6,)
    """
    a, cw, s = _shelf_terms(freq_hz, gain_db, sample_rate)
    return _normalise(
        (
            a * ((a + 1.0) - (a - 1.0) * cw + s),
            2.0 * a * ((a - 1.0) - (a + 1.0) * cw),
            a * ((a + 1.0) - (a - 1.0) * cw - s),
        ),
        (
            (a + 1.0) + (a - 1.0) * cw + s,
            -2.0 * ((a - 1.0) + (a + 1.0) * cw),
            (a + 1.0) + (a - 1.0) * cw - s,
        ),
    )


def high_shelf_section(*, freq_hz: float, gain_db: float, sample_rate: int) -> np.ndarray:
    """Cookbook high shelf: ``gain_db`` at Nyquist, ``gain_db / 2`` at ``freq_hz``.

    Returns
    -------
    np.ndarray, shape (6,)
    """
    a, cw, s = _shelf_terms(freq_hz, gain_db, sample_rate)
    return _normalise(
        (
            a * ((a + 1.0) + (a - 1.0) * cw + s),
            -2.0 * a * ((a - 1.0) + (a + 1.0) * cw),
            a * ((a + 1.0) + (a - 1.0) * cw - s),
        ),
        (
            (a + 1.0) - (a - 1.0) * cw + s,
            2.0 * ((a - 1.0) - (a + 1.0) * cw),
            (a + 1.0) - (a - 1.0) * cw - s,
        ),
    )


def frequency_response(sos: np.ndarray, *, freqs_hz: np.ndarray, sample_rate: int) -> np.ndarray:
    """Complex response of a second-order-sections cascade.

    Parameters
    ----------
    sos : np.ndarray, shape (sections, 6)
        An empty cascade (0 sections) is the identity.
    freqs_hz : np.ndarray, shape (n,)
    sample_rate : int

    Returns
    -------
    np.ndarray, shape (n,), complex128
    """
    f = np.atleast_1d(np.asarray(freqs_hz, dtype=np.float64))
    if len(sos) == 0:
        return np.ones(f.shape, dtype=np.complex128)
    _, h = sosfreqz(sos, worN=f, fs=sample_rate)
    return np.asarray(h, dtype=np.complex128)


class ParametricEQ(Processor):
    """High-pass (12 dB/oct), low shelf, three peaking bells and a high shelf, in that order.

    Parameters are the schema's ``eq_*`` parameters without the ``eq_`` prefix; build one from a
    schema parameter set with :meth:`from_params`.
    """

    hpf_freq_hz = Parameter("eq_hpf_freq_hz")
    low_shelf_freq_hz = Parameter("eq_low_shelf_freq_hz")
    low_shelf_gain_db = Parameter("eq_low_shelf_gain_db")
    low_mid_freq_hz = Parameter("eq_low_mid_freq_hz")
    low_mid_gain_db = Parameter("eq_low_mid_gain_db")
    low_mid_q = Parameter("eq_low_mid_q")
    mid_freq_hz = Parameter("eq_mid_freq_hz")
    mid_gain_db = Parameter("eq_mid_gain_db")
    mid_q = Parameter("eq_mid_q")
    high_mid_freq_hz = Parameter("eq_high_mid_freq_hz")
    high_mid_gain_db = Parameter("eq_high_mid_gain_db")
    high_mid_q = Parameter("eq_high_mid_q")
    high_shelf_freq_hz = Parameter("eq_high_shelf_freq_hz")
    high_shelf_gain_db = Parameter("eq_high_shelf_gain_db")

    def __init__(
        self,
        *,
        hpf_freq_hz: float = neutral("eq_hpf_freq_hz"),
        low_shelf_freq_hz: float = neutral("eq_low_shelf_freq_hz"),
        low_shelf_gain_db: float = neutral("eq_low_shelf_gain_db"),
        low_mid_freq_hz: float = neutral("eq_low_mid_freq_hz"),
        low_mid_gain_db: float = neutral("eq_low_mid_gain_db"),
        low_mid_q: float = neutral("eq_low_mid_q"),
        mid_freq_hz: float = neutral("eq_mid_freq_hz"),
        mid_gain_db: float = neutral("eq_mid_gain_db"),
        mid_q: float = neutral("eq_mid_q"),
        high_mid_freq_hz: float = neutral("eq_high_mid_freq_hz"),
        high_mid_gain_db: float = neutral("eq_high_mid_gain_db"),
        high_mid_q: float = neutral("eq_high_mid_q"),
        high_shelf_freq_hz: float = neutral("eq_high_shelf_freq_hz"),
        high_shelf_gain_db: float = neutral("eq_high_shelf_gain_db"),
    ) -> None:
        self._sos_cache: dict[int, np.ndarray] = {}
        self.hpf_freq_hz = hpf_freq_hz
        self.low_shelf_freq_hz = low_shelf_freq_hz
        self.low_shelf_gain_db = low_shelf_gain_db
        self.low_mid_freq_hz = low_mid_freq_hz
        self.low_mid_gain_db = low_mid_gain_db
        self.low_mid_q = low_mid_q
        self.mid_freq_hz = mid_freq_hz
        self.mid_gain_db = mid_gain_db
        self.mid_q = mid_q
        self.high_mid_freq_hz = high_mid_freq_hz
        self.high_mid_gain_db = high_mid_gain_db
        self.high_mid_q = high_mid_q
        self.high_shelf_freq_hz = high_shelf_freq_hz
        self.high_shelf_gain_db = high_shelf_gain_db

    @classmethod
    def from_params(cls, params: Mapping[str, float]) -> ParametricEQ:
        """Build from a schema parameter set (``eq_*`` names; missing ones take defaults)."""
        return cls(**prefixed_kwargs(params, "eq_"))

    def sos(self, sample_rate: int) -> np.ndarray:
        """The active bands as one cascade.

        Returns
        -------
        np.ndarray, shape (sections, 6), float64
            ``sections`` is 0 when every band is neutral.
        """
        sr = int(sample_rate)
        cached = self._sos_cache.get(sr)
        if cached is not None:
            return cached.copy()
        sections: list[np.ndarray] = []
        if self.hpf_freq_hz > HPF_OFF_HZ:
            sections.append(highpass_section(freq_hz=self.hpf_freq_hz, sample_rate=sr))
        if self.low_shelf_gain_db != 0.0:
            sections.append(
                low_shelf_section(
                    freq_hz=self.low_shelf_freq_hz, gain_db=self.low_shelf_gain_db, sample_rate=sr
                )
            )
        for freq, gain, q in (
            (self.low_mid_freq_hz, self.low_mid_gain_db, self.low_mid_q),
            (self.mid_freq_hz, self.mid_gain_db, self.mid_q),
            (self.high_mid_freq_hz, self.high_mid_gain_db, self.high_mid_q),
        ):
            if gain != 0.0:
                sections.append(peaking_section(freq_hz=freq, gain_db=gain, q=q, sample_rate=sr))
        if self.high_shelf_gain_db != 0.0:
            sections.append(
                high_shelf_section(
                    freq_hz=self.high_shelf_freq_hz,
                    gain_db=self.high_shelf_gain_db,
                    sample_rate=sr,
                )
            )
        sos = np.array(sections, dtype=np.float64).reshape(-1, 6)
        self._sos_cache[sr] = sos
        return sos.copy()

    def frequency_response(self, *, freqs_hz: np.ndarray, sample_rate: int) -> np.ndarray:
        """Designed complex response at ``freqs_hz``; shape ``(n,)``, complex128."""
        return frequency_response(self.sos(sample_rate), freqs_hz=freqs_hz, sample_rate=sample_rate)

    def magnitude_response_db(self, *, freqs_hz: np.ndarray, sample_rate: int) -> np.ndarray:
        """Designed magnitude response in dB at ``freqs_hz``; shape ``(n,)``, float64."""
        h = self.frequency_response(freqs_hz=freqs_hz, sample_rate=sample_rate)
        return 20.0 * np.log10(np.maximum(np.abs(h), 1e-300))

    @property
    def is_bypass(self) -> bool:
        """True when every band is neutral (the EQ returns its input unchanged)."""
        return len(self.sos(48_000)) == 0

    def reset(self) -> None:
        self._sos_cache.clear()

    def _parameters_changed(self) -> None:
        self._sos_cache.clear()

    def context(self, sample_rate: int) -> Context:
        """History: the lag beyond which the cascade's impulse response sums (in absolute
        value) to at most :data:`~services.renderer.filters.CONTEXT_TOLERANCE`; causal, so no
        look-ahead."""
        return Context(history=tail_frames(self.sos(sample_rate), CONTEXT_TOLERANCE))

    def _process(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        sos = self.sos(sample_rate)
        if len(sos) == 0:
            return audio
        # The input may be the caller's array (process()): filter from it into a new buffer.
        out = np.empty(audio.shape)
        sos_pass(sos, np.ascontiguousarray(audio, dtype=np.float64), out=out)
        return out

"""Harmonic exciter: the upper band, driven into a smooth saturator, mixed back in.

::

    x ──┬─────────────────────────────────────────────────────────────(+)──> y
        └─> HP(freq_hz) ─> x drive ─> saturate ─> / drive ─> HP(freq_hz) ─> x mix ─┘

- **Band split**: a 2nd-order Butterworth high-pass at ``freq_hz`` run forward and backward over
  the zero-extended buffer (as :func:`services.renderer.filters.zero_phase_sosfilt`): zero
  phase, the magnitude of a 4th-order Linkwitz-Riley high-pass (-6 dB at the corner,
  24 dB/octave below). Only this band reaches the saturator, so low notes are not distorted.
- **Saturator**: a biased tanh, ``s(u) = (tanh(u + b) - tanh(b)) / sech(b)^2`` with ``b = 0.3``:
  smooth, unit slope at 0 (``s(0) = 0``, so silence stays silent), asymmetric clip levels (about
  +0.77 and -1.41), hence both odd and even (2nd, 4th: "warm") harmonics. The band is multiplied by
  ``10^(drive_db / 20)`` before and divided by it after, so quiet content passes at unit gain and
  drive sets how hard the peaks are saturated.
- **Second high-pass** at the same corner: keeps the generated upper harmonics and removes what
  the saturator puts below the corner (the DC of the even component, difference tones).
- **Mix**: ``y = x + mix_pct / 100 * wet``. The dry signal is untouched, so everything below the
  corner passes unchanged. At low drive the wet is mostly the clean band itself, so a high mix
  also lifts the band (up to +6 dB far above the corner at 100 %); the harmonics grow with drive
  (their level while the band's peaks times the drive stay below about 2; beyond, their share of
  the wet keeps growing while the clipped wet gets quieter).

The four filter passes run as numba kernels, four rows per loop (independent recursions keep
the CPU busy): the first reads the dry signal (zero-extended) and has the drive folded in;
between the second and the third, numpy's vectorised ``tanh`` runs over the buffer, and the
third applies the bias as it reads it (``t / (1 + tanh(b) t)``, the addition theorem); the last
writes ``dry + mix * wet`` with ``1 / drive`` folded into the mix gain, in float64. A long mono
or stereo buffer is folded so that all four rows are busy: its two halves, each with the other's
context as a margin, side by side (:meth:`Exciter._render`).

Block processing (:meth:`Exciter.context`): the band filter is zero phase, so it reads both
ways; the wet signal at a frame depends on the input within twice the filter's tail on each
side. The tail is measured (:func:`~services.renderer.filters.tail_frames`) so that cutting the
input there changes the output by at most
:data:`~services.renderer.filters.CONTEXT_TOLERANCE` per unit of input peak, the saturator's
slope and the second filter's gain included: about 8 ms each way at a 1 kHz corner.

``mix_pct = 0`` (the default) is an exact bypass. No oversampling: harmonics above Nyquist fold
back (into the band, which is kept; folded content below the corner is removed like the rest).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numba
import numpy as np
from scipy.signal import butter, sosfreqz

from services.common.params import neutral, prefixed_kwargs
from services.renderer.filters import (
    CONTEXT_TOLERANCE,
    impulse_response_l1,
    settle_frames,
    tail_frames,
)
from services.renderer.processor import (
    Context,
    Parameter,
    Processor,
    check_processor_input,
    check_sample_rate,
)

#: The corner is clamped to this fraction of the sample rate (as the EQ does).
MAX_FREQ_FRACTION = 0.45
#: Butterworth order of each band high-pass (run forward and backward: LR4 magnitude).
BAND_ORDER = 2
#: Bias of the saturator: the share of even harmonics (0 would be a symmetric tanh, odd only).
SATURATOR_BIAS = 0.3
#: Largest slope of the saturator, ``cosh(bias)^2`` (reached at ``u = -bias``): |s(u)| <= this |u|.
SATURATOR_MAX_SLOPE = math.cosh(SATURATOR_BIAS) ** 2
#: A buffer is folded into two halves (see :meth:`Exciter._render`) when each half is longer
#: than this many margins: the margins are work done twice.
FOLD_MIN_MARGINS = 8


def saturate(band: np.ndarray, *, drive_db: float, out: np.ndarray | None = None) -> np.ndarray:
    """The exciter's static curve: ``s(g * band) / g`` with ``g = 10^(drive_db / 20)``.

    ``s(u) = (tanh(u + b) - tanh(b)) / sech(b)^2``: unit slope at 0, ``s(0) = 0``, bounded by
    ``(1 + tanh(b)) * cosh(b)^2`` (1.41) below and ``(1 - tanh(b)) * cosh(b)^2`` (0.77) above.

    Parameters
    ----------
    band : np.ndarray, any shape, float64
    drive_db : float
    out : np.ndarray, optional
        Where to write the result (may be ``band`` itself).

    Returns
    -------
    np.ndarray, same shape, float64
    """
    g = 10.0 ** (drive_db / 20.0)
    tb = math.tanh(SATURATOR_BIAS)
    norm = SATURATOR_MAX_SLOPE / g  # 1 / (sech(b)^2 * g)
    y = np.multiply(band, g, out=out)
    y += SATURATOR_BIAS
    np.tanh(y, out=y)
    y -= tb
    y *= norm
    return y


@numba.njit(cache=True, nogil=True, inline="always")
def _step(
    x: float, z1: float, z2: float, sec: tuple[float, float, float, float, float]
) -> tuple[float, float, float]:  # pragma: no cover - numba
    """One sample through the biquad ``sec = (b0, b1, b2, a1, a2)`` (transposed direct form II,
    :func:`scipy.signal.sosfilt`'s order of operations): ``(output, z1, z2)``."""
    b0, b1, b2, a1, a2 = sec
    o = b0 * x + z1
    return o, b1 * x - a1 * o + z2, b2 * x - a2 * o


@numba.njit(cache=True, nogil=True, inline="always")
def _lanes(r: int, rows: int) -> tuple[int, int, int, int]:  # pragma: no cover - numba
    """Rows ``r .. r + 3``, the ones past the last repeated as the last: the kernels below run
    four rows per loop (four independent recursions keep the CPU busy where one or two would
    leave it waiting on each result); a repeated row computes the same values again, so every
    lane is read before any is written."""
    last = rows - 1
    return r, min(r + 1, last), min(r + 2, last), min(r + 3, last)


@numba.njit(cache=True, nogil=True)
def _forward_from(dry: np.ndarray, buf: np.ndarray, sec: np.ndarray, pad: int) -> None:
    """The biquad forward over ``dry`` zero-extended by ``pad`` frames at each end, into ``buf``
    (``pad`` frames longer at each end), four rows per loop (:func:`_lanes`)."""
    rows, frames = dry.shape
    n = buf.shape[1]
    k = (sec[0], sec[1], sec[2], sec[4], sec[5])
    for r in range(0, rows, 4):
        ra, rb, rc, rd = _lanes(r, rows)
        for i in range(pad):  # silence in, zero state: silence out
            buf[ra, i] = buf[rb, i] = buf[rc, i] = buf[rd, i] = 0.0
        a1 = a2 = b1 = b2 = c1 = c2 = d1 = d2 = 0.0
        for i in range(pad, n):
            j = i - pad
            inside = j < frames
            xa = dry[ra, j] if inside else 0.0
            xb = dry[rb, j] if inside else 0.0
            xc = dry[rc, j] if inside else 0.0
            xd = dry[rd, j] if inside else 0.0
            ya, a1, a2 = _step(xa, a1, a2, k)
            yb, b1, b2 = _step(xb, b1, b2, k)
            yc, c1, c2 = _step(xc, c1, c2, k)
            yd, d1, d2 = _step(xd, d1, d2, k)
            buf[ra, i] = ya
            buf[rb, i] = yb
            buf[rc, i] = yc
            buf[rd, i] = yd


@numba.njit(cache=True, nogil=True)
def _backward(buf: np.ndarray, sec: np.ndarray) -> None:
    """In place: the biquad backward (from the last frame to the first), four rows per loop."""
    rows, n = buf.shape
    k = (sec[0], sec[1], sec[2], sec[4], sec[5])
    for r in range(0, rows, 4):
        ra, rb, rc, rd = _lanes(r, rows)
        a1 = a2 = b1 = b2 = c1 = c2 = d1 = d2 = 0.0
        for i in range(n - 1, -1, -1):
            xa = buf[ra, i]
            xb = buf[rb, i]
            xc = buf[rc, i]
            xd = buf[rd, i]
            ya, a1, a2 = _step(xa, a1, a2, k)
            yb, b1, b2 = _step(xb, b1, b2, k)
            yc, c1, c2 = _step(xc, c1, c2, k)
            yd, d1, d2 = _step(xd, d1, d2, k)
            buf[ra, i] = ya
            buf[rb, i] = yb
            buf[rc, i] = yc
            buf[rd, i] = yd


@numba.njit(cache=True, nogil=True, inline="always")
def _biased(t: float, tb: float) -> float:  # pragma: no cover - numba
    """The biased tanh from ``t = tanh(u)``: ``t / (1 + tb t)``, which with ``tb = tanh(b)`` is
    ``(tanh(u + b) - tanh(b)) cosh(b)^2`` (the addition theorem); exactly 0 at 0."""
    return t / (1.0 + tb * t)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _forward_biased(buf: np.ndarray, sec: np.ndarray, tb: float) -> None:
    """In place: :func:`_biased` of each value (``buf`` holds ``tanh`` of the driven band), then
    the biquad forward, four rows per loop; the division is off the recursions' critical path,
    so it costs next to nothing."""
    rows, n = buf.shape
    k = (sec[0], sec[1], sec[2], sec[4], sec[5])
    for r in range(0, rows, 4):
        ra, rb, rc, rd = _lanes(r, rows)
        a1 = a2 = b1 = b2 = c1 = c2 = d1 = d2 = 0.0
        for i in range(n):
            xa = _biased(buf[ra, i], tb)
            xb = _biased(buf[rb, i], tb)
            xc = _biased(buf[rc, i], tb)
            xd = _biased(buf[rd, i], tb)
            ya, a1, a2 = _step(xa, a1, a2, k)
            yb, b1, b2 = _step(xb, b1, b2, k)
            yc, c1, c2 = _step(xc, c1, c2, k)
            yd, d1, d2 = _step(xd, d1, d2, k)
            buf[ra, i] = ya
            buf[rb, i] = yb
            buf[rc, i] = yc
            buf[rd, i] = yd


@numba.njit(cache=True, nogil=True)
def _backward_mix(
    buf: np.ndarray,
    sec: np.ndarray,
    dry: np.ndarray,
    dry_gain: float,
    pad: int,
    gain: float,
    out: np.ndarray,
) -> None:
    """The biquad backward over ``buf``, four rows per loop; ``out = dry_gain * dry + gain *
    result`` on the unpadded frames (``buf`` has ``pad`` extra frames at each end)."""
    rows, n = buf.shape
    frames = dry.shape[1]
    k = (sec[0], sec[1], sec[2], sec[4], sec[5])
    for r in range(0, rows, 4):
        ra, rb, rc, rd = _lanes(r, rows)
        a1 = a2 = b1 = b2 = c1 = c2 = d1 = d2 = 0.0
        for i in range(n - 1, -1, -1):
            ya, a1, a2 = _step(buf[ra, i], a1, a2, k)
            yb, b1, b2 = _step(buf[rb, i], b1, b2, k)
            yc, c1, c2 = _step(buf[rc, i], c1, c2, k)
            yd, d1, d2 = _step(buf[rd, i], d1, d2, k)
            j = i - pad
            if 0 <= j < frames:
                out[ra, j] = dry_gain * dry[ra, j] + gain * ya
                out[rb, j] = dry_gain * dry[rb, j] + gain * yb
                out[rc, j] = dry_gain * dry[rc, j] + gain * yc
                out[rd, j] = dry_gain * dry[rd, j] + gain * yd


class Exciter(Processor):
    """Band-limited harmonic exciter.

    Parameters are the schema's ``exciter_*`` parameters without the prefix; build one from a
    schema parameter set with :meth:`from_params`. ``mix_pct=0`` (the default) is an exact bypass.
    """

    freq_hz = Parameter("exciter_freq_hz")
    drive_db = Parameter("exciter_drive_db")
    mix_pct = Parameter("exciter_mix_pct")

    def __init__(
        self,
        *,
        freq_hz: float = neutral("exciter_freq_hz"),
        drive_db: float = neutral("exciter_drive_db"),
        mix_pct: float = neutral("exciter_mix_pct"),
    ) -> None:
        self._sos_cache: dict[int, np.ndarray] = {}
        self._margin_cache: dict[int, int] = {}
        self.freq_hz = freq_hz
        self.drive_db = drive_db
        self.mix_pct = mix_pct

    @classmethod
    def from_params(cls, params: Mapping[str, float]) -> Exciter:
        """Build from a schema parameter set (``exciter_*`` names; missing ones take defaults)."""
        return cls(**prefixed_kwargs(params, "exciter_"))

    @property
    def is_bypass(self) -> bool:
        """True when the exciter returns its input unchanged (mix 0)."""
        return self.mix_pct == 0.0

    def corner_hz(self, sample_rate: int) -> float:
        """The band corner actually used: ``freq_hz`` clamped to 0.45 x ``sample_rate``."""
        return min(self.freq_hz, MAX_FREQ_FRACTION * check_sample_rate(sample_rate))

    def band_sos(self, sample_rate: int) -> np.ndarray:
        """The band high-pass (run forward and backward, before and after the saturator).

        Returns
        -------
        np.ndarray, shape (1, 6), float64
        """
        sr = check_sample_rate(sample_rate)
        cached = self._sos_cache.get(sr)
        if cached is None:
            cached = np.asarray(
                butter(BAND_ORDER, self.corner_hz(sr), btype="highpass", fs=sr, output="sos"),
                dtype=np.float64,
            )
            self._sos_cache[sr] = cached
        return cached.copy()

    def band_response_db(self, *, freqs_hz: np.ndarray, sample_rate: int) -> np.ndarray:
        """Designed gain in dB of one band filter (forward and backward, ``|H|^2``) at
        ``freqs_hz``; the wet path has it twice.

        Returns
        -------
        np.ndarray, shape (n,), float64
        """
        f = np.atleast_1d(np.asarray(freqs_hz, dtype=np.float64))
        _, h = sosfreqz(self.band_sos(sample_rate), worN=f, fs=sample_rate)
        return 20.0 * np.log10(np.maximum(np.abs(h) ** 2, 1e-300))

    def _render(
        self, dry: np.ndarray, sample_rate: int, *, dry_gain: float, gain: float, out: np.ndarray
    ) -> np.ndarray:
        """``out = dry_gain * dry + gain * harmonics(dry)``.

        A mono or stereo buffer long enough is folded: its two halves, each with the block
        context (:meth:`context`) of the other as a margin, become the rows of one buffer, so
        the kernels' four lanes are busy (about 1.7 times faster). Each half is then within
        :data:`~services.renderer.filters.CONTEXT_TOLERANCE` x peak of the one-pass result, as
        at a block boundary.
        """
        channels, n = dry.shape
        margin = self._margin(sample_rate)
        half = n // 2
        if channels > 2 or half <= FOLD_MIN_MARGINS * margin:
            return self._render_rows(dry, sample_rate, dry_gain=dry_gain, gain=gain, out=out)
        first = half - margin
        m = n - first
        folded = np.empty((2 * channels, m))
        folded[:channels, : half + margin] = dry[:, : half + margin]
        folded[:channels, half + margin :] = 0.0
        folded[channels:] = dry[:, first:]
        result = np.empty(folded.shape)
        self._render_rows(folded, sample_rate, dry_gain=dry_gain, gain=gain, out=result)
        out[:, :half] = result[:channels, :half]
        out[:, half:] = result[channels:, margin : margin + n - half]
        return out

    def _render_rows(
        self, dry: np.ndarray, sample_rate: int, *, dry_gain: float, gain: float, out: np.ndarray
    ) -> np.ndarray:
        """:meth:`_render` without the fold: four filter passes and one tanh."""
        sos = self.band_sos(sample_rate)
        g = 10.0 ** (self.drive_db / 20.0)
        # Room for the pre-ringing and the tail of both zero-phase filters.
        pad = 2 * settle_frames(sos)
        # np.empty, not np.zeros: calloc maps fresh pages, and page faults would cost more than
        # the filtering (every frame is written by the first pass).
        buf = np.empty((dry.shape[0], dry.shape[1] + 2 * pad))
        driven = sos.copy()
        driven[0, :3] *= g  # the drive, folded into the first pass
        _forward_from(dry, buf, driven[0], pad)
        _backward(buf, sos[0])
        # The saturator: numpy's vectorised tanh (several times faster than a scalar exp per
        # sample in numba), its bias applied as the next pass reads it.
        np.tanh(buf, out=buf)
        _forward_biased(buf, sos[0], math.tanh(SATURATOR_BIAS))
        # The 1 / g goes into the mix gain (the filter is linear).
        _backward_mix(buf, sos[0], dry, dry_gain, pad, gain / g, out)
        return out

    def harmonics(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """The wet signal before the mix gain: ``process(x) = x + mix_pct / 100 * harmonics(x)``.

        Parameters
        ----------
        audio : np.ndarray, shape (channels, frames)
        sample_rate : int

        Returns
        -------
        np.ndarray, shape (channels, frames), float64
        """
        x = check_processor_input(audio)
        sr = check_sample_rate(sample_rate)
        out = np.zeros(x.shape)
        if x.shape[1] == 0:
            return out
        return self._render(x, sr, dry_gain=0.0, gain=1.0, out=out)

    def context(self, sample_rate: int) -> Context:
        """Twice the zero-phase band filter's tail on each side (see the module notes).

        Let ``T(d)`` be the absolute sum of the zero-phase impulse response ``h`` at lags
        ``>= d`` and ``L`` its sum at all lags. Cutting the input ``D`` frames away changes the
        band by at most ``peak T(D)``; the saturator's slope is at most ``c =
        SATURATOR_MAX_SLOPE`` (the drive cancels), and the second filter spreads the band's
        errors over ``h``, so an output frame at least ``2 d`` from both cuts is off by at most
        ``c peak L (2 T(d) + 2 T(d))``: its own ``d`` frames each way see errors of at most
        ``2 peak T(d)``, the rest at most ``peak L``. ``d`` makes that
        :data:`~services.renderer.filters.CONTEXT_TOLERANCE` per unit of peak.
        """
        margin = self._margin(sample_rate)
        return Context(history=margin, lookahead=margin)

    def _margin(self, sample_rate: int) -> int:
        """The context each way, ``2 d`` (see :meth:`context`), cached per sample rate."""
        sr = check_sample_rate(sample_rate)
        cached = self._margin_cache.get(sr)
        if cached is None:
            sos = self.band_sos(sr)
            mass = impulse_response_l1(sos, zero_phase=True)
            d = tail_frames(
                sos, CONTEXT_TOLERANCE / (4.0 * SATURATOR_MAX_SLOPE * mass), zero_phase=True
            )
            cached = self._margin_cache[sr] = 2 * d
        return cached

    def reset(self) -> None:
        self._sos_cache.clear()
        self._margin_cache.clear()

    def _parameters_changed(self) -> None:
        self._sos_cache.clear()
        self._margin_cache.clear()

    def _process(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        if self.is_bypass:
            return audio
        # float64 out: the block engine keeps blocks in float64 between processors.
        out = np.empty(audio.shape)
        return self._render(audio, sample_rate, dry_gain=1.0, gain=self.mix_pct / 100.0, out=out)

"""Mid/side stereo enhancer: width, mono bass below a crossover, and a correlation guard.

The stereo pair is split into mid ``M = (L + R) / 2`` and side ``S = (L - R) / 2``; only the
side is processed and the pair is rebuilt as ``L = M + k S``, ``R = M - k S``. The mid is never
touched, so the mono fold-down ``(L + R) / 2`` of the output is the input's (to float rounding).

- **Bass mono** (``bass_mono_hz`` above 20 Hz): the side is high-passed by a 4th-order
  Butterworth run forward and backward over the zero-extended buffer (zero phase). Its response is
  ``|H|^2``, the magnitude of an 8th-order Linkwitz-Riley high-pass: -6.02 dB at the crossover,
  48 dB/octave below it, at least 48.2 dB down at and below one octave under the crossover; the
  removed low side is the exact complement (a zero-phase crossover sums back to the input), so
  nothing is smeared in phase and no latency is added.
- **Width** ``w``: the side gain. ``w <= 1`` is a constant gain (0 = mono: ``L == R == M``).
  ``w > 1`` is limited so that the L/R correlation of every window of
  :func:`correlation_window_frames` frames (about 50 ms) inside the buffer, at any alignment,
  that was not negative at width 1 (after bass mono) does not become negative; every frame of a
  window that already was negative keeps gain 1 (see :func:`guarded_side_gain`).

``width = 1`` with ``bass_mono_hz = 20`` is an exact bypass; audio that is not two-channel
(mono) is returned unchanged.

Block processing (:meth:`StereoEnhancer.context`): the high-pass is zero phase, so a block
needs its tail on both sides; with ``width > 1`` the guard needs 71 hops (window, smoothing,
knots) before a block and 72 after, beyond that, and its hops must line up with the whole
buffer's (the grid is one hop). Every window, cap and knot of a block is then the whole
buffer's (to rounding, and to within the block tolerance wherever a quiet window's side is
above about -125 dBFS RMS: see the context's notes), and the correlation guarantee holds for
every window of the file across block boundaries.

The kernels (side, per-hop energies, rebuild) are numba loops; the zero-phase filtering is
:func:`services.renderer.filters.forward_backward_sosfilt`. The output is float64 (the block
engine keeps blocks in float64 between processors).
"""

from __future__ import annotations

from collections.abc import Mapping

import numba
import numpy as np
from scipy.ndimage import minimum_filter1d, uniform_filter1d
from scipy.signal import butter, sosfreqz

from services.common.params import BY_NAME, neutral, prefixed_kwargs
from services.renderer.filters import (
    CONTEXT_TOLERANCE,
    forward_backward_sosfilt,
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

#: The side high-pass at (or below) this crossover is off: the bottom of its schema range.
BASS_MONO_OFF_HZ = BY_NAME["stereo_bass_mono_hz"].minimum
#: Butterworth order of the side high-pass; it runs forward and backward (LR8 magnitude).
BASS_MONO_ORDER = 4
#: The crossover is clamped to this fraction of the sample rate.
MAX_FREQ_FRACTION = 0.45
#: Hop of the correlation guard, in seconds (rounded to whole frames).
GUARD_HOP_S = 0.001
#: Correlation window of the guard, in hops (50 ms).
GUARD_WINDOW_HOPS = 50
#: The side-gain cap is smoothed over this many hops either side (a 21 ms ramp).
GUARD_SMOOTH_HOPS = 10
#: Safety margin on the squared side-gain cap: a guarded window ends with a correlation of at
#: least about ``margin / 2`` rather than exactly 0, which survives float32 output rounding.
GUARD_MARGIN = 1e-3
#: Hops of context the guard needs before a block: the window and both smoothing passes, plus
#: one hop for the knot at the block's first hop boundary (see :meth:`StereoEnhancer.context`).
GUARD_HISTORY_HOPS = GUARD_WINDOW_HOPS + 2 * GUARD_SMOOTH_HOPS + 1
#: Hops of context the guard needs after a block: as many, plus one because a block can end
#: inside a hop while the hop that closes its last window must be complete.
GUARD_LOOKAHEAD_HOPS = GUARD_HISTORY_HOPS + 1
#: Impulse-response tail of the zero-phase side high-pass that block processing may cut, per
#: unit of input peak: :data:`~services.renderer.filters.CONTEXT_TOLERANCE` x 1e-5, since the
#: guard's energy ratios amplify the side's errors on quiet windows (see
#: :meth:`StereoEnhancer.context`).
SIDE_TAIL_TOLERANCE = CONTEXT_TOLERANCE * 1e-5


# --- mid/side and the correlation guard ----------------------------------------------------------


def mid_side(audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mid ``(L + R) / 2`` and side ``(L - R) / 2`` of a stereo pair.

    Parameters
    ----------
    audio : np.ndarray, shape (2, frames)

    Returns
    -------
    tuple of np.ndarray, each shape (frames,), float64
    """
    x = np.asarray(audio, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != 2:
        raise ValueError(f"mid/side needs a (2, frames) stereo pair, got {x.shape}")
    return 0.5 * (x[0] + x[1]), 0.5 * (x[0] - x[1])


def guard_hop_frames(sample_rate: int) -> int:
    """Hop of the correlation guard in frames: ``round(GUARD_HOP_S * sample_rate)``, at least 1."""
    return max(1, int(round(GUARD_HOP_S * check_sample_rate(sample_rate))))


def correlation_window_frames(sample_rate: int) -> int:
    """Length of the windows whose correlation the guard protects: 50 hops (about 50 ms;
    2205 frames at 44.1 kHz is 2200, at 48 kHz exactly 2400)."""
    return GUARD_WINDOW_HOPS * guard_hop_frames(sample_rate)


@numba.njit(cache=True, nogil=True)
def _side_into(audio: np.ndarray, start: int, stop: int, out: np.ndarray, offset: int) -> None:
    """``out[offset + i - start] = (L[i] - R[i]) / 2`` for frames ``start <= i < stop``."""
    for i in range(start, stop):
        out[offset + i - start] = 0.5 * (audio[0, i] - audio[1, i])


@numba.njit(cache=True, nogil=True)
def _hop_energies(
    audio: np.ndarray, side: np.ndarray, hop: int, hops: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-hop sums of the mid's and the side's squares (the last hop may be partial)."""
    n = audio.shape[1]
    em = np.zeros(hops)
    es = np.zeros(hops)
    for h in range(hops):
        sm = 0.0
        ss = 0.0
        for i in range(h * hop, min(n, (h + 1) * hop)):
            m = 0.5 * (audio[0, i] + audio[1, i])
            sm += m * m
            ss += side[i] * side[i]
        em[h] = sm
        es[h] = ss
    return em, es


@numba.njit(cache=True, nogil=True)
def _rebuild(
    audio: np.ndarray, side: np.ndarray, knots: np.ndarray, hop: int, out: np.ndarray
) -> None:
    """``L = M + k S``, ``R = M - k S`` with ``k`` linear between hop-boundary knots."""
    n = audio.shape[1]
    inv = 1.0 / hop
    for h in range(knots.shape[0] - 1):
        k0 = knots[h]
        dk = knots[h + 1] - k0
        for j in range(hop):
            i = h * hop + j
            if i >= n:
                break
            k = k0 + dk * (j * inv)
            m = 0.5 * (audio[0, i] + audio[1, i])
            s = k * side[i]
            out[0, i] = m + s
            out[1, i] = m - s


def _guard_knots(
    em: np.ndarray, es: np.ndarray, *, width: float, frames: int, hop: int
) -> np.ndarray:
    """Side gain at the hop boundaries (``hops + 1`` values) from the per-hop energies."""
    hops = em.shape[0]
    w_hops = GUARD_WINDOW_HOPS
    if frames < w_hops * hop:
        # Shorter than one window: the buffer is the only window.
        total_s = float(es.sum())
        ratio = np.array([float(em.sum()) / total_s if total_s > 0.0 else np.inf])
        cap = np.full(hops, ratio[0])
    else:
        # Windows that fit in the buffer start in hops j = 0 .. last. The window starting in hop
        # j lies in the outer hops j .. j + W and contains the inner hops j + 1 .. j + W - 1.
        last = (frames - w_hops * hop) // hop
        es_p = np.concatenate([es, np.zeros(w_hops + 1)])
        outer_s = np.convolve(es_p, np.ones(w_hops + 1), mode="valid")[: last + 1]
        inner_m = np.convolve(em, np.ones(w_hops - 1), mode="valid")[1 : last + 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(outer_s > 0.0, inner_m / outer_s, np.inf)
        # The frames of hop h lie in the outer hops of the windows starting in h - W .. h:
        # cap[h] = min(padded[h : h + W + 1]), a moving minimum read off its centre.
        padded = np.concatenate([np.full(w_hops, np.inf), ratio, np.full(w_hops, np.inf)])
        size = w_hops + 1
        cap = minimum_filter1d(padded, size)[size // 2 : size // 2 + hops]
    target = np.clip(np.sqrt((1.0 - GUARD_MARGIN) * cap), 1.0, width)
    size = 2 * GUARD_SMOOTH_HOPS + 1
    smooth = uniform_filter1d(minimum_filter1d(target, size, mode="nearest"), size, mode="nearest")
    smooth = np.clip(smooth, 1.0, target)  # rounding in the average: stay in [1, target]
    knots = np.empty(hops + 1)
    knots[0] = smooth[0]
    knots[-1] = smooth[-1]
    knots[1:-1] = np.minimum(smooth[:-1], smooth[1:])
    return knots


def guarded_side_gain(
    mid: np.ndarray, side: np.ndarray, *, width: float, sample_rate: int
) -> np.ndarray:
    """Per-frame side gain ``k`` in ``[1, width]`` that keeps guarded windows' correlation >= 0.

    With ``L = M + k S`` and ``R = M - k S`` the cross term of a window T is
    ``sum(L R) = sum(M^2) - sum(k^2 S^2)``, so the correlation ``sum(L R) / sqrt(sum(L^2)
    sum(R^2))`` of T is not negative while ``k^2 <= E_M(T) / E_S(T)``. The guard works on a hop
    grid (hop H = 1 ms, window B = 50 H): a window starting anywhere in hop j lies inside the
    "outer" hops j .. j + 50 and contains the "inner" hops j + 1 .. j + 49, so its own ratio is at
    least ``c_j^2 = E_M(inner) / E_S(outer)``. Each frame's gain is capped by the smallest ``c_j``
    of the windows (within the buffer) whose outer hops contain it, then floored at 1 and
    ceilinged at ``width``; the cap is smoothed by a moving minimum followed by a moving average
    over 21 hops (which never exceeds it) and interpolated linearly between hop boundaries (never
    above either neighbouring hop's value). A buffer shorter than B is one window.

    Guarantee: for every window of :func:`correlation_window_frames` frames inside the buffer, at
    any alignment, whose correlation with ``k = 1`` is >= 0, the correlation with the returned
    ``k`` is >= 0 too (about ``GUARD_MARGIN / 2`` or more, by ``sqrt(sum L^2 sum R^2) <=
    sum(L^2 + R^2) / 2``). Every frame of a window whose correlation was negative gets exactly
    ``k = 1``: it is not widened. Silence and pure mid impose no cap.

    Parameters
    ----------
    mid, side : np.ndarray, shape (frames,)
    width : float
        The requested side gain (> 1).
    sample_rate : int

    Returns
    -------
    np.ndarray, shape (frames,), float64
    """
    n = mid.shape[0]
    hop = guard_hop_frames(sample_rate)
    hops = -(-n // hop)
    # With L = M + S and R = M - S: the mid comes back as (L + R) / 2.
    pair = np.stack([np.asarray(mid, dtype=np.float64) + side, mid - side])
    em, es = _hop_energies(pair, np.ascontiguousarray(side, dtype=np.float64), hop, hops)
    return _expand_knots(_guard_knots(em, es, width=width, frames=n, hop=hop), hop, n)


def _expand_knots(knots: np.ndarray, hop: int, frames: int) -> np.ndarray:
    """Per-frame values, linear between the hop-boundary ``knots`` (as :func:`_rebuild`)."""
    ramp = np.arange(hop) / hop
    gain = knots[:-1, None] + (knots[1:] - knots[:-1])[:, None] * ramp[None, :]
    return gain.reshape(-1)[:frames]


class StereoEnhancer(Processor):
    """Mid/side width with mono bass and a correlation guard.

    Parameters are the schema's ``stereo_*`` parameters without the prefix; build one from a
    schema parameter set with :meth:`from_params`. ``width=1, bass_mono_hz=20`` (the defaults) is
    an exact bypass. Only two-channel audio is processed; other channel counts pass unchanged.
    """

    width = Parameter("stereo_width")
    bass_mono_hz = Parameter("stereo_bass_mono_hz")

    def __init__(
        self,
        *,
        width: float = neutral("stereo_width"),
        bass_mono_hz: float = neutral("stereo_bass_mono_hz"),
    ) -> None:
        self._sos_cache: dict[int, np.ndarray] = {}
        self._tail_cache: dict[int, int] = {}
        self.width = width
        self.bass_mono_hz = bass_mono_hz

    @classmethod
    def from_params(cls, params: Mapping[str, float]) -> StereoEnhancer:
        """Build from a schema parameter set (``stereo_*`` names; missing ones take defaults)."""
        return cls(**prefixed_kwargs(params, "stereo_"))

    @property
    def is_bypass(self) -> bool:
        """True when the enhancer returns its input unchanged (width 1, bass mono off)."""
        return self.width == 1.0 and self.bass_mono_hz <= BASS_MONO_OFF_HZ

    def side_highpass_sos(self, sample_rate: int) -> np.ndarray:
        """The side high-pass (run forward and backward) for ``sample_rate``.

        Returns
        -------
        np.ndarray, shape (sections, 6), float64
            0 sections when bass mono is off.
        """
        sr = check_sample_rate(sample_rate)
        cached = self._sos_cache.get(sr)
        if cached is not None:
            return cached.copy()
        if self.bass_mono_hz <= BASS_MONO_OFF_HZ:
            sos = np.zeros((0, 6))
        else:
            freq = min(self.bass_mono_hz, MAX_FREQ_FRACTION * sr)
            sos = np.asarray(
                butter(BASS_MONO_ORDER, freq, btype="highpass", fs=sr, output="sos"),
                dtype=np.float64,
            )
        self._sos_cache[sr] = sos
        return sos.copy()

    def side_response_db(self, *, freqs_hz: np.ndarray, sample_rate: int) -> np.ndarray:
        """Designed side gain in dB at ``freqs_hz`` with width 1 (``|H|^2`` of the high-pass).

        Returns
        -------
        np.ndarray, shape (n,), float64
        """
        f = np.atleast_1d(np.asarray(freqs_hz, dtype=np.float64))
        sos = self.side_highpass_sos(sample_rate)
        if len(sos) == 0:
            return np.zeros(f.shape)
        _, h = sosfreqz(sos, worN=f, fs=sample_rate)
        return 20.0 * np.log10(np.maximum(np.abs(h) ** 2, 1e-300))

    def _side_tail(self, sample_rate: int) -> int:
        """:func:`~services.renderer.filters.tail_frames` of the zero-phase side high-pass at
        :data:`SIDE_TAIL_TOLERANCE` (cached)."""
        sr = check_sample_rate(sample_rate)
        cached = self._tail_cache.get(sr)
        if cached is None:
            sos = self.side_highpass_sos(sr)
            cached = tail_frames(sos, SIDE_TAIL_TOLERANCE, zero_phase=True)
            self._tail_cache[sr] = cached
        return cached

    def _side(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """The side ``(L - R) / 2``, high-passed when bass mono is on; shape ``(frames,)``.

        The high-pass runs on the two halves of the side at once, each with the filter's tail
        (:meth:`_side_tail`) of the other half as context, as two rows of one buffer: one row
        would leave the CPU waiting on its recursion, two independent ones overlap (about half
        the time). Each half is then off the one-row result by at most
        :data:`SIDE_TAIL_TOLERANCE` x the peak, the tolerance of a block boundary.
        """
        sos = self.side_highpass_sos(sample_rate)
        n = audio.shape[1]
        if len(sos) == 0:
            side = np.empty(n)
            _side_into(audio, 0, n, side, 0)
            return side
        pad = settle_frames(sos)
        d = self._side_tail(sample_rate)
        half = n // 2 if n // 2 > 2 * d else 0  # short buffers: one row
        # Row 0: frames [0, half + d); row 1: frames [half - d, n) (all of it with no split).
        first = max(half - d, 0)
        length = n - first
        rows = 2 if half else 1
        buf = np.empty((rows, length + 2 * pad))  # not np.zeros: see Exciter._render
        buf[:, :pad] = 0.0
        buf[rows - 1, pad + length :] = 0.0
        _side_into(audio, first, n, buf[rows - 1], pad)
        if not half:
            forward_backward_sosfilt(sos, buf)
            return buf[0, pad : pad + n]
        buf[0, pad + half + d :] = 0.0
        _side_into(audio, 0, half + d, buf[0], pad)
        forward_backward_sosfilt(sos, buf)
        side = np.empty(n)
        side[:half] = buf[0, pad : pad + half]
        side[half:] = buf[1, pad + d : pad + d + n - half]
        return side

    def _knots(self, audio: np.ndarray, side: np.ndarray, sample_rate: int) -> np.ndarray:
        """Side gain at the guard's hop boundaries (``hops + 1`` values)."""
        hop = guard_hop_frames(sample_rate)
        hops = -(-audio.shape[1] // hop)
        if self.width <= 1.0:
            return np.full(hops + 1, self.width)
        em, es = _hop_energies(audio, side, hop, hops)
        return _guard_knots(em, es, width=self.width, frames=audio.shape[1], hop=hop)

    def side_gain(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """The per-frame side gain the enhancer applies (after the bass-mono high-pass).

        ``width`` everywhere when ``width <= 1``; see :func:`guarded_side_gain` above 1.

        Parameters
        ----------
        audio : np.ndarray, shape (2, frames)
        sample_rate : int

        Returns
        -------
        np.ndarray, shape (frames,), float64
        """
        x = check_processor_input(audio)
        sr = check_sample_rate(sample_rate)
        if x.shape[0] != 2:
            raise ValueError(f"the side gain needs a (2, frames) stereo pair, got {x.shape}")
        knots = self._knots(x, self._side(x, sr), sr)
        return _expand_knots(knots, guard_hop_frames(sr), x.shape[1])

    def context(self, sample_rate: int) -> Context:
        """The side high-pass's tail each way, plus the guard's reach on its hop grid.

        The high-pass is zero phase: cutting the input ``d`` frames away on each side changes
        the side by at most ``2 peak T(d)`` (``T``: the absolute sum of its impulse response at
        lags ``>= d``, :func:`~services.renderer.filters.tail_frames`). ``T(d)`` is
        :data:`SIDE_TAIL_TOLERANCE`, far below what the output alone needs, because the guard
        divides energies: a window whose side is quiet (its cap set by that quiet side) caps
        louder frames up to 21 hops away, and its side energy's relative error is the side
        error over the window's RMS. With ``T = 1e-12`` the caps agree to within the block
        tolerance for windows whose side is above about -125 dBFS RMS.

        With ``width > 1`` the frames of hop ``h`` take their gain from the knots at ``h`` and
        ``h + 1``, hence from the smoothed caps of hops ``h - 1 .. h + 1``, the caps of hops
        ``h - 21 .. h + 21`` (a moving minimum, then a moving average, 10 hops each way), the
        windows starting in hops ``h - 71 .. h + 21`` and so the energies of hops
        ``h - 71 .. h + 71``, the last one complete: :data:`GUARD_HISTORY_HOPS` hops before a
        block and :data:`GUARD_LOOKAHEAD_HOPS` after (71 do for a block that ends on a hop
        boundary; the later processors' look-ahead can make it end inside a hop), each beyond
        the high-pass's tail. Hops count from the start of the buffer, so the grid is one hop;
        then every hop, window and knot of a block is the whole buffer's.
        """
        sr = check_sample_rate(sample_rate)
        d = self._side_tail(sr)
        if self.width <= 1.0:
            return Context(history=d, lookahead=d)
        hop = guard_hop_frames(sr)
        return Context(
            history=-(-d // hop) * hop + GUARD_HISTORY_HOPS * hop,
            lookahead=d + GUARD_LOOKAHEAD_HOPS * hop,
            grid=hop,
        )

    def reset(self) -> None:
        self._sos_cache.clear()
        self._tail_cache.clear()

    def _parameters_changed(self) -> None:
        self._sos_cache.clear()
        self._tail_cache.clear()

    def _process(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        if self.is_bypass or audio.shape[0] != 2:
            return audio
        side = self._side(audio, sample_rate)
        knots = self._knots(audio, side, sample_rate)
        out = np.empty(audio.shape)  # float64: blocks stay float64 between processors
        _rebuild(audio, side, knots, guard_hop_frames(sample_rate), out)
        return out

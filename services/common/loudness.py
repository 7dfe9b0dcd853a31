"""Loudness and peak measurement shared by the analyzer (what came in) and the renderer (what goes
out): ITU-R BS.1770-4 integrated loudness, and true peak measured on a 4x oversampled signal
(polyphase FIR interpolation, as BS.1770-4 Annex 2 describes).

Integrated loudness is computed the way pyloudnorm computes it (the same K-weighting biquads,
run in the same direct form in float64, the same 400 ms / 75 % overlap block boundaries and the
same gates), by a numba kernel that streams the audio once instead of copying and filtering it
in float64 per channel; it agrees with pyloudnorm (:func:`integrated_loudness_reference`, the
reference the tests hold it to) to about 1e-12 LU. Renderers that apply a gain curve to one
signal many times keep its K-weighted power (:func:`kweighted_power`) and predict the loudness of
the gained signal from it (:func:`loudness_of_power`). Momentary and short-term loudness (EBU
Tech 3341), the loudness of the mono fold-down and, from the short-term values, the loudness
range (EBU Tech 3342) come from one K-weighting pass too (:func:`loudness_profile`,
:func:`loudness_range`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numba
import numpy as np
import pyloudnorm
from pyloudnorm.iirfilter import IIRfilter
from scipy.signal import firwin

#: Loudness reported for audio with no gated block above the absolute gate (-70 LUFS).
SILENT_LUFS = -70.0
TRUE_PEAK_OVERSAMPLING = 4
#: Frames per work unit of the true-peak kernels (a block and its scratch stay in L1).
_BLOCK = 1024
#: The interpolation filter reaches this many input samples either side (resample_poly's
#: half-length of 10 * oversampling taps), so every phase between samples has 2 * _REACH taps.
_REACH = 10
#: Phase-0 taps smaller than this (relative to the largest) are zero up to rounding (the sinc's
#: zero crossings, ~1e-17) and are skipped.
_TAP_EPSILON = 1e-12
#: float32 envelopes are scaled by this before rounding, so rounding never lowers them.
_ROUND_UP = 1.0 + 2.0**-22
#: "No per-frame gain" and "render nothing" for the true-peak kernels (one type each, so the
#: kernels compile for as few argument types as possible).
_NO_GAIN = np.zeros(0, dtype=np.float32)
_NO_OUT = np.zeros((0, 0), dtype=np.float32)
_NO_ENVELOPE = np.zeros(0, dtype=np.float32)

#: BS.1770-4 gating: 400 ms blocks, 75 % overlap, -70 LUFS absolute and -10 LU relative gates.
_GATE_BLOCK_S = 0.4
_GATE_OVERLAP = 0.75
_ABSOLUTE_GATE_LUFS = -70.0
_RELATIVE_GATE_LU = -10.0
#: BS.1770-4 channel weights for L, R, C, Ls, Rs (pyloudnorm supports up to five channels).
_CHANNEL_WEIGHTS = (1.0, 1.0, 1.0, 1.41, 1.41)


# --------------------------------------------------------------------------------------------
# Integrated loudness (BS.1770-4)
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def _k_weighting(sample_rate: int) -> np.ndarray:
    """pyloudnorm's K-weighting at ``sample_rate``: high shelf then high pass.

    Returns
    -------
    np.ndarray, shape (2, 6)
        One row ``[b0, b1, b2, 1, a1, a2]`` per biquad, normalised by ``a0``.
    """
    stages = (
        IIRfilter(4.0, 1 / np.sqrt(2), 1500.0, sample_rate, "high_shelf"),
        IIRfilter(0.0, 0.5, 38.0, sample_rate, "high_pass"),
    )
    coef = np.array([np.concatenate([s.b, s.a]) for s in stages])
    coef.setflags(write=False)
    return coef


@numba.njit(cache=True, nogil=True)
def _k_weight(
    v: float, z: tuple[float, float, float, float], k: tuple[float, ...]
) -> tuple[float, tuple[float, float, float, float]]:  # pragma: no cover - numba
    """One sample through the two K-weighting biquads (transposed direct form II, with the
    operation order of :func:`scipy.signal.lfilter`); ``z`` is the filter state, ``k`` the
    coefficients ``(b0, b1, b2, a1, a2)`` of each biquad."""
    y = z[0] + k[0] * v
    s0 = z[1] + v * k[1] - y * k[3]
    s1 = v * k[2] - y * k[4]
    w = z[2] + k[5] * y
    s2 = z[3] + y * k[6] - w * k[8]
    s3 = y * k[7] - w * k[9]
    return w, (s0, s1, s2, s3)


@numba.njit(cache=True, nogil=True)
def _kweighted_segments(
    x: np.ndarray, coef: np.ndarray, weights: np.ndarray, bounds: np.ndarray, power: np.ndarray
) -> np.ndarray:  # pragma: no cover - numba
    """Sum over frames ``[bounds[s], bounds[s + 1])`` of the channel-weighted K-weighted power.

    Channels are filtered two at a time (two independent recursions keep the CPU busy while
    each waits for its previous output). When ``power`` is not empty the power of every frame
    is stored in it too.
    """
    channels = x.shape[0]
    segments = bounds.shape[0] - 1
    out = np.zeros(segments)
    store = power.shape[0] > 0
    k = (
        *(coef[0, 0], coef[0, 1], coef[0, 2], coef[0, 4], coef[0, 5]),
        *(coef[1, 0], coef[1, 1], coef[1, 2], coef[1, 4], coef[1, 5]),
    )
    for c in range(0, channels, 2):
        pair = c + 1 < channels
        wl = weights[c]
        wr = weights[c + 1] if pair else 0.0
        left = (0.0, 0.0, 0.0, 0.0)
        right = (0.0, 0.0, 0.0, 0.0)
        for s in range(segments):
            total = 0.0
            for n in range(bounds[s], bounds[s + 1]):
                w, left = _k_weight(float(x[c, n]), left, k)
                p = wl * (w * w)
                if pair:
                    u, right = _k_weight(float(x[c + 1, n]), right, k)
                    p += wr * (u * u)
                total += p
                if store:
                    power[n] = p if c == 0 else power[n] + p
            out[s] += total
    return out


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _gained_segments(
    power: np.ndarray, gain: np.ndarray, bounds: np.ndarray
) -> np.ndarray:  # pragma: no cover - numba
    """Sum of ``power * gain**2`` (``power`` alone when ``gain`` is empty) over each segment
    ``[bounds[s], bounds[s + 1])``, in float64. The sums may be reassociated, so they vectorise
    (a loudness prediction calls this for every trial gain; ~1e-16 relative)."""
    segments = bounds.shape[0] - 1
    out = np.zeros(segments)
    per_frame = gain.shape[0] > 0
    for s in range(segments):
        total = 0.0
        p = power[bounds[s] : bounds[s + 1]]
        if per_frame:
            g = gain[bounds[s] : bounds[s + 1]]
            for n in range(p.shape[0]):
                gain_n = float(g[n])
                total += float(p[n]) * (gain_n * gain_n)
        else:
            for n in range(p.shape[0]):
                total += float(p[n])
        out[s] = total
    return out


@functools.lru_cache(maxsize=64)
def _gating_blocks(frames: int, sample_rate: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gating blocks of a ``frames``-long signal, with pyloudnorm's exact boundaries.

    Returns
    -------
    bounds : np.ndarray, shape (segments + 1,), int64
        Sorted distinct block edges: the blocks overlap, so each is a run of segments.
    first, stop : np.ndarray, shape (blocks,), int64
        Block ``j`` is segments ``first[j]`` up to (not including) ``stop[j]``.
    """
    step = 1.0 - _GATE_OVERLAP
    duration = frames / sample_rate
    count = int(np.round((duration - _GATE_BLOCK_S) / (_GATE_BLOCK_S * step))) + 1
    j = np.arange(count)
    # Same expressions, evaluated in the same order, as pyloudnorm (int() truncates).
    starts = (_GATE_BLOCK_S * (j * step) * sample_rate).astype(np.int64)
    ends = np.minimum((_GATE_BLOCK_S * (j * step + 1) * sample_rate).astype(np.int64), frames)
    bounds = np.unique(np.concatenate([[0], starts, ends]))
    first = np.searchsorted(bounds, starts)
    stop = np.searchsorted(bounds, ends)
    for a in (bounds, first, stop):
        a.setflags(write=False)
    return bounds, first, stop


def _gated_loudness(segments: np.ndarray, frames: int, sample_rate: int) -> float:
    """BS.1770-4 gating of per-segment K-weighted energies (see :func:`_gating_blocks`)."""
    _, first, stop = _gating_blocks(frames, sample_rate)
    # Each block is a run of at most a few segments: sum them in order, vectorised.
    width = int((stop - first).max())
    index = first[:, np.newaxis] + np.arange(width)
    inside = index < stop[:, np.newaxis]
    padded = np.append(segments, 0.0)
    block_energy = padded[np.where(inside, index, segments.shape[0])].sum(axis=1)
    z = (1.0 / (_GATE_BLOCK_S * sample_rate)) * block_energy
    with np.errstate(divide="ignore", invalid="ignore"):
        block_lufs = -0.691 + 10.0 * np.log10(z)
        above = block_lufs >= _ABSOLUTE_GATE_LUFS
        if not above.any():
            return SILENT_LUFS
        relative = -0.691 + 10.0 * np.log10(np.mean(z[above])) + _RELATIVE_GATE_LU
        gated = (block_lufs > relative) & (block_lufs > _ABSOLUTE_GATE_LUFS)
        if not gated.any():
            return SILENT_LUFS
        value = -0.691 + 10.0 * math.log10(float(np.mean(z[gated])))
    if not math.isfinite(value) or value < SILENT_LUFS:
        return SILENT_LUFS
    return value


def _loudness_input(audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, int]:
    """Audio as C-contiguous float32/float64 ``(channels, frames)``, at least one block long."""
    x = _float_array(audio)
    if x.ndim != 2:
        raise ValueError(f"audio must have shape (channels, frames), got {x.shape}")
    if x.shape[0] > len(_CHANNEL_WEIGHTS):
        raise ValueError(f"audio must have five channels or less, got {x.shape[0]}")
    sr = int(sample_rate)
    block = int(math.ceil(_GATE_BLOCK_S * sr))
    if x.shape[1] < block:
        x = np.pad(x, ((0, 0), (0, block - x.shape[1])))
    return x, sr


def _float_array(a: np.ndarray) -> np.ndarray:
    """``a`` as a C-contiguous float32 or float64 array (other types become float64)."""
    a = np.asarray(a)
    if a.dtype not in (np.float32, np.float64):
        a = a.astype(np.float64)
    return np.ascontiguousarray(a)


def _weights(channels: int) -> np.ndarray:
    return np.array(_CHANNEL_WEIGHTS[:channels])


def integrated_loudness(audio: np.ndarray, sample_rate: int) -> float:
    """Integrated loudness in LUFS of ``audio`` with shape ``(channels, frames)``.

    BS.1770-4 exactly as pyloudnorm measures it (see the module docstring), without copying the
    audio. Audio shorter than one 400 ms gating block is measured zero-padded to one block.
    Returns :data:`SILENT_LUFS` when nothing passes the absolute gate.
    """
    x, sr = _loudness_input(audio, sample_rate)
    bounds, _, _ = _gating_blocks(x.shape[1], sr)
    no_power = np.zeros(0, dtype=np.float32)
    segments = _kweighted_segments(x, _k_weighting(sr), _weights(x.shape[0]), bounds, no_power)
    return _gated_loudness(segments, x.shape[1], sr)


def integrated_loudness_reference(audio: np.ndarray, sample_rate: int) -> float:
    """:func:`integrated_loudness` computed by pyloudnorm itself: the reference the fast meter is
    tested against (slower: it filters float64 copies with :func:`scipy.signal.lfilter`)."""
    x = np.asarray(audio, dtype=np.float64)
    block = int(math.ceil(_GATE_BLOCK_S * sample_rate))
    if x.shape[1] < block:
        x = np.pad(x, ((0, 0), (0, block - x.shape[1])))
    value = float(pyloudnorm.Meter(sample_rate).integrated_loudness(x.T))
    if not math.isfinite(value) or value < SILENT_LUFS:
        return SILENT_LUFS
    return value


def kweighted_power(
    audio: np.ndarray, sample_rate: int, *, dtype: type[np.floating] = np.float64
) -> np.ndarray:
    """Channel-weighted K-weighted power per frame: what BS.1770 gates and averages.

    ``loudness_of_power(kweighted_power(x, sr), sr) == integrated_loudness(x, sr)`` (to rounding).

    Parameters
    ----------
    audio : np.ndarray, shape (channels, frames)
    sample_rate : int
    dtype : float32 or float64
        Of the result (computation is in float64; float32 halves the memory of a prediction).

    Returns
    -------
    np.ndarray, shape (max(frames, one gating block),)
        Zero after the last gating block (frames no block measures).
    """
    x, sr = _loudness_input(audio, sample_rate)
    bounds, _, _ = _gating_blocks(x.shape[1], sr)
    power = np.empty(x.shape[1], dtype=dtype)
    _kweighted_segments(x, _k_weighting(sr), _weights(x.shape[0]), bounds, power)
    power[bounds[-1] :] = 0.0
    return power


def loudness_of_power(
    power: np.ndarray,
    sample_rate: int,
    *,
    gain: np.ndarray | None = None,
    scale: float = 1.0,
) -> float:
    """Integrated loudness (LUFS) from :func:`kweighted_power`, optionally of the signal times a
    per-frame ``gain`` and a constant ``scale``.

    With a constant gain (``scale``) this is exactly the loudness of ``scale * audio``, gates
    included. With a varying ``gain`` it is a prediction: K-weighting does not commute with a
    time-varying gain, so the loudness of a limiter's output differs from it, typically by 0.01
    to 0.02 LU on music (by more when a brief transient takes tens of dB of limiting); measure
    the output to be sure.

    Parameters
    ----------
    power : np.ndarray, shape (frames,), float32 or float64
    sample_rate : int
    gain : np.ndarray, shape (frames,), float32 or float64, optional
    scale : float
    """
    p = _float_array(power)
    sr = int(sample_rate)
    g = _NO_GAIN if gain is None else _float_array(gain)
    if gain is not None and g.shape != p.shape:
        raise ValueError(f"gain has shape {g.shape}, expected {p.shape}")
    block = int(math.ceil(_GATE_BLOCK_S * sr))
    if p.shape[0] < block:  # measured zero-padded to one block, as integrated_loudness does
        p = np.pad(p, (0, block - p.shape[0]))
        g = g if gain is None else np.pad(g, (0, block - g.shape[0]))
    bounds, _, _ = _gating_blocks(p.shape[0], sr)
    segments = _gained_segments(p, g, bounds)
    return _gated_loudness(segments * (float(scale) ** 2), p.shape[0], sr)


# --------------------------------------------------------------------------------------------
# True peak (BS.1770-4 Annex 2)
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _polyphase_taps(oversampling: int) -> np.ndarray:
    """The interpolation filter of :func:`scipy.signal.resample_poly` (``up=oversampling``,
    default Kaiser window), split into its ``oversampling`` phases.

    Returns
    -------
    np.ndarray, shape (oversampling, 2 * _REACH + 1)
        ``taps[p, k + _REACH]`` weighs ``x[n - k]`` in the output sample
        ``n + p / oversampling``.
    """
    half = _REACH * oversampling
    h = firwin(2 * half + 1, 1.0 / oversampling, window=("kaiser", 5.0)) * oversampling
    taps = np.zeros((oversampling, 2 * _REACH + 1))
    for p in range(oversampling):
        for k in range(-_REACH, _REACH + 1):
            i = oversampling * k + p + half
            if 0 <= i <= 2 * half:
                taps[p, k + _REACH] = h[i]
    taps.setflags(write=False)
    return taps


@functools.lru_cache(maxsize=8)
def _kernel_taps(oversampling: int) -> tuple[float, np.ndarray]:
    """:func:`_polyphase_taps` arranged for the kernels, which use the filter's symmetry.

    * Phase 0 falls on the sinc's zero crossings: its taps are zero up to rounding (~1e-17,
      below :data:`_TAP_EPSILON` of the largest) except the centre one: ``centre * x[n]``.
    * Every other phase has ``2 * _REACH`` taps (its last one falls outside the filter), and
      phase ``O - p`` is phase ``p`` reversed. With ``u_j = x[n + _REACH - j]``, ``P_j = u_j +
      u_{2R-1-j}`` and ``Q_j = u_j - u_{2R-1-j}`` (``j < _REACH``), the pair's outputs are
      ``(S + D) / 2`` and ``(S - D) / 2`` with ``S = sum((a_j + a_{2R-1-j}) P_j)`` and ``D =
      sum((a_j - a_{2R-1-j}) Q_j)``: the larger magnitude is ``(|S| + |D|) / 2``, for half the
      multiplications.
    * Phase ``O / 2`` (even ``O``) is its own mirror image: ``sum(a_j P_j)``.

    Returns
    -------
    centre : float
        Phase 0's centre tap.
    coefficients : np.ndarray, shape (groups, 3, _REACH)
        Per group, the ``a_j + a_{2R-1-j}`` and ``a_j - a_{2R-1-j}`` of one mirrored pair of
        phases and the ``a_j`` of the self-mirrored phase (zeros where a group has none).
    """
    taps = _polyphase_taps(oversampling)
    tiny = np.abs(taps) < _TAP_EPSILON * np.abs(taps).max()
    assert tiny[0, :_REACH].all() and tiny[0, _REACH + 1 :].all()
    assert (taps[1:, 2 * _REACH :] == 0.0).all()
    a = taps[:, : 2 * _REACH]
    pairs = [(p, oversampling - p) for p in range(1, (oversampling + 1) // 2)]
    middle = [oversampling // 2] if oversampling % 2 == 0 and oversampling > 1 else []
    coefficients = np.zeros((max(len(pairs), len(middle), 1), 3, _REACH))
    for g, (p, q) in enumerate(pairs):
        assert np.allclose(a[q], a[p, ::-1], rtol=0.0, atol=1e-15)
        coefficients[g, 0] = (a[p] + a[p, ::-1])[:_REACH]
        coefficients[g, 1] = (a[p] - a[p, ::-1])[:_REACH]
    for m in middle:
        assert np.allclose(a[m], a[m, ::-1], rtol=0.0, atol=1e-15)
        coefficients[0, 2] = a[m, :_REACH]
    coefficients.setflags(write=False)
    return float(taps[0, _REACH]), coefficients


@numba.njit(cache=True, nogil=True, fastmath={"contract"})
def _channel_envelope(
    buf: np.ndarray, n: int, centre: float, coefficients: np.ndarray, peak: np.ndarray
) -> None:  # pragma: no cover - numba
    """Raise ``peak[:n]`` to the envelope of one channel held in ``buf``.

    ``buf[k]`` is the sample ``_REACH`` frames before output frame ``k`` (zero outside the
    signal), so ``buf`` has ``n + 2 * _REACH`` values. The tap loop has a constant trip count, so
    LLVM unrolls it and vectorises the loop over frames (multiply-adds may be fused: ~1e-16
    relative, the same in every meter and limiter call).
    """
    for k in range(n):
        v = buf[k + _REACH]
        peak[k] = max(peak[k], abs(v), abs(centre * v))
    for g in range(coefficients.shape[0]):
        for k in range(n):
            s = 0.0
            d = 0.0
            m = 0.0
            for j in range(_REACH):
                u = buf[k + 2 * _REACH - j]  # x[n + _REACH - j]
                w = buf[k + 1 + j]  # x[n + _REACH - (2 * _REACH - 1 - j)]
                s += coefficients[g, 0, j] * (u + w)
                d += coefficients[g, 1, j] * (u - w)
                m += coefficients[g, 2, j] * (u + w)
            peak[k] = max(peak[k], 0.5 * (abs(s) + abs(d)), abs(m))


@numba.njit(cache=True, nogil=True)
def _block_envelope(
    x: np.ndarray,
    scale: float,
    gain: np.ndarray,
    start: int,
    stop: int,
    centre: float,
    coefficients: np.ndarray,
    peak: np.ndarray,
    out: np.ndarray,
) -> None:  # pragma: no cover - numba
    """``peak[:stop - start]`` = envelope of frames ``[start, stop)`` of ``x`` (all channels).

    With ``out`` not empty, the envelope is that of ``float32(x * scale * gain)`` (``gain`` per
    frame, or empty for none), and those samples of the block are written to ``out``: the halo
    is recomputed by each block, to the same float32 values.
    """
    channels, frames = x.shape
    n = stop - start
    lo = start - _REACH  # buf[k] holds frame lo + k, zero outside the signal
    a = max(lo, 0)
    b = min(stop + _REACH, frames)
    buf = np.zeros(n + 2 * _REACH)
    inside = buf[a - lo : b - lo]
    peak[:n] = 0.0
    render = out.shape[0] > 0
    per_frame = gain.shape[0] > 0
    for c in range(channels):
        src = x[c, a:b]
        if render and per_frame:
            g = gain[a:b]
            for i in range(b - a):
                inside[i] = np.float32(src[i] * (scale * np.float64(g[i])))
        elif render:
            for i in range(b - a):
                inside[i] = np.float32(src[i] * scale)
        else:
            for i in range(b - a):
                inside[i] = src[i]
        if render:
            dst = out[c, start:stop]
            for i in range(n):
                dst[i] = buf[_REACH + i]
        _channel_envelope(buf, n, centre, coefficients, peak)


@numba.njit(cache=True, nogil=True)
def _true_peak_kernel(
    x: np.ndarray,
    scale: float,
    gain: np.ndarray,
    centre: float,
    coefficients: np.ndarray,
    out: np.ndarray,
    envelope: np.ndarray,
    round_up: bool,
) -> float:  # pragma: no cover - numba
    """The true peak of ``x``, or (``out`` not empty) of ``float32(x * scale * gain)`` written to
    ``out`` (see :func:`_block_envelope`). With ``envelope`` not empty the envelope is stored
    too; with ``round_up`` (a float32 ``envelope``) each value is rounded up: never below the
    float64 value, at most ~3e-7 relative above it. One kernel for every use, so numba compiles
    (and caches) as little as possible."""
    frames = x.shape[1]
    blocks = (frames + _BLOCK - 1) // _BLOCK
    maxima = np.zeros(blocks)
    store = envelope.shape[0] > 0
    peak = np.empty(_BLOCK)
    for b in range(blocks):
        start = b * _BLOCK
        stop = min(frames, start + _BLOCK)
        _block_envelope(x, scale, gain, start, stop, centre, coefficients, peak, out)
        maxima[b] = peak[: stop - start].max()
        if store:
            for k in range(stop - start):
                v = peak[k]
                if round_up:
                    w = np.float32(v * _ROUND_UP)
                    if w < v:  # only below float32's normal range
                        w = np.nextafter(w, np.float32(np.inf))
                    envelope[start + k] = w
                else:
                    envelope[start + k] = v
    return maxima.max()


def _true_peak(
    x: np.ndarray,
    oversampling: int,
    *,
    scale: float = 1.0,
    gain: np.ndarray = _NO_GAIN,
    out: np.ndarray = _NO_OUT,
    envelope: np.ndarray = _NO_ENVELOPE,
) -> float:
    if x.shape[1] == 0:
        return 0.0
    centre, coefficients = _kernel_taps(int(oversampling))
    round_up = envelope.dtype == np.float32
    return float(_true_peak_kernel(x, scale, gain, centre, coefficients, out, envelope, round_up))


def oversampled_peak_envelope(
    audio: np.ndarray, *, oversampling: int = TRUE_PEAK_OVERSAMPLING
) -> np.ndarray:
    """Largest magnitude in ``[n, n + 1)`` of the oversampled signal, across channels.

    The oversampled signal is the one :func:`scipy.signal.resample_poly` computes (polyphase FIR,
    Kaiser window), evaluated by a numba kernel without materialising it (the GIL is released,
    so concurrent renders run in parallel); the result equals resample_poly's up to rounding
    (~1e-15 relative to the local signal level: the kernel uses the filter's symmetry, see
    :func:`_kernel_taps`). Its maximum is the true peak.

    Parameters
    ----------
    audio : np.ndarray, shape (channels, frames)
        float32 is read as is; computation is in float64.
    oversampling : int

    Returns
    -------
    np.ndarray, shape (frames,), float64
    """
    x = _float_array(audio)
    envelope = np.empty(x.shape[1])
    _true_peak(x, oversampling, envelope=envelope)
    return envelope


def oversampled_peak_envelope_f32(
    audio: np.ndarray, *, oversampling: int = TRUE_PEAK_OVERSAMPLING
) -> np.ndarray:
    """:func:`oversampled_peak_envelope` in half the memory: float32, each value rounded up, so
    it is never below the float64 envelope (a limiter computing its gain from it stays safe).

    Returns
    -------
    np.ndarray, shape (frames,), float32
    """
    x = _float_array(audio)
    envelope = np.empty(x.shape[1], dtype=np.float32)
    _true_peak(x, oversampling, envelope=envelope)
    return envelope


def true_peak_linear(audio: np.ndarray, *, oversampling: int = TRUE_PEAK_OVERSAMPLING) -> float:
    """Maximum absolute value of ``audio`` (channels, frames) oversampled ``oversampling`` times
    (the sample peak included), without building the oversampled signal or its envelope."""
    return _true_peak(_float_array(audio), oversampling)


def gained_true_peak(
    audio: np.ndarray,
    *,
    scale: float = 1.0,
    gain: np.ndarray | None = None,
    out: np.ndarray,
    oversampling: int = TRUE_PEAK_OVERSAMPLING,
) -> float:
    """Write ``audio * scale * gain`` to the float32 ``out`` and return ``true_peak_linear(out)``
    (exactly: the same values, the same arithmetic), in one pass over the audio.

    Parameters
    ----------
    audio : np.ndarray, shape (channels, frames)
    scale : float
        Constant gain.
    gain : np.ndarray, shape (frames,), optional
        Per-frame gain (a limiter's curve), shared by all channels.
    out : np.ndarray, shape (channels, frames), float32
    oversampling : int

    Returns
    -------
    float
        Linear true peak of ``out``.
    """
    x = _float_array(audio)
    if out.shape != x.shape or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous float32 array of shape {x.shape}")
    g = _NO_GAIN if gain is None else _float_array(gain)
    if gain is not None and g.shape != (x.shape[1],):
        raise ValueError(f"gain has shape {g.shape}, expected ({x.shape[1]},)")
    return _true_peak(x, oversampling, scale=float(scale), gain=g, out=out)


def true_peak_dbtp(audio: np.ndarray, *, oversampling: int = TRUE_PEAK_OVERSAMPLING) -> float:
    """True peak in dBTP (dB relative to full scale, 4x oversampled by default)."""
    peak = true_peak_linear(audio, oversampling=oversampling)
    return 20.0 * math.log10(peak) if peak > 0 else -math.inf


def db_to_gain(db: float) -> float:
    return float(10.0 ** (db / 20.0))


def gain_to_db(gain: float) -> float:
    return 20.0 * math.log10(gain) if gain > 0 else -math.inf


# --------------------------------------------------------------------------------------------
# Loudness over time (EBU Tech 3341 momentary / short-term, EBU Tech 3342 loudness range)
# --------------------------------------------------------------------------------------------

#: EBU Tech 3341 short-term window (s); momentary windows are the 400 ms gating blocks.
SHORT_TERM_S = 3.0
#: EBU Tech 3342 loudness range: relative gate (LU below the power mean of the short-term
#: values that pass the absolute gate) and the percentiles whose difference is the range.
_LRA_RELATIVE_GATE_LU = -20.0
_LRA_PERCENTILES = (10.0, 95.0)


@dataclass(frozen=True)
class LoudnessProfile:
    """Loudness of one signal over time, from one K-weighting pass (:func:`loudness_profile`).

    Attributes
    ----------
    integrated_lufs : float
        BS.1770-4 integrated loudness, exactly as :func:`integrated_loudness` (LUFS).
    momentary_lufs : np.ndarray, shape (blocks,), float64
        EBU Tech 3341 momentary loudness every 100 ms (LUFS): the mean K-weighted power over
        each BS.1770 gating block (400 ms, starting every 100 ms; the last may be cut short by
        the end of the signal and is averaged over the frames it has). ``-inf`` where a block
        is digitally silent.
    short_term_lufs : np.ndarray, shape (windows,), float64
        EBU Tech 3341 short-term loudness every 100 ms (LUFS): 3 s windows ending where each
        gating block from the 27th on ends (the first ends 3.0 s into the signal). A signal
        shorter than 3 s has one value, its whole length. ``-inf`` where digitally silent.
    fold_down_lufs : float
        Integrated loudness (LUFS) of the mono fold-down ``M = (L + R) / 2`` played on both
        channels, i.e. of the two-channel signal ``(M, M)``; for one channel, the
        ``integrated_lufs`` of that channel.
    kweighted_energy : float
        Channel-weighted K-weighted energy of the whole signal (sum over frames, no gating).
    fold_down_energy : float
        The same for the fold-down ``(M, M)``.
    """

    integrated_lufs: float
    momentary_lufs: np.ndarray
    short_term_lufs: np.ndarray
    fold_down_lufs: float
    kweighted_energy: float
    fold_down_energy: float


@numba.njit(cache=True, nogil=True)
def _kweighted_fold_segments(
    x: np.ndarray, coef: np.ndarray, weights: np.ndarray, bounds: np.ndarray
) -> np.ndarray:  # pragma: no cover - numba
    """Per segment ``[bounds[s], bounds[s + 1])`` of a one- or two-channel ``x``: row 0 the
    channel-weighted K-weighted energy (the same arithmetic, in the same order, as
    :func:`_kweighted_segments`), row 1 that of the fold-down ``(M, M)``, ``M = (L + R) / 2``.

    K-weighting is linear, so the fold-down's K-weighted signal is the mean of the channels'
    K-weighted signals (to rounding; exactly zero for channels in exact antiphase): no second
    filter pass and no copy of the audio.
    """
    channels = x.shape[0]
    segments = bounds.shape[0] - 1
    out = np.zeros((2, segments))
    k = (
        *(coef[0, 0], coef[0, 1], coef[0, 2], coef[0, 4], coef[0, 5]),
        *(coef[1, 0], coef[1, 1], coef[1, 2], coef[1, 4], coef[1, 5]),
    )
    pair = channels > 1
    wl = weights[0]
    wr = weights[1] if pair else 0.0
    fold_scale = 0.25 * (wl + wr)  # (wl + wr) * ((w + u) / 2) ** 2, a power of two for (1, 1)
    left = (0.0, 0.0, 0.0, 0.0)
    right = (0.0, 0.0, 0.0, 0.0)
    for s in range(segments):
        total = 0.0
        if pair:
            folded = 0.0
            for n in range(bounds[s], bounds[s + 1]):
                w, left = _k_weight(float(x[0, n]), left, k)
                u, right = _k_weight(float(x[1, n]), right, k)
                total += wl * (w * w) + wr * (u * u)
                m = w + u
                folded += m * m
            out[1, s] = fold_scale * folded
        else:
            for n in range(bounds[s], bounds[s + 1]):
                w, left = _k_weight(float(x[0, n]), left, k)
                total += wl * (w * w)
            out[1, s] = total
        out[0, s] = total
    return out


def _run_sums(values: np.ndarray, first: np.ndarray, stop: np.ndarray) -> np.ndarray:
    """``values[first[j]:stop[j]].sum()`` for every ``j`` (runs of a few dozen values at most),
    summed in order without a cumulative sum (so quiet runs lose no precision to loud ones)."""
    width = int((stop - first).max()) if first.size else 0
    index = first[:, np.newaxis] + np.arange(width)
    inside = index < stop[:, np.newaxis]
    padded = np.append(values, 0.0)
    return padded[np.where(inside, index, values.shape[0])].sum(axis=1)


def _lufs(energy: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """BS.1770 loudness of a mean-square ``energy / frames`` (-inf where the energy is 0)."""
    with np.errstate(divide="ignore"):
        return -0.691 + 10.0 * np.log10(energy / frames)


def loudness_profile(audio: np.ndarray, sample_rate: int) -> LoudnessProfile:
    """Integrated, momentary and short-term loudness, and the integrated loudness of the mono
    fold-down, from one K-weighting pass over ``audio`` (no copy of it; memory is a few values
    per 100 ms).

    The signal is K-weighted once and its energy summed over the segments between the BS.1770
    gating block edges (every 100 ms, pyloudnorm's exact boundaries) and the end; every window
    is a run of those segments, so each loudness is the mean K-weighted power over exactly the
    frames of its window.

    Parameters
    ----------
    audio : np.ndarray, shape (channels, frames)
        One or two channels (L, R). Shorter than 400 ms is measured zero-padded to 400 ms, as
        :func:`integrated_loudness` does.
    sample_rate : int
        Hz.

    Returns
    -------
    LoudnessProfile

    Raises
    ------
    ValueError
        ``audio`` is not ``(channels, frames)`` with one or two channels.
    """
    x, sr = _loudness_input(audio, sample_rate)
    if x.shape[0] > 2:
        raise ValueError(f"audio must have one or two channels, got {x.shape[0]}")
    frames = x.shape[1]
    gate_bounds, first, stop = _gating_blocks(frames, sr)
    bounds = gate_bounds if gate_bounds[-1] == frames else np.append(gate_bounds, frames)
    energy = _kweighted_fold_segments(x, _k_weighting(sr), _weights(x.shape[0]), bounds)
    gated = energy[:, : gate_bounds.shape[0] - 1]
    integrated = _gated_loudness(gated[0], frames, sr)
    fold_down = _gated_loudness(gated[1], frames, sr) if x.shape[0] > 1 else integrated

    momentary = _lufs(_run_sums(energy[0], first, stop), bounds[stop] - bounds[first])
    reach = int(round((SHORT_TERM_S - _GATE_BLOCK_S) / (_GATE_BLOCK_S * (1.0 - _GATE_OVERLAP))))
    if first.shape[0] > reach:  # full 3 s windows: segments first[j - reach] to stop[j]
        st_first, st_stop = first[: first.shape[0] - reach], stop[reach:]
    else:  # shorter than 3 s: one window, the whole signal
        st_first, st_stop = np.array([0]), np.array([bounds.shape[0] - 1])
    short_term = _lufs(_run_sums(energy[0], st_first, st_stop), bounds[st_stop] - bounds[st_first])
    for a in (momentary, short_term):
        a.setflags(write=False)
    return LoudnessProfile(
        integrated_lufs=integrated,
        momentary_lufs=momentary,
        short_term_lufs=short_term,
        fold_down_lufs=fold_down,
        kweighted_energy=float(energy[0].sum()),
        fold_down_energy=float(energy[1].sum()),
    )


def loudness_range(short_term_lufs: np.ndarray) -> float:
    """EBU Tech 3342 loudness range (LU) of a series of short-term loudness values.

    As the Tech 3342 reference code: keep the values at or above -70 LUFS; keep those at or
    above the power mean of the kept values minus 20 LU; the range is the 95th minus the 10th
    percentile of what is left (nearest rank: the sorted value at index ``round((n - 1) * p)``,
    halves rounded up).

    Parameters
    ----------
    short_term_lufs : np.ndarray, shape (n,)
        3 s short-term loudness at 10 Hz or more (:attr:`LoudnessProfile.short_term_lufs`).

    Returns
    -------
    float
        LU, 0 when fewer than two values pass the gates.
    """
    values = np.asarray(short_term_lufs, dtype=np.float64)
    values = values[values >= _ABSOLUTE_GATE_LUFS]
    if values.shape[0] < 2:
        return 0.0
    mean_power = float(np.mean(10.0 ** (values / 10.0)))
    values = np.sort(values[values >= 10.0 * math.log10(mean_power) + _LRA_RELATIVE_GATE_LU])
    if values.shape[0] < 2:
        return 0.0
    low, high = (
        values[int(math.floor((values.shape[0] - 1) * p / 100.0 + 0.5))] for p in _LRA_PERCENTILES
    )
    return float(high - low)

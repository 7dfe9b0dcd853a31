"""Vintage (opto / vari-mu style) compressor with a saturation stage.

Where the modern :class:`~services.renderer.compressor.Compressor` is a clean, predictable peak
compressor, this one imitates the character of optical and variable-mu tube levellers:

1. **RMS detector**, stereo-linked: each channel's mean square is smoothed by a one-pole filter
   (time constant ``min(5 ms, attack_ms / 4)``); the louder channel sets the level, read as
   ``10 log10(2 * mean square)`` so a sine reads its peak level (a 0.5-amplitude sine is
   -6 dB whatever its frequency, as in the modern compressor).
2. **Static curve** (:func:`vintage_gain_reduction_db`): a wide 12 dB soft knee centred on the
   threshold, then a ratio that keeps growing with level (vari-mu): the local ratio is
   ``ratio + (ratio - 1) * u / 20`` at ``u`` dB above the top of the knee.

   Steps 1 and 2 are a numba kernel for the mean-square recursion, numpy's logarithm for the
   level, a vectorising kernel for the knee, numpy's logarithm again for the vari-mu term and a
   kernel that combines them: numba's scalar ``math.log`` has no vector version without SVML,
   and per frame it would cost several times the rest of the detector.
3. **Opto ballistics** (numba kernel): a one-pole attack of ``attack_ms``; a two-stage release, a
   fast part with time constant ``release_ms`` and a slow part six times longer. The slow part's
   share of the reduction grows with a "memory" that charges (1 s time constant) while the gain
   is reduced (fully at 6 dB of reduction or more) and discharges as slowly as the slow release:
   after a short hit the compressor recovers in about ``release_ms``; after seconds of heavy
   reduction about half of it lingers for seconds, like an optical cell.
4. **Saturation** after the gain: ``drive_db`` into a smooth waveshaper mixing an odd curve
   ``u / sqrt(1 + u^2)`` and an even one ``u + 0.5 (sqrt(1 + u^2) - 1)`` by ``even_pct``, 4x
   oversampled, level-compensated (a -12 dBFS sine keeps its RMS level), its DC removed by a
   5 Hz high-pass. Only the distortion (shaped minus clean) goes through the oversampling
   filters and the high-pass, so the clean signal is untouched and there is no latency.

``ratio = 1`` with ``drive_db = 0`` (the defaults) is an exact bypass.

The kernels are serial numba functions that release the GIL: the versions of one song render
concurrently in threads, and numba's parallel kernels would abort under its default threading
layer when called from several threads at once.

Block processing (:mod:`services.renderer.blocks`): :meth:`VintageCompressor.context` asks for
the RMS detector's warm-up and the saturation stage's reach (oversampling filters and DC
blocker) as history, the filters' reach as look-ahead, and the opto memory's control step as the
grid; the opto ballistics (a slow release and a memory of seconds) carry their state over from
block to block (:meth:`VintageCompressor.resumable`), resuming early enough that the saturation
sees correctly gained signal over its history.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Any

import numba
import numpy as np
from scipy.signal import firwin

from services.common.params import neutral, prefixed_kwargs
from services.renderer.compressor import _scale, time_constant_coef
from services.renderer.processor import (
    SETTLE_TIME_CONSTANTS,
    Context,
    Parameter,
    Processor,
    check_processor_input,
    check_sample_rate,
)

#: Width of the soft knee, centred on the threshold (dB).
KNEE_DB = 12.0
#: Vari-mu: above the knee the local ratio grows by ``ratio - 1`` every this many dB.
VARI_MU_DB = 20.0
#: Longest time constant of the RMS detector (ms).
RMS_MS = 5.0
#: The RMS detector's time constant is at most this fraction of ``attack_ms``.
RMS_ATTACK_FRACTION = 0.25
#: The RMS detector delays the reduction by about this many of its time constants; the attack
#: smoothing is shortened by as much, so the attack time is ``attack_ms``.
RMS_LAG = 0.5
#: The slow release part's time constant, in multiples of ``release_ms``.
SLOW_RELEASE_FACTOR = 6.0
#: Largest share of the gain reduction that releases slowly (after long, deep reduction).
SLOW_SHARE_MAX = 0.5
#: Time constant with which sustained reduction charges the opto "memory" (ms).
MEMORY_CHARGE_MS = 1000.0
#: Reduction depth (dB) at which the memory charges fully.
MEMORY_DEPTH_DB = 6.0

#: Oversampling factor of the waveshaper.
OVERSAMPLING = 4
#: Input gain into the waveshaper at 0 dB of drive (the curve bends near |u| = 1).
DRIVE_REFERENCE_GAIN = 0.5
#: Amount of the rectifying term in the even curve (< 1 keeps the curve monotonic).
EVEN_CURVE_AMOUNT = 0.5
#: Peak level (dBFS) of the sine whose RMS the drive does not change.
COMPENSATION_REFERENCE_DB = -12.0
#: Corner of the high-pass that removes the DC the even harmonics create (Hz).
DC_BLOCK_HZ = 5.0

#: Half-length of the oversampling FIR, in base-rate samples on each side.
_FIR_REACH = 8
#: Taps per phase of the oversampling FIR (a compile-time constant in the kernel).
_WIDTH = 2 * _FIR_REACH + 1
#: Base-rate samples per block of the saturation kernel (each block oversamples its own span).
_BLOCK = 2048
#: Time constants the RMS detector's mean square needs to forget its start (block history). The
#: start-up error is a fraction of the mean square *before* the block (up to 7.9 at +12 dBFS),
#: not of the level in it: after SETTLE_TIME_CONSTANTS it would still be 9e-7, 2 % of the power
#: at the centre of the knee at the lowest threshold (-40 dB: 5e-5), 0.08 dB of level; after 40
#: it is 3e-17, 7e-13 of that power.
_RMS_WARMUP_TIME_CONSTANTS = 40.0
#: The opto memory is updated once every this many samples.
_CONTROL_STEP = 32


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _static_target(
    level: np.ndarray, scale: float, threshold_db: float, ratio: float, vari_mu_arg: np.ndarray
) -> int:  # pragma: no cover - numba
    """The static curve at the levels ``scale * level`` dB, all but its logarithm, in place.

    Overwrites ``level`` with the reduction of :func:`vintage_gain_reduction_db` less the
    vari-mu term ``(VARI_MU_DB / a) ln(1 + a u / (VARI_MU_DB ratio))`` and writes that
    logarithm's argument to ``vari_mu_arg`` (1 below the top of the knee, where the term is
    0); :func:`_static_curve` finishes with numpy's vectorised logarithm. ``-inf`` levels (a
    silent detector) give 0. Returns how many levels are above the knee (``ratio > 1``).

    No logarithm and no branch that LLVM cannot turn into a select: the loop vectorises
    (``error_model="numpy"`` drops numba's division-by-zero checks, which would keep it from
    vectorising).
    """
    half = KNEE_DB / 2.0
    slope = 1.0 - 1.0 / ratio
    a = ratio - 1.0
    top = slope * half
    denominator = VARI_MU_DB * ratio
    above = 0
    for i in range(level.shape[0]):
        over = scale * level[i] - threshold_db
        u = over - half
        w = over + half
        knee = slope * (w * w) / (2.0 * KNEE_DB) if w > 0.0 else 0.0
        is_above = u > 0.0
        # ln(1 + x) rather than log1p: x >= 0 loses nothing that matters here.
        vari_mu_arg[i] = 1.0 + a * u / denominator if is_above else 1.0
        level[i] = top + u if is_above else knee
        above += is_above
    return above


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _subtract_vari_mu(
    target: np.ndarray, log_arg: np.ndarray, factor: float
) -> None:  # pragma: no cover - numba
    """``target -= factor * log_arg`` in one vectorised pass."""
    for i in range(target.shape[0]):
        target[i] = target[i] - factor * log_arg[i]


def _static_curve(
    level: np.ndarray, scale: float, threshold_db: float, ratio: float, scratch: np.ndarray
) -> None:
    """:func:`vintage_gain_reduction_db` at the levels ``scale * level`` dB, in place.

    ``level``: 1-D float64, contiguous (``-inf`` allowed); ``scratch``: a float64 buffer of
    its length, overwritten; ``ratio > 1``. The logarithm is numpy's vectorised one, on the
    whole array, and only when some level is above the knee.
    """
    if _static_target(level, scale, threshold_db, ratio, scratch):
        np.log(scratch, out=scratch)
        _subtract_vari_mu(level, scratch, VARI_MU_DB / (ratio - 1.0))


def vintage_gain_reduction_db(
    level_db: np.ndarray, *, threshold_db: float, ratio: float
) -> np.ndarray:
    """Static curve: gain reduction (>= 0 dB) for RMS levels in dB.

    With ``o = level - threshold``, ``h = KNEE_DB / 2`` and ``s = 1 - 1 / ratio``:

    - ``o <= -h``: 0;
    - ``|o| <= h``: ``s (o + h)^2 / (2 KNEE_DB)`` (the knee; ``s h / 2`` at the threshold);
    - ``o > h``, with ``u = o - h`` and ``a = ratio - 1``:
      ``s h + u - (VARI_MU_DB / a) ln(1 + a u / (VARI_MU_DB ratio))``, the integral of the
      local slope ``1 - 1 / r(u)`` with the growing ratio ``r(u) = ratio + a u / VARI_MU_DB``.

    The curve and its slope are continuous, and the slope stays below 1 (louder in is always
    louder out). ``ratio = 1`` gives 0 everywhere. The compressor applies this very code (on
    its detector's levels).

    Parameters
    ----------
    level_db : np.ndarray, shape (n,)
    threshold_db : float
    ratio : float
        >= 1.

    Returns
    -------
    np.ndarray, shape (n,), float64
    """
    x = np.asarray(level_db, dtype=np.float64)
    if ratio <= 1.0:
        return np.zeros(x.shape)
    out = np.array(x, dtype=np.float64, order="C").ravel()  # a copy, curved in place
    _static_curve(out, 1.0, float(threshold_db), float(ratio), np.empty_like(out))
    return out.reshape(x.shape)


@numba.njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def _detector_power(x: np.ndarray, rms_coef: float, out: np.ndarray) -> float:  # pragma: no cover
    """RMS detector: twice the louder channel's mean square per frame, into ``out``.

    Each channel's square is smoothed by a one-pole filter (coefficient ``rms_coef``, from zero
    at the start of ``x``); twice the louder mean square is the power whose ``10 log10`` is the
    sine-referenced level. Returns the largest value written (0 for no frames).

    The recursion is latency-bound: ``fastmath={"contract"}`` (fused multiply-adds, nothing
    else) shortens its critical path to one fused multiply-add per frame (about 1.5x faster),
    changing the rounding by ~1e-14 relative (~1e-13 dB).
    """
    channels, frames = x.shape
    one_minus_coef = 1.0 - rms_coef
    peak = 0.0
    if channels == 2:
        # Stereo, the common case, with the state in registers.
        left = 0.0
        right = 0.0
        for i in range(frames):
            a = x[0, i]
            b = x[1, i]
            left = rms_coef * left + one_minus_coef * a * a
            right = rms_coef * right + one_minus_coef * b * b
            p = 2.0 * max(left, right)
            out[i] = p
            peak = max(peak, p)
    else:
        ms = np.zeros(channels)
        for i in range(frames):
            loudest = 0.0
            for c in range(channels):
                s = x[c, i]
                ms[c] = rms_coef * ms[c] + one_minus_coef * s * s
                loudest = max(loudest, ms[c])
            p = 2.0 * loudest
            out[i] = p
            peak = max(peak, p)
    return peak


def _detector_target(
    x: np.ndarray, rms_coef: float, threshold_db: float, ratio: float, scratch: np.ndarray
) -> np.ndarray:
    """RMS detector and static curve: the unsmoothed gain reduction per frame (``ratio > 1``).

    :func:`_detector_power` (a kernel), the level ``10 log10(2 * mean square)`` by numpy's
    vectorised logarithm, then :func:`_static_curve` (the code of
    :func:`vintage_gain_reduction_db`). Numba's scalar ``math.log`` has no vector version on
    CPUs without SVML, and numpy's is several times faster: the logarithms run on whole
    arrays. ``scratch``: a float64 buffer of ``x.shape[1]`` frames, overwritten.
    """
    target = np.empty(x.shape[1])
    lowest = 10.0 ** ((threshold_db - KNEE_DB / 2.0) / 10.0)
    if _detector_power(x, rms_coef, target) <= lowest:
        target.fill(0.0)  # below the knee throughout: no reduction, no logarithms
        return target
    with np.errstate(divide="ignore"):  # silence reads -inf dB, which the curve takes
        np.log(target, out=target)
    _static_curve(target, 10.0 / math.log(10.0), threshold_db, ratio, scratch)
    return target


@numba.njit(cache=True, nogil=True, fastmath=True)
def _opto_ballistics(
    target: np.ndarray,
    attack_coef: float,
    fast_coef: float,
    slow_coef: float,
    charge_coef: float,
    discharge_coef: float,
    state: np.ndarray,
    begin: int,
    save_at: int,
    saved: np.ndarray,
    out: np.ndarray,
) -> None:  # pragma: no cover - numba
    """Smooth a static gain reduction (dB, >= 0) with opto-like, program-dependent release.

    A decoupled detector, as in the modern compressor: a release stage that rises instantly
    and falls in two parts, then a one-pole attack. The release stage is the sum of a fast part
    and a slow part; whenever it rises, it is split so that the slow part holds the share
    ``SLOW_SHARE_MAX * memory``, and while it falls each part releases with its own time
    constant. The memory charges towards ``min(1, reduction / MEMORY_DEPTH_DB)`` and discharges
    with the slow release; it moves slowly (a second or more), so it is updated once every
    ``_CONTROL_STEP`` samples (``charge_coef`` and ``discharge_coef`` are per step).

    Writes ``out`` (of ``target``'s length) from frame ``begin`` (a multiple of
    ``_CONTROL_STEP``; earlier frames are set to 0) with ``state = [fast, slow, memory,
    smoothed]``; the state before frame ``save_at`` (a multiple of ``_CONTROL_STEP`` up to the
    length, or -1 for none) is copied into ``saved``.
    """
    frames = target.shape[0]
    out[: min(begin, frames)] = 0.0
    fast = state[0]
    slow = state[1]
    memory = state[2]
    smoothed = state[3]
    inv_depth = 1.0 / MEMORY_DEPTH_DB
    for start in range(begin, frames, _CONTROL_STEP):
        if start == save_at:
            saved[0] = fast
            saved[1] = slow
            saved[2] = memory
            saved[3] = smoothed
        depth = min(smoothed * inv_depth, 1.0)
        coef = charge_coef if depth > memory else discharge_coef
        memory = coef * memory + (1.0 - coef) * depth
        share = SLOW_SHARE_MAX * memory
        to_fast = (1.0 - fast_coef) * (1.0 - share)
        to_slow = (1.0 - slow_coef) * share
        for i in range(start, min(frames, start + _CONTROL_STEP)):
            x = target[i]
            if x >= fast + slow:
                slow = share * x
                fast = x - slow
            else:
                fast = fast_coef * fast + to_fast * x
                slow = slow_coef * slow + to_slow * x
            smoothed = attack_coef * smoothed + (1.0 - attack_coef) * (fast + slow)
            out[i] = smoothed
    if save_at >= frames:
        saved[0] = fast
        saved[1] = slow
        saved[2] = memory
        saved[3] = smoothed


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _add_dc_blocked(
    x: np.ndarray,
    distortion: np.ndarray,
    pole: float,
    previous: float,
    state: float,
    out: np.ndarray,
) -> tuple[float, float]:  # pragma: no cover - numba
    """``out = x`` plus the distortion through a DC blocker (a zero at DC, a pole at ``pole``,
    unity gain at Nyquist), for one stretch of one channel (1-D arrays of one length).

    The filter is ``state[i] = pole * state[i - 1] + gain * (d[i] - d[i - 1])``, ``gain = (1 +
    pole) / 2``. ``previous`` (the distortion sample before the stretch) and ``state`` (the
    filter's output there) carry it over from the stretch before (0 and 0 at the start); it
    returns them for the next one. Four samples at a time are computed from the state before
    them (with ``pole`` to the powers 2 to 4), so the recursion waits for one multiply-add
    every four samples rather than every sample (the rounding differs by ~1e-16 relative).
    """
    n = x.shape[0]
    gain = 0.5 * (1.0 + pole)
    p2 = pole * pole
    p3 = p2 * pole
    p4 = p2 * p2
    quads = n - n % 4
    for i in range(0, quads, 4):
        d0 = np.float64(distortion[i])
        d1 = np.float64(distortion[i + 1])
        d2 = np.float64(distortion[i + 2])
        d3 = np.float64(distortion[i + 3])
        e0 = gain * (d0 - previous)
        e1 = gain * (d1 - d0)
        e2 = gain * (d2 - d1)
        e3 = gain * (d3 - d2)
        out[i] = x[i] + (pole * state + e0)
        out[i + 1] = x[i + 1] + (p2 * state + (pole * e0 + e1))
        out[i + 2] = x[i + 2] + (p3 * state + (p2 * e0 + (pole * e1 + e2)))
        state = p4 * state + (p3 * e0 + (p2 * e1 + (pole * e2 + e3)))
        out[i + 3] = x[i + 3] + state
        previous = d3
    for i in range(quads, n):
        d = np.float64(distortion[i])
        state = pole * state + gain * (d - previous)
        previous = d
        out[i] = x[i] + state
    return previous, state


@functools.lru_cache(maxsize=1)
def _oversampling_taps() -> tuple[np.ndarray, np.ndarray]:
    """Linear-phase low-pass for the 4x interpolation and decimation, split into phases.

    One symmetric Kaiser-window FIR ``h`` at the oversampled rate (cutoff 0.47 x the base
    sample rate, ``2 * OVERSAMPLING * _FIR_REACH + 1`` taps, unity gain at DC) serves both ways.

    Returns
    -------
    up : np.ndarray, shape (OVERSAMPLING, 2 * _FIR_REACH + 1)
        ``up[p, j]`` weighs ``x[n - _FIR_REACH + j]`` in the oversampled sample
        ``n + p / OVERSAMPLING`` (gain ``OVERSAMPLING``).
    down : np.ndarray, shape (OVERSAMPLING, 2 * _FIR_REACH + 1)
        ``down[p, i]`` weighs the oversampled sample ``n - _FIR_REACH + i + p / OVERSAMPLING``
        in the decimated output ``n``.

    ``h`` being symmetric, ``up[0]`` is symmetric, ``up[1:, 0]`` are 0, ``up[2, 1:]`` is
    symmetric and ``up[3, 1:]`` is ``up[1, 1:]`` reversed (the kernel relies on it).
    """
    half = OVERSAMPLING * _FIR_REACH
    h = firwin(2 * half + 1, 0.47, window=("kaiser", 6.0), fs=OVERSAMPLING)
    width = 2 * _FIR_REACH + 1
    up = np.zeros((OVERSAMPLING, width))
    down = np.zeros((OVERSAMPLING, width))
    for p in range(OVERSAMPLING):
        taps = h[p::OVERSAMPLING]
        up[p, : taps.size] = taps * OVERSAMPLING
        down[p, : taps.size] = taps
    # ``up`` as computed weighs x[n + reach - j]: reverse it so the kernel reads forwards.
    return (
        np.ascontiguousarray(up[:, ::-1], dtype=np.float32),
        np.ascontiguousarray(down, dtype=np.float32),
    )


@numba.njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def _distortion_kernel(
    x: np.ndarray,
    up: np.ndarray,
    down: np.ndarray,
    drive: float,
    out_gain: float,
    even: float,
    amount: float,
    pole: float,
    out: np.ndarray,
) -> None:  # pragma: no cover - numba
    """The saturation stage: ``out = x`` plus the waveshaper's distortion
    ``out_gain * shape(drive * v) - v``, computed on the 4x oversampled signal ``v``,
    decimated back and DC-blocked (:func:`_add_dc_blocked`, pole ``pole``). ``x`` and ``out``
    are ``(channels, frames)``, ``out`` float64; ``up`` and ``down`` are
    :func:`_oversampling_taps`, ``(OVERSAMPLING, _WIDTH)``.

    Each channel runs in blocks of ``_BLOCK`` output samples, in order (the DC blocker carries
    its state from block to block), in scratch allocated once per call. A block builds the
    oversampled distortion it needs (plus the filter's reach on each side), one row per phase.
    Each oversampled sample is summed in a register and waveshaped at once; the four phases of
    a base sample share one pass over the ``_WIDTH`` inputs around it, folded by the taps'
    symmetry (:func:`_oversampling_taps`): phases 0 and 2 are symmetric, so each pair of
    mirrored inputs is added before one multiply; phases 1 and 3 mirror each other, so their
    half sum and half difference are a symmetric and an antisymmetric filter, folded alike
    (33 multiply-adds instead of 68). Then each output sample is summed over the taps of one
    phase at a time, in a register, and added to an accumulator. The tap counts are
    compile-time constants, so LLVM unrolls the tap loops (the taps stay in registers) and
    vectorises the loops along time (``error_model="numpy"``: numba's division-by-zero check
    in the waveshaper, whose divisor is at least 1, would keep LLVM from vectorising it). The
    arithmetic is float32 (the taps ``up`` and ``down`` too): the distortion's rounding error
    stays near float32 resolution of the signal, which is what the output has anyway.
    """
    channels, frames = x.shape
    one = np.float32(1.0)
    g_odd = np.float32(out_gain * (1.0 - even))
    g_even = np.float32(out_gain * even)
    g_even_amount = np.float32(out_gain * even * amount)
    k = np.float32(drive)
    # seg[i]: input at n0 - 2 * _FIR_REACH + i, zero outside the signal.
    seg = np.zeros(_BLOCK + 4 * _FIR_REACH, dtype=np.float32)
    # buf[p, i]: distortion of the oversampled signal at n0 - _FIR_REACH + i + p / OVERSAMPLING.
    buf = np.empty((OVERSAMPLING, _BLOCK + 2 * _FIR_REACH), dtype=np.float32)
    # acc[i]: the decimated distortion at n0 + i.
    acc = np.empty(_BLOCK, dtype=np.float32)
    half_sum = np.empty(_FIR_REACH, dtype=np.float32)
    half_diff = np.empty(_FIR_REACH, dtype=np.float32)
    for j in range(_FIR_REACH):
        half_sum[j] = np.float32(0.5) * (up[1, 1 + j] + up[3, 1 + j])
        half_diff[j] = np.float32(0.5) * (up[1, 1 + j] - up[3, 1 + j])
    for c in range(channels):
        previous = 0.0
        state = 0.0
        for n0 in range(0, frames, _BLOCK):
            n1 = min(frames, n0 + _BLOCK)
            size = n1 - n0
            lo = n0 - 2 * _FIR_REACH
            hi = n1 + 2 * _FIR_REACH
            first = max(lo, 0)
            last = min(hi, frames)
            seg[: first - lo] = 0.0
            # (a copy between 1-D views vectorises; indexing x[c, i] does not)
            src = x[c, first:last]
            dst = seg[first - lo : last - lo]
            for i in range(last - first):
                dst[i] = src[i]
            seg[last - lo : hi - lo] = 0.0
            for i in range(size + 2 * _FIR_REACH):
                # Phases 0 and 2 are symmetric; 1 and 3 mirror each other: they are the
                # half sum plus and minus the half difference of the two (4 phases assumed).
                v0 = up[0, _FIR_REACH] * seg[i + _FIR_REACH]
                v2 = np.float32(0.0)
                v_sum = np.float32(0.0)
                v_diff = np.float32(0.0)
                for j in range(_FIR_REACH):
                    v0 += up[0, j] * (seg[i + j] + seg[i + 2 * _FIR_REACH - j])
                    a = seg[i + 1 + j]
                    b = seg[i + 2 * _FIR_REACH - j]
                    v2 += up[2, 1 + j] * (a + b)
                    v_sum += half_sum[j] * (a + b)
                    v_diff += half_diff[j] * (a - b)
                for p in range(OVERSAMPLING):
                    if p == 0:
                        v = v0
                    elif p == 1:
                        v = v_sum + v_diff
                    elif p == 2:
                        v = v2
                    else:
                        v = v_sum - v_diff
                    u = k * v
                    rr = one + u * u
                    inv = one / math.sqrt(rr)  # r = sqrt(1 + u^2) is rr / r
                    r = rr * inv
                    # r - 1 as u^2 / (r + 1): exactly 0 at u = 0 however the fast-math
                    # reciprocal square root rounds (AVX-512's is not exact at 1, and r - 1
                    # made silence come out as a -2.5e-9 DC step), and no cancellation near 0.
                    even_term = u * u / (r + one)
                    buf[p, i] = g_odd * (u * inv) + g_even * u + g_even_amount * even_term - v
            acc[:size] = 0.0
            for p in range(OVERSAMPLING):
                for i in range(size):
                    s = np.float32(0.0)
                    for j in range(_WIDTH):
                        s += down[p, j] * buf[p, i + j]
                    acc[i] += s
            previous, state = _add_dc_blocked(
                x[c, n0:n1], acc[:size], pole, previous, state, out[c, n0:n1]
            )


def waveshape(u: np.ndarray, *, even_pct: float) -> np.ndarray:
    """The memoryless curve (before oversampling, compensation and DC removal).

    ``(1 - e) u / sqrt(1 + u^2) + e (u + EVEN_CURVE_AMOUNT (sqrt(1 + u^2) - 1))`` with
    ``e = even_pct / 100``: the first term is odd (odd harmonics only), the second is ``u`` plus
    an even term (even harmonics and DC only) that is ``u^2 / 4`` near 0 and ``|u| / 2`` far
    out. Slope 1 at 0, monotonic.

    Parameters
    ----------
    u : np.ndarray, any shape

    Returns
    -------
    np.ndarray, same shape, float64
    """
    u = np.asarray(u, dtype=np.float64)
    e = even_pct / 100.0
    r = np.sqrt(1.0 + u * u)
    return (1.0 - e) * (u / r) + e * (u + EVEN_CURVE_AMOUNT * (r - 1.0))


@functools.lru_cache(maxsize=256)
def _output_gain(drive_gain: float, even_pct: float) -> float:
    """Gain after the waveshaper so that a reference sine keeps its RMS (DC excluded)."""
    amp = 10.0 ** (COMPENSATION_REFERENCE_DB / 20.0)
    x = amp * np.sin(2.0 * np.pi * np.arange(4096) / 4096)
    y = waveshape(drive_gain * x, even_pct=even_pct) / drive_gain
    return float(np.std(x) / np.std(y))


class VintageCompressor(Processor):
    """Opto / vari-mu style compressor followed by a saturation stage.

    Parameters are the schema's ``vcomp_*`` parameters without the prefix; build one from a
    schema parameter set with :meth:`from_params`.

    Parameters
    ----------
    threshold_db : float
        Centre of the 12 dB knee (RMS level, sine-referenced dBFS).
    ratio : float
        Ratio at the top of the knee; grows with level above it. 1 = no compression.
    attack_ms : float
        Attack time constant (63 % of a step in the gain reduction).
    release_ms : float
        Time constant of the fast release part (what a short hit sees); sustained reduction
        adds a slow part of ``6 * release_ms``.
    drive_db : float
        Gain into the waveshaper. 0 = no saturation stage at all.
    even_pct : float
        Share of the even (asymmetric, 2nd-harmonic) curve against the odd (symmetric,
        3rd-harmonic) one.
    """

    threshold_db = Parameter("vcomp_threshold_db")
    ratio = Parameter("vcomp_ratio")
    attack_ms = Parameter("vcomp_attack_ms")
    release_ms = Parameter("vcomp_release_ms")
    drive_db = Parameter("vcomp_drive_db")
    even_pct = Parameter("vcomp_even_pct")

    def __init__(
        self,
        *,
        threshold_db: float = neutral("vcomp_threshold_db"),
        ratio: float = neutral("vcomp_ratio"),
        attack_ms: float = neutral("vcomp_attack_ms"),
        release_ms: float = neutral("vcomp_release_ms"),
        drive_db: float = neutral("vcomp_drive_db"),
        even_pct: float = neutral("vcomp_even_pct"),
    ) -> None:
        self.threshold_db = threshold_db
        self.ratio = ratio
        self.attack_ms = attack_ms
        self.release_ms = release_ms
        self.drive_db = drive_db
        self.even_pct = even_pct

    @classmethod
    def from_params(cls, params: Mapping[str, float]) -> VintageCompressor:
        """Build from a schema parameter set (``vcomp_*`` names; missing ones take defaults)."""
        return cls(**prefixed_kwargs(params, "vcomp_"))

    @property
    def is_bypass(self) -> bool:
        """True when processing returns the input unchanged (``ratio = 1``, ``drive_db = 0``)."""
        return self.ratio == 1.0 and self.drive_db == 0.0

    def static_gain_reduction_db(self, level_db: np.ndarray) -> np.ndarray:
        """:func:`vintage_gain_reduction_db` with this compressor's threshold and ratio."""
        return vintage_gain_reduction_db(level_db, threshold_db=self.threshold_db, ratio=self.ratio)

    def gain_reduction_db(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """The smoothed gain reduction the compressor applies.

        Parameters
        ----------
        audio : np.ndarray, shape (channels, frames)
        sample_rate : int

        Returns
        -------
        np.ndarray, shape (frames,), float64, dB >= 0
        """
        x = check_processor_input(audio)
        sr = check_sample_rate(sample_rate)
        if self.ratio == 1.0 or x.shape[1] == 0:
            return np.zeros(x.shape[1])
        return self._gain_reduction(x, sr)

    def _rms_ms(self) -> float:
        return min(RMS_MS, RMS_ATTACK_FRACTION * self.attack_ms)

    def _gain_reduction(
        self,
        x: np.ndarray,
        sr: int,
        *,
        begin: int = 0,
        state: np.ndarray | None = None,
        save_at: int = -1,
        saved: np.ndarray | None = None,
    ) -> np.ndarray:
        rms_ms = self._rms_ms()
        # Two frame-sized buffers in all: the curve's scratch becomes the output.
        out = np.empty(x.shape[1])
        target = _detector_target(
            np.ascontiguousarray(x),
            time_constant_coef(rms_ms, sr),
            self.threshold_db,
            self.ratio,
            out,
        )
        slow_ms = SLOW_RELEASE_FACTOR * self.release_ms
        _opto_ballistics(
            target,
            time_constant_coef(self.attack_ms - RMS_LAG * rms_ms, sr),
            time_constant_coef(self.release_ms, sr),
            time_constant_coef(slow_ms, sr),
            time_constant_coef(MEMORY_CHARGE_MS, sr) ** _CONTROL_STEP,
            time_constant_coef(slow_ms, sr) ** _CONTROL_STEP,
            np.zeros(4) if state is None else state,
            begin,
            save_at,
            np.zeros(4) if saved is None else saved,
            out,
        )
        return out

    def context(self, sample_rate: int) -> Context:
        """The block context.

        - History, with compression: ``_RMS_WARMUP_TIME_CONSTANTS`` RMS time constants (the
          mean square's start-up error falls below 1e-12 of the power at the knee's centre at
          the lowest threshold: the level is exact to ~1e-11 dB); with drive, on top, rounded
          up to the grid: the oversampling filters' reach ``2 * _FIR_REACH`` (a sample's
          distortion depends on 8 inputs either side through the interpolator, then 8
          oversampled ones through the decimator) and ``SETTLE_TIME_CONSTANTS`` time constants
          of the 5 Hz DC blocker (its start-up error, at most the distortion's amplitude,
          decays to e^-16 ~ 1e-7 of it). The opto release and memory (seconds) carry over
          between blocks instead (:meth:`resumable`).
        - Look-ahead: ``2 * _FIR_REACH`` with drive, else 0.
        - Grid: ``_CONTROL_STEP``, on which the opto memory is updated.
        """
        sr = check_sample_rate(sample_rate)
        history = self._saturation_history(sr)
        if self.ratio != 1.0:
            history += math.ceil(_RMS_WARMUP_TIME_CONSTANTS * self._rms_ms() * 1e-3 * sr)
        lookahead = 2 * _FIR_REACH if self.drive_db != 0.0 else 0
        return Context(history=history, lookahead=lookahead, grid=_CONTROL_STEP)

    def _saturation_history(self, sr: int) -> int:
        """Frames of gained signal the saturation stage needs before a block (oversampling
        filters' reach and the DC blocker's settle time), on the control-step grid."""
        if self.drive_db == 0.0:
            return 0
        dc_tau = sr / (2.0 * math.pi * DC_BLOCK_HZ)
        frames = 2 * _FIR_REACH + math.ceil(SETTLE_TIME_CONSTANTS * dc_tau)
        return -(-frames // _CONTROL_STEP) * _CONTROL_STEP

    def resumable(self, sample_rate: int, channels: int) -> _Resumable:
        """Block processing with the opto ballistics' state carried over."""
        return _Resumable(self, check_sample_rate(sample_rate))

    def saturate(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """The saturation stage alone (what follows the gain in :meth:`process`).

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
        if self.drive_db == 0.0 or x.shape[1] == 0:
            return x
        return self._saturate(x, sr)

    def _saturate(self, x: np.ndarray, sr: int) -> np.ndarray:
        drive = DRIVE_REFERENCE_GAIN * 10.0 ** (self.drive_db / 20.0)
        up, down = _oversampling_taps()
        # The DC blocker works on the distortion only: the even harmonics' DC goes, the clean
        # signal (and any DC it carries) is untouched.
        out = np.empty(x.shape)
        _distortion_kernel(
            np.ascontiguousarray(x),
            up,
            down,
            drive,
            _output_gain(drive, self.even_pct) / drive,
            self.even_pct / 100.0,
            EVEN_CURVE_AMOUNT,
            math.exp(-2.0 * math.pi * DC_BLOCK_HZ / sr),
            out,
        )
        return out

    def _process(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        if self.is_bypass:
            return audio
        return self._render(audio, sample_rate, self._gain_reduction)

    def _render(self, audio: np.ndarray, sample_rate: int, gain_reduction: Any) -> np.ndarray:
        y = audio
        if self.ratio != 1.0:
            # The gain by numpy's vectorised float32 exponential (about 3e-7 relative
            # rounding, far below the 1e-5 block tolerance), applied by a kernel.
            gain = gain_reduction(audio, sample_rate).astype(np.float32)
            gain *= np.float32(-math.log(10.0) / 20.0)
            np.exp(gain, out=gain)
            y = _scale(np.ascontiguousarray(audio, dtype=np.float64), gain)
        if self.drive_db != 0.0:
            y = self._saturate(y, sample_rate)
        return y


class _Resumable:
    """The vintage compressor over overlapping block extents, the opto ballistics' state saved
    at the frame where the next extent's kept part starts."""

    def __init__(self, compressor: VintageCompressor, sample_rate: int) -> None:
        self.compressor = compressor
        self.sample_rate = sample_rate
        self.saved = np.zeros(4)
        self.saved_at = 0

    def __call__(self, x: np.ndarray, lo: int, kept_from: int, save_at: int | None) -> np.ndarray:
        comp = self.compressor
        # The saturation after the gain needs correctly gained signal before `kept_from`: the
        # ballistics resume that much earlier (its history is in the context, on the grid).
        offset = comp._saturation_history(self.sample_rate)
        resume = kept_from - offset
        state = None
        if resume > 0:
            if resume != self.saved_at:
                raise AssertionError(f"resumed at {resume}, state saved at {self.saved_at}")
            state = self.saved.copy()
        else:
            resume = 0  # the start-up state; the extent starts the file then (lo = 0)
        save = None if save_at is None or save_at - offset <= 0 else save_at - offset
        saved = np.zeros(4)

        def gain_reduction(audio: np.ndarray, sr: int) -> np.ndarray:
            return comp._gain_reduction(
                audio,
                sr,
                begin=resume - lo,
                state=state,
                save_at=-1 if save is None else save - lo,
                saved=saved,
            )

        y = comp._render(x, self.sample_rate, gain_reduction)
        if save is not None:
            self.saved, self.saved_at = saved, save
        return y

"""Filtering kernels shared by the renderer's processors: biquad cascades run by numba
(bit-identical to :func:`scipy.signal.sosfilt`; on a stereo block about 4x faster for one or
two sections, 1.6x for six), forward-backward (zero-phase) filtering, how long a filter takes
to settle, and how much context a block needs.

Speed: a biquad is a recursion, so one section over one row is bound by the latency of its
multiply-add chain (about 10 cycles a sample). The kernels keep several independent recursions
in flight in one loop (two rows, and two or three cascaded sections of each: section ``s`` at
frame ``i + 1`` does not wait for section ``s + 1`` at frame ``i``), which leaves them bound by
multiply throughput instead: five multiplies per section and sample, in the order
:func:`scipy.signal.sosfilt` uses, no fused multiply-add, no SIMD across the two channels (numba
leaves LLVM's SLP vectorizer off). Kernels release the GIL and are serial (no
``parallel=True``: the renderer runs versions in threads).

Block processing: :func:`tail_frames` measures how many frames of context a filter needs so that
cutting the signal there changes its output by at most a given amount (the absolute sum of the
impulse response beyond that lag); :data:`CONTEXT_TOLERANCE` is the amount the renderer's
processors allow per unit of input peak.
"""

from __future__ import annotations

import math

import numba
import numpy as np

#: Impulse-response magnitude below which a filter counts as settled.
SETTLE_TOLERANCE = 1e-12
#: Impulse-response mass (sum of absolute values) beyond a block context that a processor may
#: leave out, per unit of input peak. Cutting a linear filter's input there changes its output
#: by at most peak x mass; 1e-7 is 100 times below
#: :data:`~services.renderer.processor.BLOCK_TOLERANCE`, room for inputs above full scale (after
#: makeup gain or the exciter) and for the errors of the chain's processors adding up.
CONTEXT_TOLERANCE = 1e-7


@numba.njit(cache=True, nogil=True)
def _sections1_rows(src: np.ndarray, dst: np.ndarray, sec: np.ndarray, reverse: bool) -> None:
    """One biquad section over every row of ``src`` into ``dst`` (which may be ``src``).

    Rows go two per loop (independent recursions overlap in the CPU); an odd last row is paired
    with itself, which computes the same values twice and is still exact.
    """
    rows, n = src.shape
    b0, b1, b2, a1, a2 = sec[0], sec[1], sec[2], sec[4], sec[5]
    for r in range(0, rows, 2):
        r2 = min(r + 1, rows - 1)
        z1 = 0.0
        z2 = 0.0
        w1 = 0.0
        w2 = 0.0
        for k in range(n):
            i = n - 1 - k if reverse else k
            x = src[r, i]
            u = src[r2, i]
            o = b0 * x + z1
            p = b0 * u + w1
            z1 = b1 * x - a1 * o + z2
            w1 = b1 * u - a1 * p + w2
            z2 = b2 * x - a2 * o
            w2 = b2 * u - a2 * p
            dst[r, i] = o
            dst[r2, i] = p


@numba.njit(cache=True, nogil=True)
def _sections2_rows(
    src: np.ndarray, dst: np.ndarray, s0: np.ndarray, s1: np.ndarray, reverse: bool
) -> None:
    """Two cascaded sections over every row (rows in pairs, as :func:`_sections1_rows`)."""
    rows, n = src.shape
    b0, b1, b2, a1, a2 = s0[0], s0[1], s0[2], s0[4], s0[5]
    c0, c1, c2, d1, d2 = s1[0], s1[1], s1[2], s1[4], s1[5]
    for r in range(0, rows, 2):
        r2 = min(r + 1, rows - 1)
        z1 = 0.0
        z2 = 0.0
        w1 = 0.0
        w2 = 0.0
        y1 = 0.0
        y2 = 0.0
        v1 = 0.0
        v2 = 0.0
        for k in range(n):
            i = n - 1 - k if reverse else k
            x = src[r, i]
            u = src[r2, i]
            o = b0 * x + z1
            p = b0 * u + w1
            z1 = b1 * x - a1 * o + z2
            w1 = b1 * u - a1 * p + w2
            z2 = b2 * x - a2 * o
            w2 = b2 * u - a2 * p
            q = c0 * o + y1
            t = c0 * p + v1
            y1 = c1 * o - d1 * q + y2
            v1 = c1 * p - d1 * t + v2
            y2 = c2 * o - d2 * q
            v2 = c2 * p - d2 * t
            dst[r, i] = q
            dst[r2, i] = t


@numba.njit(cache=True, nogil=True)
def _sections3_rows(
    src: np.ndarray,
    dst: np.ndarray,
    s0: np.ndarray,
    s1: np.ndarray,
    s2: np.ndarray,
    reverse: bool,
) -> None:
    """Three cascaded sections over every row (rows in pairs, as :func:`_sections1_rows`)."""
    rows, n = src.shape
    b0, b1, b2, a1, a2 = s0[0], s0[1], s0[2], s0[4], s0[5]
    c0, c1, c2, d1, d2 = s1[0], s1[1], s1[2], s1[4], s1[5]
    e0, e1, e2, f1, f2 = s2[0], s2[1], s2[2], s2[4], s2[5]
    for r in range(0, rows, 2):
        r2 = min(r + 1, rows - 1)
        z1 = 0.0
        z2 = 0.0
        w1 = 0.0
        w2 = 0.0
        y1 = 0.0
        y2 = 0.0
        v1 = 0.0
        v2 = 0.0
        g1 = 0.0
        g2 = 0.0
        h1 = 0.0
        h2 = 0.0
        for k in range(n):
            i = n - 1 - k if reverse else k
            x = src[r, i]
            u = src[r2, i]
            o = b0 * x + z1
            p = b0 * u + w1
            z1 = b1 * x - a1 * o + z2
            w1 = b1 * u - a1 * p + w2
            z2 = b2 * x - a2 * o
            w2 = b2 * u - a2 * p
            q = c0 * o + y1
            t = c0 * p + v1
            y1 = c1 * o - d1 * q + y2
            v1 = c1 * p - d1 * t + v2
            y2 = c2 * o - d2 * q
            v2 = c2 * p - d2 * t
            e = e0 * q + g1
            f = e0 * t + h1
            g1 = e1 * q - f1 * e + g2
            h1 = e1 * t - f1 * f + h2
            g2 = e2 * q - f2 * e
            h2 = e2 * t - f2 * f
            dst[r, i] = e
            dst[r2, i] = f


@numba.njit(cache=True, nogil=True)
def _biquad_pair_row(row: np.ndarray, s0: np.ndarray, s1: np.ndarray, reverse: bool) -> None:
    """Two cascaded biquad sections over one row in place, in one loop."""
    n = row.shape[0]
    b0, b1, b2, a1, a2 = s0[0], s0[1], s0[2], s0[4], s0[5]
    c0, c1, c2, d1, d2 = s1[0], s1[1], s1[2], s1[4], s1[5]
    z1 = 0.0
    z2 = 0.0
    w1 = 0.0
    w2 = 0.0
    for k in range(n):
        i = n - 1 - k if reverse else k
        x = row[i]
        o = b0 * x + z1
        z1 = b1 * x - a1 * o + z2
        z2 = b2 * x - a2 * o
        p = c0 * o + w1
        w1 = c1 * o - d1 * p + w2
        w2 = c2 * o - d2 * p
        row[i] = p


@numba.njit(cache=True, nogil=True)
def _cascade_row(row: np.ndarray, sos: np.ndarray, reverse: bool) -> None:
    """Every section over one row in place, all in one loop (as :func:`scipy.signal.sosfilt`
    does): with three sections or more, enough recursions are in flight at once."""
    n = row.shape[0]
    sections = sos.shape[0]
    z = np.zeros((sections, 2))
    for k in range(n):
        i = n - 1 - k if reverse else k
        x = row[i]
        for s in range(sections):
            o = sos[s, 0] * x + z[s, 0]
            z[s, 0] = sos[s, 1] * x - sos[s, 4] * o + z[s, 1]
            z[s, 1] = sos[s, 2] * x - sos[s, 5] * o
            x = o
        row[i] = x


def _check_buffer(buf: np.ndarray, name: str) -> None:
    if buf.dtype != np.float64 or buf.ndim != 2 or not buf.flags.c_contiguous:
        raise ValueError(f"{name} must be a C-contiguous float64 (rows, frames) array")


def _groups(sections: int) -> list[int]:
    """Sections per kernel call: pairs, and one three for an odd count (a one alone is bound by
    its recursion's latency; three sections of two rows run out of registers, so pairs go
    fastest per section)."""
    if sections <= 1:
        return [sections] if sections else []
    head = [3] if sections % 2 else []
    return head + [2] * ((sections - sum(head)) // 2)


def sos_pass(
    sos: np.ndarray, buf: np.ndarray, *, reverse: bool = False, out: np.ndarray | None = None
) -> None:
    """Run a second-order-sections cascade over ``buf``, forward or backward: in place, or from
    ``buf`` into ``out``.

    The same recursion, in the same order of operations, as :func:`scipy.signal.sosfilt` from
    zero state (bit-identical), faster: independent recursions (two rows, up to three sections
    of each) share each loop.

    Parameters
    ----------
    sos : np.ndarray, shape (sections, 6)
    buf : np.ndarray, shape (rows, frames), float64, C-contiguous
    reverse : bool
        Run from the last frame to the first (the time-reversed filter).
    out : np.ndarray, optional
        Where the result goes (``buf``'s shape, float64, C-contiguous); ``buf`` is then left
        unchanged. In place when omitted.
    """
    _check_buffer(buf, "buf")
    if out is None:
        out = buf
    else:
        _check_buffer(out, "out")
        if out.shape != buf.shape:
            raise ValueError(f"out has shape {out.shape}, buf {buf.shape}")
    sos = np.ascontiguousarray(sos, dtype=np.float64).reshape(-1, 6)
    if len(sos) == 0 or buf.shape[0] == 1:
        # One row (pairing it with itself would do the work twice): one section is bound by its
        # latency whatever the kernel, two go in one loop, three or more in one cascade loop.
        if out is not buf:
            out[...] = buf
        if len(sos) == 1:
            _sections1_rows(out, out, sos[0], reverse)
        elif len(sos) == 2:
            _biquad_pair_row(out[0], sos[0], sos[1], reverse)
        elif len(sos) > 2:
            _cascade_row(out[0], sos, reverse)
        return
    src = buf
    s = 0
    for count in _groups(len(sos)):
        if count == 3:
            _sections3_rows(src, out, sos[s], sos[s + 1], sos[s + 2], reverse)
        elif count == 2:
            _sections2_rows(src, out, sos[s], sos[s + 1], reverse)
        else:
            _sections1_rows(src, out, sos[s], reverse)
        src = out
        s += count


def settle_frames(sos: np.ndarray, *, tolerance: float = SETTLE_TOLERANCE) -> int:
    """Frames after which the cascade's impulse response has decayed below ``tolerance``.

    From the largest pole radius ``r``: ``log(tolerance) / log(r)``, plus a small allowance for the
    polynomial growth of repeated poles (the forward-backward pass doubles each pole).

    Parameters
    ----------
    sos : np.ndarray, shape (sections, 6)

    Returns
    -------
    int
        At least 16.
    """
    radius = 0.0
    for sec in np.asarray(sos, dtype=np.float64).reshape(-1, 6):
        radius = max(radius, float(np.max(np.abs(np.roots(sec[3:])), initial=0.0)))
    if radius <= 0.0:
        return 16
    if radius >= 1.0:
        raise ValueError("the cascade is not stable")
    frames = math.log(tolerance) / math.log(radius)
    return int(math.ceil(1.25 * frames)) + 16


def _impulse_response(sos: np.ndarray, zero_phase: bool) -> np.ndarray:
    """The impulse response at lags 0, 1, ... (one side of the symmetric zero-phase one), up to
    twice :func:`settle_frames`, where the pole radius to that power is below 1e-24: what lies
    beyond is far below any useful tolerance."""
    n = 2 * settle_frames(sos)
    if zero_phase:
        buf = np.zeros((1, 2 * n + 1))
        buf[0, n] = 1.0
        forward_backward_sosfilt(sos, buf)
        return buf[0, n:]
    buf = np.zeros((1, n))
    buf[0, 0] = 1.0
    sos_pass(sos, buf)
    return buf[0]


def impulse_response_l1(sos: np.ndarray, *, zero_phase: bool = False) -> float:
    """Sum of the absolute impulse response (both sides for the zero-phase filter): the most the
    filter can amplify a signal's peak.

    Parameters
    ----------
    sos : np.ndarray, shape (sections, 6)
    zero_phase : bool
        The forward-backward filter rather than the causal cascade.

    Returns
    -------
    float
        1.0 for an empty cascade (the identity).
    """
    sos = np.ascontiguousarray(sos, dtype=np.float64).reshape(-1, 6)
    if len(sos) == 0:
        return 1.0
    h = np.abs(_impulse_response(sos, zero_phase))
    return float(2.0 * h.sum() - h[0]) if zero_phase else float(h.sum())


def tail_frames(
    sos: np.ndarray, tolerance: float = CONTEXT_TOLERANCE, *, zero_phase: bool = False
) -> int:
    """The context a filter needs: the smallest lag ``d`` at which the absolute sum of the
    impulse response at lags ``>= d`` is at most ``tolerance``.

    Leaving out the input more than ``d`` frames back (and, for the zero-phase filter, the
    input more than ``d`` frames ahead: the same bound again) changes each output sample by at
    most the input's peak times ``tolerance``. The bound holds for any input, the resonant worst
    case included: a pole pair of radius ``r`` rings for about ``1 / (1 - r)`` frames, so what
    counts is the sum of the tail, not the size of the impulse response at ``d``.

    Parameters
    ----------
    sos : np.ndarray, shape (sections, 6)
    tolerance : float
    zero_phase : bool
        The forward-backward filter (symmetric impulse response; ``d`` is needed on each side)
        rather than the causal cascade.

    Returns
    -------
    int
        0 for an empty cascade.
    """
    sos = np.ascontiguousarray(sos, dtype=np.float64).reshape(-1, 6)
    if len(sos) == 0:
        return 0
    h = _impulse_response(sos, zero_phase)
    # mass[d] = sum of |h| at lags >= d, summed from the small end.
    mass = np.cumsum(np.abs(h)[::-1])[::-1]
    below = np.flatnonzero(mass <= tolerance)
    return int(below[0]) if below.size else len(h)


def forward_backward_sosfilt(sos: np.ndarray, buf: np.ndarray) -> None:
    """Filter ``buf`` in place forward, then backward: zero phase, magnitude ``|H|^2``.

    No edge extension: the buffer is taken as zero outside, so pad it with
    :func:`settle_frames` zeros at both ends to get the exact zero-phase result of the
    zero-extended signal (the forward tail and the backward pre-ringing fit in the padding).

    Parameters
    ----------
    sos : np.ndarray, shape (sections, 6)
    buf : np.ndarray, shape (rows, frames), float64, C-contiguous
    """
    sos_pass(sos, buf, reverse=False)
    sos_pass(sos, buf, reverse=True)


def zero_phase_sosfilt(sos: np.ndarray, audio: np.ndarray) -> np.ndarray:
    """Zero-phase (forward-backward) filtering of the zero-extended signal.

    Unlike :func:`scipy.signal.sosfiltfilt` there is no odd extension at the edges: the signal is
    silence before and after the buffer, as everywhere in the renderer, so a filter that removes
    DC turns a buffer that starts on an offset into a step from silence.

    Parameters
    ----------
    sos : np.ndarray, shape (sections, 6)
    audio : np.ndarray, shape (rows, frames)

    Returns
    -------
    np.ndarray, shape (rows, frames), float64
    """
    x = np.asarray(audio, dtype=np.float64)
    pad = settle_frames(sos)
    n = x.shape[1]
    buf = np.empty((x.shape[0], n + 2 * pad))
    buf[:, :pad] = 0.0
    buf[:, pad : pad + n] = x
    buf[:, pad + n :] = 0.0
    forward_backward_sosfilt(sos, buf)
    return buf[:, pad : pad + x.shape[1]]

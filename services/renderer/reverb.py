"""Convolution reverb with four synthetic styles: intimate, plate, hall and spacious.

Each style is a recipe for a synthetic stereo impulse response (IR); the parameters set its
decay, pre-delay, damping and level:

1. **Early reflections** (not on the plate): ``er_count`` sparse taps over ``er_spread_ms`` after
   the pre-delay. The first tap is centred and reaches one channel exactly at the pre-delay;
   the others are panned within ``er_width``. Every tap reaches the two channels up to 0.6 ms
   apart (a head-sized offset), so the reflections widen rather than correlate the image. Their
   gains follow the tail's decay.
2. **Tail**: Gaussian noise, sparse at first (``density_start_per_s`` echoes per second, growing
   with the square of time to one echo per sample after ``density_buildup_ms``), faded in over
   ``onset_ms``. The two channels share a fraction of their noise so their correlation is
   ``tail_correlation``.
3. **Damping**: the tail is split into half-octave bands (complementary raised-cosine masks in
   the frequency domain); each band decays with its own RT60: ``reverb_decay_s`` up to the
   style's ``damping_corner_hz`` and ``decay / (1 + damping * damping_slope * octaves)`` above
   it (``damping`` = ``reverb_damping_pct`` / 100).
4. A 20 Hz high-pass (2nd-order Butterworth, causal) removes DC from the IR, so a DC offset in
   the input does not come back as reverb; the IR is scaled to unit energy per channel (white
   noise comes out of the wet path at its input level).

``reverb_decay_s`` is the RT60 actually produced below the damping corner (and everywhere at 0 %
damping): a Schroeder backward integration (T30) of the IR gives it within a few percent. The
IR is cut 90 dB down (1.5 x the longest band RT60 after the tail onset).

The IR is deterministic (a fixed random seed per style), so renders are reproducible; it is
cached per (style, decay, damping, pre-delay, sample rate). Input channel ``c`` uses IR channel
``c % 2``: stereo in gives decorrelated left and right tails, mono in gives a mono wet signal
(the left IR). The dry signal is kept at unity and the wet signal is added at
``reverb_mix_pct / 100``; the output has the input's length, so the tail past the end of the
buffer is cut (mastering then sets the loudness). ``reverb_mix_pct = 0`` is an exact bypass.

The convolution is a uniformly partitioned overlap-add in float32 (``scipy.fft``,
``numba.get_num_threads()`` workers): the IR is cut into partitions of ``P`` taps whose
``2P``-point spectra are computed once per IR and ``P`` (and cached; an IR that fits in one
partition gets a shorter FFT, plain overlap-add); each complete ``P``-frame input partition is
transformed once (a block's partitions in one batched FFT), multiplied with every IR
partition's spectrum against the spectra of the partitions before it (a serial numba kernel),
and one inverse transform gives its output segment. ``P`` is a power of two from 4096 to 65536
frames picked by a cost model from the IR's length and the block length
(:func:`partition_frames`). :meth:`Reverb.stream` carries the state
(the last partitions' spectra, the overlap into the next segment, the incomplete partition's
frames) from block to block, so blocks of any length, shorter than the IR or one frame long,
give the one-pass result within float32 rounding (~1e-7 of full scale), with memory of the IR's
spectra plus a few block sizes whatever the file's length; ``process`` is one block.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numba
import numpy as np
import scipy.fft as sp_fft
from scipy.signal import butter, sosfilt

from services.common.params import BY_NAME, REVERB_STYLES, neutral, prefixed_kwargs
from services.renderer.processor import (
    BlockStream,
    ChoiceParameter,
    Parameter,
    Processor,
    check_sample_rate,
)

#: The IR tail lasts this many times the longest band RT60 (90 dB of decay).
TAIL_RT60_MULTIPLE = 1.5
#: Half-octave damping bands above the style's corner...
BANDS_PER_OCTAVE = 2
#: ... up to here; everything above decays like the band starting at this edge.
MAX_BAND_EDGE_HZ = 20_000.0
#: High-pass corner that removes DC from the IR.
IR_HIGHPASS_HZ = 20.0
#: Largest offset between the two channels' copies of an early reflection.
ER_MAX_ITD_MS = 0.6
#: Base of the per-style random seeds (the style index is appended).
SEED = 20240613
#: Decay of 60 dB in amplitude per RT60: exp(-LN_1000 * t / rt60).
LN_1000 = 3.0 * math.log(10.0)
#: Partition lengths of the convolution are powers of two within these bounds (frames) ...
MIN_PARTITION = 4096
MAX_PARTITION = 65536
#: ... chosen by a cost model (ns per frame and channel on one core, measured with scipy.fft in
#: float32): the batched forward and inverse 65536-point FFTs per 32768 frames (about 10 % more
#: per doubling of the FFT length), and one complex multiply-add per IR partition.
FFT_NS = 11.0
FFT_GROWTH = 0.1
MAC_NS = 0.9
#: Complete partitions are transformed in batches of at most this many frames (pocketfft
#: vectorizes across the transforms of a batch: several times faster than one by one).
BATCH_FRAMES = 1 << 19
#: An incomplete partition's last frames are convolved directly when there are at most this
#: many (a one-frame block, say), else by FFT.
DIRECT_FRAMES = 32
#: "No pending segment sum" for :func:`_partition_sums`.
_NO_PENDING = np.zeros((0, 0), dtype=np.complex64)


@dataclass(frozen=True)
class ReverbStyle:
    """The character of a reverb style (see the module docstring and docs/renderer.md).

    ``typical_*`` values are the style's documented defaults, for whoever picks parameters (the
    mix strategy); the processor itself renders whatever ``decay_s``, ``predelay_ms`` and
    ``damping_pct`` it is given.
    """

    name: str
    description: str
    typical_decay_s: float
    decay_range_s: tuple[float, float]
    typical_predelay_ms: float
    typical_damping_pct: float
    er_count: int
    er_spread_ms: float
    #: Energy of the early reflections relative to the tail's.
    er_level: float
    #: Pan range of the reflections (0 = all centred, 1 = hard left to hard right).
    er_width: float
    density_start_per_s: float
    density_buildup_ms: float
    onset_ms: float
    #: L/R correlation of the tail noise (0 = fully decorrelated).
    tail_correlation: float
    damping_corner_hz: float
    #: At 100 % damping the RT60 is divided by ``1 + damping_slope`` one octave above the corner.
    damping_slope: float


STYLES: dict[str, ReverbStyle] = {
    s.name: s
    for s in (
        ReverbStyle(
            name="intimate",
            description="small room or vocal booth: close, dense reflections, narrow, short",
            typical_decay_s=0.6,
            decay_range_s=(0.3, 1.0),
            typical_predelay_ms=5.0,
            typical_damping_pct=60.0,
            er_count=10,
            er_spread_ms=25.0,
            er_level=0.6,
            er_width=0.4,
            density_start_per_s=2000.0,
            density_buildup_ms=30.0,
            onset_ms=2.0,
            tail_correlation=0.5,
            damping_corner_hz=3000.0,
            damping_slope=1.0,
        ),
        ReverbStyle(
            name="plate",
            description="plate: no early reflections, instantly dense, bright, wide",
            typical_decay_s=1.5,
            decay_range_s=(0.8, 3.0),
            typical_predelay_ms=10.0,
            typical_damping_pct=30.0,
            er_count=0,
            er_spread_ms=0.0,
            er_level=0.0,
            er_width=0.0,
            density_start_per_s=math.inf,
            density_buildup_ms=0.0,
            onset_ms=1.0,
            tail_correlation=0.05,
            damping_corner_hz=6000.0,
            damping_slope=0.6,
        ),
        ReverbStyle(
            name="hall",
            description="concert hall: distinct reflections over 80 ms, smooth build-up, warm",
            typical_decay_s=2.5,
            decay_range_s=(1.8, 3.5),
            typical_predelay_ms=25.0,
            typical_damping_pct=50.0,
            er_count=12,
            er_spread_ms=80.0,
            er_level=0.35,
            er_width=0.8,
            density_start_per_s=1000.0,
            density_buildup_ms=120.0,
            onset_ms=10.0,
            tail_correlation=0.0,
            damping_corner_hz=3000.0,
            damping_slope=1.0,
        ),
        ReverbStyle(
            name="spacious",
            description="very large space (cathedral, ambient): sparse wide echoes, long and dark",
            typical_decay_s=5.0,
            decay_range_s=(3.5, 8.0),
            typical_predelay_ms=40.0,
            typical_damping_pct=40.0,
            er_count=6,
            er_spread_ms=150.0,
            er_level=0.3,
            er_width=1.0,
            density_start_per_s=300.0,
            density_buildup_ms=250.0,
            onset_ms=30.0,
            tail_correlation=0.0,
            damping_corner_hz=2000.0,
            damping_slope=1.2,
        ),
    )
}
assert tuple(STYLES) == REVERB_STYLES


def style_table_markdown() -> str:
    """The style table of docs/renderer.md (generated, so it cannot drift)."""
    rows = [
        "| style | character | typical RT60 (range) | typical pre-delay | typical damping "
        "| early reflections | tail density | tail L/R correlation | HF damping (RT60 above "
        "the corner) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in STYLES.values():
        er = (
            "none"
            if s.er_count == 0
            else f"{s.er_count} taps over {s.er_spread_ms:g} ms, pan width {s.er_width:g}, "
            f"{s.er_level:g} x the tail's energy"
        )
        density = (
            "full (an echo per sample) from the onset"
            if math.isinf(s.density_start_per_s)
            else f"{s.density_start_per_s:g} echoes/s, full after {s.density_buildup_ms:g} ms"
        )
        rows.append(
            f"| {s.name} | {s.description} | {s.typical_decay_s:.1f} s "
            f"({s.decay_range_s[0]:.1f}-{s.decay_range_s[1]:.1f} s) | "
            f"{s.typical_predelay_ms:g} ms | {s.typical_damping_pct:g} % | {er} | {density}; "
            f"{s.onset_ms:g} ms fade-in | {s.tail_correlation:g} | "
            f"decay / (1 + {s.damping_slope:g} x damping x octaves above "
            f"{s.damping_corner_hz / 1000:g} kHz) |"
        )
    return "\n".join(rows) + "\n"


def band_rt60_s(
    freq_hz: np.ndarray | float, *, style: str, decay_s: float, damping_pct: float
) -> np.ndarray:
    """RT60 the tail is designed to have at ``freq_hz`` (band centres).

    ``decay_s`` up to the style's damping corner, ``decay_s / (1 + d * slope * octaves)`` above.

    Returns
    -------
    np.ndarray, same shape as ``freq_hz``, float64
    """
    s = STYLES[style]
    f = np.asarray(freq_hz, dtype=np.float64)
    octaves = np.log2(np.maximum(f, 1e-9) / s.damping_corner_hz)
    return decay_s / (1.0 + damping_pct / 100.0 * s.damping_slope * np.maximum(octaves, 0.0))


def _smooth_step(log2_f: np.ndarray, edge_log2: float, width_oct: float) -> np.ndarray:
    """0 below ``edge - width/2``, 1 above ``edge + width/2``, raised cosine in between."""
    u = np.clip((log2_f - edge_log2) / width_oct + 0.5, 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * u)


def _band_edges_hz(style: ReverbStyle, sample_rate: int) -> list[float]:
    """Half-octave band edges from the damping corner up to Nyquist (or 20 kHz)."""
    edges: list[float] = []
    f = style.damping_corner_hz
    top = min(0.5 * sample_rate / 2.0 ** (0.5 / BANDS_PER_OCTAVE), MAX_BAND_EDGE_HZ)
    while f < top:
        edges.append(f)
        f *= 2.0 ** (1.0 / BANDS_PER_OCTAVE)
    return edges


@functools.lru_cache(maxsize=8)
def _impulse_response(
    style_name: str, decay_s: float, damping_pct: float, predelay_ms: float, sample_rate: int
) -> np.ndarray:
    """The wet IR, shape (2, n), float32, read-only (cached)."""
    s = STYLES[style_name]
    sr = sample_rate
    rng = np.random.default_rng([SEED, REVERB_STYLES.index(style_name)])

    # Bands: [0, e0), [e0, e1), ... each with its RT60; merge bands with equal RT60 (no damping).
    edges = _band_edges_hz(s, sr)
    centres = [0.5 * edges[0]] if edges else [0.25 * sr]
    centres += [e * 2.0 ** (0.5 / BANDS_PER_OCTAVE) for e in edges]
    rt60 = band_rt60_s(
        np.array(centres), style=style_name, decay_s=decay_s, damping_pct=damping_pct
    )
    onset_s = min(s.onset_ms * 1e-3, 0.05 * decay_s)
    tail_n = int(math.ceil((onset_s + TAIL_RT60_MULTIPLE * float(rt60.max())) * sr))

    # Tail noise: shared + independent parts (correlation rho), sparse at first.
    rho = s.tail_correlation
    common = rng.standard_normal(tail_n)
    noise = math.sqrt(rho) * common + math.sqrt(1.0 - rho) * rng.standard_normal((2, tail_n))
    t = np.arange(tail_n) / sr
    if not math.isinf(s.density_start_per_s):
        buildup_s = min(s.density_buildup_ms * 1e-3, 0.1 * decay_s)
        ramp = np.minimum(t / buildup_s, 1.0) ** 2 if buildup_s > 0 else np.ones(tail_n)
        p = np.minimum((s.density_start_per_s + (sr - s.density_start_per_s) * ramp) / sr, 1.0)
        mask = rng.random(tail_n) < p
        noise *= mask / np.sqrt(p)

    # Damping: complementary half-octave masks, each band with its own exponential decay.
    rise = 1.0 - np.exp(-(t + 1.0 / sr) / max(onset_s, 1.0 / sr))
    tail = np.zeros((2, tail_n))
    pad = int(math.ceil(0.02 * sr))
    groups: dict[float, list[int]] = {}
    for k, r in enumerate(rt60):
        groups.setdefault(float(r), []).append(k)
    width_oct = 1.0 / BANDS_PER_OCTAVE
    workers = numba.get_num_threads()
    for r, members in groups.items():
        n = min(tail_n, int(math.ceil((onset_s + TAIL_RT60_MULTIPLE * r) * sr)))
        if len(groups) == 1:
            band = noise[:, :n]
        else:
            nfft = sp_fft.next_fast_len(n + pad, real=True)
            freqs = sp_fft.rfftfreq(nfft, 1.0 / sr)
            log2_f = np.log2(np.maximum(freqs, 1e-9))

            def above(j: int, log2_f: np.ndarray = log2_f) -> np.ndarray | float:
                # Smooth "above edge j - 1" step; band k's mask is above(k) - above(k + 1).
                if j == 0:
                    return 1.0
                if j > len(edges):
                    return 0.0
                return _smooth_step(log2_f, math.log2(edges[j - 1]), width_oct)

            gain = np.zeros_like(freqs)
            for k in members:
                gain += above(k) - above(k + 1)
            spec = sp_fft.rfft(noise[:, :n].astype(np.float32), nfft, axis=-1, workers=workers)
            spec *= gain.astype(np.float32)
            band = sp_fft.irfft(spec, nfft, axis=-1, workers=workers, overwrite_x=True)[:, :n]
        tail[:, :n] += band * (rise[:n] * np.exp(-LN_1000 * t[:n] / r))
    tail /= math.sqrt(np.mean(np.sum(tail**2, axis=-1)))

    # Early reflections, gains following the (undamped) decay.
    pre = int(round(predelay_ms * 1e-3 * sr))
    itd_max = int(round(ER_MAX_ITD_MS * 1e-3 * sr))
    er_end = int(round(s.er_spread_ms * 1e-3 * sr)) + itd_max + 1
    ir = np.zeros((2, pre + max(tail_n, er_end)))
    ir[:, pre : pre + tail_n] = tail
    if s.er_count > 0:
        times = np.concatenate(
            [[0.0], np.sort(rng.uniform(0.0, s.er_spread_ms * 1e-3, s.er_count - 1))]
        )
        gains = rng.uniform(0.5, 1.0, s.er_count) * np.exp(-LN_1000 * times / decay_s)
        gains[0] = 1.0
        pans = np.concatenate([[0.0], rng.uniform(-s.er_width, s.er_width, s.er_count - 1)])
        theta = (pans + 1.0) * np.pi / 4.0
        itd = rng.integers(-itd_max, itd_max + 1, s.er_count)
        er = np.zeros_like(ir)
        idx = pre + np.round(times * sr).astype(np.int64)
        np.add.at(er[0], idx + np.maximum(-itd, 0), np.sqrt(2.0) * np.cos(theta) * gains)
        np.add.at(er[1], idx + np.maximum(itd, 0), np.sqrt(2.0) * np.sin(theta) * gains)
        er *= math.sqrt(s.er_level / np.mean(np.sum(er**2, axis=-1)))
        ir += er

    hp = butter(2, IR_HIGHPASS_HZ, btype="highpass", fs=sr, output="sos")
    ir = sosfilt(hp, ir, axis=-1)
    ir /= math.sqrt(np.mean(np.sum(ir**2, axis=-1)))
    out = ir.astype(np.float32)
    out.flags.writeable = False
    return out


def _fft_size(partition: int, taps: int) -> int:
    """FFT length for partitions of ``partition`` frames: ``2P``, or less when the IR fits in
    one partition (its full convolution with a partition is ``P + taps - 1`` long)."""
    if taps > partition:
        return 2 * partition
    return min(2 * partition, sp_fft.next_fast_len(partition + taps - 1, real=True))


def partition_frames(taps: int, block: int = 0) -> int:
    """Partition length ``P`` (a power of two) for an IR of ``taps`` taps and blocks of
    ``block`` frames (0: one pass, no block boundaries).

    The cheapest within [:data:`MIN_PARTITION`, :data:`MAX_PARTITION`] by a single-core cost
    model, per frame and channel: the FFTs (slowly growing with ``P`` at ``N = 2P``, less when the
    IR fits in one partition), one spectral multiply-add per IR partition (``ceil(taps / P)``), and
    for a block that ends inside a partition the work of one more partition (``P / block`` of it
    per frame). Long IRs get long partitions, short blocks short ones: with the renderer's 10 s
    blocks at 44.1 kHz, a 2 s hall gets 32768 frames, an 8 s one 65536.
    """
    candidates = []
    p = MIN_PARTITION
    while p <= MAX_PARTITION:
        candidates.append(p)
        p *= 2

    def cost(p: int) -> float:
        n = _fft_size(p, taps)
        fft = FFT_NS * n / (2 * p) * (1.0 + FFT_GROWTH * math.log2(n / 65536))
        per_frame = fft + MAC_NS * -(-taps // p)
        return per_frame * (1.0 + p / block) if block else per_frame

    return min(candidates, key=cost)


class PartitionedIR:
    """An IR cut into ``K`` partitions of ``P`` taps, each as its ``N``-point spectrum.

    ``N = 2P``, or ``P + taps - 1`` rounded up to a fast FFT length when the IR fits in one
    partition (plain overlap-add). Computed once per IR and ``P``, and shared (read-only) by
    every convolution with it.

    Parameters
    ----------
    ir : np.ndarray, shape (channels, taps)
    partition : int, optional
        ``P``; :func:`partition_frames` of the IR length (one pass) by default.

    Attributes
    ----------
    partition : int
        ``P``.
    fft_size : int
        ``N``.
    spectra : np.ndarray, shape (channels, K, N // 2 + 1), complex64
        ``rfft`` of partition ``k`` (taps ``[kP, (k + 1)P)``) zero-padded to ``N``.
    head : np.ndarray, shape (channels, P), float32
        The first partition's taps (zero-padded), for the not yet complete input partition.
    """

    def __init__(self, ir: np.ndarray, partition: int | None = None) -> None:
        h = np.asarray(ir, dtype=np.float32)
        channels, taps = h.shape
        p = partition_frames(taps) if partition is None else int(partition)
        k = max(1, -(-taps // p))
        parts = np.zeros((channels, k * p), dtype=np.float32)
        parts[:, :taps] = h
        self.partition = p
        self.fft_size = _fft_size(p, taps)
        self.channels = channels
        self.spectra = sp_fft.rfft(
            parts.reshape(channels, k, p), self.fft_size, axis=-1, workers=numba.get_num_threads()
        )
        self.head = np.ascontiguousarray(parts[:, :p])
        self.spectra.flags.writeable = False
        self.head.flags.writeable = False


@numba.njit(cache=True, nogil=True)
def _partition_sums(
    history: np.ndarray,
    new: np.ndarray,
    spectra: np.ndarray,
    hmap: np.ndarray,
    count: int,
    pending: np.ndarray,
    out: np.ndarray,
) -> None:  # pragma: no cover - numba
    """Segment spectra ``out[c, j] = sum_k X[count + j - k] * H[hmap[c], k]``, ``k <= count + j``.

    ``X[count + j]`` is ``new[c, j]`` (the spectra of this batch's input partitions) and
    ``X[count - i]`` (``i >= 1``) is ``history[c, -i]`` (the ``K - 1`` partitions before them,
    oldest first); ``count`` partitions came before the batch. A non-empty ``pending`` (channels,
    bins) is the first segment's sum over ``k >= 1``, already computed (:func:`_history_sums`).
    """
    channels, n_new, bins = new.shape
    taps = spectra.shape[1]
    past = history.shape[1]
    for c in range(channels):
        h = spectra[hmap[c]]
        for j in range(n_new):
            o = out[c, j]
            last = min(taps - 1, count + j)
            if j == 0 and pending.shape[0] > 0:
                o[:] = pending[c]
                last = 0
            else:
                o[:] = 0.0
            for k in range(last + 1):
                i = past + j - k
                src = new[c, i - past] if i >= past else history[c, i]
                hk = h[k]
                for f in range(bins):
                    o[f] += src[f] * hk[f]


@numba.njit(cache=True, nogil=True)
def _history_sums(
    history: np.ndarray, spectra: np.ndarray, hmap: np.ndarray, count: int, out: np.ndarray
) -> None:  # pragma: no cover - numba
    """The next segment's spectrum without its own partition: ``out[c] = sum_{k >= 1}
    X[count - k] * H[hmap[c], k]`` (notation of :func:`_partition_sums`)."""
    channels, past, bins = history.shape
    for c in range(channels):
        h = spectra[hmap[c]]
        o = out[c]
        o[:] = 0.0
        for k in range(1, min(past, count) + 1):
            src = history[c, past - k]
            hk = h[k]
            for f in range(bins):
                o[f] += src[f] * hk[f]


class PartitionedConvolution:
    """Convolution of consecutive blocks with a :class:`PartitionedIR`, without latency.

    Uniformly partitioned overlap-add: the input is cut into partitions of ``P`` frames counted
    from the stream's start, whatever the block lengths. A complete partition ``n`` is
    transformed once (``N``-point float32 FFT, ``N = 2P`` or less, see :class:`PartitionedIR`);
    its output segment is the inverse transform of ``sum_k X[n - k] H[k]`` plus the part past
    ``P`` of the previous segment's. The spectra of the last ``K - 1`` partitions, that overlap
    and the incomplete partition's frames are the state carried from block to block.

    A block that ends inside a partition gets its last frames at once, as the segment of that
    partition zero-padded: after complete partitions it is one more row of their batched FFTs;
    in a block with no complete partition, the earlier partitions' part (``sum_{k >= 1}``,
    computed once per partition) plus the frames so far times ``H[0]`` (an FFT, or a direct sum
    for at most :data:`DIRECT_FRAMES` frames: a one-frame block costs ``O(P)``). So blocks of
    any length give the one-pass result within float32 FFT rounding (~1e-7 of full scale).
    Memory: the IR's spectra, ``K`` partition spectra and batches of at most
    :data:`BATCH_FRAMES` frames.

    Parameters
    ----------
    ir : PartitionedIR
    channels : int
        Input channel ``c`` uses IR channel ``c % ir.channels``.
    """

    def __init__(self, ir: PartitionedIR, channels: int) -> None:
        p = ir.partition
        self.ir = ir
        self.hmap = np.arange(channels, dtype=np.int64) % ir.channels
        self.head = ir.head[self.hmap]  # (channels, P) taps of the first partition
        self.head_spectrum = ir.spectra[self.hmap, 0]  # (channels, N // 2 + 1)
        bins = ir.spectra.shape[2]
        self.history = np.zeros((channels, ir.spectra.shape[1] - 1, bins), dtype=np.complex64)
        self.count = 0  # complete partitions so far
        self.current = np.zeros((channels, p), dtype=np.float32)  # this partition's input so far
        self.fill = 0
        self.carry = np.zeros((channels, p), dtype=np.float32)  # previous segment past P
        # This segment's spectrum without its own partition, and its time-domain first P frames
        # plus the carry: computed when first needed, dropped when the partition completes.
        self.pending: np.ndarray | None = None
        self.earlier: np.ndarray | None = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Convolve the next block ``x`` (channels, frames); returns (channels, frames) float32."""
        channels, n = x.shape
        p = self.ir.partition
        out = np.empty((channels, n), dtype=np.float32)
        fill = self.fill
        complete = (fill + n) // p
        rest = (fill + n) % p
        # With complete partitions, a long enough rest (the next partition's first frames)
        # rides along in the last batch as one more (zero-padded) partition.
        ride = complete > 0 and rest > DIRECT_FRAMES
        batch = max(1, BATCH_FRAMES // p)
        for first in range(0, complete, batch):
            m = min(batch, complete - first)
            lo = first * p - fill  # x's frame at this batch's start (negative: in `current`)
            extra = ride and first + m == complete
            segments = self._segments(x, lo, m, rest if extra else 0)
            for j in range(m):
                a = lo + j * p
                out[:, max(a, 0) : a + p] = segments[:, j, max(-a, 0) : p]
            if extra:
                out[:, n - rest :] = segments[:, m, :rest]
            del segments
        if complete:
            self.current[:, :rest] = x[:, n - rest :]
            self.fill, begin = rest, rest if ride else 0
        else:
            self.current[:, fill : fill + n] = x
            self.fill, begin = fill + n, fill
        if rest > begin:
            out[:, n - (rest - begin) :] = self._partial(begin, rest)
        return out

    def _segments(self, x: np.ndarray, lo: int, m: int, rest: int = 0) -> np.ndarray:
        """Output segments ``[..., :P]`` (channels, m, N) of the ``m`` complete partitions
        starting at frame ``lo`` of the block ``x`` (negative: the first one began in an earlier
        block, its frames so far are in ``current``). ``rest > 0``: the block's last ``rest``
        frames begin the next partition; its segment so far is appended (channels, m + 1, N)."""
        channels, p = self.current.shape
        nfft = self.ir.fft_size
        rows = m + (rest > 0)
        frames = np.empty((channels, rows, nfft), dtype=np.float32)  # zero-padded partitions
        frames[:, :, p:] = 0.0
        for j in range(m):
            a = lo + j * p
            if a < 0:
                frames[:, j, :-a] = self.current[:, :-a]
                frames[:, j, -a:p] = x[:, : a + p]
            else:
                frames[:, j, :p] = x[:, a : a + p]
        if rest:
            frames[:, m, :rest] = x[:, x.shape[1] - rest :]
            frames[:, m, rest:p] = 0.0
        w = numba.get_num_threads()
        spec = sp_fft.rfft(frames, axis=-1, workers=w)
        del frames
        sums = np.empty_like(spec)
        pending = self.pending if self.pending is not None else _NO_PENDING
        _partition_sums(self.history, spec, self.ir.spectra, self.hmap, self.count, pending, sums)
        past = self.history.shape[1]
        if m >= past:
            self.history[:] = spec[:, m - past : m]
        else:
            self.history[:, : past - m] = self.history[:, m:]
            self.history[:, past - m :] = spec[:, :m]
        del spec
        y = sp_fft.irfft(sums, nfft, axis=-1, workers=w, overwrite_x=True)
        del sums
        y[:, 0, :p] += self.carry
        y[:, 1:, : nfft - p] += y[:, :-1, p:]
        self.carry[:, : nfft - p] = y[:, m - 1, p:]
        self.count += m
        self.pending = self.earlier = None
        return y

    def _partial(self, begin: int, end: int) -> np.ndarray:
        """Output frames ``[begin, end)`` of the current, incomplete partition."""
        channels, p = self.current.shape
        nfft = self.ir.fft_size
        w = numba.get_num_threads()
        if self.pending is None:
            self.pending = np.zeros((channels, nfft // 2 + 1), dtype=np.complex64)
            _history_sums(self.history, self.ir.spectra, self.hmap, self.count, self.pending)
        if end - begin > DIRECT_FRAMES:
            spec = sp_fft.rfft(self.current[:, :end], nfft, axis=-1, workers=w)
            spec *= self.head_spectrum
            spec += self.pending
            y = sp_fft.irfft(spec, nfft, axis=-1, workers=w, overwrite_x=True)[:, begin:end]
            y += self.carry[:, begin:end]
            return y
        if self.earlier is None:
            self.earlier = self.carry.copy()
            if self.count and self.history.shape[1]:
                self.earlier += sp_fft.irfft(self.pending, nfft, axis=-1, workers=w)[:, :p]
        x, h = self.current[:, :end], self.head[:, :end]
        y = self.earlier[:, begin:end].copy()
        for t in range(begin, end):
            y[:, t - begin] += np.einsum("ci,ci->c", x[:, : t + 1], h[:, t::-1], dtype=np.float64)
        return y


def fft_convolve(audio: np.ndarray, ir: np.ndarray, *, partition: int | None = None) -> np.ndarray:
    """Convolve each channel with its IR and keep the first ``frames`` samples (float32 FFT).

    One pass of :class:`PartitionedConvolution` (the taps past the input's length, which never
    reach the output, are dropped first).

    Parameters
    ----------
    audio : np.ndarray, shape (channels, frames)
    ir : np.ndarray, shape (ir_channels, taps)
        Channel ``c`` of the audio uses IR channel ``c % ir_channels``.
    partition : int, optional
        Partition length; :func:`partition_frames` by default.

    Returns
    -------
    np.ndarray, shape (channels, frames), float32
    """
    x = np.asarray(audio)
    h = np.asarray(ir)[:, : max(1, x.shape[1])]
    if partition is None:
        partition = partition_frames(h.shape[1], x.shape[1])
    return PartitionedConvolution(PartitionedIR(h, partition), x.shape[0])(x)


@functools.lru_cache(maxsize=4)
def _partitioned_ir(
    style_name: str,
    decay_s: float,
    damping_pct: float,
    predelay_ms: float,
    sample_rate: int,
    partition: int,
) -> PartitionedIR:
    """The IR's partition spectra (cached: the streams of every version of a song share them)."""
    ir = _impulse_response(style_name, decay_s, damping_pct, predelay_ms, sample_rate)
    return PartitionedIR(ir, partition)


class _ReverbStream:
    """Dry plus the scaled wet signal, block by block (the convolution state carries over).

    The partition length is chosen at the first block, from its length (:func:`partition_frames`;
    the renderer's blocks all have one length). ``frames``: the total length when known (one
    pass), so the taps that never reach the output are left out.
    """

    def __init__(
        self, reverb: Reverb, sample_rate: int, channels: int, frames: int | None = None
    ) -> None:
        self.key = (
            reverb.style_name,
            reverb.decay_s,
            reverb.damping_pct,
            reverb.predelay_ms,
            sample_rate,
        )
        self.ir = reverb.impulse_response(sample_rate)
        self.frames = frames
        self.channels = channels
        self.mix = np.float32(reverb.mix_pct / 100.0)
        self.convolution: PartitionedConvolution | None = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.convolution is None:
            taps = self.ir.shape[1]
            if self.frames is not None and self.frames < taps:
                h = self.ir[:, : max(1, self.frames)]
                ir = PartitionedIR(h, partition_frames(h.shape[1], x.shape[1]))
            else:
                ir = _partitioned_ir(*self.key, partition_frames(taps, x.shape[1]))
            self.convolution = PartitionedConvolution(ir, self.channels)
        wet = self.convolution(x)
        wet *= self.mix
        wet += x  # float32: the output's precision
        return wet


class Reverb(Processor):
    """Synthetic-IR convolution reverb (styles intimate, plate, hall, spacious).

    Parameters are the schema's ``reverb_*`` parameters without the prefix; ``style`` takes the
    option index or its name. Build one from a schema parameter set with :meth:`from_params`.
    ``mix_pct = 0`` (the default) is an exact bypass.
    """

    style = ChoiceParameter("reverb_style")
    predelay_ms = Parameter("reverb_predelay_ms")
    decay_s = Parameter("reverb_decay_s")
    damping_pct = Parameter("reverb_damping_pct")
    mix_pct = Parameter("reverb_mix_pct")

    def __init__(
        self,
        *,
        style: float | str = neutral("reverb_style"),
        predelay_ms: float = neutral("reverb_predelay_ms"),
        decay_s: float = neutral("reverb_decay_s"),
        damping_pct: float = neutral("reverb_damping_pct"),
        mix_pct: float = neutral("reverb_mix_pct"),
    ) -> None:
        self._ir_cache: dict[int, np.ndarray] = {}
        self.style = style  # type: ignore[assignment]
        self.predelay_ms = predelay_ms
        self.decay_s = decay_s
        self.damping_pct = damping_pct
        self.mix_pct = mix_pct

    @classmethod
    def from_params(cls, params: Mapping[str, float]) -> Reverb:
        """Build from a schema parameter set (``reverb_*`` names; missing ones take defaults)."""
        return cls(**prefixed_kwargs(params, "reverb_"))

    @property
    def style_name(self) -> str:
        """The style's name (``intimate``, ``plate``, ``hall`` or ``spacious``)."""
        return BY_NAME["reverb_style"].choice(self.style)

    @property
    def is_bypass(self) -> bool:
        """True when the wet level is 0 (the input is returned unchanged)."""
        return self.mix_pct == 0.0

    def impulse_response(self, sample_rate: int) -> np.ndarray:
        """The wet impulse response (no dry path, not scaled by ``mix_pct``).

        Returns
        -------
        np.ndarray, shape (2, taps), float32
            Left and right; unit energy per channel on average; read-only.
        """
        sr = check_sample_rate(sample_rate)
        ir = self._ir_cache.get(sr)
        if ir is None:
            ir = _impulse_response(
                self.style_name, self.decay_s, self.damping_pct, self.predelay_ms, sr
            )
            self._ir_cache[sr] = ir
        return ir

    def reset(self) -> None:
        self._ir_cache.clear()

    def _parameters_changed(self) -> None:
        if hasattr(self, "_ir_cache"):
            self._ir_cache.clear()

    def stream(self, sample_rate: int, channels: int) -> BlockStream:
        """A fresh block stream: consecutive float64 ``(channels, frames)`` blocks in (any
        lengths), the processed blocks out, equal to one pass over their concatenation (within
        float32 FFT rounding, ~1e-7). Parameters are read now; later changes do not affect it."""
        if self.is_bypass:
            return lambda block: block
        return _ReverbStream(self, check_sample_rate(sample_rate), channels)

    def _process(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        if self.is_bypass:
            return audio
        return _ReverbStream(self, sample_rate, *audio.shape)(audio)

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
cached per (style, decay, damping, pre-delay, sample rate). The audio is convolved with it by a
float32 FFT overlap-add (``scipy.fft``, ``numba.get_num_threads()`` workers); a long file is
convolved block by block (:meth:`Reverb.stream`), each block's tail carried into the next, with
exactly the one-pass result. Input channel ``c``
uses IR channel ``c % 2``: stereo in gives decorrelated left and right tails, mono in gives a
mono wet signal (the left IR). The dry signal is kept at unity and the wet signal is added at
``reverb_mix_pct / 100``; the output has the input's length, so the tail past the end of the
buffer is cut (mastering then sets the loudness). ``reverb_mix_pct = 0`` is an exact bypass.
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
from services.renderer.processor import ChoiceParameter, Parameter, Processor, check_sample_rate

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


def _fft_size(frames: int, taps: int, block_factor: int = 3) -> int:
    """Overlap-add FFT size: blocks of about ``block_factor`` IR lengths (at least 32768
    frames), never more than the signal needs."""
    return sp_fft.next_fast_len(
        min(frames, max(block_factor * taps, 1 << 15)) + taps - 1, real=True
    )


def _full_convolve(
    x: np.ndarray, h_spec: np.ndarray, nfft: int, taps: int, workers: int
) -> np.ndarray:
    """Full linear convolution (``frames + taps - 1``) of each channel of ``x`` with the IR whose
    ``nfft``-point spectrum is ``h_spec`` (channels, nfft // 2 + 1): float32 overlap-add, all
    blocks transformed at once."""
    channels, n = x.shape
    block = nfft - taps + 1  # >= taps - 1 whenever there is more than one block (_fft_size)
    n_blocks = -(-n // block)
    full = n // block
    frames = np.empty((channels, n_blocks, nfft), dtype=np.float32)
    frames[:, :full, :block] = x[:, : full * block].reshape(channels, full, block)
    if full < n_blocks:
        frames[:, full, : n - full * block] = x[:, full * block :]
        frames[:, full, n - full * block :] = 0.0
    frames[:, :full, block:] = 0.0
    spec = sp_fft.rfft(frames, axis=-1, workers=workers, overwrite_x=True)
    del frames
    spec *= h_spec[:, np.newaxis, :]
    y = sp_fft.irfft(spec, nfft, axis=-1, workers=workers, overwrite_x=True)
    del spec
    if n_blocks > 1:  # a block's tail only reaches the next block
        y[:, 1:, : taps - 1] += y[:, :-1, block:]
    out = np.empty((channels, n_blocks * block + taps - 1), dtype=np.float32)
    out[:, : n_blocks * block] = y[:, :, :block].reshape(channels, n_blocks * block)
    out[:, n_blocks * block :] = y[:, -1, block:]
    return out[:, : n + taps - 1]


def fft_convolve(
    audio: np.ndarray, ir: np.ndarray, *, workers: int | None = None, block_factor: int = 3
) -> np.ndarray:
    """Convolve each channel with its IR and keep the first ``frames`` samples (float32 FFT).

    Overlap-add with blocks of about ``block_factor`` IR lengths, all blocks transformed at once.

    Parameters
    ----------
    audio : np.ndarray, shape (channels, frames)
    ir : np.ndarray, shape (channels, taps)
    workers : int, optional
        FFT threads; ``numba.get_num_threads()`` (``NUMBA_NUM_THREADS``) by default.

    Returns
    -------
    np.ndarray, shape (channels, frames), float32
    """
    x = np.asarray(audio)
    n = x.shape[1]
    h = np.asarray(ir, dtype=np.float32)[:, :n]  # later taps never reach the output
    m = h.shape[1]
    w = numba.get_num_threads() if workers is None else workers
    nfft = _fft_size(n, m, block_factor)
    h_spec = sp_fft.rfft(h, nfft, axis=-1, workers=w)
    return _full_convolve(x, h_spec, nfft, m, w)[:, :n]


class _ConvolutionStream:
    """Block-by-block convolution reverb: each block's full convolution is added to the tail
    the earlier blocks left (overlap-add across calls), so the output equals one pass."""

    def __init__(self, ir: np.ndarray, mix: float) -> None:
        self.ir = ir
        self.taps = ir.shape[1]
        self.mix = np.float32(mix)
        self.tail = np.zeros((ir.shape[0], self.taps - 1), dtype=np.float32)
        self.spectra: dict[int, np.ndarray] = {}  # IR spectrum per FFT size

    def __call__(self, x: np.ndarray) -> np.ndarray:
        n = x.shape[1]
        w = numba.get_num_threads()
        nfft = _fft_size(n, self.taps)
        h_spec = self.spectra.get(nfft)
        if h_spec is None:
            h_spec = self.spectra[nfft] = sp_fft.rfft(self.ir, nfft, axis=-1, workers=w)
        wet = _full_convolve(x, h_spec, nfft, self.taps, w)
        wet[:, : self.taps - 1] += self.tail
        self.tail = wet[:, n:].copy()
        out = wet[:, :n]
        out *= self.mix
        out += x
        return out


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

    def stream(self, sample_rate: int, channels: int) -> _ConvolutionStream:
        """Block by block, exactly as one pass: the tail each block leaves carries over."""
        ir = self.impulse_response(sample_rate)
        return _ConvolutionStream(ir[np.arange(channels) % 2], self.mix_pct / 100.0)

    def _process(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        if self.is_bypass:
            return audio
        ir = self.impulse_response(sample_rate)
        channels = audio.shape[0]
        wet = fft_convolve(audio, ir[np.arange(channels) % 2])
        wet *= np.float32(self.mix_pct / 100.0)
        wet += audio  # float32: the output's precision
        return wet

"""Production style: how a song was compressed, equalised and reverberated, measured blind.

:func:`production_style` reads the original audio and the shared analysis front end
(:class:`~services.analyzer.features.Spectra`, 22050 Hz mono) and returns a
:class:`ProductionStyle`. Everything is numpy; the classifiers are small linear models whose
coefficients live in ``services/analyzer/weights/production.json`` (written by
:func:`services.analyzer.production_labels.train_production`). The categories are defined by
the renderer settings the classifiers were trained on (``docs/production_style.md``, and the
module docstring of :mod:`services.analyzer.production_labels`):

**Tonal balance.** The long-term power spectrum (the STFT power summed over the whole song) is
split into four bands: ``low`` 20-250 Hz, ``low_mid`` 250-2000 Hz, ``high_mid`` 2000-6000 Hz and
``high`` 6000 Hz up to the source bandwidth (``Spectra.bandwidth_hz``: 9922 Hz for 44.1 kHz and
above). Each band's share of the power in 20 Hz-bandwidth is reported (the four sum to 1).
Bin ``f`` belongs to the band with ``lo <= f < hi``. The **reference curve**
(:data:`REFERENCE_SUB_BAND_SHARES`) is the mean share, in the 17 sub-bands of
:data:`SUB_BAND_EDGES_HZ`, over 100 clean generated mixes (20 per genre; command in
:data:`REFERENCE_COMMAND`); the four bands' reference shares are sums of its sub-bands.
``tonal_balance_deviation_db[band] = 10 log10(share / reference share)``. A source with less
bandwidth (a 16 kHz or 8 kHz file) is compared over the range it has: the sub-band that holds
the bandwidth counts in proportion to the part below it (in Hz), both the song's shares and the
reference are renormalised to that range, and a band with nothing below the bandwidth reads
share 0 and deviation 0 dB (and lowers the confidence).

**EQ character** (``bright``, ``warm``, ``neutral``, ``muddy``): a multinomial logistic
regression on the 17 sub-band deviations (dB) and the dynamics features below (which tell it
what the compressors did to the spectrum). The classes are what the renderer's
:class:`~services.renderer.eq.ParametricEQ` did in training: ``bright`` = the highs raised
(+5..+9 dB high shelf at 3-7 kHz, half the time with a +2..+5 dB high-mid bell), ``warm`` = the
lows raised and the top lowered a little (+4..+8 dB low shelf at 150-300 Hz and a -3..-6 dB
high shelf at 4-8 kHz), ``muddy`` = a low-mid excess (+6..+10 dB bell at 200-450 Hz, Q
0.7-1.4), ``neutral`` = no EQ.

**Compression** (``uncompressed``, ``modern``, ``vintage``): a multinomial logistic regression
on level statistics of the mono signal and its mel spectrogram (:func:`dynamics_features`) and
the sub-band deviations. ``modern`` is the renderer's clean feed-forward peak compressor
(:class:`~services.renderer.compressor.Compressor`: attack 0.3-5 ms, release 30-150 ms, ratio
3-10, threshold 5-13 dB under the loud 10 ms peaks); ``vintage`` the opto / vari-mu leveller
with slow, program-dependent release and saturation
(:class:`~services.renderer.vintage_compressor.VintageCompressor`: attack 15-60 ms, release
0.3-1.2 s, ratio 3-8, threshold 5-13 dB under the loud 50 ms RMS levels, drive 8-18 dB);
``uncompressed`` neither.

**Reverb.** Decay curves (:func:`decay_curves`, :func:`decay_features`): in each band, every
frame that is a local maximum in time within :data:`LOUD_RANGE_DB` of the band's loud level
starts a decay, and the level changes ``L(t + k) - L(t)`` after ``k`` frames are pooled over a
frequency region. Their percentiles (:data:`DECAY_PERCENTILES`) at ten lags from 23 ms to
0.74 s (:data:`DECAY_LAGS`), over four mel regions (:data:`DECAY_REGIONS_HZ`) and over the STFT
bins of 150-4000 Hz, describe how fast the song can fall after its peaks: reverb holds the
level up, while masking by the next note only ever raises it, so the low percentiles see the
tails. From those:

- ``reverb_style`` (``dry``, ``intimate``, ``plate``, ``hall``, ``spacious``): a multinomial
  logistic regression on the decay features. The classes are the renderer's
  :class:`~services.renderer.reverb.Reverb` styles as trained: intimate (RT60 0.3-0.7 s),
  plate (0.8-2.0 s; no early reflections, dense, bright), hall (1.8-3.2 s; early reflections,
  darker), spacious (3.5-6 s, larger wet level), each at a 20-40 % wet level (spacious
  25-50 %), and ``dry`` (no reverb).
- ``reverb_time_s`` (RT60): when the song has *free decays*, i.e. the 5th-percentile curve of
  the 150-4000 Hz mel bands is a straight line (``R^2 >=`` :data:`FREE_DECAY_R2`, lags from
  46 ms, points above :data:`FREE_DECAY_FLOOR_DB`) falling at least :data:`FREE_DECAY_MIN_DB`
  (sparse material: clicks, hits or notes ringing out into silence), it is measured: ``-60 /
  slope`` (:func:`free_decay_rt60_s`). Otherwise (music, where the next note masks the tail; in
  the labelled songs the gate never opened) a ridge regression of ``log RT60`` on the decay and
  dynamics features predicts it, within :data:`MIN_RT_S`-:data:`MAX_RT_S`; 0 when the style is
  ``dry``.
- ``reverb_amount``: a ridge regression of the wet share ``E_wet / (E_dry + E_wet)`` on the same
  features, clipped to 0..1.

**Confidence** = quality x the geometric mean of the three classifiers' top probabilities, where
quality (0..1) is the product of ``min(1, duration / 10 s)``, the share of the analysed range the
source covers (``min(1, bandwidth / 9922.5 Hz)``: 1 from 22.05 kHz up, 0.73 at 16 kHz, 0.36 at
8 kHz), a level term ``clip((rms_dbfs + 80) / 20, 0, 1)`` (-60 dBFS and louder count
fully, -80 dBFS and quieter not at all) and ``1 - min(1, 20 x clipped-sample share)`` (samples
within 0.01 dB of a peak that is within 0.2 dB of full scale). At or below
:data:`SILENCE_DBFS` the answer is the neutral one (uncompressed, neutral, dry, 0 s) with
confidence 0.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from services.analyzer.features import N_FFT, Spectra
from services.analyzer.linear import LinearModel
from services.common.errors import ConfigurationError

BANDS: tuple[str, ...] = ("low", "low_mid", "high_mid", "high")
#: Lower edges of :data:`BANDS` in Hz; the last band ends at the source bandwidth.
BAND_EDGES_HZ: tuple[float, ...] = (20.0, 250.0, 2000.0, 6000.0)
#: Upper edge of the analysis (0.9 x 11025 Hz: ``Spectra.bandwidth_hz`` of a 44.1 kHz song).
FULL_BANDWIDTH_HZ = 9922.5
#: Sub-band edges of the reference curve (Hz): 5 in ``low``, 6 in ``low_mid``, 3 in
#: ``high_mid``, 3 in ``high``.
SUB_BAND_EDGES_HZ: tuple[float, ...] = (
    20.0, 40.0, 80.0, 125.0, 175.0, 250.0,
    350.0, 500.0, 700.0, 1000.0, 1400.0, 2000.0,
    2800.0, 4000.0, 6000.0,
    7000.0, 8000.0, FULL_BANDWIDTH_HZ,
)  # fmt: skip
#: Mean share of the 20-9922 Hz power in each sub-band of :data:`SUB_BAND_EDGES_HZ` over 100
#: clean generated mixes (30 s, 44.1 kHz, seeds 5_200_000-5_200_099, 20 per genre), measured by
#: :data:`REFERENCE_COMMAND`.
REFERENCE_SUB_BAND_SHARES: tuple[float, ...] = (
    0.004624, 0.19228, 0.133038, 0.076775, 0.073225,
    0.115995, 0.141767, 0.083987, 0.056922, 0.034884, 0.030672,
    0.022621, 0.013271, 0.009823,
    0.003303, 0.002957, 0.003856,
)  # fmt: skip
#: How :data:`REFERENCE_SUB_BAND_SHARES` was measured.
REFERENCE_COMMAND = (
    ".venv/bin/python -m services.analyzer.production_labels reference --songs 100 --workers 2"
)

COMPRESSION_CLASSES: tuple[str, ...] = ("uncompressed", "modern", "vintage")
EQ_CLASSES: tuple[str, ...] = ("neutral", "bright", "warm", "muddy")
REVERB_CLASSES: tuple[str, ...] = ("dry", "intimate", "plate", "hall", "spacious")

#: A decay starts at a local maximum within this many dB of its mel band's loud level (the
#: band's 99.5th percentile).
LOUD_RANGE_DB = 30.0
#: Decay starts used per call of :func:`decay_curves` (a 15 s song has fewer).
MAX_DECAY_STARTS = 60_000
#: Levels are floored this far below the song's loudest mel band frame.
FLOOR_RANGE_DB = 100.0
#: Lags (STFT frames of 512 samples at 22050 Hz: 23.2 ms) of the decay curves.
DECAY_LAGS: tuple[int, ...] = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)
#: Upper edge of the free-decay region (and of the STFT-resolution decay curves), Hz.
FREE_DECAY_HI_HZ = 4000.0
#: Lags of the free-decay fit.
FREE_DECAY_LAGS: tuple[int, ...] = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)
DECAY_PERCENTILES: tuple[int, ...] = (1, 2, 5, 10, 20, 50)
#: Frequency regions (Hz) of the decay curves; the last one ends at the bandwidth.
DECAY_REGIONS_HZ: tuple[tuple[float, float], ...] = (
    (150.0, 500.0),
    (500.0, 2000.0),
    (2000.0, 4000.0),
    (4000.0, FULL_BANDWIDTH_HZ),
)
#: Free-decay gate: straightness and depth of the 150-4000 Hz 5th-percentile curve.
FREE_DECAY_R2 = 0.99
FREE_DECAY_MIN_DB = 12.0
#: Points of the free-decay curve below this (dB) are the noise floor, not the decay.
FREE_DECAY_FLOOR_DB = -70.0

#: Range of the regression's RT60 (the renderer's reverb_decay_s range is 0.2-8 s).
MIN_RT_S, MAX_RT_S = 0.1, 8.0
#: At or below this RMS level (dBFS) the song counts as silence: the neutral answer (no
#: compression, neutral EQ, dry) with confidence 0.
SILENCE_DBFS = -100.0

WEIGHTS_PATH = Path(__file__).resolve().parent / "weights" / "production.json"

_EPS = 1e-20


@dataclass(frozen=True)
class ProductionStyle:
    """Result of :func:`production_style` (definitions in the module docstring).

    Attributes
    ----------
    compression : str
        ``"uncompressed"``, ``"modern"`` or ``"vintage"``.
    compression_probabilities : dict[str, float]
        Probability of each compression class (sum 1).
    eq_character : str
        ``"bright"``, ``"warm"``, ``"neutral"`` or ``"muddy"``.
    tonal_balance : dict[str, float]
        Power share of ``low``, ``low_mid``, ``high_mid`` and ``high`` (sum 1; 0 for silence).
    tonal_balance_deviation_db : dict[str, float]
        Each band against the reference curve, dB.
    reverb_style : str
        ``"dry"``, ``"intimate"``, ``"plate"``, ``"hall"`` or ``"spacious"``.
    reverb_amount : float
        Estimated wet share ``E_wet / (E_dry + E_wet)``, 0..1.
    reverb_time_s : float
        Estimated RT60, s; 0 when none is measurable.
    confidence : float
        0..1 overall.
    """

    compression: str
    compression_probabilities: dict[str, float]
    eq_character: str
    tonal_balance: dict[str, float]
    tonal_balance_deviation_db: dict[str, float]
    reverb_style: str
    reverb_amount: float
    reverb_time_s: float
    confidence: float


# ---------------------------------------------------------------------------------------------
# Tonal balance


@dataclass(frozen=True)
class TonalBalance:
    """The long-term spectrum against the reference curve.

    Attributes
    ----------
    shares : dict[str, float]
        Power share of each of :data:`BANDS` in 20 Hz-bandwidth (sum 1, or all 0 for silence).
    deviation_db : dict[str, float]
        ``10 log10(share / reference share)`` per band, clipped to +-60 dB; 0 for a band the
        source does not cover.
    sub_band_deviation_db : np.ndarray, shape (17,)
        The same per sub-band of :data:`SUB_BAND_EDGES_HZ`; NaN where not covered.
    coverage : float
        Share of the 20-9922 Hz reference power inside the source's bandwidth (0..1).
    """

    shares: dict[str, float]
    deviation_db: dict[str, float]
    sub_band_deviation_db: np.ndarray
    coverage: float


def sub_band_powers(spectra: Spectra) -> tuple[np.ndarray, np.ndarray]:
    """Long-term power in each sub-band of :data:`SUB_BAND_EDGES_HZ`, cut at the bandwidth.

    Returns
    -------
    power : np.ndarray, shape (17,), float64
        Sum over the song of ``|STFT|**2`` over the bins ``lo <= f < min(hi, bandwidth)``.
    coverage : np.ndarray, shape (17,)
        Fraction of each sub-band (in Hz) below the bandwidth, 0..1.
    """
    mag = spectra.magnitude
    power_per_bin = np.einsum("ft,ft->f", mag, mag, dtype=np.float64)
    edges = np.asarray(SUB_BAND_EDGES_HZ)
    bandwidth = min(float(spectra.bandwidth_hz), FULL_BANDWIDTH_HZ)
    cut = np.minimum(edges, bandwidth)
    index = np.searchsorted(spectra.freqs_hz, cut, side="left")
    cumulative = np.concatenate([[0.0], np.cumsum(power_per_bin)])
    power = cumulative[index[1:]] - cumulative[index[:-1]]
    coverage = np.clip((bandwidth - edges[:-1]) / np.diff(edges), 0.0, 1.0)
    return power, coverage


def tonal_balance(spectra: Spectra) -> TonalBalance:
    """Band shares and deviations from the reference curve (see the module docstring)."""
    power, coverage = sub_band_powers(spectra)
    reference = np.asarray(REFERENCE_SUB_BAND_SHARES) * coverage
    covered = float(reference.sum())
    reference = reference / covered
    total = float(power.sum())
    band_of_sub = np.searchsorted(BAND_EDGES_HZ, SUB_BAND_EDGES_HZ[:-1], side="right") - 1
    shares: dict[str, float] = {}
    deviation: dict[str, float] = {}
    sub_dev = np.full(power.size, np.nan)
    if total <= _EPS:
        for band in BANDS:
            shares[band], deviation[band] = 0.0, 0.0
        return TonalBalance(shares, deviation, sub_dev, covered)
    share = power / total
    on = coverage > 0.0
    sub_dev[on] = _ratio_db(share[on], reference[on])
    for b, band in enumerate(BANDS):
        in_band = band_of_sub == b
        shares[band] = float(share[in_band].sum())
        ref = float(reference[in_band].sum())
        deviation[band] = float(_ratio_db(shares[band], ref)) if ref > 0.0 else 0.0
    return TonalBalance(shares, deviation, sub_dev, covered)


def _ratio_db(value: Any, reference: Any) -> Any:
    """``10 log10(value / reference)`` clipped to +-60 dB (finite for empty bands)."""
    ratio = np.maximum(np.asarray(value, dtype=np.float64), 1e-6 * np.asarray(reference))
    return np.clip(10.0 * np.log10(ratio / reference), -60.0, 60.0)


# ---------------------------------------------------------------------------------------------
# Decay curves (reverb)


def _band_levels_db(power: np.ndarray) -> np.ndarray:
    """``10 log10(power)`` (float32), floored :data:`FLOOR_RANGE_DB` under the maximum."""
    level = 10.0 * np.log10(np.maximum(power, np.float32(1e-30)), dtype=np.float32)
    return np.maximum(level, level.max() - FLOOR_RANGE_DB)


def decay_curves(
    level: np.ndarray,
    regions: Sequence[tuple[int, int]],
    *,
    lags: Sequence[int],
    percentiles: Sequence[float],
    edge: int = 0,
) -> np.ndarray:
    """Percentiles of the level change after the decay starts of each region of rows.

    A decay starts at every frame ``t`` of a row (a frequency band) that is a local maximum in
    time (``L[t] > L[t - 1]`` and ``L[t] >= L[t + 1]``) within :data:`LOUD_RANGE_DB` of the
    row's 99.5th percentile (rows whose 99.5th percentile is within 10 dB of the floor have
    none). For lag ``k`` the changes ``L[t + k] - L[t]`` of a region's starts are pooled.

    Parameters
    ----------
    level : np.ndarray, shape (rows, frames)
        Levels in dB, floored.
    regions : sequence of (first_row, end_row)
    lags : sequence of int
        Frames.
    percentiles : sequence of float
    edge : int
        Frames at each end left out (the centred STFT's frames that reach into its zero
        padding: a song cut off at the end of the buffer is not a decay).

    At most :data:`MAX_DECAY_STARTS` starts are used: every n-th in row-major order when there
    are more (long songs), which bounds the cost and leaves the percentiles as they were.

    Returns
    -------
    np.ndarray, shape (len(regions), len(lags), len(percentiles))
        dB; NaN where a region has fewer than 20 changes at that lag.
    """
    out = np.full((len(regions), len(lags), len(percentiles)), np.nan)
    rows_n, frames = level.shape
    if frames < 3 or rows_n == 0:
        return out
    floor = float(level.min())
    top = np.percentile(level, 99.5, axis=1)
    mid = level[:, 1:-1]
    start = (
        (mid > level[:, :-2])
        & (mid >= level[:, 2:])
        & (mid >= (top - LOUD_RANGE_DB)[:, None])
        & (top > floor + 10.0)[:, None]
    )
    start[:, : max(0, edge - 1)] = False
    rows, cols = np.nonzero(start)  # row-major: each region is one slice
    if rows.size > MAX_DECAY_STARTS:  # an even subset over all rows and the whole song
        stride = -(-rows.size // MAX_DECAY_STARTS)
        rows, cols = rows[::stride], cols[::stride]
    cols += 1
    bounds = [np.searchsorted(rows, [a, b]) for a, b in regions]
    for j, k in enumerate(lags):
        valid = cols + k < frames - edge
        r_k, c_k = rows[valid], cols[valid]
        change = level[r_k, c_k + k] - level[r_k, c_k]
        kept = np.concatenate([[0], np.cumsum(valid)])
        for i, (a, b) in enumerate(bounds):
            seg = change[kept[a] : kept[b]]
            if seg.size >= 20:
                out[i, j] = np.percentile(seg, percentiles)
    return out


def decay_feature_names() -> list[str]:
    """Names of the :func:`decay_features`, in order."""
    regions = [f"r{i}" for i in range(len(DECAY_REGIONS_HZ))] + ["s"]
    return [f"decay_p{p}_{r}_l{k}" for r in regions for k in DECAY_LAGS for p in DECAY_PERCENTILES]


def decay_features(spectra: Spectra) -> tuple[dict[str, float], float]:
    """Decay-curve features of the song and the free-decay RT60.

    Parameters
    ----------
    spectra : Spectra

    Returns
    -------
    features : dict[str, float]
        ``decay_p{P}_r{R}_l{K}``: :func:`decay_curves` of the mel bands in region ``R`` of
        :data:`DECAY_REGIONS_HZ` (cut at the bandwidth), percentile P of
        :data:`DECAY_PERCENTILES`, lag K of :data:`DECAY_LAGS`; ``decay_p{P}_s_l{K}``: the same
        on the STFT bins of 150-4000 Hz (10.8 Hz wide, so single harmonics). NaN where not
        measurable.
    free_decay_rt_s : float
        :func:`free_decay_rt60_s` of the 5th-percentile curve of the mel bands in 150-4000 Hz.
    """
    names = decay_feature_names()
    mel = spectra.mel_power
    if mel.shape[1] < 3 or float(mel.max()) <= 0.0:
        return dict.fromkeys(names, math.nan), 0.0
    centres = spectra.mel_freqs_hz
    bandwidth = min(float(spectra.bandwidth_hz), FULL_BANDWIDTH_HZ)
    first = int(np.searchsorted(centres, DECAY_REGIONS_HZ[0][0]))

    def rows(lo: float, hi: float) -> tuple[int, int]:
        a = int(np.searchsorted(centres, lo)) - first
        return a, max(a, int(np.searchsorted(centres, min(hi, bandwidth))) - first)

    regions = [rows(lo, hi) for lo, hi in DECAY_REGIONS_HZ]
    free_region = rows(DECAY_REGIONS_HZ[0][0], FREE_DECAY_HI_HZ)
    lags = sorted(set(DECAY_LAGS) | set(FREE_DECAY_LAGS))
    pcts = sorted(set(DECAY_PERCENTILES) | {5})
    level = _band_levels_db(mel[first : first + max(b for _, b in regions)])
    edge = N_FFT // (2 * spectra.hop_length)
    curves = decay_curves(level, [*regions, free_region], lags=lags, percentiles=pcts, edge=edge)
    freqs = spectra.freqs_hz
    bins = (freqs >= DECAY_REGIONS_HZ[0][0]) & (freqs < min(FREE_DECAY_HI_HZ, bandwidth))
    stft_level = _band_levels_db(spectra.magnitude[bins] ** 2)
    stft = decay_curves(
        stft_level,
        [(0, stft_level.shape[0])],
        lags=DECAY_LAGS,
        percentiles=DECAY_PERCENTILES,
        edge=edge,
    )
    out: dict[str, float] = {}
    for i in range(len(regions)):
        for k in DECAY_LAGS:
            for p in DECAY_PERCENTILES:
                out[f"decay_p{p}_r{i}_l{k}"] = float(curves[i, lags.index(k), pcts.index(p)])
    for j, k in enumerate(DECAY_LAGS):
        for q, p in enumerate(DECAY_PERCENTILES):
            out[f"decay_p{p}_s_l{k}"] = float(stft[0, j, q])
    frame_s = spectra.hop_length / spectra.sr
    free = [
        (k * frame_s, float(curves[-1, lags.index(k), pcts.index(5)]))
        for k in FREE_DECAY_LAGS
        if np.isfinite(curves[-1, lags.index(k), pcts.index(5)])
    ]
    return {name: out[name] for name in names}, free_decay_rt60_s(free)


def free_decay_rt60_s(curve: list[tuple[float, float]]) -> float:
    """RT60 from a decay curve ``[(lag_s, level_change_db), ...]`` when it is a free decay.

    The points after the first lag and above :data:`FREE_DECAY_FLOOR_DB` are fitted with a
    line; the RT60 is ``-60 / slope`` when the fit's ``R^2 >= FREE_DECAY_R2`` and the fitted
    points span at least :data:`FREE_DECAY_MIN_DB`. Otherwise 0.
    """
    points = np.array([c for c in curve[1:] if c[1] > FREE_DECAY_FLOOR_DB])
    if points.shape[0] < 3:
        return 0.0
    t, q = points[:, 0], points[:, 1]
    if float(q.max() - q.min()) < FREE_DECAY_MIN_DB:
        return 0.0
    slope, intercept = np.polyfit(t, q, 1)
    residual = q - (slope * t + intercept)
    r2 = 1.0 - float(np.sum(residual**2)) / max(float(np.sum((q - q.mean()) ** 2)), _EPS)
    if slope >= 0.0 or r2 < FREE_DECAY_R2:
        return 0.0
    return float(-60.0 / slope)


# ---------------------------------------------------------------------------------------------
# Dynamics (compression)

#: Block length of the sample-domain level statistics, s.
BLOCK_S = 0.01
#: Short-term window (a multiple of :data:`BLOCK_S`), s.
SHORT_TERM_S = 0.4
#: Loudness-range window, s.
RANGE_S = 3.0


def _percentile_spread(values: np.ndarray, high: float, low: float) -> float:
    if values.size < 2:
        return math.nan
    hi, lo = np.percentile(values, [high, low])
    return float(hi - lo)


def dynamics_features(spectra: Spectra) -> dict[str, float]:
    """Level statistics of the mono analysis signal and its mel spectrogram (all in dB and
    independent of the overall level).

    Parameters
    ----------
    spectra : Spectra

    Returns
    -------
    dict[str, float]
        ``crest_db`` (peak over RMS of the whole song); from 10 ms block peaks within 50 dB of
        the loudest: ``peak_p95_p50_db``, ``peak_p99_p90_db``, ``peak_max_p99_db``; from 0.4 s
        windows within 60 dB of the loudest: ``short_crest_median_db``, ``short_crest_p90_db``
        (peak over RMS per window), ``short_level_iqr_db``, ``short_level_std_db``;
        ``loudness_range_db`` (95th minus 10th percentile of 3 s RMS levels within 40 dB of the
        loudest); from the frame energy ``e`` of the mel spectrogram (dB per 23 ms frame):
        ``envelope_fall_p5_db`` and ``envelope_rise_p95_db`` (percentiles of ``diff(e)``),
        ``onset_sustain_db`` (median drop 6 frames after frames that rose by more than 3 dB),
        ``modulation_1_4_db`` and ``modulation_4_16_db`` (share of the envelope's modulation
        power in 1-4 Hz and 4-16 Hz, dB); ``pump_corr`` (correlation of the frame-to-frame
        changes of the level below 150 Hz and above 2 kHz), ``hf_level_slope`` (dB of high-band
        share, above 5 kHz, per dB of frame level: saturation brightens loud passages). NaN
        where the song is too short for a statistic.
    """
    y = np.asarray(spectra.y, dtype=np.float32)
    sr = spectra.sr
    block = max(1, int(round(BLOCK_S * sr)))
    n_blocks = y.size // block
    out: dict[str, float] = {}
    if n_blocks < 2:
        return dict.fromkeys(DYNAMICS_FEATURES, math.nan)
    blocks = y[: n_blocks * block].reshape(n_blocks, block)
    block_peak = np.max(np.abs(blocks), axis=1).astype(np.float64)
    block_ms = np.einsum("ij,ij->i", blocks, blocks, dtype=np.float64) / block
    peak = float(block_peak.max())
    mean_square = float(block_ms.mean())
    out["crest_db"] = (
        10.0 * math.log10(peak * peak / mean_square) if mean_square > _EPS else math.nan
    )
    peak_db = 20.0 * np.log10(np.maximum(block_peak, 1e-15))
    loud = peak_db[peak_db > peak_db.max() - 50.0]
    out["peak_p95_p50_db"] = _percentile_spread(loud, 95, 50)
    out["peak_p99_p90_db"] = _percentile_spread(loud, 99, 90)
    out["peak_max_p99_db"] = (
        float(loud.max() - np.percentile(loud, 99)) if loud.size > 1 else math.nan
    )
    per = int(round(SHORT_TERM_S / BLOCK_S))
    n_short = n_blocks // per
    if n_short >= 2:
        s_peak = block_peak[: n_short * per].reshape(n_short, per).max(axis=1)
        s_ms = block_ms[: n_short * per].reshape(n_short, per).mean(axis=1)
        active = s_ms > s_ms.max() * 1e-6
        if np.count_nonzero(active) >= 2:
            s_level = 10.0 * np.log10(np.maximum(s_ms[active], _EPS))
            s_crest = 20.0 * np.log10(np.maximum(s_peak[active], 1e-15)) - s_level
            out["short_crest_median_db"] = float(np.median(s_crest))
            out["short_crest_p90_db"] = float(np.percentile(s_crest, 90))
            out["short_level_iqr_db"] = _percentile_spread(s_level, 75, 25)
            out["short_level_std_db"] = float(np.std(s_level))
    per = int(round(RANGE_S / BLOCK_S))
    n_range = n_blocks // per
    if n_range >= 2:
        r_ms = block_ms[: n_range * per].reshape(n_range, per).mean(axis=1)
        r_level = 10.0 * np.log10(np.maximum(r_ms, _EPS))
        out["loudness_range_db"] = _percentile_spread(
            r_level[r_level > r_level.max() - 40.0], 95, 10
        )
    out.update(_envelope_features(spectra))
    return {name: out.get(name, math.nan) for name in DYNAMICS_FEATURES}


def _envelope_features(spectra: Spectra) -> dict[str, float]:
    mel = spectra.mel_power
    out: dict[str, float] = {}
    if mel.shape[1] < 8:
        return out
    centres = spectra.mel_freqs_hz
    total = mel.sum(axis=0, dtype=np.float64)
    if float(total.max()) <= 0.0:
        return out
    energy = 10.0 * np.log10(np.maximum(total, total.max() * 1e-10))
    change = np.diff(energy)
    out["envelope_fall_p5_db"] = float(np.percentile(change, 5))
    out["envelope_rise_p95_db"] = float(np.percentile(change, 95))
    onsets = np.flatnonzero((change[:-1] > 3.0) & (change[1:] <= 0.0)) + 1
    onsets = onsets[onsets + 6 < energy.size]
    if onsets.size:
        out["onset_sustain_db"] = float(np.median(energy[onsets] - energy[onsets + 6]))
    frame_s = spectra.hop_length / spectra.sr
    centred = energy - energy.mean()
    spectrum = np.abs(np.fft.rfft(centred * np.hanning(centred.size))) ** 2
    mod_hz = np.fft.rfftfreq(centred.size, frame_s)
    mod_total = float(spectrum[mod_hz > 0.2].sum())
    if mod_total > _EPS:
        for name, lo, hi in (("modulation_1_4_db", 1.0, 4.0), ("modulation_4_16_db", 4.0, 16.0)):
            part = float(spectrum[(mod_hz >= lo) & (mod_hz < hi)].sum())
            out[name] = 10.0 * math.log10(max(part / mod_total, 1e-10))
    floor = total.max() * 1e-10
    low = 10.0 * np.log10(np.maximum(mel[centres < 150.0].sum(axis=0), floor))
    high_rows = (centres >= 2000.0) & (centres < spectra.bandwidth_hz)
    if high_rows.any():
        high = 10.0 * np.log10(np.maximum(mel[high_rows].sum(axis=0), floor))
        d_low, d_high = np.diff(low), np.diff(high)
        if float(d_low.std()) > 0.0 and float(d_high.std()) > 0.0:
            out["pump_corr"] = float(np.corrcoef(d_low, d_high)[0, 1])
    hf_rows = (centres >= 5000.0) & (centres < spectra.bandwidth_hz)
    if hf_rows.any():
        active = energy > energy.max() - 40.0
        hf_share = 10.0 * np.log10(np.maximum(mel[hf_rows].sum(axis=0), floor) / total.clip(floor))
        x, y = energy[active], hf_share[active]
        if x.size > 2 and float(x.std()) > 0.0:
            out["hf_level_slope"] = float(np.polyfit(x, y, 1)[0])
    return out


DYNAMICS_FEATURES: tuple[str, ...] = (
    "crest_db",
    "peak_p95_p50_db",
    "peak_p99_p90_db",
    "peak_max_p99_db",
    "short_crest_median_db",
    "short_crest_p90_db",
    "short_level_iqr_db",
    "short_level_std_db",
    "loudness_range_db",
    "envelope_fall_p5_db",
    "envelope_rise_p95_db",
    "onset_sustain_db",
    "modulation_1_4_db",
    "modulation_4_16_db",
    "pump_corr",
    "hf_level_slope",
)


# ---------------------------------------------------------------------------------------------
# Features, models and the result


@dataclass(frozen=True)
class Measurements:
    """Everything :func:`production_style` measures before the models run.

    Attributes
    ----------
    features : dict[str, float]
        Model inputs by name (NaN = not measurable; the models read it as the training mean).
    tonal : TonalBalance
    free_decay_rt_s : float
        See :func:`decay_features`.
    quality : float
        0..1, see the module docstring.
    rms_dbfs : float
        RMS level of the mono analysis signal, dBFS (-200 for digital silence).
    """

    features: dict[str, float]
    tonal: TonalBalance
    free_decay_rt_s: float
    quality: float
    rms_dbfs: float


def clipped_share(audio: np.ndarray) -> float:
    """Share of samples at the file's peak level when that peak is within 0.2 dB of full scale
    (a handful in a clean file, long runs in a clipped one); 0 otherwise."""
    x = np.asarray(audio)
    high, low = float(x.max()), float(x.min())
    peak = max(high, -low)
    if peak < 10.0 ** (-0.2 / 20.0):
        return 0.0
    level = 0.999 * peak
    count = np.count_nonzero(x >= level) + np.count_nonzero(x <= -level)
    return float(count) / max(1, x.size)


def measure(audio: np.ndarray, sample_rate: int, *, spectra: Spectra) -> Measurements:
    """The model inputs and the quality of ``audio`` (see :func:`production_style`)."""
    x = np.asarray(audio)
    frames = x.shape[-1] if x.ndim else 0
    duration_s = frames / float(sample_rate) if sample_rate > 0 else 0.0
    tonal = tonal_balance(spectra)
    decay, free_rt = decay_features(spectra)
    feats: dict[str, float] = {}
    for i, dev in enumerate(tonal.sub_band_deviation_db):
        feats[f"tonal_sub{i}_db"] = float(dev)
    feats.update(dynamics_features(spectra))
    feats.update(decay)
    y = np.asarray(spectra.y, dtype=np.float32)
    mean_square = float(np.dot(y, y)) / max(1, y.size)
    rms_dbfs = 10.0 * math.log10(mean_square) if mean_square > 0.0 else -200.0
    quality = (
        min(1.0, duration_s / 10.0)
        * min(1.0, max(0.0, float(spectra.bandwidth_hz) / FULL_BANDWIDTH_HZ))
        * min(1.0, max(0.0, (rms_dbfs + 80.0) / 20.0))
        * (1.0 - min(1.0, 20.0 * clipped_share(x)))
    )
    return Measurements(feats, tonal, free_rt, float(quality), rms_dbfs)


def _row(model: LinearModel, feats: dict[str, float]) -> np.ndarray:
    """``model``'s inputs from ``feats`` in column order; a missing or non-finite input reads as
    its training mean (a standardised 0)."""
    x = np.array([feats.get(name, math.nan) for name in model.features], dtype=np.float64)
    return np.where(np.isfinite(x), x, model.mean)


def class_probabilities(model: LinearModel, feats: dict[str, float]) -> dict[str, float]:
    """A classifier's probability of each of its classes."""
    p = model.probabilities(_row(model, feats))[0]
    return {c: float(v) for c, v in zip(model.classes, p, strict=True)}


def regression_output(model: LinearModel, feats: dict[str, float]) -> float:
    """A regression model's value."""
    return float(model.scores(_row(model, feats))[0, 0])


def feature_group(name: str) -> str:
    """``tonal``, ``decay`` or ``dynamics``: which measurement a model input comes from."""
    if name.startswith("tonal_"):
        return "tonal"
    if name.startswith("decay_"):
        return "decay"
    return "dynamics"


def models_from_json(payload: dict[str, Any]) -> dict[str, LinearModel]:
    """The models of a weights payload by task.

    ``payload["standardisation"]`` holds every input's ``features`` name, ``mean`` and
    ``scale``; each of ``payload["models"]`` reads the inputs of its feature ``groups`` (see
    :func:`feature_group`) in that order, with ``coef``, ``intercept`` and, for a classifier,
    ``classes``.
    """
    std = payload["standardisation"]
    names = list(std["features"])
    mean = np.asarray(std["mean"], dtype=np.float64)
    scale = np.asarray(std["scale"], dtype=np.float64)
    models = {}
    for task, spec in payload["models"].items():
        cols = [i for i, name in enumerate(names) if feature_group(name) in spec["groups"]]
        models[task] = LinearModel(
            features=tuple(names[i] for i in cols),
            classes=tuple(spec.get("classes", ())),
            mean=mean[cols],
            scale=scale[cols],
            coef=np.atleast_2d(np.asarray(spec["coef"], dtype=np.float64)),
            intercept=np.atleast_1d(np.asarray(spec["intercept"], dtype=np.float64)),
            meta={},
        )
    return models


@functools.lru_cache(maxsize=2)
def load_models(path: Path = WEIGHTS_PATH) -> dict[str, LinearModel]:
    """The shipped models by task (``compression``, ``eq_character``, ``reverb_style``,
    ``reverb_time``, ``reverb_amount``), read once per process.

    Raises
    ------
    ConfigurationError
        The weights file is missing or unreadable.
    """
    try:
        return models_from_json(json.loads(Path(path).read_text()))
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigurationError(
            f"cannot read the production-style weights at {path}: {exc}; "
            "train them with `python -m services.analyzer.production_labels train`"
        ) from exc


def production_style(audio: np.ndarray, sample_rate: int, *, spectra: Spectra) -> ProductionStyle:
    """Compression, EQ character, tonal balance and reverb of a song.

    Parameters
    ----------
    audio : np.ndarray, shape (channels, frames)
        The original samples (1-2 channels, 8-192 kHz, finite).
    sample_rate : int
        Of ``audio``, Hz.
    spectra : Spectra
        The shared front end of the same song
        (``features.compute_spectra(y=features.analysis_mono(audio, sr), sr=22050,
        source_sample_rate=sr)``).

    Returns
    -------
    ProductionStyle
        Every number finite. Silence, very short, narrow-band or clipped audio gives a low
        ``confidence`` rather than an error.
    """
    m = measure(audio, sample_rate, spectra=spectra)
    models = load_models()
    if m.rms_dbfs <= SILENCE_DBFS:
        return ProductionStyle(
            compression="uncompressed",
            compression_probabilities={c: 1.0 / 3.0 for c in COMPRESSION_CLASSES},
            eq_character="neutral",
            tonal_balance=dict(m.tonal.shares),
            tonal_balance_deviation_db=dict(m.tonal.deviation_db),
            reverb_style="dry",
            reverb_amount=0.0,
            reverb_time_s=0.0,
            confidence=0.0,
        )
    comp = class_probabilities(models["compression"], m.features)
    eq = class_probabilities(models["eq_character"], m.features)
    rev = class_probabilities(models["reverb_style"], m.features)
    style = max(rev, key=rev.__getitem__)
    amount = float(np.clip(regression_output(models["reverb_amount"], m.features), 0.0, 1.0))
    if m.free_decay_rt_s > 0.0:
        rt = m.free_decay_rt_s
    elif style == "dry":
        rt = 0.0
    else:
        log_rt = regression_output(models["reverb_time"], m.features)
        rt = float(np.exp(np.clip(log_rt, math.log(MIN_RT_S), math.log(MAX_RT_S))))
    top = [max(p.values()) for p in (comp, eq, rev)]
    confidence = m.quality * float(np.prod(top)) ** (1.0 / 3.0)
    return ProductionStyle(
        compression=max(comp, key=comp.__getitem__),
        compression_probabilities=comp,
        eq_character=max(eq, key=eq.__getitem__),
        tonal_balance=dict(m.tonal.shares),
        tonal_balance_deviation_db=dict(m.tonal.deviation_db),
        reverb_style=style,
        reverb_amount=amount,
        reverb_time_s=float(rt),
        confidence=float(np.clip(confidence, 0.0, 1.0)),
    )

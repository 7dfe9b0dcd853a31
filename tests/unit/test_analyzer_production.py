"""Production-style detection: tonal balance, EQ character, compression and reverb on signals
with known answers, robustness on bad audio, and a small held-out accuracy check."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.signal import fftconvolve

from services.analyzer import features, production
from services.analyzer.production_labels import CLASSES, EVAL_SEED0, evaluate_production
from services.predictor.songgen import generate_song
from services.renderer.compressor import Compressor
from services.renderer.eq import ParametricEQ
from services.renderer.reverb import Reverb
from services.renderer.vintage_compressor import VintageCompressor

SR = 44100
#: Test songs: outside the training (5_000_000+) and evaluation (5_500_000+) examples used.
TEST_SEED = 5_700_000


def spectra_of(audio: np.ndarray, sr: int) -> features.Spectra:
    return features.compute_spectra(
        y=features.analysis_mono(audio, sr), sr=features.ANALYSIS_SR, source_sample_rate=sr
    )


def style_of(audio: np.ndarray, sr: int = SR) -> production.ProductionStyle:
    return production.production_style(audio, sr, spectra=spectra_of(audio, sr))


def reverberant_clicks(
    rt60_s: float,
    *,
    rng: np.random.Generator,
    sr: int = SR,
    duration_s: float = 12.0,
    period_s: float = 1.5,
    dry_gain: float = 1.0,
) -> np.ndarray:
    """Unit clicks every ``period_s`` plus their reverb: each channel's click train convolved
    with its own Gaussian noise whose amplitude falls 60 dB in ``rt60_s`` (0: no reverb)."""
    n = int(duration_s * sr)
    clicks = np.zeros(n)
    clicks[(np.arange(0.1, duration_s - 0.2, period_s) * sr).astype(int)] = 1.0
    channels = []
    for _ in range(2):
        y = dry_gain * clicks
        if rt60_s > 0:
            t = np.arange(int(1.5 * rt60_s * sr)) / sr
            tail = rng.standard_normal(t.size) * 10.0 ** (-3.0 * t / rt60_s)
            y = y + fftconvolve(clicks, tail / np.sqrt(np.sum(tail**2)))[:n]
        channels.append(y)
    x = np.array(channels)
    return (0.9 * x / np.abs(x).max()).astype(np.float32)


def pink_noise(rng: np.random.Generator, *, sr: int = SR, duration_s: float = 10.0) -> np.ndarray:
    """Noise with equal power per octave (1/f power spectrum), stereo, -20 dBFS RMS."""
    n = int(duration_s * sr)
    spectrum = np.fft.rfft(rng.standard_normal((2, n)), axis=1)
    f = np.fft.rfftfreq(n, 1.0 / sr)
    spectrum[:, 1:] /= np.sqrt(f[1:])
    spectrum[:, 0] = 0.0
    x = np.fft.irfft(spectrum, n=n, axis=1)
    return (0.1 * x / np.sqrt(np.mean(x**2))).astype(np.float32)


@pytest.fixture(scope="module")
def song() -> np.ndarray:
    """A clean generated pop song, 15 s at 44.1 kHz (peak -1 dBFS, dry, unprocessed)."""
    return generate_song("pop", TEST_SEED, duration_s=15.0, sample_rate=SR, workers=1).mix


# --- reverb -------------------------------------------------------------------------------------


@pytest.mark.parametrize("rt60_s", [0.3, 1.0, 2.5])
@pytest.mark.parametrize("dry_gain", [1.0, 0.0])
def test_reverb_time_of_clicks_in_exponential_noise(
    rt60_s: float, dry_gain: float, rng: np.random.Generator
) -> None:
    audio = reverberant_clicks(rt60_s, rng=rng, dry_gain=dry_gain)
    style = style_of(audio)
    assert style.reverb_time_s == pytest.approx(rt60_s, rel=0.25)
    assert style.reverb_style != "dry"


def test_dry_clicks_have_no_measurable_reverb(rng: np.random.Generator) -> None:
    style = style_of(reverberant_clicks(0.0, rng=rng))
    assert style.reverb_time_s < 0.2
    # Nothing of a click is left 46 ms later: the level falls to the floor.
    decay, free_rt = production.decay_features(spectra_of(reverberant_clicks(0.0, rng=rng), SR))
    assert free_rt == 0.0
    assert decay["decay_p5_r1_l2"] < -60.0


def test_decay_curves_of_a_known_linear_decay() -> None:
    # A sawtooth in dB: peaks every 40 frames falling 1.5 dB per frame (a 23 ms frame: an
    # RT60 of 0.93 s); the change k frames after each peak is exactly -1.5 k dB.
    frames = 4000
    phase = np.arange(frames) % 40
    level = np.tile(-1.5 * phase, (3, 1)).astype(np.float32)
    curves = production.decay_curves(level, [(0, 3)], lags=(1, 4, 16), percentiles=(5, 50))
    assert curves.shape == (1, 3, 2)
    np.testing.assert_allclose(curves[0, :, 1], [-1.5, -6.0, -24.0], atol=1e-4)
    lag_s = np.array([1, 2, 3, 4, 6, 8, 12, 16]) * 512 / 22050
    rt = production.free_decay_rt60_s([(t, -1.5 * t * 22050 / 512) for t in lag_s])
    assert rt == pytest.approx(60.0 / (1.5 * 22050 / 512), rel=1e-6)


def test_dry_generated_song_reads_dry(song: np.ndarray) -> None:
    style = style_of(song)
    assert style.reverb_style == "dry"
    assert style.reverb_time_s == 0.0
    assert style.reverb_amount < 0.02


@pytest.mark.parametrize(
    ("name", "decay_s"), [("intimate", 0.5), ("plate", 1.5), ("hall", 2.5), ("spacious", 5.0)]
)
def test_reverb_style_and_time_follow_the_renderer_reverb(
    name: str, decay_s: float, song: np.ndarray
) -> None:
    reverb = Reverb(style=name, decay_s=decay_s, predelay_ms=20.0, damping_pct=50.0, mix_pct=35.0)
    style = style_of(reverb(song, SR))
    assert style.reverb_style == name
    # Music masks the tails, so the time is a regression (median error 16-18 % held out).
    assert decay_s / 1.6 < style.reverb_time_s < decay_s * 1.6
    assert 0.08 < style.reverb_amount < 0.4


# --- tonal balance and EQ -----------------------------------------------------------------------


def _expected_shares(power_per_hz) -> list[float]:
    """Band shares of a noise with this power density, summed over the analysis STFT bins as
    the measurement does (bin ``f`` belongs to the band with ``lo <= f < hi``)."""
    f = np.arange(1 + features.N_FFT // 2) * features.ANALYSIS_SR / features.N_FFT
    edges = [*production.BAND_EDGES_HZ, production.FULL_BANDWIDTH_HZ]
    power = np.where((f >= edges[0]) & (f < edges[-1]), power_per_hz(np.maximum(f, 1.0)), 0.0)
    bands = [power[(f >= lo) & (f < hi)].sum() for lo, hi in itertools.pairwise(edges)]
    return list(np.array(bands) / power.sum())


def test_white_noise_shares_follow_the_band_widths(rng: np.random.Generator) -> None:
    noise = (0.1 * rng.standard_normal((2, 10 * SR))).astype(np.float32)
    shares = style_of(noise).tonal_balance
    # Flat power per Hz: each band's share is its width over 20-9922.5 Hz (2.3 %, 17.7 %,
    # 40.4 %, 39.6 %).
    expected = _expected_shares(np.ones_like)
    for band, value in zip(production.BANDS, expected, strict=True):
        assert shares[band] == pytest.approx(value, abs=0.005)
    assert sum(shares.values()) == pytest.approx(1.0)


def test_pink_noise_shares_follow_the_octaves(rng: np.random.Generator) -> None:
    shares = style_of(pink_noise(rng)).tonal_balance
    # Power 1/f: equal per octave, so about log(hi / lo) each (43 %, 32 %, 17 %, 8 % summed
    # over the bins; the lowest bins, 21.5 Hz and up, weigh a little more than the integral).
    expected = _expected_shares(lambda f: 1.0 / f)
    for band, value in zip(production.BANDS, expected, strict=True):
        assert shares[band] == pytest.approx(value, abs=0.01)


def test_shelves_move_the_deviations_the_expected_way(rng: np.random.Generator) -> None:
    noise = pink_noise(rng)
    plain = style_of(noise).tonal_balance_deviation_db
    bright = style_of(ParametricEQ(high_shelf_freq_hz=6000.0, high_shelf_gain_db=6.0)(noise, SR))
    dark = style_of(ParametricEQ(low_shelf_freq_hz=150.0, low_shelf_gain_db=6.0)(noise, SR))
    lifted = bright.tonal_balance_deviation_db
    # A +6 dB shelf at 6 kHz: +3 dB at the corner, +6 dB above; the other bands lose share.
    assert 3.5 < lifted["high"] - plain["high"] < 6.5
    assert lifted["low"] < plain["low"]
    assert dark.tonal_balance_deviation_db["low"] - plain["low"] > 2.0
    assert dark.tonal_balance_deviation_db["high"] < plain["high"]


@pytest.mark.parametrize(("genre", "seed"), [("rock", 5_700_001), ("electronic", 5_700_002)])
def test_eq_character_of_generated_songs(genre: str, seed: int) -> None:
    # (A song whose own balance is low-mid heavy, as some pop songs are, reads "muddy" before
    # any EQ and stays so under a high shelf: see docs/production_style.md, limits.)
    song = generate_song(genre, seed, duration_s=15.0, sample_rate=SR, workers=1).mix
    assert style_of(song).eq_character == "neutral"
    bright = ParametricEQ(high_shelf_freq_hz=5000.0, high_shelf_gain_db=6.0)(song, SR)
    assert style_of(bright).eq_character == "bright"
    muddy = ParametricEQ(low_mid_freq_hz=300.0, low_mid_gain_db=8.0, low_mid_q=1.0)(song, SR)
    assert style_of(muddy).eq_character in ("muddy", "warm")
    warm = ParametricEQ(
        low_shelf_freq_hz=200.0,
        low_shelf_gain_db=6.0,
        high_shelf_freq_hz=6000.0,
        high_shelf_gain_db=-4.0,
    )(song, SR)
    assert style_of(warm).eq_character in ("warm", "muddy")


# --- compression --------------------------------------------------------------------------------


def _loud_peak_db(audio: np.ndarray) -> float:
    block = int(0.01 * SR)
    n = audio.shape[1] // block
    peaks = np.abs(audio[:, : n * block]).reshape(2, n, block).max(axis=(0, 2))
    return float(20 * np.log10(np.percentile(peaks, 90)))


def test_compression_character_of_a_generated_song(song: np.ndarray) -> None:
    loud = _loud_peak_db(song)
    modern = Compressor(
        threshold_db=loud - 12.0, ratio=8.0, attack_ms=1.0, release_ms=60.0, knee_db=3.0
    )(song, SR)
    vintage = VintageCompressor(
        threshold_db=loud - 12.0,
        ratio=6.0,
        attack_ms=30.0,
        release_ms=800.0,
        drive_db=15.0,
        even_pct=50.0,
    )(song, SR)
    results = {
        name: style_of(x)
        for name, x in (("uncompressed", song), ("modern", modern), ("vintage", vintage))
    }
    for name, style in results.items():
        assert style.compression == name, (name, style.compression_probabilities)
        assert sum(style.compression_probabilities.values()) == pytest.approx(1.0)


# --- bad audio ----------------------------------------------------------------------------------


def _finite(style: production.ProductionStyle) -> bool:
    numbers = [
        style.reverb_amount,
        style.reverb_time_s,
        style.confidence,
        *style.compression_probabilities.values(),
        *style.tonal_balance.values(),
        *style.tonal_balance_deviation_db.values(),
    ]
    return all(math.isfinite(v) for v in numbers)


@pytest.mark.parametrize(
    "case", ["one_second", "mono", "8khz", "quiet_noise", "digital_silence", "clipped", "dc"]
)
def test_bad_audio_gives_finite_values_and_low_confidence(
    case: str, song: np.ndarray, rng: np.random.Generator
) -> None:
    sr = SR
    if case == "one_second":
        audio = song[:, 3 * SR : 4 * SR]
    elif case == "mono":
        audio = song[:1]
    elif case == "8khz":
        audio = song[:, ::5][:, : 8 * 8000].copy()  # a crude 8.8 kHz rate read as 8 kHz
        sr = 8000
    elif case == "quiet_noise":
        audio = (10 ** (-90 / 20) * rng.standard_normal((2, 3 * SR))).astype(np.float32)
    elif case == "digital_silence":
        audio = np.zeros((2, 2 * SR), dtype=np.float32)
    elif case == "clipped":
        audio = np.clip(song * 8.0, -1.0, 1.0)
    else:
        audio = np.full((1, 2 * SR), 0.5, dtype=np.float32)
    style = style_of(audio, sr)
    assert _finite(style)
    assert 0.0 <= style.confidence <= 1.0
    assert style.compression in CLASSES["compression"]
    assert style.eq_character in CLASSES["eq_character"]
    assert style.reverb_style in CLASSES["reverb_style"]
    if case in ("quiet_noise", "digital_silence"):
        assert style.confidence < 0.05
    if case in ("one_second", "clipped"):
        assert style.confidence < 0.5 * style_of(song).confidence


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    sr=st.sampled_from([8000, 16000, 22050, 44100, 48000, 96000, 192000]),
    channels=st.sampled_from([1, 2]),
    duration_s=st.floats(1.0, 2.5),
    level_db=st.floats(-120.0, 6.0),
    density=st.floats(0.001, 1.0),
)
def test_any_valid_audio_gives_finite_bounded_results(
    seed: int, sr: int, channels: int, duration_s: float, level_db: float, density: float
) -> None:
    # Noise bursts of any density and level, clipped at full scale when driven over it.
    rng = np.random.default_rng(seed)
    frames = int(sr * duration_s)
    noise = rng.standard_normal((channels, frames)) * (rng.random((channels, frames)) < density)
    audio = np.clip(10 ** (level_db / 20) * noise / max(np.abs(noise).max(), 1e-9), -1.0, 1.0)
    style = style_of(audio.astype(np.float32), sr)
    assert _finite(style)
    assert 0.0 <= style.confidence <= 1.0
    assert 0.0 <= style.reverb_amount <= 1.0
    assert style.reverb_time_s >= 0.0
    total = sum(style.tonal_balance.values())
    assert total == pytest.approx(1.0) or total == 0.0


def test_narrow_band_source_is_compared_over_the_range_it_has(song: np.ndarray) -> None:
    import soxr

    low_rate = soxr.resample(song.T, SR, 8000).T.astype(np.float32)
    style = style_of(low_rate, 8000)
    assert style.tonal_balance["high"] == 0.0
    assert style.tonal_balance_deviation_db["high"] == 0.0
    assert sum(style.tonal_balance.values()) == pytest.approx(1.0)
    # The covered bands read about as the full-rate song does.
    full = style_of(song).tonal_balance_deviation_db
    for band in ("low", "low_mid"):
        assert style.tonal_balance_deviation_db[band] == pytest.approx(full[band], abs=1.0)


# --- the shipped model and held-out accuracy ----------------------------------------------------


def test_weights_are_small_plain_json() -> None:
    text = production.WEIGHTS_PATH.read_text()
    assert len(text.encode()) < 64 * 1024
    payload = json.loads(text)
    assert set(payload["models"]) == {
        "compression",
        "eq_character",
        "reverb_style",
        "reverb_time",
        "reverb_amount",
    }
    assert payload["training"]["seed0"] >= 5_000_000


def test_held_out_accuracy_beats_the_majority_class() -> None:
    scores = evaluate_production(15, seed0=EVAL_SEED0 + 900)
    assert scores["n"] == 15
    for task, floor in (("compression", 0.7), ("eq_character", 0.5), ("reverb_style", 0.6)):
        assert scores["accuracy"][task] >= floor, (task, scores["confusion"][task])
        assert scores["accuracy"][task] > scores["majority_accuracy"][task] + 0.1
    assert scores["reverb_time_mae_s"] < 1.2

"""Loudness, peaks, crest factor, stereo width and spectral features against the maths."""

from __future__ import annotations

import math

import numpy as np
import pytest

from services.analyzer import features, levels
from services.analyzer.analysis import analyze
from tests.signals import chord_progression, click_track, sine, white_noise


@pytest.mark.parametrize("sr", [44100, 48000])
def test_full_scale_997hz_sine_in_one_channel_reads_minus_3_01_lufs(sr: int) -> None:
    # The BS.1770-4 calibration point.
    result = analyze(sine(997.0, sr=sr, duration_s=5.0, amplitude=1.0, channels=1), sr)
    assert result.loudness_lufs == pytest.approx(-3.01, abs=0.05)


def test_stereo_997hz_sine_at_minus_20_dbfs_per_channel_reads_minus_20_lufs() -> None:
    # -3.01 LUFS for full scale in one channel, -20 dB of level, and a second identical channel
    # adds its power (+3.01 dB): -20.0 LUFS.
    amplitude = 10.0 ** (-20.0 / 20.0)
    result = analyze(sine(997.0, sr=48000, duration_s=5.0, amplitude=amplitude), 48000)
    assert result.loudness_lufs == pytest.approx(-20.0, abs=0.05)


def test_true_peak_of_quarter_rate_sine_is_3db_above_its_sample_peak() -> None:
    # At fs/4 with a 45-degree phase every sample lands at +-0.707 of the waveform's peak.
    sr, amplitude = 48000, 0.5
    x = sine(sr / 4, sr=sr, duration_s=2.0, amplitude=amplitude, phase=math.pi / 4)
    # 10 ms fades: a sine switched on abruptly really does overshoot (Gibbs, about +0.1 dB).
    ramp = np.sin(0.5 * np.pi * np.arange(480) / 480) ** 2
    x[:, :480] *= ramp
    x[:, -480:] *= ramp[::-1]
    result = analyze(x, sr)
    sample_peak = result.features["sample_peak_dbfs"]
    assert sample_peak == pytest.approx(20 * math.log10(amplitude / math.sqrt(2)), abs=0.01)
    assert result.true_peak_dbtp - sample_peak == pytest.approx(3.01, abs=0.05)
    assert result.true_peak_dbtp == pytest.approx(20 * math.log10(amplitude), abs=0.05)


def test_sine_levels_and_crest_factor() -> None:
    result = analyze(sine(997.0, sr=44100, duration_s=3.0, amplitude=0.5), 44100)
    assert result.features["rms_db"] == pytest.approx(20 * math.log10(0.5 / math.sqrt(2)), abs=0.01)
    assert result.crest_factor_db == pytest.approx(3.01, abs=0.02)
    assert result.features["dc_offset"] == pytest.approx(0.0, abs=1e-4)


def test_clicks_have_a_large_crest_factor() -> None:
    assert analyze(click_track(120, duration_s=5.0), 44100).crest_factor_db > 15.0


def test_mono_input_has_zero_width_and_one_channel() -> None:
    result = analyze(sine(440.0, duration_s=2.0, channels=1), 44100)
    assert result.channels == 1
    assert result.stereo_width == 0.0


def test_stereo_width_from_mid_and_side(rng: np.random.Generator) -> None:
    left = sine(440.0, duration_s=2.0, channels=1)[0]
    both = np.stack([left, left])

    def width(x: np.ndarray) -> float:
        return levels.level_features(x, 44100)["stereo_width"]

    assert width(both) == 0.0
    assert width(np.stack([left, np.zeros_like(left)])) == pytest.approx(1.0)
    # R = L / 2: side = L / 4, mid = 3 L / 4, energy ratio 1/9.
    assert width(np.stack([left, 0.5 * left])) == pytest.approx(1 / 9)
    assert width(np.stack([left, -left])) == levels.MAX_STEREO_WIDTH
    uncorrelated = white_noise(rng, duration_s=5.0)
    assert analyze(uncorrelated, 44100).stereo_width == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize(("freq_hz", "sr"), [(997.0, 44100), (3000.0, 8000), (250.0, 96000)])
def test_spectral_centroid_of_a_sine_is_its_frequency(freq_hz: float, sr: int) -> None:
    result = analyze(sine(freq_hz, sr=sr, duration_s=2.0), sr)
    assert result.spectral_centroid_hz == pytest.approx(freq_hz, rel=0.03)


def test_band_shares() -> None:
    low = analyze(sine(60.0, duration_s=2.0), 44100).features
    high = analyze(sine(8000.0, duration_s=2.0), 44100).features
    assert low["low_band_share"] > 0.95 and low["high_band_share"] < 0.01
    assert high["high_band_share"] > 0.95 and high["low_band_share"] < 0.01


def test_percussive_ratio_separates_clicks_from_sustained_chords() -> None:
    clicks = analyze(click_track(120, duration_s=8.0), 44100).features["percussive_ratio"]
    chords = analyze(chord_progression("C", "major", repeats=2), 22050).features
    assert clicks > 0.7
    assert chords["percussive_ratio"] < 0.3


@pytest.mark.parametrize("sr", [8000, 44100, 96000])
def test_spectral_flatness_of_noise_and_tone(sr: int, rng: np.random.Generator) -> None:
    # Measured within the source's own bandwidth, so band-limited noise is still flat.
    noise = analyze(white_noise(rng, sr=sr, duration_s=3.0), sr).features["spectral_flatness"]
    tone = analyze(sine(997.0, sr=sr, duration_s=3.0), sr).features["spectral_flatness"]
    assert noise > 0.9
    assert tone < 0.01


def test_energy_definition() -> None:
    assert features.energy(loudness_lufs=-40.0, onset_rate_hz=0.0, spectral_centroid_hz=250.0) == 0
    top = features.energy(loudness_lufs=-6.0, onset_rate_hz=1000.0, spectral_centroid_hz=8000.0)
    assert top == pytest.approx(1.0, abs=1e-6)
    mid = features.energy(loudness_lufs=-24.0, onset_rate_hz=4.0, spectral_centroid_hz=1000.0)
    assert mid == pytest.approx(0.5 * 0.5 + 0.25 * (1 - math.exp(-1)) + 0.25 * 0.5)


def test_loud_busy_bright_audio_has_more_energy_than_a_quiet_tone(
    rng: np.random.Generator,
) -> None:
    loud = analyze(
        click_track(128, duration_s=6.0) + white_noise(rng, duration_s=6.0, amplitude=0.2), 44100
    )
    quiet = analyze(sine(220.0, duration_s=6.0, amplitude=0.01), 44100)
    assert 0.0 <= quiet.energy < 0.3 < 0.7 < loud.energy <= 1.0


def test_levels_are_exact_on_a_long_signal(rng: np.random.Generator) -> None:
    frames = 2 * 2**20 + 12345
    x = (0.3 * rng.standard_normal((2, frames)) + 0.01).astype(np.float32)
    x[1] *= 0.5
    x64 = x.astype(np.float64)
    lv = levels.level_features(x, 44100)
    assert lv["rms_db"] == pytest.approx(10 * np.log10(np.mean(x64**2)), abs=1e-9)
    assert lv["sample_peak_dbfs"] == pytest.approx(20 * np.log10(np.abs(x64).max()))
    assert lv["dc_offset"] == pytest.approx(x64.mean(), abs=1e-12)
    mid, side = (x64[0] + x64[1]) / 2, (x64[0] - x64[1]) / 2
    assert lv["stereo_width"] == pytest.approx(np.sum(side**2) / np.sum(mid**2))

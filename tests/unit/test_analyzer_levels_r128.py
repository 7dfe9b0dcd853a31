"""Levels, EBU R128 loudness (momentary, short-term, loudness range) and stereo features of
:func:`services.analyzer.levels.level_features`, against signals with known answers (the EBU
Tech 3341 / 3342 test cases, rebuilt from their descriptions) and against pyloudnorm."""

from __future__ import annotations

import math

import numpy as np
import pytest

from services.analyzer.levels import (
    MAX_STEREO_WIDTH,
    MIN_MONO_COMPATIBILITY_LU,
    level_features,
)
from services.common.loudness import (
    SILENT_LUFS,
    integrated_loudness,
    integrated_loudness_reference,
    loudness_profile,
    loudness_range,
    true_peak_dbtp,
)
from tests.signals import sine, white_noise

KEYS = {
    "loudness_lufs",
    "short_term_max_lufs",
    "momentary_max_lufs",
    "loudness_range_lu",
    "true_peak_dbtp",
    "sample_peak_dbfs",
    "rms_db",
    "crest_factor_db",
    "dc_offset",
    "plr_db",
    "stereo_width",
    "lr_correlation",
    "mono_compatibility_lu",
}
EBU_SR = 48000


def _tone_sequence(levels_dbfs: list[float], seconds: list[float], sr: int = EBU_SR) -> np.ndarray:
    """1 kHz stereo sine (both channels in phase), ``seconds[i]`` at ``levels_dbfs[i]`` peak
    level per channel (``-inf``: silence), as the EBU test signals are built."""
    parts = []
    for level, duration in zip(levels_dbfs, seconds, strict=True):
        amplitude = 0.0 if level == -math.inf else 10.0 ** (level / 20.0)
        parts.append(sine(1000.0, sr=sr, duration_s=duration, amplitude=amplitude))
    return np.concatenate(parts, axis=1)


# --- EBU Tech 3341: integrated, momentary and short-term loudness ---------------------------


def test_ebu_3341_case_1_stereo_1khz_at_minus_23_dbfs_reads_minus_23_lufs() -> None:
    # 1 kHz sine at -23 dBFS in both channels: each channel's mean square is A^2 / 2, two
    # channels sum to A^2 (-23 dB), and K-weighting's +0.69 dB at 1 kHz cancels BS.1770's
    # -0.691: -23.0 LUFS (pyloudnorm's filter reads -23.03).
    result = level_features(_tone_sequence([-23.0], [20.0]), EBU_SR)
    for name in ("loudness_lufs", "momentary_max_lufs", "short_term_max_lufs"):
        assert result[name] == pytest.approx(-23.0, abs=0.1), name
    assert result["loudness_range_lu"] == pytest.approx(0.0, abs=0.01)


@pytest.mark.parametrize(
    ("levels", "seconds"),
    [
        ([-36.0, -23.0, -36.0], [10.0, 60.0, 10.0]),  # Tech 3341 case 3: relative gate
        ([-72.0, -36.0, -23.0, -36.0, -72.0], [10.0, 10.0, 60.0, 10.0, 10.0]),  # case 4
    ],
)
def test_ebu_3341_gated_sequences_read_minus_23_lufs(
    levels: list[float], seconds: list[float]
) -> None:
    x = _tone_sequence(levels, seconds)
    result = level_features(x, EBU_SR)
    assert result["loudness_lufs"] == pytest.approx(-23.0, abs=0.1)
    assert result["short_term_max_lufs"] == pytest.approx(-23.0, abs=0.1)
    assert result["momentary_max_lufs"] == pytest.approx(-23.0, abs=0.1)


def test_short_term_and_momentary_maxima_of_bursts_in_silence() -> None:
    def burst(seconds: float) -> dict[str, float]:
        return level_features(_tone_sequence([-math.inf, -20.0, -math.inf], [5, seconds, 5]), 48000)

    # A 10 s burst fills both windows: the tone's own loudness (-20.03 LUFS with pyloudnorm's
    # K-weighting at 1 kHz).
    long = burst(10.0)
    assert long["short_term_max_lufs"] == pytest.approx(-20.0, abs=0.1)
    assert long["momentary_max_lufs"] == pytest.approx(-20.0, abs=0.1)
    # A 1 s burst fills a 400 ms window but only a third of a 3 s one: -10 log10(3) = -4.77 LU.
    one = burst(1.0)
    assert one["momentary_max_lufs"] == pytest.approx(-20.0, abs=0.1)
    assert one["short_term_max_lufs"] == pytest.approx(-20.0 - 4.77, abs=0.1)
    # A 200 ms burst fills half a 400 ms window: -3.01 LU.
    assert burst(0.2)["momentary_max_lufs"] == pytest.approx(-20.0 - 3.01, abs=0.1)


def test_profile_series_are_10_hz_and_integrated_is_the_fast_meter() -> None:
    x = _tone_sequence([-30.0, -20.0], [6.0, 6.05])
    profile = loudness_profile(x, EBU_SR)
    duration = x.shape[1] / EBU_SR
    assert profile.momentary_lufs.shape == (round((duration - 0.4) / 0.1) + 1,)
    assert profile.short_term_lufs.shape == (round((duration - 3.0) / 0.1) + 1,)
    assert profile.integrated_lufs == integrated_loudness(x, EBU_SR)
    # The first short-term window is the first 3 s: the -30 dBFS tone alone.
    assert profile.short_term_lufs[0] == pytest.approx(-30.0, abs=0.1)
    assert profile.short_term_lufs[-1] == pytest.approx(-20.0, abs=0.1)


# --- EBU Tech 3342: loudness range ---------------------------------------------------------


@pytest.mark.parametrize(
    ("levels", "expected_lu"),
    [
        ([-20.0, -30.0], 10.0),  # Tech 3342 case 1
        ([-20.0, -15.0], 5.0),  # case 2
        ([-40.0, -20.0], 20.0),  # case 3
        ([-50.0, -35.0, -20.0, -35.0, -50.0], 15.0),  # case 4: the -50 parts are gated out
    ],
)
def test_ebu_3342_loudness_range(levels: list[float], expected_lu: float) -> None:
    x = _tone_sequence(levels, [20.0] * len(levels))
    assert level_features(x, EBU_SR)["loudness_range_lu"] == pytest.approx(expected_lu, abs=1.0)


def test_loudness_range_gates_and_percentiles() -> None:
    assert loudness_range(np.array([-20.0])) == 0.0
    assert loudness_range(np.full(50, -80.0)) == 0.0  # below the absolute gate
    assert loudness_range(np.array([-np.inf, -np.inf])) == 0.0
    # -40..-20 LUFS in 1 LU steps (21 values) pass both gates (the power mean is about -26
    # LUFS, the relative gate about -46); -65 passes the absolute gate, not the relative one;
    # -75 and silence pass neither. Nearest-rank percentiles of the 21: index round(20 * 0.1)
    # = 2 (-38) and round(20 * 0.95) = 19 (-21).
    values = np.concatenate([np.arange(-40.0, -19.5), [-65.0] * 5, [-75.0] * 5, [-np.inf]])
    assert loudness_range(np.random.default_rng(0).permutation(values)) == pytest.approx(17.0)


# --- Against pyloudnorm ----------------------------------------------------------------------


@pytest.mark.parametrize("sr", [48000, 44100])
def test_integrated_loudness_equals_pyloudnorm(sr: int, rng: np.random.Generator) -> None:
    x = white_noise(rng, sr=sr, duration_s=6.0, amplitude=0.1)
    x[1] *= 0.5  # unequal channels
    expected = integrated_loudness_reference(x, sr)
    assert level_features(x, sr)["loudness_lufs"] == pytest.approx(expected, abs=0.01)


def test_fold_down_loudness_is_that_of_the_fold_down_on_both_channels(
    rng: np.random.Generator,
) -> None:
    x = white_noise(rng, sr=44100, duration_s=4.0, amplitude=0.1)
    x[1] = 0.3 * x[0] + 0.7 * x[1]
    mid = 0.5 * (x[0].astype(np.float64) + x[1])
    profile = loudness_profile(x, 44100)
    assert profile.fold_down_lufs == pytest.approx(
        integrated_loudness(np.stack([mid, mid]), 44100), abs=1e-9
    )


# --- Stereo image ------------------------------------------------------------------------------


def test_lr_correlation_of_known_channel_pairs(rng: np.random.Generator) -> None:
    a, b = white_noise(rng, duration_s=5.0, amplitude=0.1)
    assert level_features(np.stack([a, a]), 44100)["lr_correlation"] == 1.0
    assert level_features(np.stack([a, -a]), 44100)["lr_correlation"] == pytest.approx(-1.0)
    assert abs(level_features(np.stack([a, b]), 44100)["lr_correlation"]) < 0.05
    # R = (L + N) / sqrt(2) with N independent of L: r = 1 / sqrt(2).
    mixed = ((a + b) / math.sqrt(2.0)).astype(np.float32)
    assert level_features(np.stack([a, mixed]), 44100)["lr_correlation"] == pytest.approx(
        1.0 / math.sqrt(2.0), abs=0.02
    )
    # A silent channel: no correlation (0), however loud the other one is.
    silent = np.zeros_like(a)
    assert level_features(np.stack([a, silent]), 44100)["lr_correlation"] == 0.0
    # One channel: mono, fully correlated.
    assert level_features(a[np.newaxis], 44100)["lr_correlation"] == 1.0


def test_stereo_width_from_mid_and_side() -> None:
    left = sine(440.0, duration_s=2.0, channels=1)[0]
    assert level_features(np.stack([left, left]), 44100)["stereo_width"] == 0.0
    assert level_features(np.stack([left, 0 * left]), 44100)["stereo_width"] == pytest.approx(1.0)
    # R = L / 2: side = L / 4, mid = 3 L / 4, energy ratio 1/9.
    half = np.stack([left, 0.5 * left])
    assert level_features(half, 44100)["stereo_width"] == pytest.approx(1 / 9)
    assert level_features(np.stack([left, -left]), 44100)["stereo_width"] == MAX_STEREO_WIDTH
    assert level_features(left[np.newaxis], 44100)["stereo_width"] == 0.0


def test_mono_compatibility(rng: np.random.Generator) -> None:
    a, b = white_noise(rng, duration_s=5.0, amplitude=0.1)
    assert level_features(np.stack([a, a]), 44100)["mono_compatibility_lu"] == pytest.approx(
        0.0, abs=0.01
    )
    # Independent channels of equal level: (L + R) / 2 has half the power of each channel.
    assert level_features(np.stack([a, b]), 44100)["mono_compatibility_lu"] == pytest.approx(
        -3.01, abs=0.2
    )
    antiphase = level_features(np.stack([a, -a]), 44100)["mono_compatibility_lu"]
    assert antiphase == MIN_MONO_COMPATIBILITY_LU
    # Nearly antiphase, R = -0.99 L at about -34 LUFS: the fold-down, M = 0.005 L, is below the
    # absolute gate; the ungated energy ratio still measures it: 10 log10(2 * 0.005**2 / (1 +
    # 0.99**2)) = -45.98 LU.
    quiet = (0.1 * a).astype(np.float32)
    near = level_features(np.stack([quiet, -0.99 * quiet]), 44100)["mono_compatibility_lu"]
    assert near == pytest.approx(10.0 * math.log10(2 * 0.005**2 / (1 + 0.99**2)), abs=0.05)
    assert level_features(a[np.newaxis], 44100)["mono_compatibility_lu"] == 0.0


def test_mono_compatibility_of_uncorrelated_noise_below_the_gate(
    rng: np.random.Generator,
) -> None:
    # -80 dBFS noise: nothing passes the -70 LUFS gate, the energy ratio still reads -3 LU.
    x = white_noise(rng, duration_s=3.0, amplitude=1e-4)
    result = level_features(x, 44100)
    assert result["loudness_lufs"] == SILENT_LUFS
    assert result["mono_compatibility_lu"] == pytest.approx(-3.01, abs=0.2)
    assert result["plr_db"] == 0.0


# --- Sample-domain levels and PLR ------------------------------------------------------------


def test_sine_levels_crest_factor_and_dc() -> None:
    x = sine(997.0, sr=44100, duration_s=3.0, amplitude=0.5) + np.float32(0.1)
    result = level_features(x, 44100)
    # Mean square of 0.1 + 0.5 sin: 0.01 + 0.125.
    assert result["rms_db"] == pytest.approx(10 * math.log10(0.135), abs=0.01)
    assert result["sample_peak_dbfs"] == pytest.approx(20 * math.log10(0.6), abs=0.01)
    assert result["crest_factor_db"] == pytest.approx(
        20 * math.log10(0.6) - 10 * math.log10(0.135), abs=0.02
    )
    assert result["dc_offset"] == pytest.approx(0.1, abs=1e-4)


def test_plr_is_true_peak_minus_loudness() -> None:
    # One channel of a 997 Hz sine: loudness is 3.01 dB below its peak level (BS.1770's
    # calibration), and the true peak is the peak: PLR 3.01 dB.
    x = sine(997.0, sr=48000, duration_s=5.0, amplitude=0.5, channels=1)
    result = level_features(x, 48000)
    assert result["true_peak_dbtp"] == true_peak_dbtp(x)
    assert result["plr_db"] == result["true_peak_dbtp"] - result["loudness_lufs"]
    assert result["plr_db"] == pytest.approx(3.01, abs=0.05)


# --- Edge cases: never raise, always finite --------------------------------------------------


def _square(sr: int) -> np.ndarray:
    """Full-scale 100 Hz square wave, clipped from a sine ten times too loud."""
    x = sine(100.0, sr=sr, duration_s=2.0, amplitude=10.0)
    return np.clip(x, -1.0, 1.0)


@pytest.mark.parametrize(
    ("name", "make", "sr"),
    [
        ("one_second", lambda rng: white_noise(rng, duration_s=1.0), 44100),
        ("mono", lambda rng: white_noise(rng, duration_s=1.5, channels=1), 44100),
        ("8k", lambda rng: white_noise(rng, sr=8000, duration_s=1.0), 8000),
        ("192k", lambda rng: white_noise(rng, sr=192000, duration_s=1.0), 192000),
        ("11025_odd_step", lambda rng: white_noise(rng, sr=11025, duration_s=3.55), 11025),
        ("quiet_-80dbfs", lambda rng: white_noise(rng, duration_s=2.0, amplitude=1e-4), 44100),
        ("clipped_square", lambda rng: _square(44100), 44100),
        ("digital_silence", lambda rng: np.zeros((2, 44100), dtype=np.float32), 44100),
        ("float64", lambda rng: white_noise(rng, duration_s=1.0).astype(np.float64), 44100),
    ],
)
def test_edge_cases_give_every_key_finite(
    name: str, make, sr: int, rng: np.random.Generator
) -> None:
    result = level_features(make(rng), sr)
    assert set(result) == KEYS
    assert all(isinstance(v, float) and math.isfinite(v) for v in result.values()), result
    assert -1.0 <= result["lr_correlation"] <= 1.0
    assert result["loudness_range_lu"] >= 0.0
    if name == "one_second":
        assert result["loudness_range_lu"] == 0.0  # one short-term value (the whole second)
    if name == "clipped_square":
        assert result["sample_peak_dbfs"] == pytest.approx(0.0, abs=1e-6)
        # 94 % of the samples sit at +-1 (the sine is above 0.1 for all but 6.4 % of a period).
        x = _square(44100).astype(np.float64)
        assert result["rms_db"] == pytest.approx(10 * math.log10(np.mean(x**2)), abs=1e-6)
        assert 0.0 < result["crest_factor_db"] < 0.3
        assert result["true_peak_dbtp"] > 0.0  # a square wave overshoots between samples

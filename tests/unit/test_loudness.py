"""Shared meters: BS.1770 integrated loudness (held to pyloudnorm, the reference) and
4x-oversampled true peak (held to scipy.signal.resample_poly)."""

import numpy as np
import pytest
from scipy.signal import resample_poly

from services.common.loudness import (
    SILENT_LUFS,
    gained_true_peak,
    integrated_loudness,
    integrated_loudness_reference,
    kweighted_power,
    loudness_of_power,
    oversampled_peak_envelope,
    oversampled_peak_envelope_f32,
    true_peak_dbtp,
    true_peak_linear,
)
from tests.signals import chord_progression, click_track, sine, white_noise


@pytest.mark.parametrize("channels", [1, 2])
def test_true_peak_equals_resample_poly_measurement(
    rng: np.random.Generator, channels: int
) -> None:
    x = (0.3 * rng.standard_normal((channels, 30000))).astype(np.float32)
    reference = np.abs(resample_poly(x.astype(np.float64), 4, 1, axis=-1)).max()
    assert true_peak_linear(x) == pytest.approx(max(reference, np.abs(x).max()), rel=1e-12)


def test_inter_sample_peak_of_quarter_rate_sine_is_found() -> None:
    # fs/4 sine at 45 degrees: every sample sits at 0.707 of the true peak (-3.01 dB).
    x = sine(11025.0, sr=44100, duration_s=0.5, amplitude=1.0, phase=np.pi / 4)
    assert np.abs(x).max() == pytest.approx(np.sqrt(0.5), rel=1e-5)
    # (BS.1770-4 Annex 2 allows a few tenths of a dB of interpolation error this close to fs/2.)
    assert true_peak_dbtp(x) == pytest.approx(0.0, abs=0.2)


def test_full_scale_997hz_stereo_reads_zero_lufs() -> None:
    # BS.1770: a 0 dBFS 997 Hz sine reads -3.01 LUFS per channel; two channels sum to ~0 LUFS.
    assert integrated_loudness(
        sine(997.0, sr=48000, duration_s=3.0, amplitude=1.0), 48000
    ) == pytest.approx(0.0, abs=0.1)
    assert integrated_loudness(
        sine(997.0, sr=48000, duration_s=3.0, amplitude=1.0, channels=1), 48000
    ) == pytest.approx(-3.01, abs=0.1)


# --- The fast BS.1770 meter against pyloudnorm (the reference) --------------------------------


def _material(kind: str, sr: int, channels: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "noise":
        return white_noise(rng, sr=sr, duration_s=2.5, amplitude=0.2, channels=channels)
    if kind == "near_absolute_gate":  # about -68 LUFS: the absolute gate drops some blocks
        x = white_noise(rng, sr=sr, duration_s=2.5, amplitude=1.0, channels=channels)
        return (x * np.linspace(3e-4, 1e-3, x.shape[1], dtype=np.float32)).astype(np.float32)
    if kind == "chords":
        return chord_progression("D", "minor", sr=sr, seconds_per_chord=0.4, channels=channels)
    if kind == "clicks":  # mostly silence: both gates at work
        return click_track(100.0, sr=sr, duration_s=4.0, channels=channels)
    if kind == "loud_then_quiet":  # the relative gate drops the quiet half
        x = sine(997.0, sr=sr, duration_s=3.0, amplitude=0.5, channels=channels)
        x[:, x.shape[1] // 2 :] *= 0.01
        return x
    if kind == "near_nyquist":
        return sine(0.45 * sr, sr=sr, duration_s=1.0, amplitude=0.7, channels=channels)
    if kind == "short":  # shorter than one 400 ms block: measured zero-padded
        return white_noise(rng, sr=sr, duration_s=0.25, amplitude=0.3, channels=channels)
    raise ValueError(kind)


KINDS = [
    "noise",
    "near_absolute_gate",
    "chords",
    "clicks",
    "loud_then_quiet",
    "near_nyquist",
    "short",
]


@pytest.mark.parametrize("sr", [8000, 22050, 44100, 48000, 96000, 192000])
@pytest.mark.parametrize("kind", KINDS)
def test_fast_meter_matches_pyloudnorm(kind: str, sr: int, rng: np.random.Generator) -> None:
    for channels in (1, 2):
        x = _material(kind, sr, channels, rng)
        reference = integrated_loudness_reference(x, sr)
        assert reference > SILENT_LUFS  # every kind is measurable
        assert integrated_loudness(x, sr) == pytest.approx(reference, abs=0.01)
        # Same biquads, same operation order, same blocks: it agrees far more closely.
        assert integrated_loudness(x, sr) == pytest.approx(reference, abs=1e-6)


@pytest.mark.parametrize("channels", [3, 5])
def test_fast_meter_weights_surround_channels_like_pyloudnorm(
    channels: int, rng: np.random.Generator
) -> None:
    x = white_noise(rng, sr=48000, duration_s=2.0, channels=channels)
    x *= np.linspace(0.2, 1.0, channels, dtype=np.float32)[:, np.newaxis]
    assert integrated_loudness(x, 48000) == pytest.approx(
        integrated_loudness_reference(x, 48000), abs=1e-6
    )


def test_fast_meter_reads_float64_and_strided_audio(rng: np.random.Generator) -> None:
    x = white_noise(rng, sr=44100, duration_s=1.5)
    interleaved = np.ascontiguousarray(x.T)  # (frames, channels), as soundfile reads it
    expected = integrated_loudness(x, 44100)
    assert integrated_loudness(x.astype(np.float64), 44100) == pytest.approx(expected, abs=1e-9)
    assert integrated_loudness(interleaved.T, 44100) == expected
    assert true_peak_linear(interleaved.T) == true_peak_linear(x)


def test_silence_and_too_many_channels() -> None:
    assert integrated_loudness(np.zeros((2, 48000), dtype=np.float32), 48000) == SILENT_LUFS
    assert integrated_loudness(np.full((1, 48000), 1e-6, dtype=np.float32), 48000) == SILENT_LUFS
    with pytest.raises(ValueError):
        integrated_loudness(np.zeros((6, 48000), dtype=np.float32), 48000)


# --- Loudness from stored K-weighted power ----------------------------------------------------


def test_power_gives_the_measured_loudness_and_a_gain_scales_it_exactly(
    rng: np.random.Generator,
) -> None:
    sr = 44100
    x = chord_progression("F", "major", sr=sr, seconds_per_chord=0.5, repeats=2)
    power = kweighted_power(x, sr)
    assert power.shape == (x.shape[1],) and power.dtype == np.float64
    assert loudness_of_power(power, sr) == pytest.approx(integrated_loudness(x, sr), abs=1e-9)
    for db in (-50.0, -12.0, 6.0):  # -50 dB takes quiet blocks under the absolute gate
        gain = 10 ** (db / 20)
        measured = integrated_loudness(x.astype(np.float64) * gain, sr)
        assert loudness_of_power(power, sr, scale=gain) == pytest.approx(measured, abs=1e-9)
    power32 = kweighted_power(x, sr, dtype=np.float32)
    assert power32.dtype == np.float32
    assert loudness_of_power(power32, sr) == pytest.approx(integrated_loudness(x, sr), abs=1e-5)


def test_power_weighted_by_a_slow_gain_predicts_the_gained_loudness(
    rng: np.random.Generator,
) -> None:
    sr = 48000
    x = white_noise(rng, sr=sr, duration_s=4.0, amplitude=0.2)
    gain = (0.5 + 0.4 * np.sin(2 * np.pi * 0.5 * np.arange(x.shape[1]) / sr)).astype(np.float32)
    predicted = loudness_of_power(kweighted_power(x, sr), sr, gain=gain)
    measured = integrated_loudness(x * gain, sr)
    assert predicted == pytest.approx(measured, abs=0.02)
    with pytest.raises(ValueError):
        loudness_of_power(kweighted_power(x, sr), sr, gain=gain[:-1])


# --- True-peak kernels ------------------------------------------------------------------------


@pytest.mark.parametrize("oversampling", [2, 3, 4, 8])
def test_envelope_equals_resample_poly_at_any_oversampling(
    oversampling: int, rng: np.random.Generator
) -> None:
    x = 0.3 * rng.standard_normal((2, 20001))
    up = np.abs(resample_poly(x, oversampling, 1, axis=-1))
    expected = np.maximum(up.reshape(2, -1, oversampling).max(axis=(0, 2)), np.abs(x).max(axis=0))
    env = oversampled_peak_envelope(x, oversampling=oversampling)
    np.testing.assert_allclose(env, expected, rtol=1e-12)
    assert true_peak_linear(x, oversampling=oversampling) == float(env.max())


def test_float32_envelope_is_rounded_up(rng: np.random.Generator) -> None:
    x = (0.3 * rng.standard_normal((2, 30000))).astype(np.float32)
    exact = oversampled_peak_envelope(x)
    rounded = oversampled_peak_envelope_f32(x)
    assert rounded.dtype == np.float32
    assert np.all(rounded >= exact)
    assert np.all(rounded <= exact * (1 + 3.6e-7))
    # float32 audio is read as is: the same envelope as its float64 copy.
    np.testing.assert_array_equal(exact, oversampled_peak_envelope(x.astype(np.float64)))


@pytest.mark.parametrize("per_frame", [False, True])
def test_gained_true_peak_renders_and_measures_in_one_pass(
    per_frame: bool, rng: np.random.Generator
) -> None:
    x = (0.3 * rng.standard_normal((2, 10001))).astype(np.float32)
    gain = rng.uniform(0.2, 1.0, x.shape[1]).astype(np.float32) if per_frame else None
    out = np.empty_like(x)
    peak = gained_true_peak(x, scale=1.7, gain=gain, out=out)
    g = 1.7 * (gain.astype(np.float64) if per_frame else 1.0)
    np.testing.assert_array_equal(out, (x.astype(np.float64) * g).astype(np.float32))
    assert peak == true_peak_linear(out)  # exactly what the meter reads
    with pytest.raises(ValueError):
        gained_true_peak(x, out=np.empty(x.shape, dtype=np.float64))


def test_power_shorter_than_a_block_is_measured_zero_padded(rng: np.random.Generator) -> None:
    sr = 8000
    power = kweighted_power(white_noise(rng, sr=sr, duration_s=1.0), sr)[:1000]
    padded = np.pad(power, (0, 3200 - 1000))
    assert loudness_of_power(power, sr) == loudness_of_power(padded, sr) > SILENT_LUFS
    gain = np.full(1000, 0.5)
    assert loudness_of_power(power, sr, gain=gain) == pytest.approx(
        loudness_of_power(power, sr, scale=0.5), abs=1e-9
    )

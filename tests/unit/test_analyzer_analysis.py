"""The analyze() contract: every field filled, finite and in range, at every sample rate."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.analyzer import genre
from services.analyzer.analysis import analyze, warm_up
from services.common.errors import InvalidAudioError, UnsupportedFormatError
from tests.signals import click_track, little_song, sine

KEY_PATTERN = re.compile(r"^(C|C#|D|Eb|E|F|F#|G|Ab|A|Bb|B) (major|minor)$")
FEATURE_NAMES = {
    "rms_db",
    "sample_peak_dbfs",
    "dc_offset",
    "short_term_max_lufs",
    "momentary_max_lufs",
    "loudness_range_lu",
    "plr_db",
    "lr_correlation",
    "mono_compatibility_lu",
    "onset_rate_hz",
    "percussive_ratio",
    "low_band_share",
    "high_band_share",
    "spectral_flatness",
    "spectral_rolloff_hz",
    "spectral_bandwidth_hz",
    "tuning_cents",
    "swing_ratio",
    "reverb_time_s",
    "production_confidence",
    *(
        f"tonal_balance_{band}{suffix}"
        for band in ("low", "low_mid", "high_mid", "high")
        for suffix in ("", "_deviation_db")
    ),
}


def assert_valid(result, *, sample_rate: int, channels: int, frames: int) -> None:
    assert result.sample_rate == sample_rate
    assert result.channels == channels
    assert result.duration_s == pytest.approx(frames / sample_rate)
    numbers = [
        result.loudness_lufs,
        result.true_peak_dbtp,
        result.tempo_bpm,
        result.crest_factor_db,
        result.spectral_centroid_hz,
        *result.beat_times_s,
        *result.features.values(),
        *result.genre_probabilities.values(),
    ]
    assert all(math.isfinite(v) for v in numbers)
    assert -70.0 <= result.loudness_lufs <= 10.0
    assert 40.0 <= result.tempo_bpm <= 240.0
    for unit_interval in (
        result.tempo_confidence,
        result.key_confidence,
        result.energy,
        result.meter_confidence,
        result.valence,
        result.danceability,
        result.features["percussive_ratio"],
        result.features["low_band_share"],
        result.features["high_band_share"],
        result.features["spectral_flatness"],
    ):
        assert 0.0 <= unit_interval <= 1.0
    assert result.stereo_width >= 0.0
    assert result.crest_factor_db >= 0.0
    assert 0.0 <= result.spectral_centroid_hz <= 11025.0
    assert KEY_PATTERN.match(result.key)
    assert result.genre in genre.GENRES
    assert result.genre_method in ("classifier", "override")
    assert result.meter in ("4/4", "3/4")
    assert result.compression_style in ("uncompressed", "modern", "vintage")
    assert result.eq_character in ("bright", "warm", "neutral", "muddy")
    assert result.reverb_style in ("dry", "intimate", "plate", "hall", "spacious")
    assert 0.0 <= result.reverb_amount <= 1.0
    assert set(result.features) == FEATURE_NAMES
    assert set(result.genre_probabilities) == set(genre.GENRES)
    assert sum(result.genre_probabilities.values()) == pytest.approx(1.0)
    beats = np.array(result.beat_times_s)
    assert np.all(np.diff(beats) > 0)
    assert np.all((beats >= 0) & (beats <= result.duration_s))


def test_a_little_song_fills_every_field() -> None:
    audio = little_song(sr=44100, duration_s=8.0)
    result = analyze(audio, 44100)
    assert_valid(result, sample_rate=44100, channels=2, frames=audio.shape[1])
    assert result.key == "A minor"
    assert result.tempo_bpm == pytest.approx(120.0, rel=0.02)
    assert result.stereo_width > 0.0


@pytest.mark.parametrize("sr", [8000, 22050, 96000, 192000])
def test_odd_sample_rates(sr: int) -> None:
    audio = click_track(120, sr=sr, duration_s=6.0)
    result = analyze(audio, sr)
    assert_valid(result, sample_rate=sr, channels=2, frames=audio.shape[1])
    assert result.tempo_bpm == pytest.approx(120.0, rel=0.02)


def test_one_second_of_mono_audio_is_enough() -> None:
    audio = sine(440.0, sr=16000, duration_s=1.0, channels=1)
    assert_valid(analyze(audio, 16000), sample_rate=16000, channels=1, frames=16000)


def test_float64_input_and_numpy_integer_rate_are_accepted() -> None:
    audio = sine(440.0, duration_s=2.0).astype(np.float64)
    result = analyze(audio, np.int64(44100))
    assert result.sample_rate == 44100


def test_analysis_is_deterministic_and_leaves_the_input_alone() -> None:
    audio = little_song(sr=22050, duration_s=5.0)
    before = audio.copy()
    assert analyze(audio, 22050) == analyze(audio, 22050)
    np.testing.assert_array_equal(audio, before)


@pytest.mark.parametrize(
    ("audio", "reason"),
    [
        (np.full((2, 44100), np.nan, dtype=np.float32), "NaN"),
        (sine(440.0, duration_s=0.5), "long"),
        (np.zeros((3, 44100), dtype=np.float32), "shape"),
        (np.ones((2, 44100), dtype=np.int16), "floating"),
        (np.ones(44100, dtype=np.float32), "shape"),
    ],
)
def test_invalid_audio_is_rejected(audio: np.ndarray, reason: str) -> None:
    with pytest.raises(InvalidAudioError, match=reason):
        analyze(audio, 44100)


@pytest.mark.parametrize("sr", [4000, 384000, 0])
def test_unsupported_sample_rate_is_rejected(sr: int) -> None:
    with pytest.raises(UnsupportedFormatError, match="sample rate"):
        analyze(sine(440.0, sr=44100, duration_s=2.0), sr)


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    seed=st.integers(0, 2**32 - 1),
    sr=st.sampled_from([8000, 11025, 32000, 44100, 48000]),
    channels=st.sampled_from([1, 2]),
    duration_s=st.floats(1.0, 3.0),
    level_db=st.floats(-90.0, 0.0),
    dc=st.floats(-0.2, 0.2),
)
def test_any_valid_audio_gives_finite_bounded_results(
    seed: int, sr: int, channels: int, duration_s: float, level_db: float, dc: float
) -> None:
    rng = np.random.default_rng(seed)
    frames = int(sr * duration_s)
    # Noise bursts of random density and level over a DC offset: finite, bounded, any level.
    noise = rng.standard_normal((channels, frames)) * (rng.random((channels, frames)) < 0.05)
    audio = (10 ** (level_db / 20) * (noise / max(np.abs(noise).max(), 1e-9) + dc)).astype(
        np.float32
    )
    result = analyze(audio, sr)
    assert_valid(result, sample_rate=sr, channels=channels, frames=frames)


@pytest.mark.parametrize(
    ("name", "audio", "sr"),
    [
        ("digital silence", np.zeros((2, 44100), dtype=np.float32), 44100),
        ("silence at -130 dBFS", np.full((2, 88200), 3e-7, dtype=np.float32), 44100),
        ("one second of noise", None, 44100),
    ],
)
def test_audio_without_music_gives_a_result_with_low_confidence(
    name: str, audio: np.ndarray | None, sr: int, rng: np.random.Generator
) -> None:
    if audio is None:
        audio = (0.3 * rng.standard_normal((2, sr))).astype(np.float32)
    result = analyze(audio, sr)
    assert_valid(result, sample_rate=sr, channels=audio.shape[0], frames=audio.shape[1])
    assert result.tempo_confidence < 0.3, name
    assert result.key_confidence < 0.3, name
    assert result.meter_confidence < 0.3, name


def test_clipped_and_narrow_band_music_is_still_read() -> None:
    # 24 dB too hot and clipped hard at full scale; and the same song as 8 kHz mono.
    song = little_song(sr=44100, duration_s=8.0)
    clipped = np.clip(16.0 * song, -1.0, 1.0)
    result = analyze(clipped, 44100)
    assert_valid(result, sample_rate=44100, channels=2, frames=song.shape[1])
    assert result.crest_factor_db < 4.0
    assert result.key == "A minor"
    narrow = little_song(sr=8000, duration_s=8.0, channels=1)
    result = analyze(narrow, 8000)
    assert_valid(result, sample_rate=8000, channels=1, frames=narrow.shape[1])
    assert result.key == "A minor"


def test_silence_reads_at_the_floors() -> None:
    result = analyze(np.zeros((2, 44100), dtype=np.float32), 44100)
    assert result.loudness_lufs == -70.0
    assert result.tempo_confidence == 0.0 and result.key_confidence == 0.0
    assert result.meter_confidence == 0.0
    assert result.beat_times_s == []


def test_warm_up_runs() -> None:
    warm_up()

"""Loudness normalisation and limiting against the quality floor, measured with the shared meters
(BS.1770-4 integrated loudness, 4x-oversampled true peak)."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest

from services.common.errors import InvalidAudioError, InvalidParameterError
from services.common.loudness import integrated_loudness, true_peak_dbtp
from services.renderer.mastering import (
    MAX_ROUNDS,
    RELEASE_STEPS_MS,
    TOLERANCE_LU,
    master,
    normalise_and_limit,
)
from tests.signals import chord_progression, click_track, sine, white_noise

FLOOR_LU = 0.5
CEILING = -1.0


def at_lufs(x: np.ndarray, sr: int, lufs: float) -> np.ndarray:
    return (x * 10 ** ((lufs - integrated_loudness(x, sr)) / 20)).astype(np.float32)


def make_input(kind: str, sr: int, channels: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "quiet_noise":  # -40 LUFS
        return at_lufs(white_noise(rng, sr=sr, duration_s=3.0, channels=channels), sr, -40.0)
    if kind == "hot_clipped":  # clipped noise, loudness above 0 LUFS, true peak above 0 dBTP
        return np.clip(
            white_noise(rng, sr=sr, duration_s=3.0, amplitude=1.5, channels=channels), -1, 1
        )
    if kind == "chords":
        return chord_progression(
            "E", "minor", sr=sr, seconds_per_chord=0.5, repeats=2, channels=channels
        )
    if kind == "isp_sine":  # samples at -3 dBFS, true peak at 0 dBTP
        return sine(
            sr / 4, sr=sr, duration_s=3.0, amplitude=1.0, phase=np.pi / 4, channels=channels
        )
    if kind == "quiet_sine":
        return sine(997.0, sr=sr, duration_s=3.0, amplitude=0.01, channels=channels)
    raise ValueError(kind)


def assert_floor(y: np.ndarray, x: np.ndarray, sr: int, target: float) -> None:
    assert y.shape == x.shape and y.dtype == np.float32
    assert np.all(np.isfinite(y))
    assert integrated_loudness(y, sr) == pytest.approx(target, abs=FLOOR_LU)
    assert true_peak_dbtp(y) <= CEILING


@pytest.mark.parametrize("target", [-14.0, -16.0, -23.0])
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("sr", [8000, 44100, 192000])
@pytest.mark.parametrize("kind", ["quiet_noise", "hot_clipped", "chords", "isp_sine", "quiet_sine"])
def test_quality_floor(kind: str, sr: int, channels: int, target: float, rng) -> None:
    x = make_input(kind, sr, channels, rng)
    result = master(x, sr, target_lufs=target, ceiling_dbtp=CEILING)
    assert_floor(result.audio, x, sr, target)
    # Converged to the tight tolerance, and the figures reported are the measured ones.
    assert result.loudness_lufs == pytest.approx(target, abs=0.1)
    assert result.loudness_lufs == pytest.approx(integrated_loudness(result.audio, sr), abs=1e-9)
    assert result.true_peak_dbtp == pytest.approx(true_peak_dbtp(result.audio), abs=1e-6)


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("sr", [22050, 48000])
def test_click_track_is_very_peaky_and_still_meets_the_floor(channels: int, sr: int) -> None:
    """About 27 dB peak-to-loudness: reaching -23 LUFS takes heavy limiting of every click."""
    x = click_track(120.0, sr=sr, duration_s=8.0, channels=channels)
    assert true_peak_dbtp(x) - integrated_loudness(x, sr) > 23.0
    y = normalise_and_limit(x, sr, target_lufs=-23.0, ceiling_dbtp=CEILING)
    assert_floor(y, x, sr, -23.0)


def test_unreachable_target_ends_with_the_best_it_can_do() -> None:
    """A -5 LUFS target on chords (or -14 on a click track) cannot be met under a -1 dBTP
    ceiling without destroying the signal: the loop stops, the ceiling holds and the measured
    loudness tells the caller how far it got."""
    sr = 44100
    for x, target in (
        (chord_progression("A", "minor", sr=sr, seconds_per_chord=0.5, repeats=2), -5.0),
        (click_track(120.0, sr=sr, duration_s=6.0), -14.0),
    ):
        before = integrated_loudness(x, sr)
        result = master(x, sr, target_lufs=target)
        assert result.rounds <= MAX_ROUNDS * len(RELEASE_STEPS_MS)
        assert np.all(np.isfinite(result.audio))
        assert true_peak_dbtp(result.audio) <= CEILING
        assert before < result.loudness_lufs < target
        assert result.loudness_lufs == pytest.approx(integrated_loudness(result.audio, sr))


def test_no_dc_is_added(rng) -> None:
    sr = 44100
    for offset in (0.0, 0.01):
        x = (white_noise(rng, duration_s=3.0, amplitude=0.5) + offset).astype(np.float32)
        result = master(x, sr, target_lufs=-14.0)
        gain = 10 ** (result.gain_db / 20)
        mean_in = np.mean(x, axis=1, dtype=np.float64)
        mean_out = np.mean(result.audio, axis=1, dtype=np.float64)
        assert np.all(np.abs(mean_out) <= np.abs(mean_in) * gain + 1e-4)


def test_no_limiting_needed_is_a_pure_gain() -> None:
    sr = 44100
    x = chord_progression("G", "major", sr=sr, seconds_per_chord=0.5, repeats=2)
    result = master(x, sr, target_lufs=-20.0)
    assert result.rounds == 1
    np.testing.assert_allclose(result.audio, x * 10 ** (result.gain_db / 20), rtol=1e-6, atol=1e-9)


def test_normalise_and_limit_is_the_audio_of_master(rng) -> None:
    x = white_noise(rng, duration_s=2.0, amplitude=0.3)
    np.testing.assert_array_equal(
        normalise_and_limit(x, 44100, target_lufs=-16.0),
        master(x, 44100, target_lufs=-16.0).audio,
    )


def test_digital_silence_stays_silent() -> None:
    x = np.zeros((2, 44100), dtype=np.float32)
    result = master(x, 44100)
    np.testing.assert_array_equal(result.audio, x)
    assert result.true_peak_dbtp == -math.inf


def test_short_input_is_handled(rng) -> None:
    x = white_noise(rng, duration_s=0.2, amplitude=0.3)
    y = normalise_and_limit(x, 44100)
    assert y.shape == x.shape and np.all(np.isfinite(y)) and true_peak_dbtp(y) <= CEILING


@pytest.mark.parametrize(
    "kwargs", [{"target_lufs": 3.0}, {"target_lufs": float("nan")}, {"ceiling_dbtp": 1.0}]
)
def test_invalid_options_are_rejected(kwargs, rng) -> None:
    with pytest.raises(InvalidParameterError):
        master(white_noise(rng, duration_s=0.5), 44100, **kwargs)


def test_invalid_audio_is_rejected() -> None:
    with pytest.raises(InvalidAudioError):
        master(np.array([[0.0, np.nan]], dtype=np.float32), 44100)


def test_a_start_up_transient_does_not_hide_a_reachable_target(rng) -> None:
    """A huge burst at the start (a compressor catching up, say) then music 35 dB down: with more
    gain the loudness first stalls, then even falls (the release after the limited burst holds
    the music down), and only further up does the music count. The search looks past that."""
    sr = 8000
    x = white_noise(rng, sr=sr, duration_s=0.6, amplitude=0.03, channels=1)
    x += sine(220.0, sr=sr, duration_s=0.6, amplitude=0.03, channels=1)
    x[:, :400] *= 60.0  # +16 dBTP for 50 ms
    result = master(x, sr, target_lufs=-14.0)
    assert result.loudness_lufs == pytest.approx(-14.0, abs=TOLERANCE_LU)
    assert true_peak_dbtp(result.audio) <= CEILING
    assert result.limiter_release_ms == RELEASE_STEPS_MS[0]


@pytest.mark.parametrize("kind", ["hot_clipped", "chords", "isp_sine"])
def test_the_gain_search_runs_on_predictions_and_renders_once(kind: str, rng) -> None:
    """The limiter's effect on loudness is predicted from the input's K-weighted power, so the
    chosen gain is rendered (limited and measured) once for ordinary material."""
    sr = 44100
    x = make_input(kind, sr, 2, rng)
    result = master(x, sr, target_lufs=-12.0)
    assert result.rounds == 1
    assert result.loudness_lufs == pytest.approx(-12.0, abs=TOLERANCE_LU)


def test_float32_input_is_not_copied_to_float64(rng) -> None:
    """Peak memory of a master stays within 3x the float32 input: the envelope, K-weighted power
    and gain curve are float32 (0.5x each), plus the output; no float64 copy of the audio."""
    sr = 44100
    x = make_input("hot_clipped", sr, 2, rng)
    master(x, sr)  # compiled and warmed up
    tracemalloc.start()
    try:
        result = master(x, sr)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.rounds == 1
    assert peak <= 3.0 * x.nbytes


def test_float64_input_is_accepted(rng) -> None:
    x = make_input("chords", 22050, 2, rng).astype(np.float64)
    result = master(x, 22050, target_lufs=-16.0)
    assert_floor(result.audio, x, 22050, -16.0)

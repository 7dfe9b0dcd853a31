"""Valence and danceability: their definitions, and their order on generated pairs of songs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.signal

from services.analyzer import mood
from services.analyzer.analysis import analyze
from services.predictor.songgen import generate_song

SR = 44100


def test_valence_definition_at_its_corners() -> None:
    low = mood.valence(major_probability=0, tempo_bpm=50, spectral_centroid_hz=300, onset_rate_hz=0)
    assert low == 0.0
    high = mood.valence(
        major_probability=1, tempo_bpm=200, spectral_centroid_hz=8000, onset_rate_hz=1e6
    )
    assert high == pytest.approx(1.0)
    mid = mood.valence(
        major_probability=0.5, tempo_bpm=120, spectral_centroid_hz=1000, onset_rate_hz=4
    )
    assert mid == pytest.approx(0.4 * 0.5 + 0.25 * 0.5 + 0.2 / 3 + 0.15 * (1 - math.exp(-1)))


def test_steadiness_of_a_grid_and_of_rubato() -> None:
    grid = np.arange(32) * 0.5
    assert mood.beat_steadiness(grid) == pytest.approx(1.0)
    wandering = np.cumsum(0.5 * (1 + 0.2 * np.sin(np.arange(32))))
    assert mood.beat_steadiness(wandering) == 0.0
    assert mood.beat_steadiness(grid[:3]) == 0.0


def test_danceability_peaks_at_the_dance_tempo() -> None:
    beats = np.arange(40) * 0.5

    def at(bpm: float) -> float:
        return mood.danceability(
            tempo_confidence=1, beat_times_s=beats, tempo_bpm=bpm, percussive_ratio=0.5
        )

    assert at(118) == pytest.approx(1.0)
    assert at(118) > at(90) > at(60)
    assert at(118) > at(160) > at(220)


def _rubato(audio: np.ndarray, depth: float = 0.15, period_s: float = 6.0) -> np.ndarray:
    """Time-warped so the local tempo swings by ±``depth`` over ``period_s``."""
    n = audio.shape[1]
    t = np.arange(n) / SR
    source = t + depth * period_s / (2 * np.pi) * np.sin(2 * np.pi * t / period_s)
    source = np.clip(source, 0, t[-1])
    return np.stack([np.interp(source, t, ch) for ch in audio]).astype(np.float32)


def _dark(audio: np.ndarray) -> np.ndarray:
    sos = scipy.signal.butter(4, 1500, fs=SR, output="sos")
    return scipy.signal.sosfilt(sos, audio, axis=1).astype(np.float32)


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_bright_fast_major_steady_beats_dark_slow_minor_rubato(seed: int) -> None:
    bright = generate_song("electronic", seed, key="D major", tempo_bpm=126, duration_s=20.0)
    dark = generate_song("ballad", seed, key="D minor", tempo_bpm=62, duration_s=20.0)
    a = analyze(bright.mix, SR)
    b = analyze(_dark(_rubato(dark.mix)), SR)
    assert a.valence > b.valence + 0.2
    assert a.danceability > b.danceability + 0.2
    assert 0 <= b.valence < a.valence <= 1 and 0 <= b.danceability < a.danceability <= 1

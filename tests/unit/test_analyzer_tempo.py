"""Tempo, beats and onset rate, measured on generated audio."""

from __future__ import annotations

import numpy as np
import pytest

from services.analyzer import tempo
from services.analyzer.analysis import analyze
from tests.signals import click_track, drum_loop, sine, white_noise

SR = 44100


@pytest.mark.parametrize("bpm", [80, 100, 120, 128, 140, 170])
def test_click_track_tempo_within_two_percent(bpm: float) -> None:
    result = analyze(click_track(bpm, sr=SR, duration_s=20.0), SR)
    assert result.tempo_bpm == pytest.approx(bpm, rel=0.02)  # not half, not double
    assert result.tempo_confidence > 0.5


def test_beats_fall_on_the_clicks() -> None:
    bpm, duration_s = 120.0, 12.0
    result = analyze(click_track(bpm, sr=SR, duration_s=duration_s), SR)
    beats = np.array(result.beat_times_s)
    clicks = np.arange(0.0, duration_s - 0.05, 60.0 / bpm)
    distance = np.abs(beats[:, None] - clicks[None, :]).min(axis=1)
    assert np.all(distance < 0.05)  # within about two analysis frames
    assert beats.size >= 0.9 * clicks.size
    assert np.all(np.diff(beats) > 0)
    assert np.median(np.diff(beats)) == pytest.approx(60.0 / bpm, rel=0.05)


@pytest.mark.parametrize(
    ("bpm", "four_on_the_floor", "hats_per_beat"),
    [(90, False, 2), (120, False, 2), (128, True, 4), (140, False, 0), (170, True, 2)],
)
def test_drum_loop_tempo_is_the_beat_not_the_bar(
    bpm: float, four_on_the_floor: bool, hats_per_beat: int, rng: np.random.Generator
) -> None:
    # Kick and snare alternate, so the two-beat period correlates best: the classic half-tempo
    # trap. Quiet hats on eighths or sixteenths must not double the tempo either.
    loop = drum_loop(
        bpm, rng=rng, sr=SR, four_on_the_floor=four_on_the_floor, hats_per_beat=hats_per_beat
    )
    assert analyze(loop, SR).tempo_bpm == pytest.approx(bpm, rel=0.02)


def test_antiphase_stereo_still_has_a_tempo() -> None:
    clicks = click_track(100, sr=SR, duration_s=10.0)
    clicks[1] *= -1.0  # the mono downmix cancels completely
    result = analyze(clicks, SR)
    assert result.tempo_bpm == pytest.approx(100.0, rel=0.02)


def test_confidence_separates_a_metronome_from_noise_and_a_tone(rng: np.random.Generator) -> None:
    metronome = analyze(click_track(120, sr=SR, duration_s=10.0), SR).tempo_confidence
    noise = analyze(white_noise(rng, sr=SR, duration_s=10.0), SR).tempo_confidence
    tone = analyze(sine(440.0, sr=SR, duration_s=5.0), SR).tempo_confidence
    assert 0.0 <= noise < 0.3
    assert 0.0 <= tone < 0.3
    assert metronome > noise + 0.4


def test_onset_rate_counts_clicks() -> None:
    result = analyze(click_track(120, sr=SR, duration_s=10.0), SR)
    assert result.features["onset_rate_hz"] == pytest.approx(2.0, abs=0.2)


def test_envelope_without_onsets_reports_the_default_with_zero_confidence() -> None:
    estimate = tempo.estimate_tempo(onset_env=np.zeros(600), sr=22050, hop_length=512)
    assert estimate.bpm == tempo.DEFAULT_BPM
    assert estimate.confidence == 0.0
    assert estimate.beat_times_s.size == 0


def test_synthetic_pulse_envelope_gives_its_period() -> None:
    # An impulse every 21.5 frames of 512 samples at 22050 Hz: 120.2 BPM, between two lags.
    sr, hop = 22050, 512
    frames = 1200
    env = np.zeros(frames)
    env[np.round(np.arange(0, frames - 1, 21.5)).astype(int)] = 1.0
    estimate = tempo.estimate_tempo(onset_env=env, sr=sr, hop_length=hop)
    assert estimate.bpm == pytest.approx(60.0 * sr / (hop * 21.5), rel=0.01)

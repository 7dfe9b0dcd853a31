"""Tempo, beats and onset rate, measured on generated audio."""

from __future__ import annotations

import numpy as np
import pytest

from services.analyzer import tempo
from services.analyzer.analysis import analyze
from services.analyzer.evaluate import tempo_acc2
from services.analyzer.labelled import CI_SEED0
from services.predictor.songgen import generate_song
from tests.signals import click_track, drum_loop, sine, white_noise

SR = 44100


@pytest.mark.parametrize("bpm", [80, 100, 120, 128, 140, 170])
def test_click_track_tempo_within_two_percent(bpm: float) -> None:
    result = analyze(click_track(bpm, sr=SR, duration_s=20.0), SR)
    assert result.tempo_bpm == pytest.approx(bpm, rel=0.02)  # not half, not double
    assert result.tempo_confidence > 0.3


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


def test_accent_contrast_tells_the_beat_from_a_pulse_twice_as_slow() -> None:
    # Strong onsets every 20 frames, weak ones halfway between.
    env = np.zeros(2000)
    env[::20] = 1.0
    env[10::20] = 0.2
    # On the beat: pulses 1.0, halfway 0.2.
    assert tempo.accent_contrast(env, 20.0) == pytest.approx((1.0 - 0.2) / 1.2)
    # Every other beat: halfway between its pulses is a beat as strong as the pulses.
    assert tempo.accent_contrast(env, 40.0) == pytest.approx(0.0, abs=1e-9)


def test_candidates_hold_the_metrical_levels_around_the_strongest_period() -> None:
    sr, hop = 22050, 512
    env = np.zeros(2400)
    env[::20] = 1.0
    env[10::20] = 0.3
    p = tempo.periodicity(onset_env=env, low_env=env, sr=sr, hop_length=hop)
    bpms, rows = tempo.level_candidates(p)
    beat = 60.0 * sr / (hop * 20)
    for ratio in (1.0, 0.5, 1 / 3):  # twice the beat (258 BPM) is out of range
        assert np.min(np.abs(bpms / (beat * ratio) - 1)) < 0.02
    assert np.all((bpms >= tempo.MIN_BPM) & (bpms <= tempo.MAX_BPM))
    assert rows.shape == (bpms.size, len(tempo.LEVEL_FEATURES))
    assert np.all(np.isfinite(rows))


@pytest.mark.parametrize(
    ("bpm", "four_on_the_floor", "hats_per_beat"),
    [(90, False, 2), (120, False, 2), (128, True, 4), (140, False, 0), (170, True, 2)],
)
def test_sparse_synthetic_drum_loop_is_read_at_a_metrical_level_of_its_beat(
    bpm: float, four_on_the_floor: bool, hats_per_beat: int, rng: np.random.Generator
) -> None:
    # A sine kick, a noise snare and faint hats: sparser than anything the tempo model was
    # trained on. It may take the half-time reading (measured: 128, 140 and 170 BPM read as
    # 64, 70 and 85), but never a wrong relation, and its beats fall on the drum hits.
    loop = drum_loop(
        bpm, rng=rng, sr=SR, four_on_the_floor=four_on_the_floor, hats_per_beat=hats_per_beat
    )
    result = analyze(loop, SR)
    assert tempo_acc2(result.tempo_bpm, bpm)
    assert result.tempo_bpm in (pytest.approx(bpm, rel=0.02), pytest.approx(bpm / 2, rel=0.02))
    hits = np.arange(0.0, 12.0, 60.0 / bpm)
    beats = np.array(result.beat_times_s)
    assert np.median(np.abs(beats[:, None] - hits[None, :]).min(axis=1)) < 0.05  # 2 frames


@pytest.mark.parametrize("genre", ["pop", "rock", "electronic", "jazz", "ballad"])
def test_drums_of_a_held_out_generated_song_give_its_tempo(genre: str) -> None:
    # Real drum-kit samples, the kit playing alone: the beat, not half or double.
    song = generate_song(genre, CI_SEED0 + 700 + len(genre), duration_s=20.0)
    drums = next(n for n, s in song.truth["stems"].items() if s["role"] == "drums")
    result = analyze(song.stems[drums], song.sample_rate)
    assert result.tempo_bpm == pytest.approx(song.truth["tempo_bpm"], rel=0.04)


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
    silent = np.zeros(600)
    p = tempo.periodicity(onset_env=silent, low_env=silent, sr=22050, hop_length=512)
    estimate = tempo.estimate_tempo(p)
    assert estimate.bpm == tempo.DEFAULT_BPM
    assert estimate.confidence == 0.0
    assert estimate.beat_times_s.size == 0


def test_synthetic_pulse_envelope_gives_its_period() -> None:
    # An impulse every 21.5 frames of 512 samples at 22050 Hz: 120.2 BPM, between two lags.
    sr, hop = 22050, 512
    frames = 1200
    env = np.zeros(frames)
    env[np.round(np.arange(0, frames - 1, 21.5)).astype(int)] = 1.0
    p = tempo.periodicity(onset_env=env, low_env=env, sr=sr, hop_length=hop)
    estimate = tempo.estimate_tempo(p)
    assert estimate.bpm == pytest.approx(60.0 * sr / (hop * 21.5), rel=0.01)

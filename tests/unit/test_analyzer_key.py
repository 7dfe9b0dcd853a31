"""Key detection on generated chord progressions and on idealised chroma vectors."""

from __future__ import annotations

import re

import numpy as np
import pytest

from services.analyzer import key
from services.analyzer.analysis import analyze
from tests.signals import NOTE_NAMES, chord_progression, click_track, white_noise

#: tests.signals spells every black key with a sharp; keys are reported as C# Eb F# Ab Bb.
HOUSE_SPELLING = dict(zip(NOTE_NAMES, key.TONICS, strict=True))
KEY_PATTERN = re.compile(r"^(C|C#|D|Eb|E|F|F#|G|Ab|A|Bb|B) (major|minor)$")


@pytest.mark.parametrize(
    ("tonic", "mode"),
    [
        ("C", "major"),
        ("A", "minor"),
        ("F#", "major"),
        ("D#", "minor"),
        ("A#", "major"),
        ("E", "minor"),
        ("G", "major"),
        ("C#", "minor"),
        ("G#", "major"),
        ("F", "minor"),
    ],
)
def test_chord_progression_key(tonic: str, mode: str) -> None:
    result = analyze(chord_progression(tonic, mode, sr=22050, repeats=2), 22050)
    assert result.key == f"{HOUSE_SPELLING[tonic]} {mode}"
    assert result.key_confidence > 0.5


def test_key_survives_a432_tuning() -> None:
    # The same samples declared at 432/440 of the rate: every pitch 31.7 cents flat.
    audio = chord_progression("D", "minor", sr=22050, repeats=2)
    result = analyze(audio, round(22050 * 432 / 440))
    assert result.key == "D minor"
    assert result.features["tuning_cents"] == pytest.approx(-31.7, abs=3.0)
    assert result.key_confidence > 0.8  # as confident as in tune: the tuning is corrected


def test_in_tune_audio_reads_zero_cents() -> None:
    result = analyze(chord_progression("G", "major", sr=22050, repeats=2), 22050)
    assert result.features["tuning_cents"] == pytest.approx(0.0, abs=5.0)


def test_key_over_a_beat_at_other_sample_rates() -> None:
    sr = 48000
    chords = chord_progression("B", "major", sr=sr, repeats=3)
    beat = click_track(120, sr=sr, duration_s=chords.shape[1] / sr)
    result = analyze(chords + 0.5 * beat, sr)
    assert result.key == "B major"


def test_noise_has_a_key_name_but_little_confidence(rng: np.random.Generator) -> None:
    result = analyze(white_noise(rng, duration_s=5.0), 44100)
    assert KEY_PATTERN.match(result.key)
    assert result.key_confidence < 0.2


@pytest.mark.parametrize("shift", range(1, 12))
def test_transposing_the_chroma_transposes_the_key(shift: int) -> None:
    audio = chord_progression("A", "minor", sr=22050, repeats=2)
    _, chroma = key.estimate_key(y=audio[0], sr=22050)
    summary = key.chroma_summary(chroma)
    moved = np.concatenate([np.roll(summary[:12], shift), np.roll(summary[12:], shift)])
    original, transposed = key.key_from_summary(summary), key.key_from_summary(moved)
    assert original.key == "A minor"
    assert transposed.key == key.key_name(tonic=(9 + shift) % 12, mode="minor")
    assert transposed.confidence == pytest.approx(original.confidence)


def test_bass_and_treble_chroma_come_from_their_own_octaves() -> None:
    sr = 22050
    t = np.arange(4 * sr) / sr
    low_e = np.sin(2 * np.pi * 82.41 * t)  # E2: bass range
    high_g = np.sin(2 * np.pi * 392.0 * t)  # G4: treble range
    chroma = key.chromagram(y=(0.3 * (low_e + high_g)).astype(np.float32), sr=sr)
    assert int(np.argmax(chroma.bass.sum(axis=1))) == 4
    assert int(np.argmax(chroma.treble.sum(axis=1))) == 7


def test_key_names_use_the_house_spellings() -> None:
    names = {key.key_name(tonic=t, mode=m) for t in range(12) for m in key.MODES}
    assert len(names) == 24
    assert all(KEY_PATTERN.match(n) for n in names)
    assert key.key_name(tonic=9, mode="minor") == "A minor"
    assert key.key_name(tonic=3, mode="major") == "Eb major"


def test_flat_chroma_gives_the_default_key_with_zero_confidence() -> None:
    for summary in (np.full(24, 1 / 12), np.zeros(24)):
        estimate = key.key_from_summary(summary)
        assert estimate.key == key.DEFAULT_KEY
        assert estimate.confidence == 0.0

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


@pytest.mark.parametrize("mode", key.MODES)
@pytest.mark.parametrize("tonic", range(12))
def test_each_profile_is_recognised_as_its_own_key(tonic: int, mode: str) -> None:
    profile = key.KRUMHANSL_MAJOR if mode == "major" else key.KRUMHANSL_MINOR
    estimate = key.key_from_chroma(np.roll(profile, tonic))
    assert estimate.key == key.key_name(tonic=tonic, mode=mode)
    assert estimate.confidence > 0.3
    assert estimate.correlations.shape == (2, 12)


def test_key_names_use_the_house_spellings() -> None:
    names = {key.key_name(tonic=t, mode=m) for t in range(12) for m in key.MODES}
    assert len(names) == 24
    assert all(KEY_PATTERN.match(n) for n in names)
    assert key.key_name(tonic=9, mode="minor") == "A minor"
    assert key.key_name(tonic=3, mode="major") == "Eb major"


def test_flat_chroma_gives_the_default_key_with_zero_confidence() -> None:
    for chroma in (np.ones(12), np.zeros(12)):
        estimate = key.key_from_chroma(chroma)
        assert estimate.key == key.DEFAULT_KEY
        assert estimate.confidence == 0.0

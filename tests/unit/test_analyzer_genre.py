"""The trained genre classifier, its inputs and the genre override."""

from __future__ import annotations

import numpy as np
import pytest

from services.analyzer import genre, linear
from services.analyzer.analysis import analyze
from services.analyzer.labelled import CI_SEED0, GENRE_TRAIN_SEED0, HELD_OUT_SEED0
from services.common.errors import InvalidParameterError
from services.predictor.songgen import generate_song
from tests.signals import chord_progression, drum_loop


@pytest.mark.parametrize("name", genre.GENRES)
def test_a_held_out_generated_song_of_each_genre(name: str) -> None:
    # Seeds past the CI evaluation set: never trained on.
    song = generate_song(name, CI_SEED0 + 500 + genre.GENRES.index(name), duration_s=20.0)
    result = analyze(song.mix, song.sample_rate)
    assert result.genre == name
    assert result.genre_method == genre.METHOD_CLASSIFIER
    assert result.genre_probabilities[name] > 0.5
    assert sum(result.genre_probabilities.values()) == pytest.approx(1.0)


def test_timbre_does_not_depend_on_level(rng: np.random.Generator) -> None:
    mel = rng.random((128, 400)) ** 4
    assert genre.timbre(mel) == pytest.approx(genre.timbre(100.0 * mel), abs=1e-9)
    assert genre.timbre(np.zeros((128, 10))) == pytest.approx(np.zeros(24))


def test_the_classifier_ships_with_its_provenance() -> None:
    model = linear.load("genre")
    assert model.features == genre.GENRE_FEATURES
    assert model.classes == genre.GENRES
    assert model.meta["seeds"][0] == GENRE_TRAIN_SEED0
    assert model.meta["seeds"][1] < HELD_OUT_SEED0  # the evaluation's songs were never seen
    assert model.meta["validation_accuracy"] > 0.85


def test_probabilities_for_any_input_are_a_distribution(rng: np.random.Generator) -> None:
    loop = drum_loop(128, rng=rng, four_on_the_floor=True, hats_per_beat=4, bass_hz=49.0)
    probs = analyze(loop, 44100).genre_probabilities
    assert set(probs) == set(genre.GENRES)
    assert sum(probs.values()) == pytest.approx(1.0)
    assert all(0.0 <= p <= 1.0 for p in probs.values())


@pytest.mark.parametrize("name", genre.GENRES)
def test_override_is_honoured(name: str) -> None:
    audio = chord_progression("C", "major", sr=22050, repeats=1)
    result = analyze(audio, 22050, genre_override=name)
    assert result.genre == name
    assert result.genre_method == "override"
    # The classifier's opinion is still reported.
    assert sum(result.genre_probabilities.values()) == pytest.approx(1.0)


@pytest.mark.parametrize("bad", ["Pop", "metal", "", " jazz", "hip-hop"])
def test_bad_override_raises(bad: str) -> None:
    audio = chord_progression("C", "major", sr=22050, repeats=1)
    with pytest.raises(InvalidParameterError, match="genre"):
        analyze(audio, 22050, genre_override=bad)

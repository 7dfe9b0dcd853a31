"""The rule-based genre heuristic and the genre override."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from services.analyzer import genre
from services.analyzer.analysis import analyze
from services.common.errors import InvalidParameterError
from tests.signals import chord_progression, drum_loop


@pytest.mark.parametrize("name", genre.GENRES)
def test_each_genre_wins_at_its_own_typical_values(name: str) -> None:
    typical = dict(zip(genre.HEURISTIC_FEATURES, genre.TYPICAL[name], strict=True))
    estimate = genre.classify(typical)
    assert estimate.genre == name
    assert estimate.method == genre.METHOD_HEURISTIC


def test_probabilities_cover_every_genre_and_sum_to_one() -> None:
    inputs = genre.heuristic_inputs(
        tempo_bpm=124.0,
        tempo_confidence=0.7,
        onset_rate_hz=3.0,
        percussive_ratio=0.4,
        spectral_centroid_hz=2000.0,
        low_band_share=0.4,
        crest_factor_db=10.0,
    )
    probs = genre.classify(inputs).probabilities
    assert set(probs) == set(genre.GENRES)
    assert sum(probs.values()) == pytest.approx(1.0)
    assert all(0.0 < p < 1.0 for p in probs.values())


def test_slow_sustained_chords_are_a_ballad() -> None:
    audio = chord_progression("D", "major", sr=22050, seconds_per_chord=2.0, repeats=3)
    result = analyze(audio, 22050)
    assert result.genre == "ballad"
    assert result.genre_method == "heuristic"
    assert result.features["genre_prob_ballad"] > 0.5


def test_four_on_the_floor_with_sub_bass_is_electronic(rng: np.random.Generator) -> None:
    loop = drum_loop(128, rng=rng, four_on_the_floor=True, hats_per_beat=4, bass_hz=49.0)
    result = analyze(loop, 44100)
    assert result.genre == "electronic"
    assert result.features["genre_prob_electronic"] > 0.5


@pytest.mark.parametrize("name", genre.GENRES)
def test_override_is_honoured(name: str) -> None:
    audio = chord_progression("C", "major", sr=22050, repeats=1)
    result = analyze(audio, 22050, genre_override=name)
    assert result.genre == name
    assert result.genre_method == "override"
    # The heuristic's opinion is still reported.
    probs = [result.features[f"genre_prob_{g}"] for g in genre.GENRES]
    assert sum(probs) == pytest.approx(1.0)


@pytest.mark.parametrize("bad", ["Pop", "metal", "", " jazz", "hip-hop"])
def test_bad_override_raises(bad: str) -> None:
    audio = chord_progression("C", "major", sr=22050, repeats=1)
    with pytest.raises(InvalidParameterError, match="genre"):
        analyze(audio, 22050, genre_override=bad)


def test_heuristic_table_in_docs_is_current() -> None:
    docs = Path(__file__).resolve().parents[2] / "docs" / "analysis.md"
    assert genre.table_markdown() in docs.read_text()

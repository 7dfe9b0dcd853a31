"""The analysis evaluation: its metrics on known cases, and a small fixed labelled set scored in
CI with thresholds the plain librosa baseline does not meet."""

from __future__ import annotations

import pytest

from services.analyzer.evaluate import (
    evaluate_analysis,
    key_score,
    table_markdown,
    tempo_acc1,
    tempo_acc2,
)
from services.analyzer.labelled import CI_SEED0, KEYS, song_specs

#: The CI set: songs of this length from CI_SEED0, every genre four times.
CI_SONGS = 20
CI_DURATION_S = 20.0
#: What the analyzer must reach on it. Measured (issue 5): ours 1.0 on all four; the plain
#: librosa baseline tempo Acc1 1.0, Acc2 1.0, key weighted 0.915, genre (old heuristic) 0.40.
THRESHOLDS = {"tempo_acc1": 0.9, "tempo_acc2": 0.95, "key_weighted": 0.95, "genre_accuracy": 0.8}


def test_tempo_accuracy_definitions() -> None:
    assert tempo_acc1(123.0, 120.0) and not tempo_acc1(125.0, 120.0)
    for factor in (2.0, 0.5, 3.0, 1 / 3):
        assert tempo_acc2(120.0 * factor * 1.03, 120.0)
        assert not tempo_acc1(120.0 * factor, 120.0)
    assert not tempo_acc2(180.0, 120.0)  # 3/2 is not a metrical level Acc2 forgives
    assert not tempo_acc2(80.0, 120.0)


@pytest.mark.parametrize(
    ("estimate", "truth", "score"),
    [
        ("C major", "C major", 1.0),
        ("G major", "C major", 0.5),  # a fifth up
        ("F major", "C major", 0.0),  # a fifth down: MIREX counts only the dominant
        ("A minor", "C major", 0.3),  # relative
        ("C minor", "C major", 0.2),  # parallel
        ("F# major", "C major", 0.0),
    ],
)
def test_mirex_key_score(estimate: str, truth: str, score: float) -> None:
    assert key_score(estimate, truth) == score


def test_labelled_sets_cover_every_genre_in_every_key() -> None:
    specs = song_specs(120, seed0=CI_SEED0, duration_s=10.0)
    pairs = {(s.genre, s.key) for s in specs}
    assert len(pairs) == 120 and {k for _, k in pairs} == set(KEYS)
    assert len({s.seed for s in specs}) == 120


def test_ci_labelled_set_meets_the_thresholds_the_baseline_misses() -> None:
    result = evaluate_analysis(CI_SONGS, seed0=CI_SEED0, duration_s=CI_DURATION_S, workers=1)
    ours = result["groups"]["all"]["ours"]
    baseline = result["groups"]["all"]["baseline"]
    print("\n" + table_markdown(result))
    for name, floor in THRESHOLDS.items():
        assert ours[name] >= floor, (name, ours[name])
    # A real check: the plain librosa baseline misses at least one of the thresholds.
    assert any(baseline[name] < floor for name, floor in THRESHOLDS.items())
    assert sum(map(sum, result["confusion"]["ours"])) == CI_SONGS

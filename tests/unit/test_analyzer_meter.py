"""Metre and swing, measured on generated oom-pah patterns with known bar length and feel."""

from __future__ import annotations

import pytest

from services.analyzer.analysis import analyze
from tests.signals import metric_pattern, sine

SR = 44100


@pytest.mark.parametrize("bpm", [90, 120, 150])
@pytest.mark.parametrize("beats_per_bar", [3, 4])
def test_metre_of_an_oom_pah_pattern(bpm: float, beats_per_bar: int) -> None:
    result = analyze(metric_pattern(bpm, beats_per_bar=beats_per_bar, sr=SR), SR)
    assert result.tempo_bpm == pytest.approx(bpm, rel=0.02)
    assert result.meter == f"{beats_per_bar}/4"
    assert result.meter_confidence > 0.6


@pytest.mark.parametrize("swing", [0.5, 0.58, 0.67])
def test_swing_ratio_is_where_the_off_beat_eighth_falls(swing: float) -> None:
    result = analyze(metric_pattern(120, beats_per_bar=4, swing=swing, sr=SR), SR)
    assert result.features["swing_ratio"] == pytest.approx(swing, abs=0.03)


def test_without_beats_the_metre_is_the_default_with_zero_confidence() -> None:
    result = analyze(sine(440.0, sr=SR, duration_s=2.0), SR)
    assert result.meter == "4/4"
    assert result.meter_confidence == 0.0
    assert result.features["swing_ratio"] == 0.5

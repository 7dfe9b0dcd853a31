"""Self-supervised targets and the audio-domain score, measured on real audio."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import sosfreqz

from services.common.params import BY_NAME, NAMES
from services.predictor.training.metrics import mr_stft_distance, repair_ratio
from services.predictor.training.targets import (
    EQ_GAIN_RANGE_DB,
    EQ_GAINS,
    LEARNED,
    LEARNED_INDEX,
    WIDTH_RANGE,
    degrade,
    draw_target,
    target_vector,
)
from services.renderer.chain import build_chain, render_version
from services.renderer.eq import ParametricEQ
from services.renderer.mastering import master
from tests.signals import little_song

EXAMPLE = "examples/example.flac"


@pytest.fixture(scope="module")
def song() -> tuple[np.ndarray, int]:
    x, sr = sf.read(EXAMPLE, dtype="float32", always_2d=True)
    return np.ascontiguousarray(x.T[:, : 8 * sr]), sr


def test_targets_are_reproducible_in_range_and_only_learned() -> None:
    a = [draw_target(np.random.default_rng(3)) for _ in range(2)]
    assert a[0] == a[1]
    draws = [draw_target(np.random.default_rng(seed)) for seed in range(400)]
    assert all(tuple(t) == LEARNED for t in draws)
    gains = np.array([[t[n] for n in EQ_GAINS] for t in draws])
    widths = np.array([t["stereo_width"] for t in draws])
    assert gains.min() >= EQ_GAIN_RANGE_DB[0] and gains.max() <= EQ_GAIN_RANGE_DB[1]
    # Uniform on +-9 dB, then centred: no broadband part, sd 5.2 * sqrt(4/5) = 4.65.
    assert np.abs(gains.mean(axis=1)).max() < 1e-9
    assert 4.0 < gains.std() < 5.0
    assert np.abs(np.corrcoef(gains.T)[0, 1] + 0.25) < 0.1  # centring: correlation -1/4
    assert WIDTH_RANGE[0] <= widths.min() and widths.max() <= WIDTH_RANGE[1]
    assert abs(np.median(np.log(widths)) - np.mean(np.log(WIDTH_RANGE))) < 0.05  # log-uniform
    vector = target_vector(draws[0])
    assert vector.shape == (len(NAMES),)
    assert [NAMES[i] for i in LEARNED_INDEX] == list(LEARNED)
    for i, name in enumerate(NAMES):
        if name not in LEARNED:  # neutral everywhere else
            assert vector[i] == pytest.approx(BY_NAME[name].normalise(BY_NAME[name].default))


@pytest.mark.parametrize("sr", [44100, 48000])
def test_inverse_eq_is_the_reciprocal_response(sr: int) -> None:
    """The degradation's EQ (gains negated) times the target's EQ is 0 dB at every frequency."""
    target = draw_target(np.random.default_rng(11))
    gains = {n: target[n] for n in EQ_GAINS}
    forward = ParametricEQ.from_params(gains).sos(sr)
    inverse = ParametricEQ.from_params({n: -g for n, g in gains.items()}).sos(sr)
    freqs = np.geomspace(20.0, 20000.0, 400)
    _, h = sosfreqz(np.vstack([forward, inverse]), worN=freqs, fs=sr)
    assert np.max(np.abs(20.0 * np.log10(np.abs(h)))) < 1e-9
    _, h_forward = sosfreqz(forward, worN=freqs, fs=sr)
    assert np.max(np.abs(20.0 * np.log10(np.abs(h_forward)))) > 3.0  # not a trivial EQ


def test_rendering_the_degraded_song_with_the_target_restores_it(
    song: tuple[np.ndarray, int],
) -> None:
    x, sr = song
    rng = np.random.default_rng(5)
    checked = 0
    while checked < 3:
        target = draw_target(rng)
        if target["stereo_width"] > 1.0:
            continue
        degraded = degrade(x, sr, target)
        assert np.max(np.abs(degraded - x)) > 0.05  # really damaged
        restored = build_chain(target).process(degraded, sr)
        assert np.max(np.abs(restored - x)) < 1e-5
        checked += 1


def test_widening_is_repaired_up_to_the_correlation_guard(song: tuple[np.ndarray, int]) -> None:
    x, sr = song
    target = {"stereo_width": WIDTH_RANGE[1]}
    degraded = degrade(x, sr, target)
    side_in = 0.5 * (x[0] - x[1])
    side_degraded = 0.5 * (degraded[0] - degraded[1])
    assert np.std(side_degraded) == pytest.approx(np.std(side_in) / WIDTH_RANGE[1], rel=1e-4)
    restored = build_chain(target).process(degraded, sr)
    # Measured 0.28 on the example: the guard holds part of the widening back.
    assert mr_stft_distance(restored, x, sr) < 0.4 * mr_stft_distance(degraded, x, sr)


def test_degrade_refuses_parameters_it_cannot_invert(song: tuple[np.ndarray, int]) -> None:
    x, sr = song
    with pytest.raises(ValueError, match="comp_ratio"):
        degrade(x, sr, {"comp_ratio": 4.0})


def test_mono_input_is_degraded_by_the_eq_only() -> None:
    x = little_song(sr=44100, duration_s=2.0, channels=1)
    target = {"eq_mid_gain_db": 6.0, "stereo_width": 1.4}
    degraded = degrade(x, 44100, target)
    assert degraded.shape == x.shape
    restored = build_chain(target).process(degraded, 44100)
    assert np.max(np.abs(restored - x)) < 1e-5


def test_the_score_is_zero_for_a_perfect_repair_and_grows_with_the_error(
    song: tuple[np.ndarray, int],
) -> None:
    x, sr = song
    assert mr_stft_distance(x, x, sr) == 0.0
    clean = master(x, sr).audio
    target = {"eq_low_mid_gain_db": 8.0, "eq_high_shelf_gain_db": -8.0, "stereo_width": 0.8}
    degraded = degrade(x, sr, target)
    unrepaired = master(degraded, sr).audio
    ratios = []
    for k in (1.0, 0.75, 0.5, 0.0):  # a fraction of the true correction in dB (and width)
        partial = {
            "eq_low_mid_gain_db": 8.0 * k,
            "eq_high_shelf_gain_db": -8.0 * k,
            "stereo_width": 0.8**k,
        }
        ratios.append(
            repair_ratio(render_version(degraded, sr, partial).audio, unrepaired, clean, sr)
        )
    assert ratios[0] < 0.01
    assert ratios == sorted(ratios)  # less correction, further from the clean mix
    assert 0.3 < ratios[2] < 0.7
    assert ratios[3] == pytest.approx(1.0, abs=0.01)
    with pytest.raises(ValueError, match="shapes differ"):
        mr_stft_distance(x, x[:, :-1], sr)

"""Compressor measured as audio: static curve, bypass, attack and release times, stereo link."""

from __future__ import annotations

import numpy as np
import pytest

from services.common.params import defaults
from services.renderer.blocks import render_blocks
from services.renderer.compressor import Compressor, static_gain_reduction_db
from services.renderer.processor import BLOCK_TOLERANCE
from tests.signals import sine, white_noise

SR = 44100
AMP = 0.5
AMP_DB = 20 * np.log10(AMP)


def rms_db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.asarray(x, dtype=np.float64) ** 2)))


def gain_db_per_sample(x: np.ndarray, y: np.ndarray, *, floor: float = 0.05) -> np.ndarray:
    """Applied gain in dB where the input is large enough to divide by; NaN elsewhere."""
    x0, y0 = x[0].astype(np.float64), y[0].astype(np.float64)
    ok = np.abs(x0) > floor
    out = np.full(x0.shape, np.nan)
    out[ok] = 20 * np.log10(np.abs(y0[ok]) / np.abs(x0[ok]))
    return out


@pytest.mark.parametrize(("ratio", "over_db"), [(4.0, 20.0), (2.0, 20.0), (10.0, 12.0)])
def test_static_curve_on_a_steady_sine(ratio: float, over_db: float) -> None:
    """A sine ``over_db`` above threshold settles at over * (1 - 1/ratio) of gain reduction."""
    x = sine(1000.0, sr=SR, duration_s=3.0, amplitude=AMP)
    comp = Compressor(threshold_db=AMP_DB - over_db, ratio=ratio)
    y = comp(x, SR)
    reduction = rms_db(x[:, -SR:]) - rms_db(y[:, -SR:])
    assert reduction == pytest.approx(over_db * (1 - 1 / ratio), abs=0.5)


def test_static_curve_twenty_db_over_at_ratio_4_is_15_db() -> None:
    x = sine(1000.0, sr=SR, duration_s=3.0, amplitude=AMP)
    y = Compressor(threshold_db=AMP_DB - 20.0, ratio=4.0)(x, SR)
    assert rms_db(x[:, -SR:]) - rms_db(y[:, -SR:]) == pytest.approx(15.0, abs=0.5)


def test_below_the_knee_nothing_changes() -> None:
    x = sine(1000.0, sr=SR, duration_s=1.0, amplitude=AMP)
    y = Compressor(threshold_db=AMP_DB + 3.1, ratio=8.0, knee_db=6.0)(x, SR)
    np.testing.assert_array_equal(y, x)


def test_soft_knee_curve() -> None:
    levels = np.array([-40.0, -23.0, -20.0, -17.0, 0.0])
    gr = static_gain_reduction_db(levels, threshold_db=-20.0, ratio=4.0, knee_db=6.0)
    # Knee from -23 to -17 dB: zero at its bottom, slope * knee / 8 at the threshold, and
    # continuous with the straight line at its top.
    np.testing.assert_allclose(gr, [0.0, 0.0, 0.75 * 6 / 8, 0.75 * 3, 0.75 * 20], atol=1e-12)
    hard = static_gain_reduction_db(levels, threshold_db=-20.0, ratio=4.0, knee_db=0.0)
    np.testing.assert_allclose(hard, [0.0, 0.0, 0.0, 0.75 * 3, 0.75 * 20], atol=1e-12)


def test_ratio_one_is_an_exact_bypass(rng) -> None:
    x = np.clip(white_noise(rng, duration_s=1.0, amplitude=0.5), -1, 1)
    comp = Compressor(threshold_db=-40.0, ratio=1.0, attack_ms=0.1, knee_db=0.0)
    np.testing.assert_array_equal(comp(x, SR), x)
    np.testing.assert_array_equal(Compressor.from_params(defaults())(x, SR), x)


def test_makeup_gain(rng) -> None:
    x = white_noise(rng, duration_s=0.5, amplitude=0.05)
    y = Compressor(ratio=1.0, makeup_db=6.0)(x, SR)
    np.testing.assert_allclose(y, x * 10 ** (6 / 20), rtol=1e-6)
    comp = Compressor(threshold_db=-10.0, ratio=4.0, makeup_db=6.0)
    np.testing.assert_allclose(comp(x, SR), x * 10 ** (6 / 20), rtol=1e-6)  # never over


def _step(low_db: float, high_db: float, *, first_s: float, second_s: float) -> np.ndarray:
    a = sine(1000.0, sr=SR, duration_s=first_s, amplitude=AMP * 10 ** (low_db / 20))
    b = sine(1000.0, sr=SR, duration_s=second_s, amplitude=AMP * 10 ** (high_db / 20))
    return np.concatenate([a, b], axis=1)


@pytest.mark.parametrize("attack_ms", [1.0, 10.0, 50.0])
def test_attack_time_measured_on_a_step(attack_ms: float) -> None:
    """Attack is the time constant: 63 % of the final gain reduction after ``attack_ms``."""
    x = _step(-40.0, 0.0, first_s=0.5, second_s=0.5)
    comp = Compressor(threshold_db=AMP_DB - 20.0, ratio=4.0, attack_ms=attack_ms, release_ms=500)
    y = comp(x, SR)
    reduction = -gain_db_per_sample(x, y)[int(0.5 * SR) :]
    final = np.nanmedian(reduction[-SR // 10 :])
    assert final == pytest.approx(15.0, abs=0.5)
    reached = np.flatnonzero(np.nan_to_num(reduction) >= 0.632 * final)[0] / SR * 1e3
    assert reached == pytest.approx(attack_ms, rel=0.1, abs=0.3)


@pytest.mark.parametrize("release_ms", [50.0, 300.0])
def test_release_time_measured_on_a_step(release_ms: float) -> None:
    """After the level drops below threshold, gain reduction falls to 37 % in ``release_ms``."""
    x = _step(0.0, -24.0, first_s=1.0, second_s=2.0)
    comp = Compressor(threshold_db=AMP_DB - 20.0, ratio=4.0, attack_ms=1.0, release_ms=release_ms)
    y = comp(x, SR)
    reduction = -gain_db_per_sample(x, y, floor=0.01)[SR:]
    start = 15.0
    below = np.flatnonzero(np.nan_to_num(reduction, nan=np.inf) <= 0.368 * start)[0] / SR * 1e3
    # The attack smoothing follows the released peak, adding about attack_ms of lag.
    assert below == pytest.approx(release_ms, rel=0.1, abs=1.5)
    np.testing.assert_allclose(y[:, -SR // 10 :], x[:, -SR // 10 :], rtol=5e-3, atol=1e-6)


def test_detector_is_stereo_linked() -> None:
    """A loud left channel pulls the quiet right channel down by the same gain."""
    left = sine(1000.0, sr=SR, duration_s=2.0, amplitude=AMP, channels=1)
    right = sine(300.0, sr=SR, duration_s=2.0, amplitude=0.01, channels=1)
    x = np.concatenate([left, right])
    y = Compressor(threshold_db=AMP_DB - 20.0, ratio=4.0)(x, SR)
    np.testing.assert_allclose(
        rms_db(x[1, -SR:]) - rms_db(y[1, -SR:]), rms_db(x[0, -SR:]) - rms_db(y[0, -SR:]), atol=0.01
    )
    assert rms_db(x[1, -SR:]) - rms_db(y[1, -SR:]) == pytest.approx(15.0, abs=0.5)


def test_output_is_finite_and_bounded_on_extreme_settings(rng) -> None:
    x = np.clip(white_noise(rng, duration_s=1.0, amplitude=0.7), -1, 1)
    comp = Compressor(
        threshold_db=-40.0, ratio=20.0, attack_ms=0.1, release_ms=10.0, knee_db=24.0, makeup_db=24.0
    )
    y = comp(x, SR)
    assert np.all(np.isfinite(y)) and y.shape == x.shape
    assert np.max(np.abs(y)) <= 10 ** (24 / 20)  # at most the makeup gain, on the first hit
    # Once the 0.1 ms attack has caught up, 40 dB over at 20:1 is 38 dB of reduction and the
    # makeup gives 24 back: everything is well under full scale.
    assert np.max(np.abs(y[:, 441:])) < 1.0


def test_sidechain_high_pass_stops_bass_from_pumping() -> None:
    """A loud 50 Hz bass under a quiet 2 kHz tone: with a 200 Hz detector high-pass the
    compressor no longer reacts to the bass."""
    sr = 44100
    t = np.arange(2 * sr) / sr
    bass = 0.8 * np.sin(2 * np.pi * 50 * t)
    tone = 0.05 * np.sin(2 * np.pi * 2000 * t)
    x = np.tile((bass + tone).astype(np.float32), (2, 1))
    common = {"threshold_db": -20.0, "ratio": 4.0, "attack_ms": 5.0, "release_ms": 50.0}
    plain = Compressor(**common).gain_reduction_db(x, sr)[sr:]
    filtered = Compressor(**common, sidechain_hpf_hz=200.0).gain_reduction_db(x, sr)[sr:]
    assert plain.mean() > 8.0
    assert filtered.mean() < 0.5


def test_lookahead_moves_the_gain_before_the_transient() -> None:
    sr = 48000
    x = np.full((1, sr), 0.01, np.float32)
    x[:, sr // 2 :] = 0.9
    ahead = Compressor(threshold_db=-20.0, ratio=8.0, attack_ms=0.5, lookahead_ms=5.0)
    plain = Compressor(threshold_db=-20.0, ratio=8.0, attack_ms=0.5)
    gr_ahead = ahead.gain_reduction_db(x, sr)
    gr_plain = plain.gain_reduction_db(x, sr)
    onset = sr // 2
    shift = int(round(0.005 * sr))
    assert gr_plain[onset - 1] == 0.0 and gr_ahead[onset - 1] > 1.0
    np.testing.assert_allclose(gr_ahead[onset - shift : onset], gr_plain[onset : onset + shift])
    out = ahead(x, sr)
    assert out.shape == x.shape  # no added latency: same length, same alignment


def test_detector_starts_settled_on_a_file_that_starts_loud() -> None:
    sr = 44100
    x = sine(1000.0, sr=sr, duration_s=0.5, amplitude=0.9)
    gr = Compressor(threshold_db=-20.0, ratio=4.0, attack_ms=30.0).gain_reduction_db(x, sr)
    steady = gr[-1000:].mean()
    assert steady > 10.0
    assert gr[:100].min() > 0.8 * steady  # no uncompressed start while the attack catches up


def test_blocks_match_after_a_loud_passage_at_the_lowest_threshold() -> None:
    """The sidechain high-pass's worst start: a block extent that begins right where a loud bass
    stops, before a quiet tone at the lowest threshold; the release carries over the boundary."""
    sr = 44100
    loud = sine(80.0, sr=sr, duration_s=1.0, amplitude=1.0)
    quiet = sine(1000.0, sr=sr, duration_s=1.5, amplitude=10 ** (-38 / 20))
    x = np.concatenate([loud, quiet], axis=1).astype(np.float32)
    comp = Compressor(
        threshold_db=-40.0,
        ratio=10.0,
        attack_ms=1.0,
        release_ms=200.0,
        knee_db=0.0,
        lookahead_ms=5.0,
        sidechain_hpf_hz=300.0,
    )
    history = comp.context(sr).history
    whole = render_blocks([comp], x, sr, block_frames=x.shape[1])
    for extra in (-7, 0, 7):
        blocked = render_blocks([comp], x, sr, block_frames=sr + history + extra)
        np.testing.assert_allclose(blocked, whole, rtol=0, atol=BLOCK_TOLERANCE)


def test_short_buffers_and_long_lookahead() -> None:
    """Shorter than the look-ahead: the reduction has the buffer's length (the last frame's
    reduction fills the look-ahead)."""
    comp = Compressor(threshold_db=-30.0, ratio=4.0, lookahead_ms=10.0)
    for frames in (1, 2, 17, 400):
        x = np.full((2, frames), 0.5, np.float32)
        assert comp.gain_reduction_db(x, SR).shape == (frames,)
        y = comp(x, SR)
        assert y.shape == x.shape and np.all(np.isfinite(y))

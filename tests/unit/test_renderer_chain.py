"""render_version end to end: the neutral set is the loudness-matched original, parameters do what
they say, and random valid parameter sets always give finite, bounded, same-length audio."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.common.errors import InvalidParameterError
from services.common.loudness import integrated_loudness, true_peak_dbtp
from services.common.params import defaults
from services.renderer.chain import RenderResult, build_chain, render_version
from services.renderer.compressor import Compressor
from services.renderer.eq import ParametricEQ
from tests.signals import chord_progression, sine, white_noise
from tests.strategies import param_sets


def band_level_db(x: np.ndarray, sr: int, freq_hz: float) -> float:
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64), axis=-1)) ** 2
    freqs = np.fft.rfftfreq(x.shape[-1], 1 / sr)
    band = (freqs > freq_hz / 1.2) & (freqs < freq_hz * 1.2)
    return float(10 * np.log10(spectrum[..., band].sum()))


def test_neutral_parameters_give_the_input_times_a_constant() -> None:
    """The ``original`` version: same audio, only loudness-matched."""
    sr = 44100
    x = chord_progression("D", "major", sr=sr, seconds_per_chord=0.5, repeats=2)
    x = (x * 10 ** ((-20.0 - integrated_loudness(x, sr)) / 20)).astype(np.float32)
    result = render_version(x, sr, defaults())
    gain = float(np.dot(result.audio.ravel(), x.ravel()) / np.dot(x.ravel(), x.ravel()))
    assert 20 * np.log10(gain) == pytest.approx(6.0, abs=0.1)
    np.testing.assert_allclose(result.audio, gain * x, rtol=1e-6, atol=1e-8)
    assert result.loudness_lufs == pytest.approx(-14.0, abs=0.1)
    # An empty mapping is the neutral set too.
    np.testing.assert_array_equal(render_version(x, sr, {}).audio, result.audio)


def test_result_reports_what_was_measured(rng) -> None:
    sr = 48000
    x = white_noise(rng, sr=sr, duration_s=2.0, amplitude=0.3)
    params = {"eq_mid_gain_db": 6.0, "comp_threshold_db": -20.0, "comp_ratio": 3.0}
    result = render_version(x, sr, params, target_lufs=-16.0, ceiling_dbtp=-1.5)
    assert isinstance(result, RenderResult)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.loudness_lufs = 0.0  # type: ignore[misc]
    assert result.audio.shape == x.shape and result.audio.dtype == np.float32
    assert result.loudness_lufs == pytest.approx(integrated_loudness(result.audio, sr), abs=1e-9)
    assert result.true_peak_dbtp == pytest.approx(true_peak_dbtp(result.audio), abs=1e-6)
    assert result.loudness_lufs == pytest.approx(-16.0, abs=0.1)
    assert result.true_peak_dbtp <= -1.5


def test_parameters_change_the_sound(rng) -> None:
    """A +12 dB mid bell raises 1.5 kHz against 200 Hz even after loudness matching."""
    sr = 44100
    x = white_noise(rng, duration_s=2.0, amplitude=0.1)
    plain = render_version(x, sr, {}).audio
    bright = render_version(x, sr, {"eq_mid_freq_hz": 1500.0, "eq_mid_gain_db": 12.0}).audio

    def tilt(a: np.ndarray) -> float:
        return band_level_db(a, sr, 1500.0) - band_level_db(a, sr, 200.0)

    assert tilt(bright) - tilt(plain) == pytest.approx(12.0, abs=1.0)


def test_compression_reduces_crest_factor() -> None:
    sr = 44100
    x = np.concatenate(
        [sine(440.0, sr=sr, duration_s=1.0, amplitude=a) for a in (0.05, 0.8, 0.05, 0.8)], axis=1
    )
    params = {"comp_threshold_db": -30.0, "comp_ratio": 8.0, "comp_attack_ms": 1.0}
    plain = render_version(x, sr, {}).audio
    squashed = render_version(x, sr, params).audio

    def spread_db(a: np.ndarray) -> float:
        return 20 * np.log10(
            np.max(np.abs(a[:, sr + sr // 2 : 2 * sr])) / np.max(np.abs(a[:, sr // 2 : sr]))
        )

    assert spread_db(plain) == pytest.approx(24.1, abs=0.2)
    assert spread_db(squashed) < 8.0


def test_chain_order_is_fixed_and_documented() -> None:
    from services.renderer.delay import TempoDelay
    from services.renderer.exciter import Exciter
    from services.renderer.reverb import Reverb
    from services.renderer.stereo import StereoEnhancer
    from services.renderer.vintage_compressor import VintageCompressor

    chain = build_chain(
        {"eq_mid_gain_db": 3.0, "comp_ratio": 2.0, "delay_note": "1/4"}, tempo_bpm=100.0
    )
    kinds = [type(p) for p in chain]
    assert kinds[:3] == [ParametricEQ, Compressor, VintageCompressor]
    assert kinds[-4:] == [Exciter, StereoEnhancer, TempoDelay, Reverb]
    eq, comp = chain[0], chain[1]
    assert eq.mid_gain_db == 3.0 and comp.ratio == 2.0
    assert chain[-2].delay_s == pytest.approx(0.6)
    assert all(p.is_bypass for p in chain if not isinstance(p, (ParametricEQ, Compressor)))


@pytest.mark.parametrize(
    "params", [{"eq_mid_gain_db": 30.0}, {"comp_ratio": 0.5}, {"reverb_mix": 0.3}]
)
def test_invalid_parameter_sets_are_rejected(params) -> None:
    with pytest.raises(InvalidParameterError):
        render_version(sine(440.0, duration_s=0.5), 44100, params)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    params=param_sets,
    sr=st.sampled_from([8000, 22050, 44100, 96000]),
    channels=st.sampled_from([1, 2]),
    level_db=st.floats(min_value=-50.0, max_value=6.0),
    seed=st.integers(min_value=0, max_value=2**31),
)
def test_random_parameter_sets_give_finite_bounded_same_length_audio(
    params: dict[str, float], sr: int, channels: int, level_db: float, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    x = white_noise(rng, sr=sr, duration_s=0.6, channels=channels, amplitude=0.25)
    x = x + sine(220.0, sr=sr, duration_s=0.6, channels=channels, amplitude=0.25)
    x = np.clip(x * 10 ** (level_db / 20), -1, 1).astype(np.float32)
    result = render_version(x, sr, params)
    y = result.audio
    assert y.shape == x.shape and y.dtype == np.float32
    assert np.all(np.isfinite(y))
    assert true_peak_dbtp(y) <= -1.0
    assert result.loudness_lufs == pytest.approx(-14.0, abs=0.5)


def test_intensity_zero_renders_the_original_and_half_is_in_between() -> None:
    sr = 44100
    x = chord_progression("D", "major", sr=sr, seconds_per_chord=0.5, repeats=2)
    strong = {"eq_high_shelf_gain_db": 9.0, "eq_high_shelf_freq_hz": 4000.0}
    neutral = render_version(x, sr, {}, target_lufs=-18.0)
    off = render_version(x, sr, strong, target_lufs=-18.0, intensity_pct=0.0)
    np.testing.assert_array_equal(off.audio, neutral.audio)

    def top_minus_bottom(r: RenderResult) -> float:
        return band_level_db(r.audio, sr, 8000.0) - band_level_db(r.audio, sr, 200.0)

    full = render_version(x, sr, strong, target_lufs=-18.0)
    half = render_version(x, sr, strong, target_lufs=-18.0, intensity_pct=50.0)
    assert half.params["eq_high_shelf_gain_db"] == pytest.approx(4.5)
    assert top_minus_bottom(neutral) < top_minus_bottom(half) < top_minus_bottom(full)


def test_extreme_compression_of_a_file_that_starts_loud_still_meets_the_floor() -> None:
    """Regression: makeup +24 dB over a -39 dB threshold on a file loud from its first sample
    once let a +16 dBFS start-up transient through, and the target was missed (-14.5 LUFS)."""
    sr = 8000
    rng = np.random.default_rng(0)
    x = white_noise(rng, sr=sr, duration_s=0.6, channels=1, amplitude=0.25)
    x = x + sine(220.0, sr=sr, duration_s=0.6, channels=1, amplitude=0.25)
    x = np.clip(x * 10 ** (2.0 / 20), -1, 1).astype(np.float32)
    params = {
        "comp_threshold_db": -39.0,
        "comp_ratio": 3.0,
        "comp_attack_ms": 6.0,
        "comp_release_ms": 10.0,
        "comp_knee_db": 0.0,
        "comp_makeup_db": 24.0,
        "vcomp_threshold_db": -24.0,
        "vcomp_ratio": 10.0,
        "stereo_width": 0.0,
        "reverb_mix_pct": 1.0,
        "reverb_style": "intimate",
        "reverb_decay_s": 1.0,
    }
    result = render_version(x, sr, params)
    assert result.loudness_lufs == pytest.approx(-14.0, abs=0.5)
    assert true_peak_dbtp(result.audio) <= -1.0

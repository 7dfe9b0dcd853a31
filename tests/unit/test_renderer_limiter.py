"""TruePeakLimiter measured as audio: the ceiling holds on the shared 4x true-peak meter, no
latency, look-ahead and release behave."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.ndimage import minimum_filter1d, uniform_filter1d
from scipy.signal import resample_poly

from services.common.errors import InvalidAudioError
from services.common.loudness import oversampled_peak_envelope_f32, true_peak_dbtp, true_peak_linear
from services.renderer.limiter import TruePeakLimiter, checked_audio, oversampled_peak_envelope
from tests.signals import chord_progression, sine, white_noise


def isp_sine(sr: int, *, amplitude: float = 1.0, duration_s: float = 1.0) -> np.ndarray:
    """fs/4 sine sampled at 45 degrees: samples at 0.707 * amplitude, true peak at amplitude."""
    return sine(sr / 4, sr=sr, duration_s=duration_s, amplitude=amplitude, phase=np.pi / 4)


@pytest.mark.parametrize("ceiling", [-0.1, -1.0, -3.0, -6.0])
def test_hot_noise_is_held_under_the_ceiling(ceiling: float, rng) -> None:
    x = white_noise(rng, duration_s=1.0, amplitude=0.8)  # about +11 dBTP
    y = TruePeakLimiter(ceiling_dbtp=ceiling)(x, 44100)
    assert y.shape == x.shape and y.dtype == np.float32
    assert true_peak_dbtp(y) <= ceiling
    assert true_peak_dbtp(y) > ceiling - 0.1  # it limits, it does not just turn down


@pytest.mark.parametrize("sr", [8000, 44100, 48000, 192000])
def test_inter_sample_peaks_at_a_quarter_of_the_sample_rate(sr: int) -> None:
    x = isp_sine(sr)
    assert np.max(np.abs(x)) < 10 ** (-1 / 20)  # every sample is under the ceiling ...
    assert true_peak_dbtp(x) > -0.1  # ... the waveform between them is not
    y = TruePeakLimiter()(x, sr)
    assert true_peak_dbtp(y) <= -1.0
    assert true_peak_dbtp(y) > -1.2


def test_no_added_delay_impulse(rng) -> None:
    sr = 44100
    x = 0.01 * white_noise(rng, duration_s=1.0, amplitude=1.0)
    at = 12345
    x[:, at] = 2.0
    y = TruePeakLimiter()(x, sr)
    assert y.shape == x.shape
    assert int(np.argmax(np.abs(y[0]))) == at
    assert true_peak_dbtp(y) <= -1.0


def test_no_added_delay_cross_correlation(rng) -> None:
    sr = 48000
    x = white_noise(rng, sr=sr, duration_s=1.0, amplitude=0.6, channels=1)
    y = TruePeakLimiter()(x, sr)
    lags = np.arange(-50, 51)
    xc = [float(np.dot(x[0, 100:-100], np.roll(y[0], -k)[100:-100])) for k in lags]
    assert lags[int(np.argmax(xc))] == 0


def test_quiet_audio_is_untouched() -> None:
    x = chord_progression("C", "major", sr=22050, repeats=1)
    assert true_peak_dbtp(x) < -1.0
    np.testing.assert_array_equal(TruePeakLimiter()(x, 22050), x)


def test_lookahead_ramps_the_gain_down_before_the_peak_and_release_recovers() -> None:
    sr = 44100
    lookahead_ms, release_ms = 5.0, 50.0
    x = sine(1000.0, sr=sr, duration_s=2.0, amplitude=0.25)
    burst = slice(sr // 2, sr // 2 + sr // 10)
    x[:, burst] *= 4.0  # 0 dBFS burst in a -12 dBFS tone
    y = TruePeakLimiter(lookahead_ms=lookahead_ms, release_ms=release_ms)(x, sr)
    gain = np.abs(y[0]) / np.maximum(np.abs(x[0]), 1e-9)
    loud = np.abs(x[0]) > 0.05
    start = burst.start
    lookahead = int(lookahead_ms * sr / 1000)
    before = slice(start - lookahead // 2, start)
    # Already ramping down inside the look-ahead window, untouched before it.
    assert np.all(gain[before][loud[before]] < 0.99)
    assert np.allclose(gain[: start - 2 * lookahead][loud[: start - 2 * lookahead]], 1.0)
    assert true_peak_dbtp(y) <= -1.0
    # Release: recovers to 1 - 1/e of the way back after about release_ms.
    end = burst.stop
    g_end = float(np.min(gain[end - 50 : end][loud[end - 50 : end]]))
    expected = 1.0 - (1.0 - g_end) * np.exp(-1.0)
    t = end + int(release_ms * sr / 1000)
    window = slice(t - 50, t + 50)
    assert np.median(gain[window][loud[window]]) == pytest.approx(expected, abs=0.03)
    tail = slice(end + 10 * int(release_ms * sr / 1000), None)
    assert np.allclose(gain[tail][loud[tail]], 1.0, atol=1e-3)


def test_channels_share_one_gain(rng) -> None:
    sr = 44100
    left = white_noise(rng, duration_s=1.0, amplitude=0.8, channels=1)
    right = 0.01 * white_noise(rng, duration_s=1.0, amplitude=1.0, channels=1)
    x = np.concatenate([left, right])
    y = TruePeakLimiter()(x, sr)
    ok = (np.abs(x[0]) > 1e-3) & (np.abs(x[1]) > 1e-4)
    np.testing.assert_allclose(y[0, ok] / x[0, ok], y[1, ok] / x[1, ok], rtol=1e-4)


def test_envelope_matches_resample_poly_and_the_shared_meter(rng) -> None:
    x = np.clip(white_noise(rng, duration_s=0.5, amplitude=0.5), -1, 1).astype(np.float64)
    env = oversampled_peak_envelope(x)
    up = np.abs(resample_poly(x, 4, 1, axis=-1))
    expected = np.maximum(up.reshape(2, -1, 4).max(axis=(0, 2)), np.abs(x).max(axis=0))
    np.testing.assert_allclose(env, expected, rtol=1e-12, atol=1e-15)
    assert float(env.max()) == pytest.approx(true_peak_linear(x), rel=1e-12)
    short = x[:, :7]  # shorter than the filter
    np.testing.assert_allclose(
        oversampled_peak_envelope(short),
        np.maximum(
            np.abs(resample_poly(short, 4, 1, axis=-1)).reshape(2, -1, 4).max(axis=(0, 2)),
            np.abs(short).max(axis=0),
        ),
        rtol=1e-12,
    )


def test_no_dc_is_added() -> None:
    x = sine(100.0, duration_s=1.0, amplitude=1.0)
    y = TruePeakLimiter()(x, 44100)
    assert abs(float(np.mean(y, dtype=np.float64))) < 1e-4


def test_heavy_limiting_still_holds_the_ceiling(rng) -> None:
    """30 dB over the ceiling with a short release: the guarantee step has work to do."""
    x = white_noise(rng, duration_s=1.0, amplitude=8.0)
    for release_ms in (1.0, 50.0, 2000.0):
        y = TruePeakLimiter(release_ms=release_ms, lookahead_ms=0.5)(x, 44100)
        assert np.all(np.isfinite(y))
        assert true_peak_dbtp(y) <= -1.0


# --- The gain kernel, the guarantee loop and the no-copy path ---------------------------------


def reference_gain_curve(
    envelope: np.ndarray, threshold: float, lookahead: int, release_coef: float
) -> np.ndarray:
    """The limiter's gain written the slow, obvious way (scipy.ndimage filters, a loop)."""
    peak = envelope.astype(np.float64).copy()
    peak[1:] = np.maximum(envelope[1:], envelope[:-1])
    required = np.minimum(1.0, threshold / np.maximum(peak, 1e-30))
    size = lookahead + 1
    future = minimum_filter1d(required, size=size, mode="nearest", origin=-(size // 2))
    ramp = np.minimum(
        uniform_filter1d(future, size=size, mode="nearest", origin=lookahead // 2), required
    )
    out = np.empty_like(ramp)
    state = 1.0
    for i, g in enumerate(ramp):
        state = min(g, release_coef * state + (1.0 - release_coef) * g)
        out[i] = state
    return out


@pytest.mark.parametrize("lookahead", [1, 7, 220])
@pytest.mark.parametrize("density", [0.001, 0.05, 0.9])
def test_gain_kernel_matches_the_reference(lookahead: int, density: float, rng) -> None:
    from services.renderer.limiter import _gain_curve

    n = 20000
    envelope = rng.uniform(0.0, 0.5, n)
    hot = rng.random(n) < density
    envelope[hot] = rng.uniform(0.6, 3.0, int(hot.sum()))
    envelope[:3] = 2.0  # a limited start: the clamped edge
    for coef in (0.0, 0.9, 0.9995):
        out = np.empty(n)
        _gain_curve(envelope, 0.55, lookahead, coef, out)
        expected = reference_gain_curve(envelope, 0.55, lookahead, coef)
        np.testing.assert_allclose(out, expected, rtol=0, atol=2e-12)
        assert np.all(out <= np.minimum(1.0, 0.55 / np.maximum(envelope, 1e-30)) + 1e-15)


def test_limiting_a_gain_needs_no_gained_copy(rng) -> None:
    sr = 44100
    x = white_noise(rng, duration_s=1.0, amplitude=0.3)
    limiter = TruePeakLimiter()
    envelope = oversampled_peak_envelope(x)
    y_gain, peak_gain = limiter.limit(x, sr, envelope=envelope, gain=4.0)
    y_copy, peak_copy = limiter.limit(x * 4.0, sr)
    assert peak_gain == true_peak_linear(y_gain)
    assert true_peak_dbtp(y_gain) <= -1.0 and true_peak_dbtp(y_copy) <= -1.0
    np.testing.assert_allclose(y_gain, y_copy, rtol=1e-5, atol=1e-6)


def test_buffers_are_reused_and_the_predicted_curve_is_the_first_round(rng) -> None:
    sr = 48000
    x = white_noise(rng, sr=sr, duration_s=1.0, amplitude=0.5)
    limiter = TruePeakLimiter(release_ms=20.0)
    envelope = oversampled_peak_envelope_f32(x)
    curve = limiter.gain_curve(envelope, sr, gain=2.0)
    assert curve.dtype == np.float32 and curve.min() < 1.0
    out = np.empty(x.shape, dtype=np.float32)
    y, peak = limiter.limit(x, sr, envelope=envelope, gain=2.0, curve=curve.copy(), out=out)
    assert y is out and peak <= limiter.limit_linear
    expected, _ = limiter.limit(x, sr, gain=2.0)
    np.testing.assert_array_equal(y, expected)
    # Nothing to limit: the curve is all ones and the output a plain gain.
    assert np.all(limiter.gain_curve(envelope, sr, gain=0.1) == 1.0)


def test_checked_audio_keeps_float32_without_a_copy() -> None:
    x = np.zeros((2, 100), dtype=np.float32)
    assert checked_audio(x) is x
    assert checked_audio(x.astype(np.float64)).dtype == np.float64
    for bad in (np.nan, np.inf, -np.inf):
        y = x.copy()
        y[1, 50] = bad
        with pytest.raises(InvalidAudioError):
            checked_audio(y)
    with pytest.raises(InvalidAudioError):
        checked_audio(np.zeros(100, dtype=np.float32))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sr=st.sampled_from([8000, 44100, 96000]),
    channels=st.sampled_from([1, 2]),
    level_db=st.floats(min_value=-20.0, max_value=30.0),
    ceiling=st.floats(min_value=-20.0, max_value=0.0),
    lookahead_ms=st.floats(min_value=0.5, max_value=50.0),
    release_ms=st.floats(min_value=1.0, max_value=2000.0),
    seed=st.integers(min_value=0, max_value=2**31),
)
def test_any_signal_and_setting_is_finite_same_length_and_under_the_ceiling(
    sr: int,
    channels: int,
    level_db: float,
    ceiling: float,
    lookahead_ms: float,
    release_ms: float,
    seed: int,
) -> None:
    rng = np.random.default_rng(seed)
    x = white_noise(rng, sr=sr, duration_s=0.3, channels=channels, amplitude=0.3)
    x = x + sine(sr / 4.1, sr=sr, duration_s=0.3, channels=channels, amplitude=0.3)
    x = (x * 10 ** (level_db / 20)).astype(np.float32)
    limiter = TruePeakLimiter(
        ceiling_dbtp=ceiling, lookahead_ms=lookahead_ms, release_ms=release_ms
    )
    y, peak = limiter.limit(x, sr)
    assert y.shape == x.shape and y.dtype == np.float32
    assert np.all(np.isfinite(y))
    assert peak == true_peak_linear(y)
    assert true_peak_dbtp(y) <= ceiling


@pytest.mark.parametrize("sr", [44100, 48000, 96000])
@pytest.mark.parametrize("freq_hz", [50.0, 997.0, 5512.5])
def test_full_scale_square_waves_stay_under_the_ceiling(sr: int, freq_hz: float) -> None:
    """Worst case: a full-scale square wave (Gibbs overshoot between samples), driven 6 dB."""
    t = np.arange(sr) / sr
    square = np.sign(np.sin(2 * np.pi * freq_hz * t + 0.1)).astype(np.float32)
    x = np.stack([square, -square]) * np.float32(2.0)
    y = TruePeakLimiter(ceiling_dbtp=-1.0)(x, sr)
    assert y.shape == x.shape and np.all(np.isfinite(y))
    assert true_peak_dbtp(y) <= -1.0


def test_clipped_master_stays_under_the_ceiling() -> None:
    """A brick-wall-clipped master (long runs of +-1.0) pushed 3 dB over full scale."""
    sr = 44100
    x = chord_progression("E", "minor", sr=sr, seconds_per_chord=0.5, repeats=2)
    clipped = np.clip(x * 30.0, -1.0, 1.0).astype(np.float32) * np.float32(1.41)
    y = TruePeakLimiter(ceiling_dbtp=-1.0)(clipped, sr)
    assert y.shape == clipped.shape and np.all(np.isfinite(y))
    assert true_peak_dbtp(y) <= -1.0

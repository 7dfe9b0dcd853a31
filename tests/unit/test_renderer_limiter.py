"""TruePeakLimiter measured as audio: the ceiling holds on the shared 4x true-peak meter, no
latency, look-ahead and release behave."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import resample_poly

from services.common.loudness import true_peak_dbtp, true_peak_linear
from services.renderer.limiter import TruePeakLimiter, oversampled_peak_envelope
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

"""Shared meters: BS.1770 integrated loudness and 4x-oversampled true peak."""

import numpy as np
import pytest
from scipy.signal import resample_poly

from services.common.loudness import integrated_loudness, true_peak_dbtp, true_peak_linear
from tests.signals import sine


@pytest.mark.parametrize("channels", [1, 2])
def test_true_peak_equals_resample_poly_measurement(
    rng: np.random.Generator, channels: int
) -> None:
    x = (0.3 * rng.standard_normal((channels, 30000))).astype(np.float32)
    reference = np.abs(resample_poly(x.astype(np.float64), 4, 1, axis=-1)).max()
    assert true_peak_linear(x) == pytest.approx(max(reference, np.abs(x).max()), rel=1e-12)


def test_inter_sample_peak_of_quarter_rate_sine_is_found() -> None:
    # fs/4 sine at 45 degrees: every sample sits at 0.707 of the true peak (-3.01 dB).
    x = sine(11025.0, sr=44100, duration_s=0.5, amplitude=1.0, phase=np.pi / 4)
    assert np.abs(x).max() == pytest.approx(np.sqrt(0.5), rel=1e-5)
    # (BS.1770-4 Annex 2 allows a few tenths of a dB of interpolation error this close to fs/2.)
    assert true_peak_dbtp(x) == pytest.approx(0.0, abs=0.2)


def test_full_scale_997hz_stereo_reads_zero_lufs() -> None:
    # BS.1770: a 0 dBFS 997 Hz sine reads -3.01 LUFS per channel; two channels sum to ~0 LUFS.
    assert integrated_loudness(
        sine(997.0, sr=48000, duration_s=3.0, amplitude=1.0), 48000
    ) == pytest.approx(0.0, abs=0.1)
    assert integrated_loudness(
        sine(997.0, sr=48000, duration_s=3.0, amplitude=1.0, channels=1), 48000
    ) == pytest.approx(-3.01, abs=0.1)

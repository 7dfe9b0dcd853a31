"""Exciter measured as audio: what passes below the corner, which harmonics appear above it, and
the invariants (bypass, bounds, shapes) on generated signals."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.signal import sosfiltfilt

from services.common.errors import InvalidParameterError
from services.common.params import BY_NAME, defaults
from services.renderer.exciter import (
    FOLD_MIN_MARGINS,
    SATURATOR_BIAS,
    SATURATOR_MAX_SLOPE,
    Exciter,
    _forward_biased,
    saturate,
)
from services.renderer.filters import CONTEXT_TOLERANCE, zero_phase_sosfilt
from tests.signals import little_song, sine, white_noise

SR = 44100


def spectrum(y: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """Amplitude spectrum (Hann, calibrated so a sine of amplitude A reads A at its bin)."""
    y = np.asarray(y, dtype=np.float64)
    w = np.hanning(y.shape[-1])
    return np.fft.rfftfreq(y.shape[-1], 1 / sr), 2 * np.abs(np.fft.rfft(y * w)) / w.sum()


def level_db(freqs: np.ndarray, amps: np.ndarray, f0: float) -> float:
    i = int(np.argmin(np.abs(freqs - f0)))
    return float(20 * np.log10(amps[max(i - 3, 0) : i + 4].max() + 1e-300))


def sine_gain_db(x: np.ndarray, y: np.ndarray, freq_hz: float, sr: int) -> float:
    """Gain at ``freq_hz`` by least-squares sine fits on the middle half of both signals."""
    n = np.arange(x.shape[-1])[x.shape[-1] // 4 : 3 * x.shape[-1] // 4]
    basis = np.stack(
        [np.sin(2 * np.pi * freq_hz * n / sr), np.cos(2 * np.pi * freq_hz * n / sr)], 1
    )
    a = np.linalg.lstsq(basis, np.asarray(x, np.float64)[n], rcond=None)[0]
    b = np.linalg.lstsq(basis, np.asarray(y, np.float64)[n], rcond=None)[0]
    return float(20 * np.log10(np.hypot(*b) / np.hypot(*a)))


def band_l1(ex: Exciter, sr: int) -> float:
    """Sum of |impulse response| of one zero-phase band filter."""
    imp = np.zeros((1, 40001))
    imp[0, 20000] = 1.0
    return float(np.abs(zero_phase_sosfilt(ex.band_sos(sr), imp)).sum())


def test_mix_zero_is_an_exact_bypass(rng: np.random.Generator) -> None:
    x = white_noise(rng, sr=SR, duration_s=0.5)
    for ex in (Exciter(), Exciter(freq_hz=1000.0, drive_db=24.0, mix_pct=0.0)):
        assert ex.is_bypass
        assert np.array_equal(ex(x, SR), x)
    assert Exciter.from_params(defaults()).is_bypass
    assert not Exciter(mix_pct=0.5).is_bypass


def test_from_params_reads_the_exciter_parameters() -> None:
    ex = Exciter.from_params({"exciter_freq_hz": 5000.0, "exciter_drive_db": 9.0, "comp_ratio": 4})
    assert (ex.freq_hz, ex.drive_db, ex.mix_pct) == (
        5000.0,
        9.0,
        BY_NAME["exciter_mix_pct"].default,
    )
    with pytest.raises(InvalidParameterError):
        Exciter(freq_hz=500.0)
    with pytest.raises(InvalidParameterError):
        Exciter(mix_pct=101.0)
    ex = Exciter(drive_db=3.0)
    with pytest.raises(InvalidParameterError):
        ex.drive_db = 30.0
    assert ex.drive_db == 3.0


def test_saturator_curve() -> None:
    u = np.linspace(-50, 50, 200001)
    s = saturate(u, drive_db=0.0)
    assert s[100000] == 0.0
    slope = np.gradient(s, u)
    assert slope[100000] == pytest.approx(1.0, abs=1e-6)
    assert np.all(slope <= SATURATOR_MAX_SLOPE + 1e-6)
    # Asymmetric clip levels: an even component (2nd harmonic, and DC that the filter removes).
    tb = math.tanh(SATURATOR_BIAS)
    assert s.max() == pytest.approx((1 - tb) * SATURATOR_MAX_SLOPE, rel=1e-6)
    assert s.min() == pytest.approx(-(1 + tb) * SATURATOR_MAX_SLOPE, rel=1e-6)
    # Drive scales the input and the output back: quiet signals pass at unit gain.
    q = 1e-4 * np.sin(np.linspace(0, 20, 1000))
    assert np.allclose(saturate(q, drive_db=24.0), q, rtol=0, atol=1e-6)


def test_harmonics_match_the_reference_composition(rng: np.random.Generator) -> None:
    """The fused kernels compute HP(saturate(HP(x))) with zero-phase high-passes."""
    x = 0.3 * rng.standard_normal((3, 20000))
    ex = Exciter(freq_hz=2500.0, drive_db=15.0, mix_pct=40.0)
    sos = ex.band_sos(SR)
    pad = 20000
    band = sosfiltfilt(sos, np.pad(x, ((0, 0), (pad, pad))), padtype=None)
    ref = sosfiltfilt(sos, saturate(band, drive_db=15.0), padtype=None)[:, pad:-pad]
    wet = ex.harmonics(x, SR)
    assert np.max(np.abs(wet - ref)) < 1e-12
    y = ex(x.astype(np.float32), SR)
    expect = x.astype(np.float32) + 0.4 * ex.harmonics(x.astype(np.float32), SR)
    assert np.max(np.abs(y - expect)) < 1e-6


@pytest.mark.parametrize("sr", [22050, 44100, 96000])
@pytest.mark.parametrize("corner", [1000.0, 2000.0])
def test_a_low_sine_passes_unchanged(sr: int, corner: float) -> None:
    x = sine(200.0, sr=sr, duration_s=1.0, amplitude=0.5, channels=1)
    y = Exciter(freq_hz=corner, drive_db=24.0, mix_pct=100.0)(x, sr)
    assert abs(sine_gain_db(x[0], y[0], 200.0, sr)) < 0.1
    # Nothing new one octave and more below the corner (the onset click aside: middle half).
    mid = slice(x.shape[1] // 4, 3 * x.shape[1] // 4)
    freqs, amps = spectrum(y[0, mid].astype(np.float64) - x[0, mid], sr)
    assert 20 * np.log10(amps[freqs < corner / 2].max()) < -60.0


def test_no_new_content_below_the_corner_from_high_tones() -> None:
    """Two tones above the corner: the saturator makes difference tones (500 Hz, ...) and DC, and
    the second high-pass removes them."""
    x = (
        sine(200.0, sr=SR, duration_s=1.0, amplitude=0.4, channels=1)
        + sine(3000.0, sr=SR, duration_s=1.0, amplitude=0.25, channels=1)
        + sine(3500.0, sr=SR, duration_s=1.0, amplitude=0.25, channels=1)
    )
    for drive in (0.0, 12.0, 24.0):
        y = Exciter(freq_hz=2000.0, drive_db=drive, mix_pct=100.0)(x, SR)
        freqs, amps = spectrum(y[0].astype(np.float64) - x[0], SR)
        assert 20 * np.log10(amps[freqs < 1000.0].max()) < -60.0
        assert abs(sine_gain_db(x[0], y[0], 200.0, SR)) < 0.01
        # ... while the band above the corner does get new harmonics (6 kHz, 6.5 kHz, 7 kHz).
        assert level_db(freqs, amps, 6500.0) > -80.0


def test_harmonics_grow_with_drive_and_mix() -> None:
    """3 kHz at -20 dBFS, corner 2 kHz: the 2nd (6 kHz) and 3rd (9 kHz) harmonics grow with the
    drive over its whole range and in proportion to the mix."""
    x = sine(3000.0, sr=SR, duration_s=1.0, amplitude=0.1, channels=1)
    previous = (-np.inf, -np.inf)
    for drive in (0.0, 6.0, 12.0, 18.0, 24.0):
        levels = {}
        for mix in (25.0, 50.0, 100.0):
            y = Exciter(freq_hz=2000.0, drive_db=drive, mix_pct=mix)(x, SR)
            freqs, amps = spectrum(y[0].astype(np.float64) - x[0], SR)
            levels[mix] = (level_db(freqs, amps, 6000.0), level_db(freqs, amps, 9000.0))
        h2, h3 = levels[100.0]
        assert h2 > previous[0] + 0.5 and h3 > previous[1] + 0.5, (drive, levels)
        previous = (h2, h3)
        # The wet is linear in the mix: double the mix, +6 dB (float32 noise aside).
        for k in range(2):
            if levels[25.0][k] > -110.0:
                assert levels[50.0][k] - levels[25.0][k] == pytest.approx(6.02, abs=0.3)
                assert levels[100.0][k] - levels[50.0][k] == pytest.approx(6.02, abs=0.3)
    # At full drive and mix both are clearly audible (tens of dB above the float32 floor).
    assert previous[0] > -60.0 and previous[1] > -60.0


def test_harmonic_share_grows_with_drive_on_a_loud_band() -> None:
    """A loud band (-6 dBFS) clips: the wet gets quieter as the drive rises (the saturator is
    normalised by the drive), but its share of harmonics keeps growing."""
    x = sine(3000.0, sr=SR, duration_s=1.0, amplitude=0.5, channels=1)
    ex = Exciter(freq_hz=2000.0, mix_pct=100.0)
    share = []
    for drive in (0.0, 6.0, 12.0, 18.0, 24.0):
        ex.drive_db = drive
        freqs, amps = spectrum(ex.harmonics(x, SR)[0], SR)
        fundamental = 10 ** (level_db(freqs, amps, 3000.0) / 20)
        harmonics = np.sqrt(sum(10 ** (level_db(freqs, amps, k * 3000.0) / 10) for k in (2, 3, 4)))
        share.append(harmonics / fundamental)
    assert np.all(np.diff(share) > 0), share


def test_a_sine_far_below_the_corner_gets_essentially_nothing() -> None:
    x = sine(300.0, sr=SR, duration_s=1.0, amplitude=0.5, channels=1)
    ex = Exciter(freq_hz=3000.0, drive_db=24.0, mix_pct=100.0)
    wet = ex.harmonics(x, SR)[0]
    # Away from the onset and the end (whose clicks are broadband): below -120 dBFS.
    assert 20 * np.log10(np.abs(wet[4410:-4410]).max()) < -120.0
    y = ex(x, SR)
    assert np.max(np.abs(y[0, 4410:-4410] - x[0, 4410:-4410])) < 1e-6


def test_channels_are_processed_independently(rng: np.random.Generator) -> None:
    """Odd channel counts share the paired kernels; every channel equals its own mono render."""
    x = white_noise(rng, sr=SR, duration_s=0.3, channels=3, amplitude=0.2)
    x[1] = 0.0
    ex = Exciter(freq_hz=4000.0, drive_db=18.0, mix_pct=80.0)
    y = ex(x, SR)
    assert np.array_equal(y[1], x[1])
    for c in range(3):
        assert np.array_equal(y[c], ex(x[c : c + 1], SR)[0])


@pytest.mark.parametrize("sr", [8000, 16000, 44100, 48000, 96000, 192000])
def test_sample_rates_and_clamped_corner(sr: int) -> None:
    ex = Exciter(freq_hz=12000.0, drive_db=12.0, mix_pct=100.0)
    assert ex.corner_hz(sr) == min(12000.0, 0.45 * sr)
    x = little_song(sr=sr, duration_s=1.0)
    y = ex(x, sr)
    assert y.shape == x.shape and y.dtype == np.float32 and np.all(np.isfinite(y))
    # The band's designed response: -6 dB at the corner, 24 dB/octave below it.
    corner = ex.corner_hz(sr)
    r = ex.band_response_db(freqs_hz=np.array([corner, corner / 2]), sample_rate=sr)
    assert r[0] == pytest.approx(-6.02, abs=0.05)
    assert r[1] < -23.0


def _signal(kind: str, sr: int, channels: int, rng: np.random.Generator) -> np.ndarray:
    n = int(0.2 * sr)
    if kind == "silence":
        return np.zeros((channels, n), np.float32)
    if kind == "dc":
        return np.full((channels, n), 0.9, np.float32)
    if kind == "impulse":
        x = np.zeros((channels, n), np.float32)
        x[:, n // 3] = 1.0
        return x
    if kind == "square":
        t = np.arange(n) / sr
        return np.tile(np.sign(np.sin(2 * np.pi * 997.0 * t)).astype(np.float32), (channels, 1))
    return np.clip(rng.standard_normal((channels, n)), -1, 1).astype(np.float32)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    freq=st.floats(1000.0, 12000.0),
    drive=st.floats(0.0, 24.0),
    mix=st.floats(0.0, 100.0),
    kind=st.sampled_from(["silence", "dc", "impulse", "square", "noise"]),
    sr=st.sampled_from([8000, 22050, 44100, 96000, 192000]),
    channels=st.sampled_from([1, 2]),
)
def test_finite_bounded_and_same_shape(
    freq: float, drive: float, mix: float, kind: str, sr: int, channels: int
) -> None:
    rng = np.random.default_rng(7)
    x = _signal(kind, sr, channels, rng)
    ex = Exciter(freq_hz=freq, drive_db=drive, mix_pct=mix)
    y = ex(x, sr)
    assert y.shape == x.shape and y.dtype == np.float32
    assert np.all(np.isfinite(y))
    # |wet| <= l1(HP) * max|s(g u) / g| <= l1(HP)^2 * cosh(b)^2 * peak.
    peak = float(np.max(np.abs(x)))
    bound = peak * (1 + mix / 100 * SATURATOR_MAX_SLOPE * band_l1(ex, sr) ** 2)
    assert np.max(np.abs(y)) <= bound + 1e-6
    if kind == "silence":
        assert np.array_equal(y, x)
    if kind == "dc" and mix > 0:
        # A step from silence: a click at the onset, then the offset passes unchanged.
        tail = slice(int(0.1 * sr), int(0.15 * sr))
        assert np.allclose(y[:, tail], x[:, tail], atol=1e-5)


def test_empty_and_single_frame_buffers() -> None:
    ex = Exciter(mix_pct=100.0, drive_db=24.0)
    assert ex(np.zeros((2, 0), np.float32), SR).shape == (2, 0)
    y = ex(np.ones((2, 1), np.float32), SR)
    assert y.shape == (2, 1) and np.all(np.isfinite(y))


# --- kernels and block processing -----------------------------------------------------------------


def test_saturator_kernel_is_the_curve() -> None:
    """numpy's tanh, then the bias applied by the pass that reads it (through an identity
    section here), is the curve to a few 1e-16."""
    u = np.concatenate(
        [np.linspace(-40.0, 40.0, 200001), np.geomspace(1e-300, 1.0, 2000), [0.0, -0.0]]
    )
    u = np.concatenate([u, -u])
    got = np.tanh(u)[None, :].copy()
    identity = np.array([1.0, 0.0, 0.0, 1.0, 0.0, 0.0])
    _forward_biased(got, identity, math.tanh(SATURATOR_BIAS))
    want = saturate(u, drive_db=0.0)
    assert np.max(np.abs(got[0] - want)) < 1e-15
    assert np.all(got[0][u == 0.0] == 0.0)  # silence stays silent


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("freq", [1000.0, 12000.0])
def test_a_folded_buffer_is_the_one_pass_render(channels: int, freq: float) -> None:
    """A long mono or stereo buffer is rendered as its two halves side by side (each with the
    context of the other as a margin): within CONTEXT_TOLERANCE x peak of the rows rendered
    one pass each, on loud noise at full drive and mix."""
    ex = Exciter(freq_hz=freq, drive_db=24.0, mix_pct=100.0)
    x = np.clip(np.random.default_rng(5).standard_normal((channels, SR)), -1.0, 1.0)
    assert x.shape[1] // 2 > FOLD_MIN_MARGINS * ex.context(SR).history  # it folds
    folded = ex._render(x, SR, dry_gain=1.0, gain=1.0, out=np.empty(x.shape))
    rows = ex._render_rows(x, SR, dry_gain=1.0, gain=1.0, out=np.empty(x.shape))
    assert np.max(np.abs(folded - rows)) <= CONTEXT_TOLERANCE
    assert np.max(np.abs(folded - rows)) > 0.0  # the halves really were cut


@pytest.mark.parametrize("freq", [1000.0, 3000.0, 12000.0])
@pytest.mark.parametrize("sr", [44100, 96000])
def test_a_block_within_its_context_is_the_whole_buffer(freq: float, sr: int) -> None:
    """Loud noise (both filters' tails matter), full drive and mix: the block output over
    ``[start, stop)`` from ``[start - history, stop + lookahead)`` is within
    CONTEXT_TOLERANCE of the whole buffer's, and a tenth of the context is not enough."""
    ex = Exciter(freq_hz=freq, drive_db=24.0, mix_pct=100.0)
    ctx = ex.context(sr)
    assert ctx.history == ctx.lookahead > 0 and ctx.grid == 1
    x = np.clip(np.random.default_rng(2).standard_normal((2, sr // 2)), -1.0, 1.0)
    whole = ex._process(x, sr)
    start, stop = sr // 8, sr // 4
    block = ex._process(x[:, start - ctx.history : stop + ctx.lookahead], sr)
    error = np.max(
        np.abs(block[:, ctx.history : ctx.history + stop - start] - whole[:, start:stop])
    )
    assert error <= CONTEXT_TOLERANCE
    short = ctx.history // 10
    block = ex._process(x[:, start - short : stop + short], sr)
    assert np.max(np.abs(block[:, short : short + stop - start] - whole[:, start:stop])) > 1e-6

"""ParametricEQ measured as audio: sines through the filter against the parameter values and the
designed response."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import sosfilt

from services.common.params import BY_NAME, PARAMETERS, defaults
from services.renderer.eq import (
    MAX_FREQ_FRACTION,
    ParametricEQ,
    frequency_response,
    high_shelf_section,
    peaking_section,
)
from services.renderer.filters import CONTEXT_TOLERANCE
from tests.signals import sine, white_noise


def sine_gain_db(eq: ParametricEQ, freq_hz: float, *, sr: int, duration_s: float = 2.0) -> float:
    """Steady-state gain at ``freq_hz``: least-squares sine fit on the second half of the output
    (exact for any number of periods)."""
    x = sine(freq_hz, sr=sr, duration_s=duration_s, amplitude=0.25, channels=1)
    y = eq(x, sr)[0].astype(np.float64)
    n = np.arange(y.size)[y.size // 2 :]
    basis = np.stack(
        [np.sin(2 * np.pi * freq_hz * n / sr), np.cos(2 * np.pi * freq_hz * n / sr)], axis=1
    )
    coef, *_ = np.linalg.lstsq(basis, y[y.size // 2 :], rcond=None)
    return float(20 * np.log10(np.hypot(*coef) / 0.25))


@pytest.mark.parametrize("band", ["low_mid", "mid", "high_mid"])
@pytest.mark.parametrize("gain_db", [-12.0, -4.5, 6.0, 12.0])
@pytest.mark.parametrize("sr", [44100, 48000])
def test_bell_centre_gain_matches_the_parameter(band: str, gain_db: float, sr: int) -> None:
    freq = {"low_mid": 250.0, "mid": 1800.0, "high_mid": 6000.0}[band]
    q = {"low_mid": 0.7, "mid": 2.0, "high_mid": 4.0}[band]
    eq = ParametricEQ(**{f"{band}_freq_hz": freq, f"{band}_gain_db": gain_db, f"{band}_q": q})
    assert sine_gain_db(eq, freq, sr=sr) == pytest.approx(gain_db, abs=0.2)
    # Two octaves away a narrow bell leaves the signal nearly alone.
    if q >= 2.0:
        assert abs(sine_gain_db(eq, freq / 4, sr=sr)) < 0.1 * abs(gain_db) + 0.2


@pytest.mark.parametrize("gain_db", [-12.0, 6.0, 12.0])
def test_low_shelf_plateau_and_corner(gain_db: float) -> None:
    sr = 44100
    eq = ParametricEQ(low_shelf_freq_hz=160.0, low_shelf_gain_db=gain_db)
    assert sine_gain_db(eq, 20.0, sr=sr, duration_s=3.0) == pytest.approx(gain_db, abs=0.2)
    assert sine_gain_db(eq, 160.0, sr=sr) == pytest.approx(gain_db / 2, abs=0.2)
    assert abs(sine_gain_db(eq, 5000.0, sr=sr)) < 0.05


@pytest.mark.parametrize("gain_db", [-12.0, 6.0, 12.0])
@pytest.mark.parametrize("sr", [44100, 96000])
def test_high_shelf_plateau_and_corner(gain_db: float, sr: int) -> None:
    eq = ParametricEQ(high_shelf_freq_hz=2000.0, high_shelf_gain_db=gain_db)
    assert sine_gain_db(eq, 18000.0, sr=sr) == pytest.approx(gain_db, abs=0.2)
    assert sine_gain_db(eq, 2000.0, sr=sr) == pytest.approx(gain_db / 2, abs=0.2)
    assert abs(sine_gain_db(eq, 100.0, sr=sr)) < 0.05


@pytest.mark.parametrize("corner", [40.0, 80.0, 200.0])
def test_high_pass_is_minus_3_db_at_its_corner_and_12_db_per_octave(corner: float) -> None:
    sr = 44100
    eq = ParametricEQ(hpf_freq_hz=corner)
    assert sine_gain_db(eq, corner, sr=sr, duration_s=3.0) == pytest.approx(-3.01, abs=0.2)
    # Butterworth: |H(f0/2)| = 1/sqrt(17) (-12.3 dB), |H(f0/4)| = 1/sqrt(257) (-24.1 dB).
    assert sine_gain_db(eq, corner / 2, sr=sr, duration_s=4.0) == pytest.approx(-12.3, abs=0.3)
    assert sine_gain_db(eq, corner / 4, sr=sr, duration_s=6.0) == pytest.approx(-24.1, abs=0.5)
    assert abs(sine_gain_db(eq, corner * 10, sr=sr)) < 0.05


def test_measured_impulse_response_matches_the_designed_response() -> None:
    sr = 48000
    eq = ParametricEQ(
        hpf_freq_hz=60.0,
        low_shelf_freq_hz=150.0,
        low_shelf_gain_db=4.0,
        low_mid_freq_hz=400.0,
        low_mid_gain_db=-5.0,
        low_mid_q=1.5,
        mid_freq_hz=1500.0,
        mid_gain_db=3.0,
        mid_q=0.7,
        high_mid_freq_hz=5000.0,
        high_mid_gain_db=-2.0,
        high_mid_q=3.0,
        high_shelf_freq_hz=10000.0,
        high_shelf_gain_db=5.0,
    )
    assert eq.sos(sr).shape == (6, 6)
    impulse = np.zeros((1, sr * 2), dtype=np.float32)
    impulse[0, 0] = 1.0
    ir = eq(impulse, sr)[0].astype(np.float64)
    measured = np.fft.rfft(ir)
    freqs = np.fft.rfftfreq(ir.size, 1.0 / sr)
    designed = eq.frequency_response(freqs_hz=freqs, sample_rate=sr)
    band = (freqs > 30.0) & (freqs < 20000.0)
    err_db = 20 * np.log10(np.abs(measured[band]) / np.abs(designed[band]))
    assert np.max(np.abs(err_db)) < 0.01
    magnitude = eq.magnitude_response_db(freqs_hz=np.array([1500.0]), sample_rate=sr)
    assert magnitude.shape == (1,)


def test_neutral_parameters_are_an_exact_bypass(rng) -> None:
    eq = ParametricEQ.from_params(defaults())
    assert eq.is_bypass and eq.sos(44100).shape == (0, 6)
    x = white_noise(rng, duration_s=0.5)
    np.testing.assert_array_equal(eq(x, 44100), x)
    np.testing.assert_array_equal(
        eq.frequency_response(freqs_hz=np.array([20.0, 1000.0]), sample_rate=44100), [1, 1]
    )


def test_zero_gain_bands_are_skipped() -> None:
    eq = ParametricEQ(mid_gain_db=3.0, high_shelf_gain_db=-2.0)
    assert eq.sos(44100).shape == (2, 6)
    eq.mid_gain_db = 0.0
    assert eq.sos(44100).shape == (1, 6)
    eq.hpf_freq_hz = 30.0
    assert eq.sos(44100).shape == (2, 6)


def test_from_params_uses_the_schema_names() -> None:
    params = {"eq_mid_gain_db": 6.0, "eq_mid_freq_hz": 1000.0, "comp_ratio": 4.0}
    eq = ParametricEQ.from_params(params)
    assert eq.mid_gain_db == 6.0 and eq.mid_freq_hz == 1000.0
    assert eq.low_mid_freq_hz == BY_NAME["eq_low_mid_freq_hz"].default
    assert sine_gain_db(eq, 1000.0, sr=44100) == pytest.approx(6.0, abs=0.2)


@pytest.mark.parametrize("sr", [8000, 11025, 192000])
def test_extreme_settings_are_stable_at_any_sample_rate(sr: int, rng) -> None:
    """Every band at its top frequency and gain: corners are clamped below 0.45 * sr."""
    top = {p.name.removeprefix("eq_"): p.maximum for p in PARAMETERS if p.name.startswith("eq_")}
    eq = ParametricEQ(**top)
    sos = eq.sos(sr)
    assert sos.shape == (6, 6)
    for section in sos:
        assert np.all(np.abs(np.roots(section[3:])) < 1.0)
    x = white_noise(rng, sr=sr, duration_s=0.5, amplitude=0.05)
    y = eq(x, sr)
    assert np.all(np.isfinite(y)) and np.max(np.abs(y)) < 10.0
    # At 8 kHz the 16 kHz high shelf becomes a shelf at 0.45 * sr: full gain just below Nyquist.
    if sr == 8000:
        h = frequency_response(
            high_shelf_section(freq_hz=16000.0, gain_db=12.0, sample_rate=sr)[np.newaxis],
            freqs_hz=np.array([MAX_FREQ_FRACTION * sr]),
            sample_rate=sr,
        )
        assert 20 * np.log10(abs(h[0])) == pytest.approx(6.0, abs=0.01)


def test_peaking_section_is_exact_at_the_centre() -> None:
    for sr in (8000, 44100, 192000):
        for freq in (100.0, 1000.0, 3000.0):
            sos = peaking_section(freq_hz=freq, gain_db=7.0, q=1.3, sample_rate=sr)[np.newaxis]
            h = frequency_response(sos, freqs_hz=np.array([freq]), sample_rate=sr)
            assert 20 * np.log10(abs(h[0])) == pytest.approx(7.0, abs=1e-9)


def test_channels_are_filtered_independently(rng) -> None:
    x = white_noise(rng, duration_s=0.3)
    eq = ParametricEQ(mid_gain_db=9.0, hpf_freq_hz=100.0)
    y = eq(x, 44100)
    np.testing.assert_allclose(y[0], eq(x[:1], 44100)[0], atol=1e-7)
    np.testing.assert_allclose(y[1], eq(x[1:], 44100)[0], atol=1e-7)


# --- block processing and the kernels -------------------------------------------------------------

LONG_EQ = {
    "narrow boost at 100 Hz": ParametricEQ(
        hpf_freq_hz=20.5,
        low_shelf_freq_hz=40.0,
        low_shelf_gain_db=12.0,
        low_mid_freq_hz=100.0,
        low_mid_gain_db=12.0,
        low_mid_q=4.0,
    ),
    "six bands": ParametricEQ(
        hpf_freq_hz=200.0,
        low_shelf_freq_hz=40.0,
        low_shelf_gain_db=12.0,
        low_mid_freq_hz=100.0,
        low_mid_gain_db=-12.0,
        low_mid_q=4.0,
        mid_gain_db=6.0,
        high_mid_gain_db=-6.0,
        high_shelf_gain_db=6.0,
    ),
    "one bell": ParametricEQ(mid_gain_db=3.0),
}


@pytest.mark.parametrize("name", sorted(LONG_EQ))
def test_context_history_is_the_impulse_response_tail(name: str) -> None:
    """History: the shortest lag beyond which |h| sums to CONTEXT_TOLERANCE; no look-ahead."""
    sr = 44100
    eq = LONG_EQ[name]
    ctx = eq.context(sr)
    assert ctx.lookahead == 0 and ctx.grid == 1
    assert 0 < ctx.history < sr  # well under a second, even for the narrowest low bell
    impulse = np.zeros(4 * sr)
    impulse[0] = 1.0
    h = np.abs(sosfilt(eq.sos(sr), impulse))
    assert h[ctx.history :].sum() <= CONTEXT_TOLERANCE < h[ctx.history - 1 :].sum()


@pytest.mark.parametrize("name", sorted(LONG_EQ))
def test_cutting_the_input_at_the_history_is_within_the_tolerance(name: str) -> None:
    """The worst case for the cut: an input of full-scale samples of the impulse response's sign
    before the cut, so every left-out term adds up at the first kept frame."""
    sr = 44100
    eq = LONG_EQ[name]
    history = eq.context(sr).history
    impulse = np.zeros(3 * sr)
    impulse[0] = 1.0
    h = sosfilt(eq.sos(sr), impulse)
    first = 2 * sr  # the first kept frame
    x = np.sign(h[: first + 1][::-1])[None, :]  # x[n] = sign(h[first - n])
    whole = eq._process(x, sr)[0, first]
    cut = eq._process(x[:, first - history :], sr)[0, history]
    assert abs(whole - cut) <= CONTEXT_TOLERANCE
    # ... and it is what the bound says (up to the rounding of the large sums).
    assert abs(whole - cut) == pytest.approx(np.abs(h[history + 1 :]).sum(), rel=1e-3)


@pytest.mark.parametrize("channels", [1, 2, 3])
def test_process_is_sosfilt_and_leaves_its_input_alone(rng, channels: int) -> None:
    x = rng.standard_normal((channels, 5000))
    kept = x.copy()
    eq = LONG_EQ["six bands"]
    y = eq._process(x, 44100)
    np.testing.assert_array_equal(x, kept)
    np.testing.assert_array_equal(y, sosfilt(eq.sos(44100), x, axis=-1))
    # A view that is not C-contiguous (a caller's slice) works too.
    wide = rng.standard_normal((channels, 7000))
    np.testing.assert_array_equal(
        eq._process(wide[:, 1000:6000], 44100), sosfilt(eq.sos(44100), wide[:, 1000:6000])
    )

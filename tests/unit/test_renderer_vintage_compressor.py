"""Vintage compressor measured as audio: static curve, opto ballistics, saturation, bypass.

Harmonics are measured on exactly one second of a steady sine whose frequency is a whole number
of hertz, so the FFT bin of ``f`` Hz is ``f`` and no window is needed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.errors import InvalidParameterError
from services.common.loudness import integrated_loudness
from services.common.params import BY_NAME, defaults
from services.renderer.blocks import render_blocks
from services.renderer.compressor import Compressor
from services.renderer.processor import BLOCK_TOLERANCE
from services.renderer.vintage_compressor import (
    KNEE_DB,
    VARI_MU_DB,
    VintageCompressor,
    vintage_gain_reduction_db,
    waveshape,
)
from tests.signals import drum_loop, little_song, sine, white_noise
from tests.strategies import param_sets

SR = 44100
AMP = 0.5
AMP_DB = 20 * np.log10(AMP)


def rms_db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.asarray(x, dtype=np.float64) ** 2)))


def spectrum(y: np.ndarray, sr: int) -> np.ndarray:
    """Amplitude per 1 Hz bin of the last second of channel 0."""
    last = np.asarray(y[0, -sr:], dtype=np.float64)
    return np.abs(np.fft.rfft(last)) * 2 / sr


def harmonics_db(y: np.ndarray, f0: int, sr: int = SR, count: int = 9) -> np.ndarray:
    """Levels of harmonics 2..count relative to the fundamental (dB)."""
    spec = spectrum(y, sr)
    orders = [h for h in range(2, count + 1) if h * f0 < sr / 2]
    return np.array([20 * np.log10(spec[h * f0] / spec[f0] + 1e-300) for h in orders])


def thd(y: np.ndarray, f0: int, sr: int = SR) -> float:
    """Total harmonic distortion (harmonics 2..9 against the fundamental), as a ratio."""
    return float(np.sqrt(np.sum(10 ** (harmonics_db(y, f0, sr) / 10))))


# --- static curve -------------------------------------------------------------------------


def test_static_curve_shape() -> None:
    """Wide knee centred on the threshold, continuous slope, ratio that grows with level."""
    thr, ratio = -20.0, 4.0
    half = KNEE_DB / 2
    slope = 1 - 1 / ratio
    at = vintage_gain_reduction_db(
        np.array([-40.0, thr - half, thr, thr + half]), threshold_db=thr, ratio=ratio
    )
    np.testing.assert_allclose(at, [0.0, 0.0, slope * KNEE_DB / 8, slope * half], atol=1e-12)
    levels = np.linspace(-60.0, 20.0, 80001)
    gr = vintage_gain_reduction_db(levels, threshold_db=thr, ratio=ratio)
    local = np.gradient(gr, levels)
    assert np.all(np.diff(local) > -1e-6)  # slope never drops: no kinks, no ratio decrease
    assert np.all(local < 1.0)  # louder in is always louder out
    # Above the knee the local ratio is ratio + (ratio - 1) u / VARI_MU_DB.
    for u in (0.0, 10.0, 20.0, 26.0):
        i = np.searchsorted(levels, thr + half + u)
        expected = ratio + (ratio - 1) * u / VARI_MU_DB
        assert 1 / (1 - local[i]) == pytest.approx(expected, rel=1e-3)
    np.testing.assert_array_equal(vintage_gain_reduction_db(levels, threshold_db=thr, ratio=1), 0)


@pytest.mark.parametrize("ratio", [2.0, 4.0, 10.0])
@pytest.mark.parametrize("over_db", [-3.0, 3.0, 10.0, 20.0, 30.0])
def test_static_curve_measured_on_steady_sines(ratio: float, over_db: float) -> None:
    """Steady-state reduction of a long sine is the designed curve at its level (±1 dB)."""
    x = sine(1000.0, sr=SR, duration_s=2.0, amplitude=AMP)
    thr = AMP_DB - over_db
    y = VintageCompressor(threshold_db=thr, ratio=ratio)(x, SR)
    measured = rms_db(x[:, -SR // 2 :]) - rms_db(y[:, -SR // 2 :])
    designed = vintage_gain_reduction_db(np.array([AMP_DB]), threshold_db=thr, ratio=ratio)[0]
    assert measured == pytest.approx(designed, abs=1.0)
    assert measured == pytest.approx(designed, abs=0.25)  # in fact much closer


def test_vari_mu_squeezes_harder_than_the_modern_compressor_when_driven_hard() -> None:
    x = sine(1000.0, sr=SR, duration_s=2.0, amplitude=AMP)
    common = {"threshold_db": AMP_DB - 30.0, "ratio": 4.0}
    modern = Compressor(**common)(x, SR)
    vintage = VintageCompressor(**common)(x, SR)
    extra = rms_db(modern[:, -SR:]) - rms_db(vintage[:, -SR:])
    # 30 dB over at 4:1: the modern compressor takes 22.5 dB, the vintage curve ~24.2 dB.
    designed = vintage_gain_reduction_db(np.array([AMP_DB]), **common)[0] - 22.5
    assert extra == pytest.approx(designed, abs=0.3)
    assert extra > 1.0


def test_rms_detector_reads_a_sine_at_its_peak_level_whatever_the_frequency() -> None:
    for freq in (200.0, 1000.0, 5000.0):
        x = sine(freq, sr=SR, duration_s=2.0, amplitude=AMP)
        y = VintageCompressor(threshold_db=AMP_DB - 20, ratio=4.0)(x, SR)
        designed = vintage_gain_reduction_db(np.array([AMP_DB]), threshold_db=AMP_DB - 20, ratio=4)
        assert rms_db(x[:, -SR:]) - rms_db(y[:, -SR:]) == pytest.approx(designed[0], abs=0.5)


def test_detector_is_stereo_linked() -> None:
    left = sine(1000.0, sr=SR, duration_s=2.0, amplitude=AMP, channels=1)
    right = sine(300.0, sr=SR, duration_s=2.0, amplitude=0.01, channels=1)
    x = np.concatenate([left, right])
    y = VintageCompressor(threshold_db=AMP_DB - 20.0, ratio=4.0)(x, SR)
    reduction = [rms_db(x[c, -SR:]) - rms_db(y[c, -SR:]) for c in (0, 1)]
    assert reduction[1] == pytest.approx(reduction[0], abs=0.01)
    assert reduction[0] > 10.0


def _reference_curve(level_db: float, threshold_db: float, ratio: float) -> float:
    """The documented static curve, one level at a time, with libm's logarithm."""
    over = level_db - threshold_db
    half = KNEE_DB / 2
    slope = 1 - 1 / ratio
    if over <= -half:
        return 0.0
    if over <= half:
        return slope * (over + half) ** 2 / (2 * KNEE_DB)
    u = over - half
    a = ratio - 1
    return slope * half + u - (VARI_MU_DB / a) * math.log(1 + a * u / (VARI_MU_DB * ratio))


@pytest.mark.parametrize("ratio", [1.2, 2.0, 4.0, 20.0])
def test_static_curve_matches_the_formula_level_by_level(ratio: float) -> None:
    """The vectorised curve (numpy's logarithm on whole arrays) is the formula to rounding, at
    the knee's edges, below it (silence included) and far above it, in any array shape."""
    thr = -24.0
    half = KNEE_DB / 2
    levels = np.concatenate(
        [
            [-np.inf, -300.0, thr - half, thr - half + 1e-9, thr, thr + half, thr + half + 1e-9],
            np.linspace(-80.0, 40.0, 4801),
        ]
    )
    before = levels.copy()
    expected = np.array([_reference_curve(v, thr, ratio) for v in levels])
    got = vintage_gain_reduction_db(levels, threshold_db=thr, ratio=ratio)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(levels, before)  # the input is untouched
    grid = levels[7:4807].reshape(40, -1).T  # 2-D, not contiguous
    curved = vintage_gain_reduction_db(grid, threshold_db=thr, ratio=ratio)
    np.testing.assert_array_equal(curved, got[7:4807].reshape(40, -1).T)


@pytest.mark.parametrize("channels", [1, 2, 3])
def test_detector_target_is_the_curve_at_the_louder_channels_rms_level(
    channels: int, rng: np.random.Generator
) -> None:
    """The RMS detector and the static curve, checked against lfilter and the formula: each
    channel's mean square by a one-pole filter from zero, the louder one read as
    ``10 log10(2 ms)``, through the curve. Silence (-inf dB), quiet passages below the knee,
    the knee and heavy reduction all occur; a quiet signal takes the no-reduction shortcut. The
    public curve at the same levels agrees: the processor applies what it documents."""
    from scipy.signal import lfilter

    from services.renderer.compressor import time_constant_coef
    from services.renderer.vintage_compressor import _detector_target

    frames = 6000
    envelope = np.repeat([0.0, 1e-4, 0.05, 0.3, 2.0, 0.0, 0.01], frames // 6)[:frames]
    x = rng.standard_normal((channels, frames)) * envelope
    x[:, :100] = 0.0
    coef = time_constant_coef(2.0, SR)
    mean_square = lfilter([1 - coef], [1, -coef], x * x, axis=1)
    with np.errstate(divide="ignore"):
        level = 10 * np.log10(2 * mean_square.max(axis=0))
    for thr, ratio in ((-30.0, 4.0), (-12.0, 2.0), (-60.0, 10.0)):
        expected = np.array([_reference_curve(v, thr, ratio) for v in level])
        got = _detector_target(x, coef, thr, ratio, np.empty(frames))
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-11)
        public = vintage_gain_reduction_db(level, threshold_db=thr, ratio=ratio)
        np.testing.assert_allclose(got, public, rtol=0, atol=1e-11)
        assert np.all(got[:100] == 0.0)
    quiet = _detector_target(x * 1e-3, coef, 0.0, 4.0, np.empty(frames))
    np.testing.assert_array_equal(quiet, 0.0)


# --- ballistics ---------------------------------------------------------------------------


def _tone(amplitude: float, seconds: float) -> np.ndarray:
    return sine(1000.0, sr=SR, duration_s=seconds, amplitude=amplitude)


@pytest.mark.parametrize("attack_ms", [1.0, 10.0, 50.0])
def test_attack_time_measured_on_a_step(attack_ms: float) -> None:
    """63 % of the final gain reduction ``attack_ms`` after a step (±20 %)."""
    x = np.concatenate([_tone(AMP * 0.01, 0.5), _tone(AMP, 0.5)], axis=1)
    comp = VintageCompressor(
        threshold_db=AMP_DB - 20.0, ratio=4.0, attack_ms=attack_ms, release_ms=500.0
    )
    gr = comp.gain_reduction_db(x, SR)[SR // 2 :]
    final = gr[-SR // 10 :].mean()
    reached_ms = np.flatnonzero(gr >= 0.632 * final)[0] / SR * 1e3
    assert reached_ms == pytest.approx(attack_ms, rel=0.2)


def _recovery_ms(comp: VintageCompressor | Compressor, burst_s: float) -> float:
    """Time after a loud burst until the gain reduction is down to 37 % of its value at the
    end of the burst."""
    x = np.concatenate([_tone(0.005, 0.2), _tone(AMP, burst_s), _tone(0.005, 4.0)], axis=1)
    gr = comp.gain_reduction_db(x, SR)
    end = int(round((0.2 + burst_s) * SR))
    return float(np.flatnonzero(gr[end:] <= 0.368 * gr[end - 1])[0] / SR * 1e3)


@pytest.mark.parametrize("release_ms", [50.0, 300.0, 1000.0])
def test_release_time_after_a_short_burst(release_ms: float) -> None:
    """After a short hit only the fast part acts: back to 37 % in ``release_ms`` (±20 %)."""
    comp = VintageCompressor(
        threshold_db=AMP_DB - 20.0, ratio=4.0, attack_ms=1.0, release_ms=release_ms
    )
    assert _recovery_ms(comp, 0.05) == pytest.approx(release_ms, rel=0.2)


def test_release_is_program_dependent_unlike_the_modern_compressor() -> None:
    """After 2 s of heavy reduction the vintage compressor recovers much more slowly than after
    a 50 ms burst; the modern one recovers in the same time after both."""
    common = {"threshold_db": AMP_DB - 20.0, "ratio": 4.0, "attack_ms": 5.0, "release_ms": 200.0}
    vintage_short = _recovery_ms(VintageCompressor(**common), 0.05)
    vintage_long = _recovery_ms(VintageCompressor(**common), 2.0)
    modern_short = _recovery_ms(Compressor(**common), 0.05)
    modern_long = _recovery_ms(Compressor(**common), 2.0)
    assert vintage_long > 1.5 * vintage_short
    assert modern_long == pytest.approx(modern_short, rel=0.05)


def test_slow_release_lingers_after_sustained_reduction() -> None:
    """Two seconds after a long loud passage some reduction is left; after a short one, none."""
    common = {"threshold_db": AMP_DB - 20.0, "ratio": 4.0, "attack_ms": 5.0, "release_ms": 100.0}
    for burst_s, lingering in ((0.05, False), (3.0, True)):
        x = np.concatenate([_tone(AMP, burst_s), _tone(0.005, 2.0)], axis=1)
        gr = VintageCompressor(**common).gain_reduction_db(x, SR)
        left = gr[int((burst_s + 1.0) * SR)]
        assert bool(left > 0.5) is lingering, (burst_s, left)


# --- saturation ---------------------------------------------------------------------------


@pytest.mark.parametrize("even_pct", [0.0, 50.0, 100.0])
def test_thd_rises_with_drive_and_is_clean_at_zero_drive(even_pct: float) -> None:
    """1 kHz at -12 dBFS, below the knee of an active compressor: THD grows with drive."""
    x = sine(1000.0, sr=SR, duration_s=1.5, amplitude=0.25)
    values = []
    for drive_db in (0.0, 6.0, 12.0, 18.0):
        comp = VintageCompressor(threshold_db=0.0, ratio=4.0, drive_db=drive_db, even_pct=even_pct)
        values.append(thd(comp(x, SR), 1000))
    assert values[0] < 1e-3
    assert np.all(np.diff(values) > 0), values
    assert values[2] > 0.01  # 12 dB of drive is clearly audible colour


@pytest.mark.parametrize("drive_db", [6.0, 12.0, 18.0])
def test_even_share_sets_the_harmonic_balance(drive_db: float) -> None:
    x = sine(1000.0, sr=SR, duration_s=1.5, amplitude=AMP)
    even = harmonics_db(VintageCompressor(drive_db=drive_db, even_pct=100.0)(x, SR), 1000)
    odd = harmonics_db(VintageCompressor(drive_db=drive_db, even_pct=0.0)(x, SR), 1000)
    assert even[0] > even[1] + 20.0  # 2nd over 3rd
    assert odd[1] > odd[0] + 20.0  # 3rd over 2nd
    half = harmonics_db(VintageCompressor(drive_db=drive_db, even_pct=50.0)(x, SR), 1000)
    assert half[0] > -60.0 and half[1] > -60.0  # both


@pytest.mark.parametrize(("even_pct", "drive_db"), [(0.0, 12.0), (50.0, 12.0), (100.0, 12.0)])
def test_aliasing_of_a_5_khz_sine_is_40_db_down(even_pct: float, drive_db: float) -> None:
    """Everything that is not a harmonic of 5 kHz (aliases of harmonics above Nyquist) stays
    at least 40 dB below the fundamental, on a -1 dBFS sine at 44.1 kHz."""
    x = sine(5000.0, sr=SR, duration_s=1.5, amplitude=0.9)
    spec = spectrum(VintageCompressor(drive_db=drive_db, even_pct=even_pct)(x, SR), SR)
    harmonic = np.zeros(spec.size, dtype=bool)
    harmonic[::5000] = True
    worst = 20 * np.log10(spec[~harmonic].max() / spec[5000])
    assert worst < -40.0
    harmonics_in_band = 20 * np.log10(spec[10000 : SR // 2 : 5000] / spec[5000])
    assert harmonics_in_band.max() > -60.0  # it does distort: the test would see aliases


def test_no_dc_added() -> None:
    """The even curve makes DC; the DC blocker removes it."""
    x = sine(100.0, sr=SR, duration_s=2.0, amplitude=AMP)
    y = VintageCompressor(drive_db=24.0, even_pct=100.0)(x, SR)
    made = np.mean(waveshape(x[0].astype(np.float64) * 8.0, even_pct=100.0))  # what it would be
    assert made > 0.1
    assert abs(float(np.mean(y[:, -SR:], dtype=np.float64))) < 1e-4
    # DC already in the input is left alone (not added, not removed).
    offset = VintageCompressor(drive_db=12.0)(x + np.float32(0.1), SR)
    assert float(np.mean(offset[:, -SR:], dtype=np.float64)) == pytest.approx(0.1, abs=0.01)


def test_drive_is_level_compensated() -> None:
    """A -12 dBFS sine keeps its level at any drive; music moves by a few dB at most."""
    x = sine(1000.0, sr=SR, duration_s=1.0, amplitude=10 ** (-12 / 20))
    for drive_db in (6.0, 12.0, 24.0):
        for even_pct in (0.0, 50.0, 100.0):
            y = VintageCompressor(drive_db=drive_db, even_pct=even_pct)(x, SR)
            assert rms_db(y[:, -SR // 2 :]) == pytest.approx(rms_db(x[:, -SR // 2 :]), abs=0.1)
    rng = np.random.default_rng(3)
    for music in (little_song(sr=SR, duration_s=4.0), drum_loop(120.0, rng=rng, duration_s=4.0)):
        before = integrated_loudness(music, SR)
        for even_pct in (0.0, 50.0, 100.0):
            after = integrated_loudness(
                VintageCompressor(drive_db=12.0, even_pct=even_pct)(music, SR), SR
            )
            assert after == pytest.approx(before, abs=3.0)


def test_waveshape_curve() -> None:
    u = np.linspace(-20, 20, 4001)
    for even_pct in (0.0, 30.0, 100.0):
        y = waveshape(u, even_pct=even_pct)
        assert np.all(np.diff(y) > 0)  # monotonic
        assert waveshape(np.array([0.0]), even_pct=even_pct)[0] == 0.0
    np.testing.assert_allclose(waveshape(u, even_pct=0), -waveshape(-u, even_pct=0))  # odd
    even_part = waveshape(u, even_pct=100) - u
    np.testing.assert_allclose(even_part, even_part[::-1])  # even


def test_saturation_with_ratio_one_leaves_the_gain_alone() -> None:
    """With ratio 1 only the saturation acts; with drive 0 only the gain acts."""
    x = sine(1000.0, sr=SR, duration_s=1.0, amplitude=AMP)
    comp = VintageCompressor(threshold_db=AMP_DB - 20.0, ratio=4.0)
    gain = 10 ** (-comp.gain_reduction_db(x, SR) / 20)
    np.testing.assert_allclose(comp(x, SR), x * gain, rtol=1e-6, atol=1e-7)
    sat = VintageCompressor(ratio=1.0, drive_db=12.0)
    np.testing.assert_allclose(sat(x, SR), sat.saturate(x, SR), rtol=1e-6, atol=1e-7)
    assert not sat.is_bypass
    assert np.all(sat.gain_reduction_db(x, SR) == 0)


def test_oversampling_taps_are_symmetric_as_the_kernel_assumes() -> None:
    """The saturation kernel folds the interpolator's phases by their symmetry."""
    from services.renderer.vintage_compressor import _oversampling_taps

    up, down = _oversampling_taps()
    assert np.array_equal(up[0], up[0, ::-1])
    assert np.all(up[1:, 0] == 0)
    assert np.array_equal(up[2, 1:], up[2, :0:-1])
    assert np.array_equal(up[3, 1:], up[1, :0:-1])
    np.testing.assert_allclose(up, 4 * down[:, ::-1], rtol=1e-6)


@pytest.mark.parametrize(("drive_db", "even_pct"), [(6.0, 50.0), (24.0, 0.0), (12.0, 100.0)])
@pytest.mark.parametrize("frames", [1, 17, 2048, 5000])
def test_saturation_matches_a_direct_polyphase_reference(
    drive_db: float, even_pct: float, frames: int, rng: np.random.Generator
) -> None:
    """The saturation stage against a plain float64 polyphase computation with the same taps:
    interpolate every phase, waveshape, decimate, DC-block (block edges, signal edges, the
    folded phases)."""
    from scipy.signal import lfilter

    from services.renderer import vintage_compressor as module

    x = rng.uniform(-1.0, 1.0, (2, frames))
    up, down = (t.astype(np.float64) for t in module._oversampling_taps())
    reach = module._FIR_REACH
    drive = module.DRIVE_REFERENCE_GAIN * 10 ** (drive_db / 20)
    out_gain = module._output_gain(drive, even_pct) / drive
    padded = np.pad(x, ((0, 0), (2 * reach, 2 * reach)))
    span = frames + 2 * reach  # oversampled samples from -reach to frames + reach
    width = 2 * reach + 1
    y = np.zeros((2, frames))
    for p in range(module.OVERSAMPLING):
        v = sum(up[p, j] * padded[:, j : j + span] for j in range(width))
        d = out_gain * waveshape(drive * v, even_pct=even_pct) - v
        y += sum(down[p, j] * d[:, j : j + frames] for j in range(width))
    pole = np.exp(-2 * np.pi * module.DC_BLOCK_HZ / SR)
    gain = 0.5 * (1 + pole)
    expected = x + lfilter([gain, -gain], [1.0, -pole], y, axis=1)
    got = VintageCompressor(drive_db=drive_db, even_pct=even_pct).saturate(x, SR)
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-6)


# --- bypass, parameters, robustness -----------------------------------------------------------


def test_bypass_is_bit_exact(rng: np.random.Generator) -> None:
    x = np.clip(white_noise(rng, duration_s=1.0, amplitude=0.5), -1, 1)
    for comp in (
        VintageCompressor(),
        VintageCompressor.from_params(defaults()),
        VintageCompressor(threshold_db=-40, ratio=1, attack_ms=1, release_ms=2000, even_pct=100),
    ):
        assert comp.is_bypass
        np.testing.assert_array_equal(comp(x, SR), x)
    assert not VintageCompressor(ratio=1.01).is_bypass
    assert not VintageCompressor(drive_db=0.1).is_bypass


def test_from_params_takes_the_vcomp_parameters() -> None:
    params = {
        "vcomp_threshold_db": -25.0,
        "vcomp_ratio": 3.0,
        "vcomp_attack_ms": 7.0,
        "vcomp_release_ms": 700.0,
        "vcomp_drive_db": 9.0,
        "vcomp_even_pct": 80.0,
        "comp_ratio": 8.0,
    }
    comp = VintageCompressor.from_params(params)
    assert comp.parameters == {
        "threshold_db": -25.0,
        "ratio": 3.0,
        "attack_ms": 7.0,
        "release_ms": 700.0,
        "drive_db": 9.0,
        "even_pct": 80.0,
    }
    with pytest.raises(InvalidParameterError):
        VintageCompressor.from_params({"vcomp_ratio": 0.5})


def test_parameters_are_validated() -> None:
    comp = VintageCompressor(ratio=2.0)
    for name in ("ratio", "attack_ms", "release_ms", "drive_db", "even_pct", "threshold_db"):
        spec = BY_NAME[f"vcomp_{name}"]
        with pytest.raises(InvalidParameterError):
            setattr(comp, name, spec.maximum + 1.0)
        with pytest.raises(InvalidParameterError):
            setattr(comp, name, float("nan"))
    assert comp.ratio == 2.0  # the old value is kept
    comp.reset()
    assert comp.ratio == 2.0
    assert "VintageCompressor(" in repr(comp)


EXTREMES = [
    {"threshold_db": -40.0, "ratio": 10.0, "attack_ms": 1.0, "release_ms": 50.0},
    {"threshold_db": -40.0, "ratio": 10.0, "attack_ms": 100.0, "release_ms": 2000.0},
    {"threshold_db": -40.0, "ratio": 10.0, "attack_ms": 1.0, "drive_db": 24.0, "even_pct": 0.0},
    {"threshold_db": 0.0, "ratio": 1.0, "drive_db": 24.0, "even_pct": 100.0},
    {"threshold_db": -40.0, "ratio": 10.0, "drive_db": 24.0, "even_pct": 50.0},
]


def _signals(rng: np.random.Generator) -> dict[str, np.ndarray]:
    n = SR // 2
    impulse = np.zeros((2, n), np.float32)
    impulse[:, n // 2] = 1.0
    return {
        "silence": np.zeros((2, n), np.float32),
        "dc": np.full((2, n), 0.9, np.float32),
        "negative_dc": np.full((1, n), -1.0, np.float32),
        "impulse": impulse,
        "noise": np.clip(white_noise(rng, duration_s=0.5, amplitude=0.7), -1, 1),
        "square": np.sign(sine(50.0, sr=SR, duration_s=0.5)).astype(np.float32),
    }


@pytest.mark.parametrize("params", EXTREMES)
def test_finite_and_bounded_at_extremes(params: dict[str, float], rng: np.random.Generator) -> None:
    comp = VintageCompressor(**params)
    for name, x in _signals(rng).items():
        y = comp(x, SR)
        assert y.shape == x.shape and y.dtype == np.float32, name
        assert np.all(np.isfinite(y)), name
        assert np.max(np.abs(y)) <= 2.0, (name, float(np.max(np.abs(y))))
        if name == "silence":
            np.testing.assert_array_equal(y, 0.0)


@settings(max_examples=25, deadline=None)
@given(params=param_sets, amplitude=st.floats(0.0, 1.0))
def test_any_parameters_give_finite_bounded_same_shape_output(
    params: dict[str, float], amplitude: float
) -> None:
    x = np.clip(white_noise(np.random.default_rng(0), duration_s=0.1, amplitude=amplitude), -1, 1)
    y = VintageCompressor.from_params(params)(x, SR)
    assert y.shape == x.shape and np.all(np.isfinite(y))
    assert np.max(np.abs(y)) <= 2.5 * np.max(np.abs(x)) + 1e-6


@pytest.mark.parametrize("sr", [8000, 22050, 44100, 96000, 192000])
@pytest.mark.parametrize("channels", [1, 2])
def test_any_sample_rate_and_channel_count(sr: int, channels: int) -> None:
    x = sine(440.0, sr=sr, duration_s=1.0, amplitude=AMP, channels=channels)
    original = x.copy()
    comp = VintageCompressor(threshold_db=AMP_DB - 20.0, ratio=4.0, drive_db=12.0)
    y = comp(x, sr)
    assert y.shape == x.shape and y.dtype == np.float32 and np.all(np.isfinite(y))
    np.testing.assert_array_equal(x, original)  # the input is not modified
    # The time constants are in milliseconds whatever the rate: the same steady reduction.
    gr = comp.gain_reduction_db(x, sr)[-sr // 4 :].mean()
    designed = vintage_gain_reduction_db(np.array([AMP_DB]), threshold_db=AMP_DB - 20, ratio=4)
    assert gr == pytest.approx(designed[0], abs=0.5)


def test_short_buffers() -> None:
    comp = VintageCompressor(threshold_db=-30.0, ratio=4.0, drive_db=12.0)
    for frames in (0, 1, 2, 17):
        x = np.full((2, frames), 0.5, np.float32)
        y = comp(x, SR)
        assert y.shape == x.shape and np.all(np.isfinite(y))


# --- block processing -----------------------------------------------------------------------


@pytest.mark.parametrize("drive_db", [0.0, 12.0])
def test_blocks_match_after_a_loud_passage_at_the_lowest_threshold(drive_db: float) -> None:
    """The RMS detector's worst start: a block extent that begins right where +6 dBFS stops
    and a quiet sine sits in the middle of the knee at the lowest threshold. The history must
    forget the loud mean square to a fraction of the quiet one."""
    loud = sine(1000.0, sr=SR, duration_s=1.0, amplitude=2.0)
    quiet = sine(1000.0, sr=SR, duration_s=1.5, amplitude=10 ** (-40 / 20))
    x = np.concatenate([loud, quiet], axis=1).astype(np.float32)
    comp = VintageCompressor(
        threshold_db=-40.0, ratio=10.0, attack_ms=20.0, release_ms=50.0, drive_db=drive_db
    )
    history = comp.context(SR).history
    whole = render_blocks([comp], x, SR, block_frames=x.shape[1])
    for extra in (-32, 0, 32):  # the second block's extent starts at the step, or just around it
        blocked = render_blocks([comp], x, SR, block_frames=SR + history + extra)
        np.testing.assert_allclose(blocked, whole, rtol=0, atol=BLOCK_TOLERANCE)


def test_detector_kernels_are_serial() -> None:
    """The RMS detector's and the static curve's kernels are serial and release the GIL too."""
    from services.renderer import vintage_compressor as module

    for name in ("_detector_power", "_subtract_vari_mu"):
        options = getattr(module, name).targetoptions
        assert not options.get("parallel", False) and options.get("nogil", False), name


def test_kernels_are_serial() -> None:
    """No parallel numba kernels: versions render concurrently in threads, and numba's default
    threading layer aborts on concurrent parallel kernels."""
    from services.renderer import vintage_compressor as module

    for name in ("_static_target", "_opto_ballistics", "_add_dc_blocked", "_distortion_kernel"):
        options = getattr(module, name).targetoptions
        assert not options.get("parallel", False) and options.get("nogil", False), name

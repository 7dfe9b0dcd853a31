"""StereoEnhancer measured as audio: the side below the crossover, the mid (never touched), the
width, and the correlation guard on generated signals with controlled correlation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.signal import sosfilt, sosfiltfilt

from services.common.errors import InvalidParameterError
from services.common.params import defaults
from services.renderer.eq import ParametricEQ
from services.renderer.filters import (
    impulse_response_l1,
    sos_pass,
    tail_frames,
    zero_phase_sosfilt,
)
from services.renderer.stereo import (
    GUARD_HISTORY_HOPS,
    GUARD_LOOKAHEAD_HOPS,
    SIDE_TAIL_TOLERANCE,
    StereoEnhancer,
    correlation_window_frames,
    guard_hop_frames,
    guarded_side_gain,
    mid_side,
)
from tests.signals import drum_loop, little_song, white_noise

SR = 44100


def correlated_noise(
    rng: np.random.Generator, corr: float, frames: int, *, amplitude: float = 0.2
) -> np.ndarray:
    """Stereo noise whose L/R correlation is ``corr`` (independent mid and side, with
    ``(E_M - E_S) / (E_M + E_S) = corr``)."""
    m = amplitude * np.sqrt((1 + corr) / 2) * rng.standard_normal(frames)
    s = amplitude * np.sqrt((1 - corr) / 2) * rng.standard_normal(frames)
    return np.stack([m + s, m - s]).astype(np.float32)


def block_correlation(audio: np.ndarray, block: int, starts: np.ndarray) -> np.ndarray:
    """sum(L R) / sqrt(sum(L^2) sum(R^2)) over ``audio[:, s : s + block]`` for each start
    (0 for silent blocks)."""
    x = np.asarray(audio, dtype=np.float64)

    def csum(v: np.ndarray) -> np.ndarray:
        return np.concatenate([[0.0], np.cumsum(v)])

    ll, rr, lr = csum(x[0] ** 2), csum(x[1] ** 2), csum(x[0] * x[1])
    e = starts + block
    num = lr[e] - lr[starts]
    den = np.sqrt(np.maximum((ll[e] - ll[starts]) * (rr[e] - rr[starts]), 0.0))
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


def side_to_mid_db(audio: np.ndarray) -> float:
    mid, side = mid_side(audio)
    return float(10 * np.log10(np.sum(side**2) / np.sum(mid**2)))


def side_sine_gain_db(enhancer: StereoEnhancer, freq_hz: float, sr: int) -> float:
    """Gain of a side-only sine (L = -R) at ``freq_hz``: least-squares fit on the middle half."""
    n_frames = int(max(1.0, 40.0 / freq_hz) * sr)
    n = np.arange(n_frames)
    s = 0.25 * np.sin(2 * np.pi * freq_hz * n / sr)
    y = enhancer(np.stack([s, -s]).astype(np.float32), sr)
    _, side = mid_side(y)
    mid = slice(n_frames // 4, 3 * n_frames // 4)
    basis = np.stack(
        [np.sin(2 * np.pi * freq_hz * n[mid] / sr), np.cos(2 * np.pi * freq_hz * n[mid] / sr)], 1
    )
    coef = np.linalg.lstsq(basis, side[mid], rcond=None)[0]
    return float(20 * np.log10(max(np.hypot(*coef), 1e-300) / 0.25))


# --- bypass, parameters --------------------------------------------------------------------------


def test_defaults_are_an_exact_bypass(rng: np.random.Generator) -> None:
    x = white_noise(rng, sr=SR, duration_s=0.5)
    enhancer = StereoEnhancer.from_params(defaults())
    assert enhancer.is_bypass
    assert np.array_equal(enhancer(x, SR), x)
    assert not StereoEnhancer(width=1.0, bass_mono_hz=21.0).is_bypass
    assert not StereoEnhancer(width=0.99).is_bypass


@pytest.mark.parametrize("channels", [1, 3])
def test_non_stereo_audio_passes_unchanged(rng: np.random.Generator, channels: int) -> None:
    x = white_noise(rng, sr=SR, duration_s=0.3, channels=channels)
    for enhancer in (StereoEnhancer(width=0.0), StereoEnhancer(width=2.0, bass_mono_hz=300.0)):
        assert np.array_equal(enhancer(x, SR), x)


def test_from_params_and_validation() -> None:
    enhancer = StereoEnhancer.from_params({"stereo_width": 1.4, "eq_mid_gain_db": 3.0})
    assert (enhancer.width, enhancer.bass_mono_hz) == (1.4, 20.0)
    with pytest.raises(InvalidParameterError):
        StereoEnhancer(width=2.5)
    with pytest.raises(InvalidParameterError):
        StereoEnhancer(bass_mono_hz=10.0)
    enhancer.width = 0.5
    with pytest.raises(InvalidParameterError):
        enhancer.width = -0.1
    assert enhancer.width == 0.5


# --- the zero-phase filtering under the crossover ------------------------------------------------


def test_sos_pass_is_scipy_sosfilt_and_zero_phase_is_forward_backward(
    rng: np.random.Generator,
) -> None:
    x = rng.standard_normal((3, 20000))
    sos = StereoEnhancer(bass_mono_hz=90.0).side_highpass_sos(SR)
    for rows in (1, 2, 3):
        buf = x[:rows].copy()
        sos_pass(sos, buf)
        assert np.array_equal(buf, sosfilt(sos, x[:rows], axis=-1))
        buf = x[:rows].copy()
        sos_pass(sos, buf, reverse=True)
        assert np.array_equal(buf, sosfilt(sos, x[:rows, ::-1], axis=-1)[:, ::-1])
    pad = 100000
    ref = sosfiltfilt(sos, np.pad(x, ((0, 0), (pad, pad))), padtype=None)[:, pad:-pad]
    assert np.max(np.abs(zero_phase_sosfilt(sos, x) - ref)) < 1e-10


def _long_cascade(sections: int) -> np.ndarray:
    """A cascade of up to seven sections: six EQ bands and the 4th-order side high-pass."""
    eq = ParametricEQ(
        hpf_freq_hz=60.0,
        low_shelf_gain_db=3.0,
        low_mid_gain_db=-4.0,
        mid_gain_db=2.0,
        high_mid_gain_db=-2.0,
        high_shelf_gain_db=3.0,
    )
    sos = np.concatenate([eq.sos(SR), StereoEnhancer(bass_mono_hz=90.0).side_highpass_sos(SR)])
    return sos[:sections]


@pytest.mark.parametrize("sections", range(8))
def test_sos_pass_kernels_are_sosfilt_for_every_cascade_length(
    rng: np.random.Generator, sections: int
) -> None:
    """One, two or three sections per loop, one row or pairs of rows: always exactly sosfilt,
    in place or into ``out`` (``buf`` then unchanged)."""
    x = rng.standard_normal((3, 5000))
    sos = _long_cascade(sections)
    for rows in (1, 2, 3):
        for reverse in (False, True):
            src = x[:rows, ::-1] if reverse else x[:rows]
            ref = sosfilt(sos, src, axis=-1) if sections else src
            ref = ref[:, ::-1] if reverse else ref
            buf = x[:rows].copy()
            sos_pass(sos, buf, reverse=reverse)
            assert np.array_equal(buf, ref), (rows, reverse)
            out = np.empty_like(buf)
            buf = x[:rows].copy()
            sos_pass(sos, buf, reverse=reverse, out=out)
            assert np.array_equal(out, ref) and np.array_equal(buf, x[:rows]), (rows, reverse)


@pytest.mark.parametrize("zero_phase", [False, True])
@pytest.mark.parametrize("tolerance", [1e-7, 1e-12])
def test_tail_frames_is_the_shortest_context_within_the_tolerance(
    zero_phase: bool, tolerance: float
) -> None:
    """Against a long impulse response from scipy: the absolute sum at lags >= d is within the
    tolerance, at lags >= d - 1 it is not."""
    for sos in (_long_cascade(6), StereoEnhancer(bass_mono_hz=30.0).side_highpass_sos(SR)):
        d = tail_frames(sos, tolerance, zero_phase=zero_phase)
        n = 4 * SR
        impulse = np.zeros(2 * n + 1)
        impulse[n] = 1.0
        if zero_phase:
            h = np.abs(sosfiltfilt(sos, impulse, padtype=None)[n:])
        else:
            h = np.abs(sosfilt(sos, impulse)[n:])
        assert h[d:].sum() <= tolerance < h[d - 1 :].sum()
        l1 = 2 * h.sum() - h[0] if zero_phase else h.sum()
        assert impulse_response_l1(sos, zero_phase=zero_phase) == pytest.approx(l1, rel=1e-9)
    assert tail_frames(np.zeros((0, 6))) == 0


def _bursts(rng: np.random.Generator, hop: int, frames: int, burst_hops: list[int]) -> np.ndarray:
    """Nearly mono noise (the guard lets width 2 through) with a loud side burst filling each
    of ``burst_hops``: each caps the windows through it."""
    mid = 0.3 * rng.standard_normal(frames)
    side = 0.05 * rng.standard_normal(frames)
    for h in burst_hops:
        side[h * hop : (h + 1) * hop] += 3.0 * rng.standard_normal(hop)
    return np.stack([mid + side, mid - side])


@pytest.mark.parametrize("sr", [44100, 48000])
@pytest.mark.parametrize("bass_mono_hz", [20.0, 150.0])
def test_a_block_gets_the_whole_buffer_side_gain(sr: int, bass_mono_hz: float) -> None:
    """Processing ``[start - history, stop + lookahead)`` gives the whole buffer's side gain on
    ``[start, stop)``. Without the high-pass, a side burst just inside the guard's reach from
    the first and from the last kept frame shows that neither reach can be a hop shorter
    (``start`` on the hop grid, as block processing keeps it; ``stop`` anywhere)."""
    hop = guard_hop_frames(sr)
    enhancer = StereoEnhancer(width=2.0, bass_mono_hz=bass_mono_hz)
    ctx = enhancer.context(sr)
    assert ctx.grid == hop and ctx.history % hop == 0
    start = (ctx.history // hop + 10) * hop
    stop = start + 100 * hop + 2  # the last kept hop has two frames: it reads the next knot
    first_hop, last_hop = start // hop, (stop - 1) // hop
    # The windows through the first kept hop's gain start GUARD_HISTORY_HOPS hops before it; the
    # last one through the last kept hop's gain ends GUARD_LOOKAHEAD_HOPS - 1 hops after it.
    bursts = [first_hop - GUARD_HISTORY_HOPS, last_hop + GUARD_LOOKAHEAD_HOPS - 1]
    x = _bursts(np.random.default_rng(5), hop, stop + ctx.lookahead + 20 * hop, bursts)
    whole = enhancer.side_gain(x, sr)[start:stop]
    assert whole.min() < 2.0 - 1e-4  # the bursts do cap the gain at both ends
    lo, hi = start - ctx.history, stop + ctx.lookahead
    block = enhancer.side_gain(x[:, lo:hi], sr)[start - lo : stop - lo]
    np.testing.assert_allclose(block, whole, rtol=0, atol=1e-9)
    if bass_mono_hz > 20.0:
        return  # the high-pass's tail lies outside the guard's reach: a hop less still works
    # A hop less on either side and a burst falls out of a window that counts.
    for lo_short, hi_short in ((lo + hop, hi), (lo, hi - hop)):
        short = enhancer.side_gain(x[:, lo_short:hi_short], sr)[start - lo_short : stop - lo_short]
        assert np.max(np.abs(short - whole)) > 1e-4


# --- bass mono -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sr", "crossover"), [(44100, 60.0), (44100, 150.0), (8000, 300.0), (96000, 120.0)]
)
def test_side_below_the_crossover_is_at_least_40_db_down(sr: int, crossover: float) -> None:
    enhancer = StereoEnhancer(bass_mono_hz=crossover)
    # Documented: LR8 magnitude, -6 dB at the crossover, >= 48 dB down an octave below.
    assert side_sine_gain_db(enhancer, crossover / 2, sr) < -40.0
    assert side_sine_gain_db(enhancer, crossover / 2, sr) == pytest.approx(-48.2, abs=1.0)
    assert side_sine_gain_db(enhancer, crossover / 3, sr) < -70.0
    assert side_sine_gain_db(enhancer, crossover, sr) == pytest.approx(-6.02, abs=0.1)
    assert abs(side_sine_gain_db(enhancer, 4 * crossover, sr)) < 0.01
    designed = enhancer.side_response_db(
        freqs_hz=np.array([crossover / 2, crossover, 4 * crossover]), sample_rate=sr
    )
    assert designed[0] < -48.0 and designed[1] == pytest.approx(-6.02, abs=0.01)


def test_bass_mono_is_phase_coherent(rng: np.random.Generator) -> None:
    """The side above the crossover comes out in phase; removed + kept = the side (a zero-phase
    complementary crossover), so the mid and the high side are untouched."""
    crossover = 120.0
    x = white_noise(rng, sr=SR, duration_s=1.0, amplitude=0.2)
    y = StereoEnhancer(bass_mono_hz=crossover)(x, SR)
    mid_in, side_in = mid_side(x)
    mid_out, side_out = mid_side(y)
    assert np.max(np.abs(mid_out - mid_in)) < 1e-7
    # The kept side is exactly the zero-phase high-pass of the side (float32 output aside).
    sos = StereoEnhancer(bass_mono_hz=crossover).side_highpass_sos(SR)
    assert np.max(np.abs(side_out - zero_phase_sosfilt(sos, side_in[None])[0])) < 1e-7
    # Zero phase: a side sine at 4x the crossover keeps its phase (no delay).
    n = np.arange(SR)
    s = 0.25 * np.sin(2 * np.pi * 4 * crossover * n / SR)
    _, side = mid_side(
        StereoEnhancer(bass_mono_hz=crossover)(np.stack([s, -s]).astype(np.float32), SR)
    )
    assert np.max(np.abs(side[SR // 4 : 3 * SR // 4] - s[SR // 4 : 3 * SR // 4])) < 2e-3


@pytest.mark.parametrize("crossover", [40.0, 120.0, 300.0])
def test_the_side_filtered_in_two_halves_is_the_one_pass_side(
    rng: np.random.Generator, crossover: float
) -> None:
    """The side high-pass runs on the two halves of a buffer at once, each with the filter's
    tail of the other as context: within SIDE_TAIL_TOLERANCE x peak of one pass, on loud noise
    with a low-frequency swell across the split."""
    n = 4 * SR
    x = white_noise(rng, sr=SR, duration_s=n / SR, amplitude=0.5).astype(np.float64)
    x[0] += 0.4 * np.sin(2 * np.pi * 25.0 * np.arange(n) / SR)
    enhancer = StereoEnhancer(bass_mono_hz=crossover)
    sos = enhancer.side_highpass_sos(SR)
    assert n // 2 > 2 * enhancer._side_tail(SR)  # the split is taken
    _, side_in = mid_side(x)
    want = zero_phase_sosfilt(sos, side_in[None])[0]
    got = enhancer._side(x, SR)
    peak = np.max(np.abs(side_in))
    assert np.max(np.abs(got - want)) <= SIDE_TAIL_TOLERANCE * peak + 1e-15


# --- width and mono compatibility ----------------------------------------------------------------


@pytest.mark.parametrize("width", [0.0, 0.5, 1.0, 1.5, 2.0])
@pytest.mark.parametrize("bass_mono_hz", [20.0, 150.0])
def test_the_mid_is_never_changed(
    rng: np.random.Generator, width: float, bass_mono_hz: float
) -> None:
    for x in (little_song(sr=SR, duration_s=1.5), correlated_noise(rng, 0.3, SR)):
        y = StereoEnhancer(width=width, bass_mono_hz=bass_mono_hz)(x, SR)
        mono_in = (x[0].astype(np.float64) + x[1]) / 2
        mono_out = (y[0].astype(np.float64) + y[1]) / 2
        assert np.max(np.abs(mono_out - mono_in)) < 2e-7


def test_width_zero_is_mono_and_width_below_one_scales_the_side(rng: np.random.Generator) -> None:
    x = correlated_noise(rng, 0.0, SR // 2)
    y = StereoEnhancer(width=0.0)(x, SR)
    assert np.array_equal(y[0], y[1])
    y = StereoEnhancer(width=0.5)(x, SR)
    assert np.allclose(mid_side(y)[1], 0.5 * mid_side(x)[1], atol=1e-7)
    assert StereoEnhancer(width=0.5).side_gain(x, SR) == pytest.approx(np.full(x.shape[1], 0.5))


@pytest.mark.parametrize("corr", [0.8, 0.9])
def test_width_two_raises_side_to_mid_by_6_db(rng: np.random.Generator, corr: float) -> None:
    x = correlated_noise(rng, corr, 2 * SR)
    enhancer = StereoEnhancer(width=2.0)
    y = enhancer(x, SR)
    assert side_to_mid_db(y) - side_to_mid_db(x) == pytest.approx(6.02, abs=0.05)
    assert np.all(enhancer.side_gain(x, SR) == 2.0)  # the guard had nothing to do


def test_the_guard_limits_width_on_weakly_correlated_noise(rng: np.random.Generator) -> None:
    x = correlated_noise(rng, 0.2, 2 * SR)  # E_M / E_S = 1.5: k may reach about sqrt(1.5)
    y = StereoEnhancer(width=2.0)(x, SR)
    gain = side_to_mid_db(y) - side_to_mid_db(x)
    assert 0.5 < gain < 20 * np.log10(np.sqrt(1.5)) + 0.05
    block = correlation_window_frames(SR)
    starts = np.arange(0, x.shape[1] - block, 97)
    assert np.all(block_correlation(y, block, starts) >= 0.0)


def _guard_signals(rng: np.random.Generator, sr: int) -> dict[str, np.ndarray]:
    seg = int(0.4 * sr)
    sections = [(0.9, 0.2), (0.1, 0.3), (-0.4, 0.1), (0.5, 0.05), (0.0, 0.2), (0.95, 0.3)]
    return {
        "noise 0.02": correlated_noise(rng, 0.02, 2 * sr),
        "noise 0.3": correlated_noise(rng, 0.3, 2 * sr),
        "changing": np.concatenate(
            [correlated_noise(rng, c, seg, amplitude=a) for c, a in sections], 1
        ),
        "song": little_song(sr=sr, duration_s=2.0),
        "drums": drum_loop(120.0, rng=rng, sr=sr, duration_s=2.0),
        "song + wide noise": little_song(sr=sr, duration_s=2.0)
        + correlated_noise(rng, -0.5, 2 * sr, amplitude=0.05),
    }


@pytest.mark.parametrize("sr", [44100, 48000])
def test_correlation_stays_non_negative_per_block(rng: np.random.Generator, sr: int) -> None:
    """Every window of correlation_window_frames (50 ms at 48 kHz, 49.9 ms at 44.1 kHz), at
    every alignment, that was not negatively correlated stays so at width 1.5 and 2; windows
    that were negative are left exactly as width 1 leaves them."""
    block = correlation_window_frames(sr)
    if sr == 48000:
        assert block == 2400  # exactly 50 ms
    for name, x in _guard_signals(rng, sr).items():
        starts = np.arange(0, x.shape[1] - block, 13)
        for bass_mono_hz in (20.0, 150.0):
            ref = StereoEnhancer(width=1.0, bass_mono_hz=bass_mono_hz)(x, sr)
            before = block_correlation(ref, block, starts)
            for width in (1.5, 2.0):
                y = StereoEnhancer(width=width, bass_mono_hz=bass_mono_hz)(x, sr)
                after = block_correlation(y, block, starts)
                keep = before >= 0
                assert np.all(after[keep] >= 0.0), (name, bass_mono_hz, width, after[keep].min())
                for s in starts[~keep][::25]:
                    assert np.array_equal(y[:, s : s + block], ref[:, s : s + block]), name
                # And the enhancer did widen where it could.
                if name in ("noise 0.3", "changing", "song"):
                    assert side_to_mid_db(y) > side_to_mid_db(ref) + 0.3, name


def test_guarded_gain_is_between_one_and_width(rng: np.random.Generator) -> None:
    x = _guard_signals(rng, SR)["changing"]
    mid, side = mid_side(x)
    k = guarded_side_gain(mid, side, width=1.7, sample_rate=SR)
    assert k.shape == mid.shape
    assert np.all(k >= 1.0) and np.all(k <= 1.7)
    assert np.array_equal(k, StereoEnhancer(width=1.7).side_gain(x, SR))
    # Smooth: at most a 21 ms ramp from 1 to 1.7 (about 0.7 / 21 per millisecond).
    assert np.max(np.abs(np.diff(k))) < 0.7 / (0.02 * SR) * 1.1


def test_short_buffers_are_one_window(rng: np.random.Generator) -> None:
    x = correlated_noise(rng, 0.2, 500)
    y = StereoEnhancer(width=2.0)(x, SR)
    assert block_correlation(y, 500, np.array([0]))[0] >= 0.0
    assert side_to_mid_db(y) > side_to_mid_db(x)
    assert StereoEnhancer(width=2.0)(x[:, :0], SR).shape == (2, 0)
    assert StereoEnhancer(width=2.0, bass_mono_hz=300.0)(x[:, :1], SR).shape == (2, 1)


# --- invariants ----------------------------------------------------------------------------------


def _signal(kind: str, sr: int) -> np.ndarray:
    n = int(0.25 * sr)
    if kind == "silence":
        return np.zeros((2, n), np.float32)
    if kind == "dc":
        return np.stack([np.full(n, 0.9), np.full(n, -0.3)]).astype(np.float32)
    if kind == "impulse":
        x = np.zeros((2, n), np.float32)
        x[0, n // 2] = 1.0
        return x
    if kind == "antiphase":
        s = np.sin(2 * np.pi * 50.0 * np.arange(n) / sr)
        return np.stack([s, -s]).astype(np.float32)
    return np.clip(np.random.default_rng(3).standard_normal((2, n)), -1, 1).astype(np.float32)


@settings(max_examples=40, deadline=None)
@given(
    width=st.floats(0.0, 2.0),
    bass=st.floats(20.0, 300.0),
    kind=st.sampled_from(["silence", "dc", "impulse", "antiphase", "noise"]),
    sr=st.sampled_from([8000, 22050, 44100, 96000, 192000]),
)
def test_finite_bounded_and_same_shape(width: float, bass: float, kind: str, sr: int) -> None:
    x = _signal(kind, sr)
    y = StereoEnhancer(width=width, bass_mono_hz=bass)(x, sr)
    assert y.shape == x.shape and y.dtype == np.float32 and np.all(np.isfinite(y))
    # |L| <= |M| + width * l1(HP) * |S| with l1 of the zero-phase side high-pass <= 2.4.
    peak = float(np.max(np.abs(x)))
    assert np.max(np.abs(y)) <= peak * (1 + width * 2.4) + 1e-6
    mono_in = (x[0].astype(np.float64) + x[1]) / 2
    assert np.max(np.abs((y[0].astype(np.float64) + y[1]) / 2 - mono_in)) < 2e-7
    if kind == "silence":
        assert np.array_equal(y, x)

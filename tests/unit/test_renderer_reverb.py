"""Reverb measured as audio: RT60 by Schroeder integration, pre-delay, damping, stereo
decorrelation, bypass, determinism and robustness at the extremes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.signal import butter, fftconvolve, sosfilt

from services.common.errors import InvalidParameterError
from services.common.params import BY_NAME, REVERB_STYLES, defaults
from services.renderer.reverb import (
    MAX_PARTITION,
    MIN_PARTITION,
    STYLES,
    Reverb,
    band_rt60_s,
    fft_convolve,
    partition_frames,
    style_table_markdown,
)
from tests.signals import white_noise
from tests.strategies import param_sets

ROOT = Path(__file__).resolve().parents[2]
DECORRELATED = ("plate", "hall", "spacious")


def schroeder_t30_s(h: np.ndarray, sr: int) -> float:
    """RT60 from the energy decay curve (backward integration), fitted from -5 to -35 dB."""
    energy = np.cumsum((np.asarray(h, dtype=np.float64) ** 2)[::-1])[::-1]
    edc_db = 10 * np.log10(energy / energy[0] + 1e-300)
    start, stop = int(np.argmax(edc_db <= -5.0)), int(np.argmax(edc_db <= -35.0))
    assert stop > start + 10, "the decay curve never reaches -35 dB"
    slope_db_per_s = np.polyfit(np.arange(start, stop) / sr, edc_db[start:stop], 1)[0]
    return float(-60.0 / slope_db_per_s)


def octave_band(h: np.ndarray, sr: int, centre_hz: float) -> np.ndarray:
    sos = butter(4, [centre_hz / 2**0.5, centre_hz * 2**0.5], btype="bandpass", fs=sr, output="sos")
    return sosfilt(sos, np.asarray(h, dtype=np.float64))


def style_decays() -> list[tuple[str, float]]:
    """Each style at its documented typical decay and the ends of its documented range."""
    return [
        (name, decay)
        for name, s in STYLES.items()
        for decay in (s.decay_range_s[0], s.typical_decay_s, s.decay_range_s[1])
    ]


@pytest.mark.parametrize("sr", [44100, 48000])
@pytest.mark.parametrize(("style", "decay_s"), style_decays())
def test_rt60_is_the_decay_parameter(style: str, decay_s: float, sr: int) -> None:
    # Undamped: the broadband T30 of each channel; at the style's typical damping: the 1 kHz
    # octave (below every style's damping corner).
    ir = Reverb(style=style, decay_s=decay_s, damping_pct=0.0, mix_pct=30.0).impulse_response(sr)
    for channel in ir:
        assert schroeder_t30_s(channel, sr) == pytest.approx(decay_s, rel=0.2)
    damped = Reverb(
        style=style, decay_s=decay_s, damping_pct=STYLES[style].typical_damping_pct, mix_pct=30.0
    ).impulse_response(sr)
    for channel in damped:
        assert schroeder_t30_s(octave_band(channel, sr, 1000.0), sr) == pytest.approx(
            decay_s, rel=0.2
        )


@pytest.mark.parametrize("style", REVERB_STYLES)
@pytest.mark.parametrize("decay_s", [0.2, 8.0])
def test_rt60_at_the_ends_of_the_schema_range(style: str, decay_s: float) -> None:
    ir = Reverb(style=style, decay_s=decay_s, damping_pct=0.0, mix_pct=30.0).impulse_response(44100)
    assert schroeder_t30_s(ir[0], 44100) == pytest.approx(decay_s, rel=0.2)


@pytest.mark.parametrize("style", REVERB_STYLES)
def test_rt60_of_a_processed_impulse(style: str) -> None:
    """Through process(): the wet part of an impulse (output minus input) decays at RT60."""
    sr, decay = 48000, STYLES[style].typical_decay_s
    x = np.zeros((2, int(1.6 * decay * sr) + sr // 5), dtype=np.float32)
    x[:, 0] = 1.0
    reverb = Reverb(style=style, decay_s=decay, damping_pct=0.0, predelay_ms=30.0, mix_pct=60.0)
    wet = reverb(x, sr).astype(np.float64) - x
    for channel in wet:
        assert schroeder_t30_s(channel, sr) == pytest.approx(decay, rel=0.2)


@pytest.mark.parametrize("style", REVERB_STYLES)
@pytest.mark.parametrize("predelay_ms", [0.0, 7.5, 20.0, 64.0, 120.0])
@pytest.mark.parametrize("sr", [44100, 48000])
def test_first_wet_energy_arrives_at_the_predelay(style: str, predelay_ms: float, sr: int) -> None:
    ir = Reverb(style=style, predelay_ms=predelay_ms, decay_s=0.5, mix_pct=30.0).impulse_response(
        sr
    )
    level = np.max(np.abs(ir), axis=0)
    first = int(np.argmax(level > 1e-3 * level.max()))
    assert abs(first / sr * 1e3 - predelay_ms) <= 1.0
    assert np.all(ir[:, : int(round(predelay_ms * 1e-3 * sr))] == 0.0)  # nothing earlier


@pytest.mark.parametrize("style", REVERB_STYLES)
def test_damping_shortens_the_high_frequency_decay(style: str) -> None:
    sr, decay = 48000, 2.0
    corner = STYLES[style].damping_corner_hz
    high = 8000.0 if corner < 5000 else 16000.0
    rt_high = []
    for damping in (0.0, 50.0, 100.0):
        ir = Reverb(style=style, decay_s=decay, damping_pct=damping, mix_pct=30.0)
        h = ir.impulse_response(sr)[0]
        rt_low = schroeder_t30_s(octave_band(h, sr, 500.0), sr)
        rt_high.append(schroeder_t30_s(octave_band(h, sr, high), sr))
        assert rt_low == pytest.approx(decay, rel=0.2)  # below the corner: untouched
        designed = band_rt60_s(high, style=style, decay_s=decay, damping_pct=damping)
        assert rt_high[-1] == pytest.approx(float(designed), rel=0.2)
    assert rt_high[0] == pytest.approx(decay, rel=0.2)
    assert rt_high[0] > rt_high[1] > rt_high[2]
    assert rt_high[2] < 0.8 * decay


@pytest.mark.parametrize("sr", [44100, 48000])
@pytest.mark.parametrize("style", DECORRELATED)
def test_left_and_right_tails_are_decorrelated(style: str, sr: int) -> None:
    s = STYLES[style]
    for decay in (0.2, s.decay_range_s[0], s.typical_decay_s, s.decay_range_s[1]):
        for predelay in (0.0, s.typical_predelay_ms):
            ir = Reverb(style=style, decay_s=decay, predelay_ms=predelay, mix_pct=30.0)
            left, right = ir.impulse_response(sr).astype(np.float64)
            assert abs(np.corrcoef(left, right)[0, 1]) < 0.3


def test_intimate_is_narrower_but_still_stereo() -> None:
    left, right = Reverb(style="intimate", mix_pct=30.0).impulse_response(44100).astype(float)
    assert 0.1 < np.corrcoef(left, right)[0, 1] < 0.6


def test_impulse_response_has_unit_energy_and_no_dc() -> None:
    for style in REVERB_STYLES:
        ir = Reverb(style=style, decay_s=1.0, mix_pct=30.0).impulse_response(44100)
        energy = np.sum(ir.astype(np.float64) ** 2, axis=1)
        assert np.mean(energy) == pytest.approx(1.0, rel=1e-4)
        assert abs(float(np.sum(ir[0], dtype=np.float64))) < 0.02  # 20 Hz high-pass


def test_mix_zero_is_an_exact_bypass(rng: np.random.Generator) -> None:
    x = np.clip(white_noise(rng, duration_s=0.5, amplitude=0.5), -1, 1)
    for style in REVERB_STYLES:
        reverb = Reverb(style=style, decay_s=8.0, damping_pct=0.0, mix_pct=0.0)
        assert reverb.is_bypass
        y = reverb(x, 44100)
        assert y.dtype == np.float32
        np.testing.assert_array_equal(y, x)
    assert Reverb.from_params(defaults()).is_bypass
    np.testing.assert_array_equal(Reverb.from_params(defaults())(x, 44100), x)


def test_wet_level_scales_the_added_reverb(rng: np.random.Generator) -> None:
    x = white_noise(rng, duration_s=0.5, amplitude=0.2)
    wet30 = Reverb(mix_pct=30.0)(x, 44100).astype(np.float64) - x
    wet60 = Reverb(mix_pct=60.0)(x, 44100).astype(np.float64) - x
    np.testing.assert_allclose(wet60, 2 * wet30, atol=1e-6)
    assert not Reverb(mix_pct=30.0).is_bypass


def test_renders_are_deterministic_and_repeatable(rng: np.random.Generator) -> None:
    x = white_noise(rng, duration_s=1.0, amplitude=0.2)
    params = {"reverb_style": 2.0, "reverb_decay_s": 2.2, "reverb_mix_pct": 40.0}
    reverb = Reverb.from_params(params)
    first = reverb(x, 48000)
    np.testing.assert_array_equal(reverb(x, 48000), first)
    reverb.reset()
    np.testing.assert_array_equal(reverb(x, 48000), first)
    np.testing.assert_array_equal(Reverb.from_params(params)(x, 48000), first)


def test_mono_in_is_mono_out_with_the_left_impulse_response(rng: np.random.Generator) -> None:
    mono = white_noise(rng, duration_s=0.5, amplitude=0.2, channels=1)
    reverb = Reverb(style="hall", mix_pct=50.0)
    y = reverb(mono, 44100)
    assert y.shape == mono.shape
    stereo = reverb(np.repeat(mono, 2, axis=0), 44100)
    np.testing.assert_allclose(y[0], stereo[0], atol=1e-6)
    assert not np.allclose(stereo[0], stereo[1], atol=1e-3)  # stereo in: decorrelated tails


def test_more_than_two_channels_reuse_the_two_impulse_responses(
    rng: np.random.Generator,
) -> None:
    x = np.repeat(white_noise(rng, duration_s=0.3, amplitude=0.2, channels=1), 4, axis=0)
    y = Reverb(style="plate", mix_pct=50.0)(x, 44100)
    np.testing.assert_allclose(y[2], y[0], atol=1e-6)
    np.testing.assert_allclose(y[3], y[1], atol=1e-6)


def test_output_is_the_input_length_and_the_tail_is_cut() -> None:
    x = np.zeros((2, 4410), dtype=np.float32)
    x[:, -1] = 1.0
    y = Reverb(predelay_ms=0.0, mix_pct=60.0)(x, 44100)
    assert y.shape == x.shape
    assert y[0, -1] == pytest.approx(
        1.0 + 0.6 * Reverb(predelay_ms=0.0).impulse_response(44100)[0, 0]
    )


def test_style_accepts_names_and_rejects_unknown_values() -> None:
    assert Reverb(style="spacious").style == REVERB_STYLES.index("spacious")
    assert Reverb(style=1.0).style_name == "plate"
    with pytest.raises(InvalidParameterError):
        Reverb(style="cathedral")
    with pytest.raises(InvalidParameterError):
        Reverb(style=1.5)
    with pytest.raises(InvalidParameterError):
        Reverb(decay_s=9.0)
    reverb = Reverb(mix_pct=10.0)
    with pytest.raises(InvalidParameterError):
        reverb.mix_pct = 61.0
    assert reverb.mix_pct == 10.0


def test_changing_a_parameter_changes_the_impulse_response() -> None:
    reverb = Reverb(decay_s=0.5, mix_pct=20.0)
    short = reverb.impulse_response(44100)
    reverb.decay_s = 1.0
    assert reverb.impulse_response(44100).shape[1] > short.shape[1]


def test_documented_defaults_are_in_range_and_the_docs_table_is_current() -> None:
    for s in STYLES.values():
        for name, value in (
            ("reverb_decay_s", s.typical_decay_s),
            ("reverb_decay_s", s.decay_range_s[0]),
            ("reverb_decay_s", s.decay_range_s[1]),
            ("reverb_predelay_ms", s.typical_predelay_ms),
            ("reverb_damping_pct", s.typical_damping_pct),
        ):
            BY_NAME[name].validate(value)
    assert style_table_markdown() in (ROOT / "docs" / "renderer.md").read_text()


SAMPLE_RATES = [8000, 16000, 44100, 48000, 96000, 192000]


def _signal(kind: str, channels: int, n: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "silence":
        return np.zeros((channels, n), dtype=np.float32)
    if kind == "dc":
        return np.full((channels, n), 0.9, dtype=np.float32)
    if kind == "impulse":
        x = np.zeros((channels, n), dtype=np.float32)
        x[:, 0] = 1.0
        return x
    if kind == "square":
        return (
            np.where(np.arange(n) % 64 < 32, 1.0, -1.0)[None, :]
            .repeat(channels, 0)
            .astype(np.float32)
        )
    return np.clip(rng.standard_normal((channels, n)) * 0.5, -1, 1).astype(np.float32)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    params=param_sets,
    sr=st.sampled_from(SAMPLE_RATES),
    kind=st.sampled_from(["silence", "dc", "impulse", "square", "noise"]),
    channels=st.sampled_from([1, 2]),
    n=st.integers(1, 6000),
)
def test_finite_bounded_and_length_preserving(
    params: dict[str, float], sr: int, kind: str, channels: int, n: int, rng: np.random.Generator
) -> None:
    reverb = Reverb.from_params(params)
    x = _signal(kind, channels, n, rng)
    y = reverb(x, sr)
    assert y.shape == x.shape and y.dtype == np.float32
    assert np.all(np.isfinite(y))
    if reverb.is_bypass or kind == "silence":
        np.testing.assert_array_equal(y, x)
        return
    # |wet| <= max|x| * sum|h| (a hard bound), and in practice far below it.
    l1 = float(np.max(np.sum(np.abs(reverb.impulse_response(sr)[:, :n].astype(float)), axis=1)))
    bound = np.max(np.abs(x)) * (1.0 + reverb.mix_pct / 100.0 * l1) * (1 + 1e-5) + 1e-6
    assert np.max(np.abs(y)) <= bound


def test_dc_does_not_come_back_as_reverb() -> None:
    sr = 8000
    x = np.full((2, 3 * sr), 0.5, dtype=np.float32)
    reverb = Reverb(style="hall", decay_s=0.5, predelay_ms=0.0, mix_pct=60.0)
    y = reverb(x, sr)
    # After the IR has passed, only the dry offset is left (the IR's sum is ~0).
    np.testing.assert_allclose(y[:, -sr // 2 :], 0.5, atol=0.01)


# --- Convolution and streaming: any partition, any block lengths, the one-pass result. ---


def reference_wet(x: np.ndarray, ir: np.ndarray) -> np.ndarray:
    """Float64 linear convolution of channel ``c`` with IR channel ``c % 2``, cut to the input."""
    n = x.shape[1]
    return np.stack(
        [
            fftconvolve(x[c].astype(np.float64), ir[c % 2].astype(np.float64))[:n]
            for c in range(len(x))
        ]
    )


def stream_blocks(
    reverb: Reverb, x: np.ndarray, sr: int, lengths: list[int] | np.ndarray
) -> np.ndarray:
    """``x`` through a fresh :meth:`Reverb.stream` in consecutive blocks of ``lengths`` (cycled)."""
    stream = reverb.stream(sr, x.shape[0])
    x64 = x.astype(np.float64)
    out, start, i = [], 0, 0
    while start < x.shape[1]:
        stop = min(x.shape[1], start + int(lengths[i % len(lengths)]))
        block = np.ascontiguousarray(x64[:, start:stop])
        y = stream(block)
        assert y.shape == block.shape
        out.append(np.asarray(y, dtype=np.float64))
        start, i = stop, i + 1
    return np.concatenate(out, axis=1)


@pytest.mark.parametrize("partition", [None, 4096, 16384, 131072])  # 131072: one partition
def test_convolution_is_the_linear_convolution(
    partition: int | None, rng: np.random.Generator
) -> None:
    sr = 44100
    ir = Reverb(style="hall", decay_s=1.0, predelay_ms=30.0, mix_pct=30.0).impulse_response(sr)
    x = white_noise(rng, sr=sr, duration_s=3.0, amplitude=0.3)
    expected = reference_wet(x, ir)
    got = fft_convolve(x, ir, partition=partition)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-6)
    short = x[:, :1000]  # shorter than one partition
    np.testing.assert_allclose(
        fft_convolve(short, ir, partition=partition), reference_wet(short, ir), rtol=0, atol=1e-6
    )


def test_process_adds_the_scaled_convolution(rng: np.random.Generator) -> None:
    sr = 44100
    reverb = Reverb(style="spacious", decay_s=4.0, damping_pct=0.0, mix_pct=45.0)
    x = white_noise(rng, sr=sr, duration_s=8.0, amplitude=0.2)
    expected = x + 0.45 * reference_wet(x, reverb.impulse_response(sr))
    np.testing.assert_allclose(reverb.process(x, sr), expected, rtol=0, atol=2e-6)


@pytest.mark.parametrize("style", ["hall", "spacious"])
def test_stream_in_blocks_shorter_than_the_ir_matches_one_pass(
    style: str, rng: np.random.Generator
) -> None:
    sr = 44100
    reverb = Reverb(style=style, decay_s=3.0, predelay_ms=40.0, mix_pct=50.0)
    assert reverb.impulse_response(sr).shape[1] > 4 * sr  # every block below is shorter
    x = white_noise(rng, sr=sr, duration_s=6.0, amplitude=0.3)
    whole = reverb.process(x, sr)
    for lengths in ([int(0.37 * sr)], rng.integers(1, sr, 30), [5000, 1, 65536, 3, 17000]):
        got = stream_blocks(reverb, x, sr, lengths)
        np.testing.assert_allclose(got, whole, rtol=0, atol=1e-6)


@pytest.mark.parametrize(("style", "decay_s"), [("plate", 0.8), ("intimate", 0.3)])
def test_stream_of_single_frames_matches_one_pass(
    style: str, decay_s: float, rng: np.random.Generator
) -> None:
    sr = 8000
    reverb = Reverb(style=style, decay_s=decay_s, predelay_ms=0.0, mix_pct=60.0)
    x = white_noise(rng, sr=sr, duration_s=0.4, amplitude=0.3)
    whole = reverb.process(x, sr)
    np.testing.assert_allclose(stream_blocks(reverb, x, sr, [1]), whole, rtol=0, atol=1e-6)
    # Single frames after a long block, then long blocks again (the partition is chosen at
    # the first block).
    got = stream_blocks(reverb, x, sr, [2500] + [1] * 200 + [333])
    np.testing.assert_allclose(got, whole, rtol=0, atol=1e-6)


def test_stream_mono_uses_the_left_impulse_response(rng: np.random.Generator) -> None:
    sr = 48000
    reverb = Reverb(style="hall", decay_s=2.0, mix_pct=40.0)
    mono = white_noise(rng, sr=sr, duration_s=3.0, amplitude=0.3, channels=1)
    got = stream_blocks(reverb, mono, sr, [10007, 1, 2 * sr])
    np.testing.assert_allclose(got, reverb.process(mono, sr), rtol=0, atol=1e-6)
    expected = mono + 0.4 * reference_wet(mono, reverb.impulse_response(sr))
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-6)


def test_streams_are_independent(rng: np.random.Generator) -> None:
    """Two streams of one processor, fed alternately, each give their own one-pass result."""
    sr = 44100
    reverb = Reverb(style="spacious", decay_s=5.0, mix_pct=50.0)
    a = white_noise(rng, sr=sr, duration_s=3.0, amplitude=0.3).astype(np.float64)
    b = np.zeros_like(a)
    b[:, 100] = 1.0
    sa, sb = reverb.stream(sr, 2), reverb.stream(sr, 2)
    out_a, out_b = [], []
    for start in range(0, a.shape[1], 20000):
        out_a.append(sa(np.ascontiguousarray(a[:, start : start + 20000])))
        out_b.append(sb(np.ascontiguousarray(b[:, start : start + 20000])))
    np.testing.assert_allclose(np.concatenate(out_a, axis=1), reverb.process(a, sr), atol=1e-6)
    np.testing.assert_allclose(np.concatenate(out_b, axis=1), reverb.process(b, sr), atol=1e-6)


def test_partition_length_follows_the_ir_and_the_block() -> None:
    for taps in (100, 40_000, 130_000, 530_000, 2_300_000):
        sizes = [partition_frames(taps, block) for block in (1, 16_384, 441_000, 0)]
        for p in sizes:
            assert p & (p - 1) == 0 and MIN_PARTITION <= p <= MAX_PARTITION
        assert sizes == sorted(sizes)  # longer blocks: no shorter partitions
    assert partition_frames(530_000, 441_000) >= partition_frames(40_000, 441_000)

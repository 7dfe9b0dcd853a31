"""Tempo-synced delay measured as audio: tap timing on the grid, repeat levels, darkening
repeats, ping-pong, bypass, stability and robustness at the extremes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.common.errors import InvalidParameterError
from services.common.params import DELAY_NOTE_BEATS, DELAY_NOTES, defaults
from services.renderer.delay import TempoDelay
from tests.signals import sine, white_noise
from tests.strategies import param_sets


def impulse(sr: float, duration_s: float, *, channels: int = 1, at: int = 0) -> np.ndarray:
    x = np.zeros((channels, int(round(sr * duration_s))), dtype=np.float32)
    x[:, at] = 1.0
    return x


def low_click(sr: int, duration_s: float, *, centre_s: float = 0.02) -> np.ndarray:
    """A Gaussian pulse (sigma 1 ms): energy below a few hundred Hz, so the low-pass passes it."""
    t = np.arange(int(round(sr * duration_s))) / sr
    return (0.8 * np.exp(-0.5 * ((t - centre_s) / 1e-3) ** 2))[None, :].astype(np.float32)


def wet(delay: TempoDelay, x: np.ndarray, sr: int) -> np.ndarray:
    return delay(x, sr).astype(np.float64) - x


def centroid_hz(segment: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(segment, 8192)) ** 2
    freqs = np.fft.rfftfreq(8192, 1 / sr)
    return float(np.sum(freqs * spec) / np.sum(spec))


@pytest.mark.parametrize("note", DELAY_NOTES)
@pytest.mark.parametrize("bpm", [90.0, 120.0, 174.0])
@pytest.mark.parametrize("sr", [44100, 48000])
def test_first_tap_is_on_the_grid(note: str, bpm: float, sr: int) -> None:
    exact = 60.0 / bpm * DELAY_NOTE_BEATS[note] * sr
    delay = TempoDelay(tempo_bpm=bpm, note=note, feedback_pct=0.0, mix_pct=50.0)
    assert delay.delay_samples(sr) == round(exact)
    w = wet(delay, impulse(sr, 1.0), sr)[0]
    first = int(np.argmax(np.abs(w) > 1e-6))
    assert abs(first - exact) <= 1.0
    assert w[first] == pytest.approx(0.5, abs=1e-6)  # the first repeat is unfiltered
    assert np.all(np.abs(w[first + 1 :]) < 1e-6)  # no feedback: one repeat only


@pytest.mark.parametrize("feedback_pct", [30.0, 60.0, 90.0])
def test_repeat_levels_follow_the_feedback(feedback_pct: float) -> None:
    sr, bpm = 44100, 120.0
    delay = TempoDelay(
        tempo_bpm=bpm, note="1/8", feedback_pct=feedback_pct, highcut_hz=16000.0, mix_pct=60.0
    )
    d = delay.delay_samples(sr)
    x = low_click(sr, 2.5)
    w = wet(delay, x, sr)[0]
    centre, half = int(0.02 * sr), int(0.01 * sr)
    levels = [
        np.sqrt(np.sum(w[centre + k * d - half : centre + k * d + half] ** 2)) for k in range(1, 7)
    ]
    g = feedback_pct / 100
    for k, level in enumerate(levels):
        assert level / levels[0] == pytest.approx(g**k, rel=0.02)
    assert levels[0] == pytest.approx(0.6 * np.sqrt(np.sum(x[0].astype(float) ** 2)), rel=1e-3)


def test_later_repeats_stay_on_the_grid() -> None:
    sr = 48000
    for highcut in (1000.0, 4000.0, 16000.0):
        delay = TempoDelay(
            tempo_bpm=128.0, note="1/8 dotted", feedback_pct=80.0, highcut_hz=highcut, mix_pct=50
        )
        d = delay.delay_samples(sr)
        w = wet(delay, low_click(sr, 2.0), sr)[0]
        centre = int(0.02 * sr)
        for k in range(1, 6):
            seg = w[centre + k * d - 200 : centre + k * d + 200]
            peak = centre + k * d - 200 + int(np.argmax(seg))
            assert abs(peak - (centre + k * d)) <= 0.5 * (k - 1) + 1


def test_each_repeat_is_darker_and_a_lower_highcut_is_darker() -> None:
    sr = 44100
    centroids = {}
    for highcut in (16000.0, 6000.0, 2000.0):
        delay = TempoDelay(
            tempo_bpm=120.0, note="1/8", feedback_pct=70.0, highcut_hz=highcut, mix_pct=50.0
        )
        d = delay.delay_samples(sr)
        w = wet(delay, impulse(sr, 2.0), sr)[0]
        centroids[highcut] = [centroid_hz(w[k * d - 256 : k * d + 768], sr) for k in (1, 2, 3, 4)]
        c = centroids[highcut]
        assert c[1] < c[0] and c[2] < c[1] and c[3] < c[2]
    # The first repeat is untouched (the low-pass is in the feedback path) ...
    assert centroids[2000.0][0] == pytest.approx(centroids[16000.0][0], rel=1e-6)
    # ... later ones are darker with a lower high-cut.
    for k in (1, 2, 3):
        assert centroids[2000.0][k] < centroids[6000.0][k] < centroids[16000.0][k]


def test_ping_pong_alternates_sides() -> None:
    sr = 48000
    delay = TempoDelay(
        tempo_bpm=100.0,
        note="1/4",
        feedback_pct=70.0,
        highcut_hz=16000.0,
        pingpong="on",
        mix_pct=50,
    )
    assert delay.is_pingpong
    d = delay.delay_samples(sr)
    w = wet(delay, np.repeat(low_click(sr, 4.0), 2, axis=0), sr)

    def energy(channel: int, k: int) -> float:
        return float(np.sum(w[channel, k * d - d // 2 : k * d + d // 2] ** 2))

    for k in (1, 3, 5):  # odd repeats: left only
        assert energy(0, k) > 1e-4 and energy(1, k) < 1e-12 * energy(0, k)
    for k in (2, 4):  # even repeats: right only
        assert energy(1, k) > 1e-4 and energy(0, k) < 1e-12 * energy(1, k)
    for k in (2, 3, 4, 5):  # each repeat feedback ** (k - 1) of the first, in amplitude
        assert np.sqrt(energy((k - 1) % 2, k) / energy(0, 1)) == pytest.approx(
            0.7 ** (k - 1), rel=0.02
        )


def test_ping_pong_takes_the_mono_sum_and_mono_input_is_a_plain_delay(
    rng: np.random.Generator,
) -> None:
    sr = 44100
    x = white_noise(rng, sr=sr, duration_s=1.0, amplitude=0.2)
    kwargs = {"tempo_bpm": 140.0, "note": "1/16", "feedback_pct": 40.0, "mix_pct": 40.0}
    pp = TempoDelay(pingpong="on", **kwargs)
    summed = 0.5 * (x[0] + x[1])
    np.testing.assert_allclose(
        wet(pp, x, sr), wet(pp, np.stack([summed, summed]).astype(np.float32), sr), atol=1e-6
    )
    plain = TempoDelay(pingpong="off", **kwargs)
    np.testing.assert_array_equal(pp(x[:1], sr), plain(x[:1], sr))


def test_mix_zero_is_an_exact_bypass(rng: np.random.Generator) -> None:
    x = np.clip(white_noise(rng, duration_s=0.5, amplitude=0.5), -1, 1)
    delay = TempoDelay(tempo_bpm=174.0, feedback_pct=90.0, pingpong="on", mix_pct=0.0)
    assert delay.is_bypass
    np.testing.assert_array_equal(delay(x, 44100), x)
    from_defaults = TempoDelay.from_params(defaults(), tempo_bpm=120.0)
    assert from_defaults.is_bypass
    np.testing.assert_array_equal(from_defaults(x, 44100), x)


def test_ninety_percent_feedback_stays_bounded_over_a_minute() -> None:
    sr = 44100
    delay = TempoDelay(
        tempo_bpm=120.0, note="1/4", feedback_pct=90.0, highcut_hz=16000.0, mix_pct=60.0
    )
    # A 60 s low sine (inside the pass band: the worst case for build-up) converges to at most
    # amplitude * (1 + mix / (1 - feedback)).
    x = sine(80.0, sr=sr, duration_s=60.0, amplitude=0.25, channels=1)
    y = delay(x, sr)
    assert np.all(np.isfinite(y))
    assert np.max(np.abs(y)) <= 0.25 * (1 + 0.6 / 0.1) * (1 + 1e-4)
    # An impulse dies away: 0.9 ** 100 after 100 repeats (50 s).
    w = wet(delay, impulse(sr, 60.0), sr)[0]
    peaks = [np.max(np.abs(w[k * sr : (k + 1) * sr])) for k in range(60)]
    assert peaks[-1] < 1e-3 * peaks[1]
    assert all(b <= a * 1.0001 for a, b in zip(peaks[1:], peaks[2:], strict=False))


def test_dc_converges_to_the_geometric_sum() -> None:
    sr = 8000
    delay = TempoDelay(tempo_bpm=240.0, note="1/16", feedback_pct=50.0, mix_pct=40.0)
    y = delay(np.full((2, 4 * sr), 0.5, dtype=np.float32), sr)
    np.testing.assert_allclose(y[:, -100:], 0.5 * (1 + 0.4 / 0.5), rtol=1e-4)


def test_parameters_are_validated() -> None:
    with pytest.raises(InvalidParameterError):
        TempoDelay(tempo_bpm=0.0)
    with pytest.raises(InvalidParameterError):
        TempoDelay(note="1/32")
    with pytest.raises(InvalidParameterError):
        TempoDelay(feedback_pct=95.0)
    with pytest.raises(InvalidParameterError):
        TempoDelay.from_params({"delay_pingpong": 2.0}, tempo_bpm=120.0)
    with pytest.raises(TypeError):
        TempoDelay.from_params({})  # type: ignore[call-arg]  # the tempo is required
    delay = TempoDelay.from_params({"delay_note": 2.0, "delay_mix_pct": 20.0}, tempo_bpm=100.0)
    assert delay.note_name == "1/8 dotted"
    assert delay.delay_s == pytest.approx(0.45)
    assert not delay.is_pingpong


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    params=param_sets,
    tempo_bpm=st.floats(30.0, 300.0),
    sr=st.sampled_from([8000, 16000, 44100, 48000, 96000, 192000]),
    kind=st.sampled_from(["silence", "dc", "impulse", "square", "noise"]),
    channels=st.sampled_from([1, 2, 3]),
    n=st.integers(1, 20000),
)
def test_finite_bounded_and_length_preserving(
    params: dict[str, float],
    tempo_bpm: float,
    sr: int,
    kind: str,
    channels: int,
    n: int,
    rng: np.random.Generator,
) -> None:
    delay = TempoDelay.from_params(params, tempo_bpm=tempo_bpm)
    if kind == "silence":
        x = np.zeros((channels, n), dtype=np.float32)
    elif kind == "dc":
        x = np.full((channels, n), -0.9, dtype=np.float32)
    elif kind == "impulse":
        x = np.zeros((channels, n), dtype=np.float32)
        x[:, 0] = 1.0
    elif kind == "square":
        x = np.where(np.arange(n) % 50 < 25, 1.0, -1.0)[None].repeat(channels, 0)
        x = x.astype(np.float32)
    else:
        x = np.clip(rng.standard_normal((channels, n)) * 0.5, -1, 1).astype(np.float32)
    y = delay(x, sr)
    assert y.shape == x.shape and y.dtype == np.float32
    assert np.all(np.isfinite(y))
    if delay.is_bypass or kind == "silence":
        np.testing.assert_array_equal(y, x)
        return
    # Every pass through the loop has gain <= feedback at every frequency, so the repeats'
    # energy is at most ||x|| / (1 - feedback) per line: a hard bound on any sample.
    g, m = delay.feedback_pct / 100, delay.mix_pct / 100
    norm = np.sqrt(np.max(np.sum(x.astype(float) ** 2, axis=1)))
    if delay.is_pingpong and channels == 2:
        norm = np.sqrt(np.sum((0.5 * (x[0].astype(float) + x[1])) ** 2))
    bound = np.max(np.abs(x)) + m * norm / (1 - g)
    assert np.max(np.abs(y)) <= bound * (1 + 1e-5) + 1e-6
    if kind == "dc":
        assert np.max(np.abs(y)) <= 0.9 * (1 + m / (1 - g)) * (1 + 1e-5)


# --- Streaming: blocks of any length continue exactly where the previous block stopped. ---


def stream_blocks(
    delay: TempoDelay, x: np.ndarray, sr: int, lengths: list[int] | np.ndarray
) -> np.ndarray:
    """``x`` through a fresh :meth:`TempoDelay.stream` in consecutive blocks of ``lengths``
    (cycled), as float32 like ``process``."""
    stream = delay.stream(sr, x.shape[0])
    x64 = x.astype(np.float64)
    out, start, i = [], 0, 0
    while start < x.shape[1]:
        stop = min(x.shape[1], start + int(lengths[i % len(lengths)]))
        block = np.ascontiguousarray(x64[:, start:stop])
        y = stream(block)
        assert y.shape == block.shape
        out.append(y)
        start, i = stop, i + 1
    return np.concatenate(out, axis=1).astype(np.float32)


@pytest.mark.parametrize("pingpong", ["off", "on"])
def test_stream_in_blocks_shorter_than_the_delay_is_exact(
    pingpong: str, rng: np.random.Generator
) -> None:
    sr = 44100
    delay = TempoDelay(
        tempo_bpm=60.0,
        note="1/4",
        feedback_pct=90.0,
        highcut_hz=3000.0,
        pingpong=pingpong,
        mix_pct=60.0,
    )
    assert delay.delay_samples(sr) == sr  # 1 s: every block below is shorter
    x = white_noise(rng, sr=sr, duration_s=4.0, amplitude=0.3)
    lengths = rng.integers(1, sr // 2, 40)
    np.testing.assert_array_equal(stream_blocks(delay, x, sr, lengths), delay.process(x, sr))


def test_stream_of_single_frames_is_exact(rng: np.random.Generator) -> None:
    sr = 8000
    for pingpong in ("off", "on"):
        delay = TempoDelay(
            tempo_bpm=300.0, note="1/16", feedback_pct=80.0, pingpong=pingpong, mix_pct=50.0
        )
        x = white_noise(rng, sr=sr, duration_s=0.3, amplitude=0.3)  # 6 round trips of 50 ms
        np.testing.assert_array_equal(stream_blocks(delay, x, sr, [1]), delay.process(x, sr))


@pytest.mark.parametrize("channels", [1, 3])
def test_stream_mono_and_more_channels_use_plain_lines(
    channels: int, rng: np.random.Generator
) -> None:
    sr = 48000
    delay = TempoDelay(tempo_bpm=128.0, note="1/8 dotted", feedback_pct=70.0, pingpong="on")
    delay.mix_pct = 40.0
    x = white_noise(rng, sr=sr, duration_s=2.0, amplitude=0.3, channels=channels)
    got = stream_blocks(delay, x, sr, [777, 20000, 1, 4096])
    np.testing.assert_array_equal(got, delay.process(x, sr))
    plain = TempoDelay(tempo_bpm=128.0, note="1/8 dotted", feedback_pct=70.0, mix_pct=40.0)
    np.testing.assert_array_equal(got, plain.process(x, sr))


def test_streams_are_independent(rng: np.random.Generator) -> None:
    """Two streams of one processor, fed alternately, each give their own one-pass result."""
    sr = 44100
    delay = TempoDelay(tempo_bpm=100.0, note="1/8", feedback_pct=85.0, pingpong="on", mix_pct=50)
    a = white_noise(rng, sr=sr, duration_s=2.0, amplitude=0.3).astype(np.float64)
    b = np.zeros_like(a)
    b[:, 1000] = 1.0
    sa, sb = delay.stream(sr, 2), delay.stream(sr, 2)
    out_a, out_b = [], []
    for start in range(0, a.shape[1], 5000):
        out_a.append(sa(np.ascontiguousarray(a[:, start : start + 5000])))
        out_b.append(sb(np.ascontiguousarray(b[:, start : start + 5000])))
    np.testing.assert_array_equal(
        np.concatenate(out_a, axis=1).astype(np.float32), delay.process(a, sr)
    )
    np.testing.assert_array_equal(
        np.concatenate(out_b, axis=1).astype(np.float32), delay.process(b, sr)
    )
    # A stream reads the parameters when it is made: changing them later does not affect it.
    stream = delay.stream(sr, 2)
    delay.feedback_pct = 0.0
    first = stream(np.ascontiguousarray(a[:, :30000])).astype(np.float32)
    delay.feedback_pct = 85.0
    np.testing.assert_array_equal(first, delay.process(a[:, :30000], sr))

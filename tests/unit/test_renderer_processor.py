"""The Processor base class, validated parameters and the list-like Chain."""

from __future__ import annotations

import numpy as np
import pytest

from services.common.errors import InvalidAudioError, InvalidParameterError
from services.renderer.compressor import Compressor
from services.renderer.eq import ParametricEQ
from services.renderer.limiter import TruePeakLimiter
from services.renderer.processor import Chain, Parameter, Processor
from tests.signals import sine, white_noise


class Gain(Processor):
    """A processor as a later effect would write one: a parameter outside the schema."""

    gain_db = Parameter(minimum=-24.0, maximum=24.0, unit="dB")

    def __init__(self, *, gain_db: float = 0.0) -> None:
        self.resets = 0
        self.gain_db = gain_db

    def reset(self) -> None:
        self.resets += 1

    def _process(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        return audio * 10.0 ** (self.gain_db / 20.0)


@pytest.mark.parametrize(
    ("factory", "bad"),
    [
        (lambda v: Compressor(ratio=v), 0.5),
        (lambda v: Compressor(ratio=v), 21.0),
        (lambda v: Compressor(attack_ms=v), float("nan")),
        (lambda v: Compressor(threshold_db=v), "loud"),
        (lambda v: ParametricEQ(mid_gain_db=v), 12.5),
        (lambda v: ParametricEQ(hpf_freq_hz=v), float("inf")),
        (lambda v: TruePeakLimiter(ceiling_dbtp=v), 0.5),
        (lambda v: TruePeakLimiter(lookahead_ms=v), 0.0),
        (lambda v: Gain(gain_db=v), 30.0),
    ],
)
def test_out_of_range_parameters_are_rejected_at_construction(factory, bad) -> None:
    with pytest.raises(InvalidParameterError):
        factory(bad)


def test_setters_validate_and_keep_the_old_value() -> None:
    comp = Compressor(ratio=4.0)
    with pytest.raises(InvalidParameterError, match="ratio"):
        comp.ratio = 100.0
    assert comp.ratio == 4.0
    comp.ratio = 2.0
    assert comp.ratio == 2.0


def test_parameters_carry_units_in_their_names() -> None:
    params = Compressor().parameters
    assert set(params) == {
        "threshold_db",
        "ratio",
        "attack_ms",
        "release_ms",
        "knee_db",
        "makeup_db",
        "lookahead_ms",
        "sidechain_hpf_hz",
    }
    assert set(TruePeakLimiter().parameters) == {"ceiling_dbtp", "lookahead_ms", "release_ms"}
    assert "ratio=1" in repr(Compressor())


def test_process_returns_float32_of_the_same_shape_and_leaves_the_input(rng) -> None:
    x = white_noise(rng, duration_s=0.2).astype(np.float64)
    before = x.copy()
    proc = Gain(gain_db=-6.0)
    y = proc.process(x, 44100)
    assert y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_array_equal(x, before)
    np.testing.assert_array_equal(proc(x, 44100), y)
    np.testing.assert_allclose(y, x * 10 ** (-6 / 20), rtol=1e-6)


@pytest.mark.parametrize(
    "audio",
    [
        np.zeros((2, 100), dtype=np.int16),
        np.zeros(100, dtype=np.float32),
        np.zeros((0, 100), dtype=np.float32),
        np.array([[0.0, np.nan, 0.0]], dtype=np.float32),
        np.array([[0.0, np.inf, 0.0]], dtype=np.float32),
        [[0.0, 0.1]],
    ],
)
def test_invalid_audio_is_rejected(audio) -> None:
    with pytest.raises(InvalidAudioError):
        Gain().process(audio, 44100)


@pytest.mark.parametrize("sample_rate", [0, -44100, 44100.5, float("nan"), "fast"])
def test_invalid_sample_rate_is_rejected(sample_rate) -> None:
    with pytest.raises(InvalidParameterError):
        Gain().process(np.zeros((1, 10), dtype=np.float32), sample_rate)


@pytest.mark.parametrize(
    "proc", [Gain(), ParametricEQ(mid_gain_db=3.0), Compressor(ratio=4.0), TruePeakLimiter()]
)
def test_empty_buffers_pass_through(proc: Processor) -> None:
    y = proc.process(np.zeros((2, 0), dtype=np.float32), 44100)
    assert y.shape == (2, 0) and y.dtype == np.float32


def test_chain_is_list_like_and_applies_in_order() -> None:
    a, b, c = Gain(gain_db=-6.0), Gain(gain_db=3.0), Gain(gain_db=1.0)
    chain = Chain([a, b])
    chain.append(c)
    assert len(chain) == 3 and chain[0] is a and chain[-1] is c
    assert list(chain) == [a, b, c]
    assert isinstance(chain[1:], Chain) and list(chain[1:]) == [b, c]
    chain.insert(0, Gain(gain_db=-1.0))
    del chain[0]
    assert list(chain) == [a, b, c]
    chain[2] = Gain(gain_db=2.0)
    assert chain[2] is not c
    assert a in chain
    x = sine(1000.0, duration_s=0.1)
    expected = x * 10 ** ((-6.0 + 3.0 + 2.0) / 20.0)
    np.testing.assert_allclose(chain(x, 44100), expected, rtol=1e-5)
    with pytest.raises(TypeError):
        chain.append(lambda audio, sr: audio)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Chain([object()])  # type: ignore[list-item]


def test_chain_is_a_processor_and_nests() -> None:
    inner = Chain([Gain(gain_db=-6.0)])
    outer = Chain([inner, Gain(gain_db=6.0)])
    x = sine(440.0, duration_s=0.1)
    np.testing.assert_allclose(outer(x, 44100), x, rtol=1e-5, atol=1e-7)
    assert Chain()(x, 44100).tolist() == x.tolist()


def test_reset_reaches_every_processor_and_keeps_parameters() -> None:
    a, b = Gain(gain_db=-3.0), Gain(gain_db=2.0)
    Chain([a, Chain([b])]).reset()
    assert a.resets == 1 and b.resets == 1
    assert a.gain_db == -3.0 and b.gain_db == 2.0
    eq = ParametricEQ(mid_gain_db=6.0)
    before = eq.sos(44100)
    eq.reset()
    np.testing.assert_array_equal(eq.sos(44100), before)

"""Block processing renders what whole-buffer processing renders.

Each processor, at settings that give it the longest memory it can have (slow releases, low
filter corners, long feedback and decay), renders a song in short blocks (many boundaries, some
inside notes and hits) and in one block; the two must agree within ``BLOCK_TOLERANCE``
(-100 dBFS). A processor must declare a bounded context or a stream: the one-block fallback
would make this test pass without testing anything, so it is rejected here.
"""

from __future__ import annotations

import numpy as np
import pytest

from services.common.params import validate_params
from services.renderer.blocks import BLOCK_S, plan, render_blocks
from services.renderer.chain import build_chain
from services.renderer.compressor import Compressor
from services.renderer.delay import TempoDelay
from services.renderer.eq import ParametricEQ
from services.renderer.exciter import Exciter
from services.renderer.processor import BLOCK_TOLERANCE, Processor
from services.renderer.reverb import Reverb
from services.renderer.stereo import StereoEnhancer
from services.renderer.vintage_compressor import VintageCompressor
from tests.signals import drum_loop, little_song

SR = 44_100

LONG_MEMORY: dict[str, Processor] = {
    "eq_low_and_narrow": ParametricEQ(
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
    "compressor_slow": Compressor(
        threshold_db=-30.0,
        ratio=20.0,
        attack_ms=100.0,
        release_ms=1000.0,
        knee_db=0.0,
        makeup_db=12.0,
        lookahead_ms=10.0,
        sidechain_hpf_hz=300.0,
    ),
    "compressor_fast": Compressor(threshold_db=-24.0, ratio=4.0, attack_ms=0.1, release_ms=10.0),
    "vintage_slow": VintageCompressor(
        threshold_db=-30.0, ratio=10.0, attack_ms=100.0, release_ms=2000.0, drive_db=24.0
    ),
    "vintage_fast_driven": VintageCompressor(
        threshold_db=-20.0, ratio=4.0, attack_ms=1.0, release_ms=50.0, drive_db=12.0, even_pct=0.0
    ),
    "exciter_low_corner": Exciter(freq_hz=1000.0, drive_db=24.0, mix_pct=100.0),
    "stereo_wide_bass_mono": StereoEnhancer(width=2.0, bass_mono_hz=300.0),
    "stereo_narrow": StereoEnhancer(width=0.3, bass_mono_hz=20.0),
    "delay_long_feedback": TempoDelay(
        note="1/4", feedback_pct=90.0, highcut_hz=16000.0, mix_pct=60.0, tempo_bpm=60.0
    ),
    "delay_pingpong": TempoDelay(
        note="1/8 dotted", feedback_pct=70.0, pingpong="on", mix_pct=40.0, tempo_bpm=128.0
    ),
    "reverb_spacious_8s": Reverb(style="spacious", decay_s=8.0, mix_pct=60.0, damping_pct=0.0),
    "reverb_hall": Reverb(style="hall", decay_s=2.0, predelay_ms=120.0, mix_pct=30.0),
}


@pytest.fixture(scope="module")
def song() -> np.ndarray:
    # 12 s: drums and sub bass (what slow detectors and low filters remember) over chords.
    rng = np.random.default_rng(3)
    drums = drum_loop(97.0, rng=rng, sr=SR, duration_s=12.0)
    tonal = little_song(sr=SR, duration_s=12.0, bpm=97.0)
    return (0.5 * drums + 0.5 * tonal).astype(np.float32)


@pytest.mark.parametrize("name", sorted(LONG_MEMORY))
def test_processor_declares_bounded_memory(name: str) -> None:
    p = LONG_MEMORY[name]
    assert not p.is_bypass
    head, contexts, streams = plan([p], SR, 2)
    assert contexts is not None, f"{name} needs the whole buffer: no block processing"
    assert len(head) + len(streams) == 1


@pytest.mark.parametrize("name", sorted(LONG_MEMORY))
@pytest.mark.parametrize("block_s", [0.37, 1.9])
def test_blocks_match_whole_buffer(name: str, block_s: float, song: np.ndarray) -> None:
    p = LONG_MEMORY[name]
    whole = render_blocks([p], song, SR, block_frames=song.shape[1])
    blocked = render_blocks([p], song, SR, block_frames=int(block_s * SR))
    assert blocked.shape == whole.shape == song.shape
    assert np.all(np.isfinite(blocked))
    assert np.max(np.abs(whole)) > 1e-3  # it did something audible
    np.testing.assert_allclose(blocked, whole, rtol=0, atol=BLOCK_TOLERANCE)


def test_whole_buffer_render_is_the_processor_itself(song: np.ndarray) -> None:
    """The one-block render is the processor's own whole-buffer ``process``."""
    for p in LONG_MEMORY.values():
        expected = p.process(song, SR)
        got = render_blocks([p], song, SR, block_frames=song.shape[1])
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("mono", [False, True])
def test_full_chain_in_blocks(mono: bool, song: np.ndarray) -> None:
    """Every processor active at once, contexts summed, grids combined, streams at the end."""
    audio = song[:1] if mono else song
    params = validate_params(
        {
            "eq_hpf_freq_hz": 60.0,
            "eq_low_mid_gain_db": -4.0,
            "eq_high_shelf_gain_db": 3.0,
            "comp_threshold_db": -24.0,
            "comp_ratio": 4.0,
            "comp_lookahead_ms": 5.0,
            "comp_release_ms": 400.0,
            "vcomp_threshold_db": -20.0,
            "vcomp_ratio": 3.0,
            "vcomp_drive_db": 9.0,
            "exciter_mix_pct": 30.0,
            "stereo_width": 1.5,
            "stereo_bass_mono_hz": 150.0,
            "delay_mix_pct": 25.0,
            "delay_feedback_pct": 60.0,
            "reverb_mix_pct": 25.0,
            "reverb_decay_s": 3.0,
        }
    )
    chain = build_chain(params, tempo_bpm=97.0)
    whole = render_blocks(list(chain), audio, SR, block_frames=audio.shape[1])
    for block_s in (0.5, 2.3):
        blocked = render_blocks(list(chain), audio, SR, block_frames=int(block_s * SR))
        np.testing.assert_allclose(blocked, whole, rtol=0, atol=BLOCK_TOLERANCE)
    # The chain's own process() is block processing with the default block size.
    np.testing.assert_allclose(chain.process(audio, SR), whole, rtol=0, atol=BLOCK_TOLERANCE)


def test_bypassed_processors_are_skipped(song: np.ndarray) -> None:
    chain = build_chain({})
    head, contexts, streams = plan(list(chain), SR, 2)
    assert head == [] and streams == []
    out = render_blocks(list(chain), song, SR)
    np.testing.assert_array_equal(out, song)


def test_working_memory_does_not_grow_with_length() -> None:
    """With every processor active, the chain's working memory beyond its output is a few
    blocks: rendering 4x more audio costs (almost) no more working memory, and the working set
    is a handful of float64 blocks. (tracemalloc sees numpy's allocations, not numba's; the
    kernels' outputs are block-sized either way.)"""
    import tracemalloc

    params = validate_params(
        {
            "eq_mid_gain_db": 3.0,
            "comp_threshold_db": -24.0,
            "comp_ratio": 4.0,
            "vcomp_threshold_db": -20.0,
            "vcomp_ratio": 3.0,
            "vcomp_drive_db": 6.0,
            "exciter_mix_pct": 20.0,
            "stereo_width": 1.3,
            "delay_mix_pct": 20.0,
            "reverb_mix_pct": 20.0,
        }
    )
    chain = build_chain(params, tempo_bpm=120.0)
    song = little_song(sr=SR, duration_s=6.0)

    def working_peak(seconds: int) -> tuple[int, int]:
        audio = np.ascontiguousarray(np.tile(song, (1, seconds // 6)))
        out = np.empty_like(audio)
        tracemalloc.start()
        render_blocks(list(chain), audio, SR, out=out)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return peak, audio.nbytes

    working_peak(6)  # warm caches (IRs, filter designs)
    short_peak, short_bytes = working_peak(30)
    long_peak, long_bytes = working_peak(120)
    assert long_peak - short_peak < 0.05 * (long_bytes - short_bytes), (short_peak, long_peak)
    block_bytes = song.shape[0] * int(BLOCK_S * SR) * 8
    assert long_peak < 10 * block_bytes, f"working set {long_peak / 2**20:.0f} MiB"

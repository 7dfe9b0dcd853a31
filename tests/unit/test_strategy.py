"""The musical strategy: genre presets adapted by tempo, energy, dynamics and tone."""

from pathlib import Path

import pytest

from mixpilot.v1 import mixpilot_pb2 as pb
from services.common.params import BY_NAME, defaults, validate_params
from services.predictor.strategy import GENRES, PRESETS, strategy_params, table_markdown

ROOT = Path(__file__).resolve().parents[2]


def _analysis(**kw) -> pb.Analysis:
    base = dict(
        genre="pop",
        tempo_bpm=110.0,
        energy=0.5,
        crest_factor_db=14.0,
        spectral_centroid_hz=2000.0,
        stereo_width=0.2,
        loudness_lufs=-18.0,
    )
    base.update(kw)
    a = pb.Analysis(**base)
    a.features["rms_db"] = -20.0
    return a


def test_every_genre_has_its_own_valid_parameter_set() -> None:
    sets = {g: strategy_params(_analysis(genre=g)) for g in GENRES}
    for g, values in sets.items():
        assert validate_params(values) == values, g
        assert values != defaults(), g
    distinct = {tuple(sorted(v.items())) for v in sets.values()}
    assert len(distinct) == len(GENRES)
    # The character presets the issue names.
    assert sets["rock"]["eq_mid_gain_db"] > 0 and sets["rock"]["eq_mid_freq_hz"] == 2500
    assert sets["pop"]["eq_high_shelf_gain_db"] > 0
    assert sets["jazz"]["eq_low_shelf_gain_db"] > 0 and sets["jazz"]["vcomp_even_pct"] > 50
    assert sets["electronic"]["eq_low_shelf_gain_db"] > 0
    assert sets["electronic"]["eq_low_shelf_freq_hz"] <= 60
    assert sets["ballad"]["eq_high_shelf_freq_hz"] >= 12000


def test_unknown_genre_is_neutral_but_safe() -> None:
    values = strategy_params(_analysis(genre=""))
    assert values["reverb_mix_pct"] == 0 and values["comp_ratio"] == 1.0


def test_tempo_shapes_release_reverb_and_delay() -> None:
    slow = strategy_params(_analysis(genre="ballad", tempo_bpm=60.0))
    fast = strategy_params(_analysis(genre="ballad", tempo_bpm=170.0))
    assert fast["vcomp_release_ms"] < slow["vcomp_release_ms"]
    assert fast["reverb_decay_s"] <= 4 * 60 / 170 + 1e-9 < slow["reverb_decay_s"]
    assert fast["reverb_predelay_ms"] <= 60000 / 170 / 8 + 1e-9
    pop_fast = strategy_params(_analysis(genre="pop", tempo_bpm=150.0))
    assert BY_NAME["delay_note"].choice(pop_fast["delay_note"]) == "1/4"
    pop = strategy_params(_analysis(genre="pop", tempo_bpm=100.0))
    assert BY_NAME["delay_note"].choice(pop["delay_note"]) == "1/8 dotted"


def test_energy_dynamics_tone_and_width_rules() -> None:
    calm = strategy_params(_analysis(energy=0.1))
    loud = strategy_params(_analysis(energy=0.95))
    assert loud["reverb_mix_pct"] < calm["reverb_mix_pct"]
    assert loud["eq_mid_gain_db"] > calm["eq_mid_gain_db"]
    dense = strategy_params(_analysis(crest_factor_db=8.0))
    assert dense["comp_ratio"] == pytest.approx(1 + (PRESETS["pop"].fixed["comp_ratio"] - 1) / 2)
    dull = strategy_params(_analysis(spectral_centroid_hz=400.0))
    bright = strategy_params(_analysis(spectral_centroid_hz=4000.0))
    assert dull["eq_high_shelf_gain_db"] - bright["eq_high_shelf_gain_db"] == pytest.approx(4.0)
    wide = strategy_params(_analysis(stereo_width=0.8))
    assert wide["stereo_width"] == 1.0


def test_compression_threshold_follows_the_song_level() -> None:
    a = _analysis()
    a.features["rms_db"] = -30.0
    quiet = strategy_params(a)
    a.features["rms_db"] = -10.0
    loud = strategy_params(a)
    assert loud["comp_threshold_db"] - quiet["comp_threshold_db"] == pytest.approx(20.0)


def test_strategy_doc_is_current() -> None:
    assert table_markdown() in (ROOT / "docs" / "strategy.md").read_text()

"""The rule-based "musical strategy": a mix parameter set computed from the analysis alone
(genre presets, adjusted by tempo, energy, dynamics and tonal balance). It is the `strategy`
version and the musical context the AI versions are refined with."""

from __future__ import annotations

from dataclasses import dataclass

from mixpilot.v1 import mixpilot_pb2 as pb
from services.common.params import BY_NAME, validate_params


@dataclass(frozen=True)
class GenrePreset:
    """Departures from neutral that suit a genre (physical units)."""

    eq: dict[str, float]
    comp_threshold_below_rms_db: float  # threshold placed this far above the song's RMS
    comp_ratio: float
    comp_attack_ms: float
    comp_knee_db: float


PRESETS: dict[str, GenrePreset] = {
    # Pop: clean low end, presence and brightness, firm control.
    "pop": GenrePreset(
        eq={
            "eq_hpf_freq_hz": 30.0,
            "eq_low_mid_freq_hz": 300.0,
            "eq_low_mid_gain_db": -1.5,
            "eq_high_mid_freq_hz": 3500.0,
            "eq_high_mid_gain_db": 1.0,
            "eq_high_shelf_freq_hz": 10000.0,
            "eq_high_shelf_gain_db": 2.0,
        },
        comp_threshold_below_rms_db=6.0,
        comp_ratio=3.0,
        comp_attack_ms=10.0,
        comp_knee_db=6.0,
    ),
    # Rock: guitar presence around 2-4 kHz, tighter low-mids, punchy (slower attack).
    "rock": GenrePreset(
        eq={
            "eq_hpf_freq_hz": 35.0,
            "eq_low_mid_freq_hz": 400.0,
            "eq_low_mid_gain_db": -2.0,
            "eq_mid_freq_hz": 2500.0,
            "eq_mid_gain_db": 1.5,
            "eq_high_shelf_gain_db": 1.0,
        },
        comp_threshold_below_rms_db=5.0,
        comp_ratio=4.0,
        comp_attack_ms=20.0,
        comp_knee_db=4.0,
    ),
    # Electronic: sub weight kept, low-mid mud out, air on top.
    "electronic": GenrePreset(
        eq={
            "eq_hpf_freq_hz": 22.0,
            "eq_low_shelf_freq_hz": 60.0,
            "eq_low_shelf_gain_db": 1.5,
            "eq_low_mid_freq_hz": 250.0,
            "eq_low_mid_gain_db": -2.0,
            "eq_high_shelf_freq_hz": 12000.0,
            "eq_high_shelf_gain_db": 1.5,
        },
        comp_threshold_below_rms_db=4.0,
        comp_ratio=4.0,
        comp_attack_ms=5.0,
        comp_knee_db=6.0,
    ),
    # Jazz: warmth, gentle dynamics control, no hype.
    "jazz": GenrePreset(
        eq={
            "eq_hpf_freq_hz": 25.0,
            "eq_low_shelf_freq_hz": 150.0,
            "eq_low_shelf_gain_db": 1.0,
            "eq_high_mid_freq_hz": 5000.0,
            "eq_high_mid_gain_db": -0.5,
        },
        comp_threshold_below_rms_db=10.0,
        comp_ratio=1.8,
        comp_attack_ms=30.0,
        comp_knee_db=12.0,
    ),
    # Ballad: vocal clarity and air, soft and slow control.
    "ballad": GenrePreset(
        eq={
            "eq_hpf_freq_hz": 40.0,
            "eq_low_mid_freq_hz": 300.0,
            "eq_low_mid_gain_db": -1.0,
            "eq_high_shelf_freq_hz": 12000.0,
            "eq_high_shelf_gain_db": 2.0,
        },
        comp_threshold_below_rms_db=8.0,
        comp_ratio=2.5,
        comp_attack_ms=25.0,
        comp_knee_db=10.0,
    ),
}


def _clip(name: str, value: float) -> float:
    p = BY_NAME[name]
    return min(max(value, p.minimum), p.maximum)


def strategy_params(analysis: pb.Analysis) -> dict[str, float]:
    """Physical mix parameters for ``analysis`` (a complete, validated set in schema order).

    Rules: the genre preset; the compressor threshold sits relative to the song's RMS level so it
    acts the same on quiet and loud masters; faster tempi get faster release (one beat, clamped);
    already-dense material (low crest factor) gets a gentler ratio; energetic songs get a touch
    more presence; a dull spectrum (low centroid) gets more high shelf, a bright one less.
    """
    preset = PRESETS.get(analysis.genre, PRESETS["pop"])
    values: dict[str, float] = dict(preset.eq)

    rms_db = analysis.features.get("rms_db", analysis.loudness_lufs)
    ratio = preset.comp_ratio
    crest = analysis.crest_factor_db
    if crest and crest < 10.0:  # already dense: compress less
        ratio = 1.0 + (ratio - 1.0) * 0.5
    elif crest > 18.0:  # very peaky: a little more control
        ratio = ratio * 1.25
    values["comp_threshold_db"] = _clip(
        "comp_threshold_db", rms_db + preset.comp_threshold_below_rms_db
    )
    values["comp_ratio"] = _clip("comp_ratio", ratio)
    values["comp_attack_ms"] = preset.comp_attack_ms
    beat_ms = 60000.0 / analysis.tempo_bpm if analysis.tempo_bpm > 0 else 500.0
    values["comp_release_ms"] = _clip("comp_release_ms", 0.5 * beat_ms)
    values["comp_knee_db"] = preset.comp_knee_db

    energy = analysis.energy
    values["eq_mid_gain_db"] = _clip(
        "eq_mid_gain_db", values.get("eq_mid_gain_db", 0.0) + 1.0 * (energy - 0.5)
    )
    centroid = analysis.spectral_centroid_hz
    if centroid > 0:
        # ~2 kHz centroid is balanced for a full mix; shelve towards it, +-2 dB at most.
        tilt = max(-2.0, min(2.0, (2000.0 - centroid) / 750.0))
        values["eq_high_shelf_gain_db"] = _clip(
            "eq_high_shelf_gain_db", values.get("eq_high_shelf_gain_db", 0.0) + tilt
        )
    return validate_params(values)

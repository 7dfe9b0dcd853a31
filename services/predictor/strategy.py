"""The rule-based "musical strategy": a mix parameter set computed from the analysis alone.

A genre preset (a table of departures from neutral, with the reasoning beside each genre) is
adjusted by tempo, energy, dynamics and tonal balance. It is the ``strategy`` version and the
musical context the AI versions are refined with. ``docs/strategy.md`` is generated from this
module (:func:`table_markdown`), so the documentation cannot drift from the rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mixpilot.v1 import mixpilot_pb2 as pb
from services.common.params import BY_NAME, validate_params

#: Genres the analyzer reports; anything else falls back to ``NEUTRAL_PRESET``.
GENRES = ("pop", "rock", "electronic", "jazz", "ballad")


@dataclass(frozen=True)
class GenrePreset:
    """Departures from neutral that suit a genre.

    ``fixed`` holds physical values by parameter name. Compression thresholds are not fixed but
    placed relative to the song's RMS level (``*_threshold_above_rms_db``) so the same preset
    acts alike on quiet and loud masters.
    """

    why: str
    fixed: dict[str, float | str] = field(default_factory=dict)
    comp_threshold_above_rms_db: float | None = None
    vcomp_threshold_above_rms_db: float | None = None


PRESETS: dict[str, GenrePreset] = {
    "pop": GenrePreset(
        why="Brightness and presence for the vocal, a clean controlled low end, polished and "
        "wide; a plate and a dotted-eighth delay add depth without clutter.",
        fixed={
            "eq_hpf_freq_hz": 30.0,
            "eq_low_mid_freq_hz": 300.0,
            "eq_low_mid_gain_db": -1.5,
            "eq_high_mid_freq_hz": 3500.0,
            "eq_high_mid_gain_db": 1.0,
            "eq_high_shelf_freq_hz": 10000.0,
            "eq_high_shelf_gain_db": 2.0,
            "comp_ratio": 3.0,
            "comp_attack_ms": 10.0,
            "comp_knee_db": 6.0,
            "comp_sidechain_hpf_hz": 80.0,
            "exciter_freq_hz": 5000.0,
            "exciter_drive_db": 6.0,
            "exciter_mix_pct": 15.0,
            "stereo_width": 1.15,
            "stereo_bass_mono_hz": 120.0,
            "reverb_style": "plate",
            "reverb_decay_s": 1.4,
            "reverb_predelay_ms": 25.0,
            "reverb_damping_pct": 40.0,
            "reverb_mix_pct": 12.0,
            "delay_note": "1/8 dotted",
            "delay_feedback_pct": 25.0,
            "delay_highcut_hz": 5000.0,
            "delay_mix_pct": 8.0,
        },
        comp_threshold_above_rms_db=6.0,
    ),
    "rock": GenrePreset(
        why="Guitar and snare presence around 2.5 kHz, less low-mid boxiness, punch from a "
        "slower attack, glue and grit from a driven vintage stage with odd harmonics.",
        fixed={
            "eq_hpf_freq_hz": 35.0,
            "eq_low_mid_freq_hz": 400.0,
            "eq_low_mid_gain_db": -2.0,
            "eq_mid_freq_hz": 2500.0,
            "eq_mid_gain_db": 1.5,
            "eq_high_shelf_gain_db": 1.0,
            "comp_ratio": 4.0,
            "comp_attack_ms": 20.0,
            "comp_knee_db": 4.0,
            "comp_sidechain_hpf_hz": 60.0,
            "vcomp_ratio": 2.0,
            "vcomp_attack_ms": 10.0,
            "vcomp_release_ms": 250.0,
            "vcomp_drive_db": 6.0,
            "vcomp_even_pct": 35.0,
            "exciter_freq_hz": 3000.0,
            "exciter_drive_db": 6.0,
            "exciter_mix_pct": 10.0,
            "stereo_width": 1.1,
            "stereo_bass_mono_hz": 150.0,
            "reverb_style": "plate",
            "reverb_decay_s": 1.6,
            "reverb_predelay_ms": 20.0,
            "reverb_damping_pct": 50.0,
            "reverb_mix_pct": 10.0,
            "delay_note": "1/4",
            "delay_feedback_pct": 20.0,
            "delay_highcut_hz": 4000.0,
            "delay_mix_pct": 6.0,
        },
        comp_threshold_above_rms_db=5.0,
        vcomp_threshold_above_rms_db=8.0,
    ),
    "electronic": GenrePreset(
        why="Sub weight kept and lifted, low-mid mud out, air on top, tight fast control, a "
        "wide image over a mono low end, spacious reverb and a ping-pong dotted delay.",
        fixed={
            "eq_hpf_freq_hz": 22.0,
            "eq_low_shelf_freq_hz": 60.0,
            "eq_low_shelf_gain_db": 1.5,
            "eq_low_mid_freq_hz": 250.0,
            "eq_low_mid_gain_db": -2.0,
            "eq_high_shelf_freq_hz": 12000.0,
            "eq_high_shelf_gain_db": 1.5,
            "comp_ratio": 4.0,
            "comp_attack_ms": 5.0,
            "comp_knee_db": 6.0,
            "comp_lookahead_ms": 2.0,
            "exciter_freq_hz": 6000.0,
            "exciter_drive_db": 8.0,
            "exciter_mix_pct": 12.0,
            "stereo_width": 1.3,
            "stereo_bass_mono_hz": 150.0,
            "reverb_style": "spacious",
            "reverb_decay_s": 3.0,
            "reverb_predelay_ms": 30.0,
            "reverb_damping_pct": 35.0,
            "reverb_mix_pct": 10.0,
            "delay_note": "1/8 dotted",
            "delay_feedback_pct": 40.0,
            "delay_highcut_hz": 6000.0,
            "delay_pingpong": "on",
            "delay_mix_pct": 12.0,
        },
        comp_threshold_above_rms_db=4.0,
    ),
    "jazz": GenrePreset(
        why="Warmth and natural dynamics: a gentle tube-like (even-harmonic) vintage stage "
        "instead of hard compression, a touch of low shelf, no hype on top, a real-room hall.",
        fixed={
            "eq_hpf_freq_hz": 25.0,
            "eq_low_shelf_freq_hz": 150.0,
            "eq_low_shelf_gain_db": 1.0,
            "eq_high_mid_freq_hz": 5000.0,
            "eq_high_mid_gain_db": -0.5,
            "vcomp_ratio": 1.8,
            "vcomp_attack_ms": 30.0,
            "vcomp_release_ms": 400.0,
            "vcomp_drive_db": 3.0,
            "vcomp_even_pct": 75.0,
            "stereo_bass_mono_hz": 100.0,
            "reverb_style": "hall",
            "reverb_decay_s": 2.2,
            "reverb_predelay_ms": 30.0,
            "reverb_damping_pct": 55.0,
            "reverb_mix_pct": 14.0,
        },
        vcomp_threshold_above_rms_db=10.0,
    ),
    "ballad": GenrePreset(
        why="Vocal clarity and air, soft and slow program-dependent control, a wide long hall "
        "and quarter-note echoes that sit behind the voice.",
        fixed={
            "eq_hpf_freq_hz": 40.0,
            "eq_low_mid_freq_hz": 300.0,
            "eq_low_mid_gain_db": -1.0,
            "eq_high_shelf_freq_hz": 12000.0,
            "eq_high_shelf_gain_db": 2.0,
            "vcomp_ratio": 2.5,
            "vcomp_attack_ms": 25.0,
            "vcomp_release_ms": 500.0,
            "vcomp_drive_db": 2.0,
            "vcomp_even_pct": 60.0,
            "exciter_freq_hz": 8000.0,
            "exciter_drive_db": 4.0,
            "exciter_mix_pct": 8.0,
            "stereo_width": 1.2,
            "stereo_bass_mono_hz": 120.0,
            "reverb_style": "hall",
            "reverb_decay_s": 2.6,
            "reverb_predelay_ms": 40.0,
            "reverb_damping_pct": 45.0,
            "reverb_mix_pct": 18.0,
            "delay_note": "1/4",
            "delay_feedback_pct": 30.0,
            "delay_highcut_hz": 4500.0,
            "delay_mix_pct": 8.0,
        },
        vcomp_threshold_above_rms_db=8.0,
    ),
}

NEUTRAL_PRESET = GenrePreset(why="Unknown genre: loudness and peak safety only.")

#: Context rules applied after the preset, in order (documented in docs/strategy.md).
CONTEXT_RULES = (
    (
        "tempo",
        "Compressor release follows the beat: half a beat (modern), one beat (vintage), "
        "clamped to each range.",
    ),
    (
        "tempo",
        "Reverb decay at most 4 beats, pre-delay at most a 1/32 note, so tails and gaps "
        "follow the groove; fast songs get a quarter-note delay instead of eighths.",
    ),
    (
        "energy",
        "High energy (dense, loud) gets less reverb and delay (down to half) and a "
        "little more presence; low energy gets up to 30 % more reverb.",
    ),
    (
        "dynamics",
        "Dense material (crest < 10 dB) gets half the ratio; very peaky material "
        "(crest > 18 dB) a quarter more.",
    ),
    ("tonal balance", "The high shelf moves towards a ~2 kHz spectral centroid, +-2 dB at most."),
    ("stereo", "An already wide mix (side/mid > 0.5) is not widened further."),
)


def _clip(name: str, value: float) -> float:
    p = BY_NAME[name]
    return min(max(value, p.minimum), p.maximum)


def preset_for(genre: str) -> GenrePreset:
    return PRESETS.get(genre, NEUTRAL_PRESET)


def strategy_params(analysis: pb.Analysis) -> dict[str, float]:
    """Physical mix parameters for ``analysis`` (a complete, validated set in schema order)."""
    preset = preset_for(analysis.genre)
    values = dict(validate_params(preset.fixed))  # names resolved to physical values
    rms_db = analysis.features.get("rms_db", analysis.loudness_lufs)
    beat_ms = 60000.0 / analysis.tempo_bpm if analysis.tempo_bpm > 0 else 500.0

    if preset.comp_threshold_above_rms_db is not None:
        values["comp_threshold_db"] = _clip(
            "comp_threshold_db", rms_db + preset.comp_threshold_above_rms_db
        )
        values["comp_release_ms"] = _clip("comp_release_ms", 0.5 * beat_ms)
    if preset.vcomp_threshold_above_rms_db is not None:
        values["vcomp_threshold_db"] = _clip(
            "vcomp_threshold_db", rms_db + preset.vcomp_threshold_above_rms_db
        )
        values["vcomp_release_ms"] = _clip("vcomp_release_ms", beat_ms)

    crest = analysis.crest_factor_db
    for ratio in ("comp_ratio", "vcomp_ratio"):
        if values[ratio] > 1.0 and crest:
            scale = 0.5 if crest < 10.0 else 1.25 if crest > 18.0 else 1.0
            values[ratio] = _clip(ratio, 1.0 + (values[ratio] - 1.0) * scale)

    if values["reverb_mix_pct"] > 0:
        values["reverb_decay_s"] = _clip(
            "reverb_decay_s", min(values["reverb_decay_s"], 4 * beat_ms / 1000)
        )
        values["reverb_predelay_ms"] = min(values["reverb_predelay_ms"], beat_ms / 8)
    if values["delay_mix_pct"] > 0 and analysis.tempo_bpm > 140:
        values["delay_note"] = float(BY_NAME["delay_note"].choices.index("1/4"))

    energy = min(max(analysis.energy, 0.0), 1.0)
    wet_scale = 1.3 - 0.8 * energy  # 1.3 at energy 0, 0.5 at energy 1
    for wet in ("reverb_mix_pct", "delay_mix_pct"):
        values[wet] = _clip(wet, values[wet] * wet_scale)
    values["eq_mid_gain_db"] = _clip("eq_mid_gain_db", values["eq_mid_gain_db"] + energy - 0.5)

    centroid = analysis.spectral_centroid_hz
    if centroid > 0:
        tilt = max(-2.0, min(2.0, (2000.0 - centroid) / 750.0))
        values["eq_high_shelf_gain_db"] = _clip(
            "eq_high_shelf_gain_db", values["eq_high_shelf_gain_db"] + tilt
        )
    if analysis.stereo_width > 0.5 and values["stereo_width"] > 1.0:
        values["stereo_width"] = 1.0
    return validate_params(values)


def table_markdown() -> str:
    """docs/strategy.md's tables: the presets and the context rules."""
    names = sorted({n for p in PRESETS.values() for n in p.fixed}, key=list(BY_NAME).index)
    rows = ["| parameter | " + " | ".join(GENRES) + " |", "|---|" + "---|" * len(GENRES)]
    for n in names:
        cells = []
        for g in GENRES:
            v = PRESETS[g].fixed.get(n)
            cells.append("" if v is None else f"{v:g}" if isinstance(v, float) else str(v))
        rows.append(f"| `{n}` ({BY_NAME[n].unit}) | " + " | ".join(cells) + " |")
    for label, attr in (
        ("comp threshold (dB above RMS)", "comp_threshold_above_rms_db"),
        ("vcomp threshold (dB above RMS)", "vcomp_threshold_above_rms_db"),
    ):
        cells = [_fmt(getattr(PRESETS[g], attr)) for g in GENRES]
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    why = "\n".join(f"- **{g}**: {PRESETS[g].why}" for g in GENRES)
    rules = "\n".join(f"{i}. *{k}*: {text}" for i, (k, text) in enumerate(CONTEXT_RULES, 1))
    return "\n".join(rows) + "\n\n" + why + "\n\n## Context rules\n\n" + rules + "\n"


def _fmt(v: float | None) -> str:
    return "" if v is None else f"{v:g}"

"""The mix parameter schema: every mix parameter of MixPilot is declared here, once.

Each parameter has a name that carries its unit, a physical range, a neutral default (the value at
which its processor leaves the audio unchanged), and a mapping to [0, 1]. Models predict the
normalised vector (in :data:`PARAMETERS` order); the renderer consumes physical values; the report,
API and UI show physical values with their units. MAE figures are always on the normalised vector.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

from services.common.errors import InvalidParameterError

Scale = Literal["linear", "log", "choice"]


@dataclass(frozen=True)
class MixParameter:
    """One mix parameter: physical range, neutral default and normalisation."""

    name: str
    unit: str
    minimum: float
    maximum: float
    default: float
    scale: Scale
    group: str
    description: str
    #: For ``scale="choice"``: the option names; the physical value is the option's index.
    choices: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.scale == "choice" and (
            len(self.choices) < 2 or (self.minimum, self.maximum) != (0, len(self.choices) - 1)
        ):
            raise ValueError(f"{self.name}: a choice needs >= 2 options indexed 0..n-1")
        if not self.minimum < self.maximum:
            raise ValueError(f"{self.name}: minimum must be below maximum")
        if not self.minimum <= self.default <= self.maximum:
            raise ValueError(f"{self.name}: default outside range")
        if self.scale == "log" and self.minimum <= 0:
            raise ValueError(f"{self.name}: log scale needs a positive range")

    def validate(self, value: float | str) -> float:
        """Return ``value`` as float, or raise :class:`InvalidParameterError`."""
        if self.choices and isinstance(value, str):
            if value not in self.choices:
                raise InvalidParameterError(
                    f"{self.name}={value!r} is not one of {', '.join(self.choices)}"
                )
            return float(self.choices.index(value))
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise InvalidParameterError(f"{self.name}={value!r} is not a number") from None
        if not math.isfinite(v) or not self.minimum <= v <= self.maximum:
            raise InvalidParameterError(
                f"{self.name}={value!r} is outside [{self.minimum:g}, {self.maximum:g}] {self.unit}"
            )
        if self.choices and v != round(v):
            raise InvalidParameterError(f"{self.name}={value!r} must be an option index")
        return v

    def choice(self, value: float) -> str:
        """The option name of a choice parameter's physical value (its index)."""
        return self.choices[int(round(min(max(value, self.minimum), self.maximum)))]

    def normalise(self, value: float) -> float:
        """Physical value -> [0, 1]."""
        v = min(max(float(value), self.minimum), self.maximum)
        if self.scale == "log":
            return math.log(v / self.minimum) / math.log(self.maximum / self.minimum)
        return (v - self.minimum) / (self.maximum - self.minimum)

    def denormalise(self, x: float) -> float:
        """[0, 1] -> physical value (inputs outside [0, 1] are clipped)."""
        x = min(max(float(x), 0.0), 1.0)
        if self.scale == "choice":
            return float(round(x * self.maximum))
        if self.scale == "log":
            return self.minimum * (self.maximum / self.minimum) ** x
        return self.minimum + x * (self.maximum - self.minimum)


def _p(
    name: str,
    unit: str,
    lo: float,
    hi: float,
    default: float,
    scale: Scale,
    group: str,
    description: str,
) -> MixParameter:
    return MixParameter(name, unit, lo, hi, default, scale, group, description)


def _choice(
    name: str, choices: tuple[str, ...], default: str, group: str, description: str
) -> MixParameter:
    return MixParameter(
        name,
        "choice",
        0.0,
        float(len(choices) - 1),
        float(choices.index(default)),
        "choice",
        group,
        description,
        choices,
    )


REVERB_STYLES = ("intimate", "plate", "hall", "spacious")
DELAY_NOTES = ("1/4", "1/8", "1/8 dotted", "1/8 triplet", "1/16")
#: Quarter notes per delay note value.
DELAY_NOTE_BEATS = {
    "1/4": 1.0,
    "1/8": 0.5,
    "1/8 dotted": 0.75,
    "1/8 triplet": 1.0 / 3.0,
    "1/16": 0.25,
}


#: Every mix parameter, in the order of the normalised vector models predict.
PARAMETERS: tuple[MixParameter, ...] = (
    # Parametric EQ: high-pass, low shelf, three peaking bands, high shelf.
    _p("eq_hpf_freq_hz", "Hz", 20.0, 200.0, 20.0, "log", "eq", "High-pass (12 dB/oct) corner"),
    _p("eq_low_shelf_freq_hz", "Hz", 40.0, 400.0, 100.0, "log", "eq", "Low shelf corner"),
    _p("eq_low_shelf_gain_db", "dB", -12.0, 12.0, 0.0, "linear", "eq", "Low shelf gain"),
    _p("eq_low_mid_freq_hz", "Hz", 100.0, 1000.0, 300.0, "log", "eq", "Low-mid bell centre"),
    _p("eq_low_mid_gain_db", "dB", -12.0, 12.0, 0.0, "linear", "eq", "Low-mid bell gain"),
    _p("eq_low_mid_q", "", 0.3, 4.0, 1.0, "log", "eq", "Low-mid bell Q"),
    _p("eq_mid_freq_hz", "Hz", 500.0, 5000.0, 1500.0, "log", "eq", "Mid bell centre"),
    _p("eq_mid_gain_db", "dB", -12.0, 12.0, 0.0, "linear", "eq", "Mid bell gain"),
    _p("eq_mid_q", "", 0.3, 4.0, 1.0, "log", "eq", "Mid bell Q"),
    _p("eq_high_mid_freq_hz", "Hz", 2000.0, 10000.0, 4000.0, "log", "eq", "High-mid bell centre"),
    _p("eq_high_mid_gain_db", "dB", -12.0, 12.0, 0.0, "linear", "eq", "High-mid bell gain"),
    _p("eq_high_mid_q", "", 0.3, 4.0, 1.0, "log", "eq", "High-mid bell Q"),
    _p("eq_high_shelf_freq_hz", "Hz", 2000.0, 16000.0, 8000.0, "log", "eq", "High shelf corner"),
    _p("eq_high_shelf_gain_db", "dB", -12.0, 12.0, 0.0, "linear", "eq", "High shelf gain"),
    # Feed-forward compressor.
    _p("comp_threshold_db", "dBFS", -40.0, 0.0, 0.0, "linear", "compressor", "Threshold"),
    _p("comp_ratio", ":1", 1.0, 20.0, 1.0, "log", "compressor", "Ratio"),
    _p("comp_attack_ms", "ms", 0.1, 100.0, 10.0, "log", "compressor", "Attack time"),
    _p("comp_release_ms", "ms", 10.0, 1000.0, 120.0, "log", "compressor", "Release time"),
    _p("comp_knee_db", "dB", 0.0, 24.0, 6.0, "linear", "compressor", "Soft-knee width"),
    _p("comp_makeup_db", "dB", 0.0, 24.0, 0.0, "linear", "compressor", "Makeup gain"),
    _p(
        "comp_lookahead_ms",
        "ms",
        0.0,
        10.0,
        0.0,
        "linear",
        "compressor",
        "Detector look-ahead (the gain acts before the transient; no added latency offline)",
    ),
    _p(
        "comp_sidechain_hpf_hz",
        "Hz",
        20.0,
        300.0,
        20.0,
        "log",
        "compressor",
        "Detector high-pass, so bass does not pump the mix (20 = off)",
    ),
    # Vintage (opto/vari-mu-like) compressor with harmonic saturation.
    _p("vcomp_threshold_db", "dBFS", -40.0, 0.0, 0.0, "linear", "vintage_compressor", "Threshold"),
    _p(
        "vcomp_ratio",
        ":1",
        1.0,
        10.0,
        1.0,
        "log",
        "vintage_compressor",
        "Ratio (1 = off); the knee is wide and the ratio grows with level",
    ),
    _p("vcomp_attack_ms", "ms", 1.0, 100.0, 15.0, "log", "vintage_compressor", "Attack time"),
    _p(
        "vcomp_release_ms",
        "ms",
        50.0,
        2000.0,
        300.0,
        "log",
        "vintage_compressor",
        "Base release; program-dependent: longer after sustained reduction",
    ),
    _p(
        "vcomp_drive_db",
        "dB",
        0.0,
        24.0,
        0.0,
        "linear",
        "vintage_compressor",
        "Drive into the saturation stage (0 = clean)",
    ),
    _p(
        "vcomp_even_pct",
        "%",
        0.0,
        100.0,
        50.0,
        "linear",
        "vintage_compressor",
        "Share of even (warm, tube-like) versus odd (tape/transformer-like) harmonics",
    ),
    # Harmonic exciter.
    _p(
        "exciter_freq_hz",
        "Hz",
        1000.0,
        12000.0,
        3000.0,
        "log",
        "exciter",
        "Corner of the band that is saturated",
    ),
    _p("exciter_drive_db", "dB", 0.0, 24.0, 6.0, "linear", "exciter", "Saturation drive"),
    _p(
        "exciter_mix_pct",
        "%",
        0.0,
        100.0,
        0.0,
        "linear",
        "exciter",
        "Generated harmonics mixed back in (0 = off)",
    ),
    # Stereo enhancer.
    _p(
        "stereo_width",
        "x",
        0.0,
        2.0,
        1.0,
        "linear",
        "stereo",
        "Side gain relative to mid (0 = mono, 1 = unchanged, 2 = twice as wide)",
    ),
    _p(
        "stereo_bass_mono_hz",
        "Hz",
        20.0,
        300.0,
        20.0,
        "log",
        "stereo",
        "Below this the side channel is removed (bass kept mono; 20 = off)",
    ),
    # Reverb.
    _choice("reverb_style", REVERB_STYLES, "plate", "reverb", "Reverb character"),
    _p("reverb_predelay_ms", "ms", 0.0, 120.0, 20.0, "linear", "reverb", "Pre-delay"),
    _p("reverb_decay_s", "s", 0.2, 8.0, 1.5, "log", "reverb", "Decay time (RT60)"),
    _p(
        "reverb_damping_pct",
        "%",
        0.0,
        100.0,
        50.0,
        "linear",
        "reverb",
        "High-frequency damping of the tail",
    ),
    _p("reverb_mix_pct", "%", 0.0, 60.0, 0.0, "linear", "reverb", "Wet level (0 = off)"),
    # Tempo-synced delay.
    _choice("delay_note", DELAY_NOTES, "1/8", "delay", "Delay time as a note value of the tempo"),
    _p("delay_feedback_pct", "%", 0.0, 90.0, 30.0, "linear", "delay", "Feedback"),
    _p(
        "delay_highcut_hz",
        "Hz",
        1000.0,
        16000.0,
        6000.0,
        "log",
        "delay",
        "Low-pass in the feedback path (each repeat darker)",
    ),
    _choice("delay_pingpong", ("off", "on"), "off", "delay", "Repeats alternate left/right"),
    _p("delay_mix_pct", "%", 0.0, 60.0, 0.0, "linear", "delay", "Wet level (0 = off)"),
)

BY_NAME: dict[str, MixParameter] = {p.name: p for p in PARAMETERS}
NAMES: tuple[str, ...] = tuple(p.name for p in PARAMETERS)


def defaults() -> dict[str, float]:
    """The neutral parameter set: rendering with it changes only loudness."""
    return {p.name: p.default for p in PARAMETERS}


def validate_params(
    values: Mapping[str, float | str], *, fill_defaults: bool = True
) -> dict[str, float]:
    """Check names and ranges; return a complete physical parameter set in schema order.

    Raises
    ------
    InvalidParameterError
        On an unknown name or a value outside its range.
    """
    unknown = sorted(set(values) - set(BY_NAME))
    if unknown:
        raise InvalidParameterError(f"unknown mix parameter(s): {', '.join(unknown)}")
    out: dict[str, float] = {}
    for p in PARAMETERS:
        if p.name in values:
            out[p.name] = p.validate(values[p.name])
        elif fill_defaults:
            out[p.name] = p.default
    return out


def to_vector(values: Mapping[str, float]) -> np.ndarray:
    """Physical parameter set -> normalised float32 vector of shape ``(len(PARAMETERS),)``."""
    full = validate_params(values)
    return np.array([p.normalise(full[p.name]) for p in PARAMETERS], dtype=np.float32)


def from_vector(vector: np.ndarray) -> dict[str, float]:
    """Normalised vector of shape ``(len(PARAMETERS),)`` -> physical parameter set."""
    vec = np.asarray(vector, dtype=np.float64).reshape(-1)
    if vec.shape[0] != len(PARAMETERS):
        raise InvalidParameterError(
            f"parameter vector has {vec.shape[0]} values, the schema has {len(PARAMETERS)}"
        )
    return {p.name: p.denormalise(x) for p, x in zip(PARAMETERS, vec, strict=True)}


def table_markdown() -> str:
    """The parameter table for docs/parameters.md (generated, so it cannot drift)."""
    rows = ["| name | unit | min | max | neutral | scale | what |", "|---|---|---|---|---|---|---|"]
    for p in PARAMETERS:
        if p.choices:
            options = ", ".join(f"{i} = {c}" for i, c in enumerate(p.choices))
            rows.append(
                f"| `{p.name}` | choice | 0 | {p.maximum:g} | {p.default:g} ({p.choice(p.default)})"
                f" | choice | {p.description} ({options}) |"
            )
            continue
        rows.append(
            f"| `{p.name}` | {p.unit} | {p.minimum:g} | {p.maximum:g} | {p.default:g} | "
            f"{p.scale} | {p.description} |"
        )
    return "\n".join(rows) + "\n"


def scale_departure(values: Mapping[str, float], intensity_pct: float) -> dict[str, float]:
    """The intensity control: move every parameter towards (0 %) or away from (up to 100 %) its
    neutral value, in normalised space so log-scaled parameters scale musically. Choice
    parameters (reverb style, delay note) are kept; at 0 % every processor is neutral.

    Raises
    ------
    InvalidParameterError
        ``intensity_pct`` outside 0..100, or an invalid parameter set.
    """
    if not 0.0 <= float(intensity_pct) <= 100.0:
        raise InvalidParameterError(f"intensity {intensity_pct!r} % is outside 0-100 %")
    k = float(intensity_pct) / 100.0
    full = validate_params(values)
    if k == 1.0:
        return full
    out: dict[str, float] = {}
    for p in PARAMETERS:
        v = full[p.name]
        if p.choices:
            out[p.name] = v
            continue
        if k == 0.0 or v == p.default:
            out[p.name] = p.default  # exactly neutral, so the processor is an exact bypass
            continue
        n0 = p.normalise(p.default)
        out[p.name] = p.denormalise(n0 + k * (p.normalise(v) - n0))
    return out


def neutral(name: str) -> float:
    """The neutral (default) physical value of parameter ``name``."""
    return BY_NAME[name].default


def prefixed_kwargs(values: Mapping[str, float], prefix: str) -> dict[str, float]:
    """A validated, complete parameter set's ``<prefix>*`` entries with the prefix removed: the
    keyword arguments of the processor that owns that group (``comp_ratio`` -> ``ratio``)."""
    full = validate_params(values)
    return {k.removeprefix(prefix): v for k, v in full.items() if k.startswith(prefix)}

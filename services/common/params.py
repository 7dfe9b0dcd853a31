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

Scale = Literal["linear", "log"]


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

    def __post_init__(self) -> None:
        if not self.minimum < self.maximum:
            raise ValueError(f"{self.name}: minimum must be below maximum")
        if not self.minimum <= self.default <= self.maximum:
            raise ValueError(f"{self.name}: default outside range")
        if self.scale == "log" and self.minimum <= 0:
            raise ValueError(f"{self.name}: log scale needs a positive range")

    def validate(self, value: float) -> float:
        """Return ``value`` as float, or raise :class:`InvalidParameterError`."""
        v = float(value)
        if not math.isfinite(v) or not self.minimum <= v <= self.maximum:
            raise InvalidParameterError(
                f"{self.name}={value!r} is outside [{self.minimum:g}, {self.maximum:g}] {self.unit}"
            )
        return v

    def normalise(self, value: float) -> float:
        """Physical value -> [0, 1]."""
        v = min(max(float(value), self.minimum), self.maximum)
        if self.scale == "log":
            return math.log(v / self.minimum) / math.log(self.maximum / self.minimum)
        return (v - self.minimum) / (self.maximum - self.minimum)

    def denormalise(self, x: float) -> float:
        """[0, 1] -> physical value (inputs outside [0, 1] are clipped)."""
        x = min(max(float(x), 0.0), 1.0)
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
)

BY_NAME: dict[str, MixParameter] = {p.name: p for p in PARAMETERS}
NAMES: tuple[str, ...] = tuple(p.name for p in PARAMETERS)


def defaults() -> dict[str, float]:
    """The neutral parameter set: rendering with it changes only loudness."""
    return {p.name: p.default for p in PARAMETERS}


def validate_params(values: Mapping[str, float], *, fill_defaults: bool = True) -> dict[str, float]:
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
        rows.append(
            f"| `{p.name}` | {p.unit} | {p.minimum:g} | {p.maximum:g} | {p.default:g} | "
            f"{p.scale} | {p.description} |"
        )
    return "\n".join(rows) + "\n"

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common.errors import InvalidParameterError
from services.common.params import (
    BY_NAME,
    PARAMETERS,
    defaults,
    from_vector,
    to_vector,
    validate_params,
)


def test_names_carry_units_and_are_unique() -> None:
    assert len(BY_NAME) == len(PARAMETERS)
    suffixes = ("_hz", "_db", "_ms", "_s", "_q", "_ratio", "_pct", "_width")
    for p in PARAMETERS:
        assert p.name.endswith(suffixes) or p.choices, p.name


def test_defaults_round_trip_through_vector() -> None:
    vec = to_vector(defaults())
    assert vec.shape == (len(PARAMETERS),) and vec.dtype == np.float32
    assert np.all((vec >= 0) & (vec <= 1))
    back = from_vector(vec)
    for name, value in defaults().items():
        assert math.isclose(back[name], value, rel_tol=1e-5, abs_tol=1e-5)


@given(st.lists(st.floats(0.0, 1.0), min_size=len(PARAMETERS), max_size=len(PARAMETERS)))
def test_normalisation_is_invertible(xs: list[float]) -> None:
    params = from_vector(np.array(xs))
    expected = [
        round(x * p.maximum) / p.maximum if p.choices else x
        for p, x in zip(PARAMETERS, xs, strict=True)
    ]
    assert np.allclose(to_vector(params), expected, atol=1e-5)


def test_log_scale_midpoint_is_geometric_mean() -> None:
    p = BY_NAME["comp_ratio"]
    assert math.isclose(p.denormalise(0.5), math.sqrt(p.minimum * p.maximum))


@pytest.mark.parametrize(
    "values", [{"comp_ratio": 0.5}, {"eq_mid_gain_db": float("nan")}, {"nope_db": 1.0}]
)
def test_bad_values_are_rejected_with_a_clear_message(values: dict) -> None:
    with pytest.raises(InvalidParameterError) as err:
        validate_params(values)
    assert list(values)[0] in str(err.value)


def test_wrong_vector_length() -> None:
    with pytest.raises(InvalidParameterError):
        from_vector(np.zeros(3))


def test_choice_parameters_take_names_or_indices() -> None:
    style = BY_NAME["reverb_style"]
    assert style.validate("hall") == style.choices.index("hall")
    assert style.choice(style.validate("spacious")) == "spacious"
    assert style.denormalise(style.normalise(2.0)) == 2.0
    with pytest.raises(InvalidParameterError, match="not one of"):
        style.validate("cathedral")
    with pytest.raises(InvalidParameterError, match="option index"):
        style.validate(1.5)
    assert validate_params({"delay_note": "1/8 dotted"})["delay_note"] == 2.0


def test_intensity_scales_every_departure_from_neutral() -> None:
    from services.common.params import scale_departure

    strong = validate_params(
        {
            "eq_high_shelf_gain_db": 6.0,
            "comp_ratio": 4.0,
            "reverb_mix_pct": 30.0,
            "reverb_style": "hall",
            "stereo_width": 1.6,
        }
    )
    assert scale_departure(strong, 100) == strong
    assert scale_departure(strong, 0) == {**defaults(), "reverb_style": strong["reverb_style"]}
    half = scale_departure(strong, 50)
    assert half["eq_high_shelf_gain_db"] == pytest.approx(3.0)
    assert half["reverb_mix_pct"] == pytest.approx(15.0)
    assert half["stereo_width"] == pytest.approx(1.3)
    assert half["comp_ratio"] == pytest.approx(2.0)  # log scale: geometric halfway
    assert half["reverb_style"] == strong["reverb_style"]
    with pytest.raises(InvalidParameterError):
        scale_departure(strong, 120)


def test_a_value_that_is_not_a_number_is_named_clearly() -> None:
    with pytest.raises(InvalidParameterError, match=r"comp_ratio='abc' is not a number"):
        validate_params({"comp_ratio": "abc"})
    with pytest.raises(InvalidParameterError, match="is not a number"):
        validate_params({"eq_mid_gain_db": None})  # type: ignore[dict-item]

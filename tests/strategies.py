"""Hypothesis strategies shared by the tests."""

from hypothesis import strategies as st

from services.common.params import PARAMETERS, MixParameter


def _value(p: MixParameter) -> st.SearchStrategy[float]:
    if p.choices:
        return st.integers(0, len(p.choices) - 1).map(float)
    return st.floats(min_value=p.minimum, max_value=p.maximum, allow_nan=False)


#: A complete, valid physical parameter set (every schema parameter, any value in range).
param_sets = st.fixed_dictionaries({p.name: _value(p) for p in PARAMETERS})

"""Self-supervised targets: a parameter set ``p`` and a degraded input that ``p`` repairs.

No mixed-versus-unmixed data set exists here, so the training pairs are made: a generated song's
clean mix is taken as the goal, a target parameter set ``p`` is drawn, and the clean mix is
*degraded* by the inverse of what ``p`` does, so that rendering the degraded input with ``p``
gives the clean mix back. A model that sees the degraded audio and predicts ``p`` has learned to
repair that kind of damage.

What is learned (:data:`LEARNED`) is what the chain can invert exactly or nearly:

* **EQ gains** of the five tonal bands (low shelf, three bells, high shelf) at their neutral
  corners and Q. Robert Bristow-Johnson's peaking and shelving biquads are exact reciprocals
  under a change of sign of the gain (``H(-g) = 1 / H(g)``, both minimum phase), so the
  degradation is the same EQ with the gains negated and the repair is exact to rounding.
* **Stereo width**: the side signal is scaled by ``1 / width`` (plain mid/side, no guard); the
  enhancer scales it back by ``width``. Exact for ``width <= 1``; above 1 the enhancer's
  correlation guard can hold the width back in windows whose correlation would turn negative.

Everything else (high-pass, compressors, exciter, reverb, delay; corners and Qs) stays at its
neutral value in the targets: it is not recoverable from damage to a finished mix, and the
product derives it from musical context instead (tempo-synced delay, genre reverb and limits:
the strategy). ``docs/training.md`` documents the distribution drawn by :func:`draw_target`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from services.common.params import BY_NAME, NAMES, to_vector
from services.renderer.eq import ParametricEQ

#: EQ gains drawn per band, and their range (dB): uniform, then centred (see :func:`draw_target`).
EQ_GAINS: tuple[str, ...] = (
    "eq_low_shelf_gain_db",
    "eq_low_mid_gain_db",
    "eq_mid_gain_db",
    "eq_high_mid_gain_db",
    "eq_high_shelf_gain_db",
)
EQ_GAIN_RANGE_DB = (-9.0, 9.0)
#: Stereo width drawn log-uniform in this range (the degradation scales the side by 1 / width,
#: so the degraded width stays within the schema's 0..2).
WIDTH_RANGE = (0.7, 1.5)
#: The parameters the models learn, in schema order.
LEARNED: tuple[str, ...] = tuple(n for n in NAMES if n in (*EQ_GAINS, "stereo_width"))
#: Their positions in the normalised vector.
LEARNED_INDEX: np.ndarray = np.array([NAMES.index(n) for n in LEARNED], dtype=np.int64)


def draw_target(rng: np.random.Generator) -> dict[str, float]:
    """A target parameter set: every :data:`LEARNED` parameter drawn, the rest neutral.

    The five EQ gains are drawn uniform in :data:`EQ_GAIN_RANGE_DB` and then **centred**: their
    mean is subtracted, so they describe a change of tonal balance with no broadband part
    (drawn again if centring takes a band outside the range). A boost or cut of every band
    alike is a change of level, which the models cannot see (they normalise each clip's level)
    and the mastering stage undoes (loudness normalisation); ``docs/training.md`` has the
    measurements behind this choice. The width is log-uniform in :data:`WIDTH_RANGE`.

    Returns
    -------
    dict[str, float]
        Physical values of the learned parameters only (a renderer fills in the neutral rest).
    """
    low, high = EQ_GAIN_RANGE_DB
    while True:
        gains = rng.uniform(low, high, size=len(EQ_GAINS))
        gains -= gains.mean()
        if gains.min() >= low and gains.max() <= high:
            break
    target = {name: float(g) for name, g in zip(EQ_GAINS, gains, strict=True)}
    lo, hi = np.log(WIDTH_RANGE[0]), np.log(WIDTH_RANGE[1])
    target["stereo_width"] = float(np.exp(rng.uniform(lo, hi)))
    return {name: target[name] for name in LEARNED}


def target_vector(target: Mapping[str, float]) -> np.ndarray:
    """The full normalised vector (schema order, float32) of a target: neutral where absent."""
    return to_vector(target)


def degrade(clean: np.ndarray, sample_rate: int, target: Mapping[str, float]) -> np.ndarray:
    """The input that rendering with ``target`` turns back into ``clean``.

    Parameters
    ----------
    clean : np.ndarray, shape (channels, frames), float
    sample_rate : int
    target : Mapping[str, float]
        Physical values of (a subset of) :data:`LEARNED`.

    Returns
    -------
    np.ndarray, shape (channels, frames), float32
    """
    unknown = sorted(set(target) - set(LEARNED))
    if unknown:
        raise ValueError(f"not learned, so not degraded: {', '.join(unknown)}")
    x = np.asarray(clean, dtype=np.float64)
    width = float(target.get("stereo_width", BY_NAME["stereo_width"].default))
    if x.shape[0] == 2 and width != 1.0:
        mid = 0.5 * (x[0] + x[1])
        side = 0.5 * (x[0] - x[1]) / width
        x = np.stack([mid + side, mid - side])
    inverse = {name: -float(target[name]) for name in EQ_GAINS if name in target}
    return ParametricEQ.from_params(inverse).process(x.astype(np.float32), sample_rate)

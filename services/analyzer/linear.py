"""Small logistic-regression models the analyzer ships as JSON and runs with numpy.

The tempo-level selector, the metre classifier and the genre classifier are each a standardised
linear model trained offline by :mod:`services.analyzer.training` (scikit-learn's
``LogisticRegression``) and stored in ``services/analyzer/weights/<name>.json`` with the feature
names, the standardisation, the coefficients, and how and from which seeds it was trained. No
pickle: a weight file is data, readable and diffable.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from services.common.errors import ConfigurationError

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
SCHEMA = "mixpilot.analyzer-linear/1"


@dataclass(frozen=True)
class LinearModel:
    """``scores = ((x - mean) / scale) @ coef.T + intercept``.

    Attributes
    ----------
    features : tuple[str, ...]
        Names of the inputs, in column order.
    classes : tuple[str, ...]
        Class names. A binary model has one row of ``coef``: the score of ``classes[1]``.
    mean, scale : np.ndarray, shape (n_features,)
    coef : np.ndarray, shape (n_rows, n_features)
    intercept : np.ndarray, shape (n_rows,)
    meta : dict
        How the model was trained (command, seeds, held-out figures).
    """

    features: tuple[str, ...]
    classes: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray
    meta: Mapping

    def scores(self, x: np.ndarray) -> np.ndarray:
        """Decision scores, shape ``(n, n_rows)``, for inputs ``x`` of shape ``(n, n_features)``."""
        z = (np.atleast_2d(np.asarray(x, dtype=np.float64)) - self.mean) / self.scale
        return z @ self.coef.T + self.intercept

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities, shape ``(n, n_classes)``."""
        s = self.scores(x)
        if len(self.classes) == 2 and s.shape[1] == 1:
            p1 = 1.0 / (1.0 + np.exp(-np.clip(s[:, 0], -500, 500)))
            return np.stack([1.0 - p1, p1], axis=1)
        s = s - s.max(axis=1, keepdims=True)
        e = np.exp(s)
        return e / e.sum(axis=1, keepdims=True)

    def to_json(self) -> dict:
        return {
            "schema": SCHEMA,
            "features": list(self.features),
            "classes": list(self.classes),
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "coef": self.coef.tolist(),
            "intercept": self.intercept.tolist(),
            "meta": dict(self.meta),
        }


def fit_logistic(
    x: np.ndarray,
    y: Sequence,
    *,
    features: Sequence[str],
    classes: Sequence[str],
    c: float,
    meta: Mapping,
    class_weight: str | None = None,
) -> LinearModel:
    """Fit a standardised L2 logistic regression (training only; needs scikit-learn).

    ``y`` holds class names from ``classes``.
    """
    from sklearn.linear_model import LogisticRegression

    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-12] = 1.0
    labels = np.array([list(classes).index(v) for v in y])
    clf = LogisticRegression(C=c, max_iter=5000, class_weight=class_weight)
    clf.fit((x - mean) / scale, labels)
    coef = np.asarray(clf.coef_, dtype=np.float64)
    intercept = np.asarray(clf.intercept_, dtype=np.float64)
    if len(classes) > 2 and coef.shape[0] != len(classes):
        raise ValueError("every class must occur in the training data")
    return LinearModel(tuple(features), tuple(classes), mean, scale, coef, intercept, dict(meta))


def save(model: LinearModel, name: str, directory: Path = WEIGHTS_DIR) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    path.write_text(json.dumps(model.to_json(), indent=1) + "\n")
    load.cache_clear()
    return path


def read_weights(path: Path, schema: str) -> dict:
    """A weight file's JSON, checked to be of ``schema``.

    Raises
    ------
    ConfigurationError
        The file is missing or of another schema.
    """
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigurationError(
            f"analyzer model {path} is missing (train it with `mixpilot train-analyzer`)"
        ) from None
    if data.get("schema") != schema:
        raise ConfigurationError(f"{path} is not a {schema} file")
    return data


@functools.lru_cache(maxsize=8)
def load(name: str, directory: Path = WEIGHTS_DIR) -> LinearModel:
    """The shipped model ``name`` (``tempo``, ``meter``, ``genre``)."""
    data = read_weights(directory / f"{name}.json", SCHEMA)
    coef = np.asarray(data["coef"], dtype=np.float64)
    return LinearModel(
        features=tuple(data["features"]),
        classes=tuple(data["classes"]),
        mean=np.asarray(data["mean"], dtype=np.float64),
        scale=np.asarray(data["scale"], dtype=np.float64),
        coef=coef.reshape(-1, len(data["features"])),
        intercept=np.asarray(data["intercept"], dtype=np.float64).reshape(-1),
        meta=data.get("meta", {}),
    )

"""The shipped weights: they load, behave, and beat the mean baseline on held-out songs.

The held-out check is real: random weights predict about 0.5 everywhere and lose to the mean
baseline; these must beat it clearly on songs whose seeds training never used.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from services.predictor.training.config import MODEL_NAMES
from services.predictor.training.dataset import Examples, build_examples
from services.predictor.training.train import mae, predict
from services.predictor.weights import WEIGHTS_DIR, load_model

#: Held-out songs in this check (each gives 6 examples); the full evaluation uses 100.
TEST_SONGS = 10


@pytest.fixture(scope="module")
def held_out(tmp_path_factory: pytest.TempPathFactory) -> Examples:
    return build_examples(
        "test", TEST_SONGS, workers=2, cache_dir=tmp_path_factory.mktemp("examples")
    )


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_weights_ship_small_and_load(name: str) -> None:
    path = WEIGHTS_DIR / f"{name}.pt"
    assert path.exists(), f"{path} is missing: run `mixpilot train --model {name}`"
    assert path.stat().st_size <= 10 * 2**20
    model, meta = load_model(name)
    assert meta["model"] == name and len(meta["train_mean"]) == len(meta["learned"])
    assert Path(WEIGHTS_DIR / f"{name}.png").exists()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_predictions_are_finite_in_range_deterministic_and_beat_the_mean(
    name: str, held_out: Examples
) -> None:
    model, meta = load_model(name)
    first = predict(model, held_out)
    assert first.shape == held_out.target.shape
    assert np.all(np.isfinite(first)) and np.all((first >= 0.0) & (first <= 1.0))
    assert np.array_equal(first, predict(model, held_out))
    mean = np.broadcast_to(np.asarray(meta["train_mean"], dtype=np.float32), first.shape)
    assert mae(first, held_out.target) < 0.8 * mae(mean, held_out.target)

"""The shipped model weights: where they live and how they load (locally; nothing is fetched).

``services/predictor/weights/<model>.pt`` is a checkpoint written by ``mixpilot train``
(:mod:`services.predictor.training.train`): the state dict plus how it was made (config, data
seeds, history, training time, torch version) and the training targets' mean (the mean baseline
of the evaluation). ``<model>.json`` beside it repeats everything but the weights, and
``<model>.png`` plots the training. Model cards: ``docs/models/``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import torch
from torch import nn

from services.common.errors import ConfigurationError
from services.predictor.training.models import MODEL_NAMES, build_model
from services.predictor.training.targets import LEARNED

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
#: The oldest training-data version whose checkpoints this code runs: from version 4 the models
#: normalise their input's level and read the gain-independent context (docs/training.md), so
#: weights trained before would load and quietly mispredict.
OLDEST_DATA_VERSION = 4


def weights_path(name: str, directory: Path | None = None) -> Path:
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODEL_NAMES)}")
    return (WEIGHTS_DIR if directory is None else Path(directory)) / f"{name}.pt"


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint's contents (weights included), checked against this code's parameters."""
    if not path.exists():
        raise ConfigurationError(f"no weights at {path}; train them with `mixpilot train`")
    payload: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=False)
    if list(payload.get("learned", [])) != list(LEARNED):
        raise ConfigurationError(
            f"{path} predicts {payload.get('learned')}, this code learns {list(LEARNED)}: retrain"
        )
    version = int(payload.get("data_version", 0))
    if version < OLDEST_DATA_VERSION:
        raise ConfigurationError(
            f"{path} was trained on data version {version}; this code's models need version "
            f"{OLDEST_DATA_VERSION} or later: retrain"
        )
    return payload


@functools.lru_cache(maxsize=8)
def load_model(name: str, directory: Path | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """The model ``name`` in eval mode with its shipped weights, and its checkpoint metadata
    (everything but the weights). Cached: one instance per process."""
    payload = read_checkpoint(weights_path(name, directory))
    model = build_model(name, n_out=len(LEARNED))
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model, {k: v for k, v in payload.items() if k != "state_dict"}

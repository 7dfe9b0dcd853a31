"""Parity of a Triton server with local inference: the same clips through both, the largest
differences per model, normalised and in physical units. CI's Triton tests assert on it;
`mixpilot triton-check HOST:PORT` runs it against any server (a new Triton image, a rollout).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mixpilot.v1 import mixpilot_pb2 as pb
from services.predictor.inference import LocalModels, model_inputs, raw_predictions
from services.predictor.training.config import MODEL_NAMES
from services.predictor.training.targets import LEARNED
from services.predictor.triton_client import TritonModels

#: The agreement required: normalised outputs, and physical units (dB, width).
NORMALISED_TOLERANCE = 1e-5
PHYSICAL_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Parity:
    clips: int
    normalised: dict[str, float]  # per model: the largest |served - local|
    physical: dict[str, float]
    raw: dict[str, dict[str, float]]  # per model: the served physical predictions

    @property
    def ok(self) -> bool:
        return max(self.normalised.values()) <= NORMALISED_TOLERANCE and (
            max(self.physical.values()) <= PHYSICAL_TOLERANCE
        )


def parity(url: str, audio: np.ndarray, sample_rate: int, analysis: pb.Analysis) -> Parity:
    """Compare the server at ``url`` with this process's models on ``audio``.

    Raises
    ------
    ModelUnavailableError, ModelMismatchError
        The server or a model is not there, or takes other shapes.
    """
    mel, context = model_inputs(audio, sample_rate, analysis)
    runner = TritonModels(url, retry_s=5.0)
    runner.check()
    local = LocalModels().predict(MODEL_NAMES, mel, context)
    served = runner.predict(MODEL_NAMES, mel, context)
    remote = raw_predictions(audio, sample_rate, analysis, runner=runner)
    here = raw_predictions(audio, sample_rate, analysis)
    return Parity(
        clips=int(mel.shape[0]),
        normalised={n: float(np.abs(served[n] - local[n]).max()) for n in MODEL_NAMES},
        physical={n: max(abs(remote[n][p] - here[n][p]) for p in LEARNED) for n in MODEL_NAMES},
        raw={n: {p: float(remote[n][p]) for p in LEARNED} for n in MODEL_NAMES},
    )

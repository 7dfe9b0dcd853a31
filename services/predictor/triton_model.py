"""The ``model.py`` of every MixPilot model in a Triton model repository (Python backend).

:func:`services.predictor.triton_repository.write_repository` copies this file, unchanged, into
``<model>/<version>/model.py`` beside the checkpoint ``model.pt``. Triton's Python backend runs
it in its stub process, so the Python environment Triton runs with must have ``mixpilot``
installed (its model classes and checkpoint checks are the ones local inference uses): here
``mixpilot triton`` starts the server from this project's virtual environment; a GPU node runs
NVIDIA's Triton container with ``pip install mixpilot`` (``docs/triton.md``).

One request is one song's clips: ``MEL`` (clips, 2, mels, frames) and ``CONTEXT``
(clips, context); the answer ``PARAMS`` (clips, learned parameters) is each clip's normalised
prediction, exactly what :class:`services.predictor.inference.LocalModels` computes. With
dynamic batching Triton hands :meth:`TritonPythonModel.execute` several requests at once; they
run as one forward pass and are split back, one response per request. Triton has checked each
request's shapes against ``config.pbtxt`` before it gets here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

#: Tensor names of the model interface (the client imports them from here).
INPUT_MEL = "MEL"
INPUT_CONTEXT = "CONTEXT"
OUTPUT_PARAMS = "PARAMS"
#: The checkpoint's file name inside a model version's directory.
CHECKPOINT = "model.pt"


class TritonPythonModel:
    """The Python backend's model interface: ``initialize``, ``execute``, ``finalize``."""

    def initialize(self, args: dict[str, str]) -> None:
        import torch

        from services.predictor.training.models import build_model
        from services.predictor.training.targets import LEARNED
        from services.predictor.weights import read_checkpoint

        config = json.loads(args["model_config"])
        parameters = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        network = parameters.get("network", args["model_name"])
        threads = int(parameters.get("torch_threads", "0") or 0)
        if threads > 0:
            torch.set_num_threads(threads)
        version_dir = Path(args["model_repository"]) / args["model_version"]
        payload = read_checkpoint(version_dir / CHECKPOINT)
        if args["model_instance_kind"] == "GPU":
            self.device = torch.device(f"cuda:{int(args['model_instance_device_id'])}")
        else:
            self.device = torch.device("cpu")
        model = build_model(network, n_out=len(LEARNED))
        model.load_state_dict(payload["state_dict"])
        self.model = model.to(self.device).eval()
        self.torch = torch

    def execute(self, requests: list[Any]) -> list[Any]:
        import triton_python_backend_utils as pb_utils

        mels, contexts, sizes = [], [], []
        for request in requests:
            mel = pb_utils.get_input_tensor_by_name(request, INPUT_MEL).as_numpy()
            context = pb_utils.get_input_tensor_by_name(request, INPUT_CONTEXT).as_numpy()
            mels.append(mel)
            contexts.append(context)
            sizes.append(mel.shape[0])
        torch = self.torch
        with torch.inference_mode():
            out = self.model(
                torch.from_numpy(np.concatenate(mels)).to(self.device),
                torch.from_numpy(np.concatenate(contexts)).to(self.device),
            )
        params = out.float().cpu().numpy()
        responses, start = [], 0
        for count in sizes:
            tensor = pb_utils.Tensor(OUTPUT_PARAMS, params[start : start + count].copy())
            responses.append(pb_utils.InferenceResponse(output_tensors=[tensor]))
            start += count
        return responses

    def finalize(self) -> None:
        del self.model

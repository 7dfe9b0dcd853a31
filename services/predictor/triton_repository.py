"""The Triton model repository of the three mix models, generated from the shipped weights.

``mixpilot triton-repo DIR`` (or :func:`write_repository`) writes the standard layout::

    DIR/
      baseline_cnn/
        config.pbtxt          explicit inputs and outputs, batching, instance group
        1/model.py            services/predictor/triton_model.py, copied unchanged
        1/model.pt            the shipped checkpoint, copied unchanged
      enhanced_cnn/ ...
      ast/ ...

Everything in it comes from one place: shapes from :mod:`services.predictor.features` and the
learned targets, weights from ``services/predictor/weights``, the model code from
``triton_model.py``. Nothing is kept twice in the repository of this project: the repository is
an artifact, built here for the tests and ``mixpilot triton``, and in the image of the Triton
deployment (``docs/triton.md``).

Feature extraction stays in the predictor, before the call: the models take the mid/side
log-mel clips and the context vector, not audio. A song's clips (about 1 MB of float32) cross
the network instead of its audio (60 MB for 3 minutes of float32 stereo), the decoding and
resampling stay on the CPU nodes that scale with the queue, one spectrogram feeds all three
models, and Triton's GPU time goes only to the networks.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from services.predictor import triton_model
from services.predictor.features import CONTEXT_SIZE, N_MELS
from services.predictor.training.config import MODEL_NAMES
from services.predictor.training.models import CLIP_FRAMES
from services.predictor.training.targets import LEARNED
from services.predictor.weights import read_checkpoint, weights_path

Kind = Literal["cpu", "gpu"]

#: Input and output shapes per clip (Triton adds the batch dimension in front).
MEL_DIMS = (2, N_MELS, CLIP_FRAMES)
CONTEXT_DIMS = (CONTEXT_SIZE,)
PARAMS_DIMS = (len(LEARNED),)


@dataclass(frozen=True)
class RepositoryOptions:
    """How the generated models are served.

    Attributes
    ----------
    kind : "cpu" or "gpu"
        ``KIND_CPU`` here and in CI; ``KIND_GPU`` for a GPU node (production).
    batching : bool
        Dynamic batching on (the default) or off (each request runs alone; benchmarks compare).
    max_batch_size : int
        Most clips one forward pass takes: 8 songs of 6 clips.
    queue_delay_us : int
        Longest time a request waits in the queue for others to batch with.
    instances : int
        Model instances (processes on CPU, per GPU on GPU).
    torch_threads : int
        Intra-op threads of each CPU instance (0: torch's default, one per core). Every model
        instance is a process of its own, so torch's default oversubscribes the cores: three
        models with two threads each on two cores took 290 ms per song at the median instead
        of 40 ms with one thread each (OpenMP threads spin while they wait).
    """

    kind: Kind = "cpu"
    batching: bool = True
    max_batch_size: int = 48
    queue_delay_us: int = 2000
    instances: int = 1
    torch_threads: int = 1


def _tensor(name: str, dims: Sequence[int]) -> str:
    return f'{{ name: "{name}", data_type: TYPE_FP32, dims: [ {", ".join(map(str, dims))} ] }}'


def _parameter(key: str, value: object) -> str:
    return f'parameters: {{ key: "{key}", value: {{ string_value: "{value}" }} }}'


def model_config(name: str, options: RepositoryOptions = RepositoryOptions()) -> str:
    """The ``config.pbtxt`` of model ``name``."""
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODEL_NAMES)}")
    kind = "KIND_GPU" if options.kind == "gpu" else "KIND_CPU"
    lines = [
        f'name: "{name}"',
        'backend: "python"',
        f"max_batch_size: {options.max_batch_size}",
        "input [",
        f"  {_tensor(triton_model.INPUT_MEL, MEL_DIMS)},",
        f"  {_tensor(triton_model.INPUT_CONTEXT, CONTEXT_DIMS)}",
        "]",
        f"output [ {_tensor(triton_model.OUTPUT_PARAMS, PARAMS_DIMS)} ]",
        f"instance_group [ {{ kind: {kind}, count: {options.instances} }} ]",
    ]
    if options.batching:
        lines.append(
            f"dynamic_batching {{ max_queue_delay_microseconds: {options.queue_delay_us} }}"
        )
    lines.append(_parameter("network", name))
    lines.append(_parameter("torch_threads", options.torch_threads))
    return "\n".join(lines) + "\n"


def write_repository(
    out: Path,
    options: RepositoryOptions = RepositoryOptions(),
    *,
    models: Sequence[str] = MODEL_NAMES,
    weights_dir: Path | None = None,
) -> Path:
    """Write the model repository of ``models`` into ``out`` (created; each model's directory
    replaced) and return ``out``.

    Raises
    ------
    ConfigurationError
        If a model's checkpoint is missing or does not fit this code (checked before copying).
    """
    out = Path(out)
    for name in models:
        source = weights_path(name, weights_dir)
        read_checkpoint(source)  # refuse a checkpoint this code would mispredict with
        model_dir = out / name
        if model_dir.exists():
            shutil.rmtree(model_dir)
        version_dir = model_dir / "1"
        version_dir.mkdir(parents=True)
        (model_dir / "config.pbtxt").write_text(model_config(name, options))
        shutil.copyfile(triton_model.__file__, version_dir / "model.py")
        shutil.copyfile(source, version_dir / triton_model.CHECKPOINT)
    return out

"""The Triton model repository generated from the shipped weights: every config.pbtxt is a
valid Triton ModelConfig (parsed by Triton's own protobuf schema, shipped in tritonclient) with
the shapes this code sends, and the files are the shipped ones."""

from __future__ import annotations

import filecmp
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from services.common.errors import ConfigurationError
from services.predictor import triton_model
from services.predictor.features import CONTEXT_SIZE, N_MELS
from services.predictor.training.config import MODEL_NAMES
from services.predictor.training.models import CLIP_FRAMES
from services.predictor.training.targets import LEARNED
from services.predictor.triton_client import interface_problems
from services.predictor.triton_repository import (
    RepositoryOptions,
    model_config,
    write_repository,
)
from services.predictor.weights import weights_path


def _parse(text: str) -> mc.ModelConfig:
    return text_format.Parse(text, mc.ModelConfig())


def test_repository_layout_and_configs(tmp_path: Path) -> None:
    out = write_repository(tmp_path / "repo")
    assert sorted(p.name for p in out.iterdir()) == sorted(MODEL_NAMES)
    for name in MODEL_NAMES:
        config = _parse((out / name / "config.pbtxt").read_text())
        assert (config.name, config.backend, config.max_batch_size) == (name, "python", 48)
        inputs = {t.name: (t.data_type, list(t.dims)) for t in config.input}
        assert inputs == {
            "MEL": (mc.TYPE_FP32, [2, N_MELS, CLIP_FRAMES]),
            "CONTEXT": (mc.TYPE_FP32, [CONTEXT_SIZE]),
        }
        assert [(t.name, list(t.dims)) for t in config.output] == [("PARAMS", [len(LEARNED)])]
        assert config.HasField("dynamic_batching")
        assert config.dynamic_batching.max_queue_delay_microseconds == 2000
        group = config.instance_group[0]
        assert (group.kind, group.count) == (mc.ModelInstanceGroup.KIND_CPU, 1)
        assert config.parameters["network"].string_value == name
        assert filecmp.cmp(out / name / "1" / "model.py", triton_model.__file__, shallow=False)
        assert filecmp.cmp(out / name / "1" / "model.pt", weights_path(name), shallow=False)


def test_gpu_and_unbatched_variants() -> None:
    gpu = _parse(model_config("ast", RepositoryOptions(kind="gpu", instances=2)))
    assert gpu.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
    assert gpu.instance_group[0].count == 2
    plain = _parse(model_config("ast", RepositoryOptions(batching=False)))
    assert not plain.HasField("dynamic_batching")
    with pytest.raises(ValueError, match="unknown model"):
        model_config("resnet")


def test_missing_weights_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="no weights"):
        write_repository(tmp_path / "repo", weights_dir=tmp_path / "empty")


def test_interface_check_names_every_difference() -> None:
    good = {
        "inputs": [
            {"name": "MEL", "shape": ["-1", "2", str(N_MELS), str(CLIP_FRAMES)]},
            {"name": "CONTEXT", "shape": ["-1", str(CONTEXT_SIZE)]},
        ],
        "outputs": [{"name": "PARAMS", "shape": ["-1", str(len(LEARNED))]}],
    }
    assert interface_problems(good) == []
    bad = {
        "inputs": [{"name": "MEL", "shape": ["-1", "2", str(N_MELS), "300"]}],
        "outputs": [{"name": "PARAMS", "shape": ["-1", "7"]}],
    }
    problems = interface_problems(bad)
    assert f"input MEL is [-1, 2, {N_MELS}, 300], this predictor uses " in problems[0]
    assert problems[1] == "no input CONTEXT (has MEL)"
    assert problems[2].startswith("output PARAMS is [-1, 7]")

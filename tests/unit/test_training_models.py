"""The three mix models: interface, size, gradients, use of context and ability to learn."""

from __future__ import annotations

import pytest
import torch

from services.predictor.features import CONTEXT_SIZE, N_MELS
from services.predictor.training.models import (
    CLIP_FRAMES,
    MODEL_NAMES,
    MixModel,
    build_model,
    count_parameters,
    level_normalise,
)

N_OUT = 6
MAX_BYTES = 10 * 1024 * 1024


def _inputs(batch: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mel = torch.rand(batch, 2, N_MELS, CLIP_FRAMES, generator=g)
    context = torch.randn(batch, CONTEXT_SIZE, generator=g)
    return mel, context


def _model(name: str, n_out: int = N_OUT, seed: int = 0) -> MixModel:
    torch.manual_seed(seed)
    return build_model(name, n_out=n_out)


def test_clip_is_eight_seconds_of_frames() -> None:
    assert CLIP_FRAMES == 345


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_output_shape_range_and_batch_of_one(name: str) -> None:
    model = _model(name)
    mel, context = _inputs(3)
    out = model(mel, context)
    assert out.shape == (3, N_OUT) and out.dtype == torch.float32
    assert torch.isfinite(out).all() and (out > 0).all() and (out < 1).all()
    # A fresh head starts at bias 0: outputs near sigmoid(0) = 0.5.
    assert (out - 0.5).abs().max() < 0.3
    for train in (True, False):
        model.train(train)
        one = model(mel[:1], context[:1])
        assert one.shape == (1, N_OUT) and torch.isfinite(one).all()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_eval_mode_is_deterministic(name: str) -> None:
    model = _model(name).eval()
    mel, context = _inputs(2)
    with torch.no_grad():
        a, b = model(mel, context), model(mel, context)
    assert torch.equal(a, b)
    # Batch composition does not matter in eval mode either (BatchNorm uses running stats).
    with torch.no_grad():
        single = model(mel[:1], context[:1])
    torch.testing.assert_close(single, a[:1], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_size_fits_the_budget(name: str) -> None:
    model = _model(name)
    n = count_parameters(model)
    assert n == sum(p.numel() for p in model.parameters())
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert 4 * n <= MAX_BYTES
    state_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    assert state_bytes <= MAX_BYTES


def test_parameter_counts_are_in_their_ranges() -> None:
    counts = {name: count_parameters(_model(name)) for name in MODEL_NAMES}
    assert 50_000 <= counts["baseline_cnn"] <= 250_000
    assert 200_000 <= counts["enhanced_cnn"] <= 1_000_000
    assert counts["ast"] <= 2_000_000


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_gradients_reach_every_parameter(name: str) -> None:
    model = _model(name).train()
    mel, context = _inputs(4)
    target = torch.rand(4, N_OUT, generator=torch.Generator().manual_seed(1))
    torch.nn.functional.mse_loss(model(mel, context), target).backward()
    starved = [
        n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0
    ]
    assert starved == []


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_only_enhanced_cnn_reads_the_context(name: str) -> None:
    model = _model(name).eval()
    mel, context = _inputs(2)
    other = context + torch.linspace(-1.0, 1.0, CONTEXT_SIZE)
    with torch.no_grad():
        a, b = model(mel, context), model(mel, other)
    assert model.uses_context == (name == "enhanced_cnn")
    if name == "enhanced_cnn":
        assert (a - b).abs().max() > 1e-4
    else:
        assert torch.equal(a, b)


def _band_level_batch(batch: int, frames: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Spectrograms whose targets are the level differences of the low and high half of the mid
    and of the side.

    Each clip gets a random level per half of the mel axis (mid) and one for the side, plus
    noise; the targets are their differences (low - high, side - high, side - low), so a model
    must tell the low bands from the high ones, and mid from side. Differences, because the
    models see levels only relative to the clip's own (``level_normalise``).
    """
    g = torch.Generator().manual_seed(7)
    levels = 0.2 + 0.6 * torch.rand(batch, 3, generator=g)
    half = N_MELS // 2
    mel = 0.05 * torch.randn(batch, 2, N_MELS, frames, generator=g)
    mel[:, 0, :half] += levels[:, 0, None, None]
    mel[:, 0, half:] += levels[:, 1, None, None]
    mel[:, 1] += levels[:, 2, None, None]
    context = torch.randn(batch, CONTEXT_SIZE, generator=g)
    pairs = [(0, 1), (2, 1), (2, 0)]
    target = torch.stack([(levels[:, a] - levels[:, b] + 0.6) / 1.2 for a, b in pairs], dim=1)
    return mel, context, target


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_a_few_adam_steps_learn_a_simple_target(name: str) -> None:
    # 1.6 s clips keep this fast; the architecture is the same (the AST has fewer patches).
    frames = 69
    torch.manual_seed(0)
    model = build_model(name, n_out=3, frames=frames).train()
    mel, context, target = _band_level_batch(8, frames)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(30):
        optimiser.zero_grad()
        loss = torch.nn.functional.mse_loss(model(mel, context), target)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    # From predicting about 0.5 everywhere (MSE about 0.03) to a small fraction of that.
    assert sum(losses[-3:]) / 3 < 0.25 * losses[0], losses


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="baseline_cnn, enhanced_cnn, ast"):
        build_model("resnet", n_out=N_OUT)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_wrong_shapes_are_rejected(name: str) -> None:
    model = _model(name)
    mel, context = _inputs(2)
    with pytest.raises(ValueError, match="mel"):
        model(mel[:, :1], context)
    with pytest.raises(ValueError, match="mel"):
        model(mel[:, :, :32], context)
    with pytest.raises(ValueError, match="context"):
        model(mel, context[:, :5])
    with pytest.raises(ValueError, match="context"):
        model(mel, context[:1])


def test_ast_takes_only_clips_of_its_length() -> None:
    model = _model("ast")
    mel, context = _inputs(1)
    with pytest.raises(ValueError, match="345 frames"):
        model(mel[..., :200], context)


@pytest.mark.parametrize("name", ["baseline_cnn", "enhanced_cnn"])
def test_cnns_take_any_clip_length(name: str) -> None:
    model = _model(name).eval()
    mel, context = _inputs(1)
    with torch.no_grad():
        assert model(mel[..., :100], context).shape == (1, N_OUT)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_a_gain_on_the_audio_changes_no_prediction(name: str) -> None:
    """A gain moves every band of log_mel by the same dB; the models normalise it away."""
    model = _model(name).eval()
    mel, context = _inputs(3)
    mel = 0.2 + 0.5 * mel  # -80..-30 dB: clear of the floor either way
    quieter = mel - 12.0 / 100.0  # -12 dB on the audio (DB_SCALE 100)
    with torch.no_grad():
        torch.testing.assert_close(model(quieter, context), model(mel, context), atol=1e-5, rtol=0)
        louder = model(mel + 0.1, context)
    torch.testing.assert_close(louder, model(mel, context), atol=1e-5, rtol=0)


def test_level_normalise_keeps_the_floor_and_the_shape() -> None:
    mel, _ = _inputs(2)
    mel[:, 1, :8] = 0.0  # a silent stretch of the side: digital silence stays silent
    out = level_normalise(mel)
    assert torch.all(out[:, 1, :8] == 0.0) and torch.all(out >= 0.0)
    moved = (out - mel)[mel > 0.05]
    # One shift per clip, the same in mid and side (where nothing hit the floor).
    for clip in range(2):
        shift = (out[clip] - mel[clip])[(mel[clip] > 0.3) & (out[clip] > 0.0)]
        assert shift.max() - shift.min() < 1e-5
    assert moved.abs().max() > 0.01  # random input is far from the reference level

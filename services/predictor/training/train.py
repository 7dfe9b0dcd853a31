"""One training loop for the three mix models: reproducible, time-boxed, logged.

:func:`train` fits a model from :func:`~services.predictor.training.models.build_model` to
:class:`~services.predictor.training.dataset.Examples`: L1 loss on the normalised learned
parameters (the MAE the project reports), AdamW with a one-cycle learning-rate schedule, fixed
seeds (torch, numpy, the batch order), a progress bar, validation MAE after every epoch, and the
best epoch's weights kept. Whenever the epochs so far show that the planned ones will not fit in
:attr:`TrainConfig.max_minutes` (re-estimated after every epoch, as a shared machine slows down),
the schedule is shortened to the epochs that fit, so the learning rate still anneals to its end;
it stops early anyway when another epoch would overrun. With :attr:`TrainConfig.retarget`, that
share of every batch is moved to freshly drawn targets (:mod:`.retarget`), so a song is seen with
new damage every epoch instead of the few targets it was rendered with.
The checkpoint holds the weights and everything needed to reproduce and judge them (config, data
seeds, history, times, versions); a PNG plot of the losses sits beside it.
"""

from __future__ import annotations

import json
import math
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from services.predictor.training.config import TrainConfig
from services.predictor.training.dataset import VERSION as DATA_VERSION
from services.predictor.training.dataset import Examples
from services.predictor.training.models import build_model, count_parameters
from services.predictor.training.retarget import Retargeter
from services.predictor.training.targets import LEARNED


@dataclass
class TrainResult:
    """What a run produced."""

    model: nn.Module
    best_epoch: int
    best_validation_mae: float
    history: list[dict[str, float]] = field(default_factory=list)
    training_s: float = 0.0
    parameters: int = 0


def _batches(n: int, batch_size: int, rng: np.random.Generator | None) -> list[np.ndarray]:
    order = rng.permutation(n) if rng is not None else np.arange(n)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def _tensors(
    examples: Examples,
    index: np.ndarray,
    retarget: tuple[Retargeter, float, np.random.Generator] | None = None,
) -> tuple[torch.Tensor, ...]:
    mel = examples.mel[index].astype(np.float32)
    target = examples.target[index]
    if retarget is not None:
        retargeter, share, rng = retarget
        moved = rng.random(len(index)) < share
        if moved.any():
            target = target.copy()
            fresh = retargeter.draw(rng, int(moved.sum()))
            mel[moved] = retargeter.apply(mel[moved], target[moved], fresh)
            target[moved] = fresh
    return (
        torch.from_numpy(mel),
        torch.from_numpy(examples.context[index]),
        torch.from_numpy(target),
    )


@torch.no_grad()
def predict(model: nn.Module, examples: Examples, *, batch_size: int = 64) -> np.ndarray:
    """The model's normalised predictions for every example, shape (n, len(LEARNED))."""
    model.eval()
    out = []
    for index in _batches(len(examples), batch_size, None):
        mel, context, _ = _tensors(examples, index)
        out.append(model(mel, context).numpy())
    return np.concatenate(out) if out else np.zeros((0, len(LEARNED)), dtype=np.float32)


def mae(prediction: np.ndarray, target: np.ndarray) -> float:
    """Mean absolute error over every value (normalised parameters)."""
    return float(np.mean(np.abs(np.asarray(prediction) - np.asarray(target))))


def train(
    config: TrainConfig,
    train_set: Examples,
    validation_set: Examples,
    *,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Fit ``config.model`` on ``train_set``; keep the epoch with the lowest validation MAE."""
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    rng = np.random.default_rng(config.seed)
    model = build_model(config.model, n_out=len(LEARNED))
    retarget = None
    if config.retarget > 0.0:
        if model.uses_context:
            raise ValueError(
                f"{config.model} reads the context, which re-targeting cannot move; "
                "train it with retarget 0"
            )
        retarget = (Retargeter(), config.retarget, rng)
    optimiser = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    steps_per_epoch = max(1, math.ceil(len(train_set) / config.batch_size))
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch, pct_start=0.15
    )
    loss_fn = nn.L1Loss()
    result = TrainResult(model=model, best_epoch=0, best_validation_mae=math.inf)
    result.parameters = count_parameters(model)
    best_state: dict[str, torch.Tensor] | None = None
    start = time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=config.epochs * steps_per_epoch, desc=config.model, unit="batch")
    planned = config.epochs
    epoch = 0
    while epoch < planned:
        epoch += 1
        epoch_start = time.perf_counter()
        model.train()
        losses = []
        for index in _batches(len(train_set), config.batch_size, rng):
            mel, context, target = _tensors(train_set, index, retarget)
            optimiser.zero_grad(set_to_none=True)
            loss = loss_fn(model(mel, context), target)
            loss.backward()
            optimiser.step()
            schedule.step()
            losses.append(float(loss.detach()))
            if bar is not None:
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{np.mean(losses[-20:]):.4f}")
        validation = mae(predict(model, validation_set), validation_set.target)
        entry = {
            "epoch": float(epoch),
            "train_loss": float(np.mean(losses)),
            "validation_mae": validation,
            "seconds": time.perf_counter() - epoch_start,
        }
        result.history.append(entry)
        if log is not None:
            log(
                f"{config.model} epoch {epoch}: train L1 {entry['train_loss']:.4f}, "
                f"validation MAE {validation:.4f}"
            )
        if validation < result.best_validation_mae:
            result.best_validation_mae = validation
            result.best_epoch = epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        elapsed = time.perf_counter() - start
        fit = epoch + int((config.max_minutes * 60.0 - elapsed) // (elapsed / epoch))
        if epoch < planned and fit < planned:
            planned = max(epoch + 1, fit)
            schedule = torch.optim.lr_scheduler.OneCycleLR(
                optimiser,
                max_lr=config.lr,
                total_steps=planned * steps_per_epoch,
                pct_start=0.15,
                last_epoch=epoch * steps_per_epoch - 1,
            )
            if bar is not None:
                bar.total = planned * steps_per_epoch
            if log is not None:
                log(f"{config.model}: {planned} epochs fit in the time box; schedule shortened")
        if epoch < planned and elapsed + entry["seconds"] > config.max_minutes * 60.0:
            if log is not None:
                log(f"{config.model}: stopping after epoch {epoch}, the time box is reached")
            break
    if bar is not None:
        bar.close()
    result.training_s = time.perf_counter() - start
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return result


def checkpoint(config: TrainConfig, result: TrainResult, extra: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint to save: weights plus how they were made and how good they are."""
    return {
        "format": 1,
        "model": config.model,
        "state_dict": result.model.state_dict(),
        "learned": list(LEARNED),
        "config": asdict(config),
        "data_version": DATA_VERSION,
        "best_epoch": result.best_epoch,
        "validation_mae": result.best_validation_mae,
        "history": result.history,
        "training_s": result.training_s,
        "parameters": result.parameters,
        "torch": torch.__version__,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} thread"
        + ("s" if torch.get_num_threads() != 1 else ""),
        **extra,
    }


def save(path: Path, payload: dict[str, Any]) -> None:
    """Write a checkpoint atomically, and its history as JSON beside it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    meta = {k: v for k, v in payload.items() if k != "state_dict"}
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2, default=str) + "\n")


def plot_history(history: list[dict[str, float]], path: Path, *, title: str) -> None:
    """Training L1 and validation MAE per epoch, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6.0, 3.6), dpi=120)
    ax.plot(epochs, [h["train_loss"] for h in history], marker="o", label="training L1")
    ax.plot(epochs, [h["validation_mae"] for h in history], marker="s", label="validation MAE")
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean absolute error (normalised)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)

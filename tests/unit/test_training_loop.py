"""The data pipeline and the training loop, end to end on a tiny generated set (real songs,
real fluidsynth): it tests the loop, not the quality."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from services.common.errors import ConfigurationError
from services.predictor.features import log_mel
from services.predictor.training.config import TrainConfig
from services.predictor.training.dataset import (
    CLIPS_PER_SONG,
    SAMPLE_RATE,
    SPLIT_SEED_BASE,
    TARGETS_PER_SONG,
    Examples,
    build_examples,
    example_audio,
    song_examples,
    split_seeds,
)
from services.predictor.training.models import build_model
from services.predictor.training.targets import LEARNED
from services.predictor.training.train import checkpoint, plot_history, predict, save, train
from services.predictor.weights import OLDEST_DATA_VERSION, read_checkpoint


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Examples, Examples, Path]:
    cache = tmp_path_factory.mktemp("examples")
    return (
        build_examples("train", 3, workers=2, cache_dir=cache),
        build_examples("validation", 1, cache_dir=cache),
        cache,
    )


def test_splits_never_share_a_song() -> None:
    seen = [set(split_seeds(s, 1000)) for s in SPLIT_SEED_BASE]
    assert all(not (a & b) for i, a in enumerate(seen) for b in seen[i + 1 :])
    with pytest.raises(ValueError, match="unknown split"):
        split_seeds("holdout", 1)


def test_examples_are_the_features_of_reproducible_audio(
    tiny: tuple[Examples, Examples, Path],
) -> None:
    train_set, _, cache = tiny
    per_song = CLIPS_PER_SONG * TARGETS_PER_SONG
    assert len(train_set) == 3 * per_song
    assert train_set.mel.dtype == np.float16 and train_set.target.shape[1] == len(LEARNED)
    assert np.all((train_set.target >= 0.0) & (train_set.target <= 1.0))
    assert len(set(train_set.genre.tolist())) == 3  # genres in turn
    # Cached: the same arrays come back without rebuilding.
    again = build_examples("train", 3, cache_dir=cache)
    assert np.array_equal(again.mel, train_set.mel)
    # Any example's audio can be recreated, and it is what the features were computed from.
    i = per_song - 1
    clean, degraded, target = example_audio(
        int(train_set.seed[i]), int(train_set.clip[i]), int(train_set.draw[i])
    )
    assert clean.shape == degraded.shape == (2, int(8.0 * SAMPLE_RATE))
    assert np.max(np.abs(degraded - clean)) > 0.01
    mel = log_mel(degraded, SAMPLE_RATE).astype(np.float16)
    assert np.array_equal(mel, train_set.mel[i])
    first = song_examples(int(train_set.seed[0]))
    assert np.array_equal(first["target"], train_set.target[:per_song])


def test_a_short_run_lowers_the_loss_and_round_trips(
    tiny: tuple[Examples, Examples, Path], tmp_path: Path
) -> None:
    train_set, validation_set, _ = tiny
    config = TrainConfig(model="baseline_cnn", epochs=6, batch_size=4, seed=1)
    result = train(config, train_set, validation_set, progress=False)
    losses = [h["train_loss"] for h in result.history]
    assert len(losses) == 6
    assert losses[-1] < 0.85 * losses[0]
    assert result.best_epoch >= 1 and np.isfinite(result.best_validation_mae)
    # Same seed, same run.
    again = train(config, train_set, validation_set, progress=False)
    assert [h["train_loss"] for h in again.history] == losses
    # The checkpoint loads into a fresh model that predicts the same.
    path = tmp_path / "baseline_cnn.pt"
    save(path, checkpoint(config, result, {"train_mean": [0.5] * len(LEARNED)}))
    plot_history(result.history, path.with_suffix(".png"), title="test")
    assert path.with_suffix(".png").stat().st_size > 1000
    assert path.with_suffix(".json").exists()
    payload = read_checkpoint(path)
    fresh = build_model("baseline_cnn", n_out=len(LEARNED))
    fresh.load_state_dict(payload["state_dict"])
    fresh.eval()
    assert np.array_equal(predict(fresh, validation_set), predict(result.model, validation_set))
    assert payload["history"] == result.history and payload["config"]["seed"] == 1
    # Weights made for an older data version (other inputs) are refused, not run.
    save(path, {**payload, "data_version": OLDEST_DATA_VERSION - 1})
    with pytest.raises(ConfigurationError, match="data version 3"):
        read_checkpoint(path)


def test_the_time_box_stops_a_run_early(tiny: tuple[Examples, Examples, Path]) -> None:
    train_set, validation_set, _ = tiny
    config = TrainConfig(model="baseline_cnn", epochs=50, batch_size=8, max_minutes=1e-4)
    result = train(config, train_set, validation_set, progress=False)
    assert len(result.history) == 1
    assert isinstance(result.model, torch.nn.Module)


def test_the_schedule_shrinks_as_epochs_slow_down(
    tiny: tuple[Examples, Examples, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A machine that slows down mid-run: the plan is re-made after every epoch, so the run ends
    on its (shortened) schedule instead of being cut by the time box half-way through it."""
    from services.predictor.training import train as train_module

    class SlowingClock:
        def __init__(self) -> None:
            self.now, self.calls = 0.0, 0

        def perf_counter(self) -> float:
            self.calls += 1
            self.now += 1.0 if self.calls <= 8 else 3.0  # epochs take 3 s, then 9 s
            return self.now

    monkeypatch.setattr(train_module, "time", SlowingClock())
    train_set, validation_set, _ = tiny
    config = TrainConfig(model="baseline_cnn", epochs=50, batch_size=16, max_minutes=1.0)
    messages: list[str] = []
    result = train(config, train_set, validation_set, progress=False, log=messages.append)
    shortened = [m for m in messages if "schedule shortened" in m]
    assert len(shortened) >= 2, messages  # planned at epoch 1, re-planned when it slowed
    assert not any("stopping after epoch" in m for m in messages), messages
    assert len(result.history) == int(shortened[-1].split(": ")[1].split()[0])


def test_song_average_pools_the_clips_of_each_song_and_draw() -> None:
    from services.predictor.training.evaluate import song_average

    n = 6
    seed = np.array([4, 4, 4, 4, 9, 9])
    draw = np.array([0, 0, 1, 1, 0, 0])
    zeros = np.zeros(n, dtype=np.int64)
    examples = Examples(
        mel=np.zeros((n, 2, 1, 1), np.float16),
        context=np.zeros((n, 1), np.float32),
        target=np.zeros((n, 1), np.float32),
        seed=seed,
        clip=zeros,
        draw=draw,
        genre=zeros,
    )
    prediction = np.array([[0.1], [0.3], [0.5], [0.9], [0.2], [0.4]], dtype=np.float32)
    pooled = song_average(prediction, examples)[:, 0]
    assert np.allclose(pooled, [0.2, 0.2, 0.7, 0.7, 0.3, 0.3])

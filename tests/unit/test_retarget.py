"""Spectral re-targeting, checked against real renders of a generated song: moving an example's
log-mel to a new target must land where degrading the clean clip for that target lands."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from services.predictor.features import DB_SCALE, SAMPLE_RATE, log_mel
from services.predictor.training.config import TrainConfig
from services.predictor.training.dataset import build_examples, example_audio, split_seeds
from services.predictor.training.retarget import Retargeter
from services.predictor.training.targets import LEARNED, degrade
from services.predictor.training.train import train


@pytest.fixture(scope="module")
def retargeter() -> Retargeter:
    return Retargeter()


@pytest.fixture(scope="module")
def example() -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    return example_audio(split_seeds("train", 2)[1], 1, 0)


def _vector(r: Retargeter, target: dict[str, float]) -> np.ndarray:
    return r.normalised(np.array([[target[name] for name in LEARNED]]))


def _band_errors_db(r: Retargeter, example, new_target: dict[str, float]):
    """Per (channel, band) error of the time-averaged log-mel, moved and not moved (dB)."""
    clean, degraded, target = example
    before = log_mel(degraded, SAMPLE_RATE)
    truth = log_mel(degrade(clean, SAMPLE_RATE, new_target), SAMPLE_RATE)
    moved = r.apply(before[None], _vector(r, target), _vector(r, new_target))[0]
    return (
        np.abs((moved - truth).mean(axis=-1)) * DB_SCALE,
        np.abs((before - truth).mean(axis=-1)) * DB_SCALE,
    )


def test_physical_and_normalised_round_trip(retargeter: Retargeter) -> None:
    rng = np.random.default_rng(3)
    drawn = retargeter.draw(rng, 50)
    assert drawn.shape == (50, len(LEARNED)) and drawn.dtype == np.float32
    assert np.all((drawn >= 0.0) & (drawn <= 1.0))
    back = retargeter.normalised(retargeter.physical(drawn))
    assert np.allclose(back, drawn, atol=1e-6)
    gains = retargeter.physical(drawn)[:, : len(LEARNED) - 1]
    assert np.all(np.abs(gains) <= 9.0 + 1e-6)  # the training distribution, not the schema's


def test_the_same_target_changes_nothing(retargeter: Retargeter, example) -> None:
    _, degraded, target = example
    mel = log_mel(degraded, SAMPLE_RATE)[None]
    vector = _vector(retargeter, target)
    assert np.allclose(retargeter.apply(mel, vector, vector), mel, atol=1e-6)


def test_a_new_width_moves_only_the_side_and_exactly(retargeter: Retargeter, example) -> None:
    _, _, target = example
    new = dict(target, stereo_width=1.5 if target["stereo_width"] < 1.0 else 0.7)
    moved, unmoved = _band_errors_db(retargeter, example, new)
    assert np.max(moved) < 0.05  # exact up to float rounding
    # The change was real: at least 3 dB on the side wherever it has content, none on the mid.
    assert np.max(unmoved[0]) < 1e-3 and np.median(unmoved[1]) > 2.5


@pytest.mark.parametrize(
    "shift_db",
    [
        {"eq_low_shelf_gain_db": 7.0},
        {"eq_mid_gain_db": -8.0},
        {"eq_high_shelf_gain_db": 6.0, "eq_high_mid_gain_db": -5.0},
        {
            "eq_low_shelf_gain_db": -6.0,
            "eq_low_mid_gain_db": 4.0,
            "eq_mid_gain_db": 8.5,
            "eq_high_mid_gain_db": -6.0,
            "eq_high_shelf_gain_db": -8.5,
        },
    ],
)
def test_new_eq_gains_land_on_the_real_render(
    retargeter: Retargeter, example, shift_db: dict[str, float]
) -> None:
    _, _, target = example
    new = dict(target)
    for name, shift in shift_db.items():
        # Away from the example's own gain by the shift, kept in the training range.
        new[name] = (
            target[name] + shift if abs(target[name] + shift) <= 9.0 else target[name] - shift
        )
    new["stereo_width"] = 1.45 if target["stereo_width"] < 1.0 else 0.75
    moved, unmoved = _band_errors_db(retargeter, example, new)
    # The bands the change moved by several dB are put back to a fraction of a dB. Looser: the
    # lowest bands (a few FFT bins, window leakage from below 30 Hz) and the quiet top octave
    # (frames at the spectrogram's floor in one render and not the other).
    assert np.max(unmoved) > 4.0
    assert np.median(moved) < 0.1
    assert np.max(moved[:, 4:]) < 0.75
    assert np.max(moved) < 3.0


def test_training_with_retargeting_is_reproducible_and_context_models_refuse(
    tmp_path: Path,
) -> None:
    with pytest.raises(ValueError, match="share of a batch"):
        TrainConfig(model="baseline_cnn", retarget=1.5)
    train_set = build_examples("train", 1, workers=1, cache_dir=tmp_path)
    validation_set = build_examples("validation", 1, workers=1, cache_dir=tmp_path)
    config = TrainConfig(model="baseline_cnn", epochs=2, batch_size=2, retarget=0.5, seed=4)
    first = train(config, train_set, validation_set, progress=False)
    again = train(config, train_set, validation_set, progress=False)
    assert [h["train_loss"] for h in first.history] == [h["train_loss"] for h in again.history]
    plain = train(
        TrainConfig(model="baseline_cnn", epochs=2, batch_size=2, seed=4),
        train_set,
        validation_set,
        progress=False,
    )
    assert [h["train_loss"] for h in plain.history] != [h["train_loss"] for h in first.history]
    with pytest.raises(ValueError, match="reads the context"):
        train(
            TrainConfig(model="enhanced_cnn", epochs=1, retarget=0.5),
            train_set,
            validation_set,
            progress=False,
        )

"""The names and settings of a training run, without importing torch (the CLI parses with them)."""

from __future__ import annotations

from dataclasses import dataclass

#: The three mix models, in order of complexity (:mod:`.models` builds them).
MODEL_NAMES: tuple[str, ...] = ("baseline_cnn", "enhanced_cnn", "ast")
#: Per-model learning rates (the transformer wants a gentler one).
LEARNING_RATES = {"baseline_cnn": 2e-3, "enhanced_cnn": 2e-3, "ast": 5e-4}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run (logged in the checkpoint)."""

    model: str
    train_songs: int = 600
    validation_songs: int = 60
    epochs: int = 12
    batch_size: int = 32
    learning_rate: float | None = None  # None: LEARNING_RATES[model]
    weight_decay: float = 1e-4
    #: Share of each training batch moved to freshly drawn targets by spectral re-targeting
    #: (:mod:`.retarget`; only for models that ignore the context).
    retarget: float = 0.0
    seed: int = 0
    threads: int = 2
    max_minutes: float = 30.0

    def __post_init__(self) -> None:
        if self.model not in MODEL_NAMES:
            raise ValueError(f"unknown model {self.model!r}; expected one of {MODEL_NAMES}")
        if not 0.0 <= self.retarget <= 1.0:
            raise ValueError(f"retarget is a share of a batch, 0..1; got {self.retarget}")

    @property
    def lr(self) -> float:
        return self.learning_rate if self.learning_rate is not None else LEARNING_RATES[self.model]

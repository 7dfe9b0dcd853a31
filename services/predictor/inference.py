"""The AI versions: the three models' predictions on a song, refined by its musical context.

A song is cut into up to :data:`MAX_CLIPS` clips of :data:`~services.predictor.features.CLIP_S`
seconds spread evenly over it (a shorter song is repeated to one clip's length); each model
predicts the learned parameters (:data:`~services.predictor.training.targets.LEARNED`) for every
clip and the song's raw prediction is their mean, as the evaluation's song-level MAE scores it.

The raw prediction is then **refined** into a complete parameter set (``docs/training.md``):

* every parameter the models do not learn comes from the rule-based strategy, i.e. from musical
  context: tempo-synced delay and compressor release, the genre's reverb style and decay
  capped by the tempo, compression placed relative to the song's level, exciter, high-pass;
* the EQ corners and Qs stay at their neutral values, the frame the EQ gains were learned in;
* the learned values are held within genre-appropriate limits (:data:`GENRE_LIMITS`): how far
  an EQ band may move and how narrow or wide the stereo image may be made.

Each :class:`~mixpilot.v1.mixpilot_pb2.MixParams` carries the model's raw values (``raw``) and,
for each parameter a limit moved, what the refinement did (``refinements``); the report sets
them beside the strategy's values. Nothing here knows about Kafka, gRPC or blobs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from mixpilot.v1 import mixpilot_pb2 as pb
from services.common.params import BY_NAME, validate_params
from services.predictor.features import CLIP_S, context_vector, log_mel, reference_gain_db
from services.predictor.training.config import MODEL_NAMES
from services.predictor.training.targets import EQ_GAINS, LEARNED

#: At most this many clips of a song are predicted (spread evenly over it).
MAX_CLIPS = 6
#: The version name of each model's AI version.
AI_VERSIONS = {name: f"ai_{name}" for name in MODEL_NAMES}
#: EQ parameters held at neutral in the AI versions (corners and Qs of the learned bands).
_EQ_FRAME = tuple(
    n for n in BY_NAME if n.startswith("eq_") and n not in EQ_GAINS and n != "eq_hpf_freq_hz"
)


@dataclass(frozen=True)
class Limits:
    """Genre-appropriate bounds on the learned parameters."""

    eq_db: float  # largest |gain| of any EQ band
    width_min: float
    width_max: float


#: Dense genres take more EQ and width; acoustic ones keep a natural balance and image.
GENRE_LIMITS: dict[str, Limits] = {
    "pop": Limits(eq_db=6.0, width_min=0.8, width_max=1.35),
    "rock": Limits(eq_db=6.0, width_min=0.8, width_max=1.3),
    "electronic": Limits(eq_db=8.0, width_min=0.8, width_max=1.5),
    "jazz": Limits(eq_db=4.5, width_min=0.85, width_max=1.2),
    "ballad": Limits(eq_db=4.5, width_min=0.85, width_max=1.25),
}
DEFAULT_LIMITS = Limits(eq_db=6.0, width_min=0.8, width_max=1.3)


def song_clips(audio: np.ndarray, sample_rate: int, *, max_clips: int = MAX_CLIPS) -> np.ndarray:
    """Up to ``max_clips`` clips of :data:`CLIP_S` seconds spread evenly over ``audio``.

    Parameters
    ----------
    audio : np.ndarray, shape (channels, n)
        1 or 2 channels at ``sample_rate``.

    Returns
    -------
    np.ndarray, shape (clips, channels, CLIP_S * sample_rate), float32
    """
    x = np.atleast_2d(np.asarray(audio, dtype=np.float32))
    if x.shape[1] == 0:
        raise ValueError("no audio to predict from")
    length = int(round(CLIP_S * sample_rate))
    if x.shape[1] < length:
        x = np.pad(x, ((0, 0), (0, length - x.shape[1])), mode="wrap")
    count = max(1, min(max_clips, x.shape[1] // length))
    starts = np.linspace(0, x.shape[1] - length, count).round().astype(int)
    return np.stack([x[:, s : s + length] for s in starts])


def clip_features(audio: np.ndarray, sample_rate: int, *, gain_db: float = 0.0) -> np.ndarray:
    """The mid/side log-mel spectrograms of :func:`song_clips`, shape (clips, 2, mels, frames),
    with ``gain_db`` applied to the clips first (only they are copied, never the whole song)."""
    gain = np.float32(10.0 ** (gain_db / 20.0))
    return np.stack([log_mel(c * gain, sample_rate) for c in song_clips(audio, sample_rate)])


class ModelRunner(Protocol):
    """Runs the mix models on a song's clips: locally (:class:`LocalModels`) or on Triton
    (:class:`services.predictor.triton_client.TritonModels`)."""

    def predict(
        self, names: Sequence[str], mel: np.ndarray, context: np.ndarray
    ) -> dict[str, np.ndarray]:
        """Each model's normalised predictions, shape (clips, learned parameters), for the
        clips ``mel`` (clips, 2, mels, frames) and their context rows (clips, context size)."""
        ...


class LocalModels:
    """The shipped models in this process (torch on the CPU)."""

    def predict(
        self, names: Sequence[str], mel: np.ndarray, context: np.ndarray
    ) -> dict[str, np.ndarray]:
        import torch

        from services.predictor.weights import load_model

        mel_t, context_t = torch.from_numpy(mel), torch.from_numpy(context)
        with torch.inference_mode():
            return {name: load_model(name)[0](mel_t, context_t).numpy() for name in names}


def model_inputs(
    audio: np.ndarray, sample_rate: int, analysis: pb.Analysis
) -> tuple[np.ndarray, np.ndarray]:
    """What every model is fed for a song: its clips' spectrograms, brought to the reference
    peak first (:func:`reference_gain_db`: the training songs' levels sit around that peak, so
    the song's gain changes nothing the models see), and one context row per clip."""
    mel = clip_features(audio, sample_rate, gain_db=reference_gain_db(analysis))
    context = np.tile(context_vector(analysis), (mel.shape[0], 1))
    return mel.astype(np.float32), context.astype(np.float32)


def raw_predictions(
    audio: np.ndarray,
    sample_rate: int,
    analysis: pb.Analysis,
    models: Sequence[str] = MODEL_NAMES,
    runner: ModelRunner | None = None,
) -> dict[str, dict[str, float]]:
    """Each model's song-level prediction (the mean over its clips): physical values of the
    learned parameters. ``runner`` defaults to :class:`LocalModels`."""
    mel, context = model_inputs(audio, sample_rate, analysis)
    clips = (runner or LocalModels()).predict(models, mel, context)
    return {
        name: {
            p: BY_NAME[p].denormalise(float(x))
            for p, x in zip(LEARNED, clips[name].mean(axis=0), strict=True)
        }
        for name in models
    }


def refine(
    raw: Mapping[str, float], genre: str, strategy: Mapping[str, float]
) -> tuple[dict[str, float], dict[str, str]]:
    """The complete parameter set of an AI version and what the refinement changed.

    Returns
    -------
    values : dict[str, float]
        Physical parameters (validated, schema order): the strategy's, the EQ frame at
        neutral, and the learned values within ``GENRE_LIMITS[genre]``.
    refinements : dict[str, str]
        One line per learned parameter that a limit moved.
    """
    limits = GENRE_LIMITS.get(genre, DEFAULT_LIMITS)
    label = genre or "unknown genre"
    values = dict(strategy)
    for name in _EQ_FRAME:
        values[name] = BY_NAME[name].default
    notes: dict[str, str] = {}
    for name, value in raw.items():
        if name in EQ_GAINS:
            low, high, shown = -limits.eq_db, limits.eq_db, "{:+.2f} dB"
        else:
            low, high, shown = limits.width_min, limits.width_max, "{:.2f}"
        kept = min(max(value, low), high)
        if kept != value:
            side = "floor" if kept == low else "ceiling"
            notes[name] = (
                f"held at the {label} {side} of {shown.format(kept)} (model: {shown.format(value)})"
            )
        values[name] = kept
    return validate_params(values), notes


def ai_predictions(
    audio: np.ndarray,
    sample_rate: int,
    analysis: pb.Analysis,
    strategy: Mapping[str, float],
    models: Sequence[str] = MODEL_NAMES,
    runner: ModelRunner | None = None,
) -> list[pb.MixParams]:
    """The AI versions of a song, one per model, in :data:`MODEL_NAMES` order."""
    result = []
    for name, raw in raw_predictions(audio, sample_rate, analysis, models, runner).items():
        values, notes = refine(raw, analysis.genre, strategy)
        result.append(
            pb.MixParams(
                version=AI_VERSIONS[name], values=values, source=name, raw=raw, refinements=notes
            )
        )
    return result


__all__ = [
    "AI_VERSIONS",
    "DEFAULT_LIMITS",
    "GENRE_LIMITS",
    "MAX_CLIPS",
    "Limits",
    "LocalModels",
    "ModelRunner",
    "ai_predictions",
    "clip_features",
    "model_inputs",
    "raw_predictions",
    "refine",
    "song_clips",
]

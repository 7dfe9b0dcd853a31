"""Model cards: what a shipped model is, how it was made and how good it is, from the figures.

Written by ``mixpilot evaluate --cards docs/models`` from the checkpoint's metadata (data, seeds,
command, training time) and the evaluation just run, so a card cannot drift from its weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.predictor.training.dataset import CLIPS_PER_SONG, SPLIT_SEED_BASE, TARGETS_PER_SONG
from services.predictor.training.evaluate import Scores, table
from services.predictor.training.targets import LEARNED

DESCRIPTIONS = {
    "baseline_cnn": "a small plain CNN on the mid/side log-mel spectrogram (no musical context)",
    "enhanced_cnn": (
        "a residual CNN on the mid/side log-mel spectrogram, conditioned (FiLM) on the "
        "analyzer's musical context: genre, tempo, key, energy, loudness, width, crest factor, "
        "brightness"
    ),
    "ast": (
        "an Audio-Spectrogram-Transformer-style regressor trained from scratch: patch "
        "embedding, a 4-layer transformer encoder, a regression head on the [CLS] token"
    ),
}


#: How the training examples were drawn.
_TARGETS = (
    f"{TARGETS_PER_SONG} self-supervised targets per song (centred EQ gains and a width), each "
    f"shared by the song's {CLIPS_PER_SONG} clips"
)


def model_card(
    name: str,
    meta: Mapping[str, Any],
    results: Mapping[str, Scores],
    *,
    test_songs: int,
    command: str,
) -> str:
    """The markdown card of model ``name``."""
    config = meta["config"]
    s = results[name]
    mean = results.get("mean")
    gain = f"{100 * (1 - s.mae_song / mean.mae):.0f} %" if mean is not None and mean.mae else "–"
    examples = meta.get("examples", {})
    lines = [
        f"# Model card: `{name}`",
        "",
        f"**What it is**: {DESCRIPTIONS[name]}; {meta.get('parameters', 0):,} parameters, "
        f"float32 weights in `services/predictor/weights/{name}.pt`. It sees 8 s clips "
        "(inference averages over a song's clips) and predicts the normalised values of "
        f"{', '.join(f'`{n}`' for n in LEARNED)}; every other parameter is derived from musical "
        "context (docs/training.md).",
        "",
        "## Data",
        "",
        f"Generated songs (docs/songgen.md), {_TARGETS} (docs/training.md; data version "
        f"{meta.get('data_version', '?')}): "
        f"{config['train_songs']} training songs (seeds {SPLIT_SEED_BASE['train']}.."
        f"{SPLIT_SEED_BASE['train'] + config['train_songs'] - 1}, {examples.get('train', '?')} "
        f"examples), {config['validation_songs']} validation songs (seeds from "
        f"{SPLIT_SEED_BASE['validation']}, {examples.get('validation', '?')} examples); "
        f"evaluated on {test_songs} held-out songs (seeds from {SPLIT_SEED_BASE['test']}), "
        "never seen in training.",
        "",
        "## Training",
        "",
        f"- Command: `{meta.get('command', 'mixpilot train --model ' + name)}`",
        f"- Seed {config['seed']}, {config['epochs']} epochs planned, batch "
        f"{config['batch_size']}, AdamW (lr {config['learning_rate'] or 'per model'}, weight decay "
        f"{config['weight_decay']}), one-cycle schedule, L1 loss"
        + (
            f", {100 * config['retarget']:.0f} % of every batch re-targeted spectrally"
            if config.get("retarget")
            else ""
        )
        + "; best epoch "
        f"{meta.get('best_epoch')} kept (validation MAE {meta.get('validation_mae', 0):.4f}).",
        f"- Trained in {meta.get('training_s', 0) / 60:.1f} min on {meta.get('machine', '?')} "
        f"(torch {meta.get('torch', '?')}); "
        + (
            f"building the data took {meta['data_s'] / 60:.1f} min."
            if meta.get("data_s", 0.0) >= 60.0
            else "the data came from the cache (built once, shared by the three models)."
        ),
        f"- Loss plot: `services/predictor/weights/{name}.png`.",
        "",
        "## Results on the held-out split",
        "",
        f"MAE (normalised, learned parameters) per song **{s.mae_song:.4f}** (the mean of its "
        f"clips' predictions, as the product predicts), per single clip {s.mae:.4f}, {gain} "
        f"below the mean baseline; over all 43 parameters {s.mae_all:.4f}. Audio: "
        "`render(degraded, song prediction)` vs the "
        f"clean mix, distance ratio median **{s.ratio_median:.3f}**, 90th percentile "
        f"{s.ratio_p90:.3f}, closer than the degraded input for {100 * s.improved_share:.0f} % "
        f"of items. Inference {s.inference_ms:.1f} ms per clip (CPU, batch 64).",
        "",
        table(results),
        "",
        f"Reproduce: `{command}`.",
        "",
        "## Limits",
        "",
        "Trained on synthetic General MIDI renderings (TimGM6mb), five genres, 4/4 and 3/4; real "
        "recordings differ. It learns to undo tonal-balance and width damage, not taste; the "
        "creative parameters come from the musical strategy. It judges the spectrum's shape, "
        "never the absolute level (each clip's level is normalised first), so a song's gain does "
        "not change its prediction, and a broadband boost or cut of every band alike is "
        "invisible to it.",
        "",
    ]
    return "\n".join(lines)

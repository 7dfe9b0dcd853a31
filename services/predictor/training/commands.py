"""``mixpilot train`` and ``mixpilot evaluate``: arguments and what they run.

``gateway/cli.py`` registers these subcommands; the work is here, beside the training code.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from services.common.progress import songs_bar
from services.predictor.training.config import MODEL_NAMES, TrainConfig


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = TrainConfig(model=MODEL_NAMES[0])
    parser.add_argument("--model", required=True, choices=MODEL_NAMES)
    parser.add_argument("--train-songs", type=int, default=defaults.train_songs)
    parser.add_argument("--validation-songs", type=int, default=defaults.validation_songs)
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--learning-rate", type=float, default=None, help="default per model")
    parser.add_argument("--weight-decay", type=float, default=defaults.weight_decay, help="AdamW")
    parser.add_argument(
        "--retarget",
        type=float,
        default=defaults.retarget,
        help="share of each batch given fresh targets spectrally (models without context)",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--threads", type=int, default=defaults.threads, help="torch threads")
    parser.add_argument("--workers", type=int, default=2, help="processes building the data")
    parser.add_argument("--max-minutes", type=float, default=defaults.max_minutes)
    parser.add_argument(
        "-o", "--outdir", type=Path, default=None, help="default: the shipped weights folder"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", nargs="+", choices=MODEL_NAMES, default=list(MODEL_NAMES))
    parser.add_argument("--test-songs", type=int, default=100)
    parser.add_argument("--audio-items", type=int, default=100, help="items rendered and scored")
    parser.add_argument("--workers", type=int, default=2, help="processes building the data")
    parser.add_argument("--weights", type=Path, default=None, help="default: the shipped ones")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument(
        "--cards", type=Path, default=None, help="write a model card per model into this folder"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run_train(args: argparse.Namespace) -> int:
    from services.predictor.training.dataset import build_examples
    from services.predictor.training.train import checkpoint, plot_history, save, train
    from services.predictor.weights import weights_path

    config = TrainConfig(
        model=args.model,
        train_songs=args.train_songs,
        validation_songs=args.validation_songs,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        weight_decay=args.weight_decay,
        retarget=args.retarget,
        seed=args.seed,
        threads=args.threads,
        max_minutes=args.max_minutes,
    )
    started = time.perf_counter()
    train_set = build_examples(
        "train",
        config.train_songs,
        workers=args.workers,
        progress=songs_bar("training songs", args.quiet),
    )
    validation_set = build_examples(
        "validation",
        config.validation_songs,
        workers=args.workers,
        progress=songs_bar("validation songs", args.quiet),
    )
    data_s = time.perf_counter() - started
    result = train(config, train_set, validation_set, progress=not args.quiet, log=print)
    path = weights_path(config.model, args.outdir)
    payload = checkpoint(
        config,
        result,
        {
            "train_mean": train_set.target.mean(axis=0).tolist(),
            "examples": {"train": len(train_set), "validation": len(validation_set)},
            "data_s": data_s,
            "command": "mixpilot " + " ".join(sys.argv[1:]),
        },
    )
    save(path, payload)
    plot_history(
        result.history,
        path.with_suffix(".png"),
        title=f"{config.model}: best validation MAE {result.best_validation_mae:.4f}",
    )
    size_mb = path.stat().st_size / 2**20
    print(
        f"{config.model}: validation MAE {result.best_validation_mae:.4f} (epoch "
        f"{result.best_epoch}), {result.parameters:,} parameters, {size_mb:.1f} MB, trained in "
        f"{result.training_s / 60:.1f} min -> {path}"
    )
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from services.predictor.training.dataset import build_examples
    from services.predictor.training.evaluate import evaluate, table
    from services.predictor.weights import load_model

    models = {}
    metas = {}
    train_mean = None
    for name in args.models:
        model, meta = load_model(name, args.weights)
        models[name] = model
        metas[name] = meta
        if train_mean is None:
            train_mean = np.asarray(meta["train_mean"], dtype=np.float32)
    assert train_mean is not None
    test = build_examples(
        "test", args.test_songs, workers=args.workers, progress=songs_bar("test songs", args.quiet)
    )
    results = evaluate(
        models,
        test,
        train_mean,
        audio_items=args.audio_items,
        log=None if args.quiet else (lambda m: print(m, file=sys.stderr)),
    )
    print(
        f"Held-out test split: {args.test_songs} songs, {len(test)} examples; audio score on "
        f"{min(args.audio_items, len(test))} of them.\n"
    )
    print(table(results))
    if args.json is not None:
        figures = {
            name: {
                "mae": s.mae,
                "mae_song": s.mae_song,
                "per_parameter_song": s.per_parameter_song,
                "mae_all": s.mae_all,
                "per_parameter": s.per_parameter,
                "ratio_median": s.ratio_median,
                "ratio_p90": s.ratio_p90,
                "improved_share": s.improved_share,
                "inference_ms": s.inference_ms,
            }
            for name, s in results.items()
        }
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    if args.cards is not None:
        from services.predictor.training.cards import model_card

        args.cards.mkdir(parents=True, exist_ok=True)
        command = f"mixpilot evaluate --models {' '.join(models)} --test-songs {args.test_songs} "
        command += f"--audio-items {args.audio_items}"
        for name in models:
            card = model_card(
                name, metas[name], results, test_songs=args.test_songs, command=command
            )
            (args.cards / f"{name}.md").write_text(card)
    return 0

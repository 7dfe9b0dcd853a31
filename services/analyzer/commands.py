"""``mixpilot train-analyzer`` and ``mixpilot evaluate-analysis``: arguments and what they run.

``gateway/cli.py`` registers these subcommands; the work is in :mod:`.training` and
:mod:`.evaluate`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from services.analyzer.labelled import HELD_OUT_SEED0
from services.common.errors import InvalidParameterError
from services.common.progress import songs_bar

#: Production-style songs no design choice looked at (5 500 000-5 500 999 informed the features).
PRODUCTION_HELD_OUT_SEED0 = 5_501_000


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/mixpilot/analyzer`` (``~/.cache`` by default)."""
    import os

    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mixpilot" / "analyzer"


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--songs", type=int, default=500, help="generated training songs")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per song")
    parser.add_argument("--workers", type=int, default=2, help="processes generating songs")
    parser.add_argument(
        "-o", "--outdir", type=Path, default=None, help="default: the shipped weights folder"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--songs", type=int, default=120, help="labelled songs (120: all keys)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per song")
    parser.add_argument("--seed0", type=int, default=HELD_OUT_SEED0, help="first song's seed")
    parser.add_argument(
        "--production-songs",
        type=int,
        default=100,
        help="songs rendered with known processing for the production-style score (0: skip)",
    )
    parser.add_argument("--workers", type=int, default=2, help="processes")
    parser.add_argument("--json", type=Path, default=None, help="also write all figures here")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _check_counts(*counts: int) -> None:
    if any(c < 1 for c in counts):
        raise InvalidParameterError("song counts and workers must be at least 1")


def run_train(args: argparse.Namespace) -> int:
    from services.analyzer import linear
    from services.analyzer.training import train_all

    _check_counts(args.songs, args.workers)
    started = time.perf_counter()
    figures = train_all(
        args.songs,
        duration_s=args.duration,
        workers=args.workers,
        cache_dir=default_cache_dir(),
        out_dir=args.outdir or linear.WEIGHTS_DIR,
        progress=songs_bar("training songs", args.quiet),
    )
    for name, value in figures.items():
        print(f"{name:<28} {value:.3f}")
    print(f"weights in {args.outdir or linear.WEIGHTS_DIR} ({time.perf_counter() - started:.0f} s)")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from services.analyzer.evaluate import evaluate_analysis, table_markdown

    _check_counts(args.songs, args.workers)
    started = time.perf_counter()
    result = evaluate_analysis(
        args.songs,
        seed0=args.seed0,
        duration_s=args.duration,
        workers=args.workers,
        progress=songs_bar("labelled songs", args.quiet),
    )
    print(f"{args.songs} held-out songs of {args.duration:g} s, seeds from {args.seed0}")
    print("ours (plain librosa baseline in brackets)\n")
    print(table_markdown(result))
    labels = result["genre_labels"]
    print("genre confusion (rows: truth, columns: predicted, " + " ".join(labels) + ")")
    for label, row in zip(labels, result["confusion"]["ours"], strict=True):
        print(f"  {label:<11} " + " ".join(f"{v:4d}" for v in row))
    if args.production_songs > 0:
        from services.analyzer.production_labels import evaluate_production, summary_markdown

        bar = songs_bar("production-style songs", args.quiet)
        n = args.production_songs
        production = evaluate_production(
            n,
            seed0=PRODUCTION_HELD_OUT_SEED0,
            workers=args.workers,
            progress=lambda _, fraction: bar(round(fraction * n), n),
        )
        result["production"] = production
        print(f"\nproduction style on {production['n']} songs rendered with known processing\n")
        print(summary_markdown(production))
    print(f"\n({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0

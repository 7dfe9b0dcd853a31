"""Time the AI versions' inference on one song: clip features and each model's song prediction.

Usage: ``.venv/bin/python -m scripts.bench_inference [--duration 180]`` (best of 3, 2 threads).
"""

from __future__ import annotations

import argparse
import time

import torch

from scripts.make_example_song import generate_song
from services.analyzer.analysis import analyze
from services.predictor.inference import clip_features, raw_predictions
from services.predictor.training.config import MODEL_NAMES
from services.predictor.weights import load_model


def best_of(fn, runs: int = 3) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=180.0)
    args = parser.parse_args()
    torch.set_num_threads(2)
    audio, sr = generate_song(seed=7, duration_s=args.duration, bpm=120.0, key="A minor")
    analysis = analyze(audio, sr)
    for name in MODEL_NAMES:
        load_model(name)
    raw_predictions(audio, sr, analysis)  # warm
    features_ms = best_of(lambda: clip_features(audio, sr)) * 1000
    print(f"song {args.duration:.0f} s; clip features: {features_ms:.0f} ms")
    for name in MODEL_NAMES:
        t = best_of(lambda n=name: raw_predictions(audio, sr, analysis, [n]))
        print(f"{name}: {t * 1000:.0f} ms per song (features included)")
    every = best_of(lambda: raw_predictions(audio, sr, analysis))
    print(f"all three: {every * 1000:.0f} ms per song")


if __name__ == "__main__":
    main()

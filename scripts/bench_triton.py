"""Benchmark the predictor's Triton path: songs per second and per-song latency (p50, p99) for
1, 8 and 32 songs in flight, with Triton's dynamic batching on and off, against the same
models run locally in this process.

One "song" is what the predictor sends for a 3-minute song: its 6 clips to each of the three
models at once (``TritonModels.predict``), features computed beforehand (they run in the
predictor either way; ``scripts/bench_inference.py`` times them). Each configuration starts
its own ``tritonserver`` (nvidia-pytriton wheel, Python backend, KIND_CPU) on loopback.

Usage: ``.venv/bin/python -m scripts.bench_triton [--songs 64] [--concurrency 1 8 32]
[--queue-delay-us 2000] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from scripts.make_example_song import generate_song
from services.analyzer.analysis import analyze
from services.predictor.inference import LocalModels, model_inputs
from services.predictor.training.config import MODEL_NAMES
from services.predictor.triton_client import TritonModels
from services.predictor.triton_repository import RepositoryOptions, write_repository
from tests.infra import start_triton

Predict = Callable[[], object]


def run_load(predict: Predict, concurrency: int, songs: int) -> dict[str, float]:
    """``songs`` calls of ``predict`` from ``concurrency`` threads; throughput and latency."""
    latencies: list[float] = []
    lock = threading.Lock()
    remaining = [songs]

    def worker() -> None:
        while True:
            with lock:
                if remaining[0] == 0:
                    return
                remaining[0] -= 1
            start = time.perf_counter()
            predict()
            elapsed = time.perf_counter() - start
            with lock:
                latencies.append(elapsed)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    return {
        "songs_per_s": songs / wall,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "songs": songs,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--songs", type=int, default=64, help="songs per measurement (min 4 x N)")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--queue-delay-us", type=int, default=RepositoryOptions().queue_delay_us)
    ap.add_argument("--json", type=Path, help="write the results here too")
    args = ap.parse_args()

    audio, sr = generate_song(seed=7, duration_s=180.0, bpm=120.0, key="A minor")
    mel, context = model_inputs(audio, sr, analyze(audio, sr))
    print(
        f"one song = {mel.shape[0]} clips x {len(MODEL_NAMES)} models; "
        f"{mel.nbytes / 1e6:.2f} MB of spectrogram per model call",
        flush=True,
    )
    rows: list[dict[str, object]] = []

    local = LocalModels()
    local.predict(MODEL_NAMES, mel, context)  # load and warm
    for n in args.concurrency:
        result = run_load(
            lambda: local.predict(MODEL_NAMES, mel, context), n, max(args.songs, 4 * n)
        )
        rows.append(
            {"path": "local torch, in process", "batching": "-", "concurrency": n, **result}
        )
        print(rows[-1], flush=True)

    for batching in (True, False):
        with tempfile.TemporaryDirectory(prefix="bench-triton-") as tmp:
            options = RepositoryOptions(batching=batching, queue_delay_us=args.queue_delay_us)
            repo = write_repository(Path(tmp) / "repository", options)
            server = start_triton(Path(tmp), repo)
            try:
                runner = TritonModels(server.url, retry_s=5.0)
                runner.check()
                for _ in range(3):
                    runner.predict(MODEL_NAMES, mel, context)  # warm
                for n in args.concurrency:
                    songs = max(args.songs, 4 * n)
                    result = run_load(
                        lambda r=runner: r.predict(MODEL_NAMES, mel, context), n, songs
                    )
                    rows.append(
                        {
                            "path": "Triton gRPC, KIND_CPU",
                            "batching": f"on ({args.queue_delay_us} us)" if batching else "off",
                            "concurrency": n,
                            **result,
                        }
                    )
                    print(rows[-1], flush=True)
                runner.close()
            finally:
                server.stop()

    print("\n| path | dynamic batching | songs in flight | songs/s | p50 ms | p99 ms |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['path']} | {r['batching']} | {r['concurrency']} | {r['songs_per_s']:.1f} "
            f"| {r['p50_ms']:.0f} | {r['p99_ms']:.0f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

"""Benchmarks reported in the README and closing notes (not timed assertions in the tests).

python scripts/bench.py mix [--duration 180] [--runs 3]
    wall time and peak memory of `mixpilot mix` on a generated song (fresh process each run,
    so imports and the first numba compile count, as a user would see them), and the quality
    floor of every version it wrote.
python scripts/bench.py distributed [--duration 180] [--runs 3]
    round trip submit -> done through the four services as separate processes, on a real
    Kafka-protocol broker (Tansu) and PostgreSQL, started here on loopback.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import soundfile as sf

from services.common.loudness import integrated_loudness, true_peak_dbtp

ROOT = Path(__file__).resolve().parents[1]


def make_song(path: Path, duration_s: float) -> None:
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "make_example_song.py"),
            "-o",
            str(path),
            "--duration",
            str(duration_s),
            "--seed",
            "7",
            "--bpm",
            "124",
            "--key",
            "E minor",
        ],
        check=True,
        capture_output=True,
    )


def quality(path: Path, target: float = -14.0) -> tuple[float, float]:
    audio, sr = sf.read(path, dtype="float32", always_2d=True)
    lufs, tp = integrated_loudness(audio.T, sr), true_peak_dbtp(audio.T)
    assert abs(lufs - target) <= 0.5 and tp <= -1.0, (path, lufs, tp)
    return lufs, tp


def bench_mix(duration_s: float, runs: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        song = Path(tmp) / "song.wav"
        make_song(song, duration_s)
        walls = []
        for i in range(runs):
            out = Path(tmp) / f"out{i}"
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "gateway.cli", "mix", str(song), "-o", str(out), "--quiet"],
                check=True,
                capture_output=True,
            )
            walls.append(time.perf_counter() - start)
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        report = json.loads((out / "report.json").read_text())
        versions = {name: quality(out / v["file"]) for name, v in report["versions"].items()}
    return {
        "song_s": duration_s,
        "runs": runs,
        "wall_s": walls,
        "wall_median_s": statistics.median(walls),
        "peak_rss_mb": round(peak_mb, 1),
        "stage_s": report["timings"],
        "versions": versions,
    }


def bench_distributed(duration_s: float, runs: int) -> dict:
    from tests.cluster import running_cluster
    from tests.infra import start_postgres, start_tansu

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        song = work / "song.wav"
        make_song(song, duration_s)
        data = song.read_bytes()
        broker = start_tansu(work)
        pg = start_postgres()
        try:
            with running_cluster(broker.bootstrap, pg.url, work / "cluster") as c:
                trips, stages = [], {}
                for _ in range(runs):
                    start = time.perf_counter()
                    r = httpx.post(
                        f"{c.gateway_url}/v1/jobs",
                        timeout=120,
                        files={"file": ("song.wav", data, "audio/wav")},
                    )
                    r.raise_for_status()
                    job_id = r.json()["job_id"]
                    while True:
                        job = httpx.get(f"{c.gateway_url}/v1/jobs/{job_id}", timeout=10).json()
                        if job["state"] in ("done", "failed"):
                            break
                        time.sleep(0.05)
                    trips.append(time.perf_counter() - start)
                    assert job["state"] == "done", job
                    stages = job["timings"]
        finally:
            pg.stop()
            broker.stop()
    return {
        "song_s": duration_s,
        "runs": runs,
        "round_trip_s": trips,
        "round_trip_median_s": statistics.median(trips),
        "stage_s": stages,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("what", choices=["mix", "distributed"])
    ap.add_argument("--duration", type=float, default=180.0, help="song length in seconds")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    fn = bench_mix if args.what == "mix" else bench_distributed
    result = fn(args.duration, args.runs)
    result["machine"] = f"{platform.machine()}, {__import__('os').cpu_count()} cores"
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Renderer benchmark: per-processor and total speed as a multiple of real time, and memory.

    python scripts/bench_render.py [--song PATH | --duration 180] [--repeats 3]

Runs three measurements, each in a fresh process so the thread settings take effect before numba
and numpy load (numba kernels are warmed up on a short buffer first, so compilation or cache
loading is not timed):

* **1 core** (``OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1``): every processor of
  :func:`services.renderer.chain.build_chain` timed on its own, then :func:`master`, for the
  neutral (``original``) set and for active sets; best of ``--repeats``.
* **2 cores** (``NUMBA_NUM_THREADS=2``): :func:`render_version` per version, four versions
  (``original`` plus three active sets) through :func:`render_versions` as a job renders them
  (one after another), and the same four rendered two at a time in threads.
* **memory**: the peak of numpy allocations (tracemalloc; the kernels allocate their big outputs
  in numpy so it sees them), split into the mix chain and :func:`master`, and the growth of the
  process's peak RSS during one active render, as multiples of the decoded float32 audio.

Prints a markdown table (pass ``--json`` for the raw figures). Generates the song with
``scripts/make_example_song.py`` (3 minutes, 44.1 kHz stereo, seed 7) unless ``--song`` is given.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

#: Active parameter sets: moves a mix prediction typically makes (EQ and compressor engaged).
ACTIVE_SETS: dict[str, dict[str, float]] = {
    "warm": {
        "eq_hpf_freq_hz": 30.0,
        "eq_low_shelf_gain_db": 2.0,
        "eq_low_mid_gain_db": -3.0,
        "eq_high_shelf_gain_db": -1.5,
        "comp_threshold_db": -18.0,
        "comp_ratio": 2.5,
        "comp_attack_ms": 20.0,
        "comp_release_ms": 150.0,
        "comp_makeup_db": 2.0,
    },
    "bright": {
        "eq_hpf_freq_hz": 40.0,
        "eq_low_mid_gain_db": -4.0,
        "eq_mid_gain_db": 1.5,
        "eq_high_mid_gain_db": 2.0,
        "eq_high_shelf_gain_db": 4.0,
        "comp_threshold_db": -20.0,
        "comp_ratio": 3.0,
    },
    "punchy": {
        "eq_low_shelf_gain_db": 3.0,
        "eq_mid_gain_db": -2.0,
        "eq_high_shelf_gain_db": 2.0,
        "comp_threshold_db": -24.0,
        "comp_ratio": 4.0,
        "comp_attack_ms": 30.0,
        "comp_release_ms": 80.0,
        "comp_makeup_db": 4.0,
    },
}
TARGET_LUFS = -14.0
CEILING_DBTP = -1.0
#: The generated song's tempo (tempo-synced effects use it).
TEMPO_BPM = 124.0


def _accepted(fn: Any, **options: Any) -> dict[str, Any]:
    """The ``options`` that ``fn`` takes (the renderer's signatures grow as effects are added)."""
    params = inspect.signature(fn).parameters
    return {k: v for k, v in options.items() if k in params}


def _load(song: str) -> tuple[Any, int]:
    import numpy as np
    import soundfile as sf

    data, sr = sf.read(song, dtype="float32", always_2d=True)
    return np.ascontiguousarray(data.T), int(sr)


def _warm_up() -> None:
    from services.renderer.chain import warm_up

    warm_up()


def _best(fn: Any, repeats: int) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def worker_single(song: str, repeats: int) -> dict[str, Any]:
    """Per-processor seconds on one core, for the neutral set and each active set."""
    from services.common.params import defaults
    from services.renderer.chain import build_chain
    from services.renderer.mastering import master

    audio, sr = _load(song)
    _warm_up()
    sets = {"original": defaults(), **ACTIVE_SETS}
    out: dict[str, Any] = {}
    for name, params in sets.items():
        stages: dict[str, float] = {}
        y = audio
        for processor in build_chain(params, **_accepted(build_chain, tempo_bpm=TEMPO_BPM)):
            seconds, y = _best(lambda p=processor, x=y: p(x, sr), repeats)
            stages[type(processor).__name__] = seconds
        seconds, result = _best(
            lambda x=y: master(x, sr, target_lufs=TARGET_LUFS, ceiling_dbtp=CEILING_DBTP), repeats
        )
        stages["master"] = seconds
        out[name] = {
            "stages_s": stages,
            "total_s": sum(stages.values()),
            "rounds": result.rounds,
            "loudness_lufs": result.loudness_lufs,
            "true_peak_dbtp": result.true_peak_dbtp,
        }
    return out


def worker_multi(song: str, repeats: int) -> dict[str, Any]:
    """render_version per version, and four versions through render_versions."""
    from services.common.params import defaults
    from services.renderer.chain import render_version
    from services.renderer.versions import render_versions

    audio, sr = _load(song)
    _warm_up()
    sets = [("original", defaults()), *ACTIVE_SETS.items()]
    options = {"target_lufs": TARGET_LUFS, "ceiling_dbtp": CEILING_DBTP, "tempo_bpm": TEMPO_BPM}
    per_version = {}
    for name, params in sets:
        per_version[name], _ = _best(
            lambda p=params: render_version(audio, sr, p, **_accepted(render_version, **options)),
            repeats,
        )
    four, rendered = _best(
        lambda: render_versions(audio, sr, sets, **_accepted(render_versions, **options)),
        repeats,
    )

    def two_at_a_time() -> list[Any]:
        # The kernels release the GIL, so two versions can render side by side.
        with ThreadPoolExecutor(2) as pool:
            return list(
                pool.map(
                    lambda p: render_version(audio, sr, p, **_accepted(render_version, **options)),
                    [p for _, p in sets],
                )
            )

    four_threads, _ = _best(two_at_a_time, repeats)
    return {
        "per_version_s": per_version,
        "four_versions_s": four,
        "four_versions_2_threads_s": four_threads,
        "versions": {r.name: [r.result.loudness_lufs, r.result.true_peak_dbtp] for r in rendered},
    }


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def worker_memory(song: str) -> dict[str, Any]:
    """Peak memory of one active render, relative to the decoded float32 audio."""
    import resource
    import tracemalloc

    from services.renderer.chain import build_chain, render_version
    from services.renderer.mastering import master

    audio, sr = _load(song)
    _warm_up()
    params = ACTIVE_SETS["punchy"]
    options = _accepted(
        render_version, target_lufs=TARGET_LUFS, ceiling_dbtp=CEILING_DBTP, tempo_bpm=TEMPO_BPM
    )
    rss_before = _rss_bytes()
    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    render_version(audio, sr, params, **options)
    maxrss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tracemalloc.start()
    render_version(audio, sr, params, **options)
    _, traced_peak = tracemalloc.get_traced_memory()
    # The same render in two parts: the mix chain, then master() on the chain's output.
    tracemalloc.reset_peak()
    start, _ = tracemalloc.get_traced_memory()
    mixed = build_chain(params, **_accepted(build_chain, tempo_bpm=TEMPO_BPM))(audio, sr)
    held, chain_peak = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    master(mixed, sr, target_lufs=TARGET_LUFS, ceiling_dbtp=CEILING_DBTP)
    _, master_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "audio_bytes": int(audio.nbytes),
        "traced_peak_bytes": traced_peak,
        "chain_peak_bytes": chain_peak - start,
        "master_peak_bytes": master_peak - held,
        "rss_growth_bytes": max(0, maxrss_after - max(rss_before, maxrss_before)),
        "rss_peak_over_start_bytes": max(0, maxrss_after - rss_before),
    }


def _run_worker(kind: str, song: str, repeats: int, threads: int) -> dict[str, Any]:
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS=str(threads),
        OPENBLAS_NUM_THREADS=str(threads),
        MKL_NUM_THREADS=str(threads),
        NUMBA_NUM_THREADS=str(threads),
        PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
    )
    cmd = [sys.executable, __file__, "--worker", kind, "--song", song, "--repeats", str(repeats)]
    done = subprocess.run(cmd, env=env, cwd=ROOT, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _xrt(duration_s: float, seconds: float) -> str:
    return f"{duration_s / seconds:.0f}x" if seconds > 0 else "-"


def report(song: str, duration_s: float, sr: int, results: dict[str, Any]) -> str:
    single, multi, memory = results["single"], results["multi"], results["memory"]
    lines = [
        f"Song: {duration_s:.0f} s, {sr} Hz, {memory['audio_bytes'] / 2**20:.1f} MiB decoded "
        f"(float32); {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs.",
        "",
        "**1 core** (OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1), seconds (x real time):",
        "",
    ]
    stage_names: list[str] = []
    for v in single.values():
        stage_names += [s for s in v["stages_s"] if s not in stage_names]
    lines.append("| version | " + " | ".join(stage_names) + " | total | rounds | LUFS | dBTP |")
    lines.append("|---" * (len(stage_names) + 5) + "|")
    for name, v in single.items():
        cells = [
            f"{v['stages_s'][s]:.3f} ({_xrt(duration_s, v['stages_s'][s])})"
            if s in v["stages_s"]
            else "-"
            for s in stage_names
        ]
        lines.append(
            f"| {name} | "
            + " | ".join(cells)
            + f" | **{v['total_s']:.3f} ({_xrt(duration_s, v['total_s'])})** | {v['rounds']} | "
            f"{v['loudness_lufs']:.2f} | {v['true_peak_dbtp']:.3f} |"
        )
    lines += [
        "",
        "**2 cores** (NUMBA_NUM_THREADS=2), render_version wall seconds (x real time):",
        "",
        "| version | seconds | x real time |",
        "|---|---|---|",
    ]
    for name, seconds in multi["per_version_s"].items():
        lines.append(f"| {name} | {seconds:.3f} | {_xrt(duration_s, seconds)} |")
    lines.append(
        f"| **4 versions (render_versions, one after another)** | "
        f"**{multi['four_versions_s']:.3f}** | {_xrt(4 * duration_s, multi['four_versions_s'])} |"
    )
    lines.append(
        f"| **4 versions, two render threads** | **{multi['four_versions_2_threads_s']:.3f}** | "
        f"{_xrt(4 * duration_s, multi['four_versions_2_threads_s'])} |"
    )
    audio_mb = memory["audio_bytes"]
    lines += [
        "",
        "**Memory**, one active render (multiple of the decoded audio):",
        "",
        "| measure | MiB | x audio |",
        "|---|---|---|",
        f"| numpy allocations peak (tracemalloc) | {memory['traced_peak_bytes'] / 2**20:.0f} | "
        f"{memory['traced_peak_bytes'] / audio_mb:.1f} |",
        f"| of which the mix chain, above its input | {memory['chain_peak_bytes'] / 2**20:.0f} | "
        f"{memory['chain_peak_bytes'] / audio_mb:.1f} |",
        f"| of which master(), above the chain's output | "
        f"{memory['master_peak_bytes'] / 2**20:.0f} | "
        f"{memory['master_peak_bytes'] / audio_mb:.1f} |",
        f"| peak RSS above the RSS before rendering | "
        f"{memory['rss_peak_over_start_bytes'] / 2**20:.0f} | "
        f"{memory['rss_peak_over_start_bytes'] / audio_mb:.1f} |",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--song", help="audio file to render (default: a generated song)")
    parser.add_argument("--duration", type=float, default=180.0, help="generated song length, s")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    parser.add_argument("--json", action="store_true", help="print the raw figures as JSON")
    parser.add_argument("--worker", choices=["single", "multi", "memory"], help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        if args.worker == "single":
            result = worker_single(args.song, args.repeats)
        elif args.worker == "multi":
            result = worker_multi(args.song, args.repeats)
        else:
            result = worker_memory(args.song)
        print(json.dumps(result))
        return

    with tempfile.TemporaryDirectory() as tmp:
        song = args.song
        if song is None:
            song = str(Path(tmp) / "song.wav")
            subprocess.run(
                [sys.executable, str(ROOT / "scripts" / "make_example_song.py"), "-o", song,
                 "--duration", str(args.duration), "--seed", "7", "--bpm", "124",
                 "--key", "E minor"],
                check=True, capture_output=True,
            )  # fmt: skip
        import soundfile as sf

        info = sf.info(song)
        results = {
            "single": _run_worker("single", song, args.repeats, threads=1),
            "multi": _run_worker("multi", song, args.repeats, threads=2),
            "memory": _run_worker("memory", song, 1, threads=2),
        }
    if args.json:
        print(json.dumps(results, indent=2))
    print(report(song, info.frames / info.samplerate, info.samplerate, results))


if __name__ == "__main__":
    main()

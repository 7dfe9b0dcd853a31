"""Renderer benchmark: per-processor and total speed as a multiple of real time, and memory.

    python scripts/bench_render.py [--song PATH | --duration 180] [--repeats 3] [--long] [--json]

Runs its measurements each in a fresh process so the thread settings take effect before numba
and numpy load (numba kernels are warmed up on a short buffer first, so compilation or cache
loading is not timed):

* **1 core** (``OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1``): every processor of
  :func:`services.renderer.chain.build_chain`, block-processed on its own as the chain runs it,
  then :func:`master`, for the neutral (``original``) set and for active sets (``everything``
  engages all seven processors); and :func:`render_version` end to end; best of ``--repeats``.
* **2 cores**: four versions of the song through :func:`render_versions`, one at a time and two
  at a time (a job's default on a 2-CPU machine).
* **memory**: growth of the process's peak RSS during one render with every processor active,
  during a job's four versions rendered two at a time, and (``--long``) during one render of a
  60-minute file, as multiples of the decoded float32 audio.

Prints a markdown table (pass ``--json`` for the raw figures). Generates the song with
``scripts/make_example_song.py`` (3 minutes, 44.1 kHz stereo, seed 7) unless ``--song`` is given.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
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
    # Every processor engaged: the chain's worst realistic case.
    "everything": {
        "eq_hpf_freq_hz": 35.0,
        "eq_low_shelf_gain_db": 2.0,
        "eq_low_mid_gain_db": -3.0,
        "eq_high_shelf_gain_db": 2.5,
        "comp_threshold_db": -22.0,
        "comp_ratio": 3.0,
        "comp_lookahead_ms": 3.0,
        "comp_sidechain_hpf_hz": 90.0,
        "vcomp_threshold_db": -18.0,
        "vcomp_ratio": 2.0,
        "vcomp_drive_db": 6.0,
        "exciter_mix_pct": 15.0,
        "stereo_width": 1.3,
        "stereo_bass_mono_hz": 120.0,
        "delay_mix_pct": 12.0,
        "delay_feedback_pct": 35.0,
        "reverb_mix_pct": 15.0,
        "reverb_decay_s": 1.8,
    },
}
#: The four versions of the job benchmark: the reference and three predictions.
FOUR = ("original", "warm", "bright", "punchy")
TARGET_LUFS = -14.0
CEILING_DBTP = -1.0
#: The generated song's tempo (tempo-synced effects use it).
TEMPO_BPM = 124.0


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
    """Per-processor seconds on one core (block-processed, as the chain runs them), then
    master(), for the neutral set and each active set; and render_version end to end."""
    from services.common.params import defaults, validate_params
    from services.renderer.blocks import render_blocks
    from services.renderer.chain import build_chain, render_version
    from services.renderer.mastering import master

    audio, sr = _load(song)
    _warm_up()
    sets = {"original": defaults(), **ACTIVE_SETS}
    out: dict[str, Any] = {}
    for name, params in sets.items():
        stages: dict[str, float] = {}
        y = audio
        for processor in build_chain(validate_params(params), tempo_bpm=TEMPO_BPM):
            seconds, y = _best(lambda p=processor, x=y: render_blocks([p], x, sr), repeats)
            stages[type(processor).__name__] = seconds
        seconds, result = _best(
            lambda x=y: master(x, sr, target_lufs=TARGET_LUFS, ceiling_dbtp=CEILING_DBTP), repeats
        )
        stages["master"] = seconds
        total, _ = _best(
            lambda p=params: render_version(
                audio,
                sr,
                p,
                target_lufs=TARGET_LUFS,
                ceiling_dbtp=CEILING_DBTP,
                tempo_bpm=TEMPO_BPM,
            ),
            repeats,
        )
        out[name] = {
            "stages_s": stages,
            "total_s": total,
            "rounds": result.rounds,
            "loudness_lufs": result.loudness_lufs,
            "true_peak_dbtp": result.true_peak_dbtp,
        }
    return out


def _four(audio: Any, sr: int, workers: int, names: tuple[str, ...] = FOUR) -> list[Any]:
    from services.common.params import defaults
    from services.renderer.versions import render_versions

    sets = [(n, defaults() if n == "original" else ACTIVE_SETS[n]) for n in names]
    return list(
        render_versions(
            audio,
            sr,
            sets,
            target_lufs=TARGET_LUFS,
            ceiling_dbtp=CEILING_DBTP,
            tempo_bpm=TEMPO_BPM,
            workers=workers,
        )
    )


def worker_multi(song: str, repeats: int) -> dict[str, Any]:
    """Four versions of one song through render_versions: one at a time, and two at a time
    (one per core, as a job renders them by default on this machine)."""
    audio, sr = _load(song)
    _warm_up()
    sequential, _ = _best(lambda: _four(audio, sr, 1), repeats)
    parallel, rendered = _best(lambda: _four(audio, sr, 2), repeats)
    heavy = ("original", "everything", "warm", "punchy")
    heavy_parallel, _ = _best(lambda: _four(audio, sr, 2, heavy), repeats)
    return {
        "four_versions_s": sequential,
        "four_versions_2_threads_s": parallel,
        "four_heavy_2_threads_s": heavy_parallel,
        "versions": {r.name: [r.result.loudness_lufs, r.result.true_peak_dbtp] for r in rendered},
    }


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_growth(fn: Any) -> int:
    """Growth of the process's peak RSS over its current RSS while ``fn`` runs."""
    import resource

    gc_before = _rss_bytes()
    fn()
    return max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - gc_before)


def worker_memory(song: str, what: str) -> dict[str, Any]:
    """Peak memory, relative to the decoded float32 audio: one render of the ``everything`` set
    (``render``), a job's four versions two at a time, each dropped once delivered (``job``), or
    one render of a 60-minute file made by repeating the song (``long``). One measurement per
    process: the peak RSS only grows."""
    import numpy as np

    from services.renderer.chain import render_version

    audio, sr = _load(song)
    if what == "long":
        audio = np.ascontiguousarray(np.tile(audio, (1, -(-3600 * sr // audio.shape[1]))))
        audio = np.ascontiguousarray(audio[:, : 3600 * sr])
    _warm_up()

    def one() -> None:
        render_version(
            audio,
            sr,
            ACTIVE_SETS["everything"],
            target_lufs=TARGET_LUFS,
            ceiling_dbtp=CEILING_DBTP,
            tempo_bpm=TEMPO_BPM,
        )

    def job() -> None:
        for _ in _four(audio, sr, 2, ("original", "everything", "warm", "punchy")):
            pass  # a job encodes and stores each version here, then lets it go

    start = time.perf_counter()
    growth = _peak_growth(job if what == "job" else one)
    return {
        "audio_bytes": int(audio.nbytes),
        "seconds": time.perf_counter() - start,
        "duration_s": audio.shape[1] / sr,
        "rss_peak_growth_bytes": growth,
    }


def _run_worker(
    kind: str, song: str, repeats: int, threads: int, what: str = "render"
) -> dict[str, Any]:
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS=str(threads),
        OPENBLAS_NUM_THREADS=str(threads),
        MKL_NUM_THREADS=str(threads),
        NUMBA_NUM_THREADS=str(threads),
        PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
    )
    cmd = [sys.executable, __file__, "--worker", kind, "--song", song, "--repeats", str(repeats)]
    cmd += ["--what", what]
    done = subprocess.run(cmd, env=env, cwd=ROOT, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _xrt(duration_s: float, seconds: float) -> str:
    return f"{duration_s / seconds:.0f}x" if seconds > 0 else "-"


def report(song: str, duration_s: float, sr: int, results: dict[str, Any]) -> str:
    single, multi, memory = results["single"], results["multi"], results["memory"]
    audio_bytes = memory["render"]["audio_bytes"]
    lines = [
        f"Song: {duration_s:.0f} s, {sr} Hz, {audio_bytes / 2**20:.1f} MiB decoded "
        f"(float32); {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs.",
        "",
        "**1 core** (OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1), seconds (x real time); each "
        "processor block-processed on its own, then master(); *render* is render_version end to "
        "end:",
        "",
    ]
    stage_names: list[str] = []
    for v in single.values():
        stage_names += [s for s in v["stages_s"] if s not in stage_names]
    lines.append("| version | " + " | ".join(stage_names) + " | render | rounds | LUFS | dBTP |")
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
        "**2 cores**, four versions of the song through render_versions, wall seconds:",
        "",
        "| versions | workers | seconds | x real time |",
        "|---|---|---|---|",
        f"| {', '.join(FOUR)} | 1 | {multi['four_versions_s']:.2f} | "
        f"{_xrt(4 * duration_s, multi['four_versions_s'])} |",
        f"| {', '.join(FOUR)} | 2 | **{multi['four_versions_2_threads_s']:.2f}** | "
        f"{_xrt(4 * duration_s, multi['four_versions_2_threads_s'])} |",
        f"| original, everything, warm, punchy | 2 | {multi['four_heavy_2_threads_s']:.2f} | "
        f"{_xrt(4 * duration_s, multi['four_heavy_2_threads_s'])} |",
        "",
        "**Memory**: growth of the peak RSS while rendering (multiple of the decoded audio):",
        "",
        "| what | audio | seconds | peak growth MiB | x audio |",
        "|---|---|---|---|---|",
    ]
    labels = {
        "render": "one render, every processor active",
        "job": "a job: four versions, two at a time",
        "long": "one render, every processor active, 60-minute file",
    }
    for what, m in memory.items():
        lines.append(
            f"| {labels[what]} | {m['duration_s'] / 60:.0f} min, {m['audio_bytes'] / 2**20:.0f} "
            f"MiB | {m['seconds']:.1f} | {m['rss_peak_growth_bytes'] / 2**20:.0f} | "
            f"{m['rss_peak_growth_bytes'] / m['audio_bytes']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--song", help="audio file to render (default: a generated song)")
    parser.add_argument("--duration", type=float, default=180.0, help="generated song length, s")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    parser.add_argument("--json", action="store_true", help="print the raw figures as JSON")
    parser.add_argument(
        "--long", action="store_true", help="also measure memory on a 60-minute file (slow)"
    )
    parser.add_argument("--worker", choices=["single", "multi", "memory"], help=argparse.SUPPRESS)
    parser.add_argument("--what", default="render", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        if args.worker == "single":
            result = worker_single(args.song, args.repeats)
        elif args.worker == "multi":
            result = worker_multi(args.song, args.repeats)
        else:
            result = worker_memory(args.song, args.what)
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
            "memory": {
                what: _run_worker("memory", song, 1, threads=2, what=what)
                for what in ("render", "job", *(("long",) if args.long else ()))
            },
        }
    if args.json:
        print(json.dumps(results, indent=2))
    print(report(song, info.frames / info.samplerate, info.samplerate, results))


if __name__ == "__main__":
    main()

"""A stage's warm-up leaves nothing for its first job to compile. Numba compiles a kernel on
its first call with new argument types (seconds each on a fresh pod's empty cache); a stage
reports SERVING after its warm-up, so a first job that compiled would be slow on every new pod.

Measured without timing: in a fresh process with an empty numba cache, the warm-up runs, then
a job's work on a real song; numba's compiler (every jit function, ufunc and gufunc goes
through it) must not be called during the job."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

COUNTER = """
import collections, json
from numba.core import compiler

compiled = collections.Counter()
_compile_extra = compiler.compile_extra

def _counting(typingctx, targetctx, func, *args, **kwargs):
    compiled[f"{func.__module__}.{func.__qualname__}"] += 1
    return _compile_extra(typingctx, targetctx, func, *args, **kwargs)

compiler.compile_extra = _counting
"""


def _new_compilations(warm_up: str, job: str, tmp_path: Path) -> dict[str, int]:
    script = COUNTER + textwrap.dedent(
        f"""
        from tests.signals import little_song
        song = little_song(sr=44100, duration_s=12.0)
        {warm_up}
        compiled.clear()
        {job}
        print(json.dumps(compiled))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "NUMBA_CACHE_DIR": str(tmp_path / "numba")},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_predictors_warm_up_compiles_what_its_first_job_needs(tmp_path: Path) -> None:
    warm_up = "from services.predictor.service import warm_up_features; warm_up_features()"
    # A job's features: the song's clips at its own rate, stereo and mono, and at 48 kHz.
    job = textwrap.dedent(
        """
        from services.predictor.inference import clip_features
        import librosa
        clip_features(song, 44100)
        clip_features(song[:1], 44100)
        clip_features(librosa.resample(song, orig_sr=44100, target_sr=48000), 48000)
        """
    ).replace("\n", "\n        ")
    assert _new_compilations(warm_up, job, tmp_path) == {}


def test_the_check_can_see_a_compilation(tmp_path: Path) -> None:
    """Without the warm-up, the same job compiles (so the check above can fail)."""
    job = "from services.predictor.inference import clip_features; clip_features(song, 44100)"
    assert _new_compilations("pass", job, tmp_path)


def test_the_analyzers_warm_up_compiles_what_its_first_job_needs(tmp_path: Path) -> None:
    warm_up = "from services.analyzer.analysis import warm_up; warm_up()"
    job = (
        "from services.analyzer.analysis import analyze\n        "
        "analyze(song, 44100)\n        analyze(song[:1], 44100)"
    )
    assert _new_compilations(warm_up, job, tmp_path) == {}


def test_the_renderers_warm_up_compiles_what_its_first_job_needs(tmp_path: Path) -> None:
    warm_up = "from services.renderer.chain import warm_up; warm_up()"
    job = textwrap.dedent(
        """
        from services.renderer.chain import render_version
        active = {"comp_ratio": 3.0, "reverb_mix_pct": 20.0, "reverb_style": 3.0}
        for params in ({}, {**active, "delay_mix_pct": 15.0}):
            render_version(song, 44100, params, target_lufs=-14.0, ceiling_dbtp=-1.0)
            render_version(song[:1], 44100, params, target_lufs=-14.0, ceiling_dbtp=-1.0)
        """
    ).replace("\n", "\n        ")
    assert _new_compilations(warm_up, job, tmp_path) == {}

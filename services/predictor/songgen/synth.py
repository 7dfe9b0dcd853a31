"""Rendering MIDI files to audio with the ``fluidsynth`` command-line program.

FluidSynth runs as an external program (no linking), one process per stem, several at a time.
Reverb and chorus are off (dry, deterministic stems; the same file renders to the same samples
every time) and the output is raw 32-bit float, so nothing clips inside the synthesizer.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from services.common.errors import ConfigurationError, MixPilotError

#: FluidSynth's master gain (its default is 0.2); stems are loudness-normalised afterwards.
SYNTH_GAIN = 0.5
RENDER_TIMEOUT_S = 120.0


def fluidsynth_path() -> str:
    """Path of the ``fluidsynth`` program.

    Raises
    ------
    ConfigurationError
        It is not on ``PATH``.
    """
    path = shutil.which("fluidsynth")
    if path is None:
        raise ConfigurationError(
            "fluidsynth not found: install the Debian package fluidsynth (scripts/install.sh)"
        )
    return path


@functools.lru_cache(maxsize=4)
def fluidsynth_version(path: str) -> str:
    """``"2.3.1"``: the version the program reports (recorded in the ground truth)."""
    out = subprocess.run(
        [path, "--version"], capture_output=True, text=True, timeout=30, check=False
    ).stdout
    m = re.search(r"executable version (\S+)", out) or re.search(r"version (\S+)", out)
    return m.group(1) if m else "unknown"


def render_midi(
    midi: Path, out: Path, *, soundfont: Path, sample_rate: int, program: str
) -> np.ndarray:
    """Render one MIDI file; returns the stereo float32 audio ``(2, frames)``.

    Raises
    ------
    MixPilotError
        FluidSynth failed (its last message is quoted).
    """
    cmd = [
        program,
        "-n",
        "-i",
        "-q",
        "-R",
        "0",
        "-C",
        "0",
        "-g",
        str(SYNTH_GAIN),
        "-r",
        str(sample_rate),
        "-O",
        "float",
        "-T",
        "raw",
        "-E",
        "cpu",
        "-F",
        str(out),
        str(soundfont),
        str(midi),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=RENDER_TIMEOUT_S)
    if proc.returncode != 0 or not out.exists():
        lines = (proc.stderr or proc.stdout).strip().splitlines() or ["no output"]
        raise MixPilotError(f"fluidsynth failed on {midi.name}: {lines[-1]}")
    return np.fromfile(out, dtype=np.float32).reshape(-1, 2).T


def render_all(
    midis: dict[str, Path],
    *,
    soundfont: Path,
    sample_rate: int,
    workers: int,
    progress: Callable[[str], None] | None = None,
) -> dict[str, np.ndarray]:
    """Render several MIDI files, ``workers`` FluidSynth processes at a time.

    Returns the stereo audio by name, in the order of ``midis``. ``progress(name)`` is called as
    each one finishes.
    """
    program = fluidsynth_path()

    def one(name: str) -> np.ndarray:
        midi = midis[name]
        audio = render_midi(
            midi,
            midi.with_suffix(".f32"),
            soundfont=soundfont,
            sample_rate=sample_rate,
            program=program,
        )
        if progress is not None:
            progress(name)
        return audio

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = dict(zip(midis, pool.map(one, midis), strict=True))
    return results

"""The shipped example song (examples/example.flac) and scripts/make_example_song.py."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "make_example_song.py"
EXAMPLE = ROOT / "examples" / "example.flac"
SIDECAR = EXAMPLE.with_suffix(".json")


@pytest.fixture(scope="module")
def gen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_example_song", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def meta() -> dict[str, object]:
    return json.loads(SIDECAR.read_text())


@pytest.fixture(scope="module")
def shipped() -> tuple[np.ndarray, int]:
    data, sr = sf.read(str(EXAMPLE), dtype="int16", always_2d=True)
    return data.T, sr


def test_sidecar_ground_truth(meta: dict[str, object]) -> None:
    assert meta["seed"] == 1
    assert meta["duration_s"] == 24
    assert meta["tempo_bpm"] == 112
    assert meta["key"] == "A minor"
    assert meta["sample_rate"] == 44100
    assert meta["sha256"] == hashlib.sha256(EXAMPLE.read_bytes()).hexdigest()


def test_shipped_file_format(shipped: tuple[np.ndarray, int], meta: dict[str, object]) -> None:
    pcm, sr = shipped
    info = sf.info(str(EXAMPLE))
    assert info.format == "FLAC" and info.subtype == "PCM_16"
    assert sr == 44100
    assert pcm.shape == (2, round(24 * 44100)) and pcm.shape[1] == meta["frames"]
    assert EXAMPLE.stat().st_size < 3_000_000


def test_shipped_levels(shipped: tuple[np.ndarray, int]) -> None:
    pcm, _ = shipped
    peak_dbfs = 20 * np.log10(np.max(np.abs(pcm.astype(np.int32))) / 32768.0)
    assert -3.5 < peak_dbfs < 0.0
    # Stereo, but not two copies of one channel; both sides carry signal.
    left, right = pcm.astype(np.float64)
    assert np.sqrt(np.mean(left**2)) > 300 and np.sqrt(np.mean(right**2)) > 300
    assert not np.array_equal(left, right)
    # 50 ms fades: the very first and last samples are (near) silent.
    assert np.max(np.abs(pcm[:, :8])) < 50 and np.max(np.abs(pcm[:, -8:])) < 50


def test_regeneration_reproduces_shipped_samples(
    gen: ModuleType, meta: dict[str, object], shipped: tuple[np.ndarray, int]
) -> None:
    audio, sr = gen.generate_song(
        seed=meta["seed"],
        duration_s=meta["duration_s"],
        bpm=meta["tempo_bpm"],
        key=meta["key"],
        sample_rate=meta["sample_rate"],
    )
    assert audio.dtype == np.float32 and audio.shape == (2, meta["frames"])
    assert sr == meta["sample_rate"]
    assert np.all(np.isfinite(audio))
    assert float(np.max(np.abs(audio))) < 1.0
    np.testing.assert_array_equal(gen.to_pcm16(audio), shipped[0])


def test_same_seed_same_audio_different_seed_different_audio(gen: ModuleType) -> None:
    args = {"duration_s": 4.0, "bpm": 120.0, "key": "C major", "sample_rate": 22050}
    a, _ = gen.generate_song(seed=7, **args)
    b, _ = gen.generate_song(seed=7, **args)
    c, _ = gen.generate_song(seed=8, **args)
    assert a.shape == c.shape == (2, 4 * 22050)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(gen.to_pcm16(a), gen.to_pcm16(c))
    assert np.all(np.isfinite(c)) and float(np.max(np.abs(c))) < 1.0


@pytest.mark.parametrize(
    ("text", "pitch_class", "mode"),
    [
        ("A minor", 9, "minor"),
        ("Eb major", 3, "major"),
        ("f# Minor", 6, "minor"),
        ("Bb major", 10, "major"),
    ],
)
def test_parse_key(gen: ModuleType, text: str, pitch_class: int, mode: str) -> None:
    key = gen.parse_key(text)
    assert (key.pitch_class, key.mode) == (pitch_class, mode)


@pytest.mark.parametrize("text", ["H minor", "A dorian", "A", "A minor please"])
def test_parse_key_rejects(gen: ModuleType, text: str) -> None:
    with pytest.raises(ValueError):
        gen.parse_key(text)


def test_cli_writes_wav_and_sidecar(tmp_path: Path) -> None:
    out = tmp_path / "song.wav"
    cmd = [sys.executable, str(SCRIPT), "-o", str(out), "--seed", "3", "--duration", "3",
           "--bpm", "128", "--key", "Eb major", "--sample-rate", "22050"]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)
    info = sf.info(str(out))
    assert (info.format, info.subtype) == ("WAV", "PCM_16")
    assert (info.samplerate, info.channels, info.frames) == (22050, 2, 3 * 22050)
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["key"] == "Eb major" and side["tempo_bpm"] == 128 and side["seed"] == 3
    assert side["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert side["progression"][0]["chord"] == "Eb"


def test_cli_rejects_bad_key(tmp_path: Path) -> None:
    cmd = [sys.executable, str(SCRIPT), "-o", str(tmp_path / "x.flac"), "--key", "Q major"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "tonic" in result.stderr
    assert not (tmp_path / "x.flac").exists()

"""`mixpilot mix` / `mixpilot analyze` end to end in this process, on generated files in the
formats people use, and bad input: non-zero exit with one line, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from gateway.cli import main
from mixpilot.v1 import mixpilot_pb2 as pb
from services.common.loudness import integrated_loudness, true_peak_dbtp
from services.predictor.inference import AI_VERSIONS
from services.predictor.training.targets import LEARNED
from tests.signals import little_song, write_audio_file


def _check_outputs(outdir: Path, n_frames: int, sr: int, target: float) -> dict:
    report = json.loads((outdir / "report.json").read_text())
    assert report["schema"] == "mixpilot.report/1"
    assert set(report["versions"]) == {"original", "strategy", *AI_VERSIONS.values()}
    for name, v in report["versions"].items():
        audio, out_sr = sf.read(outdir / v["file"], dtype="float32", always_2d=True)
        assert out_sr == sr and audio.shape[0] == n_frames, name
        assert np.all(np.isfinite(audio))
        lufs = integrated_loudness(audio.T, sr)
        assert abs(lufs - target) <= 0.5, (name, lufs)
        assert true_peak_dbtp(audio.T) <= -1.0 + 1e-3, name
        assert abs(v["loudness_lufs"] - lufs) < 0.05
        assert v["params"] and all(isinstance(x, float) for x in v["params"].values())
        if name in AI_VERSIONS.values():
            # Per learned parameter: the model's raw value, the rendered (refined) one, the
            # strategy's; the refined one is what the version's params hold.
            assert set(v["model"]) == set(LEARNED)
            for param, row in v["model"].items():
                assert row["refined"] == v["params"][param]
                assert row["strategy"] == report["versions"]["strategy"]["params"][param]
                assert (row["refinement"] is None) == (abs(row["raw"] - row["refined"]) < 1e-3)
    for key in ("analyze_s", "predict_s", "render_s", "total_s"):
        assert report["timings"][key] >= 0
    return report


def test_mix_writes_versions_and_report(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    sr = 44100
    song = little_song(sr=sr, duration_s=8.0)
    src = tmp_path / "song.wav"
    write_audio_file(src, song, sr)
    assert main(["mix", str(src), "-o", str(tmp_path / "out"), "--quiet"]) == 0
    report = _check_outputs(tmp_path / "out", song.shape[1], sr, -14.0)
    assert report["analysis"]["sample_rate"] == sr
    assert report["input"]["filename"] == "song.wav"
    assert "strategy" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("sr", "channels", "ext", "subtype"),
    [
        (8000, 1, "wav", "PCM_16"),
        (22050, 2, "flac", "PCM_24"),
        (48000, 2, "wav", "FLOAT"),
        (96000, 1, "wav", "PCM_24"),
        (192000, 2, "wav", "PCM_16"),
        (44100, 2, "mp3", None),
    ],
)
def test_mix_formats_rates_and_layouts(
    tmp_path: Path, sr: int, channels: int, ext: str, subtype: str | None
) -> None:
    song = little_song(sr=sr, duration_s=3.0, channels=channels)
    src = tmp_path / f"in.{ext}"
    write_audio_file(src, song, sr, subtype=subtype or "MPEG_LAYER_III")
    assert (
        main(["mix", str(src), "-o", str(tmp_path / "out"), "--quiet", "--target-lufs", "ebu"]) == 0
    )
    frames = sf.info(src).frames
    _check_outputs(tmp_path / "out", frames, sr, -23.0)


def _bad_files(tmp: Path) -> dict[str, tuple[Path, str]]:
    files: dict[str, tuple[Path, str]] = {}
    (tmp / "empty.wav").write_bytes(b"")
    files["empty"] = (tmp / "empty.wav", "empty")
    (tmp / "text.wav").write_bytes(b"definitely not audio\n" * 50)
    files["not audio"] = (tmp / "text.wav", "not a readable audio file")
    write_audio_file(tmp / "silent.wav", np.zeros((2, 44100 * 2), np.float32), 44100)
    files["silence"] = (tmp / "silent.wav", "silent")
    write_audio_file(
        tmp / "nan.wav", np.full((1, 44100 * 2), np.nan, np.float32), 44100, subtype="FLOAT"
    )
    files["nan"] = (tmp / "nan.wav", "NaN")
    write_audio_file(tmp / "short.wav", little_song(sr=44100, duration_s=0.2), 44100)
    files["too short"] = (tmp / "short.wav", "at least")
    good = tmp / "good.wav"
    write_audio_file(good, little_song(sr=44100, duration_s=4.0), 44100)
    data = good.read_bytes()
    (tmp / "truncated.wav").write_bytes(data[:40])
    files["truncated header"] = (tmp / "truncated.wav", "")
    (tmp / "half.wav").write_bytes(data[: len(data) // 2])
    files["truncated data"] = (tmp / "half.wav", "truncated")
    write_audio_file(tmp / "good.flac", little_song(sr=44100, duration_s=4.0), 44100)
    flac = (tmp / "good.flac").read_bytes()
    (tmp / "half.flac").write_bytes(flac[: len(flac) // 2])
    files["truncated flac"] = (tmp / "half.flac", "corrupt or truncated")
    write_audio_file(tmp / "rate.wav", little_song(sr=4000, duration_s=2.0, channels=1), 4000)
    files["4 kHz"] = (tmp / "rate.wav", "sample rate")
    write_audio_file(
        tmp / "surround.wav",
        np.tile(little_song(sr=8000, duration_s=2.0, channels=1), (6, 1)),
        8000,
    )
    files["6 channels"] = (tmp / "surround.wav", "channels")
    files["missing"] = (tmp / "nope.wav", "no such file")
    return files


def test_bad_input_exits_non_zero_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    for label, (path, fragment) in _bad_files(tmp_path).items():
        code = main(["mix", str(path), "-o", str(tmp_path / "out"), "--quiet"])
        err = capsys.readouterr().err.strip()
        assert code == 2, label
        assert len(err.splitlines()) == 1 and err.startswith("mixpilot mix: error:"), (label, err)
        assert fragment.lower() in err.lower(), (label, err)
    assert not (tmp_path / "out").exists()


def test_too_long_respects_configured_limit(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MIXPILOT_MAX_DURATION_S", "5")
    src = tmp_path / "long.wav"
    write_audio_file(src, little_song(sr=8000, duration_s=6.0, channels=1), 8000)
    assert main(["mix", str(src), "-o", str(tmp_path / "o"), "--quiet"]) == 2
    assert "exceeds the limit" in capsys.readouterr().err


def test_analyze_json_has_the_stable_fields(tmp_path: Path) -> None:
    src = tmp_path / "a.flac"
    write_audio_file(src, little_song(sr=44100, duration_s=8.0), 44100, subtype="PCM_24")
    proc = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "analyze", str(src), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    a = json.loads(proc.stdout)
    # Every field of the Analysis message, as documented in docs/analysis.md.
    assert set(a) == {f.name for f in pb.Analysis.DESCRIPTOR.fields}
    docs = (Path(__file__).resolve().parents[2] / "docs" / "analysis.md").read_text()
    for name in [*a, *a["features"]]:
        assert f"| `{name}` |" in docs, name
    assert a["genre"] in {"pop", "rock", "electronic", "jazz", "ballad"}
    assert abs(a["tempo_bpm"] - 120.0) <= 2.4
    assert a["key"].endswith((" major", " minor"))
    assert a["sample_rate"] == 44100 and a["channels"] == 2 and abs(a["duration_s"] - 8.0) < 1e-3


def test_triton_repo_writes_the_gpu_variant(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "repo"
    assert main(["triton-repo", str(out), "--kind", "gpu", "--no-batching"]) == 0
    assert "written to" in capsys.readouterr().out
    config = (out / "ast" / "config.pbtxt").read_text()
    assert "kind: KIND_GPU" in config and "dynamic_batching" not in config
    assert sorted(p.name for p in (out / "ast" / "1").iterdir()) == ["model.pt", "model.py"]
    with pytest.raises(SystemExit, match="--instances must be at least 1"):
        main(["triton-repo", str(out), "--instances", "0"])

"""The song generator (services/predictor/songgen) with the real fluidsynth program and soundfont:
determinism, every genre, ground truth checked against the rendered audio (tempo from the drum
stem, key from the chroma of the pitched stems), mix = stems with the recorded gains and pans,
and the `mixpilot generate` command."""

from __future__ import annotations

import json
import math
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf

from gateway.cli import main
from services.common.errors import ConfigurationError, InvalidParameterError
from services.predictor.songgen import GENRES, GeneratedSong, generate_song, write_song
from services.predictor.songgen.mixdown import MIX_PEAK_DBFS, pan_gains
from services.predictor.songgen.soundfont import load_soundfont
from services.predictor.songgen.styles import STYLES
from services.predictor.songgen.theory import TONICS, parse_key

SR = 44100
SONG_S = 12.0
#: One song per key (12 tonics x 2 modes), genres in turn; seeds fixed once, not tuned.
CASES = [
    (GENRES[i % len(GENRES)], 100 + i, f"{TONICS[i % 12]} {'major' if i < 12 else 'minor'}")
    for i in range(24)
]
#: Krumhansl & Kessler (1982) probe-tone profiles, tonic = C.
_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


@pytest.fixture(scope="module")
def songs() -> list[GeneratedSong]:
    return [generate_song(g, seed, key=key, duration_s=SONG_S) for g, seed, key in CASES]


def measured_key(y: np.ndarray, sr: int) -> str:
    """Krumhansl-Schmuckler: the long-term CQT chroma correlated with the 24 rotated profiles."""
    y22 = librosa.resample(y, orig_sr=sr, target_sr=22050)
    chroma = librosa.feature.chroma_cqt(y=y22, sr=22050, hop_length=2048, norm=None).sum(axis=1)
    scores = {
        f"{TONICS[t]} {mode}": np.corrcoef(chroma, np.roll(profile, t))[0, 1]
        for mode, profile in (("major", _MAJOR), ("minor", _MINOR))
        for t in range(12)
    }
    return max(scores, key=scores.__getitem__)


def measured_tempo(y: np.ndarray, sr: int, *, lo_bpm: float, hi_bpm: float) -> float:
    """Beat period from the autocorrelation of the drum stem's onset envelope.

    The search is limited to the genre's tempo range (+-5 %), which is narrower than an octave
    for every genre, so half/double-tempo peaks cannot be picked and no octave error is
    tolerated. The period is then refined at the lag of up to 8 beats (parabolic peak), which
    makes one 5.8 ms envelope frame worth at most 0.1-0.3 % of tempo.
    """
    hop = 256
    env = librosa.onset.onset_strength(y=y, sr=sr, hop_length=hop)
    env = env - env.mean()
    n = len(env)
    spec = np.fft.rfft(env, 2 * n)
    acf = np.fft.irfft(spec * np.conj(spec))[:n]
    fps = sr / hop
    lags = np.arange(1, n)
    bpm = 60 * fps / lags
    window = (bpm >= lo_bpm / 1.05) & (bpm <= hi_bpm * 1.05)
    beat_lag = lags[window][np.argmax(acf[1:][window])]
    k = max(1, min(8, int(n // 2 // beat_lag)))
    centre, half = int(round(k * beat_lag)), max(2, int(0.1 * beat_lag))
    seg = acf[centre - half : centre + half + 1]
    i = int(np.argmax(seg))
    shift = 0.0
    if 0 < i < len(seg) - 1:
        a, b, c = seg[i - 1], seg[i], seg[i + 1]
        shift = 0.5 * (a - c) / (a - 2 * b + c)
    return 60 * fps / ((centre - half + i + shift) / k)


def test_same_seed_same_audio_different_seed_different() -> None:
    a = generate_song("pop", 1, duration_s=5.3, sample_rate=22050)
    b = generate_song("pop", 1, duration_s=5.3, sample_rate=22050)
    c = generate_song("pop", 2, duration_s=5.3, sample_rate=22050)
    assert a.mix.tobytes() == b.mix.tobytes()
    assert list(a.stems) == list(b.stems)
    assert all(a.stems[n].tobytes() == b.stems[n].tobytes() for n in a.stems)
    assert a.truth == b.truth
    assert a.mix.shape == (2, round(5.3 * 22050)) and a.mix.dtype == np.float32
    assert not np.array_equal(a.mix, c.mix)


def test_overrides_leave_the_other_choices() -> None:
    base = generate_song("rock", 5, duration_s=4.0, sample_rate=22050).truth
    keyed = generate_song("rock", 5, key="Bb minor", duration_s=4.0, sample_rate=22050).truth
    timed = generate_song("rock", 5, tempo_bpm=133.5, duration_s=4.0, sample_rate=22050).truth
    assert keyed["key"] == "Bb minor" and timed["tempo_bpm"] == 133.5
    assert keyed["tempo_bpm"] == base["tempo_bpm"] and timed["key"] == base["key"]
    for other in (keyed, timed):
        for name, stem in base["stems"].items():
            assert other["stems"][name]["program"] == stem["program"]
            assert other["stems"][name]["pan"] == stem["pan"]
            assert other["stems"][name]["balance_db"] == stem["balance_db"]


def test_every_genre_renders_within_its_style(songs: list[GeneratedSong]) -> None:
    assert {s.truth["genre"] for s in songs} == set(GENRES)
    frames = round(SONG_S * SR)
    for song in songs:
        t = song.truth
        lo, hi = STYLES[t["genre"]].tempo_bpm
        assert lo <= t["tempo_bpm"] <= hi, t["genre"]
        assert t["time_signature"] in ("4/4", "3/4")
        assert song.mix.shape == (2, frames) and song.mix.dtype == np.float32
        assert np.all(np.isfinite(song.mix))
        assert np.max(np.abs(song.mix)) <= 10 ** (MIX_PEAK_DBFS / 20) * (1 + 1e-6)
        assert set(song.stems) >= {"drums", "bass", "chords", "lead"}
        for name, stem in song.stems.items():
            assert stem.shape == (1, frames) and np.all(np.isfinite(stem)), name
            assert t["stems"][name]["notes"] > 0 and np.any(stem), name
        assert t["sections"][0]["start_s"] == 0.0
        assert t["sections"][-1]["end_s"] == pytest.approx(SONG_S)
        assert -30.0 < t["mix"]["loudness_lufs"] < -8.0
        assert len(t["soundfont"]["sha256"]) == 64


def test_truth_tempo_is_the_rendered_tempo(songs: list[GeneratedSong]) -> None:
    errors = []
    for song in songs:
        t = song.truth
        lo, hi = STYLES[t["genre"]].tempo_bpm
        bpm = measured_tempo(song.stems["drums"][0], SR, lo_bpm=lo, hi_bpm=hi)
        errors.append(abs(bpm / t["tempo_bpm"] - 1))
    print(f"tempo: worst relative error {max(errors):.4f} over {len(errors)} songs")
    assert max(errors) < 0.02


def test_truth_key_is_the_rendered_key(songs: list[GeneratedSong]) -> None:
    hits = []
    for song in songs:
        pitched = sum(s[0] for name, s in song.stems.items() if name != "drums")
        hits.append(measured_key(pitched.astype(np.float32), SR) == song.truth["key"])
    print(f"key: {sum(hits)}/{len(hits)} songs read in their truth key")
    # Measured 22/24 on these seeds (19-23/24 on other seed sets; misses are the dominant or
    # relative key, mostly jazz ii-V-I material); the floor guards against regressions.
    assert sum(hits) >= 21


def test_mix_is_the_stems_with_the_recorded_gains_and_pans(tmp_path: Path) -> None:
    song = generate_song("electronic", 3, duration_s=4.0, sample_rate=22050)
    write_song(song, tmp_path)
    truth = json.loads((tmp_path / "truth.json").read_text())
    mix, sr = sf.read(tmp_path / "mix.wav", dtype="float32", always_2d=True)
    assert sr == 22050 and np.array_equal(mix.T, song.mix)
    expected = np.zeros((2, mix.shape[0]))
    for name, info in truth["stems"].items():
        stem, _ = sf.read(tmp_path / "stems" / f"{name}.wav", dtype="float32", always_2d=True)
        assert stem.shape[1] == 1
        gain = 10 ** (info["gain_db"] / 20)
        left, right = pan_gains(info["pan"])
        assert left**2 + right**2 == pytest.approx(1.0)
        expected[0] += gain * left * stem[:, 0]
        expected[1] += gain * right * stem[:, 0]
    np.testing.assert_allclose(mix.T, expected, rtol=0, atol=1e-6)
    peak_db = 20 * math.log10(np.max(np.abs(mix)))
    assert peak_db == pytest.approx(MIX_PEAK_DBFS, abs=1e-3)


def test_keys_parse_and_name_all_24() -> None:
    names = {parse_key(f"{t} {m}").name for t in TONICS for m in ("major", "minor")}
    assert len(names) == 24
    assert parse_key("Db major").name == "C# major" and parse_key("a# MINOR").name == "Bb minor"
    with pytest.raises(InvalidParameterError):
        parse_key("H major")


def test_bad_arguments_and_missing_soundfont_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameterError, match="unknown genre"):
        generate_song("disco", 1)
    with pytest.raises(InvalidParameterError, match="duration"):
        generate_song("pop", 1, duration_s=0.0)
    with pytest.raises(ConfigurationError, match="soundfont not found"):
        generate_song("pop", 1, soundfont=tmp_path / "none.sf2")
    sf2 = load_soundfont()
    assert sf2.has(128, 0) and sf2.has(0, 0)


def test_cli_generate_writes_the_song(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "song"
    argv = ["generate", "--genre", "jazz", "--seed", "7", "-o", str(out), "--quiet"]
    code = main([*argv, "--key", "F# major", "--tempo", "120", "--duration", "3"])
    assert code == 0
    truth = json.loads((out / "truth.json").read_text())
    assert truth["key"] == "F# major" and truth["tempo_bpm"] == 120.0
    assert truth["genre"] == "jazz" and truth["duration_s"] == 3.0
    assert sorted(p.stem for p in (out / "stems").glob("*.wav")) == sorted(truth["stems"])
    info = sf.info(out / "mix.wav")
    assert info.frames == 3 * 44100 and info.channels == 2
    line = capsys.readouterr().out.strip()
    assert "\n" not in line and "F# major" in line and "120 BPM" in line


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--genre", "disco"], {}, "unknown genre 'disco'"),
        (["--genre", "pop"], {"MIXPILOT_SOUNDFONT": "/nonexistent/gm.sf2"}, "soundfont not found"),
    ],
)
def test_cli_generate_errors(
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    env: dict[str, str],
    message: str,
) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    code = main(["generate", *args, "--seed", "1", "-o", str(tmp_path / "x"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0 and message in err and err.startswith("mixpilot generate: error")
    assert not (tmp_path / "x").exists()

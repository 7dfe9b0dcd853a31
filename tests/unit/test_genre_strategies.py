"""The strategy version of the bundled example sounds different for each forced genre, and the
report shows the parameters that made the difference."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import soundfile as sf

from gateway.cli import main
from services.predictor.strategy import GENRES

ROOT = Path(__file__).resolve().parents[2]


def _band_levels_db(audio: np.ndarray, sr: int) -> np.ndarray:
    """Energy in octave bands 63 Hz .. 16 kHz, plus the side/mid ratio (dB)."""
    mono = audio.mean(axis=1)
    spec = np.abs(np.fft.rfft(mono)) ** 2
    freqs = np.fft.rfftfreq(len(mono), 1 / sr)
    bands = [
        spec[(freqs >= f / np.sqrt(2)) & (freqs < f * np.sqrt(2))].sum()
        for f in 63 * 2.0 ** np.arange(9)
    ]
    side = audio[:, 0] - audio[:, 1]
    mid = audio[:, 0] + audio[:, 1]
    return 10 * np.log10(np.array([*bands, (side**2).sum() / (mid**2).sum()]) + 1e-20)


def test_each_forced_genre_gives_an_audibly_different_strategy(tmp_path: Path) -> None:
    levels, params, renders = {}, {}, {}
    for genre in GENRES:
        out = tmp_path / genre
        assert (
            main(
                [
                    "mix",
                    str(ROOT / "examples" / "example.flac"),
                    "-o",
                    str(out),
                    "--genre",
                    genre,
                    "--quiet",
                ]
            )
            == 0
        )
        report = json.loads((out / "report.json").read_text())
        assert report["analysis"]["genre"] == genre
        params[genre] = report["versions"]["strategy"]["params"]
        audio, sr = sf.read(out / "strategy.wav", dtype="float64")
        levels[genre] = _band_levels_db(audio, sr)
        renders[genre] = audio
    for a, b in itertools.combinations(GENRES, 2):
        differing = {k for k in params[a] if abs(params[a][k] - params[b][k]) > 1e-6}
        assert len(differing) >= 5, (a, b, differing)
        # Same loudness, so the sample-wise difference is what changed: at least -20 dB
        # relative to the signal (10 % of its amplitude), far above audibility.
        diff = renders[a] - renders[b]
        ratio_db = 10 * np.log10((diff**2).sum() / (renders[a] ** 2).sum())
        assert ratio_db > -20.0, (a, b, ratio_db)
        # And the long-term balance (an octave band or the stereo image) moves audibly.
        assert np.max(np.abs(levels[a] - levels[b])) > 0.5, (a, b)

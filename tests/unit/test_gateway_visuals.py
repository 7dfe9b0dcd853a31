"""Pictures as data (gateway/visuals.py and GET /v1/jobs/{id}/outputs/{v}/visual), checked on
signals whose pictures are known: a sine's spectrum peaks in its band at its level, a burst
shows where it is in the waveform."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.visuals import band_centres, spectrum, waveform


def test_a_sine_reads_its_level_in_its_band_and_nothing_far_from_it() -> None:
    sr = 44100
    t = np.arange(3 * sr) / sr
    for hz, amplitude in ((1000.0, 0.5), (100.0, 1.0), (8000.0, 0.1)):
        x = (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)
        s = spectrum(np.stack([x, x]), sr)
        peak = int(np.argmax(s["db"]))
        low, high = s["hz"][peak] / 2 ** (1 / 12), s["hz"][peak] * 2 ** (1 / 12)
        assert low <= hz < high, (hz, s["hz"][peak])
        assert s["db"][peak] == pytest.approx(20 * np.log10(amplitude), abs=0.3)
        far = [d for f, d in zip(s["hz"], s["db"], strict=True) if abs(np.log2(f / hz)) > 1]
        assert max(far) < s["db"][peak] - 60


def test_bands_stay_below_nyquist() -> None:
    for sr in (8000, 22050, 44100, 96000):
        centres = band_centres(sr)
        assert centres[0] >= 20.0 and centres[-1] * 2 ** (1 / 12) <= sr / 2
        assert np.allclose(np.diff(np.log2(centres)), 1 / 6)
    assert band_centres(96000)[-1] <= 20000.0


def test_the_waveform_shows_a_burst_where_it_is() -> None:
    sr = 8000
    x = np.zeros((2, 10 * sr), np.float32)
    x[:, 6 * sr : 7 * sr] = 0.8 * np.sign(np.sin(np.arange(sr) * 0.3))
    w = waveform(x, points=100)
    assert len(w["max"]) == len(w["min"]) == len(w["rms"]) == 100
    inside = range(61, 69)
    assert all(
        w["max"][i] == pytest.approx(0.8) and w["min"][i] == pytest.approx(-0.8) for i in inside
    )
    assert all(w["max"][i] == 0 and w["rms"][i] == 0 for i in range(0, 59))
    silent = spectrum(np.zeros((1, sr), np.float32), sr)
    assert set(silent["db"]) == {-120.0}


def test_reading_a_file_in_blocks_gives_the_pictures_of_the_whole(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The file is read a block at a time (here blocks of 10 000 frames, so columns straddle
    blocks): the waveform and the spectrum are the in-memory ones."""
    import soundfile as sf

    from gateway import visuals
    from tests.signals import little_song

    sr = 22050
    audio = little_song(sr=sr, duration_s=12.0).astype(np.float32)
    path = tmp_path / "song.wav"
    sf.write(path, audio.T, sr, subtype="FLOAT")
    monkeypatch.setattr(visuals, "BLOCK_FRAMES", 10_000)
    data = visuals.visual_of_file(path, points=700)
    whole = waveform(audio, points=700)
    for key in ("min", "max", "rms"):
        assert np.allclose(data["waveform"][key], whole[key], atol=2e-4), key
    reference = spectrum(audio, sr)
    audible = [i for i, d in enumerate(reference["db"]) if d > -80]
    assert len(audible) > 30
    assert max(abs(data["spectrum"]["db"][i] - reference["db"][i]) for i in audible) < 0.02
    assert data["duration_s"] == 12.0 and data["sample_rate"] == sr

"""Output encoding: 16-bit with TPDF dither turns requantisation distortion of quiet audio into
a flat noise floor; MP3 is 320 kbit/s; every format keeps length and rate."""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf

from services.common.audio_io import encode_audio

SR = 48000


def _harmonic_db(audio: np.ndarray, f0: float, k: int) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(audio.size)))
    bins = np.fft.rfftfreq(audio.size, 1 / SR)
    fund = spectrum[np.argmin(abs(bins - f0))]
    return float(20 * np.log10(spectrum[np.argmin(abs(bins - k * f0))] / fund))


def test_dither_removes_the_distortion_of_requantising_a_quiet_sine() -> None:
    t = np.arange(SR * 2) / SR
    quiet = (1.5 * 2.0**-15 * np.sin(2 * np.pi * 1000.0 * t)).astype(np.float32)  # 1.5 LSB
    audio = np.stack([quiet, quiet])
    dithered, _ = sf.read(io.BytesIO(encode_audio(audio, SR, fmt="wav16")), always_2d=True)
    plain = np.round(quiet * 2.0**15) / 2.0**15  # what truncation to 16 bits does undithered
    # Undithered, the 3rd harmonic is a strong distortion product; dithered it is noise floor.
    assert _harmonic_db(plain, 1000.0, 3) > -20.0
    assert _harmonic_db(dithered[:, 0], 1000.0, 3) < -35.0
    # The dither is about 1 LSB rms of noise, not more, and encoding is deterministic.
    residual = dithered[:, 0] - quiet
    assert 0.3 * 2.0**-15 < float(np.std(residual)) < 1.2 * 2.0**-15
    assert encode_audio(audio, SR, fmt="wav16") == encode_audio(audio, SR, fmt="wav16")


def test_mp3_is_320_kbits_and_keeps_length() -> None:
    rng = np.random.default_rng(1)
    audio = (0.1 * rng.standard_normal((2, SR * 10))).astype(np.float32)
    data = encode_audio(audio, SR, fmt="mp3")
    assert abs(len(data) * 8 / 10.0 / 1000.0 - 320.0) < 10.0  # kbit/s
    decoded, rate = sf.read(io.BytesIO(data), always_2d=True)
    assert rate == SR and decoded.shape == (SR * 10, 2)


def test_block_validation_agrees_with_full_decoding(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The gateway's bounded-memory check of an upload gives the same verdict and message as
    decoding it whole, on good and bad files."""
    import pytest

    from services.common.audio_io import read_audio, validate_audio_file
    from services.common.errors import MixPilotError

    rng = np.random.default_rng(0)
    good = (0.1 * rng.standard_normal((2, SR * 3))).astype(np.float32)
    nan = good.copy()
    nan[1, SR * 2 + 5] = np.nan  # in a later block
    cases = {
        "good.flac": (good, "FLAC", "PCM_24"),
        "silent.wav": (np.zeros((2, SR * 3), np.float32), "WAV", "PCM_16"),
        "nan.wav": (nan, "WAV", "FLOAT"),
        "short.wav": (good[:, : SR // 4], "WAV", "PCM_16"),
    }
    for name, (audio, container, subtype) in cases.items():
        path = tmp_path / name
        sf.write(path, audio.T, SR, format=container, subtype=subtype)
        outcomes = []
        for check in (
            lambda p=path: read_audio(p)[2],
            lambda p=path: validate_audio_file(p, block_frames=SR // 2),
        ):
            try:
                outcomes.append(("ok", check().frames))
            except MixPilotError as exc:
                outcomes.append((exc.code, exc.message))
        assert outcomes[0] == outcomes[1], (name, outcomes)
    truncated = tmp_path / "cut.wav"
    sf.write(truncated, good.T, SR, subtype="PCM_16")
    truncated.write_bytes(truncated.read_bytes()[: 44 + SR * 4])
    with pytest.raises(MixPilotError, match="truncated"):
        validate_audio_file(truncated)

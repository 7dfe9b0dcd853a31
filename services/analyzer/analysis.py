"""The analyzer's domain entry point: audio in, a :class:`mixpilot_pb2.Analysis` message out.

Pure: no file I/O, no environment, no logging configuration. The gRPC server, the Kafka worker
and the embedded pipeline all call :func:`analyze`. Field definitions (unit, range, method) are
documented in ``docs/analysis.md``.
"""

from __future__ import annotations

import math

import numpy as np

from mixpilot.v1 import mixpilot_pb2
from services.analyzer import features, genre, key, tempo
from services.common.audio_io import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, check_audio
from services.common.errors import InvalidAudioError, UnsupportedFormatError
from services.common.loudness import integrated_loudness, true_peak_dbtp


def _check_sample_rate(sample_rate: int) -> int:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int | np.integer):
        raise UnsupportedFormatError(f"sample rate must be an integer, got {sample_rate!r}")
    rate = int(sample_rate)
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise UnsupportedFormatError(
            f"sample rate {rate} Hz is outside {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz"
        )
    return rate


def analyze(
    audio: np.ndarray, sample_rate: int, *, genre_override: str | None = None
) -> mixpilot_pb2.Analysis:
    """Measure a song: loudness, peaks, tempo and beats, key, genre, energy, spectral balance.

    Parameters
    ----------
    audio : np.ndarray, shape (channels, frames)
        Floating-point samples, 1 or 2 channels, at least 1 s, finite, not silent.
    sample_rate : int
        8000-192000 Hz.
    genre_override : str, optional
        A genre the user already knows (one of ``pop``, ``rock``, ``electronic``, ``jazz``,
        ``ballad``). It becomes ``genre`` with ``genre_method = "override"``; the heuristic
        probabilities are still reported in ``features``.

    Returns
    -------
    mixpilot_pb2.Analysis
        Every field filled and finite; ``features`` holds further scalars (see
        ``docs/analysis.md``).

    Raises
    ------
    InvalidAudioError
        Not float, wrong shape, non-finite, shorter than 1 s, or silent.
    UnsupportedFormatError
        Sample rate outside 8000-192000 Hz.
    InvalidParameterError
        ``genre_override`` is not one of the five genres.
    """
    rate = _check_sample_rate(sample_rate)
    check_audio(audio, rate)
    if genre_override is not None:
        genre.validate_genre(genre_override)  # fail before the expensive part
    channels, frames = audio.shape

    loudness_lufs = integrated_loudness(audio, rate)
    peak_dbtp = true_peak_dbtp(audio)
    levels = features.level_features(audio)
    width = features.stereo_width(audio)

    mono = features.analysis_mono(audio, rate)
    spectra = features.compute_spectra(y=mono, sr=features.ANALYSIS_SR, source_sample_rate=rate)
    spectral = features.spectral_features(spectra)
    onset_env = tempo.onset_envelope(mel_power=spectra.mel_power, sr=spectra.sr)
    beat = tempo.estimate_tempo(onset_env=onset_env, sr=spectra.sr, hop_length=spectra.hop_length)
    onset_rate_hz = tempo.onset_rate(
        mel_power=spectra.mel_power, sr=spectra.sr, hop_length=spectra.hop_length
    )
    tonal = key.estimate_key(y=spectra.y, sr=spectra.sr, magnitude=spectra.magnitude)

    centroid_hz = spectral["spectral_centroid_hz"]
    inputs = genre.heuristic_inputs(
        tempo_bpm=beat.bpm,
        tempo_confidence=beat.confidence,
        onset_rate_hz=onset_rate_hz,
        percussive_ratio=spectral["percussive_ratio"],
        spectral_centroid_hz=centroid_hz,
        low_band_share=spectral["low_band_share"],
        crest_factor_db=levels["crest_factor_db"],
    )
    style = genre.classify(inputs, override=genre_override)
    energy = features.energy(
        loudness_lufs=loudness_lufs,
        onset_rate_hz=onset_rate_hz,
        spectral_centroid_hz=centroid_hz,
    )

    extra: dict[str, float] = {
        "rms_db": levels["rms_db"],
        "sample_peak_dbfs": levels["sample_peak_dbfs"],
        "dc_offset": levels["dc_offset"],
        "onset_rate_hz": onset_rate_hz,
        "percussive_ratio": spectral["percussive_ratio"],
        "low_band_share": spectral["low_band_share"],
        "high_band_share": spectral["high_band_share"],
        "spectral_flatness": spectral["spectral_flatness"],
        "tuning_cents": tonal.tuning_cents,
    }
    extra.update({f"genre_prob_{g}": p for g, p in style.probabilities.items()})

    result = mixpilot_pb2.Analysis(
        duration_s=frames / rate,
        sample_rate=rate,
        channels=channels,
        loudness_lufs=loudness_lufs,
        true_peak_dbtp=peak_dbtp,
        tempo_bpm=beat.bpm,
        tempo_confidence=beat.confidence,
        key=tonal.key,
        key_confidence=tonal.confidence,
        genre=style.genre,
        genre_method=style.method,
        energy=energy,
        crest_factor_db=levels["crest_factor_db"],
        stereo_width=width,
        spectral_centroid_hz=centroid_hz,
        beat_times_s=[float(t) for t in beat.beat_times_s],
        features={name: float(value) for name, value in extra.items()},
    )
    _check_finite(result)
    return result


def _check_finite(result: mixpilot_pb2.Analysis) -> None:
    """Every number in the message must be finite (the report and JSON depend on it)."""
    values = [
        result.duration_s,
        result.loudness_lufs,
        result.true_peak_dbtp,
        result.tempo_bpm,
        result.tempo_confidence,
        result.key_confidence,
        result.energy,
        result.crest_factor_db,
        result.stereo_width,
        result.spectral_centroid_hz,
        *result.beat_times_s,
        *result.features.values(),
    ]
    if not all(math.isfinite(v) for v in values):
        # Only reachable through pathological input that check_audio lets through.
        raise InvalidAudioError("the audio could not be analysed (non-finite measurement)")


def warm_up() -> None:
    """Run one small analysis so a fresh process pays its one-off costs before real work.

    librosa loads its submodules lazily and numba compiles their kernels on first use: 2.5-4 s
    on the first :func:`analyze` of a process. Servers call this at start-up, before they
    report SERVING.
    """
    sr = 22_050
    t = np.arange(2 * sr) / sr
    clicks = (np.sin(2 * np.pi * 1500 * t) * np.exp(-(t % 0.5) / 0.005)).astype(np.float32)
    tone = (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    analyze(np.stack([clicks + tone, tone]), sr)

"""The analyzer's domain entry point: audio in, a :class:`mixpilot_pb2.Analysis` message out.

Pure: no file I/O, no environment, no logging configuration. The gRPC server, the Kafka worker
and the embedded pipeline all call :func:`analyze`. Field definitions (unit, range, method) are
documented in ``docs/analysis.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from mixpilot.v1 import mixpilot_pb2
from services.analyzer import features, genre, key, levels, meter, mood, production, tempo
from services.common.audio_io import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, check_audio
from services.common.errors import InvalidAudioError, UnsupportedFormatError


def _check_sample_rate(sample_rate: int) -> int:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int | np.integer):
        raise UnsupportedFormatError(f"sample rate must be an integer, got {sample_rate!r}")
    rate = int(sample_rate)
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise UnsupportedFormatError(
            f"sample rate {rate} Hz is outside {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz"
        )
    return rate


@dataclass(frozen=True)
class FrontEnd:
    """What the trained parts of the analysis read: everything measured before any model.

    :func:`front_end` computes it; :mod:`services.analyzer.training` collects it from generated
    songs to fit the models, and :func:`analyze` interprets it with the shipped ones.
    """

    levels: dict[str, float]
    spectral: dict[str, float]
    periodicity: tempo.Periodicity = field(repr=False)
    chroma: key.Chromagram = field(repr=False)
    key_summary: np.ndarray = field(repr=False)
    timbre: np.ndarray = field(repr=False)
    onset_rate_hz: float
    spectra: features.Spectra | None = field(default=None, repr=False)


def _onset_envelopes(spectra: features.Spectra) -> tuple[np.ndarray, np.ndarray]:
    onset_env = tempo.onset_envelope(mel_power=spectra.mel_power, sr=spectra.sr)
    low_env = tempo.onset_envelope(
        mel_power=spectra.mel_power[spectra.mel_freqs_hz < tempo.LOW_BAND_HZ], sr=spectra.sr
    )
    return onset_env, low_env


def onset_periodicity(audio: np.ndarray, rate: int) -> tempo.Periodicity:
    """Just the onset periodicity of ``audio`` (what the tempo model reads), as
    :func:`front_end` measures it."""
    mono = features.analysis_mono(audio, rate)
    spectra = features.compute_spectra(y=mono, sr=features.ANALYSIS_SR, source_sample_rate=rate)
    onset_env, low_env = _onset_envelopes(spectra)
    return tempo.periodicity(
        onset_env=onset_env, low_env=low_env, sr=spectra.sr, hop_length=spectra.hop_length
    )


def front_end(audio: np.ndarray, rate: int) -> FrontEnd:
    """Levels, spectra, onset periodicity, chroma and timbre of a checked song."""
    mono = features.analysis_mono(audio, rate)
    spectra = features.compute_spectra(y=mono, sr=features.ANALYSIS_SR, source_sample_rate=rate)
    onset_env, low_env = _onset_envelopes(spectra)
    tuning = key.estimate_tuning(magnitude=spectra.magnitude, sr=spectra.sr)
    chroma = key.chromagram(y=spectra.y, sr=spectra.sr, tuning_semitones=tuning)
    return FrontEnd(
        levels=levels.level_features(audio, rate),
        spectral=features.spectral_features(spectra),
        periodicity=tempo.periodicity(
            onset_env=onset_env, low_env=low_env, sr=spectra.sr, hop_length=spectra.hop_length
        ),
        chroma=chroma,
        key_summary=key.chroma_summary(chroma),
        timbre=genre.timbre(spectra.mel_power),
        onset_rate_hz=tempo.onset_rate(
            mel_power=spectra.mel_power, sr=spectra.sr, hop_length=spectra.hop_length
        ),
        spectra=spectra,
    )


def genre_row(
    front: FrontEnd,
    beat: tempo.TempoEstimate,
    metre: meter.MeterEstimate,
    tonal: key.KeyEstimate,
) -> np.ndarray:
    """The genre classifier's input row for a song."""
    lv, sp = front.levels, front.spectral
    return genre.genre_inputs(
        {
            "tempo_bpm": beat.bpm,
            "tempo_confidence": beat.confidence,
            "meter_3_4_probability": (
                metre.confidence if metre.meter == "3/4" else 1.0 - metre.confidence
            ),
            "swing_ratio": metre.swing_ratio,
            "onsets_per_s": front.onset_rate_hz,
            "percussive_ratio": sp["percussive_ratio"],
            "minor_probability": float(tonal.probabilities[1].sum()),
            "spectral_centroid_hz": sp["spectral_centroid_hz"],
            "low_band_share": sp["low_band_share"],
            "high_band_share": sp["high_band_share"],
            "spectral_flatness": sp["spectral_flatness"],
            "crest_factor_db": lv["crest_factor_db"],
            "stereo_width": lv["stereo_width"],
            "lr_correlation": lv["lr_correlation"],
        },
        front.timbre,
    )


def _major_probability(tonal: key.KeyEstimate) -> float:
    """The key model's probability of a major key; 0.5 when there is no pitched content."""
    total = float(tonal.probabilities.sum())
    return float(tonal.probabilities[0].sum()) / total if total > 0 else 0.5


def analyze(
    audio: np.ndarray, sample_rate: int, *, genre_override: str | None = None
) -> mixpilot_pb2.Analysis:
    """Measure a song: loudness, peaks, tempo and beats, key, genre, energy, spectral balance.

    Parameters
    ----------
    audio : np.ndarray, shape (channels, frames)
        Floating-point samples, 1 or 2 channels, at least 1 s, finite. Silence is measured
        (levels at their floors, every confidence 0); the job pipeline rejects silent uploads
        before they get here, since there is nothing to mix.
    sample_rate : int
        8000-192000 Hz.
    genre_override : str, optional
        A genre the user already knows (one of ``pop``, ``rock``, ``electronic``, ``jazz``,
        ``ballad``). It becomes ``genre`` with ``genre_method = "override"``; the classifier's
        probabilities are still reported.

    Returns
    -------
    mixpilot_pb2.Analysis
        Every field filled and finite; ``features`` holds further scalars (see
        ``docs/analysis.md``).

    Raises
    ------
    InvalidAudioError
        Not float, wrong shape, non-finite, or shorter than 1 s.
    UnsupportedFormatError
        Sample rate outside 8000-192000 Hz.
    InvalidParameterError
        ``genre_override`` is not one of the five genres.
    """
    rate = _check_sample_rate(sample_rate)
    check_audio(audio, rate, allow_silence=True)
    if genre_override is not None:
        genre.validate_genre(genre_override)  # fail before the expensive part
    channels, frames = audio.shape

    front = front_end(audio, rate)
    lv, spectral = front.levels, front.spectral
    beat = tempo.estimate_tempo(front.periodicity)
    tonal = key.key_from_summary(front.key_summary)
    metre = meter.estimate_meter(front.periodicity, beat, front.chroma)
    style = genre.classify(genre_row(front, beat, metre, tonal), override=genre_override)
    assert front.spectra is not None
    prod = production.production_style(audio, rate, spectra=front.spectra)
    centroid_hz = spectral["spectral_centroid_hz"]
    energy = features.energy(
        loudness_lufs=lv["loudness_lufs"],
        onset_rate_hz=front.onset_rate_hz,
        spectral_centroid_hz=centroid_hz,
    )

    extra: dict[str, float] = {
        name: lv[name]
        for name in (
            "rms_db",
            "sample_peak_dbfs",
            "dc_offset",
            "short_term_max_lufs",
            "momentary_max_lufs",
            "loudness_range_lu",
            "plr_db",
            "lr_correlation",
            "mono_compatibility_lu",
        )
    }
    extra.update(
        {
            name: spectral[name]
            for name in (
                "percussive_ratio",
                "low_band_share",
                "high_band_share",
                "spectral_flatness",
                "spectral_rolloff_hz",
                "spectral_bandwidth_hz",
            )
        }
    )
    extra["onset_rate_hz"] = front.onset_rate_hz
    extra["tuning_cents"] = front.chroma.tuning_cents
    extra["swing_ratio"] = metre.swing_ratio
    extra["reverb_time_s"] = prod.reverb_time_s
    extra["production_confidence"] = prod.confidence
    for band, share in prod.tonal_balance.items():
        extra[f"tonal_balance_{band}"] = share
        extra[f"tonal_balance_{band}_deviation_db"] = prod.tonal_balance_deviation_db[band]

    result = mixpilot_pb2.Analysis(
        duration_s=frames / rate,
        sample_rate=rate,
        channels=channels,
        loudness_lufs=lv["loudness_lufs"],
        true_peak_dbtp=lv["true_peak_dbtp"],
        tempo_bpm=beat.bpm,
        tempo_confidence=beat.confidence,
        key=tonal.key,
        key_confidence=tonal.confidence,
        genre=style.genre,
        genre_method=style.method,
        energy=energy,
        crest_factor_db=lv["crest_factor_db"],
        stereo_width=lv["stereo_width"],
        spectral_centroid_hz=centroid_hz,
        beat_times_s=[float(t) for t in beat.beat_times_s],
        features={name: float(value) for name, value in extra.items()},
        meter=metre.meter,
        meter_confidence=metre.confidence,
        valence=mood.valence(
            major_probability=_major_probability(tonal),
            tempo_bpm=beat.bpm,
            spectral_centroid_hz=centroid_hz,
            onset_rate_hz=front.onset_rate_hz,
        ),
        danceability=mood.danceability(
            tempo_confidence=beat.confidence,
            beat_times_s=beat.beat_times_s,
            tempo_bpm=beat.bpm,
            percussive_ratio=spectral["percussive_ratio"],
        ),
        genre_probabilities=style.probabilities,
        compression_style=prod.compression,
        eq_character=prod.eq_character,
        reverb_style=prod.reverb_style,
        reverb_amount=prod.reverb_amount,
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
        result.meter_confidence,
        result.valence,
        result.danceability,
        result.reverb_amount,
        *result.beat_times_s,
        *result.features.values(),
        *result.genre_probabilities.values(),
    ]
    if not all(math.isfinite(v) for v in values):
        # Only reachable through pathological input that check_audio lets through.
        raise InvalidAudioError("the audio could not be analysed (non-finite measurement)")


def _warm_up_signal() -> tuple[np.ndarray, int]:
    sr = 22_050
    t = np.arange(2 * sr) / sr
    clicks = (np.sin(2 * np.pi * 1500 * t) * np.exp(-(t % 0.5) / 0.005)).astype(np.float32)
    tone = (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    return np.stack([clicks + tone, tone]), sr


def warm_up_front_end() -> None:
    """:func:`warm_up` without the trained models (what training needs before they exist)."""
    front_end(*_warm_up_signal())


def warm_up() -> None:
    """Run one small analysis so a fresh process pays its one-off costs before real work.

    librosa loads its submodules lazily and numba compiles their kernels on first use: 2.5-4 s
    on the first :func:`analyze` of a process. Servers call this at start-up, before they
    report SERVING.
    """
    analyze(*_warm_up_signal())

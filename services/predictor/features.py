"""What the mix models see: a mid/side log-mel spectrogram and a musical context vector.

One definition for training and inference, so a model is always fed what it was trained on.

* :func:`log_mel`: the mid ``(L + R) / 2`` and side ``(L - R) / 2`` of the input, resampled to
  :data:`SAMPLE_RATE`, each as a :data:`N_MELS`-band log-mel power spectrogram (dB re full
  scale, floored at :data:`FLOOR_DB`, then mapped to about 0..1 by :data:`DB_OFFSET` and
  :data:`DB_SCALE`). Mid and side carry the tonal balance (EQ) and the stereo image (width) in
  one tensor of shape ``(2, N_MELS, frames)``; mono input has a silent side.
* :func:`context_vector`: the analyzer's musical features (genre, tempo, key, energy,
  loudness, width, crest factor, brightness) as :data:`CONTEXT_SIZE` numbers of order 1, the
  conditioning of ``enhanced_cnn``.

Neither depends on the song's gain where the models can see it: inference brings the song to
the reference peak first (:func:`reference_gain_db`), every model normalises its clip's level
(:func:`services.predictor.training.models.level_normalise`), and the context states loudness
and energy as they would be with the song's true peak at :data:`REFERENCE_PEAK_DBTP`. A song
turned down 30 dB gets the same AI versions; without this the models read the absolute level,
which in generated training data (every clean mix peaks at -1 dBFS) gives the damage away, and
on uploads says nothing about it.
"""

from __future__ import annotations

import math

import librosa
import numpy as np

from mixpilot.v1 import mixpilot_pb2 as pb
from services.analyzer.features import ENERGY_LOUDNESS_WEIGHT, loudness_term
from services.predictor.strategy import GENRES

#: Analysis rate of the spectrogram (high enough for the 8 kHz shelf and what is above it).
SAMPLE_RATE = 44100
N_FFT = 2048
HOP = 1024
N_MELS = 64
FMIN_HZ = 30.0
FMAX_HZ = 16000.0
#: Power below this (dB re full scale) is floored: the side of near-mono audio, silence.
FLOOR_DB = -100.0
#: ``(dB - DB_OFFSET) / DB_SCALE``: -100..0 dB to 0..1.
DB_OFFSET = -100.0
DB_SCALE = 100.0
#: Length of :func:`context_vector`.
CONTEXT_SIZE = 14
#: The context states loudness and energy as if the song's true peak were here (dBTP).
REFERENCE_PEAK_DBTP = -1.0
#: The models see clips this long (training clips; inference averages over a song's clips).
CLIP_S = 8.0

_TONICS = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
_FLATS = {"Db": "C#", "Eb": "D#", "Gb": "F#", "Ab": "G#", "Bb": "A#"}


def frames_for(duration_s: float) -> int:
    """Spectrogram frames of ``duration_s`` seconds of audio."""
    return 1 + int(round(duration_s * SAMPLE_RATE)) // HOP


def log_mel(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mid/side log-mel spectrogram.

    Parameters
    ----------
    audio : np.ndarray, shape (channels, frames)
        1 or 2 channels, any rate (resampled to :data:`SAMPLE_RATE`).
    sample_rate : int

    Returns
    -------
    np.ndarray, shape (2, N_MELS, spectrogram frames), float32, about 0..1
    """
    x = np.atleast_2d(np.asarray(audio, dtype=np.float32))
    if x.shape[0] > 2:
        raise ValueError(f"expected mono or stereo audio, got {x.shape[0]} channels")
    if sample_rate != SAMPLE_RATE:
        x = librosa.resample(x, orig_sr=sample_rate, target_sr=SAMPLE_RATE, res_type="soxr_hq")
    if x.shape[0] == 2:
        ms = np.stack([0.5 * (x[0] + x[1]), 0.5 * (x[0] - x[1])])
    else:
        ms = np.stack([x[0], np.zeros_like(x[0])])
    power = librosa.feature.melspectrogram(
        y=ms,
        sr=SAMPLE_RATE,
        n_fft=N_FFT,
        hop_length=HOP,
        n_mels=N_MELS,
        fmin=FMIN_HZ,
        fmax=FMAX_HZ,
        power=2.0,
    )
    # dB re the power of a full-scale sine's bin under the Hann window (a full-scale 1 kHz sine
    # reads about -17 dB in its mel band: the filters spread and normalise it).
    reference = (N_FFT / 4.0) ** 2
    db = 10.0 * np.log10(np.maximum(power / reference, 10.0 ** (FLOOR_DB / 10.0)))
    return ((db - DB_OFFSET) / DB_SCALE).astype(np.float32)


def _tonic_and_mode(key: str) -> tuple[int | None, bool]:
    parts = key.split()
    if len(parts) != 2 or parts[1] not in ("major", "minor"):
        return None, True
    tonic = _FLATS.get(parts[0], parts[0])
    return (_TONICS.index(tonic) if tonic in _TONICS else None), parts[1] == "major"


def reference_gain_db(analysis: pb.Analysis) -> float:
    """The gain (dB) that puts the analysed song's true peak at :data:`REFERENCE_PEAK_DBTP`
    (0 if the peak is not finite).

    Inference applies it to the audio before :func:`log_mel`, and :func:`context_vector` states
    loudness and energy after it, so what a model sees does not depend on the upload's gain.
    Inside a model :func:`~services.predictor.training.models.level_normalise` removes the level
    too, but only above the spectrogram's floor: without this gain a song 20 dB quieter than
    the training songs loses its quiet detail (reverb tails, a narrow mix's side) to the floor,
    and its predictions moved by up to 4.6 dB (measured on a held-out generated song).
    """
    peak = float(analysis.true_peak_dbtp)
    return REFERENCE_PEAK_DBTP - peak if math.isfinite(peak) else 0.0


def context_vector(analysis: pb.Analysis) -> np.ndarray:
    """The musical context of a song as :data:`CONTEXT_SIZE` float32 numbers of order 1.

    genre one-hot (5, in :data:`~services.predictor.strategy.GENRES` order; all zero for an
    unknown genre), tempo / 200 BPM, major (1) or minor (0), the tonic on the circle of semitones
    (cos, sin; zeros if unknown), energy (0..1), (loudness + 30 LUFS) / 30, stereo width,
    crest factor / 20 dB, log2(spectral centroid / 2 kHz).

    Loudness and energy are taken at the reference level: as they would read with the song's
    true peak at :data:`REFERENCE_PEAK_DBTP` (loudness shifted by the gain that puts it there,
    energy's loudness term recomputed, :func:`services.analyzer.features.energy`), so the vector
    does not change with the song's gain. The other entries are gain-independent already.
    """
    genre = np.array([1.0 if analysis.genre == g else 0.0 for g in GENRES])
    tonic, major = _tonic_and_mode(analysis.key)
    angle = 2.0 * math.pi * tonic / 12.0 if tonic is not None else None
    circle = [math.cos(angle), math.sin(angle)] if angle is not None else [0.0, 0.0]
    centroid = max(float(analysis.spectral_centroid_hz), 1.0)
    loudness = float(analysis.loudness_lufs)
    gain = reference_gain_db(analysis) if math.isfinite(loudness) else 0.0
    energy = float(analysis.energy) + ENERGY_LOUDNESS_WEIGHT * (
        loudness_term(loudness + gain) - loudness_term(loudness)
    )
    rest = [
        float(analysis.tempo_bpm) / 200.0,
        1.0 if major else 0.0,
        *circle,
        energy,
        (loudness + gain + 30.0) / 30.0,
        float(analysis.stereo_width),
        float(analysis.crest_factor_db) / 20.0,
        math.log2(centroid / 2000.0),
    ]
    out = np.concatenate([genre, np.array(rest)]).astype(np.float32)
    assert out.shape == (CONTEXT_SIZE,)
    return out

"""Pictures of a version's audio, as data the web UI draws (and an integrator may plot): the
waveform (min, max and RMS per column) and the long-term average spectrum in 1/6-octave bands.

Computed once per stored file (by its SHA-256) and kept in the gateway's cache directory, like
the download renditions.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from scipy import signal

from gateway.downloads import atomic_write
from services.common.audio_io import read_audio
from services.common.blobstore import BlobStore

#: Columns of the waveform.
WAVEFORM_POINTS = 1200
#: Spectrum bands per octave, and their range.
BANDS_PER_OCTAVE = 6
LOWEST_HZ = 20.0
HIGHEST_HZ = 20_000.0
#: The floor of the spectrum, dB (silence reads this).
FLOOR_DB = -120.0


def waveform(audio: np.ndarray, points: int = WAVEFORM_POINTS) -> dict[str, list[float]]:
    """Min, max and RMS of the mid channel ((L+R)/2) in ``points`` equal columns."""
    mid = audio.mean(axis=0, dtype=np.float64)
    points = max(1, min(points, mid.shape[0]))
    edges = np.linspace(0, mid.shape[0], points + 1).astype(np.int64)
    lo, hi, rms = [], [], []
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        column = mid[a:b]
        lo.append(round(float(column.min()), 4))
        hi.append(round(float(column.max()), 4))
        rms.append(round(float(np.sqrt(np.mean(column**2))), 4))
    return {"min": lo, "max": hi, "rms": rms}


def band_centres(sample_rate: int) -> np.ndarray:
    """Centres of the 1/6-octave bands (base-2, from 1 kHz) between 20 Hz and 20 kHz, below
    Nyquist."""
    step = 1.0 / BANDS_PER_OCTAVE
    first = math.ceil(math.log2(LOWEST_HZ / 1000.0) / step)
    last = math.floor(math.log2(min(HIGHEST_HZ, sample_rate / 2) / 1000.0) / step)
    centres = 1000.0 * 2.0 ** (np.arange(first, last + 1) * step)
    return centres[centres * 2 ** (step / 2) <= sample_rate / 2]


def spectrum(audio: np.ndarray, sample_rate: int) -> dict[str, list[float]]:
    """Long-term average spectrum of the mid channel (Welch, Hann, 8192-point segments), as the
    power in each 1/6-octave band in dB, scaled so a full-scale sine reads 0 dB in its band."""
    mid = audio.mean(axis=0, dtype=np.float64)
    nperseg = min(8192, mid.shape[0])
    freqs, psd = signal.welch(mid, fs=sample_rate, window="hann", nperseg=nperseg)
    df = freqs[1] - freqs[0]
    centres = band_centres(sample_rate)
    half = 2 ** (1 / (2 * BANDS_PER_OCTAVE))
    db = []
    for fc in centres:
        inside = (freqs >= fc / half) & (freqs < fc * half)
        power = float(psd[inside].sum() * df) if inside.any() else 0.0
        level = 10 * math.log10(2 * power) if power > 0 else FLOOR_DB  # 2x: a sine's A^2/2
        db.append(round(max(level, FLOOR_DB), 2))
    return {"hz": [round(float(f), 1) for f in centres], "db": db}


def visual(blobs: BlobStore, uri: str, sha256: str, cache_dir: Path) -> dict[str, Any]:
    """The waveform and spectrum of the stored file at ``uri``, computed once."""
    path = Path(cache_dir) / "visuals" / f"{sha256}.json"
    if path.exists():
        return json.loads(path.read_text())  # type: ignore[no-any-return]
    audio, sr, info = read_audio(io.BytesIO(blobs.get_bytes(uri)))
    data = {
        "duration_s": round(info.frames / sr, 3),
        "sample_rate": sr,
        "waveform": waveform(audio),
        "spectrum": spectrum(audio, sr),
    }
    atomic_write(path, lambda f: f.write(json.dumps(data).encode()))
    return data

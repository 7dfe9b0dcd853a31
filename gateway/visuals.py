"""Pictures of a version's audio, as data the web UI draws (and an integrator may plot): the
waveform (min, max and RMS per column) and the long-term average spectrum in 1/6-octave bands.

Computed once per stored file (by its SHA-256), a block at a time, and kept in the gateway's cache
directory, like the download renditions.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from scipy import signal

from gateway.downloads import atomic_write
from services.common.blobstore import BlobStore
from services.common.errors import InvalidAudioError

#: Columns of the waveform.
WAVEFORM_POINTS = 1200
#: Spectrum bands per octave, and their range.
BANDS_PER_OCTAVE = 6
LOWEST_HZ = 20.0
HIGHEST_HZ = 20_000.0
#: Frames read at a time (a few MB of float32).
BLOCK_FRAMES = 1 << 19
#: The floor of the spectrum, dB (silence reads this).
FLOOR_DB = -120.0


class _Columns:
    """Min, max and sum of squares of the mid channel in ``points`` equal columns of a signal
    of ``frames`` frames, fed a block at a time."""

    def __init__(self, frames: int, points: int) -> None:
        columns = max(1, min(points, frames))
        self.edges = np.linspace(0, frames, columns + 1).astype(np.int64)
        self.lo = np.full(columns, np.inf)
        self.hi = np.full(columns, -np.inf)
        self.energy = np.zeros(columns)
        self.start = 0

    def add(self, mid: np.ndarray) -> None:
        stop = self.start + mid.shape[0]
        # The columns this block touches, and where each begins inside it.
        first = int(np.searchsorted(self.edges, self.start, side="right")) - 1
        inner = self.edges[(self.edges > self.start) & (self.edges < stop)] - self.start
        cuts = np.concatenate([[0], inner]).astype(np.int64)
        cols = np.arange(first, first + cuts.shape[0])
        self.lo[cols] = np.minimum(self.lo[cols], np.minimum.reduceat(mid, cuts))
        self.hi[cols] = np.maximum(self.hi[cols], np.maximum.reduceat(mid, cuts))
        self.energy[cols] += np.add.reduceat(mid**2, cuts)
        self.start = stop

    def result(self) -> dict[str, list[float]]:
        rms = np.sqrt(self.energy / np.maximum(np.diff(self.edges), 1))
        return {
            "min": [round(float(x), 4) for x in self.lo],
            "max": [round(float(x), 4) for x in self.hi],
            "rms": [round(float(x), 4) for x in rms],
        }


class _Welch:
    """Welch's long-term average spectrum (Hann, 8192-point segments, hop 4096) of a signal of
    ``frames`` frames, fed a block at a time: what is left of one block starts the next, so the
    result is that of one pass over the whole signal."""

    def __init__(self, frames: int, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self.nperseg = max(1, min(8192, frames))
        self.hop = max(1, self.nperseg // 2)
        self.pending = np.zeros(0)
        self.psd_sum: np.ndarray | None = None
        self.segments = 0

    def add(self, mid: np.ndarray) -> None:
        self.pending = np.concatenate([self.pending, mid])
        if self.pending.shape[0] < self.nperseg:
            return
        segments = 1 + (self.pending.shape[0] - self.nperseg) // self.hop
        used = (segments - 1) * self.hop + self.nperseg
        _, psd = signal.welch(
            self.pending[:used], fs=self.sample_rate, window="hann", nperseg=self.nperseg
        )
        self.psd_sum = psd * segments if self.psd_sum is None else self.psd_sum + psd * segments
        self.segments += segments
        self.pending = self.pending[segments * self.hop :]

    def result(self) -> dict[str, list[float]]:
        if self.psd_sum is None:
            raise InvalidAudioError("the file contains no audio frames")
        freqs = np.fft.rfftfreq(self.nperseg, 1 / self.sample_rate)
        return _bands(freqs, self.psd_sum / self.segments, self.sample_rate)


def waveform(audio: np.ndarray, points: int = WAVEFORM_POINTS) -> dict[str, list[float]]:
    """Min, max and RMS of the mid channel ((L+R)/2) in ``points`` equal columns."""
    mid = audio.mean(axis=0, dtype=np.float64)
    columns = _Columns(mid.shape[0], points)
    columns.add(mid)
    return columns.result()


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
    welch = _Welch(mid.shape[0], sample_rate)
    welch.add(mid)
    return welch.result()


def _bands(freqs: np.ndarray, psd: np.ndarray, sample_rate: int) -> dict[str, list[float]]:
    """A power spectral density summed into the 1/6-octave bands, in dB (sine = 0 dB)."""
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
    """The waveform and spectrum of the stored file at ``uri``, computed once, a block at a
    time: memory stays at a block (:data:`BLOCK_FRAMES`) whatever the file's length."""
    path = Path(cache_dir) / "visuals" / f"{sha256}.json"
    if path.exists():
        return json.loads(path.read_text())  # type: ignore[no-any-return]
    with tempfile.TemporaryDirectory(prefix="mixpilot-visual-") as tmp:
        local = Path(tmp) / "audio"
        with open(local, "wb") as f:
            for chunk in blobs.iter_chunks(uri):
                f.write(chunk)
        data = visual_of_file(local)
    atomic_write(path, lambda f: f.write(json.dumps(data).encode()))
    return data


def visual_of_file(path: Path, points: int = WAVEFORM_POINTS) -> dict[str, Any]:
    """:func:`waveform` and :func:`spectrum` of an audio file, read a block at a time; the same
    pictures as of the whole file in memory."""
    with sf.SoundFile(path) as f:
        sr, frames = int(f.samplerate), int(f.frames)
        if frames == 0:
            raise InvalidAudioError("the file contains no audio frames")
        columns, welch = _Columns(frames, points), _Welch(frames, sr)
        for block in f.blocks(blocksize=BLOCK_FRAMES, dtype="float32", always_2d=True):
            mid = block.mean(axis=1, dtype=np.float64)
            columns.add(mid)
            welch.add(mid)
    return {
        "duration_s": round(frames / sr, 3),
        "sample_rate": sr,
        "waveform": columns.result(),
        "spectrum": welch.result(),
    }

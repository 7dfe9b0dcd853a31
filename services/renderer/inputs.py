"""The renderer's cache of decoded inputs, for re-renders: a listener moving a slider asks for
many previews of one song within seconds, and decoding a 3-minute FLAC costs more than rendering
a 20 s excerpt of it. Entries are keyed by content address (sha256), bounded in bytes, evicted
least recently used first, and read-only (every render thread shares them)."""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict

import numpy as np

from mixpilot.v1 import mixpilot_pb2 as pb
from services.common.audio_io import read_audio
from services.common.blobstore import BlobStore
from services.common.loudness import kweighted_power


class DecodedInput:
    """A decoded song (``audio``: (channels, frames) float32, read-only) and, computed on first
    use, its K-weighted power per frame (BS.1770), from which a preview estimates the loudness
    of the whole mixed song."""

    def __init__(self, audio: np.ndarray, sample_rate: int) -> None:
        audio.setflags(write=False)
        self.audio = audio
        self.sample_rate = sample_rate

    @functools.cached_property
    def power(self) -> np.ndarray:
        power = kweighted_power(self.audio, self.sample_rate, dtype=np.float32)
        power.setflags(write=False)
        return power

    @property
    def nbytes(self) -> int:
        """What it holds once its power is computed (float32 per frame)."""
        return int(self.audio.nbytes + 4 * self.audio.shape[1])


def decode_input(ref: pb.AudioRef, blobs: BlobStore, *, max_duration_s: float) -> DecodedInput:
    audio, sr, _ = read_audio(blobs.get_bytes(ref.uri), max_duration_s=max_duration_s)
    return DecodedInput(audio, sr)


class InputCache:
    """At most ``max_bytes`` of decoded inputs (the newest one is kept even if larger)."""

    def __init__(self, blobs: BlobStore, *, max_bytes: int, max_duration_s: float) -> None:
        self.blobs = blobs
        self.max_bytes = max_bytes
        self.max_duration_s = max_duration_s
        self._entries: OrderedDict[str, DecodedInput] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, ref: pb.AudioRef) -> DecodedInput:
        key = ref.sha256 or ref.uri
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                return entry
            self.misses += 1
        entry = decode_input(ref, self.blobs, max_duration_s=self.max_duration_s)
        if self.max_bytes <= 0:
            return entry
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            total = sum(e.nbytes for e in self._entries.values())
            while len(self._entries) > 1 and total > self.max_bytes:
                _, dropped = self._entries.popitem(last=False)
                total -= dropped.nbytes
        return entry

"""Audio I/O at the boundaries: decode files into the house convention (float32, shape
``(channels, frames)``, sample rate beside it) and encode results. Every bad input becomes one of
the typed errors with a one-line reason."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf

from services.common.errors import (
    InvalidAudioError,
    LimitExceededError,
    UnsupportedFormatError,
)

MIN_SAMPLE_RATE = 8_000
MAX_SAMPLE_RATE = 192_000
MIN_DURATION_S = 1.0
#: Peak below this (about -120 dBFS) counts as digital silence.
SILENCE_PEAK = 1e-6

#: Output encodings by the name used in options and file extensions.
OUTPUT_FORMATS: dict[str, tuple[str, str, str]] = {
    # name: (libsndfile format, subtype, extension)
    "wav16": ("WAV", "PCM_16", "wav"),
    "wav24": ("WAV", "PCM_24", "wav"),
    "flac": ("FLAC", "PCM_24", "flac"),
    "mp3": ("MP3", "MPEG_LAYER_III", "mp3"),
}


@dataclass(frozen=True)
class AudioInfo:
    sample_rate: int
    channels: int
    frames: int
    format: str
    subtype: str

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate


Source = str | Path | bytes | BinaryIO

_TRUNCATED = re.compile(r"^(?:data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)


def _open(source: Source) -> str | Path | BinaryIO:
    if isinstance(source, bytes | bytearray):
        if len(source) == 0:
            raise InvalidAudioError("the file is empty")
        return io.BytesIO(source)
    if isinstance(source, str | Path):
        path = Path(source)
        if not path.is_file():
            raise InvalidAudioError(f"no such file: {path.name}")
        if path.stat().st_size == 0:
            raise InvalidAudioError("the file is empty")
    return source


def probe(source: Source, *, max_duration_s: float | None = None) -> AudioInfo:
    """Read the header only and check the layout and limits.

    Raises
    ------
    UnsupportedFormatError, InvalidAudioError, LimitExceededError
    """
    handle = _open(source)
    try:
        with sf.SoundFile(handle) as f:
            result = AudioInfo(
                sample_rate=int(f.samplerate),
                channels=int(f.channels),
                frames=int(f.frames),
                format=str(f.format),
                subtype=str(f.subtype),
            )
            header_notes = str(f.extra_info)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise UnsupportedFormatError(
            "not a readable audio file (supported: WAV, FLAC, MP3, OGG, AIFF)"
        ) from exc
    finally:
        if hasattr(handle, "seek"):
            handle.seek(0)
    # libsndfile silently reads a truncated WAV/AIFF up to where the bytes stop; its header
    # notes say "data : DECLARED (should be PRESENT)". Streamed files declare 0 or ~4 GiB.
    declared = _TRUNCATED.search(header_notes)
    if declared and 0 < int(declared.group(2)) < int(declared.group(1)) < 0xFFFFFFF0:
        raise InvalidAudioError(
            f"the file is truncated: its header declares {int(declared.group(1))} bytes of "
            f"audio, {int(declared.group(2))} are present"
        )
    if not MIN_SAMPLE_RATE <= result.sample_rate <= MAX_SAMPLE_RATE:
        raise UnsupportedFormatError(
            f"sample rate {result.sample_rate} Hz is outside {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz"
        )
    if result.channels not in (1, 2):
        raise UnsupportedFormatError(
            f"{result.channels} channels: only mono and stereo are supported"
        )
    if max_duration_s is not None and result.frames > max_duration_s * result.sample_rate:
        raise LimitExceededError(
            f"duration {result.duration_s:.0f} s exceeds the limit of {max_duration_s:.0f} s"
        )
    return result


def read_audio(
    source: Source, *, max_duration_s: float | None = None
) -> tuple[np.ndarray, int, AudioInfo]:
    """Decode ``source`` to float32 ``(channels, frames)``.

    Returns
    -------
    audio : np.ndarray, shape (channels, frames), float32
    sample_rate : int
    info : AudioInfo

    Raises
    ------
    UnsupportedFormatError, InvalidAudioError, LimitExceededError
    """
    info = probe(source, max_duration_s=max_duration_s)
    handle = _open(source)
    try:
        data, sr = sf.read(handle, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise InvalidAudioError(f"the audio data is corrupt or truncated ({exc})") from exc
    audio = np.ascontiguousarray(data.T)
    # A header that promises more frames than the data holds is a truncated file.
    if info.frames > 0 and audio.shape[1] < 0.99 * info.frames:
        raise InvalidAudioError(
            f"the file is truncated: header says {info.frames} frames, found {audio.shape[1]}"
        )
    check_audio(audio, int(sr))
    return (
        audio,
        int(sr),
        AudioInfo(int(sr), audio.shape[0], audio.shape[1], info.format, info.subtype),
    )


def validate_audio_file(
    source: str | Path, *, max_duration_s: float | None = None, block_frames: int = 1 << 18
) -> AudioInfo:
    """The checks of :func:`read_audio` on a file, decoded a block at a time: memory stays at
    one block whatever the file's length (the gateway validates uploads of hundreds of MB).

    Raises
    ------
    UnsupportedFormatError, InvalidAudioError, LimitExceededError
        The same errors, with the same messages, as :func:`read_audio`.
    """
    info = probe(source, max_duration_s=max_duration_s)
    frames = 0
    peak = 0.0
    try:
        with sf.SoundFile(_open(source)) as f:
            for block in f.blocks(blocksize=block_frames, dtype="float32", always_2d=True):
                if not np.all(np.isfinite(block)):
                    raise InvalidAudioError("the audio contains NaN or infinite samples")
                frames += block.shape[0]
                if block.size:
                    peak = max(peak, float(np.max(np.abs(block))))
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise InvalidAudioError(f"the audio data is corrupt or truncated ({exc})") from exc
    if info.frames > 0 and frames < 0.99 * info.frames:
        raise InvalidAudioError(
            f"the file is truncated: header says {info.frames} frames, found {frames}"
        )
    if frames == 0:
        raise InvalidAudioError("the file contains no audio frames")
    if frames < MIN_DURATION_S * info.sample_rate:
        raise InvalidAudioError(
            f"the audio is {frames / info.sample_rate:.2f} s long; at least "
            f"{MIN_DURATION_S:g} s is needed"
        )
    if peak < SILENCE_PEAK:
        raise InvalidAudioError("the audio is silent")
    return AudioInfo(info.sample_rate, info.channels, frames, info.format, info.subtype)


def check_audio(audio: np.ndarray, sample_rate: int, *, allow_silence: bool = False) -> None:
    """Entry check for anything that will be analysed or mixed.

    ``allow_silence`` lets silence through (the analyzer measures it, with zero confidence);
    everything that mixes rejects it.

    Raises
    ------
    InvalidAudioError
        Not float, wrong shape, non-finite samples, too short, or silent.
    """
    if not isinstance(audio, np.ndarray) or not np.issubdtype(audio.dtype, np.floating):
        raise InvalidAudioError("audio must be a floating-point numpy array")
    if audio.ndim != 2 or audio.shape[0] not in (1, 2):
        raise InvalidAudioError(f"audio must have shape (channels, frames), got {audio.shape}")
    if audio.shape[1] == 0:
        raise InvalidAudioError("the file contains no audio frames")
    if not np.all(np.isfinite(audio)):
        raise InvalidAudioError("the audio contains NaN or infinite samples")
    if audio.shape[1] < MIN_DURATION_S * sample_rate:
        raise InvalidAudioError(
            f"the audio is {audio.shape[1] / sample_rate:.2f} s long; at least "
            f"{MIN_DURATION_S:g} s is needed"
        )
    if not allow_silence and float(np.max(np.abs(audio))) < SILENCE_PEAK:
        raise InvalidAudioError("the audio is silent")


def encode_audio(audio: np.ndarray, sample_rate: int, *, fmt: str = "wav24") -> bytes:
    """Encode float ``(channels, frames)`` audio to bytes in one of :data:`OUTPUT_FORMATS`."""
    if fmt not in OUTPUT_FORMATS:
        raise UnsupportedFormatError(
            f"output format {fmt!r} is not one of {', '.join(OUTPUT_FORMATS)}"
        )
    container, subtype, _ = OUTPUT_FORMATS[fmt]
    samples = np.ascontiguousarray(audio.T)
    extra: dict[str, object] = {}
    if subtype == "PCM_16":
        samples = tpdf_dither(samples, bits=16)
    if container == "MP3":  # 320 kbit/s constant: the best MPEG Layer III offers
        extra = {"bitrate_mode": "CONSTANT", "compression_level": 0.0}
    buf = io.BytesIO()
    sf.write(buf, samples, sample_rate, format=container, subtype=subtype, **extra)
    return buf.getvalue()


def tpdf_dither(samples: np.ndarray, *, bits: int, seed: int = 0) -> np.ndarray:
    """``samples`` (float, full scale 1.0) with triangular dither of +-1 LSB at ``bits`` added,
    so that truncation to ``bits`` leaves white noise instead of distortion on quiet passages.
    Seeded: the same audio always encodes to the same bytes."""
    lsb = 2.0 ** (1 - bits)
    rng = np.random.default_rng(seed)
    noise = (rng.random(samples.shape) - rng.random(samples.shape)) * lsb
    return np.clip(samples + noise.astype(samples.dtype), -1.0, 1.0 - lsb)


def write_audio(
    path: str | Path, audio: np.ndarray, sample_rate: int, *, fmt: str = "wav24"
) -> None:
    """Write ``audio`` to ``path`` (see :func:`encode_audio`)."""
    Path(path).write_bytes(encode_audio(audio, sample_rate, fmt=fmt))

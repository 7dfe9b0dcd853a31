"""Downloads: a version's audio in the format asked for, and a ZIP of a job's versions with its
report. The renderer stores every version once, as 24-bit WAV; other formats are encoded from
it on first request (:func:`services.common.audio_io.encode_audio`: 16-bit with TPDF dither,
FLAC 24-bit, MP3 320 kbit/s) and kept in the gateway's cache directory
(``MIXPILOT_CACHE_DIR``), named by the source's SHA-256, so the next request (or a byte range
of it) is served from disk. The cache is disposable: delete it at any time.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from services.common.audio_io import OUTPUT_FORMATS, encode_audio, read_audio
from services.common.blobstore import BlobStore
from services.common.errors import InvalidParameterError

#: format name -> media type of the response.
MEDIA_TYPES = {
    "wav16": "audio/wav",
    "wav24": "audio/wav",
    "flac": "audio/flac",
    "mp3": "audio/mpeg",
}
STORED_FORMAT = "wav24"


def check_format(fmt: str) -> str:
    if fmt not in OUTPUT_FORMATS:
        raise InvalidParameterError(f"format must be one of {', '.join(OUTPUT_FORMATS)}")
    return fmt


def extension(fmt: str) -> str:
    return OUTPUT_FORMATS[fmt][2]


def atomic_write(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".part-")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def rendition(blobs: BlobStore, uri: str, sha256: str, fmt: str, cache_dir: Path) -> Path:
    """A file holding the version stored at ``uri`` (24-bit WAV) in ``fmt``, made once."""
    path = Path(cache_dir) / "renditions" / f"{sha256}.{fmt}.{extension(fmt)}"
    if path.exists():
        return path
    source = blobs.get_bytes(uri)
    if fmt == STORED_FORMAT:
        data = source
    else:
        audio, sr, _ = read_audio(io.BytesIO(source))
        data = encode_audio(audio, sr, fmt=fmt)
    atomic_write(path, lambda f: f.write(data))
    return path


def archive(
    blobs: BlobStore,
    job_id: str,
    stem: str,
    outputs: dict[str, dict[str, Any]],
    report: bytes,
    fmt: str,
    cache_dir: Path,
) -> Path:
    """A ZIP of every version in ``fmt`` plus ``report.json`` (audio stored, not deflated:
    it does not compress). Cached under the report's digest: a version added later (a user's
    edit) changes the report, so the next archive holds it."""
    digest = hashlib.sha256(report).hexdigest()[:16]
    path = Path(cache_dir) / "archives" / f"{job_id}.{digest}.{fmt}.zip"
    if path.exists():
        return path
    files = {
        name: rendition(blobs, o["uri"], o["sha256"], fmt, cache_dir)
        for name, o in sorted(outputs.items())
    }

    def write(f: Any) -> None:
        with zipfile.ZipFile(f, "w") as z:
            for name, source in files.items():
                z.write(source, f"{stem}-{name}.{extension(fmt)}", zipfile.ZIP_STORED)
            z.writestr("report.json", report, zipfile.ZIP_DEFLATED)
            manifest = {"job_id": job_id, "format": fmt, "versions": sorted(files)}
            z.writestr("manifest.json", json.dumps(manifest, indent=2), zipfile.ZIP_DEFLATED)

    atomic_write(path, write)
    return path


def forget(job_id: str, sha256s: list[str], cache_dir: Path) -> None:
    """Remove a deleted job's archives and the renditions of ``sha256s`` from the cache."""
    root = Path(cache_dir)
    for path in (root / "archives").glob(f"{job_id}.*.zip"):
        path.unlink(missing_ok=True)
    for sha in sha256s:
        for path in (root / "renditions").glob(f"{sha}.*"):
            path.unlink(missing_ok=True)

"""Finding, fingerprinting and listing a General MIDI soundfont (``.sf2``).

The generator renders with whatever soundfont it is given, so the ground truth records the file
name and its sha256: the same arguments and the same soundfont give the same samples. Presets are
read from the file's ``pdta/phdr`` chunk (a few kilobytes; the sample data is skipped), so a
program the soundfont lacks is replaced before rendering instead of rendering silence.
"""

from __future__ import annotations

import functools
import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

from services.common.errors import ConfigurationError

#: Searched in this order when no soundfont is configured (Debian packages ``timgm6mb-soundfont``
#: and ``fluid-soundfont-gm``).
DEFAULT_SOUNDFONTS: tuple[Path, ...] = (
    Path("/usr/share/sounds/sf2/TimGM6mb.sf2"),
    Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"),
)
#: MIDI bank of the percussion kits in a General MIDI soundfont.
DRUM_BANK = 128
_PHDR_RECORD = 38


@dataclass(frozen=True)
class Soundfont:
    """A soundfont file, its fingerprint and its presets.

    Attributes
    ----------
    path : Path
        The ``.sf2`` file.
    sha256 : str
        Hex digest of the file's bytes.
    presets : dict[tuple[int, int], str]
        Preset name by ``(bank, program)``.
    """

    path: Path
    sha256: str
    presets: dict[tuple[int, int], str]

    def has(self, bank: int, program: int) -> bool:
        """Whether the soundfont defines ``program`` in ``bank``."""
        return (bank, program) in self.presets


def find_soundfont(path: str | Path | None = None) -> Path:
    """The soundfont to render with: ``path`` if given, else the first Debian default present.

    Raises
    ------
    ConfigurationError
        ``path`` does not exist, or none is given and no default is installed.
    """
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigurationError(
                f"soundfont not found: {p} (set MIXPILOT_SOUNDFONT to a General MIDI .sf2)"
            )
        return p
    for p in DEFAULT_SOUNDFONTS:
        if p.is_file():
            return p
    raise ConfigurationError(
        "no General MIDI soundfont: install the Debian package timgm6mb-soundfont "
        "(scripts/install.sh) or set MIXPILOT_SOUNDFONT to a .sf2 file"
    )


def load_soundfont(path: str | Path | None = None) -> Soundfont:
    """Find (see :func:`find_soundfont`), fingerprint and list the presets of a soundfont.

    Cached per file path, size and modification time: hashing a large soundfont once per
    process, not once per song.
    """
    p = find_soundfont(path).resolve()
    st = p.stat()
    return _load(p, st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _load(path: Path, size: int, mtime_ns: int) -> Soundfont:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return Soundfont(path=path, sha256=digest.hexdigest(), presets=_read_presets(path))


def _read_presets(path: Path) -> dict[tuple[int, int], str]:
    """Preset names by ``(bank, program)`` from the RIFF ``pdta/phdr`` chunk."""
    with path.open("rb") as f:
        riff, _, form = struct.unpack("<4sI4s", f.read(12))
        if riff != b"RIFF" or form != b"sfbk":
            raise ConfigurationError(f"not a SoundFont 2 file: {path}")
        while header := f.read(8):
            if len(header) < 8:
                break
            chunk_id, size = struct.unpack("<4sI", header)
            if chunk_id == b"LIST" and f.read(4) == b"pdta":
                end = f.tell() + size - 4
                while f.tell() < end:
                    sub_id, sub_size = struct.unpack("<4sI", f.read(8))
                    if sub_id == b"phdr":
                        return _parse_phdr(f.read(sub_size))
                    f.seek(sub_size + (sub_size & 1), 1)
                break
            f.seek(size + (size & 1) - (4 if chunk_id == b"LIST" else 0), 1)
    raise ConfigurationError(f"soundfont has no preset list: {path}")


def _parse_phdr(data: bytes) -> dict[tuple[int, int], str]:
    presets: dict[tuple[int, int], str] = {}
    # The last record is the terminal "EOP" sentinel.
    for i in range(len(data) // _PHDR_RECORD - 1):
        rec = data[i * _PHDR_RECORD : (i + 1) * _PHDR_RECORD]
        name = rec[:20].split(b"\0", 1)[0].decode("latin-1").strip()
        program, bank = struct.unpack("<HH", rec[20:24])
        presets[(bank, program)] = name
    return presets

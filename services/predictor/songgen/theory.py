"""Keys, scales and chords: the little music theory the generator needs.

Pitches are MIDI note numbers; pitch classes are 0..11 with 0 = C. Chords are written as Roman
numerals relative to the key's scale (major, or natural minor for minor keys): upper case is a
major-family chord, lower case a minor one, ``b``/``#`` prefixes alter the root by a semitone,
and a suffix adds colour (``5`` power chord, ``7``, ``maj7``, ``9``, ``m7b5``, ``6``, ``sus2``,
``sus4``, ``add9``, ``dim``). ``V7`` in a minor key is the harmonic-minor dominant.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from services.common.errors import InvalidParameterError

#: Pitch-class spellings of key names (index 0 = C): the spellings the analyzer reports.
TONICS: tuple[str, ...] = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
MODES: tuple[str, str] = ("major", "minor")
_LETTERS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
SCALES: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
}
#: Intervals above the root, by chord suffix; the triad's third follows the numeral's case.
_SUFFIX_INTERVALS: dict[str, tuple[int, ...]] = {
    "": (),
    "5": (7,),
    "7": (7, 10),
    "maj7": (7, 11),
    "9": (7, 10, 14),
    "maj9": (7, 11, 14),
    "6": (7, 9),
    "add9": (7, 14),
    "sus2": (2, 7),
    "sus4": (5, 7),
    "m7b5": (6, 10),
    "dim": (6,),
}
_ROMAN = ("i", "ii", "iii", "iv", "v", "vi", "vii")
_NUMERAL = re.compile(r"^(b|#)?(vii|iii|iv|vi|ii|v|i)(.*)$", re.IGNORECASE)
_KEY = re.compile(r"^\s*([A-Ga-g])([#b]?)\s+(major|minor)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Key:
    """A tonic pitch class and a mode."""

    tonic: int
    mode: str

    @property
    def name(self) -> str:
        """``"A minor"``, ``"F# major"``: tonic spelled from :data:`TONICS`, a space, the mode."""
        return f"{TONICS[self.tonic]} {self.mode}"

    @property
    def scale(self) -> tuple[int, ...]:
        """Pitch classes of the scale, tonic first."""
        return tuple((self.tonic + s) % 12 for s in SCALES[self.mode])


def parse_key(text: str) -> Key:
    """Parse ``"A minor"``, ``"F# major"``, ``"Bb minor"`` (any enharmonic spelling).

    Raises
    ------
    InvalidParameterError
        Not a tonic letter with optional ``#``/``b``, a space and ``major``/``minor``.
    """
    m = _KEY.match(text)
    if not m:
        raise InvalidParameterError(
            f"bad key {text!r}: expected a tonic, a space and major/minor, e.g. 'F# major'"
        )
    letter, accidental, mode = m.groups()
    tonic = _LETTERS[letter.upper()] + {"#": 1, "b": -1, "": 0}[accidental]
    return Key(tonic=tonic % 12, mode=mode.lower())


@dataclass(frozen=True)
class Chord:
    """A chord: root offset from the tonic in semitones and intervals above the root.

    Attributes
    ----------
    numeral : str
        As written in the progression (``"ii7"``).
    root : int
        Semitones above the key's tonic, 0..11.
    intervals : tuple[int, ...]
        Semitones above the root, root (0) first, sorted.
    """

    numeral: str
    root: int
    intervals: tuple[int, ...]

    @property
    def is_power(self) -> bool:
        return self.intervals == (0, 7)

    def pitch_classes(self, key: Key) -> tuple[int, ...]:
        return tuple((key.tonic + self.root + i) % 12 for i in self.intervals)

    def symbol(self, key: Key) -> str:
        """Lead-sheet symbol in ``key``, e.g. ``"Am7"``, ``"G5"``, ``"Bbmaj7"``."""
        name = TONICS[(key.tonic + self.root) % 12]
        iv = set(self.intervals)
        if self.is_power:
            return name + "5"
        if 6 in iv and 3 in iv:
            return name + ("m7b5" if 10 in iv else "dim")
        minor = 3 in iv
        suffix = "m" if minor else ""
        if 5 in iv and 4 not in iv and 3 not in iv:
            suffix = "sus4"
        elif 2 in iv and 4 not in iv and 3 not in iv:
            suffix = "sus2"
        if 11 in iv:
            suffix += "maj9" if 14 in iv else "maj7"
        elif 10 in iv:
            suffix += "9" if 14 in iv else "7"
        elif 9 in iv:
            suffix += "6"
        elif 14 in iv:
            suffix += "add9"
        return name + suffix


def parse_numeral(numeral: str, mode: str) -> Chord:
    """A Roman numeral (see the module docstring) in a key of ``mode`` as a :class:`Chord`.

    Raises
    ------
    InvalidParameterError
        Unknown numeral or suffix.
    """
    m = _NUMERAL.match(numeral)
    if not m or m.group(3) not in _SUFFIX_INTERVALS:
        raise InvalidParameterError(f"bad chord numeral {numeral!r}")
    accidental, roman, suffix = m.groups()
    degree = _ROMAN.index(roman.lower())
    root = SCALES[mode][degree] + {"b": -1, "#": 1, None: 0}[accidental]
    extra = _SUFFIX_INTERVALS[suffix]
    if suffix in ("5", "sus2", "sus4"):
        intervals = (0, *extra)
    elif suffix in ("m7b5", "dim"):
        intervals = (0, 3, *extra)
    else:
        intervals = (0, 4 if roman.isupper() else 3, 7, *extra)
    return Chord(numeral=numeral, root=root % 12, intervals=tuple(sorted(set(intervals))))


def nearest_pitch(pitch_class: int, target: float) -> int:
    """The MIDI pitch of ``pitch_class`` closest to ``target`` (ties go down)."""
    base = int(round(target)) - ((int(round(target)) - pitch_class) % 12)
    return base + 12 if target - base > 6 else base


def voice_chord(
    pcs: tuple[int, ...], *, center: float, previous: tuple[int, ...] = ()
) -> list[int]:
    """Close voicing of pitch classes ``pcs`` near ``center``, led smoothly from ``previous``.

    Each inversion of the chord stacked upward from the pitch class nearest ``center`` is a
    candidate; the one whose notes move least from ``previous`` (or whose middle sits nearest
    ``center`` when there is none) wins. Returns ascending MIDI pitches.
    """
    best: list[int] = []
    best_cost = float("inf")
    for start in range(len(pcs)):
        order = pcs[start:] + pcs[:start]
        notes = [nearest_pitch(order[0], center - 5)]
        for pc in order[1:]:
            notes.append(notes[-1] + ((pc - notes[-1]) % 12 or 12))
        mid = (notes[0] + notes[-1]) / 2
        if previous:
            cost = sum(min(abs(n - p) for p in previous) for n in notes) + 0.2 * abs(mid - center)
        else:
            cost = abs(mid - center)
        if cost < best_cost:
            best, best_cost = notes, cost
    return best

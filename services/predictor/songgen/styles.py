"""The five genres as data: tempo range, meter, feel, progressions, instruments and balance.

Programs are General MIDI program numbers (0-based, bank 0); drum kits are GM2 kit numbers in
bank 128 (0 Standard, 8 Room, 16 Power, 24 Electronic, 25 TR-808, 32 Jazz, 40 Brush), which both
Debian soundfonts provide. Each stem lists a few programs; the seed picks one. Balances are the
genre-typical level of each stem in dB relative to the others (every stem is rendered at the same
loudness first), pans the typical position (-1 left .. 1 right; the seed may mirror it).
"""

from __future__ import annotations

from dataclasses import dataclass

GENRES: tuple[str, ...] = ("pop", "rock", "electronic", "jazz", "ballad")


@dataclass(frozen=True)
class StemStyle:
    """One stem of a genre.

    Attributes
    ----------
    name : str
        File stem of ``stems/<name>.wav``.
    role : str
        Which part writer plays it: ``drums``, ``bass``, ``chords``, ``extra`` or ``lead``.
    programs : tuple[int, ...]
        GM programs (drum kits for ``drums``) the seed chooses from.
    balance_db : float
        Typical level relative to the other stems.
    pan : float
        Typical pan position, -1..1.
    register : int
        MIDI pitch the part is centred on (unused for drums).
    """

    name: str
    role: str
    programs: tuple[int, ...]
    balance_db: float
    pan: float
    register: int = 60


@dataclass(frozen=True)
class GenreStyle:
    """Everything genre-specific the part writers read.

    Attributes
    ----------
    tempo_bpm : tuple[int, int]
        Inclusive range of quarter-note tempi drawn from (always less than an octave wide).
    waltz_probability : float
        Chance of 3/4 instead of 4/4.
    minor_probability : float
        Chance of a minor key when none is requested.
    swing : tuple[float, float]
        Range of the swing ratio (share of the beat the first 8th takes; 0.5 = straight).
    shuffle_probability : float
        Chance of a swung (shuffle) feel in a genre that is otherwise straight.
    humanize_ms : float
        Standard deviation of the onset timing jitter.
    velocity_jitter : float
        Standard deviation of the velocity jitter (MIDI velocity units).
    progressions : dict[str, tuple[tuple[str, ...], ...]]
        Four-bar progressions in Roman numerals by mode (see :mod:`.theory`).
    drums, bass, comp, extra, lead : str
        The pattern family each part writer uses.
    stems : tuple[StemStyle, ...]
        Stems in mix order.
    """

    name: str
    tempo_bpm: tuple[int, int]
    waltz_probability: float
    minor_probability: float
    swing: tuple[float, float]
    shuffle_probability: float
    humanize_ms: float
    velocity_jitter: float
    progressions: dict[str, tuple[tuple[str, ...], ...]]
    drums: str
    bass: str
    comp: str
    extra: str
    lead: str
    stems: tuple[StemStyle, ...]
    final_chord: dict[str, str]


STYLES: dict[str, GenreStyle] = {
    "pop": GenreStyle(
        name="pop",
        tempo_bpm=(92, 128),
        waltz_probability=0.0,
        minor_probability=0.3,
        swing=(0.5, 0.5),
        shuffle_probability=0.0,
        humanize_ms=4.0,
        velocity_jitter=6.0,
        progressions={
            "major": (
                ("I", "V", "vi", "IV"),
                ("I", "vi", "IV", "V"),
                ("I", "IV", "vi", "V"),
                ("I", "IV", "V", "I"),
            ),
            "minor": (
                ("i", "VI", "III", "VII"),
                ("i", "iv", "VI", "V"),
                ("i", "VI", "VII", "i"),
            ),
        },
        drums="pop",
        bass="pop",
        comp="block",
        extra="strum",
        lead="vocal",
        stems=(
            StemStyle("drums", "drums", (0, 8), -1.0, 0.0),
            StemStyle("bass", "bass", (33, 34, 38), -3.0, 0.0, 40),
            StemStyle("chords", "chords", (0, 4, 5), -5.0, -0.3, 62),
            StemStyle("guitar", "extra", (25, 27, 24), -7.0, 0.45, 60),
            StemStyle("lead", "lead", (80, 73, 81, 54), 0.0, 0.05, 72),
        ),
        final_chord={"major": "I", "minor": "i"},
    ),
    "rock": GenreStyle(
        name="rock",
        tempo_bpm=(100, 156),
        waltz_probability=0.0,
        minor_probability=0.45,
        swing=(0.6, 0.64),
        shuffle_probability=0.15,
        humanize_ms=5.0,
        velocity_jitter=7.0,
        progressions={
            "major": (
                ("I", "bVII", "IV", "I"),
                ("I", "IV", "V", "IV"),
                ("I", "V", "IV", "IV"),
                ("I", "I", "IV", "V"),
            ),
            "minor": (
                ("i", "VII", "VI", "VII"),
                ("i", "iv", "v", "i"),
                ("i", "VI", "VII", "i"),
                ("i", "VII", "iv", "i"),
            ),
        },
        drums="rock",
        bass="eighths",
        comp="power",
        extra="arpeggio",
        lead="guitar",
        stems=(
            StemStyle("drums", "drums", (16, 0, 8), 0.0, 0.0),
            StemStyle("bass", "bass", (34, 33), -3.0, 0.0, 40),
            StemStyle("chords", "chords", (30, 29), -2.0, -0.55, 50),
            StemStyle("guitar", "extra", (27, 25), -7.0, 0.55, 64),
            StemStyle("lead", "lead", (29, 30), -3.0, 0.15, 69),
        ),
        final_chord={"major": "I", "minor": "i"},
    ),
    "electronic": GenreStyle(
        name="electronic",
        tempo_bpm=(118, 132),
        waltz_probability=0.0,
        minor_probability=0.75,
        swing=(0.5, 0.5),
        shuffle_probability=0.0,
        humanize_ms=0.0,
        velocity_jitter=3.0,
        progressions={
            "major": (
                ("Imaj7", "V", "vi7", "IV"),
                ("I", "IV", "vi", "V"),
                ("I", "iii", "IV", "V"),
            ),
            "minor": (
                ("i7", "VImaj7", "iv7", "i7"),
                ("i", "iv7", "VI", "v"),
                ("i", "VII", "VI", "VII"),
                ("i7", "i7", "VI", "VII"),
            ),
        },
        drums="electronic",
        bass="offbeat",
        comp="pad",
        extra="arp16",
        lead="synth",
        stems=(
            StemStyle("drums", "drums", (25, 24), 0.0, 0.0),
            StemStyle("bass", "bass", (38, 39), -1.0, 0.0, 40),
            StemStyle("chords", "chords", (89, 90, 88), -7.0, -0.25, 62),
            StemStyle("arp", "extra", (81, 80), -9.0, 0.4, 72),
            StemStyle("lead", "lead", (81, 80, 87), -4.0, -0.1, 74),
        ),
        final_chord={"major": "I", "minor": "i"},
    ),
    "jazz": GenreStyle(
        name="jazz",
        tempo_bpm=(100, 168),
        waltz_probability=0.2,
        minor_probability=0.35,
        swing=(0.62, 0.68),
        shuffle_probability=1.0,
        humanize_ms=8.0,
        velocity_jitter=9.0,
        progressions={
            "major": (
                ("ii7", "V7", "I6", "I6"),
                ("I6", "vi7", "ii7", "V7"),
                ("Imaj7", "I6", "ii7", "V9"),
                ("I6", "IVmaj7", "iii7", "V7"),
            ),
            "minor": (
                ("iim7b5", "V7", "i7", "i7"),
                ("i7", "iv7", "iim7b5", "V7"),
                ("i6", "i6", "iim7b5", "V7"),
            ),
        },
        drums="jazz",
        bass="walking",
        comp="comp",
        extra="",
        lead="horn",
        stems=(
            StemStyle("drums", "drums", (32, 40), -4.0, 0.0),
            StemStyle("bass", "bass", (32,), -2.0, 0.1, 40),
            StemStyle("chords", "chords", (0, 4), -3.0, -0.35, 62),
            StemStyle("lead", "lead", (65, 66, 56, 11), 0.0, 0.2, 67),
        ),
        final_chord={"major": "I6", "minor": "i6"},
    ),
    "ballad": GenreStyle(
        name="ballad",
        tempo_bpm=(60, 84),
        waltz_probability=0.3,
        minor_probability=0.4,
        swing=(0.5, 0.5),
        shuffle_probability=0.0,
        humanize_ms=7.0,
        velocity_jitter=6.0,
        progressions={
            "major": (
                ("I", "V", "vi", "IV"),
                ("I", "vi", "IV", "V"),
                ("I", "IV", "I", "V"),
                ("I", "iii", "IV", "V"),
            ),
            "minor": (
                ("i", "VI", "III", "VII"),
                ("i", "iv", "VII", "III"),
                ("i", "VI", "iv", "V7"),
            ),
        },
        drums="ballad",
        bass="sustained",
        comp="arpeggio",
        extra="pad",
        lead="song",
        stems=(
            StemStyle("drums", "drums", (40, 0), -9.0, 0.0),
            StemStyle("bass", "bass", (32, 35, 33), -5.0, 0.0, 40),
            StemStyle("chords", "chords", (0, 4), 0.0, -0.2, 60),
            StemStyle("strings", "extra", (48, 49), -4.0, 0.35, 64),
            StemStyle("lead", "lead", (73, 40, 71, 68), -1.0, 0.05, 74),
        ),
        final_chord={"major": "I", "minor": "i"},
    ),
}

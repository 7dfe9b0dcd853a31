"""Drum parts: per-genre patterns on a 16th-note grid (General MIDI percussion, channel 10).

A pattern line is one character per 16th: ``X`` accent, ``x`` normal, ``o`` soft, ``g`` ghost,
``.`` rest. Each genre has lines for its sections (``base`` for those not listed); 3/4 patterns
are 12 characters. The last bar of a section may end in a fill, and choruses, bridges and the
outro open on a crash.
"""

from __future__ import annotations

import numpy as np

from services.predictor.songgen.form import Bar
from services.predictor.songgen.score import Part

KICK, STICK, SNARE, CLAP = 36, 37, 38, 39
HAT_CLOSED, HAT_PEDAL, HAT_OPEN = 42, 44, 46
TOM_LOW, TOM_MID, TOM_HIGH = 45, 47, 50
CRASH, RIDE = 49, 51
_VELOCITY = {"X": 112, "x": 94, "o": 70, "g": 42}
_HIT_BEATS = 0.25

Pattern = dict[int, str]

_PATTERNS: dict[str, dict[int, dict[str, Pattern]]] = {
    "pop": {
        4: {
            "intro": {KICK: "X.......X.......", HAT_CLOSED: "x.o.x.o.x.o.x.o."},
            "base": {
                KICK: "X.....x.X.x.....",
                SNARE: "....X.......X...",
                HAT_CLOSED: "x.o.x.o.x.o.x.o.",
            },
            "chorus": {
                KICK: "X.....x.X.x...x.",
                SNARE: "....X.......X...",
                HAT_CLOSED: "x...x...x...x...",
                HAT_OPEN: "..o...o...o...o.",
            },
        },
    },
    "rock": {
        4: {
            "intro": {KICK: "X.......X.......", HAT_CLOSED: "x.x.x.x.x.x.x.x."},
            "base": {
                KICK: "X.....x.X.......",
                SNARE: "....X.......X...",
                HAT_CLOSED: "x.x.x.x.x.x.x.x.",
            },
            "chorus": {
                KICK: "X.x.....X.x.....",
                SNARE: "....X.......X...",
                RIDE: "x.x.x.x.x.x.x.x.",
            },
        },
    },
    "electronic": {
        4: {
            "intro": {KICK: "X...X...X...X...", HAT_OPEN: "..o...o...o...o."},
            "base": {
                KICK: "X...X...X...X...",
                CLAP: "....x.......x...",
                HAT_OPEN: "..x...x...x...x.",
            },
            "chorus": {
                KICK: "X...X...X...X...",
                CLAP: "....x.......x...",
                HAT_OPEN: "..x...x...x...x.",
                HAT_CLOSED: "g.g.g.g.g.g.g.g.",
            },
            "bridge": {CLAP: "....x.......x...", HAT_CLOSED: "o.g.o.g.o.g.o.g."},
        },
    },
    "jazz": {
        4: {
            "intro": {RIDE: "x...X.o.x...X.o.", HAT_PEDAL: "....x.......x..."},
            "base": {
                RIDE: "x...X.o.x...X.o.",
                HAT_PEDAL: "....x.......x...",
                KICK: "g...g...g...g...",
            },
        },
        3: {
            "intro": {RIDE: "x...X.o.x...", HAT_PEDAL: "....x...x..."},
            "base": {RIDE: "x...X.o.x...", HAT_PEDAL: "....x...x...", KICK: "g..........."},
        },
    },
    "ballad": {
        4: {
            "intro": {HAT_CLOSED: "o.g.o.g.o.g.o.g."},
            "base": {
                KICK: "X.......o.......",
                STICK: "....o.......o...",
                HAT_CLOSED: "o.g.o.g.o.g.o.g.",
            },
            "chorus": {
                KICK: "X.....g.o.......",
                SNARE: "....x.......x...",
                HAT_CLOSED: "o.o.o.o.o.o.o.o.",
            },
        },
        3: {
            "intro": {HAT_CLOSED: "o.g.o.g.o.g."},
            "base": {KICK: "X...........", STICK: "....o...o...", HAT_CLOSED: "o.g.o.g.o.g."},
            "chorus": {KICK: "X.......g...", SNARE: "....x...x...", HAT_CLOSED: "o.o.o.o.o.o."},
        },
    },
}
#: Fill on the section's last beat: (16th step within the beat, drum, velocity).
_FILLS: dict[str, tuple[tuple[int, int, int], ...]] = {
    "pop": ((0, SNARE, 70), (1, SNARE, 80), (2, TOM_MID, 90), (3, TOM_LOW, 100)),
    "rock": ((0, TOM_HIGH, 95), (1, TOM_HIGH, 100), (2, TOM_MID, 105), (3, TOM_LOW, 112)),
    "electronic": ((0, SNARE, 60), (1, SNARE, 75), (2, SNARE, 90), (3, SNARE, 105)),
    "jazz": ((0, SNARE, 50), (2, SNARE, 85), (3, KICK, 75)),
    "ballad": ((0, TOM_HIGH, 55), (2, TOM_LOW, 65)),
}


def _pattern(family: str, beats_per_bar: int, section: str) -> Pattern:
    meters = _PATTERNS[family]
    by_section = meters.get(beats_per_bar) or {
        name: {drum: line[: 4 * beats_per_bar] for drum, line in pat.items()}
        for name, pat in meters[4].items()
    }
    return by_section.get(section, by_section["base"])


def drum_part(
    bars: list[Bar],
    *,
    family: str,
    program: int,
    beats_per_bar: int,
    velocity_jitter: float,
    rng: np.random.Generator,
    name: str = "drums",
) -> Part:
    """The drum part of the song (kit ``program`` in bank 128).

    Parameters
    ----------
    bars : list[Bar]
        The song's bars (section and position decide pattern, fills and crashes).
    family : str
        Pattern family (a genre name).
    program : int
        Drum kit number.
    beats_per_bar : int
        3 or 4.
    velocity_jitter : float
        Standard deviation of the velocity jitter.
    rng : numpy.random.Generator
        The part's random stream.
    """
    part = Part(name=name, program=program, drums=True)
    fill_probability = 0.5 if family == "jazz" else 0.7
    for bar in bars:
        start = bar.index * beats_per_bar
        gain = bar.intensity
        if bar.final:
            part.add(start, 2.0, CRASH, 100 * gain)
            part.add(start, _HIT_BEATS, KICK, 100 * gain)
            continue
        pattern = _pattern(family, beats_per_bar, bar.section)
        fill = (
            bar.last_of_section
            and bar.section != "intro"
            and bar.index < len(bars) - 2
            and rng.random() < fill_probability
        )
        fill_from = 4 * (beats_per_bar - 1) if fill else 4 * beats_per_bar
        for drum, line in pattern.items():
            for step, ch in enumerate(line):
                if ch == "." or step >= fill_from:
                    continue
                vel = _VELOCITY[ch] * gain + rng.normal(0.0, velocity_jitter)
                part.add(start + step / 4, _HIT_BEATS, drum, vel)
        if family == "jazz":
            # Snare comping: a few ghost notes and swung accents, different every bar.
            for step in range(2, fill_from, 4):
                if rng.random() < 0.25:
                    part.add(start + step / 4, _HIT_BEATS, SNARE, rng.uniform(35, 70) * gain)
        if fill:
            for step, drum, vel in _FILLS[family]:
                beat = start + beats_per_bar - 1 + step / 4
                part.add(beat, _HIT_BEATS, drum, vel * gain + rng.normal(0.0, velocity_jitter))
        if bar.position == 0 and bar.section in ("chorus", "bridge", "outro") and bar.index > 0:
            part.add(start, 2.0, CRASH, (80 if family == "jazz" else 105) * gain)
    return part

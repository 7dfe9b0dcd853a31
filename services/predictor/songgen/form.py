"""Song form: sections fitted to the requested length, and the chord of every bar."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from services.predictor.songgen.theory import Chord, parse_numeral

#: Relative loudness of each section (scales velocities).
SECTION_INTENSITY = {"intro": 0.8, "verse": 0.9, "chorus": 1.05, "bridge": 0.92, "outro": 0.85}


@dataclass(frozen=True)
class Section:
    """``bars`` bars of one section starting at bar ``start_bar`` (0-based)."""

    name: str
    start_bar: int
    bars: int


@dataclass(frozen=True)
class Bar:
    """One bar of the song.

    Attributes
    ----------
    index : int
        0-based bar number.
    section : str
        Name of the section it belongs to.
    position : int
        Bar number within the section (0-based).
    section_bars : int
        Length of its section in bars.
    chord : Chord
        The bar's chord.
    final : bool
        The song's last bar (the final chord rings to the end).
    """

    index: int
    section: str
    position: int
    section_bars: int
    chord: Chord
    final: bool

    @property
    def intensity(self) -> float:
        return SECTION_INTENSITY[self.section]

    @property
    def last_of_section(self) -> bool:
        return self.position == self.section_bars - 1


def bar_count(*, duration_s: float, tempo_bpm: float, beats_per_bar: int) -> int:
    """Bars needed to cover ``duration_s`` (the last one may be cut short)."""
    return max(1, math.ceil(duration_s * tempo_bpm / 60.0 / beats_per_bar - 1e-9))


def plan_sections(n_bars: int, rng: np.random.Generator) -> list[Section]:
    """Intro, verse/chorus pairs, a bridge after the second chorus, outro: ``n_bars`` in all.

    Sections are 4 bars long (8 when the body has 40 bars or more); the last body section takes
    what is left. Songs under 6 bars have no intro or outro.
    """
    if n_bars < 6:
        intro, outro = 0, 0
    elif n_bars < 12:
        intro, outro = 1, 1
    elif n_bars < 24:
        intro, outro = 2, int(rng.choice([1, 2]))
    else:
        intro, outro = int(rng.choice([2, 4])), int(rng.choice([2, 4]))
    body = n_bars - intro - outro
    unit = 8 if body >= 40 else 4
    order = ["verse", "chorus", "verse", "chorus", "bridge", "chorus"]
    sections: list[Section] = []
    if intro:
        sections.append(Section("intro", 0, intro))
    start, i = intro, 0
    while start < intro + body:
        name = order[i] if i < len(order) else ("verse", "chorus")[(i - len(order)) % 2]
        bars = min(unit, intro + body - start)
        if bars < 2 and sections and sections[-1].name != "intro":
            last = sections.pop()
            sections.append(Section(last.name, last.start_bar, last.bars + bars))
        else:
            sections.append(Section(name, start, bars))
        start += bars
        i += 1
    if outro:
        sections.append(Section("outro", n_bars - outro, outro))
    return sections


def plan_bars(
    sections: list[Section],
    progressions: tuple[tuple[str, ...], ...],
    *,
    mode: str,
    final_chord: str,
    rng: np.random.Generator,
) -> list[Bar]:
    """One chord per bar: each section type cycles its own progression.

    Verse and chorus draw a progression each; the intro vamps on the tonic triad, the outro
    reuses the chorus's progression, and the bridge starts the verse's from its third chord, for
    contrast. The song's last bar holds ``final_chord``.
    """
    verse = progressions[int(rng.integers(len(progressions)))]
    chorus = progressions[int(rng.integers(len(progressions)))]
    bridge = verse[2:] + verse[:2]
    tonic = ("I",) if mode == "major" else ("i",)
    by_section = {"intro": tonic, "verse": verse, "chorus": chorus, "bridge": bridge}
    by_section["outro"] = chorus
    n_bars = sections[-1].start_bar + sections[-1].bars
    bars: list[Bar] = []
    for s in sections:
        prog = by_section[s.name]
        for pos in range(s.bars):
            index = s.start_bar + pos
            final = index == n_bars - 1 and n_bars > 1
            numeral = final_chord if final else prog[pos % len(prog)]
            bars.append(Bar(index, s.name, pos, s.bars, parse_numeral(numeral, mode), final=final))
    return bars

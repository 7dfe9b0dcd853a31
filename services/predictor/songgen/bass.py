"""Bass lines: per-genre styles on the bar's chord.

``pop`` root-fifth figure with pushes, ``eighths`` driving root 8ths (rock), ``offbeat`` house
off-beat 8ths (electronic), ``walking`` quarter-note walking line with chromatic approaches
(jazz), ``sustained`` long roots and fifths (ballad).
"""

from __future__ import annotations

import numpy as np

from services.predictor.songgen.form import Bar
from services.predictor.songgen.score import Part
from services.predictor.songgen.theory import Key, nearest_pitch

_LOWEST = 28  # E1


def _root(bar: Bar, key: Key, center: int) -> int:
    return max(_LOWEST, nearest_pitch((key.tonic + bar.chord.root) % 12, center))


def _figure(style: str, beats: int, rng: np.random.Generator, section: str) -> list[tuple]:
    """(onset, duration, interval above the root or "approach") for one bar."""
    if style == "eighths":
        return [(i / 2, 0.45, 0) for i in range(2 * beats)]
    if style == "offbeat":
        notes = [(i + 0.5, 0.4, 0) for i in range(beats)]
        if section == "chorus":
            notes += [(beats - 0.25, 0.2, 12)]
        return notes
    if style == "sustained":
        if beats == 3:
            return [(0, 2.9, 0)]
        return [(0, 1.9, 0), (2, 1.9, 7 if rng.random() < 0.5 else 0)]
    if style == "pop":
        last = "approach" if rng.random() < 0.5 else 0
        if beats == 3:
            return [(0, 1.4, 0), (1.5, 0.5, 0), (2, 0.9, 7)]
        return [(0, 1.4, 0), (1.5, 0.45, 0), (2, 0.9, 7), (3, 0.45, 12), (3.5, 0.45, last)]
    raise ValueError(f"unknown bass style {style!r}")


def bass_part(
    bars: list[Bar],
    *,
    style: str,
    key: Key,
    program: int,
    beats_per_bar: int,
    center: int,
    velocity_jitter: float,
    rng: np.random.Generator,
    active: set[str],
    name: str = "bass",
) -> Part:
    """The bass part: one figure per bar in the sections named in ``active``.

    Parameters
    ----------
    style : str
        One of the styles in the module docstring.
    center : int
        MIDI pitch the roots are chosen nearest to.
    active : set[str]
        Section names the bass plays in (it always plays the final bar).
    """
    part = Part(name=name, program=program)
    for i, bar in enumerate(bars):
        start = bar.index * beats_per_bar
        root = _root(bar, key, center)
        vel = 92 * bar.intensity
        if bar.final:
            part.add(start, beats_per_bar * 2, root, vel)
            continue
        if bar.section not in active:
            continue
        nxt = _root(bars[i + 1], key, center) if i + 1 < len(bars) else root
        if style == "walking":
            tones = [root + iv for iv in bar.chord.intervals if iv < 12] + [root + 12]
            line = [root]
            for _ in range(beats_per_bar - 2):
                line.append(int(rng.choice([t for t in tones if t != line[-1]])))
            line.append(nxt + (1 if rng.random() < 0.5 else -1))
            for beat, pitch in enumerate(line):
                accent = 8 if beat % 2 == 0 else 0
                part.add(start + beat, 0.92, pitch, vel + accent + rng.normal(0, velocity_jitter))
            continue
        for onset, dur, interval in _figure(style, beats_per_bar, rng, bar.section):
            pitch = nxt - 1 if interval == "approach" else root + interval
            accent = 10 if onset == int(onset) else 0
            part.add(start + onset, dur, pitch, vel + accent + rng.normal(0, velocity_jitter))
    return part

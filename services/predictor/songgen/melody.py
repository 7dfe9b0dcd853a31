"""Lead melodies from the key's scale, with phrase structure.

Each section type (verse, chorus, bridge) gets its own two-bar motif: a rhythm drawn from the
genre's rhythm cells and a contour of scale steps. A four-bar phrase plays the motif, then the
motif again ending on a long note (call and response), so a chorus comes back the same way
every time; a phrase ends on the tonic when the chord holds it. Notes on strong beats and long
notes snap to the tones of the bar's triad; the rest move by scale steps inside an octave and a
half around the instrument's register.
"""

from __future__ import annotations

import numpy as np

from services.predictor.songgen.form import Bar
from services.predictor.songgen.score import Part
from services.predictor.songgen.theory import Key, nearest_pitch

#: One-bar rhythm cells in 4/4: (onset, duration) in beats. 3/4 keeps the notes inside the bar.
_CELLS: dict[str, tuple[tuple[tuple[float, float], ...], ...]] = {
    "plain": (
        ((0, 1), (1, 0.5), (1.5, 1.5), (3, 1)),
        ((0, 0.5), (0.5, 0.5), (1, 1), (2, 2)),
        ((0.5, 0.5), (1, 0.5), (1.5, 0.5), (2, 1), (3, 1)),
        ((0, 1.5), (1.5, 0.5), (2, 2)),
        ((0, 1), (1, 1), (2, 1), (3, 1)),
        ((1, 1), (2, 0.5), (2.5, 1.5)),
    ),
    "busy": (
        ((0, 0.5), (0.5, 0.5), (1, 0.5), (1.5, 0.5), (2, 1), (3, 0.5), (3.5, 0.5)),
        ((0, 0.75), (0.75, 0.75), (1.5, 0.5), (2, 1.5), (3.5, 0.5)),
        ((0.5, 0.5), (1, 0.5), (1.5, 0.5), (2, 0.5), (2.5, 0.5), (3, 1)),
        ((0, 0.25), (0.25, 0.25), (0.5, 0.5), (1, 1), (2.5, 0.5), (3, 1)),
    ),
    "slow": (
        ((0, 2), (2, 1), (3, 1)),
        ((0, 1.5), (1.5, 0.5), (2, 2)),
        ((0, 3), (3, 1)),
        ((1, 1), (2, 2)),
    ),
}
_STYLE_CELLS = {
    "vocal": ("plain",),
    "guitar": ("plain", "busy"),
    "synth": ("busy", "plain"),
    "horn": ("busy", "plain"),
    "song": ("slow", "plain"),
}
_STEPS = np.array([-3, -2, -1, -1, 0, 1, 1, 2, 3])


def _motif(style: str, beats_per_bar: int, rng: np.random.Generator) -> list[tuple]:
    """Two bars of (bar offset, onset, duration, scale step)."""
    families = _STYLE_CELLS[style]
    notes = []
    for b in range(2):
        family = families[int(rng.integers(len(families)))]
        cells = _CELLS[family]
        cell = cells[int(rng.integers(len(cells)))]
        for onset, dur in cell:
            if onset < beats_per_bar:
                step = int(rng.choice(_STEPS))
                notes.append((b, float(onset), float(min(dur, beats_per_bar - onset)), step))
    return notes


def lead_part(
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
    name: str = "lead",
) -> Part:
    """The lead line in the sections named in ``active``.

    Parameters
    ----------
    style : str
        ``vocal``, ``guitar``, ``synth``, ``horn`` or ``song`` (which rhythm cells to use).
    center : int
        MIDI pitch of the middle of the lead's range.
    """
    part = Part(name=name, program=program)
    scale = [p for p in range(center - 10, center + 11) if p % 12 in key.scale]
    motifs: dict[str, list[tuple]] = {}
    idx = len(scale) // 2
    for bar in bars:
        start = bar.index * beats_per_bar
        if bar.final:
            if bar.section in active:
                part.add(start, 2.0 * beats_per_bar, nearest_pitch(key.tonic, center), 88)
            continue
        if bar.section not in active:
            continue
        if bar.section not in motifs:
            motifs[bar.section] = _motif(style, beats_per_bar, rng)
        motif = motifs[bar.section]
        phrase_bar = bar.position % 4
        if bar.position == 0:
            idx = len(scale) // 2
        notes = [n for n in motif if n[0] == phrase_bar % 2]
        chord_pcs = bar.chord.pitch_classes(key)[:3]  # the triad: 7ths and 9ths are colour
        for k, (_, onset, dur, step) in enumerate(notes):
            if phrase_bar == 3 and k == len(notes) - 1:
                dur = beats_per_bar - onset  # phrase end: a long note
            idx = int(np.clip(idx + step, 0, len(scale) - 1))
            pitch = scale[idx]
            cadence = phrase_bar == 3 and k == len(notes) - 1
            if cadence and key.tonic in chord_pcs:
                pitch = nearest_pitch(key.tonic, pitch)  # phrases come home to the tonic
            elif cadence or (onset == int(onset) and (onset % 2 == 0 or dur >= 1)):
                tones = [p for p in range(center - 10, center + 11) if p % 12 in chord_pcs]
                pitch = min(tones, key=lambda p, q=pitch: (abs(p - q), p))
                idx = int(np.argmin([abs(s - pitch) for s in scale]))
            vel = (84 + (8 if onset == 0 else 0)) * bar.intensity
            part.add(start + onset, dur * 0.95, pitch, vel + rng.normal(0, velocity_jitter))
    return part

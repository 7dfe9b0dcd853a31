"""Chord parts (keys, guitars, pads, arpeggios, strings) on the bar's chord.

Styles: ``block`` piano chords (halves in verses, quarters in choruses), ``power`` rock power
chords (8th-note chugs in verses, ringing in choruses), ``pad`` sustained chords with side-chain
pumping (expression dips on every beat), ``comp`` jazz comping with 7th chords (9ths rootless) on
syncopated rhythms, ``arpeggio`` broken chords in 8ths over a bass note (ballad piano, clean rock
guitar), ``strum`` guitar strums (pop), ``arp16`` a 16th-note synth arpeggio over two octaves.
Voicings are close and voice-led from bar to bar (:func:`.theory.voice_chord`).
"""

from __future__ import annotations

import numpy as np

from services.predictor.songgen.form import Bar
from services.predictor.songgen.score import Part
from services.predictor.songgen.theory import Key, nearest_pitch, voice_chord

EXPRESSION = 11
#: Jazz comping rhythms for one 4/4 bar: (onset, duration) in beats; 3/4 uses those inside.
_COMP_RHYTHMS = (
    ((0.0, 1.0), (1.5, 1.0)),  # Charleston
    ((1.5, 0.5), (3.5, 0.5)),  # anticipations
    ((0.0, 2.0), (2.5, 1.0)),
    ((1.0, 0.5), (2.5, 1.5)),
)
_STRUM = (0.0, 1.0, 1.5, 2.5, 3.0, 3.5)  # down, down-up, up, down-up


def _pcs(bar: Bar, key: Key, *, triad_only: bool = False) -> tuple[int, ...]:
    pcs = bar.chord.pitch_classes(key)
    return pcs[:3] if triad_only and len(pcs) > 3 else pcs


def chord_part(
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
    name: str,
) -> Part:
    """A chord part in the sections named in ``active`` (always the final bar).

    Parameters
    ----------
    style : str
        One of the styles in the module docstring.
    center : int
        MIDI pitch the voicings are centred on.
    """
    part = Part(name=name, program=program)
    previous: tuple[int, ...] = ()
    bpb = beats_per_bar
    for bar in bars:
        start = bar.index * bpb
        gain = bar.intensity
        if not (bar.final or bar.section in active):
            continue
        pcs = _pcs(bar, key, triad_only=style in ("strum", "arpeggio", "arp16", "block"))

        def hit(
            onset: float, dur: float, pitches: list[int], vel: float, at: float = start
        ) -> None:
            for p in pitches:
                part.add(at + onset, dur, p, vel + rng.normal(0, velocity_jitter))

        if style == "power":
            root = nearest_pitch(pcs[0], center - 4)
            voicing = [root, root + 7, root + 12]
        elif style == "comp" and len(pcs) >= 5:
            voicing = voice_chord(pcs[1:], center=center, previous=previous)  # rootless 9th
        else:
            voicing = voice_chord(pcs, center=center, previous=previous)
        previous = tuple(voicing)
        if bar.final:
            hit(0.0, 2.0 * bpb, voicing, 85 * gain)
            continue
        if style == "block":
            step = 1.0 if bar.section == "chorus" else 2.0
            for k in range(int(bpb / step)):
                hit(k * step, step * 0.95, voicing, (78 if k == 0 else 68) * gain)
        elif style == "power":
            if bar.section == "chorus":
                hit(0.0, bpb - 0.05, voicing, 100 * gain)
            else:
                for k in range(2 * bpb):
                    hit(k / 2, 0.3, voicing, (92 if k % 2 == 0 else 78) * gain)
        elif style == "pad":
            hit(0.0, bpb, voicing, 80 * gain)
            if bar.section != "intro":  # side-chain pumping, ducked on every beat
                for beat in range(bpb):
                    for k, level in enumerate((40, 70, 95, 112, 122, 127)):
                        part.controls.append((start + beat + k * 0.1, EXPRESSION, level))
            else:
                part.controls.append((start, EXPRESSION, 127))
        elif style == "comp":
            rhythm = _COMP_RHYTHMS[int(rng.integers(len(_COMP_RHYTHMS)))]
            for onset, dur in rhythm:
                if onset < bpb:
                    hit(onset, min(dur, bpb - onset), voicing, 72 * gain)
        elif style == "arpeggio":
            low = nearest_pitch(pcs[0], center - 14)
            hit(0.0, bpb, [low], 74 * gain)
            cycle = voicing + [voicing[0] + 12] + voicing[1:][::-1]
            for k in range(2 * bpb):
                hit(k / 2, 1.0, [cycle[k % len(cycle)]], (70 if k % 2 == 0 else 62) * gain)
        elif style == "strum":
            low = nearest_pitch(pcs[0], center - 12)
            strings = [low, *voicing, voicing[0] + 12]
            for onset in _STRUM[: 3 if bpb == 3 else None]:
                up = onset % 1 != 0
                order = strings[::-1] if up else strings
                for k, p in enumerate(order):
                    part.add(
                        start + onset + 0.02 * k,
                        0.45,
                        p,
                        (62 if up else 78) * gain + rng.normal(0, velocity_jitter),
                    )
        elif style == "arp16":
            tones = voicing + [p + 12 for p in voicing]
            for k in range(4 * bpb):
                hit(k / 4, 0.22, [tones[k % len(tones)]], (82 if k % 4 == 0 else 64) * gain)
        else:
            raise ValueError(f"unknown chord style {style!r}")
    return part

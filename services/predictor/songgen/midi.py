"""A :class:`.score.Part` as a Standard MIDI File (type 0, one channel), with swing and humanised
timing applied on the way.

Swing moves every off-beat 8th to ``swing`` of the beat (0.5 = straight, 2/3 = triplet feel),
stretching the notes around it piecewise linearly; humanising adds Gaussian jitter (milliseconds)
to every onset. Notes are cut at the song's end; a note that would overlap the next note of the
same pitch is shortened so its note-off does not silence the next one.
"""

from __future__ import annotations

import math
from pathlib import Path

import mido
import numpy as np

from services.predictor.songgen.score import Part

TICKS_PER_BEAT = 960
DRUM_CHANNEL = 9  # MIDI channel 10
_PAN, _VOLUME, _EXPRESSION, _REVERB, _CHORUS = 10, 7, 11, 91, 93


def swing_beats(beats: np.ndarray, swing: float) -> np.ndarray:
    """Map straight beat positions to swung ones (off-beat 8ths at ``swing`` of the beat)."""
    whole = np.floor(beats)
    frac = beats - whole
    swung = np.where(frac < 0.5, frac * 2 * swing, swing + (frac - 0.5) * 2 * (1 - swing))
    return whole + swung


def write_midi(
    part: Part,
    path: Path,
    *,
    tempo_bpm: float,
    beats_per_bar: int,
    swing: float,
    humanize_ms: float,
    end_s: float,
    rng: np.random.Generator,
) -> int:
    """Write ``part`` to ``path``; returns the number of notes written.

    Parameters
    ----------
    tempo_bpm : float
        Quarter-note tempo.
    beats_per_bar : int
        Written into the time-signature meta event (3/4 or 4/4).
    swing : float
        Swing ratio, 0.5 = straight.
    humanize_ms : float
        Standard deviation of the onset jitter.
    end_s : float
        Song length: later notes are dropped, longer ones cut.
    rng : numpy.random.Generator
        The jitter's random stream.
    """
    tempo_us = round(60e6 / tempo_bpm)
    ticks_per_s = 1e6 / tempo_us * TICKS_PER_BEAT
    end_tick = math.floor(end_s * ticks_per_s)
    channel = DRUM_CHANNEL if part.drums else 0

    events: list[tuple[int, int, mido.Message]] = []  # (tick, order, message)
    if part.notes:
        arr = np.array(part.notes, dtype=np.float64)
        on = swing_beats(arr[:, 0], swing)
        off = swing_beats(arr[:, 0] + arr[:, 1], swing)
        jitter = rng.normal(0.0, humanize_ms / 1000.0, len(arr)) if humanize_ms > 0 else 0.0
        on_s = np.maximum(on * 60.0 / tempo_bpm + jitter, 0.0)
        off_s = np.maximum(off * 60.0 / tempo_bpm + jitter, on_s + 0.01)
        on_t = np.round(on_s * ticks_per_s).astype(np.int64)
        off_t = np.minimum(np.round(off_s * ticks_per_s).astype(np.int64), end_tick)
        pitches = arr[:, 2].astype(int)
        velocities = arr[:, 3].astype(int)
        order = np.lexsort((pitches, on_t))
        last_on: dict[int, int] = {}
        kept = []
        for i in order[::-1]:  # from the end: cut each note at the next onset of its pitch
            if on_t[i] >= end_tick:
                continue
            nxt = last_on.get(pitches[i])
            stop = off_t[i] if nxt is None else min(off_t[i], nxt)
            last_on[pitches[i]] = on_t[i]
            if stop > on_t[i]:
                kept.append((on_t[i], stop, pitches[i], velocities[i]))
        for on_tick, off_tick, pitch, vel in kept:
            note = int(pitch)
            events.append(
                (
                    int(on_tick),
                    2,
                    mido.Message("note_on", channel=channel, note=note, velocity=int(vel)),
                )
            )
            events.append(
                (int(off_tick), 0, mido.Message("note_off", channel=channel, note=note, velocity=0))
            )
    for beat, control, value in part.controls:
        tick = round(float(swing_beats(np.array([beat]), swing)[0]) * TICKS_PER_BEAT)
        if tick < end_tick:
            events.append(
                (
                    tick,
                    1,
                    mido.Message("control_change", channel=channel, control=control, value=value),
                )
            )
    events.sort(key=lambda e: (e[0], e[1]))

    track = mido.MidiTrack()
    track.append(mido.MetaMessage("set_tempo", tempo=tempo_us, time=0))
    track.append(mido.MetaMessage("time_signature", numerator=beats_per_bar, denominator=4, time=0))
    for control, value in (
        (_VOLUME, 100),
        (_PAN, 64),
        (_EXPRESSION, 127),
        (_REVERB, 0),
        (_CHORUS, 0),
    ):
        track.append(mido.Message("control_change", channel=channel, control=control, value=value))
    track.append(mido.Message("program_change", channel=channel, program=part.program))
    now = 0
    for tick, _, msg in events:
        track.append(msg.copy(time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=max(0, end_tick - now)))
    mf = mido.MidiFile(type=0, ticks_per_beat=TICKS_PER_BEAT)
    mf.tracks.append(track)
    mf.save(path)
    return sum(1 for e in events if e[2].type == "note_on")

#!/usr/bin/env python3
"""Deterministic example-song generator (pure numpy/scipy; no soundfonts, no downloads).

Writes a short pop/rock-ish stereo song plus a sidecar JSON with its ground truth, so the
repository can ship (and regenerate) ``examples/example.flac`` and benchmarks can make songs of
any length::

    python scripts/make_example_song.py -o examples/example.flac \
        --seed 1 --duration 24 --bpm 112 --key "A minor"

Arrangement: synthesized drums (pitch-swept sine kick with a beater click, noise+tone snare,
high-passed noise hats on 8ths, crash on section changes) in a 4/4 backbeat; a bass line on a
i-VI-III-VII (minor) or I-V-vi-IV (major) progression, one chord per bar; detuned-saw chord pads
with a tonic pedal on top; a lead melody from the scale; a small noise-IR reverb. Kick, snare
and bass sit in the centre, hats right, the lead slightly left, pads and reverb wide. Sections:
an intro vamping on the tonic (pads + hats), alternating verse/chorus blocks (4 bars each in
songs under 24 bars, else 8), and a final hit on the tonic. The master is deliberately
imperfect (a boomy low-mid bump, a dull top, peak -3 dBFS, roughly -20 LUFS) so a mix chain has
work to do. Tempo and key read unambiguously at about 90-175 BPM; below that the 8th-note
groove reads as double time to a beat tracker.

Everything is drawn from ``numpy.random.default_rng(seed)``, so the same arguments give the
same samples. The generator lives here in ``scripts/`` on purpose: package code must not import
it (tests load it with ``importlib``).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import soundfile as sf
from scipy import fft as sp_fft
from scipy import signal

GENERATOR_VERSION = 1
PEAK_DBFS = -3.0
FADE_S = 0.05
PCM16_SCALE = 32767.0

TONICS: dict[str, int] = {
    "C": 0, "C#": 1, "Db": 1, "D": 2, "D#": 3, "Eb": 3, "E": 4, "F": 5, "F#": 6, "Gb": 6,
    "G": 7, "G#": 8, "Ab": 8, "A": 9, "A#": 10, "Bb": 10, "B": 11,
}  # fmt: skip
SHARP_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
FLAT_NAMES = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")
SCALES: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
}
# (semitones above the tonic, chord quality, roman numeral), one chord per bar.
PROGRESSIONS: dict[str, tuple[tuple[int, str, str], ...]] = {
    "minor": ((0, "min", "i"), (8, "maj", "VI"), (3, "maj", "III"), (10, "maj", "VII")),
    "major": ((0, "maj", "I"), (7, "maj", "V"), (9, "min", "vi"), (5, "maj", "IV")),
}
TRIADS = {"maj": (0, 4, 7), "min": (0, 3, 7)}
AUDIO_FORMATS = {".flac": "FLAC", ".wav": "WAV"}

# Mix levels (linear gains) of the stems before the master EQ and peak normalisation.
LEVELS: dict[str, float] = {
    "kick": 0.7,
    "snare": 0.95,
    "hats": 0.3,
    "cymbals": 0.07,
    "bass": 0.31,
    "pads": 0.3,
    "lead": 0.2,
    "reverb": 0.22,
}

STEPS_PER_BAR = 16  # 16th-note grid in 4/4

# Drum patterns (16th steps within a bar).
KICK_VERSE = ((0, 8), (0, 8, 10), (0, 6, 8), (0, 3, 8, 10))
KICK_CHORUS = ((0, 6, 8, 10), (0, 8, 10, 14), (0, 3, 6, 8, 10))
# Bass patterns: (step, length in steps, semitones above the chord root).
BASS_PATTERNS = (
    tuple((s, 2, 0) for s in range(0, 16, 2)),
    ((0, 3, 0), (3, 3, 0), (6, 2, 12), (8, 3, 0), (11, 3, 7), (14, 2, 12)),
    ((0, 6, 0), (6, 2, 0), (8, 4, 0), (12, 2, 7), (14, 2, 12)),
    ((0, 2, 0), (2, 2, 12), (4, 2, 0), (6, 2, 12), (8, 2, 0), (10, 2, 12), (12, 2, 7), (14, 2, 0)),
)
# Lead rhythms for one bar: (step, length in steps).
LEAD_RHYTHMS_SPARSE = (
    ((0, 6), (6, 2), (8, 8)),
    ((2, 2), (4, 4), (8, 4), (12, 4)),
    ((0, 4), (4, 4), (10, 6)),
    ((0, 3), (3, 3), (6, 10)),
)
LEAD_RHYTHMS_DENSE = (
    ((0, 2), (2, 2), (4, 4), (8, 2), (10, 2), (12, 4)),
    ((0, 3), (3, 3), (6, 2), (8, 3), (11, 3), (14, 2)),
    ((0, 4), (4, 2), (6, 2), (8, 4), (12, 2), (14, 2)),
    ((2, 2), (4, 2), (6, 4), (10, 2), (12, 4)),
)
LEAD_ENDINGS = (((0, 4), (4, 12)), ((0, 2), (2, 2), (4, 12)), ((0, 16),))


# ---------------------------------------------------------------------------------------------
# Keys and harmony
# ---------------------------------------------------------------------------------------------


class Key(NamedTuple):
    tonic: str
    mode: str  # "major" | "minor"

    @property
    def pitch_class(self) -> int:
        return TONICS[self.tonic]

    @property
    def name(self) -> str:
        return f"{self.tonic} {self.mode}"

    @property
    def scale(self) -> tuple[int, ...]:
        return SCALES[self.mode]

    def note_names(self) -> tuple[str, ...]:
        if "b" in self.tonic[1:]:
            return FLAT_NAMES
        if "#" in self.tonic:
            return SHARP_NAMES
        relative_major = (self.pitch_class + (3 if self.mode == "minor" else 0)) % 12
        return FLAT_NAMES if relative_major in (1, 3, 5, 8, 10) else SHARP_NAMES


def parse_key(text: str) -> Key:
    """Parse ``"<tonic> <major|minor>"``, e.g. ``"A minor"``, ``"Eb major"``, ``"f# minor"``."""
    parts = text.split()
    if len(parts) != 2:
        raise ValueError(f"key must look like 'A minor' or 'Eb major', got {text!r}")
    tonic_raw, mode = parts[0], parts[1].lower()
    tonic = tonic_raw[:1].upper() + tonic_raw[1:]
    if tonic not in TONICS:
        raise ValueError(f"unknown tonic {tonic_raw!r}; expected one of {', '.join(TONICS)}")
    if mode not in SCALES:
        raise ValueError(f"unknown mode {parts[1]!r}; expected 'major' or 'minor'")
    return Key(tonic, mode)


def chord_name(key: Key, degree: int) -> str:
    root, quality, _ = PROGRESSIONS[key.mode][degree]
    name = key.note_names()[(key.pitch_class + root) % 12]
    return name + ("m" if quality == "min" else "")


def midi_to_hz(note: float) -> float:
    return 440.0 * 2.0 ** ((note - 69.0) / 12.0)


def _nearest_octave(pc: int, low: int) -> int:
    """The MIDI note of pitch class ``pc`` in ``[low, low + 12)``."""
    return low + (pc - low) % 12


def _chord_voicing(pcs: tuple[int, ...], centre: int) -> list[int]:
    """Close voicing of the pitch classes, each within a tritone-ish of ``centre``."""
    return sorted(_nearest_octave(pc, centre - 6) for pc in pcs)


# ---------------------------------------------------------------------------------------------
# Song plan
# ---------------------------------------------------------------------------------------------


class Plan(NamedTuple):
    sample_rate: int
    bpm: float
    n_frames: int
    n_bars: int
    intro_bars: int
    end_bar: int  # the final-hit bar; bars after it are ring-out
    section_len: int
    labels: tuple[str, ...]  # per bar: intro | verse | chorus | end | tail

    @property
    def step_s(self) -> float:
        return 60.0 / self.bpm / 4.0

    @property
    def bar_s(self) -> float:
        return self.step_s * STEPS_PER_BAR

    def frame(self, bar: int, step: float) -> int:
        return int(round((bar * STEPS_PER_BAR + step) * self.step_s * self.sample_rate))

    def degree(self, bar: int) -> int:
        if self.labels[bar] in ("intro", "end", "tail"):
            return 0  # the intro vamps on the tonic chord; the song ends on it
        return (bar - self.intro_bars) % 4

    def is_section_start(self, bar: int) -> bool:
        return bar == 0 or self.labels[bar] != self.labels[bar - 1]

    def is_section_last(self, bar: int) -> bool:
        return bar + 1 < self.n_bars and self.labels[bar + 1] != self.labels[bar]


def make_plan(duration_s: float, bpm: float, sample_rate: int) -> Plan:
    n_frames = int(round(duration_s * sample_rate))
    bar_s = 4 * 60.0 / bpm
    n_bars = max(1, math.ceil(duration_s / bar_s - 1e-9))
    if n_bars >= 8:
        intro = 2
        end_bar = n_bars - 1
        if duration_s - end_bar * bar_s < 0.5 * bar_s:
            end_bar -= 1  # too little of the last bar left: end one bar early and ring out
        section_len = 4 if n_bars < 24 else 8
        labels = ["intro"] * intro
        n_blocks = max(1, (end_bar - intro) // section_len)  # the last block takes the rest
        for i in range(end_bar - intro):
            block = min(i // section_len, n_blocks - 1)
            labels.append("verse" if block % 2 == 0 else "chorus")
        labels.append("end")
        labels += ["tail"] * (n_bars - end_bar - 1)
    else:  # too short for an arrangement: the full groove throughout
        intro, end_bar, section_len = 0, n_bars, 4
        labels = ["verse"] * n_bars
    return Plan(sample_rate, bpm, n_frames, n_bars, intro, end_bar, section_len, tuple(labels))


# ---------------------------------------------------------------------------------------------
# DSP helpers
# ---------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _butter(kind: str, cutoff: float | tuple[float, float], sr: int, order: int = 2) -> np.ndarray:
    nyq = 0.5 * sr
    if isinstance(cutoff, tuple):
        wn: float | list[float] = [min(c / nyq, 0.99) for c in cutoff]
    else:
        wn = min(cutoff / nyq, 0.99)
    return signal.butter(order, wn, btype=kind, output="sos")


def _rbj(kind: str, f0: float, gain_db: float, q: float, sr: int) -> np.ndarray:
    """RBJ-cookbook biquad (peaking / lowshelf / highshelf) as one SOS row."""
    a = 10.0 ** (gain_db / 40.0)
    w0 = 2.0 * math.pi * min(f0, 0.45 * sr) / sr
    cw, sw = math.cos(w0), math.sin(w0)
    alpha = sw / (2.0 * q)
    if kind == "peaking":
        b = [1 + alpha * a, -2 * cw, 1 - alpha * a]
        den = [1 + alpha / a, -2 * cw, 1 - alpha / a]
    else:
        sq = 2.0 * math.sqrt(a) * alpha
        if kind == "lowshelf":
            b = [
                a * ((a + 1) - (a - 1) * cw + sq),
                2 * a * ((a - 1) - (a + 1) * cw),
                a * ((a + 1) - (a - 1) * cw - sq),
            ]
            den = [
                (a + 1) + (a - 1) * cw + sq,
                -2 * ((a - 1) + (a + 1) * cw),
                (a + 1) + (a - 1) * cw - sq,
            ]
        elif kind == "highshelf":
            b = [
                a * ((a + 1) + (a - 1) * cw + sq),
                -2 * a * ((a - 1) + (a + 1) * cw),
                a * ((a + 1) + (a - 1) * cw - sq),
            ]
            den = [
                (a + 1) - (a - 1) * cw + sq,
                2 * ((a - 1) - (a + 1) * cw),
                (a + 1) - (a - 1) * cw - sq,
            ]
        else:
            raise ValueError(kind)
    return np.array([[*(x / den[0] for x in b), 1.0, den[1] / den[0], den[2] / den[0]]])


def _saw(freq: float, n: int, sr: int, phase0: float = 0.0) -> np.ndarray:
    """Band-limited (polyBLEP) sawtooth."""
    dt = freq / sr
    t = (phase0 + dt * np.arange(n)) % 1.0
    y = 2.0 * t - 1.0
    lo = t < dt
    x = t[lo] / dt
    y[lo] -= x + x - x * x - 1.0
    hi = t > 1.0 - dt
    x = (t[hi] - 1.0) / dt
    y[hi] -= x * x + x + x + 1.0
    return y


def _envelope(
    n: int, gate: int, attack: int, decay: int, sustain: float, release: int
) -> np.ndarray:
    """ADS envelope up to ``gate`` then a quadratic release over ``release`` frames."""
    idx = np.arange(n, dtype=np.float64)
    a = max(attack, 1)
    ads = np.interp(idx, [0.0, a, a + max(decay, 1)], [0.0, 1.0, sustain])
    gate = min(gate, n)
    level = float(ads[gate - 1]) if gate > 0 else 0.0
    rel = np.clip(1.0 - (idx - gate) / max(release, 1), 0.0, 1.0) ** 2 * level
    return np.where(idx < gate, ads, rel)


def _place(track: np.ndarray, start: int, clip: np.ndarray) -> None:
    """Add ``clip`` (channels, frames) or (frames,) into ``track`` at ``start`` (clipped)."""
    n_total = track.shape[-1]
    if start >= n_total:
        return
    n = min(clip.shape[-1], n_total - start)
    track[..., start : start + n] += clip[..., :n]


# ---------------------------------------------------------------------------------------------
# Instruments
# ---------------------------------------------------------------------------------------------


def _kick(rng: np.random.Generator, sr: int) -> np.ndarray:
    n = int(0.45 * sr)
    t = np.arange(n) / sr
    f = 48.0 + 110.0 * np.exp(-t / 0.035)
    body = np.sin(2.0 * math.pi * np.cumsum(f) / sr) * np.exp(-t / 0.09)
    click = signal.sosfilt(_butter("highpass", 1500.0, sr), rng.standard_normal(n))
    click *= np.exp(-t / 0.008) * 0.9  # beater click: gives every kick a broadband onset
    y = body + click
    y[:16] *= np.linspace(0.0, 1.0, 16)
    return y


def _snare(rng: np.random.Generator, sr: int) -> np.ndarray:
    n = int(0.32 * sr)
    t = np.arange(n) / sr
    tone = (np.sin(2 * math.pi * 185.0 * t) + 0.5 * np.sin(2 * math.pi * 330.0 * t)) * np.exp(
        -t / 0.045
    )
    noise = signal.sosfilt(_butter("bandpass", (1200.0, 7500.0), sr), rng.standard_normal(n))
    y = 0.55 * tone + 1.1 * noise * np.exp(-t / 0.055)
    y = signal.sosfilt(_butter("bandpass", (140.0, 9500.0), sr), y)
    y[:8] *= np.linspace(0.0, 1.0, 8)
    return y


def _hat(rng: np.random.Generator, sr: int, decay_s: float) -> np.ndarray:
    n = int(min(6.0 * decay_s + 0.01, 1.0) * sr)
    t = np.arange(n) / sr
    noise = signal.sosfilt(_butter("highpass", 7000.0, sr, order=4), rng.standard_normal(n))
    return noise * np.exp(-t / decay_s)


def _crash(rng: np.random.Generator, sr: int) -> np.ndarray:
    n = int(2.2 * sr)
    t = np.arange(n) / sr
    noise = signal.sosfilt(_butter("highpass", 3500.0, sr, order=2), rng.standard_normal((2, n)))
    return noise * np.exp(-t / 0.55)


def _bass_note(midi: int, n_gate: int, sr: int) -> np.ndarray:
    n = n_gate + int(0.03 * sr)
    f = midi_to_hz(midi)
    t = np.arange(n) / sr
    tone = 0.55 * _saw(f, n, sr) + np.sin(2.0 * math.pi * f * t)
    # A plucky filter: bright attack, then the harmonics die away faster than the fundamental.
    bright = signal.sosfilt(_butter("lowpass", 900.0, sr), tone)
    dark = signal.sosfilt(_butter("lowpass", 280.0, sr), tone)
    w = np.exp(-t / 0.06)
    env = _envelope(n, n_gate, int(0.004 * sr), int(0.25 * sr), 0.7, int(0.03 * sr))
    return (w * bright + (1.0 - w) * dark) * env


def _pad_chord(notes: tuple[int, ...], n_gate: int, sr: int, phases: np.ndarray) -> np.ndarray:
    """Stereo detuned-saw chord; each side gets its own detune pair (natural width)."""
    release = int(0.45 * sr)
    n = n_gate + release
    out = np.zeros((2, n))
    detunes = ((-9.0, 4.0), (8.0, -5.0))  # cents, left then right
    for v, note in enumerate(notes):
        for ch in range(2):
            for d, cents in enumerate(detunes[ch]):
                f = midi_to_hz(note + cents / 100.0)
                out[ch] += _saw(f, n, sr, phases[v, ch, d])
    sos = _butter("lowpass", 1800.0, sr, order=2)
    out = signal.sosfilt(sos, out, axis=1)
    env = _envelope(n, n_gate, int(0.18 * sr), int(0.4 * sr), 0.8, release)
    return out * env / (2.0 * len(notes))


def _lead_note(midi: int, n_gate: int, sr: int) -> np.ndarray:
    release = int(0.12 * sr)
    n = n_gate + release
    t = np.arange(n) / sr
    vib = 1.0 + 0.004 * np.sin(2.0 * math.pi * 5.2 * t) * np.clip((t - 0.18) / 0.2, 0.0, 1.0)
    phase = 2.0 * math.pi * np.cumsum(midi_to_hz(midi) * vib) / sr
    y = np.zeros(n)
    for h, amp in ((1, 1.0), (2, 0.45), (3, 0.3), (4, 0.12), (5, 0.1), (6, 0.04)):
        y += amp * np.sin(h * phase)
    env = _envelope(n, n_gate, int(0.012 * sr), int(0.15 * sr), 0.75, release)
    return y * env


# ---------------------------------------------------------------------------------------------
# Composition
# ---------------------------------------------------------------------------------------------


def _compose_lead(
    rng: np.random.Generator, key: Key, centre: int, dense: bool
) -> list[tuple[int, int, int]]:
    """A 4-bar melody (one bar per chord): (step from phrase start, length steps, MIDI note)."""
    rhythms = LEAD_RHYTHMS_DENSE if dense else LEAD_RHYTHMS_SPARSE
    r1 = rhythms[rng.integers(len(rhythms))]
    r2 = rhythms[rng.integers(len(rhythms))]
    ending = LEAD_ENDINGS[rng.integers(len(LEAD_ENDINGS))]
    bar_rhythms = (r1, r2, r1, ending)
    tonic = key.pitch_class
    scale_notes = [m for m in range(centre - 10, centre + 11) if (m - tonic) % 12 in key.scale]
    home_pcs = {(tonic + i) % 12 for i in TRIADS["maj" if key.mode == "major" else "min"]}
    notes: list[tuple[int, int, int]] = []
    prev = min(scale_notes, key=lambda m: abs(m - centre))
    for bar, rhythm in enumerate(bar_rhythms):
        root, quality, _ = PROGRESSIONS[key.mode][bar]
        chord_pcs = {(tonic + root + i) % 12 for i in TRIADS[quality]}
        for step, length in rhythm:
            strong = step % 4 == 0
            if strong or bar == 3:
                # Chord tones near the previous note, weighted towards the key's tonic triad
                # (so the melody, like the bass, says which of the relative keys this is).
                tones = [m for m in scale_notes if m % 12 in chord_pcs and abs(m - prev) <= 7]
                tones = tones or [m for m in scale_notes if m % 12 in chord_pcs]
                weights = np.array([3.0 if m % 12 in home_pcs else 1.0 for m in tones])
                pick = tones[int(rng.choice(len(tones), p=weights / weights.sum()))]
                if bar == 3 and step == rhythm[-1][0]:  # phrase ends on the tonic
                    pick = min(
                        (m for m in scale_notes if m % 12 == tonic), key=lambda m: abs(m - prev)
                    )
            else:
                i = scale_notes.index(prev) if prev in scale_notes else len(scale_notes) // 2
                move = int(rng.choice([-2, -1, -1, 1, 1, 2]))
                if abs(scale_notes[i] - centre) > 6:  # drift back towards the centre
                    move = -abs(move) if scale_notes[i] > centre else abs(move)
                pick = scale_notes[int(np.clip(i + move, 0, len(scale_notes) - 1))]
            notes.append((bar * STEPS_PER_BAR + step, length, pick))
            prev = pick
    return notes


class _Cache:
    """Render each distinct note once; repeated notes reuse the samples."""

    def __init__(self) -> None:
        self._items: dict[tuple[object, ...], np.ndarray] = {}

    def get(self, make: Callable[..., np.ndarray], *args: object) -> np.ndarray:
        key = (make.__name__, *(a.tobytes() if isinstance(a, np.ndarray) else a for a in args))
        if key not in self._items:
            self._items[key] = make(*args)
        return self._items[key]


def generate_song(
    *, seed: int, duration_s: float, bpm: float, key: str, sample_rate: int = 44100
) -> tuple[np.ndarray, int]:
    """Render the song: float32 ``(2, frames)`` peaking at -3 dBFS, and the sample rate."""
    if duration_s <= 0:
        raise ValueError("duration_s must be positive")
    if not 30.0 <= bpm <= 300.0:
        raise ValueError("bpm must be within 30..300")
    if not 8000 <= sample_rate <= 384000:
        raise ValueError("sample_rate must be within 8000..384000")
    k = parse_key(key)
    sr = int(sample_rate)
    plan = make_plan(duration_s, bpm, sr)
    rng = np.random.default_rng(seed)
    n = plan.n_frames
    step_frames = plan.step_s * sr

    # --- composition choices (all from the rng, in a fixed order) ---
    kick_verse = KICK_VERSE[rng.integers(len(KICK_VERSE))]
    kick_chorus = KICK_CHORUS[rng.integers(len(KICK_CHORUS))]
    bass_verse = BASS_PATTERNS[rng.integers(len(BASS_PATTERNS))]
    bass_chorus = BASS_PATTERNS[rng.integers(len(BASS_PATTERNS))]
    tonic = k.pitch_class
    lead_low = 64 + (tonic - 64) % 12  # the tonic in E4..D#5
    lead_verse = _compose_lead(rng, k, lead_low + 2, dense=False)
    lead_chorus = _compose_lead(rng, k, lead_low + 7, dense=True)
    pad_phases = rng.random((4, 5, 2, 2))  # (chord, voice, channel, oscillator)

    # Stems in float32 (plenty for summing one-shots; halves the memory of long songs).
    stems = {name: np.zeros(n, np.float32) for name in ("kick", "snare", "hats", "bass", "lead")}
    stems |= {name: np.zeros((2, n), np.float32) for name in ("cymbals", "pads")}
    kick, snare, hats, bass, lead = (stems[k] for k in ("kick", "snare", "hats", "bass", "lead"))
    cymbals, pads = stems["cymbals"], stems["pads"]
    cache = _Cache()

    def at(bar: int, step: float, jitter_ms: float = 0.0) -> int:
        f = plan.frame(bar, step)
        if jitter_ms:
            f += int(round(rng.normal(0.0, jitter_ms) * 1e-3 * sr))
        return max(f, 0)

    for bar in range(plan.n_bars):
        label = plan.labels[bar]
        if label == "tail":
            continue
        degree = plan.degree(bar)
        root_off, quality, _ = PROGRESSIONS[k.mode][degree]
        chord_pcs = tuple((tonic + root_off + i) % 12 for i in TRIADS[quality])
        bass_root = _nearest_octave(chord_pcs[0], 28)
        grooving = label in ("verse", "chorus")
        chorus = label == "chorus"

        # Drums.
        if grooving:
            for s in kick_chorus if chorus else kick_verse:
                vel = (1.0 if s in (0, 8) else 0.8) * rng.uniform(0.92, 1.0)
                _place(kick, at(bar, s), vel * _kick(rng, sr))
            fill = plan.is_section_last(bar)
            for s in (4, 12) if not fill else (4, 12, 13, 14, 15):
                vel = (1.0 if s in (4, 12) else 0.45 + 0.12 * (s - 13)) * rng.uniform(0.9, 1.0)
                _place(snare, at(bar, s, 1.5), vel * _snare(rng, sr))
        if label in ("intro", "verse", "chorus"):
            for s in range(0, 16, 2):
                open_hat = chorus and s == 14
                vel = (0.9 if s % 4 == 0 else 0.6) * rng.uniform(0.8, 1.0)
                decay = 0.16 if open_hat else rng.uniform(0.018, 0.028)
                _place(hats, at(bar, s, 3.0), vel * _hat(rng, sr, decay))
        if (label == "chorus" and plan.is_section_start(bar)) or label == "end":
            _place(cymbals, at(bar, 0), 0.8 * _crash(rng, sr))
        if label == "end":
            _place(kick, at(bar, 0), _kick(rng, sr))

        # Bass.
        if grooving:
            pattern = bass_chorus if chorus else bass_verse
            for s, length, interval in pattern:
                note = bass_root + interval
                gate = int(round(length * step_frames * 0.9))
                clip = cache.get(_bass_note, note, gate, sr)
                _place(bass, at(bar, s), rng.uniform(0.85, 1.0) * clip)
        elif label == "end":
            gate = max(n - plan.frame(bar, 0) - int(0.3 * sr), int(0.5 * sr))
            _place(bass, at(bar, 0), _bass_note(bass_root, gate, sr))

        # Pads: one chord per bar (the end chord holds to the end of the file).
        voicing = _chord_voicing(chord_pcs, 60) + [_nearest_octave(chord_pcs[0], 48)]
        voicing.append(_nearest_octave(tonic, max(voicing) + 1))  # tonic pedal on top
        if label == "end":  # hold, then release just before the end of the file
            gate = max(n - plan.frame(bar, 0) - int(0.5 * sr), int(0.5 * sr))
        else:
            gate = plan.frame(bar + 1, 0) - plan.frame(bar, 0)
        clip = cache.get(_pad_chord, tuple(voicing), gate, sr, pad_phases[degree])
        _place(pads, at(bar, 0), (1.25 if chorus else 1.0) * clip)

        # Lead (verse and chorus; the 4-bar melody lines up with the progression).
        if grooving:
            melody = lead_chorus if chorus else lead_verse
            phrase_bar = (bar - plan.intro_bars) % 4
            for pos, length, note in melody:
                if pos // STEPS_PER_BAR != phrase_bar:
                    continue
                gate = int(round(length * step_frames * 0.92))
                clip = cache.get(_lead_note, note, gate, sr)
                vel = (1.0 if chorus else 0.8) * rng.uniform(0.85, 1.0)
                _place(lead, at(bar, pos % STEPS_PER_BAR, 4.0), vel * clip)

    # --- mix: a small room (decorrelated noise impulse responses, one per side) ---
    ir_n = int(1.0 * sr)
    t_ir = np.arange(ir_n) / sr
    ir = rng.standard_normal((2, ir_n)) * np.exp(-t_ir / 0.2)
    ir = signal.sosfilt(_butter("bandpass", (250.0, 6000.0), sr), ir, axis=1)
    ir[:, : int(0.012 * sr)] = 0.0  # pre-delay
    ir /= np.sqrt(np.sum(ir**2, axis=1, keepdims=True))
    send = 0.35 * snare.astype(np.float64) + 0.15 * lead + 0.06 * (pads[0] + pads[1]) + 0.03 * hats
    del kick, snare, hats, bass, lead, cymbals, pads  # the stems live on in ``stems``
    # One FFT of the send, one per side for the IRs. Kept in float64 so that regenerating the
    # song on another CPU gives the same 16-bit samples (rounding differences stay ~1e-16).
    n_fft = sp_fft.next_fast_len(n + ir_n - 1, real=True)
    send_spectrum = sp_fft.rfft(send, n_fft)
    del send
    spectrum = sp_fft.rfft(ir, n_fft, axis=1)
    spectrum *= send_spectrum
    del send_spectrum
    mix = LEVELS["reverb"] * sp_fft.irfft(spectrum, n_fft, axis=1)[:, :n]
    del spectrum

    # --- then the dry stems: levels and constant-power panning (freed as they are mixed) ---
    pans = {"kick": 0.0, "snare": 0.05, "hats": 0.35, "bass": 0.0, "lead": -0.15}
    for name, pos in pans.items():
        mono = stems.pop(name)
        theta = (pos + 1.0) * math.pi / 4.0
        mix[0] += (LEVELS[name] * math.cos(theta)) * mono
        mix[1] += (LEVELS[name] * math.sin(theta)) * mono
        del mono
    for name in ("cymbals", "pads"):
        mix += LEVELS[name] * stems.pop(name)

    # --- deliberate imperfections: boomy low end, dull top ---
    master_eq = np.vstack(
        [
            _rbj("peaking", 140.0, 4.0, 0.9, sr),
            _rbj("lowshelf", 70.0, 2.0, 0.7, sr),
            _rbj("highshelf", 5500.0, -5.0, 0.7, sr),
        ]
    )
    mix = signal.sosfilt(master_eq, mix, axis=1)

    fade = min(int(round(FADE_S * sr)), n // 2)
    if fade > 0:
        ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, math.pi, fade))
        mix[:, :fade] *= ramp
        mix[:, n - fade :] *= ramp[::-1]

    peak = float(np.max(np.abs(mix))) if n else 0.0
    if peak > 0:
        mix *= 10.0 ** (PEAK_DBFS / 20.0) / peak
    return mix.astype(np.float32), sr


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------


def to_pcm16(audio: np.ndarray) -> np.ndarray:
    """Float ``(channels, frames)`` -> int16 ``(channels, frames)`` (round-half-even, clipped)."""
    scaled = np.round(audio.astype(np.float64) * PCM16_SCALE)
    return np.clip(scaled, -32768, 32767).astype(np.int16)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_song(
    output: Path,
    *,
    seed: int,
    duration_s: float,
    bpm: float,
    key: str,
    sample_rate: int = 44100,
) -> dict[str, object]:
    """Generate, write the audio file (format by extension) and its sidecar JSON; return it."""
    fmt = AUDIO_FORMATS.get(output.suffix.lower())
    if fmt is None:
        raise ValueError(f"unsupported output extension {output.suffix!r}; use .flac or .wav")
    k = parse_key(key)
    audio, sr = generate_song(
        seed=seed, duration_s=duration_s, bpm=bpm, key=k.name, sample_rate=sample_rate
    )
    pcm = to_pcm16(audio)
    output.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(output), pcm.T, sr, format=fmt, subtype="PCM_16")
    plan = make_plan(duration_s, bpm, sr)
    peak = int(np.max(np.abs(pcm.astype(np.int32)))) if pcm.size else 0
    sections: list[dict[str, object]] = []
    for bar, label in enumerate(plan.labels):
        if label == "tail" or (sections and sections[-1]["name"] == label):
            continue
        start = round(bar * plan.bar_s, 6)
        if sections:
            sections[-1]["end_s"] = start
        sections.append({"name": label, "start_bar": bar, "start_s": start})
    if sections:
        sections[-1]["end_s"] = round(pcm.shape[1] / sr, 6)
    meta: dict[str, object] = {
        "generator": "scripts/make_example_song.py",
        "generator_version": GENERATOR_VERSION,
        "file": output.name,
        "seed": seed,
        "duration_s": duration_s,
        "frames": int(pcm.shape[1]),
        "sample_rate": sr,
        "channels": int(pcm.shape[0]),
        "format": fmt,
        "subtype": "PCM_16",
        "tempo_bpm": bpm,
        "time_signature": "4/4",
        "first_downbeat_s": 0.0,
        "key": k.name,
        "progression": [
            {"roman": PROGRESSIONS[k.mode][d][2], "chord": chord_name(k, d)} for d in range(4)
        ],
        "chords_per_bar": [chord_name(k, plan.degree(b)) for b in range(plan.n_bars)],
        "sections": sections,
        "peak_dbfs": round(20.0 * math.log10(peak / 32768.0), 2) if peak else None,
        "sha256": sha256_file(output),
    }
    output.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        help="output audio file (.flac or .wav); the JSON goes beside it",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--duration", type=float, default=24.0, help="seconds (default 24)")
    parser.add_argument("--bpm", type=float, default=112.0)
    parser.add_argument("--key", default="A minor", help="e.g. 'A minor', 'Eb major'")
    parser.add_argument("--sample-rate", type=int, default=44100)
    parser.add_argument(
        "--format",
        choices=sorted(e.lstrip(".") for e in AUDIO_FORMATS),
        help="audio format; default from the output extension",
    )
    args = parser.parse_args(argv)
    output: Path = args.output
    if args.format:
        output = output.with_suffix("." + args.format)
    try:
        parse_key(args.key)
        t0 = time.perf_counter()
        meta = write_song(
            output,
            seed=args.seed,
            duration_s=args.duration,
            bpm=args.bpm,
            key=args.key,
            sample_rate=args.sample_rate,
        )
    except ValueError as e:
        parser.error(str(e))
    elapsed = time.perf_counter() - t0
    print(
        f"wrote {output} ({meta['duration_s']} s, {meta['key']}, {meta['tempo_bpm']} BPM, "
        f"peak {meta['peak_dbfs']} dBFS) and {output.with_suffix('.json')} in {elapsed:.2f} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Test signal generators (no binary fixtures): every signal is float32 ``(channels, frames)``."""

from __future__ import annotations

import numpy as np

NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def sine(freq_hz: float, *, sr: int = 44100, duration_s: float = 2.0, amplitude: float = 0.5,
         channels: int = 2, phase: float = 0.0) -> np.ndarray:
    t = np.arange(int(round(sr * duration_s))) / sr
    x = amplitude * np.sin(2 * np.pi * freq_hz * t + phase)
    return np.tile(x.astype(np.float32), (channels, 1))


def white_noise(rng: np.random.Generator, *, sr: int = 44100, duration_s: float = 2.0,
                amplitude: float = 0.1, channels: int = 2) -> np.ndarray:
    n = int(round(sr * duration_s))
    return (amplitude * rng.standard_normal((channels, n))).astype(np.float32)


def click_track(bpm: float, *, sr: int = 44100, duration_s: float = 20.0, channels: int = 2,
                accent_every: int = 4) -> np.ndarray:
    """Decaying 1.5 kHz clicks on every beat, the downbeat louder."""
    n = int(round(sr * duration_s))
    y = np.zeros(n, dtype=np.float64)
    click_len = int(0.03 * sr)
    t = np.arange(click_len) / sr
    click = np.sin(2 * np.pi * 1500 * t) * np.exp(-t / 0.005)
    period = 60.0 / bpm
    for i, start in enumerate(np.arange(0.0, duration_s - 0.05, period)):
        s = int(round(start * sr))
        amp = 0.9 if i % accent_every == 0 else 0.5
        y[s : s + click_len] += amp * click[: n - s]
    return np.tile(y.astype(np.float32), (channels, 1))


def midi_to_hz(note: float) -> float:
    return float(440.0 * 2.0 ** ((note - 69) / 12.0))


def chord_progression(tonic: str, mode: str, *, sr: int = 22050, seconds_per_chord: float = 1.0,
                      repeats: int = 4, channels: int = 2) -> np.ndarray:
    """I-IV-V-I (major) or i-iv-v-i (minor) with harmonic-rich tones, so key is unambiguous."""
    root = 48 + NOTE_NAMES.index(tonic)
    third = 4 if mode == "major" else 3
    triads = [(0, third, 7), (5, 5 + third, 12), (7, 7 + (4 if mode == "major" else 3), 14),
              (0, third, 7)]
    n = int(sr * seconds_per_chord)
    t = np.arange(n) / sr
    env = np.minimum(1.0, t / 0.02) * np.exp(-t / 1.5)
    parts = []
    for _ in range(repeats):
        for triad in triads:
            y = np.zeros(n)
            for iv in triad:
                f0 = midi_to_hz(root + iv)
                for h in range(1, 6):
                    y += np.sin(2 * np.pi * f0 * h * t) / h
            bass = np.sin(2 * np.pi * midi_to_hz(root + triad[0] - 12) * t)
            parts.append(0.08 * env * (y + bass))
    x = np.concatenate(parts).astype(np.float32)
    return np.tile(x, (channels, 1))

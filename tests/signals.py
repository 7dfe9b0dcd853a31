"""Test signal generators (no binary fixtures): every signal is float32 ``(channels, frames)``."""

from __future__ import annotations

import numpy as np

NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def sine(
    freq_hz: float,
    *,
    sr: int = 44100,
    duration_s: float = 2.0,
    amplitude: float = 0.5,
    channels: int = 2,
    phase: float = 0.0,
) -> np.ndarray:
    t = np.arange(int(round(sr * duration_s))) / sr
    x = amplitude * np.sin(2 * np.pi * freq_hz * t + phase)
    return np.tile(x.astype(np.float32), (channels, 1))


def white_noise(
    rng: np.random.Generator,
    *,
    sr: int = 44100,
    duration_s: float = 2.0,
    amplitude: float = 0.1,
    channels: int = 2,
) -> np.ndarray:
    n = int(round(sr * duration_s))
    return (amplitude * rng.standard_normal((channels, n))).astype(np.float32)


def click_track(
    bpm: float,
    *,
    sr: int = 44100,
    duration_s: float = 20.0,
    channels: int = 2,
    accent_every: int = 4,
) -> np.ndarray:
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


def chord_progression(
    tonic: str,
    mode: str,
    *,
    sr: int = 22050,
    seconds_per_chord: float = 1.0,
    repeats: int = 4,
    channels: int = 2,
) -> np.ndarray:
    """I-IV-V-I (major) or i-iv-v-i (minor) with harmonic-rich tones, so key is unambiguous."""
    root = 48 + NOTE_NAMES.index(tonic)
    third = 4 if mode == "major" else 3
    triads = [
        (0, third, 7),
        (5, 5 + third, 12),
        (7, 7 + (4 if mode == "major" else 3), 14),
        (0, third, 7),
    ]
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


def little_song(
    *, sr: int = 44100, duration_s: float = 8.0, bpm: float = 120.0, channels: int = 2
) -> np.ndarray:
    """Chords over a click-track beat, stereo-offset: enough music for every stage."""
    chords = chord_progression(
        "A",
        "minor",
        sr=sr,
        seconds_per_chord=60.0 / bpm * 2,
        repeats=int(np.ceil(duration_s / (4 * 120.0 / bpm))) + 1,
        channels=1,
    )[0]
    beat = click_track(bpm, sr=sr, duration_s=duration_s, channels=1)[0]
    n = int(round(sr * duration_s))
    mono = 0.7 * chords[:n] + 0.5 * beat[:n]
    if channels == 1:
        return mono[None, :].astype(np.float32)
    right = np.roll(mono, int(0.0007 * sr)) * 0.9
    return np.stack([mono, right]).astype(np.float32)


def write_audio_file(
    path, audio: np.ndarray, sr: int, *, subtype: str = "PCM_16", fmt: str | None = None
) -> None:
    """Write a test file with soundfile (format from the extension unless ``fmt``)."""
    import soundfile as sf

    sf.write(str(path), np.ascontiguousarray(audio.T), sr, subtype=subtype, format=fmt)


def _decay(sr: int, length_s: float, tau_s: float) -> np.ndarray:
    t = np.arange(int(round(sr * length_s))) / sr
    return np.exp(-t / tau_s)


def drum_loop(
    bpm: float,
    *,
    rng: np.random.Generator,
    sr: int = 44100,
    duration_s: float = 12.0,
    channels: int = 2,
    four_on_the_floor: bool = False,
    hats_per_beat: int = 2,
    bass: bool = True,
    bass_hz: float = 55.0,
) -> np.ndarray:
    """Synthetic drum kit: kick, snare on beats 2 and 4, closed hats, optional sub bass.

    ``four_on_the_floor`` puts the kick on every beat (electronic); otherwise it plays beats 1
    and 3. ``hats_per_beat`` hats per beat (0 for none), quieter than kick and snare. With
    ``bass`` a ``bass_hz`` sine note sounds with every kick. The hats are partly in the side
    channel, so stereo output has some width.
    """
    n = int(round(sr * duration_s))
    period = 60.0 / bpm
    kick_env = _decay(sr, 0.25, 0.06)
    tk = np.arange(kick_env.size) / sr
    kick = 0.9 * np.sin(2 * np.pi * (50 * tk + 60 * 0.03 * (1 - np.exp(-tk / 0.03)))) * kick_env
    snare_env = _decay(sr, 0.2, 0.05)
    snare = (
        0.45
        * snare_env
        * (
            rng.standard_normal(snare_env.size)
            + np.sin(2 * np.pi * 190 * np.arange(snare_env.size) / sr)
        )
    )
    hat_env = _decay(sr, 0.05, 0.01)
    hat = 0.15 * hat_env * np.diff(rng.standard_normal(hat_env.size + 1))
    bass_env = _decay(sr, 0.9 * period, 0.4)
    bass_env *= np.minimum(1.0, np.arange(bass_env.size) / (0.005 * sr))
    bass_note = 0.35 * bass_env * np.sin(2 * np.pi * bass_hz * np.arange(bass_env.size) / sr)
    mid = np.zeros(n)
    side = np.zeros(n)

    def place(buf: np.ndarray, sound: np.ndarray, t_s: float) -> None:
        s = int(round(t_s * sr))
        if s < n:
            m = min(sound.size, n - s)
            buf[s : s + m] += sound[:m]

    for i, beat in enumerate(np.arange(0.0, duration_s, period)):
        if four_on_the_floor or i % 2 == 0:
            place(mid, kick, beat)
            if bass:
                place(mid, bass_note, beat)
        if i % 2 == 1:
            place(mid, snare, beat)
        for h in range(hats_per_beat):
            place(mid, hat, beat + h * period / hats_per_beat)
            place(side, 0.3 * hat, beat + h * period / hats_per_beat)
    left, right = mid - side, mid + side
    out = np.stack([left, right]) if channels == 2 else mid[None, :]
    return out.astype(np.float32)


def metric_pattern(
    bpm: float,
    *,
    beats_per_bar: int,
    swing: float = 0.5,
    sr: int = 44100,
    duration_s: float = 24.0,
    channels: int = 2,
) -> np.ndarray:
    """ "Oom-pah(-pah)": a bass note and kick on each downbeat, a lighter chord on the other
    beats, the chord changing every bar (I-IV-V-I in C), and hi-hat ticks on the off-beat
    eighths at ``swing`` of the beat (0.5 straight, 0.67 a triplet shuffle)."""
    n = int(round(sr * duration_s))
    y = np.zeros(n)
    period = 60.0 / bpm
    roots = (48, 53, 55, 48)
    note_len = int(0.9 * period * sr)
    t = np.arange(note_len) / sr
    env = np.minimum(1.0, t / 0.005) * np.exp(-t / (0.4 * period))
    tick_t = np.arange(int(0.02 * sr)) / sr
    tick = np.random.default_rng(0).standard_normal(tick_t.size) * np.exp(-tick_t / 0.003)
    kick = np.sin(2 * np.pi * 60 * t * np.exp(-t / 0.05)) * np.exp(-t / 0.08)
    for i, start in enumerate(np.arange(0.0, duration_s - period, period)):
        s = int(round(start * sr))
        bar, beat = divmod(i, beats_per_bar)
        root = roots[bar % len(roots)]
        stab = np.zeros(note_len)
        for iv in (12, 16, 19):
            for h in range(1, 4):
                stab += np.sin(2 * np.pi * midi_to_hz(root + iv) * h * t) / h
        seg = 0.12 * env * stab
        if beat == 0:
            seg = seg + 0.25 * env * np.sin(2 * np.pi * midi_to_hz(root - 12) * t) + 0.5 * kick
        y[s : s + note_len] += seg[: n - s]
        h0 = int(round((start + swing * period) * sr))
        if h0 + tick.size < n:
            y[h0 : h0 + tick.size] += 0.3 * tick
    return np.tile((0.8 * y / np.abs(y).max()).astype(np.float32), (channels, 1))

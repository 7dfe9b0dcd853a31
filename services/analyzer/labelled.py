"""Labelled songs for scoring the analyzer: generated songs whose tempo, key, metre, feel and
genre are known exactly (:mod:`services.predictor.songgen`).

Seed ranges are disjoint by purpose, so nothing the analyzer was fit to is ever scored:

- ``GENRE_TRAIN_SEED0`` (2 000 000+): songs the genre classifier is trained on;
- ``HELD_OUT_SEED0`` (3 000 000+): the held-out evaluation set of ``mixpilot evaluate-analysis``;
- ``CI_SEED0`` (3 900 000+): the small fixed set the test suite scores.

(The mix models use seeds below 2 000 000; production style uses 5 000 000+.)

Song ``i`` of a set has genre ``GENRES[i % 5]`` and key ``KEYS[(i // 5) % 24]``, so any 120
consecutive songs hold every genre in all 24 keys. Tempo, metre (3/4 in some jazz and ballads)
and feel (swung jazz, shuffled rock) are drawn by the generator from the seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from services.analyzer.genre import GENRES
from services.analyzer.key import MODES, TONICS

GENRE_TRAIN_SEED0 = 2_000_000
HELD_OUT_SEED0 = 3_000_000
CI_SEED0 = 3_900_000
SAMPLE_RATE = 44_100
#: Training songs played off their genre's tempo range: that range widened by this factor either
#: way, within these limits (BPM).
TRAINING_TEMPO_SPREAD = 1.35
TRAINING_TEMPO_LIMITS = (50.0, 200.0)
TEMPO_STREAM = 17
#: Every key the analyzer names, majors first: ``C major`` ... ``B minor``.
KEYS: tuple[str, ...] = tuple(f"{t} {m}" for m in MODES for t in TONICS)


@dataclass(frozen=True)
class SongSpec:
    """What to generate: enough to reproduce the song bit for bit."""

    genre: str
    seed: int
    key: str
    duration_s: float
    #: ``None``: the generator draws it from the genre's range.
    tempo_bpm: float | None = None


def song_specs(count: int, *, seed0: int, duration_s: float) -> list[SongSpec]:
    """The first ``count`` songs of the set starting at ``seed0`` (see the module docstring)."""
    return [
        SongSpec(GENRES[i % len(GENRES)], seed0 + i, KEYS[(i // len(GENRES)) % 24], duration_s)
        for i in range(count)
    ]


def training_specs(count: int, *, seed0: int, duration_s: float) -> list[SongSpec]:
    """:func:`song_specs`, but every other run of five songs is played at a tempo drawn
    log-uniformly from :data:`TRAINING_TEMPO_SPREAD` times the genre's range (within
    :data:`TRAINING_TEMPO_LIMITS`): ballads at 100 BPM, rock at 75. So the tempo model cannot
    learn "ballads are slow" and has to hear where the beat is."""
    from services.predictor.songgen.styles import STYLES

    specs = song_specs(count, seed0=seed0, duration_s=duration_s)
    out = []
    for i, spec in enumerate(specs):
        if (i // len(GENRES)) % 2 == 1:
            low_bpm, high_bpm = STYLES[spec.genre].tempo_bpm
            lo = max(TRAINING_TEMPO_LIMITS[0], low_bpm / TRAINING_TEMPO_SPREAD)
            hi = min(TRAINING_TEMPO_LIMITS[1], high_bpm * TRAINING_TEMPO_SPREAD)
            rng = np.random.default_rng([spec.seed, TEMPO_STREAM])
            tempo = float(np.round(np.exp(rng.uniform(np.log(lo), np.log(hi)))))
            spec = SongSpec(spec.genre, spec.seed, spec.key, spec.duration_s, tempo)
        out.append(spec)
    return out


def render(spec: SongSpec) -> tuple[np.ndarray, dict]:
    """The song's stereo mix (float32, (2, frames), 44.1 kHz) and its ground truth."""
    mix, truth, _ = render_with_rhythm_section(spec)
    return mix, truth


def render_with_rhythm_section(
    spec: SongSpec,
) -> tuple[np.ndarray, dict, dict[str, np.ndarray]]:
    """:func:`render`, plus the song's drums alone and drums with bass (mono, (1, frames)):
    sparser rhythms at the same tempo, which the tempo model also trains on."""
    from services.predictor.songgen import generate_song

    song = generate_song(
        spec.genre,
        spec.seed,
        key=spec.key,
        tempo_bpm=spec.tempo_bpm,
        duration_s=spec.duration_s,
        sample_rate=SAMPLE_RATE,
    )
    roles = {name: stem["role"] for name, stem in song.truth["stems"].items()}
    silent = np.zeros((1, song.mix.shape[1]), dtype=np.float32)
    drums = sum((song.stems[n] for n, r in roles.items() if r == "drums"), silent)
    bass = sum((song.stems[n] for n, r in roles.items() if r == "bass"), silent)
    rhythm = {"drums": drums, "drums+bass": drums + bass}
    return np.asarray(song.mix, dtype=np.float32), song.truth, rhythm

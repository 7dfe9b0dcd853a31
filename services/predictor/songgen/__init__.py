"""Deterministic multitrack song generator: MIDI parts per genre, rendered by FluidSynth, mixed
with known gains and pans, with ground truth (tempo, key, meter, sections, per-stem levels).
Training and test audio for the predictor's models; see ``docs/songgen.md``."""

from services.predictor.songgen.song import (
    GENERATOR_VERSION,
    GeneratedSong,
    generate_song,
    write_song,
)
from services.predictor.songgen.styles import GENRES

__all__ = ["GENERATOR_VERSION", "GENRES", "GeneratedSong", "generate_song", "write_song"]

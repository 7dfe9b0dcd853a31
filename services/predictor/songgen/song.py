"""Deterministic multitrack songs with ground truth: :func:`generate_song` and :func:`write_song`.

Every random choice comes from ``numpy.random.default_rng([seed, stream])``, one stream per
aspect (key, tempo, meter, feel, form, progressions, instruments and mix, one per part, one per
stem's timing), so the same arguments give bit-identical audio, and overriding the key or the
tempo leaves the other choices as they were (the form follows the tempo, since the bar count
does; the progressions follow the mode).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from services.common.errors import InvalidParameterError, MixPilotError
from services.common.loudness import integrated_loudness
from services.predictor.songgen.bass import bass_part
from services.predictor.songgen.chords import chord_part
from services.predictor.songgen.drums import drum_part
from services.predictor.songgen.form import Bar, bar_count, plan_bars, plan_sections
from services.predictor.songgen.melody import lead_part
from services.predictor.songgen.midi import write_midi
from services.predictor.songgen.mixdown import MIX_PEAK_DBFS, mixdown, normalise_stem
from services.predictor.songgen.score import Part
from services.predictor.songgen.soundfont import DRUM_BANK, Soundfont, load_soundfont
from services.predictor.songgen.styles import GENRES, STYLES, GenreStyle, StemStyle
from services.predictor.songgen.synth import fluidsynth_path, fluidsynth_version, render_all
from services.predictor.songgen.theory import TONICS, Key, parse_key

GENERATOR_VERSION = "1.0.0"
TRUTH_SCHEMA = "mixpilot.songgen/1"
MIN_DURATION_S, MAX_DURATION_S = 1.0, 600.0
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 8000, 96000  # FluidSynth's synth.sample-rate range
MIN_TEMPO_BPM, MAX_TEMPO_BPM = 30.0, 300.0

# Random streams: default_rng([seed, stream]) (parts use [seed, _PART, i], timing [seed, _TIME, i]).
_KEY, _TEMPO, _METER, _FEEL, _FORM, _PROGRESSION, _MIX = 1, 2, 3, 4, 5, 6, 7
_PART, _TIME = 100, 200

Progress = Callable[[str, float], None]


@dataclass(frozen=True)
class GeneratedSong:
    """A generated song.

    Attributes
    ----------
    mix : numpy.ndarray
        float32, shape ``(2, frames)``, sample peak :data:`.mixdown.MIX_PEAK_DBFS`.
    stems : dict[str, numpy.ndarray]
        Mono float32 stems, shape ``(1, frames)``, in mix order; ``mix`` is their sum with
        ``truth["stems"][name]["gain_db"]`` and ``["pan"]`` (see :mod:`.mixdown`).
    sample_rate : int
        Of the mix and every stem.
    truth : dict
        The ground truth (schema in ``docs/songgen.md``), JSON-serialisable.
    """

    mix: np.ndarray
    stems: dict[str, np.ndarray]
    sample_rate: int
    truth: dict


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, *stream])


def _check_args(
    genre: str, seed: int, tempo_bpm: float | None, duration_s: float, sample_rate: int
) -> GenreStyle:
    if genre not in STYLES:
        raise InvalidParameterError(f"unknown genre {genre!r}: expected one of {', '.join(GENRES)}")
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise InvalidParameterError(f"seed must be a non-negative integer, not {seed!r}")
    if not MIN_DURATION_S <= duration_s <= MAX_DURATION_S:
        raise InvalidParameterError(
            f"duration must be {MIN_DURATION_S:g}-{MAX_DURATION_S:g} s, not {duration_s:g}"
        )
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise InvalidParameterError(
            f"sample rate must be {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz, not {sample_rate}"
        )
    if tempo_bpm is not None and not MIN_TEMPO_BPM <= tempo_bpm <= MAX_TEMPO_BPM:
        raise InvalidParameterError(
            f"tempo must be {MIN_TEMPO_BPM:g}-{MAX_TEMPO_BPM:g} BPM, not {tempo_bpm:g}"
        )
    return STYLES[genre]


def _choose_program(stem: StemStyle, sf2: Soundfont, rng: np.random.Generator) -> int:
    """A program from the stem's list (seeded), moving on to the next one the soundfont has."""
    bank = DRUM_BANK if stem.role == "drums" else 0
    first = int(rng.integers(len(stem.programs)))
    for k in range(len(stem.programs)):
        program = stem.programs[(first + k) % len(stem.programs)]
        if sf2.has(bank, program):
            return program
    return 0


def _mix_choices(
    style: GenreStyle, sf2: Soundfont, rng: np.random.Generator
) -> tuple[dict[str, int], dict[str, float], dict[str, float]]:
    """Programs, balances (dB) and pans per stem, drawn around the genre's typical values."""
    mirror = -1.0 if rng.random() < 0.5 else 1.0
    programs, balance, pans = {}, {}, {}
    for stem in style.stems:
        programs[stem.name] = _choose_program(stem, sf2, rng)
        balance[stem.name] = round(
            stem.balance_db + float(np.clip(rng.normal(0.0, 1.5), -3.0, 3.0)), 2
        )
        spread = 0.03 if stem.pan == 0.0 else 0.1
        pans[stem.name] = round(
            float(np.clip(mirror * stem.pan + rng.normal(0.0, spread), -1.0, 1.0)), 3
        )
    return programs, balance, pans


def _write_parts(
    style: GenreStyle, bars: list[Bar], key: Key, bpb: int, programs: dict[str, int], seed: int
) -> list[Part]:
    names = {b.section for b in bars}
    parts = []
    for i, stem in enumerate(style.stems):
        rng = _rng(seed, _PART, i)
        common = {
            "program": programs[stem.name],
            "beats_per_bar": bpb,
            "velocity_jitter": style.velocity_jitter,
            "rng": rng,
            "name": stem.name,
        }
        if stem.role == "drums":
            parts.append(drum_part(bars, family=style.drums, **common))
            continue
        if stem.role == "bass":
            active = {"verse", "chorus", "bridge", "outro"}
            if rng.random() < 0.5:
                active.add("intro")
            parts.append(
                bass_part(
                    bars, style=style.bass, key=key, center=stem.register, active=active, **common
                )
            )
        elif stem.role == "chords":
            active = {"intro", "verse", "chorus", "bridge", "outro"}
            parts.append(
                chord_part(
                    bars, style=style.comp, key=key, center=stem.register, active=active, **common
                )
            )
        elif stem.role == "extra":
            active = {"chorus", "bridge", "outro"}
            if style.extra in ("pad", "arpeggio") or "chorus" not in names or rng.random() < 0.5:
                active.add("verse")
            parts.append(
                chord_part(
                    bars, style=style.extra, key=key, center=stem.register, active=active, **common
                )
            )
        else:
            active = {"verse", "chorus"}
            if rng.random() < 0.5:
                active.add("bridge")
            parts.append(
                lead_part(
                    bars, style=style.lead, key=key, center=stem.register, active=active, **common
                )
            )
    return parts


def generate_song(
    genre: str,
    seed: int,
    *,
    key: str | None = None,
    tempo_bpm: float | None = None,
    duration_s: float = 30.0,
    sample_rate: int = 44100,
    soundfont: str | Path | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> GeneratedSong:
    """Compose, render and mix one song.

    Parameters
    ----------
    genre : str
        ``pop``, ``rock``, ``electronic``, ``jazz`` or ``ballad``.
    seed : int
        Non-negative; the same arguments (and soundfont) give bit-identical audio.
    key : str, optional
        ``"A minor"``, ``"F# major"``... (any enharmonic spelling; the truth uses
        :data:`.theory.TONICS`). Drawn from the seed when omitted.
    tempo_bpm : float, optional
        Quarter-note tempo; drawn from the genre's range when omitted.
    duration_s : float
        Exact length of the mix and every stem.
    sample_rate : int
        8000-96000 Hz.
    soundfont : str or Path, optional
        General MIDI ``.sf2``; default the Debian TimGM6mb (see :mod:`.soundfont`).
    workers : int, optional
        FluidSynth processes at a time; default the CPUs available.
    progress : callable, optional
        ``progress(what, fraction)``, fraction in [0, 1].

    Raises
    ------
    InvalidParameterError
        Unknown genre, bad key, or a value out of range.
    ConfigurationError
        FluidSynth or the soundfont is missing.
    """
    style = _check_args(genre, seed, tempo_bpm, duration_s, sample_rate)
    seed = int(seed)
    song_key = parse_key(key) if key is not None else None
    program = fluidsynth_path()
    sf2 = load_soundfont(soundfont)

    if song_key is None:
        r = _rng(seed, _KEY)
        tonic = int(r.integers(12))
        mode = "minor" if r.random() < style.minor_probability else "major"
        song_key = Key(tonic, mode)
    if tempo_bpm is None:
        lo, hi = style.tempo_bpm
        tempo_bpm = float(_rng(seed, _TEMPO).integers(lo, hi + 1))
    tempo_bpm = float(tempo_bpm)
    bpb = 3 if _rng(seed, _METER).random() < style.waltz_probability else 4
    feel = _rng(seed, _FEEL)
    swing = 0.5
    if feel.random() < style.shuffle_probability:
        swing = round(float(feel.uniform(*style.swing)), 3)

    n_bars = bar_count(duration_s=duration_s, tempo_bpm=tempo_bpm, beats_per_bar=bpb)
    sections = plan_sections(n_bars, _rng(seed, _FORM))
    bars = plan_bars(
        sections,
        style.progressions[song_key.mode],
        mode=song_key.mode,
        final_chord=style.final_chord[song_key.mode],
        rng=_rng(seed, _PROGRESSION),
    )
    programs, balance, pans = _mix_choices(style, sf2, _rng(seed, _MIX))
    parts = _write_parts(style, bars, song_key, bpb, programs, seed)
    if progress is not None:
        progress("composing", 0.05)

    frames = round(duration_s * sample_rate)
    done: list[str] = []

    def rendered(name: str) -> None:
        done.append(name)
        if progress is not None:
            progress(f"rendered {name}", 0.05 + 0.85 * len(done) / len(parts))

    with tempfile.TemporaryDirectory(prefix="mixpilot-songgen-") as tmp:
        midis, note_counts = {}, {}
        for i, part in enumerate(parts):
            path = Path(tmp) / f"{part.name}.mid"
            note_counts[part.name] = write_midi(
                part,
                path,
                tempo_bpm=tempo_bpm,
                beats_per_bar=bpb,
                swing=swing,
                humanize_ms=style.humanize_ms,
                end_s=duration_s,
                rng=_rng(seed, _TIME, i),
            )
            midis[part.name] = path
        audio = render_all(
            midis,
            soundfont=sf2.path,
            sample_rate=sample_rate,
            workers=workers or len(os.sched_getaffinity(0)),
            progress=rendered,
        )

    stems: dict[str, np.ndarray] = {}
    stem_lufs: dict[str, float] = {}
    for name, stereo in audio.items():
        mono = np.zeros((1, frames), dtype=np.float64)
        n = min(frames, stereo.shape[1])
        mono[0, :n] = 0.5 * (stereo[0, :n].astype(np.float64) + stereo[1, :n])
        if note_counts[name] and not np.any(mono):
            raise MixPilotError(f"fluidsynth rendered silence for the {name} stem")
        stems[name], stem_lufs[name] = normalise_stem(mono, sample_rate)
    mix, gains, master = mixdown(stems, balance, pans)
    if progress is not None:
        progress("mixed", 1.0)

    beat_s = 60.0 / tempo_bpm
    bar_s = bpb * beat_s
    by_name = {p.name: p for p in parts}
    truth = {
        "schema": TRUTH_SCHEMA,
        "generator_version": GENERATOR_VERSION,
        "genre": genre,
        "seed": seed,
        "tempo_bpm": tempo_bpm,
        "key": song_key.name,
        "tonic": TONICS[song_key.tonic],
        "mode": song_key.mode,
        "time_signature": f"{bpb}/4",
        "swing": swing,
        "duration_s": float(duration_s),
        "sample_rate": int(sample_rate),
        "frames": frames,
        "bars": n_bars,
        "soundfont": {"file": sf2.path.name, "sha256": sf2.sha256},
        "renderer": {"program": "fluidsynth", "version": fluidsynth_version(program)},
        "sections": [
            {
                "name": s.name,
                "start_bar": s.start_bar,
                "bars": s.bars,
                "start_s": round(s.start_bar * bar_s, 6),
                "end_s": round(min(duration_s, (s.start_bar + s.bars) * bar_s), 6),
            }
            for s in sections
        ],
        "chords": [
            {
                "bar": b.index,
                "start_s": round(b.index * bar_s, 6),
                "symbol": b.chord.symbol(song_key),
            }
            for b in bars
        ],
        "stems": {},
        "mix": {
            "peak_dbfs": MIX_PEAK_DBFS,
            "master_gain_db": master,
            "loudness_lufs": integrated_loudness(mix, sample_rate),
            "pan_law": "constant power: left cos, right sin of (pan + 1) * pi / 4",
        },
    }
    for s in style.stems:
        part = by_name[s.name]
        pitches = [n[2] for n in part.notes]
        bank = DRUM_BANK if part.drums else 0
        truth["stems"][s.name] = {
            "role": s.role,
            "program": part.program,
            "bank": bank,
            "instrument": sf2.presets.get((bank, part.program), ""),
            "midi_channel": 10 if part.drums else 1,
            "gain_db": gains[s.name],
            "balance_db": balance[s.name],
            "pan": pans[s.name],
            "loudness_lufs": stem_lufs[s.name],
            "notes": note_counts[s.name],
            "pitch_range": [min(pitches), max(pitches)] if pitches else None,
        }
    return GeneratedSong(mix=mix, stems=stems, sample_rate=sample_rate, truth=truth)


def write_song(song: GeneratedSong, out_dir: str | Path) -> Path:
    """Write ``stems/<name>.wav`` (mono float32), ``mix.wav`` (stereo float32) and
    ``truth.json`` under ``out_dir`` (created); returns ``out_dir``."""
    out = Path(out_dir)
    (out / "stems").mkdir(parents=True, exist_ok=True)
    for name, stem in song.stems.items():
        sf.write(out / "stems" / f"{name}.wav", stem.T, song.sample_rate, subtype="FLOAT")
    sf.write(out / "mix.wav", song.mix.T, song.sample_rate, subtype="FLOAT")
    (out / "truth.json").write_text(json.dumps(song.truth, indent=2) + "\n")
    return out

"""Benchmark of the analysis (reported in docs/analysis.md and the README; not a timed test).

    python scripts/bench_analysis.py [--duration 180] [--runs 5] [--genre rock] [--seed 5]

A generated 44.1 kHz stereo song of ``--duration`` seconds; one core (the process pins itself to
CPU 0 where it can, and numba/BLAS run one thread). Prints the first call of a fresh process
(imports done, JIT compilation and model loading not), then the best of ``--runs`` warm calls of
``analyze()`` as × real time, and the warm cost of each step of the front end and the models.
"""

from __future__ import annotations

import argparse
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"
if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402


def _best(fn: Callable[[], object], runs: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(runs):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=180.0)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--genre", default="rock")
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args()

    from services.predictor.songgen import generate_song

    song = generate_song(args.genre, args.seed, duration_s=args.duration)
    x, sr = np.asarray(song.mix, dtype=np.float32), song.sample_rate

    from services.analyzer import analysis, features, genre, key, levels, meter, tempo

    start = time.perf_counter()
    analysis.analyze(x, sr)
    first = time.perf_counter() - start
    warm, _ = _best(lambda: analysis.analyze(x, sr), args.runs)
    print(f"{args.duration:g} s {args.genre} song, 44.1 kHz stereo, one core")
    print(f"first call in a fresh process: {first:.2f} s (JIT compilation, model loading)")
    print(f"warm analyze(): {warm:.3f} s = {args.duration / warm:.0f}x real time\n")

    steps: list[tuple[str, Callable[[], object]]] = []
    mono = features.analysis_mono(x, sr)
    spectra = features.compute_spectra(y=mono, source_sample_rate=sr)
    onset = tempo.onset_envelope(mel_power=spectra.mel_power, sr=spectra.sr)
    low = tempo.onset_envelope(
        mel_power=spectra.mel_power[spectra.mel_freqs_hz < tempo.LOW_BAND_HZ], sr=spectra.sr
    )
    p = tempo.periodicity(onset_env=onset, low_env=low, sr=spectra.sr, hop_length=512)
    tuning = key.estimate_tuning(magnitude=spectra.magnitude, sr=spectra.sr)
    chroma = key.chromagram(y=spectra.y, sr=spectra.sr, tuning_semitones=tuning)
    beat = tempo.estimate_tempo(p)
    front = analysis.front_end(x, sr)
    tonal = key.key_from_summary(front.key_summary)
    metre = meter.estimate_meter(p, beat, chroma)
    steps += [
        ("levels, loudness, LRA, true peak, stereo", lambda: levels.level_features(x, sr)),
        ("mono downmix + resample to 22.05 kHz", lambda: features.analysis_mono(x, sr)),
        ("STFT + mel spectrogram", lambda: features.compute_spectra(y=mono, source_sample_rate=sr)),
        ("spectral features incl. HPSS", lambda: features.spectral_features(spectra)),
        (
            "onset envelopes (full, low band)",
            lambda: tempo.onset_envelope(mel_power=spectra.mel_power, sr=spectra.sr),
        ),
        (
            "onset periodicity (2 tempograms)",
            lambda: tempo.periodicity(onset_env=onset, low_env=low, sr=spectra.sr, hop_length=512),
        ),
        (
            "onset rate",
            lambda: tempo.onset_rate(mel_power=spectra.mel_power, sr=spectra.sr, hop_length=512),
        ),
        ("tempo level + beat tracking", lambda: tempo.estimate_tempo(p)),
        ("tuning", lambda: key.estimate_tuning(magnitude=spectra.magnitude, sr=spectra.sr)),
        (
            "constant-Q chroma",
            lambda: key.chromagram(y=spectra.y, sr=spectra.sr, tuning_semitones=tuning),
        ),
        ("key model", lambda: key.key_from_summary(front.key_summary)),
        ("metre + swing", lambda: meter.estimate_meter(p, beat, chroma)),
        (
            "genre (timbre + classifier)",
            lambda: genre.classify(analysis.genre_row(front, beat, metre, tonal)),
        ),
    ]
    try:
        from services.analyzer import production

        steps.append(
            ("production style", lambda: production.production_style(x, sr, spectra=spectra))
        )
    except ImportError:
        pass
    print("| step | ms |\n|---|---|")
    for name, fn in steps:
        t, _ = _best(fn, args.runs)
        print(f"| {name} | {1000 * t:.0f} |")


if __name__ == "__main__":
    main()

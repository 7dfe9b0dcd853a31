"""Train the analyzer's small models on generated songs: ``mixpilot train-analyzer``.

Four models, fitted in order because each later one reads the earlier ones' output, exactly as
:func:`services.analyzer.analysis.analyze` runs them:

1. **tempo level** (``weights/tempo.json``): which metrical level of the song's periodicity is the
   quarter-note beat (:func:`services.analyzer.tempo.level_candidates`; a candidate is right when
   within 4 % of the true tempo);
2. **key profiles** (``weights/key.json``): treble and bass chroma profiles per mode
   (:func:`services.analyzer.key.fit_profiles`);
3. **metre** (``weights/meter.json``): 3/4 or 4/4 from the beat grid of model 1;
4. **genre** (``weights/genre.json``): from everything above.

Songs come from :mod:`services.analyzer.labelled` with seeds from
:data:`~services.analyzer.labelled.GENRE_TRAIN_SEED0`, disjoint from the evaluation's. Each
weight file records the command, the seeds, the song length and a validation score (the model
fitted on 80 % of the songs, scored on the other 20 %) before the final fit on all of them.
"""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from services.analyzer import key, linear, meter, tempo
from services.analyzer.genre import GENRE_FEATURES, GENRES
from services.analyzer.labelled import (
    GENRE_TRAIN_SEED0,
    SAMPLE_RATE,
    SongSpec,
    render_with_rhythm_section,
    training_specs,
)

if TYPE_CHECKING:
    from services.analyzer.analysis import FrontEnd

#: Regularisation (scikit-learn's C: larger fits harder) and the key model's L2 penalty.
TEMPO_C = 1.0
METER_C = 1.0
GENRE_C = 1.0
KEY_L2 = 1e-4
TOLERANCE = 0.04
VALIDATION_SHARE = 0.2
CACHE_VERSION = 3


@dataclasses.dataclass(frozen=True)
class Collected:
    """One training song: its ground truth and the analysis front end (without spectra)."""

    truth: dict
    front: FrontEnd
    #: Periodicity of the drums alone and of drums + bass: extra tempo-level examples.
    rhythm: tuple = ()


def collect_song(spec: SongSpec) -> Collected:
    """Render one labelled song and measure its front end (runs in a worker process)."""
    from services.analyzer.analysis import front_end

    mix, truth, rhythm = render_with_rhythm_section(spec)
    front = dataclasses.replace(front_end(mix, SAMPLE_RATE), spectra=None)
    extra = [
        rhythm_periodicity(audio)
        for audio in rhythm.values()
        if float(np.abs(audio).max(initial=0.0)) > 1e-6
    ]
    keep = ("genre", "seed", "key", "tempo_bpm", "time_signature", "swing")
    return Collected({k: truth[k] for k in keep}, front, tuple(extra))


def rhythm_periodicity(audio: np.ndarray) -> tempo.Periodicity:
    """The onset periodicity of a mono stem, as :func:`~services.analyzer.analysis.front_end`
    measures a song's."""
    from services.analyzer.analysis import onset_periodicity

    return onset_periodicity(audio, SAMPLE_RATE)


def collect(
    specs: Sequence[SongSpec],
    *,
    workers: int = 1,
    cache_dir: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[Collected]:
    """:func:`collect_song` for every spec, in ``workers`` processes, cached in ``cache_dir``."""
    path = None
    if cache_dir is not None:
        s0, d = specs[0].seed, specs[0].duration_s
        path = Path(cache_dir) / f"analyzer-v{CACHE_VERSION}-{s0}-{len(specs)}-{d:g}s.pkl"
        if path.exists():
            with path.open("rb") as f:
                return pickle.load(f)  # noqa: S301 - our own cache, written below
    out: list[Collected] = []
    if workers <= 1:
        for i, spec in enumerate(specs):
            out.append(collect_song(spec))
            if progress is not None:
                progress(i + 1, len(specs))
    else:
        from services.analyzer.analysis import warm_up_front_end

        warm_up_front_end()  # compile librosa's numba kernels once, before the workers load them
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for i, item in enumerate(pool.map(collect_song, specs, chunksize=2)):
                out.append(item)
                if progress is not None:
                    progress(i + 1, len(specs))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as f:
            pickle.dump(out, f)
        tmp.replace(path)
    return out


def _split(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic 80/20 split of song indices: every fifth run of five consecutive songs
    validates (a run holds each genre once, so both parts hold every genre)."""
    idx = np.arange(n)
    val = (idx // 5) % round(1 / VALIDATION_SHARE) == 0
    return idx[~val], idx[val]


def fit_tempo(songs: Sequence[Collected], meta: dict) -> linear.LinearModel:
    """The tempo-level selector."""

    def data(items: Sequence[Collected]) -> tuple[np.ndarray, list[str]]:
        rows, labels = [], []
        for s in items:
            truth = float(s.truth["tempo_bpm"])
            for p in (s.front.periodicity, *s.rhythm):
                bpms, feats = tempo.level_candidates(p)
                rows.append(feats)
                labels += [
                    "tempo" if abs(b - truth) <= TOLERANCE * truth else "other" for b in bpms
                ]
        return np.concatenate(rows), labels

    def fit(items: Sequence[Collected], extra: dict) -> linear.LinearModel:
        x, y = data(items)
        return linear.fit_logistic(
            x,
            y,
            features=tempo.LEVEL_FEATURES,
            classes=("other", "tempo"),
            c=TEMPO_C,
            meta={**meta, **extra},
        )

    train, val = _split(len(songs))
    trial = fit([songs[i] for i in train], {})
    hits = [
        tempo_hit(tempo.estimate_tempo(songs[i].front.periodicity, selector=trial).bpm, songs[i])
        for i in val
    ]
    return fit(songs, {"validation_acc1": float(np.mean(hits)), "validation_songs": len(val)})


def tempo_hit(bpm: float, song: Collected) -> bool:
    truth = float(song.truth["tempo_bpm"])
    return abs(bpm - truth) <= TOLERANCE * truth


def fit_key(songs: Sequence[Collected], meta: dict) -> key.KeyProfiles:
    """The treble and bass key profiles."""
    summaries = np.stack([s.front.key_summary for s in songs])
    keys = [s.truth["key"] for s in songs]
    train, val = _split(len(songs))
    trial = key.fit_profiles(summaries[train], [keys[i] for i in train], l2=KEY_L2, meta={})
    exact = [key.key_from_summary(summaries[i], trial).key == keys[i] for i in val]
    return key.fit_profiles(
        summaries,
        keys,
        l2=KEY_L2,
        meta={**meta, "validation_exact": float(np.mean(exact)), "validation_songs": len(val)},
    )


def fit_meter(
    songs: Sequence[Collected], beats: Sequence[tempo.TempoEstimate], meta: dict
) -> linear.LinearModel:
    """The 3/4-or-4/4 classifier, on the beat grids the tempo model gives."""
    rows, labels, index = [], [], []
    for i, (s, b) in enumerate(zip(songs, beats, strict=True)):
        row = meter.meter_features(s.front.periodicity, b, s.front.chroma)
        if row is not None:
            rows.append(row)
            labels.append(s.truth["time_signature"])
            index.append(i)
    x = np.stack(rows)
    train, val = _split(len(rows))

    def fit(sel: np.ndarray, extra: dict) -> linear.LinearModel:
        return linear.fit_logistic(
            x[sel],
            [labels[i] for i in sel],
            features=meter.METER_FEATURES,
            classes=meter.METERS,
            c=METER_C,
            meta={**meta, **extra},
            class_weight="balanced",
        )

    trial = fit(train, {})
    pred = [meter.METERS[int(np.argmax(trial.probabilities(x[i])[0]))] for i in val]
    acc = float(np.mean([p == labels[i] for p, i in zip(pred, val, strict=True)]))
    return fit(np.arange(len(rows)), {"validation_accuracy": acc, "validation_songs": len(val)})


def fit_genre(songs: Sequence[Collected], rows: np.ndarray, meta: dict) -> linear.LinearModel:
    """The genre classifier on :func:`services.analyzer.analysis.genre_row` rows."""
    labels = [s.truth["genre"] for s in songs]
    train, val = _split(len(songs))

    def fit(sel: np.ndarray, extra: dict) -> linear.LinearModel:
        return linear.fit_logistic(
            rows[sel],
            [labels[i] for i in sel],
            features=GENRE_FEATURES,
            classes=GENRES,
            c=GENRE_C,
            meta={**meta, **extra},
        )

    trial = fit(train, {})
    pred = [GENRES[int(np.argmax(trial.probabilities(rows[i])[0]))] for i in val]
    acc = float(np.mean([p == labels[i] for p, i in zip(pred, val, strict=True)]))
    return fit(np.arange(len(songs)), {"validation_accuracy": acc, "validation_songs": len(val)})


def train_all(
    count: int,
    *,
    duration_s: float = 30.0,
    workers: int = 1,
    cache_dir: Path | None = None,
    out_dir: Path = linear.WEIGHTS_DIR,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Collect ``count`` songs and fit all four models into ``out_dir``.

    Returns
    -------
    dict
        The validation figures of each model.
    """
    from services.analyzer.analysis import genre_row

    specs = training_specs(count, seed0=GENRE_TRAIN_SEED0, duration_s=duration_s)
    songs = collect(specs, workers=workers, cache_dir=cache_dir, progress=progress)
    meta = {
        "command": f"mixpilot train-analyzer --songs {count} --duration {duration_s:g}",
        "seeds": [GENRE_TRAIN_SEED0, GENRE_TRAIN_SEED0 + count - 1],
        "duration_s": duration_s,
        "songs": count,
    }
    tempo_model = fit_tempo(songs, meta)
    linear.save(tempo_model, "tempo", out_dir)
    profiles = fit_key(songs, meta)
    out_dir.mkdir(parents=True, exist_ok=True)
    import json

    (out_dir / "key.json").write_text(json.dumps(profiles.to_json(), indent=1) + "\n")
    key.load_profiles.cache_clear()

    beats = [tempo.estimate_tempo(s.front.periodicity, selector=tempo_model) for s in songs]
    meter_model = fit_meter(songs, beats, meta)
    linear.save(meter_model, "meter", out_dir)

    rows = np.stack(
        [
            genre_row(
                s.front,
                b,
                meter.estimate_meter(s.front.periodicity, b, s.front.chroma, model=meter_model),
                key.key_from_summary(s.front.key_summary, profiles),
            )
            for s, b in zip(songs, beats, strict=True)
        ]
    )
    genre_model = fit_genre(songs, rows, meta)
    linear.save(genre_model, "genre", out_dir)
    return {
        "tempo_validation_acc1": tempo_model.meta["validation_acc1"],
        "key_validation_exact": profiles.meta["validation_exact"],
        "meter_validation_accuracy": meter_model.meta["validation_accuracy"],
        "genre_validation_accuracy": genre_model.meta["validation_accuracy"],
    }

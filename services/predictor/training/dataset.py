"""Training examples: generated songs, cut into clips, degraded by drawn targets, as features.

One song seed gives :data:`TARGETS_PER_SONG` targets drawn by
:func:`~services.predictor.training.targets.draw_target`; each degrades the whole generated song
(genre ``GENRES[seed % 5]``, so every split is balanced over the genres), and each of its
:data:`CLIPS_PER_SONG` consecutive clips of :data:`CLIP_S` seconds is an example: the degraded
clip's mid/side log-mel spectrogram (:func:`~services.predictor.features.log_mel`), the analyzer's
musical context of the degraded clip (what the product will see at inference) and the target's
learned parameters, normalised. The clips of one (song, draw) share their target, as the clips of
one uploaded song share its mix: the product averages a song's clip predictions
(:mod:`services.predictor.inference`), and the evaluation scores both single clips and songs.

Everything is a function of the seed: the song (:mod:`services.predictor.songgen`), the clip and
the targets (``numpy.random.default_rng([seed, TARGET_STREAM])``), so :func:`example_audio` can
recreate any example's clean and degraded audio for the audio-domain evaluation. The splits use
disjoint seed ranges (:data:`SPLIT_SEED_BASE`): a held-out song is never seen in training.
Built arrays are cached as ``.npz`` files keyed by the split, its seeds and :data:`VERSION`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from services.analyzer.analysis import analyze, warm_up
from services.predictor.features import CLIP_S, context_vector, log_mel
from services.predictor.strategy import GENRES
from services.predictor.training.targets import LEARNED_INDEX, degrade, draw_target, target_vector

#: Bump when anything that changes the examples changes (it keys the cache). 3: the context
#: states loudness and energy at the reference peak (gain-independent); 4: centred EQ gains.
VERSION = 4
#: Clips per generated song, consecutive from its start; the song is exactly that long.
CLIPS_PER_SONG = 3
#: Targets drawn per song; each applies to all of the song's clips.
TARGETS_PER_SONG = 2
SAMPLE_RATE = 44100
#: Song seeds of each split start here (``base + i``): disjoint ranges, never shared.
SPLIT_SEED_BASE = {"train": 0, "validation": 500_000, "test": 1_000_000}
#: Second word of the target generator's seed (the songs use the seed alone).
TARGET_STREAM = 7


@dataclass(frozen=True)
class Examples:
    """A split's examples as arrays (``n`` examples).

    Attributes
    ----------
    mel : np.ndarray, shape (n, 2, N_MELS, frames), float16
    context : np.ndarray, shape (n, CONTEXT_SIZE), float32
    target : np.ndarray, shape (n, len(LEARNED)), float32
        The learned parameters, normalised to [0, 1].
    seed, clip, draw : np.ndarray, shape (n,), int64
        Where each example comes from (:func:`example_audio` recreates it).
    genre : np.ndarray, shape (n,), int64
        Index into ``GENRES`` of the generated song.
    """

    mel: np.ndarray
    context: np.ndarray
    target: np.ndarray
    seed: np.ndarray
    clip: np.ndarray
    draw: np.ndarray
    genre: np.ndarray

    def __len__(self) -> int:
        return int(self.target.shape[0])


def split_seeds(split: str, count: int) -> list[int]:
    """The first ``count`` song seeds of ``split`` (``train``, ``validation`` or ``test``)."""
    if split not in SPLIT_SEED_BASE:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLIT_SEED_BASE)}")
    return [SPLIT_SEED_BASE[split] + i for i in range(count)]


def song_genre(seed: int) -> str:
    return GENRES[seed % len(GENRES)]


@functools.lru_cache(maxsize=4)
def _song(seed: int) -> np.ndarray:
    """The generated song's mix (cached: an evaluation visits a song's examples in turn)."""
    from services.predictor.songgen import generate_song

    song = generate_song(
        song_genre(seed), seed, duration_s=CLIPS_PER_SONG * CLIP_S, sample_rate=SAMPLE_RATE
    )
    mix = np.asarray(song.mix, dtype=np.float32)
    mix.setflags(write=False)
    return mix


def _draws(seed: int) -> list[dict[str, float]]:
    """The targets of song ``seed``, by draw."""
    rng = np.random.default_rng([seed, TARGET_STREAM])
    return [draw_target(rng) for _ in range(TARGETS_PER_SONG)]


def _clip(mix: np.ndarray, clip: int) -> np.ndarray:
    n = int(round(CLIP_S * SAMPLE_RATE))
    return np.ascontiguousarray(mix[:, clip * n : (clip + 1) * n])


def example_audio(seed: int, clip: int, draw: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """``(clean, degraded, target)`` of one example: the clip, its degraded version and the
    target's physical values."""
    target = _draws(seed)[draw]
    clean = _clip(_song(seed), clip)
    return clean, degrade(clean, SAMPLE_RATE, target), target


def song_examples(seed: int) -> dict[str, np.ndarray]:
    """Every example of one song, as arrays (see :class:`Examples`)."""
    mix = _song(seed)
    mels, contexts, targets, clips, draws = [], [], [], [], []
    for d, target in enumerate(_draws(seed)):
        for c in range(CLIPS_PER_SONG):
            degraded = degrade(_clip(mix, c), SAMPLE_RATE, target)
            mels.append(log_mel(degraded, SAMPLE_RATE).astype(np.float16))
            contexts.append(context_vector(analyze(degraded, SAMPLE_RATE)))
            targets.append(target_vector(target)[LEARNED_INDEX])
            clips.append(c)
            draws.append(d)
    n = len(targets)
    return {
        "mel": np.stack(mels),
        "context": np.stack(contexts).astype(np.float32),
        "target": np.stack(targets).astype(np.float32),
        "seed": np.full(n, seed, dtype=np.int64),
        "clip": np.array(clips, dtype=np.int64),
        "draw": np.array(draws, dtype=np.int64),
        "genre": np.full(n, GENRES.index(song_genre(seed)), dtype=np.int64),
    }


def _cache_key(split: str, seeds: Sequence[int]) -> str:
    spec = {"version": VERSION, "split": split, "seeds": [int(s) for s in seeds]}
    digest = hashlib.sha256(json.dumps(spec).encode()).hexdigest()[:16]
    return f"{split}-{len(seeds)}-{digest}"


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/mixpilot/examples`` (``~/.cache`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mixpilot" / "examples"


def build_examples(
    split: str,
    count: int,
    *,
    workers: int = 1,
    cache_dir: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Examples:
    """The examples of the first ``count`` songs of ``split``, built or loaded from the cache.

    Parameters
    ----------
    split : str
        ``train``, ``validation`` or ``test``.
    count : int
        Songs (each gives ``CLIPS_PER_SONG * TARGETS_PER_SONG`` examples).
    workers : int
        Processes generating songs in parallel.
    cache_dir : Path, optional
        Where built splits are kept (:func:`default_cache_dir`); ``None`` uses the default.
    progress : callable, optional
        Called with ``(songs done, songs)`` as songs finish.
    """
    seeds = split_seeds(split, count)
    directory = default_cache_dir() if cache_dir is None else Path(cache_dir)
    path = directory / f"{_cache_key(split, seeds)}.npz"
    if path.exists():
        with np.load(path) as data:
            return Examples(**{k: data[k] for k in Examples.__dataclass_fields__})
    parts: list[dict[str, np.ndarray]] = []
    if workers <= 1:
        for i, seed in enumerate(seeds):
            parts.append(song_examples(seed))
            if progress is not None:
                progress(i + 1, len(seeds))
    else:
        # The workers must find librosa's numba kernels compiled: two processes compiling its
        # gufuncs at once can leave cache files that segfault whoever loads them next (numba
        # issue 10128). After this the workers only load them.
        warm_up()
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for i, part in enumerate(pool.map(song_examples, seeds, chunksize=4)):
                parts.append(part)
                if progress is not None:
                    progress(i + 1, len(seeds))
    arrays = {k: np.concatenate([p[k] for p in parts]) for k in Examples.__dataclass_fields__}
    directory.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)
    return Examples(**arrays)

"""Previews and re-renders in the renderer (``render_request``): an excerpt sounds like the same
stretch of the full render, at its level; bounds, silence and size are refused clearly; the
cache of decoded songs evicts by size and shares read-only audio."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from mixpilot.v1 import mixpilot_pb2 as pb
from services.common.blobstore import LocalBlobStore
from services.common.errors import InvalidMessageError, InvalidParameterError, LimitExceededError
from services.common.loudness import integrated_loudness
from services.renderer.inputs import InputCache
from services.renderer.preview import excerpt_bounds
from services.renderer.stage import render_request
from tests.signals import little_song

SR = 22_050
EDIT = {
    "comp_threshold_db": -26.0,
    "comp_ratio": 4.0,
    "reverb_mix_pct": 20.0,
    "delay_mix_pct": 10.0,
    "eq_high_shelf_gain_db": 4.0,
}


def _song_with_quiet_verses(duration_s: float = 60.0) -> np.ndarray:
    """Verses 12 dB below the choruses, alternating every 10 s."""
    song = little_song(sr=SR, duration_s=duration_s)
    for verse in range(0, int(duration_s), 20):
        song[:, verse * SR : (verse + 10) * SR] *= 10 ** (-12 / 20)
    return song


def _job(blobs: LocalBlobStore, audio: np.ndarray, sr: int = SR) -> pb.JobEnvelope:
    buf = io.BytesIO()
    sf.write(buf, audio.T, sr, format="FLAC")
    stored = blobs.put_bytes(buf.getvalue(), suffix=".flac")
    job = pb.JobEnvelope(
        job_id="j",
        input=pb.AudioRef(uri=stored.uri, sha256=stored.sha256),
        options=pb.JobOptions(target_lufs=-14.0, true_peak_ceiling_dbtp=-1.0),
    )
    job.analysis.tempo_bpm = 120.0
    return job


def _request(
    job: pb.JobEnvelope,
    start_s: float | None = None,
    duration_s: float = 4.0,
    edit: dict[str, float] = EDIT,
) -> Any:
    request = pb.RenderRequest(
        job=job, extra=[pb.MixParams(version="user", values=edit, source="user")], only_extra=True
    )
    if start_s is not None:
        request.preview.CopyFrom(pb.Excerpt(start_s=start_s, duration_s=duration_s))
    return request


def _wav(data: bytes) -> np.ndarray:
    audio, _ = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return audio.T


@pytest.mark.parametrize("song_s", [60.0, 16.0])  # level estimated / song mixed whole
@pytest.mark.parametrize(
    "edit",
    [
        EDIT,
        {"comp_threshold_db": -36.0, "comp_ratio": 12.0, "comp_makeup_db": 6.0},
        {"eq_low_shelf_gain_db": -6.0, "stereo_width": 1.5},
    ],
    ids=["mixed", "squashed", "gentle"],
)
def test_previews_match_the_full_render_in_sound_and_level(
    tmp_path: Path, song_s: float, edit: dict[str, float]
) -> None:
    blobs = LocalBlobStore(tmp_path)
    job = _job(blobs, _song_with_quiet_verses(song_s))
    cache = InputCache(blobs, max_bytes=1 << 30, max_duration_s=600)
    full = render_request(_request(job, edit=edit), blobs=blobs, max_duration_s=600, inputs=cache)
    assert [o.name for o in full.job.outputs] == ["user"]  # only the edit: no original, no report
    assert not full.job.report.uri and full.job.timings_s["rerender_s"] > 0
    rendered = _wav(blobs.get_bytes(full.job.outputs[0].audio.uri))
    levels = {}
    for start in (2.0, 11.0, song_s - 4.0):  # in a quiet verse, in a chorus, at the end
        answer = render_request(
            _request(job, start, edit=edit), blobs=blobs, max_duration_s=600, inputs=cache
        )
        preview = _wav(answer.preview_wav)
        assert answer.excerpt.start_s == start and answer.excerpt.duration_s == 4.0
        assert preview.shape == (2, 4 * SR)
        region = rendered[:, int(start * SR) : int((start + 4) * SR)]
        corr = np.sum(preview * region) / np.sqrt(np.sum(preview**2) * np.sum(region**2))
        assert corr > 0.99, (start, corr)
        level = integrated_loudness(preview, SR)
        levels[start] = (level, integrated_loudness(region, SR))
        assert answer.job.outputs[0].loudness_lufs == pytest.approx(level, abs=0.01)
        assert answer.job.outputs[0].true_peak_dbtp <= -1.0 + 1e-6
        assert not answer.job.outputs[0].audio.uri  # stored nowhere
    errors = {start: round(p - f, 2) for start, (p, f) in levels.items()}
    assert all(abs(e) < 0.5 for e in errors.values()), errors
    assert cache.misses == 1 and cache.hits == 3  # the song was decoded once


def test_excerpt_bounds() -> None:
    frames = 10 * SR
    assert excerpt_bounds(frames, SR, 2.0, 5.0) == slice(2 * SR, 7 * SR)
    assert excerpt_bounds(frames, SR, 7.0, 5.0) == slice(7 * SR, 10 * SR)  # cut at the end
    for start, duration, says in (
        (9.5, 5.0, "outside the song"),
        (-1.0, 5.0, "outside the song"),
        (float("nan"), 5.0, "outside the song"),
        (0.0, 0.5, "outside 1-30 s"),
        (0.0, 31.0, "outside 1-30 s"),
        (0.0, float("inf"), "outside 1-30 s"),
    ):
        with pytest.raises(InvalidParameterError, match=says):
            excerpt_bounds(frames, SR, start, duration)


def test_bad_preview_requests_are_refused_clearly(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path)
    song = little_song(sr=SR, duration_s=8.0)
    song[:, 4 * SR :] = 0.0  # silent second half
    job = _job(blobs, song)
    with pytest.raises(InvalidParameterError, match="silent from 5 s"):
        render_request(_request(job, 5.0, 2.0), blobs=blobs, max_duration_s=600)
    bare = _request(job, 1.0)
    del bare.extra[:]
    with pytest.raises(InvalidMessageError, match="needs a parameter set"):
        render_request(bare, blobs=blobs, max_duration_s=600)
    two = _request(job, 1.0)
    two.extra.append(pb.MixParams(version="other"))
    with pytest.raises(InvalidMessageError, match="exactly one"):
        render_request(two, blobs=blobs, max_duration_s=600)
    wrong = _request(job, 1.0)
    wrong.extra[0].values["comp_ratio"] = 99.0
    with pytest.raises(InvalidParameterError, match="comp_ratio"):
        render_request(wrong, blobs=blobs, max_duration_s=600)
    # 30 s of 192 kHz stereo would not fit one gRPC message: refused, with the longest that fits.
    hires = _job(blobs, little_song(sr=192_000, duration_s=2.0), sr=192_000)
    with pytest.raises(LimitExceededError, match="previews are at most 13 s"):
        render_request(_request(hires, 0.0, 30.0), blobs=blobs, max_duration_s=600)


def test_the_cache_evicts_the_least_recently_used_by_size(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path)
    refs = [_job(blobs, little_song(sr=SR, duration_s=2.0 + i)).input for i in range(3)]
    one = (2 + 1) * 3 * SR * 4  # the 3 s song: float32 stereo and its power per frame
    cache = InputCache(blobs, max_bytes=int(2.5 * one), max_duration_s=600)
    first = cache.get(refs[0])
    assert not first.audio.flags.writeable  # shared between render threads: read-only
    cache.get(refs[1])
    assert cache.get(refs[0]) is first  # a hit, and now the most recent
    cache.get(refs[2])  # over the bound: refs[1], the least recent, goes
    assert cache.get(refs[0]) is first
    misses = cache.misses
    cache.get(refs[1])
    assert cache.misses == misses + 1
    tiny = InputCache(blobs, max_bytes=1, max_duration_s=600)
    assert tiny.get(refs[2]) is tiny.get(refs[2])  # the newest entry stays even when too big

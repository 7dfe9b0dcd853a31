"""Rendering a job's versions concurrently: the same audio as one at a time, in order, with
progress, and only ``workers`` renders in flight."""

from __future__ import annotations

import threading

import numpy as np

from services.common.params import defaults
from services.renderer.versions import ORIGINAL, render_versions
from tests.signals import little_song

SR = 44_100

SETS = [
    (ORIGINAL, defaults()),
    (
        "everything",
        {
            "eq_low_mid_gain_db": -3.0,
            "comp_threshold_db": -24.0,
            "comp_ratio": 3.0,
            "vcomp_threshold_db": -20.0,
            "vcomp_ratio": 2.0,
            "vcomp_drive_db": 9.0,
            "exciter_mix_pct": 20.0,
            "stereo_width": 1.4,
            "stereo_bass_mono_hz": 120.0,
            "delay_mix_pct": 15.0,
            "reverb_mix_pct": 20.0,
        },
    ),
    ("bright", {"eq_high_shelf_gain_db": 6.0, "comp_threshold_db": -18.0, "comp_ratio": 2.0}),
    ("vintage", {"vcomp_threshold_db": -30.0, "vcomp_ratio": 6.0, "vcomp_drive_db": 18.0}),
]


def _render(audio: np.ndarray, workers: int, progress: list | None = None) -> list:
    return list(
        render_versions(
            audio,
            SR,
            SETS,
            target_lufs=-14.0,
            ceiling_dbtp=-1.0,
            tempo_bpm=120.0,
            workers=workers,
            on_progress=None if progress is None else lambda *a: progress.append(a),
        )
    )


def test_concurrent_renders_equal_sequential_ones() -> None:
    audio = little_song(sr=SR, duration_s=6.0)
    progress: list = []
    one = _render(audio, 1)
    four = _render(audio, 4, progress)
    assert [r.name for r in one] == [r.name for r in four] == [name for name, _ in SETS]
    for a, b in zip(one, four, strict=True):
        np.testing.assert_array_equal(a.result.audio, b.result.audio)
        assert a.result.loudness_lufs == b.result.loudness_lufs
        assert a.result.true_peak_dbtp <= -1.0
    assert progress == [(name, i + 1, len(SETS)) for i, (name, _) in enumerate(SETS)]
    # The versions differ from each other: the parameters reached the audio.
    assert not np.allclose(four[0].result.audio, four[1].result.audio, atol=1e-3)


def test_at_most_workers_renders_in_flight(monkeypatch) -> None:
    import services.renderer.versions as versions

    active = 0
    most = 0
    lock = threading.Lock()
    real = versions.render_version

    def counting(*args, **kwargs):
        nonlocal active, most
        with lock:
            active += 1
            most = max(most, active)
        try:
            return real(*args, **kwargs)
        finally:
            with lock:
                active -= 1

    monkeypatch.setattr(versions, "render_version", counting)
    audio = little_song(sr=SR, duration_s=3.0)
    rendered = _render(audio, 2)
    assert len(rendered) == len(SETS)
    assert most == 2


def test_closing_early_stops_rendering() -> None:
    audio = little_song(sr=SR, duration_s=3.0)
    it = render_versions(
        audio, SR, SETS * 3, target_lufs=-14.0, ceiling_dbtp=-1.0, tempo_bpm=120.0, workers=2
    )
    first = next(it)
    assert first.name == ORIGINAL
    it.close()  # cancels what has not started; must not hang or raise


def test_a_slow_version_does_not_stall_the_others(monkeypatch) -> None:
    """While the second version is still rendering, the other worker goes on with the third and
    the fourth: the slow one is held until the fourth has started (it would wait forever with a
    head-of-line stall, so the wait is bounded and its outcome asserted)."""
    import services.renderer.versions as versions

    fourth_started = threading.Event()
    real = versions.render_version
    names = iter(["original", "slow", "third", "fourth"])
    lock = threading.Lock()

    def render(*args, **kwargs):
        with lock:
            name = next(names)
        if name == "fourth":
            fourth_started.set()
        if name == "slow":
            assert fourth_started.wait(timeout=30), "the fourth version never started"
        return real(*args, **kwargs)

    monkeypatch.setattr(versions, "render_version", render)
    audio = little_song(sr=SR, duration_s=2.0)
    rendered = _render(audio, 2)
    assert [r.name for r in rendered] == [name for name, _ in SETS]
    assert fourth_started.is_set()

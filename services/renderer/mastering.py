"""Final loudness normalisation and true-peak limiting: the last stage of every rendered version.

Gain to the loudness target, true-peak limit, measure the integrated loudness (limiting lowers
it), correct the gain and repeat until the result is within :data:`TOLERANCE_LU` of the target.
When the target is out of reach at the default release, faster releases are tried (peaky material
such as a click track needs the limiter to recover between hits). Pushing stops when more gain
buys almost no loudness (:data:`MIN_USEFUL_SLOPE`: the limiter would only be smashing the signal)
or at :data:`MAX_DRIVE_DB`; at the default release, a plateau or dip in loudness versus gain
(a huge start-up transient whose limiting holds down what follows) is looked past in steps of
:data:`SCAN_STEP_DB`. If the target still cannot be met, the candidate closest to it is returned
and its measured loudness tells the caller.

That search runs on *predictions*, not on rendered audio. A gain scales the input's true-peak
envelope and its K-weighted power exactly, so both are computed once (float32, half the audio's
size each); for a trial gain the limiter's gain curve comes from the scaled envelope, and the
loudness of the limited signal is predicted from the power weighted by the curve squared (exact
for a constant gain; within a few hundredths of an LU of the measurement on music, because
K-weighting does not commute with a moving gain). The search picks a gain on predictions, aiming
within :data:`PLAN_TOLERANCE_LU`; that candidate is rendered (limited, its true peak guaranteed
by the limiter, which reuses the predicted gain curve) and measured. A miss corrects the
predictions at that release by the error measured and the search runs again, at most
:data:`MAX_RENDERS` renders, so the loop always ends; typically one render suffices. The loudness
and true peak reported are always measured on the returned audio.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from services.common.errors import InvalidParameterError
from services.common.loudness import (
    SILENT_LUFS,
    integrated_loudness,
    kweighted_power,
    loudness_of_power,
    oversampled_peak_envelope_f32,
)
from services.renderer.limiter import TruePeakLimiter, checked_audio
from services.renderer.processor import check_sample_rate

#: Stop once the measured integrated loudness is this close to the target.
TOLERANCE_LU = 0.1
#: The search on predictions aims this close, so the measurement lands well inside the tolerance.
PLAN_TOLERANCE_LU = 0.025
#: The quality floor (docs/architecture.md); a faster release is tried when a release misses it.
FLOOR_LU = 0.5
#: Predicted gain steps per release setting.
MAX_ROUNDS = 6
#: Rendered (limited and measured) candidates at most.
MAX_RENDERS = 4
#: Limiter release times tried in turn while the target is out of reach.
RELEASE_STEPS_MS: tuple[float, ...] = (50.0, 15.0, 5.0)
#: Sanity bound: the most the input's loudest true peak may be driven above the ceiling
#: (isolated transients may take a lot of limiting harmlessly, so this is generous).
MAX_DRIVE_DB = 40.0
#: Diminishing returns: once 1 dB more gain buys less than this many LU of loudness, the limiter
#: is smashing the signal and pushing harder at this release stops (20 dB for 1 LU).
MIN_USEFUL_SLOPE = 0.05
#: Largest gain change per step, so the slope above is measured locally.
MAX_STEP_DB = 12.0
#: Step of the scan for a target beyond a plateau or a dip in loudness versus gain.
SCAN_STEP_DB = 3.0
#: Valid loudness targets, LUFS.
TARGET_RANGE_LUFS = (-60.0, 0.0)


@dataclass(frozen=True)
class MasteringResult:
    """Output of :func:`master`.

    Attributes
    ----------
    audio : np.ndarray, shape (channels, frames), float32
    loudness_lufs : float
        Measured integrated loudness of ``audio`` (BS.1770-4).
    true_peak_dbtp : float
        Measured 4x-oversampled true peak of ``audio``; ``-inf`` for digital silence.
    gain_db : float
        Gain applied before the limiter.
    limiter_release_ms : float
        Release of the limiter setting that produced ``audio``.
    rounds : int
        Candidates rendered (limited and measured), at most :data:`MAX_RENDERS`.
    """

    audio: np.ndarray
    loudness_lufs: float
    true_peak_dbtp: float
    gain_db: float
    limiter_release_ms: float
    rounds: int


def _dbtp(peak: float) -> float:
    return 20.0 * math.log10(peak) if peak > 0.0 else -math.inf


class _LoudnessPredictor:
    """Predicted loudness of ``limiter(gain * audio)`` per release, from the input's envelope and
    K-weighted power, plus a per-release correction learnt from measured renders."""

    def __init__(
        self,
        envelope: np.ndarray,
        peak: float,
        power: np.ndarray,
        sample_rate: int,
        limiters: dict[float, TruePeakLimiter],
    ) -> None:
        self.envelope = envelope
        self.peak = peak  # envelope.max()
        self.power = power
        self.sample_rate = sample_rate
        self.limiters = limiters
        self.correction = dict.fromkeys(limiters, 0.0)
        self._raw: dict[tuple[float, float], float] = {}
        self._curve = np.empty(envelope.shape[0], dtype=np.float32)
        self._curve_key: tuple[float, float] | None = None

    def raw(self, release_ms: float, gain_db: float) -> float:
        """The uncorrected prediction (cached)."""
        key = (release_ms, gain_db)
        if key not in self._raw:
            limiter = self.limiters[release_ms]
            gain = 10.0 ** (gain_db / 20.0)
            if self.peak * gain <= limiter.limit_linear:
                # No limiting: exact.
                value = loudness_of_power(self.power, self.sample_rate, scale=gain)
            else:
                limiter.gain_curve(
                    self.envelope,
                    self.sample_rate,
                    gain=gain,
                    out=self._curve,
                    envelope_peak=self.peak,
                )
                self._curve_key = key
                value = loudness_of_power(
                    self.power, self.sample_rate, gain=self._curve, scale=gain
                )
            self._raw[key] = value
        return self._raw[key]

    def __call__(self, release_ms: float, gain_db: float) -> float:
        return self.raw(release_ms, gain_db) + self.correction[release_ms]

    def curve(self, release_ms: float, gain_db: float) -> np.ndarray | None:
        """The limiter's first-round gain curve for this candidate, if it is the last one
        predicted (the render reuses it; it may overwrite it)."""
        if self._curve_key != (release_ms, gain_db):
            return None
        self._curve_key = None
        return self._curve

    def learn(self, release_ms: float, gain_db: float, measured_lufs: float) -> None:
        """Correct predictions at ``release_ms`` by the error of this render's prediction."""
        self.correction[release_ms] = measured_lufs - self.raw(release_ms, gain_db)


Candidate = tuple[float, float, float]  # (release_ms, gain_db, lufs)


def _closer(a: Candidate | None, b: Candidate | None, target: float) -> Candidate | None:
    if a is None or (b is not None and abs(b[2] - target) < abs(a[2] - target)):
        return b
    return a


def _plan(
    loudness_at: Callable[[float, float], float],
    target: float,
    start_gain_db: float,
    max_gain_db: float,
) -> Candidate:
    """Search ``(release_ms, gain_db)`` whose loudness ``loudness_at(release_ms, gain_db)`` is
    closest to ``target``: secant steps from ``start_gain_db`` (at most :data:`MAX_STEP_DB` each,
    :data:`MAX_ROUNDS` per release), faster releases while the target is out of reach.

    Returns ``(release_ms, gain_db, loudness)`` of the best candidate seen.
    """
    best: Candidate | None = None
    for release_ms in RELEASE_STEPS_MS:
        gain_db = start_gain_db
        previous: tuple[float, float] | None = None
        for _ in range(MAX_ROUNDS):
            lufs = loudness_at(release_ms, gain_db)
            error = target - lufs
            slope = 1.0
            if previous is not None:
                slope = (lufs - previous[1]) / (gain_db - previous[0])
                if error > 0.0 and gain_db > previous[0] and slope < MIN_USEFUL_SLOPE:
                    # Smashing: the last push bought almost nothing. Keep the candidate before
                    # it and try a faster release.
                    break
            best = _closer(best, (release_ms, gain_db, lufs), target)
            if abs(error) <= PLAN_TOLERANCE_LU:
                return (release_ms, gain_db, lufs)
            slope = min(max(slope, MIN_USEFUL_SLOPE), 1.0)
            step = min(max(error / slope, -MAX_STEP_DB), MAX_STEP_DB)
            next_gain_db = min(gain_db + step, max_gain_db)
            if abs(next_gain_db - gain_db) < 1e-3:
                break  # at the drive limit: this release can do no better
            previous = (gain_db, lufs)
            gain_db = next_gain_db
        assert best is not None
        if release_ms == RELEASE_STEPS_MS[0] and best[2] < target - PLAN_TOLERANCE_LU:
            # Loudness need not grow steadily with gain: after a huge transient (a start-up
            # click) the release holds down what follows, so more gain can buy nothing, or even
            # less, before the rest is loud enough to count. Predictions are cheap: look further.
            found = _scan(loudness_at, release_ms, target, start_gain_db, max_gain_db)
            if found is not None and abs(found[2] - target) <= PLAN_TOLERANCE_LU:
                return found
            best = _closer(best, found, target)
        # (A prediction's error must not take a candidate past the floor.)
        if abs(best[2] - target) <= FLOOR_LU - PLAN_TOLERANCE_LU or best[2] > target:
            break
        # Too quiet at this release: start the faster one from the best gain so far.
        start_gain_db = best[1]
    assert best is not None
    return best


def _scan(
    loudness_at: Callable[[float, float], float],
    release_ms: float,
    target: float,
    low_db: float,
    max_gain_db: float,
) -> Candidate | None:
    """The smallest gain above ``low_db`` that reaches ``target`` at ``release_ms``: steps of
    :data:`SCAN_STEP_DB` up to ``max_gain_db`` until the target is crossed, then regula falsi
    inside that step. ``None`` if the target is not crossed, or only where more gain buys less
    than :data:`MIN_USEFUL_SLOPE` (smashing)."""
    below = (low_db, loudness_at(release_ms, low_db))
    while below[0] < max_gain_db:
        gain_db = min(below[0] + SCAN_STEP_DB, max_gain_db)
        lufs = loudness_at(release_ms, gain_db)
        if lufs >= target - PLAN_TOLERANCE_LU:
            above = (gain_db, lufs)
            if (above[1] - below[1]) / (above[0] - below[0]) < MIN_USEFUL_SLOPE:
                return None
            best: Candidate | None = None
            for _ in range(MAX_ROUNDS):
                best = _closer(best, (release_ms, gain_db, lufs), target)
                if abs(lufs - target) <= PLAN_TOLERANCE_LU:
                    break
                if lufs < target:
                    below = (gain_db, lufs)
                else:
                    above = (gain_db, lufs)
                share = (target - below[1]) / (above[1] - below[1])
                gain_db = below[0] + share * (above[0] - below[0])
                lufs = loudness_at(release_ms, gain_db)
            return best
        below = (gain_db, lufs)
    return None


def master(
    audio: np.ndarray,
    sample_rate: int,
    *,
    target_lufs: float = -14.0,
    ceiling_dbtp: float = -1.0,
    lookahead_ms: float = 5.0,
) -> MasteringResult:
    """Normalise to ``target_lufs`` and limit to ``ceiling_dbtp``, reporting the measurements.

    Parameters
    ----------
    audio : np.ndarray, shape (channels, frames), floating point
        float32 is processed without a float64 copy.
    sample_rate : int
    target_lufs : float
        Integrated loudness target, -60..0 LUFS.
    ceiling_dbtp : float
        True-peak ceiling, -20..0 dBTP.
    lookahead_ms : float
        Limiter look-ahead.

    Returns
    -------
    MasteringResult
        ``true_peak_dbtp <= ceiling_dbtp`` always; ``loudness_lufs`` within :data:`TOLERANCE_LU`
        of the target whenever the limiter can get there without smashing, else as close as it
        got.

    Raises
    ------
    InvalidAudioError
        Wrong dtype or shape, or non-finite samples.
    InvalidParameterError
        Target or ceiling out of range, or a bad sample rate.
    """
    x = checked_audio(audio)
    sr = check_sample_rate(sample_rate)
    target = float(target_lufs)
    if not math.isfinite(target) or not TARGET_RANGE_LUFS[0] <= target <= TARGET_RANGE_LUFS[1]:
        raise InvalidParameterError(
            f"target_lufs={target_lufs!r} is outside [{TARGET_RANGE_LUFS[0]:g}, "
            f"{TARGET_RANGE_LUFS[1]:g}] LUFS"
        )
    limiters = {
        release_ms: TruePeakLimiter(
            ceiling_dbtp=ceiling_dbtp, lookahead_ms=lookahead_ms, release_ms=release_ms
        )
        for release_ms in RELEASE_STEPS_MS
    }  # validates ceiling_dbtp and lookahead_ms

    if x.shape[1] == 0:
        return MasteringResult(
            np.zeros(x.shape, dtype=np.float32), SILENT_LUFS, -math.inf, 0.0, 0.0, 0
        )
    # Computed once: a gain scales both exactly.
    envelope = oversampled_peak_envelope_f32(x)
    input_peak = float(envelope.max())
    power = kweighted_power(x, sr, dtype=np.float32)
    input_lufs = loudness_of_power(power, sr)
    if input_lufs <= SILENT_LUFS or input_peak <= 0.0:
        # Nothing to normalise: keep the level, only enforce the ceiling.
        limiter = limiters[RELEASE_STEPS_MS[0]]
        y, peak = limiter._limit(x, sr, envelope=envelope, envelope_peak=input_peak)
        return MasteringResult(
            y, integrated_loudness(y, sr), _dbtp(peak), 0.0, limiter.release_ms, 1
        )

    max_gain_db = ceiling_dbtp + MAX_DRIVE_DB - _dbtp(input_peak)
    start_gain_db = min(target - input_lufs, max_gain_db)
    predict = _LoudnessPredictor(envelope, input_peak, power, sr, limiters)
    best: MasteringResult | None = None
    spare: np.ndarray | None = None
    rendered: set[tuple[float, float]] = set()
    for renders in range(1, MAX_RENDERS + 1):
        release_ms, gain_db, predicted = _plan(predict, target, start_gain_db, max_gain_db)
        if (release_ms, gain_db) in rendered:
            break  # the corrected prediction picks a candidate already measured
        rendered.add((release_ms, gain_db))
        if spare is None:
            spare = np.empty(x.shape, dtype=np.float32)
        y, peak = limiters[release_ms]._limit(
            x,
            sr,
            envelope=envelope,
            envelope_peak=input_peak,
            gain=10.0 ** (gain_db / 20.0),
            curve=predict.curve(release_ms, gain_db),
            out=spare,
        )
        lufs = integrated_loudness(y, sr)
        if best is None or abs(lufs - target) < abs(best.loudness_lufs - target):
            spare = None if best is None else best.audio  # the old best's buffer is free now
            best = MasteringResult(y, lufs, _dbtp(peak), gain_db, release_ms, renders)
        if abs(lufs - target) <= TOLERANCE_LU or abs(lufs - predicted) <= PLAN_TOLERANCE_LU:
            break  # on target, or out of reach and the search that said so was right
        predict.learn(release_ms, gain_db, lufs)
    assert best is not None
    return _with_rounds(best, len(rendered))


def limit_at(
    audio: np.ndarray,
    sample_rate: int,
    *,
    gain_db: float,
    release_ms: float,
    ceiling_dbtp: float = -1.0,
    lookahead_ms: float = 5.0,
) -> tuple[np.ndarray, float]:
    """``audio`` times ``gain_db`` through the true-peak limiter at ``release_ms``: what
    :func:`master` does once it has chosen them. A preview applies the gain and release its
    full render would choose (:mod:`services.renderer.preview`).

    Returns
    -------
    audio : np.ndarray, shape (channels, frames), float32
    true_peak_dbtp : float
        ``<= ceiling_dbtp``.
    """
    x = checked_audio(audio)
    sr = check_sample_rate(sample_rate)
    limiter = TruePeakLimiter(
        ceiling_dbtp=ceiling_dbtp, lookahead_ms=lookahead_ms, release_ms=release_ms
    )
    if x.shape[1] == 0:
        return np.zeros(x.shape, dtype=np.float32), -math.inf
    y, peak = limiter._limit(x, sr, gain=10.0 ** (gain_db / 20.0))
    return y, _dbtp(peak)


def _with_rounds(result: MasteringResult, rounds: int) -> MasteringResult:
    return MasteringResult(
        result.audio,
        result.loudness_lufs,
        result.true_peak_dbtp,
        result.gain_db,
        result.limiter_release_ms,
        rounds,
    )


def normalise_and_limit(
    audio: np.ndarray,
    sample_rate: int,
    *,
    target_lufs: float = -14.0,
    ceiling_dbtp: float = -1.0,
) -> np.ndarray:
    """Loudness-normalise to ``target_lufs`` and true-peak limit to ``ceiling_dbtp``.

    See :func:`master`, which also returns the measured loudness and true peak.

    Parameters
    ----------
    audio : np.ndarray, shape (channels, frames), floating point
    sample_rate : int
    target_lufs : float
    ceiling_dbtp : float

    Returns
    -------
    np.ndarray, shape (channels, frames), float32
    """
    return master(audio, sample_rate, target_lufs=target_lufs, ceiling_dbtp=ceiling_dbtp).audio

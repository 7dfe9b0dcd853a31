"""Final loudness normalisation and true-peak limiting: the last stage of every rendered version.

Gain to the loudness target, true-peak limit, measure the integrated loudness again (limiting
lowers it), correct the gain and repeat until the result is within :data:`TOLERANCE_LU` of the
target, with a secant step so heavy limiting converges in a few rounds. The limiter guarantees the
true-peak ceiling on every round. When the target is out of reach at the default release, faster
releases are tried (peaky material such as a click track needs the limiter to recover between
hits). Pushing stops when more gain buys almost no loudness (:data:`MIN_USEFUL_SLOPE`: the
limiter would only be smashing the signal) or at :data:`MAX_DRIVE_DB`. If the target still cannot
be met, the candidate closest to it is returned and its measured loudness tells the caller (the
loop always ends, after at most ``MAX_ROUNDS * len(RELEASE_STEPS_MS)`` rounds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from services.common.errors import InvalidParameterError
from services.common.loudness import SILENT_LUFS, integrated_loudness
from services.renderer.limiter import TruePeakLimiter, oversampled_peak_envelope
from services.renderer.processor import check_processor_input, check_sample_rate

#: Stop iterating once the integrated loudness is this close to the target.
TOLERANCE_LU = 0.1
#: The quality floor (docs/architecture.md); a faster release is tried when a release misses it.
FLOOR_LU = 0.5
#: Gain/measure rounds per release setting.
MAX_ROUNDS = 6
#: Limiter release times tried in turn while the target is out of reach.
RELEASE_STEPS_MS: tuple[float, ...] = (50.0, 15.0, 5.0)
#: Sanity bound: the most the input's loudest true peak may be driven above the ceiling
#: (isolated transients may take a lot of limiting harmlessly, so this is generous).
MAX_DRIVE_DB = 40.0
#: Diminishing returns: once 1 dB more gain buys less than this many LU of loudness, the limiter
#: is smashing the signal and pushing harder at this release stops (20 dB for 1 LU).
MIN_USEFUL_SLOPE = 0.05
#: Largest gain change per round, so the slope above is measured locally.
MAX_STEP_DB = 12.0
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
        Gain/limit/measure rounds used.
    """

    audio: np.ndarray
    loudness_lufs: float
    true_peak_dbtp: float
    gain_db: float
    limiter_release_ms: float
    rounds: int


def _dbtp(peak: float) -> float:
    return 20.0 * math.log10(peak) if peak > 0.0 else -math.inf


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
    x = check_processor_input(audio)
    sr = check_sample_rate(sample_rate)
    target = float(target_lufs)
    if not math.isfinite(target) or not TARGET_RANGE_LUFS[0] <= target <= TARGET_RANGE_LUFS[1]:
        raise InvalidParameterError(
            f"target_lufs={target_lufs!r} is outside [{TARGET_RANGE_LUFS[0]:g}, "
            f"{TARGET_RANGE_LUFS[1]:g}] LUFS"
        )
    # Validates ceiling_dbtp and lookahead_ms.
    TruePeakLimiter(ceiling_dbtp=ceiling_dbtp, lookahead_ms=lookahead_ms)

    if x.shape[1] == 0:
        return MasteringResult(
            np.zeros(x.shape, dtype=np.float32), SILENT_LUFS, -math.inf, 0.0, 0.0, 0
        )
    envelope = oversampled_peak_envelope(x)
    input_peak = float(envelope.max())
    input_lufs = integrated_loudness(x, sr)
    if input_lufs <= SILENT_LUFS or input_peak <= 0.0:
        # Nothing to normalise: keep the level, only enforce the ceiling.
        limiter = TruePeakLimiter(ceiling_dbtp=ceiling_dbtp, lookahead_ms=lookahead_ms)
        y, peak = limiter.limit(x, sr, envelope=envelope)
        return MasteringResult(
            y, integrated_loudness(y, sr), _dbtp(peak), 0.0, limiter.release_ms, 1
        )

    max_gain_db = ceiling_dbtp + MAX_DRIVE_DB - _dbtp(input_peak)
    start_gain_db = min(target - input_lufs, max_gain_db)
    best: MasteringResult | None = None
    rounds = 0
    for release_ms in RELEASE_STEPS_MS:
        limiter = TruePeakLimiter(
            ceiling_dbtp=ceiling_dbtp, lookahead_ms=lookahead_ms, release_ms=release_ms
        )
        gain_db = start_gain_db
        previous: MasteringResult | None = None
        for _ in range(MAX_ROUNDS):
            gain = 10.0 ** (gain_db / 20.0)
            y, peak = limiter.limit(x * gain, sr, envelope=envelope * gain)
            rounds += 1
            current = MasteringResult(
                y, integrated_loudness(y, sr), _dbtp(peak), gain_db, release_ms, rounds
            )
            error = target - current.loudness_lufs
            slope = 1.0
            if previous is not None:
                slope = (current.loudness_lufs - previous.loudness_lufs) / (
                    gain_db - previous.gain_db
                )
                if error > 0.0 and gain_db > previous.gain_db and slope < MIN_USEFUL_SLOPE:
                    # Smashing: the last push bought almost nothing. Keep the candidate before
                    # it and try a faster release.
                    break
            if best is None or abs(error) < abs(best.loudness_lufs - target):
                best = current
            if abs(error) <= TOLERANCE_LU:
                return _with_rounds(best, rounds)
            slope = min(max(slope, MIN_USEFUL_SLOPE), 1.0)
            step = min(max(error / slope, -MAX_STEP_DB), MAX_STEP_DB)
            next_gain_db = min(gain_db + step, max_gain_db)
            if abs(next_gain_db - gain_db) < 1e-3:
                break  # at the drive limit: this release can do no better
            previous = current
            gain_db = next_gain_db
        assert best is not None
        if abs(best.loudness_lufs - target) <= FLOOR_LU or best.loudness_lufs > target:
            break
        # Too quiet at this release: start the faster one from the best gain so far.
        start_gain_db = best.gain_db
    assert best is not None
    return _with_rounds(best, rounds)


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

"""How well a prediction repairs audio: the multi-resolution STFT distance and its ratio.

The audio-domain score of issue 4: for a degraded input, the distance of
``render(degraded, predicted)`` to the clean mix divided by the distance of the degraded input
itself (both loudness-matched by mastering first, so level is not what is scored). Below 1 the
prediction moved the audio towards the clean mix; 0 is a perfect repair.

The distance is the usual multi-resolution STFT loss (Yamamoto et al., Parallel WaveGAN, 2020):
per resolution, spectral convergence ``||S_x| - |S_y||_F / ||S_y||_F`` plus the mean absolute
difference of log magnitudes, averaged over the resolutions and over channels.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import stft

#: (FFT size, hop) at 44.1 kHz; scaled with the sample rate so the resolutions are in seconds.
RESOLUTIONS: tuple[tuple[int, int], ...] = ((512, 128), (1024, 256), (2048, 512))
#: Magnitudes are floored here before the logarithm (about -140 dB re full scale).
_FLOOR = 1e-7


def _magnitudes(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    _, _, z = stft(
        x, nperseg=n_fft, noverlap=n_fft - hop, window="hann", boundary=None, padded=False
    )
    return np.abs(z)


def mr_stft_distance(a: np.ndarray, b: np.ndarray, sample_rate: int) -> float:
    """Multi-resolution STFT distance of ``a`` to the reference ``b``.

    Parameters
    ----------
    a, b : np.ndarray, shape (channels, frames)
        Same shape; ``b`` is the reference (the spectral convergence divides by it).
    sample_rate : int

    Returns
    -------
    float
        0 for identical signals; larger is further.
    """
    x = np.atleast_2d(np.asarray(a, dtype=np.float64))
    y = np.atleast_2d(np.asarray(b, dtype=np.float64))
    if x.shape != y.shape:
        raise ValueError(f"shapes differ: {x.shape} vs {y.shape}")
    scale = sample_rate / 44100.0
    total = 0.0
    for n_fft, hop in RESOLUTIONS:
        n = max(64, int(round(n_fft * scale)))
        h = max(16, int(round(hop * scale)))
        if x.shape[1] < n:
            raise ValueError(f"signal of {x.shape[1]} frames is shorter than an {n}-point STFT")
        mx = _magnitudes(x, n, h)
        my = _magnitudes(y, n, h)
        convergence = np.linalg.norm(mx - my) / max(float(np.linalg.norm(my)), _FLOOR)
        log_l1 = float(np.mean(np.abs(np.log(np.maximum(mx, _FLOOR) / np.maximum(my, _FLOOR)))))
        total += float(convergence) + log_l1
    return total / len(RESOLUTIONS)


def repair_ratio(
    repaired: np.ndarray, degraded: np.ndarray, clean: np.ndarray, sample_rate: int
) -> float:
    """``distance(repaired, clean) / distance(degraded, clean)``: below 1 the repair helped.

    All three should be loudness-matched (mastered) the same way before they are compared.
    """
    before = mr_stft_distance(degraded, clean, sample_rate)
    if before == 0.0:
        return 0.0 if mr_stft_distance(repaired, clean, sample_rate) == 0.0 else float("inf")
    return mr_stft_distance(repaired, clean, sample_rate) / before

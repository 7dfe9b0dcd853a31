"""Fresh targets for a training example without rendering it again: spectral re-targeting.

A training example is the log-mel of ``degrade(clean, p)`` with the target ``p``
(:mod:`.targets`). Each song is rendered with only a few targets, so a model can learn the songs
and their targets together instead of the damage. Both kinds of damage act on the spectrogram in
a known way, which gives any number of new targets per example for free:

* The EQ degradation multiplies the power at frequency ``f`` by ``|H_{-p}(f)|^2`` (the same EQ
  with the gains negated). Swapping ``p`` for ``q`` multiplies it by
  ``|H_{-q}(f)|^2 / |H_{-p}(f)|^2``, in both mid and side. A mel band sums the power of its FFT
  bins, so the band moves by the filter's power gain averaged over the band's triangle: exact
  when the spectrum is flat inside a band, and within a fraction of a dB on music because the
  EQ curves are smooth next to the bands (tests/unit/test_retarget.py measures it against real
  renders).
* The width degradation scales the side by ``1 / width``; swapping ``w`` for ``v`` moves every
  side band by ``20 log10(w / v)`` dB. Exact.

Values at the spectrogram's floor stay at the floor (they are digital silence). The context
vector is *not* re-targeted (its loudness, centroid and width were measured on the rendered
input), so only models that ignore the context (:attr:`MixModel.uses_context` false) can use it;
:func:`~services.predictor.training.train.train` enforces that.
"""

from __future__ import annotations

import librosa
import numpy as np

from services.common.params import BY_NAME
from services.predictor.features import (
    DB_OFFSET,
    DB_SCALE,
    FLOOR_DB,
    FMAX_HZ,
    FMIN_HZ,
    N_FFT,
    N_MELS,
    SAMPLE_RATE,
)
from services.predictor.training.targets import EQ_GAINS, LEARNED, draw_target
from services.renderer.eq import ParametricEQ

#: Spacing (dB) of the table of per-band responses that the gains are interpolated in.
GAIN_STEP_DB = 0.05
#: Widest gain the table covers: the schema's limit for the EQ gains.
GAIN_LIMIT_DB = float(BY_NAME[EQ_GAINS[0]].maximum)
_FLOOR = (FLOOR_DB - DB_OFFSET) / DB_SCALE


class Retargeter:
    """Moves log-mel examples from their targets to new ones (see the module docstring).

    Built once per training run: it tabulates each EQ band's power response (dB) on the FFT
    grid for gains every :data:`GAIN_STEP_DB` dB, and the mel filters of
    :func:`services.predictor.features.log_mel`.
    """

    def __init__(self) -> None:
        freqs = librosa.fft_frequencies(sr=SAMPLE_RATE, n_fft=N_FFT)
        bank = librosa.filters.mel(
            sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, fmin=FMIN_HZ, fmax=FMAX_HZ
        )
        self._weights = (bank / bank.sum(axis=1, keepdims=True)).T.astype(np.float64)
        steps = int(round(2 * GAIN_LIMIT_DB / GAIN_STEP_DB))
        self._gains = np.linspace(-GAIN_LIMIT_DB, GAIN_LIMIT_DB, steps + 1)
        # _table[band, gain index, bin]: the band alone at that gain, in dB (20 log10 |H| is
        # also the power gain 10 log10 |H|^2).
        self._table = np.stack(
            [
                np.stack(
                    [
                        ParametricEQ.from_params({band: float(g)}).magnitude_response_db(
                            freqs_hz=freqs, sample_rate=SAMPLE_RATE
                        )
                        for g in self._gains
                    ]
                )
                for band in EQ_GAINS
            ]
        )
        self._eq_index = np.array([LEARNED.index(b) for b in EQ_GAINS])
        self._width_index = LEARNED.index("stereo_width")
        self._params = [BY_NAME[n] for n in LEARNED]

    def physical(self, normalised: np.ndarray) -> np.ndarray:
        """Normalised targets ``(n, len(LEARNED))`` -> physical values, same shape."""
        x = np.asarray(normalised, dtype=np.float64)
        return np.stack(
            [[p.denormalise(float(v)) for p, v in zip(self._params, row, strict=True)] for row in x]
        ).reshape(x.shape)

    def normalised(self, physical: np.ndarray) -> np.ndarray:
        """Physical values ``(n, len(LEARNED))`` -> normalised targets (float32), same shape."""
        x = np.asarray(physical, dtype=np.float64)
        return np.array(
            [[p.normalise(float(v)) for p, v in zip(self._params, row, strict=True)] for row in x],
            dtype=np.float32,
        ).reshape(x.shape)

    def degradation_db(self, physical: np.ndarray) -> np.ndarray:
        """Mel-band power change (dB) of the EQ degradation for targets ``(n, len(LEARNED))``.

        Returns
        -------
        np.ndarray, shape (n, N_MELS), float64
            ``10 log10`` of ``|H_{-p}|^2`` averaged over each mel triangle.
        """
        gains = -np.asarray(physical, dtype=np.float64)[:, self._eq_index]
        if np.any(np.abs(gains) > GAIN_LIMIT_DB):
            raise ValueError(f"EQ gains must be within ±{GAIN_LIMIT_DB} dB to re-target")
        pos = (gains + GAIN_LIMIT_DB) / GAIN_STEP_DB
        lo = np.minimum(np.floor(pos).astype(np.int64), len(self._gains) - 2)
        frac = (pos - lo)[:, :, None]
        bands = np.arange(len(EQ_GAINS))[None, :]
        per_band = (1.0 - frac) * self._table[bands, lo] + frac * self._table[bands, lo + 1]
        power = 10.0 ** (per_band.sum(axis=1) / 10.0)  # (n, bins): the cascade
        return 10.0 * np.log10(power @ self._weights)

    def apply(self, mel: np.ndarray, old: np.ndarray, new: np.ndarray) -> np.ndarray:
        """The examples' log-mels as if degraded for the ``new`` targets instead of ``old``.

        Parameters
        ----------
        mel : np.ndarray, shape (n, 2, N_MELS, frames)
            Mid/side log-mels of :func:`~services.predictor.features.log_mel`.
        old, new : np.ndarray, shape (n, len(LEARNED))
            Normalised targets the examples were made for, and the ones wanted.

        Returns
        -------
        np.ndarray, same shape as ``mel``, float32
        """
        old_p, new_p = self.physical(old), self.physical(new)
        shift = self.degradation_db(new_p) - self.degradation_db(old_p)  # (n, N_MELS)
        side = 20.0 * np.log10(old_p[:, self._width_index] / new_p[:, self._width_index])  # (n,)
        delta = np.repeat(shift[:, None, :, None], 2, axis=1)
        delta[:, 1] += side[:, None, None]
        x = np.asarray(mel, dtype=np.float32)
        moved = x + (delta / DB_SCALE).astype(np.float32)
        return np.where(x <= _FLOOR, x, np.maximum(moved, _FLOOR)).astype(np.float32)

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` fresh normalised targets from the training distribution (:func:`draw_target`)."""
        rows = [draw_target(rng) for _ in range(n)]
        return self.normalised(np.array([[r[name] for name in LEARNED] for r in rows]))

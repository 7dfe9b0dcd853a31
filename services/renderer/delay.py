"""Tempo-synced feedback delay with a darkening low-pass in the loop and a ping-pong option.

The delay time is a note value of the song's tempo: ``60 / tempo_bpm * DELAY_NOTE_BEATS[note]``
seconds, rounded to the nearest sample, so the first repeat lands on the grid exactly. Each
repeat goes once more through the feedback path, a 2nd-order Butterworth low-pass at
``delay_highcut_hz`` (clamped to 0.45 x the sample rate) and a gain of ``delay_feedback_pct``:
repeat ``k`` (k = 1, 2, ...) arrives at ``k`` delay times with level ``feedback ** (k - 1)`` and
``k - 1`` passes of the low-pass, so every repeat is darker than the one before. The loop is
shortened by the low-pass's group delay at DC (rounded to a sample), so later repeats stay on the
grid too (within half a sample per repeat at low frequencies). The loop gain never exceeds 0.9, so
the delay is stable at any setting.

Ping-pong (stereo only): the mono sum ``(L + R) / 2`` feeds the left line, whose output feeds the
right line, whose output feeds the left: repeat 1 is on the left only, repeat 2 on the right
only, and so on. Mono input (or more than two channels) uses plain per-channel delays.

The dry signal is kept at unity and the repeats are added at ``delay_mix_pct / 100``; the output
has the input's length (repeats past the end are cut). ``delay_mix_pct = 0`` is an exact bypass.
The per-sample recursion runs in serial numba kernels (they release the GIL, so renders in
parallel threads do not wait on each other) whose whole state lives in arrays passed in and
updated in place: the last ``delay`` inputs, the loop ring(s), the low-pass state(s) and the ring
positions. :meth:`TempoDelay.stream` keeps that state from one block to the next, so a long file
rendered block by block (``blocks.py``), in blocks of any length down to one frame, gives the
one-pass result bit for bit however long the repeats ring on; ``process`` is one such block.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numba
import numpy as np

from services.common.params import (
    BY_NAME,
    DELAY_NOTE_BEATS,
    neutral,
    prefixed_kwargs,
)
from services.renderer.processor import (
    BlockStream,
    ChoiceParameter,
    Parameter,
    Processor,
    check_processor_input,
    check_sample_rate,
)

#: The low-pass corner is clamped to this fraction of the sample rate.
MAX_FREQ_FRACTION = 0.45
#: Q of the feedback low-pass (Butterworth).
LOWPASS_Q = 1.0 / math.sqrt(2.0)
#: Tempo range accepted by :class:`TempoDelay` (the analyzer reports 40-240 BPM).
MIN_TEMPO_BPM = 30.0
MAX_TEMPO_BPM = 300.0
DEFAULT_TEMPO_BPM = 120.0


def lowpass_coefficients(*, freq_hz: float, sample_rate: int) -> np.ndarray:
    """Cookbook 2nd-order Butterworth low-pass (unity gain at DC).

    Returns
    -------
    np.ndarray, shape (5,), float64
        ``[b0, b1, b2, a1, a2]`` with ``a0 = 1``.
    """
    f = min(float(freq_hz), MAX_FREQ_FRACTION * sample_rate)
    w0 = 2.0 * math.pi * f / sample_rate
    cw, alpha = math.cos(w0), math.sin(w0) / (2.0 * LOWPASS_Q)
    a0 = 1.0 + alpha
    b = (1.0 - cw) / 2.0 / a0
    return np.array([b, 2.0 * b, b, -2.0 * cw / a0, (1.0 - alpha) / a0])


def group_delay_at_dc(coefs: np.ndarray) -> float:
    """Group delay of the biquad ``[b0, b1, b2, a1, a2]`` at DC, in samples."""
    b0, b1, b2, a1, a2 = (float(c) for c in coefs)
    return (b1 + 2.0 * b2) / (b0 + b1 + b2) - (a1 + 2.0 * a2) / (1.0 + a1 + a2)


@numba.njit(cache=True, nogil=True)
def _feedback_delays(
    x: np.ndarray,
    xring: np.ndarray,
    ring: np.ndarray,
    z: np.ndarray,
    pos: np.ndarray,
    feedback: float,
    coefs: np.ndarray,
) -> np.ndarray:  # pragma: no cover - numba
    """Repeats of one line per row: ``r[t] = x[t - delay] + feedback * LP(r)[t - loop_delay]``.

    ``x`` is (lines, n) float64; returns the repeats (lines, n). Lines go two per loop (their
    low-pass recursions overlap in the CPU). The state continues from the previous call and is
    updated in place (zeros and positions 0 are silence before the first call):

    * ``xring`` (lines, delay): the last ``delay`` inputs, read and overwritten at ``pos[., 0]``;
    * ``ring`` (lines, loop_delay): the filtered repeats on their way round, at ``pos[., 1]``;
    * ``z`` (lines, >= 2): the low-pass's state (transposed direct form II);
    * ``pos`` (lines, 2) int64: the two ring positions (the same for every line).

    The state is loaded into registers for the loop and stored back at the end.
    """
    lines, n = x.shape
    b0, b1, b2, a1, a2 = coefs[0], coefs[1], coefs[2], coefs[3], coefs[4]
    delay = xring.shape[1]
    loop_delay = ring.shape[1]
    y = np.empty((lines, n))
    for k in range(0, lines, 2):
        pair = k + 1 < lines
        m = k + 1 if pair else k  # an odd last line: its twin's updates are not stored
        z1 = z[k, 0]
        z2 = z[k, 1]
        w1 = z[m, 0]
        w2 = z[m, 1]
        xpos = pos[k, 0]
        rpos = pos[k, 1]
        xa = xring[k]
        xb = xring[m]
        ra = ring[k]
        rb = ring[m]
        for t in range(n):
            v = feedback * ra[rpos] + xa[xpos]
            u = feedback * rb[rpos] + xb[xpos]
            if pair:
                xb[xpos] = x[m, t]
                y[m, t] = u
            xa[xpos] = x[k, t]
            y[k, t] = v
            xpos += 1
            if xpos == delay:
                xpos = 0
            out = b0 * v + z1
            z1 = b1 * v - a1 * out + z2
            z2 = b2 * v - a2 * out
            vout = b0 * u + w1
            w1 = b1 * u - a1 * vout + w2
            w2 = b2 * u - a2 * vout
            ra[rpos] = out
            if pair:
                rb[rpos] = vout
            rpos += 1
            if rpos == loop_delay:
                rpos = 0
        z[k, 0] = z1
        z[k, 1] = z2
        pos[k, 0] = xpos
        pos[k, 1] = rpos
        if pair:
            z[m, 0] = w1
            z[m, 1] = w2
            pos[m, 0] = xpos
            pos[m, 1] = rpos
    return y


@numba.njit(cache=True, nogil=True)
def _pingpong_delay(
    x: np.ndarray,
    xring: np.ndarray,
    ring_l: np.ndarray,
    ring_r: np.ndarray,
    z: np.ndarray,
    pos: np.ndarray,
    feedback: float,
    coefs: np.ndarray,
) -> np.ndarray:  # pragma: no cover - numba
    """Two crossed lines: ``l[t] = x[t - delay] + feedback * LP(r)[t - loop_delay]`` and
    ``r[t] = feedback * LP(l)[t - loop_delay]``; ``x`` is the (n,) mono sum, returns (2, n).

    State as in :func:`_feedback_delays`: ``ring_l`` holds the filtered right repeats on their
    way to the left, ``ring_r`` the filtered left repeats on their way to the right (both at
    ``pos[1]``), ``z`` (4,) both low-passes' states.
    """
    n = x.shape[0]
    b0, b1, b2, a1, a2 = coefs[0], coefs[1], coefs[2], coefs[3], coefs[4]
    delay = xring.shape[0]
    loop_delay = ring_l.shape[0]
    y = np.empty((2, n))
    zl1 = z[0]
    zl2 = z[1]
    zr1 = z[2]
    zr2 = z[3]
    xpos = pos[0]
    rpos = pos[1]
    for t in range(n):
        vl = feedback * ring_l[rpos] + xring[xpos]
        xring[xpos] = x[t]
        xpos += 1
        if xpos == delay:
            xpos = 0
        vr = feedback * ring_r[rpos]
        y[0, t] = vl
        y[1, t] = vr
        out_l = b0 * vl + zl1
        zl1 = b1 * vl - a1 * out_l + zl2
        zl2 = b2 * vl - a2 * out_l
        out_r = b0 * vr + zr1
        zr1 = b1 * vr - a1 * out_r + zr2
        zr2 = b2 * vr - a2 * out_r
        ring_r[rpos] = out_l
        ring_l[rpos] = out_r
        rpos += 1
        if rpos == loop_delay:
            rpos = 0
    z[0] = zl1
    z[1] = zl2
    z[2] = zr1
    z[3] = zr2
    pos[0] = xpos
    pos[1] = rpos
    return y


class _DelayLines:
    """The delay's state from one block to the next (a :data:`BlockStream`).

    Per line: the last ``delay`` inputs, the loop ring(s), the low-pass state(s) and the ring
    positions, all updated in place by the kernels, so consecutive blocks of any length (one
    frame included) continue exactly where the previous block stopped: the concatenated output
    is the one-pass output, bit for bit. A plain delay has one line per channel; ping-pong
    (stereo only) one input line and two crossed rings.
    """

    def __init__(
        self,
        channels: int,
        *,
        delay: int,
        loop_delay: int,
        feedback: float,
        coefs: np.ndarray,
        pingpong: bool,
        mix: float,
    ) -> None:
        self.pingpong = pingpong and channels == 2
        lines = 1 if self.pingpong else channels
        self.xring = np.zeros((lines, delay))
        self.rings = np.zeros((2 if self.pingpong else lines, loop_delay))
        self.z = np.zeros((lines, 4))
        self.pos = np.zeros((lines, 2), dtype=np.int64)
        self.feedback = feedback
        self.coefs = coefs
        self.mix = mix

    def repeats(self, x: np.ndarray) -> np.ndarray:
        """The wet signal (all repeats, not scaled) of the next block ``x`` (channels, n)
        float64; returns (channels, n) float64."""
        if self.pingpong:
            mono = 0.5 * (x[0] + x[1])
            return _pingpong_delay(
                mono,
                self.xring[0],
                self.rings[0],
                self.rings[1],
                self.z[0],
                self.pos[0],
                self.feedback,
                self.coefs,
            )
        return _feedback_delays(
            np.ascontiguousarray(x), self.xring, self.rings, self.z, self.pos, self.feedback,
            self.coefs,
        )  # fmt: skip

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Dry plus scaled repeats of the next block ``x`` (channels, n) float64."""
        wet = self.repeats(x)
        wet *= self.mix
        wet += x
        return wet


class TempoDelay(Processor):
    """Tempo-synced feedback delay (note value, feedback, high-cut, ping-pong, wet level).

    Parameters are the schema's ``delay_*`` parameters without the prefix (``note`` and
    ``pingpong`` take the option index or its name) plus the song's ``tempo_bpm``. Build one
    from a schema parameter set with :meth:`from_params`. ``mix_pct = 0`` (the default) is an
    exact bypass.
    """

    note = ChoiceParameter("delay_note")
    feedback_pct = Parameter("delay_feedback_pct")
    highcut_hz = Parameter("delay_highcut_hz")
    pingpong = ChoiceParameter("delay_pingpong")
    mix_pct = Parameter("delay_mix_pct")
    tempo_bpm = Parameter(minimum=MIN_TEMPO_BPM, maximum=MAX_TEMPO_BPM, unit="BPM")

    def __init__(
        self,
        *,
        tempo_bpm: float = DEFAULT_TEMPO_BPM,
        note: float | str = neutral("delay_note"),
        feedback_pct: float = neutral("delay_feedback_pct"),
        highcut_hz: float = neutral("delay_highcut_hz"),
        pingpong: float | str = neutral("delay_pingpong"),
        mix_pct: float = neutral("delay_mix_pct"),
    ) -> None:
        self.tempo_bpm = tempo_bpm
        self.note = note  # type: ignore[assignment]
        self.feedback_pct = feedback_pct
        self.highcut_hz = highcut_hz
        self.pingpong = pingpong  # type: ignore[assignment]
        self.mix_pct = mix_pct

    @classmethod
    def from_params(cls, params: Mapping[str, float], *, tempo_bpm: float) -> TempoDelay:
        """Build from a schema parameter set (``delay_*`` names; missing ones take defaults)
        and the song's tempo."""
        return cls(tempo_bpm=tempo_bpm, **prefixed_kwargs(params, "delay_"))

    @property
    def note_name(self) -> str:
        """The note value's name (``"1/4"``, ``"1/8"``, ``"1/8 dotted"``, ...)."""
        return BY_NAME["delay_note"].choice(self.note)

    @property
    def is_pingpong(self) -> bool:
        """True when repeats alternate left/right (on stereo input)."""
        return BY_NAME["delay_pingpong"].choice(self.pingpong) == "on"

    @property
    def delay_s(self) -> float:
        """The exact delay time: ``60 / tempo_bpm * beats(note)`` seconds."""
        return 60.0 / self.tempo_bpm * DELAY_NOTE_BEATS[self.note_name]

    def delay_samples(self, sample_rate: int) -> int:
        """The delay time rounded to the nearest sample."""
        return max(1, int(round(self.delay_s * check_sample_rate(sample_rate))))

    @property
    def is_bypass(self) -> bool:
        """True when the wet level is 0 (the input is returned unchanged)."""
        return self.mix_pct == 0.0

    def _lines(self, sample_rate: int, channels: int) -> _DelayLines:
        delay = self.delay_samples(sample_rate)
        coefs = lowpass_coefficients(freq_hz=self.highcut_hz, sample_rate=sample_rate)
        return _DelayLines(
            channels,
            delay=delay,
            loop_delay=max(1, delay - int(round(group_delay_at_dc(coefs)))),
            feedback=self.feedback_pct / 100.0,
            coefs=coefs,
            pingpong=self.is_pingpong,
            mix=self.mix_pct / 100.0,
        )

    def repeats(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """The wet signal alone (all repeats, not scaled by ``mix_pct``).

        Parameters
        ----------
        audio : np.ndarray, shape (channels, frames), floating point
        sample_rate : int

        Returns
        -------
        np.ndarray, shape (channels, frames), float64
        """
        x = check_processor_input(audio)
        sr = check_sample_rate(sample_rate)
        return self._lines(sr, x.shape[0]).repeats(x)

    def stream(self, sample_rate: int, channels: int) -> BlockStream:
        """A fresh block stream: consecutive float64 ``(channels, frames)`` blocks in (any
        lengths), the processed blocks out, exactly equal to one pass over their concatenation
        (the delay lines and filter states carry over). Parameters are read now; later changes
        do not affect it."""
        return self._lines(check_sample_rate(sample_rate), channels)

    def _process(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        if self.is_bypass:
            return audio
        return self._lines(sample_rate, audio.shape[0])(audio)

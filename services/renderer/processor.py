"""The one shape every renderer effect has, in the spirit of pedalboard's ``Plugin``.

A :class:`Processor` turns float32 audio of shape ``(channels, frames)`` into float32 audio of the
same shape: ``processor.process(audio, sample_rate)`` or simply ``processor(audio, sample_rate)``.
Parameters are attributes whose names carry their units (``threshold_db``, ``attack_ms``); they are
validated when the processor is built and whenever they are set, so an out-of-range value fails
loudly and early with :class:`~services.common.errors.InvalidParameterError`. ``reset()`` clears
whatever state a processor keeps between calls (filter designs now; reverb and delay tails later)
and keeps its parameters. A :class:`Chain` is a list of processors and is itself a processor.

Rendering is offline: every call processes one complete buffer from silence to its end, so each
call is independent of the previous one.

New effects (vintage compressor, exciter, stereo width, reverb, delay) subclass
:class:`Processor`, declare their parameters with :class:`Parameter` and implement
:meth:`Processor._process`.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Iterable, Iterator, MutableSequence
from dataclasses import dataclass
from typing import Any, Protocol, overload

import numpy as np

from services.common.errors import InvalidAudioError, InvalidParameterError
from services.common.params import BY_NAME


class Parameter:
    """A validated processor parameter (a data descriptor).

    Parameters declared in the mix parameter schema name it with ``schema_name`` and take their
    range from there; renderer-only settings (the limiter ceiling, say) give their own range.

    Parameters
    ----------
    schema_name : str, optional
        Name in :data:`services.common.params.BY_NAME`; the range comes from the schema.
    minimum, maximum : float, optional
        Inclusive range for parameters that are not in the schema.
    unit : str
        Unit shown in error messages (the attribute name carries it too).
    """

    def __init__(
        self,
        schema_name: str | None = None,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
        unit: str = "",
    ) -> None:
        if schema_name is None and (minimum is None or maximum is None):
            raise TypeError("a parameter outside the schema needs a minimum and a maximum")
        if schema_name is not None and schema_name not in BY_NAME:
            raise KeyError(f"{schema_name!r} is not in the mix parameter schema")
        self.schema_name = schema_name
        if schema_name is not None:
            spec = BY_NAME[schema_name]
            minimum, maximum, unit = spec.minimum, spec.maximum, spec.unit
        assert minimum is not None and maximum is not None
        self.minimum = float(minimum)
        self.maximum = float(maximum)
        self.unit = unit
        self.name = schema_name or "parameter"
        self._attr = "_parameter"

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        self._attr = f"_parameter_{name}"

    @overload
    def __get__(self, obj: None, objtype: type | None = None) -> Parameter: ...

    @overload
    def __get__(self, obj: object, objtype: type | None = None) -> float: ...

    def __get__(self, obj: object | None, objtype: type | None = None) -> float | Parameter:
        if obj is None:
            return self
        return float(getattr(obj, self._attr))

    def __set__(self, obj: object, value: float) -> None:
        setattr(obj, self._attr, self.validate(value))
        if isinstance(obj, Processor):
            obj._parameters_changed()

    def validate(self, value: float) -> float:
        """Return ``value`` as a float, or raise :class:`InvalidParameterError`."""
        try:
            v = float(value)
        except (TypeError, ValueError) as exc:
            raise InvalidParameterError(f"{self.name}={value!r} is not a number") from exc
        if self.schema_name is not None:
            try:
                return BY_NAME[self.schema_name].validate(v)
            except InvalidParameterError as exc:
                raise InvalidParameterError(f"{self.name}: {exc}") from exc
        if not math.isfinite(v) or not self.minimum <= v <= self.maximum:
            raise InvalidParameterError(
                f"{self.name}={value!r} is outside [{self.minimum:g}, {self.maximum:g}] {self.unit}"
            )
        return v


def check_sample_rate(sample_rate: float) -> int:
    """Return ``sample_rate`` as a positive int, or raise :class:`InvalidParameterError`."""
    try:
        sr = float(sample_rate)
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError(f"sample_rate={sample_rate!r} is not a number") from exc
    if not math.isfinite(sr) or sr <= 0 or sr != int(sr):
        raise InvalidParameterError(f"sample_rate={sample_rate!r} must be a positive integer (Hz)")
    return int(sr)


def check_float_audio(audio: np.ndarray) -> np.ndarray:
    """Validate renderer input without converting it: a floating-point ``(channels, frames)``
    array with finite samples, returned as is (C-contiguous).

    Raises
    ------
    InvalidAudioError
        Not a floating-point numpy array, not 2-D, no channels, or non-finite samples.
    """
    if not isinstance(audio, np.ndarray) or not np.issubdtype(audio.dtype, np.floating):
        raise InvalidAudioError("audio must be a floating-point numpy array")
    if audio.ndim != 2 or audio.shape[0] < 1:
        raise InvalidAudioError(f"audio must have shape (channels, frames), got {audio.shape}")
    x = np.ascontiguousarray(audio)
    # max and min propagate NaN and show an infinity: all finite exactly when both are, without
    # a full-size temporary.
    if x.size and not (math.isfinite(float(x.max())) and math.isfinite(float(x.min()))):
        raise InvalidAudioError("the audio contains NaN or infinite samples")
    return x


def check_processor_input(audio: np.ndarray) -> np.ndarray:
    """Validate renderer input and return it as float64 ``(channels, frames)``.

    Unlike :func:`services.common.audio_io.check_audio` this accepts short and silent buffers:
    processors must handle them; whether a file is worth mixing is decided at the boundary.

    Raises
    ------
    InvalidAudioError
        Not a floating-point numpy array, not 2-D, no channels, or non-finite samples.
    """
    if not isinstance(audio, np.ndarray) or not np.issubdtype(audio.dtype, np.floating):
        raise InvalidAudioError("audio must be a floating-point numpy array")
    if audio.ndim != 2 or audio.shape[0] < 1:
        raise InvalidAudioError(f"audio must have shape (channels, frames), got {audio.shape}")
    x = np.asarray(audio, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise InvalidAudioError("the audio contains NaN or infinite samples")
    return x


@dataclass(frozen=True)
class Context:
    """How much of the signal around a block a processor reads, for block processing.

    Processing the input extent ``[start - history, stop + lookahead)`` and keeping
    ``[start, stop)`` gives the whole-buffer result over that block to within the tolerance of
    :data:`BLOCK_TOLERANCE` (filters and envelope followers forget their start-up state
    exponentially; ``history`` is how long they take to forget it, ``lookahead`` how far a
    non-causal stage reads ahead).

    Attributes
    ----------
    history : int
        Frames before a block.
    lookahead : int
        Frames after a block.
    grid : int
        Block extents must start on multiples of this many frames (a processor that updates a
        control value every N frames from the start of its buffer declares N).
    """

    history: int = 0
    lookahead: int = 0
    grid: int = 1

    def __post_init__(self) -> None:
        if self.history < 0 or self.lookahead < 0 or self.grid < 1:
            raise ValueError(f"invalid block context {self}")


#: Largest absolute difference (full scale 1.0) between block and whole-buffer rendering that a
#: processor's :meth:`Processor.context` allows: -100 dBFS, far below the 24-bit output's LSB.
BLOCK_TOLERANCE = 1e-5
#: Time constants a one-pole state needs to forget its start: exp(-16) ~ 1e-7 of the mismatch
#: (a 60 dB start-up error in a gain computer leaves 7e-6 dB, 1e-6 relative in the output).
SETTLE_TIME_CONSTANTS = 16.0

#: A stateful block function: each call continues exactly where the previous one stopped.
BlockStream = Callable[[np.ndarray], np.ndarray]


class Resumable(Protocol):
    """Slow state carried between the overlapping extents of block processing.

    ``resumable(x, lo, kept_from, save_at)`` processes the extent ``x`` that starts at frame
    ``lo`` of the file. Its output from frame ``kept_from`` on must be exact: the slow state
    (a compressor's release, say) starts there from the state saved by the previous call (or
    from the processor's start-up state when ``kept_from`` is 0), and is saved at frame
    ``save_at`` (where the next call's ``kept_from`` will be) unless that is ``None``. Frames
    before ``kept_from`` are discarded by the caller. The short memories (filters, detectors) are
    covered by the processor's :class:`Context` history as usual.
    """

    def __call__(
        self, x: np.ndarray, lo: int, kept_from: int, save_at: int | None
    ) -> np.ndarray: ...


class Processor(abc.ABC):
    """Base class of every renderer effect.

    Subclasses declare :class:`Parameter` attributes, set them in ``__init__`` (which validates
    them) and implement :meth:`_process`.
    """

    def process(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """Process one complete buffer.

        Parameters
        ----------
        audio : np.ndarray, shape (channels, frames), floating point
            Finite samples, nominally within [-1, 1].
        sample_rate : int
            In Hz.

        Returns
        -------
        np.ndarray, shape (channels, frames), float32
            A new array; the input is never modified.

        Raises
        ------
        InvalidAudioError
            Wrong dtype, wrong shape or non-finite samples.
        InvalidParameterError
            A non-positive or non-integer sample rate.
        """
        x = check_processor_input(audio)
        sr = check_sample_rate(sample_rate)
        if x.shape[1] == 0:
            return np.zeros(x.shape, dtype=np.float32)
        y = self._process(x, sr)
        if y.shape != x.shape:
            raise AssertionError(f"{type(self).__name__} changed the shape {x.shape} -> {y.shape}")
        return np.ascontiguousarray(y, dtype=np.float32)

    def __call__(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """Alias of :meth:`process`."""
        return self.process(audio, sample_rate)

    def reset(self) -> None:  # noqa: B027 - an optional hook, empty by design
        """Clear internal state (caches, tails); parameters are kept."""

    @property
    def is_bypass(self) -> bool:
        """True when :meth:`process` would return its input unchanged (the chain skips it)."""
        return False

    def context(self, sample_rate: int) -> Context | None:
        """The block context this processor needs at its current parameters, or ``None`` when
        it must see the whole buffer at once (the safe default for a new processor: the chain
        then renders in one block)."""
        return None

    def resumable(self, sample_rate: int, channels: int) -> Resumable | None:
        """A fresh :class:`Resumable` for block processing, for context processors with a slow
        state (long releases) that a history would make expensive; ``None`` (the default) when
        the :meth:`context` history covers everything."""
        return None

    def stream(self, sample_rate: int, channels: int) -> BlockStream | None:
        """A fresh stateful block function, for processors whose memory is too long for a
        :class:`Context` (feedback delays, long reverb tails): consecutive blocks of validated
        float64 ``(channels, frames)`` audio in, the same blocks processed out, exactly as one
        call over the whole buffer. ``None`` when the processor does not stream."""
        return None

    @abc.abstractmethod
    def _process(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """Process validated float64 ``(channels, frames)`` audio with ``frames > 0``.

        Returns an array of the same shape (any float dtype).
        """

    def _parameters_changed(self) -> None:  # noqa: B027 - an optional hook, empty by design
        """Called after any parameter is set; processors that cache designs drop them here."""

    @property
    def parameters(self) -> dict[str, float]:
        """Current parameter values by attribute name (units in the names)."""
        out: dict[str, float] = {}
        for klass in reversed(type(self).__mro__):
            for name, attr in vars(klass).items():
                if isinstance(attr, Parameter):
                    out[name] = getattr(self, name)
        return out

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v:g}" for k, v in self.parameters.items())
        return f"{type(self).__name__}({args})"


class Chain(Processor, MutableSequence[Processor]):
    """An ordered, list-like series of processors; itself a :class:`Processor`.

    Examples
    --------
    >>> chain = Chain([ParametricEQ(), Compressor(threshold_db=-20.0, ratio=3.0)])  # doctest: +SKIP
    >>> chain.append(TruePeakLimiter())  # doctest: +SKIP
    >>> out = chain(audio, 44100)  # doctest: +SKIP
    """

    def __init__(self, processors: Iterable[Processor] = ()) -> None:
        self._processors: list[Processor] = []
        for p in processors:
            self.append(p)

    @staticmethod
    def _check(item: object) -> Processor:
        if not isinstance(item, Processor):
            raise TypeError(f"a Chain holds Processor instances, not {type(item).__name__}")
        return item

    @overload
    def __getitem__(self, index: int) -> Processor: ...

    @overload
    def __getitem__(self, index: slice) -> Chain: ...

    def __getitem__(self, index: int | slice) -> Processor | Chain:
        if isinstance(index, slice):
            return Chain(self._processors[index])
        return self._processors[index]

    @overload
    def __setitem__(self, index: int, value: Processor) -> None: ...

    @overload
    def __setitem__(self, index: slice, value: Iterable[Processor]) -> None: ...

    def __setitem__(self, index: int | slice, value: Any) -> None:
        if isinstance(index, slice):
            self._processors[index] = [self._check(p) for p in value]
        else:
            self._processors[index] = self._check(value)

    def __delitem__(self, index: int | slice) -> None:
        del self._processors[index]

    def __len__(self) -> int:
        return len(self._processors)

    def __iter__(self) -> Iterator[Processor]:
        return iter(self._processors)

    def insert(self, index: int, value: Processor) -> None:
        self._processors.insert(index, self._check(value))

    def reset(self) -> None:
        """Reset every processor in the chain."""
        for p in self._processors:
            p.reset()

    @property
    def is_bypass(self) -> bool:
        return all(p.is_bypass for p in self._processors)

    def process(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """Process one complete buffer in blocks (:func:`services.renderer.blocks.render_blocks`):
        memory stays bounded by the block size, however long the input.

        The input is validated without a float64 copy of the whole buffer.
        """
        from services.renderer.blocks import render_blocks

        x = check_float_audio(audio)
        sr = check_sample_rate(sample_rate)
        return render_blocks(self._processors, x, sr)

    def _process(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        from services.renderer.blocks import render_blocks

        return render_blocks(self._processors, audio, sample_rate)

    def __repr__(self) -> str:
        return f"Chain([{', '.join(repr(p) for p in self._processors)}])"


class ChoiceParameter(Parameter):
    """A schema choice parameter that also accepts its option names (``style="hall"``).

    The value stays the option's index (the physical value of a choice in the schema).
    """

    def validate(self, value: float | str) -> float:  # type: ignore[override]
        if isinstance(value, str) and self.schema_name is not None:
            return BY_NAME[self.schema_name].validate(value)  # type: ignore[arg-type]
        return super().validate(value)  # type: ignore[arg-type]

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
from collections.abc import Iterable, Iterator, MutableSequence
from typing import Any, overload

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

    def _process(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        y: np.ndarray = audio
        for p in self._processors:
            y = p.process(y, sample_rate)
        return y

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

"""The generator's score: notes and controller events in beats, one :class:`Part` per stem."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Part:
    """The notes of one stem, in quarter-note beats from the start of the song.

    Attributes
    ----------
    name : str
        The stem name.
    program : int
        GM program (drum kit number when ``drums``).
    drums : bool
        Played on MIDI channel 10 (bank 128).
    notes : list[tuple[float, float, int, int]]
        ``(start_beat, duration_beats, pitch, velocity)``.
    controls : list[tuple[float, int, int]]
        ``(beat, controller, value)`` (e.g. expression, CC 11, for side-chain pumping).
    """

    name: str
    program: int
    drums: bool = False
    notes: list[tuple[float, float, int, int]] = field(default_factory=list)
    controls: list[tuple[float, int, int]] = field(default_factory=list)

    def add(self, start: float, duration: float, pitch: int, velocity: float) -> None:
        """Append a note; velocity is rounded and clipped to 1..127."""
        self.notes.append((start, duration, int(pitch), int(min(127, max(1, round(velocity))))))

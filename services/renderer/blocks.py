"""Block processing: a chain renders a file of any length with bounded memory.

The chain's processors split in two runs:

* **Context processors** (EQ, compressors, exciter, stereo enhancer) declare a
  :class:`~services.renderer.processor.Context`: how much history before a block and how much
  look-ahead after it their output depends on, to within
  :data:`~services.renderer.processor.BLOCK_TOLERANCE`. A block ``[start, stop)`` is rendered by
  cutting the input extent ``[start - H, stop + A)`` (``H`` and ``A`` the sums over the run) and
  passing it through the processors in turn, each result cropped by what that processor needed,
  so each processor sees exactly the context that the ones after it need (overlap-save).
* **Resumable** context processors (the compressors) keep their slow state (a release of up to
  seconds) from one block to the next instead of rebuilding it from a long history: the state
  is saved at the frame where the next block's extent will need it and restored there, so only
  their short memories (detector filters) need a history.
* **Stream processors** at the end of the chain (tempo delay, reverb) have memories too long for
  a context (a feedback delay at 90 % rings for minutes); they carry their state from one block
  to the next and produce exactly the whole-buffer result.

Blocks are converted to float64 once and stay float64 between processors; the output is written
into one float32 array. Peak memory is the input, the output and a few block-sized buffers,
whatever the file's length (reused heap memory, not fresh pages: see
:mod:`services.renderer.allocator`). Block starts, histories and block sizes are multiples of
the least common multiple of the processors' grids, so a processor that updates a control value
every ``N`` frames sees the same grid in every block as in the whole buffer.

With no bounded context (a processor whose :meth:`~services.renderer.processor.Processor.context`
is ``None``), the context run is rendered in one block: correct, only not memory-bounded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from services.renderer.allocator import keep_block_buffers
from services.renderer.processor import BlockStream, Context, Processor, Resumable

#: Default block length. Long enough that the contexts (typically under a second) cost little;
#: short enough that a block's float64 buffers are a few MB.
BLOCK_S = 10.0


def _round_up(value: int, grid: int) -> int:
    return -(-value // grid) * grid


def plan(
    processors: Sequence[Processor], sample_rate: int, channels: int
) -> tuple[list[Processor], list[Context] | None, list[BlockStream]]:
    """Split the active processors into the context run and the trailing stream run.

    Returns ``(context_processors, their contexts or None, streams)``. Bypassed processors are
    left out. ``streams`` are freshly created (state at silence).
    """
    active = [p for p in processors if not p.is_bypass]
    streams: list[BlockStream] = []
    split = len(active)
    while split > 0:
        stream = active[split - 1].stream(sample_rate, channels)
        if stream is None:
            break
        streams.insert(0, stream)
        split -= 1
    head = active[:split]
    found = [p.context(sample_rate) for p in head]
    contexts = [c for c in found if c is not None]
    return head, (contexts if len(contexts) == len(found) else None), streams


def render_blocks(
    processors: Sequence[Processor],
    audio: np.ndarray,
    sample_rate: int,
    *,
    block_frames: int | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Render ``audio`` through ``processors`` (in order) block by block.

    Parameters
    ----------
    processors : Sequence[Processor]
    audio : np.ndarray, shape (channels, frames), floating point, finite (validated by the caller)
    sample_rate : int
    block_frames : int, optional
        Block length; :data:`BLOCK_S` seconds by default (rounded up to the processors' grid).
    out : np.ndarray, optional
        float32 array of ``audio``'s shape to write into (may not be ``audio`` itself).

    Returns
    -------
    np.ndarray, shape (channels, frames), float32
    """
    keep_block_buffers()  # block-sized buffers are reused heap memory, not fresh pages
    channels, frames = audio.shape
    if out is None:
        out = np.empty((channels, frames), dtype=np.float32)
    head, contexts, streams = plan(processors, sample_rate, channels)
    if not head and not streams:
        out[...] = audio
        return out
    if frames == 0:
        return out
    if block_frames is None:
        block_frames = int(BLOCK_S * sample_rate)
    if contexts is None:
        contexts = [Context()] * len(head)
        block_frames = frames  # one block: no processor's memory is cut
    grid = 1
    for c in contexts:
        grid = math.lcm(grid, c.grid)
    block_frames = _round_up(max(1, block_frames), grid)
    # history[i] and lookahead[i]: what processors i.. need in the input of processor i.
    history = [0] * (len(head) + 1)
    lookahead = [0] * (len(head) + 1)
    for i in range(len(head) - 1, -1, -1):
        history[i] = history[i + 1] + _round_up(contexts[i].history, grid)
        lookahead[i] = lookahead[i + 1] + contexts[i].lookahead

    resumables: list[Resumable | None] = [p.resumable(sample_rate, channels) for p in head]
    for start in range(0, frames, block_frames):
        stop = min(frames, start + block_frames)
        lo = max(0, start - history[0])
        hi = min(frames, stop + lookahead[0])
        x = np.array(audio[:, lo:hi], dtype=np.float64)
        for i, p in enumerate(head):
            resumable = resumables[i]
            if resumable is None:
                y = p._process(x, sample_rate)
            else:
                # Its slow state is exact from where the next processor's extent starts, and is
                # saved where the next block's will.
                save_at = max(0, stop - history[i + 1]) if stop < frames else None
                y = resumable(x, lo, max(0, start - history[i + 1]), save_at)
            new_lo = max(0, start - history[i + 1])
            new_hi = min(frames, stop + lookahead[i + 1])
            x = np.ascontiguousarray(y[:, new_lo - lo : new_hi - lo], dtype=np.float64)
            lo, hi = new_lo, new_hi
        for k, stream in enumerate(streams):
            y = stream(x)
            # float64 between processors; the last one's result goes straight into `out`.
            x = y if k == len(streams) - 1 else np.ascontiguousarray(y, dtype=np.float64)
        out[:, start:stop] = x
    return out

"""Keep block-sized buffers in the heap: glibc ``malloc`` tuning for block rendering.

numpy takes every array from ``malloc``. glibc serves a request above its *mmap threshold* with
a fresh ``mmap`` (the threshold starts at 128 KiB and rises, as large blocks are freed, towards
32 MiB), and returns free memory at the top of the heap to the system beyond its *trim
threshold*. Fresh pages are faulted in and zeroed by the kernel on first touch. Block rendering
allocates and frees several block-sized float64 buffers (10 s of stereo at 44.1 kHz: 7 MB) per
processor and block, so with the defaults much of that memory is mapped, zeroed and unmapped
again and again: on a 3-minute song with every processor engaged, about 0.1 s of a 1.2 s render
(``scripts/bench_render.py``) went to page faults.

:func:`keep_block_buffers` fixes both thresholds: allocations up to :data:`MMAP_THRESHOLD`
come from the heap, and up to :data:`TRIM_THRESHOLD` of free heap is kept for the next block,
so after the first block the buffers are reused memory. Peak memory is unchanged (the same
buffers are live at once); a process's resident size stays at its high-water mark, bounded by
the trim threshold beyond it. Memory blocks above the mmap threshold (whole-song arrays) are
mapped and returned as before.

Only glibc has ``mallopt``; elsewhere (musl, macOS) this does nothing.
"""

from __future__ import annotations

import ctypes
import functools
import sys

#: ``M_TRIM_THRESHOLD`` and ``M_MMAP_THRESHOLD`` (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: Requests up to this size come from the heap: glibc's largest mmap threshold (a 10 s stereo
#: float64 block at 192 kHz is 31 MB).
MMAP_THRESHOLD = 32 * 2**20
#: Free memory kept at the top of the heap before any is returned to the system.
TRIM_THRESHOLD = 256 * 2**20


@functools.cache
def keep_block_buffers() -> bool:
    """Set glibc's mmap and trim thresholds (once per process).

    Returns
    -------
    bool
        True when both were set (glibc), False where ``mallopt`` is not available.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )

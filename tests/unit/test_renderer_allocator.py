"""The allocator tuning keeps block-sized buffers in the heap (glibc)."""

from __future__ import annotations

import ctypes
import sys

import numpy as np
import pytest

from services.renderer.allocator import MMAP_THRESHOLD, keep_block_buffers


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _mapped_bytes() -> int:
    """Bytes glibc currently holds in mmapped chunks (``mallinfo2().hblkhd``)."""
    mallinfo2 = ctypes.CDLL(None).mallinfo2
    mallinfo2.restype = _MallInfo2
    return int(mallinfo2().hblkhd)


glibc = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not hasattr(ctypes.CDLL(None), "mallinfo2"),
    reason="glibc only",
)


@glibc
def test_block_sized_buffers_come_from_the_heap_and_whole_songs_are_mapped() -> None:
    assert keep_block_buffers() is True
    assert keep_block_buffers() is True  # once per process, cached
    before = _mapped_bytes()
    block = np.ones((2, 441_000))  # a 10 s stereo float64 block: 7 MB
    assert _mapped_bytes() == before
    song = np.ones(MMAP_THRESHOLD // 8 + 1024)  # above the threshold: mapped as before
    assert _mapped_bytes() >= before + song.nbytes
    del song
    assert _mapped_bytes() == before
    del block

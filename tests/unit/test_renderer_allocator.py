"""The allocator tuning keeps block-sized buffers in the heap (glibc).

Measured in a fresh interpreter each time: in a long-lived process (this test session) glibc's
dynamic mmap threshold may already have risen, which would hide the difference.
"""

from __future__ import annotations

import ctypes
import json
import subprocess
import sys
from pathlib import Path

import pytest

from services.renderer.allocator import keep_block_buffers

ROOT = Path(__file__).resolve().parents[2]

#: Allocates a 10 s stereo float64 block (7 MB) and reports the bytes glibc holds in mmapped
#: chunks (``mallinfo2().hblkhd``) before and while it is alive, with or without the tuning.
_PROBE = """
import ctypes, json, sys
import numpy as np
from services.renderer.allocator import keep_block_buffers

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

mallinfo2 = ctypes.CDLL(None).mallinfo2
mallinfo2.restype = MallInfo2
tuned = keep_block_buffers() if sys.argv[1] == "tuned" else None
before = mallinfo2().hblkhd
block = np.ones((2, 441_000))
print(json.dumps({"tuned": tuned, "mapped": mallinfo2().hblkhd - before}))
"""

glibc = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not hasattr(ctypes.CDLL(None), "mallinfo2"),
    reason="glibc only",
)


def _probe(mode: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, mode], cwd=ROOT, capture_output=True, text=True, check=True
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


@glibc
def test_block_sized_buffers_come_from_the_heap() -> None:
    plain, tuned = _probe("plain"), _probe("tuned")
    assert plain["mapped"] >= 7_000_000  # glibc's default: a fresh mapping, zeroed pages
    assert tuned == {"tuned": True, "mapped": 0}  # heap memory, reused block after block


@glibc
def test_tuning_is_set_once_per_process() -> None:
    assert keep_block_buffers() is True
    assert keep_block_buffers() is True

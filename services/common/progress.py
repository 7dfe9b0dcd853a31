"""Progress bars for the command line (on stderr, so stdout stays clean for results)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any


def songs_bar(desc: str, quiet: bool) -> Callable[[int, int], None]:
    """A ``progress(done, total)`` callback drawing a tqdm bar of songs; silent when ``quiet``."""
    from tqdm import tqdm

    bar: list[Any] = []

    def progress(done: int, total: int) -> None:
        if not bar:
            bar.append(tqdm(total=total, desc=desc, unit="song", disable=quiet, file=sys.stderr))
        bar[0].update(done - bar[0].n)
        if done == total:
            bar[0].close()

    return progress

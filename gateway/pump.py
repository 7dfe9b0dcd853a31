"""The gateway's background work loop: a daemon thread that runs :meth:`PumpThread.pump` every
``poll_s`` and at once when woken, so no request waits for work it only starts (admission of
waiting jobs, imports of a batch from the tenant's bucket)."""

from __future__ import annotations

import abc
import logging
import threading
from typing import Self

log = logging.getLogger(__name__)


class PumpThread(abc.ABC):
    """Subclasses implement :meth:`pump`; an exception is logged and the loop goes on (a
    database or broker hiccup must not stop it)."""

    def __init__(self, name: str, *, poll_s: float) -> None:
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    @abc.abstractmethod
    def pump(self) -> int:
        """Do the work there is; how many items."""

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(5)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def wake(self) -> None:
        """Ask the thread to pump now."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.poll_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.pump()
            except Exception:  # noqa: BLE001 - logged; the next round retries
                log.exception("%s failed; retrying", self._thread.name)

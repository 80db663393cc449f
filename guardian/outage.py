"""What the engine does while its store is failing: the ``on_store_error`` state machine, in one place.

``fail_closed`` refuses every call until the store answers again; ``fail_open`` lets calls through uncounted
(their usage is queued by the store) and, for ``OUTAGE_RETRY_S`` after a failure, does not even try the store,
so an outage does not add a timeout to every call. The first failure is logged loudly, the recovery once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from guardian.errors import StoreError
from guardian.logs import get_logger

__all__ = ["OUTAGE_RETRY_S", "OutageGate"]

OUTAGE_RETRY_S = 1.0  # with fail_open, how long calls skip a store that just failed


class OutageGate:
    def __init__(self, mode: str, clock: Callable[[], float]) -> None:
        self.mode = mode
        self.fail_open = mode == "fail_open"
        self._clock = clock
        self._lock = threading.Lock()
        self._down = False
        self._retry_at = 0.0
        self._log = get_logger()

    def skipping(self) -> bool:
        """True while fail_open lets calls pass without asking a store that just failed."""
        return self.fail_open and self._down and self._clock() < self._retry_at

    def failed(self, exc: StoreError, op: str, fields: dict[str, Any] | None = None) -> None:
        with self._lock:
            first = not self._down
            self._down = True
            self._retry_at = self._clock() + OUTAGE_RETRY_S
        if first:
            self._log.error(
                "store_error",
                op=op,
                error=str(exc),
                mode=self.mode,
                consequence="calls pass uncounted until the store is back; usage is queued"
                if self.fail_open
                else "calls are refused until the store is back",
                **(fields or {}),
            )

    def ok(self) -> None:
        if self._down:
            with self._lock:
                was, self._down = self._down, False
            if was:
                self._log.warning("store_recovered", mode=self.mode)

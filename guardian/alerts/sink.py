"""Where alerts go: the ``AlertSink`` protocol, the log sink, and a recording sink for tests."""

from __future__ import annotations

import threading
from typing import Protocol, runtime_checkable

from guardian.alerts._model import Alert
from guardian.logs import get_logger

__all__ = ["AlertSink", "LogSink", "RecordingSink"]

_log = get_logger()


@runtime_checkable
class AlertSink(Protocol):
    """Delivers one alert, synchronously, on the dispatcher's worker thread.

    ``send`` raises (ideally ``AlertDeliveryError``) once its own retries are spent; the
    dispatcher then retries later. A sink whose ``all_kinds`` attribute is True receives
    every alert, including kinds the policy does not alert on (the log sink does).
    """

    name: str

    def send(self, alert: Alert) -> None: ...


class LogSink:
    """Logs every alert as the structlog event ``alert``; always on, whatever ``alerts.on`` says."""

    name = "log"
    all_kinds = True

    def send(self, alert: Alert) -> None:
        level = "info" if alert.kind in ("threshold", "test") else "warning"
        getattr(_log, level)("alert", **alert.to_log_fields())


class RecordingSink:
    """Keeps every alert it is sent, in order; thread-safe. For your own tests."""

    def __init__(self, name: str = "recording", *, all_kinds: bool = False) -> None:
        self.name = name
        self.all_kinds = all_kinds
        self._alerts: list[Alert] = []
        self._changed = threading.Condition()

    def send(self, alert: Alert) -> None:
        with self._changed:
            self._alerts.append(alert)
            self._changed.notify_all()

    @property
    def alerts(self) -> list[Alert]:
        """A copy of what was received so far."""
        with self._changed:
            return list(self._alerts)

    def wait_for(self, count: int, timeout_s: float) -> bool:
        """Block until at least ``count`` alerts arrived; False if ``timeout_s`` passed first."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self._alerts) >= count, timeout=timeout_s)

    def clear(self) -> None:
        with self._changed:
            self._alerts.clear()

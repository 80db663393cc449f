"""Delivers alerts off the agent's thread: dedup fleet-wide, retry with backoff, never lose one silently.

``submit`` costs what a bounded queue put costs and never raises. A daemon worker does
the rest: it deduplicates through the store (one message per ``dedup_key`` across every
process sharing it), delivers to each sink, and retries a failing sink later. An alert
that cannot be delivered in the end is logged as ``alert_dropped`` with its content.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import heapq
import itertools
import math
import os
import threading
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from guardian.alerts._model import Alert, AlertDeliveryError, AlertKind
from guardian.alerts.config import DEFAULT_ALERT_KINDS
from guardian.alerts.sink import AlertSink
from guardian.keys import KeyBuilder
from guardian.logs import get_logger
from guardian.threads import start_background

__all__ = ["AlertDispatcher", "FlagStore"]

_log = get_logger()


class FlagStore(Protocol):
    """The one store operation alerts need (``guardian.store.Store`` provides it)."""

    def set_flag(self, key: str, ttl_s: float | None, *, now: float, only_if_absent: bool = False) -> bool: ...


@dataclass(eq=False)
class _Pending:
    alert: Alert
    sinks: list[AlertSink] | None = None  # None until routed and deduplicated (on the worker)
    attempts: int = 0
    errors: list[str] = field(default_factory=list)


class AlertDispatcher:
    """Fan alerts out to sinks from a background thread.

    ``enabled_kinds`` limits which kinds reach the sinks (Slack); a sink with
    ``all_kinds = True`` (the ``LogSink``) gets every kind. ``"test"`` is always enabled.
    A sink that raises is retried after ``retry_base_s * 2**attempt`` seconds (at most
    ``retry_max_s``, or what the destination asked for), up to ``max_attempts`` attempts;
    an ``AlertDeliveryError`` with ``retryable=False`` is not retried.
    """

    def __init__(
        self,
        sinks: Iterable[AlertSink],
        *,
        store: FlagStore,
        keys: KeyBuilder,
        clock: Callable[[], float] = time.time,
        queue_size: int = 1000,
        flush_timeout_s: float = 5.0,
        enabled_kinds: Collection[AlertKind] = DEFAULT_ALERT_KINDS,
        max_attempts: int = 5,
        retry_base_s: float = 1.0,
        retry_max_s: float = 60.0,
        dedup_cache_size: int = 4096,
    ) -> None:
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.sinks: tuple[AlertSink, ...] = tuple(sinks)
        self._store = store
        self._keys = keys
        self._clock = clock
        self._queue_size = queue_size
        self._flush_timeout_s = flush_timeout_s
        self._enabled: frozenset[str] = frozenset(enabled_kinds) | {"test"}
        self._max_attempts = max_attempts
        self._retry_base_s = retry_base_s
        self._retry_max_s = retry_max_s
        self._dedup_cache_size = dedup_cache_size

        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._queue: deque[_Pending] = deque()
        self._retries: list[tuple[float, int, _Pending]] = []  # heap of (due on monotonic clock, seq, item)
        self._seq = itertools.count()
        self._in_flight: _Pending | None = None
        self._closed = False  # no more submits
        self._draining = False  # close() is flushing: retries are due at once
        self._stopped = False  # the worker must exit
        self._thread: threading.Thread | None = None
        self._exit_hook: Callable[[], None] | None = None
        self._seen: OrderedDict[str, float] = OrderedDict()  # dedup key -> expiry (clock time); worker only
        _live.add(self)

    # ------------------------------------------------------------------ agent side

    def submit(self, alert: Alert) -> None:
        """Queue an alert for delivery. Never blocks on I/O and never raises."""
        try:
            with self._lock:
                if self._closed:
                    dropped, why = True, "dispatcher_closed"
                elif len(self._queue) >= self._queue_size:
                    dropped, why = True, "queue_full"
                else:
                    dropped, why = False, ""
                    self._queue.append(_Pending(alert))
                    if self._thread is None:
                        self._start_worker()
                    self._changed.notify_all()
            if dropped:
                _log_dropped(alert, why)
        except Exception:  # pragma: no cover - the agent must never pay for an alert
            with contextlib.suppress(Exception):
                _log.exception("alert_submit_failed", kind=getattr(alert, "kind", None))

    @property
    def pending(self) -> int:
        """Alerts accepted and not yet delivered, deduplicated away or dropped."""
        with self._lock:
            return self._pending_locked()

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until every accepted alert is settled; False if ``timeout_s`` passed first."""
        with self._changed:
            return self._changed.wait_for(lambda: self._pending_locked() == 0, timeout=timeout_s)

    def close(self, timeout_s: float | None = None) -> None:
        """Deliver what is pending within ``timeout_s`` (default ``flush_timeout_s``), then stop.

        Every alert still undelivered is logged as ``alert_dropped``. Idempotent.
        """
        timeout = self._flush_timeout_s if timeout_s is None else timeout_s
        with self._changed:
            if self._closed:
                return
            self._closed = True
            self._draining = True
            self._changed.notify_all()
            self._changed.wait_for(lambda: self._pending_locked() == 0, timeout=timeout)
            self._stopped = True
            left = list(self._queue) + [item for _due, _seq, item in self._retries]
            in_flight = self._in_flight
            self._queue.clear()
            self._retries.clear()
            self._changed.notify_all()
        if self._exit_hook is not None:
            atexit.unregister(self._exit_hook)
        for item in left:
            _log_dropped(item.alert, "undelivered_at_close", errors=item.errors)
        if in_flight is not None:
            _log_dropped(in_flight.alert, "in_flight_at_close", errors=in_flight.errors)

    def __enter__(self) -> AlertDispatcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ worker side

    def _reset_after_fork(self) -> None:
        """In a forked child: the worker thread did not survive the fork, and what was pending
        belongs to the parent, which delivers it. Start afresh."""
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._queue.clear()
        self._retries.clear()
        self._in_flight = None
        self._thread = None

    def _pending_locked(self) -> int:
        return len(self._queue) + len(self._retries) + (self._in_flight is not None)

    def _start_worker(self) -> None:
        # Both through weak references: a dispatcher dropped without close() must not live on in its thread or in
        # the exit hooks (keeping its store and connections alive with it).
        ref = weakref.ref(self)
        self._thread = start_background(_work_loop, (ref,), "guardian-alerts")
        self._exit_hook = functools.partial(_close_at_exit, ref)
        atexit.register(self._exit_hook)  # deliver what is pending when the interpreter exits
        weakref.finalize(self, _wake, self._changed)  # a waiting worker sees its dispatcher is gone, and ends

    def _next_locked(self) -> tuple[_Pending | None, float | None]:
        """The next item to work on, else how long to wait for one (None: until notified). Holds the lock."""
        now = time.monotonic()
        if self._retries and (self._draining or self._retries[0][0] <= now):
            return heapq.heappop(self._retries)[2], None
        if self._queue:
            return self._queue.popleft(), None
        return None, max(0.0, self._retries[0][0] - now) if self._retries else None

    def _work_one(self, item: _Pending) -> None:
        try:
            self._work(item)
        except Exception:  # pragma: no cover - the worker must survive anything
            _log.exception("alert_worker_error", **item.alert.to_log_fields())
        with self._changed:
            self._in_flight = None
            self._changed.notify_all()

    def _work(self, item: _Pending) -> None:
        if item.sinks is None:
            if not self._first_sighting(item.alert):
                return
            item.sinks = [s for s in self.sinks if item.alert.kind in self._enabled or _all_kinds(s)]
        failed: list[AlertSink] = []
        retryable = True
        wait_s: float | None = None
        item.attempts += 1
        for sink in item.sinks:
            try:
                sink.send(item.alert)
            except Exception as exc:
                failed.append(sink)
                error = f"{sink.name}: {type(exc).__name__}: {exc}"
                item.errors.append(error)
                if isinstance(exc, AlertDeliveryError):
                    retryable = retryable and exc.retryable
                    if exc.retry_after_s is not None:
                        wait_s = max(wait_s or 0.0, exc.retry_after_s)
                _log.warning(
                    "alert_delivery_failed",
                    sink=sink.name,
                    attempt=item.attempts,
                    error=f"{type(exc).__name__}: {exc}",
                    **item.alert.to_log_fields(),
                )
        if not failed:
            return
        item.sinks = failed
        if not retryable or item.attempts >= self._max_attempts:
            _log_dropped(
                item.alert,
                "delivery_failed" if retryable else "delivery_rejected",
                errors=item.errors,
                sinks=[s.name for s in failed],
            )
            return
        backoff = min(self._retry_max_s, self._retry_base_s * 2 ** (item.attempts - 1))
        due = time.monotonic() + max(backoff, wait_s or 0.0)
        with self._changed:
            if not self._stopped:  # once stopped, close() has already logged this one as dropped
                heapq.heappush(self._retries, (due, next(self._seq), item))

    def _first_sighting(self, alert: Alert) -> bool:
        """True for the first delivery of a dedup key in the whole fleet (or if the store fails)."""
        key = alert.dedup_key
        now = self._clock()
        expiry = self._seen.get(key)
        if expiry is not None:
            if expiry > now:
                _log.debug("alert_deduplicated", source="local", **alert.to_log_fields())
                return False
            del self._seen[key]
        try:
            first = self._store.set_flag(
                self._keys.mark("alert:" + key), alert.dedup_ttl_s, now=now, only_if_absent=True
            )
        except Exception as exc:
            _log.warning("alert_dedup_failed", error=f"{type(exc).__name__}: {exc}", **alert.to_log_fields())
            first = True  # better a duplicate than a silent drop
        self._remember(key, now + alert.dedup_ttl_s if alert.dedup_ttl_s is not None else math.inf)
        if not first:
            _log.debug("alert_deduplicated", source="store", **alert.to_log_fields())
        return first

    def _remember(self, key: str, expiry: float) -> None:
        self._seen[key] = expiry
        self._seen.move_to_end(key)
        while len(self._seen) > self._dedup_cache_size:
            self._seen.popitem(last=False)


_live: weakref.WeakSet[AlertDispatcher] = weakref.WeakSet()


def _work_loop(ref: weakref.ref[AlertDispatcher]) -> None:
    """The delivery worker. It holds its dispatcher while delivering, never while it waits for work."""
    while True:
        dispatcher = ref()
        if dispatcher is None:
            return
        changed = dispatcher._changed
        with changed:
            if dispatcher._stopped:
                return
            item, wait_s = dispatcher._next_locked()
            if item is None:
                del dispatcher
                changed.wait(wait_s)
                continue
            dispatcher._in_flight = item
        dispatcher._work_one(item)
        del dispatcher


def _wake(changed: threading.Condition) -> None:
    with changed:
        changed.notify_all()


def _close_at_exit(ref: weakref.ref[AlertDispatcher]) -> None:
    dispatcher = ref()
    if dispatcher is not None:
        dispatcher.close()


def _reset_after_fork() -> None:
    for dispatcher in list(_live):
        dispatcher._reset_after_fork()


os.register_at_fork(after_in_child=_reset_after_fork)


def _all_kinds(sink: AlertSink) -> bool:
    return bool(getattr(sink, "all_kinds", False))


def _log_dropped(alert: Alert, why: str, **extra: Any) -> None:
    _log.error("alert_dropped", drop_reason=why, **extra, **alert.to_log_fields())

"""Keeps the holds of calls still running from expiring.

A hold that expires is charged (see ``Store``): right for a process that died, wrong for a call that is merely
slow (a long generation, a reasoning model thinking for minutes). A daemon thread renews the holds of live calls
every third of their TTL, in one store round trip for all of them. It holds its owner only weakly: a supervisor
that is dropped without ``close()`` takes the thread with it.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from typing import Protocol

from guardian.threads import start_background

__all__ = ["HoldRenewer"]


class _Renews(Protocol):
    def renew_holds(self) -> int: ...


class HoldRenewer:
    """Calls ``owner.renew_holds()`` every ``interval_s`` (real time) from a daemon thread, started on demand.

    ``wait`` is the pause between rounds (``threading.Event.wait`` semantics: True means stop); tests inject one.
    """

    def __init__(
        self, owner: _Renews, interval_s: float, *, wait: Callable[[threading.Event, float], bool] | None = None
    ) -> None:
        self._owner = weakref.ref(owner)
        self._interval_s = interval_s
        self._wait = wait or _event_wait
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        _renewers.add(self)

    def _after_fork(self) -> None:
        """In a forked child: the parent's thread did not come along, and its lock may be held."""
        self._thread, self._lock = None, threading.Lock()

    def ensure_running(self) -> None:
        # Called on every reservation: the fork check is done once per fork (below), not with a getpid() here.
        if self._thread is not None or self._stop.is_set():
            return
        with self._lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = start_background(
                    _loop, (self._owner, self._stop, self._interval_s, self._wait), "guardian-hold-renewer"
                )

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)


def _event_wait(stop: threading.Event, seconds: float) -> bool:
    return stop.wait(seconds)


def _loop(
    owner: weakref.ref[_Renews],
    stop: threading.Event,
    interval_s: float,
    wait: Callable[[threading.Event, float], bool],
) -> None:
    while not wait(stop, interval_s):
        target = owner()
        if target is None:
            return
        target.renew_holds()
        del target  # hold no strong reference while waiting


_renewers: weakref.WeakSet[HoldRenewer] = weakref.WeakSet()


def _reset_after_fork() -> None:
    for renewer in list(_renewers):
        renewer._after_fork()


os.register_at_fork(after_in_child=_reset_after_fork)

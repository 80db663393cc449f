"""Guardian's background threads (Redis flusher, alert worker, hold renewer): where they start, and how code
knows it is running on one.

A finalizer (``weakref.finalize``) runs on whichever thread the garbage collector happens to run on, ours
included. Closing a Guardian joins and drains those threads, which one of them cannot do to itself: it would
join itself (an error) or wait for the very delivery it is in the middle of.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any

_ours: weakref.WeakSet[threading.Thread] = weakref.WeakSet()


def start_background(target: Callable[..., object], args: tuple[Any, ...], name: str) -> threading.Thread:
    """Start a daemon thread of ours: it never keeps the interpreter alive (exit hooks flush what it holds)."""
    thread = threading.Thread(target=target, args=args, name=name, daemon=True)
    _ours.add(thread)
    thread.start()
    return thread


def on_background_thread() -> bool:
    """Whether the calling thread is one of Guardian's background threads."""
    return threading.current_thread() in _ours

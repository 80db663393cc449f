"""A Guardian that is never closed still releases everything once it is garbage-collected (issue 7, item 19)."""

from __future__ import annotations

import gc
import os
import threading
import weakref
from typing import Any

import pytest

from guardian import Guardian, Policy
from guardian.testing import RecordingSink, ScriptedChatModel

pytestmark = pytest.mark.redis

POLICY = Policy.from_dict(
    {
        "version": 1,
        "loops": [],
        "budgets": [{"name": "daily", "scope": "user", "window": "day", "limits": {"llm_calls": 1}, "alert_at": [0.5]}],
    }
)


def _sockets() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:
            continue
    return count


def _guardian_threads() -> int:
    return sum(t.name.startswith("guardian-") for t in threading.enumerate())


def _use_and_drop(redis_url: str, key_prefix: str, index: int) -> tuple[weakref.ref[Any], weakref.ref[Any]]:
    """One Guardian that reserved, committed, alerted and renewed, then was dropped without close()."""
    sink = RecordingSink(all_kinds=True)
    guard = Guardian(POLICY, store=redis_url, key_prefix=key_prefix, alert_sinks=[sink])
    model = ScriptedChatModel(replies=["x"], max_tokens=5)
    model.invoke("q", config={"callbacks": [guard.callback(user=f"u{index}")]})
    assert guard.supervisor.renewer.running
    assert sink.wait_for(1, timeout_s=10)  # the threshold alert: the dispatcher's worker ran
    return weakref.ref(guard), weakref.ref(guard.store)


def test_unclosed_guardians_leave_no_threads_connections_or_stores(redis_url: str, key_prefix: str) -> None:
    """Fifty Redis Guardians that alerted and were dropped unclosed leave no flusher, renewer or alert thread, no
    open socket and no live store behind them, and their usage was flushed on the way out."""
    gc.collect()
    threads, sockets = _guardian_threads(), _sockets()
    refs = [_use_and_drop(redis_url, key_prefix, i) for i in range(50)]
    gc.collect()
    assert all(guard() is None and store() is None for guard, store in refs)
    assert _guardian_threads() == threads
    assert _sockets() <= sockets
    reader = Guardian(POLICY, store=redis_url, key_prefix=key_prefix)
    rows = reader.status()
    reader.close()
    assert len(rows) == 50
    assert all(row.spent.llm_calls == 1 and row.reserved.llm_calls == 0 for row in rows)


def test_a_finalizer_run_on_an_alert_worker_closes_from_a_thread_of_its_own(redis_url: str, key_prefix: str) -> None:
    """Garbage collection may run a dropped Guardian's finalizer on its own alert worker (or Redis flusher), which
    cannot drain or join itself. Closing there hands the work to a thread of its own: the alert being delivered
    is not dropped as "in flight at close", nothing raises, and usage is still flushed."""
    from structlog.testing import capture_logs

    errors: list[BaseException] = []
    delivered = threading.Event()
    holder: list[Guardian] = []

    class FinalizingSink:
        name = "finalizing"
        all_kinds = True

        def send(self, alert: Any) -> None:
            try:
                holder[0]._finalizer()  # what a garbage collection on this thread would run
            except BaseException as exc:
                errors.append(exc)
            delivered.set()

    guard = Guardian(POLICY, store=redis_url, key_prefix=key_prefix, alert_sinks=[FinalizingSink()])
    holder.append(guard)
    with capture_logs() as logs:
        ScriptedChatModel(replies=["x"], max_tokens=5).invoke("q", config={"callbacks": [guard.callback(user="f")]})
        assert delivered.wait(10)
        for thread in threading.enumerate():
            if thread.name == "guardian-close":
                thread.join(10)
    assert errors == []
    assert not [e for e in logs if e["event"] == "alert_dropped"]
    assert not any(t.name == "guardian-close" for t in threading.enumerate())
    assert not guard.supervisor.renewer.running
    reader = Guardian(POLICY, store=redis_url, key_prefix=key_prefix)
    (row,) = reader.status()
    reader.close()
    assert row.spent.llm_calls == 1


def test_a_memory_guardian_forgets_finished_runs_once_their_retention_passes() -> None:
    """Item 20: 2,000 short runs with a run budget fill the embedded store's tables (run buckets, commit markers);
    once the finished runs' retention has passed, every one of those entries is gone and only the day's user
    bucket is left. (benchmarks/bench_memory.py measures the same in RSS: 25.0 MB kept before, 0.0 MB after.)"""
    from guardian.store import MemoryStore
    from guardian.supervisor import RETIRED_RUN_KEEP_S
    from guardian.testing import FakeClock

    clock = FakeClock()
    store = MemoryStore()
    policy = {
        "version": 1,
        "loops": [],
        "budgets": [
            {"name": "run-cap", "scope": "run", "window": "run", "limits": {"llm_calls": 5}},
            {"name": "daily", "scope": "user", "window": "day", "limits": {"llm_calls": 100_000}},
        ],
    }
    guard = Guardian(Policy.from_dict(policy), store=store, clock=clock)
    model = ScriptedChatModel(replies=["x"], cycle=True, max_tokens=5)
    for _ in range(2_000):
        model.invoke("q", config={"callbacks": [guard.callback(user="u")]})
    assert len(store._buckets) == 2_001
    assert len(store._markers) == 2_000
    clock.advance(RETIRED_RUN_KEEP_S + 61)
    store.read([], clock())
    assert len(store._buckets) == 1
    assert len(store._markers) == 0
    (row,) = guard.status()
    assert row.spent.llm_calls == 2_000
    guard.close()

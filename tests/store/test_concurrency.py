"""Many writers on one budget: never over the limit, and never a refusal while there was room."""

from __future__ import annotations

import multiprocessing
import threading
import uuid

import pytest

from guardian.amounts import METRICS, Amounts
from guardian.keys import BucketKey, KeyBuilder
from guardian.store import NO_LIMIT, CommitRequest, MemoryStore, RedisStore, ReserveRequest, Store, Target

NOW = 1_800_000_000.0
AMOUNT = Amounts(input_tokens=5, output_tokens=2, total_tokens=7, cost_usd=3, llm_calls=1)
CAPACITY = 100
THREADS = 8
ATTEMPTS = 7  # per thread: 4 processes x 8 threads x 7 = 224 attempts for 100 slots


def shared_target(prefix: str) -> Target:
    keys = KeyBuilder(prefix)
    key = keys.bucket(BucketKey("acme", "shared", "tenant", "acme", "2027-01-15"))
    limits = tuple(CAPACITY * AMOUNT.total_tokens if m == "total_tokens" else NO_LIMIT for m in METRICS)
    return Target(key, limits, NOW + 86_400)


def hammer(store: Store, prefix: str, threads: int = THREADS) -> int:
    """Reserve-then-commit with exact estimates from several threads; returns how many calls were granted.

    Every refusal is checked on the spot: it must have seen the budget without room for one more call.
    """
    target, keys = shared_target(prefix), KeyBuilder(prefix)
    limit = CAPACITY * AMOUNT.total_tokens
    granted = [0] * threads
    wrongly_refused: list[int] = []

    def worker(slot: int) -> None:
        for _ in range(ATTEMPTS):
            call_id = uuid.uuid4().hex
            result = store.reserve(ReserveRequest(call_id, [target], AMOUNT, NOW))
            if result.ok:
                granted[slot] += 1
                store.commit(CommitRequest(call_id, [target], AMOUNT, NOW, keys.call_marker("acme", call_id)))
            elif result.refusal is None or result.refusal.current + AMOUNT.total_tokens <= limit:
                wrongly_refused.append(result.refusal.current if result.refusal else -1)

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    store.flush()
    assert not wrongly_refused, f"refused with room left: {wrongly_refused}"
    return sum(granted)


def redis_process(url: str, prefix: str, results: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    store = RedisStore.from_url(url)
    try:
        results.put(hammer(store, prefix))
    finally:
        store.close()


def test_threads_on_memory_fill_the_budget_exactly() -> None:
    """32 threads on MemoryStore: exactly CAPACITY calls granted, spent equals the limit."""
    store = MemoryStore()
    assert hammer(store, "guardian-test:", threads=32) == CAPACITY
    (state,) = store.read([shared_target("guardian-test:").key], NOW)
    assert state is not None
    assert state.spent.total_tokens == CAPACITY * AMOUNT.total_tokens
    assert state.reserved == Amounts()


@pytest.mark.redis
def test_processes_and_threads_on_redis_fill_the_budget_exactly(redis_url: str, key_prefix: str) -> None:
    """4 processes x 8 threads on one Redis budget: exactly CAPACITY granted, none over, none wrongly refused."""
    ctx = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue = ctx.Queue()  # type: ignore[type-arg]
    procs = [ctx.Process(target=redis_process, args=(redis_url, key_prefix, results)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    granted = sum(results.get(timeout=5) for _ in procs)
    assert granted == CAPACITY
    store = RedisStore.from_url(redis_url)
    (state,) = store.read([shared_target(key_prefix).key], NOW)
    store.close()
    assert state is not None
    assert state.spent == Amounts(
        input_tokens=500, output_tokens=200, total_tokens=700, cost_usd=300, llm_calls=CAPACITY
    )
    assert state.reserved == Amounts()

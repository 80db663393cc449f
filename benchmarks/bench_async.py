"""Event-loop lag under many concurrent ``ainvoke`` calls, with and without Guardian, measured in one run.

A ticker task asks the loop to wake it every millisecond and records how late it wakes; meanwhile N concurrent
``ainvoke`` calls of a fake chat model that awaits 50 ms (a provider's latency) run, bare or with Guardian's
callback on a RedisStore. Guardian's handler runs
inline on the loop (no thread hop per event), so each Redis round trip it makes blocks the loop for its duration:
this is the "before" of issue 12's asyncio store. Also: exactness under that concurrency (N calls on room for N/2).

Run: ``.venv/bin/python benchmarks/bench_async.py [--redis URL] [--calls 600]``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import redis
import structlog

from guardian import Guardian, GuardianHalt, Policy
from guardian.testing import ScriptedChatModel

POLICY = Policy.from_dict(
    {
        "version": 1,
        "loops": [],
        "settings": {"history": False},
        "budgets": [
            {"name": "user-daily", "scope": "user", "window": "day", "limits": {"llm_calls": 10_000_000}},
            {"name": "tenant-monthly", "scope": "tenant", "window": "month", "limits": {"llm_calls": 10_000_000}},
        ],
    }
)


class SlowModel(ScriptedChatModel):
    """A provider that takes 50 ms to answer, awaiting it as a real async client does (the loop is free meanwhile)."""

    async def _agenerate(self, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any) -> Any:
        await asyncio.sleep(0.05)
        return self._generate(messages, stop, None, **kwargs)


async def lag_while(work: Callable[[], Awaitable[Any]]) -> list[float]:
    """How late (ms) a 1 ms ticker wakes while ``work`` runs."""
    lags: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        while not done.is_set():
            start = time.perf_counter()
            await asyncio.sleep(0.001)
            lags.append((time.perf_counter() - start) * 1000 - 1.0)

    task = asyncio.create_task(ticker())
    try:
        await work()
    finally:
        done.set()
        await task
    return lags


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) > 1 else 0.0


async def run(url: str, calls: int) -> None:
    model = SlowModel(replies=["ok"], cycle=True, max_tokens=8)
    prefix = f"guardian-bench-async-{uuid.uuid4().hex[:8]}:"
    guard = Guardian(POLICY, store=url, key_prefix=prefix)
    try:
        handler = guard.callback(agent="bench", user="u", tenant="t")

        async def bare() -> None:
            await asyncio.gather(*(model.ainvoke("hi") for _ in range(calls)))

        async def guarded() -> None:
            await asyncio.gather(*(model.ainvoke("hi", config={"callbacks": [handler]}) for _ in range(calls)))

        results: dict[str, list[float]] = {"bare": [], "guardian": []}
        for _ in range(3):  # interleaved rounds
            results["bare"] += await lag_while(bare)
            results["guardian"] += await lag_while(guarded)
        without, with_guardian = p99(results["bare"]), p99(results["guardian"])
        print(f"{calls} concurrent ainvoke on {url}: event-loop lag p99 {without:.1f} ms bare, "
              f"{with_guardian:.1f} ms with Guardian ({with_guardian / max(without, 0.01):.1f}x)")  # fmt: skip
        exact = Policy.from_dict(
            {"version": 1, "loops": [], "budgets": [{"name": "cap", "scope": "user", "window": "day",
             "limits": {"llm_calls": calls // 2}}]}
        )  # fmt: skip
        with Guardian(exact, store=url, key_prefix=prefix + "exact:") as tight:
            tight_handler = tight.callback(agent="bench", user="exact", tenant="t")
            counted = ScriptedChatModel(replies=["ok"], cycle=True, max_tokens=8)

            async def one() -> bool:
                try:
                    await counted.ainvoke("hi", config={"callbacks": [tight_handler]})
                    return True
                except GuardianHalt:
                    return False

            served = sum(await asyncio.gather(*(one() for _ in range(calls))))
        print(f"exactness: {calls} concurrent calls on room for {calls // 2}: {served} served, "
              f"{counted.calls} provider calls")  # fmt: skip
    finally:
        guard.close()
        client = redis.Redis.from_url(url)
        for key in client.scan_iter(match=prefix + "*", count=1000):  # our own prefix only
            client.delete(key)
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis", default=os.environ.get("GUARDIAN_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--calls", type=int, default=600)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    logging.getLogger("langchain_core.callbacks.manager").setLevel(logging.CRITICAL)
    asyncio.run(run(args.redis, args.calls))


if __name__ == "__main__":
    main()

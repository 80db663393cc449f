"""Memory per finished run on the embedded store: does it come back once the run's window has passed?

100,000 short runs (one model call each, a per-run budget and a per-user daily budget) on the in-process
MemoryStore, with an injected clock. Measured three times: before, right after the runs, and after the clock has
passed every finished run's retention (and the store's periodic sweep has run). Python keeps freed memory in its
own pools, so RSS is shown beside the bytes that tracemalloc sees still allocated; the latter is what must come
back to baseline.

Run: ``.venv/bin/python benchmarks/bench_memory.py [--runs N]``.
"""

from __future__ import annotations

import argparse
import gc
import resource
import tracemalloc
from typing import Any

from langchain_core.messages import AIMessage

from guardian import Guardian, Policy
from guardian.testing import ScriptedChatModel

POLICY: dict[str, Any] = {
    "version": 1,
    "loops": [],
    "budgets": [
        {"name": "run-cap", "scope": "run", "limits": {"llm_calls": 10}},
        {"name": "user-daily", "scope": "user", "window": "day", "limits": {"llm_calls": 10_000_000}},
    ],
}


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=100_000)
    args = parser.parse_args()
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40), cache_logger_on_first_use=True)
    clock = Clock()
    guard = Guardian(Policy.from_dict(POLICY), store="memory://", clock=clock, alert_sinks=[])
    reply = AIMessage(content="ok", usage_metadata={"input_tokens": 10, "output_tokens": 2, "total_tokens": 12})
    model = ScriptedChatModel(replies=[reply], cycle=True, max_tokens=8)
    handler = guard.callback(user="u")
    for _ in range(100):  # warm caches (prices, plans) before the baseline
        model.invoke("q", config={"callbacks": [handler]})
    gc.collect()
    tracemalloc.start()
    base_traced, base_rss = tracemalloc.get_traced_memory()[0], rss_mb()
    for _ in range(args.runs):
        clock.now += 0.01
        model.invoke("q", config={"callbacks": [handler]})
    gc.collect()
    after_traced, after_rss = tracemalloc.get_traced_memory()[0], rss_mb()
    clock.now += 2 * 3600  # past the retention of finished runs' buckets and of commit markers
    model.invoke("q", config={"callbacks": [handler]})  # the store sweeps as time passes
    gc.collect()
    swept_traced, swept_rss = tracemalloc.get_traced_memory()[0], rss_mb()
    tracemalloc.stop()
    guard.close()
    per_run = (after_traced - base_traced) / args.runs
    print(f"{args.runs:,} one-call runs on MemoryStore")
    print(f"{'':<34}{'traced MB':>12}{'RSS MB':>10}")
    print(f"{'baseline':<34}{base_traced / 2**20:>12.1f}{base_rss:>10.1f}")
    print(f"{'after the runs':<34}{after_traced / 2**20:>12.1f}{after_rss:>10.1f}   ({per_run:,.0f} B per run)")
    print(f"{'after their retention passed':<34}{swept_traced / 2**20:>12.1f}{swept_rss:>10.1f}")
    kept = swept_traced - base_traced
    print(f"kept after retention: {kept / 2**20:.2f} MB ({kept / args.runs:,.1f} B per run)")


if __name__ == "__main__":
    main()

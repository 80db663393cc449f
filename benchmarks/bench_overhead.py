"""What Guardian adds to a model call, measured against baselines taken in the same run.

Baselines: a fake chat model's bare ``invoke``; the same with langchain-core's
``UsageMetadataCallbackHandler`` (the cheapest useful callback); one raw ``EVALSHA`` round trip
on the same Redis. Guardian's added time is reported as a ratio to those. Also: store round trips
per model call (Redis' own command counters), the async path, and fleet throughput from 4 processes.

Run: ``.venv/bin/python benchmarks/bench_overhead.py [--redis URL] [--calls N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import os
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis
import structlog
from langchain_core.callbacks import UsageMetadataCallbackHandler
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import RunnableLambda

from guardian import Guardian, Policy
from guardian.amounts import METRICS, Amounts
from guardian.keys import BucketKey, KeyBuilder
from guardian.store import NO_LIMIT, CommitRequest, RedisStore, ReserveRequest, Target
from guardian.testing import ScriptedChatModel

BUDGETS_ONLY: dict[str, Any] = {
    "version": 1,
    "loops": [],
    "budgets": [
        {"name": "run-cap", "scope": "run", "limits": {"cost_usd": 1000, "llm_calls": 10_000_000}},
        {"name": "user-daily", "scope": "user", "window": "day", "limits": {"cost_usd": 1_000_000}},
        {"name": "tenant-monthly", "scope": "tenant", "window": "month", "limits": {"cost_usd": 10_000_000}},
    ],
}
POLICY = Policy.from_dict(BUDGETS_ONLY)
WITH_LOOPS = Policy.from_dict({**BUDGETS_ONLY, "loops": [{"name": "default"}]})
NO_HISTORY = Policy.from_dict({**BUDGETS_ONLY, "settings": {"history": False}})
RUN_CALLS = 10
REPLY = AIMessage(content="ok", usage_metadata={"input_tokens": 120, "output_tokens": 8, "total_tokens": 128})


def model() -> ScriptedChatModel:
    return ScriptedChatModel(replies=[REPLY], cycle=True, max_tokens=64)


def per_call_us(fn: Callable[[], Any], calls: int, rounds: int = 5) -> float:
    """Median over rounds of the mean time per call, in microseconds."""
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(samples)


def async_interleaved(cases: dict[str, Callable[[], Any]], calls: int, rounds: int = 15) -> dict[str, float]:
    """``interleaved`` for coroutines: median per-call time of each case, round-robin in one event loop."""

    async def measure() -> dict[str, float]:
        samples: dict[str, list[float]] = {name: [] for name in cases}
        per_round = max(1, calls // 5)
        for make in cases.values():
            for _ in range(50):
                await make()
        for _ in range(rounds):
            for name, make in cases.items():
                start = time.perf_counter()
                for _ in range(per_round):
                    await make()
                samples[name].append((time.perf_counter() - start) / per_round * 1e6)
        return {name: statistics.median(values) for name, values in samples.items()}

    return asyncio.run(measure())


def evalsha_us(client: redis.Redis, calls: int) -> float:
    script = client.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    key = f"guardian-bench:{uuid.uuid4().hex}"
    try:
        return per_call_us(lambda: script(keys=[key], args=[1]), calls)
    finally:
        client.delete(key)


def evalsha_calls(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    # Commands run inside a script are counted too, so only the script calls themselves are summed.
    return sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in ("evalsha", "eval"))


def interleaved(cases: dict[str, Callable[[], Any]], calls: int, rounds: int = 15) -> dict[str, float]:
    """Median per-call time of each case, measured round-robin so load drift hits every case alike."""
    samples: dict[str, list[float]] = {name: [] for name in cases}
    per_round = max(1, calls // 5)
    for fn in cases.values():
        for _ in range(50):
            fn()
    for _ in range(rounds):
        for name, fn in cases.items():
            start = time.perf_counter()
            for _ in range(per_round):
                fn()
            samples[name].append((time.perf_counter() - start) / per_round * 1e6)
    return {name: statistics.median(values) for name, values in samples.items()}


def bench_calls(url: str | None, calls: int) -> dict[str, float]:
    m = model()
    usage_handler = UsageMetadataCallbackHandler()
    with Guardian(POLICY, store="memory://") as guard, Guardian(WITH_LOOPS, store="memory://") as looping:
        handler = guard.callback(agent="bench", user="u", tenant="t")
        loop_handler = looping.callback(agent="bench", user="u", tenant="t")
        sync = interleaved(
            {
                "bare": lambda: m.invoke("hi"),
                "usage": lambda: m.invoke("hi", config={"callbacks": [usage_handler]}),
                "memory": lambda: m.invoke("hi", config={"callbacks": [handler]}),
                "loops": lambda: m.invoke("hi", config={"callbacks": [loop_handler]}),
            },
            calls,
        )
        timed = async_interleaved(
            {"bare": lambda: m.ainvoke("hi"), "memory": lambda: m.ainvoke("hi", config={"callbacks": [handler]})},
            calls,
        )
        abare, amemory = timed["bare"], timed["memory"]
    bare = sync["bare"]
    results = {
        "bare_us": bare,
        "usage_handler_added_us": sync["usage"] - bare,
        "memory_added_us": sync["memory"] - bare,
        "memory_loops_added_us": sync["loops"] - bare,
        "async_bare_us": abare,
        "async_memory_added_us": amemory - abare,
    }

    if url is not None:
        client = redis.Redis.from_url(url)
        results["evalsha_us"] = evalsha_us(client, calls)
        prefix = f"guardian-bench:{uuid.uuid4().hex[:8]}:"
        with Guardian(POLICY, store=RedisStore.from_url(url), key_prefix=prefix) as guard:
            handler = guard.callback(agent="bench", user="u", tenant="t")
            before = evalsha_calls(client)
            timed = interleaved(
                {"bare": lambda: m.invoke("hi"), "redis": lambda: m.invoke("hi", config={"callbacks": [handler]})},
                calls,
            )
            guard.flush()
            measured_calls = 15 * max(1, calls // 5) + 50
            results["redis_round_trips_per_call"] = (evalsha_calls(client) - before) / measured_calls
            results["redis_added_us"] = timed["redis"] - timed["bare"]
            timed = async_interleaved(
                {"bare": lambda: m.ainvoke("hi"), "redis": lambda: m.ainvoke("hi", config={"callbacks": [handler]})},
                calls,
            )
            results["async_redis_added_us"] = timed["redis"] - timed["bare"]
            # Runs of ten model calls: commits ride with the next reservation, the last with the run's end.
            ten: RunnableLambda[str, list[Any]] = RunnableLambda(lambda q: [m.invoke(q) for _ in range(RUN_CALLS)])
            guard.flush()
            before = evalsha_calls(client)
            timed = interleaved(
                {"bare": lambda: ten.invoke("hi"), "redis": lambda: ten.invoke("hi", config={"callbacks": [handler]})},
                max(1, calls // RUN_CALLS),
            )
            runs = 15 * max(1, calls // RUN_CALLS // 5) + 50
            results["redis_round_trips_per_10_call_run"] = (evalsha_calls(client) - before) / runs
            results["redis_run_added_us_per_call"] = (timed["redis"] - timed["bare"]) / RUN_CALLS
        for key in client.scan_iter(match=prefix + "*", count=1000):
            client.delete(key)
        client.close()
    return results


def bench_steps(rounds: int = 5) -> dict[str, float]:
    """Per agent step (one model call + one tool call) of a ReAct graph whose state grows to ~20 messages:
    the adapter without loop detection, and what the detector adds on top."""
    from langchain_core.messages import HumanMessage
    from langchain_core.tools import tool

    from guardian.testing import react_graph, tool_call

    @tool
    def fetch(page: int) -> str:
        """Fetch one page."""
        return f"page {page}: " + "lorem ipsum " * 20

    steps = 10  # 10 model calls + 10 tool calls: the state ends with 21 messages

    def run(callbacks: list[Any]) -> float:
        replies: list[Any] = [tool_call("fetch", {"page": i}) for i in range(steps - 1)] + ["done"]
        graph = react_graph(ScriptedChatModel(replies=replies, max_tokens=64), [fetch])
        start = time.perf_counter()
        graph.invoke({"messages": [HumanMessage("read all pages")]}, config={"callbacks": callbacks})
        return (time.perf_counter() - start) / steps * 1e6

    samples: dict[str, list[float]] = {"bare": [], "off": [], "on": []}
    with Guardian(POLICY, store="memory://") as off, Guardian(WITH_LOOPS, store="memory://") as on:
        for _ in range(rounds * 20):  # interleaved, so drift in machine load hits all three alike
            samples["bare"].append(run([]))
            samples["off"].append(run([off.callback()]))
            samples["on"].append(run([on.callback()]))
    bare, without, with_loops = (statistics.median(samples[k]) for k in ("bare", "off", "on"))
    return {"step_bare_us": bare, "adapter_step_us": without - bare, "detector_step_us": with_loops - without}


def _fleet_worker(url: str, prefix: str, kind: str, seconds: float, out: Any) -> None:
    client = redis.Redis.from_url(url)
    done = 0
    deadline = time.perf_counter() + seconds
    if kind == "evalsha":
        script = client.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
        key = prefix + "raw"
        while time.perf_counter() < deadline:
            script(keys=[key], args=[1])
            done += 1
    else:
        store = RedisStore(client)
        keys = KeyBuilder(prefix)
        key = keys.bucket(BucketKey("t", "fleet", "tenant", "t", "2030-01"))
        limits = tuple(NO_LIMIT for _ in METRICS)
        target = Target(key, limits, time.time() + 3600)
        amount = Amounts(input_tokens=100, output_tokens=10, total_tokens=110, cost_usd=20, llm_calls=1)
        while time.perf_counter() < deadline:
            call_id = uuid.uuid4().hex
            now = time.time()
            store.reserve(ReserveRequest(call_id, [target], amount, now))
            store.commit(CommitRequest(call_id, [target], amount, now, keys.call_marker("t", call_id)))
            done += 1
        store.flush()
    out.put(done)
    client.close()


def fleet(url: str, kind: str, processes: int = 4, seconds: float = 3.0) -> float:
    ctx = multiprocessing.get_context("spawn")
    out: Any = ctx.Queue()
    prefix = f"guardian-bench:{uuid.uuid4().hex[:8]}:"
    procs = [ctx.Process(target=_fleet_worker, args=(url, prefix, kind, seconds, out)) for _ in range(processes)]
    for p in procs:
        p.start()
    total = sum(out.get(timeout=seconds + 60) for _ in procs)
    for p in procs:
        p.join()
    client = redis.Redis.from_url(url)
    for key in client.scan_iter(match=prefix + "*", count=1000):
        client.delete(key)
    client.close()
    return float(total) / seconds


def row(label: str, us: float, ratio: float | None = None, versus: str = "") -> None:
    shown = "" if ratio is None else f"{ratio:>10.2f}  {versus}"
    print(f"{label:<48}{us:>10.1f}{shown}")


def bench_doors(url: str | None, calls: int) -> dict[str, float]:
    """The two LangChain doors side by side on the same ``create_agent`` agent (one model call per invoke, the
    same three budgets): the callback in the invoke's config, and the v1 middleware. Added time per invoke."""
    stores = {"memory": "memory://", **({"redis": url} if url is not None else {})}
    results: dict[str, float] = {}
    for name, store in stores.items():
        with Guardian(POLICY, store=store, key_prefix=f"guardian-bench-{uuid.uuid4().hex[:8]}:") as guard:
            times = interleaved(_door_cases(guard), calls // 4)
        results[f"{name}_agent_bare_us"] = times["bare"]
        results[f"{name}_callback_added_us"] = times["callback"] - times["bare"]
        results[f"{name}_middleware_added_us"] = times["middleware"] - times["bare"]
        results[f"{name}_empty_hooks_added_us"] = times["empty hooks"] - times["bare"]
    return results


def _door_cases(guard: Guardian) -> dict[str, Callable[[], Any]]:
    from langchain.agents import create_agent
    from langchain.agents.middleware import AgentMiddleware

    class EmptyHooks(AgentMiddleware):
        """What LangGraph charges for the hooks the middleware needs (two more graph nodes), doing nothing."""

        def before_agent(self, state: Any, runtime: Any) -> None:
            return None

        def after_agent(self, state: Any, runtime: Any) -> None:
            return None

    handler = guard.callback(agent="bench", user="u", tenant="t")
    bare = create_agent(model(), [])
    hooks = create_agent(model(), [], middleware=[EmptyHooks()])
    guarded = create_agent(model(), [], middleware=[guard.middleware(agent="bench", user="u", tenant="t")])
    inputs: Any = {"messages": [HumanMessage("hi")]}
    return {
        "bare": lambda: bare.invoke(inputs),
        "callback": lambda: bare.invoke(inputs, config={"callbacks": [handler]}),
        "middleware": lambda: guarded.invoke(inputs),
        "empty hooks": lambda: hooks.invoke(inputs),
    }


def bench_history(url: str | None, calls: int) -> dict[str, float]:
    """What recording the spend history costs per call: the same Guardian with ``history`` on and off, interleaved
    (on Redis the record rides inside the commit's own script call: no extra round trip)."""
    m = model()
    stores = {"memory": "memory://", **({"redis": url} if url is not None else {})}
    results: dict[str, float] = {}
    for name, store in stores.items():
        prefix = f"guardian-bench-{uuid.uuid4().hex[:8]}:"
        with (
            Guardian(POLICY, store=store, key_prefix=prefix) as on,
            Guardian(NO_HISTORY, store=store, key_prefix=prefix + "off:") as off,
        ):
            with_history, without = on.callback(agent="b", user="u", tenant="t"), off.callback(agent="b", user="u")
            times = interleaved(
                {
                    "bare": lambda: m.invoke("hi"),
                    "on": lambda h=with_history: m.invoke("hi", config={"callbacks": [h]}),  # type: ignore[misc]
                    "off": lambda h=without: m.invoke("hi", config={"callbacks": [h]}),  # type: ignore[misc]
                },
                calls,
            )
        if name == "redis":  # our own prefix only: a shared Redis is never flushed
            client = redis.Redis.from_url(str(url))
            for key in client.scan_iter(match=prefix + "*", count=1000):
                client.delete(key)
        results[f"{name}_history_on_added_us"] = times["on"] - times["bare"]
        results[f"{name}_history_off_added_us"] = times["off"] - times["bare"]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis", default=os.environ.get("GUARDIAN_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--no-redis", action="store_true")
    args = parser.parse_args()
    # As a production app would: per-call debug/info events filtered out (see the README's performance notes).
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING), cache_logger_on_first_use=True
    )
    url = None if args.no_redis else args.redis
    r = bench_calls(url, args.calls)
    usage_added = r["usage_handler_added_us"]
    print(f"{'measure':<48}{'us/call':>10}{'ratio':>10}")
    row("fake chat model invoke (bare)", r["bare_us"])
    row("+ UsageMetadataCallbackHandler (added)", usage_added, 1.0)
    row(
        "+ Guardian, MemoryStore (added)",
        r["memory_added_us"],
        r["memory_added_us"] / usage_added,
        "(vs usage handler)",
    )
    added = r["memory_loops_added_us"]
    row("+ Guardian, MemoryStore, loop detection on", added, added / usage_added, "(vs usage handler)")
    row("fake chat model ainvoke (bare)", r["async_bare_us"])
    added = r["async_memory_added_us"]
    row("+ Guardian, MemoryStore, ainvoke (added)", added, added / usage_added, "(vs usage handler)")
    history = bench_history(url, args.calls)
    for name in ("memory", "redis"):
        if f"{name}_history_on_added_us" in history:
            off, on = history[f"{name}_history_off_added_us"], history[f"{name}_history_on_added_us"]
            row(f"Guardian, {name}, history off (added)", off, 1.0)
            row(f"Guardian, {name}, history on (added)", on, on / off, "(vs history off)")
    doors = bench_doors(url, args.calls)
    for name in ("memory", "redis"):
        if f"{name}_agent_bare_us" not in doors:
            continue
        callback, middleware = doors[f"{name}_callback_added_us"], doors[f"{name}_middleware_added_us"]
        row(f"create_agent invoke, 1 model call (bare, {name})", doors[f"{name}_agent_bare_us"])
        row(f"+ Guardian callback, {name} (added)", callback, 1.0)
        row(f"+ Guardian middleware, {name} (added)", middleware, middleware / callback, "(vs callback)")
        hooks = doors[f"{name}_empty_hooks_added_us"]
        row("  of which LangGraph's two hook nodes (empty)", hooks, hooks / callback, "(vs callback)")
    steps = bench_steps()
    row("ReAct step, 20-message state (bare graph)", steps["step_bare_us"])
    row("+ Guardian adapter, no loop detection", steps["adapter_step_us"], 1.0)
    detector = steps["detector_step_us"]
    row("+ loop detector on top", detector, detector / steps["adapter_step_us"], "(vs adapter per step)")
    if url is not None:
        evalsha = r["evalsha_us"]
        row("raw EVALSHA round trip", evalsha, 1.0)
        row("+ Guardian, RedisStore (added)", r["redis_added_us"], r["redis_added_us"] / evalsha, "(vs EVALSHA)")
        added = r["async_redis_added_us"]
        row("+ Guardian, RedisStore, ainvoke (added)", added, added / evalsha, "(vs EVALSHA)")
        print(f"{'store round trips per 1-call run':<48}{r['redis_round_trips_per_call']:>10.2f}")
        added = r["redis_run_added_us_per_call"]
        row("+ Guardian, RedisStore, 10-call runs, per call", added, added / evalsha, "(vs EVALSHA)")
        print(f"{'store round trips per 10-call run':<48}{r['redis_round_trips_per_10_call_run']:>10.2f}")
        raw = fleet(url, "evalsha")
        ours = fleet(url, "ledger")
        print(f"\nfleet, 4 processes: raw EVALSHA {raw:,.0f}/s; reserve+commit pairs {ours:,.0f}/s ({ours / raw:.2f}x)")


if __name__ == "__main__":
    main()

"""What loop detection costs per agent step, beside baselines measured in the same run.

Run: ``.venv/bin/python benchmarks/bench_loops.py``. Prints microseconds per observation
for node updates carrying 20 messages, a ReAct step's observations and model replies, each
next to the cost of ``json.dumps`` of the same payload (``model_dump`` for messages) and of
a no-op call, and the ratio. No assertions: the figures feed the adapter's cost per step.
"""

from __future__ import annotations

import json
import random
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage

from guardian.loops import (
    LoopDetector,
    LoopSettings,
    ModelObservation,
    NodeObservation,
    Observation,
    ToolObservation,
)

WORDS = ("alpha", "budget", "cache", "delta", "engine", "filter", "gateway", "harbor", "index", "journal")
STEPS = 400
REPEATS = 7


def text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def message(rng: random.Random, i: int) -> BaseMessage:
    """One message of a ReAct conversation: ~40-120 words, ids set as LangGraph sets them."""
    kind = i % 3
    if kind == 0:
        return HumanMessage(content=text(rng, rng.randint(40, 120)), id=f"h-{i}-{rng.getrandbits(32)}")
    if kind == 1:
        return AIMessage(
            content=text(rng, rng.randint(10, 40)),
            id=f"lc_run--{rng.getrandbits(64):x}",
            tool_calls=[{"name": "search", "args": {"query": text(rng, 3)}, "id": f"call_{i}", "type": "tool_call"}],
            usage_metadata={"input_tokens": 900, "output_tokens": 40, "total_tokens": 940},
            response_metadata={"model_name": "gpt-4o-mini", "finish_reason": "tool_calls"},
        )
    return ToolMessage(content=text(rng, rng.randint(40, 120)), tool_call_id=f"call_{i - 1}", name="search")


def dump(value: Any) -> str:
    return json.dumps(value, default=lambda m: m.model_dump() if isinstance(m, BaseMessage) else str(m))


def per_call_us(fn: Callable[[int], object], steps: int = STEPS) -> float:
    """Median over REPEATS runs of the mean cost of ``fn(i)`` for i in range(steps), in µs."""
    runs = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        for i in range(steps):
            fn(i)
        runs.append((time.perf_counter() - start) / steps * 1e6)
    return statistics.median(runs)


def detector_us(observations: Sequence[Observation]) -> float:
    """Cost per observation of a detector that sees ``observations`` in order, fresh per run."""
    runs = []
    settings = LoopSettings(max_steps_without_progress=10**9)
    for _ in range(REPEATS):
        detector = LoopDetector(settings)
        start = time.perf_counter()
        for obs in observations:
            if detector.observe(obs) is not None:
                raise RuntimeError("the benchmark workload must not trip the detector")
        runs.append((time.perf_counter() - start) / len(observations) * 1e6)
    return statistics.median(runs)


def noop(i: int) -> None:
    return None


def main() -> None:
    rng = random.Random(7)
    pool = [message(rng, i) for i in range(STEPS + 20)]

    # A node that returns the last 20 messages of a growing conversation: 19 seen before, 1 new.
    sliding = [NodeObservation("agent", {"messages": pool[i : i + 20]}) for i in range(STEPS)]
    # The same, but every message a fresh copy (state deserialized from a checkpointer).
    fresh = [NodeObservation("agent", {"messages": [m.model_copy() for m in pool[i : i + 20]]}) for i in range(STEPS)]
    # A ReAct step as create_agent reports it: reply, model node, tool call, tools node.
    react: list[Observation] = []
    for i in range(STEPS // 4):
        ai, tool = pool[3 * i + 1], pool[3 * i + 2]
        assert isinstance(ai, AIMessage)
        react += [
            ModelObservation(str(ai.content), [("search", {"query": f"q{i}"})], tokens=940),
            NodeObservation("model", [{"messages": [ai]}]),
            ToolObservation("search", {"query": f"q{i}"}, str(tool.content)),
            NodeObservation("tools", {"messages": [tool]}),
        ]
    # Text replies (no tools), each compared with up to 20 earlier ones by rapidfuzz.
    replies = [ModelObservation(text(rng, rng.randint(60, 200)), tokens=900) for _ in range(STEPS)]

    rows = [
        (
            "node update, 20 messages (19 cached)",
            detector_us(sliding),
            per_call_us(lambda i: dump(sliding[i].update)),
        ),
        ("node update, 20 fresh messages", detector_us(fresh), per_call_us(lambda i: dump(fresh[i].update))),
        ("ReAct step, per observation", detector_us(react), per_call_us(lambda i: dump(_payload(react[i])))),
        ("text reply vs 20 earlier", detector_us(replies), per_call_us(lambda i: dump(replies[i].text))),
    ]
    floor = per_call_us(noop)
    print(f"{'workload':<40} {'detector µs':>12} {'json µs':>9} {'ratio':>7}")
    for name, cost, baseline in rows:
        print(f"{name:<40} {cost:>12.1f} {baseline:>9.1f} {cost / baseline:>7.2f}")
    print(f"{'no-op call (loop overhead)':<40} {floor:>12.2f}")


def _payload(obs: Observation) -> Any:
    if isinstance(obs, NodeObservation):
        return obs.update
    if isinstance(obs, ToolObservation):
        return [obs.tool, obs.args, obs.result]
    return [obs.text, list(obs.tool_calls)]


if __name__ == "__main__":
    main()

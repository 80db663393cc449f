"""What loop detection costs per agent step, beside baselines measured in the same run.

Run: ``.venv/bin/python benchmarks/bench_loops.py``. The headline is the issue's measure: per
ReAct step of a real LangGraph run (one model call and one tool call, state growing to ~20
messages), what the loop detector adds on top of Guardian's adapter without it, as a ratio
(``bench_overhead.bench_steps``, cases interleaved). Then the detector alone on recorded runs
(prompts included, as the adapter feeds it), each beside a no-op call. No assertions.
"""

from __future__ import annotations

import importlib.util
import logging
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.tools import tool

from guardian.loops import LoopDetector, ModelObservation, Observation
from guardian.testing import ScriptedChatModel, TraceRecorder, react_graph, tool_call

REPEATS = 50


def bench_steps() -> dict[str, float]:
    """``bench_overhead.bench_steps``: one home for the per-step measure, loaded by path (scripts, not a package)."""
    spec = importlib.util.spec_from_file_location("bench_overhead", Path(__file__).with_name("bench_overhead.py"))
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result: dict[str, float] = module.bench_steps()
    return result


@tool
def fetch(page: int) -> str:
    """Fetch one page of the report."""
    return f"page {page}: " + "revenue by region and quarter, with notes from finance " * 4


def recorded_react(steps: int) -> list[Observation]:
    """A ReAct run of ``steps`` model calls, recorded as the adapter sees it."""
    recorder = TraceRecorder()
    replies: list[Any] = [tool_call("fetch", {"page": i}) for i in range(steps - 1)] + ["Summary: done."]
    graph = react_graph(ScriptedChatModel(replies=replies), [fetch])
    graph.invoke(
        {"messages": [HumanMessage("read the report")]}, config={"callbacks": [recorder], "recursion_limit": 200}
    )
    return recorder.observations


def batch_map(items: int) -> list[Observation]:
    """A map over distinct reviews, each answered "positive" (prompt: system + one review)."""
    system = SystemMessage("Classify the review's sentiment in one word.")
    return [
        ModelObservation(
            "positive", tokens=40, prompt=[system, HumanMessage(f"Review {n}: arrived on time, nice box.")]
        )
        for n in range(items)
    ]


def text_replies(count: int) -> list[Observation]:
    """Long text replies, each compared with up to 20 earlier ones, in a growing conversation."""
    history: list[Any] = [HumanMessage("Draft the incident summary.")]
    out: list[Observation] = []
    for n in range(count):
        text = f"Draft {n}: " + " ".join(f"word{(n * 7 + k) % 97}" for k in range(120))
        out.append(ModelObservation(text, tokens=900, prompt=list(history), node="writer"))
        history += [AIMessage(text), HumanMessage(f"Tighten paragraph {n % 5}.")]
    return out


def detector_us(observations: Sequence[Observation], per: int) -> float:
    """Median over REPEATS fresh detectors of the time to feed ``observations``, divided by ``per``."""
    runs = []
    for _ in range(REPEATS):
        detector = LoopDetector()
        start = time.perf_counter()
        for obs in observations:
            if detector.observe(obs) is not None:
                raise RuntimeError("the benchmark workload must not trip the detector")
        runs.append((time.perf_counter() - start) / per * 1e6)
    return statistics.median(runs)


def _noop() -> None:
    return None


def noop_us(count: int) -> float:
    runs = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        for _ in range(count):
            _noop()
        runs.append((time.perf_counter() - start) / count * 1e6)
    return statistics.median(runs)


def main() -> None:
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING), cache_logger_on_first_use=True
    )
    steps = bench_steps()
    adapter, detector = steps["adapter_step_us"], steps["detector_step_us"]
    print(f"{'per ReAct step (real graph, interleaved)':<46} {'µs':>9} {'ratio':>7}")
    print(f"{'  bare graph step':<46} {steps['step_bare_us']:>9.1f}")
    print(f"{'  + Guardian adapter, no loop detection':<46} {adapter:>9.1f} {1.0:>7.2f}")
    print(f"{'  + loop detector on top':<46} {detector:>9.1f} {detector / adapter:>7.2f}")

    react = recorded_react(20)
    rows = [
        ("ReAct run, 20 steps, per step", detector_us(react, 20)),
        ("map over 100 distinct items, per item", detector_us(batch_map(100), 100)),
        ("120-word replies vs 20 earlier, per reply", detector_us(text_replies(60), 60)),
    ]
    print(f"\n{'detector alone (recorded runs, prompts included)':<46} {'µs':>9}")
    for name, cost in rows:
        print(f"{'  ' + name:<46} {cost:>9.1f}")
    print(f"{'  no-op call':<46} {noop_us(1000):>9.2f}")


if __name__ == "__main__":
    main()

"""Dollars, not microseconds: what routing and clamping do to a deterministic scripted workload.

Twenty research tasks (a create_agent agent searching the web, each search dragging a longer context into the
next call, as `guardian demo` does) of 10 to 40 searches, each run capped at $0.25, on gpt-4o at genai-prices'
prices. Then a writing workload under an output-token budget. Each scenario runs the same script on a fresh
embedded store; the numbers are exact and repeat run after run.

Run: ``.venv/bin/python benchmarks/bench_spend.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import structlog
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool

from guardian import Guardian, GuardianHalt, Policy
from guardian.amounts import usd
from guardian.testing import ScriptedChatModel

TASKS = [10 + (7 * i) % 31 for i in range(20)]  # searches per task: 10..40, spread deterministically
CAP = {"name": "run-cap", "scope": "run", "limits": {"cost_usd": 0.25}}
ROUTING = [
    {
        "name": "save-when-tight",
        "when": {"budget": "run-cap", "used_at_least": 0.5},
        "route": {"openai:gpt-4o": "openai:gpt-4o-mini"},
    }
]


@tool
def web_search(query: str) -> str:
    """Search the web."""
    return " ".join(f"{query} finding {i}: a long paragraph of search results that the agent keeps." for i in range(60))


def research(searches: int) -> Any:
    def turn(messages: Sequence[BaseMessage]) -> AIMessage:
        done = sum(1 for m in messages if isinstance(m, ToolMessage))
        if done >= searches:
            return AIMessage(content="Report written.")
        call = {"name": "web_search", "args": {"query": f"topic part {done + 1}"}, "id": f"c{done}"}
        return AIMessage(content="I should dig deeper.", tool_calls=[call])

    return turn


def run_research(policy: dict[str, Any]) -> dict[str, float]:
    guard = Guardian(Policy.from_dict({"version": 1, "loops": [], **policy}), store="memory://")
    finished = spent = calls = 0
    try:
        for searches in TASKS:
            script = research(searches)
            big = ScriptedChatModel(replies=[script], cycle=True, model="gpt-4o", provider="openai", max_tokens=300)
            small = ScriptedChatModel(
                replies=[script], cycle=True, model="gpt-4o-mini", provider="openai", max_tokens=300
            )
            middleware = guard.middleware(agent="researcher", models={"openai:gpt-4o-mini": small})
            try:
                create_agent(big, [web_search], middleware=[middleware]).invoke({"messages": [HumanMessage("go")]})
                finished += 1
            except GuardianHalt:
                pass
            calls += big.calls + small.calls
        report = guard.report(since=0)
        spent = report.total.cost_micro_usd
    finally:
        guard.close()
    return {"finished": finished, "calls": calls, "spent": spent}


def writer(turns: int) -> Any:
    def turn(messages: Sequence[BaseMessage]) -> AIMessage:
        done = sum(1 for m in messages if isinstance(m, ToolMessage))
        usage: Any = {"input_tokens": 100, "output_tokens": 400, "total_tokens": 500}
        if done >= turns:
            return AIMessage(content="The end.", usage_metadata=usage)
        call = {"name": "web_search", "args": {"query": f"chapter {done + 1}"}, "id": f"c{done}"}
        return AIMessage(content="", tool_calls=[call], usage_metadata=usage)

    return turn


def run_writing(on_low_budget: str) -> dict[str, float]:
    """Ten writing runs of 400-token turns under a 1,500-output-token run budget."""
    policy = {
        "loops": [],
        "budgets": [{"name": "run-output", "scope": "run", "limits": {"output_tokens": 1500}}],
        "settings": {"on_low_budget": on_low_budget, "min_output_tokens": 32},
    }
    guard = Guardian(Policy.from_dict({"version": 1, **policy}), store="memory://")
    tokens = calls = 0
    try:
        for _ in range(10):
            model = ScriptedChatModel(
                replies=[writer(6)], cycle=True, model="gpt-4o-mini", provider="openai", max_tokens=400
            )
            agent = create_agent(
                model, [web_search], middleware=[guard.middleware(agent="writer", exit_behavior="end")]
            )
            agent.invoke({"messages": [HumanMessage("write")]})
            calls += model.calls
        report = guard.report(since=0)
        tokens = report.total.output_tokens
        spent = report.total.cost_micro_usd
    finally:
        guard.close()
    return {"calls": calls, "tokens": tokens, "spent": spent}


def main() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    logging.getLogger("langchain_core.callbacks.manager").setLevel(logging.ERROR)
    plain = run_research({"budgets": [CAP]})
    routed = run_research({"budgets": [CAP], "routing": ROUTING})
    unbounded = run_research({})
    print(f"research: {len(TASKS)} tasks of {min(TASKS)}-{max(TASKS)} searches, run cap $0.25")
    print(f"{'scenario':<38}{'finished':>9}{'calls':>8}{'spent':>12}{'per finished task':>20}")
    for name, r in (
        ("no budget (what the tasks cost)", unbounded),
        ("run cap, no routing", plain),
        ("run cap + routing at 50% to mini", routed),
    ):
        per_task = usd(int(r["spent"] // r["finished"])) if r["finished"] else "-"
        print(f"{name:<38}{r['finished']:>9.0f}{r['calls']:>8.0f}{usd(int(r['spent'])):>12}{per_task:>20}")
    refuse, clamp = run_writing("refuse"), run_writing("clamp")
    print("\nwriting: 10 runs of 400-token turns, run budget of 1,500 output tokens")
    print(f"{'scenario':<38}{'calls':>8}{'output tokens':>15}{'budget used':>13}")
    for name, r in (("refuse the call that does not fit", refuse), ("clamp it to what fits", clamp)):
        print(f"{name:<38}{r['calls']:>8.0f}{r['tokens']:>15,.0f}{r['tokens'] / 15_000:>13.0%}")


if __name__ == "__main__":
    main()

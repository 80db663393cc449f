"""A LangGraph agent under Guardian: budgets from policies/example.yaml, loop detection, live status.

Run: ``.venv/bin/python examples/runaway_agent.py`` (embedded store), or with ``GUARDIAN_STORE_URL=redis://...``
to share budgets with every other process of the fleet.
"""

from __future__ import annotations

from pathlib import Path

from langchain_core.messages import HumanMessage
from langchain_core.tools import tool

import guardian
from guardian.testing import ScriptedChatModel, react_graph, tool_call

POLICY = Path(__file__).resolve().parents[1] / "policies" / "example.yaml"


@tool
def search(query: str) -> str:
    """Search the web."""
    return f"Top results for {query}: nothing new."


def main() -> None:
    guard = guardian.Guardian.from_yaml(POLICY)
    # A model stuck on one search: the same call, the same answer, forever.
    model = ScriptedChatModel(replies=[tool_call("search", {"query": "Q3 revenue"})], cycle=True, max_tokens=400)
    agent = react_graph(model, [search])
    handler = guard.callback(agent="research-bot", user="alice", tenant="acme", tags=["prod"])
    try:
        agent.invoke({"messages": [HumanMessage("What was Q3 revenue?")]}, config={"callbacks": [handler]})
    except guardian.LoopDetected as halt:
        print(f"stopped after {model.calls} model calls: {halt.signal} on {halt.subject!r}")
        print(halt)
    except guardian.BudgetExceeded as halt:
        print(f"stopped by budget {halt.budget!r}: {halt}")
    for row in guard.status():
        print(f"{row.budget:>16} {row.scope:>6} {row.scope_key[:16]:>16} spent ${row.spent.cost_usd / 1e6:.6f}")
    guard.close()


if __name__ == "__main__":
    main()

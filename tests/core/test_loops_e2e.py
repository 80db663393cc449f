"""Loop detection end to end: looping agents halted with LoopDetected, before the next paid model call."""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.messages import HumanMessage
from langchain_core.tools import tool
from langgraph.graph import START, StateGraph
from structlog.testing import capture_logs

from guardian import LoopDetected
from guardian.alerts import RecordingSink
from guardian.testing import ScriptedChatModel, react_graph, tool_call

from .conftest import GuardianFactory

BUDGET = {"name": "run-cap", "scope": "run", "limits": {"llm_calls": 200}}


@tool
def lookup(query: str) -> str:
    """Look something up."""
    return f"Nothing found for {query}."


def test_create_agent_repeating_a_tool_call_is_halted(make_guardian: GuardianFactory) -> None:
    """create_agent calling one tool with the same arguments and result: halted after max_repeats, the
    message names the signal, the tool, the repeats and what the loop cost; logged, alerted and counted."""
    from langchain.agents import create_agent

    sink = RecordingSink(all_kinds=True)
    guard = make_guardian({"budgets": [BUDGET]}, alert_sinks=[sink])
    model = ScriptedChatModel(replies=[tool_call("lookup", {"query": "Q3 revenue"})], cycle=True, max_tokens=50)
    agent = create_agent(model, tools=[lookup])
    with capture_logs() as logs, pytest.raises(LoopDetected) as caught:
        agent.invoke({"messages": [HumanMessage("revenue?")]}, config={"callbacks": [guard.callback(agent="fin")]})
    halt = caught.value
    assert halt.signal == "repeated_tool_call"
    assert halt.subject == "lookup"
    assert halt.repeats == 3
    assert model.calls == 3  # the fourth model call of the loop was never made
    assert "repeated_tool_call" in str(halt) or "lookup" in str(halt)
    assert f"{halt.loop_tokens:,} tokens" in str(halt)
    assert halt.loop_tokens > 0
    assert halt.loop_cost_micro_usd > 0
    (event,) = [e for e in logs if e["event"] == "loop_detected"]
    assert (event["signal"], event["subject"], event["agent"]) == ("repeated_tool_call", "lookup", "fin")
    assert guard.alerts.flush(5.0)
    (alert,) = [a for a in sink.alerts if a.kind == "loop"]
    assert alert.run_id == halt.run_id
    assert "lookup" in alert.reason
    assert [(agent, count) for _, agent, _, count in guard.loop_halts()] == [("fin", 1)]


def test_loop_halt_reaches_the_caller_through_tool_error_handling(make_guardian: GuardianFactory) -> None:
    """With ToolNode(handle_tool_errors=True) the loop still stops: the halt is raised at the next model call."""
    guard = make_guardian({"budgets": [BUDGET]})
    model = ScriptedChatModel(replies=[tool_call("lookup", {"query": "same"})], cycle=True, max_tokens=50)
    graph = react_graph(model, [lookup], handle_tool_errors=True)
    with pytest.raises(LoopDetected):
        graph.invoke({"messages": [HumanMessage("go")]}, config={"callbacks": [guard.callback()]})
    assert model.calls == 3


class PingPong(TypedDict):
    log: Annotated[list[str], operator.add]


def test_custom_stategraph_oscillating_between_nodes_is_halted(make_guardian: GuardianFactory) -> None:
    """A planner/critic graph bouncing the same two updates forever is stopped by the cycle signal."""
    guard = make_guardian({"budgets": [BUDGET]})
    model = ScriptedChatModel(replies=["Plan: check the numbers again."], cycle=True, max_tokens=20)

    def planner(state: PingPong) -> dict[str, Any]:
        model.invoke("plan")
        return {"log": ["plan: check the numbers again"]}

    def critic(state: PingPong) -> dict[str, Any]:
        return {"log": ["critic: not convinced, plan again"]}

    graph = StateGraph(PingPong)
    graph.add_node("planner", planner)
    graph.add_node("critic", critic)
    graph.add_edge(START, "planner")
    graph.add_edge("planner", "critic")
    graph.add_edge("critic", "planner")
    with pytest.raises(LoopDetected) as caught:
        graph.compile().invoke({"log": []}, config={"callbacks": [guard.callback()], "recursion_limit": 200})
    assert caught.value.signal in {"cycle", "repeated_output", "no_progress"}
    assert model.calls < 12


def test_progressing_agent_is_not_stopped(make_guardian: GuardianFactory) -> None:
    """Paging through results (different arguments every time) is progress: the run finishes normally."""
    guard = make_guardian({"budgets": [BUDGET]})
    replies: list[Any] = [tool_call("lookup", {"query": f"page {i}"}) for i in range(10)] + ["Done: 10 pages read."]
    model = ScriptedChatModel(replies=replies, max_tokens=50)
    result = react_graph(model, [lookup]).invoke(
        {"messages": [HumanMessage("go")]}, config={"callbacks": [guard.callback()]}
    )
    assert result["messages"][-1].content == "Done: 10 pages read."
    assert guard.loop_halts() == []


def test_action_alert_reports_without_halting(make_guardian: GuardianFactory) -> None:
    """A loop rule with action: alert logs and alerts but lets the run go on (until its budget stops it)."""
    guard = make_guardian(
        {
            "loops": [{"name": "watch", "action": "alert"}],
            "budgets": [{"name": "run-cap", "scope": "run", "limits": {"llm_calls": 6}}],
        }
    )
    model = ScriptedChatModel(replies=[tool_call("lookup", {"query": "same"})], cycle=True, max_tokens=50)
    from guardian import BudgetExceeded

    with capture_logs() as logs, pytest.raises(BudgetExceeded):
        react_graph(model, [lookup]).invoke(
            {"messages": [HumanMessage("go")]}, config={"callbacks": [guard.callback()]}
        )
    assert model.calls == 6
    assert any(e["event"] == "loop_detected" and e["action"] == "alert" for e in logs)


def test_allowed_tools_may_repeat_more(make_guardian: GuardianFactory) -> None:
    """allow: a polling tool may repeat up to its own limit before the loop fires."""
    guard = make_guardian(
        {"loops": [{"name": "polling", "allow": [{"tool": "lookup", "max_repeats": 6}]}], "budgets": [BUDGET]}
    )
    model = ScriptedChatModel(replies=[tool_call("lookup", {"query": "job-1"})], cycle=True, max_tokens=50)
    with pytest.raises(LoopDetected):
        react_graph(model, [lookup]).invoke(
            {"messages": [HumanMessage("go")]}, config={"callbacks": [guard.callback()]}
        )
    assert model.calls == 6

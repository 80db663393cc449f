"""Loop detection end to end: looping agents halted with LoopDetected, before the next paid model call."""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool
from langgraph.graph import END, START, StateGraph
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
    assert halt.repeats == 4
    assert model.calls == 4  # the fifth model call of the loop was never made
    assert "repeated_tool_call" in str(halt) or "lookup" in str(halt)
    assert f"{halt.loop_tokens:,} tokens" in str(halt)
    assert halt.loop_tokens > 0
    assert halt.loop_cost_micro_usd > 0
    (event,) = [e for e in logs if e["event"] == "loop_detected"]
    assert (event["signal"], event["subject"], event["agent"]) == ("repeated_tool_call", "lookup", "fin")
    assert event["loop_cost_micro_usd"] == halt.loop_cost_micro_usd  # micro-dollars, named so
    assert "loop_cost_usd" not in event
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
    assert model.calls == 4


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


class Batch(TypedDict):
    reviews: list[str]
    index: int
    labels: Annotated[list[str], operator.add]


def batch_graph(model: ScriptedChatModel, *, stuck_at: int | None = None) -> Any:
    """A batch job as teams write it: a StateGraph walking a list with a reducer for results."""

    def classify(state: Batch, config: RunnableConfig) -> dict[str, Any]:
        review = state["reviews"][state["index"]]
        prompt = [SystemMessage("Classify the review's sentiment in one word."), HumanMessage(review)]
        label = str(model.invoke(prompt, config).content)
        step = 0 if stuck_at is not None and state["index"] >= stuck_at else 1  # a routing bug
        return {"labels": [label], "index": state["index"] + step}

    graph = StateGraph(Batch)
    graph.add_node("classify", classify)
    graph.add_edge(START, "classify")
    graph.add_conditional_edges(
        "classify", lambda s: "classify" if s["index"] < len(s["reviews"]) else END, ["classify", END]
    )
    return graph.compile()


REVIEWS = [f"Order {n}: arrived on time, {('great', 'fine', 'lovely')[n % 3]} packaging." for n in range(25)]


def test_a_budget_only_policy_lets_a_healthy_batch_job_finish(make_guardian: GuardianFactory) -> None:
    """No `loops:` section (the default rule applies): 25 reviews, each labeled "positive", with
    reducer updates that all look alike, run to the end."""
    guard = make_guardian({"budgets": [BUDGET]})
    model = ScriptedChatModel(replies=["positive"], cycle=True, max_tokens=5)
    with capture_logs() as logs:
        out = batch_graph(model).invoke(
            {"reviews": REVIEWS, "index": 0, "labels": []},
            config={"callbacks": [guard.callback(agent="batch")], "recursion_limit": 100},
        )
    assert out["labels"] == ["positive"] * 25
    assert model.calls == 25
    assert not [e for e in logs if e["event"] == "loop_detected"]
    assert guard.loop_halts() == []


def test_a_budget_only_policy_stops_a_batch_job_stuck_on_one_item(make_guardian: GuardianFactory) -> None:
    """The same job with a routing bug re-sends one review forever: stopped on its third identical
    answer, the halt naming the signal, the node, the repeats and what the loop cost."""
    guard = make_guardian({"budgets": [BUDGET]})
    model = ScriptedChatModel(replies=["positive"], cycle=True, max_tokens=5)
    with pytest.raises(LoopDetected) as caught:
        batch_graph(model, stuck_at=4).invoke(
            {"reviews": REVIEWS, "index": 0, "labels": []},
            config={"callbacks": [guard.callback(agent="batch")], "recursion_limit": 100},
        )
    halt = caught.value
    assert model.calls == 7  # items 0-4, then item 4 twice more: no eighth call
    assert (halt.signal, halt.subject, halt.repeats) == ("repeated_output", "classify", 3)
    assert "3 near-identical replies" in str(halt)
    assert halt.loop_cost_micro_usd > 0
    assert "$" in str(halt)


def test_the_default_rule_only_alerts_on_no_progress(make_guardian: GuardianFactory) -> None:
    """no_progress is alert-only by default: an agent wandering among three unchanging sources is
    reported and left to its budget; with alert_on: [] the same rule halts it."""
    sources = ["a", "b", "c", "b", "a", "c", "c", "b", "a", "a", "c"]

    def agent_run(loops: list[dict[str, Any]] | None) -> tuple[LoopDetected | None, list[Any], ScriptedChatModel]:
        config: dict[str, Any] = {"budgets": [BUDGET]}
        if loops is not None:
            config["loops"] = loops
        guard = make_guardian(config)
        replies: list[Any] = [tool_call("lookup", {"query": f"source {s}"}) for s in sources] + ["Done."]
        model = ScriptedChatModel(replies=replies, max_tokens=50)
        with capture_logs() as logs:
            try:
                react_graph(model, [lookup]).invoke(
                    {"messages": [HumanMessage("go")]},
                    config={"callbacks": [guard.callback()], "recursion_limit": 100},
                )
            except LoopDetected as halt:
                return halt, logs, model
        return None, logs, model

    halt, logs, model = agent_run(None)
    assert halt is None
    assert model.calls == len(sources) + 1
    assert any(e["event"] == "loop_detected" and e["signal"] == "no_progress" and e["action"] == "alert" for e in logs)
    halt, _, model = agent_run([{"name": "strict", "alert_on": [], "max_tool_repeats": 10}])
    assert halt is not None
    assert halt.signal == "no_progress"
    assert model.calls < len(sources)

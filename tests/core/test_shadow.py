"""Shadow mode: nothing is refused; every halt that would have happened is recorded, counted and reported."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from langchain_core.tools import tool
from structlog.testing import capture_logs
from typer.testing import CliRunner

from guardian import BudgetExceeded, Guardian, Policy, RunKilled
from guardian.cli import app
from guardian.testing import FakeClock, ScriptedChatModel, react_graph, tool_call

from .conftest import T0, GuardianFactory


@tool
def search(query: str) -> str:
    """Search."""
    return f"results for {query}"


CAP = {"name": "cap", "scope": "run", "limits": {"llm_calls": 3}}


def pages(n: int) -> ScriptedChatModel:
    return ScriptedChatModel(replies=[tool_call("search", {"query": f"p{i}"}) for i in range(n)] + ["done"])


def test_shadow_mode_refuses_nothing_and_records_where_each_run_would_have_stopped(
    make_guardian: GuardianFactory,
) -> None:
    guard = make_guardian({"budgets": [CAP], "settings": {"mode": "shadow"}})
    model = pages(6)
    with capture_logs() as logs:
        result = react_graph(model, [search]).invoke(
            {"messages": [HumanMessage("go")]}, config={"callbacks": [guard.callback("researcher")]}
        )
    assert result["messages"][-1].content == "done"
    assert model.calls == 7  # the cap of 3 stopped nothing
    (would,) = [e for e in logs if e["event"] == "would_halt"]
    assert (would["reason"], would["detail"], would["unit"], would["limit"]) == (
        "BudgetExceeded",
        "cap",
        "llm_calls",
        3,
    )
    assert not [e for e in logs if e["event"] in ("budget_exceeded", "alert")]
    report = guard.report(since=T0 - 1)
    (row,) = report.rows
    assert row.would_halts == 1
    assert report.would_halts == {"BudgetExceeded: cap": 1}
    calls = [r for r in guard.history(since=T0 - 1) if r.kind == "call"]
    assert row.would_save_micro_usd == sum(r.cost_micro_usd for r in calls[3:])  # the 4th call on was over the cap
    assert report.halts == {}
    assert [(a, c) for _, a, _, c in guard.would_halts()] == [("researcher", 1)]


def test_a_budget_can_be_shadowed_alone(make_guardian: GuardianFactory) -> None:
    guard = make_guardian(
        {
            "budgets": [
                {**CAP, "action": "shadow"},
                {"name": "tools", "scope": "run", "limits": {"tool_calls": 4}},
            ]
        }
    )
    with pytest.raises(BudgetExceeded) as caught:
        react_graph(pages(8), [search]).invoke({"messages": [HumanMessage("go")]}, {"callbacks": [guard.callback()]})
    assert caught.value.budget == "tools"  # the shadowed cap never refused; the enforced one did
    report = guard.report(since=T0 - 1)
    assert report.would_halts == {"BudgetExceeded: cap": 1}
    assert report.halts == {"BudgetExceeded: tools": 1}


def test_shadowed_loops_are_recorded_not_halted(make_guardian: GuardianFactory) -> None:
    guard = make_guardian({"settings": {"mode": "shadow"}})
    stuck = ScriptedChatModel(replies=[tool_call("search", {"query": "Q3"})] * 8 + ["gave up"])
    result = react_graph(stuck, [search]).invoke({"messages": [HumanMessage("go")]}, {"callbacks": [guard.callback()]})
    assert result["messages"][-1].content == "gave up"
    assert guard.report(since=T0 - 1).would_halts == {"LoopDetected: repeated_tool_call": 1}


def test_an_operators_kill_still_halts_in_shadow_mode(make_guardian: GuardianFactory) -> None:
    """Shadow mode is for rolling budgets out; a kill is an operator pulling the brake on purpose."""
    guard = make_guardian({"settings": {"mode": "shadow"}})
    guard.kill(user="mallory")
    with pytest.raises(RunKilled):
        ScriptedChatModel(replies=["x"]).invoke("hi", config={"callbacks": [guard.callback(user="mallory")]})


def test_shadow_mode_is_validated() -> None:
    from guardian import PolicyError

    with pytest.raises(PolicyError, match=r"settings\.mode"):
        Policy.from_dict({"version": 1, "settings": {"mode": "pretend"}})


def test_status_counts_would_be_halts(redis_url: str, key_prefix: str) -> None:
    policy = Policy.from_dict({"version": 1, "budgets": [CAP], "settings": {"mode": "shadow"}})
    guard = Guardian(policy, store=redis_url, key_prefix=key_prefix, clock=FakeClock())
    try:
        for _ in range(2):
            react_graph(pages(5), [search]).invoke(
                {"messages": [HumanMessage("go")]}, {"callbacks": [guard.callback("researcher", tenant="acme")]}
            )
    finally:
        guard.close()
    common = ["--store", redis_url, "--prefix", key_prefix]
    shown = CliRunner().invoke(app, ["status", *common])
    assert "2 run(s) of agent 'researcher' of tenant 'acme' would have been halted" in shown.output
    document: Any = __import__("json").loads(CliRunner().invoke(app, ["status", "--json", *common]).stdout)
    assert [w["count"] for w in document["would_halts"]] == [2]

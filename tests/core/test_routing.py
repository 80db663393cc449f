"""Spend less: routing under budget pressure and clamping, with real create_agent graphs on both stores."""

from __future__ import annotations

from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool
from langgraph.graph import END, START, MessagesState, StateGraph
from structlog.testing import capture_logs

from guardian import BudgetExceeded, LoopDetected, Policy, PolicyError
from guardian.testing import ScriptedChatModel

from .conftest import T0, GuardianFactory

ROUTE = {"openai:gpt-4o": "openai:gpt-4o-mini"}


@tool
def lookup(query: str) -> str:
    """Look something up."""
    return f"found {query}"


def step(i: int, tokens_out: int = 50) -> AIMessage:
    """A model turn asking for the next page, with fixed usage."""
    return AIMessage(
        content="",
        tool_calls=[{"name": "lookup", "args": {"query": f"page {i}"}, "id": f"c{i}"}],
        usage_metadata={"input_tokens": 2000, "output_tokens": tokens_out, "total_tokens": 2000 + tokens_out},
    )


def models(replies: list[Any]) -> tuple[ScriptedChatModel, ScriptedChatModel]:
    """The model the agent is built with (gpt-4o) and the cheaper one routes send calls to, reading one script:
    whichever is called gives the script's next turn."""
    script = iter(replies)

    def next_turn(messages: Any) -> Any:
        return next(script)

    big = ScriptedChatModel(model="gpt-4o", provider="openai", replies=[next_turn], cycle=True, max_tokens=100)
    small = ScriptedChatModel(model="gpt-4o-mini", provider="openai", replies=[next_turn], cycle=True, max_tokens=100)
    return big, small


def run(agent: Any) -> Any:
    return agent.invoke({"messages": [HumanMessage("read every page")]})


def events(logs: list[Any], name: str) -> list[Any]:
    return [e for e in logs if e["event"] == name]


def test_a_budget_under_pressure_routes_to_the_cheaper_model(make_guardian: GuardianFactory) -> None:
    """Once the user's daily budget is half used, gpt-4o calls go to gpt-4o-mini; each routed call is reserved for
    the model called, logged with its saving on real usage, and the report adds the savings up."""
    policy = {
        "budgets": [{"name": "user-daily", "scope": "user", "window": "day", "limits": {"cost_usd": 0.02}}],
        "routing": [{"name": "tight", "when": {"budget": "user-daily", "used_at_least": 0.5}, "route": ROUTE}],
    }
    guard = make_guardian(policy)
    big, small = models([step(i) for i in range(8)] + ["done"])
    middleware = guard.middleware(user="alice", models={"openai:gpt-4o-mini": small})
    with capture_logs() as logs:
        result = run(create_agent(big, [lookup], middleware=[middleware]))
    assert result["messages"][-1].content == "done"
    assert big.calls > 0
    assert small.calls > 0  # the rest of the run went to the cheaper model
    routed = events(logs, "model_routed")
    assert len(routed) == small.calls
    assert all(e["origin"] == "openai:gpt-4o" and e["target"] == "openai:gpt-4o-mini" for e in routed)
    assert all(e["saved_micro_usd"] > 0 for e in routed)
    reserved = [e["model"] for e in events(logs, "call_reserved")]
    assert reserved == ["gpt-4o"] * big.calls + ["gpt-4o-mini"] * small.calls
    report = guard.report(since=T0 - 1)
    assert report.total.routed_calls == small.calls
    assert report.total.routing_saved_micro_usd == sum(e["saved_micro_usd"] for e in routed)
    assert report.routing == {"tight": (small.calls, report.total.routing_saved_micro_usd)}


def test_a_suspected_loop_routes_before_loop_detection_halts(make_guardian: GuardianFactory) -> None:
    policy = {"routing": [{"name": "loopy", "when": {"loop_suspected": True}, "route": ROUTE}]}
    guard = make_guardian(policy)
    same = AIMessage(
        content="",
        tool_calls=[{"name": "lookup", "args": {"query": "Q3"}, "id": "x"}],
        usage_metadata={"input_tokens": 500, "output_tokens": 20, "total_tokens": 520},
    )
    big, small = models([same] * 50)
    middleware = guard.middleware(models={"openai:gpt-4o-mini": small})
    with pytest.raises(LoopDetected):
        run(create_agent(big, [lookup], middleware=[middleware]))
    assert big.calls >= 1
    assert small.calls >= 1  # repeats were already going to the cheaper model when the loop was called


def test_a_costly_run_is_routed_and_a_cheap_one_is_not(make_guardian: GuardianFactory) -> None:
    policy = {"routing": [{"name": "long-runs", "when": {"run_cost_at_least": 0.01}, "route": ROUTE}]}
    guard = make_guardian(policy)
    big, small = models([step(i) for i in range(3)] + ["done"])
    run(create_agent(big, [lookup], middleware=[guard.middleware(models={"openai:gpt-4o-mini": small})]))
    # $2.50/M input: 2,000 tokens are $0.005 a call, so the third call is the first of a run past $0.01
    assert (big.calls, small.calls) == (2, 2)


async def test_routing_works_on_the_async_path(make_guardian: GuardianFactory) -> None:
    policy = {"routing": [{"name": "long-runs", "when": {"run_cost_at_least": 0.01}, "route": ROUTE}]}
    guard = make_guardian(policy)
    big, small = models([step(i) for i in range(3)] + ["done"])
    agent = create_agent(big, [lookup], middleware=[guard.middleware(models={"openai:gpt-4o-mini": small})])
    await agent.ainvoke({"messages": [HumanMessage("go")]})
    assert (big.calls, small.calls) == (2, 2)


def test_in_shadow_mode_a_route_is_only_recorded(make_guardian: GuardianFactory) -> None:
    policy = {
        "settings": {"mode": "shadow"},
        "routing": [{"name": "long-runs", "when": {"run_cost_at_least": 0.01}, "route": ROUTE}],
    }
    guard = make_guardian(policy)
    big, small = models([step(i) for i in range(3)] + ["done"])
    with capture_logs() as logs:
        run(create_agent(big, [lookup], middleware=[guard.middleware(models={"openai:gpt-4o-mini": small})]))
    assert (big.calls, small.calls) == (4, 0)
    would = events(logs, "would_route")
    assert len(would) == 2
    assert guard.report(since=T0 - 1).total.would_route_micro_usd == sum(e["saved_micro_usd"] for e in would) > 0


def test_a_route_whose_model_cannot_be_built_calls_the_original(make_guardian: GuardianFactory) -> None:
    policy = {
        "prices": {"cheap": {"input": 0.01, "output": 0.01}},
        "routing": [{"name": "r", "when": {"run_cost_at_least": 0}, "route": {"openai:gpt-4o": "nowhere:cheap"}}],
    }
    guard = make_guardian(policy)
    big, _ = models([step(0), step(1), "done"])
    with capture_logs() as logs:
        run(create_agent(big, [lookup], middleware=[guard.middleware()]))
    assert big.calls == 3
    assert [e["target"] for e in events(logs, "route_unavailable")] == ["nowhere:cheap"]


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"when": {"budget": "nope", "used_at_least": 0.5}, "route": ROUTE}, "no budget named 'nope'"),
        ({"when": {"run_cost_at_least": 1}, "route": {"openai:gpt-4o-mini": "openai:gpt-4o"}}, "costs more"),
        ({"when": {"run_cost_at_least": 1}, "route": {"openai:gpt-4o": "acme:unpriced"}}, "no price known"),
        ({"when": {"run_cost_at_least": 1}, "route": {"gpt-4o": "openai:gpt-4o-mini"}}, "not 'provider:model'"),
        ({"when": {"used_at_least": 0.5}, "route": ROUTE}, "budget and used_at_least go together"),
        ({"when": {}, "route": ROUTE}, "give a condition"),
    ],
)
def test_routing_rules_are_validated_where_they_are_written(rule: dict[str, Any], message: str) -> None:
    with pytest.raises(PolicyError, match=message) as caught:
        Policy.from_dict({"version": 1, "routing": [{"name": "r", **rule}]})
    assert "routing[0]" in str(caught.value)


# -- clamping --------------------------------------------------------------------------------------------------


def clamp_policy(action: str = "clamp") -> dict[str, Any]:
    return {
        "budgets": [{"name": "run-output", "scope": "run", "limits": {"output_tokens": 1000}}],
        "settings": {"on_low_budget": action, "min_output_tokens": 16},
    }


def writer(n: int) -> ScriptedChatModel:
    """Each turn writes 300 tokens (its cap) and asks for more, n times."""
    replies: list[Any] = [step(i, tokens_out=300) for i in range(n)] + ["done"]
    return ScriptedChatModel(model="gpt-4o-mini", provider="openai", replies=replies, max_tokens=300)


def test_clamping_uses_the_budget_to_the_last_token_without_overspend(make_guardian: GuardianFactory) -> None:
    """Three 300-token calls leave 100 of 1,000: the fourth is sent with max_tokens=100 instead of refused, the
    budget ends exactly full, and only a call that cannot get min_output_tokens is refused."""
    guard = make_guardian(clamp_policy())
    model = writer(6)
    middleware = guard.middleware(exit_behavior="end")
    with capture_logs() as logs:
        result = run(create_agent(model, [lookup], middleware=[middleware]))
    (clamped,) = events(logs, "call_clamped")
    assert (clamped["max_tokens_asked"], clamped["max_tokens"]) == (300, 100)
    assert model.calls == 4  # no refusal while a minimum call fitted
    (finished,) = events(logs, "run_finished")
    assert finished["spent_output_tokens"] == 1000  # to the last token, not one over
    assert str(result["messages"][-1].content).startswith("Stopped by Guardian (BudgetExceeded)")
    assert guard.report(since=T0 - 1).total.clamped_calls == 1
    (bucket,) = guard.status(budget="run-output")
    assert bucket.refused == 1  # the fifth call; the clamped fourth was not a refusal


def test_without_clamping_the_call_that_does_not_fit_is_refused(make_guardian: GuardianFactory) -> None:
    guard = make_guardian(clamp_policy("refuse"))
    model = writer(6)
    with capture_logs() as logs, pytest.raises(BudgetExceeded):
        run(create_agent(model, [lookup], middleware=[guard.middleware()]))
    assert model.calls == 3
    (finished,) = events(logs, "run_finished")
    assert finished["spent_output_tokens"] == 900  # 100 tokens left unused


def test_clamping_a_cost_limit_never_overspends(make_guardian: GuardianFactory) -> None:
    """A dollar limit: the clamped cap is the most output the remaining money buys at the model's price."""
    policy = {
        "budgets": [{"name": "run-usd", "scope": "run", "limits": {"cost_usd": 0.002}}],
        "settings": {"on_low_budget": "clamp", "min_output_tokens": 16},
        "prices": {"gpt-4o-mini": {"input": 0, "output": 0.6}},  # output only: what a call costs is what it writes
    }
    guard = make_guardian(policy)
    replies: list[Any] = [
        AIMessage(
            content="",
            tool_calls=[{"name": "lookup", "args": {"query": f"p{i}"}, "id": f"c{i}"}],
            usage_metadata={"input_tokens": 1000, "output_tokens": 1000, "total_tokens": 2000},
        )
        for i in range(6)
    ] + ["done"]
    model = ScriptedChatModel(model="gpt-4o-mini", provider="openai", replies=replies, max_tokens=1000)
    with capture_logs() as logs, pytest.raises(BudgetExceeded):
        run(create_agent(model, [lookup], middleware=[guard.middleware()]))
    (finished,) = events(logs, "run_finished")
    assert finished["spent_cost_micro_usd"] == 2000  # three calls of $0.0006, then one of what $0.0002 buys
    (clamped,) = events(logs, "call_clamped")
    assert clamped["max_tokens"] == 333  # 333 tokens at $0.60/M cost 199.8 micro-dollars, 334 would cost 200.4


# -- the router, for apps on the callback ---------------------------------------------------------------------


def test_the_router_routes_calls_of_a_plain_langgraph_app_on_the_callback(make_guardian: GuardianFactory) -> None:
    """No middleware: a graph node calls guard.router(...) where it would call the model; past the run's cost
    condition, calls go to the cheaper model, reserved and recorded as routed."""
    policy = {"routing": [{"name": "long-runs", "when": {"run_cost_at_least": 0.01}, "route": ROUTE}]}
    guard = make_guardian(policy)
    big, small = models([step(i) for i in range(3)] + ["done"])
    router = guard.router(big, {"openai:gpt-4o-mini": small})

    def agent(state: MessagesState, config: RunnableConfig) -> dict[str, Any]:
        return {"messages": [router.invoke(state["messages"], config)]}

    def tools(state: MessagesState) -> dict[str, Any]:
        last: Any = state["messages"][-1]
        return {"messages": [lookup.invoke(last.tool_calls[0])]}

    def next_step(state: MessagesState) -> str:
        last: Any = state["messages"][-1]
        return "tools" if last.tool_calls else END

    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_node("tools", tools)
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", next_step)
    graph.add_edge("tools", "agent")
    with capture_logs() as logs:
        result = graph.compile().invoke(
            {"messages": [HumanMessage("go")]}, config={"callbacks": [guard.callback("plain")]}
        )
    assert result["messages"][-1].content == "done"
    assert (big.calls, small.calls) == (2, 2)
    routed = events(logs, "model_routed")
    assert len(routed) == 2
    assert all(e["saved_micro_usd"] > 0 for e in routed)
    assert [e["model"] for e in events(logs, "call_reserved")] == ["gpt-4o", "gpt-4o", "gpt-4o-mini", "gpt-4o-mini"]
    assert guard.report(since=T0 - 1).total.routed_calls == 2


def test_a_router_without_the_target_model_calls_the_default_and_records_no_route(
    make_guardian: GuardianFactory,
) -> None:
    from langchain_core.runnables import RunnableLambda

    policy = {"routing": [{"name": "long-runs", "when": {"run_cost_at_least": 0.01}, "route": ROUTE}]}
    guard = make_guardian(policy)
    big, _ = models([step(i) for i in range(4)])
    router = guard.router(big, {})  # no gpt-4o-mini given

    def agent(question: Any, config: RunnableConfig) -> list[Any]:
        return [router.invoke([HumanMessage(question)], config) for _ in range(4)]

    with capture_logs() as logs:
        RunnableLambda(agent).invoke("go", config={"callbacks": [guard.callback("plain")]})
    assert big.calls == 4
    assert events(logs, "model_routed") == []
    assert guard.report(since=T0 - 1).total.routed_calls == 0


def test_validate_lists_routing_rules_and_the_spending_settings(tmp_path: Any) -> None:
    from typer.testing import CliRunner

    from guardian.cli import app

    path = tmp_path / "p.yaml"
    path.write_text(
        "version: 1\nsettings: {mode: shadow, on_low_budget: clamp}\nrouting:\n  - name: r\n"
        "    when: {run_cost_at_least: 1}\n    route: {'openai:gpt-4o': 'openai:gpt-4o-mini'}\n"
    )
    done = CliRunner().invoke(app, ["validate", str(path)])
    assert done.exit_code == 0, done.output
    assert "routing rule r: openai:gpt-4o -> openai:gpt-4o-mini" in done.output
    assert "mode=shadow" in done.output
    assert "on_low_budget=clamp" in done.output

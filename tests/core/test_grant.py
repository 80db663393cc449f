"""guardian grant: an audited, fleet-wide allowance on one bucket, seen at the next refusal."""

from __future__ import annotations

from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command
from structlog.testing import capture_logs
from typer.testing import CliRunner

from guardian import BudgetExceeded, Guardian, GuardianError, Policy
from guardian.alerts import RecordingSink
from guardian.cli import app
from guardian.testing import ScriptedChatModel

from .conftest import GuardianFactory

DAILY = {"name": "daily", "scope": "user", "window": "day", "limits": {"llm_calls": 2, "cost_usd": 5}}


def call(guard: Guardian, user: str = "alice", tenant: str = "acme") -> None:
    ScriptedChatModel(replies=["ok"]).invoke(
        [HumanMessage("hi")], config={"callbacks": [guard.callback(user=user, tenant=tenant)]}
    )


def test_a_grant_gives_the_bucket_more_room_and_is_audited(make_guardian: GuardianFactory) -> None:
    """alice has used her 2 calls; a grant of 2 more lets exactly 2 more through, bob's bucket is untouched;
    the grant is logged, alerted and listed."""
    sink = RecordingSink(all_kinds=True)
    guard = make_guardian({"budgets": [DAILY]}, alert_sinks=[sink])
    call(guard)
    call(guard)
    with pytest.raises(BudgetExceeded):
        call(guard)
    with capture_logs() as logs:
        guard.grant("daily", calls=2, user="alice", tenant="acme", reason="quarter close")
    for _ in range(2):
        call(guard)
    with pytest.raises(BudgetExceeded):
        call(guard)
    call(guard, user="bob")
    call(guard, user="bob")
    with pytest.raises(BudgetExceeded):
        call(guard, user="bob")
    (event,) = [e for e in logs if e["event"] == "budget_granted"]
    assert (event["scope_key"], event["granted"], event["reason"]) == ("alice", {"llm_calls": 2}, "quarter close")
    assert guard.alerts.flush(5.0)
    (alert,) = [a for a in sink.alerts if a.kind == "granted"]
    assert "2 llm_calls to user 'alice' of budget 'daily': quarter close" in alert.reason
    assert [(metric, amount) for _, metric, amount in guard.grants()] == [("llm_calls", 2)]


def test_grants_add_up_and_dollars_are_micro_dollars_in_the_store(make_guardian: GuardianFactory) -> None:
    guard = make_guardian({"budgets": [DAILY]})
    guard.grant("daily", usd="1.50", user="alice", tenant="acme")
    guard.grant("daily", usd=1, user="alice", tenant="acme")
    assert [(metric, amount) for _, metric, amount in guard.grants()] == [("cost_usd", 2_500_000)]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"budget": "nope", "calls": 1, "user": "a"}, "no budget named 'nope'"),
        ({"budget": "daily", "user": "a"}, "grant a positive amount"),
        ({"budget": "daily", "calls": -1, "user": "a"}, "grant a positive amount"),
        ({"budget": "daily", "tokens": 5, "user": "a"}, "has no total_tokens limit"),
        ({"budget": "daily", "calls": 1}, "scoped per user: name the user"),
    ],
)
def test_a_grant_that_makes_no_sense_is_refused_with_a_sentence(
    make_guardian: GuardianFactory, kwargs: dict[str, Any], message: str
) -> None:
    guard = make_guardian({"budgets": [DAILY]})
    kwargs = dict(kwargs)
    budget = kwargs.pop("budget")
    with pytest.raises(GuardianError, match=message):
        guard.grant(budget, **kwargs)


def test_a_run_paused_by_its_budget_goes_on_after_a_grant(make_guardian: GuardianFactory) -> None:
    """Middleware with exit_behavior="interrupt": the refused call pauses the run; after a grant, the resume
    continues it to the end."""
    guard = make_guardian({"budgets": [DAILY]})
    model = ScriptedChatModel(replies=["one", "two", "three"])
    middleware = guard.middleware(user="alice", tenant="acme", exit_behavior="interrupt")
    agent = create_agent(model, [], middleware=[middleware], checkpointer=InMemorySaver())
    config: Any = {"configurable": {"thread_id": "t"}}
    agent.invoke({"messages": [HumanMessage("a")]}, config)
    agent.invoke({"messages": [HumanMessage("b")]}, config)
    paused = agent.invoke({"messages": [HumanMessage("c")]}, config)
    assert paused["__interrupt__"][0].value["budget"] == "daily"
    guard.grant("daily", calls=1, user="alice", tenant="acme")
    done = agent.invoke(Command(resume="go"), config)
    assert done["messages"][-1].content == "three"


def test_the_cli_grants_on_the_fleet_store(redis_url: str, key_prefix: str, tmp_path: Any) -> None:
    """`guardian grant -p policy --budget daily --user alice --tenant acme --calls 3` on Redis: an agent process
    sees the room; a CLI mistake is a sentence and a non-zero exit."""
    import yaml

    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "budgets": [DAILY]}))
    runner = CliRunner()
    common = ["--store", redis_url, "--prefix", key_prefix, "-p", str(path)]
    done = runner.invoke(
        app, ["grant", "--budget", "daily", "--user", "alice", "--tenant", "acme", "--calls", "3", *common]
    )
    assert done.exit_code == 0, done.output
    assert "granted on" in done.output
    guard = Guardian(Policy.from_yaml(path), store=redis_url, key_prefix=key_prefix)
    try:
        assert [(m, a) for _, m, a in guard.grants()] == [("llm_calls", 3)]
    finally:
        guard.close()
    status = runner.invoke(app, ["status", *common])
    assert "granted 3 llm_calls to user 'alice' of budget 'daily'" in status.output
    bad = runner.invoke(app, ["grant", "--budget", "daily", "--user", "alice", *common])
    assert bad.exit_code == 1
    assert "grant a positive amount" in bad.output
    no_policy = runner.invoke(app, ["grant", "--budget", "daily", "--calls", "1", "--store", redis_url])
    assert no_policy.exit_code == 2
    assert "needs the policy" in no_policy.output


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_pause_then_the_cli_grant_then_resume_finishes_on_redis(
    mode: str, redis_url: str, key_prefix: str, tmp_path: Any
) -> None:
    """The operator's story end to end on the fleet store: a checkpointed create_agent run pauses at its budget
    (exit_behavior="interrupt"), `guardian grant` is run from the command line, and `Command(resume=...)` finishes
    the run, sync and async. The provider is called once per served call, never for the refused one."""
    import asyncio

    import yaml

    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "budgets": [DAILY]}))
    guard = Guardian(Policy.from_yaml(path), store=redis_url, key_prefix=key_prefix)
    try:
        model = ScriptedChatModel(replies=["one", "two", "three"])
        middleware = guard.middleware(user="alice", tenant="acme", exit_behavior="interrupt")
        agent = create_agent(model, [], middleware=[middleware], checkpointer=InMemorySaver())
        config: Any = {"configurable": {"thread_id": f"story-{mode}"}}

        def invoke(value: Any) -> Any:
            if mode == "sync":
                return agent.invoke(value, config)
            return asyncio.run(agent.ainvoke(value, config))

        invoke({"messages": [HumanMessage("a")]})
        invoke({"messages": [HumanMessage("b")]})
        paused = invoke({"messages": [HumanMessage("c")]})
        (pause,) = paused["__interrupt__"]
        assert (pause.value["guardian"], pause.value["budget"], pause.value["unit"]) == (
            "BudgetExceeded",
            "daily",
            "llm_calls",
        )
        assert model.calls == 2
        fleet = ["--store", redis_url, "--prefix", key_prefix, "-p", str(path)]
        granted = CliRunner().invoke(
            app, ["grant", "--budget", "daily", "--user", "alice", "--tenant", "acme", "--calls", "1", *fleet]
        )
        assert granted.exit_code == 0, granted.output
        done = invoke(Command(resume="go"))
        assert done["messages"][-1].content == "three"
        assert model.calls == 3
        assert middleware.active_runs == 0
    finally:
        guard.close()

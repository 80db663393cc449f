"""guardian replay: the recorded history judged again under another policy, through the same engine."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import RunnableLambda
from typer.testing import CliRunner

from guardian import Guardian, Policy
from guardian.cli import app
from guardian.history import UsageRecord
from guardian.replay import as_table, replay
from guardian.testing import FakeClock, ScriptedChatModel

from .conftest import T0, GuardianFactory

PRICES = {"scripted": {"input": 1, "output": 2}}
RECORDED: dict[str, Any] = {"prices": PRICES, "loops": []}  # what the fleet ran under: no budgets, no loop rules


def strict(**settings: Any) -> Policy:
    return Policy.from_dict(
        {
            "version": 1,
            "prices": PRICES,
            "settings": settings,
            "budgets": [
                {"name": "user-daily", "scope": "user", "window": "day", "limits": {"llm_calls": 3}},
                {"name": "run-cap", "scope": "run", "limits": {"llm_calls": 2}},
            ],
        }
    )


def record_week(guard: Guardian, clock: FakeClock) -> None:
    """alice: five one-call runs; bob: two; carol: one run of four calls. Each call 100 in, 10 out."""
    reply = AIMessage("ok", usage_metadata={"input_tokens": 100, "output_tokens": 10, "total_tokens": 110})
    for user, runs, calls in (("alice", 5, 1), ("bob", 2, 1), ("carol", 1, 4)):
        for _ in range(runs):
            model = ScriptedChatModel(model="scripted", replies=[reply], cycle=True)

            def run(question: Any, model: ScriptedChatModel = model, calls: int = calls) -> list[Any]:
                return [model.invoke(question) for _ in range(calls)]

            handler = guard.callback("agent-" + user, user, "acme")
            RunnableLambda(run).invoke([HumanMessage("hi")], config={"callbacks": [handler]})
            clock.advance(60)
    guard.flush()


def test_replay_stops_what_the_new_policy_would_have_stopped(make_guardian: GuardianFactory, clock: FakeClock) -> None:
    guard = make_guardian(RECORDED)
    record_week(guard, clock)
    result = guard.replay(strict(), since=T0 - 1, by="user")
    rows = {r.key: r for r in result.rows}
    call_cost = 100 + 20  # $1/M in, $2/M out, in micro-dollars
    assert (rows["alice"].runs, rows["alice"].stopped_runs, rows["alice"].stopped_calls) == (5, 2, 2)
    assert rows["alice"].saved_micro_usd == 2 * call_cost
    assert (rows["bob"].stopped_runs, rows["bob"].saved_micro_usd) == (0, 0)
    assert (rows["carol"].stopped_runs, rows["carol"].stopped_calls) == (1, 2)  # the run cap of 2 stops calls 3-4
    assert result.total.calls == 11
    assert result.total.recorded_cost_micro_usd == 11 * call_cost
    assert result.total.served_cost_micro_usd == 7 * call_cost
    assert result.halts == {"BudgetExceeded: run-cap": 1, "BudgetExceeded: user-daily": 2}
    table = as_table(result)
    assert "Not judged (not in the history): loop rules, tool-call limits, kills and grants." in table


def test_a_shadow_policy_is_judged_as_enforced_and_new_prices_apply(
    make_guardian: GuardianFactory, clock: FakeClock
) -> None:
    guard = make_guardian(RECORDED)
    record_week(guard, clock)
    shadow = guard.replay(strict(mode="shadow"), since=T0 - 1)
    assert shadow.total.stopped_runs == 3
    doubled = Policy.from_dict({"version": 1, "prices": {"scripted": {"input": 2, "output": 4}}})
    result = guard.replay(doubled, since=T0 - 1)
    assert result.total.served_cost_micro_usd == 2 * result.total.recorded_cost_micro_usd
    assert result.total.stopped_runs == 0


def test_replay_is_pure_over_records() -> None:
    records = [
        UsageRecord("call", T0 + i, f"r{i}", "a", "u", "t", model="scripted", input_tokens=10, cost_micro_usd=10)
        for i in range(5)
    ]
    records.insert(2, UsageRecord("halt", T0 + 1.5, "r1", "a", "u", "t", reason="LoopDetected"))  # ignored
    result = replay(records, strict(), since=T0, until=T0 + 10)
    assert (result.total.calls, result.total.stopped_runs) == (5, 2)
    with pytest.raises(ValueError, match="--by must be one of"):
        replay(records, strict(), since=T0, until=T0 + 10, by="planet")


def test_the_cli_replays_the_fleets_history(redis_url: str, key_prefix: str, tmp_path: Any) -> None:
    clock = FakeClock(__import__("time").time() - 3600)
    guard = Guardian(Policy.from_dict({"version": 1, **RECORDED}), store=redis_url, key_prefix=key_prefix, clock=clock)
    try:
        record_week(guard, clock)
    finally:
        guard.close()
    path = tmp_path / "strict.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "prices": PRICES, "budgets": [
        {"name": "user-daily", "scope": "user", "window": "day", "limits": {"llm_calls": 3}},
    ]}))  # fmt: skip
    common = ["--store", redis_url, "--prefix", key_prefix]
    table = CliRunner().invoke(app, ["replay", "-p", str(path), "--since", "2h", *common])
    assert table.exit_code == 0, table.output
    assert "BudgetExceeded: user-daily" in table.output
    document = json.loads(CliRunner().invoke(app, ["replay", "-p", str(path), "--format", "json", *common]).output)
    assert document["total"]["stopped_runs"] == 3  # alice's last two runs and carol's one run (her 4th call)
    missing = CliRunner().invoke(app, ["replay", *common])
    assert missing.exit_code == 2
    assert "--policy" in missing.output
    bad = CliRunner().invoke(app, ["replay", "-p", str(path), "--format", "html", *common])
    assert bad.exit_code == 2
    assert "--format must be table or json" in bad.output


def test_replay_matches_budgets_on_the_runs_tags(make_guardian: GuardianFactory, clock: FakeClock) -> None:
    """Runs recorded with a tag are judged by a budget that matches on it; others are not."""
    guard = make_guardian(RECORDED)
    reply = AIMessage("ok", usage_metadata={"input_tokens": 100, "output_tokens": 10, "total_tokens": 110})
    for tags in (["prod"], ["prod"], [], []):
        model = ScriptedChatModel(model="scripted", replies=[reply])
        model.invoke("hi", config={"callbacks": [guard.callback("a", "u", "acme", tags=tags)]})
        clock.advance(1)
    guard.flush()
    prod_only = Policy.from_dict(
        {
            "version": 1,
            "prices": PRICES,
            "budgets": [
                {"name": "prod-calls", "scope": "user", "window": "day", "match": {"tags": ["prod"]},
                 "limits": {"llm_calls": 1}},
            ],
        }
    )  # fmt: skip
    result = guard.replay(prod_only, since=T0 - 1)
    assert result.total.stopped_runs == 1  # the second prod run; the untagged runs are not under the budget

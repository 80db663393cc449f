"""The spend history and reports: every committed call recorded once, figures that match the ledger, outcomes
joined to runs, and `guardian report` in every format (both stores; the CLI on Redis)."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
import yaml
from langchain.agents import create_agent
from langchain_core.caches import InMemoryCache
from langchain_core.globals import set_llm_cache
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.tools import tool
from typer.testing import CliRunner

from guardian import BudgetExceeded, Guardian, LoopDetected, Policy
from guardian.cli import app
from guardian.history import UsageRecord
from guardian.report import as_csv, as_json, as_table, build_report, parse_since
from guardian.testing import FakeClock, ScriptedChatModel, react_graph, tool_call

from .conftest import T0, GuardianFactory

SECRET = "the launch codes are 0000"


def scripted(**options: Any) -> ScriptedChatModel:
    """A scripted model named as the policy prices it."""
    return ScriptedChatModel(model="scripted", **options)


@tool
def search(query: str) -> str:
    """Search."""
    return f"nothing about {query}"


def reply(text: str, tokens_in: int, tokens_out: int, cache_read: int = 0) -> AIMessage:
    usage: dict[str, Any] = {
        "input_tokens": tokens_in,
        "output_tokens": tokens_out,
        "total_tokens": tokens_in + tokens_out,
    }
    if cache_read:
        usage["input_token_details"] = {"cache_read": cache_read}
    return AIMessage(content=text, usage_metadata=usage)


POLICY: dict[str, Any] = {
    "budgets": [{"name": "cap", "scope": "run", "limits": {"llm_calls": 4}}],
    "loops": [{"name": "default"}],
    "prices": {"scripted": {"input": 1, "output": 2, "cache_read": "0.1"}},
}


def run_fleet(guard: Guardian, clock: FakeClock) -> dict[str, str]:
    """Four runs: a healthy one, one stopped by its budget, one stopped by a loop, and a cached one."""
    runs: dict[str, str] = {}
    healthy = scripted(replies=[reply(SECRET, 1000, 100, cache_read=400)])
    healthy.invoke(
        [HumanMessage(SECRET)], config={"callbacks": [guard.callback("writer", "alice", "acme")], "run_id": _uuid(1)}
    )
    runs["healthy"] = str(_uuid(1))
    clock.advance(3600)
    pages = scripted(replies=[tool_call("search", {"query": f"p{i}"}) for i in range(9)], max_tokens=20)
    with pytest.raises(BudgetExceeded):
        react_graph(pages, [search]).invoke(
            {"messages": [HumanMessage("go")]},
            config={"callbacks": [guard.callback("researcher", "bob", "acme")], "run_id": _uuid(2)},
        )
    runs["budget"] = str(_uuid(2))
    clock.advance(86_400)  # the next day
    stuck = scripted(replies=[tool_call("search", {"query": "Q3"})], cycle=True, max_tokens=20)
    with pytest.raises((LoopDetected, BudgetExceeded)):
        react_graph(stuck, [search]).invoke(
            {"messages": [HumanMessage("revenue?")]},
            config={"callbacks": [guard.callback("researcher", "carol", "beta")], "run_id": _uuid(3)},
        )
    runs["loop"] = str(_uuid(3))
    guard.flush()
    return runs


def _uuid(n: int) -> Any:
    import uuid

    return uuid.UUID(int=n)


def test_every_committed_call_is_recorded_once_with_its_tokens_by_kind(
    make_guardian: GuardianFactory, clock: FakeClock
) -> None:
    guard = make_guardian(POLICY)
    runs = run_fleet(guard, clock)
    records = guard.history(since=T0 - 1)
    calls = [r for r in records if r.kind == "call"]
    healthy = [r for r in calls if r.run == runs["healthy"]]
    assert [(r.input_tokens, r.output_tokens, r.cache_read_tokens, r.model) for r in healthy] == [
        (1000, 100, 400, "scripted")
    ]
    # 600 input at $1/M, 400 cache reads at $0.1/M, 100 output at $2/M
    assert healthy[0].cost_micro_usd == 600 + 40 + 200
    assert (healthy[0].agent, healthy[0].user, healthy[0].tenant) == ("writer", "alice", "acme")
    assert len([r for r in calls if r.run == runs["budget"]]) == 4
    halts = {r.run: (r.reason, r.detail) for r in records if r.kind == "halt"}
    assert halts[runs["budget"]] == ("BudgetExceeded", "cap")
    assert halts[runs["loop"]][0] == "LoopDetected"
    assert SECRET not in json.dumps([r.to_payload() for r in records])


def test_report_figures_match_the_ledger(make_guardian: GuardianFactory, clock: FakeClock) -> None:
    """Spend and calls in the report equal what the ledger's buckets hold, group by group and in total."""
    guard = make_guardian({**POLICY, "budgets": [
        {"name": "cap", "scope": "run", "limits": {"llm_calls": 4}},
        {"name": "per-agent", "scope": "agent", "window": "month", "limits": {"llm_calls": 1000}},
    ]})  # fmt: skip
    run_fleet(guard, clock)
    report = guard.report(since=T0 - 1, by="agent")
    ledger: dict[str, tuple[int, int]] = {}  # agent budgets are per tenant: an agent's buckets add up
    for bucket in guard.status(budget="per-agent"):
        cost, calls = ledger.get(bucket.scope_key, (0, 0))
        ledger[bucket.scope_key] = (cost + bucket.spent.cost_usd, calls + bucket.spent.llm_calls)
    assert {row.key: (row.cost_micro_usd, row.calls) for row in report.rows} == ledger
    assert report.total.cost_micro_usd == sum(cost for cost, _ in ledger.values())
    assert report.total.runs == 3
    assert report.total.halts == 2


def test_loop_waste_and_halts_by_reason(make_guardian: GuardianFactory, clock: FakeClock) -> None:
    guard = make_guardian(POLICY)
    runs = run_fleet(guard, clock)
    report = guard.report(since=T0 - 1, by="user")
    carol = next(r for r in report.rows if r.key == "carol")
    loop_spend = sum(
        r.cost_micro_usd for r in guard.history(since=T0 - 1) if r.run == runs["loop"] and r.kind == "call"
    )
    assert carol.loop_waste_micro_usd == loop_spend > 0
    assert report.total.loop_waste_micro_usd == loop_spend
    assert any(reason.startswith("LoopDetected: ") for reason in report.halts)
    assert report.top_runs[0].cost_micro_usd >= report.top_runs[-1].cost_micro_usd


def test_grouping_by_day_and_model(make_guardian: GuardianFactory, clock: FakeClock) -> None:
    guard = make_guardian(POLICY)
    run_fleet(guard, clock)
    days = guard.report(since=T0 - 1, by="day")
    assert [r.key for r in sorted(days.rows, key=lambda r: r.key)] == ["2026-11-18", "2026-11-19"]
    models = guard.report(since=T0 - 1, by="model")
    assert [r.key for r in models.rows] == ["scripted"]
    assert sum(r.cost_micro_usd for r in days.rows) == models.total.cost_micro_usd
    assert set(days.daily) == {"2026-11-18", "2026-11-19"}


def test_outcomes_give_cost_per_success_value_per_dollar_and_failure_cost(
    make_guardian: GuardianFactory, clock: FakeClock
) -> None:
    guard = make_guardian(POLICY)
    runs = run_fleet(guard, clock)
    guard.record_outcome(runs["healthy"], success=True, value_usd="0.05", tenant="acme")
    guard.record_outcome(runs["budget"], success=False)  # no tenant: the fleet's history, joined by run id
    report = guard.report(since=T0 - 1, by="agent")
    writer = next(r for r in report.rows if r.key == "writer")
    researcher = next(r for r in report.rows if r.key == "researcher")
    assert (writer.successful_runs, writer.failed_runs) == (1, 0)
    assert writer.cost_per_success_micro_usd == writer.cost_micro_usd
    assert writer.value_per_dollar == pytest.approx(50_000 / writer.cost_micro_usd)
    budget_run_cost = sum(r.cost_micro_usd for r in report.top_runs if r.run == runs["budget"])
    assert researcher.failure_cost_micro_usd == budget_run_cost > 0
    assert (report.total.successful_runs, report.total.failed_runs) == (1, 1)
    acme_only = guard.report(since=T0 - 1, tenant="acme")
    assert acme_only.total.failed_runs == 1
    assert {r.key for r in acme_only.rows} == {"writer", "researcher"}


def test_a_bad_outcome_is_a_clear_error(make_guardian: GuardianFactory) -> None:
    from guardian import GuardianError

    guard = make_guardian({})
    with pytest.raises(GuardianError, match="number of dollars"):
        guard.record_outcome("r", success=True, value_usd="lots")
    with pytest.raises(GuardianError, match="0 or more"):
        guard.record_outcome("r", success=True, value_usd=-1)


def test_the_middleware_records_the_outcome_its_hook_judges(make_guardian: GuardianFactory) -> None:
    guard = make_guardian({})

    def judged(state: Any) -> tuple[bool, str]:
        return "Done" in str(state["messages"][-1].content), "0.25"

    middleware = guard.middleware(agent="closer", user="dora", tenant="acme", outcome=judged)
    for replies in (["Done."], ["I could not."]):
        create_agent(ScriptedChatModel(replies=replies), [], middleware=[middleware]).invoke(
            {"messages": [HumanMessage("go")]}
        )
    outcomes = [r for r in guard.history(since=T0 - 1) if r.kind == "outcome"]
    assert [(r.success, r.value_micro_usd, r.agent, r.tenant) for r in outcomes] == [
        (True, 250_000, "closer", "acme"),
        (False, 250_000, "closer", "acme"),
    ]
    report = guard.report(since=T0 - 1)
    assert (report.rows[0].successful_runs, report.rows[0].failed_runs) == (1, 1)


def test_a_failing_outcome_hook_is_logged_not_raised(make_guardian: GuardianFactory) -> None:
    from structlog.testing import capture_logs

    guard = make_guardian({})

    def broken(state: Any) -> bool:
        raise KeyError("verdict")

    with capture_logs() as logs:
        create_agent(ScriptedChatModel(replies=["x"]), [], middleware=[guard.middleware(outcome=broken)]).invoke(
            {"messages": [HumanMessage("go")]}
        )
    assert [e["error_type"] for e in logs if e["event"] == "outcome_hook_failed"] == ["KeyError"]


def test_cache_hits_are_recorded_with_what_they_saved(make_guardian: GuardianFactory) -> None:
    guard = make_guardian(POLICY)
    set_llm_cache(InMemoryCache())
    try:
        model = scripted(replies=[reply("cached", 500, 50)], cycle=True, cache=True)
        for _ in range(3):
            model.invoke([HumanMessage("same")], config={"callbacks": [guard.callback("writer")]})
    finally:
        set_llm_cache(None)
    report = guard.report(since=T0 - 1)
    (row,) = report.rows
    assert (row.calls, row.cache_hits) == (1, 2)
    assert row.cache_saved_micro_usd == 2 * (500 + 100)


def test_history_can_be_turned_off(make_guardian: GuardianFactory, clock: FakeClock) -> None:
    guard = make_guardian({**POLICY, "settings": {"history": False}})
    run_fleet(guard, clock)
    assert guard.history(since=T0 - 1) == []


def test_the_report_is_pure_and_renders_in_every_format() -> None:
    records = [
        UsageRecord(
            "call", T0, "r1", "a", "u", "t", model="m", input_tokens=10, output_tokens=5, cost_micro_usd=1_500_000
        ),
        UsageRecord("call", T0 + 1, "r2", "b", "u", "t", model="m", cost_micro_usd=500_000, flags=("estimated",)),
        UsageRecord("halt", T0 + 2, "r2", "b", "u", "t", reason="LoopDetected", detail="repeated_tool_call"),
        UsageRecord("outcome", T0 + 3, "r1", success=True, value_micro_usd=3_000_000),
    ]
    report = build_report(records, since=T0, until=T0 + 10, by="agent")
    assert [(r.key, r.cost_micro_usd, r.estimated_calls) for r in report.rows] == [
        ("a", 1_500_000, 0),
        ("b", 500_000, 1),
    ]
    assert report.rows[0].value_per_dollar == 2.0
    assert report.rows[1].loop_waste_micro_usd == 500_000
    table = as_table(report)
    assert "$1.50" in table
    assert "LoopDetected: repeated_tool_call" in table
    rows = list(csv.DictReader(io.StringIO(as_csv(report))))
    assert rows[0]["agent"] == "a"
    assert rows[0]["cost_usd"] == "1.5"
    assert rows[-1]["agent"] == "total"
    document = json.loads(as_json(report))
    assert document["total"]["cost_micro_usd"] == 2_000_000
    assert document["halts"] == {"LoopDetected: repeated_tool_call": 1}
    with pytest.raises(ValueError, match="--by must be one of"):
        build_report(records, since=T0, until=T0 + 1, by="planet")


def test_a_record_from_a_newer_writer_is_skipped_not_fatal() -> None:
    assert UsageRecord.from_payload(T0, '{"k":"teleport","r":"x"}') is None
    assert UsageRecord.from_payload(T0, "not json") is None
    record = UsageRecord("call", T0, "r", "a", model="m", input_tokens=3, flags=("estimated",))
    assert UsageRecord.from_payload(T0, record.to_payload()) == record


@pytest.mark.parametrize(
    ("text", "expected"),
    [("7d", T0 - 7 * 86_400), ("24h", T0 - 86_400), ("30m", T0 - 1800), ("2026-11-01", 1_793_491_200.0)],
)
def test_since_reads_durations_and_dates(text: str, expected: float) -> None:
    assert parse_since(text, T0) == expected


def test_since_rejects_what_it_cannot_read() -> None:
    with pytest.raises(ValueError, match="neither a duration"):
        parse_since("last tuesday", T0)


# -- the command line -------------------------------------------------------------------------------------------


@pytest.fixture
def fleet(redis_url: str, key_prefix: str, tmp_path: Any) -> tuple[list[str], dict[str, str]]:
    """A fleet's history on Redis, written by agents on the real clock, and the CLI arguments that reach it."""
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump({"version": 1, **POLICY}))
    clock = FakeClock(__import__("time").time() - 2 * 86_400)
    guard = Guardian(Policy.from_yaml(path), store=redis_url, key_prefix=key_prefix, clock=clock)
    try:
        runs = run_fleet(guard, clock)
        guard.record_outcome(runs["healthy"], success=True, value_usd=1, tenant="acme")
    finally:
        guard.close()
    return ["--store", redis_url, "--prefix", key_prefix], runs


def test_the_cli_reports_the_fleet_in_every_format(fleet: tuple[list[str], dict[str, str]], tmp_path: Any) -> None:
    common, runs = fleet
    runner = CliRunner()
    table = runner.invoke(app, ["report", "--since", "7d", *common])
    assert table.exit_code == 0, table.output
    assert "researcher" in table.output
    assert "Halts by reason:" in table.output
    assert runs["budget"] in table.output
    as_json_out = runner.invoke(app, ["report", "--format", "json", "--by", "tenant", *common])
    document = json.loads(as_json_out.output)
    assert {r["key"] for r in document["rows"]} == {"acme", "beta"}
    assert document["total"]["successful_runs"] == 1
    as_csv_out = runner.invoke(app, ["report", "--format", "csv", "--by", "day", *common])
    assert len(list(csv.DictReader(io.StringIO(as_csv_out.output)))) == 3  # two days and the total
    page = tmp_path / "report.html"
    html = runner.invoke(app, ["report", "--format", "html", "-o", str(page), *common])
    assert html.exit_code == 0, html.output
    assert "wrote" in html.output
    assert page.stat().st_size > 100_000
    assert SECRET not in page.read_text()
    acme = runner.invoke(app, ["report", "--tenant", "beta", "--format", "json", *common])
    assert [r["key"] for r in json.loads(acme.output)["rows"]] == ["researcher"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--by", "planet"], "--by must be one of"),
        (["--format", "pdf"], "--format must be one of"),
        (["--format", "html"], "give it a file"),
        (["--since", "yesterday-ish"], "neither a duration"),
        (["--since", "1d", "--until", "2d"], "--until must come after --since"),
        (["--since", "99999999999w"], "outside the years 1970 to 9999"),
        (["--since", "1900-01-01"], "outside the years 1970 to 9999"),
    ],
)
def test_cli_report_mistakes_are_sentences(
    fleet: tuple[list[str], dict[str, str]], args: list[str], message: str
) -> None:
    common, _ = fleet
    done = CliRunner().invoke(app, ["report", *args, *common])
    assert done.exit_code == 2
    assert message in done.output
    assert "Traceback" not in done.output


def test_cli_report_refuses_the_embedded_store() -> None:
    done = CliRunner().invoke(app, ["report", "--store", "memory://"])
    assert done.exit_code == 2
    assert "embedded store" in done.output

"""The engine's pure steps (guardian.runs) and its run tree (guardian.runtree), each on its own: no store, no
framework, no clock but the ``now`` they are given."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from guardian.amounts import DISPLAY_ORDER, METRIC_TITLES, METRICS, Amounts
from guardian.identity import Identity
from guardian.keys import BucketKey, KeyBuilder
from guardian.loops import LoopVerdict
from guardian.policy import Policy
from guardian.pricing import PriceOverride, Pricer
from guardian.runs import (
    TARGETS_REFRESH_S,
    WINDOW_GRACE_S,
    Binding,
    CallState,
    RunState,
    bind,
    bucket_alert,
    bucket_for,
    charged,
    daily_counter_span,
    extension_wanted,
    is_over_hold,
    loop_alert,
    make_plan,
    priced,
    shared_buckets,
    thresholds_passed,
)
from guardian.runtree import RunTree
from guardian.store.base import BucketState
from guardian.store.memory import MemoryStore
from guardian.store.redis import ledger_script
from guardian.supervisor import Supervisor

NOON = datetime(2026, 11, 18, 12, 0, tzinfo=UTC).timestamp()
MIDNIGHT = datetime(2026, 11, 19, 0, 0, tzinfo=UTC).timestamp()
ALICE = Identity.of(agent="researcher", user="alice", tenant="acme")
KEYS = KeyBuilder("t:")


def policy(*budgets: dict[str, Any], **settings: Any) -> Policy:
    return Policy.from_dict({"version": 1, "budgets": list(budgets), "settings": settings})


RUN_CAP = {"name": "cap", "scope": "run", "limits": {"llm_calls": 5}}
DAILY = {"name": "daily", "scope": "user", "window": "day", "limits": {"cost_usd": 2}, "alert_at": [0.5, 0.8]}
CHAT = {"name": "chat", "scope": "thread", "window": "lifetime", "limits": {"total_tokens": 1000}}
FLEET = {"name": "fleet", "scope": "global", "window": "month", "limits": {"cost_usd": 100}}
WATCH = {"name": "watch", "scope": "tenant", "window": "day", "limits": {"llm_calls": 3}, "action": "alert"}


def started(p: Policy, *, run_id: str = "r:1", thread: str | None = None) -> RunState:
    return RunState.start(run_id, ALICE, make_plan(p, KEYS, ALICE), KEYS, thread=thread, now=NOON)


def call(**changes: Any) -> CallState:
    values: dict[str, Any] = {
        "call_id": "c1",
        "provider": "openai",
        "model": "m",
        "binding": Binding([], 0.0),
        "estimate": Amounts(100, 50, 150, 10, 1),
        "prompt_tokens": 100,
        "output_reserved": 50,
        "capped": False,
        "reserved": True,
        "history_key": ("a", "openai", "m"),
    }
    return CallState(**{**values, **changes})


# -- plans and buckets --------------------------------------------------------------------------------------------


def test_a_plan_names_five_kill_flags_and_sorts_budgets_by_how_they_are_bound() -> None:
    plan = make_plan(policy(RUN_CAP, DAILY, CHAT, FLEET), KEYS, ALICE)
    assert plan.budget_names == ("cap", "daily", "chat", "fleet")
    assert [(k.target, k.value, k.tenant) for k in plan.kill_checks] == [
        ("agent", "researcher", None),
        ("agent", "researcher", "acme"),
        ("user", "alice", None),
        ("user", "alice", "acme"),
        ("tenant", "acme", None),
    ]
    assert [b.name for b, _, _ in plan.run_keys] == ["cap"]
    assert [b.name for b in plan.thread_budgets] == ["chat"]
    assert plan.fields == {"agent": "researcher", "user": "alice", "tenant": "acme", "tags": []}


def test_a_run_starts_with_its_own_kill_flag_first_and_names_its_thread() -> None:
    run = started(policy(RUN_CAP), run_id="r:1", thread="t-9")
    assert (run.kill_checks[0].target, run.kill_checks[0].value) == ("run", "r:1")
    assert len(run.kill_checks) == 6
    assert run.fields["run_id"] == "r:1"
    assert run.fields["thread_id"] == "t-9"
    assert run.budgets == run.plan.budgets
    assert run.loop_rule is run.plan.loop_rule


def test_a_calendar_bucket_outlives_its_window_by_the_grace_period() -> None:
    p = policy(DAILY)
    b = bucket_for(KEYS, p.settings, ALICE, p.budgets[0], NOON)
    assert (b.window, b.window_end, b.scope_key) == ("2026-11-18", MIDNIGHT, "alice")
    assert b.target.expires_at == MIDNIGHT + WINDOW_GRACE_S
    assert b.target.key == "t:{t.acme}:b:daily:user:alice:2026-11-18"


def test_a_lifetime_thread_bucket_lives_thread_ttl_and_a_global_one_has_no_tenant() -> None:
    p = policy(CHAT, FLEET, thread_ttl_s=3600)
    chat = bucket_for(KEYS, p.settings, ALICE, p.budgets[0], NOON, thread="t-9")
    assert (chat.scope_key, chat.window, chat.target.expires_at) == ("t-9", "life", NOON + 3600)
    fleet = bucket_for(KEYS, p.settings, ALICE, p.budgets[1], NOON)
    assert "acme" not in fleet.target.key


def test_shared_buckets_are_valid_until_the_first_window_ends_or_the_hourly_refresh() -> None:
    p = policy(DAILY, FLEET)
    plan = make_plan(p, KEYS, ALICE)
    until, buckets = shared_buckets(plan, KEYS, p.settings, ALICE, NOON)
    assert [b.budget.name for b in buckets] == ["daily", "fleet"]
    assert until == NOON + TARGETS_REFRESH_S
    until, _ = shared_buckets(plan, KEYS, p.settings, ALICE, MIDNIGHT - 60)
    assert until == MIDNIGHT


def test_a_binding_puts_the_runs_own_buckets_first_and_escapes_the_run_id() -> None:
    p = policy(RUN_CAP, CHAT, DAILY, WATCH)
    run = started(p, run_id="r:1", thread="t-9")
    shared = shared_buckets(run.plan, KEYS, p.settings, ALICE, NOON)
    binding = bind(run, KEYS, p.settings, shared, NOON)
    assert [b.budget.name for b in binding.buckets] == ["cap", "chat", "daily", "watch"]
    assert binding.buckets[0].target.key == KEYS.bucket(BucketKey("acme", "cap", "run", "r:1", "run"))
    assert "r%3A1" in binding.buckets[0].target.key
    assert binding.targets == [b.target for b in binding.buckets]
    assert binding.want_states  # thresholds and an alert-only budget are watched
    assert [b.budget.name for b in binding.watched()] == ["daily", "watch"]


def test_a_binding_without_thresholds_reads_no_states_and_retargets_after_a_grant() -> None:
    p = policy(RUN_CAP)
    run = started(p)
    binding = bind(run, KEYS, p.settings, (NOON + 60, []), NOON)
    assert not binding.want_states
    assert binding.until == NOON + 60
    before = binding.targets
    binding.buckets[0].target = type(binding.buckets[0].target)("k", (1,) * len(METRICS), 0.0)
    assert binding.targets is before
    binding.retarget()
    assert binding.targets[0].key == "k"


# -- amounts ------------------------------------------------------------------------------------------------------


def test_a_priced_call_holds_its_prompt_and_output_and_one_call() -> None:
    pricer = Pricer({"m": PriceOverride(Decimal(1), Decimal(2), None, None)})
    assert priced(pricer, None, "m", 1000, 500) == Amounts(1000, 500, 1500, 2000, 1)
    assert priced(pricer, None, "never-heard-of-it", 1000, 500) is None


def test_a_charge_is_the_usage_and_its_cost() -> None:
    from guardian.pricing import TokenUsage

    assert charged(TokenUsage(10, 5), 7) == Amounts(10, 5, 15, 7, 1, 0)


@pytest.mark.parametrize(
    ("output_reserved", "chars_seen", "near_limit", "wanted"),
    [
        (50, 200, False, 50 + 256),  # at the hold: one block
        (50, 4 * 600, False, 50 + 3 * 256),  # a chunk of many tokens: enough blocks to cover it and one more
        (50, 4 * 60, True, 61),  # near the limit: only the next token
    ],
)
def test_a_stream_asks_for_whole_blocks_then_only_for_the_next_token(
    output_reserved: int, chars_seen: int, near_limit: bool, wanted: int
) -> None:
    c = call(output_reserved=output_reserved, chars_seen=chars_seen, near_limit=near_limit)
    assert extension_wanted(c, 256) == wanted


def test_a_commit_is_over_its_hold_only_far_above_it_and_only_when_held() -> None:
    c = call(estimate=Amounts(total_tokens=1000))
    assert not is_over_hold(c, Amounts(total_tokens=2000))
    assert is_over_hold(c, Amounts(total_tokens=2001))
    assert not is_over_hold(call(estimate=Amounts(total_tokens=1000), reserved=False), Amounts(total_tokens=9999))
    small = call(estimate=Amounts(total_tokens=10))
    assert not is_over_hold(small, Amounts(total_tokens=266))
    assert is_over_hold(small, Amounts(total_tokens=267))


def test_an_unfinished_call_is_charged_its_hold_and_an_aborted_one_what_it_streamed() -> None:
    c = call(output_reserved=50, chars_seen=41)
    assert (c.held_usage().input_tokens, c.held_usage().output_tokens) == (100, 50)
    assert (c.seen_usage().input_tokens, c.seen_usage().output_tokens) == (100, 11)


# -- judging ------------------------------------------------------------------------------------------------------


def state(**spent: int) -> BucketState:
    return BucketState(Amounts(**spent), Amounts())


def test_thresholds_passed_by_spend_and_the_metric_an_alert_only_budget_passed() -> None:
    p = policy(DAILY, WATCH, RUN_CAP)
    daily, watch, cap = p.budgets
    assert thresholds_passed(daily, state(cost_usd=1_000_000)) == (None, [0.5])
    assert thresholds_passed(daily, state(cost_usd=1_700_000)) == (None, [0.5, 0.8])
    assert thresholds_passed(watch, state(llm_calls=4)) == ("llm_calls", [])
    assert thresholds_passed(watch, state(llm_calls=3)) == (None, [])
    assert thresholds_passed(cap, state(llm_calls=5)) == (None, [])  # enforced, no thresholds: never judged


def test_a_bucket_alert_names_the_bucket_and_counts_held_spend_when_exceeded() -> None:
    p = policy(DAILY)
    run = started(p)
    b = bucket_for(KEYS, p.settings, ALICE, p.budgets[0], NOON)
    held = BucketState(Amounts(cost_usd=1_500_000), Amounts(cost_usd=600_000))
    alert = bucket_alert("exceeded", run, b, held, dedup_key="k", threshold=1.0, reason="why", now=NOON, run_ttl_s=60)
    assert (alert.budget, alert.scope, alert.scope_key, alert.window) == ("daily", "user", "alice", "2026-11-18")
    assert alert.spent == {"cost_usd": 2_100_000}
    assert alert.dedup_ttl_s == MIDNIGHT - NOON
    threshold = bucket_alert("threshold", run, b, held, dedup_key="k", threshold=0.5, reason="", now=NOON, run_ttl_s=60)
    assert threshold.spent == {"cost_usd": 1_500_000}


def test_a_loop_alert_carries_what_the_loop_cost() -> None:
    run = started(policy())
    verdict = LoopVerdict("repeated_tool_call", "lookup", 4, 3, 900, "lookup called 4 times", 3)
    alert = loop_alert(run, verdict, dedup_key="k", tokens=900, cost=120, now=NOON, run_ttl_s=60)
    assert alert.kind == "loop"
    assert alert.spent == {"total_tokens": 900, "cost_usd": 120}
    assert alert.reason.startswith("repeated_tool_call on lookup after 4 repeats")


def test_daily_counters_are_kept_a_grace_period_past_their_utc_day() -> None:
    assert daily_counter_span(NOON) == ("2026-11-18", MIDNIGHT + WINDOW_GRACE_S - NOON)


def test_the_metrics_have_one_home() -> None:
    """Amounts' fields are the list: the vector order, titles, display order and the Lua script derive from it."""
    assert METRICS == ("input_tokens", "output_tokens", "total_tokens", "cost_usd", "llm_calls", "tool_calls")
    assert Amounts(1, 2, 3, 4, 5, 6).as_vector() == (1, 2, 3, 4, 5, 6)
    assert set(METRIC_TITLES) == set(DISPLAY_ORDER) == set(METRICS)
    assert DISPLAY_ORDER[0] == "cost_usd"
    script = ledger_script()
    assert f"local M = {len(METRICS)} " in script
    assert "__METRIC_COUNT__" not in script


# -- the run tree -------------------------------------------------------------------------------------------------


class Ended:
    def __init__(self) -> None:
        self.runs: list[tuple[str, str | None]] = []


@pytest.fixture
def tree() -> tuple[RunTree[str], Ended]:
    ended = Ended()
    supervisor = Supervisor(policy(), MemoryStore(), clock=lambda: NOON)
    original = supervisor.end_run

    def end_run(run: RunState, *, error: BaseException | None = None) -> None:
        ended.runs.append((run.run_id, type(error).__name__ if error else None))
        original(run, error=error)

    supervisor.end_run = end_run  # type: ignore[method-assign]
    return RunTree(supervisor, max_runs=2), ended


def opener(supervisor: Supervisor) -> Any:
    return lambda root: supervisor.start_run(root, ALICE)


def test_nodes_under_a_root_share_its_run_which_ends_with_the_root(tree: tuple[RunTree[str], Ended]) -> None:
    t, ended = tree
    run, new = t.enter("graph", None, opener(t.supervisor))
    assert new
    child, new = t.enter("model", "graph", opener(t.supervisor))
    grandchild, _ = t.enter("tool", "model", opener(t.supervisor))
    assert child is run
    assert grandchild is run
    assert not new
    t.leave("tool")
    t.leave("model")
    assert ended.runs == []
    assert len(t) == 1
    t.leave("graph", ValueError())
    assert ended.runs == [("graph", "ValueError")]
    assert len(t) == 0
    assert t.live_nodes == 0


def test_a_root_never_seen_ends_with_the_last_node_under_it(tree: tuple[RunTree[str], Ended]) -> None:
    t, ended = tree
    t.enter("a", "unseen", opener(t.supervisor))
    t.enter("b", "unseen", opener(t.supervisor))
    t.leave("a")
    assert ended.runs == []
    t.leave("b")
    assert ended.runs == [("unseen", None)]


def test_past_its_bound_the_tree_ends_its_oldest_runs(tree: tuple[RunTree[str], Ended]) -> None:
    t, ended = tree
    for root in ("r1", "r2", "r3"):
        t.enter(root, None, opener(t.supervisor))
    assert ended.runs == [("r1", None)]
    assert len(t) == 2


def test_a_run_that_cannot_start_leaves_nothing_behind(tree: tuple[RunTree[str], Ended]) -> None:
    t, _ = tree

    def refuse(root: str) -> RunState:
        raise LookupError("no identity")

    with pytest.raises(LookupError):
        t.enter("graph", None, refuse)
    assert len(t) == 0
    assert t.live_nodes == 0


def test_a_run_ends_once_however_many_doors_end_it(tree: tuple[RunTree[str], Ended]) -> None:
    t, _ = tree
    run, _ = t.enter("graph", None, opener(t.supervisor))
    supervisor = t.supervisor
    finished = []
    supervisor.log = type("Log", (), {"info": lambda self, event, **kw: finished.append(event)})()
    Supervisor.end_run(supervisor, run)
    Supervisor.end_run(supervisor, run)
    assert finished == ["run_finished"]

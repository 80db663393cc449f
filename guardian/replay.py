"""Replay: the recorded spend history judged again under another policy, through the same engine.

Each recorded model call is offered, in time order, to a supervisor running the new policy on a fresh in-process
ledger, with the clock set to the call's time: its recorded prompt as the prompt, its recorded output as its
``max_tokens`` (a hold priced without cache discounts), then its recorded usage committed. A call the new policy
refuses stops its run there: that call and every later one of the run count as stopped, and what they cost (as
recorded) as saved.
Calls are priced again with the new policy's prices, so price overrides can be tried too.

What history cannot show is not judged: loop rules (no text is recorded), tool-call limits (tool calls are not in
the history) and operators' kills and grants. An identity mapping is not applied (names are recorded already).
A shadowed budget is judged as enforced: the question is what the policy would stop.
"""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from guardian.amounts import usd
from guardian.history import UsageRecord
from guardian.identity import Identity
from guardian.keys import KeyBuilder
from guardian.policy import Policy
from guardian.pricing import TokenUsage
from guardian.report import GROUPINGS, group_of, minute_utc, text_table
from guardian.runs import Reply, RunState
from guardian.store.memory import MemoryStore
from guardian.supervisor import Supervisor

__all__ = ["ReplayResult", "ReplayRow", "as_json", "as_table", "replay"]

NOT_JUDGED = ("loop rules", "tool-call limits", "kills and grants")


@dataclass
class ReplayRow:
    key: str
    runs: int = 0
    calls: int = 0
    recorded_cost_micro_usd: int = 0  # what the calls cost when they ran
    served_cost_micro_usd: int = 0  # what the calls the new policy lets through cost at its prices
    stopped_runs: int = 0
    stopped_calls: int = 0
    saved_micro_usd: int = 0  # recorded cost of the stopped calls


@dataclass
class ReplayResult:
    since: float
    until: float
    by: str
    rows: list[ReplayRow]
    total: ReplayRow
    halts: dict[str, int] = field(default_factory=dict)  # reason -> runs the new policy would have stopped
    not_judged: tuple[str, ...] = NOT_JUDGED


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def replay(
    records: Sequence[UsageRecord], policy: Policy, *, since: float, until: float, by: str = "agent"
) -> ReplayResult:
    """Judge ``records`` (oldest first) again under ``policy``; group the outcome ``by`` one of ``GROUPINGS``."""
    if by not in GROUPINGS:
        raise ValueError(f"--by must be one of {', '.join(GROUPINGS)}, got {by!r}")
    judged = dataclasses.replace(
        policy,
        budgets=tuple(dataclasses.replace(b, action="kill") if b.action == "shadow" else b for b in policy.budgets),
        loops=(),
        identity=None,
        settings=policy.settings.model_copy(update={"history": False, "mode": "enforce"}),
    )
    clock = _Clock()
    store = MemoryStore()
    supervisor = Supervisor(judged, store, keys=KeyBuilder("replay:"), clock=clock)
    calls = [r for r in records if r.kind == "call"]
    last_of = {r.run: i for i, r in enumerate(calls)}
    runs: dict[str, RunState] = {}
    stopped: dict[str, str] = {}  # run -> reason
    rows: dict[str, ReplayRow] = {}
    seen: dict[str, set[str]] = defaultdict(set)
    try:
        for i, r in enumerate(calls):
            clock.now = r.time
            key = group_of(r, by)
            row = rows.setdefault(key, ReplayRow(key))
            if r.run not in seen[key]:
                seen[key].add(r.run)
                row.runs += 1
            row.calls += 1
            row.recorded_cost_micro_usd += r.cost_micro_usd
            if r.run in stopped:
                row.stopped_calls += 1
                row.saved_micro_usd += r.cost_micro_usd
            else:
                run = runs.get(r.run)
                if run is None:
                    identity = Identity.of(r.agent or None, r.user or None, r.tenant or None, r.tags)
                    run = runs[r.run] = supervisor.start_run(r.run, identity, thread=r.thread)
                call_id = f"{r.run}:{i}"
                decision = supervisor.before_llm_call(
                    run,
                    call_id,
                    provider=r.provider or None,
                    model=r.model,
                    prompt_tokens=r.input_tokens,
                    max_output_tokens=max(1, r.output_tokens),
                )
                if decision.halt is not None:
                    reason = type(decision.halt).__name__
                    budget = getattr(decision.halt, "budget", None)
                    stopped[r.run] = f"{reason}: {budget}" if budget else reason
                    row.stopped_runs += 1
                    row.stopped_calls += 1
                    row.saved_micro_usd += r.cost_micro_usd
                else:
                    usage = TokenUsage(
                        r.input_tokens, r.output_tokens, r.cache_read_tokens, r.cache_write_tokens, r.reasoning_tokens
                    )
                    charged = supervisor.after_llm_call(run, call_id, Reply(usage))
                    row.served_cost_micro_usd += charged.cost_usd
            if last_of[r.run] == i and r.run in runs:
                supervisor.end_run(runs.pop(r.run))
    finally:
        for run in runs.values():
            supervisor.end_run(run)
        supervisor.renewer.stop()
        store.close()
    halts: dict[str, int] = defaultdict(int)
    for reason in stopped.values():
        halts[reason] += 1
    ordered = sorted(rows.values(), key=lambda row: (-row.saved_micro_usd, -row.recorded_cost_micro_usd, row.key))
    total = ReplayRow("total")
    for row in ordered:
        for name in ("calls", "recorded_cost_micro_usd", "served_cost_micro_usd", "stopped_calls", "saved_micro_usd"):
            setattr(total, name, getattr(total, name) + getattr(row, name))
    total.runs = len(last_of)
    total.stopped_runs = len(stopped)
    return ReplayResult(since, until, by, ordered, total, dict(sorted(halts.items())))


def as_table(result: ReplayResult) -> str:
    header = [result.by, "runs", "calls", "cost then", "cost now", "stopped runs", "stopped calls", "saved"]
    lines = [
        [
            row.key,
            f"{row.runs:,}",
            f"{row.calls:,}",
            usd(row.recorded_cost_micro_usd),
            usd(row.served_cost_micro_usd),
            f"{row.stopped_runs:,}",
            f"{row.stopped_calls:,}",
            usd(row.saved_micro_usd),
        ]
        for row in [*result.rows, result.total]
    ]
    heading = (
        f"Replay of {minute_utc(result.since)} to {minute_utc(result.until)} UTC under the new policy, by {result.by}"
    )
    out = [heading, "", *text_table(header, lines)]
    if result.halts:
        out += ["", "Runs it would have stopped, by reason:"]
        out += [f"  {n:>5}  {reason}" for reason, n in result.halts.items()]
    out += ["", f"Not judged (not in the history): {', '.join(result.not_judged)}."]
    return "\n".join(out) + "\n"


def as_json(result: ReplayResult) -> str:
    document = {
        "since": result.since,
        "until": result.until,
        "by": result.by,
        "rows": [dataclasses.asdict(r) for r in result.rows],
        "total": dataclasses.asdict(result.total),
        "halts": result.halts,
        "not_judged": list(result.not_judged),
    }
    return json.dumps(document, sort_keys=True) + "\n"

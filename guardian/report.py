"""Where the money went: spend reports built from the spend history.

``build_report`` is pure: records in, a :class:`Report` out (grouped by agent, user, tenant, model or UTC day), with
spend, calls and tokens by kind, what caches saved, what loops wasted (the spend of runs halted by loop
detection), halts by reason, the costliest runs, and what runs achieved (``Guardian.record_outcome``): cost per
successful run, value per dollar and the cost of failed runs. ``as_table``, ``as_csv`` and ``as_json`` render it;
``guardian.report_html`` draws it.

A run's outcome and halt count in every group its calls are in: by agent, user or tenant that is one group; by
model or day a run may span several, each of which counts it.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Literal

from guardian.amounts import MICRO_USD, usd
from guardian.history import UsageRecord

__all__ = ["GROUPINGS", "GroupRow", "Grouping", "Report", "RunRow", "build_report", "parse_since"]

Grouping = Literal["agent", "user", "tenant", "model", "day"]
GROUPINGS: tuple[str, ...] = ("agent", "user", "tenant", "model", "day")


@dataclass
class GroupRow:
    """One group's figures; money in micro-dollars."""

    key: str
    calls: int = 0
    cost_micro_usd: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    estimated_calls: int = 0  # charged on an estimate: the provider reported no usage
    cache_hits: int = 0
    cache_saved_micro_usd: int = 0
    prompt_cache_saved_micro_usd: int = 0  # provider prompt-cache reads, against the input price
    prompt_cache_premium_micro_usd: int = 0  # provider prompt-cache writes, above the input price
    cacheable_micro_usd: int = 0  # repeated long prefixes sent without cache reads: what caching would have saved
    routed_calls: int = 0  # sent to a cheaper model by a routing rule
    routing_saved_micro_usd: int = 0  # what those calls saved against the model asked for, on their real usage
    would_route_micro_usd: int = 0  # shadow mode: what routing would have saved
    clamped_calls: int = 0  # sent with a lower output cap instead of refused
    loop_waste_micro_usd: int = 0  # spend of runs that loop detection halted
    runs: int = 0
    halts: int = 0
    successful_runs: int = 0
    failed_runs: int = 0
    value_micro_usd: int = 0
    failure_cost_micro_usd: int = 0  # spend of runs recorded as failed
    would_halts: int = 0  # shadow mode: runs a halt would have stopped
    would_save_micro_usd: int = 0  # shadow mode: what those runs spent after that point

    @property
    def cost_per_success_micro_usd(self) -> int | None:
        return self.cost_micro_usd // self.successful_runs if self.successful_runs else None

    @property
    def value_per_dollar(self) -> float | None:
        return self.value_micro_usd / self.cost_micro_usd if self.value_micro_usd and self.cost_micro_usd else None

    def as_dict(self) -> dict[str, object]:
        return {
            **asdict(self),
            "cost_per_success_micro_usd": self.cost_per_success_micro_usd,
            "value_per_dollar": self.value_per_dollar,
        }


@dataclass
class RunRow:
    run: str
    agent: str
    user: str
    tenant: str
    cost_micro_usd: int = 0
    calls: int = 0
    halted: str | None = None  # the halt's type, and its budget or signal
    would_halt: str | None = None  # shadow mode: the halt it would have met
    success: bool | None = None


@dataclass
class Report:
    since: float
    until: float
    by: str
    rows: list[GroupRow]  # costliest first
    total: GroupRow
    halts: dict[str, int]  # reason (type: budget or signal) -> runs halted
    top_runs: list[RunRow]
    would_halts: dict[str, int] = field(default_factory=dict)  # shadow mode: reason -> runs it would have halted
    routing: dict[str, tuple[int, int]] = field(default_factory=dict)  # rule -> (calls routed, micro-dollars saved)
    daily: dict[str, dict[str, int]] = field(default_factory=dict)  # UTC day -> agent -> micro-dollars

    def as_dict(self) -> dict[str, object]:
        return {
            "since": iso_utc(self.since),
            "until": iso_utc(self.until),
            "by": self.by,
            "rows": [r.as_dict() for r in self.rows],
            "total": self.total.as_dict(),
            "halts": self.halts,
            "top_runs": [asdict(r) for r in self.top_runs],
            "would_halts": self.would_halts,
            "routing": {rule: {"calls": n, "saved_micro_usd": saved} for rule, (n, saved) in self.routing.items()},
            "daily_cost_micro_usd": self.daily,
        }


def _day(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d")


def iso_utc(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


def minute_utc(t: float) -> str:
    """A time as people read it in a report's heading (UTC, to the minute)."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M")


def group_of(record: UsageRecord, by: str) -> str:
    """The group a record falls in: its UTC day, or its agent, user, tenant or model ("-" when it has none)."""
    if by == "day":
        return _day(record.time)
    return str(getattr(record, by) or "-")


@dataclass
class _Run:
    row: RunRow
    cost_in: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # group -> what the run spent there
    after_would: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # ... after its would-be halt
    loop_halted: bool = False
    halted: bool = False


# Figures that add up over groups (the run counts do not: one run may be in several groups).
_SUMMED = (
    "calls",
    "cost_micro_usd",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "estimated_calls",
    "cache_hits",
    "cache_saved_micro_usd",
    "prompt_cache_saved_micro_usd",
    "prompt_cache_premium_micro_usd",
    "cacheable_micro_usd",
    "routed_calls",
    "routing_saved_micro_usd",
    "would_route_micro_usd",
    "clamped_calls",
    "loop_waste_micro_usd",
    "failure_cost_micro_usd",
    "would_save_micro_usd",
)


def build_report(
    records: Iterable[UsageRecord], *, since: float, until: float, by: str = "agent", top: int = 10
) -> Report:
    """Aggregate ``records`` (oldest first, as histories return them: what a run spent after its would-be halt,
    and which outcome came last, depend on the order) into a report grouped ``by`` one of ``GROUPINGS``."""
    if by not in GROUPINGS:
        raise ValueError(f"--by must be one of {', '.join(GROUPINGS)}, got {by!r}")
    groups: dict[str, GroupRow] = {}
    runs: dict[str, _Run] = {}
    outcomes: dict[str, tuple[bool, int]] = {}
    daily: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    prefixes_seen: set[tuple[str, str]] = set()
    routing: dict[str, tuple[int, int]] = {}

    for r in records:
        if r.kind == "outcome":
            outcomes[r.run] = (bool(r.success), r.value_micro_usd)  # the last one recorded stands
            continue
        run = runs.get(r.run)
        if run is None:
            run = runs[r.run] = _Run(RunRow(r.run, r.agent, r.user, r.tenant))
        if r.kind == "halt":
            if not run.halted:
                run.halted = True
                run.row.halted = f"{r.reason}: {r.detail}" if r.detail else r.reason
                run.loop_halted = r.reason == "LoopDetected"
            continue
        if r.kind == "would_halt":
            if run.row.would_halt is None:
                run.row.would_halt = f"{r.reason}: {r.detail}" if r.detail else r.reason
            continue
        key = group_of(r, by)
        row = groups.get(key)
        if row is None:
            row = groups[key] = GroupRow(key)
        run.cost_in[key] += r.cost_micro_usd
        if r.kind == "cache_hit":
            row.cache_hits += 1
            row.cache_saved_micro_usd += r.saved_micro_usd
            continue
        row.calls += 1
        row.cost_micro_usd += r.cost_micro_usd
        row.input_tokens += r.input_tokens
        row.output_tokens += r.output_tokens
        row.cache_read_tokens += r.cache_read_tokens
        row.cache_write_tokens += r.cache_write_tokens
        row.reasoning_tokens += r.reasoning_tokens
        row.estimated_calls += "estimated" in r.flags
        row.prompt_cache_saved_micro_usd += r.cache_read_saved_micro_usd
        row.prompt_cache_premium_micro_usd += r.cache_write_premium_micro_usd
        if r.prefix and r.cacheable_micro_usd:
            # The first call with a prefix has to write the cache anyway; the repeats are what caching saves.
            if (r.model, r.prefix) in prefixes_seen:
                row.cacheable_micro_usd += r.cacheable_micro_usd
            prefixes_seen.add((r.model, r.prefix))
        row.clamped_calls += "clamped" in r.flags
        if "routed" in r.flags:
            row.routed_calls += 1
            row.routing_saved_micro_usd += r.saved_micro_usd
            calls_by_rule, saved_by_rule = routing.get(r.rule, (0, 0))
            routing[r.rule] = (calls_by_rule + 1, saved_by_rule + r.saved_micro_usd)
        elif "would_route" in r.flags:
            row.would_route_micro_usd += r.saved_micro_usd
        run.row.cost_micro_usd += r.cost_micro_usd
        run.row.calls += 1
        if run.row.would_halt is not None:
            run.after_would[key] += r.cost_micro_usd
        daily[_day(r.time)][r.agent or "-"] += r.cost_micro_usd

    # Run-level figures: a run counts in each group its calls are in, at what it spent there.
    halts: dict[str, int] = defaultdict(int)
    would_halts: dict[str, int] = defaultdict(int)
    for run_id, run in runs.items():
        if run.row.halted is not None:
            halts[run.row.halted] += 1
        if run.row.would_halt is not None:
            would_halts[run.row.would_halt] += 1
        outcome = outcomes.get(run_id)
        if outcome is not None:
            run.row.success = outcome[0]
        for key, cost in run.cost_in.items():
            row = groups[key]
            row.runs += 1
            row.halts += run.halted
            row.loop_waste_micro_usd += cost if run.loop_halted else 0
            row.would_halts += run.row.would_halt is not None
            row.would_save_micro_usd += run.after_would.get(key, 0)
            if outcome is not None:
                row.successful_runs += outcome[0]
                row.failed_runs += not outcome[0]
                row.value_micro_usd += outcome[1]
                row.failure_cost_micro_usd += 0 if outcome[0] else cost

    rows = sorted(groups.values(), key=lambda g: (-g.cost_micro_usd, g.key))
    total = GroupRow("total")
    for g in rows:
        for name in _SUMMED:
            setattr(total, name, getattr(total, name) + getattr(g, name))
    counted = [(run_id, run) for run_id, run in runs.items() if run.cost_in]
    total.runs = len(counted)
    total.halts = sum(run.halted for _, run in counted)
    total.would_halts = sum(run.row.would_halt is not None for _, run in counted)
    with_outcome = [outcomes[run_id] for run_id, _ in counted if run_id in outcomes]
    total.successful_runs = sum(ok for ok, _ in with_outcome)
    total.failed_runs = sum(not ok for ok, _ in with_outcome)
    total.value_micro_usd = sum(value for _, value in with_outcome)
    top_runs = sorted((r.row for r in runs.values() if r.row.calls), key=lambda r: (-r.cost_micro_usd, r.run))[:top]
    return Report(
        since,
        until,
        by,
        rows,
        total,
        dict(sorted(halts.items())),
        top_runs,
        would_halts=dict(sorted(would_halts.items())),
        routing=dict(sorted(routing.items())),
        daily={day: dict(sorted(agents.items())) for day, agents in sorted(daily.items())},
    )


# -- rendering ----------------------------------------------------------------------------------------------------

COLUMNS: tuple[tuple[str, str], ...] = (
    ("calls", "calls"),
    ("cost", "cost_micro_usd"),
    ("input", "input_tokens"),
    ("output", "output_tokens"),
    ("cache read", "cache_read_tokens"),
    ("cache write", "cache_write_tokens"),
    ("cache hits", "cache_hits"),
    ("cache saved", "cache_saved_micro_usd"),
    ("prompt cache saved", "prompt_cache_saved_micro_usd"),
    ("cache write premium", "prompt_cache_premium_micro_usd"),
    ("cacheable", "cacheable_micro_usd"),
    ("routed", "routed_calls"),
    ("routing saved", "routing_saved_micro_usd"),
    ("clamped", "clamped_calls"),
    ("loop waste", "loop_waste_micro_usd"),
    ("runs", "runs"),
    ("ok/failed", ""),
    ("cost/success", "cost_per_success_micro_usd"),
    ("value/$", "value_per_dollar"),
    ("would halt", "would_halts"),
    ("would save", "would_save_micro_usd"),
    ("route would save", "would_route_micro_usd"),
)


_ALWAYS_SHOWN = frozenset({"calls", "cost_micro_usd", "input_tokens", "output_tokens", "runs"})


def shown_columns(report: Report) -> list[tuple[str, str]]:
    """The table's columns, less those with nothing to show in this report (no cache writes, no outcomes...):
    a narrower table for the terminal, and the same for the HTML page."""
    rows = [*report.rows, report.total]
    return [
        (title, name)
        for title, name in COLUMNS
        if name in _ALWAYS_SHOWN or any(cell_text(row, name) not in ("-", "0", "$0.00") for row in rows)
    ]


def cell_text(row: GroupRow, name: str) -> str:
    if name == "":
        return f"{row.successful_runs}/{row.failed_runs}" if row.successful_runs or row.failed_runs else "-"
    value = getattr(row, name)
    if value is None:
        return "-"
    if name.endswith("_micro_usd"):
        return usd(int(value))
    if isinstance(value, float):
        return f"{value:.2f}"
    return f"{value:,}"


def text_table(header: list[str], lines: list[list[str]]) -> list[str]:
    """A plain-text table: the first column left-aligned, the rest right-aligned, and a rule above the last line
    (the total)."""
    widths = [max(len(cells[i]) for cells in [header, *lines]) for i in range(len(header))]

    def fmt(cells: list[str]) -> str:
        aligned = (c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
        return "  ".join(aligned)

    return [fmt(header), *(fmt(cells) for cells in lines[:-1]), "  ".join("-" * w for w in widths), fmt(lines[-1])]


def as_table(report: Report) -> str:
    """Plain text: the groups and their total, halts by reason, the costliest runs."""
    columns = shown_columns(report)
    header = [report.by, *(title for title, _ in columns)]
    lines = [[row.key, *(cell_text(row, name) for _, name in columns)] for row in [*report.rows, report.total]]
    heading = f"Spend from {minute_utc(report.since)} to {minute_utc(report.until)} UTC, by {report.by}"
    out = [heading, "", *text_table(header, lines)]
    if report.halts:
        out += ["", "Halts by reason:"] + [f"  {n:>5}  {reason}" for reason, n in report.halts.items()]
    if report.routing:
        out += ["", "Routed to cheaper models, by rule:"]
        out += [f"  {n:>5} calls  {usd(saved):>12} saved  {rule}" for rule, (n, saved) in report.routing.items()]
    if report.would_halts:
        out += ["", "Would have halted (shadow mode; the runs went on):"]
        out += [f"  {n:>5}  {reason}" for reason, n in report.would_halts.items()]
    if report.top_runs:
        out += ["", "Costliest runs:"]
        for r in report.top_runs:
            outcome = {True: "succeeded", False: "failed", None: ""}[r.success]
            would = f"would have halted ({r.would_halt})" if r.would_halt else ""
            notes = ", ".join(x for x in (f"halted ({r.halted})" if r.halted else "", would, outcome) if x)
            out.append(
                f"  {usd(r.cost_micro_usd):>12}  {r.calls:>5} calls  {r.run}  agent={r.agent} user={r.user} "
                f"tenant={r.tenant}" + (f"  {notes}" if notes else "")
            )
    return "\n".join(out) + "\n"


def as_csv(report: Report) -> str:
    """One line per group and a total line; money as dollars (``*_usd``, exact decimals)."""
    buffer = io.StringIO()
    names = [*GroupRow.__dataclass_fields__, "cost_per_success_micro_usd", "value_per_dollar"]
    header = [report.by if n == "key" else n.replace("_micro_usd", "_usd") for n in names]
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in [*report.rows, report.total]:
        values = row.as_dict()
        writer.writerow([_csv_value(n, values[n]) for n in names])
    return buffer.getvalue()


def _csv_value(name: str, value: object) -> object:
    if value is None:
        return ""
    if name.endswith("_micro_usd") and isinstance(value, int):
        return str(Decimal(value) / MICRO_USD)
    if isinstance(value, float):
        return f"{value:.4f}"
    return value


def as_json(report: Report) -> str:
    """The whole report; money as integer micro-dollars (``*_micro_usd``)."""
    return json.dumps(report.as_dict(), sort_keys=True) + "\n"


_SINCE = re.compile(r"^(\d+)([mhdw])$")
_UNIT_S = {"m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}


_LATEST = datetime(9999, 12, 31, tzinfo=UTC).timestamp()


def parse_since(text: str, now: float) -> float:
    """``7d``, ``24h``, ``30m``, ``2w`` before ``now``, or an ISO date/time (UTC unless it names a zone); between
    1970 and the year 9999."""
    match = _SINCE.match(text.strip())
    if match:
        when = now - int(match.group(1)) * _UNIT_S[match.group(2)]
    else:
        try:
            parsed = datetime.fromisoformat(text.strip())
        except ValueError:
            raise ValueError(
                f"{text!r} is neither a duration (7d, 24h, 30m, 2w) nor an ISO date (2026-11-01)"
            ) from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        when = parsed.timestamp()
    if not 0 <= when <= _LATEST:
        raise ValueError(f"{text!r} is outside the years 1970 to 9999")
    return when

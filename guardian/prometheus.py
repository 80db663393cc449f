"""``guardian metrics --port N``: the fleet's budgets as Prometheus gauges (``pip install
'guardian-supervisor[prometheus]'``).

Each scrape reads the store (the same scan as ``guardian status``) and reports, per budget, scope, tenant and
window: spend in dollars, tokens and calls (summed over the budget's buckets), the number of buckets, and the
largest share of its limit any bucket has used. Users, threads and runs are summed, never labels, so the series
stay bounded by budgets × tenants × live windows. Plus kill flags by target and ``guardian_up`` (0 when the store
could not be read; the other series are then left out rather than reported as zero).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from guardian.amounts import MICRO_USD
from guardian.errors import GuardianError
from guardian.guard import BudgetStatus, Guardian
from guardian.logs import get_logger

__all__ = ["FleetCollector", "registry_for", "serve"]

_LABELS = ["budget", "scope", "tenant", "window"]
_log = get_logger()


class FleetCollector(Collector):
    def __init__(self, guard: Guardian) -> None:
        self.guard = guard

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("guardian_up", "1 when the budget store was read for this scrape")
        try:
            rows = self.guard.status()
            kills = self.guard.kills()
        except GuardianError as exc:
            _log.error("metrics_scrape_failed", error=str(exc))
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up
        yield from _budget_families(rows)
        flags = GaugeMetricFamily("guardian_kill_flags", "Kill flags set now, by target", labels=["target"])
        counts: dict[str, int] = defaultdict(int)
        for flag in kills:
            counts[flag.target] += 1
        for target in ("run", "agent", "user", "tenant"):
            flags.add_metric([target], float(counts[target]))
        yield flags


def _budget_families(rows: list[BudgetStatus]) -> Iterator[GaugeMetricFamily]:
    groups: dict[tuple[str, str, str, str], list[BudgetStatus]] = defaultdict(list)
    for row in rows:
        groups[(row.budget, row.scope, row.tenant or "", row.window)].append(row)
    usd = GaugeMetricFamily("guardian_budget_spent_usd", "Spent (and in flight), in dollars", labels=_LABELS)
    tokens = GaugeMetricFamily(
        "guardian_budget_spent_tokens", "Tokens spent (and in flight)", labels=[*_LABELS, "kind"]
    )
    calls = GaugeMetricFamily("guardian_budget_spent_calls", "Calls spent (and in flight)", labels=[*_LABELS, "kind"])
    buckets = GaugeMetricFamily("guardian_budget_buckets", "Buckets of the budget in this window", labels=_LABELS)
    used = GaugeMetricFamily(
        "guardian_budget_used_ratio", "The largest share of its limit a bucket has used", labels=_LABELS
    )
    for labels, members in sorted(groups.items()):
        values = list(labels)
        total: dict[str, int] = defaultdict(int)
        for row in members:
            for metric, amount in (row.spent + row.reserved).nonzero().items():
                total[metric] += amount
        usd.add_metric(values, float(Decimal(total["cost_usd"]) / MICRO_USD))
        for kind in ("input", "output", "total"):
            tokens.add_metric([*values, kind], float(total[f"{kind}_tokens"]))
        for kind in ("llm", "tool"):
            calls.add_metric([*values, kind], float(total[f"{kind}_calls"]))
        buckets.add_metric(values, float(len(members)))
        shares = [s for s in (row.used_fraction() for row in members) if s is not None]
        if shares:
            used.add_metric(values, max(shares))
    yield from (usd, tokens, calls, buckets, used)


def registry_for(guard: Guardian) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(guard))
    return registry


def serve(guard: Guardian, port: int, host: str = "127.0.0.1") -> Any:
    """Serve ``/metrics`` on ``host:port`` from a background thread; returns the server (``.server_port``,
    ``.shutdown()``)."""
    from prometheus_client import start_http_server

    server, _ = start_http_server(port, addr=host, registry=registry_for(guard))
    return server

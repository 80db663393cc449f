"""The ledger's unit: a fixed vector of integer counters (tokens, micro-USD, calls).

Money is never a float here: ``cost_usd`` is counted in micro-dollars (1 USD = 1_000_000).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from decimal import ROUND_CEILING, Decimal
from operator import attrgetter
from typing import Any

__all__ = [
    "DISPLAY_ORDER",
    "METRICS",
    "METRIC_TITLES",
    "MICRO_USD",
    "NO_LIMIT",
    "Amounts",
    "format_amount",
    "metric_label",
    "micro_usd",
    "unit_named",
    "usd",
]

NO_LIMIT = -1  # a budget that sets no limit on a metric: the ledger never refuses on it

MICRO_USD = 1_000_000


def _metric(title: str, rank: int) -> Any:
    """A counter of the ledger: ``title`` is how people read it, ``rank`` where it is shown (cost first)."""
    return field(default=0, metadata={"title": title, "rank": rank})


@dataclass(frozen=True, slots=True)
class Amounts:
    """One value per metric; ``cost_usd`` is in micro-dollars.

    This class is the one list of the ledger's metrics: ``METRICS`` (their order in every vector, in both stores
    and in the Lua script, which is given their count when it is loaded), their titles and display order all
    derive from its fields. The policy's ``limits:`` schema is checked against it when it is imported.
    """

    input_tokens: int = _metric("Input tokens", 2)
    output_tokens: int = _metric("Output tokens", 3)
    total_tokens: int = _metric("Total tokens", 1)
    cost_usd: int = _metric("Cost", 0)
    llm_calls: int = _metric("LLM calls", 4)
    tool_calls: int = _metric("Tool calls", 5)

    def as_vector(self) -> tuple[int, ...]:
        vector: tuple[int, ...] = _as_vector(self)
        return vector

    @classmethod
    def from_vector(cls, values: list[int] | tuple[int, ...]) -> Amounts:
        """``values`` are ints, one per metric (the stores hand over exactly that)."""
        if len(values) != len(METRICS):
            raise ValueError(f"expected {len(METRICS)} counters, got {len(values)}")
        return cls(*values)

    def __add__(self, other: Amounts) -> Amounts:
        return Amounts(*(a + b for a, b in zip(self.as_vector(), other.as_vector(), strict=True)))

    def __sub__(self, other: Amounts) -> Amounts:
        return Amounts(*(a - b for a, b in zip(self.as_vector(), other.as_vector(), strict=True)))

    def get(self, metric: str) -> int:
        value: int = getattr(self, metric)
        return value

    def nonzero(self) -> dict[str, int]:
        return {m: v for m, v in zip(METRICS, self.as_vector(), strict=True) if v}


METRICS: tuple[str, ...] = tuple(f.name for f in fields(Amounts))
METRIC_TITLES: dict[str, str] = {f.name: f.metadata["title"] for f in fields(Amounts)}
DISPLAY_ORDER: tuple[str, ...] = tuple(f.name for f in sorted(fields(Amounts), key=lambda f: f.metadata["rank"]))
_as_vector = attrgetter(*METRICS)  # a C-level getter: the vector is built on every ledger call


def micro_usd(dollars: Decimal | int | str) -> int:
    """Dollars to whole micro-dollars, rounding up: a ledger never under-counts spend."""
    return int((Decimal(dollars) * MICRO_USD).to_integral_value(rounding=ROUND_CEILING))


def usd(micro: int) -> str:
    """Money as Guardian prints it everywhere (CLI, halts, alerts, logs' messages): whole cents as cents
    ($1.25, $0.00), anything finer exact to the micro-dollar without trailing zeros ($0.005, $0.240523)."""
    sign = "-" if micro < 0 else ""
    dollars, rest = divmod(abs(micro), MICRO_USD)
    if rest % 10_000 == 0:
        return f"{sign}${dollars:,}.{rest // 10_000:02d}"
    return f"{sign}${dollars:,}.{f'{rest:06d}'.rstrip('0')}"


def format_amount(metric: str, amount: int) -> str:
    """One metric's amount: ``cost_usd`` (micro-dollars) as money, counts with thousands separators."""
    return usd(amount) if metric == "cost_usd" else f"{amount:,}"


def metric_label(metric: str) -> str:
    """A metric's name where its value is shown as stored: ``cost_usd`` (dollars in a policy) holds
    micro-dollars everywhere else, so events, JSON and alert fields call it ``cost_micro_usd``."""
    return "cost_micro_usd" if metric == "cost_usd" else metric


def unit_named(amounts: Mapping[str, int]) -> dict[str, int]:
    """Amounts keyed by ``metric_label``: what logs, alerts and ``status --json`` print."""
    return {metric_label(k): v for k, v in amounts.items()}

"""What the engine tells a telemetry backend: model calls, decisions, loops and bucket states.

The supervisor calls a ``Telemetry`` (when one is given) at the points it already passes; it knows nothing of any
telemetry library. ``guardian.otel.OpenTelemetry`` implements it in OpenTelemetry's GenAI conventions.

Decisions are Guardian's own result values: ``allow`` (a model or tool call was let through), ``deny_budget``,
``deny_kill``, ``deny_unknown_model``, ``deny_store`` (fail_closed during an outage), ``halt_loop``,
``paused`` (the middleware paused a run instead of halting it) and ``would_halt`` (shadow mode: a halt that was
only recorded), ``routed`` (sent to a cheaper model) and ``clamped`` (sent with a lower output cap).
"""

from __future__ import annotations

import typing
from typing import Literal, Protocol

from guardian.pricing import TokenUsage
from guardian.runs import Bucket, CallState, RunState
from guardian.store.base import BucketState

__all__ = ["DECISIONS", "Decided", "Telemetry"]

Decided = Literal[
    "allow",
    "deny_budget",
    "deny_kill",
    "deny_unknown_model",
    "deny_store",
    "halt_loop",
    "paused",
    "would_halt",
    "routed",
    "clamped",
]
DECISIONS: tuple[str, ...] = typing.get_args(Decided)


class Telemetry(Protocol):
    # True when bucket states should be read on every reservation (for gauges), not only for alerts.
    wants_states: bool

    def model_call(self, run: RunState, call: CallState, usage: TokenUsage, cost_micro_usd: int, at: float) -> None:
        """A model call was committed at ``at`` (it was reserved at ``call.started_at``)."""

    def decision(self, run: RunState, decided: Decided, reason: str, at: float) -> None:
        """Guardian decided about a call or a run; ``reason`` is short and low-cardinality (no user content)."""

    def loop_detected(self, run: RunState, signal: str) -> None:
        """Loop detection fired (whatever its action)."""

    def bucket_state(self, bucket: Bucket, state: BucketState) -> None:
        """A bucket's state as a reservation saw it."""

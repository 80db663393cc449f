"""The alert: plain data the supervisor builds and every sink renders.

An alert carries identities, amounts and a reason (a halt message or a loop signal),
never prompt or completion text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from guardian.amounts import unit_named
from guardian.errors import GuardianError

__all__ = ["ALERT_KINDS", "Alert", "AlertDeliveryError", "AlertKind"]

AlertKind = Literal["threshold", "exceeded", "killed", "loop", "granted", "test"]
ALERT_KINDS: tuple[AlertKind, ...] = get_args(AlertKind)


class AlertDeliveryError(GuardianError):
    """A sink could not deliver an alert (after its own retries).

    ``retryable`` False means trying again cannot help (bad webhook, revoked token,
    unknown channel): the dispatcher drops the alert at once instead of retrying.
    ``retry_after_s`` is the wait the destination asked for, when it said so.
    """

    def __init__(self, message: str, *, retryable: bool = True, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Alert:
    """Something a human should hear about: a budget threshold, an overrun, a kill, a loop.

    ``spent`` and ``limit`` map metric names (``input_tokens``, ``output_tokens``,
    ``total_tokens``, ``cost_usd`` in micro-dollars, ``llm_calls``, ``tool_calls``) to
    integers; ``limit`` holds only the metrics the budget limits. ``dedup_key`` is
    deduplicated fleet-wide for ``dedup_ttl_s`` seconds (None: for ever).
    """

    kind: AlertKind
    dedup_key: str
    dedup_ttl_s: float | None
    occurred_at: float
    run_id: str | None = None
    agent: str | None = None
    user: str | None = None
    tenant: str | None = None
    budget: str | None = None
    scope: str | None = None
    scope_key: str | None = None
    window: str | None = None
    threshold: float | None = None
    spent: Mapping[str, int] = field(default_factory=dict)
    limit: Mapping[str, int] = field(default_factory=dict)
    reason: str = ""
    action_hint: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ALERT_KINDS:
            raise ValueError(f"unknown alert kind {self.kind!r}; expected one of {', '.join(ALERT_KINDS)}")
        if not self.dedup_key:
            raise ValueError("an alert needs a non-empty dedup_key")
        # Own copies: the caller may reuse its dicts while the worker thread still reads these.
        object.__setattr__(self, "spent", {k: int(v) for k, v in self.spent.items()})
        object.__setattr__(self, "limit", {k: int(v) for k, v in self.limit.items()})

    def to_log_fields(self) -> dict[str, Any]:
        """Flat fields for a log event: amounts become ``spent_<metric>`` and ``limit_<metric>``, micro-dollars
        named so (``spent_cost_micro_usd``)."""
        fields: dict[str, Any] = {
            "kind": self.kind,
            "dedup_key": self.dedup_key,
            "occurred_at": self.occurred_at,
            "run_id": self.run_id,
            "agent": self.agent,
            "user": self.user,
            "tenant": self.tenant,
            "budget": self.budget,
            "scope": self.scope,
            "scope_key": self.scope_key,
            "window": self.window,
            "threshold": self.threshold,
        }
        fields.update({f"spent_{metric}": value for metric, value in unit_named(self.spent).items()})
        fields.update({f"limit_{metric}": value for metric, value in unit_named(self.limit).items()})
        fields["reason"] = self.reason
        fields["action_hint"] = self.action_hint
        return fields

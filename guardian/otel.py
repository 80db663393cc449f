"""Guardian in OpenTelemetry: ``Guardian(policy, telemetry=OpenTelemetry())`` (``pip install
'guardian-supervisor[otel]'``; the application configures the SDK and its exporters, as for any library).

Per committed model call, a span ``chat {model}`` (kind CLIENT, from reservation to commit) with the GenAI usage
attributes (``gen_ai.usage.input_tokens``, ``.output_tokens``, ``.cache_read.input_tokens``,
``.cache_creation.input_tokens``), its cost (``gen_ai.usage.cost.amount`` in ``gen_ai.usage.cost.currency`` USD,
``gen_ai.usage.cost.source`` local: priced by Guardian) and a ``gen_ai.guardrail.result`` event (result ``allow``);
the ``gen_ai.client.operation.cost`` histogram, the ``gen_ai.client.inference.usage.input_tokens`` /
``.output_tokens`` histograms and the ``gen_ai.client.inference.usage.detailed.*`` counters. Every other decision
(a refusal, a kill, a loop halt, a pause) is a span ``apply_guardrail Guardian`` carrying the
``gen_ai.guardrail.result`` event. Budget state: ``guardian.budget.spent`` (USD, per budget),
``guardian.budget.remaining`` (the share of its limit the last bucket a call charged has left, per budget),
``guardian.decisions`` and ``guardian.loop.detections``.

Metric attributes are bounded: model, provider, budget name, scope, window kind, decision, signal; never a user,
run or tenant id (those are on spans only).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind
from pydantic import BaseModel

from guardian.amounts import MICRO_USD
from guardian.policy import Policy
from guardian.pricing import TokenUsage
from guardian.runs import Bucket, CallState, RunState
from guardian.store.base import BucketState
from guardian.telemetry import Decided

__all__ = ["OpenTelemetry", "policy_version"]

COMPONENT = "Guardian"
_TOKEN_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864]
_COST_BUCKETS = [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10]


def policy_version(policy: Policy) -> str:
    """A short fingerprint of what the policy enforces (budgets, loop rules, routing, settings, prices), from a
    canonical form: two processes on the same policy report the same one, whatever their hash seeds."""
    enforced = {
        "budgets": policy.budgets,
        "loops": policy.loops,
        "routing": policy.routing,
        "settings": policy.settings,
        "prices": policy.prices,
    }
    text = json.dumps(_canonical(enforced), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _canonical(value: Any) -> Any:
    """Plain JSON values in a stable order: sets sorted, dataclasses and pydantic models as dicts."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, BaseModel):
        return _canonical(value.model_dump())
    if isinstance(value, Mapping):
        return {str(_canonical(k)): _canonical(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted((_canonical(v) for v in value), key=repr)
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)  # Decimal, ZoneInfo and the like: their text is their identity


def _usd(micro: int) -> float:
    return float(Decimal(micro) / MICRO_USD)


def _ns(t: float) -> int:
    return int(t * 1e9)


class OpenTelemetry:
    """Telemetry through the OpenTelemetry API; the providers default to the globally configured ones."""

    wants_states = True

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        policy_id: str = "guardian",
    ) -> None:
        self._tracer = trace.get_tracer("guardian", tracer_provider=tracer_provider)
        meter = metrics.get_meter("guardian", meter_provider=meter_provider)
        self.policy_id = policy_id
        self.policy_version = ""
        self._cost = meter.create_histogram(
            "gen_ai.client.operation.cost",
            unit="USD",
            description="What one model call cost, priced by Guardian",
            explicit_bucket_boundaries_advisory=_COST_BUCKETS,
        )
        self._tokens = {
            kind: meter.create_histogram(
                f"gen_ai.client.inference.usage.{kind}",
                unit="{token}",
                description=f"The number of {kind.replace('_', ' ')} used per inference operation",
                explicit_bucket_boundaries_advisory=_TOKEN_BUCKETS,
            )
            for kind in ("input_tokens", "output_tokens")
        }
        self._detailed = {
            kind: meter.create_counter(f"gen_ai.client.inference.usage.detailed.{kind}", unit="{token}")
            for kind in (
                "input_tokens",
                "output_tokens",
                "cache_read.input_tokens",
                "cache_write.input_tokens",
                "reasoning.output_tokens",
            )
        }
        self._spent = meter.create_counter("guardian.budget.spent", unit="USD", description="Spend charged per budget")
        self._remaining = meter.create_gauge(
            "guardian.budget.remaining",
            unit="1",
            description="Share of its limit the bucket a call last charged has left, per budget",
        )
        self._decisions = meter.create_counter("guardian.decisions", unit="{decision}")
        self._loops = meter.create_counter("guardian.loop.detections", unit="{loop}")

    def bind_policy(self, policy: Policy) -> None:
        """Called by ``Guardian``: the policy's version goes on every guardrail result."""
        self.policy_version = policy_version(policy)

    # -- Telemetry ------------------------------------------------------------------------------------------------

    def model_call(self, run: RunState, call: CallState, usage: TokenUsage, cost_micro_usd: int, at: float) -> None:
        provider = call.provider or "unknown"
        common: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": provider,
            "gen_ai.request.model": call.model,
        }
        cost = _usd(cost_micro_usd)
        span = self._tracer.start_span(
            f"chat {call.model}",
            kind=SpanKind.CLIENT,
            start_time=_ns(call.started_at),
            attributes={
                **common,
                "gen_ai.usage.input_tokens": usage.input_tokens,
                "gen_ai.usage.output_tokens": usage.output_tokens,
                "gen_ai.usage.cache_read.input_tokens": usage.cache_read_tokens,
                "gen_ai.usage.cache_creation.input_tokens": usage.cache_write_tokens,
                "gen_ai.usage.reasoning.output_tokens": usage.reasoning_tokens,
                "gen_ai.usage.cost.amount": cost,
                "gen_ai.usage.cost.currency": "USD",
                "gen_ai.usage.cost.source": "local",
                **_identity(run),
            },
        )
        span.add_event("gen_ai.guardrail.result", self._result("allow", ""), timestamp=_ns(call.started_at))
        span.end(end_time=_ns(at))
        self._cost.record(cost, common)
        self._tokens["input_tokens"].record(usage.input_tokens, common)
        self._tokens["output_tokens"].record(usage.output_tokens, common)
        text = {**common, "gen_ai.token.modality": "text"}
        for kind, amount in (
            ("input_tokens", usage.input_tokens),
            ("output_tokens", usage.output_tokens),
            ("cache_read.input_tokens", usage.cache_read_tokens),
            ("cache_write.input_tokens", usage.cache_write_tokens),
            ("reasoning.output_tokens", usage.reasoning_tokens),
        ):
            if amount:
                self._detailed[kind].add(amount, text)
        for bucket in call.binding.buckets:
            self._spent.add(cost, _budget(bucket))

    def decision(self, run: RunState, decided: Decided, reason: str, at: float) -> None:
        self._decisions.add(1, {"guardian.decision": decided})
        if decided == "allow":
            return  # carried by the model call's own span
        span = self._tracer.start_span(
            f"apply_guardrail {COMPONENT}",
            kind=SpanKind.INTERNAL,
            start_time=_ns(at),
            attributes={
                "gen_ai.operation.name": "apply_guardrail",
                "gen_ai.provider.name": "guardian",
                "gen_ai.guardrail.component.name": COMPONENT,
                **_identity(run),
            },
        )
        span.add_event("gen_ai.guardrail.result", self._result(decided, reason), timestamp=_ns(at))
        span.end(end_time=_ns(at))

    def loop_detected(self, run: RunState, signal: str) -> None:
        self._loops.add(1, {"guardian.loop.signal": signal})

    def bucket_state(self, bucket: Bucket, state: BucketState) -> None:
        limits = bucket.budget.limited()
        if not limits:
            return
        used = max(
            (state.spent.get(m) + state.reserved.get(m)) / limit if limit else 1.0 for m, limit in limits.items()
        )
        self._remaining.set(max(0.0, 1.0 - used), _budget(bucket))

    def _result(self, decided: str, reason: str) -> dict[str, Any]:
        attributes: dict[str, Any] = {
            "gen_ai.guardrail.component.name": COMPONENT,
            "gen_ai.guardrail.policy.id": self.policy_id,
            "gen_ai.guardrail.policy.version": self.policy_version,
            "gen_ai.guardrail.result.type": "decision",
            "gen_ai.guardrail.result.value": decided,
            "gen_ai.guardrail.source": "model_request",
        }
        if reason:
            attributes["gen_ai.guardrail.result.reason"] = reason
        return attributes


def _budget(bucket: Bucket) -> dict[str, str]:
    return {
        "guardian.budget": bucket.budget.name,
        "guardian.scope": bucket.budget.scope,
        "guardian.window": bucket.budget.window,
    }


def _identity(run: RunState) -> dict[str, str]:
    """Span-only attributes (a span may carry ids; a metric may not)."""
    return {
        "guardian.run.id": run.run_id,
        "guardian.agent": run.identity.agent,
        "guardian.user": run.identity.user,
        "guardian.tenant": run.identity.tenant,
    }

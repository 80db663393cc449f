"""OpenTelemetry: GenAI spans, guardrail results and metrics, read back with the SDK's in-memory exporters."""

from __future__ import annotations

from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from guardian import BudgetExceeded, LoopDetected
from guardian.otel import OpenTelemetry, policy_version
from guardian.policy import Policy
from guardian.testing import ScriptedChatModel, react_graph, tool_call

from .conftest import GuardianFactory

POLICY: dict[str, Any] = {
    "budgets": [
        {"name": "cap", "scope": "run", "limits": {"llm_calls": 3}},
        {"name": "daily", "scope": "user", "window": "day", "limits": {"cost_usd": 10}},
    ],
    "loops": [{"name": "default"}],
    "prices": {"scripted": {"input": 1, "output": 2, "cache_read": "0.1"}},
}


@tool
def search(query: str) -> str:
    """Search."""
    return "nothing"


class Telemetry:
    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.otel = OpenTelemetry(
            tracer_provider=tracer_provider, meter_provider=MeterProvider(metric_readers=[self.reader])
        )

    def metrics(self) -> dict[str, list[Any]]:
        data = self.reader.get_metrics_data()
        assert data is not None
        found: dict[str, list[Any]] = {}
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    found.setdefault(metric.name, []).extend(metric.data.data_points)
        return found


@pytest.fixture
def telemetry() -> Telemetry:
    return Telemetry()


def usage(i: int, o: int, cache_read: int = 0) -> Any:
    u: dict[str, Any] = {"input_tokens": i, "output_tokens": o, "total_tokens": i + o}
    if cache_read:
        u["input_token_details"] = {"cache_read": cache_read}
    return u


def test_each_model_call_is_a_genai_span_with_usage_cost_and_an_allow_result(
    make_guardian: GuardianFactory, telemetry: Telemetry
) -> None:
    guard = make_guardian(POLICY, telemetry=telemetry.otel)
    model = ScriptedChatModel(model="scripted", replies=[AIMessage("hi", usage_metadata=usage(1000, 100, 400))])
    model.invoke([HumanMessage("secret prompt")], config={"callbacks": [guard.callback("writer", "alice", "acme")]})
    (span,) = telemetry.spans.get_finished_spans()
    attributes = dict(span.attributes or {})
    assert span.name == "chat scripted"
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == "openai"
    assert (attributes["gen_ai.usage.input_tokens"], attributes["gen_ai.usage.output_tokens"]) == (1000, 100)
    assert attributes["gen_ai.usage.cache_read.input_tokens"] == 400
    assert attributes["gen_ai.usage.cost.amount"] == pytest.approx((600 + 40 + 200) / 1e6)
    assert (attributes["gen_ai.usage.cost.currency"], attributes["gen_ai.usage.cost.source"]) == ("USD", "local")
    assert attributes["guardian.user"] == "alice"
    (event,) = span.events
    assert event.name == "gen_ai.guardrail.result"
    assert dict(event.attributes or {}) == {
        "gen_ai.guardrail.component.name": "Guardian",
        "gen_ai.guardrail.policy.id": "guardian",
        "gen_ai.guardrail.policy.version": policy_version(guard.policy),
        "gen_ai.guardrail.result.type": "decision",
        "gen_ai.guardrail.result.value": "allow",
        "gen_ai.guardrail.source": "model_request",
    }
    assert "secret prompt" not in str([span.to_json() for span in telemetry.spans.get_finished_spans()])
    metrics = telemetry.metrics()
    (cost,) = metrics["gen_ai.client.operation.cost"]
    assert cost.sum == pytest.approx(840 / 1e6)
    assert dict(cost.attributes) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "scripted",
    }
    assert metrics["gen_ai.client.inference.usage.input_tokens"][0].sum == 1000
    detailed = {p.value for p in metrics["gen_ai.client.inference.usage.detailed.cache_read.input_tokens"]}
    assert detailed == {400}
    assert (
        metrics["gen_ai.client.inference.usage.detailed.input_tokens"][0].attributes["gen_ai.token.modality"] == "text"
    )
    spent = {p.attributes["guardian.budget"]: p.value for p in metrics["guardian.budget.spent"]}
    assert spent == pytest.approx({"cap": 840 / 1e6, "daily": 840 / 1e6})
    remaining = {p.attributes["guardian.budget"]: p.value for p in metrics["guardian.budget.remaining"]}
    assert remaining["cap"] == pytest.approx(2 / 3)  # one of three calls held when the reservation was judged


def test_refusals_and_loop_halts_are_guardrail_results_and_counted(
    make_guardian: GuardianFactory, telemetry: Telemetry
) -> None:
    guard = make_guardian(POLICY, telemetry=telemetry.otel)
    pages = ScriptedChatModel(model="scripted", replies=[tool_call("search", {"query": f"p{i}"}) for i in range(6)])
    with pytest.raises(BudgetExceeded):
        react_graph(pages, [search]).invoke(
            {"messages": [HumanMessage("go")]}, config={"callbacks": [guard.callback()]}
        )
    stuck = ScriptedChatModel(model="scripted", replies=[tool_call("search", {"query": "Q3"})], cycle=True)
    policy = {**POLICY, "budgets": [{"name": "daily", "scope": "user", "window": "day", "limits": {"cost_usd": 10}}]}
    looping = make_guardian(policy, telemetry=telemetry.otel)
    with pytest.raises(LoopDetected):
        react_graph(stuck, [search]).invoke(
            {"messages": [HumanMessage("go")]}, config={"callbacks": [looping.callback()]}
        )
    guardrails = [s for s in telemetry.spans.get_finished_spans() if s.name == "apply_guardrail Guardian"]
    results = [(dict(s.events[0].attributes or {})) for s in guardrails]
    assert [(r["gen_ai.guardrail.result.value"], r.get("gen_ai.guardrail.result.reason")) for r in results] == [
        ("deny_budget", "cap llm_calls"),
        ("halt_loop", "repeated_tool_call"),
    ]
    decisions = {p.attributes["guardian.decision"]: p.value for p in telemetry.metrics()["guardian.decisions"]}
    assert decisions["deny_budget"] == 1
    assert decisions["halt_loop"] == 1
    assert decisions["allow"] > 3  # model and tool calls let through
    loops = telemetry.metrics()["guardian.loop.detections"]
    assert [(dict(p.attributes), p.value) for p in loops] == [({"guardian.loop.signal": "repeated_tool_call"}, 1)]


def test_a_middleware_pause_is_a_paused_result(make_guardian: GuardianFactory, telemetry: Telemetry) -> None:
    guard = make_guardian({}, telemetry=telemetry.otel)
    guard.kill(user="eve")
    agent = create_agent(
        ScriptedChatModel(replies=["x"]),
        [],
        middleware=[guard.middleware(user="eve", exit_behavior="interrupt")],
        checkpointer=InMemorySaver(),
    )
    agent.invoke({"messages": [HumanMessage("go")]}, {"configurable": {"thread_id": "t"}})
    values = [
        dict(s.events[0].attributes or {})["gen_ai.guardrail.result.value"]
        for s in telemetry.spans.get_finished_spans()
    ]
    assert values == ["deny_kill", "paused"]


def test_metric_attributes_never_carry_ids(make_guardian: GuardianFactory, telemetry: Telemetry) -> None:
    """Bounded cardinality: many users and runs, the same few metric series."""
    guard = make_guardian(POLICY, telemetry=telemetry.otel)
    for i in range(20):
        model = ScriptedChatModel(model="scripted", replies=["ok"])
        model.invoke("hi", config={"callbacks": [guard.callback("writer", f"user-{i}", f"tenant-{i}")]})
    for name, points in telemetry.metrics().items():
        for point in points:
            values = " ".join(str(v) for v in dict(point.attributes).values())
            assert "user-" not in values, name
            assert "tenant-" not in values, name
        assert len(points) <= 3, name


def test_a_broken_telemetry_backend_never_reaches_the_agent(make_guardian: GuardianFactory) -> None:
    from structlog.testing import capture_logs

    class Broken:
        wants_states = True

        def model_call(self, *args: Any) -> None:
            raise ConnectionError("collector down")

        decision = loop_detected = bucket_state = model_call

    guard = make_guardian({}, telemetry=Broken())
    with capture_logs() as logs:
        for _ in range(2):
            ScriptedChatModel(replies=["ok"]).invoke("hi", config={"callbacks": [guard.callback()]})
    assert [e["error_type"] for e in logs if e["event"] == "telemetry_error"] == ["ConnectionError"]


def test_the_policy_version_changes_with_what_it_enforces() -> None:
    one = Policy.from_dict({"version": 1, **POLICY})
    two = Policy.from_dict({"version": 1, **{**POLICY, "loops": []}})
    assert policy_version(one) == policy_version(Policy.from_dict({"version": 1, **POLICY}))
    assert policy_version(one) != policy_version(two)


def test_the_policy_version_is_the_same_in_every_process() -> None:
    """Sets (tags, alert_on) are hashed in a canonical order, whatever the interpreter's hash seed."""
    import os
    import subprocess
    import sys

    code = (
        "from guardian import Policy; from guardian.otel import policy_version; "
        "print(policy_version(Policy.from_dict({'version': 1, 'budgets': [{'name': 'b', 'scope': 'user', "
        "'window': 'day', 'match': {'tags': ['a', 'b', 'c', 'd']}, 'limits': {'llm_calls': 3}}], "
        "'loops': [{'name': 'x', 'alert_on': ['no_progress', 'cycle']}]})))"
    )
    seen = {
        subprocess.run(
            [sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": seed}, capture_output=True, text=True,
            check=True, timeout=60,
        ).stdout.strip()
        for seed in ("1", "2", "3", "4")
    }  # fmt: skip
    assert len(seen) == 1

"""LangChain cache hits are not spend: no budget is charged for a call no provider was paid for."""

from __future__ import annotations

from langchain_core.caches import InMemoryCache
from langchain_core.messages import HumanMessage
from structlog.testing import capture_logs

from .conftest import GuardianFactory


def test_cache_hits_do_not_use_a_budget_and_say_what_they_saved(make_guardian: GuardianFactory) -> None:
    """A 3-call budget: 1 real call and 5 cache hits of the same prompt are all served; the budget shows one call;
    each hit is logged with what it saved and counted per agent and day."""
    from guardian.testing import ScriptedChatModel

    guard = make_guardian(
        {"budgets": [{"name": "daily", "scope": "user", "window": "day", "limits": {"llm_calls": 3}}]}
    )
    model = ScriptedChatModel(replies=["cached answer"], cycle=True, cache=InMemoryCache())
    with capture_logs() as logs:
        for _ in range(6):
            reply = model.invoke([HumanMessage("same question")], config={"callbacks": [guard.callback(user="u")]})
            assert reply.content == "cached answer"
    assert model.calls == 1  # the provider was called once
    (row,) = guard.status()
    assert (row.spent.llm_calls, row.reserved.llm_calls) == (1, 0)
    hits = [e for e in logs if e["event"] == "cache_hit"]
    assert len(hits) == 5
    assert all(e["saved_micro_usd"] > 0 for e in hits)

    def counted(kind: str) -> int:
        return sum(v for _, v in guard.store.counters(guard.keys.counter_pattern(kind), guard.clock()))

    assert counted("cache_hits") == 5
    assert counted("cache_saved_micro_usd") == sum(e["saved_micro_usd"] for e in hits)


def test_a_reply_that_reports_a_real_cost_is_not_a_hit() -> None:
    from langchain_core.messages import AIMessage
    from langchain_core.outputs import ChatGeneration, LLMResult

    from guardian.integrations.langchain import is_cache_hit

    def result(usage: dict[str, int]) -> LLMResult:
        message = AIMessage(
            content="x", usage_metadata={"input_tokens": 1, "output_tokens": 1, "total_tokens": 2, **usage}
        )
        return LLMResult(generations=[[ChatGeneration(message=message)]])

    assert is_cache_hit(result({"total_cost": 0}))
    assert not is_cache_hit(result({}))
    assert not is_cache_hit(LLMResult(generations=[[]]))

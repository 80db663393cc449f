"""The charge for usage as each provider's LangChain integration reports it: cache tokens inside the input total
(both normalise to that), cache reads and writes priced apart, reasoning inside the output."""

from __future__ import annotations

from typing import Any

import pytest
from anthropic.types import CacheCreation, Usage
from langchain_anthropic.chat_models import _create_usage_metadata as anthropic_usage
from langchain_core.messages import AIMessage, HumanMessage
from langchain_openai.chat_models.base import _create_usage_metadata as openai_usage
from structlog.testing import capture_logs

from guardian.testing import ScriptedChatModel

from .conftest import GuardianFactory

# USD per 1M tokens = micro-dollars per token: input 1, output 2, cache read 0.1, cache write 1.25
PRICES = {"m": {"input": 1, "output": 2, "cache_read": "0.1", "cache_write": "1.25"}}


def committed(make_guardian: GuardianFactory, usage: Any) -> dict[str, Any]:
    guard = make_guardian({"prices": PRICES, "loops": []})
    model = ScriptedChatModel(model="m", provider="any", replies=[AIMessage("ok", usage_metadata=usage)])
    with capture_logs() as logs:
        model.invoke([HumanMessage("hi")], config={"callbacks": [guard.callback()]})
    (event,) = [e for e in logs if e["event"] == "call_committed"]
    record = next(r for r in guard.history(since=0) if r.kind == "call")
    return {"cost": event["cost_micro_usd"], "input": event["input_tokens"], "record": record}


def test_openai_cached_prompt_tokens_are_priced_as_cache_reads(make_guardian: GuardianFactory) -> None:
    usage = openai_usage(
        {
            "prompt_tokens": 1000,  # OpenAI: cached tokens are inside prompt_tokens
            "completion_tokens": 100,
            "total_tokens": 1100,
            "prompt_tokens_details": {"cached_tokens": 400},
            "completion_tokens_details": {"reasoning_tokens": 30},
        }
    )
    got = committed(make_guardian, usage)
    assert got["input"] == 1000
    assert got["cost"] == 600 * 1 + 400 * 0.1 + 100 * 2  # 840: reasoning is part of the output, not extra
    record = got["record"]
    assert (record.cache_read_tokens, record.reasoning_tokens) == (400, 30)


def test_anthropic_cache_tokens_outside_its_input_count_are_charged_once(make_guardian: GuardianFactory) -> None:
    """Anthropic counts cache reads and writes apart from input_tokens; langchain-anthropic adds them in."""
    usage = anthropic_usage(
        Usage(input_tokens=600, output_tokens=100, cache_read_input_tokens=300, cache_creation_input_tokens=100)
    )
    got = committed(make_guardian, usage)
    assert got["input"] == 1000
    assert got["cost"] == 600 * 1 + 300 * 0.1 + 100 * 1.25 + 100 * 2  # 955


def test_anthropic_cache_writes_broken_down_by_lifetime_are_still_cache_writes(make_guardian: GuardianFactory) -> None:
    """With cache_creation by lifetime, langchain-anthropic zeroes the generic count and reports ephemeral_5m/1h."""
    usage = anthropic_usage(
        Usage(
            input_tokens=600,
            output_tokens=100,
            cache_read_input_tokens=300,
            cache_creation_input_tokens=100,
            cache_creation=CacheCreation(ephemeral_5m_input_tokens=100, ephemeral_1h_input_tokens=0),
        )
    )
    assert usage["input_token_details"]["cache_creation"] == 0  # the convention this test pins down
    got = committed(make_guardian, usage)
    assert got["record"].cache_write_tokens == 100
    assert got["cost"] == 955


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_a_report_shows_cache_reads_and_writes_by_model(make_guardian: GuardianFactory, kind: str) -> None:
    usage = (
        openai_usage({"prompt_tokens": 1000, "completion_tokens": 10, "prompt_tokens_details": {"cached_tokens": 900}})
        if kind == "openai"
        else anthropic_usage(Usage(input_tokens=100, output_tokens=10, cache_read_input_tokens=900))
    )
    guard = make_guardian({"prices": PRICES, "loops": []})
    model = ScriptedChatModel(model="m", provider="any", replies=[AIMessage("ok", usage_metadata=usage)])
    model.invoke([HumanMessage("hi")], config={"callbacks": [guard.callback()]})
    (row,) = guard.report(since=0, by="model").rows
    assert (row.key, row.input_tokens, row.cache_read_tokens) == ("m", 1000, 900)

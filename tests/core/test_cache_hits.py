"""LangChain cache hits are not spend: no budget is charged for a call no provider was paid for."""

from __future__ import annotations

import math
import re
import warnings
import zlib
from typing import Any

from langchain_core.caches import BaseCache, InMemoryCache
from langchain_core.embeddings import Embeddings
from langchain_core.load import dumps, loads
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


class _WordEmbeddings(Embeddings):
    """Bag-of-words vectors (the hashing trick), normalised: close wordings land close, as a real embedding's do."""

    def _vector(self, text: str) -> list[float]:
        vector = [0.0] * 64
        for word in re.findall(r"[a-z0-9]+", text.lower()):
            vector[zlib.crc32(word.encode()) % 64] += 1.0
        norm = math.sqrt(sum(v * v for v in vector)) or 1.0
        return [v / norm for v in vector]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._vector(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._vector(text)


class SemanticCache(BaseCache):
    """A semantic LLM cache (as langchain-redis' RedisSemanticCache is): a prompt whose embedding is close enough to
    one answered before gets that answer."""

    def __init__(self, threshold: float = 0.8) -> None:
        self.embeddings = _WordEmbeddings()
        self.entries: list[tuple[list[float], str, str]] = []  # (vector, llm string, serialised answer)
        self.threshold = threshold

    def lookup(self, prompt: str, llm_string: str) -> Any:
        query = self.embeddings.embed_query(prompt)
        scored = [
            (sum(a * b for a, b in zip(query, v, strict=True)), answer)
            for v, llm, answer in self.entries
            if llm == llm_string
        ]
        best = max(scored, default=None)
        if best is None or best[0] < self.threshold:
            return None
        with warnings.catch_warnings():  # langchain-core's loads() is beta and warns about its defaults
            warnings.simplefilter("ignore")
            return loads(best[1], allowed_objects="core")

    def update(self, prompt: str, llm_string: str, return_val: Any) -> None:
        self.entries.append((self.embeddings.embed_query(prompt), llm_string, dumps(return_val)))

    def clear(self, **kwargs: Any) -> None:
        self.entries.clear()


def test_semantic_cache_hits_are_not_spend_either(make_guardian: GuardianFactory) -> None:
    """Reworded questions answered from a semantic cache: the provider is called once, the 2-call budget holds."""
    from guardian.testing import ScriptedChatModel

    guard = make_guardian(
        {"budgets": [{"name": "daily", "scope": "user", "window": "day", "limits": {"llm_calls": 2}}]}
    )
    model = ScriptedChatModel(replies=["Q3 revenue was $12M."], cycle=True, cache=SemanticCache())
    questions = ["What was the Q3 revenue?", "what was the q3 revenue", "Q3 revenue: what was it?", "the Q3 revenue?"]
    with capture_logs() as logs:
        for question in questions:
            reply = model.invoke([HumanMessage(question)], config={"callbacks": [guard.callback(user="u")]})
            assert reply.content == "Q3 revenue was $12M."
    assert model.calls == 1
    assert len([e for e in logs if e["event"] == "cache_hit"]) == 3
    (row,) = guard.status()
    assert row.spent.llm_calls == 1
    assert guard.report(since=0).total.cache_hits == 3


def test_prompt_cache_reads_writes_and_cacheable_spend_are_reported(make_guardian: GuardianFactory) -> None:
    """Per model: what provider cache reads saved, what cache writes cost above input, and what a long system
    prompt sent again without cache reads would have saved at the cache-read price."""
    from langchain_core.messages import AIMessage, SystemMessage

    from guardian.testing import ScriptedChatModel

    prices = {"m": {"input": 1, "output": 2, "cache_read": "0.1", "cache_write": "1.25"}}
    guard = make_guardian({"prices": prices, "loops": []})
    long_system = SystemMessage("You are a careful analyst. " * 300)  # ~1,950 tokens: long enough to be cached

    def reply(details: dict[str, int]) -> AIMessage:
        usage: Any = {"input_tokens": 3000, "output_tokens": 10, "total_tokens": 3010}
        if details:
            usage["input_token_details"] = details
        return AIMessage("ok", usage_metadata=usage)

    script = [reply({"cache_creation": 2000}), reply({"cache_read": 2000}), reply({}), reply({})]
    model = ScriptedChatModel(model="m", provider="any", replies=script)
    for _ in script:
        model.invoke([long_system, HumanMessage("next")], config={"callbacks": [guard.callback()]})
    (row,) = guard.report(since=0, by="model").rows
    assert row.prompt_cache_premium_micro_usd == 2000 * 1.25 - 2000 * 1  # 500
    assert row.prompt_cache_saved_micro_usd == 2000 * 1 - 2000 * 0.1  # 1,800
    prefix_tokens = next(r for r in guard.history(since=0) if r.kind == "call").prefix
    assert prefix_tokens  # a digest, not text
    # The last two calls read nothing: the first of them and the second are repeats of the prefix seen before.
    per_call = [r.cacheable_micro_usd for r in guard.history(since=0) if r.kind == "call"]
    assert per_call[1] == 0  # it did read from the cache
    assert row.cacheable_micro_usd == per_call[2] + per_call[3] > 0
    assert "You are a careful analyst" not in str([r.to_payload() for r in guard.history(since=0)])

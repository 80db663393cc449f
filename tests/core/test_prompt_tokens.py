"""The middleware counts prompt tokens with the request's own model where it can, and never waits on it twice."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from langchain.agents import create_agent
from langchain_core.messages import BaseMessage, HumanMessage
from langchain_core.tools import tool
from pydantic import Field
from structlog.testing import capture_logs

from guardian.integrations.prompt_tokens import PromptCounter
from guardian.testing import ScriptedChatModel

from .conftest import GuardianFactory


@tool
def lookup(query: str) -> str:
    """Look something up."""
    return "nothing"


class CountingModel(ScriptedChatModel):
    """A model with a local tokenizer of its own: every prompt is 1,000 tokens, and it sees the bound tools."""

    guardian_local_token_counter: ClassVar[bool] = True

    seen_tools: list[Any] = Field(default_factory=list)

    def get_num_tokens_from_messages(
        self, messages: Sequence[BaseMessage], tools: Sequence[Any] | None = None, **kwargs: Any
    ) -> int:
        self.seen_tools.append((list(tools or []), kwargs))
        return 1000


BROKEN_COUNTS: list[int] = []


class BrokenCounter(ScriptedChatModel):
    guardian_local_token_counter: ClassVar[bool] = True

    def get_num_tokens_from_messages(self, messages: Any, tools: Any = None) -> int:
        BROKEN_COUNTS.append(1)
        raise OSError("the tokenizer's files could not be downloaded")


def reserved_tokens(logs: Sequence[Mapping[str, Any]]) -> list[int]:
    return [e["reserved_tokens"] for e in logs if e["event"] == "call_reserved"]


def test_the_models_own_count_is_reserved_with_its_tools(make_guardian: GuardianFactory) -> None:
    guard = make_guardian({})
    model = CountingModel(replies=["done"], max_tokens=50)
    agent = create_agent(model, [lookup], middleware=[guard.middleware()])
    with capture_logs(processors=[]) as logs:
        agent.invoke({"messages": [HumanMessage("hi")]})
    assert reserved_tokens(logs) == [1000 + 50]
    tools, options = model.seen_tools[-1]
    assert [t["function"]["name"] for t in tools] == ["lookup"]
    assert options == {}


def test_a_counter_that_fails_is_logged_once_and_approximated_from_then_on(make_guardian: GuardianFactory) -> None:
    guard = make_guardian({})
    BROKEN_COUNTS.clear()
    middleware = guard.middleware()
    with capture_logs() as logs:
        for _ in range(3):
            create_agent(BrokenCounter(replies=["done"], max_tokens=50), [], middleware=[middleware]).invoke(
                {"messages": [HumanMessage("hi there")]}
            )
    assert BROKEN_COUNTS == [1]
    (unavailable,) = [e for e in logs if e["event"] == "token_counter_unavailable"]
    assert (unavailable["model_class"], unavailable["error_type"]) == ("BrokenCounter", "OSError")
    assert "hi there" not in str(logs)


def test_a_model_without_a_tokenizer_of_its_own_is_approximated() -> None:
    """BaseChatModel's default counter (GPT-2 through transformers) is never used."""
    assert PromptCounter().count(ScriptedChatModel(replies=["x"]), [HumanMessage("hi")], []) is None


def test_a_first_count_that_hangs_costs_the_deadline_once() -> None:
    """A tokenizer stuck on a download: the first count gives up at its deadline, later ones do not try."""
    release = threading.Event()
    tried: list[int] = []

    class Hanging(ScriptedChatModel):
        guardian_local_token_counter: ClassVar[bool] = True

        def get_num_tokens_from_messages(self, messages: Any, tools: Any = None) -> int:
            tried.append(1)
            release.wait(30)
            return 7

    counter = PromptCounter(first_count_deadline_s=0.01)
    model = Hanging(replies=["x"])
    try:
        with capture_logs() as logs:
            assert counter.count(model, [HumanMessage("hi")], []) is None
            assert counter.count(model, [HumanMessage("hi")], []) is None
        assert tried == [1]
        assert [e["error_type"] for e in logs if e["event"] == "token_counter_unavailable"] == ["deadline"]
    finally:
        release.set()


def test_a_counter_that_worked_is_used_inline_and_a_later_failure_only_costs_that_call() -> None:
    outcomes: list[Any] = [5, OSError("flaky"), 9]

    class Flaky(ScriptedChatModel):
        guardian_local_token_counter: ClassVar[bool] = True

        def get_num_tokens_from_messages(self, messages: Any, tools: Any = None) -> int:
            outcome = outcomes.pop(0)
            if isinstance(outcome, Exception):
                raise outcome
            return int(outcome)

    counter = PromptCounter()
    model = Flaky(replies=["x"])
    assert [counter.count(model, [HumanMessage("hi")], []) for _ in range(3)] == [5, None, 9]


def test_chatopenai_is_asked_not_to_fetch_images() -> None:
    """ChatOpenAI downloads image URLs to count them unless told not to: the count must stay off the network."""
    from langchain_openai import ChatOpenAI

    from guardian.integrations.prompt_tokens import _options

    assert _options(ChatOpenAI) == {"allow_fetching_images": False}
    assert _options(CountingModel) == {}


def test_a_counter_that_asks_its_provider_is_not_used() -> None:
    """ChatAnthropic counts by calling Anthropic's API: per call that would be a network round trip."""
    from langchain_anthropic import ChatAnthropic

    asked: list[int] = []

    class Remote(ChatAnthropic):
        def get_num_tokens_from_messages(self, messages: Any, tools: Any = None, **kwargs: Any) -> int:
            asked.append(1)
            return 5

    model = Remote(model_name="claude-sonnet-4-5", api_key="x")  # type: ignore[call-arg]
    assert PromptCounter().count(model, [HumanMessage("hi")], []) is None
    assert asked == []

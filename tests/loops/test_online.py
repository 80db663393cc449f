"""Online: a handler that feeds the detector from callbacks stops a looping agent before the
next model call is paid for. This is the wiring the Guardian adapter uses."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from typing import Any
from uuid import UUID

import pytest
from langchain.agents import create_agent
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import LLMResult
from langchain_core.tools import tool

from guardian.integrations.observe import ObservationTracker, tool_name
from guardian.loops import LoopDetector, LoopVerdict, Observation
from guardian.testing import ScriptedChatModel


class LoopStop(RuntimeError):
    def __init__(self, verdict: LoopVerdict) -> None:
        super().__init__(verdict.description)
        self.verdict = verdict


class LoopGuard(BaseCallbackHandler):
    """Forwards the callbacks ObservationTracker needs and refuses model calls after a verdict."""

    raise_error = True
    run_inline = True

    def __init__(self) -> None:
        self.tracker = ObservationTracker()
        self.detector = LoopDetector()
        self.lock = threading.Lock()

    def feed(self, obs: Observation | None) -> None:
        if obs is not None:
            with self.lock:
                self.detector.observe(obs)

    def on_chat_model_start(
        self, serialized: dict[str, Any], messages: list[list[BaseMessage]], *, run_id: UUID, **kwargs: Any
    ) -> None:
        with self.lock:
            verdict = self.detector.verdict
        if verdict is not None:
            raise LoopStop(verdict)

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        self.feed(self.tracker.on_llm_end(response))

    def on_chain_start(
        self,
        serialized: dict[str, Any],
        inputs: dict[str, Any],
        *,
        run_id: UUID,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self.tracker.on_chain_start(run_id, metadata, tags=tags or [], name=kwargs.get("name"))

    def on_chain_end(self, outputs: dict[str, Any], *, run_id: UUID, **kwargs: Any) -> None:
        self.feed(self.tracker.on_chain_end(run_id, outputs))

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self.tracker.on_chain_error(run_id)

    def on_tool_start(
        self,
        serialized: dict[str, Any],
        input_str: str,
        *,
        run_id: UUID,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self.tracker.on_tool_start(run_id, tool_name(serialized, kwargs.get("name")), input_str, inputs)

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self.feed(self.tracker.on_tool_end(run_id, output))

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self.feed(self.tracker.on_tool_error(run_id, error))


@tool
def search(query: str) -> str:
    """Search the knowledge base."""
    return f"No results for {query!r}."


def stuck_reply(messages: Sequence[BaseMessage]) -> AIMessage:
    call_id = f"call_{uuid.uuid4().hex[:12]}"
    return AIMessage(
        content="Let me search once more.",
        tool_calls=[{"name": "search", "args": {"query": "Q3 revenue"}, "id": call_id, "type": "tool_call"}],
    )


def test_looping_agent_is_stopped_before_its_fourth_model_call() -> None:
    """create_agent repeating one search: three calls are paid, the fourth is refused with a
    verdict naming the tool, and LangGraph's recursion limit is never reached."""
    model = ScriptedChatModel(replies=[stuck_reply], cycle=True)
    agent = create_agent(model, [search])
    guard = LoopGuard()
    with pytest.raises(LoopStop) as caught:
        agent.invoke({"messages": [HumanMessage(content="Find Q3 revenue")]}, config={"callbacks": [guard]})
    assert model.calls == 3
    assert caught.value.verdict.signal in {"repeated_tool_call", "repeated_output"}
    assert caught.value.verdict.subject == "search"
    assert caught.value.verdict.model_calls == 2
    assert guard.tracker.open_runs() <= 2  # the graph's own run and the refused node run


async def test_looping_agent_is_stopped_under_ainvoke_too() -> None:
    """The same stop happens on the async path (the handler runs inline)."""
    model = ScriptedChatModel(replies=[stuck_reply], cycle=True)
    agent = create_agent(model, [search])
    with pytest.raises(LoopStop):
        await agent.ainvoke(
            {"messages": [HumanMessage(content="Find Q3 revenue")]}, config={"callbacks": [LoopGuard()]}
        )
    assert model.calls == 3

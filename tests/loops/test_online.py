"""Online: a handler that feeds the detector from callbacks stops a looping agent before the
next model call is paid for. This is the wiring the Guardian adapter uses."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any
from uuid import UUID

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.tools import tool

from guardian.loops import LoopDetector, LoopVerdict, Observation
from guardian.testing import ScriptedChatModel, TraceRecorder


class LoopStop(RuntimeError):
    def __init__(self, verdict: LoopVerdict) -> None:
        super().__init__(verdict.description)
        self.verdict = verdict


class LoopGuard(TraceRecorder):
    """TraceRecorder's forwarding, feeding a detector instead of a list, and refusing model calls after
    a verdict."""

    def __init__(self) -> None:
        super().__init__()
        self.detector = LoopDetector()

    def _record(self, observation: Observation | None) -> None:
        if observation is not None:
            with self._lock:
                self.detector.observe(observation)

    def on_chat_model_start(
        self, serialized: dict[str, Any], messages: list[list[BaseMessage]], *, run_id: UUID, **kwargs: Any
    ) -> None:
        with self._lock:
            verdict = self.detector.verdict
        if verdict is not None:
            raise LoopStop(verdict)


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


def test_looping_agent_is_stopped_before_its_fifth_model_call() -> None:
    """create_agent repeating one search with the same result: four calls are paid (a poll may
    see the same answer three times), the fifth is refused with a verdict naming the tool, and
    LangGraph's recursion limit is never reached."""
    model = ScriptedChatModel(replies=[stuck_reply], cycle=True)
    agent = create_agent(model, [search])
    guard = LoopGuard()
    with pytest.raises(LoopStop) as caught:
        agent.invoke({"messages": [HumanMessage(content="Find Q3 revenue")]}, config={"callbacks": [guard]})
    assert model.calls == 4
    assert caught.value.verdict.signal == "repeated_tool_call"
    assert caught.value.verdict.subject == "search"
    assert caught.value.verdict.model_calls == 3
    assert guard.tracker.open_runs() <= 2  # the graph's own run and the refused node run


async def test_looping_agent_is_stopped_under_ainvoke_too() -> None:
    """The same stop happens on the async path (the handler runs inline)."""
    model = ScriptedChatModel(replies=[stuck_reply], cycle=True)
    agent = create_agent(model, [search])
    with pytest.raises(LoopStop):
        await agent.ainvoke(
            {"messages": [HumanMessage(content="Find Q3 revenue")]}, config={"callbacks": [LoopGuard()]}
        )
    assert model.calls == 4

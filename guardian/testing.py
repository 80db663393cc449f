"""Helpers for testing agents under Guardian, shipped so users can use them too.

``ScriptedChatModel`` plays back scripted replies and, unlike langchain-core's fake
models, reports ``usage_metadata`` and streams token by token, so budgets see real numbers.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.messages.utils import count_tokens_approximately
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult, LLMResult
from langchain_core.runnables import Runnable
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode
from pydantic import PrivateAttr

if TYPE_CHECKING:
    from guardian.guard import Guardian

from guardian.alerts import RecordingSink
from guardian.integrations.observe import ObservationTracker, tool_name
from guardian.loops import Observation

__all__ = [
    "FakeClock",
    "RecordingSink",
    "Reply",
    "ScriptedChatModel",
    "TraceRecorder",
    "make_guardian",
    "output_tokens_of",
    "react_graph",
    "tool_call",
    "usage_for",
]

Reply = AIMessage | str | Callable[[Sequence[BaseMessage]], AIMessage | str]

_TOKEN = re.compile(r"\S+\s*|\s+")


def output_tokens_of(message: AIMessage) -> int:
    """The scripted model's token count for a reply: one per word, one per tool call."""
    text = message.content if isinstance(message.content, str) else ""
    return len(_TOKEN.findall(text)) + len(message.tool_calls)


def usage_for(messages: Sequence[BaseMessage], reply: AIMessage) -> UsageMetadata:
    input_tokens = count_tokens_approximately(messages)
    output_tokens = output_tokens_of(reply)
    return UsageMetadata(
        input_tokens=input_tokens, output_tokens=output_tokens, total_tokens=input_tokens + output_tokens
    )


class ScriptedChatModel(BaseChatModel):
    """Replies from a script, in order; ``cycle=True`` repeats it forever (a runaway agent).

    A reply that already carries ``usage_metadata`` reports exactly that; otherwise usage is
    approximated from the prompt (langchain-core's counter) and the reply's words.
    """

    replies: list[Any]  # of Reply; Any keeps pydantic from coercing strings into messages
    model: str = "gpt-4o-mini"
    provider: str = "openai"
    max_tokens: int | None = None
    cycle: bool = False

    _position: int = PrivateAttr(default=0)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "guardian-scripted"

    @property
    def calls(self) -> int:
        """How many replies were produced: the provider calls that really happened."""
        return self._position

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Runnable[Any, AIMessage]:
        """Binds the tools' schemas as a provider integration does: they travel in the invocation params, where
        Guardian counts them as prompt tokens. The replies stay scripted."""
        from langchain_core.utils.function_calling import convert_to_openai_tool

        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(ls_provider=self.provider, ls_model_name=self.model, ls_model_type="chat")
        max_tokens = kwargs.get("max_tokens", self.max_tokens)
        if isinstance(max_tokens, int):
            params["ls_max_tokens"] = max_tokens
        return params

    def _next_reply(self, messages: Sequence[BaseMessage], max_tokens: int | None = None) -> AIMessage:
        with self._lock:
            if self._position >= len(self.replies) and not self.cycle:
                raise IndexError(f"ScriptedChatModel ran out of replies after {len(self.replies)} calls")
            item = self.replies[self._position % len(self.replies)]
            self._position += 1
        reply = item(messages) if callable(item) else item
        message = AIMessage(content=reply) if isinstance(reply, str) else reply.model_copy(deep=True)
        if message.usage_metadata is None:
            message.usage_metadata = usage_for(messages, message)
        cap = max_tokens if max_tokens is not None else self.max_tokens
        usage = message.usage_metadata
        output = usage["output_tokens"]
        if cap is not None and type(output) is int and output > cap:  # as a provider does: output stops at the cap
            usage["total_tokens"] -= usage["output_tokens"] - cap
            usage["output_tokens"] = cap
        return message

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self._next_reply(messages, kwargs.get("max_tokens")))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        message = self._next_reply(messages, kwargs.get("max_tokens"))
        text = message.content if isinstance(message.content, str) else ""
        for token in _TOKEN.findall(text):
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=token, id=message.id))
            if run_manager:
                run_manager.on_llm_new_token(token, chunk=chunk)
            yield chunk
        last = AIMessageChunk(
            content="",
            id=message.id,
            usage_metadata=message.usage_metadata,
            tool_call_chunks=[
                {
                    "name": c["name"],
                    "args": _json(c["args"]),
                    "id": c["id"],
                    "index": i,
                    "type": "tool_call_chunk",
                }
                for i, c in enumerate(message.tool_calls)
            ],
            chunk_position="last",
        )
        chunk = ChatGenerationChunk(message=last)
        if run_manager:
            run_manager.on_llm_new_token("", chunk=chunk)
        yield chunk


def _json(value: Any) -> str:
    import json

    return json.dumps(value, sort_keys=True)


def react_graph(model: BaseChatModel, tools: Sequence[Any], *, handle_tool_errors: bool = False) -> Any:
    """A minimal ReAct agent as a LangGraph ``StateGraph``: model, then tools while it asks for them."""
    bound = model.bind_tools(tools)

    def agent(state: MessagesState) -> dict[str, list[BaseMessage]]:
        return {"messages": [bound.invoke(state["messages"])]}

    def route(state: MessagesState) -> str:
        last = state["messages"][-1]
        return "tools" if isinstance(last, AIMessage) and last.tool_calls else END

    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_node("tools", ToolNode(tools, handle_tool_errors=handle_tool_errors))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", route, ["tools", END])
    graph.add_edge("tools", "agent")
    return graph.compile()


def tool_call(name: str, args: dict[str, Any], call_id: str | None = None) -> AIMessage:
    """A scripted reply that asks for one tool call."""
    import uuid

    return AIMessage(
        content="", tool_calls=[{"name": name, "args": args, "id": call_id or f"call_{uuid.uuid4().hex[:8]}"}]
    )


class FakeClock:
    """Time that moves only when a test says so: pass it as ``Guardian(..., clock=FakeClock())``."""

    def __init__(self, now: float = 1_795_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_guardian(policy: dict[str, Any], **options: Any) -> Guardian:
    """A Guardian from a policy dict (``version: 1`` implied) on a fresh embedded store, a ``FakeClock`` and a
    ``RecordingSink`` for every alert kind, unless ``options`` say otherwise. Close it when done."""
    from guardian import Guardian, Policy
    from guardian.store import MemoryStore

    options.setdefault("store", MemoryStore())
    options.setdefault("clock", FakeClock())
    options.setdefault("alert_sinks", [RecordingSink(all_kinds=True)])
    return Guardian(Policy.from_dict({"version": 1, **policy}), **options)


class TraceRecorder(BaseCallbackHandler):
    """Records the observations of the runs it is attached to, in order (thread-safe).

    ``raise_error`` so a bug in extraction fails the run under test instead of vanishing;
    ``run_inline`` so async runs call it in order on the event loop.
    """

    raise_error = True
    run_inline = True

    def __init__(self) -> None:
        self.tracker = ObservationTracker()
        self._lock = threading.Lock()
        self._observations: list[Observation] = []

    @property
    def observations(self) -> list[Observation]:
        """A copy of what was recorded so far."""
        with self._lock:
            return list(self._observations)

    def _record(self, observation: Observation | None) -> None:
        if observation is not None:
            with self._lock:
                self._observations.append(observation)

    def on_chain_start(
        self,
        serialized: dict[str, Any],
        inputs: dict[str, Any],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self.tracker.on_chain_start(run_id, metadata, tags=tags or [], name=kwargs.get("name"))

    def on_chain_end(self, outputs: dict[str, Any], *, run_id: UUID, **kwargs: Any) -> None:
        self._record(self.tracker.on_chain_end(run_id, outputs))

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
        self._record(self.tracker.on_tool_end(run_id, output))

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._record(self.tracker.on_tool_error(run_id, error))

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self.tracker.on_chat_model_start(run_id, messages, metadata)

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        self._record(self.tracker.on_llm_end(run_id, response))

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self.tracker.on_llm_error(run_id)

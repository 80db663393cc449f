"""LangChain / LangGraph callback payloads turned into loop observations, in one place.

Both the supervisor's callback handler and the test corpus recorder call these, so what
the detector sees in tests is what it sees in production. Measured on langchain-core 1.7
and langgraph 1.2:

``on_tool_start(serialized, input_str, *, run_id, inputs=..., name=...)``
    ``serialized["name"]`` is the tool; ``inputs`` holds the parsed arguments (injected
    ones filtered out), ``None`` for tools that take one string, then ``input_str``.
``on_tool_end(output, *, run_id)``
    ``output`` is a ``ToolMessage`` when the call had a tool-call id (``status="error"``
    when the tool handled its own ``ToolException``), a ``Command`` for tools that update
    state, or the raw return value.
``on_tool_error(error, *, run_id)``
    the tool raised. ``ToolNode(handle_tool_errors=True)`` then turns it into a message and
    the graph goes on, with no ``on_tool_end``.
``on_chain_start(serialized, inputs, *, run_id, tags, metadata, name)``
    a LangGraph node run carries ``metadata["langgraph_node"]`` and the tag
    ``graph:step:<n>``, which LangGraph gives the node run only. Runnables inside the node
    (sequences, routing functions, a subgraph's own ``LangGraph`` run) inherit the metadata
    but not that tag. Nodes of a subgraph are node runs too.
``on_chain_end(outputs, *, run_id)``
    no metadata: the node name is remembered from the start by ``run_id``. ``outputs`` is
    the update the node returned (``create_agent``'s model node returns ``[Command(...)]``).
``on_llm_end(response, *, run_id)``
    ``response.generations[0][0].message`` is the reply, with ``usage_metadata``.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from langchain_core.messages import BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, LLMResult

from guardian.estimates import reported_count
from guardian.loops import ModelObservation, NodeObservation, ToolObservation, normalize

__all__ = [
    "ObservationTracker",
    "model_observation",
    "node_name",
    "node_observation",
    "node_path",
    "tool_name",
    "tool_observation",
]

_NODE_TAG = "graph:step:"


def tool_name(serialized: Mapping[str, Any] | str | None, name: str | None = None) -> str:
    """The tool's name from ``on_tool_start``'s ``serialized`` (or the ``name`` keyword)."""
    if isinstance(serialized, str):
        return serialized
    if serialized:
        found = serialized.get("name")
        if isinstance(found, str) and found:
            return found
    return name or "tool"


def tool_observation(
    tool: Mapping[str, Any] | str | None,
    input_str: str,
    inputs: Mapping[str, Any] | None,
    output: Any,
    *,
    error: bool = False,
    tokens: int = 0,
) -> ToolObservation:
    """One finished tool call; ``output`` is what ``on_tool_end`` got, or the exception
    ``on_tool_error`` got when ``error`` is true."""
    args: Any = dict(inputs) if inputs is not None else input_str
    if error:
        text = f"{type(output).__name__}: {output}" if isinstance(output, BaseException) else _text(output)
        return ToolObservation(tool_name(tool), args, text, error=True, tokens=tokens)
    failed = False
    if isinstance(output, ToolMessage):
        failed = output.status == "error"
        text = _message_text(output)
    elif isinstance(output, Sequence) and not isinstance(output, str) and output:
        tool_messages = [m for m in output if isinstance(m, ToolMessage)]
        failed = any(m.status == "error" for m in tool_messages)
        text = "\n".join(_message_text(m) for m in tool_messages) if tool_messages else _text(output)
    else:
        text = _command_text(output)
    return ToolObservation(tool_name(tool), args, text, error=failed, tokens=tokens)


def node_name(
    metadata: Mapping[str, Any] | None, tags: Sequence[str] | None = None, name: str | None = None
) -> str | None:
    """The LangGraph node a chain run is, or None for every other chain run.

    A node run has ``metadata["langgraph_node"]`` and a ``graph:step:<n>`` tag. Without
    tags, the run's ``name`` must equal the node name (weaker: an inner runnable named like
    its node would pass).
    """
    if not metadata:
        return None
    node = metadata.get("langgraph_node")
    if not isinstance(node, str):
        return None
    if tags is not None:
        return node if any(tag.startswith(_NODE_TAG) for tag in tags) else None
    return node if name == node else None


def node_path(metadata: Mapping[str, Any] | None) -> str | None:
    """The LangGraph node a model call runs in, with the nodes of the graphs around it:
    ``"model"`` for ``create_agent``'s model, ``"delegate|model"`` for an agent run inside a
    ``delegate`` node. Task ids are dropped, so the same node is the same path every step."""
    if not metadata:
        return None
    namespace = metadata.get("langgraph_checkpoint_ns")
    if isinstance(namespace, str) and namespace:
        return "|".join(part.split(":", 1)[0] for part in namespace.split("|"))
    node = metadata.get("langgraph_node")
    return node if isinstance(node, str) else None


def node_observation(
    metadata: Mapping[str, Any] | None,
    outputs: Any,
    *,
    tags: Sequence[str] | None = None,
    name: str | None = None,
) -> NodeObservation | None:
    """A node's update, given the metadata (and tags) its ``on_chain_start`` received;
    None when the run is not a LangGraph node."""
    node = node_name(metadata, tags, name)
    return None if node is None else NodeObservation(node, outputs)


def model_observation(response: LLMResult, *, model: str | None = None, tokens: int | None = None) -> ModelObservation:
    """The reply of one model call: its text, requested tool calls and total tokens.

    ``model`` names it in verdicts; by default the provider's ``model_name`` if reported. ``tokens``, when the
    caller already read the usage, is used instead of reading it again.
    """
    generation = response.generations[0][0] if response.generations and response.generations[0] else None
    known = tokens
    text, calls, tokens = "", [], known or 0
    reported: Any = None
    if isinstance(generation, ChatGeneration):
        message = generation.message
        text = message.text
        tool_calls = getattr(message, "tool_calls", None) or []
        calls = [(call["name"], call["args"]) for call in tool_calls]
        calls += [
            (call.get("name") or "?", {"invalid_args": call.get("args")})
            for call in getattr(message, "invalid_tool_calls", None) or []
        ]
        usage = getattr(message, "usage_metadata", None) if known is None else None
        if usage:
            tokens = max(0, reported_count(usage.get("total_tokens")))
        reported = message.response_metadata.get("model_name") or message.response_metadata.get("model")
    elif generation is not None:
        text = generation.text
    if not tokens and known is None and response.llm_output:
        usage = response.llm_output.get("token_usage") or response.llm_output.get("usage") or {}
        if isinstance(usage, Mapping):
            tokens = max(0, reported_count(usage.get("total_tokens")))
    if reported is None and response.llm_output:
        reported = response.llm_output.get("model_name")
    return ModelObservation(
        text,
        calls,
        tokens=tokens,
        model=model or (reported if isinstance(reported, str) else None),
        message=generation.message if isinstance(generation, ChatGeneration) else None,
    )


def _message_text(message: BaseMessage) -> str:
    if isinstance(message.content, str):
        return message.content
    return "\n".join(part if isinstance(part, str) else _block_text(part) for part in message.content)


def _block_text(block: Any) -> str:
    if isinstance(block, Mapping) and block.get("type") == "text" and isinstance(block.get("text"), str):
        return str(block["text"])
    return _text(block)


def _command_text(output: Any) -> str:
    """A ``Command``'s tool messages (what the model will read), else the whole output."""
    update = getattr(output, "update", None)
    messages = update.get("messages") if isinstance(update, Mapping) else None
    if isinstance(messages, Sequence):
        found = [m for m in messages if isinstance(m, ToolMessage)]
        if found:
            return "\n".join(_message_text(m) for m in found)
    return _text(output)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(normalize(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


class ObservationTracker:
    """Pairs start and end callbacks by ``run_id`` and returns observations at end events.

    Hold one per callback handler; every method is thread-safe. Only runs still open are
    remembered (removed at their end or error), and never more than ``max_open`` of them:
    the oldest are forgotten first if end events go missing.
    """

    def __init__(self, max_open: int = 4096) -> None:
        self._lock = threading.Lock()
        self._max_open = max_open
        self._nodes: OrderedDict[UUID, str] = OrderedDict()
        self._tools: OrderedDict[UUID, tuple[str, Any]] = OrderedDict()
        self._prompts: OrderedDict[UUID, tuple[Sequence[BaseMessage], str | None]] = OrderedDict()

    def on_chain_start(
        self,
        run_id: UUID,
        metadata: Mapping[str, Any] | None,
        *,
        tags: Sequence[str] | None = None,
        name: str | None = None,
    ) -> str | None:
        """Remember the run if it is a LangGraph node; returns the node name or None."""
        node = node_name(metadata, tags, name)
        if node is not None:
            with self._lock:
                self._remember(self._nodes, run_id, node)
        return node

    def on_chain_end(self, run_id: UUID, outputs: Any) -> NodeObservation | None:
        """The node's update if this run is a node started here, else None."""
        with self._lock:
            node = self._nodes.pop(run_id, None)
        return None if node is None else NodeObservation(node, outputs)

    def on_chain_error(self, run_id: UUID) -> None:
        """Forget a node run that raised (including LangGraph's interrupts)."""
        with self._lock:
            self._nodes.pop(run_id, None)

    def on_tool_start(
        self,
        run_id: UUID,
        tool: Mapping[str, Any] | str | None,
        input_str: str,
        inputs: Mapping[str, Any] | None = None,
    ) -> None:
        """Remember the tool and its arguments until the call ends."""
        args: Any = dict(inputs) if inputs is not None else input_str
        with self._lock:
            self._remember(self._tools, run_id, (tool_name(tool), args))

    def on_tool_end(self, run_id: UUID, output: Any) -> ToolObservation | None:
        """The finished call, or None if its start was not seen."""
        with self._lock:
            started = self._tools.pop(run_id, None)
        if started is None:
            return None
        name, args = started
        observed = tool_observation(name, "", None, output)
        return ToolObservation(name, args, observed.result, error=observed.error)

    def on_tool_error(self, run_id: UUID, error: BaseException) -> ToolObservation | None:
        """The failed call (``error=True``, the exception's type and text as result)."""
        with self._lock:
            started = self._tools.pop(run_id, None)
        if started is None:
            return None
        name, args = started
        return ToolObservation(name, args, f"{type(error).__name__}: {error}", error=True)

    def on_chat_model_start(
        self, run_id: UUID, messages: Sequence[Sequence[BaseMessage]], metadata: Mapping[str, Any] | None = None
    ) -> None:
        """Remember what the model reads (the first prompt of a batch) and the node calling it,
        until the call ends: the detector judges a repeat by whether the input brought news."""
        prompt = list(messages[0]) if messages else []
        with self._lock:
            self._remember(self._prompts, run_id, (prompt, node_path(metadata)))

    def on_llm_end(self, run_id: UUID, response: LLMResult, *, model: str | None = None) -> ModelObservation:
        """The model's reply, with the prompt and node remembered at its start (if seen)."""
        return self.with_prompt(run_id, model_observation(response, model=model))

    def with_prompt(self, run_id: UUID, observed: ModelObservation) -> ModelObservation:
        """``observed`` (a reply) with the prompt and node remembered at its call's start, which is forgotten."""
        with self._lock:
            started = self._prompts.pop(run_id, None)
        if started is None:
            return observed
        prompt, node = started
        return dataclasses.replace(observed, prompt=prompt, node=node)

    def on_llm_error(self, run_id: UUID) -> None:
        """Forget a model call that failed."""
        with self._lock:
            self._prompts.pop(run_id, None)

    def open_runs(self) -> int:
        """How many node, model and tool runs are waiting for their end event."""
        with self._lock:
            return len(self._nodes) + len(self._tools) + len(self._prompts)

    def _remember(self, table: OrderedDict[UUID, Any], run_id: UUID, value: Any) -> None:
        table[run_id] = value
        while len(table) > self._max_open:
            table.popitem(last=False)

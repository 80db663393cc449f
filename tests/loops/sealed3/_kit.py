"""Small deterministic building blocks for the sealed scenarios (no randomness at run time)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

from langchain.agents import create_agent
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool

from guardian.testing import ScriptedChatModel

Callbacks = list[BaseCallbackHandler]
Runner = Callable[[Callbacks], None]


class Ids:
    """Deterministic tool-call ids: ``call_<prefix>_<n>``."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.n = 0

    def __call__(self) -> str:
        self.n += 1
        return f"call_{self.prefix}_{self.n:03d}"


def ask(ids: Ids, name: str, args: dict[str, Any], text: str = "") -> AIMessage:
    """A reply requesting one tool call."""
    return AIMessage(content=text, tool_calls=[{"name": name, "args": args, "id": ids(), "type": "tool_call"}])


def ask_many(ids: Ids, calls: Sequence[tuple[str, dict[str, Any]]], text: str = "") -> AIMessage:
    """A reply requesting several tool calls at once."""
    return AIMessage(
        content=text,
        tool_calls=[{"name": name, "args": args, "id": ids(), "type": "tool_call"} for name, args in calls],
    )


def scripted(replies: Sequence[Any], model: str = "gpt-4o-mini", provider: str = "openai") -> ScriptedChatModel:
    """A fresh scripted model (never cycling: running past the script is a bug in the scenario)."""
    return ScriptedChatModel(replies=list(replies), model=model, provider=provider)


def config(callbacks: Callbacks, limit: int = 250, thread: str | None = None, **extra: Any) -> RunnableConfig:
    """The run config: callbacks, a generous recursion limit, optionally a thread id."""
    cfg: RunnableConfig = {"callbacks": callbacks, "recursion_limit": limit}
    if thread is not None:
        cfg["configurable"] = {"thread_id": thread}
    if extra:
        cfg.update(extra)  # type: ignore[typeddict-item]
    return cfg


def run_agent(
    replies: Sequence[Any],
    tools: Sequence[BaseTool],
    prompt: str,
    callbacks: Callbacks,
    *,
    system: str | None = None,
    model: str = "gpt-4o-mini",
    provider: str = "openai",
    middleware: Sequence[Any] = (),
    limit: int = 250,
) -> None:
    """Builds a ``create_agent`` agent over a scripted model and runs it once."""
    agent = create_agent(
        scripted(replies, model, provider), list(tools), system_prompt=system, middleware=list(middleware)
    )
    agent.invoke({"messages": [HumanMessage(prompt)]}, config=config(callbacks, limit))


def hexid(seed: str, n: int, length: int = 12) -> str:
    """A deterministic hex id that looks fresh on every call."""
    return hashlib.sha256(f"{seed}:{n}".encode()).hexdigest()[:length]


def uuidish(seed: str, n: int) -> str:
    """A deterministic UUID-shaped string."""
    h = hashlib.sha256(f"{seed}#{n}".encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"


def last_text(messages: Sequence[BaseMessage]) -> str:
    """The text of the last message of a prompt."""
    content = messages[-1].content
    return content if isinstance(content, str) else str(content)


class Counter:
    """A mutable integer usable from closures (tools that change their answer over time)."""

    def __init__(self) -> None:
        self.n = 0

    def tick(self) -> int:
        self.n += 1
        return self.n

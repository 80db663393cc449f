"""Shared building blocks for the sealed split #2 scenarios: the scenario record, a registry, deterministic
tool-call ids and volatile values, scripted models and a ``create_agent`` runner."""

from __future__ import annotations

import random
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from langchain.agents import create_agent
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool

from guardian.testing import ScriptedChatModel

Callbacks = list[BaseCallbackHandler]
RunFn = Callable[[Callbacks], None]
Style = Literal["create_agent", "StateGraph", "both"]

HEALTHY_ARCHETYPES = frozenset(
    {
        "batch_classification",
        "extraction_map",
        "fanout_summaries",
        "pagination",
        "polling_finishes",
        "retry_then_success",
        "rate_limit_clears",
        "research",
        "edit_test_coding",
        "reread_after_edit",
        "planner_executor",
        "reflection_improves",
        "human_in_the_loop",
        "tool_error_recovers",
        "progress_reports",
        "supervisor_handoff",
        "subgraph_pipeline",
    }
)
LOOPING_ARCHETYPES = frozenset(
    {
        "stuck_same_call",
        "volatile_result_loop",
        "error_retry_loop",
        "ab_alternation",
        "paraphrased_reflection",
        "rotation_loop",
        "supervisor_pingpong",
        "repeated_answer_no_input",
        "pagination_stuck",
        "subgraph_loop",
    }
)


@dataclass(frozen=True)
class SealedScenario:
    name: str
    archetype: str
    looping: bool
    loop_start_call: int | None
    description: str
    run: Callable[[list[BaseCallbackHandler]], None]


REGISTRY: list[SealedScenario] = []
STYLE: dict[str, Style] = {}


def scenario(
    name: str, archetype: str, *, style: Style, loop_start: int | None = None, description: str
) -> Callable[[RunFn], RunFn]:
    """Registers a run function as a scenario; a scenario loops exactly when it has a loop start."""

    def register(run: RunFn) -> RunFn:
        REGISTRY.append(
            SealedScenario(
                name=name,
                archetype=archetype,
                looping=loop_start is not None,
                loop_start_call=loop_start,
                description=description,
                run=run,
            )
        )
        STYLE[name] = style
        return run

    return register


def cfg(callbacks: Callbacks, limit: int = 200, thread: str | None = None) -> RunnableConfig:
    config: RunnableConfig = {"callbacks": callbacks, "recursion_limit": limit, "max_concurrency": 1}
    if thread is not None:
        config["configurable"] = {"thread_id": thread}
    return config


_ALPHABET = string.ascii_letters + string.digits


class Ids:
    """Fresh-looking but deterministic tool-call ids, as a provider would mint them."""

    def __init__(self, seed: str, prefix: str = "call_") -> None:
        self._rng = random.Random(f"ids:{seed}")
        self._prefix = prefix

    def new(self) -> str:
        return self._prefix + "".join(self._rng.choices(_ALPHABET, k=24))

    def call(self, name: str, args: dict[str, Any], text: str = "") -> AIMessage:
        return AIMessage(content=text, tool_calls=[{"name": name, "args": args, "id": self.new(), "type": "tool_call"}])

    def calls(self, *requests: tuple[str, dict[str, Any]], text: str = "") -> AIMessage:
        return AIMessage(
            content=text,
            tool_calls=[{"name": n, "args": a, "id": self.new(), "type": "tool_call"} for n, a in requests],
        )


class Volatile:
    """Deterministic stand-ins for values that change on every call: UUIDs, hex ids, timestamps."""

    def __init__(self, seed: str, start: datetime | None = None) -> None:
        self._rng = random.Random(f"volatile:{seed}")
        self._now = start or datetime(2025, 3, 11, 9, 14, 2, tzinfo=UTC)

    def hex(self, n: int = 16) -> str:
        return "".join(self._rng.choices("0123456789abcdef", k=n))

    def uuid(self) -> str:
        h = self.hex(32)
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"

    def ts(self, min_s: float = 1.0, max_s: float = 9.0) -> str:
        self._now += timedelta(seconds=self._rng.uniform(min_s, max_s))
        return self._now.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def int(self, lo: int, hi: int) -> int:
        return self._rng.randint(lo, hi)


def scripted(replies: Sequence[Any], *, model: str = "gpt-4o-mini", provider: str = "openai") -> ScriptedChatModel:
    """A scripted chat model; running past the end of its script is a scenario bug and raises."""
    return ScriptedChatModel(replies=list(replies), model=model, provider=provider)


def text_of(message: BaseMessage) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    return "".join(part if isinstance(part, str) else str(part.get("text", "")) for part in content)


def last_human(messages: Sequence[BaseMessage]) -> str:
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            return text_of(message)
    return ""


def ai(message: BaseMessage) -> AIMessage:
    """Narrows a chat model's reply to an ``AIMessage``."""
    assert isinstance(message, AIMessage), type(message)
    return message


def run_agent(
    callbacks: Callbacks,
    model: ScriptedChatModel,
    tools: Sequence[BaseTool],
    prompt: str,
    *,
    system: str | None = None,
    limit: int = 150,
) -> dict[str, Any]:
    """Builds a ``create_agent`` agent and runs it once to completion."""
    agent = create_agent(model, list(tools), system_prompt=system)
    result: dict[str, Any] = agent.invoke({"messages": [HumanMessage(prompt)]}, config=cfg(callbacks, limit))
    return result


def failing(tool: BaseTool) -> BaseTool:
    """Lets a tool report its ``ToolException`` as an error ``ToolMessage``, as production tools are wired."""
    tool.handle_tool_error = True
    return tool

"""OpenAI Agents SDK door: budgets, kills and loop detection for ``Runner.run`` through the same supervisor.

``RunHooks`` are the SDK's callbacks: ``on_llm_start`` reserves (a halt raised there stops the run before the
model is called), ``on_llm_end`` commits the response's own ``usage``, ``on_tool_start`` charges a tool call,
and replies and tool results feed loop detection. One hooks object is one run, ended by :meth:`close`, which
:func:`run` calls for you::

    result = await guardian.integrations.openai_agents.run(guard, agent, "question", user="alice")

Needs ``openai-agents`` (``pip install 'guardian-supervisor[openai-agents]'``).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import defaultdict, deque
from typing import Any

from agents import Agent, RunHooks, Runner
from agents.items import ModelResponse

from guardian.estimates import reported_count
from guardian.identity import Identity
from guardian.loops import ModelObservation, ToolObservation
from guardian.pricing import TokenUsage
from guardian.runs import CHARS_PER_TOKEN, Reply, RunState
from guardian.supervisor import Supervisor

__all__ = ["GuardianRunHooks", "run"]


class GuardianRunHooks(RunHooks[Any]):
    """Hooks for one ``Runner.run``; make them with :meth:`guardian.Guardian.openai_hooks`."""

    def __init__(self, supervisor: Supervisor, identity: Identity, run_id: str | None = None) -> None:
        self.supervisor = supervisor
        self.run_id = run_id or str(uuid.uuid4())
        self._run: RunState = supervisor.start_run(self.run_id, identity)
        self._lock = threading.Lock()
        self._calls: deque[str] = deque()  # model calls in flight, in order
        self._pending_args: dict[str, deque[Any]] = defaultdict(deque)  # tool name -> arguments the model sent

    async def on_llm_start(self, context: Any, agent: Agent[Any], system_prompt: str | None, input_items: Any) -> None:
        call_id = str(uuid.uuid4())
        chars = len(system_prompt or "") + len(json.dumps(input_items, default=str))
        decision = self.supervisor.before_llm_call(
            self._run,
            call_id,
            provider="openai",
            model=_model_name(agent),
            prompt_tokens=-(-chars // CHARS_PER_TOKEN),
            max_output_tokens=_max_tokens(agent),
        )
        if decision.halt is not None:
            raise decision.halt  # Runner.run stops here: the model is not called
        with self._lock:
            self._calls.append(call_id)

    async def on_llm_end(self, context: Any, agent: Agent[Any], response: ModelResponse) -> None:
        with self._lock:
            call_id = self._calls.popleft() if self._calls else None
        if call_id is None:
            return
        usage = _usage(response)
        text, calls = _reply(response)
        with self._lock:
            for name, args in calls:
                self._pending_args[name].append(args)
        observation = None
        if self._run.loop_rule is not None:
            tokens = usage.total_tokens if usage else 0
            observation = ModelObservation(text, calls, tokens=tokens, model=_model_name(agent))
        estimate = 0 if usage else -(-len(text) // CHARS_PER_TOKEN)
        self.supervisor.after_llm_call(self._run, call_id, Reply(usage, estimate, observation=observation))

    async def on_tool_start(self, context: Any, agent: Any, tool: Any) -> None:
        decision = self.supervisor.on_tool_call(self._run, str(uuid.uuid4()), str(getattr(tool, "name", "tool")))
        if decision.halt is not None:
            raise decision.halt

    async def on_tool_end(self, context: Any, agent: Any, tool: Any, result: object) -> None:
        name = str(getattr(tool, "name", "tool"))
        with self._lock:
            pending = self._pending_args.get(name)
            args = pending.popleft() if pending else {}
        if self._run.loop_rule is not None:
            self.supervisor.observe(self._run, ToolObservation(name, args, str(result)))

    def close(self, error: BaseException | None = None) -> None:
        """End the run: commit what is outstanding, settle calls that never ended. Idempotent."""
        self.supervisor.end_run(self._run, error=error)


async def run(
    guard: Any,
    agent: Agent[Any],
    input: Any,
    *,
    agent_name: str | None = None,
    user: str | None = None,
    tenant: str | None = None,
    tags: tuple[str, ...] = (),
    **kwargs: Any,
) -> Any:
    """``Runner.run(agent, input, ...)`` under Guardian, the run ended however it ends."""
    hooks = guard.openai_hooks(agent=agent_name or agent.name, user=user, tenant=tenant, tags=tags)
    try:
        result = await Runner.run(agent, input, hooks=hooks, **kwargs)
    except BaseException as exc:
        hooks.close(exc)
        raise
    hooks.close()
    return result


def _model_name(agent: Agent[Any]) -> str:
    model = agent.model
    if isinstance(model, str):
        return model
    return str(getattr(model, "model", None) or "unknown")


def _max_tokens(agent: Agent[Any]) -> int | None:
    value = getattr(agent.model_settings, "max_tokens", None)
    return value if isinstance(value, int) and value > 0 else None


def _usage(response: ModelResponse) -> TokenUsage | None:
    usage = response.usage
    if usage is None or not usage.requests:
        return None
    cached = reported_count(getattr(usage.input_tokens_details, "cached_tokens", 0) or 0)
    reasoning = reported_count(getattr(usage.output_tokens_details, "reasoning_tokens", 0) or 0)
    return TokenUsage(
        reported_count(usage.input_tokens), reported_count(usage.output_tokens), max(0, cached), 0, max(0, reasoning)
    )


def _reply(response: ModelResponse) -> tuple[str, list[tuple[str, Any]]]:
    """The reply's text and the function calls it requests, from the Responses-style output items."""
    texts: list[str] = []
    calls: list[tuple[str, Any]] = []
    for item in response.output:
        kind = getattr(item, "type", None)
        if kind == "message":
            for part in getattr(item, "content", None) or []:
                text = getattr(part, "text", None)
                if isinstance(text, str):
                    texts.append(text)
        elif kind == "function_call":
            try:
                args: Any = json.loads(getattr(item, "arguments", "") or "{}")
            except json.JSONDecodeError:
                args = {"invalid_args": getattr(item, "arguments", "")}
            calls.append((str(getattr(item, "name", "?")), args))
    return "".join(texts), calls

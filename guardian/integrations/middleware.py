"""LangChain v1 ``AgentMiddleware`` door: ``create_agent(model, tools, middleware=[guard.middleware(...)])``.

The same supervisor as the callback, called from the agent's own hooks: a reservation before each
model call and a commit after it (``wrap_model_call``), a charge (and a possible refusal) for each
tool call (``wrap_tool_call``), and every reply and tool result fed to loop detection. What a halt
does is the middleware's ``exit_behavior``:

``"error"``
    raise the halt (``BudgetExceeded``, ``RunKilled``, ``LoopDetected``), as the callback does;
``"end"``
    end the run normally with an ``AIMessage`` saying what stopped it and why (as LangChain's
    ``ModelCallLimitMiddleware`` does); a refused tool call gets an error ``ToolMessage`` first;
``"interrupt"``
    pause the run with LangGraph's ``interrupt()`` carrying the halt's details; a checkpointed run
    resumed with ``Command(resume=...)`` tries again, as a new run, once there is room.

One agent invocation is one run: started in ``before_agent``, ended in ``after_agent`` (or when a
halt, an interrupt or an error leaves the agent). A resumed invocation, which skips
``before_agent``, starts its run at its first model or tool call and is found again by thread.

Prompt tokens are counted by the request's own model where its class has a tokenizer that works here
(``ChatOpenAI``: tiktoken, bound tools included), else approximated (see ``prompt_tokens``).
"""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal
from typing import Annotated, Any, Literal, NotRequired

from langchain.agents.middleware import AgentMiddleware, AgentState, ModelRequest, ModelResponse
from langchain.agents.middleware.types import PrivateStateAttr
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.messages.utils import count_tokens_approximately
from langchain_core.outputs import ChatGeneration, LLMResult
from langchain_core.utils.function_calling import convert_to_openai_tool
from langgraph.channels.untracked_value import UntrackedValue
from langgraph.config import get_config
from langgraph.errors import GraphBubbleUp
from langgraph.types import Command, interrupt

from guardian.amounts import micro_usd
from guardian.errors import GuardianHalt
from guardian.identity import Identity
from guardian.integrations.langchain import prompt_prefix, reply_of, request_schema_tokens
from guardian.integrations.observe import tool_observation
from guardian.integrations.prompt_tokens import PromptCounter
from guardian.logs import get_logger
from guardian.runs import RunState
from guardian.runtree import RunTree
from guardian.supervisor import Supervisor

__all__ = ["ExitBehavior", "GuardianMiddleware", "GuardianState", "OutcomeHook"]

_log = get_logger()

ExitBehavior = Literal["error", "end", "interrupt"]
# The application's judgement of a finished run, from its final state: success, or (success, value in dollars).
OutcomeHook = Callable[[Mapping[str, Any]], "bool | tuple[bool, Decimal | float | str] | None"]
EXIT_BEHAVIORS: tuple[str, ...] = ("error", "end", "interrupt")


class GuardianState(AgentState[Any]):
    """The run id of this invocation: untracked (never checkpointed), so every invocation is its own run."""

    guardian_run: NotRequired[Annotated[str, UntrackedValue, PrivateStateAttr]]


class GuardianMiddleware(AgentMiddleware[GuardianState, Any]):
    """Budgets, kills and loop detection for a ``create_agent`` agent; make it with ``Guardian.middleware``."""

    state_schema = GuardianState

    def __init__(
        self,
        supervisor: Supervisor,
        identity: Identity,
        exit_behavior: ExitBehavior = "error",
        outcome: OutcomeHook | None = None,
        models: Mapping[str, Any] | None = None,
    ) -> None:
        if exit_behavior not in EXIT_BEHAVIORS:
            raise ValueError(f"exit_behavior must be one of {', '.join(EXIT_BEHAVIORS)}, got {exit_behavior!r}")
        super().__init__()
        self.supervisor = supervisor
        self.identity = identity
        self.exit_behavior: ExitBehavior = exit_behavior
        self.outcome = outcome
        self._models: dict[str, Any] = dict(models or {})  # "provider:model" -> chat model, for routes
        self._unbuildable: set[str] = set()
        self._models_lock = threading.Lock()
        self._runs: RunTree[str] = RunTree(supervisor)  # run id, or "thread:<id>" for a resumed invocation
        self._counter = PromptCounter()  # prompt tokens with the request's own model, where it can

    @property
    def name(self) -> str:
        return "GuardianMiddleware"

    @property
    def active_runs(self) -> int:
        return len(self._runs)

    # -- run lifecycle -------------------------------------------------------------------------------

    def before_agent(self, state: GuardianState, runtime: Any) -> dict[str, Any] | None:
        run_id = str(uuid.uuid4())
        self._open(run_id, run_id, getattr(runtime, "context", None))
        return {"guardian_run": run_id}

    async def abefore_agent(self, state: GuardianState, runtime: Any) -> dict[str, Any] | None:
        return self.before_agent(state, runtime)

    def after_agent(self, state: GuardianState, runtime: Any) -> dict[str, Any] | None:
        key = self._key_of(state)
        if self.outcome is not None and key is not None:
            run = self._runs.run_of(key)
            if run is not None:
                self._record_outcome(run, state)
        self._close(key, None)
        return None

    def _record_outcome(self, run: RunState, state: Mapping[str, Any]) -> None:
        """The application's judgement of the finished run (its ``outcome=`` hook): True/False, or (success,
        value in dollars); None records nothing. A hook that fails is logged, never raised into the agent."""
        assert self.outcome is not None
        try:
            judged = self.outcome(state)
            if judged is None:
                return
            success, value = judged if isinstance(judged, tuple) else (judged, 0)
            value_micro_usd = micro_usd(Decimal(str(value)))
            self.supervisor.record_outcome(
                run.run_id, success=bool(success), value_micro_usd=value_micro_usd, identity=run.identity
            )
        except Exception as exc:
            _log.error("outcome_hook_failed", run_id=run.run_id, error_type=type(exc).__name__)

    async def aafter_agent(self, state: GuardianState, runtime: Any) -> dict[str, Any] | None:
        return self.after_agent(state, runtime)

    def _open(self, key: str, run_id: str, context: Any = None) -> RunState:
        config = _config()

        def start(_: str) -> RunState:
            return self.supervisor.start_run(
                run_id, self.identity, thread=_thread_id(config), metadata=config.get("metadata"), context=context
            )

        return self._runs.enter(key, None, start)[0]

    def _close(self, key: str | None, error: BaseException | None) -> None:
        if key is not None:
            self._runs.leave(key, error)

    @staticmethod
    def _key_of(state: Mapping[str, Any]) -> str | None:
        run_id = state.get("guardian_run")
        if isinstance(run_id, str):
            return run_id
        thread = _thread_id()
        return None if thread is None else f"thread:{thread}"

    def _run_for(self, state: Mapping[str, Any], context: Any = None) -> tuple[str, RunState]:
        """This invocation's run; a resumed invocation (no ``before_agent``) gets one keyed by its thread."""
        key = self._key_of(state)
        run = self._runs.run_of(key) if key is not None else None
        if run is not None and key is not None:
            return key, run
        key = key or f"orphan:{uuid.uuid4()}"
        return key, self._open(key, str(uuid.uuid4()), context)

    # -- model calls ---------------------------------------------------------------------------------

    def wrap_model_call(
        self, request: ModelRequest[Any], handler: Callable[[ModelRequest[Any]], ModelResponse[Any]]
    ) -> ModelResponse[Any] | AIMessage:
        admitted = self._admit_model(request)
        if isinstance(admitted, AIMessage):
            return admitted
        key, run, call_id, request = admitted
        try:
            response = handler(request)
        except BaseException as exc:
            self._failed(key, run, call_id, exc)
            raise
        self._settle(run, call_id, request, response)
        return response

    async def awrap_model_call(
        self, request: ModelRequest[Any], handler: Callable[[ModelRequest[Any]], Awaitable[ModelResponse[Any]]]
    ) -> ModelResponse[Any] | AIMessage:
        admitted = self._admit_model(request)
        if isinstance(admitted, AIMessage):
            return admitted
        key, run, call_id, request = admitted
        try:
            response = await handler(request)
        except BaseException as exc:
            self._failed(key, run, call_id, exc)
            raise
        self._settle(run, call_id, request, response)
        return response

    def _admit_model(self, request: ModelRequest[Any]) -> tuple[str, RunState, str, ModelRequest[Any]] | AIMessage:
        """Reserve for this call: (run key, run, call id, the request to send: routed to a cheaper model or with a
        clamped output cap) to go on, or the message that ends the run. After an interrupt is resumed, try again
        as a new run."""
        key, run = self._run_for(request.state, _context_of(request))
        while True:
            call_id = str(uuid.uuid4())
            halt, sent = self._reserve(run, call_id, request)
            if halt is None:
                return key, run, call_id, sent
            stopped = self._stop(key, run, halt)
            if stopped is not None:
                return stopped
            key, run = self._run_for(request.state, _context_of(request))

    def _failed(self, key: str, run: RunState, call_id: str, exc: BaseException) -> None:
        """A model call that raised (a provider error, or a pause from a middleware inside this one) ends the
        invocation unless something outside retries it; either way the run is closed here, since after_agent
        will not run. A retry finds its run gone and opens a new one under the same key."""
        self.supervisor.llm_call_failed(run, call_id)
        self._close(key, exc)

    def _reserve(
        self, run: RunState, call_id: str, request: ModelRequest[Any]
    ) -> tuple[GuardianHalt | None, ModelRequest[Any]]:
        params = _ls_params(request)
        route = self.supervisor.route(run, params.get("ls_provider"), _model_name(request, params))
        if route is not None and not route.shadow:
            target = self._model_for(route.target)
            if target is None:
                route = None
            else:
                request = request.override(model=target)
                params = _ls_params(request)
        prompt = _prompt_of(request)
        tools = [t if isinstance(t, dict) else convert_to_openai_tool(t) for t in request.tools]
        prompt_tokens = self._counter.count(request.model, prompt, tools)
        if prompt_tokens is None:  # the model has no counter of its own that works here
            prompt_tokens = count_tokens_approximately(prompt) + request_schema_tokens(
                {"tools": tools, "response_format": request.response_format} if tools else {}
            )
        max_tokens = params.get("ls_max_tokens")
        prefix = None
        if self.supervisor.wants_prompt_prefixes:
            prefix = prompt_prefix([request.system_message] if request.system_message is not None else [], tools)
        decision = self.supervisor.before_llm_call(
            run,
            call_id,
            provider=params.get("ls_provider"),
            model=_model_name(request, params),
            prompt_tokens=prompt_tokens,
            max_output_tokens=max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else None,
            routed=route,
            clampable=True,
            prefix=prefix,
        )
        if decision.max_output_tokens is not None:  # clamped: what every budget can still afford
            request = request.override(
                model_settings={**request.model_settings, "max_tokens": decision.max_output_tokens}
            )
        return decision.halt, request

    def _model_for(self, target: tuple[str, str]) -> Any:
        """The chat model a route sends calls to: the application's own instance (``models=``), else one built
        with ``init_chat_model`` once. None (and logged once) when it cannot be built: the call is not routed."""
        name = ":".join(target)
        with self._models_lock:
            found = self._models.get(name)
            if found is not None or name in self._unbuildable:
                return found
            try:
                from langchain.chat_models import init_chat_model

                found = self._models[name] = init_chat_model(target[1], model_provider=target[0])
            except Exception as exc:  # a missing provider package or credentials: keep calling the original
                self._unbuildable.add(name)
                _log.error("route_unavailable", target=name, error_type=type(exc).__name__, hint="pass models=")
            return found

    def _settle(self, run: RunState, call_id: str, request: ModelRequest[Any], response: ModelResponse[Any]) -> None:
        message = next((m for m in reversed(response.result) if isinstance(m, AIMessage)), None)
        result = LLMResult(generations=[[ChatGeneration(message=message)]] if message is not None else [[]])
        reply = reply_of(result, observe=run.loop_rule is not None and message is not None)
        if reply.observation is not None:
            observed = dataclasses.replace(reply.observation, prompt=_prompt_of(request), node="model")
            reply = dataclasses.replace(reply, observation=observed)
        self.supervisor.after_llm_call(run, call_id, reply)

    # -- tool calls ----------------------------------------------------------------------------------

    def wrap_tool_call(self, request: Any, handler: Callable[[Any], ToolMessage | Command[Any]]) -> Any:
        admitted = self._admit_tool(request)
        if isinstance(admitted, ToolMessage):
            return admitted
        try:
            result = handler(request)
        except GraphBubbleUp as exc:  # a pause or a jump leaves the invocation: after_agent will not run
            self._close(admitted[0], exc)
            raise
        self._observe_tool(admitted[1], request.tool_call, result)
        return result

    async def awrap_tool_call(
        self, request: Any, handler: Callable[[Any], Awaitable[ToolMessage | Command[Any]]]
    ) -> Any:
        admitted = self._admit_tool(request)
        if isinstance(admitted, ToolMessage):
            return admitted
        try:
            result = await handler(request)
        except GraphBubbleUp as exc:
            self._close(admitted[0], exc)
            raise
        self._observe_tool(admitted[1], request.tool_call, result)
        return result

    def _admit_tool(self, request: Any) -> tuple[str, RunState] | ToolMessage:
        """Charge this tool call: (run key, run) to go on, or the error message a refused call gets instead."""
        key, run = self._run_for(request.state, _context_of(request))
        call = request.tool_call
        while True:
            halt = self.supervisor.on_tool_call(run, str(call.get("id") or uuid.uuid4()), call["name"]).halt
            if halt is None:
                return key, run
            stopped = self._stop(key, run, halt)
            if stopped is not None:
                return ToolMessage(content=stopped.text, tool_call_id=call.get("id") or "", status="error")
            key, run = self._run_for(request.state, _context_of(request))

    def _observe_tool(self, run: RunState, call: Mapping[str, Any], result: Any) -> None:
        if run.loop_rule is not None:
            self.supervisor.observe(run, tool_observation(call["name"], "", call.get("args") or {}, result))

    # -- halts ---------------------------------------------------------------------------------------

    def _stop(self, key: str, run: RunState, halt: GuardianHalt) -> AIMessage | None:
        """Act on a halt: raise it, end the run with a message, or pause. None: resumed, try again."""
        if self.exit_behavior == "error":
            self._close(key, halt)
            raise halt
        if self.exit_behavior == "end":
            return AIMessage(content=f"Stopped by Guardian ({type(halt).__name__}): {halt}")
        self.supervisor.paused(run, halt)
        self._close(key, halt)  # this run is over; a resume is a new run
        interrupt(_interrupt_payload(halt))  # raises GraphInterrupt (pause); returns when resumed
        return None


def _config() -> dict[str, Any]:
    try:
        return dict(get_config())
    except RuntimeError:  # outside a LangGraph run
        return {}


def _thread_id(config: Mapping[str, Any] | None = None) -> str | None:
    thread = ((config if config is not None else _config()).get("configurable") or {}).get("thread_id")
    return None if thread is None else str(thread)


def _context_of(request: Any) -> Any:
    runtime = getattr(request, "runtime", None)
    return getattr(runtime, "context", None)


def _model_name(request: ModelRequest[Any], params: Mapping[str, Any]) -> str:
    return str(params.get("ls_model_name") or getattr(request.model, "model_name", "") or "unknown")


def _prompt_of(request: ModelRequest[Any]) -> list[BaseMessage]:
    messages: list[BaseMessage] = list(request.messages)
    return [request.system_message, *messages] if request.system_message is not None else messages


def _ls_params(request: ModelRequest[Any]) -> dict[str, Any]:
    """The model's LangSmith parameters (provider, model name, max_tokens), as its callbacks would report them."""
    try:
        params = request.model._get_ls_params(**request.model_settings)
    except Exception:  # a model class without them: the name alone
        return {}
    return dict(params)


def _interrupt_payload(halt: GuardianHalt) -> dict[str, Any]:
    payload: dict[str, Any] = {"guardian": type(halt).__name__, "reason": str(halt), "run_id": halt.run_id}
    for name in ("budget", "scope", "unit", "limit", "spent", "requested", "signal", "subject", "target", "value"):
        value = getattr(halt, name, None)
        if value is not None:
            payload[name] = value
    return payload

"""LangChain / LangGraph adapter: a callback handler that feeds the supervisor and raises its halts.

It is a *sync* ``BaseCallbackHandler`` with ``raise_error=True`` (an async handler's raise is
swallowed on sync paths) and ``run_inline=True`` (otherwise, under ``ainvoke``, every event is
hopped to a thread pool). A raise in ``on_chat_model_start`` reaches the caller unchanged and
the provider is never called. Handlers run on worker threads during graph fan-out, so every
piece of shared state is behind one lock.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import threading
import traceback
from collections import OrderedDict
from collections.abc import Callable, Collection, Sequence
from typing import Any, TypeVar
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.messages.utils import count_tokens_approximately
from langchain_core.outputs import LLMResult

from guardian.errors import GuardianHalt, GuardianInternalError, IdentityError
from guardian.estimates import reported_count
from guardian.identity import Identity
from guardian.integrations.observe import ObservationTracker, model_observation, tool_name
from guardian.logs import get_logger
from guardian.loops import Observation
from guardian.pricing import TokenUsage
from guardian.runs import CHARS_PER_TOKEN, Decision, Reply, Route, RunState
from guardian.runtree import RunTree
from guardian.supervisor import Supervisor

__all__ = [
    "GuardianCallbackHandler",
    "chunk_chars",
    "output_tokens_of",
    "prompt_prefix",
    "reply_of",
    "request_schema_tokens",
    "usage_from_result",
]

_IDENTITY_KEYS = ("guardian_agent", "guardian_user", "guardian_tenant")
_MAX_PENDING_ROUTES = 4096
_log = get_logger()
_Method = TypeVar("_Method", bound=Callable[..., None])


def _guarded(*, before_spend: bool) -> Callable[[_Method], _Method]:
    """A bug of ours must not surface as a raw traceback in someone's agent.

    Halts pass through. Any other error is logged (``guardian_internal_error``); before a model or
    tool call is paid for, ``on_store_error: fail_closed`` turns it into a ``GuardianInternalError``
    halt (nothing unaccounted is let through), ``fail_open`` lets the call go on. After the spend,
    it is only logged: the agent's result is already paid for.
    """

    def decorate(method: _Method) -> _Method:
        @functools.wraps(method)
        def guarded(self: GuardianCallbackHandler, *args: Any, **kwargs: Any) -> None:
            try:
                method(self, *args, **kwargs)
            except (GuardianHalt, IdentityError):
                raise  # a halt, or the application's own mistake (an empty name): the caller must see it as is
            except Exception as exc:
                run_id = kwargs.get("run_id")
                # No traceback and no exception text: their frames' locals and messages can hold the prompt, the
                # reply or a tool's arguments, which must never reach a log. Where it failed is enough to report.
                _log.error(
                    "guardian_internal_error",
                    callback=method.__name__,
                    run_id=str(run_id),
                    error_type=type(exc).__name__,
                    location=_where(exc),
                )
                if before_spend and not self.supervisor.fail_open:
                    if isinstance(run_id, UUID):
                        self._exit(run_id, exc)
                    raise GuardianInternalError(
                        f"Guardian failed in {method.__name__} ({type(exc).__name__} at {_where(exc)}); the call "
                        "was refused because the policy sets on_store_error: fail_closed",
                        run_id=None if run_id is None else str(run_id),
                    ) from exc

        return guarded  # type: ignore[return-value]

    return decorate


def _where(exc: BaseException) -> str:
    """Where an exception was raised, as ``module.py:line in function``: code locations only, never values."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "unknown"
    last = frames[-1]
    return f"{os.path.basename(last.filename)}:{last.lineno} in {last.name}"


class GuardianCallbackHandler(BaseCallbackHandler):
    """One handler per identity; attach it to ``config={"callbacks": [handler]}``."""

    raise_error = True
    run_inline = True

    def __init__(self, supervisor: Supervisor, identity: Identity) -> None:
        self.supervisor = supervisor
        self.identity = identity
        self._tree: RunTree[UUID] = RunTree(supervisor)
        self._warned_below_top = False  # callback_not_at_root is logged once per handler
        # A router's LangChain run id -> the route it chose for the model call it makes next (that call's parent).
        self._routes: OrderedDict[UUID, Route] = OrderedDict()
        self._routes_lock = threading.Lock()
        self._steps = ObservationTracker()  # tool calls and replies (with their prompts), for loop detection

    # -- run tree ------------------------------------------------------------------------------------

    def _enter(self, run_id: UUID, parent_run_id: UUID | None, metadata: dict[str, Any] | None) -> RunState:
        def start(root: UUID) -> RunState:
            thread = (metadata or {}).get("thread_id")  # LangGraph copies config's thread_id here
            named = self._named_identity(metadata)
            return self.supervisor.start_run(
                str(root), named, thread=None if thread is None else str(thread), metadata=metadata
            )

        run, started = self._tree.enter(run_id, parent_run_id, start)
        # A root that carries langgraph_node runs inside a graph node: this handler was given to a model or an inner
        # runnable (model.with_config(callbacks=...)), not to the graph. It then sees each call alone: every call is
        # its own run, so run budgets and loop detection never add up.
        if started and metadata and "langgraph_node" in metadata and not self._warned_below_top:
            self._warned_below_top = True
            _log.warning(
                "callback_not_at_root",
                **run.fields,
                fix="pass the handler in the graph's own config: graph.invoke(inputs, config={'callbacks': [handler]})",
            )
        return run

    def _state(self, run_id: UUID) -> RunState | None:
        return self._tree.run_of(run_id)

    def _exit(self, run_id: UUID, error: BaseException | None = None) -> None:
        self._tree.leave(run_id, error)

    def _named_identity(self, metadata: dict[str, Any] | None) -> Identity:
        if not metadata or not any(k in metadata for k in (*_IDENTITY_KEYS, "guardian_tags")):
            return self.identity
        names = {}
        for field in ("agent", "user", "tenant"):
            value = metadata.get(f"guardian_{field}")
            if value is None:  # absent or None: the handler's own name
                names[field] = str(getattr(self.identity, field))
            elif not str(value).strip():
                raise IdentityError(
                    f"config metadata guardian_{field} is empty: give a non-empty name, or leave the key out "
                    f"to use the handler's {field} ({getattr(self.identity, field)!r})"
                )
            else:
                names[field] = str(value)
        return Identity.of(**names, tags=self.identity.tags | _tags(metadata.get("guardian_tags")))

    def route_for(self, node: UUID | None, provider: str | None, model: str, targets: Collection[str]) -> Route | None:
        """For ``guard.router``: where the model call the router (LangChain run ``node``) makes next should go,
        among the models it has (``targets``, as ``"provider:model"``). The route is remembered for that call, so
        its reservation and record name the rule and the saving."""
        run = self._tree.run_of(node) if node is not None else None
        if run is None or node is None:
            return None
        route = self.supervisor.route(run, provider, model)
        if route is None or (not route.shadow and ":".join(route.target) not in targets):
            return None  # a route to a model the router does not have is not taken, nor recorded
        with self._routes_lock:
            self._routes[node] = route
            while len(self._routes) > _MAX_PENDING_ROUTES:  # routes whose call never started
                self._routes.popitem(last=False)
        return route

    @property
    def active_runs(self) -> int:
        return len(self._tree)

    # -- chains --------------------------------------------------------------------------------------

    @_guarded(before_spend=True)
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
        # Node updates are state, not what a model read: loop detection does not need them (see guardian.loops).
        self._enter(run_id, parent_run_id, metadata)

    @_guarded(before_spend=False)
    def on_chain_end(self, outputs: dict[str, Any], *, run_id: UUID, **kwargs: Any) -> None:
        self._exit(run_id)

    @_guarded(before_spend=False)
    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._exit(run_id, error)

    # -- model calls ---------------------------------------------------------------------------------

    @_guarded(before_spend=True)
    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        params = kwargs.get("invocation_params") or {}
        prompt_tokens = sum(count_tokens_approximately(batch) for batch in messages)
        prompt_tokens += request_schema_tokens(params) * len(messages)
        prefix = None
        if self.supervisor.wants_prompt_prefixes:
            prefix = prompt_prefix(messages[0] if messages else [], params.get("tools") or ())
        self._start_call(run_id, parent_run_id, metadata, params, serialized, prompt_tokens, prefix)
        run = self._state(run_id)
        if run is not None and run.loop_rule is not None:
            self._steps.on_chat_model_start(run_id, messages, metadata)

    @_guarded(before_spend=True)
    def on_llm_start(
        self,
        serialized: dict[str, Any],
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        prompt_tokens = sum(count_tokens_approximately([("human", p)]) for p in prompts)
        self._start_call(run_id, parent_run_id, metadata, kwargs.get("invocation_params"), serialized, prompt_tokens)

    def _start_call(
        self,
        run_id: UUID,
        parent_run_id: UUID | None,
        metadata: dict[str, Any] | None,
        invocation_params: dict[str, Any] | None,
        serialized: dict[str, Any] | None,
        prompt_tokens: int,
        prefix: tuple[str, int] | None = None,
    ) -> None:
        run = self._enter(run_id, parent_run_id, metadata)
        meta = metadata or {}
        params = invocation_params or {}
        model = meta.get("ls_model_name") or params.get("model") or params.get("model_name") or _name(serialized)
        provider = meta.get("ls_provider")
        max_tokens = meta.get("ls_max_tokens") or params.get("max_tokens") or params.get("max_completion_tokens")
        with self._routes_lock:
            routed = self._routes.pop(parent_run_id, None) if parent_run_id is not None else None
        decision = self.supervisor.before_llm_call(
            run,
            str(run_id),
            provider=provider,
            model=str(model),
            prompt_tokens=prompt_tokens,
            max_output_tokens=max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else None,
            prefix=prefix,
            routed=routed,
        )
        self._act(decision, run_id)

    @_guarded(before_spend=True)
    def on_llm_new_token(
        self,
        token: str | list[str | dict[str, Any]],
        *,
        run_id: UUID,
        **kwargs: Any,
    ) -> None:
        chars = chunk_chars(token, kwargs.get("chunk"))
        if not chars:
            return  # the usage chunk carries no output
        run = self._state(run_id)
        if run is None:
            return
        decision = self.supervisor.on_llm_output(run, str(run_id), chars)
        if decision.halt is not None:
            # The stream is aborted by this raise; on_llm_error then commits what arrived.
            raise decision.halt

    @_guarded(before_spend=False)
    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        try:
            run = self._state(run_id)
            if run is not None:
                reply = reply_of(response, observe=run.loop_rule is not None)
                if reply.observation is not None:
                    reply = dataclasses.replace(reply, observation=self._steps.with_prompt(run_id, reply.observation))
                self.supervisor.after_llm_call(run, str(run_id), reply)
        finally:
            self._exit(run_id)

    @_guarded(before_spend=False)
    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        try:
            self._steps.on_llm_error(run_id)
            run = self._state(run_id)
            if run is not None:
                partial = kwargs.get("response")
                usage = usage_from_result(partial) if isinstance(partial, LLMResult) else None
                self.supervisor.llm_call_failed(run, str(run_id), usage)
        finally:
            self._exit(run_id, error)

    # -- tools ---------------------------------------------------------------------------------------

    @_guarded(before_spend=True)
    def on_tool_start(
        self,
        serialized: dict[str, Any],
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        run = self._enter(run_id, parent_run_id, metadata)
        name = tool_name(serialized, kwargs.get("name"))
        decision = self.supervisor.on_tool_call(run, str(run_id), name or "tool")
        self._act(decision, run_id)
        if run.loop_rule is not None:
            self._steps.on_tool_start(run_id, name, input_str, inputs)

    @_guarded(before_spend=False)
    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        try:
            self._observe(run_id, self._steps.on_tool_end(run_id, output))
        finally:
            self._exit(run_id)

    @_guarded(before_spend=False)
    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        try:
            self._observe(run_id, self._steps.on_tool_error(run_id, error))
        finally:
            self._exit(run_id, error)

    # -- loops ---------------------------------------------------------------------------------------

    def _observe(self, run_id: UUID, observation: Observation | None) -> None:
        """A loop trips the run; the halt is raised at its next model or tool call, not from here,
        so the step that just finished completes normally."""
        if observation is None:
            return
        run = self._state(run_id)
        if run is not None:
            self.supervisor.observe(run, observation)

    # -- acting on decisions -------------------------------------------------------------------------

    def _act(self, decision: Decision, run_id: UUID) -> None:
        if decision.halt is None:
            return
        # No end event follows a raise from a start callback: forget the run here.
        self._exit(run_id, decision.halt)
        raise decision.halt


def prompt_prefix(messages: Sequence[BaseMessage], tools: Sequence[Any]) -> tuple[str, int] | None:
    """The stable head of a prompt, which providers can cache: its leading system messages and the bound tools'
    schemas. (digest, tokens), the digest naming it without its text; None when there is no such head."""
    system = []
    for message in messages:
        if message.type != "system":
            break
        system.append(message)
    schemas = [t for t in tools if isinstance(t, dict)]
    if not system and not schemas:
        return None
    tokens = count_tokens_approximately(system) + request_schema_tokens({"tools": schemas})
    digest = hashlib.blake2b(digest_size=6)
    for message in system:
        digest.update(str(message.content).encode())
    for schema in schemas:
        digest.update(str((schema.get("function") or schema).get("name", "")).encode())
    digest.update(str(tokens).encode())
    return digest.hexdigest(), tokens


def reply_of(response: LLMResult, *, observe: bool = False) -> Reply:
    """A model call's end as the engine takes it, read from LangChain's ``LLMResult`` once: the provider's usage,
    whether the reply came from LangChain's cache, the output counted from the reply when there is no usage, and
    (with ``observe``) the reply for loop detection."""
    usage = usage_from_result(response)
    hit = is_cache_hit(response)
    estimate = output_tokens_of(response) if usage is None and not hit else 0
    observation = None
    if observe and not hit:
        observation = model_observation(response, tokens=usage.total_tokens if usage is not None else None)
    return Reply(usage, estimate, hit, observation)


def is_cache_hit(response: LLMResult) -> bool:
    """langchain-core answers a cached call with the cached message, its ``usage_metadata["total_cost"]`` set
    to 0: the only mark a cache hit leaves (a provider never reports ``total_cost``)."""
    generations = [g for batch in response.generations for g in batch[:1]]
    if not generations:
        return False
    for generation in generations:
        usage = getattr(getattr(generation, "message", None), "usage_metadata", None) or {}
        if usage.get("total_cost") != 0:
            return False
    return True


def usage_from_result(response: LLMResult) -> TokenUsage | None:
    """The ``usage_metadata`` of the response, summed over prompts; None when the provider reported none.

    Per prompt only the first choice counts: with ``n > 1`` providers report the whole response's usage on
    every choice (langchain-openai copies it to each), so summing choices would charge it n times.
    """
    found = False
    totals = [0, 0, 0, 0, 0]
    for generations in response.generations:
        for generation in generations[:1]:
            message = getattr(generation, "message", None)
            usage = getattr(message, "usage_metadata", None)
            if not usage:
                continue
            found = True
            input_details = usage.get("input_token_details") or {}
            output_details = usage.get("output_token_details") or {}
            totals[0] += reported_count(usage.get("input_tokens"))
            totals[1] += reported_count(usage.get("output_tokens"))
            totals[2] += reported_count(input_details.get("cache_read"))
            totals[3] += _cache_writes(input_details)
            totals[4] += reported_count(output_details.get("reasoning"))
    if not found:
        legacy = (response.llm_output or {}).get("token_usage") or {}
        if not legacy:
            return None
        totals[0] = reported_count(legacy.get("prompt_tokens"))
        totals[1] = reported_count(legacy.get("completion_tokens"))
    return TokenUsage(*totals)


def _cache_writes(details: dict[str, Any]) -> int:
    """Tokens written to the provider's prompt cache. langchain-anthropic reports them as ``cache_creation``, or,
    when Anthropic breaks them down by lifetime, as ``ephemeral_5m_input_tokens`` and ``ephemeral_1h_input_tokens``
    with ``cache_creation`` set to 0 (so that they are not counted twice)."""
    by_lifetime = reported_count(details.get("ephemeral_5m_input_tokens")) + reported_count(
        details.get("ephemeral_1h_input_tokens")
    )
    return reported_count(details.get("cache_creation")) or by_lifetime


def _tags(value: Any) -> frozenset[str]:
    """``guardian_tags`` as one string or a list of them (a bare string is one tag, not its letters)."""
    if not value:
        return frozenset()
    if isinstance(value, str):
        return frozenset({value})
    return frozenset(str(v) for v in value)


def _approx_tokens(chars: int) -> int:
    """langchain-core's approximation (4 characters a token), at least 1 for any output at all."""
    return max(1, (chars + CHARS_PER_TOKEN // 2) // CHARS_PER_TOKEN) if chars else 0


def chunk_chars(token: str | list[str | dict[str, Any]], chunk: Any) -> int:
    """Characters of output a streamed chunk carries: its text and any tool-call arguments and names."""
    if isinstance(token, str):
        chars = len(token)
    else:
        chars = sum(len(part) if isinstance(part, str) else len(str(part.get("text", ""))) for part in token)
    message = getattr(chunk, "message", None)
    for call in getattr(message, "tool_call_chunks", None) or ():
        chars += len(call.get("args") or "") + len(call.get("name") or "")
    return chars


def request_schema_tokens(params: dict[str, Any]) -> int:
    """Tokens of the schemas a request sends besides its messages: tools, legacy functions and a structured-output
    ``response_format``. Providers bill them as prompt; counted as langchain-core's ``count_tokens_approximately``
    counts tools (their JSON, 4 characters a token)."""
    schemas: list[Any] = [t for key in ("tools", "functions") for t in (params.get(key) or ()) if isinstance(t, dict)]
    fmt = params.get("response_format")
    if fmt:
        schemas.append(fmt)
    return _schema_tokens.tokens(schemas) if schemas else 0


class _SchemaTokens:
    """Schema token counts, cached by the identity of the schema objects.

    A model bound once (``bind_tools``, ``with_structured_output``) sends the very same schema objects on every
    call, and serialising twenty tool schemas costs ~150 µs a call. An entry keeps its objects alive, so their
    ids cannot be reused by other objects while it is cached; a schema mutated in place keeps its old count
    (schemas are built once and never edited in practice). Bounded, least recently used first out.
    """

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._entries: OrderedDict[tuple[int, ...], tuple[list[Any], int]] = OrderedDict()
        self._lock = threading.Lock()

    def tokens(self, schemas: list[Any]) -> int:
        key = tuple(map(id, schemas))
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None:
                self._entries.move_to_end(key)
                return hit[1]
        chars = sum(len(json.dumps(_schema_of(s), default=str)) for s in schemas)
        tokens = math.ceil(chars / CHARS_PER_TOKEN)
        with self._lock:
            self._entries[key] = (schemas, tokens)
            if len(self._entries) > self._size:
                self._entries.popitem(last=False)
        return tokens


def _schema_of(value: Any) -> Any:
    """A schema as sent: a dict as it is, a pydantic class (structured output) as its JSON schema."""
    if isinstance(value, dict):
        return value
    schema = getattr(value, "model_json_schema", None)
    return schema() if callable(schema) else {"name": str(value)}


_schema_tokens = _SchemaTokens()


def output_tokens_of(response: LLMResult) -> int:
    """An estimate of the output of a response that reported no usage: its text and tool calls."""
    chars = 0
    for generations in response.generations:
        for generation in generations:
            chars += len(generation.text or "")
            message = getattr(generation, "message", None)
            for call in getattr(message, "tool_calls", None) or ():
                chars += len(call.get("name") or "") + len(json.dumps(call.get("args") or {}))
    return _approx_tokens(chars)


def _name(serialized: dict[str, Any] | None) -> str:
    if not serialized:
        return ""
    name = serialized.get("name")
    if name:
        return str(name)
    ids: Sequence[str] = serialized.get("id") or ()
    return str(ids[-1]) if ids else ""

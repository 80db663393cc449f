"""The supervisor: one short driver per framework-neutral event of a run.

Each driver builds its request with the pure steps of :mod:`guardian.runs`, makes one store call, judges the
answer (again with :mod:`guardian.runs`), then emits events and alerts. Adapters call these drivers, one per
framework event, and act on the ``Decision``; the run tree that maps framework events to runs is
:mod:`guardian.runtree`. Nothing here knows a framework.

Events: :meth:`start_run`, :meth:`end_run`; a model call's :meth:`before_llm_call`, :meth:`on_llm_output`
(streamed output), :meth:`after_llm_call`, :meth:`llm_call_failed`; :meth:`on_tool_call`; :meth:`observe` (a step
for loop detection). :meth:`renew_holds` is driven by the background renewer.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal, Protocol

from guardian.alerts._model import Alert
from guardian.amounts import METRICS, Amounts, metric_label, unit_named, usd
from guardian.errors import (
    BudgetExceeded,
    GuardianHalt,
    LoopDetected,
    RunKilled,
    StoreError,
    StoreUnavailable,
    UnknownModel,
)
from guardian.estimates import OutputHistory, check_usage
from guardian.history import UsageRecord
from guardian.identity import Identity
from guardian.keys import KeyBuilder
from guardian.logs import get_logger
from guardian.loops import LoopDetector, LoopVerdict, Observation
from guardian.outage import OutageGate
from guardian.policy import Budget, LoopRule, Policy
from guardian.pricing import Pricer, TokenUsage
from guardian.renewal import HoldRenewer
from guardian.runs import (
    CHARS_PER_TOKEN,
    PROCEED,
    Binding,
    Bucket,
    CallState,
    Decision,
    Plan,
    Reply,
    Route,
    RunState,
    affordable_output,
    bind,
    bucket_alert,
    bucket_for,
    cache_figures,
    cache_hit_record,
    call_record,
    charged,
    daily_counter_span,
    extension_wanted,
    halt_record,
    is_over_hold,
    loop_alert,
    make_plan,
    priced,
    routed_to,
    shared_buckets,
    thresholds_passed,
    used_share,
    would_halt_record,
)
from guardian.store.base import (
    BucketState,
    ChargeMode,
    CommitRequest,
    Counter,
    HistoryEntry,
    KillCheck,
    ReleaseRequest,
    RenewRequest,
    ReserveRequest,
    ReserveResult,
    Store,
)
from guardian.telemetry import Telemetry

__all__ = ["CHARS_PER_TOKEN", "AlertSubmitter", "CallState", "Decision", "Reply", "RunState", "Supervisor"]

RETIRED_RUN_KEEP_S = 3_600.0  # a finished run's buckets in an in-process store: long enough to inspect
_CACHE_LIMIT = 10_000  # identities whose plan and shared buckets are kept


class AlertSubmitter(Protocol):
    def submit(self, alert: Alert) -> None: ...


class Supervisor:
    def __init__(
        self,
        policy: Policy,
        store: Store,
        *,
        keys: KeyBuilder | None = None,
        pricer: Pricer | None = None,
        clock: Callable[[], float] = time.time,
        alerts: AlertSubmitter | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.policy = policy
        self.telemetry = telemetry
        self.store = store
        self.keys = keys or KeyBuilder()
        self.clock = clock
        self.pricer = pricer or Pricer(policy.prices, clock)
        self.alerts = alerts
        self.log = get_logger()
        self._settings = policy.settings
        self.outage = OutageGate(policy.settings.on_store_error, clock)
        self._alerted: set[str] = set()
        self._telemetry_failed = False  # telemetry_error is logged once
        # Per identity: its plan, and its shared buckets (valid until the earliest window end).
        self._plans: dict[Identity, Plan] = {}
        self._shared: dict[Identity, tuple[float, list[Bucket]]] = {}
        self._warned_models: set[tuple[str | None, str]] = set()  # unknown_model: warn logs once per model
        self._estimated_models: set[tuple[str | None, str, bool]] = set()  # usage_estimated: the hint once per model
        self.outputs = OutputHistory()
        # Calls between reservation and settlement, for renewing their holds; the renewer starts with the first.
        self._live: dict[str, CallState] = {}
        self._live_lock = threading.Lock()
        self.renewer = HoldRenewer(self, self._settings.reservation_ttl_s / 3)

    @property
    def fail_open(self) -> bool:
        return self.outage.fail_open

    @property
    def wants_prompt_prefixes(self) -> bool:
        """Whether adapters should digest each call's stable prompt prefix: only the history uses it (cacheable
        spend), so without a history the work is skipped."""
        return self._settings.history

    # -- runs ----------------------------------------------------------------------------------------------------

    def start_run(
        self,
        run_id: str,
        identity: Identity,
        *,
        thread: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        context: Any = None,
    ) -> RunState:
        """A run begins. ``thread`` is its conversation (LangGraph's ``thread_id``), for thread budgets; the
        policy's ``identity:`` mapping completes ``identity`` from the run's ``metadata`` and runtime ``context``,
        and refuses (``IdentityError``) a run that lacks a name it requires, before anything is spent."""
        if self.policy.identity is not None:
            identity = self.policy.identity.resolve(identity, metadata, context)
        run = RunState.start(run_id, identity, self._plan_of(identity), self.keys, thread=thread, now=self.clock())
        self.log.info("run_started", **run.fields, budgets=run.budget_names)
        return run

    def end_run(self, run: RunState, *, error: BaseException | None = None) -> None:
        """Settle what the run left open, make its usage durable before the run returns to its caller (one store
        round trip), and judge the thresholds its last commits may have passed. A second call does nothing."""
        with run.lock:
            if run.ended:
                return
            run.ended = True
            dangling = list(run.calls)
        for call_id in dangling:
            call = self._pop_call(run, call_id)
            if call is not None:
                self._settle_unfinished(run, call)
        self._sync(run)
        run_keys = [b.target.key for b in run.binding.buckets if b.budget.scope == "run"]
        if run_keys:
            self.store.retire(run_keys, self.clock(), RETIRED_RUN_KEEP_S)
        self.log.info(
            "run_finished",
            **run.fields,
            halted=type(run.halt).__name__ if run.halt else None,
            error=type(error).__name__ if error is not None and run.halt is None else None,
            **{f"spent_{k}": v for k, v in unit_named(run.spent.nonzero()).items()},
        )

    def _sync(self, run: RunState) -> None:
        """A process may die right after its run returns (a one-shot job, a SIGTERM'd pod): the run's deferred
        commits are written now, with the states of the buckets whose thresholds may have been passed."""
        if not run.binding.buckets:
            return  # never reserved: nothing of this run can be pending
        watched = run.binding.watched()
        now = self.clock()
        try:
            states = self.store.sync([b.target.key for b in watched], now)
        except StoreError as exc:
            self.outage.failed(exc, "sync", run.fields)
            return
        for b, state in zip(watched, states, strict=True):
            if state is not None:
                self._judge(run, b, state, now)

    # -- model calls ---------------------------------------------------------------------------------------------

    def before_llm_call(
        self,
        run: RunState,
        call_id: str,
        *,
        provider: str | None,
        model: str,
        prompt_tokens: int,
        max_output_tokens: int | None,
        routed: Route | None = None,
        clampable: bool = False,
        prefix: tuple[str, int] | None = None,
    ) -> Decision:
        """Reserve the call's prompt and output hold on every budget of the run, all or nothing. ``routed``: a
        routing rule sent the call here (``route``). ``clampable``: the adapter can lower the call's output cap, so
        with ``on_low_budget: clamp`` a call whose cap does not fit is sent with the cap that does
        (``Decision.max_output_tokens``) rather than refused, as long as ``min_output_tokens`` fit."""
        if run.halt is not None:
            return Decision(run.halt)
        now = self.clock()
        history_key = (run.identity.agent, provider, model)
        capped = max_output_tokens is not None
        output_hold = max_output_tokens or self.outputs.hold(history_key, self._settings.default_max_output_tokens)
        estimate = self._priced(run, provider, model, prompt_tokens, output_hold)
        if isinstance(estimate, Decision):
            return estimate
        binding = self._bind(run, now)
        clamp = clampable and self._settings.on_low_budget == "clamp"
        request = ReserveRequest(
            call_id=call_id,
            targets=binding.targets,
            amount=estimate,
            now=now,
            ttl_s=self._settings.reservation_ttl_s,
            kill_checks=run.kill_checks,
            want_states=binding.want_states or self._wants_states or clamp,
            probe=clamp,  # a clamped retry may follow: the first refusal is not counted as one
        )
        result = self._reserve(run, request, binding, op="reserve", refusal_halts=not clamp)
        if isinstance(result, Decision):
            return result
        clamped = False
        if result is not None and result.refusal is not None:  # clamping, and the full cap did not fit (uncounted)
            cost_of = self._cost_with(provider, model, prompt_tokens)
            cap = affordable_output(binding.buckets, result.states, prompt_tokens, cost_of)
            clamped = self._settings.min_output_tokens <= cap < output_hold
            if clamped:
                estimate = self._priced(run, provider, model, prompt_tokens, cap)
                if isinstance(estimate, Decision):
                    return estimate
                request.amount = estimate
            # The clamped call, or the full one again, counted and halting as any: another process may have taken
            # the room meanwhile (or freed some).
            request.probe, request.targets = False, binding.targets
            result = self._reserve(run, request, binding, op="reserve")
            if isinstance(result, Decision):
                return result
            if clamped:
                self.log.info(
                    "call_clamped",
                    **run.fields,
                    call_id=call_id,
                    model=model,
                    max_tokens_asked=output_hold,
                    max_tokens=cap,
                )
                output_hold, capped = cap, True
        call = CallState(
            call_id=call_id,
            provider=provider,
            model=model,
            binding=binding,
            estimate=estimate,
            prompt_tokens=prompt_tokens,
            output_reserved=output_hold,
            capped=capped,
            reserved=result is not None,
            history_key=history_key,
            started_at=now,
            routed=routed,
            prefix=prefix,
            clamped=clamped,
            renewed_at=now,
        )
        decision = Decision(max_output_tokens=output_hold) if clamped else PROCEED
        with run.lock:
            run.calls[call_id] = call
        if result is None:
            return decision
        with self._live_lock:
            self._live[call_id] = call
        self.renewer.ensure_running()
        self.log.debug(
            "call_reserved",
            **run.fields,
            call_id=call_id,
            model=model,
            budgets=run.budget_names,
            reserved_tokens=estimate.total_tokens,
            reserved_cost_micro_usd=estimate.cost_usd,
            output_hold=output_hold,
            output_hold_from="max_tokens" if capped else "history",
        )
        self._judge_all(run, binding, result, now)
        self._tell("decision", run, "clamped" if clamped else "allow", "", now)
        return decision

    def _cost_with(self, provider: str | None, model: str, prompt_tokens: int) -> Callable[[int], int]:
        """A call's cost as a function of its output tokens (for clamping)."""
        return lambda output: self.pricer.cost(provider, model, TokenUsage(prompt_tokens, output)) or 0

    def route(self, run: RunState, provider: str | None, model: str) -> Route | None:
        """Where a model call should go under the run's routing rules: a cheaper model while a rule's conditions
        hold, or None. In shadow mode the route comes back marked ``shadow``: the adapter calls the model it was
        asked for, and the saving the route would have made is recorded (``would_route``). A bug here means no
        route, never an error in the agent."""
        try:
            return self._route(run, provider, model)
        except Exception as exc:
            self.log.error("guardian_internal_error", callback="route", error_type=type(exc).__name__, **run.fields)
            return None

    def _route(self, run: RunState, provider: str | None, model: str) -> Route | None:
        rules = run.plan.routing
        if not rules or run.halt is not None:
            return None
        origin = (provider or "", model)
        candidates = tuple(r for r in rules if origin in r.route)
        if not candidates:
            return None
        budgets = {r.budget for r in candidates if r.budget is not None}
        shares = self._shares(run, budgets) if budgets else {}
        with run.lock:  # the loop detector is fed by other branches of the run
            suspected = run.loop_suspected
        route = routed_to(
            candidates, origin, shares=shares, loop_suspected=suspected, run_cost_micro_usd=run.spent.cost_usd
        )
        if route is None:
            return None
        if self._settings.mode == "shadow":
            return dataclasses.replace(route, shadow=True)
        self._tell("decision", run, "routed", route.rule, self.clock())
        return route

    def _shares(self, run: RunState, budgets: set[str]) -> dict[str, float]:
        """How much of each named budget the run's buckets have used now (one store read; none while fail_open
        skips a store that just failed, so an outage adds no timeout to routable calls)."""
        if self.outage.skipping():
            return {}
        binding = self._bind(run, self.clock())
        buckets = [b for b in binding.buckets if b.budget.name in budgets]
        try:
            states = self.store.read([b.target.key for b in buckets], self.clock())
        except StoreError as exc:
            self.outage.failed(exc, "read", run.fields)
            return {}  # no route while the store cannot say how much is left
        shares: dict[str, float] = {}
        for bucket, state in zip(buckets, states, strict=True):
            share = used_share(bucket.budget.limited(), state.spent, state.reserved) if state is not None else 0.0
            if share is not None:
                shares[bucket.budget.name] = max(shares.get(bucket.budget.name, 0.0), share)
        return shares

    def on_llm_output(self, run: RunState, call_id: str, chars: int) -> Decision:
        """A stream produced ``chars`` characters of output (text and tool-call arguments).

        Characters add up across chunks and are converted to tokens once, so a stream of one-character fragments
        is not counted a token per chunk. A call with an output cap already holds all it can produce: its hold
        never grows. Without a cap, the hold grows a block at a time on reaching it; when a whole block does not
        fit, it asks only for the room the next token needs, and the stream is cut when even that is refused.
        After one refused block the call is near its limit and asks only for the next token from then on: another
        block would be refused too, costing a second ledger call per token.
        """
        call = run.calls.get(call_id)
        if call is None:
            return PROCEED if run.halt is None else Decision(run.halt)
        call.chars_seen += chars
        # Extend on reaching the hold, not on passing it, so a refused extension never overspends it.
        if call.capped or not call.reserved or call.tokens_seen < call.output_reserved:
            return PROCEED
        granted: Decision | bool = False
        if not call.near_limit:
            granted = self._extend(run, call, extension_wanted(call, self._settings.stream_block_tokens), False)
            call.near_limit = granted is False
        if granted is False:
            granted = self._extend(run, call, extension_wanted(call, self._settings.stream_block_tokens), True)
        return granted if isinstance(granted, Decision) else PROCEED

    def _extend(self, run: RunState, call: CallState, output_tokens: int, last_try: bool) -> Decision | bool:
        """Raise the call's hold to ``output_tokens`` of output. True when granted (or passed under fail_open);
        a halt Decision; False when refused and not ``last_try``, leaving the hold as it was."""
        estimate = self._priced(run, call.provider, call.model, call.prompt_tokens, output_tokens)
        if isinstance(estimate, Decision):
            return estimate
        request = ReserveRequest(
            call_id=call.call_id,
            targets=call.targets,
            amount=estimate,
            now=self.clock(),
            ttl_s=self._settings.reservation_ttl_s,
            mode=ChargeMode.EXTEND,
            kill_checks=run.kill_checks,  # an operator kill stops a running stream too
            want_states=False,
            probe=not last_try,  # its refusal is followed by a smaller try, not a refused call
        )
        result = self._reserve(run, request, call.binding, op="extend", refusal_halts=last_try)
        if isinstance(result, Decision):
            return result
        if result is not None and result.refusal is not None:
            return False
        call.output_reserved = output_tokens
        call.estimate = estimate
        call.renewed_at = request.now
        return True

    def after_llm_call(self, run: RunState, call_id: str, reply: Reply) -> Amounts:
        """A model call ended: commit what it really used, or, for a cache hit, release its hold and count what it
        saved; then feed its reply to loop detection. Without reported usage (streams report it only when asked,
        e.g. ``ChatOpenAI(stream_usage=True)``), the prompt estimate and the output seen or counted stand in."""
        call = self._pop_call(run, call_id)
        if call is None:
            return Amounts()
        if reply.cache_hit:
            self._cache_hit(run, call, reply.usage)
            return Amounts()
        usage = reply.usage
        if usage is None:
            self._note_estimated(run, call)
            usage = TokenUsage(call.prompt_tokens, max(call.tokens_seen, reply.output_estimate))
        charged_amounts = self._settle(run, call, usage, estimated=reply.usage is None)
        if reply.observation is not None and run.loop_rule is not None:
            self.observe(run, reply.observation)
        return charged_amounts

    def _routing_saving(self, run: RunState, call: CallState, usage: TokenUsage, actual: Amounts) -> int:
        """What a routed call saved against the model it was asked for, priced on its real usage (logged)."""
        route = call.routed
        if route is None:
            return 0
        # Priced once: the model not called (in shadow mode the call went to the one asked for, not the cheaper one).
        other = route.target if route.shadow else route.origin
        other_cost = self.pricer.cost(other[0] or None, other[1], usage) or 0
        saved = max(0, actual.cost_usd - other_cost if route.shadow else other_cost - actual.cost_usd)
        self.log.info(
            "would_route" if route.shadow else "model_routed",
            **run.fields,
            call_id=call.call_id,
            rule=route.rule,
            origin=":".join(route.origin),
            target=":".join(route.target),
            reason=route.reason,
            saved_micro_usd=saved,
        )
        return saved

    def _note_estimated(self, run: RunState, call: CallState) -> None:
        streamed = call.tokens_seen > 0
        first = (call.provider, call.model, streamed) not in self._estimated_models
        if first:
            self._estimated_models.add((call.provider, call.model, streamed))
        if streamed and first:
            # The common cause, and silent otherwise: OpenAI-compatible streams report usage only when asked.
            self.log.warning(
                "usage_estimated",
                **run.fields,
                call_id=call.call_id,
                model=call.model,
                streamed=True,
                hint="the provider reported no usage for a streamed call, so Guardian charges an estimate; with "
                "ChatOpenAI pass stream_usage=True (behind a proxy or vLLM the server must honour "
                "stream_options include_usage). Logged once per model at this level.",
            )
        else:
            self.log.info("usage_estimated", **run.fields, call_id=call.call_id, model=call.model, streamed=streamed)

    def _cache_hit(self, run: RunState, call: CallState, usage: TokenUsage | None) -> None:
        """A call answered from the framework's cache: no provider was paid, so the hold is released and nothing is
        charged to any budget (tokens, cost or calls). What it saved is logged (``cache_hit``) and counted per
        agent and day (``cache_hits``, ``cache_saved_micro_usd``)."""
        now = self.clock()
        if call.reserved:
            self._store_op("release", self.store.release, ReleaseRequest(call.call_id, call.targets, now))
        saved = (self.pricer.cost(call.provider, call.model, usage) or 0) if usage is not None else 0
        self.log.info("cache_hit", **run.fields, call_id=call.call_id, model=call.model, saved_micro_usd=saved)
        self._record(run, cache_hit_record(run, call, saved, now), once=f"cache:{call.call_id}")
        self._count("cache_hits", run, 1, now)
        self._count("cache_saved_micro_usd", run, saved, now)

    def llm_call_failed(self, run: RunState, call_id: str, partial: TokenUsage | None = None) -> Amounts:
        """An aborted call commits what it used (the prompt is paid for once output streamed) or releases
        its hold. ``partial`` is usage an aborted stream reported early; the output seen may exceed it."""
        call = self._pop_call(run, call_id)
        if call is None:
            return Amounts()
        if partial is not None:
            partial.output_tokens = max(partial.output_tokens, call.tokens_seen)
            return self._settle(run, call, partial)
        return self._settle(run, call, call.seen_usage() if call.chars_seen else None, estimated=True)

    def _pop_call(self, run: RunState, call_id: str) -> CallState | None:
        with run.lock:
            call = run.calls.pop(call_id, None)
        with self._live_lock:
            self._live.pop(call_id, None)
        return call

    def _settle(
        self,
        run: RunState,
        call: CallState,
        usage: TokenUsage | None,
        *,
        learn: bool = True,
        estimated: bool = False,
    ) -> Amounts:
        """Commit ``usage`` for the call (None: release its hold), with its history record."""
        now = self.clock()
        if usage is None:
            if call.reserved:
                self._store_op("release", self.store.release, ReleaseRequest(call.call_id, call.targets, now))
            return Amounts()
        checked = check_usage(usage, call.held_usage())
        if checked.rejected:
            self.log.warning(
                "usage_rejected", **run.fields, call_id=call.call_id, model=call.model, reported=checked.rejected
            )
        usage = checked.usage
        if learn:
            self.outputs.record(call.history_key, usage.output_tokens)
        actual = charged(usage, self.pricer.cost(call.provider, call.model, usage) or 0)
        marker = self.keys.call_marker(run.identity.tenant, call.call_id)
        saved = self._routing_saving(run, call, usage, actual)
        history = None
        if self._settings.history:  # the record is only built to be kept
            prefix_tokens = call.prefix[1] if call.prefix else 0
            cache = cache_figures(lambda u: self.pricer.cost(call.provider, call.model, u) or 0, usage, prefix_tokens)
            record = call_record(run, call, usage, actual, now, estimated=estimated, saved_micro_usd=saved, cache=cache)
            history = self._history(record)
        commit = CommitRequest(call.call_id, call.targets, actual, now, marker, history=history)
        # Committed even when the hold was skipped (fail_open): the store queues it until it is back.
        self._store_op("commit", self.store.commit, commit)
        with run.lock:
            run.spent = run.spent + actual
            run.call_costs.append((actual.total_tokens, actual.cost_usd))
        self._tell("model_call", run, call, usage, actual.cost_usd, now)
        if is_over_hold(call, actual):
            # Spend is reality and is committed in full; the budget may pass its limit by this call's overrun.
            self.log.warning(
                "commit_over_hold",
                **run.fields,
                call_id=call.call_id,
                model=call.model,
                held_tokens=call.estimate.total_tokens,
                committed_tokens=actual.total_tokens,
                held_cost_micro_usd=call.estimate.cost_usd,
                committed_cost_micro_usd=actual.cost_usd,
                output_hold_from="max_tokens" if call.capped else "history",
            )
        self.log.debug(
            "call_committed",
            **run.fields,
            call_id=call.call_id,
            model=call.model,
            input_tokens=actual.input_tokens,
            output_tokens=actual.output_tokens,
            cost_micro_usd=actual.cost_usd,
            estimated_tokens=call.estimate.total_tokens,
        )
        return actual

    def _settle_unfinished(self, run: RunState, call: CallState) -> None:
        """A call whose end never arrived (a task cancelled without its error event, a framework bug). The
        request was sent, so the provider may bill it in full: it is charged its hold, as an expired hold is,
        and the hold is not taught to the output history as if it were what the model produced."""
        usage = call.held_usage()
        self.log.warning(
            "call_unfinished", **run.fields, call_id=call.call_id, model=call.model, charged_tokens=usage.total_tokens
        )
        self._settle(run, call, usage, learn=False, estimated=True)

    def renew_holds(self) -> int:
        """Push back the expiry of every live call's hold due for it (a third of its TTL old), in one store call.
        Returns how many were renewed. Run by ``HoldRenewer`` in the background; never raises."""
        now = self.clock()
        ttl = self._settings.reservation_ttl_s
        with self._live_lock:
            due = [c for c in self._live.values() if now - c.renewed_at >= ttl / 3]
        if not due:
            return 0
        try:
            self.store.renew([RenewRequest(c.call_id, c.targets, now, ttl) for c in due])
        except StoreError as exc:
            self.outage.failed(exc, "renew")
            return 0
        except Exception:  # the renewer thread must survive a bug of ours; the holds then expire and are charged
            self.log.error("guardian_internal_error", callback="renew_holds")
            return 0
        for call in due:
            call.renewed_at = now
        return len(due)

    # -- tool calls ----------------------------------------------------------------------------------------------

    def on_tool_call(self, run: RunState, call_id: str, tool: str) -> Decision:
        """Charge one tool call to every budget of the run, or refuse it."""
        if run.halt is not None:
            return Decision(run.halt)
        now = self.clock()
        binding = self._bind(run, now)
        amount = Amounts(tool_calls=1)
        # One marker for the charge and for the commit fail_open may queue instead: whichever lands first counts
        # the call, so a charge that ran on Redis after our client timed out is never counted twice.
        marker = self.keys.call_marker(run.identity.tenant, call_id)
        request = ReserveRequest(
            call_id=call_id,
            targets=binding.targets,
            amount=amount,
            now=now,
            mode=ChargeMode.CHARGE,
            kill_checks=run.kill_checks,
            want_states=binding.want_states or self._wants_states,
            marker_key=marker,
        )
        result = self._reserve(run, request, binding, op="tool_call")
        if isinstance(result, Decision):
            return result
        with run.lock:
            run.spent = run.spent + amount
        if result is None:
            # fail_open skipped the store: queue the count like a model call's usage, so it lands later.
            commit = CommitRequest(call_id, binding.targets, amount, now, marker)
            self._store_op("commit", self.store.commit, commit, run=run)
        else:
            self._judge_all(run, binding, result, now)
        self._tell("decision", run, "allow", "", now)
        return PROCEED

    # -- loops ---------------------------------------------------------------------------------------------------

    def observe(self, run: RunState, observation: Observation) -> Decision:
        """Feed one step (tool result, model reply) to the run's loop detector.

        A loop under ``action: kill`` trips the run: its next model or tool call is refused, so the
        next model call of the loop is never paid for.
        """
        rule = run.loop_rule
        if rule is None or run.halt is not None:
            return PROCEED if run.halt is None else Decision(run.halt)
        with run.lock:
            if run.loop_detector is None:
                run.loop_detector = LoopDetector(rule.settings)
            verdict = run.loop_detector.observe(observation)
            if verdict is not None and rule.action_for(verdict.signal) != "kill":
                run.loop_detector.reset()  # report a loop that goes on again later
                run.loop_alerted = True  # routing rules on loop_suspected keep treating the run as suspect
        if verdict is None:
            return PROCEED
        return self._loop_found(run, rule, verdict)

    def _loop_found(self, run: RunState, rule: LoopRule, verdict: LoopVerdict) -> Decision:
        action = rule.action_for(verdict.signal)
        recent_tokens, cost = run.recent_costs(verdict.model_calls)
        tokens = verdict.loop_tokens or recent_tokens
        now = self.clock()
        self.log.warning(
            "loop_detected",
            **run.fields,
            rule=rule.name,
            signal=verdict.signal,
            subject=verdict.subject,
            repeats=verdict.repeats,
            steps_in_loop=verdict.steps_in_loop,
            loop_tokens=tokens,
            loop_cost_micro_usd=cost,
            action=action,
        )
        self._count("loop_halts", run, 1, now)
        self._tell("loop_detected", run, verdict.signal)
        if action == "shadow":
            self._would_halt(run, "LoopDetected", verdict.signal, now, rule=rule.name, subject=verdict.subject)
            return PROCEED
        if self.alerts is not None:
            dedup = self.keys.dedup("loop", run.run_id, rule.name)
            ttl = self._settings.run_ttl_s
            self.alerts.submit(
                loop_alert(run, verdict, dedup_key=dedup, tokens=tokens, cost=cost, now=now, run_ttl_s=ttl)
            )
        if action != "kill":
            return PROCEED
        message = (
            f"{verdict.description.rstrip('.')} ({usd(cost)}). Run {run.run_id}, loop rule {rule.name!r}: "
            "look at the run's trace for why the agent repeats itself; "
            + ("`guardian status` counts loop halts." if self.store.shared else "`guard.loop_halts()` counts them.")
        )
        halt = LoopDetected(
            message,
            rule=rule.name,
            signal=verdict.signal,
            subject=verdict.subject,
            repeats=verdict.repeats,
            loop_tokens=tokens,
            loop_cost_micro_usd=cost,
            run_id=run.run_id,
        )
        self._tell("decision", run, "halt_loop", verdict.signal, now)
        return self._trip(run, halt)

    def _count(self, kind: str, run: RunState, amount: int, now: float) -> None:
        """Add to a per-agent, per-UTC-day counter (loop halts, cache hits)."""
        if not amount:
            return
        day, ttl = daily_counter_span(now)
        counter = Counter(self.keys.counter(kind, run.identity.tenant, run.identity.agent, day), ttl)
        try:
            self.store.count(counter, amount, now=now)
        except StoreError as exc:
            self.outage.failed(exc, "count", run.fields)

    # -- the store -----------------------------------------------------------------------------------------------

    def _reserve(
        self, run: RunState, request: ReserveRequest, binding: Binding, *, op: str, refusal_halts: bool = True
    ) -> ReserveResult | Decision | None:
        """The store's answer; a halt Decision; or None when fail_open let the call through unreserved.
        With ``refusal_halts`` False a refusal is handed back as the result (a try that a smaller one follows)."""
        if self.outage.skipping():
            return None
        try:
            result = self.store.reserve(request)
        except StoreError as exc:
            return self._store_failed(run, exc, op)
        self.outage.ok()
        if result.killed is not None:
            return self._killed(run, result.killed)
        if result.refusal is not None and self._granted(run, result, binding, request):
            # An operator granted this bucket more room (guardian grant): the same request, under the new limits.
            request.targets = binding.targets
            return self._reserve(run, request, binding, op=op, refusal_halts=refusal_halts)
        if result.refusal is not None and refusal_halts:
            return self._refused(run, request, result, binding)
        return result

    def _granted(self, run: RunState, result: ReserveResult, binding: Binding, request: ReserveRequest) -> bool:
        """Whether a grant (``guardian grant``) lets the refused request be tried again. The refused bucket's
        grant for the refused metric is read (one store read, on refusals only); what exceeds the grant already
        applied in this process raises the bucket's limit. A request made with targets older than a grant another
        run applied is retried with the current ones."""
        refusal = result.refusal
        assert refusal is not None
        i = refusal.target_index
        if refusal.metric not in METRICS or i >= len(binding.buckets):
            return False
        b = binding.buckets[i]
        if i >= len(request.targets) or request.targets[i] is b.target:
            try:
                granted = self.store.counter(self.keys.grant(b.target.key, refusal.metric), request.now)
            except StoreError:
                return False  # the refusal stands; a store outage shows on the next call
            index = METRICS.index(refusal.metric)
            if granted <= b.granted[index]:
                return False
            limits = list(b.target.limits)
            limits[index] += granted - b.granted[index]
            b.target = dataclasses.replace(b.target, limits=tuple(limits))
            b.granted = tuple(granted if m == index else g for m, g in enumerate(b.granted))
            self.log.info("grant_applied", **run.fields, **b.fields(), unit=refusal.metric, granted=granted)
        with run.lock:
            binding.retarget()
            if run.binding is not binding:
                run.binding.retarget()
        return True

    def _store_op(self, op: str, action: Callable[..., object], *args: Any, run: RunState | None = None) -> None:
        """A store write whose failure must not stop the agent: it is noted as an outage (and a deferred
        commit stays queued in the store until it is back)."""
        try:
            action(*args)
        except StoreError as exc:
            self.outage.failed(exc, op, run.fields if run else None)

    def _store_failed(self, run: RunState, exc: StoreError, op: str) -> Decision | None:
        self.outage.failed(exc, op, run.fields)
        if self.fail_open:
            return None
        self._tell("decision", run, "deny_store", op, self.clock())
        halt = StoreUnavailable(
            f"budget store unavailable ({exc}); the call was refused because the policy sets "
            "on_store_error: fail_closed. Check the store, or set fail_open to let calls through uncounted.",
            run_id=run.run_id,
        )
        halt.__cause__ = exc
        return Decision(halt)

    # -- halts and alerts ----------------------------------------------------------------------------------------

    def _priced(
        self, run: RunState, provider: str | None, model: str, prompt_tokens: int, output_tokens: int
    ) -> Amounts | Decision:
        """What a call may use, or a halt when its model has no price and the policy blocks unknown models."""
        amount = priced(self.pricer, provider, model, prompt_tokens, output_tokens)
        if amount is not None:
            return amount
        if self._settings.unknown_model == "block" and self._settings.mode == "shadow":
            self._would_halt(run, "UnknownModel", provider or "", self.clock(), model=model)
        elif self._settings.unknown_model == "block":
            self.log.error("unknown_model", **run.fields, provider=provider, model=model, action="block")
            self._tell("decision", run, "deny_unknown_model", provider or "", self.clock())
            return self._trip(run, UnknownModel(provider=provider, model=model, run_id=run.run_id))
        if (provider, model) not in self._warned_models:
            self._warned_models.add((provider, model))
            self.log.warning("unknown_model", **run.fields, provider=provider, model=model, action="warn")
        return Amounts(prompt_tokens, output_tokens, prompt_tokens + output_tokens, 0, 1)

    def _killed(self, run: RunState, check: KillCheck) -> Decision:
        halt = RunKilled(target=check.target, value=check.value, tenant=check.tenant, run_id=run.run_id)
        self.log.warning("run_killed", **run.fields, target=check.target, value=check.value)
        self._tell("decision", run, "deny_kill", check.target, self.clock())
        return self._trip(run, halt)

    def _refused(self, run: RunState, request: ReserveRequest, result: ReserveResult, binding: Binding) -> Decision:
        refusal = result.refusal
        assert refusal is not None
        bucket = binding.buckets[refusal.target_index]
        details: dict[str, Any] = {
            **bucket.fields(),
            "unit": refusal.metric,
            "limit": refusal.limit,
            "spent": refusal.current,
            "requested": refusal.requested,
        }
        inspect = None if self.store.shared else f"`guard.status(budget={bucket.budget.name!r})` (the embedded store)"
        halt = BudgetExceeded(**details, run_id=run.run_id, inspect=inspect)
        # In the event, the unit names what limit/spent/requested count: cost_micro_usd for a cost limit.
        self.log.warning(
            "budget_exceeded", **run.fields, **{**details, "unit": metric_label(refusal.metric)}, action="kill"
        )
        state = result.states[refusal.target_index] if result.states else None
        self._tell("decision", run, "deny_budget", f"{bucket.budget.name} {refusal.metric}", request.now)
        self._alert("exceeded", run, bucket, state, threshold=1.0, reason=str(halt), now=request.now)
        self._judge_all(run, binding, result, request.now)
        return self._trip(run, halt)

    def _trip(self, run: RunState, halt: GuardianHalt) -> Decision:
        with run.lock:
            first = run.halt is None
            if first:
                run.halt = halt
            decision = Decision(run.halt)
        if first:
            self._record(run, halt_record(run, halt, self.clock()), once=f"halt:{run.run_id}")
        return decision

    def _history(self, record: UsageRecord, once: str | None = None) -> HistoryEntry | None:
        """The store entry of a history record, in its tenant's history (the fleet's for an outcome recorded
        without one); None when the policy keeps no history. ``once`` names a record appended alone, so that one
        sent twice (a batch re-sent after a lost reply) is appended once."""
        settings = self._settings
        if not settings.history:
            return None
        tenant = record.tenant or None
        key, payload = self.keys.history(tenant), record.to_payload()
        marker = None if once is None else self.keys.call_marker(tenant, once)
        return HistoryEntry(key, payload, record.time, settings.history_keep_s, settings.history_max_records, marker)

    def _record(self, run: RunState | None, record: UsageRecord, *, once: str) -> None:
        entry = self._history(record, once)
        if entry is not None:
            self._store_op("history", self.store.append, entry, run=run)

    def record_outcome(
        self, run_id: str, *, success: bool, value_micro_usd: int = 0, identity: Identity | None = None
    ) -> None:
        """What a run achieved, for reports' cost per successful run and value per dollar. ``identity`` names the
        run's tenant (its history); without it the outcome goes to the fleet's history and joins by run id."""
        if value_micro_usd < 0:
            raise ValueError(f"an outcome's value cannot be negative: {value_micro_usd} micro-dollars")
        names = ("", "", "") if identity is None else (identity.agent, identity.user, identity.tenant)
        record = UsageRecord("outcome", self.clock(), run_id, *names, success=success, value_micro_usd=value_micro_usd)
        self._record(None, record, once=f"outcome:{run_id}:{record.time!r}")
        self.log.info("outcome_recorded", run_id=run_id, success=success, value_micro_usd=value_micro_usd)

    def _judge_all(self, run: RunState, binding: Binding, result: ReserveResult, now: float) -> None:
        for b, state in zip(binding.buckets, result.states, strict=False):
            self._judge(run, b, state, now)
            if self.telemetry is not None:
                self._tell("bucket_state", b, state)

    @property
    def _wants_states(self) -> bool:
        return self.telemetry is not None and self.telemetry.wants_states

    def _tell(self, event: str, *args: Any) -> None:
        """Report to telemetry, if any. Its failure is logged once, never raised into the agent."""
        if self.telemetry is None:
            return
        try:
            getattr(self.telemetry, event)(*args)
        except Exception as exc:
            if not self._telemetry_failed:
                self._telemetry_failed = True
                self.log.error("telemetry_error", event_name=event, error_type=type(exc).__name__)

    def _would_halt(self, run: RunState, reason: str, detail: str, now: float, **fields: Any) -> None:
        """Shadow mode: the halt that would have stopped the run here, recorded once per run; the run goes on."""
        with run.lock:
            if run.would_halt is not None:
                return
            run.would_halt = f"{reason}: {detail}" if detail else reason
        self.log.warning("would_halt", **run.fields, reason=reason, detail=detail, **fields)
        self._count("would_halts", run, 1, now)
        self._record(run, would_halt_record(run, reason, detail, now), once=f"would_halt:{run.run_id}")
        self._tell("decision", run, "would_halt", run.would_halt, now)

    def paused(self, run: RunState, halt: GuardianHalt) -> None:
        """An adapter paused the run instead of halting it (the middleware's ``interrupt``)."""
        self.log.info("run_paused", **run.fields, halt=type(halt).__name__)
        self._tell("decision", run, "paused", type(halt).__name__, self.clock())

    def _judge(self, run: RunState, b: Bucket, state: BucketState, now: float) -> None:
        """Alert each threshold the bucket's spend has passed, once (fleet-wide through the dispatcher's dedup).

        Judged on every reservation, on refusals, and on the states read as a run ends: the commits that pass a
        threshold are often the last of a burst, after which only refusals (or nothing) follow.
        """
        over, thresholds = thresholds_passed(b.budget, state)
        if over is not None and b.budget.action == "shadow":
            limit = b.budget.limited()[over]
            self._would_halt(
                run, "BudgetExceeded", b.budget.name, now, **b.fields(), unit=metric_label(over), limit=limit
            )
        elif over is not None and self._dedup("exceeded", b, 1.0) not in self._alerted:
            self.log.warning(
                "budget_exceeded",
                **run.fields,
                **b.fields(),
                unit=metric_label(over),
                limit=b.budget.limited()[over],
                spent=state.spent.get(over) + state.reserved.get(over),
                action="alert",
            )
            self._alert(
                "exceeded", run, b, state, threshold=1.0, reason="budget passed its limit (action: alert)", now=now
            )
        for threshold in thresholds:
            self._alert("threshold", run, b, state, threshold=threshold, reason="", now=now)

    def _alert(
        self,
        kind: Literal["threshold", "exceeded"],
        run: RunState,
        b: Bucket,
        state: BucketState | None,
        *,
        threshold: float,
        reason: str,
        now: float,
    ) -> None:
        key = self._dedup(kind, b, threshold)
        if key in self._alerted:
            return
        if len(self._alerted) > 100_000:
            self._alerted.clear()
        self._alerted.add(key)
        if self.alerts is None:
            return
        alert = bucket_alert(
            kind,
            run,
            b,
            state,
            dedup_key=key,
            threshold=threshold,
            reason=reason,
            now=now,
            run_ttl_s=self._settings.run_ttl_s,
        )
        self.alerts.submit(alert)

    def _dedup(self, kind: str, b: Bucket, threshold: float) -> str:
        """One alert per bucket (its key names tenant, budget, scope and window), kind and threshold: two tenants'
        users of the same name never silence each other."""
        return self.keys.dedup(kind, b.target.key, f"{threshold:g}")

    # -- plans and buckets ---------------------------------------------------------------------------------------

    def _plan_of(self, identity: Identity) -> Plan:
        plan = self._plans.get(identity)
        if plan is None:
            plan = make_plan(self.policy, self.keys, identity)
            if len(self._plans) > _CACHE_LIMIT:
                self._plans.clear()
            self._plans[identity] = plan
        return plan

    def _bind(self, run: RunState, now: float) -> Binding:
        """The run's buckets; rebuilt when a window rolls over, or hourly (run-bucket TTLs)."""
        if now < run.binding.until:
            return run.binding
        shared = self._shared.get(run.identity)
        if shared is None or now >= shared[0]:
            shared = shared_buckets(run.plan, self.keys, self._settings, run.identity, now)
            if len(self._shared) > _CACHE_LIMIT:
                self._shared.clear()
            self._shared[run.identity] = shared
        binding = bind(run, self.keys, self._settings, shared, now)
        with run.lock:
            run.binding = binding
        return binding

    def bucket_of(
        self, identity: Identity, budget: Budget, now: float, *, run_id: str = "", thread: str | None = None
    ) -> Bucket:
        """The bucket ``budget`` charges for this identity (run, thread) now: its key, scope key, window and expiry,
        as every call resolves it (``guardian grant`` names buckets the same way)."""
        return bucket_for(self.keys, self._settings, identity, budget, now, run_id=run_id, thread=thread)

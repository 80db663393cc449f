"""The supervisor: decides, for each model call, tool call and step of a run, whether it may go on.

It resolves which budgets apply to a run, reserves and commits through the store, turns
refusals into halts, and emits events (structlog) and alerts. It knows nothing of LangChain:
adapters translate framework callbacks into the calls below and act on the ``Decision``.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from zoneinfo import ZoneInfo

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
from guardian.identity import Identity
from guardian.keys import BucketKey, KeyBuilder, KillTarget, escape
from guardian.logs import get_logger
from guardian.loops import LoopDetector, LoopVerdict, Observation
from guardian.policy import Budget, LoopRule, Policy
from guardian.pricing import Pricer, TokenUsage
from guardian.renewal import HoldRenewer
from guardian.store.base import (
    BucketState,
    ChargeMode,
    CommitRequest,
    Counter,
    KillCheck,
    Refusal,
    ReleaseRequest,
    RenewRequest,
    ReserveRequest,
    ReserveResult,
    Store,
    Target,
)
from guardian.windows import window_span

__all__ = ["AlertSubmitter", "CallState", "Decision", "RunState", "Supervisor"]

WINDOW_GRACE_S = 2 * 86_400.0  # calendar buckets outlive their window so `guardian status` can show yesterday
TARGETS_REFRESH_S = 3_600.0  # run-window buckets get their TTL pushed forward this often
OUTAGE_RETRY_S = 1.0  # with fail_open, how long calls skip a store that just failed
RETIRED_RUN_KEEP_S = 3_600.0  # a finished run's buckets in an in-process store: long enough to inspect
CHARS_PER_TOKEN = 4  # langchain-core's approximation, for streamed output before the provider reports usage
OVER_HOLD_FACTOR = 2  # a commit this many times its hold (and OVER_HOLD_MIN_TOKENS more) is logged
OVER_HOLD_MIN_TOKENS = 256


class AlertSubmitter(Protocol):
    def submit(self, alert: Alert) -> None: ...


@dataclass(frozen=True, slots=True)
class Decision:
    """What the adapter must do: go on, or raise ``halt``."""

    halt: GuardianHalt | None = None

    @property
    def proceed(self) -> bool:
        return self.halt is None


PROCEED = Decision()


@dataclass
class CallState:
    call_id: str
    provider: str | None
    model: str
    bound: list[_Bound]  # as reserved: a window may roll over before the call ends
    targets: list[Target]
    estimate: Amounts
    prompt_tokens: int
    output_reserved: int
    capped: bool  # the request named its output cap: the provider cannot send more, so the hold never grows
    reserved: bool  # False when the store was skipped (fail_open during an outage)
    history_key: tuple[str, str | None, str]  # (agent, provider, model): whose outputs teach the next hold
    renewed_at: float = 0.0
    chars_seen: int = 0  # streamed output, in characters: converted to tokens once, not per chunk
    near_limit: bool = False  # a whole block was refused: later extensions ask only for the next token

    @property
    def tokens_seen(self) -> int:
        return -(-self.chars_seen // CHARS_PER_TOKEN)


def _wants_states(bound: list[_Bound]) -> bool:
    """Bucket states are only read for alerts: thresholds, or budgets that alert instead of halting."""
    return any(b.budget.alert_at or not b.budget.enforced for b in bound)


@dataclass
class _Bound:
    """A budget resolved for one run: its store target and where it stands."""

    budget: Budget
    target: Target
    scope_key: str
    window: str
    window_end: float | None
    granted: tuple[int, ...] = (0,) * len(METRICS)  # operators' grants already added to target.limits

    def fields(self) -> dict[str, Any]:
        """How events and halts name the bucket."""
        return {
            "budget": self.budget.name,
            "scope": self.budget.scope,
            "scope_key": self.scope_key,
            "window": self.window,
        }


@dataclass(frozen=True)
class _Plan:
    """Everything about an identity that is the same for all of its runs, worked out once."""

    budgets: list[Budget]
    budget_names: tuple[str, ...]
    fields: dict[str, Any]
    loop_rule: LoopRule | None
    kill_checks: list[KillCheck]  # agent, user, tenant
    run_keys: list[tuple[Budget, str, str]]  # run-scope budgets: key = prefix + escape(run id) + suffix
    thread_budgets: list[Budget] = field(default_factory=list)  # bound per run: each run names its thread


@dataclass
class RunState:
    run_id: str
    identity: Identity
    budgets: list[Budget]
    kill_checks: list[KillCheck]
    started_at: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    calls: dict[str, CallState] = field(default_factory=dict)
    bound: list[_Bound] = field(default_factory=list)
    bound_until: float = 0.0
    targets: list[Target] = field(default_factory=list)  # of bound, kept for the hot path
    want_states: bool = False
    halt: GuardianHalt | None = None
    spent: Amounts = field(default_factory=Amounts)
    loop_rule: LoopRule | None = None
    loop_detector: LoopDetector | None = None  # made on the first observation: most runs are one call
    call_costs: deque[tuple[int, int]] = field(default_factory=lambda: deque(maxlen=256))  # (tokens, micro-USD)
    fields: dict[str, Any] = field(default_factory=dict)
    budget_names: tuple[str, ...] = ()
    thread: str | None = None  # the LangGraph conversation (config thread_id) this run belongs to


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
    ) -> None:
        self.policy = policy
        self.store = store
        self.keys = keys or KeyBuilder()
        self.clock = clock
        self.pricer = pricer or Pricer(policy.prices, clock)
        self.alerts = alerts
        self.log = get_logger()
        self._settings = policy.settings
        self.fail_open = policy.settings.on_store_error == "fail_open"
        self._outage = False
        self._outage_until = 0.0
        self._outage_lock = threading.Lock()
        self._alerted: set[str] = set()
        # Per identity: its buckets of non-run budgets (valid until the earliest window end), and its plan.
        self._shared_bound: dict[Identity, tuple[float, list[_Bound]]] = {}
        self._plans: dict[Identity, _Plan] = {}
        self._warned_models: set[tuple[str | None, str]] = set()  # unknown_model: warn logs once per model
        self._estimated_models: set[tuple[str | None, str, bool]] = set()  # usage_estimated: the hint once per model
        self.outputs = OutputHistory()
        # Calls between reservation and settlement, for renewing their holds; the renewer starts with the first.
        self._live: dict[str, CallState] = {}
        self._live_lock = threading.Lock()
        self.renewer = HoldRenewer(self, self._settings.reservation_ttl_s / 3)

    # -- runs ----------------------------------------------------------------------------------------

    def start_run(self, run_id: str, identity: Identity, *, thread: str | None = None) -> RunState:
        """A run begins; ``thread`` is its conversation (LangGraph's ``thread_id``), for thread budgets."""
        plan = self._plan_of(identity)
        fields = {"run_id": run_id, **plan.fields}
        if thread is not None:
            fields["thread_id"] = thread
        run = RunState(
            run_id=run_id,
            identity=identity,
            budgets=plan.budgets,
            kill_checks=[KillCheck(self.keys.kill("run", run_id), "run", run_id), *plan.kill_checks],
            started_at=self.clock(),
            loop_rule=plan.loop_rule,
            fields=fields,
            budget_names=plan.budget_names,
            thread=thread,
        )
        self.log.info("run_started", **run.fields, budgets=run.budget_names)
        return run

    def _plan_of(self, identity: Identity) -> _Plan:
        plan = self._plans.get(identity)
        if plan is not None:
            return plan
        budgets = self.policy.budgets_for(identity)
        run_keys = []
        for budget in budgets:
            if budget.scope == "run":
                run_keys.append((budget, *self.keys.run_bucket_template(identity.tenant, budget.name)))
        # An agent or user is killed fleet-wide or in one tenant: check both flags (one EXISTS in the ledger).
        flags: list[tuple[KillTarget, str, str | None]] = [
            ("agent", identity.agent, None),
            ("agent", identity.agent, identity.tenant),
            ("user", identity.user, None),
            ("user", identity.user, identity.tenant),
            ("tenant", identity.tenant, None),
        ]
        plan = _Plan(
            budgets=budgets,
            budget_names=tuple(b.name for b in budgets),
            fields=identity.log_fields(),
            loop_rule=self.policy.loop_rule_for(identity),
            kill_checks=[KillCheck(self.keys.kill(t, v, tenant), t, v, tenant) for t, v, tenant in flags],
            run_keys=run_keys,
            thread_budgets=[b for b in budgets if b.scope == "thread"],
        )
        if len(self._plans) > 10_000:
            self._plans.clear()
        self._plans[identity] = plan
        return plan

    def end_run(self, run: RunState, *, error: BaseException | None = None) -> None:
        """Settle what the run left open, then make its usage durable before the run returns to its caller (one
        store round trip), and judge the thresholds its last commits may have passed."""
        with run.lock:
            dangling = list(run.calls)
        for call_id in dangling:
            call = self._pop_call(run, call_id)
            if call is not None:
                self._settle_unfinished(run, call)
        self._sync(run)
        run_keys = [b.target.key for b in run.bound if b.budget.scope == "run"]
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
        if not run.bound:
            return  # never reserved: nothing of this run can be pending
        watched = [b for b in run.bound if b.budget.alert_at or not b.budget.enforced]
        now = self.clock()
        try:
            states = self.store.sync([b.target.key for b in watched], now)
        except StoreError as exc:
            self._note_outage(exc, "sync", run=run)
            return
        for b, state in zip(watched, states, strict=True):
            if state is not None:
                self._judge_thresholds(run, b, state, now)

    # -- model calls ---------------------------------------------------------------------------------

    def before_llm_call(
        self,
        run: RunState,
        call_id: str,
        *,
        provider: str | None,
        model: str,
        prompt_tokens: int,
        max_output_tokens: int | None,
    ) -> Decision:
        if run.halt is not None:
            return Decision(run.halt)
        now = self.clock()
        history_key = (run.identity.agent, provider, model)
        capped = max_output_tokens is not None
        if max_output_tokens is not None:
            output_hold = max_output_tokens
        else:
            output_hold = self.outputs.hold(history_key, self._settings.default_max_output_tokens)
        estimate = self._estimate(run, provider, model, prompt_tokens, output_hold)
        if isinstance(estimate, Decision):
            return estimate
        bound = self._bind(run, now)
        targets = run.targets
        request = ReserveRequest(
            call_id=call_id,
            targets=targets,
            amount=estimate,
            now=now,
            ttl_s=self._settings.reservation_ttl_s,
            kill_checks=run.kill_checks,
            want_states=run.want_states,
        )
        result = self._reserve(run, request, bound, op="reserve")
        if isinstance(result, Decision):
            return result
        call = CallState(
            call_id=call_id,
            provider=provider,
            model=model,
            bound=bound,
            targets=targets,
            estimate=estimate,
            prompt_tokens=prompt_tokens,
            output_reserved=output_hold,
            capped=capped,
            reserved=result is not None,
            history_key=history_key,
            renewed_at=now,
        )
        with run.lock:
            run.calls[call_id] = call
        if result is None:
            return PROCEED
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
        self._after_reserve(run, bound, result, now)
        return PROCEED

    def _estimate(
        self, run: RunState, provider: str | None, model: str, prompt_tokens: int, output_tokens: int
    ) -> Amounts | Decision:
        """What a call may use, or a halt when its model has no price and the policy blocks unknown models."""
        cost = self.pricer.cost(provider, model, TokenUsage(input_tokens=prompt_tokens, output_tokens=output_tokens))
        if cost is None:
            if self._settings.unknown_model == "block":
                halt = UnknownModel(provider=provider, model=model, run_id=run.run_id)
                self.log.error("unknown_model", **run.fields, provider=provider, model=model, action="block")
                return self._trip(run, halt)
            if (provider, model) not in self._warned_models:
                self._warned_models.add((provider, model))
                self.log.warning("unknown_model", **run.fields, provider=provider, model=model, action="warn")
            cost = 0
        return Amounts(
            input_tokens=prompt_tokens,
            output_tokens=output_tokens,
            total_tokens=prompt_tokens + output_tokens,
            cost_usd=cost,
            llm_calls=1,
        )

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
            block = self._settings.stream_block_tokens
            # Enough whole blocks to cover what already arrived plus the next token: a chunk may hold many tokens.
            wanted = call.output_reserved + block * ((call.tokens_seen - call.output_reserved) // block + 1)
            granted = self._extend(run, call, wanted, last_try=False)
            call.near_limit = granted is False
        if granted is False:
            granted = self._extend(run, call, call.tokens_seen + 1, last_try=True)
        return granted if isinstance(granted, Decision) else PROCEED

    def _extend(self, run: RunState, call: CallState, output_tokens: int, *, last_try: bool) -> Decision | bool:
        """Raise the call's hold to ``output_tokens`` of output. True when granted (or passed under fail_open);
        a halt Decision; False when refused and not ``last_try``, leaving the hold as it was."""
        estimate = self._estimate(run, call.provider, call.model, call.prompt_tokens, output_tokens)
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
        result = self._reserve(run, request, call.bound, op="extend", refusal_halts=last_try)
        if isinstance(result, Decision):
            return result
        if result is not None and result.refusal is not None:
            return False
        call.output_reserved = output_tokens
        call.estimate = estimate
        call.renewed_at = request.now
        return True

    def after_llm_call(
        self, run: RunState, call_id: str, usage: TokenUsage | None, *, output_estimate: int | None = None
    ) -> Amounts:
        """Commit what the call really used. Without reported usage (streams report it only when asked, e.g.
        ``ChatOpenAI(stream_usage=True)``), the prompt estimate and the output seen or estimated stand in."""
        call = self._pop_call(run, call_id)
        if call is None:
            return Amounts()
        if usage is None:
            streamed = call.tokens_seen > 0
            first = (call.provider, call.model, streamed) not in self._estimated_models
            if first:
                self._estimated_models.add((call.provider, call.model, streamed))
            if streamed and first:
                # The common cause, and silent otherwise: OpenAI-compatible streams report usage only when asked.
                self.log.warning(
                    "usage_estimated",
                    **run.fields,
                    call_id=call_id,
                    model=call.model,
                    streamed=True,
                    hint="the provider reported no usage for a streamed call, so Guardian charges an estimate; with "
                    "ChatOpenAI pass stream_usage=True (behind a proxy or vLLM the server must honour "
                    "stream_options include_usage). Logged once per model at this level.",
                )
            else:
                self.log.info("usage_estimated", **run.fields, call_id=call_id, model=call.model, streamed=streamed)
            usage = TokenUsage(call.prompt_tokens, max(call.tokens_seen, output_estimate or 0))
        return self._settle(run, call, usage)

    def cache_hit(self, run: RunState, call_id: str, usage: TokenUsage | None) -> int:
        """A call LangChain answered from its cache: no provider was paid, so the hold is released and nothing is
        charged to any budget (tokens, cost or calls). What it saved is logged (``cache_hit``) and counted per
        agent and day (``cache_hits``, ``cache_saved_micro_usd``). Returns the micro-dollars saved."""
        call = self._pop_call(run, call_id)
        if call is None:
            return 0
        now = self.clock()
        if call.reserved:
            self._store_op("release", self.store.release, ReleaseRequest(call.call_id, call.targets, now))
        saved = (self.pricer.cost(call.provider, call.model, usage) or 0) if usage is not None else 0
        self.log.info("cache_hit", **run.fields, call_id=call_id, model=call.model, saved_micro_usd=saved)
        for kind, amount in (("cache_hits", 1), ("cache_saved_micro_usd", saved)):
            if amount:
                counter = self._daily_counter(kind, run, now)
                self._store_op("count", functools.partial(self.store.count, now=now), counter, amount)
        return saved

    def llm_call_failed(self, run: RunState, call_id: str, partial: TokenUsage | None = None) -> Amounts:
        """An aborted call commits what it used (the prompt is paid for once output streamed) or releases
        its hold. ``partial`` is usage an aborted stream reported early; the output seen may exceed it."""
        call = self._pop_call(run, call_id)
        if call is None:
            return Amounts()
        if partial is not None:
            partial.output_tokens = max(partial.output_tokens, call.tokens_seen)
            return self._settle(run, call, partial)
        return self._settle(run, call, self._fallback_usage(call) if call.chars_seen else None)

    def _pop_call(self, run: RunState, call_id: str) -> CallState | None:
        with run.lock:
            call = run.calls.pop(call_id, None)
        with self._live_lock:
            self._live.pop(call_id, None)
        return call

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
            self._note_outage(exc, "renew", run=None)
            return 0
        except Exception:  # the renewer thread must survive a bug of ours; the holds then expire and are charged
            self.log.error("guardian_internal_error", callback="renew_holds")
            return 0
        for call in due:
            call.renewed_at = now
        return len(due)

    # -- tool calls ----------------------------------------------------------------------------------

    def on_tool_call(self, run: RunState, call_id: str, tool: str) -> Decision:
        if run.halt is not None:
            return Decision(run.halt)
        now = self.clock()
        bound = self._bind(run, now)
        amount = Amounts(tool_calls=1)
        # One marker for the charge and for the commit fail_open may queue instead: whichever lands first counts
        # the call, so a charge that ran on Redis after our client timed out is never counted twice.
        marker = self.keys.call_marker(run.identity.tenant, call_id)
        request = ReserveRequest(
            call_id=call_id,
            targets=run.targets,
            amount=amount,
            now=now,
            mode=ChargeMode.CHARGE,
            kill_checks=run.kill_checks,
            want_states=run.want_states,
            marker_key=marker,
        )
        result = self._reserve(run, request, bound, op="tool_call")
        if isinstance(result, Decision):
            return result
        with run.lock:
            run.spent = run.spent + amount
        if result is None:
            # fail_open skipped the store: queue the count like a model call's usage, so it lands later.
            self._store_op(
                "commit", self.store.commit, CommitRequest(call_id, run.targets, amount, now, marker), run=run
            )
        else:
            self._after_reserve(run, bound, result, now)
        return PROCEED

    # -- loops ---------------------------------------------------------------------------------------

    def observe(self, run: RunState, observation: Observation) -> Decision:
        """Feed one step (tool result, node update, model reply) to the run's loop detector.

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
            if verdict is not None and rule.action_for(verdict.signal) == "alert":
                run.loop_detector.reset()  # report a loop that goes on again later
        if verdict is None:
            return PROCEED
        return self._loop_found(run, rule, verdict)

    def _loop_found(self, run: RunState, rule: LoopRule, verdict: LoopVerdict) -> Decision:
        action = rule.action_for(verdict.signal)
        with run.lock:
            recent = list(run.call_costs)[-verdict.model_calls :] if verdict.model_calls else []
        cost = sum(c for _, c in recent)
        tokens = verdict.loop_tokens or sum(t for t, _ in recent)
        message = (
            f"{verdict.description.rstrip('.')} ({usd(cost)}). Run {run.run_id}, loop rule {rule.name!r}: "
            "look at the run's trace for why the agent repeats itself; "
            + ("`guardian status` counts loop halts." if self.store.shared else "`guard.loop_halts()` counts them.")
        )
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
        self._store_op("count", functools.partial(self.store.count, now=now), self._loop_counter(run, now), 1)
        if self.alerts is not None:
            self.alerts.submit(
                Alert(
                    kind="loop",
                    dedup_key=self.keys.dedup("loop", run.run_id, rule.name),
                    dedup_ttl_s=self._settings.run_ttl_s,
                    occurred_at=now,
                    run_id=run.run_id,
                    agent=run.identity.agent,
                    user=run.identity.user,
                    tenant=run.identity.tenant,
                    scope="run",
                    scope_key=run.run_id,
                    spent={"total_tokens": tokens, "cost_usd": cost} if tokens else {},
                    reason=f"{verdict.signal} on {verdict.subject} after {verdict.repeats} repeats: "
                    f"{verdict.description}",
                )
            )
        if action != "kill":
            return PROCEED
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
        return self._trip(run, halt)

    def _loop_counter(self, run: RunState, now: float) -> Counter:
        return self._daily_counter("loop_halts", run, now)

    def _daily_counter(self, kind: str, run: RunState, now: float) -> Counter:
        """A per-agent, per-UTC-day counter (loop halts, cache hits), kept a grace period past its day."""
        span = window_span("day", _UTC, now)
        key = self.keys.counter(kind, run.identity.tenant, run.identity.agent, span.id)
        return Counter(key, (span.end or now) + WINDOW_GRACE_S - now)

    # -- internals -----------------------------------------------------------------------------------

    def _settle(self, run: RunState, call: CallState, usage: TokenUsage | None, *, learn: bool = True) -> Amounts:
        now = self.clock()
        if usage is None:
            if call.reserved:
                self._store_op("release", self.store.release, ReleaseRequest(call.call_id, call.targets, now))
            return Amounts()
        checked = check_usage(usage, TokenUsage(call.prompt_tokens, max(call.tokens_seen, call.output_reserved)))
        if checked.rejected:
            self.log.warning(
                "usage_rejected", **run.fields, call_id=call.call_id, model=call.model, reported=checked.rejected
            )
        usage = checked.usage
        if learn:
            self.outputs.record(call.history_key, usage.output_tokens)
        cost = self.pricer.cost(call.provider, call.model, usage)
        actual = Amounts(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            total_tokens=usage.total_tokens,
            cost_usd=cost or 0,
            llm_calls=1,
        )
        marker = self.keys.call_marker(run.identity.tenant, call.call_id)
        request = CommitRequest(call.call_id, call.targets, actual, now, marker)
        # Committed even when the hold was skipped (fail_open): the store queues it until it is back.
        self._store_op("commit", self.store.commit, request)
        with run.lock:
            run.spent = run.spent + actual
            run.call_costs.append((actual.total_tokens, actual.cost_usd))
        held = call.estimate.total_tokens
        if call.reserved and actual.total_tokens > max(OVER_HOLD_FACTOR * held, held + OVER_HOLD_MIN_TOKENS):
            # Spend is reality and is committed in full; the budget may pass its limit by this call's overrun.
            self.log.warning(
                "commit_over_hold",
                **run.fields,
                call_id=call.call_id,
                model=call.model,
                held_tokens=held,
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
        usage = TokenUsage(call.prompt_tokens, max(call.tokens_seen, call.output_reserved))
        self.log.warning(
            "call_unfinished", **run.fields, call_id=call.call_id, model=call.model, charged_tokens=usage.total_tokens
        )
        self._settle(run, call, usage, learn=False)

    @staticmethod
    def _fallback_usage(call: CallState) -> TokenUsage:
        return TokenUsage(input_tokens=call.prompt_tokens, output_tokens=call.tokens_seen)

    def _reserve(
        self, run: RunState, request: ReserveRequest, bound: list[_Bound], *, op: str, refusal_halts: bool = True
    ) -> ReserveResult | Decision | None:
        """The store's answer; a halt Decision; or None when fail_open let the call through unreserved.
        With ``refusal_halts`` False a refusal is handed back as the result (a try that a smaller one follows)."""
        if self.fail_open and self._outage and self.clock() < self._outage_until:
            return None
        try:
            result = self.store.reserve(request)
        except StoreError as exc:
            return self._store_failed(run, exc, op)
        self._store_ok()
        if result.killed is not None:
            return self._killed(run, result.killed)
        if result.refusal is not None and self._granted(run, result.refusal, bound, request):
            # An operator granted this bucket more room (guardian grant): the same request, under the new limits.
            request.targets = [b.target for b in bound]
            return self._reserve(run, request, bound, op=op, refusal_halts=refusal_halts)
        if result.refusal is not None and refusal_halts:
            return self._refused(run, request, result, bound)
        return result

    def _granted(self, run: RunState, refusal: Refusal, bound: list[_Bound], request: ReserveRequest) -> bool:
        """Whether a grant (``guardian grant``) lets the refused request be tried again. The refused bucket's
        grant for the refused metric is read (one store read, on refusals only); what exceeds the grant already
        applied in this process raises the bound's limit. A request made with targets older than a grant another
        run applied is retried with the current ones."""
        i = refusal.target_index
        b = bound[i]
        if refusal.metric not in METRICS:
            return False
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
            run.targets = [x.target for x in run.bound]
        return True

    def _store_op(self, op: str, action: Callable[..., object], *args: Any, run: RunState | None = None) -> None:
        """A store write whose failure must not stop the agent: it is noted as an outage (and a deferred
        commit stays queued in the store until it is back)."""
        try:
            action(*args)
        except StoreError as exc:
            self._note_outage(exc, op, run=run)

    def _store_failed(self, run: RunState, exc: StoreError, op: str) -> Decision | None:
        self._note_outage(exc, op, run=run)
        if self.fail_open:
            return None
        halt = StoreUnavailable(
            f"budget store unavailable ({exc}); the call was refused because the policy sets "
            "on_store_error: fail_closed. Check the store, or set fail_open to let calls through uncounted.",
            run_id=run.run_id,
        )
        halt.__cause__ = exc
        return Decision(halt)

    def _note_outage(self, exc: StoreError, op: str, run: RunState | None) -> None:
        with self._outage_lock:
            first = not self._outage
            self._outage = True
            self._outage_until = self.clock() + OUTAGE_RETRY_S
        if first:
            self.log.error(
                "store_error",
                op=op,
                error=str(exc),
                mode=self._settings.on_store_error,
                consequence="calls pass uncounted until the store is back; usage is queued"
                if self.fail_open
                else "calls are refused until the store is back",
                **(run.fields if run else {}),
            )

    def _store_ok(self) -> None:
        if self._outage:
            with self._outage_lock:
                was, self._outage = self._outage, False
            if was:
                self.log.warning("store_recovered", mode=self._settings.on_store_error)

    def _killed(self, run: RunState, check: KillCheck) -> Decision:
        halt = RunKilled(target=check.target, value=check.value, tenant=check.tenant, run_id=run.run_id)
        self.log.warning("run_killed", **run.fields, target=check.target, value=check.value)
        return self._trip(run, halt)

    def _refused(
        self, run: RunState, request: ReserveRequest, result: ReserveResult, all_bound: list[_Bound]
    ) -> Decision:
        refusal = result.refusal
        assert refusal is not None
        bound = all_bound[refusal.target_index]
        details: dict[str, Any] = {
            **bound.fields(),
            "unit": refusal.metric,
            "limit": refusal.limit,
            "spent": refusal.current,
            "requested": refusal.requested,
        }
        inspect = None if self.store.shared else f"`guard.status(budget={bound.budget.name!r})` (the embedded store)"
        halt = BudgetExceeded(**details, run_id=run.run_id, inspect=inspect)
        # In the event, the unit names what limit/spent/requested count: cost_micro_usd for a cost limit.
        self.log.warning(
            "budget_exceeded", **run.fields, **{**details, "unit": metric_label(refusal.metric)}, action="kill"
        )
        state = result.states[refusal.target_index] if result.states else None
        self._alert("exceeded", run, bound, state, threshold=1.0, reason=str(halt), now=request.now)
        for b, other in zip(all_bound, result.states, strict=False):
            self._judge_thresholds(run, b, other, request.now)
        return self._trip(run, halt)

    def _trip(self, run: RunState, halt: GuardianHalt) -> Decision:
        with run.lock:
            if run.halt is None:
                run.halt = halt
            return Decision(run.halt)

    def _after_reserve(self, run: RunState, bound: list[_Bound], result: ReserveResult, now: float) -> None:
        for b, state in zip(bound, result.states, strict=False):
            self._judge_thresholds(run, b, state, now)

    def _judge_thresholds(self, run: RunState, b: _Bound, state: BucketState, now: float) -> None:
        """Alert each threshold the bucket's spend has passed, once (fleet-wide through the dispatcher's dedup).

        Judged on every reservation, on refusals, and on the states read as a run ends: the commits that pass a
        threshold are often the last of a burst, after which only refusals (or nothing) follow.
        """
        budget = b.budget
        if not budget.alert_at and budget.enforced:
            return
        limits = budget.limited()
        if not budget.enforced:
            over = [m for m, limit in limits.items() if state.spent.get(m) + state.reserved.get(m) > limit]
            if over:
                self._alert_only_exceeded(run, b, state, over[0], now)
        fraction = max((state.spent.get(m) / limit if limit else 1.0) for m, limit in limits.items())
        for threshold in budget.alert_at:
            if fraction >= threshold:
                self._alert("threshold", run, b, state, threshold=threshold, reason="", now=now)

    def _alert_only_exceeded(self, run: RunState, b: _Bound, state: BucketState, metric: str, now: float) -> None:
        key = self._bucket_dedup("exceeded", b, 1.0)
        if key in self._alerted:
            return
        limit = b.budget.limited()[metric]
        self.log.warning(
            "budget_exceeded",
            **run.fields,
            **b.fields(),
            unit=metric,
            limit=limit,
            spent=state.spent.get(metric) + state.reserved.get(metric),
            action="alert",
        )
        self._alert(
            "exceeded",
            run,
            b,
            state,
            threshold=1.0,
            reason="budget passed its limit (action: alert)",
            now=now,
        )

    def _alert(
        self,
        kind: str,
        run: RunState,
        b: _Bound,
        state: BucketState | None,
        *,
        threshold: float,
        reason: str,
        now: float,
    ) -> None:
        key = self._bucket_dedup(kind, b, threshold)
        if key in self._alerted:
            return
        if len(self._alerted) > 100_000:
            self._alerted.clear()
        self._alerted.add(key)
        if self.alerts is None:
            return
        spent = state.spent + state.reserved if state is not None and kind == "exceeded" else None
        end = b.window_end if b.window_end is not None else now + self._settings.run_ttl_s
        self.alerts.submit(
            Alert(
                kind=kind,  # type: ignore[arg-type]
                dedup_key=key,
                dedup_ttl_s=max(1.0, end - now),
                occurred_at=now,
                run_id=run.run_id,
                agent=run.identity.agent,
                user=run.identity.user,
                tenant=run.identity.tenant,
                budget=b.budget.name,
                scope=b.budget.scope,
                scope_key=b.scope_key,
                window=b.window,
                threshold=threshold,
                spent=(spent or (state.spent if state else Amounts())).nonzero(),
                limit=b.budget.limited(),
                reason=reason,
            )
        )

    def _bucket_dedup(self, kind: str, b: _Bound, threshold: float) -> str:
        """One alert per bucket (its key names tenant, budget, scope and window), kind and threshold: two tenants'
        users of the same name never silence each other."""
        return self.keys.dedup(kind, b.target.key, f"{threshold:g}")

    def _bind(self, run: RunState, now: float) -> list[_Bound]:
        """The store targets of a run's budgets; rebuilt when a window rolls over or hourly (run-bucket TTLs)."""
        if now < run.bound_until:
            return run.bound
        until, shared = self._bind_shared(run.identity, now)
        expires = now + self._settings.run_ttl_s
        run_key = escape(run.run_id)
        bound = [
            _Bound(b, Target(prefix + run_key + suffix, b.limits, expires, b.enforced), run.run_id, "run", None)
            for b, prefix, suffix in self._plan_of(run.identity).run_keys
        ]
        bound += [
            self._bound(run.identity, run.run_id, b, now, thread=run.thread)
            for b in self._plan_of(run.identity).thread_budgets
        ]
        bound += shared
        with run.lock:
            run.bound, run.bound_until = bound, min(until, now + TARGETS_REFRESH_S)
            run.targets = [b.target for b in bound]
            run.want_states = _wants_states(bound)
        return bound

    def _bind_shared(self, identity: Identity, now: float) -> tuple[float, list[_Bound]]:
        """Buckets of an identity's agent/user/tenant/global budgets: the same for all its runs, so cached."""
        cached = self._shared_bound.get(identity)
        if cached is not None and now < cached[0]:
            return cached
        budgets = self._plan_of(identity).budgets
        bound = [self._bound(identity, "", b, now) for b in budgets if b.scope not in ("run", "thread")]
        until = min([now + TARGETS_REFRESH_S, *(b.window_end for b in bound if b.window_end is not None)])
        if len(self._shared_bound) > 10_000:
            self._shared_bound.clear()
        self._shared_bound[identity] = (until, bound)
        return until, bound

    def bucket_of(
        self, identity: Identity, budget: Budget, now: float, *, run_id: str = "", thread: str | None = None
    ) -> _Bound:
        """The bucket ``budget`` charges for this identity (run, thread) now: its key, scope key, window and expiry,
        as every call resolves it (``guardian grant`` names buckets the same way)."""
        return self._bound(identity, run_id, budget, now, thread=thread)

    def _bound(
        self, identity: Identity, run_id: str, budget: Budget, now: float, *, thread: str | None = None
    ) -> _Bound:
        span = window_span(budget.window, budget.timezone, now)
        scope_key = identity.scope_key(budget.scope, run_id, thread)
        tenant = None if budget.scope == "global" else identity.tenant
        key = self.keys.bucket(BucketKey(tenant, budget.name, budget.scope, scope_key, span.id))
        if span.end is not None:
            expires = span.end + WINDOW_GRACE_S
        elif budget.scope == "thread":  # a lifetime: kept while the conversation is used (rebound hourly)
            expires = now + self._settings.thread_ttl_s
        else:
            expires = now + self._settings.run_ttl_s
        target = Target(key, budget.limits, expires, budget.enforced)
        return _Bound(budget, target, scope_key, span.id, span.end)


_UTC = ZoneInfo("UTC")

"""Runs and their calls: the state each run owns, and the pure steps the supervisor is made of.

Nothing here does I/O or reads a clock: every step takes what it needs (the policy's settings, the key
builder, the pricer, ``now``) and returns plain data, so each is tested on its own (``tests/core/test_runs.py``).
The supervisor drives them in order for each event: build the request (here) → one store call → judge the
result (here) → emit events and alerts.

A run's state has one home, :class:`RunState`: its plan (what every run of its identity shares, worked out once),
its binding (the buckets its budgets charge now), its live calls, its halt and what it spent.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from zoneinfo import ZoneInfo

from guardian.alerts._model import Alert
from guardian.amounts import METRICS, NO_LIMIT, Amounts
from guardian.errors import GuardianHalt
from guardian.history import Kind, UsageRecord
from guardian.identity import Identity
from guardian.keys import BucketKey, KeyBuilder, KillTarget, escape
from guardian.loops import LoopDetector, LoopVerdict, ModelObservation
from guardian.policy import Budget, LoopRule, ModelRef, Policy, RoutingRule, Settings
from guardian.pricing import Pricer, TokenUsage
from guardian.store.base import BucketState, KillCheck, Target
from guardian.windows import window_span

__all__ = [
    "CHARS_PER_TOKEN",
    "PROCEED",
    "Binding",
    "Bucket",
    "CallState",
    "Decision",
    "Plan",
    "Reply",
    "Route",
    "RunState",
    "affordable_output",
    "bind",
    "bucket_alert",
    "bucket_for",
    "cache_figures",
    "cache_hit_record",
    "call_record",
    "charged",
    "daily_counter_span",
    "extension_wanted",
    "halt_record",
    "is_over_hold",
    "make_plan",
    "priced",
    "routed_to",
    "shared_buckets",
    "thresholds_passed",
    "used_share",
    "would_halt_record",
]

CHARS_PER_TOKEN = 4  # langchain-core's approximation, for streamed output before the provider reports usage
WINDOW_GRACE_S = 2 * 86_400.0  # calendar buckets outlive their window so `guardian status` can show yesterday
TARGETS_REFRESH_S = 3_600.0  # run-window buckets get their TTL pushed forward this often
OVER_HOLD_FACTOR = 2  # a commit this many times its hold (and OVER_HOLD_MIN_TOKENS more) is logged
OVER_HOLD_MIN_TOKENS = 256
_UTC = ZoneInfo("UTC")


@dataclass(frozen=True, slots=True)
class Decision:
    """What the adapter must do: go on, or act on ``halt`` (raise it, end the run, or pause)."""

    halt: GuardianHalt | None = None
    max_output_tokens: int | None = None  # clamped: send the call with this output cap instead of its own

    @property
    def proceed(self) -> bool:
        return self.halt is None


PROCEED = Decision()


@dataclass(frozen=True, slots=True)
class Reply:
    """One model call's end, as an adapter parsed it from its framework's payload, once.

    ``usage`` is what the provider reported (None when it reported nothing); ``output_estimate`` the output
    counted from the reply's text and tool calls, charged when there is no usage; ``cache_hit`` marks a reply
    served from the framework's cache (no provider was paid); ``observation`` is the reply for loop detection.
    """

    usage: TokenUsage | None
    output_estimate: int = 0
    cache_hit: bool = False
    observation: ModelObservation | None = None


@dataclass(frozen=True, slots=True)
class Route:
    """A model call sent to a cheaper model by a routing rule."""

    rule: str
    origin: ModelRef  # (provider, model) the application asked for
    target: ModelRef  # what is called instead
    reason: str  # which condition held, for logs (no user content)
    shadow: bool = False  # shadow mode: recorded (would_route), the call goes to the model asked for


@dataclass
class Bucket:
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


def _watched(budget: Budget) -> bool:
    """Whether a budget's bucket states matter after a call: it has alert thresholds, or it does not refuse (alert
    only, or shadow) and its passing the limit is judged from the states."""
    return bool(budget.alert_at) or not budget.enforced


@dataclass
class Binding:
    """The buckets a run's calls charge until ``until`` (a window's end, or the hourly TTL refresh).

    ``targets`` is the store's view of ``buckets``, kept beside them because the hot path sends it on every call;
    :meth:`retarget` rebuilds it when a grant raised a bucket's limits. A call keeps the binding it reserved
    with, so a window that rolls over mid-call does not move its hold.
    """

    buckets: list[Bucket]
    until: float
    targets: list[Target] = field(init=False)
    want_states: bool = field(init=False)  # bucket states are read only for alerts

    def __post_init__(self) -> None:
        self.retarget()
        self.want_states = any(_watched(b.budget) for b in self.buckets)

    def retarget(self) -> None:
        self.targets = [b.target for b in self.buckets]

    def watched(self) -> list[Bucket]:
        """The buckets whose states matter: thresholds to alert on, or budgets that alert instead of halting."""
        return [b for b in self.buckets if _watched(b.budget)]


@dataclass(frozen=True)
class Plan:
    """Everything about an identity that is the same for all of its runs, worked out once."""

    budgets: list[Budget]
    budget_names: tuple[str, ...]
    fields: dict[str, Any]
    loop_rule: LoopRule | None
    routing: tuple[RoutingRule, ...]
    kill_checks: list[KillCheck]  # agent and user (fleet-wide and in the tenant), tenant
    run_keys: list[tuple[Budget, str, str]]  # run-scope budgets: key = prefix + escape(run id) + suffix
    thread_budgets: list[Budget]  # bound per run: each run names its thread


@dataclass
class CallState:
    """One model call between its reservation and its settlement."""

    call_id: str
    provider: str | None
    model: str
    binding: Binding  # as reserved: a window may roll over before the call ends
    estimate: Amounts
    prompt_tokens: int
    output_reserved: int
    capped: bool  # the request named its output cap: the provider cannot send more, so the hold never grows
    reserved: bool  # False when the store was skipped (fail_open during an outage)
    history_key: tuple[str, str | None, str]  # (agent, provider, model): whose outputs teach the next hold
    started_at: float = 0.0  # when it was reserved
    routed: Route | None = None  # the routing rule that sent the call here (or would have, in shadow mode)
    prefix: tuple[str, int] | None = None  # (digest, tokens) of its stable prompt prefix, for cacheable spend
    clamped: bool = False  # its output cap was lowered to what the budgets could still afford
    renewed_at: float = 0.0
    chars_seen: int = 0  # streamed output, in characters: converted to tokens once, not per chunk
    near_limit: bool = False  # a whole block was refused: later extensions ask only for the next token

    @property
    def targets(self) -> list[Target]:
        return self.binding.targets

    @property
    def tokens_seen(self) -> int:
        return -(-self.chars_seen // CHARS_PER_TOKEN)

    def seen_usage(self) -> TokenUsage:
        """The prompt and the output streamed so far: what an aborted call used, as far as we can tell."""
        return TokenUsage(self.prompt_tokens, self.tokens_seen)

    def held_usage(self) -> TokenUsage:
        """The prompt and the whole output hold: what the provider may bill a call whose end we never saw."""
        return TokenUsage(self.prompt_tokens, max(self.tokens_seen, self.output_reserved))


@dataclass
class RunState:
    """One run of an agent: one owner for everything the engine knows about it."""

    run_id: str
    identity: Identity
    plan: Plan
    thread: str | None  # the LangGraph conversation (config thread_id) this run belongs to
    started_at: float
    kill_checks: list[KillCheck]  # the run's own flag, then the plan's
    fields: dict[str, Any]  # how events name the run
    lock: threading.Lock = field(default_factory=threading.Lock)
    calls: dict[str, CallState] = field(default_factory=dict)
    binding: Binding = field(default_factory=lambda: Binding([], 0.0))  # bound at the first call
    halt: GuardianHalt | None = None
    would_halt: str | None = None  # shadow mode: why the run would have been halted (it was not)
    spent: Amounts = field(default_factory=Amounts)
    loop_detector: LoopDetector | None = None  # made on the first observation: most runs are one call
    loop_alerted: bool = False  # a loop signal that only alerts fired: routing treats the run as loop-suspected
    call_costs: deque[tuple[int, int]] = field(default_factory=lambda: deque(maxlen=256))  # (tokens, micro-USD)
    ended: bool = False

    @classmethod
    def start(
        cls, run_id: str, identity: Identity, plan: Plan, keys: KeyBuilder, *, thread: str | None, now: float
    ) -> RunState:
        fields = {"run_id": run_id, **plan.fields}
        if thread is not None:
            fields["thread_id"] = thread
        return cls(
            run_id=run_id,
            identity=identity,
            plan=plan,
            thread=thread,
            started_at=now,
            kill_checks=[KillCheck(keys.kill("run", run_id), "run", run_id), *plan.kill_checks],
            fields=fields,
        )

    @property
    def loop_rule(self) -> LoopRule | None:
        return self.plan.loop_rule

    @property
    def budgets(self) -> list[Budget]:
        return self.plan.budgets

    @property
    def budget_names(self) -> tuple[str, ...]:
        return self.plan.budget_names

    @property
    def targets(self) -> list[Target]:
        return self.binding.targets

    @property
    def tags(self) -> tuple[str, ...]:
        return tuple(sorted(self.identity.tags))

    @property
    def identity_names(self) -> tuple[str, str, str]:
        return self.identity.agent, self.identity.user, self.identity.tenant

    @property
    def loop_suspected(self) -> bool:
        detector = self.loop_detector
        return self.loop_alerted or (detector is not None and detector.suspected())

    def recent_costs(self, calls: int) -> tuple[int, int]:
        """Tokens and micro-dollars of the run's last ``calls`` model calls (a loop's price)."""
        with self.lock:
            recent = list(self.call_costs)[-calls:] if calls else []
        return sum(t for t, _ in recent), sum(c for _, c in recent)


# -- planning and binding ----------------------------------------------------------------------------------------


def make_plan(policy: Policy, keys: KeyBuilder, identity: Identity) -> Plan:
    """The budgets, loop rule and kill flags that apply to every run of ``identity``."""
    budgets = policy.budgets_for(identity)
    run_keys = [
        (budget, *keys.run_bucket_template(identity.tenant, budget.name)) for budget in budgets if budget.scope == "run"
    ]
    # An agent or user is killed fleet-wide or in one tenant: check both flags (one EXISTS in the ledger).
    flags: list[tuple[KillTarget, str, str | None]] = [
        ("agent", identity.agent, None),
        ("agent", identity.agent, identity.tenant),
        ("user", identity.user, None),
        ("user", identity.user, identity.tenant),
        ("tenant", identity.tenant, None),
    ]
    return Plan(
        budgets=budgets,
        budget_names=tuple(b.name for b in budgets),
        fields=identity.log_fields(),
        loop_rule=policy.loop_rule_for(identity),
        routing=policy.routing_for(identity),
        kill_checks=[KillCheck(keys.kill(t, v, tenant), t, v, tenant) for t, v, tenant in flags],
        run_keys=run_keys,
        thread_budgets=[b for b in budgets if b.scope == "thread"],
    )


def bucket_for(
    keys: KeyBuilder,
    settings: Settings,
    identity: Identity,
    budget: Budget,
    now: float,
    *,
    run_id: str = "",
    thread: str | None = None,
) -> Bucket:
    """The bucket ``budget`` charges for this identity (run, thread) at ``now``: key, scope key, window, expiry."""
    span = window_span(budget.window, budget.timezone, now)
    scope_key = identity.scope_key(budget.scope, run_id, thread)
    tenant = None if budget.scope == "global" else identity.tenant
    key = keys.bucket(BucketKey(tenant, budget.name, budget.scope, scope_key, span.id))
    if span.end is not None:
        expires = span.end + WINDOW_GRACE_S
    elif budget.scope == "thread":  # a lifetime: kept while the conversation is used (rebound hourly)
        expires = now + settings.thread_ttl_s
    else:
        expires = now + settings.run_ttl_s
    return Bucket(budget, Target(key, budget.limits, expires, budget.enforced), scope_key, span.id, span.end)


def shared_buckets(
    plan: Plan, keys: KeyBuilder, settings: Settings, identity: Identity, now: float
) -> tuple[float, list[Bucket]]:
    """The buckets of an identity's agent/user/tenant/global budgets, the same for all its runs, and until when."""
    buckets = [bucket_for(keys, settings, identity, b, now) for b in plan.budgets if b.scope not in ("run", "thread")]
    until = min([now + TARGETS_REFRESH_S, *(b.window_end for b in buckets if b.window_end is not None)])
    return until, buckets


def bind(
    run: RunState, keys: KeyBuilder, settings: Settings, shared: tuple[float, list[Bucket]], now: float
) -> Binding:
    """A run's buckets at ``now``: its own run and thread buckets, then the identity's ``shared`` ones."""
    until, common = shared
    expires = now + settings.run_ttl_s
    run_key = escape(run.run_id)
    buckets = [
        Bucket(b, Target(prefix + run_key + suffix, b.limits, expires, b.enforced), run.run_id, "run", None)
        for b, prefix, suffix in run.plan.run_keys
    ]
    buckets += [
        bucket_for(keys, settings, run.identity, b, now, run_id=run.run_id, thread=run.thread)
        for b in run.plan.thread_budgets
    ]
    return Binding(buckets + common, min(until, now + TARGETS_REFRESH_S))


# -- amounts ------------------------------------------------------------------------------------------------------


def priced(pricer: Pricer, provider: str | None, model: str, prompt_tokens: int, output_tokens: int) -> Amounts | None:
    """What a call of ``prompt_tokens`` in and ``output_tokens`` out may use; None when its model has no price."""
    cost = pricer.cost(provider, model, TokenUsage(input_tokens=prompt_tokens, output_tokens=output_tokens))
    if cost is None:
        return None
    return Amounts(prompt_tokens, output_tokens, prompt_tokens + output_tokens, cost, 1)


def charged(usage: TokenUsage, cost_micro_usd: int) -> Amounts:
    """What a model call that used ``usage`` is charged."""
    return Amounts(usage.input_tokens, usage.output_tokens, usage.total_tokens, cost_micro_usd, 1)


def extension_wanted(call: CallState, block_tokens: int) -> int:
    """The output hold a stream at its hold asks for: enough whole blocks to cover what already arrived plus the
    next token (a chunk may hold many tokens); only the next token once a whole block was refused."""
    if call.near_limit:
        return call.tokens_seen + 1
    return call.output_reserved + block_tokens * ((call.tokens_seen - call.output_reserved) // block_tokens + 1)


def is_over_hold(call: CallState, actual: Amounts) -> bool:
    """A commit far above its hold (a call without ``max_tokens`` that outran what its history taught)."""
    held = call.estimate.total_tokens
    return call.reserved and actual.total_tokens > max(OVER_HOLD_FACTOR * held, held + OVER_HOLD_MIN_TOKENS)


# -- spending less ------------------------------------------------------------------------------------------------


def routed_to(
    rules: tuple[RoutingRule, ...],
    origin: ModelRef,
    *,
    shares: Mapping[str, float],
    loop_suspected: bool,
    run_cost_micro_usd: int,
) -> Route | None:
    """The first rule that routes ``origin`` and whose conditions all hold now. ``shares`` is how much of each
    budget the run's buckets have used (the largest share of a limit), for rules that name a budget."""
    for rule in rules:
        target = rule.route.get(origin)
        if target is None:
            continue
        reasons = []
        if rule.budget is not None and rule.used_at_least is not None:
            share = shares.get(rule.budget)
            if share is None or share < rule.used_at_least:
                continue
            reasons.append(f"{rule.budget} {share:.0%} used")
        if rule.loop_suspected is not None:
            if loop_suspected != rule.loop_suspected:
                continue
            reasons.append("loop suspected" if loop_suspected else "no loop suspected")
        if rule.run_cost_at_least_micro_usd is not None:
            if run_cost_micro_usd < rule.run_cost_at_least_micro_usd:
                continue
            reasons.append("run cost reached")
        return Route(rule.name, origin, target, ", ".join(reasons))
    return None


def affordable_output(
    buckets: list[Bucket], states: Sequence[BucketState], prompt_tokens: int, cost_of: Callable[[int], int]
) -> int:
    """The largest output cap every enforced bucket can still afford for a call of ``prompt_tokens`` (0: none).
    ``states`` are the buckets' states before the call; ``cost_of(n)`` is the call's cost with ``n`` output tokens."""
    best: int | None = None
    for bucket, state in zip(buckets, states, strict=False):
        if not bucket.target.enforce:
            continue
        for metric, limit in zip(METRICS, bucket.target.limits, strict=True):
            if limit == NO_LIMIT:
                continue
            room = limit - (state.spent.get(metric) + state.reserved.get(metric))
            cap: int | None
            if metric == "output_tokens":
                cap = room
            elif metric == "total_tokens":
                cap = room - prompt_tokens
            elif metric == "cost_usd":
                cap = _most_output_within(room, cost_of)
            elif metric == "input_tokens":
                cap = None if room >= prompt_tokens else 0
            elif metric == "llm_calls":
                cap = None if room >= 1 else 0
            else:
                cap = None  # tool calls do not limit a model call
            if cap is not None:
                best = cap if best is None else min(best, cap)
    return max(0, best if best is not None else 0)


def _most_output_within(room_micro_usd: int, cost_of: Callable[[int], int]) -> int:
    """The most output tokens whose call costs no more than ``room_micro_usd`` (cost rises with output)."""
    if cost_of(0) > room_micro_usd:
        return -1
    low, high = 0, 1
    while cost_of(high) <= room_micro_usd and high < 1 << 40:
        low, high = high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        if cost_of(middle) <= room_micro_usd:
            low = middle
        else:
            high = middle
    return low


CACHEABLE_MIN_TOKENS = 1024  # providers cache a prompt prefix from about this long (OpenAI, Anthropic)


@dataclass(frozen=True, slots=True)
class CacheFigures:
    read_saved_micro_usd: int = 0
    write_premium_micro_usd: int = 0
    cacheable_micro_usd: int = 0


_NO_CACHE = CacheFigures()


def cache_figures(cost_of: Callable[[TokenUsage], int], usage: TokenUsage, prefix_tokens: int) -> CacheFigures:
    """Prompt caching's economics for one call, at its model's prices (``cost_of``): what its cache reads saved
    and its cache writes cost above the plain input price, and, for a call that read nothing from the cache, what
    reading its stable prefix would have saved (when the prefix is long enough to be cached)."""
    i, o, cr, cw = usage.input_tokens, usage.output_tokens, usage.cache_read_tokens, usage.cache_write_tokens
    if not cr and not cw and prefix_tokens < CACHEABLE_MIN_TOKENS:
        return _NO_CACHE  # most calls: nothing to price again
    actual = cost_of(usage)
    read_saved = max(0, cost_of(TokenUsage(i, o, 0, cw)) - actual) if cr else 0
    write_premium = max(0, actual - cost_of(TokenUsage(i, o, cr, 0))) if cw else 0
    cacheable = 0
    if not cr and prefix_tokens >= CACHEABLE_MIN_TOKENS:
        plain = cost_of(TokenUsage(prefix_tokens, 0))
        cacheable = max(0, plain - cost_of(TokenUsage(prefix_tokens, 0, prefix_tokens, 0)))
    return CacheFigures(read_saved, write_premium, cacheable)


# -- judging ------------------------------------------------------------------------------------------------------


def used_share(limits: Mapping[str, int], spent: Amounts, reserved: Amounts) -> float | None:
    """The largest share of a limit that spent and in-flight amounts take (None: no limit); a zero limit is full."""
    shares = [(spent.get(m) + reserved.get(m)) / limit if limit else 1.0 for m, limit in limits.items()]
    return max(shares) if shares else None


def thresholds_passed(budget: Budget, state: BucketState) -> tuple[str | None, list[float]]:
    """For a bucket's state: the metric an alert-only budget has passed (or None), and the ``alert_at``
    thresholds its spend has reached."""
    if not _watched(budget):
        return None, []
    limits = budget.limited()
    over = None
    if not budget.enforced:
        over = next((m for m, limit in limits.items() if state.spent.get(m) + state.reserved.get(m) > limit), None)
    fraction = max((state.spent.get(m) / limit if limit else 1.0) for m, limit in limits.items())
    return over, [t for t in budget.alert_at if fraction >= t]


def bucket_alert(
    kind: Literal["threshold", "exceeded"],
    run: RunState,
    bucket: Bucket,
    state: BucketState | None,
    *,
    dedup_key: str,
    threshold: float,
    reason: str,
    now: float,
    run_ttl_s: float,
) -> Alert:
    """The alert for a bucket that passed a threshold or its limit; deduplicated until its window ends."""
    spent = state.spent + state.reserved if state is not None and kind == "exceeded" else None
    end = bucket.window_end if bucket.window_end is not None else now + run_ttl_s
    return Alert(
        kind=kind,
        dedup_key=dedup_key,
        dedup_ttl_s=max(1.0, end - now),
        occurred_at=now,
        run_id=run.run_id,
        agent=run.identity.agent,
        user=run.identity.user,
        tenant=run.identity.tenant,
        budget=bucket.budget.name,
        scope=bucket.budget.scope,
        scope_key=bucket.scope_key,
        window=bucket.window,
        threshold=threshold,
        spent=(spent or (state.spent if state else Amounts())).nonzero(),
        limit=bucket.budget.limited(),
        reason=reason,
    )


def loop_alert(
    run: RunState, verdict: LoopVerdict, *, dedup_key: str, tokens: int, cost: int, now: float, run_ttl_s: float
) -> Alert:
    """The alert for a loop found in ``run``; one per run and rule."""
    return Alert(
        kind="loop",
        dedup_key=dedup_key,
        dedup_ttl_s=run_ttl_s,
        occurred_at=now,
        run_id=run.run_id,
        agent=run.identity.agent,
        user=run.identity.user,
        tenant=run.identity.tenant,
        scope="run",
        scope_key=run.run_id,
        spent={"total_tokens": tokens, "cost_usd": cost} if tokens else {},
        reason=f"{verdict.signal} on {verdict.subject} after {verdict.repeats} repeats: {verdict.description}",
    )


def call_record(
    run: RunState,
    call: CallState,
    usage: TokenUsage,
    actual: Amounts,
    now: float,
    *,
    estimated: bool,
    saved_micro_usd: int = 0,
    cache: CacheFigures | None = None,
) -> UsageRecord:
    """The history record of a committed model call; ``saved_micro_usd`` is what routing saved (or would have)."""
    flags = []
    if estimated:
        flags.append("estimated")
    if call.routed is not None:
        flags.append("would_route" if call.routed.shadow else "routed")
    if call.clamped:
        flags.append("clamped")
    return UsageRecord(
        "call",
        now,
        run.run_id,
        *run.identity_names,
        thread=run.thread,
        tags=run.tags,
        model=call.model,
        provider=call.provider or "",
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        cost_micro_usd=actual.cost_usd,
        saved_micro_usd=saved_micro_usd,
        cache_read_saved_micro_usd=cache.read_saved_micro_usd if cache else 0,
        cache_write_premium_micro_usd=cache.write_premium_micro_usd if cache else 0,
        prefix=call.prefix[0] if call.prefix else "",
        rule=call.routed.rule if call.routed else "",
        cacheable_micro_usd=cache.cacheable_micro_usd if cache else 0,
        flags=tuple(flags),
    )


def cache_hit_record(run: RunState, call: CallState, saved: int, now: float) -> UsageRecord:
    """The history record of a call answered from the framework's cache."""
    return UsageRecord(
        "cache_hit",
        now,
        run.run_id,
        *run.identity_names,
        thread=run.thread,
        tags=run.tags,
        model=call.model,
        provider=call.provider or "",
        saved_micro_usd=saved,
    )


def halt_record(run: RunState, halt: GuardianHalt, now: float) -> UsageRecord:
    """The history record of a run's halt: its type, and the budget or loop signal that caused it."""
    detail = getattr(halt, "budget", None) or getattr(halt, "signal", None) or getattr(halt, "target", None) or ""
    return _stop_record("halt", run, type(halt).__name__, str(detail), now)


def would_halt_record(run: RunState, reason: str, detail: str, now: float) -> UsageRecord:
    """The history record of a halt shadow mode did not make: the run went on from here."""
    return _stop_record("would_halt", run, reason, detail, now)


def _stop_record(kind: Kind, run: RunState, reason: str, detail: str, now: float) -> UsageRecord:
    return UsageRecord(
        kind, now, run.run_id, *run.identity_names, thread=run.thread, tags=run.tags, reason=reason, detail=detail
    )


def daily_counter_span(now: float) -> tuple[str, float]:
    """The UTC day per-agent counters (loop halts, cache hits) are kept by: its id, and their TTL from ``now``
    (a grace period past the day, like calendar buckets)."""
    span = window_span("day", _UTC, now)
    return span.id, (span.end or now) + WINDOW_GRACE_S - now

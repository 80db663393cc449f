"""``Guardian``: the object a user builds once per process and attaches to agents."""

from __future__ import annotations

import math
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from types import TracebackType
from typing import Any

import redis

from guardian.alerts import Alert, AlertDispatcher, AlertSink, build_dispatcher
from guardian.amounts import METRICS, NO_LIMIT, Amounts, format_amount, micro_usd
from guardian.errors import GuardianError
from guardian.history import UsageRecord
from guardian.identity import Identity
from guardian.integrations.langchain import GuardianCallbackHandler
from guardian.keys import DEFAULT_PREFIX, KeyBuilder, KillFlag, KillTarget
from guardian.policy import Policy
from guardian.renewal import HoldRenewer
from guardian.replay import ReplayResult, replay
from guardian.report import Report, build_report, parse_since
from guardian.runs import used_share
from guardian.store import RedisStore, Store, open_store
from guardian.store.base import Counter
from guardian.supervisor import Supervisor
from guardian.telemetry import Telemetry
from guardian.threads import on_background_thread

__all__ = ["MAX_KILL_TTL_S", "STORE_URL_ENV", "BudgetStatus", "Guardian", "describe_kill", "validate_kill_ttl"]

STORE_URL_ENV = "GUARDIAN_STORE_URL"
MAX_KILL_TTL_S = 365 * 86_400.0  # a kill flag lasts at most a year: every key has a TTL


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """One budget bucket as ``guardian status`` shows it."""

    budget: str
    scope: str
    scope_key: str
    window: str
    tenant: str | None
    spent: Amounts
    reserved: Amounts
    limits: dict[str, int]  # empty when the budget is no longer in the policy
    refused: int = 0  # calls the budget turned away in this window

    def used_fraction(self) -> float | None:
        return used_share(self.limits, self.spent, self.reserved)


class Guardian:
    """Budgets and loop rules from a policy, enforced through a store shared by the fleet.

    ``store``: a ``Store``, a ``redis.Redis`` client, a URL (``memory://``, ``redis://``, ``rediss://``,
    ``unix://``), or None for ``$GUARDIAN_STORE_URL`` and else the embedded in-process store.
    """

    def __init__(
        self,
        policy: Policy,
        *,
        store: Store | redis.Redis | str | None = None,
        key_prefix: str = DEFAULT_PREFIX,
        clock: Callable[[], float] = time.time,
        alert_sinks: Iterable[AlertSink] = (),
        telemetry: Telemetry | None = None,
    ) -> None:
        self.policy = policy
        self.clock = clock
        self.keys = KeyBuilder(key_prefix)
        self.store = _resolve_store(store)
        self.alerts: AlertDispatcher = build_dispatcher(
            policy.alerts, store=self.store, keys=self.keys, clock=clock, extra_sinks=alert_sinks
        )
        bind_policy = getattr(telemetry, "bind_policy", None)
        if callable(bind_policy):
            bind_policy(policy)
        self.supervisor = Supervisor(
            policy, self.store, keys=self.keys, clock=clock, alerts=self.alerts, telemetry=telemetry
        )
        # Deferred commits and queued alerts must not vanish: close() flushes both, and so does this finalizer when
        # the interpreter exits or when the supervisor (held by this Guardian and by every handler it made) is
        # garbage-collected unclosed. It holds the resources, never the Guardian, so dropping one frees it all.
        self._finalizer = weakref.finalize(self.supervisor, _release, self.supervisor.renewer, self.alerts, self.store)

    @classmethod
    def from_yaml(cls, *paths: str | os.PathLike[str], **options: Any) -> Guardian:
        return cls(Policy.from_yaml(*paths), **options)

    def callback(
        self,
        agent: str | None = None,
        user: str | None = None,
        tenant: str | None = None,
        tags: Iterable[str] = (),
    ) -> GuardianCallbackHandler:
        """A LangChain callback handler for runs of this identity (overridable per run via config metadata
        ``guardian_agent``, ``guardian_user``, ``guardian_tenant``)."""
        return GuardianCallbackHandler(self.supervisor, Identity.of(agent, user, tenant, tags))

    def middleware(
        self,
        agent: str | None = None,
        user: str | None = None,
        tenant: str | None = None,
        tags: Iterable[str] = (),
        *,
        exit_behavior: str = "error",
        outcome: Callable[[Any], Any] | None = None,
        models: Mapping[str, Any] | None = None,
    ) -> Any:
        """A LangChain v1 ``AgentMiddleware`` for ``create_agent(model, tools, middleware=[...])``.

        ``exit_behavior``: ``"error"`` raises the halt; ``"end"`` ends the run with an ``AIMessage`` saying
        what stopped it; ``"interrupt"`` pauses a checkpointed run with ``interrupt()`` so it can be resumed
        with ``Command(resume=...)`` once there is room. ``outcome``: called with the agent's final state as a
        run finishes, returns whether it succeeded (``True``/``False``, or ``(success, value_usd)``, or None for
        no judgement), recorded for reports. ``models``: the chat models routing rules send calls to, by
        ``"provider:model"`` (others are built with ``init_chat_model``). Needs ``langchain`` (``create_agent``).
        """
        try:
            from guardian.integrations.middleware import GuardianMiddleware
        except ImportError as exc:  # pragma: no cover - langchain is a dev dependency here
            raise ImportError(
                "Guardian.middleware needs LangChain v1's agents: pip install 'guardian-supervisor[langchain]'"
            ) from exc
        identity = Identity.of(agent, user, tenant, tags)
        return GuardianMiddleware(self.supervisor, identity, exit_behavior, outcome, models)  # type: ignore[arg-type]

    def router(self, model: Any, models: Mapping[str, Any]) -> Any:
        """Routing rules for a plain LangGraph app that uses the callback: a runnable that stands where ``model``
        stands and sends each call to ``models["provider:model"]`` while a rule holds (see the README)."""
        from guardian.integrations.router import make_router

        return make_router(model, models)

    def openai_hooks(
        self,
        agent: str | None = None,
        user: str | None = None,
        tenant: str | None = None,
        tags: Iterable[str] = (),
        *,
        run_id: str | None = None,
    ) -> Any:
        """``RunHooks`` for one OpenAI Agents SDK ``Runner.run``: pass ``hooks=`` and call ``.close()`` when the
        run ends (``guardian.integrations.openai_agents.run`` does both). Needs ``openai-agents``."""
        try:
            from guardian.integrations.openai_agents import GuardianRunHooks
        except ImportError as exc:  # pragma: no cover - a dev dependency here
            raise ImportError(
                "Guardian.openai_hooks needs the OpenAI Agents SDK: pip install 'guardian-supervisor[openai-agents]'"
            ) from exc
        return GuardianRunHooks(self.supervisor, Identity.of(agent, user, tenant, tags), run_id)

    def kill(
        self,
        *,
        run: str | None = None,
        agent: str | None = None,
        user: str | None = None,
        tenant: str | None = None,
        ttl_s: float | None = 86_400.0,
        clear: bool = False,
    ) -> str:
        """Set (or clear) a kill flag; every reservation checks it. Returns the key written.

        Name one of ``run``, ``agent``, ``user``, or ``tenant`` alone (the whole tenant). An agent or user
        with a ``tenant`` is killed in that tenant only; without one, in every tenant. ``clear`` lifts the
        flag the same arguments would set.
        """
        flag = _one_target(run=run, agent=agent, user=user, tenant=tenant)
        key = self.keys.kill(*flag)
        now = self.clock()
        if clear:
            self.store.clear_flag(key)
            return key
        if ttl_s is not None:
            validate_kill_ttl(ttl_s)
        self.store.set_flag(key, ttl_s, now=now)
        target, value, scoped_to = flag
        self.alerts.submit(
            Alert(
                kind="killed",
                dedup_key=self.keys.dedup("killed", target, value, scoped_to or "", f"{now:.3f}"),
                dedup_ttl_s=ttl_s or 86_400.0,
                occurred_at=now,
                run_id=value if target == "run" else None,
                agent=value if target == "agent" else None,
                user=value if target == "user" else None,
                tenant=scoped_to,
                scope=target,
                scope_key=value,
                reason=f"an operator killed {describe_kill(flag)}: its next model or tool call is refused",
            )
        )
        return key

    def grant(
        self,
        budget: str,
        *,
        usd: Decimal | float | str | None = None,
        tokens: int | None = None,
        calls: int | None = None,
        run: str | None = None,
        thread: str | None = None,
        agent: str | None = None,
        user: str | None = None,
        tenant: str | None = None,
        reason: str = "",
    ) -> str:
        """Give one bucket of ``budget`` (this window's) more room: ``usd`` dollars, ``tokens`` total tokens or
        ``calls`` model calls, on top of its limit, fleet-wide, until the window ends. Name the bucket as the
        budget scopes it (``user`` and ``tenant`` for a user budget, ``run`` for a run budget...). Returns the
        bucket key. Every grant is logged (``budget_granted``) and alerted (``granted``)."""
        try:
            spec = self.policy.budget(budget)
        except KeyError:
            raise GuardianError(f"no budget named {budget!r} in the policy") from None
        amounts = {
            "cost_usd": None if usd is None else micro_usd(Decimal(str(usd))),
            "total_tokens": tokens,
            "llm_calls": calls,
        }
        given = {m: v for m, v in amounts.items() if v is not None}
        if not given or any(v <= 0 for v in given.values()):
            raise GuardianError("grant a positive amount: --usd, --tokens or --calls")
        unlimited = [m for m in given if m not in spec.limited()]
        if unlimited:
            raise GuardianError(f"budget {budget!r} has no {', '.join(unlimited)} limit to raise")
        needed = {"run": run, "thread": thread, "agent": agent, "user": user, "tenant": tenant}.get(spec.scope)
        if spec.scope != "global" and not needed:
            raise GuardianError(f"budget {budget!r} is scoped per {spec.scope}: name the {spec.scope} to grant to")
        identity = Identity.of(agent, user, tenant)
        now = self.clock()
        target = self.supervisor.bucket_of(identity, spec, now, run_id=run or "", thread=thread)
        bucket, scope_key, window = target.target.key, target.scope_key, target.window
        ttl = target.target.expires_at - now  # the grant lives as long as its bucket
        totals = {m: self.store.count(Counter(self.keys.grant(bucket, m), ttl), v, now=now) for m, v in given.items()}
        shown = ", ".join(f"{format_amount(m, v)} {m}" for m, v in given.items())
        self.supervisor.log.warning(
            "budget_granted", budget=spec.name, scope=spec.scope, scope_key=scope_key, window=window,
            tenant=identity.tenant, granted=given, granted_total=totals, reason=reason,
        )  # fmt: skip
        self.alerts.submit(
            Alert(
                kind="granted",
                dedup_key=self.keys.dedup("granted", bucket, f"{now:.3f}"),
                dedup_ttl_s=max(1.0, ttl),
                occurred_at=now,
                run_id=run,
                agent=agent,
                user=user,
                tenant=None if spec.scope == "global" else identity.tenant,
                budget=spec.name,
                scope=spec.scope,
                scope_key=scope_key,
                window=window,
                spent={},
                limit=spec.limited(),
                reason=f"an operator granted {shown} to {spec.scope} {scope_key!r} of budget {spec.name!r}"
                + (f": {reason}" if reason else ""),
            )
        )
        return bucket

    def grants(self) -> list[tuple[str, str, int]]:
        """(bucket key, metric, amount granted) for every live grant."""
        return [
            (*self.keys.parse_grant(key), value)
            for key, value in self.store.counters(self.keys.grant_pattern(), self.clock())
        ]

    def status(self, *, budget: str | None = None, tenant: str | None = None) -> list[BudgetStatus]:
        self.store.flush()
        rows = []
        for key, state in self.store.scan(self.keys.bucket_pattern(), self.clock()):
            parsed = self.keys.parse_bucket(key)
            if budget is not None and parsed.budget != budget:
                continue
            if tenant is not None and parsed.tenant != tenant:
                continue
            try:
                limits = self.policy.budget(parsed.budget).limited()
            except KeyError:  # no policy given (the CLI without -p), or a budget it no longer has: the stored ones
                stored = state.limits or ()
                limits = {m: v for m, v in zip(METRICS, stored, strict=False) if v != NO_LIMIT}
            rows.append(
                BudgetStatus(
                    parsed.budget,
                    parsed.scope,
                    parsed.scope_key,
                    parsed.window,
                    parsed.tenant,
                    state.spent,
                    state.reserved,
                    limits,
                    state.refused,
                )
            )
        return rows

    def loop_halts(self) -> list[tuple[str | None, str, str, int]]:
        """(tenant, agent, UTC day, loops detected) from the store."""
        return self._daily_counts("loop_halts")

    def would_halts(self) -> list[tuple[str | None, str, str, int]]:
        """(tenant, agent, UTC day, runs shadow mode would have halted) from the store."""
        return self._daily_counts("would_halts")

    def _daily_counts(self, kind: str) -> list[tuple[str | None, str, str, int]]:
        out = []
        for key, value in self.store.counters(self.keys.counter_pattern(kind), self.clock()):
            tenant, _, agent, day = self.keys.parse_counter(key)
            out.append((tenant, agent, day, value))
        return out

    def record_outcome(
        self,
        run_id: str,
        *,
        success: bool,
        value_usd: Decimal | float | str | None = None,
        agent: str | None = None,
        user: str | None = None,
        tenant: str | None = None,
    ) -> None:
        """Record what a run achieved: ``success``, and what it was worth (``value_usd``, dollars). Reports then
        show cost per successful run, value per dollar and the cost of failures. ``run_id`` is the run's id (the
        callback's root run: name it with ``config["run_id"]``; the middleware records outcomes itself with its
        ``outcome=`` hook). Giving the run's ``tenant`` keeps the record in that tenant's history."""
        try:
            value = 0 if value_usd is None else micro_usd(Decimal(str(value_usd)))
        except InvalidOperation:
            raise GuardianError(f"value_usd is a number of dollars, got {value_usd!r}") from None
        if value < 0 or not isinstance(success, bool):
            raise GuardianError("an outcome is success=True or False, with a value_usd of 0 or more")
        identity = None if tenant is None and agent is None and user is None else Identity.of(agent, user, tenant)
        self.supervisor.record_outcome(run_id, success=success, value_micro_usd=value, identity=identity)

    def history(
        self, *, since: float | str = "7d", until: float | None = None, tenant: str | None = None
    ) -> list[UsageRecord]:
        """The spend history's records from ``since`` (epoch seconds, or ``7d``/``24h``/an ISO date) to ``until``
        (default: now), oldest first; with ``tenant``, that tenant's records and the outcomes of its runs."""
        start, end = self._period(since, until)
        records = []
        for t, payload in self.store.history(self.keys.history_pattern(), start, end):
            record = UsageRecord.from_payload(t, payload)
            if record is not None:
                records.append(record)
        if tenant is not None:
            runs = {r.run for r in records if r.tenant == tenant}
            records = [r for r in records if r.tenant == tenant or (r.kind == "outcome" and r.run in runs)]
        return records

    def report(
        self,
        *,
        since: float | str = "7d",
        until: float | None = None,
        by: str = "agent",
        top: int = 10,
        tenant: str | None = None,
    ) -> Report:
        """Where the money went from ``since`` to ``until``, grouped ``by`` agent, user, tenant, model or day
        (see ``guardian.report``); what ``guardian report`` prints for the fleet."""
        start, end = self._period(since, until)
        records = self.history(since=start, until=end, tenant=tenant)
        return build_report(records, since=start, until=end, by=by, top=top)

    def replay(
        self,
        policy: Policy,
        *,
        since: float | str = "7d",
        until: float | None = None,
        by: str = "agent",
        tenant: str | None = None,
    ) -> ReplayResult:
        """The spend history from ``since`` to ``until`` judged again under ``policy`` (see ``guardian.replay``):
        what it would have stopped and saved, grouped ``by`` agent, user, tenant, model or day."""
        start, end = self._period(since, until)
        records = self.history(since=start, until=end, tenant=tenant)
        return replay(records, policy, since=start, until=end, by=by)

    def _period(self, since: float | str, until: float | None) -> tuple[float, float]:
        """``since`` (epoch seconds, or ``7d``/``24h``/an ISO date) and ``until`` (default: now) as epoch seconds."""
        now = self.clock()
        start = parse_since(since, now) if isinstance(since, str) else since
        return start, now + 1.0 if until is None else until

    def kills(self, *, tenant: str | None = None) -> list[KillFlag]:
        """The kill flags set now; with ``tenant``, only those that halt runs of that tenant (its own and
        the fleet-wide ones)."""
        flags = [self.keys.parse_kill(k) for k in self.store.flags(self.keys.kill_pattern(), self.clock())]
        return [f for f in flags if tenant is None or f.tenant in (None, tenant)]

    def flush(self) -> None:
        """Make deferred commits durable (the Redis store batches them off the call path)."""
        self.store.flush()

    def close(self) -> None:
        """Flush usage and alerts, stop background threads, close connections. Idempotent."""
        self._finalizer()

    def __enter__(self) -> Guardian:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _release(renewer: HoldRenewer, alerts: AlertDispatcher, store: Store) -> None:
    if on_background_thread():
        # Garbage collection ran this finalizer on our flusher or alert worker, which cannot join or drain
        # itself: close from a thread of its own (not a daemon, so an exiting interpreter waits for the flush).
        threading.Thread(target=_release_now, args=(renewer, alerts, store), name="guardian-close").start()
        return
    _release_now(renewer, alerts, store)


def _release_now(renewer: HoldRenewer, alerts: AlertDispatcher, store: Store) -> None:
    renewer.stop()
    alerts.close()
    store.close()


def _resolve_store(store: Store | redis.Redis | str | None) -> Store:
    if isinstance(store, Store):
        return store
    if isinstance(store, redis.Redis):
        return RedisStore(store)
    if store is None:
        store = os.environ.get(STORE_URL_ENV) or "memory://"
    return open_store(store)


def validate_kill_ttl(ttl_s: float, name: str = "ttl_s") -> None:
    """A kill flag's lifetime: finite, above 0 and at most ``MAX_KILL_TTL_S``; else ``ValueError``."""
    if not math.isfinite(ttl_s) or ttl_s <= 0:
        raise ValueError(f"{name} must be a finite number of seconds above 0, not {ttl_s:g}")
    if ttl_s > MAX_KILL_TTL_S:
        raise ValueError(f"{name} must be at most a year ({MAX_KILL_TTL_S:.0f} seconds), not {ttl_s:g}")


def describe_kill(flag: KillFlag) -> str:
    """How a person reads a kill flag: ``user 'alice' in tenant 'acme'``, ``user 'alice' in every tenant``."""
    target, value, tenant = flag
    if target == "tenant":
        return f"tenant {value!r}"
    if target == "run":
        return f"run {value!r}"
    return f"{target} {value!r} " + ("in every tenant" if tenant is None else f"in tenant {tenant!r}")


def _one_target(*, run: str | None, agent: str | None, user: str | None, tenant: str | None) -> KillFlag:
    named: tuple[tuple[KillTarget, str | None], ...] = (("run", run), ("agent", agent), ("user", user))
    given = [(target, value) for target, value in named if value is not None]
    if not given and tenant is not None:
        return KillFlag("tenant", tenant, tenant)
    if len(given) != 1:
        raise ValueError(
            "name exactly one of run, agent, user (with tenant: only in that tenant); "
            "tenant alone kills the whole tenant"
        )
    ((target, value),) = given
    if target == "run" and tenant is not None:
        raise ValueError("a run kill takes no tenant: a run id is unique across the fleet, so name the run alone")
    for name, text in ((target, value), ("tenant", tenant)):
        if text is not None and not text.strip():
            raise ValueError(f"the {name} to kill is empty")
    return KillFlag(target, value, tenant)

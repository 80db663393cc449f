"""Ledger invariants under random interleavings, on both stores (hypothesis).

In the spirit of Cycles' "no overdraw / no leaked hold" checks: random sequences of reserve, extend, commit,
release, renew, tool charges, time passing (holds expiring), duplicate deliveries and process death never

- leave spent + reserved above a limit (commits here never exceed their holds, so this holds at every step),
- leak a hold past its TTL (once every TTL has passed, nothing is reserved),
- count a call twice: spent is exactly, per call, what it committed (its first commit), else what its expired
  hold was charged (a process that died), else nothing (released); and each tool charge once.

The reference below is the contract written as plainly as possible; both stores must agree with it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guardian.amounts import METRICS, Amounts
from guardian.keys import BucketKey, KeyBuilder
from guardian.store import (
    NO_LIMIT,
    ChargeMode,
    CommitRequest,
    MemoryStore,
    RedisStore,
    ReleaseRequest,
    RenewRequest,
    ReserveRequest,
    Store,
    Target,
)

T0 = 1_900_000_000
TTL = 10
TOKEN_LIMIT, CALL_LIMIT, TOOL_LIMIT = 100, 4, 3
CALLS = 3  # few calls, so that random ops often meet the same one
TOOLS = 2

Op = tuple[str, int, int]

ops = st.lists(
    st.one_of(
        st.tuples(st.just("reserve"), st.integers(0, CALLS - 1), st.integers(1, 60)),
        st.tuples(st.just("extend"), st.integers(0, CALLS - 1), st.integers(1, 80)),
        st.tuples(st.just("commit"), st.integers(0, CALLS - 1), st.integers(0, 100)),  # percent of the hold
        st.tuples(st.just("duplicate"), st.integers(0, CALLS - 1), st.just(0)),  # the last commit, again
        st.tuples(st.just("release"), st.integers(0, CALLS - 1), st.just(0)),
        st.tuples(st.just("renew"), st.integers(0, CALLS - 1), st.just(0)),
        st.tuples(st.just("die"), st.integers(0, CALLS - 1), st.just(0)),
        st.tuples(st.just("charge"), st.integers(0, TOOLS - 1), st.just(0)),
        st.tuples(st.just("advance"), st.just(0), st.integers(1, 15)),
    ),
    min_size=8,
    max_size=60,
)


def amount(tokens: int) -> Amounts:
    return Amounts(total_tokens=tokens, llm_calls=1)


@dataclass
class Call:
    state: str = "new"  # new | live | expired | committed | released | dead
    hold: int = 0
    expiry: int = 0
    charged: int = 0  # what its expiry charged (tokens)
    committed: int = 0
    last_commit: int | None = None


@dataclass
class Reference:
    """The ledger contract, per call."""

    now: int = T0
    calls: dict[int, Call] = field(default_factory=lambda: {i: Call() for i in range(CALLS)})
    tools: set[int] = field(default_factory=set)

    def sweep(self) -> None:
        for call in self.calls.values():
            if call.state in ("live", "dead") and call.hold and call.expiry <= self.now:
                call.charged, call.hold = call.hold, 0
                call.state = "expired" if call.state == "live" else "dead-charged"

    def spent(self) -> tuple[int, int]:
        tokens = calls = 0
        for call in self.calls.values():
            if call.state == "committed":
                tokens, calls = tokens + call.committed, calls + 1
            elif call.state in ("expired", "dead-charged"):
                tokens, calls = tokens + call.charged, calls + 1
        return tokens, calls

    def reserved(self) -> tuple[int, int]:
        held = [c for c in self.calls.values() if c.hold]
        return sum(c.hold for c in held), len(held)

    def fits(self, extra_tokens: int, extra_calls: int) -> bool:
        (spent_t, spent_c), (held_t, held_c) = self.spent(), self.reserved()
        tokens_ok = extra_tokens <= 0 or spent_t + held_t + extra_tokens <= TOKEN_LIMIT
        calls_ok = extra_calls <= 0 or spent_c + held_c + extra_calls <= CALL_LIMIT
        return tokens_ok and calls_ok


def target(keys: KeyBuilder) -> Target:
    limits = {"total_tokens": TOKEN_LIMIT, "llm_calls": CALL_LIMIT, "tool_calls": TOOL_LIMIT}
    key = keys.bucket(BucketKey("acme", "p", "tenant", "acme", "2030-03-17"))
    return Target(key, tuple(limits.get(m, NO_LIMIT) for m in METRICS), T0 + 86_400)


def play(store: Store, keys: KeyBuilder, trace: list[Op]) -> None:
    t = target(keys)
    ref = Reference()
    run = uuid.uuid4().hex[:8]  # call ids unique to this example

    def cid(i: int) -> str:
        return f"{run}-c{i}"

    def check_state() -> None:
        (state,) = store.read([t.key], float(ref.now))
        spent = (0, 0) if state is None else (state.spent.total_tokens, state.spent.llm_calls)
        reserved = (0, 0) if state is None else (state.reserved.total_tokens, state.reserved.llm_calls)
        assert spent == ref.spent(), trace
        assert reserved == ref.reserved(), trace
        tools = 0 if state is None else state.spent.tool_calls
        assert tools == len(ref.tools), trace
        assert spent[0] + reserved[0] <= TOKEN_LIMIT, trace
        assert spent[1] + reserved[1] <= CALL_LIMIT, trace

    for kind, i, n in trace:
        now = float(ref.now)
        ref.sweep()
        call = ref.calls.get(i)
        if kind == "advance":
            ref.now += n
        elif kind == "reserve" and call is not None and call.state in ("new", "live"):
            granted = ref.fits(n - call.hold, 0 if call.state == "live" else 1)
            result = store.reserve(ReserveRequest(cid(i), [t], amount(n), now, TTL))
            assert result.ok == granted, trace
            if granted:
                call.state, call.hold, call.expiry = "live", n, ref.now + TTL
        elif kind == "extend" and call is not None and call.state == "live":
            granted = ref.fits(n - call.hold, 0)
            result = store.reserve(ReserveRequest(cid(i), [t], amount(n), now, TTL, ChargeMode.EXTEND))
            assert result.ok == granted, trace
            if granted:
                call.hold, call.expiry = max(call.hold, n), ref.now + TTL
        elif kind == "commit" and call is not None and call.state in ("live", "expired"):
            used = (call.hold or call.charged) * n // 100
            store.commit(CommitRequest(cid(i), [t], amount(used), now, keys.call_marker("acme", cid(i))))
            store.flush()
            call.state, call.committed, call.hold, call.last_commit = "committed", used, 0, used
        elif kind == "duplicate" and call is not None and call.last_commit is not None:
            marker = keys.call_marker("acme", cid(i))
            store.commit(CommitRequest(cid(i), [t], amount(call.last_commit), now, marker))
            store.flush()
        elif kind == "release" and call is not None and call.state in ("live", "expired"):
            store.release(ReleaseRequest(cid(i), [t], now))
            store.flush()
            call.state, call.hold = "released", 0
        elif kind == "renew" and call is not None and call.state == "live":
            store.renew([RenewRequest(cid(i), [t], now, TTL)])
            call.expiry = ref.now + TTL
        elif kind == "die" and call is not None and call.state == "live":
            call.state = "dead"  # the process is gone: nothing settles or renews this hold again
        elif kind == "charge":
            fits = i in ref.tools or len(ref.tools) + 1 <= TOOL_LIMIT
            marker = keys.call_marker("acme", f"{run}-t{i}")
            request = ReserveRequest(f"{run}-t{i}", [t], Amounts(tool_calls=1), now, mode=ChargeMode.CHARGE)
            request.marker_key = marker
            assert store.reserve(request).ok == fits, trace
            if fits:
                ref.tools.add(i)
        ref.sweep()
        check_state()
    # Every TTL passes: no hold is left, and what expired is charged once.
    ref.now += TTL + 1
    ref.sweep()
    check_state()
    assert ref.reserved() == (0, 0)


@pytest.fixture(scope="module")
def redis_store(redis_url: str) -> Iterator[tuple[RedisStore, KeyBuilder]]:
    prefix = f"guardian-test:{uuid.uuid4().hex[:12]}:"
    store = RedisStore.from_url(redis_url)
    yield store, KeyBuilder(prefix)
    store.close()
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@settings(max_examples=300, deadline=None, database=None)
@given(trace=ops)
def test_memory_ledger_never_overdraws_leaks_or_double_counts(trace: list[Op]) -> None:
    """The invariants hold on the in-process store for every random trace."""
    play(MemoryStore(), KeyBuilder("p:"), trace)


@pytest.mark.redis
@settings(max_examples=120, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(trace=ops)
def test_redis_ledger_never_overdraws_leaks_or_double_counts(
    trace: list[Op], redis_store: tuple[RedisStore, KeyBuilder]
) -> None:
    """The same invariants on Redis, each trace on a bucket of its own."""
    store, keys = redis_store
    play(store, KeyBuilder(f"{keys.prefix}{uuid.uuid4().hex[:8]}:"), trace)

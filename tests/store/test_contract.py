"""The store contract: every test here runs on MemoryStore and on RedisStore."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import pytest

from guardian.amounts import METRICS, Amounts
from guardian.keys import BucketKey, KeyBuilder
from guardian.store import (
    NO_LIMIT,
    BucketState,
    ChargeMode,
    CommitRequest,
    KillCheck,
    MemoryStore,
    ReleaseRequest,
    ReserveRequest,
    ReserveResult,
    Store,
    Target,
)

NOW = 1_800_000_000.0


def target(keys: KeyBuilder, name: str, enforce: bool = True, tenant: str = "acme", **limits: int) -> Target:
    key = keys.bucket(BucketKey(tenant, name, "tenant", tenant, "2027-01-15"))
    return Target(
        key=key,
        limits=tuple(limits.get(m, NO_LIMIT) for m in METRICS),
        expires_at=NOW + 86_400,
        enforce=enforce,
    )


def call(tokens: int, cost: int = 0) -> Amounts:
    return Amounts(total_tokens=tokens, cost_usd=cost, llm_calls=1)


def reserve(
    store: Store,
    targets: list[Target],
    amount: Amounts,
    call_id: str | None = None,
    *,
    now: float = NOW,
    ttl_s: float = 600.0,
    mode: ChargeMode = ChargeMode.RESERVE,
    kill_checks: Sequence[KillCheck] = (),
) -> ReserveResult:
    request = ReserveRequest(call_id or uuid.uuid4().hex, targets, amount, now, ttl_s, mode, kill_checks)
    return store.reserve(request)


def commit(
    store: Store, keys: KeyBuilder, targets: list[Target], call_id: str, amount: Amounts, now: float = NOW
) -> None:
    store.commit(CommitRequest(call_id, targets, amount, now, keys.call_marker("acme", call_id)))
    store.flush()


def state(store: Store, t: Target, now: float = NOW) -> BucketState:
    (s,) = store.read([t.key], now)
    assert s is not None
    return s


def test_reserve_holds_the_amount_on_every_target(store: Store, keys: KeyBuilder) -> None:
    """A granted reservation shows as reserved (not spent) on each target."""
    a, b = target(keys, "a", total_tokens=100), target(keys, "b", total_tokens=1000)
    result = reserve(store, [a, b], call(60))
    assert result.ok
    assert [s.reserved.total_tokens for s in result.states] == [60, 60]
    assert state(store, a).spent == Amounts()
    assert state(store, b).reserved.llm_calls == 1


def test_refusal_is_all_or_nothing(store: Store, keys: KeyBuilder) -> None:
    """When one target would pass its limit, no target is charged and the refusal names it."""
    roomy, tight = target(keys, "roomy", total_tokens=1000), target(keys, "tight", total_tokens=50)
    result = reserve(store, [roomy, tight], call(60))
    assert not result.ok
    assert result.refusal is not None
    assert (result.refusal.target_index, result.refusal.metric) == (1, "total_tokens")
    assert (result.refusal.limit, result.refusal.current, result.refusal.requested) == (50, 0, 60)
    assert store.read([roomy.key], NOW) == [None]
    assert state(store, tight).refused == 1
    assert state(store, tight).reserved == Amounts()


def test_a_call_that_exactly_fills_the_limit_is_granted(store: Store, keys: KeyBuilder) -> None:
    """The limit is inclusive: spent + reserved may reach it, not pass it."""
    t = target(keys, "exact", total_tokens=100)
    assert reserve(store, [t], call(40)).ok
    assert reserve(store, [t], call(60)).ok
    assert not reserve(store, [t], call(1)).ok


def test_commit_moves_the_hold_to_spent_and_is_idempotent(store: Store, keys: KeyBuilder) -> None:
    """Commit drops the hold and adds the actual usage once, however often it is sent."""
    t = target(keys, "c", total_tokens=1000)
    assert reserve(store, [t], call(100), call_id="call-1").ok
    commit(store, keys, [t], "call-1", call(70, cost=1234))
    commit(store, keys, [t], "call-1", call(70, cost=1234))
    s = state(store, t)
    assert s.reserved == Amounts()
    assert (s.spent.total_tokens, s.spent.cost_usd, s.spent.llm_calls) == (70, 1234, 1)


def test_release_drops_the_hold_without_charging(store: Store, keys: KeyBuilder) -> None:
    """A failed call releases its reservation; nothing is spent."""
    t = target(keys, "r", total_tokens=100)
    assert reserve(store, [t], call(100), call_id="x").ok
    store.release(ReleaseRequest("x", [t], NOW))
    store.flush()
    assert state(store, t).reserved == Amounts()
    assert reserve(store, [t], call(100)).ok


def test_holds_expire_so_a_crashed_process_leaks_nothing(store: Store, keys: KeyBuilder) -> None:
    """A reservation never settled stops counting once its TTL has passed."""
    t = target(keys, "ttl", total_tokens=100)
    assert reserve(store, [t], call(100), ttl_s=30).ok
    assert not reserve(store, [t], call(1), now=NOW + 29).ok
    assert reserve(store, [t], call(100), now=NOW + 31).ok
    assert state(store, t, now=NOW + 31).reserved.total_tokens == 100


def test_an_expired_hold_swept_during_a_refused_request_is_released_for_good(store: Store, keys: KeyBuilder) -> None:
    """An expired hold swept while another target refuses the request stops counting, then and afterwards."""
    big, small = target(keys, "swept", total_tokens=1000), target(keys, "small", total_tokens=100)
    assert reserve(store, [big], call(500), ttl_s=10).ok
    assert not reserve(store, [big, small], call(200), now=NOW + 60).ok
    assert reserve(store, [big], call(600), now=NOW + 62).ok
    assert state(store, big, now=NOW + 62).reserved.total_tokens == 600


def test_commit_after_the_hold_expired_still_charges(store: Store, keys: KeyBuilder) -> None:
    """A slow call whose hold expired is still charged when it finishes: spend is reality."""
    t = target(keys, "late", total_tokens=1000)
    assert reserve(store, [t], call(100), call_id="slow", ttl_s=5).ok
    commit(store, keys, [t], "slow", call(90), now=NOW + 60)
    s = state(store, t, now=NOW + 60)
    assert (s.spent.total_tokens, s.reserved.total_tokens) == (90, 0)


def test_reserving_the_same_call_again_replaces_its_hold(store: Store, keys: KeyBuilder) -> None:
    """A retried reservation of one call id never counts twice."""
    t = target(keys, "same", total_tokens=100)
    assert reserve(store, [t], call(80), call_id="dup").ok
    assert reserve(store, [t], call(90), call_id="dup").ok
    assert state(store, t).reserved.total_tokens == 90


def test_extend_grows_a_hold_until_the_limit(store: Store, keys: KeyBuilder) -> None:
    """A stream that outgrows its estimate extends its hold; the extension is refused past the limit."""
    t = target(keys, "ext", total_tokens=100)
    assert reserve(store, [t], call(50), call_id="s").ok
    extra = Amounts(total_tokens=40)
    assert reserve(store, [t], extra, call_id="s", mode=ChargeMode.EXTEND).ok
    assert state(store, t).reserved.total_tokens == 90
    refused = reserve(store, [t], Amounts(total_tokens=20), call_id="s", mode=ChargeMode.EXTEND)
    assert refused.refusal is not None
    assert refused.refusal.current == 90
    commit(store, keys, [t], "s", call(85))
    assert state(store, t).reserved == Amounts()


def test_charge_adds_to_spent_directly_and_respects_limits(store: Store, keys: KeyBuilder) -> None:
    """Tool calls are charged at once, and refused past a tool_calls limit."""
    t = target(keys, "tools", tool_calls=2)
    one = Amounts(tool_calls=1)
    assert reserve(store, [t], one, mode=ChargeMode.CHARGE).ok
    assert reserve(store, [t], one, mode=ChargeMode.CHARGE).ok
    assert not reserve(store, [t], one, mode=ChargeMode.CHARGE).ok
    s = state(store, t)
    assert (s.spent.tool_calls, s.reserved.tool_calls) == (2, 0)


def test_kill_flag_refuses_before_any_charge(store: Store, keys: KeyBuilder) -> None:
    """A kill flag set on any of the call's scopes refuses it; clearing it lets calls through again."""
    t = target(keys, "k", total_tokens=1000)
    kill_key = keys.kill("agent", "researcher")
    checks = [KillCheck(keys.kill("run", "r1"), "run", "r1"), KillCheck(kill_key, "agent", "researcher")]
    assert store.set_flag(kill_key, 3600, now=NOW)
    result = reserve(store, [t], call(10), kill_checks=checks)
    assert result.killed == checks[1]
    assert store.read([t.key], NOW) == [None]
    assert kill_key in store.flags(keys.kill_pattern(), NOW)
    assert store.clear_flag(kill_key)
    assert reserve(store, [t], call(10), kill_checks=checks).ok


def test_alert_only_targets_record_but_never_refuse(store: Store, keys: KeyBuilder) -> None:
    """A budget with action alert counts usage past its limit without refusing."""
    t = target(keys, "watch", enforce=False, total_tokens=10)
    assert reserve(store, [t], call(50)).ok
    assert state(store, t).reserved.total_tokens == 50


def test_flags_set_only_if_absent_once(store: Store, keys: KeyBuilder) -> None:
    """A once-only mark (alert dedup) is won by exactly one caller."""
    mark = keys.mark("alert:x")
    assert store.set_flag(mark, 60, now=NOW, only_if_absent=True)
    assert not store.set_flag(mark, 60, now=NOW, only_if_absent=True)


def test_scan_lists_buckets_by_pattern(store: Store, keys: KeyBuilder) -> None:
    """Status reads every bucket under the prefix, with its spent and reserved amounts."""
    a, b = target(keys, "scan-a", total_tokens=100), target(keys, "scan-b", tenant="other", total_tokens=100)
    assert reserve(store, [a], call(5), call_id="1").ok
    assert reserve(store, [b], call(7), call_id="2").ok
    commit(store, keys, [a], "1", call(5))
    found = dict(store.scan(keys.bucket_pattern(), NOW))
    assert set(found) == {a.key, b.key}
    assert found[a.key].spent.total_tokens == 5
    assert found[b.key].reserved.total_tokens == 7
    assert keys.parse_bucket(b.key) == BucketKey("other", "scan-b", "tenant", "other", "2027-01-15")


def test_large_amounts_stay_exact(store: Store, keys: KeyBuilder) -> None:
    """Micro-dollar totals in the billions stay integers, not floats."""
    t = target(keys, "big", cost_usd=9_000_000_000_000)
    amount = Amounts(cost_usd=4_123_456_789_123)
    assert reserve(store, [t], amount, call_id="b1").ok
    commit(store, keys, [t], "b1", amount)
    assert reserve(store, [t], amount, call_id="b2").ok
    commit(store, keys, [t], "b2", amount)
    assert state(store, t).spent.cost_usd == 8_246_913_578_246


@pytest.mark.parametrize("limit", [0])
def test_zero_limit_refuses_everything(store: Store, keys: KeyBuilder, limit: int) -> None:
    """A limit of zero is a closed budget, not 'no limit'."""
    t = target(keys, "zero", llm_calls=limit)
    assert not reserve(store, [t], call(1)).ok


def test_retired_buckets_go_after_their_grace_without_losing_live_ones(store: Store, keys: KeyBuilder) -> None:
    """retire() may shorten a finished run's bucket life; it never changes what a live bucket holds."""
    done, live = target(keys, "done", total_tokens=100), target(keys, "live", total_tokens=100)
    assert reserve(store, [done, live], call(10), call_id="r").ok
    commit(store, keys, [done, live], "r", call(10))
    store.retire([done.key], NOW, 60)
    assert state(store, live, now=NOW + 30).spent.total_tokens == 10
    later = NOW + 3600  # past the grace: an in-process store dropped the bucket, a shared one may keep it
    remaining = dict(store.scan(keys.bucket_pattern(), later))
    assert live.key in remaining
    if isinstance(store, MemoryStore):
        assert done.key not in remaining
    else:
        assert remaining[done.key].spent.total_tokens == 10

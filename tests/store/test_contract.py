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
    Counter,
    HistoryEntry,
    KillCheck,
    MemoryStore,
    ReleaseRequest,
    RenewRequest,
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


def test_an_expired_hold_is_charged_so_a_crashed_process_never_overspends(store: Store, keys: KeyBuilder) -> None:
    """A hold never settled (its process died after the provider call) is charged at its TTL, not released:
    the held amount stops being reserved and becomes spent, so no other call can be granted that room."""
    t = target(keys, "ttl", total_tokens=100)
    assert reserve(store, [t], call(100), ttl_s=30).ok
    assert not reserve(store, [t], call(1), now=NOW + 29).ok
    assert not reserve(store, [t], call(1), now=NOW + 31).ok
    s = state(store, t, now=NOW + 31)
    assert (s.spent.total_tokens, s.reserved.total_tokens, s.spent.llm_calls) == (100, 0, 1)


def test_an_expired_hold_swept_during_a_refused_request_is_charged_for_good(store: Store, keys: KeyBuilder) -> None:
    """An expired hold swept while another target refuses the request is charged once, then and afterwards."""
    big, small = target(keys, "swept", total_tokens=1000), target(keys, "small", total_tokens=100)
    assert reserve(store, [big], call(500), ttl_s=10).ok
    assert not reserve(store, [big, small], call(200), now=NOW + 60).ok
    assert reserve(store, [big], call(400), now=NOW + 62).ok
    s = state(store, big, now=NOW + 62)
    assert (s.spent.total_tokens, s.reserved.total_tokens) == (500, 400)
    assert not reserve(store, [big], call(101), now=NOW + 63).ok


def test_commit_after_the_hold_expired_replaces_the_charge(store: Store, keys: KeyBuilder) -> None:
    """A slow call whose hold expired (and was charged) is settled to what it really used when its commit
    finally arrives: the expiry's charge is taken back, never counted beside the real usage."""
    t = target(keys, "late", total_tokens=1000)
    assert reserve(store, [t], call(100), call_id="slow", ttl_s=5).ok
    assert state(store, t, now=NOW + 30).spent.total_tokens == 100
    commit(store, keys, [t], "slow", call(90), now=NOW + 60)
    s = state(store, t, now=NOW + 60)
    assert (s.spent.total_tokens, s.spent.llm_calls, s.reserved.total_tokens) == (90, 1, 0)
    commit(store, keys, [t], "slow", call(90), now=NOW + 61)  # delivered twice
    assert state(store, t, now=NOW + 61).spent.total_tokens == 90


def test_release_after_the_hold_expired_takes_the_charge_back(store: Store, keys: KeyBuilder) -> None:
    """A call that failed before using anything, but whose release came after its hold expired, costs nothing."""
    t = target(keys, "late-release", total_tokens=1000)
    assert reserve(store, [t], call(100), call_id="failed", ttl_s=5).ok
    assert state(store, t, now=NOW + 30).spent.total_tokens == 100
    store.release(ReleaseRequest("failed", [t], NOW + 40))
    store.flush()
    s = state(store, t, now=NOW + 40)
    assert (s.spent.total_tokens, s.reserved.total_tokens) == (0, 0)


def test_renewing_keeps_a_live_calls_hold(store: Store, keys: KeyBuilder) -> None:
    """A long call's hold, renewed before it expires, still counts past its first TTL; once the renewals stop,
    it expires and is charged."""
    t = target(keys, "renew", total_tokens=100)
    assert reserve(store, [t], call(100), call_id="long", ttl_s=2).ok
    store.renew([RenewRequest("long", [t], NOW + 1.5, 2)])
    assert not reserve(store, [t], call(1), now=NOW + 3).ok
    s = state(store, t, now=NOW + 3)
    assert (s.spent.total_tokens, s.reserved.total_tokens) == (0, 100)
    commit(store, keys, [t], "long", call(60), now=NOW + 3)
    assert state(store, t, now=NOW + 3).spent.total_tokens == 60


def test_renewing_an_expired_or_settled_hold_changes_nothing(store: Store, keys: KeyBuilder) -> None:
    """A renewal that comes too late leaves the expired hold charged; one for a settled call holds nothing."""
    t = target(keys, "renew-late", total_tokens=1000)
    assert reserve(store, [t], call(100), call_id="gone", ttl_s=2).ok
    store.renew([RenewRequest("gone", [t], NOW + 5, 600)])
    s = state(store, t, now=NOW + 5)
    assert (s.spent.total_tokens, s.reserved.total_tokens) == (100, 0)
    assert reserve(store, [t], call(100), call_id="done").ok
    commit(store, keys, [t], "done", call(50))
    store.renew([RenewRequest("done", [t], NOW + 6, 600)])
    assert state(store, t, now=NOW + 6).reserved.total_tokens == 0


def test_reserving_the_same_call_again_replaces_its_hold(store: Store, keys: KeyBuilder) -> None:
    """A retried reservation of one call id never counts twice."""
    t = target(keys, "same", total_tokens=100)
    assert reserve(store, [t], call(80), call_id="dup").ok
    assert reserve(store, [t], call(90), call_id="dup").ok
    assert state(store, t).reserved.total_tokens == 90


def test_extend_raises_a_hold_until_the_limit(store: Store, keys: KeyBuilder) -> None:
    """A stream that outgrows its estimate raises its hold to a new total; past the limit it is refused."""
    t = target(keys, "ext", total_tokens=100)
    assert reserve(store, [t], call(50), call_id="s").ok
    assert reserve(store, [t], Amounts(total_tokens=90), call_id="s", mode=ChargeMode.EXTEND).ok
    assert state(store, t).reserved.total_tokens == 90
    refused = reserve(store, [t], Amounts(total_tokens=110), call_id="s", mode=ChargeMode.EXTEND)
    assert refused.refusal is not None
    assert (refused.refusal.current, refused.refusal.requested) == (90, 20)
    commit(store, keys, [t], "s", call(85))
    assert state(store, t).reserved == Amounts()


def test_a_refused_probe_is_not_counted_as_a_refusal(store: Store, keys: KeyBuilder) -> None:
    """A probe (a try that a smaller one follows) is refused like any request, but `refused` counts only the
    requests a budget really turned away, and nothing of a refused probe is held."""
    t = target(keys, "probe", total_tokens=100)
    assert reserve(store, [t], call(50), call_id="s").ok
    probe = ReserveRequest("s", [t], Amounts(total_tokens=150), NOW, mode=ChargeMode.EXTEND, probe=True)
    result = store.reserve(probe)
    assert result.refusal is not None
    assert (result.refusal.current, result.refusal.requested) == (50, 100)
    assert state(store, t).refused == 0
    assert state(store, t).reserved.total_tokens == 50
    assert not reserve(store, [t], Amounts(total_tokens=150), call_id="s", mode=ChargeMode.EXTEND).ok
    assert state(store, t).refused == 1


def test_an_extension_sent_twice_holds_once(store: Store, keys: KeyBuilder) -> None:
    """An extension re-sent after a lost reply raises the hold to the same total: nothing is added twice."""
    t = target(keys, "ext-dup", total_tokens=1000)
    assert reserve(store, [t], call(50), call_id="s").ok
    raised = Amounts(total_tokens=300, llm_calls=1)
    assert reserve(store, [t], raised, call_id="s", mode=ChargeMode.EXTEND).ok
    assert reserve(store, [t], raised, call_id="s", mode=ChargeMode.EXTEND).ok
    assert state(store, t).reserved.total_tokens == 300


def test_an_extension_after_the_commit_holds_nothing(store: Store, keys: KeyBuilder) -> None:
    """An extension arriving after its call was settled must not create a hold nobody will release."""
    t = target(keys, "ext-late", total_tokens=1000)
    assert reserve(store, [t], call(50), call_id="s").ok
    commit(store, keys, [t], "s", call(40))
    assert reserve(store, [t], Amounts(total_tokens=300), call_id="s", mode=ChargeMode.EXTEND).ok
    s = state(store, t)
    assert (s.spent.total_tokens, s.reserved.total_tokens) == (40, 0)


def test_an_extension_after_the_hold_expired_is_judged_against_its_charge(store: Store, keys: KeyBuilder) -> None:
    """A stream whose renewals failed (hold expired and charged) may not go on unchecked: an extension raises the
    charge while it fits the limit, is refused past it, and the commit settles the charge to what was used."""
    t = target(keys, "ext-expired", total_tokens=100)
    assert reserve(store, [t], call(50), call_id="s", ttl_s=10).ok
    later = NOW + 11
    assert state(store, t, later).spent.total_tokens == 50
    raised = Amounts(total_tokens=80, llm_calls=1)
    assert reserve(store, [t], raised, call_id="s", mode=ChargeMode.EXTEND, now=later).ok
    assert reserve(store, [t], raised, call_id="s", mode=ChargeMode.EXTEND, now=later).ok  # sent twice: once
    s = state(store, t, later)
    assert (s.spent.total_tokens, s.reserved.total_tokens) == (80, 0)
    refused = reserve(store, [t], Amounts(total_tokens=120), call_id="s", mode=ChargeMode.EXTEND, now=later)
    assert refused.refusal is not None
    assert (refused.refusal.current, refused.refusal.requested) == (80, 40)
    commit(store, keys, [t], "s", call(70), now=later)
    s = state(store, t, later)
    assert (s.spent.total_tokens, s.spent.llm_calls, s.reserved.total_tokens) == (70, 1, 0)


def test_charge_adds_to_spent_directly_and_respects_limits(store: Store, keys: KeyBuilder) -> None:
    """Tool calls are charged at once, and refused past a tool_calls limit."""
    t = target(keys, "tools", tool_calls=2)
    one = Amounts(tool_calls=1)
    assert reserve(store, [t], one, mode=ChargeMode.CHARGE).ok
    assert reserve(store, [t], one, mode=ChargeMode.CHARGE).ok
    assert not reserve(store, [t], one, mode=ChargeMode.CHARGE).ok
    s = state(store, t)
    assert (s.spent.tool_calls, s.reserved.tool_calls) == (2, 0)


def test_a_charge_sent_twice_counts_once(store: Store, keys: KeyBuilder) -> None:
    """A tool charge re-sent after a lost reply (same marker) is granted again but charged once, and the commit
    that fail_open queues for the same call finds it already counted."""
    t = target(keys, "tool-dup", tool_calls=10)
    one = Amounts(tool_calls=1)
    marker = keys.call_marker("acme", "tool-1")
    request = ReserveRequest("tool-1", [t], one, NOW, mode=ChargeMode.CHARGE, marker_key=marker)
    assert store.reserve(request).ok
    assert store.reserve(request).ok
    store.commit(CommitRequest("tool-1", [t], one, NOW, marker))
    store.flush()
    assert state(store, t).spent.tool_calls == 1


def test_amounts_out_of_range_are_refused_alike(store: Store, keys: KeyBuilder) -> None:
    """A negative or huge amount is a caller's bug: both stores raise ValueError and change nothing."""
    t = target(keys, "range", total_tokens=100)
    for bad in (Amounts(total_tokens=-5), Amounts(input_tokens=2**63 + 5)):
        with pytest.raises(ValueError, match="between 0 and"):
            reserve(store, [t], bad)
        with pytest.raises(ValueError, match="between 0 and"):
            store.commit(CommitRequest("x", [t], bad, NOW, keys.call_marker("acme", "x")))
    assert store.read([t.key], NOW) == [None]


def test_sync_makes_commits_durable_and_reads_in_one_step(store: Store, keys: KeyBuilder) -> None:
    """sync() returns the buckets' states with every deferred commit applied; None for a missing bucket."""
    t = target(keys, "sync", total_tokens=1000)
    assert reserve(store, [t], call(100), call_id="c").ok
    store.commit(CommitRequest("c", [t], call(70), NOW, keys.call_marker("acme", "c")))
    missing = target(keys, "never-used", total_tokens=5)
    got, none = store.sync([t.key, missing.key], NOW)
    assert none is None
    assert got is not None
    assert (got.spent.total_tokens, got.reserved.total_tokens) == (70, 0)


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


def test_a_counter_is_read_without_being_written(store: Store, keys: KeyBuilder) -> None:
    """counter(key) of a counter that does not exist is 0 and creates nothing; after count() it is the total."""
    key = keys.grant(keys.bucket(BucketKey("acme", "daily", "user", "alice", "2026-12-02")), "llm_calls")
    assert store.counter(key, NOW) == 0
    assert store.counters(keys.grant_pattern(), NOW) == []
    store.count(Counter(key, 3600.0), 2, now=NOW)
    store.count(Counter(key, 3600.0), 3, now=NOW)
    assert store.counter(key, NOW) == 5
    assert store.counters(keys.grant_pattern(), NOW) == [(key, 5)]


# -- spend history ------------------------------------------------------------------------------------------------


def entry(keys: KeyBuilder, payload: str, now: float = NOW, tenant: str = "acme", **limits: float) -> HistoryEntry:
    return HistoryEntry(
        keys.history(tenant), payload, now, limits.get("keep_s", 86_400.0), int(limits.get("max_records", 1000))
    )


def test_a_commit_records_its_history_once_even_when_sent_twice(store: Store, keys: KeyBuilder) -> None:
    t = target(keys, "a", total_tokens=1000)
    request = CommitRequest("c1", [t], call(10), NOW, keys.call_marker("acme", "c1"), history=entry(keys, "one"))
    store.commit(request)
    store.commit(request)
    store.flush()
    assert list(store.history(keys.history_pattern(), NOW - 1, NOW + 1)) == [(NOW, "one")]
    assert state(store, t).spent.total_tokens == 10


def test_appended_records_come_back_in_time_order_across_tenants(store: Store, keys: KeyBuilder) -> None:
    store.append(entry(keys, "acme-1", NOW + 1))
    store.append(entry(keys, "beta-1", NOW + 2, tenant="beta"))
    store.append(entry(keys, "acme-2", NOW + 3))
    records = list(store.history(keys.history_pattern(), NOW, NOW + 10))
    assert records == [(NOW + 1, "acme-1"), (NOW + 2, "beta-1"), (NOW + 3, "acme-2")]
    assert [p for _, p in store.history(keys.history("beta"), NOW, NOW + 10)] == ["beta-1"]


def test_history_is_read_by_time_range(store: Store, keys: KeyBuilder) -> None:
    for i in range(5):
        store.append(entry(keys, f"r{i}", NOW + i))
    assert [p for _, p in store.history(keys.history_pattern(), NOW + 1, NOW + 4)] == ["r1", "r2", "r3"]


def test_a_record_from_a_slow_clock_is_kept_after_the_last_one(store: Store, keys: KeyBuilder) -> None:
    """Fleet clocks differ: a record stamped before the history's last one is kept, at the last one's time."""
    store.append(entry(keys, "late", NOW + 10))
    store.flush()  # two queued records may be sent by two threads at once, in either order
    store.append(entry(keys, "early", NOW + 5))
    assert list(store.history(keys.history_pattern(), NOW, NOW + 20)) == [(NOW + 10, "late"), (NOW + 10, "early")]


def test_history_is_trimmed_by_count_and_by_age(store: Store, keys: KeyBuilder) -> None:
    for i in range(1000):
        store.append(entry(keys, f"r{i}", NOW, max_records=100))
    kept = [p for _, p in store.history(keys.history_pattern(), 0, NOW + 10)]
    assert 100 <= len(kept) <= 300  # Redis trims whole stream nodes ("MAXLEN ~"): about the limit
    store.append(entry(keys, "much later", NOW + 5000, keep_s=60, max_records=100))
    assert [p for _, p in store.history(keys.history_pattern(), 0, NOW + 10_000)] == ["much later"]


def test_a_bucket_keeps_the_limits_its_last_reservation_was_judged_by(store: Store, keys: KeyBuilder) -> None:
    """So that `guardian status` shows limits without the policy."""
    t = target(keys, "a", total_tokens=100, cost_usd=5)
    assert reserve(store, [t], call(10)).ok
    assert state(store, t).limits == t.limits
    raised = Target(t.key, tuple(2 * v if v != NO_LIMIT else v for v in t.limits), t.expires_at)
    assert reserve(store, [raised], call(10)).ok
    assert state(store, t).limits == raised.limits


def test_a_record_appended_alone_twice_is_kept_once(store: Store, keys: KeyBuilder) -> None:
    """A halt or an outcome re-sent after a lost reply is one record."""
    record = HistoryEntry(keys.history("acme"), "halt", NOW, 86_400.0, 1000, keys.call_marker("acme", "halt:r1"))
    store.append(record)
    store.flush()
    store.append(record)
    assert [p for _, p in store.history(keys.history_pattern(), NOW - 1, NOW + 1)] == ["halt"]

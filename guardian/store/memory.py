"""In-process store: the embedded default. One lock makes every operation atomic."""

from __future__ import annotations

import heapq
import threading
from collections import OrderedDict, deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from guardian.amounts import METRICS, Amounts
from guardian.store.base import (
    NO_LIMIT,
    SETTLED_TTL_S,
    BucketState,
    ChargeMode,
    CommitRequest,
    Counter,
    HistoryEntry,
    Refusal,
    ReleaseRequest,
    RenewRequest,
    ReserveRequest,
    ReserveResult,
    Store,
    Target,
    check_amount,
)

__all__ = ["MemoryStore"]

_N = len(METRICS)
_INF = float("inf")
MEMORY_HISTORY_MAX = 100_000  # records per history in one process (~30 MB): the fleet's history lives in Redis
MAX_MARKERS = 200_000  # commit retries arrive within seconds; the oldest markers go first
# In one process a commit or charge is never re-sent after a lost reply (there is no wire): a duplicate can only
# come at once, so its marker need not outlive the call by hours (100k short runs would keep 100k markers for 6 h).
MEMORY_MARKER_TTL_S = 300.0


@dataclass(slots=True)
class _Bucket:
    spent: list[int] = field(default_factory=lambda: [0] * _N)
    reserved: list[int] = field(default_factory=lambda: [0] * _N)
    holds: dict[str, tuple[float, list[int]]] = field(default_factory=dict)  # call id -> (expiry, amounts)
    settled: dict[str, tuple[float, list[int]]] = field(default_factory=dict)  # expired hold -> (until, charged)
    next_expiry: float = _INF  # no hold or settled record can have expired before this
    expires_at: float = 0.0
    refused: int = 0
    limits: tuple[int, ...] | None = None  # as its last granted reservation judged it

    def purge(self, now: float) -> None:
        """Charge expired holds (as ledger.lua does, for the same reason) and forget old charge records."""
        if now < self.next_expiry:
            return
        for call_id in [cid for cid, (exp, _) in self.holds.items() if exp <= now]:
            charged = self.drop(call_id)
            assert charged is not None
            self.charge(charged)
            self.settled[call_id] = (now + SETTLED_TTL_S, charged)
        for call_id in [cid for cid, (until, _) in self.settled.items() if until <= now]:
            del self.settled[call_id]
        self.next_expiry = min(
            min((exp for exp, _ in self.holds.values()), default=_INF),
            min((until for until, _ in self.settled.values()), default=_INF),
        )

    def drop(self, call_id: str) -> list[int] | None:
        hold = self.holds.pop(call_id, None)
        if hold is None:
            return None
        self.reserved = [r - a for r, a in zip(self.reserved, hold[1], strict=True)]
        return hold[1]

    def settle(self, call_id: str) -> None:
        """Drop the call's hold, or take back what its expiry charged."""
        if self.drop(call_id) is None and call_id in self.settled:
            charged = self.settled.pop(call_id)[1]
            self.spent = [s - a for s, a in zip(self.spent, charged, strict=True)]

    def raise_charge(self, call_id: str, amounts: Sequence[int]) -> None:
        """Raise what an expired hold was charged to ``amounts`` (never lower it)."""
        record = self.settled.get(call_id)
        if record is None:
            return
        raised = [max(c, a) for c, a in zip(record[1], amounts, strict=True)]
        self.charge([r - c for r, c in zip(raised, record[1], strict=True)])
        self.settled[call_id] = (record[0], raised)

    def hold(self, call_id: str, expiry: float, amounts: list[int]) -> None:
        self.holds[call_id] = (expiry, amounts)
        self.reserved = [r + a for r, a in zip(self.reserved, amounts, strict=True)]
        self.next_expiry = min(self.next_expiry, expiry)

    def charge(self, amounts: Sequence[int]) -> None:
        self.spent = [s + a for s, a in zip(self.spent, amounts, strict=True)]

    def state(self) -> BucketState:
        return BucketState(Amounts(*self.spent), Amounts(*self.reserved), self.refused, self.limits)


class MemoryStore(Store):
    """Thread-safe, one process. Expired buckets, holds and flags are swept as time passes."""

    shared = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[str, _Bucket] = {}
        self._flags: dict[str, float | None] = {}  # key -> expiry (None: never)
        self._markers: OrderedDict[str, float] = OrderedDict()  # committed call markers -> expiry
        self._counters: dict[str, tuple[int, float]] = {}  # key -> (value, expiry)
        self._histories: dict[str, deque[tuple[float, str]]] = {}  # key -> (time, payload), oldest first
        self._last_sweep = 0.0

    def reserve(self, request: ReserveRequest) -> ReserveResult:
        amount = check_amount(request.amount)
        now = request.now
        mode = request.mode
        with self._lock:
            self._sweep(now)
            if self._flags:
                for check in request.kill_checks:
                    if self._flag_alive(check.key, now):
                        return ReserveResult(killed=check)
            buckets = [self._existing(t, now) for t in request.targets]
            # A charge already applied (its reply was lost and the call sent again) is granted, not charged twice.
            applied = request.marker_key is not None and self._marker_alive(request.marker_key, now)
            for index, (target, bucket) in enumerate(zip(request.targets, buckets, strict=True)):
                if not target.enforce or applied:
                    continue
                held = bucket.holds.get(request.call_id) if mode != ChargeMode.CHARGE else None
                if mode == ChargeMode.EXTEND and held is None:
                    # Its hold expired and was charged: the extension is judged against that charge, or a
                    # stream whose renewals failed would go on unchecked. Committed already: nothing to judge.
                    held = bucket.settled.get(request.call_id)
                    if held is None:
                        continue
                refusal = _check(index, target, bucket, amount, held[1] if held else None, mode)
                if refusal is not None:
                    if not request.probe:
                        if bucket.expires_at == 0.0:  # a first request refused still leaves its count behind
                            bucket.expires_at = target.expires_at
                            self._buckets[target.key] = bucket
                        bucket.refused += 1
                    return ReserveResult(refusal=refusal, states=[b.state() for b in buckets])
            if request.marker_key is not None and not applied:
                self._mark(request.marker_key, now, now + MEMORY_MARKER_TTL_S)
            expiry = now + request.ttl_s
            for target, bucket in zip(request.targets, buckets, strict=True):
                if bucket.expires_at == 0.0:
                    self._buckets[target.key] = bucket
                bucket.expires_at = max(bucket.expires_at, target.expires_at)
                bucket.limits = target.limits
                if applied:
                    continue
                if mode == ChargeMode.CHARGE:
                    bucket.charge(amount)
                    continue
                previous = bucket.drop(request.call_id) if bucket.holds else None
                if mode == ChargeMode.EXTEND:
                    if previous is None:
                        # Committed: raising a hold would leak it. Expired: the charge rises instead.
                        bucket.raise_charge(request.call_id, amount)
                        continue
                    bucket.hold(request.call_id, expiry, [max(a, b) for a, b in zip(previous, amount, strict=True)])
                else:
                    bucket.hold(request.call_id, expiry, list(amount))
            return ReserveResult(states=[b.state() for b in buckets] if request.want_states else ())

    def commit(self, request: CommitRequest) -> None:
        amount = check_amount(request.amount)
        with self._lock:
            self._sweep(request.now)
            marker_ttl = min(request.marker_ttl_s, MEMORY_MARKER_TTL_S)
            first = self._mark(request.marker_key, request.now, request.now + marker_ttl)
            for target in request.targets:
                bucket = self._buckets.get(target.key)
                if bucket is None:
                    bucket = self._buckets[target.key] = _Bucket(expires_at=target.expires_at)
                bucket.purge(request.now)
                if first:
                    bucket.settle(request.call_id)
                    bucket.charge(amount)
                elif bucket.holds:
                    bucket.drop(request.call_id)
            if first and request.history is not None:
                self._append(request.history)

    def append(self, entry: HistoryEntry) -> None:
        with self._lock:
            if entry.marker_key is None or self._mark(entry.marker_key, entry.now, entry.now + MEMORY_MARKER_TTL_S):
                self._append(entry)

    def history(self, pattern: str, since: float, until: float) -> Iterator[tuple[float, str]]:
        with self._lock:
            found = [list(h) for k, h in self._histories.items() if fnmatchcase(k, pattern)]
        for t, payload in heapq.merge(*found, key=lambda r: r[0]):
            if since <= t < until:
                yield t, payload

    def _append(self, entry: HistoryEntry) -> None:
        records = self._histories.get(entry.key)
        if records is None:
            records = self._histories[entry.key] = deque()
        # Times stay in order, as a Redis Stream's ids do: a record never lands before the last one.
        records.append((max(entry.now, records[-1][0]) if records else entry.now, entry.payload))
        oldest = entry.now - entry.keep_s
        while records and records[0][0] < oldest:
            records.popleft()
        while len(records) > min(entry.max_records, MEMORY_HISTORY_MAX):
            records.popleft()

    def release(self, request: ReleaseRequest) -> None:
        with self._lock:
            for target in request.targets:
                bucket = self._buckets.get(target.key)
                if bucket is not None:
                    bucket.purge(request.now)
                    bucket.settle(request.call_id)

    def renew(self, requests: Sequence[RenewRequest]) -> None:
        with self._lock:
            for request in requests:
                expiry = request.now + request.ttl_s
                for target in request.targets:
                    bucket = self._buckets.get(target.key)
                    if bucket is None:
                        continue
                    bucket.purge(request.now)  # a hold that already expired is charged, not revived
                    hold = bucket.holds.get(request.call_id)
                    if hold is not None and hold[0] < expiry:
                        bucket.holds[request.call_id] = (expiry, hold[1])

    def flush(self) -> None:
        """Commits are applied at once; nothing is ever pending."""

    def sync(self, keys: Sequence[str], now: float) -> list[BucketState | None]:
        return self.read(keys, now)

    def retire(self, keys: Sequence[str], now: float, keep_s: float) -> None:
        with self._lock:
            for key in keys:
                bucket = self._buckets.get(key)
                if bucket is not None:
                    bucket.expires_at = min(bucket.expires_at, now + keep_s)

    def read(self, keys: Sequence[str], now: float) -> list[BucketState | None]:
        with self._lock:
            self._sweep(now)
            out: list[BucketState | None] = []
            for key in keys:
                bucket = self._buckets.get(key)
                if bucket is not None:
                    bucket.purge(now)
                out.append(None if bucket is None else bucket.state())
            return out

    def scan(self, pattern: str, now: float) -> Iterator[tuple[str, BucketState]]:
        with self._lock:
            self._sweep(now)
            found = []
            for key, bucket in self._buckets.items():
                if fnmatchcase(key, pattern):
                    bucket.purge(now)
                    found.append((key, bucket.state()))
        yield from sorted(found)

    def count(self, counter: Counter, amount: int, *, now: float) -> int:
        with self._lock:
            value, expiry = self._counters.get(counter.key, (0, 0.0))
            value = (value if expiry > now else 0) + amount
            self._counters[counter.key] = (value, now + counter.ttl_s)
            return value

    def counter(self, key: str, now: float) -> int:
        with self._lock:
            value, expiry = self._counters.get(key, (0, 0.0))
            return value if expiry > now else 0

    def counters(self, pattern: str, now: float) -> list[tuple[str, int]]:
        with self._lock:
            return sorted((k, v) for k, (v, e) in self._counters.items() if e > now and fnmatchcase(k, pattern))

    def set_flag(self, key: str, ttl_s: float | None, *, now: float, only_if_absent: bool = False) -> bool:
        with self._lock:
            if only_if_absent and self._flag_alive(key, now):
                return False
            self._flags[key] = None if ttl_s is None else now + ttl_s
            return True

    def clear_flag(self, key: str) -> bool:
        with self._lock:
            return self._flags.pop(key, 0.0) != 0.0

    def flags(self, pattern: str, now: float) -> list[str]:
        with self._lock:
            return sorted(k for k in list(self._flags) if fnmatchcase(k, pattern) and self._flag_alive(k, now))

    def _mark(self, key: str, now: float, expiry: float) -> bool:
        """Record a commit marker; True the first time (or once the earlier one expired)."""
        previous = self._markers.get(key)
        self._markers[key] = expiry
        self._markers.move_to_end(key)
        if len(self._markers) > MAX_MARKERS:
            self._markers.popitem(last=False)
        return previous is None or previous <= now

    def _marker_alive(self, key: str, now: float) -> bool:
        expiry = self._markers.get(key)
        return expiry is not None and expiry > now

    def _flag_alive(self, key: str, now: float) -> bool:
        if key not in self._flags:
            return False
        expiry = self._flags[key]
        if expiry is not None and expiry <= now:
            del self._flags[key]
            return False
        return True

    def _existing(self, target: Target, now: float) -> _Bucket:
        """The bucket, or a fresh one not yet stored (a refused first request must leave nothing behind)."""
        bucket = self._buckets.get(target.key)
        if bucket is None:
            return _Bucket()
        bucket.purge(now)
        return bucket

    def _sweep(self, now: float) -> None:
        # Amortized: a full pass at most once a minute keeps a long-lived process from growing forever.
        if now - self._last_sweep < 60:
            return
        self._last_sweep = now
        # Rebuilt rather than deleted from: a dict never gives back the table it grew to, so a burst of 100k
        # short runs would otherwise stay in memory after every one of them is gone.
        self._buckets = {k: b for k, b in self._buckets.items() if not 0 < b.expires_at <= now}
        self._flags = {k: e for k, e in self._flags.items() if e is None or e > now}
        self._counters = {k: v for k, v in self._counters.items() if v[1] > now}
        self._markers = OrderedDict((k, e) for k, e in self._markers.items() if e > now)


def _check(
    index: int,
    target: Target,
    bucket: _Bucket,
    amount: tuple[int, ...],
    held: list[int] | None,
    mode: ChargeMode,
) -> Refusal | None:
    """As ledger.lua judges: what the request adds to spent + reserved must fit every limit."""
    spent, reserved = bucket.spent, bucket.reserved
    for i, limit in enumerate(target.limits):
        want = amount[i]
        if held is not None:
            # The request replaces (reserve) or is raised to (extend) the hold this call already has.
            want = want - held[i] if mode == ChargeMode.RESERVE else max(0, want - held[i])
        if limit == NO_LIMIT or want <= 0:
            continue
        current = spent[i] + reserved[i]
        if current + want > limit:
            return Refusal(index, METRICS[i], limit, current, want)
    return None

"""In-process store: the embedded default. One lock makes every operation atomic."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from guardian.amounts import METRICS, Amounts
from guardian.store.base import (
    NO_LIMIT,
    BucketState,
    ChargeMode,
    CommitRequest,
    Counter,
    Refusal,
    ReleaseRequest,
    ReserveRequest,
    ReserveResult,
    Store,
    Target,
)

__all__ = ["MemoryStore"]

_N = len(METRICS)
_INF = float("inf")
MAX_MARKERS = 200_000  # commit retries arrive within seconds; the oldest markers go first


@dataclass(slots=True)
class _Bucket:
    spent: list[int] = field(default_factory=lambda: [0] * _N)
    reserved: list[int] = field(default_factory=lambda: [0] * _N)
    holds: dict[str, tuple[float, list[int]]] = field(default_factory=dict)  # call id -> (expiry, amounts)
    next_expiry: float = _INF  # no hold can have expired before this
    expires_at: float = 0.0
    refused: int = 0

    def purge(self, now: float) -> None:
        if now < self.next_expiry:
            return
        for call_id in [cid for cid, (exp, _) in self.holds.items() if exp <= now]:
            self.drop(call_id)
        self.next_expiry = min((exp for exp, _ in self.holds.values()), default=_INF)

    def drop(self, call_id: str) -> list[int] | None:
        hold = self.holds.pop(call_id, None)
        if hold is None:
            return None
        self.reserved = [r - a for r, a in zip(self.reserved, hold[1], strict=True)]
        return hold[1]

    def hold(self, call_id: str, expiry: float, amounts: list[int]) -> None:
        self.holds[call_id] = (expiry, amounts)
        self.reserved = [r + a for r, a in zip(self.reserved, amounts, strict=True)]
        self.next_expiry = min(self.next_expiry, expiry)

    def charge(self, amounts: tuple[int, ...]) -> None:
        self.spent = [s + a for s, a in zip(self.spent, amounts, strict=True)]

    def state(self) -> BucketState:
        return BucketState(Amounts(*self.spent), Amounts(*self.reserved), self.refused)


class MemoryStore(Store):
    """Thread-safe, one process. Expired buckets, holds and flags are swept as time passes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[str, _Bucket] = {}
        self._flags: dict[str, float | None] = {}  # key -> expiry (None: never)
        self._markers: OrderedDict[str, float] = OrderedDict()  # committed call markers -> expiry
        self._counters: dict[str, tuple[int, float]] = {}  # key -> (value, expiry)
        self._last_sweep = 0.0

    def reserve(self, request: ReserveRequest) -> ReserveResult:
        amount = request.amount.as_vector()
        now = request.now
        with self._lock:
            self._sweep(now)
            if self._flags:
                for check in request.kill_checks:
                    if self._flag_alive(check.key, now):
                        return ReserveResult(killed=check)
            buckets = [self._existing(t, now) for t in request.targets]
            replacing = request.mode == ChargeMode.RESERVE
            for index, (target, bucket) in enumerate(zip(request.targets, buckets, strict=True)):
                if not target.enforce:
                    continue
                held = bucket.holds.get(request.call_id) if replacing else None
                refusal = _check(index, target, bucket, amount, held[1] if held else None)
                if refusal is not None:
                    if bucket.expires_at == 0.0:  # a first request refused still leaves its count behind
                        bucket.expires_at = target.expires_at
                        self._buckets[target.key] = bucket
                    bucket.refused += 1
                    return ReserveResult(refusal=refusal, states=[b.state() for b in buckets])
            expiry = now + request.ttl_s
            for target, bucket in zip(request.targets, buckets, strict=True):
                if bucket.expires_at == 0.0:
                    self._buckets[target.key] = bucket
                bucket.expires_at = max(bucket.expires_at, target.expires_at)
                if request.mode == ChargeMode.CHARGE:
                    bucket.charge(amount)
                    continue
                previous = bucket.drop(request.call_id) if bucket.holds else None
                hold = list(amount)
                if request.mode == ChargeMode.EXTEND and previous is not None:
                    hold = [a + b for a, b in zip(previous, amount, strict=True)]
                bucket.hold(request.call_id, expiry, hold)
            return ReserveResult(states=[b.state() for b in buckets] if request.want_states else ())

    def commit(self, request: CommitRequest) -> None:
        amount = request.amount.as_vector()
        with self._lock:
            self._sweep(request.now)
            first = self._mark(request.marker_key, request.now, request.now + request.marker_ttl_s)
            for target in request.targets:
                bucket = self._buckets.get(target.key)
                if bucket is None:
                    bucket = self._buckets[target.key] = _Bucket(expires_at=target.expires_at)
                if bucket.holds:
                    bucket.drop(request.call_id)
                if first:
                    bucket.charge(amount)

    def release(self, request: ReleaseRequest) -> None:
        with self._lock:
            for target in request.targets:
                bucket = self._buckets.get(target.key)
                if bucket is not None:
                    bucket.drop(request.call_id)

    def flush(self) -> None:
        """Commits are applied at once; nothing is ever pending."""

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
        for key in [k for k, b in self._buckets.items() if 0 < b.expires_at <= now]:
            del self._buckets[key]
        for key in [k for k, e in self._flags.items() if e is not None and e <= now]:
            del self._flags[key]
        for key in [k for k, (_, e) in self._counters.items() if e <= now]:
            del self._counters[key]
        while self._markers:
            key, expiry = next(iter(self._markers.items()))
            if expiry > now:
                break
            del self._markers[key]


def _check(
    index: int, target: Target, bucket: _Bucket, amount: tuple[int, ...], replaced: list[int] | None
) -> Refusal | None:
    spent, reserved = bucket.spent, bucket.reserved
    for i, limit in enumerate(target.limits):
        if limit == NO_LIMIT or amount[i] == 0:
            continue
        current = spent[i] + reserved[i] - (replaced[i] if replaced else 0)
        if current + amount[i] > limit:
            return Refusal(index, METRICS[i], limit, current, amount[i])
    return None

"""In-process store: the embedded default. One lock makes every operation atomic."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from guardian.amounts import METRICS, Amounts
from guardian.store.base import (
    NO_LIMIT,
    BucketState,
    ChargeMode,
    CommitRequest,
    Refusal,
    ReleaseRequest,
    ReserveRequest,
    ReserveResult,
    Store,
    Target,
)

__all__ = ["MemoryStore"]

_N = len(METRICS)


@dataclass
class _Bucket:
    spent: list[int] = field(default_factory=lambda: [0] * _N)
    reserved: list[int] = field(default_factory=lambda: [0] * _N)
    holds: dict[str, tuple[float, list[int]]] = field(default_factory=dict)  # call id -> (expiry, amounts)
    expires_at: float = 0.0

    def purge(self, now: float) -> None:
        for call_id in [cid for cid, (exp, _) in self.holds.items() if exp <= now]:
            self.drop(call_id)

    def drop(self, call_id: str) -> None:
        hold = self.holds.pop(call_id, None)
        if hold is not None:
            for i, value in enumerate(hold[1]):
                self.reserved[i] -= value

    def state(self) -> BucketState:
        return BucketState(Amounts.from_vector(self.spent), Amounts.from_vector(self.reserved))


class MemoryStore(Store):
    """Thread-safe, one process. Expired buckets and flags are swept as time passes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[str, _Bucket] = {}
        self._flags: dict[str, float | None] = {}  # key -> expiry (None: never)
        self._last_sweep = 0.0

    def reserve(self, request: ReserveRequest) -> ReserveResult:
        amount = request.amount.as_vector()
        with self._lock:
            self._sweep(request.now)
            for check in request.kill_checks:
                if self._flag_alive(check.key, request.now):
                    return ReserveResult(killed=check)
            buckets = [self._bucket(t, request.now, create=False) for t in request.targets]
            for index, (target, bucket) in enumerate(zip(request.targets, buckets, strict=True)):
                held = bucket.holds.get(request.call_id)
                refusal = _check(
                    index, target, bucket, amount, held if request.mode == ChargeMode.RESERVE else None
                )
                if refusal is not None:
                    return ReserveResult(refusal=refusal, states=[b.state() for b in buckets])
            expiry = request.now + request.ttl_s
            for target, bucket in zip(request.targets, buckets, strict=True):
                self._buckets.setdefault(target.key, bucket)
                if request.mode == ChargeMode.CHARGE:
                    for i, value in enumerate(amount):
                        bucket.spent[i] += value
                    continue
                previous = bucket.holds.get(request.call_id)
                if request.mode == ChargeMode.RESERVE:
                    bucket.drop(request.call_id)
                    hold = list(amount)
                else:
                    bucket.drop(request.call_id)
                    hold = [a + b for a, b in zip(previous[1] if previous else [0] * _N, amount, strict=True)]
                bucket.holds[request.call_id] = (expiry, hold)
                for i, value in enumerate(hold):
                    bucket.reserved[i] += value
            return ReserveResult(states=[b.state() for b in buckets])

    def commit(self, request: CommitRequest) -> None:
        amount = request.amount.as_vector()
        with self._lock:
            self._sweep(request.now)
            first = not self._flag_alive(request.marker_key, request.now)
            self._flags[request.marker_key] = request.now + request.marker_ttl_s
            for target in request.targets:
                bucket = self._bucket(target, request.now)
                bucket.drop(request.call_id)
                if first:
                    for i, value in enumerate(amount):
                        bucket.spent[i] += value

    def release(self, request: ReleaseRequest) -> None:
        with self._lock:
            for target in request.targets:
                bucket = self._buckets.get(target.key)
                if bucket is not None:
                    bucket.drop(request.call_id)

    def flush(self) -> None:
        """Commits are applied at once; nothing is ever pending."""

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
            return sorted(k for k in self._flags if fnmatchcase(k, pattern) and self._flag_alive(k, now))

    def _flag_alive(self, key: str, now: float) -> bool:
        if key not in self._flags:
            return False
        expiry = self._flags[key]
        if expiry is not None and expiry <= now:
            del self._flags[key]
            return False
        return True

    def _bucket(self, target: Target, now: float, *, create: bool = True) -> _Bucket:
        bucket = self._buckets.get(target.key)
        if bucket is None:
            bucket = _Bucket()
            if create:
                self._buckets[target.key] = bucket
        bucket.purge(now)
        bucket.expires_at = max(bucket.expires_at, target.expires_at)
        return bucket

    def _sweep(self, now: float) -> None:
        # Amortized: a full pass at most once a minute keeps a long-lived process from growing forever.
        if now - self._last_sweep < 60:
            return
        self._last_sweep = now
        for key in [k for k, b in self._buckets.items() if b.expires_at <= now]:
            del self._buckets[key]
        for key in [k for k, e in self._flags.items() if e is not None and e <= now]:
            del self._flags[key]


def _check(
    index: int,
    target: Target,
    bucket: _Bucket,
    amount: tuple[int, ...],
    replaced: tuple[float, list[int]] | None,
) -> Refusal | None:
    if not target.enforce:
        return None
    for i, limit in enumerate(target.limits):
        if limit == NO_LIMIT or amount[i] == 0:
            continue
        current = bucket.spent[i] + bucket.reserved[i] - (replaced[1][i] if replaced else 0)
        if current + amount[i] > limit:
            return Refusal(index, METRICS[i], limit, current, amount[i])
    return None

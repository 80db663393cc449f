"""Fleet-wide store on Redis: every read-modify-write is one Lua script (``lua/ledger.lua``).

Commits are deferred: they ride along with the next reservation's script call, or are
sent by a background flusher within ``flush_interval_s``, so a model call waits on one
round trip, not two. A commit is never lost to a failed send: it goes back to the queue
and is retried (idempotent through its call marker).
"""

from __future__ import annotations

import struct
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from importlib.resources import files
from typing import Any

import redis
import structlog

from guardian.amounts import METRICS, Amounts
from guardian.errors import StoreError
from guardian.store.base import (
    BucketState,
    CommitRequest,
    Counter,
    KillCheck,
    Refusal,
    ReleaseRequest,
    ReserveRequest,
    ReserveResult,
    Store,
    Target,
)

__all__ = ["RedisStore"]

_N = len(METRICS)
_COUNTERS = struct.Struct(f"<{2 * _N + 1}q")  # as ledger.lua packs them: spent, reserved, earliest hold expiry
_HOLD = struct.Struct(f"<{_N + 1}q")  # expiry, amounts
_log = structlog.get_logger("guardian")


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def _ttl_ms(target: Target, now: float) -> int:
    """Relative, so a skew between our clock and the server's never expires a live bucket."""
    return max(1000, _ms(target.expires_at - now))


class _Batch:
    """Builds the KEYS/ARGV of one ledger script call."""

    def __init__(self, now: float) -> None:
        self.keys: list[str] = []
        self._index: dict[str, int] = {}
        self.ops: list[str | int] = []
        self.count = 0
        self.now = now

    def key(self, key: str) -> int:
        index = self._index.get(key)
        if index is None:
            self.keys.append(key)
            index = self._index[key] = len(self.keys)
        return index

    def commit(self, c: CommitRequest) -> None:
        self.count += 1
        self.ops += ["C", c.call_id, self.key(c.marker_key), _ms(c.marker_ttl_s), len(c.targets)]
        for t in c.targets:
            self.ops += [self.key(t.key), _ttl_ms(t, c.now)]
        self.ops += list(c.amount.as_vector())

    def release(self, r: ReleaseRequest) -> None:
        self.count += 1
        self.ops += ["X", r.call_id, len(r.targets)]
        for t in r.targets:
            self.ops.append(self.key(t.key))

    def reserve(self, r: ReserveRequest) -> None:
        self.count += 1
        self.ops += ["R", r.call_id, _ms(r.ttl_s), int(r.mode), len(r.kill_checks)]
        self.ops += [self.key(k.key) for k in r.kill_checks]
        self.ops.append(len(r.targets))
        for t in r.targets:
            self.ops += [self.key(t.key), _ttl_ms(t, r.now), int(t.enforce)]
            self.ops += list(t.limits)
        self.ops += list(r.amount.as_vector())

    def argv(self) -> list[str | int]:
        return [_ms(self.now), self.count, *self.ops]


class RedisStore(Store):
    """``client`` is a ``redis.Redis``; build one from a URL with ``RedisStore.from_url``."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        flush_interval_s: float = 0.05,
        max_batch: int = 256,
        max_pending: int = 100_000,
        owns_client: bool = False,
    ) -> None:
        if isinstance(client, redis.RedisCluster):  # pragma: no cover - guard only
            raise StoreError("Redis Cluster clients are not supported yet: pass a standalone redis.Redis")
        self.client = client
        self._script = client.register_script(files("guardian.store").joinpath("lua/ledger.lua").read_text())
        self._flush_interval_s = flush_interval_s
        self._max_batch = max_batch
        self._max_pending = max_pending
        self._owns_client = owns_client
        self._pending: deque[CommitRequest | ReleaseRequest] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._flusher: threading.Thread | None = None
        self._closed = False

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> RedisStore:
        """``redis://``, ``rediss://`` or ``unix://``. Short timeouts: a ledger must fail fast, not hang."""
        client_options = {
            "socket_connect_timeout": kwargs.pop("socket_connect_timeout", 1.0),
            "socket_timeout": kwargs.pop("socket_timeout", 2.0),
            "health_check_interval": kwargs.pop("health_check_interval", 30),
        }
        try:
            client = redis.Redis.from_url(url, **client_options)
        except ValueError as exc:
            raise StoreError(f"invalid Redis URL {url!r}: {exc}") from exc
        return cls(client, owns_client=True, **kwargs)

    # -- ledger ------------------------------------------------------------------------------------------

    def reserve(self, request: ReserveRequest) -> ReserveResult:
        batch = _Batch(request.now)
        carried = self._take_pending()
        for item in carried:
            self._add(batch, item)
        batch.reserve(request)
        try:
            reply = self._run(batch, "reserve")
        except StoreError:
            self._requeue(carried)
            raise
        return _parse_reserve(reply, request)

    def commit(self, request: CommitRequest) -> None:
        self._defer(request)

    def release(self, request: ReleaseRequest) -> None:
        self._defer(request)

    def flush(self) -> None:
        while True:
            carried = self._take_pending()
            if not carried:
                return
            batch = _Batch(max(item.now for item in carried))
            for item in carried:
                self._add(batch, item)
            try:
                self._run(batch, "commit")
            except StoreError:
                self._requeue(carried)
                raise

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    # -- reads and flags ---------------------------------------------------------------------------------

    def read(self, keys: Sequence[str], now: float) -> list[BucketState | None]:
        try:
            pipe = self.client.pipeline(transaction=False)
            for key in keys:
                pipe.hgetall(key)
            raw = pipe.execute()
        except redis.RedisError as exc:
            raise _store_error("read", exc) from exc
        return [_bucket_state(fields, _ms(now)) for fields in raw]

    def scan(self, pattern: str, now: float) -> Iterator[tuple[str, BucketState]]:
        try:
            keys = sorted(k.decode() for k in self.client.scan_iter(match=pattern, count=1000))
        except redis.RedisError as exc:
            raise _store_error("scan", exc) from exc
        for key, state in zip(keys, self.read(keys, now), strict=True):
            if state is not None:
                yield key, state

    def count(self, counter: Counter, amount: int, *, now: float) -> int:
        try:
            pipe = self.client.pipeline(transaction=True)
            pipe.incrby(counter.key, amount)
            pipe.pexpire(counter.key, max(1, _ms(counter.ttl_s)))
            value, _ = pipe.execute()
        except redis.RedisError as exc:
            raise _store_error("count", exc) from exc
        return int(value)

    def counters(self, pattern: str, now: float) -> list[tuple[str, int]]:
        try:
            keys = sorted(k.decode() for k in self.client.scan_iter(match=pattern, count=1000))
            values = self.client.mget(keys) if keys else []
        except redis.RedisError as exc:
            raise _store_error("counters", exc) from exc
        return [(k, int(v)) for k, v in zip(keys, values, strict=True) if v is not None]

    def set_flag(self, key: str, ttl_s: float | None, *, now: float, only_if_absent: bool = False) -> bool:
        try:
            done = self.client.set(key, "1", px=None if ttl_s is None else max(1, _ms(ttl_s)), nx=only_if_absent)
        except redis.RedisError as exc:
            raise _store_error("set_flag", exc) from exc
        return bool(done)

    def clear_flag(self, key: str) -> bool:
        try:
            return bool(self.client.delete(key))
        except redis.RedisError as exc:
            raise _store_error("clear_flag", exc) from exc

    def flags(self, pattern: str, now: float) -> list[str]:
        try:
            return sorted(k.decode() for k in self.client.scan_iter(match=pattern, count=1000))
        except redis.RedisError as exc:
            raise _store_error("flags", exc) from exc

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._wake.notify_all()
        flusher = self._flusher
        if flusher is not None:
            flusher.join(timeout=5)
        try:
            self.flush()
        except StoreError as exc:
            lost = self._take_pending()
            _log.error(
                "commit_dropped",
                reason="store unreachable at close",
                count=len(lost),
                error=str(exc),
                calls=[item.call_id for item in lost],
            )
        if self._owns_client:
            self.client.close()

    # -- internals ---------------------------------------------------------------------------------------

    def _run(self, batch: _Batch, op: str) -> list[int]:
        try:
            reply = self._script(keys=batch.keys, args=batch.argv())
        except redis.RedisError as exc:
            raise _store_error(op, exc) from exc
        if not isinstance(reply, list):
            raise StoreError(f"redis {op}: unexpected reply {reply!r}")
        return [int(v) for v in reply]

    @staticmethod
    def _add(batch: _Batch, item: CommitRequest | ReleaseRequest) -> None:
        if isinstance(item, CommitRequest):
            batch.commit(item)
        else:
            batch.release(item)

    def _defer(self, item: CommitRequest | ReleaseRequest) -> None:
        with self._lock:
            if len(self._pending) >= self._max_pending:
                dropped = self._pending.popleft()
                _log.error(
                    "commit_dropped",
                    reason="pending queue full",
                    call_id=dropped.call_id,
                    amount=getattr(dropped, "amount", Amounts()).nonzero(),
                )
            self._pending.append(item)
            if self._flusher is None and not self._closed:
                self._flusher = threading.Thread(target=self._flush_loop, name="guardian-redis-flusher", daemon=True)
                self._flusher.start()
            if len(self._pending) >= self._max_batch:
                self._wake.notify()

    def _take_pending(self) -> list[CommitRequest | ReleaseRequest]:
        with self._lock:
            return [self._pending.popleft() for _ in range(min(len(self._pending), self._max_batch))]

    def _requeue(self, items: list[CommitRequest | ReleaseRequest]) -> None:
        with self._lock:
            self._pending.extendleft(reversed(items))

    def _flush_loop(self) -> None:
        backoff = self._flush_interval_s
        while True:
            with self._lock:
                if self._closed:
                    return
                self._wake.wait(timeout=backoff)
                if self._closed:
                    return
            try:
                self.flush()
                backoff = self._flush_interval_s
            except StoreError as exc:
                # Kept for the next attempt; logging each retry would flood the log during an outage.
                if backoff == self._flush_interval_s:
                    _log.warning("store_error", op="flush", error=str(exc), pending=self.pending)
                backoff = min(backoff * 2, 2.0)


def _store_error(op: str, exc: redis.RedisError) -> StoreError:
    return StoreError(f"redis {op} failed: {type(exc).__name__}: {exc}")


def _states(values: list[int], count: int) -> list[BucketState]:
    out = []
    for b in range(count):
        chunk = values[b * 2 * _N : (b + 1) * 2 * _N]
        out.append(BucketState(Amounts.from_vector(chunk[:_N]), Amounts.from_vector(chunk[_N:])))
    return out


def _parse_reserve(reply: list[int], request: ReserveRequest) -> ReserveResult:
    status = reply[0]
    if status == 0:
        return ReserveResult(states=_states(reply[1:], len(request.targets)) if request.want_states else ())
    if status == 1:
        check: KillCheck = request.kill_checks[reply[1]]
        return ReserveResult(killed=check)
    if status == 2:
        _, index, metric, limit, current, requested = reply[:6]
        return ReserveResult(
            refusal=Refusal(index, METRICS[metric], limit, current, requested),
            states=_states(reply[6:], len(request.targets)),
        )
    raise StoreError(f"redis reserve: unexpected status {status}")


def _bucket_state(fields: dict[bytes, bytes], now_ms: int) -> BucketState | None:
    """Decode a bucket hash (see ledger.lua), leaving out holds that have expired."""
    if not fields:
        return None
    packed = fields.get(b"v")
    values = list(_COUNTERS.unpack(packed)) if packed else [0] * (2 * _N + 1)
    spent, reserved = values[:_N], values[_N : 2 * _N]
    for name, hold in fields.items():
        if name.startswith(b"h:"):
            expiry, *amounts = _HOLD.unpack(hold)
            if expiry <= now_ms:
                reserved = [r - a for r, a in zip(reserved, amounts, strict=True)]
    return BucketState(Amounts(*spent), Amounts(*reserved), int(fields.get(b"refused", 0)))

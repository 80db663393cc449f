"""Fleet-wide store on Redis: every read-modify-write is one Lua script (``lua/ledger.lua``).

Commits are deferred: they ride along with the next reservation's script call, or are
sent by a background flusher within ``flush_interval_s``, so a model call waits on one
round trip, not two. A commit is never lost to a failed send: it goes back to the queue
and is retried (idempotent through its call marker), unless Redis rejects the item itself (a key of
the wrong type): that one is dropped and logged, so it cannot block every later call.
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import os
import struct
import threading
import weakref
from collections import deque
from collections.abc import Iterator, Sequence
from importlib.resources import files
from typing import Any, TypeAlias

import redis

from guardian.amounts import METRICS, Amounts
from guardian.errors import StoreError
from guardian.logs import get_logger
from guardian.store.base import (
    SETTLED_TTL_S,
    BucketState,
    ChargeMode,
    CommitRequest,
    Counter,
    HistoryEntry,
    KillCheck,
    Refusal,
    ReleaseRequest,
    RenewRequest,
    ReserveRequest,
    ReserveResult,
    Store,
    Target,
    check_amount,
)
from guardian.threads import start_background

__all__ = ["RedisStore"]

_N = len(METRICS)
_LIMITS = struct.Struct(f"<{_N}q")  # a bucket's 'l' field: the limits its last reservation was judged by
_COUNTERS = struct.Struct(f"<{2 * _N + 1}q")  # as ledger.lua packs them: spent, reserved, earliest hold expiry
_HOLD = struct.Struct(f"<{_N + 1}q")  # expiry, amounts
_log = get_logger()
_Pending: TypeAlias = CommitRequest | ReleaseRequest | HistoryEntry
_SETTLED_TTL_MS = int(SETTLED_TTL_S * 1000)
_PROBE_FLAG = 8  # added to an R op's mode: a probe's refusal is not counted (ledger.lua)

# Answers about the server's state, not about what was sent: the items are kept and retried, as on a lost
# connection. Any other ResponseError (a key of the wrong type, a script error) would come back on every resend.
_SERVER_STATE_ERRORS = (
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.NoPermissionError,
)


def ledger_script() -> str:
    """``lua/ledger.lua`` with the number of metrics filled in: the script has no list of its own."""
    source = files("guardian.store").joinpath("lua/ledger.lua").read_text()
    return source.replace("__METRIC_COUNT__", str(_N))


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
        self._buckets: dict[int, None] = {}  # bucket key indices, in order: the script reads them all first
        self.ops: list[str | int] = []
        self.count = 0
        self.now = now

    def key(self, key: str) -> int:
        index = self._index.get(key)
        if index is None:
            self.keys.append(key)
            index = self._index[key] = len(self.keys)
        return index

    def bucket(self, key: str) -> int:
        index = self.key(key)
        self._buckets[index] = None
        return index

    def commit(self, c: CommitRequest) -> None:
        self.count += 1
        self.ops += ["C", c.call_id, self.key(c.marker_key), _ms(c.marker_ttl_s), len(c.targets)]
        for t in c.targets:
            self.ops += [self.bucket(t.key), _ttl_ms(t, c.now)]
        self.ops += c.amount.as_vector()
        self._history(c.history)

    def append(self, h: HistoryEntry) -> None:
        self.count += 1
        marker = 0 if h.marker_key is None else self.key(h.marker_key)
        self.ops += ["A", marker, _SETTLED_TTL_MS]
        self._history(h)

    def _history(self, h: HistoryEntry | None) -> None:
        if h is None:
            self.ops.append(0)
        else:
            self.ops += [self.key(h.key), h.payload, _ms(h.now), max(1, _ms(h.keep_s)), max(1, h.max_records)]

    def release(self, r: ReleaseRequest) -> None:
        self.count += 1
        self.ops += ["X", r.call_id, len(r.targets)]
        for t in r.targets:
            self.ops.append(self.bucket(t.key))

    def renew(self, r: RenewRequest) -> None:
        self.count += 1
        self.ops += ["W", r.call_id, _ms(r.ttl_s), len(r.targets)]
        for t in r.targets:
            self.ops.append(self.bucket(t.key))

    def states(self, keys: Sequence[str]) -> None:
        self.count += 1
        self.ops += ["S", len(keys)]
        for key in keys:
            self.ops.append(self.bucket(key))

    def reserve(self, r: ReserveRequest) -> None:
        self.count += 1
        marker = 0 if r.marker_key is None else self.key(r.marker_key)
        mode = int(r.mode) + (_PROBE_FLAG if r.probe else 0)
        self.ops += ["R", r.call_id, _ms(r.ttl_s), mode, marker, len(r.kill_checks)]
        self.ops += [self.key(k.key) for k in r.kill_checks]
        self.ops.append(len(r.targets))
        for t in r.targets:
            self.ops += [self.bucket(t.key), _ttl_ms(t, r.now), int(t.enforce)]
            self.ops += t.limits
        self.ops += r.amount.as_vector()

    def argv(self) -> list[str | int]:
        return [_ms(self.now), _SETTLED_TTL_MS, len(self._buckets), *self._buckets, self.count, *self.ops]


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
        if client.get_encoder().decode_responses:
            raise StoreError(
                "the Redis client decodes responses: the ledger stores packed bytes, so create it "
                "without decode_responses=True"
            )
        self.client = client
        self._source = ledger_script()
        self._sha = hashlib.sha1(self._source.encode()).hexdigest()
        self._flush_interval_s = flush_interval_s
        self._max_batch = max_batch
        self._max_pending = max_pending
        self._owns_client = owns_client
        self._pending: deque[_Pending] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._settled = threading.Condition(self._lock)  # notified when taken items are sent or back in the queue
        self._in_flight = 0  # items taken from the queue and being sent
        self._flusher: threading.Thread | None = None
        self._closed = False
        _live.add(self)

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
            from guardian.store.factory import redact_text, redact_url

            # Neither the URL nor redis-py's message may carry the password into a log: no chained cause either.
            raise StoreError(f"invalid Redis URL {redact_url(url)!r}: {redact_text(str(exc), url)}") from None
        return cls(client, owns_client=True, **kwargs)

    # -- ledger ------------------------------------------------------------------------------------------

    def reserve(self, request: ReserveRequest) -> ReserveResult:
        check_amount(request.amount)
        with self._taken() as carried:
            return self._reserve(request, carried)

    def _reserve(self, request: ReserveRequest, carried: list[_Pending]) -> ReserveResult:
        while True:  # at most twice
            try:
                return _parse_reserve(self._send(carried, request), request)
            except redis.RedisError as exc:
                if not carried or _may_succeed_later(exc):
                    self._requeue(carried)
                    raise self._reserve_failed(request, exc) from exc
            # Redis rejected the batch before writing anything (the script reads every bucket first). Re-queued,
            # a bad item would fail every later reservation: settle the carried items apart, dropping only what
            # Redis rejects, then send the reservation alone. Carried first, as in the batch: a queued release of
            # this very call must not drop the hold the reservation makes.
            self._settle(carried)
            carried = []

    def commit(self, request: CommitRequest) -> None:
        check_amount(request.amount)  # here, not when the queue is sent: the caller's bug must reach the caller
        self._defer(request)

    def release(self, request: ReleaseRequest) -> None:
        self._defer(request)

    def append(self, entry: HistoryEntry) -> None:
        self._defer(entry)

    def history(self, pattern: str, since: float, until: float) -> Iterator[tuple[float, str]]:
        """Every matching stream read by id range (ids are the writers' clocks, in ms), merged oldest first."""
        self.flush()
        try:
            keys = sorted(k.decode() for k in self.client.scan_iter(match=pattern, count=1000, _type="stream"))
            streams = [self._stream(key, since, until) for key in keys]
        except redis.RedisError as exc:
            raise _store_error("history", exc) from exc
        yield from heapq.merge(*streams, key=lambda r: r[0])

    def _stream(self, key: str, since: float, until: float, page: int = 1000) -> list[tuple[float, str]]:
        records: list[tuple[float, str]] = []
        start, end = str(max(0, _ms(since))), str(max(0, _ms(until) - 1))  # ids are "<ms>-<seq>"
        while True:
            entries: list[tuple[bytes, dict[bytes, bytes]]] = self.client.xrange(key, start, end, count=page)  # type: ignore[assignment]
            for entry_id, fields in entries:
                records.append((int(entry_id.split(b"-")[0]) / 1000, fields[b"r"].decode()))
            if len(entries) < page:
                return records
            start = "(" + entries[-1][0].decode()

    def flush(self) -> None:
        while True:
            with self._taken() as carried:
                if carried:
                    self._settle(carried)
                    continue
            with self._lock:
                # What another thread (the flusher, a reservation) took is durable only once its send is done.
                while self._in_flight and not self._pending:
                    self._settled.wait()
                if not self._pending:
                    return

    def sync(self, keys: Sequence[str], now: float) -> list[BucketState | None]:
        """The queued items and the state reads in one script call (more only if the queue is long)."""
        if not keys:
            self.flush()
            return []
        while True:  # again only after Redis rejected a batch
            with self._taken() as carried:
                try:
                    reply = self._send(carried, now=now, read_keys=keys)
                    break
                except redis.RedisError as exc:
                    if not carried or _may_succeed_later(exc):
                        self._requeue(carried)
                        raise _store_error("sync", exc) from exc
                    # Redis rejected the batch before writing anything: settle the carried items apart, dropping
                    # only what it rejects, then read again. Outside the retry, so a flush the retry makes never
                    # waits for the items this block still counts as in flight.
                    self._settle(carried)
        with self._lock:
            behind = bool(self._pending or self._in_flight)
        if behind:
            # A queue longer than one batch, or items the flusher is sending right now: rare, and the states
            # above may predate them. Wait until they are sent, then read again.
            self.flush()
            return self.read(keys, now)
        return _read_states(reply[1:], len(keys))

    def renew(self, requests: Sequence[RenewRequest]) -> None:
        for start in range(0, len(requests), self._max_batch):
            batch = _Batch(requests[0].now)
            for request in requests[start : start + self._max_batch]:
                batch.renew(request)
            try:
                self._script(keys=batch.keys, args=batch.argv())
            except redis.RedisError as exc:
                raise _store_error("renew", exc) from exc

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

    def counter(self, key: str, now: float) -> int:
        try:
            value = self.client.get(key)
        except redis.RedisError as exc:
            raise _store_error("counter", exc) from exc
        return 0 if value is None else int(value)

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
        if flusher is not None and flusher is not threading.current_thread():
            flusher.join(timeout=5)
        try:
            self.flush()
        except StoreError as exc:
            with self._lock:
                lost = list(self._pending)
                self._pending.clear()
            _log_dropped(lost, "store unreachable at close", exc)
        if self._owns_client:
            self.client.close()

    # -- internals ---------------------------------------------------------------------------------------

    def _script(self, *, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        """EVALSHA of the ledger, loading it on NOSCRIPT. Not redis-py's ``Script``: its deprecation shim
        inspects its own signature on every call, which costs as much as the round trip."""
        command = ("EVALSHA", self._sha, len(keys), *keys, *args)
        try:
            return self.client.execute_command(*command)  # type: ignore[no-untyped-call]
        except redis.exceptions.NoScriptError:
            self.client.execute_command("SCRIPT", "LOAD", self._source)  # type: ignore[no-untyped-call]
            return self.client.execute_command(*command)  # type: ignore[no-untyped-call]

    def _send(
        self,
        items: Sequence[_Pending],
        reservation: ReserveRequest | None = None,
        *,
        now: float | None = None,
        read_keys: Sequence[str] = (),
    ) -> list[int]:
        """One script call: the items, then the reservation or the state reads if any. Raises what redis-py
        raises."""
        if reservation is not None:
            now = reservation.now
        batch = _Batch(now if now is not None else max(item.now for item in items))
        for item in items:
            if isinstance(item, CommitRequest):
                batch.commit(item)
            elif isinstance(item, HistoryEntry):
                batch.append(item)
            else:
                batch.release(item)
        if reservation is not None:
            batch.reserve(reservation)
        elif read_keys:
            batch.states(read_keys)
        reply = self._script(keys=batch.keys, args=batch.argv())
        if not isinstance(reply, list):
            raise redis.ResponseError(f"guardian ledger: unexpected reply {reply!r}")
        return [int(v) for v in reply]

    def _settle(self, items: list[_Pending]) -> None:
        """Send queued items; if Redis rejects the batch, one at a time, dropping (and logging) only the items
        it rejects. When Redis cannot be reached, what was not sent goes back to the queue and StoreError is
        raised."""
        try:
            self._send(items)
            return
        except redis.RedisError as exc:
            if _may_succeed_later(exc):
                self._requeue(items)
                raise _store_error("flush", exc) from exc
            if len(items) == 1:
                _log_dropped(items, "rejected by redis", exc)
                return
        for index, item in enumerate(items):
            try:
                self._send([item])
            except redis.RedisError as exc:
                if _may_succeed_later(exc):
                    self._requeue(items[index:])
                    raise _store_error("flush", exc) from exc
                _log_dropped([item], "rejected by redis", exc)

    def _reserve_failed(self, request: ReserveRequest, exc: redis.RedisError) -> StoreError:
        if request.mode == ChargeMode.RESERVE and isinstance(exc, redis.ConnectionError | redis.TimeoutError):
            # The script may have run before the connection failed (a timeout waiting for the reply): drop the
            # hold it may have left rather than let it count until it expires. Releasing is idempotent. An
            # EXTEND's hold belongs to a call still running, which settles it; a CHARGE leaves no hold.
            self._defer(ReleaseRequest(request.call_id, request.targets, request.now))
        return _store_error("reserve", exc)

    def _defer(self, item: _Pending) -> None:
        with self._lock:
            closed = self._closed
            if not closed:
                if len(self._pending) >= self._max_pending:
                    _log_dropped([self._pending.popleft()], "pending queue full")
                self._pending.append(item)
                if self._flusher is None:
                    # Through a weak reference: a store dropped without close() must not live on in its thread.
                    self._flusher = start_background(_flush_loop, (weakref.ref(self),), "guardian-redis-flusher")
                if len(self._pending) >= self._max_batch:
                    self._wake.notify()
        if closed:
            # Nothing flushes the queue after close: send the item now, or say it is lost.
            try:
                self._send([item])
            except redis.RedisError as exc:
                _log_dropped([item], "send after close failed", exc)

    @contextlib.contextmanager
    def _taken(self) -> Iterator[list[_Pending]]:
        """Takes up to ``max_batch`` queued items to send; flush() waits for them until the block ends."""
        with self._lock:
            items = [self._pending.popleft() for _ in range(min(len(self._pending), self._max_batch))]
            self._in_flight += len(items)
        try:
            yield items
        finally:
            with self._lock:
                self._in_flight -= len(items)
                self._settled.notify_all()

    def _requeue(self, items: list[_Pending]) -> None:
        with self._lock:
            self._pending.extendleft(reversed(items))

    def _flush_round(self, backoff: float) -> float:
        """One flush of the background flusher; returns the wait before the next."""
        try:
            self.flush()
            return self._flush_interval_s
        except StoreError as exc:
            # Kept for the next attempt; logging each retry would flood the log during an outage.
            if backoff == self._flush_interval_s:
                _log.warning("store_error", op="flush", error=str(exc), pending=self.pending)
            return min(backoff * 2, 2.0)

    def _reset_after_fork(self) -> None:
        """In a forked child: the flusher thread did not survive the fork, the lock may have been held by a
        parent thread at that moment, and the queued items are the parent's, which sends them."""
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._settled = threading.Condition(self._lock)
        self._pending = deque()
        self._in_flight = 0
        self._flusher = None  # started again by the child's first deferred item


_live: weakref.WeakSet[RedisStore] = weakref.WeakSet()


def _flush_loop(ref: weakref.ref[RedisStore]) -> None:
    """The background flusher. It holds its store only while flushing, never while it waits."""
    store = ref()
    if store is None:
        return
    backoff = store._flush_interval_s
    while True:
        wake = store._wake
        with wake:
            if store._closed:
                return
            del store
            wake.wait(timeout=backoff)
            store = ref()
            if store is None or store._closed:
                return
        backoff = store._flush_round(backoff)


def _reset_after_fork() -> None:
    for store in list(_live):
        store._reset_after_fork()


os.register_at_fork(after_in_child=_reset_after_fork)


def _may_succeed_later(exc: redis.RedisError) -> bool:
    """False when Redis rejected what was sent (a key of the wrong type, a script error): resending fails again."""
    if not isinstance(exc, redis.ResponseError) or isinstance(exc, _SERVER_STATE_ERRORS):
        return True
    return str(exc).startswith("BUSY")  # a long script on the server: it ends


def _describe(item: _Pending) -> dict[str, Any]:
    """Enough to restore a lost item by hand from the log (a history record's payload holds no prompt text)."""
    if isinstance(item, HistoryEntry):
        return {"history": item.key, "payload": item.payload}
    described: dict[str, Any] = {"call_id": item.call_id, "targets": [t.key for t in item.targets]}
    if isinstance(item, CommitRequest):
        described["amount"] = item.amount.nonzero()
    else:
        described["release"] = True
    return described


def _log_dropped(items: Sequence[_Pending], reason: str, exc: Exception | None = None) -> None:
    if items:
        _log.error(
            "commit_dropped",
            reason=reason,
            error=None if exc is None else str(exc),
            count=len(items),
            calls=[_describe(item) for item in items],
        )


def _store_error(op: str, exc: redis.RedisError) -> StoreError:
    return StoreError(f"redis {op} failed: {type(exc).__name__}: {exc}")


def _states(values: list[int], count: int) -> list[BucketState]:
    out = []
    for b in range(count):
        chunk = values[b * 2 * _N : (b + 1) * 2 * _N]
        out.append(BucketState(Amounts.from_vector(chunk[:_N]), Amounts.from_vector(chunk[_N:])))
    return out


def _read_states(values: list[int], count: int) -> list[BucketState | None]:
    """The S op's reply: per bucket, whether it exists, its refusals, then its counters."""
    out: list[BucketState | None] = []
    width = 2 + 2 * _N
    for b in range(count):
        chunk = values[b * width : (b + 1) * width]
        counters = chunk[2:]
        state = BucketState(Amounts.from_vector(counters[:_N]), Amounts.from_vector(counters[_N:]), chunk[1])
        out.append(state if chunk[0] else None)
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
    """Decode a bucket hash (see ledger.lua), counting holds that have expired as charged, as the script will."""
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
                spent = [s + a for s, a in zip(spent, amounts, strict=True)]
    packed_limits = fields.get(b"l")
    limits = _LIMITS.unpack(packed_limits) if packed_limits else None
    return BucketState(Amounts(*spent), Amounts(*reserved), int(fields.get(b"refused", 0)), limits)

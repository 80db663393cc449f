"""RedisStore behaviours beyond the shared contract: deferred commits, rejected items, close, fork, client checks."""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Iterator, MutableMapping, Sequence
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from structlog.testing import capture_logs

from guardian.amounts import METRICS, Amounts
from guardian.errors import StoreError
from guardian.keys import BucketKey, KeyBuilder
from guardian.store import NO_LIMIT, CommitRequest, RedisStore, ReserveRequest, Target

pytestmark = pytest.mark.redis

NOW = 1_800_000_000.0


@pytest.fixture
def keys(key_prefix: str) -> KeyBuilder:
    return KeyBuilder(key_prefix)


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


@pytest.fixture
def store(redis_url: str) -> Iterator[RedisStore]:
    s = RedisStore.from_url(redis_url, flush_interval_s=3600)  # sent by reservations and flush(), not a timer
    yield s
    s.close()


@pytest.fixture
def dead_store() -> Iterator[RedisStore]:
    """A store whose Redis refuses every connection at once (no retries, so nothing waits)."""
    client = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    s = RedisStore(client, flush_interval_s=3600, max_batch=4, owns_client=True)
    yield s
    s.close()


def target(keys: KeyBuilder, name: str, total_tokens: int = NO_LIMIT) -> Target:
    key = keys.bucket(BucketKey("acme", name, "tenant", "acme", "2027-01-15"))
    limits = tuple(total_tokens if m == "total_tokens" else NO_LIMIT for m in METRICS)
    return Target(key, limits, NOW + 86_400)


def commit_request(keys: KeyBuilder, t: Target, call_id: str, tokens: int) -> CommitRequest:
    return CommitRequest(call_id, [t], Amounts(total_tokens=tokens), NOW, keys.call_marker("acme", call_id))


def reserve(store: RedisStore, t: Target, call_id: str, tokens: int) -> bool:
    return store.reserve(ReserveRequest(call_id, [t], Amounts(total_tokens=tokens), NOW)).ok


def tokens(store: RedisStore, t: Target) -> tuple[int, int]:
    """(spent, reserved) total tokens of a bucket."""
    (state,) = store.read([t.key], NOW)
    return (0, 0) if state is None else (state.spent.total_tokens, state.reserved.total_tokens)


def dropped(logs: Sequence[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if e["event"] == "commit_dropped"]


def test_a_client_that_decodes_responses_is_refused(redis_url: str) -> None:
    """The ledger stores packed bytes: a client built with decode_responses=True is refused up front."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    with pytest.raises(StoreError, match="decode_responses"):
        RedisStore(client)
    client.close()


def test_a_commit_redis_rejects_is_dropped_and_blocks_no_later_reservation(
    store: RedisStore, keys: KeyBuilder, client: redis.Redis
) -> None:
    """A queued commit on a key of the wrong type is logged and dropped; the reservation carrying it, the
    commits batched with it and every later reservation still go through, each commit charged once."""
    good, bad = target(keys, "good", total_tokens=1000), target(keys, "bad")
    client.set(bad.key, "not a bucket")
    assert reserve(store, good, "g", 100)
    store.commit(commit_request(keys, good, "g", 70))
    store.commit(commit_request(keys, bad, "b", 5))
    with capture_logs() as logs:
        assert reserve(store, good, "next", 10)
        assert reserve(store, good, "later", 10)
    (event,) = dropped(logs)
    assert event["reason"] == "rejected by redis"
    assert "WRONGTYPE" in event["error"]
    assert event["calls"] == [{"call_id": "b", "targets": [bad.key], "amount": {"total_tokens": 5}}]
    assert store.pending == 0
    assert tokens(store, good) == (70, 20)
    assert client.get(bad.key) == b"not a bucket"


def test_flush_drops_a_rejected_commit_and_sends_the_rest(
    store: RedisStore, keys: KeyBuilder, client: redis.Redis
) -> None:
    """The flusher's path: a rejected commit is dropped and logged, flush() does not fail, the others land."""
    good, bad = target(keys, "good"), target(keys, "bad")
    client.set(bad.key, "not a bucket")
    store.commit(commit_request(keys, good, "g1", 1))
    store.commit(commit_request(keys, bad, "b", 5))
    store.commit(commit_request(keys, good, "g2", 2))
    with capture_logs() as logs:
        store.flush()
    assert [c["call_id"] for e in dropped(logs) for c in e["calls"]] == ["b"]
    assert tokens(store, good) == (3, 0)


def test_sync_after_a_rejected_batch_with_a_long_queue_returns(
    redis_url: str, keys: KeyBuilder, client: redis.Redis
) -> None:
    """sync() whose batch Redis rejects settles it apart and reads again; with more queued than one batch, the
    flush it then makes must not wait for items its own retry still counted as in flight (it deadlocked)."""
    store = RedisStore.from_url(redis_url, flush_interval_s=3600, max_batch=2)
    good, bad = target(keys, "good"), target(keys, "bad")
    client.set(bad.key, "not a bucket")
    store.commit(commit_request(keys, good, "g1", 1))
    store.commit(commit_request(keys, bad, "b", 5))
    for i in range(4):
        store.commit(commit_request(keys, good, f"g{i + 2}", 1))
    states: list[Any] = []
    worker = threading.Thread(target=lambda: states.extend(store.sync([good.key], NOW)), daemon=True)
    with capture_logs():
        worker.start()
        worker.join(timeout=10)
    assert not worker.is_alive(), "sync() deadlocked"
    assert states[0].spent.total_tokens == 5
    assert store.pending == 0
    store.close()


def test_flush_sends_everything_queued(redis_url: str, keys: KeyBuilder) -> None:
    """flush() returns only once the whole queue is sent, however many batches that takes."""
    store = RedisStore.from_url(redis_url, flush_interval_s=3600, max_batch=3)
    t = target(keys, "many")
    for i in range(10):
        store.commit(commit_request(keys, t, f"c{i}", 1))
    store.flush()
    assert store.pending == 0
    assert tokens(store, t) == (10, 0)
    store.close()


class WatchedCondition(threading.Condition):
    """Says when someone starts waiting on it."""

    def __init__(self, lock: threading.Lock) -> None:
        super().__init__(lock)
        self.waited = threading.Event()

    def wait(self, timeout: float | None = None) -> bool:
        self.waited.set()
        return super().wait(timeout)


def test_flush_waits_for_items_another_thread_is_sending(
    store: RedisStore, keys: KeyBuilder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit carried by a reservation still on the wire is not durable yet: flush() returns only after it."""
    t = target(keys, "carried")
    store.commit(commit_request(keys, t, "c", 5))
    run_script, entered, go_on = store._script, threading.Event(), threading.Event()

    def held_on_the_wire(**kwargs: Any) -> Any:
        entered.set()
        assert go_on.wait(10)
        return run_script(**kwargs)

    monkeypatch.setattr(store, "_script", held_on_the_wire)
    settled = store._settled = WatchedCondition(store._lock)
    reserving = threading.Thread(target=reserve, args=(store, t, "r", 1))
    reserving.start()
    assert entered.wait(10)
    flushing = threading.Thread(target=store.flush)
    flushing.start()
    assert settled.waited.wait(10), "flush() returned while the commit was still being sent"
    go_on.set()
    flushing.join(10)
    assert not flushing.is_alive()
    assert tokens(store, t)[0] == 5
    reserving.join(10)


def test_a_reservation_that_timed_out_leaves_no_hold(
    store: RedisStore, keys: KeyBuilder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the reply is lost after the script ran, a release is queued so the hold does not linger."""
    t = target(keys, "lost-reply", total_tokens=100)
    run_script = store._script

    def ran_then_timed_out(**kwargs: Any) -> Any:
        run_script(**kwargs)
        raise redis.TimeoutError("Timeout reading from socket")

    monkeypatch.setattr(store, "_script", ran_then_timed_out)
    with pytest.raises(StoreError, match="TimeoutError"):
        reserve(store, t, "c", 100)
    monkeypatch.undo()
    assert tokens(store, t) == (0, 100)  # the script did run
    assert store.pending == 1
    store.flush()
    assert tokens(store, t) == (0, 0)
    assert reserve(store, t, "c", 100)


def test_close_logs_every_item_it_could_not_send(dead_store: RedisStore, keys: KeyBuilder) -> None:
    """With Redis unreachable at close, every queued item (not one batch) is logged in one commit_dropped."""
    t = target(keys, "unsent")
    for i in range(10):
        dead_store.commit(commit_request(keys, t, f"c{i}", i))
    with capture_logs() as logs:
        dead_store.close()
    (event,) = dropped(logs)
    assert event["count"] == 10
    assert [c["call_id"] for c in event["calls"]] == [f"c{i}" for i in range(10)]
    assert event["calls"][3]["amount"] == {"total_tokens": 3}
    assert dead_store.pending == 0


def test_a_commit_after_close_is_sent_at_once(store: RedisStore, keys: KeyBuilder) -> None:
    """Nothing flushes after close, so a late commit is sent synchronously rather than queued."""
    t = target(keys, "late")
    store.close()
    store.commit(commit_request(keys, t, "late", 7))
    assert store.pending == 0
    assert tokens(store, t) == (7, 0)


def test_a_commit_after_close_that_cannot_be_sent_is_logged(dead_store: RedisStore, keys: KeyBuilder) -> None:
    """A late commit that Redis cannot take is logged with its content, never silently queued."""
    t = target(keys, "late")
    dead_store.close()
    with capture_logs() as logs:
        dead_store.commit(commit_request(keys, t, "late", 7))
    (event,) = dropped(logs)
    assert event["calls"] == [{"call_id": "late", "targets": [t.key], "amount": {"total_tokens": 7}}]
    assert dead_store.pending == 0


def commit_in_child(store: RedisStore, keys: KeyBuilder, t: Target) -> None:
    """Runs in the forked child; raising makes its exit code non-zero."""
    assert store.pending == 0, "the parent's queued commit was inherited"
    store.commit(commit_request(keys, t, "child", 10))
    deadline = time.monotonic() + 20
    while tokens(store, t) != (10, 0):  # no flush(): only the child's own flusher can send it
        assert time.monotonic() < deadline, "the child's flusher never sent its commit"
        time.sleep(0.01)


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_flushes_its_own_commits(redis_url: str, keys: KeyBuilder) -> None:
    """Forked while a parent thread held the store's lock with a commit queued, the child starts with a free
    lock, an empty queue and no flusher; its own commit is then sent by a flusher of its own, and the
    parent's commit is sent once, by the parent."""
    store = RedisStore.from_url(redis_url, flush_interval_s=0.01)
    parent, child = target(keys, "parent"), target(keys, "child")
    store.commit(commit_request(keys, parent, "warm-up", 1))  # the parent's flusher is running
    ctx = multiprocessing.get_context("fork")
    with store._lock:
        store._pending.append(commit_request(keys, parent, "parent", 2))
        process = ctx.Process(target=commit_in_child, args=(store, keys, child))
        process.start()
    try:
        process.join(timeout=30)
        assert process.exitcode == 0
    finally:
        if process.is_alive():
            process.kill()
    store.flush()
    assert tokens(store, parent) == (3, 0)
    assert tokens(store, child) == (10, 0)
    store.close()


@pytest.mark.parametrize(
    ("url", "connection"),
    [
        ("redis://127.0.0.1:6379/0", "Connection"),
        ("rediss://cache.internal:6380/0", "SSLConnection"),
        ("unix:///run/redis/redis.sock?db=2", "UnixDomainSocketConnection"),
    ],
)
def test_store_urls_pick_the_right_transport(url: str, connection: str) -> None:
    """redis://, rediss:// (TLS) and unix:// URLs each build a client of the matching connection class."""
    store = RedisStore.from_url(url)
    try:
        assert store.client.connection_pool.connection_class.__name__ == connection
    finally:
        store.close()


def test_an_invalid_store_url_is_a_clear_error() -> None:
    """A URL that is not a store URL raises StoreError naming it, not a raw redis-py error."""
    from guardian.store import open_store

    with pytest.raises(StoreError, match="unsupported store URL"):
        open_store("postgres://nope")


def test_a_history_that_cannot_be_written_never_costs_the_commit(redis_url: str, keys: KeyBuilder) -> None:
    """The history key taken by a value of another type: the commit still lands; the record is dropped."""
    from guardian.store import HistoryEntry

    client = redis.Redis.from_url(redis_url)
    client.set(keys.history("acme"), "not a stream")
    store = RedisStore.from_url(redis_url)
    try:
        target = Target(keys.bucket(BucketKey("acme", "b", "tenant", "acme", "w")), (-1,) * 6, 2e9)
        history = HistoryEntry(keys.history("acme"), "record", 1e9, 3600.0, 100)
        marker = keys.call_marker("acme", "c1")
        store.commit(CommitRequest("c1", [target], Amounts(llm_calls=1), 1e9, marker, history=history))
        store.flush()
        (state,) = store.read([target.key], 1e9)
        assert state is not None
        assert state.spent.llm_calls == 1
    finally:
        store.close()
        client.close()

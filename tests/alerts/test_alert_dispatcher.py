"""The dispatcher: off the agent's thread, deduplicated, retried, and never lost silently."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

import pytest
from structlog.testing import capture_logs

import guardian.alerts.dispatcher as dispatcher_module
from guardian.alerts import (
    Alert,
    AlertDeliveryError,
    AlertsConfig,
    LogSink,
    RecordingSink,
    SlackConfig,
    SlackSink,
    build_dispatcher,
)
from guardian.errors import StoreError
from guardian.keys import KeyBuilder
from guardian.store.memory import MemoryStore

if TYPE_CHECKING:
    from tests.alerts.conftest import DispatcherFactory, FakeSlack

LogEvents = list[MutableMapping[str, Any]]


def _events(logs: LogEvents, name: str) -> LogEvents:
    return [entry for entry in logs if entry["event"] == name]


def _headers(fake_slack: FakeSlack) -> list[str]:
    return [r.body["blocks"][0]["text"]["text"] for r in fake_slack.delivered]


class BlockingSink:
    """Holds the worker inside ``send`` until released."""

    name = "blocking"

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.sent: list[Alert] = []

    def send(self, alert: Alert) -> None:
        self.entered.set()
        self.release.wait(10)
        self.sent.append(alert)


class FlakySink:
    """Fails its first ``failures`` sends with ``error``, then records."""

    name = "flaky"

    def __init__(self, failures: int, error: Exception | None = None) -> None:
        self.failures = failures
        self.error = error or AlertDeliveryError("Slack answered HTTP 503")
        self.calls = 0
        self.failed = threading.Event()
        self.sent: list[Alert] = []

    def send(self, alert: Alert) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            self.failed.set()
            raise self.error
        self.sent.append(alert)


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.set_flag_calls = 0

    def set_flag(self, key: str, ttl_s: float | None, *, now: float, only_if_absent: bool = False) -> bool:
        self.set_flag_calls += 1
        return super().set_flag(key, ttl_s, now=now, only_if_absent=only_if_absent)


class BrokenStore:
    def set_flag(self, key: str, ttl_s: float | None, *, now: float, only_if_absent: bool = False) -> bool:
        raise StoreError("Redis unreachable: Connection refused")


@pytest.fixture
def blocking_sink() -> Iterator[BlockingSink]:
    sink = BlockingSink()
    yield sink
    sink.release.set()


# --------------------------------------------------------------------------- the agent never waits


def test_submit_returns_while_slack_is_stuck_then_a_500_is_retried(
    fake_slack: FakeSlack,
    webhook_config: SlackConfig,
    make_dispatcher: DispatcherFactory,
    make_alert: Callable[..., Alert],
) -> None:
    """While Slack holds a request (then answers 500), submit keeps returning and alerts stay pending;
    once Slack recovers each alert arrives exactly once."""
    held = threading.Event()
    fake_slack.answer(500, hold=held)
    sleeps: list[float] = []
    dispatcher = make_dispatcher([SlackSink(webhook_config, sleep=sleeps.append)])
    dispatcher.submit(make_alert())
    assert fake_slack.wait_for_requests(1)
    dispatcher.submit(make_alert(dedup_key="team", budget="team-daily"))
    assert dispatcher.pending == 2
    assert fake_slack.delivered == []
    held.set()
    assert dispatcher.flush(timeout_s=5)
    assert sorted(_headers(fake_slack)) == [
        ":rotating_light: Budget exceeded: team-daily",
        ":rotating_light: Budget exceeded: user-daily",
    ]
    assert len(fake_slack.requests) == 3
    assert len(sleeps) == 1


def test_rate_limited_slack_is_retried_after_retry_after(
    fake_slack: FakeSlack,
    api_config: SlackConfig,
    make_dispatcher: DispatcherFactory,
    make_alert: Callable[..., Alert],
) -> None:
    """A 429 with Retry-After: 1 leaves the alert pending (submit unaffected); it is resent after the
    server's Retry-After (through the injected sleep) and arrives exactly once."""
    held = threading.Event()
    fake_slack.answer(429, headers={"Retry-After": "1"}, hold=held)
    sleeps: list[float] = []
    dispatcher = make_dispatcher([SlackSink(api_config, sleep=sleeps.append)])
    dispatcher.submit(make_alert())
    assert fake_slack.wait_for_requests(1)
    assert dispatcher.pending == 1
    held.set()
    assert dispatcher.flush(timeout_s=5)
    assert _headers(fake_slack) == [":rotating_light: Budget exceeded: user-daily"]
    assert sleeps == [1.0]


def test_hanging_slack_times_out_and_the_dispatcher_retries(
    fake_slack: FakeSlack,
    make_dispatcher: DispatcherFactory,
    make_alert: Callable[..., Alert],
) -> None:
    """A Slack that never answers costs the worker one client timeout, not the agent anything: the
    attempt is logged as failed, retried later, and the alert arrives exactly once."""
    fake_slack.answer(503, hold=threading.Event())  # released only at teardown
    config = SlackConfig.model_validate({"webhook_url": fake_slack.webhook_url, "timeout_s": 0.5})
    dispatcher = make_dispatcher([SlackSink(config)])
    with capture_logs() as logs:
        dispatcher.submit(make_alert())
        assert fake_slack.wait_for_requests(1)
        assert dispatcher.pending == 1
        assert dispatcher.flush(timeout_s=5)
    assert len(fake_slack.delivered) == 1
    (failure,) = _events(logs, "alert_delivery_failed")
    assert failure["sink"] == "slack"
    assert "could not reach Slack" in failure["error"]
    assert "TimeoutError" in failure["error"]
    assert failure["budget"] == "user-daily"


# --------------------------------------------------------------------------- dedup


def test_same_dedup_key_from_eight_threads_sends_one_message(
    fake_slack: FakeSlack,
    webhook_config: SlackConfig,
    make_dispatcher: DispatcherFactory,
    make_alert: Callable[..., Alert],
) -> None:
    """Eight threads tripping the same budget threshold produce one Slack message; the next window
    (another dedup key) alerts again."""
    dispatcher = make_dispatcher([SlackSink(webhook_config)])
    start = threading.Barrier(8)

    def trip() -> None:
        start.wait(5)
        dispatcher.submit(make_alert())

    threads = [threading.Thread(target=trip) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert dispatcher.flush(timeout_s=5)
    assert len(fake_slack.delivered) == 1

    dispatcher.submit(make_alert(dedup_key="exceeded:user-daily:user:alice:2026-01-06", window="day:2026-01-06"))
    assert dispatcher.flush(timeout_s=5)
    assert len(fake_slack.delivered) == 2
    assert fake_slack.delivered[1].body["blocks"][2]["fields"][-1]["text"] == "*Window*\nday:2026-01-06"


def test_repeats_are_deduplicated_in_process_without_the_store(
    make_dispatcher: DispatcherFactory, make_alert: Callable[..., Alert]
) -> None:
    """Once a dedup key is known, repeated submits are dropped in-process without asking the store."""
    store = CountingStore()
    sink = RecordingSink()
    dispatcher = make_dispatcher([sink], store=store)
    for _ in range(5):
        dispatcher.submit(make_alert())
    assert dispatcher.flush(timeout_s=5)
    assert len(sink.alerts) == 1
    assert store.set_flag_calls == 1


def test_dedup_mark_expires_with_its_ttl(make_dispatcher: DispatcherFactory, make_alert: Callable[..., Alert]) -> None:
    """The dedup mark lives dedup_ttl_s on the injected clock: after it, the same key alerts again."""
    now = [1_767_600_000.0]
    sink = RecordingSink()
    dispatcher = make_dispatcher([sink], clock=lambda: now[0])
    dispatcher.submit(make_alert(dedup_ttl_s=60.0))
    assert dispatcher.flush(timeout_s=5)
    now[0] += 59
    dispatcher.submit(make_alert(dedup_ttl_s=60.0))
    assert dispatcher.flush(timeout_s=5)
    assert len(sink.alerts) == 1
    now[0] += 2
    dispatcher.submit(make_alert(dedup_ttl_s=60.0))
    assert dispatcher.flush(timeout_s=5)
    assert len(sink.alerts) == 2


def test_dedup_mark_is_set_through_the_store(
    make_dispatcher: DispatcherFactory, make_alert: Callable[..., Alert]
) -> None:
    """The fleet-wide mark is the store flag keys.mark('alert:' + dedup_key); a key another process
    already marked is not sent again."""
    store = MemoryStore()
    keys = KeyBuilder("guardian-test:")
    assert store.set_flag(keys.mark("alert:taken"), None, now=0.0, only_if_absent=True)
    sink = RecordingSink()
    dispatcher = make_dispatcher([sink], store=store, keys=keys)
    dispatcher.submit(make_alert(dedup_key="taken"))
    dispatcher.submit(make_alert(dedup_key="fresh"))
    assert dispatcher.flush(timeout_s=5)
    assert [a.dedup_key for a in sink.alerts] == ["fresh"]
    assert store.set_flag(keys.mark("alert:fresh"), None, now=0.0, only_if_absent=True) is False


def test_store_failure_delivers_anyway(make_dispatcher: DispatcherFactory, make_alert: Callable[..., Alert]) -> None:
    """If the store cannot dedup, the failure is logged and the alert is delivered (better a
    duplicate than silence); repeats in this process are still deduplicated."""
    sink = RecordingSink()
    dispatcher = make_dispatcher([sink], store=BrokenStore())
    with capture_logs() as logs:
        dispatcher.submit(make_alert())
        dispatcher.submit(make_alert())
        assert dispatcher.flush(timeout_s=5)
    assert len(sink.alerts) == 1
    (failure,) = _events(logs, "alert_dedup_failed")
    assert "Redis unreachable" in failure["error"]
    assert failure["dedup_key"] == "exceeded:user-daily:user:alice:2026-01-05"


# --------------------------------------------------------------------------- routing


def test_log_sink_gets_every_kind_slack_only_enabled_ones(
    make_dispatcher: DispatcherFactory, make_alert: Callable[..., Alert]
) -> None:
    """Kinds outside enabled_kinds reach only the log sink; enabled kinds reach every sink."""
    slack_like = RecordingSink("slack")
    dispatcher = make_dispatcher([LogSink(), slack_like], enabled_kinds=("exceeded",))
    with capture_logs() as logs:
        dispatcher.submit(make_alert(kind="threshold", threshold=0.8, dedup_key="t"))
        dispatcher.submit(make_alert(dedup_key="e"))
        assert dispatcher.flush(timeout_s=5)
    assert [a.kind for a in slack_like.alerts] == ["exceeded"]
    logged = _events(logs, "alert")
    assert [(e["kind"], e["log_level"]) for e in logged] == [("threshold", "info"), ("exceeded", "warning")]
    assert logged[1]["spent_cost_micro_usd"] == 1_250_000


def test_build_dispatcher_from_config(
    fake_slack: FakeSlack, webhook_config: SlackConfig, make_alert: Callable[..., Alert]
) -> None:
    """build_dispatcher always logs, adds Slack when configured plus any extra sinks, and alerts only
    on the configured kinds."""
    extra = RecordingSink()
    bare = build_dispatcher(None, store=MemoryStore(), keys=KeyBuilder("guardian-test:"))
    assert [type(s) for s in bare.sinks] == [LogSink]
    bare.close()
    config = AlertsConfig(slack=webhook_config, on=("loop",))
    dispatcher = build_dispatcher(config, store=MemoryStore(), keys=KeyBuilder("guardian-test:"), extra_sinks=[extra])
    try:
        assert [type(s) for s in dispatcher.sinks] == [LogSink, SlackSink, RecordingSink]
        dispatcher.submit(make_alert(dedup_key="e"))
        dispatcher.submit(make_alert(kind="loop", dedup_key="l"))
        assert dispatcher.flush(timeout_s=5)
        assert [a.kind for a in extra.alerts] == ["loop"]
        assert _headers(fake_slack) == [":repeat: Loop detected: run-7f3a"]
    finally:
        dispatcher.close()


# --------------------------------------------------------------------------- retries and drops


def test_failing_sink_is_retried_with_backoff(
    make_dispatcher: DispatcherFactory, make_alert: Callable[..., Alert]
) -> None:
    """A sink that fails is logged and retried later; sinks that succeeded are not sent it again."""
    ok = RecordingSink()
    flaky = FlakySink(failures=2)
    dispatcher = make_dispatcher([ok, flaky])
    with capture_logs() as logs:
        dispatcher.submit(make_alert())
        assert dispatcher.flush(timeout_s=5)
    assert len(ok.alerts) == 1
    assert len(flaky.sent) == 1
    assert flaky.calls == 3
    failures = _events(logs, "alert_delivery_failed")
    assert [(f["sink"], f["attempt"]) for f in failures] == [("flaky", 1), ("flaky", 2)]
    assert _events(logs, "alert_dropped") == []


def test_undeliverable_alert_is_dropped_loudly(
    make_dispatcher: DispatcherFactory, make_alert: Callable[..., Alert]
) -> None:
    """After max_attempts failures the alert is logged as alert_dropped with its content and errors."""
    flaky = FlakySink(failures=100)
    dispatcher = make_dispatcher([flaky], max_attempts=3)
    with capture_logs() as logs:
        dispatcher.submit(make_alert())
        assert dispatcher.flush(timeout_s=5)
    assert flaky.calls == 3
    (dropped,) = _events(logs, "alert_dropped")
    assert dropped["drop_reason"] == "delivery_failed"
    assert dropped["sinks"] == ["flaky"]
    assert len(dropped["errors"]) == 3
    assert (dropped["budget"], dropped["user"], dropped["spent_cost_micro_usd"]) == (
        "user-daily",
        "alice",
        1_250_000,
    )
    assert dropped["reason"] == "budget 'user-daily' would pass its cost_usd limit"


def test_permanent_rejection_is_not_retried(
    make_dispatcher: DispatcherFactory, make_alert: Callable[..., Alert]
) -> None:
    """A non-retryable delivery error (revoked token, unknown channel) drops the alert at once, loudly."""
    flaky = FlakySink(failures=100, error=AlertDeliveryError("invalid_auth", retryable=False))
    dispatcher = make_dispatcher([flaky])
    with capture_logs() as logs:
        dispatcher.submit(make_alert())
        assert dispatcher.flush(timeout_s=5)
    assert flaky.calls == 1
    (dropped,) = _events(logs, "alert_dropped")
    assert dropped["drop_reason"] == "delivery_rejected"


def test_full_queue_drops_loudly_without_blocking(
    blocking_sink: BlockingSink, make_dispatcher: DispatcherFactory, make_alert: Callable[..., Alert]
) -> None:
    """With the worker busy and the queue full, submit returns at once and logs alert_dropped with the
    alert's content."""
    dispatcher = make_dispatcher([blocking_sink], queue_size=1)
    dispatcher.submit(make_alert(dedup_key="in-flight"))
    assert blocking_sink.entered.wait(5)
    dispatcher.submit(make_alert(dedup_key="queued"))
    with capture_logs() as logs:
        dispatcher.submit(make_alert(dedup_key="overflow"))
    (dropped,) = _events(logs, "alert_dropped")
    assert (dropped["drop_reason"], dropped["dedup_key"], dropped["budget"]) == (
        "queue_full",
        "overflow",
        "user-daily",
    )
    blocking_sink.release.set()
    assert dispatcher.flush(timeout_s=5)
    assert [a.dedup_key for a in blocking_sink.sent] == ["in-flight", "queued"]


# --------------------------------------------------------------------------- close


def test_close_flushes_pending_alerts(make_dispatcher: DispatcherFactory, make_alert: Callable[..., Alert]) -> None:
    """close() delivers everything already submitted before returning, and drops nothing."""
    sink = RecordingSink()
    dispatcher = make_dispatcher([sink])
    with capture_logs() as logs:
        for i in range(20):
            dispatcher.submit(make_alert(dedup_key=f"k{i}"))
        dispatcher.close(timeout_s=5)
    assert len(sink.alerts) == 20
    assert _events(logs, "alert_dropped") == []


def test_close_does_not_wait_out_retry_backoff(
    make_dispatcher: DispatcherFactory, make_alert: Callable[..., Alert]
) -> None:
    """A retry scheduled far in the future is attempted at once when closing."""
    flaky = FlakySink(failures=1)
    dispatcher = make_dispatcher([flaky], retry_base_s=3600, retry_max_s=3600)
    dispatcher.submit(make_alert())
    assert flaky.failed.wait(5)
    assert dispatcher.pending == 1
    dispatcher.close(timeout_s=5)
    assert len(flaky.sent) == 1


def test_close_with_slack_down_logs_every_undelivered_alert(
    fake_slack: FakeSlack,
    webhook_config: SlackConfig,
    make_dispatcher: DispatcherFactory,
    make_alert: Callable[..., Alert],
) -> None:
    """With Slack down, close() gives up within its bounds and logs alert_dropped with each alert's
    content."""
    fake_slack.go_down(500)
    dispatcher = make_dispatcher([SlackSink(webhook_config, max_retries=0)], max_attempts=2, retry_base_s=3600)
    with capture_logs() as logs:
        for budget in ("a", "b", "c"):
            dispatcher.submit(make_alert(dedup_key=budget, budget=budget))
        dispatcher.close(timeout_s=5)
    dropped = _events(logs, "alert_dropped")
    assert sorted(d["budget"] for d in dropped) == ["a", "b", "c"]
    assert {d["drop_reason"] for d in dropped} == {"delivery_failed"}
    assert all("HTTP 500" in d["errors"][-1] for d in dropped)
    assert fake_slack.delivered == []


def test_close_timeout_with_hanging_slack(
    fake_slack: FakeSlack,
    webhook_config: SlackConfig,
    make_dispatcher: DispatcherFactory,
    make_alert: Callable[..., Alert],
) -> None:
    """When Slack hangs past close()'s timeout, close returns and logs the in-flight and queued alerts
    as dropped, with their content."""
    held = threading.Event()
    fake_slack.answer(503, hold=held)
    dispatcher = make_dispatcher([SlackSink(webhook_config, max_retries=0)])
    dispatcher.submit(make_alert(dedup_key="a", budget="a"))
    assert fake_slack.wait_for_requests(1)
    dispatcher.submit(make_alert(dedup_key="b", budget="b"))
    with capture_logs() as logs:
        dispatcher.close(timeout_s=0.05)
    dropped = {d["budget"]: d["drop_reason"] for d in _events(logs, "alert_dropped")}
    assert dropped == {"a": "in_flight_at_close", "b": "undelivered_at_close"}
    with capture_logs() as late:  # let the worker finish before the next test
        held.set()
        assert dispatcher.flush(timeout_s=5)
    assert [e["event"] for e in late] == ["alert_delivery_failed"]
    assert fake_slack.delivered == []


def test_close_is_idempotent_and_later_submits_are_dropped_loudly(
    make_dispatcher: DispatcherFactory, make_alert: Callable[..., Alert]
) -> None:
    """A second close() is a no-op; an alert submitted after close is logged as dropped, not raised."""
    sink = RecordingSink()
    dispatcher = make_dispatcher([sink])
    dispatcher.close()
    with capture_logs() as logs:
        dispatcher.close()
        dispatcher.submit(make_alert())
    assert [(e["event"], e["drop_reason"]) for e in logs] == [("alert_dropped", "dispatcher_closed")]
    assert sink.alerts == []


def test_atexit_registration(
    monkeypatch: pytest.MonkeyPatch, make_dispatcher: DispatcherFactory, make_alert: Callable[..., Alert]
) -> None:
    """The dispatcher registers an exit hook when its worker starts (one that holds it weakly and closes it), and
    unregisters that hook on close."""
    calls: list[tuple[str, object]] = []

    class FakeAtexit:
        @staticmethod
        def register(func: Callable[[], None]) -> None:
            calls.append(("register", func))

        @staticmethod
        def unregister(func: Callable[[], None]) -> None:
            calls.append(("unregister", func))

    monkeypatch.setattr(dispatcher_module, "atexit", FakeAtexit)
    dispatcher = make_dispatcher([RecordingSink()])
    assert calls == []
    dispatcher.submit(make_alert())
    ((registered, hook),) = calls
    assert registered == "register"
    assert callable(hook)
    hook()  # what the interpreter runs at exit: it closes the dispatcher, which unregisters the hook
    assert calls == [("register", hook), ("unregister", hook)]
    dispatcher.submit(make_alert())  # closed: dropped and logged, never queued
    assert dispatcher.pending == 0


def test_recording_sink_waits_for_alerts(make_dispatcher: DispatcherFactory, make_alert: Callable[..., Alert]) -> None:
    """RecordingSink.wait_for lets a user's test wait for delivery without sleeping."""
    sink = RecordingSink()
    dispatcher = make_dispatcher([sink])
    dispatcher.submit(make_alert(dedup_key="1"))
    dispatcher.submit(make_alert(dedup_key="2"))
    assert sink.wait_for(2, timeout_s=5)
    assert [a.dedup_key for a in sink.alerts] == ["1", "2"]
    sink.clear()
    assert sink.alerts == []


def test_forked_child_gets_its_own_worker(make_dispatcher: DispatcherFactory, make_alert: Callable[..., Alert]) -> None:
    """After a fork (e.g. a pre-forking server), the child starts its own worker and delivers its
    alerts; it does not inherit the parent's pending ones."""
    sink = RecordingSink()
    blocked = BlockingSink()
    dispatcher = make_dispatcher([sink, blocked])
    dispatcher.submit(make_alert(dedup_key="parent"))
    assert blocked.entered.wait(5)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            blocked.release.set()
            dispatcher.submit(make_alert(dedup_key="child"))
            if dispatcher.flush(timeout_s=5) and [a.dedup_key for a in sink.alerts] == ["parent", "child"]:
                code = 0
        finally:
            os._exit(code)
    blocked.release.set()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert dispatcher.flush(timeout_s=5)
    assert [a.dedup_key for a in sink.alerts] == ["parent"]

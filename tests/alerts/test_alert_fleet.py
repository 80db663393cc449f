"""Fleet-wide dedup through Redis: many processes, one Slack message."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from multiprocessing.synchronize import Barrier
from typing import TYPE_CHECKING

import pytest
import redis

from guardian.alerts import Alert, AlertDispatcher, SlackConfig, SlackSink
from guardian.keys import KeyBuilder
from guardian.store.redis import RedisStore

if TYPE_CHECKING:
    from tests.alerts.conftest import DispatcherFactory, FakeSlack

pytestmark = pytest.mark.redis

PROCESSES = 4


def _alert() -> Alert:
    return Alert(
        kind="exceeded",
        dedup_key="exceeded:tenant-monthly:tenant:acme:2026-01",
        dedup_ttl_s=600.0,
        occurred_at=1_767_600_000.0,
        run_id=None,
        agent=None,
        user=None,
        tenant="acme",
        budget="tenant-monthly",
        scope="tenant",
        scope_key="acme",
        window="month:2026-01",
        threshold=None,
        spent={"cost_usd": 501_000_000},
        limit={"cost_usd": 500_000_000},
        reason="budget 'tenant-monthly' would pass its cost_usd limit",
    )


def submit_from_process(redis_url: str, prefix: str, webhook_url: str, start: Barrier) -> None:
    """One fleet member: its own RedisStore and dispatcher, submitting the shared alert."""
    store = RedisStore.from_url(redis_url)
    sink = SlackSink(SlackConfig.model_validate({"webhook_url": webhook_url}))
    dispatcher = AlertDispatcher([sink], store=store, keys=KeyBuilder(prefix), retry_base_s=0.05)
    try:
        start.wait(30)
        dispatcher.submit(_alert())
        if not dispatcher.flush(timeout_s=20):
            raise SystemExit(3)
    finally:
        dispatcher.close(timeout_s=1)
        store.close()


def test_processes_sharing_redis_send_one_message(fake_slack: FakeSlack, redis_url: str, key_prefix: str) -> None:
    """Four processes, each with its own RedisStore on the same Redis and prefix, submit the same
    alert at the same moment: Slack receives exactly one message."""
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(PROCESSES)
    processes = [
        context.Process(
            target=submit_from_process,
            args=(redis_url, key_prefix, fake_slack.webhook_url, start),
            daemon=True,
        )
        for _ in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
    assert [p.exitcode for p in processes] == [0] * PROCESSES
    assert len(fake_slack.delivered) == 1
    assert (
        fake_slack.delivered[0].body["blocks"][0]["text"]["text"] == ":rotating_light: Budget exceeded: tenant-monthly"
    )


def test_redis_dedup_mark_carries_the_ttl(
    redis_url: str, key_prefix: str, make_dispatcher: DispatcherFactory, make_alert: Callable[..., Alert]
) -> None:
    """The dedup mark in Redis expires with the alert's dedup_ttl_s (e.g. the end of the budget
    window); with no TTL it never expires."""
    store = RedisStore.from_url(redis_url)
    keys = KeyBuilder(key_prefix)
    try:
        dispatcher = make_dispatcher([], store=store, keys=keys)
        dispatcher.submit(make_alert(dedup_key="windowed", dedup_ttl_s=600.0))
        dispatcher.submit(make_alert(dedup_key="forever", dedup_ttl_s=None))
        assert dispatcher.flush(timeout_s=5)
        client = redis.Redis.from_url(redis_url)
        try:
            assert 590_000 < int(client.pttl(keys.mark("alert:windowed"))) <= 600_000
            assert int(client.pttl(keys.mark("alert:forever"))) == -1
        finally:
            client.close()
    finally:
        store.close()

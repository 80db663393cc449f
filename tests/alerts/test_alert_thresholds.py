"""Threshold and exceeded alerts: one per tenant's bucket and threshold, and none skipped (issue 7, item 8)."""

from __future__ import annotations

import multiprocessing
import threading
from typing import TYPE_CHECKING, Any

import pytest

from guardian import BudgetExceeded, Guardian, Policy
from guardian.alerts import RecordingSink
from guardian.store import MemoryStore, RedisStore
from guardian.testing import ScriptedChatModel

if TYPE_CHECKING:
    from tests.alerts.conftest import FakeSlack

PROCESSES = 4
THREADS = 4


def _policy(scope: str, limit: int, alert_at: list[float], webhook_url: str | None = None) -> Policy:
    data: dict[str, Any] = {
        "version": 1,
        "loops": [],
        "budgets": [
            {"name": "b", "scope": scope, "window": "day", "limits": {"llm_calls": limit}, "alert_at": alert_at}
        ],
    }
    if webhook_url is not None:
        data["alerts"] = {"slack": {"webhook_url": webhook_url}}
    return Policy.from_dict(data)


@pytest.mark.parametrize("store_kind", ["memory", pytest.param("redis", marks=pytest.mark.redis)])
def test_the_same_user_name_in_two_tenants_alerts_twice(store_kind: str, request: pytest.FixtureRequest) -> None:
    """alice@acme passing 50% of her daily budget must not silence alice@beta's own 50% alert."""
    sink = RecordingSink(all_kinds=True)
    if store_kind == "redis":
        store: Any = RedisStore.from_url(request.getfixturevalue("redis_url"))
        options: dict[str, Any] = {"key_prefix": request.getfixturevalue("key_prefix")}
    else:
        store, options = MemoryStore(), {}
    guard = Guardian(_policy("user", 2, [0.5]), store=store, alert_sinks=[sink], **options)
    model = ScriptedChatModel(replies=["x"], cycle=True, max_tokens=5)
    for tenant in ("acme", "beta"):
        model.invoke("q", config={"callbacks": [guard.callback(user="alice", tenant=tenant)]})
    guard.close()
    thresholds = [a for a in sink.alerts if a.kind == "threshold"]
    assert sorted((a.tenant, a.user, a.threshold) for a in thresholds) == [
        ("acme", "alice", 0.5),
        ("beta", "alice", 0.5),
    ]


def _spend_to_the_limit(redis_url: str, prefix: str, webhook_url: str, start: Any) -> None:
    """One fleet member: four threads call the model until the tenant's budget refuses them."""
    guard = Guardian(_policy("tenant", 40, [0.5, 0.8], webhook_url), store=redis_url, key_prefix=prefix)
    model = ScriptedChatModel(replies=["x"], cycle=True, max_tokens=5)
    handler = guard.callback(user="u", tenant="acme")
    start.wait(60)

    def work() -> None:
        try:
            for _ in range(100):
                model.invoke("q", config={"callbacks": [handler]})
        except BudgetExceeded:
            return

    threads = [threading.Thread(target=work) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    guard.close()


@pytest.mark.redis
def test_every_threshold_spending_passes_alerts_once_across_the_fleet(
    fake_slack: FakeSlack, redis_url: str, key_prefix: str
) -> None:
    """Four processes of four threads spend one tenant budget (thresholds 50% and 80%) to its limit: Slack gets
    the 50%, the 80% and the exceeded alert, each exactly once. The 80% used to be skipped when the commits that
    passed it were the last before every thread was refused."""
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(PROCESSES)
    processes = [
        context.Process(target=_spend_to_the_limit, args=(redis_url, key_prefix, fake_slack.webhook_url, start))
        for _ in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
    assert [p.exitcode for p in processes] == [0] * PROCESSES
    titles = sorted(r.body["blocks"][0]["text"]["text"] for r in fake_slack.delivered)
    assert len(titles) == 3, titles
    assert sum("exceeded" in t for t in titles) == 1
    assert sum("50%" in t for t in titles) == 1
    assert sum("80%" in t for t in titles) == 1

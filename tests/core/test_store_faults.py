"""A Redis outage mid-run: fail_closed halts clearly, fail_open lets calls through and loses no usage."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlparse

import pytest
from structlog.testing import capture_logs

from guardian import Guardian, Policy, StoreUnavailable
from guardian.errors import StoreError
from guardian.store import RedisStore
from guardian.testing import FakeClock, ScriptedChatModel

from ..tcp_proxy import TcpProxy

pytestmark = pytest.mark.redis


def policy(mode: str) -> Policy:
    return Policy.from_dict(
        {
            "version": 1,
            "settings": {"on_store_error": mode},
            "budgets": [{"name": "daily", "scope": "user", "window": "day", "limits": {"llm_calls": 100}}],
        }
    )


@pytest.fixture
def proxy(redis_url: str) -> Iterator[TcpProxy]:
    parsed = urlparse(redis_url)
    with TcpProxy(parsed.hostname or "127.0.0.1", parsed.port or 6379) as p:
        yield p


def test_fail_closed_halts_with_a_clear_store_error(proxy: TcpProxy, key_prefix: str, clock: FakeClock) -> None:
    """With Redis gone and fail_closed, the call is refused by StoreUnavailable caused by a StoreError."""
    guard = Guardian(policy("fail_closed"), store=RedisStore.from_url(proxy.url), key_prefix=key_prefix, clock=clock)
    model = ScriptedChatModel(replies=["x"], cycle=True, max_tokens=5)
    model.invoke("q", config={"callbacks": [guard.callback(user="u")]})
    proxy.down()
    with capture_logs() as logs, pytest.raises(StoreUnavailable) as caught:
        model.invoke("q", config={"callbacks": [guard.callback(user="u")]})
    assert isinstance(caught.value.__cause__, StoreError)
    assert "fail_closed" in str(caught.value)
    assert model.calls == 1
    (event,) = [e for e in logs if e["event"] == "store_error"]
    assert event["mode"] == "fail_closed"
    assert event["op"] == "reserve"
    proxy.up()
    guard.close()


def test_fail_open_passes_logs_once_and_counts_when_redis_returns(
    proxy: TcpProxy, key_prefix: str, clock: FakeClock
) -> None:
    """fail_open: calls pass during the outage, store_error is logged once, and their usage lands afterwards."""
    store = RedisStore.from_url(proxy.url, flush_interval_s=3600)  # flushed by the next reservation, not a timer
    guard = Guardian(policy("fail_open"), store=store, key_prefix=key_prefix, clock=clock)
    model = ScriptedChatModel(replies=["x"], cycle=True, max_tokens=5)
    handler = guard.callback(user="u")
    model.invoke("q", config={"callbacks": [handler]})
    proxy.down()
    with capture_logs() as logs:
        for _ in range(5):
            clock.advance(2)  # past the skip interval, so every call tries Redis again
            model.invoke("q", config={"callbacks": [handler]})
    assert model.calls == 6
    assert [e["event"] for e in logs].count("store_error") == 1
    # The run before the outage wrote its usage as it ended. Queued: five deferred commits, and a release for
    # each reservation that failed mid-outage (its script may have run and left a hold).
    assert store.pending == 10
    proxy.up()
    clock.advance(2)
    with capture_logs() as logs:
        model.invoke("q", config={"callbacks": [handler]})
    assert "store_recovered" in [e["event"] for e in logs]
    (row,) = guard.status()
    assert row.spent.llm_calls == 7
    guard.close()


def test_an_unreachable_store_never_leaks_a_raw_redis_error(key_prefix: str) -> None:
    """Every Redis failure surfaces as a StoreError naming the operation."""
    store = RedisStore.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    with pytest.raises(StoreError, match="redis read failed"):
        store.read(["k"], 0.0)
    store.close()


def test_fail_open_counts_tool_calls_made_during_the_outage(proxy: TcpProxy, key_prefix: str, clock: FakeClock) -> None:
    """Tool calls that passed uncounted during an outage are counted once Redis is back."""
    from langchain_core.messages import HumanMessage
    from langchain_core.tools import tool

    from guardian.testing import react_graph, tool_call

    @tool
    def page(n: int) -> str:
        """Read a page."""
        return f"page {n}"

    store = RedisStore.from_url(proxy.url, flush_interval_s=3600)
    pol = Policy.from_dict(
        {
            "version": 1,
            "loops": [],
            "settings": {"on_store_error": "fail_open"},
            "budgets": [{"name": "daily", "scope": "user", "window": "day", "limits": {"tool_calls": 100}}],
        }
    )
    guard = Guardian(pol, store=store, key_prefix=key_prefix, clock=clock)
    replies: list[object] = [tool_call("page", {"n": i}) for i in range(3)] + ["done"]
    model = ScriptedChatModel(replies=replies, max_tokens=5)
    proxy.down()
    react_graph(model, [page]).invoke(
        {"messages": [HumanMessage("go")]}, config={"callbacks": [guard.callback(user="u")]}
    )
    proxy.up()
    clock.advance(2)
    guard.flush()
    (row,) = guard.status()
    assert (row.spent.tool_calls, row.spent.llm_calls) == (3, 4)
    guard.close()

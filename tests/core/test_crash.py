"""A crash loop never serves more calls than the budget (issue 7, item 4).

Worker processes each make one model call through Guardian on Redis and are killed, with SIGTERM (what Docker and
Kubernetes send) or SIGKILL, right after their call returns, or while the provider call is still running. A run's
usage is written before its invoke returns, and a hold whose process died is charged when it expires: however
the workers die, the calls the provider served never exceed the budget, and the budget ends up charged for every
one of them.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from multiprocessing.connection import Connection
from typing import Any

import pytest

from guardian import BudgetExceeded, Guardian, Policy
from guardian.testing import ScriptedChatModel

pytestmark = pytest.mark.redis

BUDGET = 4
WORKERS = 7
HOLD_TTL_S = 30.0
POLICY: dict[str, Any] = {
    "version": 1,
    "loops": [],
    "settings": {"reservation_ttl_s": HOLD_TTL_S},
    "budgets": [{"name": "daily", "scope": "user", "window": "day", "limits": {"llm_calls": BUDGET}}],
}


def _worker(redis_url: str, prefix: str, clock_offset_s: float, hang_in_call: bool, report: Connection) -> None:
    """One short-lived agent process: one call, then it waits to be killed. It reports 'served' once the provider
    was reached (inside the call when ``hang_in_call``), or 'refused'."""

    def clock() -> float:
        return time.time() + clock_offset_s  # time moves on between workers without the test sleeping

    guard = Guardian(Policy.from_dict(POLICY), store=redis_url, key_prefix=prefix, clock=clock, alert_sinks=[])

    def provider(_messages: Any) -> str:
        report.send("served")
        if hang_in_call:
            time.sleep(3600)  # killed mid-call: no end, no error, no commit
        return "ok"

    model = ScriptedChatModel(replies=[provider], max_tokens=5)
    try:
        model.invoke("q", config={"callbacks": [guard.callback(user="u")]})
    except BudgetExceeded:
        report.send("refused")
    report.send("returned")
    time.sleep(3600)  # killed right after the call


@pytest.mark.parametrize(
    ("sig", "hang_in_call"),
    [(signal.SIGTERM, False), (signal.SIGKILL, False), (signal.SIGKILL, True), (signal.SIGTERM, True)],
    ids=["sigterm-after-call", "sigkill-after-call", "sigkill-mid-call", "sigterm-mid-call"],
)
def test_a_crash_loop_never_serves_more_than_the_budget(
    redis_url: str, key_prefix: str, sig: signal.Signals, hang_in_call: bool
) -> None:
    """Seven one-call worker processes on a four-call budget, each killed as soon as its call returned (or while
    it runs): four calls are served, three refused, and the budget is charged four calls."""
    context = multiprocessing.get_context("fork")
    served = refused = 0
    offset = 0.0
    for _ in range(WORKERS):
        receive, send = context.Pipe(duplex=False)
        process = context.Process(target=_worker, args=(redis_url, key_prefix, offset, hang_in_call, send))
        process.start()
        send.close()
        first = receive.recv() if receive.poll(60) else "timeout"
        if first == "served" and not hang_in_call:
            assert receive.poll(60)
            assert receive.recv() == "returned"
        assert first in ("served", "refused"), first
        served += first == "served"
        refused += first == "refused"
        assert process.pid is not None
        os.kill(process.pid, sig)
        process.join(30)
        assert process.exitcode == -sig
        receive.close()
        if hang_in_call:
            offset += HOLD_TTL_S + 1  # the dead worker's hold expires before the next one starts
    assert (served, refused) == (BUDGET, WORKERS - BUDGET)
    reader = Guardian(
        Policy.from_dict(POLICY), store=redis_url, key_prefix=key_prefix, clock=lambda: time.time() + offset
    )
    (row,) = reader.status()
    reader.close()
    assert (row.spent.llm_calls, row.reserved.llm_calls) == (BUDGET, 0)

"""`guardian metrics`: the fleet's budgets as Prometheus gauges, scraped over HTTP from a real server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.request
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from guardian import Guardian, Policy
from guardian.cli import app
from guardian.prometheus import registry_for, serve
from guardian.testing import ScriptedChatModel

POLICY = Policy.from_dict(
    {
        "version": 1,
        "budgets": [
            {"name": "daily", "scope": "user", "window": "day", "limits": {"cost_usd": 1, "llm_calls": 10}},
            {"name": "cap", "scope": "run", "limits": {"llm_calls": 5}},
        ],
    }
)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def spend(guard: Guardian, user: str, calls: int) -> None:
    handler = guard.callback(agent="a", user=user, tenant="acme")
    for _ in range(calls):
        ScriptedChatModel(replies=["ok"]).invoke("hi", config={"callbacks": [handler]})
    guard.flush()


@pytest.fixture
def fleet(redis_url: str, key_prefix: str) -> Any:
    guard = Guardian(POLICY, store=redis_url, key_prefix=key_prefix)
    spend(guard, "alice", 3)
    spend(guard, "bob", 1)
    guard.kill(user="mallory")
    yield guard
    guard.close()


def test_the_gauges_sum_users_into_bounded_series_that_match_the_ledger(fleet: Guardian) -> None:
    got = samples(generate_latest(registry_for(fleet)).decode())
    (window,) = {r.window for r in fleet.status(budget="daily")}
    daily = (("budget", "daily"), ("scope", "user"), ("tenant", "acme"), ("window", window))
    ledger = {r.scope_key: r.spent for r in fleet.status(budget="daily")}
    assert got[("guardian_budget_spent_usd", daily)] == pytest.approx(sum(s.cost_usd for s in ledger.values()) / 1e6)
    assert got[("guardian_budget_spent_calls", tuple(sorted((*daily, ("kind", "llm")))))] == 4
    assert got[("guardian_budget_buckets", daily)] == 2
    assert got[("guardian_budget_used_ratio", daily)] == pytest.approx(0.3)  # alice: 3 of 10 calls
    assert got[("guardian_kill_flags", (("target", "user"),))] == 1
    assert got[("guardian_up", ())] == 1
    assert not any("alice" in str(labels) for _, labels in got)  # users are summed, never labels


def test_an_unreachable_store_reports_down_not_zero() -> None:
    guard = Guardian(POLICY, store="redis://127.0.0.1:1/0")
    try:
        got = samples(generate_latest(registry_for(guard)).decode())
    finally:
        guard.close()
    assert got == {("guardian_up", ()): 0.0}


def test_a_scrape_over_http(fleet: Guardian) -> None:
    server = serve(fleet, 0)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/metrics", timeout=10) as response:
            body = response.read().decode()
    finally:
        server.shutdown()
    assert samples(body)[("guardian_up", ())] == 1


def test_the_cli_serves_until_stopped(redis_url: str, key_prefix: str, fleet: Guardian) -> None:
    command = [sys.executable, "-m", "guardian.cli", "metrics", "--port", "0", "--store", redis_url]
    process = subprocess.Popen(
        [*command, "--prefix", key_prefix], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "serving the budgets on http://127.0.0.1:" in line, process.stderr.read() if process.stderr else ""
        url = line.split(" on ")[1].split(" ")[0]
        with urllib.request.urlopen(url, timeout=10) as response:
            assert samples(response.read().decode())[("guardian_up", ())] == 1
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_cli_metrics_mistakes_are_sentences(redis_url: str) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        port = taken.getsockname()[1]
        busy = CliRunner().invoke(app, ["metrics", "--port", str(port), "--store", redis_url])
    finally:
        taken.close()
    assert busy.exit_code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in busy.output
    bad = CliRunner().invoke(app, ["metrics", "--port", "70000", "--store", redis_url])
    assert bad.exit_code == 2
    assert "--port must be between 0 and 65535" in bad.output
    embedded = CliRunner().invoke(app, ["metrics", "--port", "0", "--store", "memory://"])
    assert embedded.exit_code == 2

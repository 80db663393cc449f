"""The guardian command line: validate, status, kill, demo."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from typer.testing import CliRunner, Result

from guardian import Guardian, Policy, RunKilled
from guardian.cli import app
from guardian.keys import KillFlag
from guardian.testing import ScriptedChatModel

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]


def test_validate_prints_a_summary_for_a_valid_policy() -> None:
    """A valid policy exits 0 with its budgets listed."""
    result = runner.invoke(app, ["validate", str(ROOT / "policies")])
    assert result.exit_code == 0, result.output
    assert "valid" in result.output
    assert "user-daily" in result.output


def test_validate_lists_every_problem_and_fails(tmp_path: Path) -> None:
    """A broken policy exits 1 and prints each problem with file:line and field."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nbudgets:\n  - name: x\n    scope: moon\n    limits: {llm_calls: 1}\n")
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}:4: budgets[0].scope:" in result.output


def test_validate_without_the_environment_for_ci(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """validate --no-env: a policy whose Slack webhook comes from an unset variable is valid, and says which
    field was not checked; a real mistake still fails; without --no-env the unset variable is an error."""
    monkeypatch.delenv("SLACK_WEBHOOK", raising=False)
    policy = tmp_path / "p.yaml"
    policy.write_text("version: 1\nalerts:\n  slack:\n    webhook_url: ${SLACK_WEBHOOK}\n")
    ok = runner.invoke(app, ["validate", "--no-env", str(policy)])
    assert ok.exit_code == 0, ok.output
    assert f"not checked: {policy}:4 alerts.slack.webhook_url needs ${{SLACK_WEBHOOK}}" in ok.output
    assert runner.invoke(app, ["validate", str(policy)]).exit_code == 1
    policy.write_text("version: 1\nalerts:\n  slak: {}\n")
    bad = runner.invoke(app, ["validate", "--no-env", str(policy)])
    assert bad.exit_code == 1
    assert "alerts.slak: unknown field (did you mean 'slack'?)" in bad.output


@pytest.mark.redis
def test_status_and_kill_work_against_the_fleet_store(redis_url: str, key_prefix: str) -> None:
    """status reads live spend from Redis; kill sets a flag an agent in another process would see."""
    policy = Policy.from_dict(
        {
            "version": 1,
            "budgets": [{"name": "daily", "scope": "user", "window": "day", "limits": {"cost_usd": 1}}],
        }
    )
    guard = Guardian(policy, store=redis_url, key_prefix=key_prefix)
    model = ScriptedChatModel(replies=["hello"], cycle=True, max_tokens=10)
    model.invoke("q", config={"callbacks": [guard.callback(user="alice", tenant="acme")]})
    guard.flush()
    common = ["--store", redis_url, "--prefix", key_prefix]
    status = runner.invoke(app, ["status", *common, "--budget", "daily", "--json"])
    assert status.exit_code == 0, status.output
    (row,) = json.loads(status.stdout)["buckets"]  # warnings go to stderr
    assert (row["budget"], row["tenant"], row["scope_key"]) == ("daily", "acme", "alice")
    assert row["spent"]["llm_calls"] == 1
    assert row["spent"]["cost_micro_usd"] > 0  # micro-dollars, named so
    # No -p: the limits come from the store, where the fleet's reservations keep them with the buckets.
    assert row["limits"] == {"cost_micro_usd": 1_000_000}
    assert row["used"] == row["spent"]["cost_micro_usd"] / 1_000_000
    table = runner.invoke(app, ["status", *common])
    assert table.exit_code == 0
    assert "Guardian spend" in table.output
    killed = runner.invoke(app, ["kill", "--user", "alice", *common])
    assert killed.exit_code == 0, killed.output
    assert KillFlag("user", "alice") in guard.kills()
    assert "killed user 'alice' in every tenant" in runner.invoke(app, ["status", *common]).output
    assert runner.invoke(app, ["kill", "--user", "alice", "--clear", *common]).exit_code == 0
    assert guard.kills() == []
    assert runner.invoke(app, ["kill", *common]).exit_code == 2
    guard.close()


@pytest.mark.redis
def test_status_hides_run_buckets_filters_sorts_and_says_when_windows_reset(
    redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    """Run buckets are hidden unless --runs; --scope/--user filter; the most used bucket comes first; the day
    window says when it resets; --json is one typed object; an unknown --budget is an error."""
    import yaml

    budgets = [
        {"name": "daily", "scope": "user", "window": "day", "limits": {"llm_calls": 4}},
        {"name": "per-run", "scope": "run", "limits": {"llm_calls": 100}},
    ]
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "budgets": budgets}))
    guard = Guardian(Policy.from_yaml(path), store=redis_url, key_prefix=key_prefix)
    model = ScriptedChatModel(replies=["hi"], cycle=True, max_tokens=10)
    for user, calls in (("alice", 1), ("bob", 3)):
        for _ in range(calls):
            model.invoke("q", config={"callbacks": [guard.callback(user=user)]})
    guard.close()
    common = ["--store", redis_url, "--prefix", key_prefix, "-p", str(path)]
    table = runner.invoke(app, ["status", *common])
    assert table.exit_code == 0, table.output
    assert "4 run bucket(s) hidden: --runs shows them" in table.output
    assert table.output.index("bob") < table.output.index("alice")  # 75% used before 25%
    assert "in " in table.output  # the day window's reset
    document = json.loads(runner.invoke(app, ["status", *common, "--json", "--runs"]).stdout)
    assert {b["scope"] for b in document["buckets"]} == {"user", "run"}
    assert all(b["resets_at"] is not None for b in document["buckets"] if b["scope"] == "user")
    assert set(document) == {"buckets", "hidden_run_buckets", "kills", "loops", "would_halts", "grants"}
    only = json.loads(runner.invoke(app, ["status", *common, "--json", "--user", "alice"]).stdout)["buckets"]
    assert [(b["scope"], b["scope_key"]) for b in only] == [("user", "alice")]
    unknown = runner.invoke(app, ["status", *common, "--budget", "dialy"])
    assert unknown.exit_code == 1
    assert "no budget named 'dialy'" in unknown.output


def test_demo_stops_the_runaway_agent_and_alerts() -> None:
    """`guardian demo` on the embedded store: threshold alerts and a BudgetExceeded halt, then a loop halted."""
    result = runner.invoke(app, ["demo"])
    assert result.exit_code == 0, result.output
    assert "ALERT threshold" in result.output
    assert "ALERT exceeded" in result.output
    assert "stopped by Guardian: BudgetExceeded" in result.output
    assert "stopped by Guardian: LoopDetected" in result.output
    assert "ALERT loop: agent analyst" in result.output
    assert "the refused call was never sent" in result.output
    # Act 3: the same research as a finite task, routed to the cheaper model, finishes under the run's cap.
    assert "finished: Report written" in result.output
    assert "routed to gpt-4o-mini, saving $" in result.output
    assert "routed  routing saved" in result.output  # act 4's report counts what routing saved


def test_demo_with_too_few_steps_says_so_without_a_traceback() -> None:
    """--steps below what Guardian needs: each act ends at LangGraph's step cap with a sentence, exit 1."""
    result = runner.invoke(app, ["demo", "--steps", "3"])
    assert result.exit_code == 1
    assert "reached --steps (3) before Guardian stopped it" in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


class _SlackCapture(BaseHTTPRequestHandler):
    """Stands in for a Slack incoming webhook on 127.0.0.1 and keeps every payload."""

    payloads: ClassVar[list[dict[str, Any]]] = []

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        type(self).payloads.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"ok")


def test_demo_delivers_its_alerts_to_slack(monkeypatch: pytest.MonkeyPatch) -> None:
    """With SLACK_WEBHOOK_URL set, the demo's threshold and exceeded alerts arrive at the webhook as Block Kit."""
    _SlackCapture.payloads = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlackCapture)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("SLACK_WEBHOOK_URL", f"http://127.0.0.1:{server.server_address[1]}/services/T0/B0/demo")
    try:
        result = runner.invoke(app, ["demo"])
    finally:
        server.shutdown()
        server.server_close()
    assert result.exit_code == 0, result.output
    headers = [p["blocks"][0]["text"]["text"] for p in _SlackCapture.payloads]
    assert any("Budget exceeded: run-cap" in h for h in headers), headers
    # Act 1: 50%, 80% and exceeded, once each; act 3's routed run passes 50% and 80% of its own cap, and finishes.
    assert sum("run-cap" in h for h in headers) == 5
    assert sum("Budget exceeded: run-cap" in h for h in headers) == 1


def test_alert_test_sends_one_message_to_the_configured_webhook(tmp_path: Path) -> None:
    """`guardian alert-test -p POLICY` posts one test message to the policy's Slack webhook and says so."""
    _SlackCapture.payloads = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlackCapture)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    policy = tmp_path / "alerts.yaml"
    url = f"http://127.0.0.1:{server.server_address[1]}/services/T0/B0/secret"
    policy.write_text(f"version: 1\nalerts:\n  slack:\n    webhook_url: {url}\n")
    try:
        result = runner.invoke(app, ["alert-test", "-p", str(policy)])
        missing = runner.invoke(app, ["alert-test", "-p", str(ROOT / "policies" / "example.yaml")])
    finally:
        server.shutdown()
        server.server_close()
    assert result.exit_code == 0, result.output
    assert len(_SlackCapture.payloads) == 1
    assert "secret" not in result.output
    assert missing.exit_code == 2


def _refused(result: Result, code: int = 2) -> str:
    """The command failed with ``code`` and one error line, no traceback; returns that output."""
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # not an uncaught error
    assert "Traceback" not in result.output
    assert "error" in result.output
    return result.output


@pytest.mark.redis
@pytest.mark.parametrize(
    ("prefix", "why"),
    [("{", "'{' or '}'"), ("guardian}:", "'{' or '}'"), ("*", "glob"), ("a?:", "glob"), ("[ab]:", "glob")],
)
def test_status_kill_and_doctor_refuse_a_prefix_with_braces_or_glob_characters(
    redis_url: str, prefix: str, why: str
) -> None:
    """--prefix with a brace (would change the hash slot) or a glob character (status would scan other
    prefixes' keys) is a usage error: exit 2 and one sentence, never a traceback."""
    for command in (["status"], ["kill", "--user", "alice"], ["doctor"]):
        output = _refused(runner.invoke(app, [*command, "--store", redis_url, "--prefix", prefix]))
        assert why in output, output


@pytest.mark.redis
@pytest.mark.parametrize("ttl", ["inf", "nan", "-5", "0", "31622401"])
def test_kill_refuses_a_ttl_that_is_not_a_positive_finite_time_up_to_a_year(
    redis_url: str, key_prefix: str, ttl: str
) -> None:
    """--ttl must be finite, above 0 and at most a year; anything else exits 2 and sets no flag."""
    common = ["--store", redis_url, "--prefix", key_prefix]
    output = _refused(runner.invoke(app, ["kill", "--user", "alice", "--ttl", ttl, *common]))
    assert "--ttl" in output
    with Guardian(Policy(), store=redis_url, key_prefix=key_prefix) as guard:
        assert guard.kills() == []


@pytest.mark.redis
def test_kill_with_a_tenant_halts_that_tenant_only_and_says_so(redis_url: str, key_prefix: str) -> None:
    """`kill --user alice --tenant acme` halts alice in acme, not in beta, and says so; without --tenant the
    CLI says the kill is fleet-wide; status lists each flag with its tenant; --clear lifts the flag it set."""
    common = ["--store", redis_url, "--prefix", key_prefix]
    guard = Guardian(Policy(), store=redis_url, key_prefix=key_prefix)
    model = ScriptedChatModel(replies=["x"], cycle=True, max_tokens=5)
    scoped = runner.invoke(app, ["kill", "--user", "alice", "--tenant", "acme", *common])
    assert scoped.exit_code == 0, scoped.output
    assert "killed user 'alice' in tenant 'acme'" in scoped.stdout
    with pytest.raises(RunKilled):
        model.invoke("q", config={"callbacks": [guard.callback(user="alice", tenant="acme")]})
    model.invoke("q", config={"callbacks": [guard.callback(user="alice", tenant="beta")]})
    fleet = runner.invoke(app, ["kill", "--agent", "bot", *common])
    assert "killed agent 'bot' in every tenant" in fleet.stdout
    status = runner.invoke(app, ["status", *common]).stdout
    assert "killed user 'alice' in tenant 'acme'" in status
    assert "killed agent 'bot' in every tenant" in status
    beta = json.loads(runner.invoke(app, ["status", *common, "--tenant", "beta", "--json"]).stdout)["kills"]
    assert beta == [{"target": "agent", "value": "bot", "tenant": None}]  # acme's kill does not halt beta
    assert runner.invoke(app, ["kill", "--user", "alice", "--clear", *common]).exit_code == 0
    assert KillFlag("user", "alice", "acme") in guard.kills()  # the fleet-wide flag was not the one set
    cleared = runner.invoke(app, ["kill", "--user", "alice", "--tenant", "acme", "--clear", *common])
    assert "cleared the kill flag on user 'alice' in tenant 'acme'" in cleared.stdout
    assert guard.kills() == [KillFlag("agent", "bot")]
    model.invoke("q", config={"callbacks": [guard.callback(user="alice", tenant="acme")]})
    _refused(runner.invoke(app, ["kill", "--run", "r-1", "--tenant", "acme", *common]))
    guard.close()


EMBEDDED = [[], ["--store", "memory://"], ["--store", "memory"], ["--store", ""]]


@pytest.mark.parametrize("store", EMBEDDED)
@pytest.mark.parametrize("command", [["kill", "--user", "alice"], ["status"]])
def test_kill_and_status_refuse_the_embedded_store(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, store: list[str], command: list[str]
) -> None:
    """With no fleet store (no --store, no $GUARDIAN_STORE_URL, or memory://), kill and status would act on the
    CLI's own empty in-memory store: they exit 2 explaining why and how to point them at Redis, and page no one."""
    monkeypatch.delenv("GUARDIAN_STORE_URL", raising=False)
    _SlackCapture.payloads = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlackCapture)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    policy = tmp_path / "alerts.yaml"
    url = f"http://127.0.0.1:{server.server_address[1]}/services/T0/B0/secret"
    policy.write_text(f"version: 1\nalerts:\n  slack:\n    webhook_url: {url}\n")
    try:
        output = _refused(runner.invoke(app, [*command, *store, "--policy", str(policy)]))
    finally:
        server.shutdown()
        server.server_close()
    assert "embedded store lives inside each agent process" in output
    assert "--store" in output
    assert "GUARDIAN_STORE_URL" in output
    assert _SlackCapture.payloads == []


def test_kill_refuses_an_embedded_store_named_by_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """GUARDIAN_STORE_URL=memory:// is refused the same way: the CLI cannot reach an agent's memory."""
    monkeypatch.setenv("GUARDIAN_STORE_URL", "memory://")
    output = _refused(runner.invoke(app, ["kill", "--user", "alice"]))
    assert "embedded store" in output


@pytest.mark.parametrize("command", ["validate", "status", "kill", "grant", "doctor", "demo", "alert-test"])
def test_help_shows_flags_as_flags(command: str) -> None:
    """A boolean flag reads as a flag (no "<bool>" to fill in); options that take a value name it."""
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0
    assert "<bool>" not in result.output
    assert "<str>" not in result.output

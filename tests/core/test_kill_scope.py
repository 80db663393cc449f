"""Kill flags: fleet-wide, or scoped to one tenant, built and parsed in guardian/keys.py."""

from __future__ import annotations

from typing import Any

import pytest

from guardian import RunKilled
from guardian.alerts import RecordingSink, format_blocks
from guardian.keys import KeyBuilder, KillFlag
from guardian.testing import ScriptedChatModel

from .conftest import GuardianFactory

CAP = {"budgets": [{"name": "cap", "scope": "run", "window": "run", "limits": {"llm_calls": 100}}]}


def test_a_tenant_scoped_kill_lives_in_the_tenant_slot_and_parses_back() -> None:
    """An agent or user kill with a tenant is keyed in that tenant's hash slot, a fleet-wide one in {g};
    both parse back to (target, value, tenant), odd names included."""
    keys = KeyBuilder("p:")
    assert keys.kill("user", "alice") == "p:{g}:k:user:alice"
    assert keys.kill("user", "alice", tenant="acme") == "p:{t.acme}:k:user:alice"
    assert keys.kill("tenant", "acme") == "p:{t.acme}:k:tenant:acme"
    for target, value, tenant in [
        ("user", "alice", None),
        ("agent", "a:b}{c", "x y:{z}"),
        ("user", "alice", "acme"),
        ("run", "r-1", None),
        ("tenant", "acme", "acme"),
    ]:
        key = keys.kill(target, value, tenant=tenant)  # type: ignore[arg-type]
        assert keys.parse_kill(key) == KillFlag(target, value, tenant)  # type: ignore[arg-type]


def test_a_run_kill_takes_no_tenant() -> None:
    """A run id is unique fleet-wide: a tenant next to it is refused rather than ignored."""
    with pytest.raises(ValueError, match="run"):
        KeyBuilder().kill("run", "r-1", tenant="acme")


@pytest.mark.parametrize("target", ["user", "agent"])
def test_a_kill_with_a_tenant_halts_only_that_tenant(make_guardian: GuardianFactory, target: str) -> None:
    """kill(user="alice", tenant="acme"): alice's run in acme is halted with RunKilled before the provider is
    called; alice in beta goes on. Clearing with the same tenant lifts exactly that flag."""
    guard = make_guardian(CAP)
    model = ScriptedChatModel(replies=["x"], cycle=True, max_tokens=5)
    alice: dict[str, Any] = {target: "alice"}
    guard.kill(**alice, tenant="acme")
    assert guard.kills() == [KillFlag(target, "alice", "acme")]  # type: ignore[arg-type]
    with pytest.raises(RunKilled, match="alice"):
        model.invoke("q", config={"callbacks": [guard.callback(**alice, tenant="acme")]})
    assert model.calls == 0
    model.invoke("q", config={"callbacks": [guard.callback(**alice, tenant="beta")]})
    assert model.calls == 1
    guard.kill(**alice, clear=True)  # the fleet-wide flag: not the one that was set
    with pytest.raises(RunKilled):
        model.invoke("q", config={"callbacks": [guard.callback(**alice, tenant="acme")]})
    guard.kill(**alice, tenant="acme", clear=True)
    model.invoke("q", config={"callbacks": [guard.callback(**alice, tenant="acme")]})
    assert model.calls == 2
    assert guard.kills() == []


def test_a_kill_without_a_tenant_halts_every_tenant(make_guardian: GuardianFactory) -> None:
    """kill(user="alice") with no tenant is fleet-wide: alice is halted in acme and in beta, bob is not."""
    guard = make_guardian(CAP)
    model = ScriptedChatModel(replies=["x"], cycle=True, max_tokens=5)
    guard.kill(user="alice")
    assert guard.kills() == [KillFlag("user", "alice", None)]
    for tenant in ("acme", "beta"):
        with pytest.raises(RunKilled):
            model.invoke("q", config={"callbacks": [guard.callback(user="alice", tenant=tenant)]})
    model.invoke("q", config={"callbacks": [guard.callback(user="bob", tenant="acme")]})
    assert model.calls == 1


def test_a_run_kill_with_a_tenant_is_refused(make_guardian: GuardianFactory) -> None:
    """kill(run=..., tenant=...) raises ValueError instead of ignoring the tenant."""
    guard = make_guardian(CAP)
    with pytest.raises(ValueError, match="run"):
        guard.kill(run="r-1", tenant="acme")
    assert guard.kills() == []


def test_key_prefix_refuses_glob_characters() -> None:
    """A prefix with * ? [ ] or a backslash would make a status scan match other prefixes: refused."""
    for prefix in ("*", "a?", "[x]:", "a\\b"):
        with pytest.raises(ValueError, match="glob"):
            KeyBuilder(prefix)


def test_the_killed_alert_names_the_tenant_and_its_undo_clears_that_flag(make_guardian: GuardianFactory) -> None:
    """An operator kill alerts with the kill's tenant (None when fleet-wide), and the Slack message's Undo
    command carries --tenant exactly when the kill had one, so it clears the flag that was set."""
    sink = RecordingSink(all_kinds=True)
    guard = make_guardian(CAP, alert_sinks=[sink])
    guard.kill(user="alice", tenant="acme")
    guard.kill(user="bob")
    assert guard.alerts.flush(5.0)
    scoped, fleet = sink.alerts
    assert (scoped.user, scoped.tenant, fleet.user, fleet.tenant) == ("alice", "acme", "bob", None)
    assert "user 'alice' in tenant 'acme'" in scoped.reason
    assert "user 'bob' in every tenant" in fleet.reason
    undo = [format_blocks(a)[-1]["elements"][0]["text"] for a in (scoped, fleet)]
    assert undo == [
        "Undo: `guardian kill --user alice --tenant acme --clear`",
        "Undo: `guardian kill --user bob --clear`",
    ]


def test_a_runkilled_halt_says_how_to_clear_the_flag_that_stopped_it(make_guardian: GuardianFactory) -> None:
    """The halt's own hint clears exactly the flag that stopped the run: with --tenant for a tenant-scoped kill,
    without for a fleet-wide one, shell-quoted; and the halt names the tenant."""
    guard = make_guardian(CAP)
    model = ScriptedChatModel(replies=["x"], cycle=True, max_tokens=5)
    guard.kill(user="alice smith", tenant="acme")
    guard.kill(user="bob")
    with pytest.raises(RunKilled) as scoped:
        model.invoke("q", config={"callbacks": [guard.callback(user="alice smith", tenant="acme")]})
    with pytest.raises(RunKilled) as fleet:
        model.invoke("q", config={"callbacks": [guard.callback(user="bob", tenant="acme")]})
    assert scoped.value.tenant == "acme"
    assert "`guardian kill --user 'alice smith' --tenant acme --clear`" in str(scoped.value)
    assert fleet.value.tenant is None
    assert "`guardian kill --user bob --clear`" in str(fleet.value)

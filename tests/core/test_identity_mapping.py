"""The policy's identity: section: names from LangChain v1's runtime context or config metadata; required names."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import HumanMessage
from structlog.testing import capture_logs

from guardian import BudgetExceeded, IdentityError, PolicyError
from guardian.policy import Policy
from guardian.testing import ScriptedChatModel

from .conftest import GuardianFactory


@dataclass
class Ctx:
    user_id: str | None = None
    org_id: str | None = None


def policy(identity: dict[str, Any], calls: int = 2) -> dict[str, Any]:
    budget = {"name": "daily", "scope": "user", "window": "day", "limits": {"llm_calls": calls}}
    return {"identity": identity, "budgets": [budget]}


def started(logs: list[Any]) -> list[tuple[str, str]]:
    return [(e["user"], e["tenant"]) for e in logs if e["event"] == "run_started"]


def test_the_middleware_reads_names_from_the_runtime_context(make_guardian: GuardianFactory) -> None:
    """identity: {user: context.user_id, tenant: context.org_id}: each invoke's context names its user and tenant,
    and budgets scope by them (alice's calls do not use bob's allowance)."""
    guard = make_guardian(policy({"user": "context.user_id", "tenant": "context.org_id"}, calls=1))
    agent = create_agent(
        ScriptedChatModel(replies=["ok"], cycle=True), [], middleware=[guard.middleware()], context_schema=Ctx
    )
    with capture_logs() as logs:
        agent.invoke({"messages": [HumanMessage("hi")]}, context=Ctx("alice", "acme"))
        agent.invoke({"messages": [HumanMessage("hi")]}, context=Ctx("bob", "acme"))
        with pytest.raises(BudgetExceeded) as caught:
            agent.invoke({"messages": [HumanMessage("hi")]}, context=Ctx("alice", "acme"))
    assert started(logs) == [("alice", "acme"), ("bob", "acme"), ("alice", "acme")]
    assert caught.value.scope_key == "alice"


def test_a_run_without_a_required_name_is_refused_not_charged_to_default(make_guardian: GuardianFactory) -> None:
    """required: [user]: a run whose context has no user is refused with IdentityError before the model is called."""
    guard = make_guardian(policy({"user": "context.user_id", "required": ["user"]}))
    model = ScriptedChatModel(replies=["ok"], cycle=True)
    agent = create_agent(model, [], middleware=[guard.middleware()], context_schema=Ctx)
    with pytest.raises(IdentityError, match=r"requires user \(from context.user_id\)"):
        agent.invoke({"messages": [HumanMessage("hi")]}, context=Ctx(None, "acme"))
    assert model.calls == 0
    assert guard.status() == []


def test_the_callback_reads_names_from_config_metadata(make_guardian: GuardianFactory) -> None:
    """identity: {user: metadata.user_id}: the callback resolves it from the run's config metadata;
    guardian_user, when given, still wins; a run with neither is refused."""
    guard = make_guardian(policy({"user": "metadata.user_id", "required": ["user"]}, calls=10))
    agent = create_agent(ScriptedChatModel(replies=["ok"], cycle=True), [])
    with capture_logs() as logs:
        agent.invoke(
            {"messages": [HumanMessage("hi")]},
            config={"callbacks": [guard.callback()], "metadata": {"user_id": "carol"}},
        )
        agent.invoke(
            {"messages": [HumanMessage("hi")]},
            config={"callbacks": [guard.callback()], "metadata": {"user_id": "carol", "guardian_user": "dave"}},
        )
    assert [u for u, _ in started(logs)] == ["carol", "dave"]
    with pytest.raises(IdentityError, match="requires user"):
        agent.invoke({"messages": [HumanMessage("hi")]}, config={"callbacks": [guard.callback()]})


@pytest.mark.parametrize(
    ("identity", "field"),
    [({"user": "ctx.user"}, "identity.user"), ({"required": ["team"]}, "identity.required[0]")],
)
def test_identity_sources_are_validated(identity: dict[str, Any], field: str) -> None:
    with pytest.raises(PolicyError) as caught:
        Policy.from_dict({"version": 1, "identity": identity})
    assert [p.field for p in caught.value.problems] == [field]

"""scope: thread — a budget per LangGraph conversation (config thread_id), across its runs and resumes."""

from __future__ import annotations

from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from structlog.testing import capture_logs

from guardian import BudgetExceeded, PolicyError
from guardian.policy import Policy
from guardian.testing import FakeClock, ScriptedChatModel

from .conftest import GuardianFactory


def thread_budget(window: str = "lifetime", calls: int = 3) -> dict[str, Any]:
    return {"budgets": [{"name": "conversation", "scope": "thread", "window": window, "limits": {"llm_calls": calls}}]}


def chat(guard: Any, thread: str | None, text: str = "hi") -> Any:
    config: Any = {"callbacks": [guard.callback(user="u")]}
    if thread is not None:
        config["configurable"] = {"thread_id": thread}
    saver = InMemorySaver() if thread is not None else None
    agent = create_agent(ScriptedChatModel(replies=["ok"], cycle=True), [], checkpointer=saver)
    return agent.invoke({"messages": [HumanMessage(text)]}, config)


def test_a_thread_budget_spans_the_runs_of_one_conversation(make_guardian: GuardianFactory) -> None:
    """Three turns of thread A fit a 3-call thread budget, the fourth is refused; thread B has its own; a run
    with no thread is a conversation of its own. run_started names the thread."""
    guard = make_guardian(thread_budget())
    with capture_logs() as logs:
        for _ in range(3):
            chat(guard, "A")
        with pytest.raises(BudgetExceeded) as caught:
            chat(guard, "A")
        chat(guard, "B")
        chat(guard, None)
    assert (caught.value.budget, caught.value.scope, caught.value.scope_key) == ("conversation", "thread", "A")
    assert [e.get("thread_id") for e in logs if e["event"] == "run_started"] == ["A"] * 4 + ["B", None]


def test_a_thread_budget_holds_across_a_middleware_resume(make_guardian: GuardianFactory) -> None:
    """With the middleware, an interrupted thread resumed later still counts against the same thread budget."""
    guard = make_guardian(thread_budget(calls=2))
    middleware = guard.middleware(user="u", exit_behavior="interrupt")
    model = ScriptedChatModel(replies=["ok"], cycle=True)
    agent = create_agent(model, [], middleware=[middleware], checkpointer=InMemorySaver())
    config: Any = {"configurable": {"thread_id": "T"}}
    agent.invoke({"messages": [HumanMessage("one")]}, config)
    agent.invoke({"messages": [HumanMessage("two")]}, config)
    paused = agent.invoke({"messages": [HumanMessage("three")]}, config)
    (pause,) = paused["__interrupt__"]
    assert pause.value["budget"] == "conversation"
    assert pause.value["scope"] == "thread"
    assert model.calls == 2


def test_a_calendar_window_on_a_thread_rolls_over(make_guardian: GuardianFactory, clock: FakeClock) -> None:
    """window: day on a thread: the conversation gets a fresh allowance the next day."""
    guard = make_guardian(thread_budget(window="day", calls=1))
    chat(guard, "A")
    with pytest.raises(BudgetExceeded):
        chat(guard, "A")
    clock.advance(86_400)
    chat(guard, "A")


@pytest.mark.parametrize(
    ("budget", "message"),
    [
        ({"scope": "thread", "window": "run"}, "scope thread needs window lifetime"),
        ({"scope": "user", "window": "lifetime"}, "window 'lifetime' is for scope thread only"),
    ],
)
def test_thread_windows_are_validated(budget: dict[str, Any], message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        Policy.from_dict({"version": 1, "budgets": [{"name": "b", "limits": {"llm_calls": 1}, **budget}]})

"""LangChain v1 middleware: create_agent(..., middleware=[guard.middleware(...)]) with each exit behavior."""

from __future__ import annotations

from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command
from structlog.testing import capture_logs

from guardian import BudgetExceeded, LoopDetected
from guardian.testing import ScriptedChatModel, tool_call

from .conftest import GuardianFactory


@tool
def lookup(query: str) -> str:
    """Look something up."""
    return f"Nothing found for {query}."


def user_calls(limit: int) -> dict[str, Any]:
    return {"budgets": [{"name": "daily", "scope": "user", "window": "day", "limits": {"llm_calls": limit}}]}


def pages(n: int) -> list[Any]:
    return [tool_call("lookup", {"query": f"page {i}"}) for i in range(n)] + ["Done."]


def test_error_raises_the_halt_and_the_provider_is_not_called(make_guardian: GuardianFactory) -> None:
    """exit_behavior="error": the third model call of a 2-call budget raises BudgetExceeded before the provider
    is called; the two served calls and one tool call are committed; the run is closed."""
    guard = make_guardian(user_calls(2))
    middleware = guard.middleware(user="alice")
    model = ScriptedChatModel(replies=pages(5), max_tokens=50)
    agent = create_agent(model, [lookup], middleware=[middleware])
    with capture_logs() as logs, pytest.raises(BudgetExceeded) as caught:
        agent.invoke({"messages": [HumanMessage("read")]})
    assert model.calls == 2
    assert caught.value.budget == "daily"
    (finished,) = [e for e in logs if e["event"] == "run_finished"]
    assert (finished["spent_llm_calls"], finished["spent_tool_calls"]) == (2, 2)
    assert finished["user"] == "alice"
    assert middleware.active_runs == 0


def test_end_finishes_the_run_with_a_message_saying_why(make_guardian: GuardianFactory) -> None:
    """exit_behavior="end": no exception; the agent's last message is an AIMessage naming the halt."""
    guard = make_guardian(user_calls(2))
    middleware = guard.middleware(user="bob", exit_behavior="end")
    model = ScriptedChatModel(replies=pages(5), max_tokens=50)
    result = create_agent(model, [lookup], middleware=[middleware]).invoke({"messages": [HumanMessage("read")]})
    last = result["messages"][-1]
    assert isinstance(last, AIMessage)
    assert str(last.content).startswith("Stopped by Guardian (BudgetExceeded): budget 'daily'")
    assert not last.tool_calls
    assert model.calls == 2
    assert middleware.active_runs == 0


def test_a_refused_tool_call_gets_an_error_message_then_the_run_ends(make_guardian: GuardianFactory) -> None:
    """A tool-call budget under "end": the refused call is answered with an error ToolMessage (the tool never
    runs) and the next model call ends the run."""
    ran: list[str] = []

    @tool
    def fetch(query: str) -> str:
        """Fetch."""
        ran.append(query)
        return "ok"

    budget = {"name": "tools", "scope": "run", "limits": {"tool_calls": 1}}
    guard = make_guardian({"budgets": [budget]})
    model = ScriptedChatModel(replies=[tool_call("fetch", {"query": "a"}), tool_call("fetch", {"query": "b"}), "x"])
    result = create_agent(model, [fetch], middleware=[guard.middleware(exit_behavior="end")]).invoke(
        {"messages": [HumanMessage("go")]}
    )
    refused = [m for m in result["messages"] if isinstance(m, ToolMessage) and m.status == "error"]
    assert len(refused) == 1
    assert "tool_calls limit" in str(refused[0].content)
    assert ran == ["a"]
    assert str(result["messages"][-1].content).startswith("Stopped by Guardian (BudgetExceeded)")


def test_interrupt_pauses_and_a_resume_goes_on_once_there_is_room(make_guardian: GuardianFactory) -> None:
    """exit_behavior="interrupt": a kill pauses the checkpointed run with the halt's details; after the flag is
    cleared, Command(resume=...) continues it to the end as a new run."""
    guard = make_guardian({})
    middleware = guard.middleware(user="carol", exit_behavior="interrupt")
    model = ScriptedChatModel(replies=pages(3), max_tokens=50)
    agent = create_agent(model, [lookup], middleware=[middleware], checkpointer=InMemorySaver())
    config: Any = {"configurable": {"thread_id": "t-1"}}
    guard.kill(user="carol")
    paused = agent.invoke({"messages": [HumanMessage("read")]}, config)
    (pause,) = paused["__interrupt__"]
    assert pause.value["guardian"] == "RunKilled"
    assert "guardian kill --user carol --clear" in pause.value["reason"]
    assert model.calls == 0
    guard.kill(user="carol", clear=True)
    done = agent.invoke(Command(resume="retry"), config)
    assert done["messages"][-1].content == "Done."
    assert model.calls == 4
    assert middleware.active_runs == 0


def test_loops_are_detected_through_the_middleware(make_guardian: GuardianFactory) -> None:
    """The same call and result, over and over: LoopDetected before the fifth model call."""
    guard = make_guardian(user_calls(100))
    model = ScriptedChatModel(replies=[tool_call("lookup", {"query": "Q3"})], cycle=True, max_tokens=50)
    agent = create_agent(model, [lookup], middleware=[guard.middleware()])
    with pytest.raises(LoopDetected) as caught:
        agent.invoke({"messages": [HumanMessage("revenue?")]})
    assert (caught.value.signal, caught.value.subject) == ("repeated_tool_call", "lookup")
    assert model.calls == 4


def test_a_healthy_agent_finishes_and_each_invocation_is_its_own_run(make_guardian: GuardianFactory) -> None:
    """Paging through results finishes; two invocations are two runs, both closed."""
    guard = make_guardian(user_calls(100))
    middleware = guard.middleware(agent="pager")
    with capture_logs() as logs:
        for _ in range(2):
            model = ScriptedChatModel(replies=pages(6), max_tokens=50)
            result = create_agent(model, [lookup], middleware=[middleware]).invoke({"messages": [HumanMessage("go")]})
            assert result["messages"][-1].content == "Done."
    started = [e["run_id"] for e in logs if e["event"] == "run_started"]
    finished = [e for e in logs if e["event"] == "run_finished"]
    assert len(set(started)) == 2
    assert [e["spent_llm_calls"] for e in finished] == [7, 7]
    assert middleware.active_runs == 0


async def test_the_async_path_counts_and_halts_the_same(make_guardian: GuardianFactory) -> None:
    """ainvoke: the same refusal at the same call."""
    guard = make_guardian(user_calls(2))
    model = ScriptedChatModel(replies=pages(5), max_tokens=50)
    agent = create_agent(model, [lookup], middleware=[guard.middleware(user="dan")])
    with pytest.raises(BudgetExceeded):
        await agent.ainvoke({"messages": [HumanMessage("read")]})
    assert model.calls == 2


async def test_the_async_path_ends_gracefully_under_end(make_guardian: GuardianFactory) -> None:
    """ainvoke with exit_behavior="end": no exception, the last message says why, the run is closed."""
    guard = make_guardian(user_calls(2))
    model = ScriptedChatModel(replies=pages(5), max_tokens=50)
    middleware = guard.middleware(user="fay", exit_behavior="end")
    result = await create_agent(model, [lookup], middleware=[middleware]).ainvoke({"messages": [HumanMessage("x")]})
    assert str(result["messages"][-1].content).startswith("Stopped by Guardian (BudgetExceeded): budget 'daily'")
    assert model.calls == 2
    assert middleware.active_runs == 0


async def test_the_async_path_pauses_and_resumes_under_interrupt(make_guardian: GuardianFactory) -> None:
    """ainvoke with exit_behavior="interrupt" and a checkpointer: a kill pauses, a cleared kill resumes to the end."""
    guard = make_guardian({})
    middleware = guard.middleware(user="gus", exit_behavior="interrupt")
    model = ScriptedChatModel(replies=pages(2), max_tokens=50)
    agent = create_agent(model, [lookup], middleware=[middleware], checkpointer=InMemorySaver())
    config: Any = {"configurable": {"thread_id": "t-async"}}
    guard.kill(user="gus")
    paused = await agent.ainvoke({"messages": [HumanMessage("read")]}, config)
    assert paused["__interrupt__"][0].value["guardian"] == "RunKilled"
    assert model.calls == 0
    guard.kill(user="gus", clear=True)
    done = await agent.ainvoke(Command(resume="retry"), config)
    assert done["messages"][-1].content == "Done."
    assert model.calls == 3
    assert middleware.active_runs == 0


def test_an_unknown_exit_behavior_is_refused(make_guardian: GuardianFactory) -> None:
    guard = make_guardian({})
    with pytest.raises(ValueError, match="exit_behavior must be one of error, end, interrupt"):
        guard.middleware(exit_behavior="pause")


def test_a_provider_error_closes_the_run_and_commits_what_was_served(make_guardian: GuardianFactory) -> None:
    """The provider fails on the third call: the error reaches the caller, the run is closed (no leak), and the
    two served calls are committed."""
    guard = make_guardian(user_calls(10))

    def fail(messages: Any) -> AIMessage:
        raise ConnectionError("provider down")

    model = ScriptedChatModel(replies=[*pages(2)[:2], fail], max_tokens=50)
    middleware = guard.middleware(user="erin")
    with capture_logs() as logs, pytest.raises(ConnectionError):
        create_agent(model, [lookup], middleware=[middleware]).invoke({"messages": [HumanMessage("go")]})
    assert middleware.active_runs == 0
    (finished,) = [e for e in logs if e["event"] == "run_finished"]
    assert finished["spent_llm_calls"] == 2
    assert finished["error"] == "ConnectionError"


async def test_a_halt_under_astream_events_leaves_no_unawaited_coroutine(make_guardian: GuardianFactory) -> None:
    """With the middleware, a halt during astream_events leaves nothing behind for the garbage collector to warn
    about (the callback path does: see the README's known limits)."""
    import gc
    import warnings

    guard = make_guardian(user_calls(2))
    agent = create_agent(ScriptedChatModel(replies=pages(5), max_tokens=50), [lookup], middleware=[guard.middleware()])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(BudgetExceeded):
            async for _ in agent.astream_events({"messages": [HumanMessage("read")]}, version="v2"):
                pass
        gc.collect()
    assert [w for w in caught if "was never awaited" in str(w.message)] == []

"""The LangChain/LangGraph adapter on real chat-model, graph and agent runs, on both stores."""

from __future__ import annotations

import asyncio
import operator
import uuid
from typing import Annotated, Any, TypedDict

import pytest
from genai_prices import Usage, calc_price
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.graph import END, START, StateGraph
from structlog.testing import capture_logs

import guardian
from guardian import BudgetExceeded, GuardianError, GuardianHalt, RunKilled, UnknownModel
from guardian.amounts import Amounts, micro_usd
from guardian.testing import FakeClock, ScriptedChatModel, react_graph, tool_call

from .conftest import GuardianFactory


def usage_reply(text: str, input_tokens: int, output_tokens: int, **details: Any) -> AIMessage:
    usage: dict[str, Any] = {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
    }
    usage.update(details)
    return AIMessage(content=text, usage_metadata=usage)


def run_cap(**limits: Any) -> dict[str, Any]:
    """A per-run budget; loop detection off, so these looping agents are stopped by the budget alone."""
    return {"loops": [], "budgets": [{"name": "run-cap", "scope": "run", "window": "run", "limits": limits}]}


@tool
def search(query: str) -> str:
    """Search the web."""
    return f"no results for {query}"


def test_model_call_is_charged_its_exact_usage_and_price(make_guardian: GuardianFactory) -> None:
    """Input, cached input and output tokens are committed as reported and priced as genai-prices prices them."""
    guard = make_guardian(run_cap(cost_usd=5))
    reply = usage_reply(
        "hello",
        12_000,
        800,
        input_token_details={"cache_read": 4_000},
        output_token_details={"reasoning": 300},
    )
    model = ScriptedChatModel(replies=[reply], model="gpt-4o-mini", provider="openai", max_tokens=1000)
    model.invoke("hi", config={"callbacks": [guard.callback(agent="a", user="u", tenant="t")]})
    (row,) = guard.status()
    expected = calc_price(
        Usage(input_tokens=12_000, output_tokens=800, cache_read_tokens=4_000),
        "gpt-4o-mini",
        provider_id="openai",
    ).total_price
    assert (row.spent.input_tokens, row.spent.output_tokens, row.spent.total_tokens) == (12_000, 800, 12_800)
    assert row.spent.cost_usd == micro_usd(expected)
    assert row.spent.llm_calls == 1
    assert row.reserved == Amounts()


def test_refusal_happens_before_the_provider_is_called(make_guardian: GuardianFactory) -> None:
    """The call that would pass the limit raises BudgetExceeded and the model never runs."""
    guard = make_guardian(
        {"budgets": [{"name": "daily", "scope": "user", "window": "day", "limits": {"llm_calls": 2}}]}
    )
    model = ScriptedChatModel(replies=["ok"], cycle=True, max_tokens=10)
    handler = guard.callback(user="alice")
    model.invoke("1", config={"callbacks": [handler]})
    model.invoke("2", config={"callbacks": [handler]})
    with pytest.raises(BudgetExceeded) as caught:
        model.invoke("3", config={"callbacks": [handler]})
    assert model.calls == 2
    err = caught.value
    assert (err.budget, err.scope, err.scope_key, err.unit, err.limit, err.spent) == (
        "daily",
        "user",
        "alice",
        "llm_calls",
        2,
        2,
    )
    assert err.run_id is not None
    # The hint points where the bucket can be read: the CLI for a shared store, the Guardian for the embedded one.
    shared = guard.store.shared
    assert ("guardian status --budget daily" in str(err)) == shared
    assert ("guard.status(budget='daily')" in str(err)) == (not shared)
    assert isinstance(err, RuntimeError)
    assert isinstance(err, GuardianError)
    assert isinstance(err, GuardianHalt)


def test_runaway_graph_is_stopped(make_guardian: GuardianFactory) -> None:
    """A ReAct graph that calls a tool forever halts at the run's llm_calls limit."""
    guard = make_guardian(run_cap(llm_calls=5))
    model = ScriptedChatModel(replies=[tool_call("search", {"query": "same"})], cycle=True, max_tokens=50)
    graph = react_graph(model, [search])
    with capture_logs() as logs, pytest.raises(BudgetExceeded) as caught:
        graph.invoke({"messages": [HumanMessage("go")]}, config={"callbacks": [guard.callback(agent="r")]})
    assert model.calls == 5
    assert caught.value.budget == "run-cap"
    events = [e["event"] for e in logs]
    assert events.count("call_committed") == 5
    assert "budget_exceeded" in events
    assert events[-1] == "run_finished"
    exceeded = next(e for e in logs if e["event"] == "budget_exceeded")
    assert exceeded["run_id"] == caught.value.run_id
    assert exceeded["agent"] == "r"
    assert exceeded["limit"] == 5
    (row,) = guard.status()
    assert (row.spent.llm_calls, row.spent.tool_calls) == (5, 5)


async def test_ainvoke_and_astream_are_guarded(make_guardian: GuardianFactory) -> None:
    """The async paths count and refuse exactly like the sync ones."""
    guard = make_guardian(run_cap(llm_calls=3))
    model = ScriptedChatModel(replies=[tool_call("search", {"query": "q"})], cycle=True, max_tokens=50)
    graph = react_graph(model, [search])
    with pytest.raises(BudgetExceeded):
        await graph.ainvoke({"messages": [HumanMessage("go")]}, config={"callbacks": [guard.callback()]})
    assert model.calls == 3
    with pytest.raises(BudgetExceeded):
        async for _ in graph.astream({"messages": [HumanMessage("go")]}, config={"callbacks": [guard.callback()]}):
            pass
    assert model.calls == 6


def test_handler_runs_inline_and_raises() -> None:
    """Pinned: a sync handler that raises (raise_error) and runs inline, so async paths pay no thread hop."""
    assert guardian.GuardianCallbackHandler.raise_error is True
    assert guardian.GuardianCallbackHandler.run_inline is True


def test_stream_is_cut_mid_way_and_what_arrived_is_committed(make_guardian: GuardianFactory) -> None:
    """With no max_tokens, a stream's hold grows block by block, then by what the next token needs, and the
    stream halts when even that does not fit: it is charged up to the limit, never past it."""
    guard = make_guardian(
        {
            "settings": {"default_max_output_tokens": 20, "stream_block_tokens": 20},
            **run_cap(output_tokens=70),
        }
    )
    model = ScriptedChatModel(replies=[" ".join(["word"] * 500)])
    received = 0
    with pytest.raises(BudgetExceeded) as caught:
        for _ in model.stream("go", config={"callbacks": [guard.callback()]}):
            received += 1
    assert caught.value.unit == "output_tokens"
    (row,) = guard.status()
    assert row.reserved.output_tokens == 0
    # Characters are counted across chunks and converted once (4 a token): "word " is 5 of them. The chunk whose
    # callback halted was generated (and is paid for) but never handed to the caller.
    assert (received + 1) * 5 // 4 == row.spent.output_tokens == 70


def test_stream_with_usage_commits_the_final_chunk_usage(make_guardian: GuardianFactory) -> None:
    """A finished stream is charged the usage reported in its last chunk, not the estimate."""
    guard = make_guardian(run_cap(total_tokens=10_000))
    model = ScriptedChatModel(replies=[usage_reply("a b c", 321, 3)], max_tokens=100)
    chunks = list(model.stream("go", config={"callbacks": [guard.callback()]}))
    assert len(chunks) == 4
    (row,) = guard.status()
    assert (row.spent.input_tokens, row.spent.output_tokens) == (321, 3)


async def test_astream_is_cut_mid_way(make_guardian: GuardianFactory) -> None:
    """astream halts mid-stream like stream does."""
    guard = make_guardian(
        {
            "settings": {"default_max_output_tokens": 10, "stream_block_tokens": 10},
            **run_cap(output_tokens=30),
        }
    )
    model = ScriptedChatModel(replies=[" ".join(["w"] * 200)])
    with pytest.raises(BudgetExceeded):
        async for _ in model.astream("go", config={"callbacks": [guard.callback()]}):
            pass
    (row,) = guard.status()
    assert row.spent.output_tokens <= 30
    assert row.reserved.output_tokens == 0


class FanState(TypedDict):
    results: Annotated[list[str], operator.add]


def test_parallel_branches_share_the_run_budget(make_guardian: GuardianFactory) -> None:
    """In a fan-out, reservations are atomic: 6 parallel branches against a limit of 2 make 2 calls."""
    guard = make_guardian(run_cap(llm_calls=2))
    model = ScriptedChatModel(replies=["x"], cycle=True, max_tokens=5)
    graph = StateGraph(FanState)
    names = [f"branch{i}" for i in range(6)]
    for name in names:
        graph.add_node(name, lambda s: {"results": [str(model.invoke("q").content)]})
        graph.add_edge(START, name)
        graph.add_edge(name, END)
    with pytest.raises(BudgetExceeded):
        graph.compile().invoke({"results": []}, config={"callbacks": [guard.callback()]})
    assert model.calls == 2


def test_subgraph_calls_count_toward_the_root_run(make_guardian: GuardianFactory) -> None:
    """A subgraph's model calls belong to the root run: one run bucket for the whole invocation."""
    guard = make_guardian(run_cap(llm_calls=10))
    model = ScriptedChatModel(replies=["x"], cycle=True, max_tokens=5)

    class S(TypedDict):
        results: Annotated[list[str], operator.add]

    inner = StateGraph(S)
    inner.add_node("ask", lambda s: {"results": [str(model.invoke("q").content)]})
    inner.add_edge(START, "ask")
    outer = StateGraph(S)
    outer.add_node("first", lambda s: {"results": [str(model.invoke("q").content)]})
    outer.add_node("sub", inner.compile())
    outer.add_edge(START, "first")
    outer.add_edge("first", "sub")
    run_id = uuid.uuid4()
    outer.compile().invoke({"results": []}, config={"callbacks": [guard.callback()], "run_id": run_id})
    (row,) = guard.status()
    assert row.scope_key == str(run_id)
    assert row.spent.llm_calls == 2


def test_create_agent_loop_is_stopped(make_guardian: GuardianFactory) -> None:
    """langchain's create_agent: the halt raised in the model callback reaches the caller."""
    from langchain.agents import create_agent

    guard = make_guardian(run_cap(llm_calls=4))
    model = ScriptedChatModel(replies=[tool_call("search", {"query": "again"})], cycle=True, max_tokens=20)
    agent = create_agent(model, tools=[search])
    with pytest.raises(BudgetExceeded):
        agent.invoke({"messages": [HumanMessage("go")]}, config={"callbacks": [guard.callback()]})
    assert model.calls == 4


def test_a_tripped_run_refuses_every_later_call(make_guardian: GuardianFactory) -> None:
    """A halt swallowed by ToolNode(handle_tool_errors=True) still stops the run at the next model call."""
    guard = make_guardian(run_cap(tool_calls=2))
    model = ScriptedChatModel(replies=[tool_call("search", {"query": "q"})], cycle=True, max_tokens=20)
    graph = react_graph(model, [search], handle_tool_errors=True)
    with pytest.raises(BudgetExceeded) as caught:
        graph.invoke({"messages": [HumanMessage("go")]}, config={"callbacks": [guard.callback()]})
    assert caught.value.unit == "tool_calls"
    assert model.calls == 3  # the third reply asked for the refused tool call; no fourth call was paid for


def test_identity_comes_from_the_handler_and_can_be_overridden_per_run(
    make_guardian: GuardianFactory,
) -> None:
    """Config metadata guardian_user/guardian_agent/guardian_tenant override the handler's identity for a run."""
    guard = make_guardian(
        {"budgets": [{"name": "per-user", "scope": "user", "window": "day", "limits": {"llm_calls": 100}}]}
    )
    model = ScriptedChatModel(replies=["x"], cycle=True, max_tokens=5)
    handler = guard.callback(agent="a", user="alice", tenant="acme")
    model.invoke("q", config={"callbacks": [handler]})
    model.invoke("q", config={"callbacks": [handler], "metadata": {"guardian_user": "bob", "guardian_tenant": "beta"}})
    rows = {(r.tenant, r.scope_key): r.spent.llm_calls for r in guard.status()}
    assert rows == {("acme", "alice"): 1, ("beta", "bob"): 1}
    assert handler._named_identity({"guardian_tags": "prod"}).tags == frozenset({"prod"})


def test_budgets_apply_only_where_they_match(make_guardian: GuardianFactory) -> None:
    """match globs and tags select the budgets of a run."""
    guard = make_guardian(
        {
            "budgets": [
                {
                    "name": "prod-research",
                    "scope": "agent",
                    "window": "day",
                    "match": {"agent": "research-*", "tags": ["prod"]},
                    "limits": {"llm_calls": 1},
                }
            ]
        }
    )
    model = ScriptedChatModel(replies=["x"], cycle=True, max_tokens=5)
    for _ in range(3):
        model.invoke("q", config={"callbacks": [guard.callback(agent="research-1", tags=["dev"])]})
        model.invoke("q", config={"callbacks": [guard.callback(agent="writer", tags=["prod"])]})
    model.invoke("q", config={"callbacks": [guard.callback(agent="research-1", tags=["prod", "eu"])]})
    with pytest.raises(BudgetExceeded):
        model.invoke("q", config={"callbacks": [guard.callback(agent="research-1", tags=["prod"])]})


def test_unknown_model_is_refused_before_the_call(make_guardian: GuardianFactory) -> None:
    """unknown_model: block refuses a model with no price, naming it; warn lets it through and logs."""
    guard = make_guardian(run_cap(llm_calls=10))
    model = ScriptedChatModel(replies=["x"], cycle=True, model="acme-secret-model-9", max_tokens=5)
    with pytest.raises(UnknownModel, match="acme-secret-model-9"):
        model.invoke("q", config={"callbacks": [guard.callback()]})
    assert model.calls == 0
    warn = make_guardian({"settings": {"unknown_model": "warn"}, **run_cap(llm_calls=10)})
    with capture_logs() as logs:
        model.invoke("q", config={"callbacks": [warn.callback()]})
    assert model.calls == 1
    assert any(e["event"] == "unknown_model" and e["action"] == "warn" for e in logs)


def test_price_overrides_from_the_policy_are_used(make_guardian: GuardianFactory) -> None:
    """A model priced under `prices:` is charged at that price, cache reads at their own rate."""
    guard = make_guardian(
        {
            "prices": {"my-finetune": {"input": "0.30", "output": "1.20", "cache_read": "0.03"}},
            **run_cap(cost_usd=1),
        }
    )
    reply = usage_reply("x", 10_000, 1_000, input_token_details={"cache_read": 2_000})
    model = ScriptedChatModel(replies=[reply], model="my-finetune", max_tokens=1000)
    model.invoke("q", config={"callbacks": [guard.callback()]})
    (row,) = guard.status()
    assert row.spent.cost_usd == 8_000 * 0.30 + 2_000 * 0.03 + 1_000 * 1.20  # micro-USD: 2400 + 60 + 1200


def test_kill_flag_halts_the_next_call(make_guardian: GuardianFactory) -> None:
    """guardian kill --agent: the agent's next model call is refused with RunKilled; clearing re-enables it."""
    guard = make_guardian(run_cap(llm_calls=10))
    model = ScriptedChatModel(replies=["x"], cycle=True, max_tokens=5)
    guard.kill(agent="rogue")
    with capture_logs() as logs, pytest.raises(RunKilled, match="rogue"):
        model.invoke("q", config={"callbacks": [guard.callback(agent="rogue")]})
    assert any(e["event"] == "run_killed" and e["target"] == "agent" for e in logs)
    model.invoke("q", config={"callbacks": [guard.callback(agent="other")]})
    guard.kill(agent="rogue", clear=True)
    model.invoke("q", config={"callbacks": [guard.callback(agent="rogue")]})
    assert model.calls == 2


def test_alert_only_budget_records_but_never_halts(make_guardian: GuardianFactory) -> None:
    """action: alert logs budget_exceeded (action alert) once and lets the run go on."""
    guard = make_guardian(
        {
            "budgets": [
                {
                    "name": "watch",
                    "scope": "tenant",
                    "window": "month",
                    "limits": {"llm_calls": 2},
                    "action": "alert",
                }
            ]
        }
    )
    model = ScriptedChatModel(replies=["x"], cycle=True, max_tokens=5)
    with capture_logs() as logs:
        for _ in range(5):
            model.invoke("q", config={"callbacks": [guard.callback(tenant="acme")]})
    assert model.calls == 5
    exceeded = [e for e in logs if e["event"] == "budget_exceeded"]
    assert len(exceeded) == 1
    assert exceeded[0]["action"] == "alert"


def test_day_window_rolls_over_at_local_midnight(make_guardian: GuardianFactory, clock: FakeClock) -> None:
    """A daily budget in Europe/Paris resets at Paris midnight (23:00 UTC in winter), not UTC midnight."""
    from datetime import UTC, datetime

    clock.now = datetime(2026, 11, 18, 22, 30, tzinfo=UTC).timestamp()  # 23:30 in Paris
    guard = make_guardian(
        {
            "budgets": [
                {
                    "name": "paris-daily",
                    "scope": "user",
                    "window": "day",
                    "timezone": "Europe/Paris",
                    "limits": {"llm_calls": 1},
                }
            ]
        }
    )
    model = ScriptedChatModel(replies=["x"], cycle=True, max_tokens=5)
    handler = guard.callback(user="u")
    model.invoke("q", config={"callbacks": [handler]})
    with pytest.raises(BudgetExceeded):
        model.invoke("q", config={"callbacks": [handler]})
    clock.now = datetime(2026, 11, 18, 23, 0, 1, tzinfo=UTC).timestamp()  # 00:00:01 on the 19th in Paris
    model.invoke("q", config={"callbacks": [handler]})
    windows = sorted(r.window for r in guard.status())
    assert windows == ["2026-11-18", "2026-11-19"]


def test_handler_forgets_finished_runs(make_guardian: GuardianFactory) -> None:
    """Nothing leaks: after runs finish or halt, the handler holds no run state."""
    guard = make_guardian(run_cap(llm_calls=3))
    model = ScriptedChatModel(replies=[tool_call("search", {"query": "q"})], cycle=True, max_tokens=5)
    handler = guard.callback()
    for _ in range(3):
        with pytest.raises(BudgetExceeded):
            react_graph(model, [search]).invoke({"messages": [HumanMessage("go")]}, config={"callbacks": [handler]})
    assert handler.active_runs == 0
    assert handler._tree.live_nodes == 0


def test_concurrent_async_runs_do_not_mix(make_guardian: GuardianFactory) -> None:
    """Ten concurrent ainvoke runs each get their own run budget."""
    guard = make_guardian(run_cap(llm_calls=2))
    model = ScriptedChatModel(replies=[tool_call("search", {"query": "q"})], cycle=True, max_tokens=5)
    graph = react_graph(model, [search])
    handler = guard.callback()

    async def one() -> BaseException | None:
        try:
            await graph.ainvoke({"messages": [HumanMessage("go")]}, config={"callbacks": [handler]})
        except BudgetExceeded as exc:
            return exc
        return None

    async def all_runs() -> list[BaseException | None]:
        return list(await asyncio.gather(*(one() for _ in range(10))))

    results = asyncio.run(all_runs())
    assert all(isinstance(r, BudgetExceeded) for r in results)
    assert model.calls == 20
    assert len({r.run_id for r in results if isinstance(r, BudgetExceeded)}) == 10


def test_operator_kill_sends_one_killed_alert(make_guardian: GuardianFactory) -> None:
    """guardian kill raises a 'killed' alert naming the target; refused runs do not each alert again."""
    from guardian.alerts import RecordingSink

    sink = RecordingSink(all_kinds=True)
    guard = make_guardian(run_cap(llm_calls=10), alert_sinks=[sink])
    guard.kill(user="mallory")
    model = ScriptedChatModel(replies=["x"], cycle=True, max_tokens=5)
    for _ in range(3):
        with pytest.raises(RunKilled):
            model.invoke("q", config={"callbacks": [guard.callback(user="mallory")]})
    assert guard.alerts.flush(5.0)
    (alert,) = sink.alerts
    assert (alert.kind, alert.scope, alert.scope_key, alert.user) == ("killed", "user", "mallory", "mallory")


def test_an_exhausted_tenant_budget_alerts_once_and_counts_refusals(make_guardian: GuardianFactory) -> None:
    """Many refused runs of one tenant: one threshold alert, one exceeded alert, refusals counted in status."""
    from guardian.alerts import RecordingSink

    sink = RecordingSink(all_kinds=True)
    guard = make_guardian(
        {
            "budgets": [
                {
                    "name": "tenant-daily",
                    "scope": "tenant",
                    "window": "day",
                    "limits": {"llm_calls": 3},
                    "alert_at": [0.5],
                }
            ]
        },
        alert_sinks=[sink],
    )
    model = ScriptedChatModel(replies=["x"], cycle=True, max_tokens=5)
    refused = 0
    with capture_logs() as logs:
        for i in range(8):
            try:
                model.invoke("q", config={"callbacks": [guard.callback(user=f"user{i}", tenant="acme")]})
            except BudgetExceeded:
                refused += 1
    assert (model.calls, refused) == (3, 5)
    assert guard.alerts.flush(5.0)
    kinds = sorted(a.kind for a in sink.alerts)
    assert kinds == ["exceeded", "threshold"]
    assert [e["event"] for e in logs].count("budget_exceeded") == 5
    (row,) = guard.status()
    assert row.refused == 5
    assert row.spent.llm_calls == 3


def test_a_stream_of_large_chunks_is_cut_within_one_chunk(make_guardian: GuardianFactory) -> None:
    """Chunks of ~50 tokens each are counted as such: the stream halts within one chunk of the limit."""
    guard = make_guardian(
        {"settings": {"default_max_output_tokens": 20, "stream_block_tokens": 20}, **run_cap(output_tokens=300)}
    )
    chunk = "a" * 199 + " "  # one streamed chunk of 200 characters, ~50 tokens
    model = ScriptedChatModel(replies=[chunk * 40])
    with pytest.raises(BudgetExceeded):
        for _ in model.stream("go", config={"callbacks": [guard.callback()]}):
            pass
    (row,) = guard.status()
    assert 250 <= row.spent.output_tokens <= 300 + 50
    assert row.reserved == Amounts()


def test_a_reply_without_usage_is_charged_its_estimated_output() -> None:
    """A provider that reports no usage is charged the prompt estimate plus an estimate of its output, not 0."""
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel

    from guardian import Guardian, Policy

    policy = Policy.from_dict({"version": 1, "settings": {"unknown_model": "warn"}, **run_cap(llm_calls=10)})
    guard = Guardian(policy, store="memory://")
    model = GenericFakeChatModel(messages=iter([" ".join(["word"] * 1000)]))
    with capture_logs() as logs:
        model.invoke("q", config={"callbacks": [guard.callback()]})
    (row,) = guard.status()
    assert row.spent.output_tokens >= 1000  # 5000 characters: ~1250 tokens
    assert any(e["event"] == "usage_estimated" for e in logs)
    guard.close()


def test_n_choices_are_charged_the_response_usage_once() -> None:
    """With n > 1, providers copy the whole response's usage onto every choice: it is counted once per prompt."""
    from langchain_core.outputs import ChatGeneration, LLMResult

    from guardian.integrations.langchain import usage_from_result

    reply = usage_reply("a", 100, 30)
    result = LLMResult(generations=[[ChatGeneration(message=reply), ChatGeneration(message=reply)]])
    usage = usage_from_result(result)
    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens) == (100, 30)


@pytest.mark.parametrize("mode", ["fail_closed", "fail_open"])
def test_an_internal_error_follows_the_fail_mode_and_leaks_nothing(
    make_guardian: GuardianFactory, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """A bug in Guardian never reaches the agent raw: fail_closed refuses the call, fail_open lets it through."""
    from guardian import GuardianInternalError

    guard = make_guardian({"settings": {"on_store_error": mode}, **run_cap(llm_calls=10)})

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise KeyError("boom")

    monkeypatch.setattr(guard.supervisor, "before_llm_call", broken)
    model = ScriptedChatModel(replies=["x"], cycle=True, max_tokens=5)
    handler = guard.callback()
    with capture_logs() as logs:
        if mode == "fail_closed":
            with pytest.raises(GuardianInternalError, match="KeyError"):
                model.invoke("q", config={"callbacks": [handler]})
            assert model.calls == 0
        else:
            model.invoke("q", config={"callbacks": [handler]})
            assert model.calls == 1
    assert any(e["event"] == "guardian_internal_error" for e in logs)
    assert handler.active_runs == 0


def test_langgraph_retry_policy_does_not_retry_a_halt(make_guardian: GuardianFactory) -> None:
    """Halts are RuntimeErrors, which LangGraph's default RetryPolicy does not retry: no call is re-spent."""
    from langgraph.types import RetryPolicy

    guard = make_guardian(run_cap(llm_calls=1))
    model = ScriptedChatModel(replies=["x"], cycle=True, max_tokens=5)
    attempts = 0

    def ask_twice(state: FanState) -> dict[str, Any]:
        nonlocal attempts
        attempts += 1
        model.invoke("one")
        model.invoke("two")  # refused: the run allows one call
        return {"results": ["done"]}

    graph = StateGraph(FanState)
    graph.add_node("ask", ask_twice, retry_policy=RetryPolicy(max_attempts=3))
    graph.add_edge(START, "ask")
    with pytest.raises(BudgetExceeded):
        graph.compile().invoke({"results": []}, config={"callbacks": [guard.callback()]})
    assert attempts == 1
    assert model.calls == 1


def test_a_handler_attached_to_the_model_warns_once_with_the_fix(make_guardian: GuardianFactory) -> None:
    """model.with_config(callbacks=[handler]) inside a graph: every call is its own run (run caps and loops
    never add up), so callback_not_at_root is logged once, naming the fix; a handler on the graph never warns."""

    @tool
    def page(n: int) -> str:
        """A page."""
        return f"page {n}"

    guard = make_guardian({"budgets": [{"name": "cap", "scope": "run", "limits": {"llm_calls": 100}}]})
    handler = guard.callback()
    replies: list[Any] = [tool_call("page", {"n": i}) for i in range(3)] + ["done"]
    model = ScriptedChatModel(replies=replies)

    class State(TypedDict):
        messages: Annotated[list[Any], operator.add]

    def agent(state: State) -> dict[str, Any]:  # the handler reaches the model call only
        return {"messages": [model.invoke(state["messages"], config={"callbacks": [handler]})]}

    def tools(state: State) -> dict[str, Any]:
        call = state["messages"][-1].tool_calls[0]
        return {"messages": [ToolMessage(content=page.invoke(call["args"]), tool_call_id=call["id"])]}

    graph = StateGraph(State)
    graph.add_node("agent", agent)
    graph.add_node("tools", tools)
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", lambda s: "tools" if s["messages"][-1].tool_calls else END, ["tools", END])
    graph.add_edge("tools", "agent")
    with capture_logs() as logs:
        graph.compile().invoke({"messages": [HumanMessage("go")]})
    warnings = [e for e in logs if e["event"] == "callback_not_at_root"]
    assert len(warnings) == 1
    assert "config={'callbacks': [handler]}" in warnings[0]["fix"]
    assert len({e["run_id"] for e in logs if e["event"] == "run_started"}) == 4  # one run per call: the symptom

    replies = [tool_call("page", {"n": i}) for i in range(3)] + ["done"]
    with capture_logs() as logs:
        react_graph(ScriptedChatModel(replies=replies), [page]).invoke(
            {"messages": [HumanMessage("go")]}, config={"callbacks": [guard.callback()]}
        )
    assert not [e for e in logs if e["event"] == "callback_not_at_root"]


def test_money_in_events_is_named_by_its_unit(make_guardian: GuardianFactory) -> None:
    """A cost limit's budget_exceeded event and halt say their amounts are micro-dollars (unit cost_micro_usd),
    the halt message shows dollars, and the alert's log fields name micro-dollars too."""
    guard = make_guardian({"budgets": [{"name": "cap", "scope": "run", "limits": {"cost_usd": 0.000001}}]})
    with capture_logs() as logs, pytest.raises(BudgetExceeded) as caught:
        ScriptedChatModel(replies=["ok"]).invoke("hi", config={"callbacks": [guard.callback()]})
    (event,) = [e for e in logs if e["event"] == "budget_exceeded"]
    assert (event["unit"], event["limit"]) == ("cost_micro_usd", 1)
    assert "limit $0.000001" in str(caught.value)
    assert (caught.value.unit, caught.value.limit) == ("cost_micro_usd", 1)
    assert guard.alerts.flush(5.0)
    fields = [e for e in logs if e["event"] == "alert"]
    assert all("spent_cost_usd" not in e and "limit_cost_usd" not in e for e in fields)

"""Trust: healthy calls are never refused for phantom reasons, and no charge is lost or counted twice.

Each test pins one regression found by trying Guardian as a new user and as an attacker would (issue 7, items
A1-A3 and B4-B7); all run on both stores.
"""

from __future__ import annotations

import io
import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
import structlog
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.messages.utils import count_tokens_approximately
from langchain_core.tools import tool
from langchain_core.utils.function_calling import convert_to_openai_tool
from structlog.testing import capture_logs

from guardian import BudgetExceeded, Guardian, GuardianInternalError
from guardian.renewal import HoldRenewer
from guardian.store import RedisStore
from guardian.testing import FakeClock, ScriptedChatModel, tool_call

from .conftest import GuardianFactory


def run_cap(**limits: Any) -> dict[str, Any]:
    return {"loops": [], "budgets": [{"name": "run-cap", "scope": "run", "window": "run", "limits": limits}]}


def user_daily(**limits: Any) -> dict[str, Any]:
    return {"loops": [], "budgets": [{"name": "daily", "scope": "user", "window": "day", "limits": limits}]}


def words(count: int, length: int = 4) -> str:
    return " ".join(["w" * length] * count)


def prompt_tokens(text: str) -> int:
    return count_tokens_approximately([HumanMessage(text)])


# -- A1: streams with an output cap ----------------------------------------------------------------------------


@pytest.mark.parametrize("headroom", [0, 100])
def test_a_capped_stream_runs_to_its_cap_on_a_budget_that_fits_it(
    make_guardian: GuardianFactory, headroom: int
) -> None:
    """max_tokens 60 and a 5-token prompt on a 65-token budget (and on 165): all 60 chunks arrive, nothing is cut,
    the run is not tripped. The provider cannot send more than the cap, so the hold never grows past it."""
    limit = prompt_tokens("go") + 60 + headroom
    guard = make_guardian(run_cap(total_tokens=limit))
    model = ScriptedChatModel(replies=[words(60)], max_tokens=60)
    handler = guard.callback()
    chunks = list(model.stream("go", config={"callbacks": [handler]}))
    assert len(chunks) == 61  # 60 words and the usage chunk
    (row,) = guard.status()
    assert row.spent.total_tokens == limit - headroom
    assert row.reserved.total_tokens == 0


async def test_a_capped_astream_runs_to_its_cap(make_guardian: GuardianFactory) -> None:
    """The same through astream."""
    limit = prompt_tokens("go") + 60
    guard = make_guardian(run_cap(total_tokens=limit))
    model = ScriptedChatModel(replies=[words(60)], max_tokens=60)
    chunks = [c async for c in model.astream("go", config={"callbacks": [guard.callback()]})]
    assert len(chunks) == 61


def test_long_words_do_not_make_a_capped_stream_look_longer(make_guardian: GuardianFactory) -> None:
    """Sixty 21-character words under max_tokens 60 (about 5 counted tokens each): the cap, not the character
    count, bounds the output, so the stream is not cut after 11 of them."""
    limit = prompt_tokens("go") + 60
    guard = make_guardian(run_cap(total_tokens=limit))
    model = ScriptedChatModel(replies=[words(60, length=21)], max_tokens=60)
    chunks = list(model.stream("go", config={"callbacks": [guard.callback()]}))
    assert len(chunks) == 61


def test_characters_add_up_across_chunks_before_becoming_tokens(make_guardian: GuardianFactory) -> None:
    """Sixty 2-character chunks are 120 characters, 30 tokens at 4 a token: not 60 tokens (one per chunk). With
    no cap and no usage reported, a 40-token output budget lets the whole stream through."""
    guard = make_guardian(
        {"settings": {"default_max_output_tokens": 10, "stream_block_tokens": 10}, **run_cap(output_tokens=40)}
    )
    reply = AIMessage(content=" ".join(["a"] * 60) + " ")
    model = ScriptedChatModel(replies=[lambda _m: reply])
    chunks = list(model.stream("go", config={"callbacks": [guard.callback()]}))
    assert len(chunks) == 61
    (row,) = guard.status()
    assert row.spent.output_tokens == 60  # the usage the model reported at the end: one per word


def test_an_uncapped_extension_asks_only_for_the_room_it_needs(make_guardian: GuardianFactory) -> None:
    """Near the limit a whole block does not fit, but the next token does: the stream goes on token by token
    and stops exactly at the limit, never before it."""
    guard = make_guardian(
        {"settings": {"default_max_output_tokens": 8, "stream_block_tokens": 100}, **run_cap(output_tokens=50)}
    )
    model = ScriptedChatModel(replies=[words(30, length=3)])  # "www " = 1 token each
    chunks = list(model.stream("go", config={"callbacks": [guard.callback()]}))
    assert len(chunks) == 31
    (row,) = guard.status()
    assert row.spent.output_tokens == 30


def test_near_the_limit_a_stream_stops_probing_for_whole_blocks(make_guardian: GuardianFactory) -> None:
    """Once a whole block was refused the stream asks only for the next token: one ledger call per token, not
    two, and the refused blocks are probes, not refusals a FinOps team would read as turned-away calls. The
    last refusal, the one that cuts the stream at the limit, is counted."""
    from guardian.errors import BudgetExceeded as Exceeded

    guard = make_guardian(
        {"settings": {"default_max_output_tokens": 8, "stream_block_tokens": 100}, **run_cap(output_tokens=20)}
    )
    requests: list[Any] = []
    reserve = guard.store.reserve

    def spy(request: Any) -> Any:
        requests.append(request)
        return reserve(request)

    guard.store.reserve = spy  # type: ignore[method-assign]
    model = ScriptedChatModel(replies=[words(30, length=3)])
    with pytest.raises(Exceeded):
        list(model.stream("go", config={"callbacks": [guard.callback()]}))
    extensions = requests[1:]
    probes = [r for r in extensions if r.probe]
    assert len(probes) == 1  # the first block refused; never asked again
    assert len(extensions) == 1 + (20 - 8) + 1  # that probe, one per token up to the limit, the one refused
    (row,) = guard.status()
    assert row.refused == 1
    assert row.spent.output_tokens == 20


# -- A2: a learned output hold ---------------------------------------------------------------------------------


def test_an_agent_without_max_tokens_is_not_refused_long_before_its_budget_is_spent(
    make_guardian: GuardianFactory,
) -> None:
    """Calls of ~40 tokens with no max_tokens, on a 3,000-token budget: the hold is learned from what the agent
    produces (not a flat 1,024 tokens), so calls are refused only once over 95% of the budget is used."""
    guard = make_guardian(user_daily(total_tokens=3000))
    model = ScriptedChatModel(replies=[words(30)], cycle=True)
    handler = guard.callback(user="u")
    served = 0
    with pytest.raises(BudgetExceeded):
        for _ in range(200):
            model.invoke("hello there", config={"callbacks": [handler]})
            served += 1
    (row,) = guard.status()
    assert row.spent.total_tokens >= 0.95 * 3000
    assert row.spent.total_tokens <= 3000
    assert served == model.calls


def test_the_policy_default_holds_until_there_is_history_and_max_tokens_stays_exact(
    make_guardian: GuardianFactory,
) -> None:
    """The first call of an agent and model holds default_max_output_tokens; later ones hold what it produced
    plus headroom; a call that names max_tokens holds exactly that."""
    guard = make_guardian({"settings": {"default_max_output_tokens": 500}, **user_daily(total_tokens=100_000)})
    handler = guard.callback(agent="writer")
    with capture_logs() as logs:
        ScriptedChatModel(replies=[words(40)]).invoke("a", config={"callbacks": [handler]})
        ScriptedChatModel(replies=[words(40)]).invoke("b", config={"callbacks": [handler]})
        ScriptedChatModel(replies=[words(40)], max_tokens=300).invoke("c", config={"callbacks": [handler]})
    holds = [(e["output_hold"], e["output_hold_from"]) for e in logs if e["event"] == "call_reserved"]
    assert holds == [(500, "history"), (40 + 16, "history"), (300, "max_tokens")]


def test_a_commit_far_above_its_hold_is_logged(make_guardian: GuardianFactory) -> None:
    """An agent whose replies suddenly grow tenfold overruns its learned hold: the commit counts in full and is
    logged as commit_over_hold."""
    guard = make_guardian(user_daily(total_tokens=100_000))
    handler = guard.callback(agent="a")
    ScriptedChatModel(replies=[words(20)]).invoke("q", config={"callbacks": [handler]})
    with capture_logs() as logs:
        ScriptedChatModel(replies=[words(600)]).invoke("q", config={"callbacks": [handler]})
    (over,) = [e for e in logs if e["event"] == "commit_over_hold"]
    assert over["committed_tokens"] > 2 * over["held_tokens"]
    assert over["output_hold_from"] == "history"


def test_output_history_is_bounded() -> None:
    """The learned holds keep a bounded number of outputs for a bounded number of agents and models."""
    from guardian.estimates import OutputHistory

    history = OutputHistory(keep=4, max_keys=3)
    for key in range(10):
        for size in range(100):
            history.record(("agent", None, f"model-{key}"), size)
    assert len(history) == 3
    assert history.hold(("agent", None, "model-9"), 1024) == 99 + 24
    assert history.hold(("agent", None, "model-0"), 1024) == 1024


# -- A3: tool schemas are prompt tokens ------------------------------------------------------------------------


@tool
def lookup(query: str) -> str:
    """Looks things up. This description is long on purpose, as real tool descriptions often are: it tells the
    model when to call the tool, what each argument means, which formats are accepted, and what comes back."""
    return query


TOOLS = [lookup] * 20  # twenty bound tools, about 1,600 tokens of schema


def test_bound_tool_schemas_are_counted_in_the_estimate(make_guardian: GuardianFactory) -> None:
    """Ten concurrent calls that bind twenty tools, on a 10,000-token budget: each holds its tool schemas too,
    so the budget is never overspent (it was by 2.05x when tools were left out of the estimate)."""
    guard = make_guardian(user_daily(total_tokens=10_000))
    schemas: list[Any] = [convert_to_openai_tool(t) for t in TOOLS]
    billed = count_tokens_approximately([HumanMessage("find it")], tools=schemas)
    assert billed > 1_500
    reply = AIMessage(
        content="done",
        usage_metadata={"input_tokens": billed, "output_tokens": 10, "total_tokens": billed + 10},
    )
    model = ScriptedChatModel(replies=[reply], cycle=True, max_tokens=10).bind_tools(TOOLS)
    handler = guard.callback(user="u")
    start = threading.Barrier(10)

    def one() -> bool:
        start.wait()
        try:
            model.invoke("find it", config={"callbacks": [handler]})
        except BudgetExceeded:
            return False
        return True

    with ThreadPoolExecutor(10) as pool:
        served = sum(pool.map(lambda _i: one(), range(10)))
    (row,) = guard.status()
    assert served == 10_000 // (billed + 10)
    assert row.spent.total_tokens <= 10_000


def test_response_format_schemas_are_counted() -> None:
    """A structured-output schema in the request is prompt too, as is a legacy functions list; a schema that
    is not a dict (a pydantic class given to with_structured_output) is counted as its JSON schema."""
    from pydantic import BaseModel, Field

    from guardian.integrations.langchain import request_schema_tokens

    schema = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"description": "d" * 400}}}
    assert request_schema_tokens({"response_format": schema}) > 100
    assert request_schema_tokens({}) == 0
    function = {"name": "f", "description": "e" * 400}
    assert request_schema_tokens({"functions": [function]}) > 100

    class Verdict(BaseModel):
        label: str = Field(description="l" * 400)

    assert request_schema_tokens({"response_format": Verdict}) > 100


def test_tool_schema_tokens_match_langchain_and_are_cached() -> None:
    """The count equals langchain-core's own for the same tools, and a model bound once (the same schema objects
    on every call) is serialised once: the second count does not serialise at all."""
    from unittest import mock

    from guardian.integrations import langchain as adapter

    schemas: list[Any] = [convert_to_openai_tool(t) for t in TOOLS]
    expected = count_tokens_approximately([HumanMessage("q")], tools=schemas) - count_tokens_approximately(
        [HumanMessage("q")]
    )
    params = {"tools": schemas}
    assert adapter.request_schema_tokens(params) == expected
    with mock.patch("guardian.integrations.langchain.json.dumps", side_effect=AssertionError("serialised again")):
        assert adapter.request_schema_tokens(dict(params)) == expected
    copies = {"tools": [dict(s) for s in schemas]}  # new objects: counted afresh, to the same result
    assert adapter.request_schema_tokens(copies) == expected


# -- B4: usage is in the store before the run returns -----------------------------------------------------------


@pytest.mark.redis
def test_a_runs_usage_is_durable_when_invoke_returns_in_one_round_trip(redis_url: str, key_prefix: str) -> None:
    """On Redis, with no background flush at all, a 3-call agent run's usage is in Redis when invoke returns: its
    commits rode with the next reservations and the last one with the run's end, one extra round trip per run."""
    store = RedisStore.from_url(redis_url, flush_interval_s=3600)
    scripts = 0
    send = store._script

    def counted(**kwargs: Any) -> Any:
        nonlocal scripts
        scripts += 1
        return send(**kwargs)

    store._script = counted  # type: ignore[method-assign]
    guard = Guardian(
        _policy(user_daily(llm_calls=100, tool_calls=100)), store=store, key_prefix=key_prefix, alert_sinks=[]
    )
    from guardian.testing import react_graph

    model = ScriptedChatModel(replies=[tool_call("lookup", {"query": "a"}), tool_call("lookup", {"query": "b"}), "ok"])
    react_graph(model, [lookup]).invoke(
        {"messages": [HumanMessage("go")]}, config={"callbacks": [guard.callback(user="u")]}
    )
    assert store.pending == 0
    assert scripts == 3 + 2 + 1  # three model reservations, two tool charges, the run's end
    reader = Guardian(_policy(user_daily(llm_calls=100)), store=redis_url, key_prefix=key_prefix)
    (row,) = reader.status()
    assert (row.spent.llm_calls, row.spent.tool_calls) == (3, 2)
    reader.close()
    guard.close()


def _policy(data: dict[str, Any]) -> Any:
    from guardian import Policy

    return Policy.from_dict({"version": 1, **data})


# -- B5: holds of live calls never lapse -----------------------------------------------------------------------


def test_a_long_call_keeps_its_hold_while_it_runs(make_guardian: GuardianFactory, clock: FakeClock) -> None:
    """With a 2 s hold TTL, a 3 s call is renewed while it runs: at 3 s its hold still counts as reserved (not
    expired, not charged), so a second call that would not fit beside it is refused; its commit then settles it
    exactly."""
    guard = make_guardian({"settings": {"reservation_ttl_s": 2}, **user_daily(total_tokens=100)})
    other = ScriptedChatModel(replies=["x"], max_tokens=60)
    seen: dict[str, Any] = {}

    def slow(messages: list[BaseMessage]) -> AIMessage:
        seen["renewed"] = []
        for _ in range(3):
            clock.advance(1)
            seen["renewed"].append(guard.supervisor.renew_holds())  # what the renewer thread does every ttl/3
        (row,) = guard.status()
        seen["reserved"], seen["spent"] = row.reserved.total_tokens, row.spent.total_tokens
        with pytest.raises(BudgetExceeded):
            other.invoke("q", config={"callbacks": [guard.callback(user="u")]})
        return AIMessage(content="done", usage_metadata={"input_tokens": 5, "output_tokens": 5, "total_tokens": 10})

    ScriptedChatModel(replies=[slow], max_tokens=60).invoke("q", config={"callbacks": [guard.callback(user="u")]})
    assert seen["renewed"] == [1, 1, 1]
    assert seen["spent"] == 0
    assert seen["reserved"] > 60
    (row,) = guard.status()
    assert (row.spent.total_tokens, row.reserved.total_tokens, row.spent.llm_calls) == (10, 0, 1)


def _renewer_in_child(renewer: HoldRenewer) -> None:
    """Runs in a forked child: the parent's renewer thread did not come along; a reservation starts a new one."""
    renewer.ensure_running()
    if not renewer.running:
        raise SystemExit(4)


def test_a_forked_child_starts_its_own_renewer() -> None:
    import multiprocessing

    class Owner:
        def renew_holds(self) -> int:
            return 0

    owner = Owner()
    stop = threading.Event()
    renewer = HoldRenewer(owner, 3600.0, wait=lambda event, seconds: stop.wait(seconds) or True)
    renewer.ensure_running()
    assert renewer.running
    child = multiprocessing.get_context("fork").Process(target=_renewer_in_child, args=(renewer,))
    child.start()
    child.join(30)
    stop.set()
    renewer.stop()
    assert child.exitcode == 0


def test_the_renewer_thread_renews_and_stops_with_its_owner() -> None:
    """The background renewer calls renew_holds once per interval, and exits once its owner is gone."""
    rounds = threading.Semaphore(0)
    renewed = threading.Event()

    class Owner:
        def renew_holds(self) -> int:
            renewed.set()
            return 1

    def wait(stop: threading.Event, seconds: float) -> bool:
        assert seconds == 7.0
        rounds.acquire()
        return stop.is_set()

    owner = Owner()
    renewer = HoldRenewer(owner, 7.0, wait=wait)
    renewer.ensure_running()
    rounds.release()
    assert renewed.wait(10)
    del owner
    import gc

    gc.collect()
    rounds.release()
    thread = renewer._thread
    assert thread is not None
    thread.join(10)
    assert not renewer.running


def test_a_guardian_starts_its_renewer_with_the_first_reservation(make_guardian: GuardianFactory) -> None:
    """Renewal is on by default: the first reserved call starts the renewer, close() stops it."""
    guard = make_guardian(user_daily(llm_calls=10))
    assert not guard.supervisor.renewer.running
    ScriptedChatModel(replies=["x"], max_tokens=5).invoke("q", config={"callbacks": [guard.callback()]})
    assert guard.supervisor.renewer.running
    guard.close()
    assert not guard.supervisor.renewer.running


# -- B6: a tool charge whose reply was lost counts once -------------------------------------------------------


@pytest.mark.redis
def test_a_tool_charge_that_ran_after_the_client_timed_out_counts_once(redis_url: str, key_prefix: str) -> None:
    """fail_open: Redis runs the tool charge but the reply is lost (a timeout). The call goes on and its count is
    queued, yet the tool call is counted once: the charge and the queued commit share one marker."""
    store = RedisStore.from_url(redis_url, flush_interval_s=3600)
    send = store._script
    lost = {"left": 1}

    def lose_tool_reply(**kwargs: Any) -> Any:
        reply = send(**kwargs)
        if lost["left"] and _is_tool_charge(kwargs["args"]):
            lost["left"] -= 1
            raise redis.TimeoutError("Timeout reading from socket")
        return reply

    guard = Guardian(
        _policy({"settings": {"on_store_error": "fail_open"}, **user_daily(tool_calls=100)}),
        store=store,
        key_prefix=key_prefix,
    )
    handler = guard.callback(user="u")
    model = ScriptedChatModel(replies=[tool_call("lookup", {"query": "a"}), "ok"])
    from guardian.testing import react_graph

    graph = react_graph(model, [lookup])
    store._script = lose_tool_reply  # type: ignore[method-assign]
    graph.invoke({"messages": [HumanMessage("go")]}, config={"callbacks": [handler]})
    assert lost["left"] == 0
    guard.flush()
    (row,) = guard.status()
    assert row.spent.tool_calls == 1
    guard.close()


def _is_tool_charge(args: list[Any]) -> bool:
    """Whether a ledger script call carries a CHARGE reservation (ledger.lua: R call_id ttl mode ...)."""
    return any(value == "R" and i + 3 < len(args) and args[i + 3] == 2 for i, value in enumerate(args))


# -- B7: reported usage is not believed blindly ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("reported", "field"),
    [
        ({"input_tokens": 10, "output_tokens": -100_000, "total_tokens": -99_990}, "output_tokens"),
        ({"input_tokens": 2**63 + 5, "output_tokens": 10, "total_tokens": 2**63 + 15}, "input_tokens"),
    ],
)
def test_insane_usage_is_rejected_and_both_stores_agree(
    make_guardian: GuardianFactory, reported: dict[str, int], field: str
) -> None:
    """A negative output count cannot refund a budget and a count past 2**63 cannot wrap the ledger: the field
    is replaced by Guardian's own estimate, usage_rejected is logged, and later calls see the same budget on
    either store."""
    guard = make_guardian(user_daily(total_tokens=300))
    handler = guard.callback(user="u")
    bad = AIMessage(content="x", usage_metadata=reported)
    with capture_logs() as logs:
        ScriptedChatModel(replies=[bad], max_tokens=50).invoke("q", config={"callbacks": [handler]})
    (rejected,) = [e for e in logs if e["event"] == "usage_rejected"]
    assert field in rejected["reported"]
    (row,) = guard.status()
    spent = row.spent.total_tokens
    assert 0 < spent <= 10 + 50  # at most the valid input reported and the output hold
    good = ScriptedChatModel(replies=["ok"], cycle=True, max_tokens=50)
    hold, cost = prompt_tokens("q") + 50, prompt_tokens("q") + 1
    served = 0
    with pytest.raises(BudgetExceeded):
        for _ in range(100):
            good.invoke("q", config={"callbacks": [handler]})
            served += 1
    assert served == (300 - hold - spent) // cost + 1


@pytest.mark.parametrize("value", [float("inf"), float("nan"), "12", True])
def test_a_malformed_usage_count_is_rejected_and_the_call_still_committed(
    make_guardian: GuardianFactory, value: Any
) -> None:
    """A proxy reporting a non-finite or non-numeric output count (set after the message was built, as provider
    integrations do, so pydantic never checked it): the commit is not lost to a conversion error; the output
    count is Guardian's own and usage_rejected says so."""
    guard = make_guardian(user_daily(total_tokens=1_000))
    handler = guard.callback(user="u")
    bad = AIMessage(content="one two three")
    bad.usage_metadata = {"input_tokens": 7, "output_tokens": value, "total_tokens": 7}
    with capture_logs() as logs:
        ScriptedChatModel(replies=[bad], max_tokens=50).invoke("q", config={"callbacks": [handler]})
    assert not [e for e in logs if e["event"] == "guardian_internal_error"]
    (rejected,) = [e for e in logs if e["event"] == "usage_rejected"]
    assert "output_tokens" in rejected["reported"]
    (row,) = guard.status()
    assert row.spent.input_tokens == 7
    assert row.spent.output_tokens == 50  # the output hold: nothing streamed, so the cap is what it may have cost
    assert row.spent.llm_calls == 1


def test_legacy_token_usage_that_is_not_a_number_is_not_believed() -> None:
    """The llm_output path (completion models, older integrations) is parsed as carefully as usage_metadata."""
    from langchain_core.outputs import ChatGeneration, LLMResult

    from guardian.integrations.langchain import usage_from_result

    result = LLMResult(
        generations=[[ChatGeneration(message=AIMessage(content="x"))]],
        llm_output={"token_usage": {"prompt_tokens": float("inf"), "completion_tokens": 4.0}},
    )
    usage = usage_from_result(result)
    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens) == (-1, 4)  # -1: rejected by check_usage, never int(inf)


def test_a_call_whose_end_never_arrives_is_charged_its_hold_and_forgotten(make_guardian: GuardianFactory) -> None:
    """A model call started but never ended (its end event lost, a task cancelled without an error event) when
    its run ends: the request was sent, so its hold is charged (as an expired hold is), call_unfinished is logged,
    and the call leaves every table: the renewer does not keep renewing a hold nobody will settle."""
    from uuid import uuid4

    guard = make_guardian(user_daily(total_tokens=1_000))
    handler = guard.callback(user="u")
    root, child = uuid4(), uuid4()
    handler.on_chain_start({}, {}, run_id=root)
    meta = {"ls_provider": "openai", "ls_model_name": "gpt-4o-mini", "ls_max_tokens": 40}
    handler.on_chat_model_start({}, [[HumanMessage("q")]], run_id=child, parent_run_id=root, metadata=meta)
    assert len(guard.supervisor._live) == 1
    with capture_logs() as logs:
        handler.on_chain_end({}, run_id=root)
    (event,) = [e for e in logs if e["event"] == "call_unfinished"]
    assert event["charged_tokens"] == prompt_tokens("q") + 40
    assert guard.supervisor._live == {}
    assert guard.supervisor.renew_holds() == 0
    (row,) = guard.status()
    assert row.spent.total_tokens == prompt_tokens("q") + 40
    assert row.spent.llm_calls == 1
    assert handler.active_runs == 0


# -- C12: no prompt text in any log ----------------------------------------------------------------------------

SECRET = "4111 1111 1111 1111"


def _break_the_supervisor(guard: Guardian, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ValueError("a bug of ours")

    monkeypatch.setattr(guard.supervisor, "before_llm_call", broken)


@pytest.mark.parametrize("renderer", ["default", "json"])
def test_an_internal_error_logs_no_prompt_text(
    make_guardian: GuardianFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    renderer: str,
) -> None:
    """A bug of ours while a prompt holding a card number is in flight: guardian_internal_error names where it
    failed, and neither the card number nor any traceback (whose frame locals hold the messages) is logged, with
    standard logging (structlog unconfigured) or structlog rendering JSON with dict tracebacks."""
    caplog.set_level(logging.DEBUG, logger="guardian")
    out = io.StringIO()
    if renderer == "json":
        structlog.configure(
            processors=[structlog.processors.dict_tracebacks, structlog.processors.JSONRenderer()],
            logger_factory=structlog.PrintLoggerFactory(out),
        )
    guard = make_guardian(user_daily(llm_calls=10))
    _break_the_supervisor(guard, monkeypatch)
    with pytest.raises(GuardianInternalError) as caught:
        ScriptedChatModel(replies=["x"]).invoke(f"my card is {SECRET}", config={"callbacks": [guard.callback()]})
    printed = out.getvalue() + capsys.readouterr().out
    for record in caplog.records:
        assert not record.exc_info
        printed += record.getMessage() + "\n"
    assert "guardian_internal_error" in printed
    assert SECRET not in printed
    assert "Traceback" not in printed
    assert SECRET not in str(caught.value)
    if renderer == "json":
        (event,) = [json.loads(line) for line in printed.splitlines() if "guardian_internal_error" in line]
        assert event["error_type"] == "ValueError"
        assert event["location"].startswith("test_trust.py:")

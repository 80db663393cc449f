"""Tests of guardian.integrations.observe: callback payloads in, observations out."""

from __future__ import annotations

import operator
import threading
import uuid
from typing import Annotated, Any, TypedDict

from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, Generation, LLMResult
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import StructuredTool, ToolException
from langgraph.graph import END, START, StateGraph
from langgraph.prebuilt import ToolNode
from langgraph.types import Command, Send

from guardian.integrations.observe import (
    ObservationTracker,
    model_observation,
    node_name,
    node_observation,
    tool_name,
    tool_observation,
)
from guardian.loops import ModelObservation, NodeObservation, ToolObservation
from guardian.testing import ScriptedChatModel, TraceRecorder

SCHEMA = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}


def test_tool_observation_takes_the_tool_message_content() -> None:
    """on_tool_end's ToolMessage gives the text the model will read; args come from inputs."""
    output = ToolMessage(content="3 rows", tool_call_id="call_1", name="run_sql")
    obs = tool_observation({"name": "run_sql", "description": "."}, "{'q': 'x'}", {"q": "x"}, output)
    assert obs == ToolObservation("run_sql", {"q": "x"}, "3 rows")


def test_tool_observation_marks_handled_errors_and_exceptions() -> None:
    """status="error" messages and exceptions (on_tool_error) become error observations."""
    handled = ToolMessage(content="bad input", tool_call_id="c", status="error")
    assert tool_observation("t", "", {"q": 1}, handled).error is True
    raised = tool_observation("t", "", {"q": 1}, TimeoutError("upstream slow"), error=True)
    assert raised == ToolObservation("t", {"q": 1}, "TimeoutError: upstream slow", error=True)


def test_tool_observation_handles_string_tools_commands_and_raw_values() -> None:
    """String-input tools keep input_str as args; Command outputs give their ToolMessages;
    other values are serialized canonically."""
    assert tool_observation("echo", "hello", None, "hello").args == "hello"
    command: Command[Any] = Command(update={"messages": [ToolMessage(content="saved", tool_call_id="c")], "n": 1})
    assert tool_observation("save", "", {}, command).result == "saved"
    assert tool_observation("calc", "", {}, {"b": 2, "a": 1}).result == '{"a":1,"b":2}'
    blocks = ToolMessage(content=[{"type": "text", "text": "part one"}, "part two"], tool_call_id="c")
    assert tool_observation("t", "", {}, blocks).result == "part one\npart two"
    assert tool_name(None, "fallback") == "fallback"
    assert tool_name({"name": "search"}, "run name") == "search"


def test_node_name_needs_the_graph_step_tag() -> None:
    """A node run has langgraph_node metadata and a graph:step tag; inner runnables only inherit
    the metadata. Without tags, the run name must equal the node name."""
    metadata = {"langgraph_node": "agent", "langgraph_step": 3}
    assert node_name(metadata, ["graph:step:3"]) == "agent"
    assert node_name(metadata, ["seq:step:1"]) is None
    assert node_name({}, ["graph:step:1"]) is None
    assert node_name(metadata, None, "agent") == "agent"
    assert node_name(metadata, None, "RunnableSequence") is None
    assert node_observation(metadata, {"x": 1}, tags=["graph:step:3"]) == NodeObservation("agent", {"x": 1})
    assert node_observation(metadata, {"x": 1}, tags=[]) is None


def test_model_observation_reads_text_tool_calls_and_usage() -> None:
    """The first generation's text, its tool calls as (name, args), total tokens, model name."""
    message = AIMessage(
        content=[{"type": "text", "text": "Searching."}],
        tool_calls=[{"name": "search", "args": {"q": "x"}, "id": "c1", "type": "tool_call"}],
        usage_metadata={"input_tokens": 90, "output_tokens": 10, "total_tokens": 100},
        response_metadata={"model_name": "gpt-4o-mini"},
    )
    obs = model_observation(LLMResult(generations=[[ChatGeneration(message=message)]]))
    assert obs == ModelObservation("Searching.", [("search", {"q": "x"})], tokens=100, model="gpt-4o-mini")
    assert model_observation(LLMResult(generations=[[ChatGeneration(message=message)]]), model="m").model == "m"


def test_model_observation_falls_back_to_llm_output_and_plain_generations() -> None:
    """Text completions and providers that report usage only in llm_output still count."""
    result = LLMResult(
        generations=[[Generation(text="plain")]],
        llm_output={"token_usage": {"total_tokens": 12}, "model_name": "davinci"},
    )
    assert model_observation(result) == ModelObservation("plain", (), tokens=12, model="davinci")
    broken = AIMessage(content="", invalid_tool_calls=[{"name": "f", "args": "{oops", "id": "1", "error": None}])
    obs = model_observation(LLMResult(generations=[[ChatGeneration(message=broken)]]))
    assert obs.tool_calls == (("f", {"invalid_args": "{oops"}),)


def test_tracker_pairs_starts_and_ends_and_forgets_finished_runs() -> None:
    """Ends return observations for runs it saw start; errors and ends free their entries."""
    tracker = ObservationTracker()
    node_run, inner_run, tool_run, failed_run = (uuid.uuid4() for _ in range(4))
    assert tracker.on_chain_start(node_run, {"langgraph_node": "agent"}, tags=["graph:step:1"]) == "agent"
    assert tracker.on_chain_start(inner_run, {"langgraph_node": "agent"}, tags=["seq:step:1"]) is None
    tracker.on_tool_start(tool_run, {"name": "search"}, "{'q': 'x'}", {"q": "x"})
    tracker.on_tool_start(failed_run, "search", "{'q': 'y'}", {"q": "y"})
    assert tracker.open_runs() == 3
    assert tracker.on_chain_end(inner_run, {}) is None
    assert tracker.on_tool_end(tool_run, ToolMessage(content="hit", tool_call_id="c")) == ToolObservation(
        "search", {"q": "x"}, "hit"
    )
    assert tracker.on_tool_error(failed_run, ValueError("bad")) == ToolObservation(
        "search", {"q": "y"}, "ValueError: bad", error=True
    )
    assert tracker.on_chain_end(node_run, {"messages": []}) == NodeObservation("agent", {"messages": []})
    assert tracker.open_runs() == 0
    assert tracker.on_tool_end(uuid.uuid4(), "unknown") is None
    tracker.on_chain_start(node_run, {"langgraph_node": "agent"}, tags=["graph:step:2"])
    tracker.on_chain_error(node_run)
    assert tracker.open_runs() == 0


def test_tracker_memory_is_capped_when_end_events_go_missing() -> None:
    """Never more than max_open runs are remembered; the oldest are forgotten first."""
    tracker = ObservationTracker(max_open=10)
    runs = [uuid.uuid4() for _ in range(25)]
    for run in runs:
        tracker.on_tool_start(run, "t", "", {})
    assert tracker.open_runs() == 10
    assert tracker.on_tool_end(runs[0], "x") is None
    assert tracker.on_tool_end(runs[-1], "x") is not None


def test_tracker_is_thread_safe() -> None:
    """Starts and ends from many threads lose nothing and leave nothing behind."""
    tracker = ObservationTracker()
    results: list[ToolObservation | None] = []
    lock = threading.Lock()

    def work(n: int) -> None:
        for i in range(200):
            run = uuid.uuid4()
            tracker.on_tool_start(run, f"t{n}", "", {"i": i})
            obs = tracker.on_tool_end(run, "ok")
            with lock:
                results.append(obs)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 1600
    assert all(r is not None for r in results)
    assert tracker.open_runs() == 0


class FanState(TypedDict):
    items: Annotated[list[str], operator.add]
    n: int


def test_recorder_sees_node_runs_only_including_subgraph_nodes() -> None:
    """In a real graph, only node runs are recorded: not inner runnables, routing functions or
    a subgraph's own run, but the subgraph's nodes and Send fan-out workers are."""

    def inc(x: int) -> int:
        return x + 1

    def double(x: int) -> int:
        return x * 2

    inner = RunnableLambda(inc, name="inc") | RunnableLambda(double, name="dbl")

    def start(state: FanState) -> dict[str, Any]:
        return {"items": [str(inner.invoke(state["n"]))], "n": state["n"] + 1}

    def fan(state: FanState) -> list[Send]:
        return [Send("worker", {"items": [], "n": i}) for i in range(2)]

    sub = StateGraph(FanState)
    sub.add_node("inside", lambda s: {"items": ["sub"]})
    sub.add_edge(START, "inside")
    sub.add_edge("inside", END)

    graph = StateGraph(FanState)
    graph.add_node("start", start)
    graph.add_node("worker", lambda s: {"items": [f"w{s['n']}"]})
    graph.add_node("sub", sub.compile())
    graph.add_edge(START, "start")
    graph.add_conditional_edges("start", fan, ["worker"])
    graph.add_edge("worker", "sub")
    graph.add_edge("sub", END)
    recorder = TraceRecorder()
    graph.compile().invoke({"items": [], "n": 0}, config={"callbacks": [recorder]})
    observations = recorder.observations
    assert all(isinstance(o, NodeObservation) for o in observations)
    names = [o.node for o in observations if isinstance(o, NodeObservation)]
    assert names[0] == "start"
    assert sorted(names[1:3]) == ["worker", "worker"]
    assert names[3:] == ["inside", "sub"]
    assert observations[0] == NodeObservation("start", {"items": ["2"], "n": 1})
    assert recorder.tracker.open_runs() == 0


class ReactState(TypedDict):
    messages: Annotated[list[Any], operator.add]


def test_recorder_orders_a_react_step_and_sees_raised_tool_errors() -> None:
    """A ReAct step records reply, model node, tool call, tools node, in that order; a tool
    that raises under ToolNode(handle_tool_errors=True) is an error observation."""

    def fail(**kwargs: Any) -> str:
        raise ToolException(f"no access to {kwargs['q']}")

    tool = StructuredTool(name="read", description="Read.", args_schema=SCHEMA, func=fail)
    call = {"name": "read", "args": {"q": "vault"}, "id": "call_1", "type": "tool_call"}
    model = ScriptedChatModel(replies=[AIMessage(content="", tool_calls=[call]), "Cannot read it."])

    def agent(state: ReactState) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    graph = StateGraph(ReactState)
    graph.add_node("agent", agent)
    graph.add_node("tools", ToolNode([tool], handle_tool_errors=True))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", lambda s: "tools" if s["messages"][-1].tool_calls else END)
    graph.add_edge("tools", "agent")
    recorder = TraceRecorder()
    graph.compile().invoke({"messages": [HumanMessage(content="read the vault")]}, config={"callbacks": [recorder]})
    kinds = [type(o).__name__ for o in recorder.observations]
    assert kinds == [
        "ModelObservation",
        "NodeObservation",
        "ToolObservation",
        "NodeObservation",
        "ModelObservation",
        "NodeObservation",
    ]
    tool_obs = recorder.observations[2]
    assert tool_obs == ToolObservation("read", {"q": "vault"}, "ToolException: no access to vault", error=True)
    first = recorder.observations[0]
    assert isinstance(first, ModelObservation)
    assert first.tokens > 0
    assert first.tool_calls == (("read", {"q": "vault"}),)
    second = recorder.observations[4]
    assert isinstance(second, ModelObservation)
    assert second.node == "agent"
    assert second.prompt is not None
    assert [m.type for m in second.prompt] == ["human", "ai", "tool"]  # what the second call read
    assert recorder.tracker.open_runs() == 0


def test_tracker_attaches_the_prompt_and_node_and_forgets_failed_calls() -> None:
    """A model call's prompt and LangGraph node, remembered at its start, travel with its reply;
    a failed call is forgotten; a reply whose start was not seen has no prompt."""
    tracker = ObservationTracker()
    ok, failed = uuid.uuid4(), uuid.uuid4()
    prompt = [HumanMessage(content="q")]
    tracker.on_chat_model_start(ok, [prompt], {"langgraph_node": "planner"})
    tracker.on_chat_model_start(failed, [prompt], None)
    assert tracker.open_runs() == 2
    tracker.on_llm_error(failed)
    reply = LLMResult(generations=[[ChatGeneration(message=AIMessage(content="a"))]])
    obs = tracker.on_llm_end(ok, reply)
    assert (obs.text, obs.node, obs.prompt) == ("a", "planner", prompt)
    assert tracker.open_runs() == 0
    assert tracker.on_llm_end(uuid.uuid4(), reply).prompt is None

"""More corpus families: maps over distinct inputs, Send fan-outs, subgraphs, multi-agent
handoffs, human-in-the-loop, in-band errors, progress reports, and the loops that hid from the
first detector (volatile tokens, alternation while the state grows, loops inside subgraphs).

Built like the rest of the corpus (scripted models driving real LangGraph runs); labels follow
the same rule: ``loop_start`` is the first model call that repeats earlier work.
"""

from __future__ import annotations

import json
import operator
import random
import uuid
from collections.abc import Callable
from typing import Annotated, Any, TypedDict

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import Command, Send, interrupt

from guardian.testing import TraceRecorder
from tests.loops.corpus import (
    VERBS,
    WORDS,
    Script,
    ToolBox,
    Trace,
    call_turn,
    final_answer,
    light_paraphrase,
    model_call_index,
    model_of,
    paragraph,
    progress_prefix,
    question,
    request,
    run_agent,
    run_graph,
    say,
    sentence,
)


def review(rng: random.Random) -> str:
    return f"Customer review #{rng.randint(1000, 99999)}: {sentence(rng, 8, 20)}"


# --- maps over distinct inputs (progressing) -----------------------------------------------------


class ItemsState(TypedDict):
    items: list[str]
    index: int
    results: Annotated[list[str], operator.add]


def items_graph(answer: Callable[[str, int], str], *, count_in_update: bool = True) -> Any:
    """A StateGraph that walks a list: each pass classifies one item and appends to ``results``."""
    model = ScriptFn(answer)

    def classify(state: ItemsState, config: RunnableConfig) -> dict[str, Any]:
        item = state["items"][state["index"]]
        prompt = [SystemMessage(content="Classify the sentiment. Answer with one word."), HumanMessage(content=item)]
        reply = model.chat.invoke(prompt, config)
        update: dict[str, Any] = {"results": [str(reply.content)]}
        if count_in_update:
            update["index"] = state["index"] + 1
        return update

    def advance(state: ItemsState) -> dict[str, Any]:
        return {"index": state["index"] + 1}

    def more(state: ItemsState) -> str:
        return "classify" if state["index"] < len(state["items"]) else END

    graph = StateGraph(ItemsState)
    graph.add_node("classify", classify)
    if count_in_update:
        graph.add_edge(START, "classify")
        graph.add_conditional_edges("classify", more, ["classify", END])
    else:
        graph.add_node("advance", advance)
        graph.add_edge(START, "classify")
        graph.add_edge("classify", "advance")
        graph.add_conditional_edges("advance", more, ["classify", END])
    return graph.compile()


class ScriptFn:
    """A scripted chat model whose reply is a function of the prompt's last message and the call number."""

    def __init__(self, answer: Callable[[str, int], str | AIMessage]) -> None:
        self.calls = 0

        def reply(messages: Any) -> AIMessage:
            n, self.calls = self.calls, self.calls + 1
            out = answer(str(messages[-1].content), n)
            return out if isinstance(out, AIMessage) else AIMessage(content=out)

        self.chat = model_of_fn(reply)


def model_of_fn(reply: Callable[[Any], AIMessage]) -> Any:
    from guardian.testing import ScriptedChatModel

    return ScriptedChatModel(replies=[reply], cycle=True)


def batch_classification(rng: random.Random) -> Trace:
    """A map over distinct reviews; the model says "positive" (or a fixed JSON verdict) every time."""
    items = [review(rng) for _ in range(rng.randint(5, 14))]
    fixed = rng.choice(("positive", "Positive.", json.dumps({"label": "ok", "confidence": "high"})))
    graph = items_graph(lambda text, n: fixed, count_in_update=rng.random() < 0.5)
    obs = run_graph(graph, {"items": items, "index": 0, "results": []}, 200)
    return Trace("", "batch_classification", False, obs)


class FanState(TypedDict):
    docs: list[str]
    summaries: Annotated[list[str], operator.add]
    report: str


class DocState(TypedDict):
    doc: str


def fanout_extraction(rng: random.Random) -> Trace:
    """Send fan-out over documents: most extractions are the same "No action items."; then a reduce."""
    docs = [f"Meeting notes {i}: {paragraph(rng, rng.randint(1, 3))}" for i in range(rng.randint(4, 12))]
    hits = set(rng.sample(range(len(docs)), rng.randint(0, 2)))
    worker = ScriptFn(lambda text, n: "No action items." if int(text.split()[2][:-1]) not in hits else sentence(rng))
    reducer = ScriptFn(lambda text, n: final_answer(rng))

    def extract(state: DocState, config: RunnableConfig) -> dict[str, Any]:
        reply = worker.chat.invoke([HumanMessage(content=state["doc"])], config)
        return {"summaries": [str(reply.content)]}

    def reduce(state: FanState, config: RunnableConfig) -> dict[str, Any]:
        reply = reducer.chat.invoke([HumanMessage(content="\n".join(state["summaries"]))], config)
        return {"report": str(reply.content)}

    graph = StateGraph(FanState)
    graph.add_node("extract", extract)
    graph.add_node("reduce", reduce)
    graph.add_conditional_edges(START, lambda s: [Send("extract", {"doc": d}) for d in s["docs"]], ["extract"])
    graph.add_edge("extract", "reduce")
    graph.add_edge("reduce", END)
    obs = run_graph(graph.compile(), {"docs": docs, "summaries": [], "report": ""}, 50)
    return Trace("", "fanout_extraction", False, obs)


def progress_reports(rng: random.Random) -> Trace:
    """An agent processing records one by one, reporting "record 7 of 25 (28% done)" between calls."""
    box = ToolBox(rng)
    total = rng.randint(6, 16)
    name = box.add("process_next", ["batch"], lambda a, n: f"processed record {n + 1}: ok")
    turns = [
        (
            lambda i=i: call_turn(
                rng, f"Processed {i} of {total} records ({100 * i // total}% done).", [(name, {"batch": "main"})]
            )
        )
        for i in range(total)
    ]
    obs = run_agent(Script(turns, final=final_answer(rng)), box, question(rng), 200)
    return Trace("", "progress_reports", False, obs)


class PipeState(TypedDict):
    items: list[str]
    index: int
    outputs: Annotated[list[str], operator.add]


class StepState(TypedDict):
    text: str
    result: str


def subgraph_pipeline(rng: random.Random) -> Trace:
    """A compiled subgraph as a node, run once per distinct item; its answer is often the same."""
    same = rng.choice(("Compliant.", "No issues found."))
    inner_model = ScriptFn(lambda text, n: same if rng.random() < 0.7 else sentence(rng))

    def check(state: StepState, config: RunnableConfig) -> dict[str, Any]:
        reply = inner_model.chat.invoke([HumanMessage(content=f"Check this clause: {state['text']}")], config)
        return {"result": str(reply.content)}

    inner = StateGraph(StepState)
    inner.add_node("check", check)
    inner.add_edge(START, "check")
    inner.add_edge("check", END)
    sub = inner.compile()

    def run_item(state: PipeState, config: RunnableConfig) -> dict[str, Any]:
        out = sub.invoke({"text": state["items"][state["index"]], "result": ""}, config)
        return {"outputs": [out["result"]], "index": state["index"] + 1}

    graph = StateGraph(PipeState)
    graph.add_node("item", run_item)
    graph.add_edge(START, "item")
    graph.add_conditional_edges("item", lambda s: "item" if s["index"] < len(s["items"]) else END, ["item", END])
    items = [f"Clause {i}: {sentence(rng, 6, 14)}" for i in range(rng.randint(4, 10))]
    obs = run_graph(graph.compile(), {"items": items, "index": 0, "outputs": []}, 200)
    return Trace("", "subgraph_pipeline", False, obs)


# --- multi-agent ---------------------------------------------------------------------------------


class TeamState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


def team_graph(supervisor: Script, workers: dict[str, Callable[[int], str]]) -> Any:
    """A supervisor model that hands off (tool-call shaped) to worker *models* (create_agent
    subgraphs) and reads their answers."""
    boss = model_of(supervisor)

    def replies(answer: Callable[[int], str]) -> Callable[[int], AIMessage]:
        return lambda i: AIMessage(content=answer(i))

    agents = {name: create_agent(model_of(Script([], loop=replies(answer))), []) for name, answer in workers.items()}

    def supervise(state: TeamState, config: RunnableConfig) -> dict[str, Any]:
        return {"messages": [boss.invoke(state["messages"], config)]}

    def make(name: str) -> Any:
        def work(state: TeamState, config: RunnableConfig) -> dict[str, Any]:
            last = state["messages"][-1]
            task = last.tool_calls[0]["args"]["task"] if isinstance(last, AIMessage) and last.tool_calls else ""
            out = agents[name].invoke({"messages": [HumanMessage(content=task)]}, config)
            reply = out["messages"][-1]
            return {"messages": [HumanMessage(content=str(reply.content), name=name)]}

        return work

    def route(state: TeamState) -> str:
        last = state["messages"][-1]
        return str(last.tool_calls[0]["args"]["to"]) if isinstance(last, AIMessage) and last.tool_calls else END

    graph = StateGraph(TeamState)
    graph.add_node("supervisor", supervise)
    for name in workers:
        graph.add_node(name, make(name))
        graph.add_edge(name, "supervisor")
    graph.add_edge(START, "supervisor")
    graph.add_conditional_edges("supervisor", route, [*workers, END])
    return graph.compile()


def handoff(rng: random.Random, to: str, task: str) -> Callable[[], AIMessage]:
    return lambda: call_turn(rng, "", [("transfer", {"to": to, "task": task})])


def supervisor_handoff(rng: random.Random) -> Trace:
    """A supervisor hands distinct tasks to a researcher and a writer until the report is done."""
    rounds = rng.randint(2, 5)
    turns = [
        handoff(rng, ("researcher", "writer")[i % 2], f"Part {i + 1}: {sentence(rng, 3, 6)}") for i in range(rounds)
    ]
    workers = {
        "researcher": lambda i: f"Findings {i + 1}: {paragraph(rng, 1)}",
        "writer": lambda i: f"Draft section {i + 1}: {paragraph(rng, 1)}",
    }
    graph = team_graph(Script(turns, final=final_answer(rng)), workers)
    obs = run_graph(graph, {"messages": [HumanMessage(content=question(rng))]}, 200)
    return Trace("", "supervisor_handoff", False, obs)


def supervisor_pingpong(rng: random.Random) -> Trace:
    """After real work, the supervisor keeps handing the same task back and forth between two
    agents that answer the same thing each time."""
    real = rng.randint(0, 2)
    turns = [handoff(rng, ("researcher", "writer")[i % 2], f"Part {i + 1}: {sentence(rng, 3, 6)}") for i in range(real)]
    task = sentence(rng, 4, 8)
    stuck = {"researcher": f"Findings: {paragraph(rng, 1)}", "writer": f"Draft: {paragraph(rng, 1)}"}
    workers = {
        "researcher": lambda i: stuck["researcher"] if i >= (real + 1) // 2 else f"Findings {i}: {paragraph(rng, 1)}",
        "writer": lambda i: stuck["writer"] if i >= real // 2 else f"Draft {i}: {paragraph(rng, 1)}",
    }
    names = ("researcher", "writer")
    script = Script(turns, loop=lambda i: handoff(rng, names[i % 2], task)())
    obs = run_graph(
        team_graph(script, workers), {"messages": [HumanMessage(content=question(rng))]}, rng.randint(60, 90)
    )
    # supervisor and worker calls alternate: the supervisor's third handoff of the stuck task repeats its first
    return Trace("", "supervisor_pingpong", True, obs, model_call_index(obs, 2 * real + 4))


# --- human in the loop ---------------------------------------------------------------------------


class ApprovalState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    approved: bool


def human_in_the_loop(rng: random.Random) -> Trace:
    """A drafting agent pauses for approval (``interrupt``), is resumed with feedback, revises, ends."""
    rounds = rng.randint(1, 3)
    drafts = [paragraph(rng, rng.randint(2, 4)) for _ in range(rounds + 1)]
    writer = model_of(Script([say(d) for d in drafts], final="Done."))

    def write(state: ApprovalState, config: RunnableConfig) -> dict[str, Any]:
        return {"messages": [writer.invoke(state["messages"], config)]}

    def approve(state: ApprovalState) -> dict[str, Any]:
        answer = interrupt({"draft_chars": len(str(state["messages"][-1].content))})
        if answer == "ok":
            return {"approved": True}
        return {"messages": [HumanMessage(content=str(answer))]}

    graph = StateGraph(ApprovalState)
    graph.add_node("write", write)
    graph.add_node("approve", approve)
    graph.add_edge(START, "write")
    graph.add_edge("write", "approve")
    graph.add_conditional_edges("approve", lambda s: END if s.get("approved") else "write", ["write", END])
    app = graph.compile(checkpointer=InMemorySaver())
    recorder = TraceRecorder()
    config: RunnableConfig = {
        "callbacks": [recorder],
        "configurable": {"thread_id": str(uuid.UUID(int=rng.getrandbits(128)))},
    }
    app.invoke({"messages": [HumanMessage(content=question(rng))], "approved": False}, config)
    for i in range(rounds):
        app.invoke(Command(resume=f"Please {rng.choice(VERBS[:5])} the {rng.choice(WORDS)} part ({i + 1})."), config)
    app.invoke(Command(resume="ok"), config)
    return Trace("", "human_in_the_loop", False, recorder.observations)


# --- in-band errors and coding (progressing) ------------------------------------------------------


def rate_limit_clears(rng: random.Random) -> Trace:
    """A tool answers an in-band "rate limited" text (a normal result, with a fresh request id)
    one to three times, then real data."""
    box = ToolBox(rng)
    limited = rng.randint(1, 3)
    data = paragraph(rng, 2)

    def fetch(args: dict[str, Any], n: int) -> str:
        if n < limited:
            return f"429 Too Many Requests: retry later (request id {uuid.UUID(int=rng.getrandbits(128))})"
        return data

    name = box.add(rng.choice(("fetch_report", "get_prices", "list_accounts")), ["account"], fetch)
    args = {"account": rng.choice(WORDS)}
    retries = [lambda: call_turn(rng, "Rate limited; retrying.", [(name, args)]) for _ in range(limited + 1)]
    script = Script(
        progress_prefix(rng, box, rng.randint(0, 2)) + retries + progress_prefix(rng, box, 2), final=final_answer(rng)
    )
    obs = run_agent(script, box, question(rng), 200)
    return Trace("", "rate_limit_clears", False, obs)


def edit_test_coding(rng: random.Random) -> Trace:
    """Edit, run the tests (failures shrink), edit again, until they pass; the model re-runs the
    same test command with the same words each time."""
    box = ToolBox(rng)
    failing = rng.randint(2, 6)
    names = [f"test_{rng.choice(WORDS)}_{i}" for i in range(failing)]

    def tests(args: dict[str, Any], n: int) -> str:
        left = names[n + 1 :]
        return f"{len(left)} failed: {', '.join(left)}" if left else f"{failing + 10} passed"

    box.add("run_tests", ["target"], tests)
    edit = box.add("edit_file", ["path", "patch"], lambda a, n: "ok")
    turns: list[Callable[[], AIMessage]] = []
    for _ in range(failing):
        turns.append(request(rng, [(edit, {"path": f"src/{rng.choice(WORDS)}.py", "patch": sentence(rng, 4, 8)})]))
        turns.append(lambda: call_turn(rng, "Running the tests.", [("run_tests", {"target": "tests/"})]))
    obs = run_agent(Script(turns, final=final_answer(rng)), box, question(rng), 200)
    return Trace("", "edit_test_coding", False, obs)


# --- loops that hid from the first detector ------------------------------------------------------


def volatile_loop(rng: random.Random) -> Trace:
    """The same call forever; the result is the same text but for a fresh timestamp, UUID,
    session id or hex request id (a normal result, not an error)."""
    box = ToolBox(rng)
    prefix = progress_prefix(rng, box, rng.randint(0, 3))
    body = paragraph(rng, rng.randint(1, 2))
    kind = rng.randrange(4)

    def stamp(n: int) -> str:
        if kind == 0:
            return f"as of 2026-11-{1 + n % 28:02d}T{n % 24:02d}:{(7 * n) % 60:02d}:{(13 * n) % 60:02d}Z"
        if kind == 1:
            return f"trace {uuid.UUID(int=rng.getrandbits(128))}"
        if kind == 2:
            return f"session {rng.getrandbits(64):016x}"
        return f"request_id=req_{rng.getrandbits(48):012x} ts={1764000000 + 37 * n}"

    name = box.add(
        rng.choice(("get_status", "fetch_dashboard", "read_queue")), ["name"], lambda a, n: f"{body} ({stamp(n)})"
    )
    args = {"name": rng.choice(WORDS)}
    texts = ["", "Checking again.", sentence(rng, 3, 6)]
    script = Script(prefix, lambda i: call_turn(rng, rng.choice(texts), [(name, args)]))
    obs = run_agent(script, box, question(rng), rng.randint(40, 80))
    return Trace("", "volatile_loop", True, obs, model_call_index(obs, len(prefix) + 1))


class BounceState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    log: Annotated[list[str], operator.add]
    round: int


def bounce_growing(rng: random.Random) -> Trace:
    """Planner and executor bounce the same two messages while the state grows (a log list and a
    round counter in every update)."""
    real = rng.randint(0, 2)
    plans = [f"Plan {i + 1}: {sentence(rng, 4, 8)}" for i in range(real)]
    reports = [f"Result {i + 1}: {paragraph(rng, 1)}" for i in range(real)]
    stuck_plan, stuck_report = f"Next: {sentence(rng, 4, 8)}", f"Could not proceed: {sentence(rng, 4, 8)}"
    planner = model_of(Script([say(p) for p in plans], loop=lambda i: AIMessage(content=stuck_plan)))
    executor = model_of(Script([say(r) for r in reports], loop=lambda i: AIMessage(content=stuck_report)))

    def plan(state: BounceState, config: RunnableConfig) -> dict[str, Any]:
        reply = planner.invoke(state["messages"], config)
        return {"messages": [reply], "log": [f"plan {state['round']}"], "round": state["round"] + 1}

    def execute(state: BounceState, config: RunnableConfig) -> dict[str, Any]:
        reply = executor.invoke(state["messages"], config)
        return {"messages": [HumanMessage(content=str(reply.content), name="executor")], "log": ["executed"]}

    graph = StateGraph(BounceState)
    graph.add_node("planner", plan)
    graph.add_node("executor", execute)
    graph.add_edge(START, "planner")
    graph.add_edge("planner", "executor")
    graph.add_edge("executor", "planner")
    inputs = {"messages": [HumanMessage(content=question(rng))], "log": [], "round": 0}
    obs = run_graph(graph.compile(), inputs, rng.randint(40, 80))
    return Trace("", "bounce_growing", True, obs, model_call_index(obs, 2 * real + 2))


def reflection_paraphrase(rng: random.Random) -> Trace:
    """A writer and a critic model: after real revisions both restate themselves in slightly
    different words every round."""
    real = rng.randint(0, 2)
    drafts = [paragraph(rng, rng.randint(2, 3)) for _ in range(real + 1)]
    critiques = [f"{sentence(rng, 6, 12)} {sentence(rng, 6, 12)}" for _ in range(real + 1)]
    writer = model_of(
        Script(
            [say(d) for d in drafts[:-1]],
            loop=lambda i: AIMessage(content=drafts[-1] if i == 0 else light_paraphrase(rng, drafts[-1])),
        )
    )
    critic = model_of(
        Script(
            [say(c) for c in critiques[:-1]],
            loop=lambda i: AIMessage(content=critiques[-1] if i == 0 else light_paraphrase(rng, critiques[-1])),
        )
    )

    def write(state: TeamState, config: RunnableConfig) -> dict[str, Any]:
        return {"messages": [writer.invoke(state["messages"], config)]}

    def criticise(state: TeamState, config: RunnableConfig) -> dict[str, Any]:
        reply = critic.invoke([SystemMessage(content="Critique the draft."), state["messages"][-1]], config)
        return {"messages": [HumanMessage(content=str(reply.content), name="critic")]}

    graph = StateGraph(TeamState)
    graph.add_node("writer", write)
    graph.add_node("critic", criticise)
    graph.add_edge(START, "writer")
    graph.add_edge("writer", "critic")
    graph.add_edge("critic", "writer")
    obs = run_graph(graph.compile(), {"messages": [HumanMessage(content=question(rng))]}, rng.randint(40, 80))
    return Trace("", "reflection_paraphrase", True, obs, model_call_index(obs, 2 * real + 2))


def stuck_item(rng: random.Random) -> Trace:
    """A map whose index never advances (a bug in the routing): the same item, the same prompt,
    the same answer, call after call."""
    items = [review(rng) for _ in range(rng.randint(4, 8))]
    fixed = rng.choice(("positive", "negative", "neutral"))
    bad = rng.randint(0, 2)
    model = ScriptFn(lambda text, n: fixed)

    def classify(state: ItemsState, config: RunnableConfig) -> dict[str, Any]:
        item = state["items"][state["index"]]
        reply = model.chat.invoke([SystemMessage(content="Classify."), HumanMessage(content=item)], config)
        step = 1 if state["index"] < bad else 0
        return {"results": [str(reply.content)], "index": state["index"] + step}

    graph = StateGraph(ItemsState)
    graph.add_node("classify", classify)
    graph.add_edge(START, "classify")
    graph.add_conditional_edges("classify", lambda s: "classify", ["classify", END])
    obs = run_graph(graph.compile(), {"items": items, "index": 0, "results": []}, rng.randint(40, 80))
    return Trace("", "stuck_item", True, obs, model_call_index(obs, bad + 1))


def subgraph_loop(rng: random.Random) -> Trace:
    """A parent graph re-invokes a tool-using subagent (``create_agent``) with the same task; the
    subagent does the same call and gets the same answer every time."""
    box = ToolBox(rng)
    name = box.fixed(rng.choice(("search_kb", "lookup_customer")), ["query"])
    args = {"query": f"{rng.choice(WORDS)} {rng.choice(WORDS)}"}
    answer = f"Not found yet: {sentence(rng, 4, 8)}"
    inner = model_of(
        Script([], loop=lambda i: call_turn(rng, "", [(name, args)]) if i % 2 == 0 else AIMessage(content=answer))
    )
    agent = create_agent(inner, list(box.tools.values()))
    task = sentence(rng, 4, 8)

    def delegate(state: TeamState, config: RunnableConfig) -> dict[str, Any]:
        out = agent.invoke({"messages": [HumanMessage(content=task)]}, config)
        return {"messages": [HumanMessage(content=str(out["messages"][-1].content), name="subagent")]}

    graph = StateGraph(TeamState)
    graph.add_node("delegate", delegate)
    graph.add_edge(START, "delegate")
    graph.add_edge("delegate", "delegate")
    obs = run_graph(graph.compile(), {"messages": [HumanMessage(content=question(rng))]}, rng.randint(15, 30))
    # calls: 1 call, 2 answer | 3 call (repeats 1), ...
    return Trace("", "subgraph_loop", True, obs, model_call_index(obs, 2))


GRAPH_LOOPING: tuple[Callable[[random.Random], Trace], ...] = (
    volatile_loop,
    bounce_growing,
    reflection_paraphrase,
    stuck_item,
    subgraph_loop,
    supervisor_pingpong,
)
GRAPH_PROGRESSING: tuple[Callable[[random.Random], Trace], ...] = (
    batch_classification,
    fanout_extraction,
    progress_reports,
    subgraph_pipeline,
    supervisor_handoff,
    human_in_the_loop,
    rate_limit_clears,
    edit_test_coding,
)

__all__ = ["GRAPH_LOOPING", "GRAPH_PROGRESSING"]

"""A labeled corpus of agent traces, generated from real LangGraph runs on scripted models.

Every trace is the list of observations :class:`~guardian.integrations.observe.TraceRecorder`
recorded while a ``langchain.agents.create_agent`` agent or a hand-built ``StateGraph`` ran on
:class:`~guardian.testing.ScriptedChatModel`. Scenarios are drawn from a seeded generator
(tool names, arguments, result texts and lengths, how much real work precedes a loop), so the
traces differ from each other but are the same on every run.

Looping traces run until LangGraph's ``recursion_limit`` stops them, and are labeled with
``loop_start``: the index of the first observation of the loop, which is the first model call
that repeats earlier work (the earlier occurrence itself is legitimate). Progressing traces
end with a final answer.
"""

from __future__ import annotations

import contextlib
import operator
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, TypedDict

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, HumanMessage
from langchain_core.tools import BaseTool, StructuredTool, ToolException
from langgraph.errors import GraphRecursionError
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.prebuilt import ToolNode
from langgraph.types import Send

from guardian.loops import ModelObservation, Observation
from guardian.testing import ScriptedChatModel, TraceRecorder

__all__ = ["BASE_LOOPING", "BASE_PROGRESSING", "PER_FAMILY", "Trace", "light_paraphrase"]

PER_FAMILY = 6

# fmt: off
WORDS = (
    "account", "agent", "alpha", "analysis", "answer", "archive", "audit", "backlog", "balance",
    "batch", "billing", "branch", "budget", "cache", "campaign", "capacity", "catalog", "cluster",
    "compliance", "config", "contract", "coverage", "customer", "dashboard", "dataset", "deadline",
    "deploy", "design", "device", "draft", "endpoint", "estimate", "export", "feature", "feedback",
    "filter", "forecast", "gateway", "growth", "incident", "index", "inventory", "invoice", "issue",
    "latency", "ledger", "license", "limit", "margin", "market", "metric", "migration", "model",
    "module", "network", "onboarding", "order", "outage", "owner", "payment", "pipeline", "plan",
    "policy", "pricing", "priority", "product", "query", "queue", "quota", "rate", "record",
    "region", "release", "report", "request", "revenue", "review", "risk", "roadmap", "schema",
    "search", "segment", "server", "service", "shipment", "signal", "storage", "supplier",
    "support", "survey", "target", "team", "ticket", "timeline", "traffic", "trend", "usage",
    "vendor", "version", "volume", "warehouse", "workflow",
)
VERBS = (
    "checked", "compared", "collected", "reviewed", "summarized", "updated", "validated",
    "exported", "merged", "flagged",
)
TOOL_NAMES = (
    "search_docs", "search_web", "lookup_customer", "get_invoice", "list_orders", "query_metrics",
    "fetch_page", "read_file", "get_ticket", "run_sql", "get_weather", "find_flights",
    "check_inventory", "get_exchange_rate", "translate_text", "list_repos", "get_forecast",
    "search_kb",
)
ARG_NAMES = (
    "query", "customer_id", "region", "topic", "path", "ticket", "sql", "city", "sku", "symbol",
    "account",
)
# fmt: on


def sentence(rng: random.Random, low: int = 6, high: int = 14) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(low, high))]
    return (" ".join(words)).capitalize() + "."


def paragraph(rng: random.Random, sentences: int) -> str:
    return " ".join(sentence(rng) for _ in range(sentences))


def tool_result(rng: random.Random) -> str:
    """A result text of varied length: a few words up to a few sentences, sometimes JSON-ish."""
    if rng.random() < 0.3:
        items = ", ".join(f'"{rng.choice(WORDS)}": {rng.randint(0, 999)}' for _ in range(rng.randint(2, 8)))
        return "{" + items + "}"
    return paragraph(rng, rng.randint(1, 5))


def call_id(rng: random.Random) -> str:
    return f"call_{rng.getrandbits(64):016x}"


SWAPS = (
    ("could not", "couldn't"),
    ("the", "this"),
    ("and", "as well as"),
    ("is", "seems"),
)


def light_paraphrase(rng: random.Random, text: str) -> str:
    """The near-verbatim rewording a stuck model produces: one word changed (a synonym, an
    apology in front), plus maybe changed punctuation or case."""
    words = text.split(" ")
    op = rng.randrange(3)
    if op == 0 and len(words) > 3:
        i = rng.randrange(1, len(words) - 1)
        words[i] = rng.choice(WORDS)
    elif op == 1:
        words[0] = rng.choice(("Sorry,", "Again:", "Apologies.")) + " " + words[0].lower()
    else:
        a, b = rng.choice(SWAPS)
        joined = " ".join(words)
        return _cosmetic(rng, joined.replace(f" {a} ", f" {b} ", 1) if f" {a} " in joined else joined + " Again.")
    return _cosmetic(rng, " ".join(words))


def _cosmetic(rng: random.Random, text: str) -> str:
    if rng.random() < 0.5:
        text = text.rstrip(".!") + rng.choice((".", "!", " ..."))
    if rng.random() < 0.3:
        text = text.replace(". ", "; ", 1)
    return text


# --- scenario building blocks --------------------------------------------------------------------

Turn = AIMessage
TurnMaker = Callable[[int], AIMessage]


def call_turn(rng: random.Random, text: str, calls: Sequence[tuple[str, dict[str, Any]]]) -> AIMessage:
    return AIMessage(
        content=text,
        tool_calls=[{"name": name, "args": args, "id": call_id(rng), "type": "tool_call"} for name, args in calls],
    )


def say(text: str) -> Callable[[], AIMessage]:
    """A scripted turn that answers ``text``."""
    return lambda: AIMessage(content=text)


def request(
    rng: random.Random, calls: Sequence[tuple[str, dict[str, Any]]], text: str | None = None
) -> Callable[[], AIMessage]:
    """A scripted turn that requests ``calls`` (with a fresh thought when ``text`` is None)."""
    return lambda: call_turn(rng, thought(rng) if text is None else text, calls)


class Script:
    """The model's side of a scenario: ``prefix`` turns, then ``loop(i)`` for i = 0, 1, ...
    (or the final answer when there is no loop)."""

    def __init__(
        self,
        prefix: Sequence[Callable[[], AIMessage]],
        loop: TurnMaker | None = None,
        final: str | None = None,
    ) -> None:
        self.prefix = list(prefix)
        self.loop = loop
        self.final = final
        self.turn = 0

    def __call__(self, messages: Sequence[BaseMessage]) -> AIMessage:
        turn, self.turn = self.turn, self.turn + 1
        if turn < len(self.prefix):
            return self.prefix[turn]()
        if self.loop is not None:
            return self.loop(turn - len(self.prefix))
        return AIMessage(content=self.final or "Done.")


def model_of(script: Script) -> ScriptedChatModel:
    return ScriptedChatModel(replies=[script], cycle=True)


class ToolBox:
    """Tools whose results come from a table, a function of the arguments and call count."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.tools: dict[str, BaseTool] = {}
        self.calls: dict[str, int] = {}

    def add(
        self,
        name: str,
        params: Sequence[str],
        result: Callable[[dict[str, Any], int], str],
        *,
        error: Callable[[dict[str, Any], int], str | None] | None = None,
        raise_plain: bool = False,
    ) -> str:
        """``result(args, n)`` answers the n-th call (from 0); ``error`` may fail it instead."""

        def run(**kwargs: Any) -> str:
            n = self.calls.get(name, 0)
            self.calls[name] = n + 1
            message = error(kwargs, n) if error else None
            if message is not None:
                if raise_plain:
                    raise RuntimeError(message)
                raise ToolException(message)
            return result(kwargs, n)

        schema = {
            "type": "object",
            "properties": {p: {"type": "integer" if p == "page" else "string"} for p in params},
            "required": list(params),
        }
        self.tools[name] = StructuredTool(
            name=name,
            description=f"{name.replace('_', ' ')}.",
            args_schema=schema,
            func=run,
            handle_tool_error=True,
        )
        return name

    def fixed(self, name: str, params: Sequence[str]) -> str:
        """A deterministic tool: the same arguments always get the same (random) answer, whatever
        order parallel calls run in."""
        seed = self.rng.getrandbits(64)

        def result(args: dict[str, Any], n: int) -> str:
            return tool_result(random.Random(f"{seed}|{sorted(args.items())!r}"))

        return self.add(name, params, result)


@dataclass
class Trace:
    """One recorded run. ``loop_start`` indexes ``observations`` (None: the run progresses)."""

    name: str
    family: str
    looping: bool
    observations: list[Observation]
    loop_start: int | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def model_calls(self) -> int:
        return sum(isinstance(o, ModelObservation) for o in self.observations)


def model_call_index(observations: Sequence[Observation], call: int) -> int:
    """The index of the ``call``-th (from 0) model observation."""
    seen = -1
    for index, obs in enumerate(observations):
        if isinstance(obs, ModelObservation):
            seen += 1
            if seen == call:
                return index
    raise ValueError(f"the trace has only {seen + 1} model calls, not {call + 1}")


def run_graph(graph: Any, inputs: dict[str, Any], limit: int) -> list[Observation]:
    recorder = TraceRecorder()
    with contextlib.suppress(GraphRecursionError):
        graph.invoke(inputs, config={"callbacks": [recorder], "recursion_limit": limit})
    return recorder.observations


def run_agent(script: Script, box: ToolBox, question: str, limit: int) -> list[Observation]:
    agent = create_agent(model_of(script), list(box.tools.values()))
    return run_graph(agent, {"messages": [HumanMessage(content=question)]}, limit)


def random_call(rng: random.Random, box: ToolBox) -> tuple[str, dict[str, Any]]:
    """A call to a fresh deterministic tool with random arguments."""
    name = rng.choice([n for n in TOOL_NAMES if n not in box.tools] or TOOL_NAMES)
    param = rng.choice(ARG_NAMES)
    if name not in box.tools:
        box.fixed(name, [param])
    tool = box.tools[name]
    params = list(tool.args)
    return name, {p: f"{rng.choice(WORDS)} {rng.choice(WORDS)}" for p in params}


def thought(rng: random.Random) -> str:
    """What a model says next to its tool calls: often nothing, sometimes a sentence."""
    return "" if rng.random() < 0.4 else sentence(rng, 4, 10)


def progress_prefix(rng: random.Random, box: ToolBox, count: int) -> list[Callable[[], AIMessage]]:
    turns = []
    for _ in range(count):
        text, call = thought(rng), random_call(rng, box)
        turns.append(request(rng, [call], text))
    return turns


def question(rng: random.Random) -> str:
    return f"Please look into the {rng.choice(WORDS)} {rng.choice(WORDS)} and report back."


# --- looping scenarios ---------------------------------------------------------------------------


def react_repeat(rng: random.Random) -> Trace:
    """The same call, the same result, forever; the model's words around it vary freely."""
    box = ToolBox(rng)
    prefix = progress_prefix(rng, box, rng.randint(0, 3))
    name, args = random_call(rng, box)
    texts = [thought(rng) for _ in range(4)]
    script = Script(prefix, lambda i: call_turn(rng, rng.choice(texts), [(name, args)]))
    obs = run_agent(script, box, question(rng), rng.randint(40, 80))
    return Trace("", "react_repeat", True, obs, model_call_index(obs, len(prefix) + 1))


def ab_oscillation(rng: random.Random) -> Trace:
    """A, B, A, B, ...: two tools called in turn with the same answers."""
    box = ToolBox(rng)
    prefix = progress_prefix(rng, box, rng.randint(0, 2))
    calls = [random_call(rng, box), random_call(rng, box)]
    texts = [thought(rng), thought(rng)]
    script = Script(prefix, lambda i: call_turn(rng, texts[i % 2], [calls[i % 2]]))
    obs = run_agent(script, box, question(rng), rng.randint(40, 80))
    return Trace("", "ab_oscillation", True, obs, model_call_index(obs, len(prefix) + 2))


def rotation(rng: random.Random) -> Trace:
    """An agent rotating through k sources that never change (no fixed short period)."""
    box = ToolBox(rng)
    prefix = progress_prefix(rng, box, rng.randint(0, 2))
    k = rng.randint(3, 6)
    calls = [random_call(rng, box) for _ in range(k)]
    script = Script(prefix, lambda i: call_turn(rng, "", [calls[i % k]]))
    obs = run_agent(script, box, question(rng), rng.randint(60, 90))
    return Trace("", "rotation", True, obs, model_call_index(obs, len(prefix) + k), {"k": k})


def error_retry(rng: random.Random) -> Trace:
    """A tool that always fails the same way (new request id each time), retried forever."""
    box = ToolBox(rng)
    prefix = progress_prefix(rng, box, rng.randint(0, 2))
    reason = rng.choice(("upstream returned 503", "permission denied for", "timeout contacting", "rate limited"))
    plain = rng.random() < 0.5
    name = box.add(
        rng.choice(("sync_crm", "post_update", "charge_card", "create_issue")),
        ["payload"],
        lambda args, n: "ok",
        error=lambda args, n: f"{reason} {args['payload']} (request {rng.getrandbits(40):010x})",
        raise_plain=plain,
    )
    args = {"payload": sentence(rng, 2, 4)}
    script = Script(prefix, lambda i: call_turn(rng, thought(rng) if i == 0 else "", [(name, args)]))
    limit = rng.randint(40, 70)
    if plain:  # an exception: ToolNode(handle_tool_errors=True) reports it, via on_tool_error
        obs = run_graph(react_graph(script, box), {"messages": [HumanMessage(content=question(rng))]}, limit)
    else:  # a ToolException the tool handles itself: on_tool_end with status="error"
        obs = run_agent(script, box, question(rng), limit)
    return Trace("", "error_retry", True, obs, model_call_index(obs, len(prefix) + 1), {"plain": plain})


def poll_forever(rng: random.Random) -> Trace:
    """Polling a job that never finishes: the same status every time."""
    box = ToolBox(rng)
    prefix = progress_prefix(rng, box, rng.randint(0, 2))
    status = rng.choice(("running", "queued", "pending"))
    name = box.add("check_job", ["job_id"], lambda args, n: f"job {args['job_id']}: {status}")
    args = {"job_id": f"job-{rng.randint(1000, 9999)}"}
    text = rng.choice(("", "The job is still running; checking again.", "Let me check the job status."))
    script = Script(prefix, lambda i: call_turn(rng, text, [(name, args)]))
    obs = run_agent(script, box, question(rng), rng.randint(40, 80))
    return Trace("", "poll_forever", True, obs, model_call_index(obs, len(prefix) + 1))


def stuck_pagination(rng: random.Random) -> Trace:
    """Real paging for a while, then the model asks for the same page again and again."""
    box = ToolBox(rng)
    pages = {n: tool_result(rng) for n in range(1, 20)}
    name = box.add(rng.choice(("list_orders", "list_invoices", "list_users")), ["page"], lambda a, n: pages[a["page"]])
    k = rng.randint(2, 6)
    text = rng.choice(("", "Fetching the next page."))
    prefix = [request(rng, [(name, {"page": p})], text) for p in range(1, k + 1)]
    script = Script(prefix, lambda i: call_turn(rng, text, [(name, {"page": k})]))
    obs = run_agent(script, box, question(rng), rng.randint(40, 80))
    return Trace("", "stuck_pagination", True, obs, model_call_index(obs, k), {"pages": k})


def parallel_repeat(rng: random.Random) -> Trace:
    """The same two or three calls requested in parallel every turn."""
    box = ToolBox(rng)
    prefix = progress_prefix(rng, box, rng.randint(0, 2))
    calls = [random_call(rng, box) for _ in range(rng.randint(2, 3))]
    script = Script(prefix, lambda i: call_turn(rng, "", calls))
    obs = run_agent(script, box, question(rng), rng.randint(40, 80))
    return Trace("", "parallel_repeat", True, obs, model_call_index(obs, len(prefix) + 1))


class PlanState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    round: int


def plan_graph(planner: Script, executor: Script) -> Any:
    """Planner and executor, two model nodes in a ring until the planner says FINAL."""
    planner_model, executor_model = model_of(planner), model_of(executor)

    def plan(state: PlanState) -> dict[str, Any]:
        return {"messages": [planner_model.invoke(state["messages"])], "round": state.get("round", 0) + 1}

    def execute(state: PlanState) -> dict[str, Any]:
        return {"messages": [executor_model.invoke(state["messages"])]}

    def route(state: PlanState) -> str:
        return END if str(state["messages"][-1].content).startswith("FINAL") else "executor"

    graph = StateGraph(PlanState)
    graph.add_node("planner", plan)
    graph.add_node("executor", execute)
    graph.add_edge(START, "planner")
    graph.add_conditional_edges("planner", route, ["executor", END])
    graph.add_edge("executor", "planner")
    return graph.compile()


def planner_executor(rng: random.Random) -> Trace:
    """Ping-pong: after some real steps the planner re-issues the same step and the executor
    reports the same outcome, round after round (with a round counter in the state)."""
    steps = rng.randint(0, 2)
    plans = [
        f"Step {i + 1}: {rng.choice(VERBS)} the {rng.choice(WORDS)} {rng.choice(WORDS)}." for i in range(steps + 1)
    ]
    reports = [f"{rng.choice(VERBS).capitalize()}. {paragraph(rng, rng.randint(1, 3))}" for _ in range(steps + 1)]
    stuck_plan, stuck_report = plans[-1], reports[-1]
    paraphrase = rng.random() < 0.5
    planner = Script(
        [say(t) for t in plans[:-1]],
        lambda i: AIMessage(content=light_paraphrase(rng, stuck_plan) if paraphrase and i else stuck_plan),
    )
    executor = Script(
        [say(t) for t in reports[:-1]],
        lambda i: AIMessage(content=stuck_report),
    )
    inputs = {"messages": [HumanMessage(content=question(rng))], "round": 0}
    obs = run_graph(plan_graph(planner, executor), inputs, rng.randint(40, 80))
    return Trace("", "planner_executor", True, obs, model_call_index(obs, 2 * steps + 2))


class DraftState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    attempt: int


def draft_graph(writer: Script, accept: Callable[[str, int], str | None]) -> Any:
    """A writer model and a deterministic checker that sends the draft back with feedback."""
    model = model_of(writer)

    def write(state: DraftState) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    def check(state: DraftState) -> dict[str, Any]:
        attempt = state.get("attempt", 0) + 1
        feedback = accept(str(state["messages"][-1].content), attempt)
        if feedback is None:
            return {"attempt": attempt}
        return {"messages": [HumanMessage(content=feedback)], "attempt": attempt}

    def route(state: DraftState) -> str:
        return "writer" if isinstance(state["messages"][-1], HumanMessage) else END

    graph = StateGraph(DraftState)
    graph.add_node("writer", write)
    graph.add_node("checker", check)
    graph.add_edge(START, "writer")
    graph.add_edge("writer", "checker")
    graph.add_conditional_edges("checker", route, ["writer", END])
    return graph.compile()


def paraphrase_check(rng: random.Random) -> Trace:
    """A writer that keeps answering the same thing in slightly different words while a
    checker keeps rejecting it (after some real drafts)."""
    drafts = [paragraph(rng, rng.randint(2, 4)) for _ in range(rng.randint(1, 3))]
    stuck = drafts[-1]
    feedback = rng.choice(("Cite a source for every claim.", "Too vague: name the owner.", "Missing the totals."))
    writer = Script(
        [say(d) for d in drafts[:-1]],
        lambda i: AIMessage(content=stuck if i == 0 else light_paraphrase(rng, stuck)),
    )
    graph = draft_graph(writer, lambda text, attempt: feedback)
    obs = run_graph(graph, {"messages": [HumanMessage(content=question(rng))], "attempt": 0}, rng.randint(40, 80))
    return Trace("", "paraphrase_check", True, obs, model_call_index(obs, len(drafts)))


class ReactState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


def react_graph(script: Script, box: ToolBox) -> Any:
    """A hand-built ReAct graph whose ToolNode turns raised exceptions into messages."""
    model = model_of(script)

    def agent(state: ReactState) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    def route(state: ReactState) -> str:
        last = state["messages"][-1]
        return "tools" if isinstance(last, AIMessage) and last.tool_calls else END

    graph = StateGraph(ReactState)
    graph.add_node("agent", agent)
    graph.add_node("tools", ToolNode(list(box.tools.values()), handle_tool_errors=True))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", route, ["tools", END])
    graph.add_edge("tools", "agent")
    return graph.compile()


class RouteState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    notes: Annotated[list[str], operator.add]


def route_graph(router: Script, work: Callable[[str, int], str]) -> Any:
    """A supervisor model that routes with a structured (tool-call shaped) reply to worker
    nodes, as supervisor agents do; no tool runs, so no tool observations."""
    model = model_of(router)
    runs: dict[str, int] = {}

    def run_worker(name: str) -> dict[str, Any]:
        n = runs.get(name, 0)
        runs[name] = n + 1
        return {"messages": [HumanMessage(content=work(name, n), name=name)], "notes": [name]}

    def researcher(state: RouteState) -> dict[str, Any]:
        return run_worker("researcher")

    def analyst(state: RouteState) -> dict[str, Any]:
        return run_worker("analyst")

    def supervise(state: RouteState) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    def route(state: RouteState) -> str:
        last = state["messages"][-1]
        if isinstance(last, AIMessage) and last.tool_calls:
            return str(last.tool_calls[0]["args"]["next"])
        return END

    graph = StateGraph(RouteState)
    graph.add_node("supervisor", supervise)
    graph.add_node("researcher", researcher)
    graph.add_node("analyst", analyst)
    graph.add_edge("researcher", "supervisor")
    graph.add_edge("analyst", "supervisor")
    graph.add_edge(START, "supervisor")
    graph.add_conditional_edges("supervisor", route, ["researcher", "analyst", END])
    return graph.compile()


def route_turn(rng: random.Random, next_node: str, reason: str) -> AIMessage:
    return call_turn(rng, "", [("Route", {"next": next_node, "reason": reason})])


def routed(rng: random.Random, next_node: str, reason: str) -> Callable[[], AIMessage]:
    return lambda: route_turn(rng, next_node, reason)


def router_pingpong(rng: random.Random) -> Trace:
    """A supervisor that keeps sending the same worker back for the same result (the
    notes list grows, but what each node returns repeats)."""
    real = rng.randint(0, 2)
    findings = {n: paragraph(rng, rng.randint(1, 3)) for n in ("researcher", "analyst")}
    stuck = rng.choice(("researcher", "analyst"))
    reason = sentence(rng, 4, 8)
    prefix = [routed(rng, ("analyst", "researcher")[i % 2], f"Round {i}: {sentence(rng, 3, 6)}") for i in range(real)]
    script = Script(prefix, lambda i: route_turn(rng, stuck, reason))
    graph = route_graph(script, lambda name, n: findings[name] if script.turn > real else sentence(rng))
    obs = run_graph(graph, {"messages": [HumanMessage(content=question(rng))], "notes": []}, rng.randint(40, 80))
    return Trace("", "router_pingpong", True, obs, model_call_index(obs, real + 1))


# --- progressing scenarios -----------------------------------------------------------------------


def final_answer(rng: random.Random) -> str:
    return "Summary: " + paragraph(rng, rng.randint(1, 4))


def pagination(rng: random.Random) -> Trace:
    """Paging to the last page; the model says the same words with every request."""
    box = ToolBox(rng)
    last = rng.randint(4, 15)
    pages = {n: tool_result(rng) for n in range(1, last + 1)}
    name = box.add(rng.choice(("list_orders", "list_invoices", "list_users")), ["page"], lambda a, n: pages[a["page"]])
    text = rng.choice(("", "Fetching the next page.", "OK, next page."))
    prefix = [request(rng, [(name, {"page": p})], text) for p in range(1, last + 1)]
    obs = run_agent(Script(prefix, final=final_answer(rng)), box, question(rng), 200)
    return Trace("", "pagination", False, obs, notes={"pages": last})


def polling_finishes(rng: random.Random) -> Trace:
    """Polling a job until it finishes: its status changes (or repeats at most twice)."""
    box = ToolBox(rng)
    polls = rng.randint(3, 12)
    if rng.random() < 0.5:
        statuses = [f"running, {int(100 * (i + 1) / polls)}% done" for i in range(polls - 1)] + ["succeeded"]
    else:
        statuses = []
        while len(statuses) < polls - 1:
            statuses += [f"running (stage {len(statuses) + 1})"] * rng.randint(1, 2)
        statuses = [*statuses[: polls - 1], "succeeded"]
    job = f"job-{rng.randint(1000, 9999)}"
    name = box.add("check_job", ["job_id"], lambda args, n: f"job {args['job_id']}: {statuses[min(n, polls - 1)]}")
    text = rng.choice(("", "The job is still running; checking again."))
    prefix = [lambda: call_turn(rng, text, [(name, {"job_id": job})]) for _ in range(len(statuses))]
    obs = run_agent(Script(prefix, final=final_answer(rng)), box, question(rng), 200)
    return Trace("", "polling_finishes", False, obs, notes={"polls": len(statuses)})


def query_refinement(rng: random.Random) -> Trace:
    """Refining a search query; some refinements still find nothing (same text, new args)."""
    box = ToolBox(rng)
    empty = "No results."

    def search(args: dict[str, Any], n: int) -> str:
        return empty if n < refinements - 1 and rng.random() < 0.5 else tool_result(rng)

    refinements = rng.randint(3, 8)
    name = box.add(rng.choice(("search_docs", "search_kb", "search_web")), ["query"], search)
    terms = [rng.choice(WORDS) for _ in range(refinements + 2)]
    prefix = [request(rng, [(name, {"query": " ".join(terms[: i + 2])})]) for i in range(refinements)]
    obs = run_agent(Script(prefix, final=final_answer(rng)), box, question(rng), 200)
    return Trace("", "query_refinement", False, obs)


def retry_then_success(rng: random.Random) -> Trace:
    """A call fails once or twice with the same error, then succeeds; work goes on."""
    box = ToolBox(rng)
    failures = rng.randint(1, 2)
    plain = rng.random() < 0.5
    name = box.add(
        rng.choice(("sync_crm", "post_update", "charge_card", "create_issue")),
        ["payload"],
        lambda args, n: f"created {args['payload']} as #{rng.randint(100, 999)}",
        error=lambda args, n: "upstream returned 503" if n < failures else None,
        raise_plain=plain,
    )
    args = {"payload": sentence(rng, 2, 4)}
    before = progress_prefix(rng, box, rng.randint(0, 2))
    retries = [lambda: call_turn(rng, "", [(name, args)]) for _ in range(failures + 1)]
    after = progress_prefix(rng, box, rng.randint(1, 3))
    script = Script(before + retries + after, final=final_answer(rng))
    if plain:
        obs = run_graph(react_graph(script, box), {"messages": [HumanMessage(content=question(rng))]}, 200)
    else:
        obs = run_agent(script, box, question(rng), 200)
    return Trace("", "retry_then_success", False, obs, notes={"failures": failures})


def research(rng: random.Random) -> Trace:
    """Many different calls, some in parallel, one legitimately repeated once."""
    box = ToolBox(rng)
    calls = [random_call(rng, box) for _ in range(rng.randint(5, 12))]
    turns: list[Callable[[], AIMessage]] = []
    i = 0
    while i < len(calls):
        width = rng.choice((1, 1, 2, 3))
        group = calls[i : i + width]
        turns.append(request(rng, group))
        i += width
    again = rng.choice(calls)
    turns.insert(rng.randint(1, len(turns)), lambda: call_turn(rng, "Double-checking that.", [again]))
    obs = run_agent(Script(turns, final=final_answer(rng)), box, question(rng), 200)
    return Trace("", "research", False, obs)


def long_react(rng: random.Random) -> Trace:
    """A long run (12-25 steps) of different calls with the same terse text each time."""
    box = ToolBox(rng)
    text = rng.choice(("", "OK.", "Next."))
    pool = [random_call(rng, box)[0] for _ in range(rng.randint(2, 4))]
    turns = []
    for step in range(rng.randint(12, 25)):
        name = rng.choice(pool)
        params = list(box.tools[name].args)
        args = {p: f"{rng.choice(WORDS)} {step}" for p in params}
        turns.append(request(rng, [(name, args)], text))
    obs = run_agent(Script(turns, final=final_answer(rng)), box, question(rng), 200)
    return Trace("", "long_react", False, obs)


def planner_executor_progress(rng: random.Random) -> Trace:
    """Planner and executor work through a plan; the planner may say the same words each time."""
    steps = rng.randint(3, 8)
    same = rng.random() < 0.5
    plans = [
        "Continue with the next step." if same else f"Step {i + 1}: {rng.choice(VERBS)} the {rng.choice(WORDS)}."
        for i in range(steps)
    ]
    reports = [f"Step {i + 1} done. {paragraph(rng, rng.randint(1, 3))}" for i in range(steps)]
    planner = Script([say(t) for t in plans], final="FINAL " + final_answer(rng))
    executor = Script([say(t) for t in reports])
    inputs = {"messages": [HumanMessage(content=question(rng))], "round": 0}
    obs = run_graph(plan_graph(planner, executor), inputs, 200)
    return Trace("", "planner_executor_progress", False, obs)


def draft_revise(rng: random.Random) -> Trace:
    """Drafts that really change (a sentence rewritten, more added) until the checker accepts."""
    drafts = [paragraph(rng, 2)]
    for _ in range(rng.randint(2, 5)):
        sentences = drafts[-1].split(". ")
        sentences[rng.randrange(len(sentences))] = sentence(rng).rstrip(".")
        drafts.append(". ".join(sentences).rstrip(".") + ". " + paragraph(rng, rng.randint(1, 2)))
    feedback = rng.choice(("Add more detail.", "Needs numbers.", "Expand on the risks."))
    writer = Script([say(d) for d in drafts])
    graph = draft_graph(writer, lambda text, attempt: None if attempt >= len(drafts) else feedback)
    obs = run_graph(graph, {"messages": [HumanMessage(content=question(rng))], "attempt": 0}, 200)
    return Trace("", "draft_revise", False, obs, notes={"drafts": drafts})


class MapState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    processed: Annotated[list[str], operator.add]
    batch: int


class WorkerState(TypedDict):
    item: str


def router_progress(rng: random.Random) -> Trace:
    """A supervisor sending the same worker several times, each time with new findings."""
    rounds = rng.randint(3, 8)
    worker = rng.choice(("researcher", "analyst"))
    reason = sentence(rng, 4, 8)
    script = Script([lambda: route_turn(rng, worker, reason) for _ in range(rounds)], final=final_answer(rng))
    graph = route_graph(script, lambda name, n: f"Finding {n + 1}: {paragraph(rng, rng.randint(1, 3))}")
    obs = run_graph(graph, {"messages": [HumanMessage(content=question(rng))], "notes": []}, 200)
    return Trace("", "router_progress", False, obs)


def reread_context(rng: random.Random) -> Trace:
    """A coding agent that re-reads the same file (same content) between edits of others."""
    box = ToolBox(rng)
    config = f"{rng.choice(WORDS)}.yaml"
    box.fixed("read_file", ["path"])
    edit = box.add("edit_file", ["path", "change"], lambda a, n: f"edited {a['path']}: {a['change']}")
    turns: list[Callable[[], AIMessage]] = []
    for _ in range(rng.randint(3, 6)):
        turns.append(lambda: call_turn(rng, "Checking the config again.", [("read_file", {"path": config})]))
        for _ in range(rng.randint(1, 3)):
            args = {"path": f"src/{rng.choice(WORDS)}.py", "change": sentence(rng, 3, 6)}
            turns.append(request(rng, [(edit, args)]))
    obs = run_agent(Script(turns, final=final_answer(rng)), box, question(rng), 200)
    return Trace("", "reread_context", False, obs)


def map_reduce(rng: random.Random) -> Trace:
    """Rounds of fan-out: a dispatcher model picks a batch, identical workers process it."""
    rounds = rng.randint(2, 4)
    batches = [[f"{rng.choice(WORDS)}-{rng.randint(1, 99)}" for _ in range(rng.randint(2, 4))] for _ in range(rounds)]
    dispatcher = model_of(Script([say(f"Process batch: {', '.join(b)}") for b in batches], final="FINAL"))

    def dispatch(state: MapState) -> dict[str, Any]:
        return {"messages": [dispatcher.invoke(state["messages"])], "batch": state.get("batch", 0) + 1}

    def fan_out(state: MapState) -> list[Send] | str:
        text = str(state["messages"][-1].content)
        if text.startswith("FINAL"):
            return END
        return [Send("worker", {"item": item}) for item in text.split(": ", 1)[1].split(", ")]

    def worker(state: WorkerState) -> dict[str, Any]:
        return {"processed": ["ok"]}  # identical updates from parallel workers

    def collect(state: MapState) -> dict[str, Any]:
        return {"messages": [HumanMessage(content=f"{len(state['processed'])} items processed so far.")]}

    graph = StateGraph(MapState)
    graph.add_node("dispatcher", dispatch)
    graph.add_node("worker", worker)
    graph.add_node("collect", collect)
    graph.add_edge(START, "dispatcher")
    graph.add_conditional_edges("dispatcher", fan_out, ["worker", END])
    graph.add_edge("worker", "collect")
    graph.add_edge("collect", "dispatcher")
    inputs = {"messages": [HumanMessage(content=question(rng))], "processed": [], "batch": 0}
    obs = run_graph(graph.compile(), inputs, 200)
    return Trace("", "map_reduce", False, obs)


BASE_LOOPING: tuple[Callable[[random.Random], Trace], ...] = (
    react_repeat,
    ab_oscillation,
    rotation,
    error_retry,
    poll_forever,
    stuck_pagination,
    parallel_repeat,
    planner_executor,
    paraphrase_check,
    router_pingpong,
)
BASE_PROGRESSING: tuple[Callable[[random.Random], Trace], ...] = (
    pagination,
    polling_finishes,
    query_refinement,
    retry_then_success,
    research,
    long_react,
    planner_executor_progress,
    draft_revise,
    map_reduce,
    router_progress,
    reread_context,
)

"""Looping runs of hand-built LangGraph ``StateGraph`` workflows. Each script loops for a while, then ends the run
normally (a final answer, an approval, a FINISH route), so an unnoticed loop still completes."""

from __future__ import annotations

import json
import operator
from collections.abc import Sequence
from typing import Annotated, Any, Literal, TypedDict

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import ToolException, tool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.graph.message import add_messages
from langgraph.prebuilt import ToolNode
from langgraph.types import Command, Send

from ._kit import Callbacks, Ids, Volatile, ai, cfg, failing, last_human, scenario, scripted, text_of


class _Steps(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    steps: int


def _tool_loop(model: Any, tools: Sequence[Any], system: str) -> Any:
    """A ReAct graph with a step counter and its own router instead of ``tools_condition``."""
    bound = model.bind_tools(tools)

    def think(state: _Steps, config: RunnableConfig) -> dict[str, Any]:
        reply = bound.invoke([SystemMessage(system), *state["messages"]], config)
        return {"messages": [reply], "steps": state["steps"] + 1}

    def route(state: _Steps) -> str:
        last = state["messages"][-1]
        return "act" if isinstance(last, AIMessage) and last.tool_calls else END

    graph = StateGraph(_Steps)
    graph.add_node("think", think)
    graph.add_node("act", ToolNode(tools))
    graph.add_edge(START, "think")
    graph.add_conditional_edges("think", route, ["act", END])
    graph.add_edge("act", "think")
    return graph.compile()


def _ask(graph: Any, callbacks: Callbacks, prompt: str) -> None:
    graph.invoke({"messages": [HumanMessage(prompt)], "steps": 0}, cfg(callbacks))


# -------------------------------------------------------------------------------------------------- stuck_same_call


@scenario(
    "inventory_check_stuck",
    "stuck_same_call",
    style="StateGraph",
    loop_start=3,
    description="A B2B order graph resolves a SKU, then checks stock for the same SKU and warehouse again and again; "
    "the answer is always 'available 0, next inbound 2025-03-28'.",
)
def inventory_check_stuck(callbacks: Callbacks) -> None:
    ids = Ids("inventory_check_stuck")

    @tool
    def find_sku(description: str) -> str:
        """Finds the SKU matching a product description."""
        return "PAL-EUR-1200 (EUR pallet 1200x800, heat treated)"

    @tool
    def check_stock(sku: str, warehouse: str) -> str:
        """Returns live stock for a SKU in a warehouse."""
        return f"{sku}@{warehouse}: on_hand=0 reserved=0 available=0 next_inbound=2025-03-28 (qty 400)"

    replies: list[Any] = [ids.call("find_sku", {"description": "euro pallets heat treated"})]
    replies += [ids.call("check_stock", {"sku": "PAL-EUR-1200", "warehouse": "DUS-1"}) for _ in range(17)]
    replies.append("No EUR pallets in Düsseldorf until 28 March (400 inbound); shall I backorder 150?")
    graph = _tool_loop(scripted(replies), [find_sku, check_stock], "You handle B2B order intake.")
    _ask(graph, callbacks, "Customer wants 150 heat-treated euro pallets from Düsseldorf this week.")


@scenario(
    "dispatch_eta_parallel_stuck",
    "stuck_same_call",
    style="StateGraph",
    loop_start=3,
    description="A dispatch graph lists routes, then keeps issuing the same pair of parallel tool calls (driver "
    "location + ETA) that return the same stale values.",
)
def dispatch_eta_parallel_stuck(callbacks: Callbacks) -> None:
    ids = Ids("dispatch_eta_parallel_stuck")

    @tool
    def list_routes(depot: str) -> str:
        """Lists today's routes from a depot."""
        return "R-12 (driver D-88, 14 stops), R-15 (driver D-41, 9 stops)"

    @tool
    def driver_location(driver_id: str) -> str:
        """Last GPS fix of a driver."""
        return f"{driver_id}: 52.3702,4.8952 (Amsterdam Centrum), speed 0 km/h, fix age 41 min"

    @tool
    def route_eta(route_id: str) -> str:
        """ETA of the next stop on a route."""
        return f"{route_id}: next stop #7 Keizersgracht 210, ETA unknown (no GPS update)"

    pair = (("driver_location", {"driver_id": "D-88"}), ("route_eta", {"route_id": "R-12"}))
    replies: list[Any] = [ids.call("list_routes", {"depot": "AMS-West"})]
    replies += [ids.calls(*pair) for _ in range(15)]
    replies.append("Driver D-88 on R-12 has had no GPS update for 41 minutes; calling the driver directly.")
    graph = _tool_loop(scripted(replies, model="gpt-4.1-mini"), [list_routes, driver_location, route_eta], "Dispatch.")
    _ask(graph, callbacks, "Customer on Keizersgracht asks when their delivery arrives (route from AMS-West).")


# --------------------------------------------------------------------------------------------- volatile_result_loop


@scenario(
    "cart_session_volatile",
    "volatile_result_loop",
    style="StateGraph",
    loop_start=3,
    description="A shopping assistant graph re-fetches the same cart; contents never change but each result carries "
    "a fresh session UUID and fetched_at timestamp.",
)
def cart_session_volatile(callbacks: Callbacks) -> None:
    ids = Ids("cart_session_volatile")
    vol = Volatile("cart_session_volatile")

    @tool
    def get_user(email: str) -> str:
        """Finds a shopper."""
        return "u_55120 (Kenji Watanabe), loyalty: silver"

    @tool
    def get_cart(user_id: str) -> str:
        """Returns the shopper's cart."""
        return json.dumps(
            {
                "items": [["Espresso grinder", 1, 249.0], ["Descaler 3-pack", 1, 19.5]],
                "promo": "SPRING10 not applied: minimum basket 300.00",
                "session": vol.uuid(),
                "fetched_at": vol.ts(),
            }
        )

    replies: list[Any] = [ids.call("get_user", {"email": "kenji.w@example.jp"})]
    replies += [ids.call("get_cart", {"user_id": "u_55120"}) for _ in range(17)]
    replies.append("SPRING10 needs a 300.00 basket; you're at 268.50, so add 31.50 more to use it.")
    graph = _tool_loop(scripted(replies), [get_user, get_cart], "You are the shop's assistant.")
    _ask(graph, callbacks, "Why doesn't my SPRING10 code work? kenji.w@example.jp")


@scenario(
    "ci_failed_build_repoll",
    "volatile_result_loop",
    style="StateGraph",
    loop_start=3,
    description="A release graph keeps polling a build that has already FAILED; every response is identical apart "
    "from a new trace id and fetch time.",
)
def ci_failed_build_repoll(callbacks: Callbacks) -> None:
    ids = Ids("ci_failed_build_repoll")
    vol = Volatile("ci_failed_build_repoll")

    @tool
    def list_builds(branch: str) -> str:
        """Lists recent builds of a branch."""
        return "b-90412 release/2.9 FAILED 11m ago; b-90377 release/2.9 PASSED 3h ago"

    @tool
    def get_build(build_id: str) -> str:
        """Returns a build's status."""
        return (
            f"{build_id}: status=FAILED stage=integration-tests failed_jobs=1 (test_payments_e2e) "
            f"trace_id={vol.hex(16)} fetched={vol.ts()}"
        )

    replies: list[Any] = [ids.call("list_builds", {"branch": "release/2.9"})]
    replies += [ids.call("get_build", {"build_id": "b-90412"}, text="Waiting for the build.") for _ in range(16)]
    replies.append("release/2.9 is blocked: b-90412 failed test_payments_e2e; not shipping until it's fixed.")
    graph = _tool_loop(scripted(replies, model="gpt-4o"), [list_builds, get_build], "You run releases.")
    _ask(graph, callbacks, "Ship release/2.9 once CI is green.")


# ------------------------------------------------------------------------------------------------- error_retry_loop


@scenario(
    "report_write_permission_denied",
    "error_retry_loop",
    style="StateGraph",
    loop_start=3,
    description="A finance-close graph generates a report, then retries writing it to the same read-only path, "
    "getting the same permission error every time.",
)
def report_write_permission_denied(callbacks: Callbacks) -> None:
    ids = Ids("report_write_permission_denied")

    @tool
    def build_close_report(period: str) -> str:
        """Builds the month-end close report."""
        return f"close report {period}: 38 accounts, 2 reconciling items, variance 0.00"

    @tool
    def write_file(path: str, content: str) -> str:
        """Writes a file to the finance share."""
        raise ToolException(f"PermissionError: [Errno 13] Permission denied: '{path}'")

    args = {"path": "/mnt/finance/close/2025-02/close_report.csv", "content": "close report 2025-02 ..."}
    replies: list[Any] = [ids.call("build_close_report", {"period": "2025-02"})]
    replies += [ids.call("write_file", args) for _ in range(16)]
    replies.append(
        "The report is built but I can't write to /mnt/finance/close (permission denied); please fix the ACL."
    )
    graph = _tool_loop(scripted(replies), [build_close_report, failing(write_file)], "You assist the controller.")
    _ask(graph, callbacks, "Produce the February close report and save it to the close folder.")


class _ExtractState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    record: dict[str, Any]


@scenario(
    "json_schema_validation_retry",
    "error_retry_loop",
    style="StateGraph",
    loop_start=2,
    description="An expense-extraction graph: the model emits JSON, a validator node rejects it with the same schema "
    "error ('currency must be ISO-4217'), and the model re-emits the identical JSON.",
)
def json_schema_validation_retry(callbacks: Callbacks) -> None:
    bad = json.dumps({"merchant": "Hotel Adlon", "amount": 412.8, "currency": "Euros", "date": "2025-03-02"})
    good = json.dumps({"merchant": "Hotel Adlon", "amount": 412.8, "currency": "EUR", "date": "2025-03-02"})
    model = scripted([bad] * 16 + [good], model="gpt-4o-mini")

    def extract(state: _ExtractState, config: RunnableConfig) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"], config)]}

    def validate(state: _ExtractState) -> dict[str, Any]:
        record = json.loads(text_of(state["messages"][-1]))
        if len(record["currency"]) != 3:
            error = (
                f"ValidationError: field 'currency': '{record['currency']}' is not an ISO-4217 code. Return JSON only."
            )
            return {"messages": [HumanMessage(error)]}
        return {"record": record}

    graph = StateGraph(_ExtractState)
    graph.add_node("extract", extract)
    graph.add_node("validate", validate)
    graph.add_edge(START, "extract")
    graph.add_edge("extract", "validate")
    graph.add_conditional_edges("validate", lambda s: END if s["record"] else "extract", ["extract", END])
    receipt = "HOTEL ADLON KEMPINSKI BERLIN - 02.03.2025 - Total 412,80 EUR - Visa ****4410"
    graph.compile().invoke(
        {"messages": [HumanMessage(f"Extract the expense as JSON: {receipt}")], "record": {}}, cfg(callbacks)
    )


# --------------------------------------------------------------------------------------------------- ab_alternation


class _BounceState(TypedDict):
    log: Annotated[list[str], operator.add]
    done: bool


@scenario(
    "planner_executor_bounce",
    "ab_alternation",
    style="StateGraph",
    loop_start=5,
    description="A BI graph: after one useful step, the planner keeps issuing 'pull the Q3 EMEA report' and the "
    "executor keeps answering that it needs a fiscal calendar id; the two messages alternate while the log grows.",
)
def planner_executor_bounce(callbacks: Callbacks) -> None:
    ask = "Next step: pull the Q3 revenue report for EMEA from Looker."
    blocked = "Blocked: the Looker report needs a fiscal_calendar_id (FY-Jan or FY-Apr). Please specify which one."
    planner = scripted(
        ["Next step: list the dashboards available in the Finance folder.", *[ask] * 8, "FINISH: ask the analyst."],
        model="gpt-4.1",
    )
    executor = scripted(
        ["Found 14 dashboards, including 'Revenue by Region' and 'Bookings vs Plan'.", *[blocked] * 8],
        model="gpt-4o-mini",
    )

    def plan(state: _BounceState, config: RunnableConfig) -> dict[str, Any]:
        reply = text_of(
            planner.invoke([HumanMessage("Goal: Q3 EMEA revenue. Log:\n" + "\n".join(state["log"]))], config)
        )
        return {"log": [f"planner: {reply}"], "done": reply.startswith("FINISH")}

    def execute(state: _BounceState, config: RunnableConfig) -> dict[str, Any]:
        reply = text_of(executor.invoke([HumanMessage(state["log"][-1])], config))
        return {"log": [f"executor: {reply}"]}

    graph = StateGraph(_BounceState)
    graph.add_node("plan", plan)
    graph.add_node("execute", execute)
    graph.add_edge(START, "plan")
    graph.add_conditional_edges("plan", lambda s: END if s["done"] else "execute", ["execute", END])
    graph.add_edge("execute", "plan")
    graph.compile().invoke({"log": [], "done": False}, cfg(callbacks))


@scenario(
    "coder_reviewer_bounce",
    "ab_alternation",
    style="StateGraph",
    loop_start=5,
    description="A code-review graph on a shared message history: after a legitimate first round, the coder keeps "
    "saying it converted timestamps to local time per the spec and the reviewer keeps asking to revert to UTC.",
)
def coder_reviewer_bounce(callbacks: Callbacks) -> None:
    a = "Updated: timestamps in the export are now converted to the account's local time, as SPEC-12 requires."
    b = "Please revert to UTC - stored and exported timestamps must stay timezone-agnostic. Requesting changes."
    coder = scripted(["Patch: added CSV export endpoint /v1/exports with streaming writer.", *[a] * 8], model="gpt-4o")
    reviewer = scripted(
        ["Missing tests for the streaming writer; please add them.", *[b] * 7, "Escalating to the tech lead."],
        model="claude-3-5-sonnet-latest",
        provider="anthropic",
    )

    def named(reply: BaseMessage, name: str) -> AIMessage:
        message = ai(reply)
        return AIMessage(content=message.content, name=name, usage_metadata=message.usage_metadata)

    def code(state: MessagesState, config: RunnableConfig) -> dict[str, Any]:
        return {"messages": [named(coder.invoke(state["messages"], config), "coder")]}

    def review(state: MessagesState, config: RunnableConfig) -> dict[str, Any]:
        return {"messages": [named(reviewer.invoke(state["messages"], config), "reviewer")]}

    graph = StateGraph(MessagesState)
    graph.add_node("code", code)
    graph.add_node("review", review)
    graph.add_edge(START, "code")
    graph.add_edge("code", "review")
    graph.add_conditional_edges(
        "review", lambda s: END if "Escalating" in text_of(s["messages"][-1]) else "code", ["code", END]
    )
    graph.compile().invoke(
        {"messages": [HumanMessage("Implement ticket EXP-77: CSV export of invoices.")]}, cfg(callbacks)
    )


# ------------------------------------------------------------------------------------------- paraphrased_reflection


class _LetterState(TypedDict):
    drafts: Annotated[list[str], operator.add]
    critiques: Annotated[list[str], operator.add]


@scenario(
    "cover_letter_paraphrase",
    "paraphrased_reflection",
    style="StateGraph",
    loop_start=4,
    description="A career-coach graph: after the first revision, every critique rewords 'too generic, add concrete "
    "metrics' and every revision rewords the same letter; approved only after eight rounds.",
)
def cover_letter_paraphrase(callbacks: Callbacks) -> None:
    critiques = [
        "It's too generic. Add concrete metrics from your last role.",
        "Still generic - include specific numbers from your previous job.",
        "This reads generically; quantify your achievements in the last position.",
        "Too vague. Put real metrics from your most recent role in there.",
        "Generic again: where are the concrete numbers from your last job?",
        "Needs specifics - add measurable results from the previous role.",
        "It remains generic; cite actual figures from your last position.",
        "Make it less generic by adding hard numbers from your recent role.",
        "APPROVED",
    ]
    revisions = [
        "Dear Hiring Team, I led the data platform team at Finch, where I improved reliability and reduced costs.",
        "Dear Hiring Team, at Finch I led the data platform team and improved reliability while reducing costs.",
        "Dear Hiring Team, I led Finch's data platform team, improving reliability and cutting costs.",
        "Dear Hiring Team, leading the data platform team at Finch, I improved reliability and lowered costs.",
        "Dear Hiring Team, as lead of Finch's data platform team I made it more reliable and cheaper to run.",
        "Dear Hiring Team, I led the data platform team at Finch and improved its reliability and costs.",
        "Dear Hiring Team, at Finch I headed the data platform team, raising reliability and reducing cost.",
        "Dear Hiring Team, I ran the data platform team at Finch, where reliability went up and costs went down.",
    ]
    first = "Dear Hiring Team, I am a passionate engineer who loves data and would be a great fit for your company."
    writer = scripted([first, *revisions], model="claude-3-5-haiku-latest", provider="anthropic")
    critic = scripted(critiques, model="gpt-4o")

    def write(state: _LetterState, config: RunnableConfig) -> dict[str, Any]:
        prompt = (
            state["critiques"][-1] if state["critiques"] else "Write a cover letter for the Staff Data Engineer role."
        )
        return {"drafts": [text_of(writer.invoke([HumanMessage(prompt)], config))]}

    def critique(state: _LetterState, config: RunnableConfig) -> dict[str, Any]:
        return {"critiques": [text_of(critic.invoke([HumanMessage(state["drafts"][-1])], config))]}

    graph = StateGraph(_LetterState)
    graph.add_node("write", write)
    graph.add_node("critique", critique)
    graph.add_edge(START, "write")
    graph.add_edge("write", "critique")
    graph.add_conditional_edges(
        "critique", lambda s: END if s["critiques"][-1] == "APPROVED" else "write", ["write", END]
    )
    graph.compile().invoke({"drafts": [], "critiques": []}, cfg(callbacks))


@scenario(
    "release_notes_self_reflect",
    "paraphrased_reflection",
    style="StateGraph",
    loop_start=4,
    description="A Reflexion-style graph with one model on a growing message history: it drafts release notes, "
    "reflects that the breaking change is buried, revises, then reflects and revises with light rewording only.",
)
def release_notes_self_reflect(callbacks: Callbacks) -> None:
    reflections = [
        "Reflection: the breaking API change is buried at the bottom; move the /v1/charges deprecation to the top.",
        "Reflection: the deprecation of /v1/charges is still hidden near the end; it should lead the notes.",
        "Reflection: readers may miss the /v1/charges removal - put the breaking change first.",
        "Reflection: the breaking change (/v1/charges deprecation) should come first, not last.",
        "Reflection: lead with the /v1/charges deprecation; it's currently easy to overlook.",
        "Reflection: still burying the breaking change - /v1/charges needs to be at the top.",
        "Reflection: move the /v1/charges breaking change to the top so nobody misses it.",
        "Reflection: the notes look good now. DONE",
    ]
    revisions = [
        "v3.4 notes: faster dashboard loads; new CSV export; bug fixes. Note: /v1/charges is deprecated.",
        "v3.4 release notes: dashboards load faster; CSV export added; bug fixes. Note: /v1/charges deprecated.",
        "Release 3.4: quicker dashboards, a new CSV export and bug fixes. Also: /v1/charges is now deprecated.",
        "v3.4: faster dashboard loading, CSV export, assorted fixes. Please note /v1/charges is deprecated.",
        "3.4 notes - faster dashboards; CSV export is new; bugs fixed. Note that /v1/charges is deprecated.",
        "Release notes 3.4: dashboards are faster, CSV export ships, bugs fixed; /v1/charges deprecated.",
        "v3.4: improved dashboard speed, new CSV export, fixes. Heads-up: /v1/charges is deprecated.",
    ]
    script: list[Any] = ["v3.4: faster dashboards, CSV export, bug fixes, /v1/charges deprecated."]
    for reflection, revision in zip(reflections[:-1], revisions, strict=True):
        script += [reflection, revision]
    script.append(reflections[-1])
    model = scripted(script, model="gpt-4o")

    def generate(state: MessagesState, config: RunnableConfig) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"], config)]}

    def reflect(state: MessagesState, config: RunnableConfig) -> dict[str, Any]:
        prompt = HumanMessage("Critique the release notes above. Say DONE if they are ready.")
        reply = model.invoke([*state["messages"], prompt], config)
        return {"messages": [prompt, reply, HumanMessage("Revise the notes using the reflection.")]}

    graph = StateGraph(MessagesState)
    graph.add_node("generate", generate)
    graph.add_node("reflect", reflect)
    graph.add_edge(START, "generate")
    graph.add_edge("generate", "reflect")
    graph.add_conditional_edges(
        "reflect", lambda s: END if "DONE" in text_of(s["messages"][-2]) else "generate", ["generate", END]
    )
    graph.compile().invoke(
        {"messages": [HumanMessage("Write release notes for v3.4 from the changelog.")]}, cfg(callbacks)
    )


class _TuneState(TypedDict):
    proposals: Annotated[list[str], operator.add]
    reviews: Annotated[list[str], operator.add]


@scenario(
    "query_tuning_paraphrase",
    "paraphrased_reflection",
    style="StateGraph",
    loop_start=5,
    description="A DB-performance graph with Command routing: after a first (status) index is rejected and a composite "
    "index is proposed, the tuner keeps re-proposing that composite index in new words and the reviewer keeps "
    "restating that the plan still shows a sequential scan.",
)
def query_tuning_paraphrase(callbacks: Callbacks) -> None:
    proposals = [
        "Proposal: add an index on orders(status).",
        "Proposal: create a composite index on orders(customer_id, created_at DESC).",
        "Proposal: build a composite index orders(customer_id, created_at desc) to serve the query.",
        "Proposal: index orders on (customer_id, created_at DESC) as a composite key.",
        "Proposal: the fix is a composite index over customer_id and created_at (descending) on orders.",
        "Proposal: add composite index (customer_id, created_at DESC) on the orders table.",
        "Proposal: create index ix_orders_cust_created on orders (customer_id, created_at DESC).",
        "Proposal: a composite B-tree on orders(customer_id, created_at DESC) should solve it.",
        "Proposal: let's add the (customer_id, created_at DESC) composite index to orders.",
    ]
    reviews = [
        "The plan still uses a sequential scan on orders; status has low selectivity.",
        "EXPLAIN still shows Seq Scan on orders - the new index isn't being picked up.",
        "The query plan continues to do a sequential scan on orders; the index is not used.",
        "Still a Seq Scan on orders in the plan; the planner ignores that index.",
        "Plan unchanged: sequential scan over orders, index unused.",
        "We still see Seq Scan on orders; the proposed index does not get used.",
        "The planner keeps choosing a sequential scan of orders rather than the index.",
        "Seq Scan on orders remains in the plan; the index isn't chosen.",
        "Accepting as-is; opening a ticket to check the WHERE clause casts. DONE",
    ]
    tuner = scripted(proposals, model="gpt-4.1")
    reviewer = scripted(reviews, model="gpt-4o-mini")
    query = "SELECT * FROM orders WHERE customer_id::text = $1 ORDER BY created_at DESC LIMIT 20"

    def tune(state: _TuneState, config: RunnableConfig) -> Command[Literal["review"]]:
        feedback = state["reviews"][-1] if state["reviews"] else "first attempt"
        reply = tuner.invoke([HumanMessage(f"Speed up: {query}\nReviewer said: {feedback}")], config)
        return Command(goto="review", update={"proposals": [text_of(reply)]})

    def review(state: _TuneState, config: RunnableConfig) -> Command[Any]:
        verdict = text_of(
            reviewer.invoke([HumanMessage(f"{state['proposals'][-1]}\nEXPLAIN ANALYZE attached.")], config)
        )
        return Command(goto=END if verdict.endswith("DONE") else "tune", update={"reviews": [verdict]})

    graph = StateGraph(_TuneState)
    graph.add_node("tune", tune)
    graph.add_node("review", review, destinations=("tune", END))
    graph.add_edge(START, "tune")
    graph.compile().invoke({"proposals": [], "reviews": []}, cfg(callbacks))


# ---------------------------------------------------------------------------------------------------- rotation_loop


@scenario(
    "alert_triage_rotation",
    "rotation_loop",
    style="StateGraph",
    loop_start=6,
    description="An on-call graph lists alerts, then cycles CPU, memory, error-rate and deploy-history lookups for the "
    "same service; the four results never change.",
)
def alert_triage_rotation(callbacks: Callbacks) -> None:
    ids = Ids("alert_triage_rotation")

    @tool
    def list_alerts(service: str) -> str:
        """Lists firing alerts."""
        return "search-api: HighLatency (p95 1.4s > 800ms) firing 23m"

    @tool
    def cpu_usage(service: str, window: str) -> str:
        """CPU utilisation."""
        return "avg 41%, max 58% across 6 pods"

    @tool
    def memory_usage(service: str, window: str) -> str:
        """Memory utilisation."""
        return "avg 62%, no OOMKills"

    @tool
    def error_rate(service: str, window: str) -> str:
        """5xx rate."""
        return "0.3% (baseline 0.2%)"

    @tool
    def recent_deploys(service: str, hours: int) -> str:
        """Deploy history."""
        return "no deploys in the last 24h; last: v8.1.3 two days ago"

    cycle: list[tuple[str, dict[str, Any]]] = [
        ("cpu_usage", {"service": "search-api", "window": "30m"}),
        ("memory_usage", {"service": "search-api", "window": "30m"}),
        ("error_rate", {"service": "search-api", "window": "30m"}),
        ("recent_deploys", {"service": "search-api", "hours": 24}),
    ]
    replies: list[Any] = [ids.call("list_alerts", {"service": "search-api"})]
    replies += [ids.call(*cycle[i % 4]) for i in range(21)]
    replies.append(
        "search-api latency isn't explained by CPU, memory, errors or deploys; check the Elasticsearch cluster."
    )
    tools = [list_alerts, cpu_usage, memory_usage, error_rate, recent_deploys]
    graph = _tool_loop(scripted(replies, model="gpt-4.1-mini"), tools, "You are the SRE on call.")
    _ask(graph, callbacks, "HighLatency alert on search-api. What's going on?")


# ---------------------------------------------------------------------------------------------- supervisor_pingpong


class _TeamState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    next: str


@scenario(
    "research_writer_pingpong",
    "supervisor_pingpong",
    style="StateGraph",
    loop_start=5,
    description="A report-writing supervisor routes researcher -> writer -> researcher...; the writer keeps asking "
    "for a source the researcher never adds, and both repeat themselves.",
)
def research_writer_pingpong(callbacks: Callbacks) -> None:
    rounds = 5
    supervisor = scripted(
        [
            *[json.dumps({"next": n}) for _ in range(rounds) for n in ("researcher", "writer")],
            json.dumps({"next": "FINISH"}),
        ],
        model="gpt-4.1",
    )
    researcher = scripted(
        ["Research: the EU heat-pump market was about EUR 4.2B in 2024 and grew ~9% a year."] * rounds,
        model="gpt-4o-mini",
    )
    writer = scripted(
        ["I can't write the market-size section without a citable source for the EUR 4.2B figure."] * rounds,
        model="gpt-4o-mini",
    )

    def supervise(state: _TeamState, config: RunnableConfig) -> dict[str, Any]:
        reply = supervisor.invoke(
            [SystemMessage("Pick researcher, writer or FINISH as JSON."), *state["messages"]], config
        )
        return {"next": json.loads(text_of(reply))["next"]}

    def member(model: Any, name: str) -> Any:
        def run(state: _TeamState, config: RunnableConfig) -> dict[str, Any]:
            reply = ai(model.invoke(state["messages"], config))
            return {"messages": [AIMessage(content=reply.content, name=name, usage_metadata=reply.usage_metadata)]}

        return run

    graph = StateGraph(_TeamState)
    graph.add_node("supervisor", supervise)
    graph.add_node("researcher", member(researcher, "researcher"))
    graph.add_node("writer", member(writer, "writer"))
    graph.add_edge(START, "supervisor")
    graph.add_edge("researcher", "supervisor")
    graph.add_edge("writer", "supervisor")
    graph.add_conditional_edges(
        "supervisor", lambda s: END if s["next"] == "FINISH" else s["next"], ["researcher", "writer", END]
    )
    prompt = "Write the market-size section of the heat-pump investment memo, with sources."
    graph.compile().invoke({"messages": [HumanMessage(prompt)], "next": ""}, cfg(callbacks))


class _DeskState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


@scenario(
    "billing_tech_command_pingpong",
    "supervisor_pingpong",
    style="StateGraph",
    loop_start=5,
    description="A support supervisor hands off with Command: billing says it's a technical webhook problem, "
    "technical says it's a billing dispute, and the supervisor bounces the ticket between them.",
)
def billing_tech_command_pingpong(callbacks: Callbacks) -> None:
    rounds = 7
    supervisor = scripted(
        [*["billing", "technical"] * rounds, "human"],
        model="gpt-4o",
    )
    billing = scripted(
        ["Billing: the charge failed because the webhook never confirmed it - that's a technical issue."] * rounds
    )
    technical = scripted(
        ["Technical: webhooks are delivering fine; the disputed amount is a billing question."] * rounds
    )
    closer = scripted(["Escalated to a human agent with the full history."], model="gpt-4o-mini")

    def supervise(state: _DeskState, config: RunnableConfig) -> Command[Any]:
        target = text_of(
            supervisor.invoke([SystemMessage("Reply with billing, technical or human."), *state["messages"]], config)
        )
        return Command(goto=target)

    def agent(model: Any) -> Any:
        def run(state: _DeskState, config: RunnableConfig) -> Command[Literal["supervisor"]]:
            return Command(goto="supervisor", update={"messages": [model.invoke(state["messages"], config)]})

        return run

    def human(state: _DeskState, config: RunnableConfig) -> dict[str, Any]:
        return {"messages": [closer.invoke(state["messages"], config)]}

    graph = StateGraph(_DeskState)
    graph.add_node("supervisor", supervise, destinations=("billing", "technical", "human"))
    graph.add_node("billing", agent(billing))
    graph.add_node("technical", agent(technical))
    graph.add_node("human", human)
    graph.add_edge(START, "supervisor")
    graph.add_edge("human", END)
    ticket = "Customer 8812: charged EUR 340 but the order shows unpaid; they want it sorted today."
    graph.compile().invoke({"messages": [HumanMessage(ticket)]}, cfg(callbacks))


class _DealDeskState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    route: str


@scenario(
    "procurement_agents_pingpong",
    "supervisor_pingpong",
    style="both",
    loop_start=7,
    description="A procurement supervisor alternates between a security-review create_agent and a legal create_agent "
    "worker; each runs the same lookup and gives the same 'waiting on the other team' answer every round.",
)
def procurement_agents_pingpong(callbacks: Callbacks) -> None:
    ids = Ids("procurement_agents_pingpong")
    rounds = 4

    @tool
    def get_questionnaire(vendor: str) -> str:
        """Fetches the vendor's security questionnaire status."""
        return f"{vendor}: SIG-lite received, DPA not signed, pen-test report pending NDA"

    @tool
    def get_contract_status(vendor: str) -> str:
        """Fetches contract redline status."""
        return f"{vendor}: MSA redlines agreed; DPA blocked until security review completes"

    sec_script: list[Any] = []
    legal_script: list[Any] = []
    for _ in range(rounds):
        sec_script += [
            ids.call("get_questionnaire", {"vendor": "Skyvault"}),
            "Security: can't finish the review until Legal signs the NDA for the pen-test report.",
        ]
        legal_script += [
            ids.call("get_contract_status", {"vendor": "Skyvault"}),
            "Legal: NDA and DPA wait for the security review to complete first.",
        ]
    security = create_agent(scripted(sec_script), [get_questionnaire], system_prompt="You review vendor security.")
    legal = create_agent(scripted(legal_script), [get_contract_status], system_prompt="You handle vendor contracts.")
    supervisor = scripted([*["security", "legal"] * rounds, "FINISH"], model="gpt-4.1")

    def supervise(state: _DealDeskState, config: RunnableConfig) -> dict[str, Any]:
        return {"route": text_of(supervisor.invoke(state["messages"], config))}

    def worker(agent: Any) -> Any:
        def run(state: _DealDeskState, config: RunnableConfig) -> dict[str, Any]:
            out = agent.invoke({"messages": [state["messages"][0]]}, config)
            return {"messages": [HumanMessage(text_of(out["messages"][-1]))]}

        return run

    graph = StateGraph(_DealDeskState)
    graph.add_node("supervisor", supervise)
    graph.add_node("security", worker(security))
    graph.add_node("legal", worker(legal))
    graph.add_edge(START, "supervisor")
    graph.add_edge("security", "supervisor")
    graph.add_edge("legal", "supervisor")
    graph.add_conditional_edges(
        "supervisor", lambda s: END if s["route"] == "FINISH" else s["route"], ["security", "legal", END]
    )
    prompt = "Onboard Skyvault as a backup vendor; we need security and legal sign-off."
    graph.compile().invoke({"messages": [HumanMessage(prompt)], "route": ""}, cfg(callbacks))


# ----------------------------------------------------------------------------------------- repeated_answer_no_input


class _AnswerState(TypedDict):
    question: str
    context: str
    draft: str
    checks: int


@scenario(
    "answer_check_edge_repeat",
    "repeated_answer_no_input",
    style="StateGraph",
    loop_start=2,
    description="A RAG graph retrieves context, then a format check that gives no feedback sends the unchanged state "
    "back to the answer node, which regenerates the same answer many times.",
)
def answer_check_edge_repeat(callbacks: Callbacks) -> None:
    answer = "Enterprise customers get 99.95% monthly uptime; credits are 10% of the monthly fee per 0.1% below."
    model = scripted([answer] * 15 + [answer + "\nSources: MSA §7.2"], model="gpt-4o-mini")

    @tool
    def retrieve(query: str) -> str:
        """Retrieves passages from the contract library."""
        return "MSA §7.2: Enterprise SLA 99.95% monthly; service credit 10% of monthly fee per 0.1% shortfall."

    def fetch(state: _AnswerState, config: RunnableConfig) -> dict[str, Any]:
        return {"context": retrieve.invoke({"query": state["question"]}, config)}

    def respond(state: _AnswerState, config: RunnableConfig) -> dict[str, Any]:
        prompt = [
            SystemMessage(f"Answer from the context. Cite sources.\n{state['context']}"),
            HumanMessage(state["question"]),
        ]
        return {"draft": text_of(model.invoke(prompt, config))}

    def check(state: _AnswerState) -> dict[str, Any]:
        return {"checks": state["checks"] + 1}

    graph = StateGraph(_AnswerState)
    graph.add_node("fetch", fetch)
    graph.add_node("respond", respond)
    graph.add_node("check", check)
    graph.add_edge(START, "fetch")
    graph.add_edge("fetch", "respond")
    graph.add_edge("respond", "check")
    graph.add_conditional_edges("check", lambda s: END if "Sources:" in s["draft"] else "respond", ["respond", END])
    question = "What uptime do we promise enterprise customers and what are the credits?"
    graph.compile().invoke({"question": question, "context": "", "draft": "", "checks": 0}, cfg(callbacks))


class _KpiState(TypedDict):
    metrics: str
    narrative: str
    published: bool


@scenario(
    "kpi_narrative_near_identical",
    "repeated_answer_no_input",
    style="StateGraph",
    loop_start=2,
    description="A dashboard graph's narrate node is re-run on an unchanged state by a publish gate; the model returns "
    "near-identical KPI summaries differing only in punctuation.",
)
def kpi_narrative_near_identical(callbacks: Callbacks) -> None:
    variants = [
        "Weekly KPIs: revenue $1.24M (+12% WoW), churn 1.8%, NPS 41.",
        "Weekly KPIs: revenue $1.24M (+12% WoW); churn 1.8%; NPS 41.",
        "Weekly KPIs - revenue $1.24M (+12% WoW), churn 1.8%, NPS 41",
        "Weekly KPIs: revenue $1.24M (+12% WoW), churn 1.8%, NPS 41",
    ]
    model = scripted([variants[i % 4] for i in range(15)] + ["[final] " + variants[0]], model="gpt-4o")
    metrics = "revenue=1243110 wow=0.121 churn=0.018 nps=41"

    def narrate(state: _KpiState, config: RunnableConfig) -> dict[str, Any]:
        reply = model.invoke(
            [SystemMessage("Summarise the weekly KPIs in one line."), HumanMessage(state["metrics"])], config
        )
        return {"narrative": text_of(reply)}

    def gate(state: _KpiState) -> dict[str, Any]:
        return {"published": state["narrative"].startswith("[final]")}

    graph = StateGraph(_KpiState)
    graph.add_node("narrate", narrate)
    graph.add_node("gate", gate)
    graph.add_edge(START, "narrate")
    graph.add_edge("narrate", "gate")
    graph.add_conditional_edges("gate", lambda s: END if s["published"] else "narrate", ["narrate", END])
    graph.compile().invoke({"metrics": metrics, "narrative": "", "published": False}, cfg(callbacks))


# ------------------------------------------------------------------------------------------------- pagination_stuck


@scenario(
    "audit_cursor_not_advancing",
    "pagination_stuck",
    style="StateGraph",
    loop_start=3,
    description="A security graph reads audit events with a cursor; the API keeps returning the same next_cursor and "
    "the same events, and the model keeps passing that cursor back.",
)
def audit_cursor_not_advancing(callbacks: Callbacks) -> None:
    ids = Ids("audit_cursor_not_advancing")

    @tool
    def fetch_audit_events(org: str, cursor: str | None = None) -> str:
        """Fetches audit-log events, 100 per call, with a cursor."""
        if cursor is None:
            return json.dumps(
                {"events": ["login admin@x", "role change u12", "api key created"], "next_cursor": "c_9f2a"}
            )
        return json.dumps({"events": ["export started u7", "login u3", "sso config read"], "next_cursor": "c_9f2a"})

    replies: list[Any] = [ids.call("fetch_audit_events", {"org": "acme"})]
    replies += [ids.call("fetch_audit_events", {"org": "acme", "cursor": "c_9f2a"}) for _ in range(16)]
    replies.append("Audit log read so far shows an API key creation and a role change; the cursor stopped advancing.")
    graph = _tool_loop(scripted(replies), [fetch_audit_events], "You investigate security events.")
    _ask(graph, callbacks, "Pull all audit events for org acme from the last 7 days and flag anything risky.")


# ---------------------------------------------------------------------------------------------------- subgraph_loop


class _EnrichInner(TypedDict):
    domain: str
    raw: str
    profile: str


class _EnrichOuter(TypedDict):
    domain: str
    profile: str
    decision: str


@scenario(
    "enrichment_subgraph_rerun",
    "subgraph_loop",
    style="StateGraph",
    loop_start=3,
    description="A lead-scoring graph's router keeps re-running the enrichment subgraph (lookup tool + normaliser "
    "model) on the same domain, which keeps producing the same 'size unknown' profile.",
)
def enrichment_subgraph_rerun(callbacks: Callbacks) -> None:
    rounds = 9
    router = scripted(["enrich"] * rounds + ["score: B (size unknown, industry fits)"], model="gpt-4.1")
    normaliser = scripted(["Globex Ltd | industry: manufacturing | size: unknown | hq: unknown"] * rounds)

    @tool
    def firmographics(domain: str) -> str:
        """Looks up firmographic data for a domain."""
        return f"{domain}: name=Globex Ltd, industry=Manufacturing, employees=null, hq=null"

    def lookup(state: _EnrichInner, config: RunnableConfig) -> dict[str, Any]:
        return {"raw": firmographics.invoke({"domain": state["domain"]}, config)}

    def normalise(state: _EnrichInner, config: RunnableConfig) -> dict[str, Any]:
        return {"profile": text_of(normaliser.invoke([HumanMessage(state["raw"])], config))}

    inner = StateGraph(_EnrichInner)
    inner.add_node("lookup", lookup)
    inner.add_node("normalise", normalise)
    inner.add_edge(START, "lookup")
    inner.add_edge("lookup", "normalise")
    inner.add_edge("normalise", END)

    def route(state: _EnrichOuter, config: RunnableConfig) -> dict[str, Any]:
        prompt = f"Lead {state['domain']}. Profile: {state['profile'] or 'none'}. Reply 'enrich' or 'score: ...'."
        return {"decision": text_of(router.invoke([HumanMessage(prompt)], config))}

    outer = StateGraph(_EnrichOuter)
    outer.add_node("route", route)
    outer.add_node("enrich", inner.compile())
    outer.add_edge(START, "route")
    outer.add_conditional_edges("route", lambda s: "enrich" if s["decision"] == "enrich" else END, ["enrich", END])
    outer.add_edge("enrich", "route")
    outer.compile().invoke({"domain": "globex.co.uk", "profile": "", "decision": ""}, cfg(callbacks))


class _QaInner(TypedDict):
    answer: str
    verdicts: Annotated[list[str], operator.add]


class _QaOuter(TypedDict):
    question: str
    answer: str
    verdicts: list[str]
    attempts: int


@scenario(
    "qa_subgraph_retry",
    "subgraph_loop",
    style="StateGraph",
    loop_start=4,
    description="A customer-reply graph writes an answer once, then its QA subgraph (fact check + tone check) is "
    "re-invoked on that same answer after every failure, returning the same verdicts each time.",
)
def qa_subgraph_retry(callbacks: Callbacks) -> None:
    rounds = 9
    writer = scripted(["Hey! Yeah we're gonna refund you, should land in like 5 days. Cheers"], model="gpt-4o-mini")
    fact = scripted(["PASS: refund and 5-day timeline match policy RF-2."] * rounds, model="gpt-4o")
    tone = scripted(
        ["FAIL: tone too informal ('gonna', 'like', 'Cheers') for a refund reply."] * (rounds - 1)
        + ["PASS: acceptable tone after manual override."],
        model="gpt-4o",
    )

    def fact_node(state: _QaInner, config: RunnableConfig) -> dict[str, Any]:
        return {"verdicts": [text_of(fact.invoke([HumanMessage(f"Fact-check: {state['answer']}")], config))]}

    def tone_node(state: _QaInner, config: RunnableConfig) -> dict[str, Any]:
        return {"verdicts": [text_of(tone.invoke([HumanMessage(f"Tone-check: {state['answer']}")], config))]}

    inner = StateGraph(_QaInner)
    inner.add_node("fact", fact_node)
    inner.add_node("tone", tone_node)
    inner.add_edge(START, "fact")
    inner.add_edge("fact", "tone")
    inner.add_edge("tone", END)
    qa = inner.compile()

    def write(state: _QaOuter, config: RunnableConfig) -> dict[str, Any]:
        return {"answer": text_of(writer.invoke([HumanMessage(state["question"])], config))}

    def run_qa(state: _QaOuter, config: RunnableConfig) -> dict[str, Any]:
        out = qa.invoke({"answer": state["answer"], "verdicts": []}, config)
        return {"verdicts": out["verdicts"], "attempts": state["attempts"] + 1}

    def passed(state: _QaOuter) -> str:
        return END if all(v.startswith("PASS") for v in state["verdicts"]) else "qa"

    outer = StateGraph(_QaOuter)
    outer.add_node("write", write)
    outer.add_node("qa", run_qa)
    outer.add_edge(START, "write")
    outer.add_edge("write", "qa")
    outer.add_conditional_edges("qa", passed, ["qa", END])
    question = "Order 7712 arrived broken, will I get my money back?"
    outer.compile().invoke({"question": question, "answer": "", "verdicts": [], "attempts": 0}, cfg(callbacks))


class _TrInner(TypedDict):
    key: str
    source: str
    translations: Annotated[list[str], operator.add]


class _TrOuter(TypedDict):
    strings: dict[str, str]
    translations: Annotated[list[str], operator.add]
    accepted: bool


@scenario(
    "glossary_translation_subgraph_loop",
    "subgraph_loop",
    style="StateGraph",
    loop_start=3,
    description="A localisation graph sends the same two UI strings to a translation subgraph with Send every round; "
    "the glossary gate rejects 'Arbeitsraum' (needs 'Arbeitsbereich') and the subgraph returns the same output again.",
)
def glossary_translation_subgraph_loop(callbacks: Callbacks) -> None:
    rounds = 8
    strings = {"ws.title": "Your workspace", "ws.invite": "Invite people to this workspace"}
    outputs = {
        "Your workspace": "Ihr Arbeitsraum",
        "Invite people to this workspace": "Personen in diesen Arbeitsraum einladen",
    }

    def translate(messages: Sequence[BaseMessage]) -> str:
        return outputs[last_human(messages)]

    def translate_fixed(messages: Sequence[BaseMessage]) -> str:
        return outputs[last_human(messages)].replace("Arbeitsraum", "Arbeitsbereich")

    model = scripted([translate] * (2 * rounds) + [translate_fixed] * 2, model="gpt-4o-mini")

    def translate_node(state: _TrInner, config: RunnableConfig) -> dict[str, Any]:
        reply = model.invoke(
            [SystemMessage("Translate the UI string to German."), HumanMessage(state["source"])], config
        )
        return {"translations": [f"{state['key']}={text_of(reply)}"]}

    inner = StateGraph(_TrInner)
    inner.add_node("translate", translate_node)
    inner.add_edge(START, "translate")
    inner.add_edge("translate", END)

    def dispatch(state: _TrOuter) -> list[Send]:
        return [Send("translator", {"key": k, "source": v, "translations": []}) for k, v in state["strings"].items()]

    def gate(state: _TrOuter) -> dict[str, Any]:
        latest = state["translations"][-len(state["strings"]) :]
        return {"accepted": all("Arbeitsbereich" in t for t in latest)}

    outer = StateGraph(_TrOuter)
    outer.add_node("translator", inner.compile())
    outer.add_node("gate", gate)
    outer.add_conditional_edges(START, dispatch, ["translator"])
    outer.add_edge("translator", "gate")
    outer.add_conditional_edges("gate", lambda s: END if s["accepted"] else dispatch(s), ["translator", END])
    outer.compile().invoke({"strings": strings, "translations": [], "accepted": False}, cfg(callbacks))

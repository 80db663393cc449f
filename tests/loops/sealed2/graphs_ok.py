"""Progressing runs of hand-built LangGraph ``StateGraph`` workflows."""

from __future__ import annotations

import json
import operator
from collections.abc import Sequence
from typing import Annotated, Any, Literal, TypedDict

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import ToolException, tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.graph.message import add_messages
from langgraph.prebuilt import ToolNode, tools_condition
from langgraph.types import Command, Send, interrupt

from ._kit import Callbacks, Ids, Volatile, ai, cfg, failing, last_human, scenario, scripted, text_of


def _react(model: Any, tools: Sequence[Any], system: str) -> Any:
    """A hand-built ReAct graph with a ``ToolNode`` and langgraph's ``tools_condition``."""
    bound = model.bind_tools(tools)

    def agent(state: MessagesState, config: RunnableConfig) -> dict[str, list[BaseMessage]]:
        return {"messages": [bound.invoke([SystemMessage(system), *state["messages"]], config)]}

    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_node("tools", ToolNode(tools))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition)
    graph.add_edge("tools", "agent")
    return graph.compile()


# --------------------------------------------------------------------------------------------- batch_classification


class _ReviewState(TypedDict):
    reviews: list[str]
    index: int
    labels: Annotated[list[str], operator.add]


@scenario(
    "review_sentiment_loop",
    "batch_classification",
    style="StateGraph",
    description="A product-feedback graph loops over fourteen distinct app-store reviews, one model call each; the "
    "label is 'positive' every time.",
)
def review_sentiment_loop(callbacks: Callbacks) -> None:
    reviews = [
        "Finally an invoicing app that doesn't crash on my old iPad. Love it.",
        "Support answered in 10 minutes on a Sunday. Wow.",
        "The new dark mode is gorgeous, thank you!",
        "Exporting to QuickBooks saved me hours this quarter.",
        "Clean UI, fast sync between phone and laptop.",
        "Recurring invoices just work. Five stars.",
        "I switched from FreshBooks and don't regret it.",
        "The receipt scanner reads even crumpled receipts.",
        "Great value for a two-person business.",
        "Multi-currency support is exactly what I needed.",
        "Reminders got my clients to pay on time.",
        "Setup took five minutes, onboarding was painless.",
        "Offline mode on the train is a lifesaver.",
        "The tax summary report is super handy in April.",
    ]
    model = scripted(["positive"] * len(reviews), model="gpt-4o-mini")
    system = SystemMessage("Classify the review's sentiment. Answer with one word: positive, negative or neutral.")

    def classify(state: _ReviewState, config: RunnableConfig) -> dict[str, Any]:
        review = state["reviews"][state["index"]]
        label = text_of(model.invoke([system, HumanMessage(review)], config)).strip().lower()
        return {"labels": [label], "index": state["index"] + 1}

    def more(state: _ReviewState) -> str:
        return "classify" if state["index"] < len(state["reviews"]) else END

    graph = StateGraph(_ReviewState)
    graph.add_node("classify", classify)
    graph.add_edge(START, "classify")
    graph.add_conditional_edges("classify", more, ["classify", END])
    out = graph.compile().invoke({"reviews": reviews, "index": 0, "labels": []}, cfg(callbacks))
    assert out["labels"] == ["positive"] * len(reviews)


class _TicketState(TypedDict):
    tickets: list[dict[str, str]]
    verdicts: Annotated[list[str], operator.add]
    digest: str


class _OneTicket(TypedDict):
    ticket: dict[str, str]


@scenario(
    "ticket_priority_fanout",
    "batch_classification",
    style="StateGraph",
    description="A helpdesk graph fans twelve distinct tickets out with Send; each triage call returns the same fixed "
    "JSON verdict, then a digest node summarises the batch.",
)
def ticket_priority_fanout(callbacks: Callbacks) -> None:
    subjects = [
        "How do I change my invoice email?",
        "Where can I download last year's receipts?",
        "Feature request: keyboard shortcut for search",
        "Typo on the pricing page",
        "Can I add a second admin?",
        "Dark mode colours look off in Firefox",
        "How to export contacts to CSV",
        "Is there a student discount?",
        "Profile photo won't upload (HEIC)",
        "Change the default currency",
        "Question about the referral programme",
        "Calendar sync shows wrong time zone label",
    ]
    tickets = [{"id": f"HD-{7300 + 3 * i}", "subject": s} for i, s in enumerate(subjects)]
    verdict = json.dumps({"priority": "P4", "queue": "self-service", "escalate": False})
    triage_model = scripted([verdict] * len(tickets), model="gpt-4o-mini")
    digest_model = scripted(["12 tickets triaged: all P4 self-service, no escalations. Suggest 3 macro updates."])

    def fan_out(state: _TicketState) -> list[Send]:
        return [Send("triage", {"ticket": t}) for t in state["tickets"]]

    def triage(state: _OneTicket, config: RunnableConfig) -> dict[str, Any]:
        t = state["ticket"]
        prompt = [
            SystemMessage("Return JSON with priority, queue, escalate."),
            HumanMessage(f"{t['id']}: {t['subject']}"),
        ]
        return {"verdicts": [text_of(triage_model.invoke(prompt, config))]}

    def digest(state: _TicketState, config: RunnableConfig) -> dict[str, Any]:
        reply = digest_model.invoke(
            [HumanMessage("Summarise these triage verdicts:\n" + "\n".join(state["verdicts"]))], config
        )
        return {"digest": text_of(reply)}

    graph = StateGraph(_TicketState)
    graph.add_node("triage", triage)
    graph.add_node("digest", digest)
    graph.add_conditional_edges(START, fan_out, ["triage"])
    graph.add_edge("triage", "digest")
    graph.add_edge("digest", END)
    graph.compile().invoke({"tickets": tickets, "verdicts": [], "digest": ""}, cfg(callbacks))


# --------------------------------------------------------------------------------------------------- extraction_map


class _NotesState(TypedDict):
    meetings: list[str]
    cursor: int
    action_items: Annotated[list[str], operator.add]


@scenario(
    "meeting_action_items",
    "extraction_map",
    style="StateGraph",
    description="A meeting-notes graph walks twelve distinct transcripts and extracts action items; nine of them "
    "produce the identical output 'No action items.'.",
)
def meeting_action_items(callbacks: Callbacks) -> None:
    meetings = [
        "Standup 03-03: everyone on track, nothing blocked.",
        "Design sync: Priya will send the revised onboarding mocks by Friday.",
        "1:1 Tom/Ana: general catch-up about conference talks.",
        "Sprint review: demoed search filters; stakeholders happy.",
        "Incident review: Marc will add an alert on queue depth > 10k.",
        "Coffee chat with new hire, introductions only.",
        "Standup 03-04: no blockers reported.",
        "Roadmap read-out: leadership shared Q2 themes, no decisions.",
        "Vendor call: Li will ask legal to review the DPA before 03-15.",
        "Guild meeting: people shared favourite VS Code extensions.",
        "Standup 03-05: all green.",
        "All-hands recap: celebrated the launch.",
    ]
    found = {
        "Priya": "- Priya: send revised onboarding mocks (due Fri)",
        "Marc": "- Marc: add alert when queue depth > 10k",
        "Li will": "- Li: get legal review of the DPA (due 03-15)",
    }

    def extract(messages: Sequence[BaseMessage]) -> str:
        text = last_human(messages)
        return next((v for k, v in found.items() if k in text), "No action items.")

    model = scripted([extract] * len(meetings), model="claude-3-5-haiku-latest", provider="anthropic")

    def extract_node(state: _NotesState, config: RunnableConfig) -> dict[str, Any]:
        prompt = [SystemMessage("List action items as '- owner: task'. If none, say 'No action items.'")]
        reply = model.invoke([*prompt, HumanMessage(state["meetings"][state["cursor"]])], config)
        return {"action_items": [text_of(reply)], "cursor": state["cursor"] + 1}

    graph = StateGraph(_NotesState)
    graph.add_node("extract", extract_node)
    graph.add_edge(START, "extract")
    graph.add_conditional_edges(
        "extract", lambda s: "extract" if s["cursor"] < len(s["meetings"]) else END, ["extract", END]
    )
    graph.compile().invoke({"meetings": meetings, "cursor": 0, "action_items": []}, cfg(callbacks))


class _ContractState(TypedDict):
    contracts: dict[str, str]
    clauses: Annotated[list[tuple[str, str]], operator.add]
    register: str


class _OneContract(TypedDict):
    contract_id: str
    text: str


@scenario(
    "contract_clause_fanout",
    "extraction_map",
    style="StateGraph",
    description="A legal-ops graph sends ten distinct contracts to a clause extractor via Send; seven return the same "
    "JSON (no auto-renewal, 30-day notice, Delaware law); a register node writes the result.",
)
def contract_clause_fanout(callbacks: Callbacks) -> None:
    vol = Volatile("contract_clause_fanout")
    contracts = {f"CTR-{vol.int(1000, 9999)}": f"Master services agreement #{i}, signed 2024" for i in range(10)}
    special = dict(zip(list(contracts)[2::3], ["renews annually", "notice 90 days", "laws of England"], strict=True))
    for cid, clause in special.items():
        contracts[cid] += f"; {clause}"
    standard = json.dumps({"auto_renewal": False, "notice_days": 30, "governing_law": "Delaware"})

    def extract(messages: Sequence[BaseMessage]) -> str:
        text = last_human(messages)
        if "renews annually" in text:
            return json.dumps({"auto_renewal": True, "notice_days": 30, "governing_law": "Delaware"})
        if "90 days" in text:
            return json.dumps({"auto_renewal": False, "notice_days": 90, "governing_law": "Delaware"})
        if "England" in text:
            return json.dumps({"auto_renewal": False, "notice_days": 30, "governing_law": "England"})
        return standard

    model = scripted([extract] * len(contracts), model="gpt-4o")

    @tool
    def write_register(rows: int) -> str:
        """Writes the clause register spreadsheet."""
        return f"clause-register.xlsx updated with {rows} rows"

    def fan_out(state: _ContractState) -> list[Send]:
        return [Send("extract", {"contract_id": k, "text": v}) for k, v in state["contracts"].items()]

    def extract_node(state: _OneContract, config: RunnableConfig) -> dict[str, Any]:
        reply = model.invoke(
            [SystemMessage("Extract renewal, notice and law as JSON."), HumanMessage(state["text"])], config
        )
        return {"clauses": [(state["contract_id"], text_of(reply))]}

    def register(state: _ContractState, config: RunnableConfig) -> dict[str, Any]:
        return {"register": write_register.invoke({"rows": len(state["clauses"])}, config)}

    graph = StateGraph(_ContractState)
    graph.add_node("extract", extract_node)
    graph.add_node("register", register)
    graph.add_conditional_edges(START, fan_out, ["extract"])
    graph.add_edge("extract", "register")
    graph.add_edge("register", END)
    graph.compile().invoke({"contracts": contracts, "clauses": [], "register": ""}, cfg(callbacks))


# ------------------------------------------------------------------------------------------------- fanout_summaries


class _LogState(TypedDict):
    chunks: list[str]
    summaries: Annotated[list[str], operator.add]
    postmortem: str


@scenario(
    "incident_logs_map_reduce",
    "fanout_summaries",
    style="StateGraph",
    description="An incident-review graph fans eight log chunks out with Send, summarises each, then reduces the "
    "summaries into a postmortem timeline.",
)
def incident_logs_map_reduce(callbacks: Callbacks) -> None:
    events = [
        ("02:14", "deploy api v5.2.0 started"),
        ("02:17", "p99 latency 180ms -> 1.9s on /checkout"),
        ("02:19", "db connection pool exhausted (max 50)"),
        ("02:23", "autoscaler added 6 pods, pool still exhausted"),
        ("02:31", "on-call paged, rollback initiated"),
        ("02:38", "rollback complete, latency recovering"),
        ("02:45", "error rate back under 0.1%"),
        ("03:10", "root cause: N+1 query in order history endpoint"),
    ]
    chunks = [f"[{t}] {e} (chunk {i + 1}/8, 1,2{i}4 lines)" for i, (t, e) in enumerate(events)]

    def summarise(messages: Sequence[BaseMessage]) -> str:
        text = last_human(messages)
        time_, event = text[1:6], text[8:].split(" (chunk")[0]
        return f"{time_} - {event}."

    mapper = scripted([summarise] * len(chunks), model="gpt-4o-mini")
    reducer = scripted(
        [
            "Postmortem: v5.2.0 introduced an N+1 query (02:14) that exhausted the DB pool (02:19); scaling did not "
            "help; rollback at 02:31-02:38 restored service by 02:45. Action: add query-count budget to CI."
        ],
        model="gpt-4.1",
    )

    def fan_out(state: _LogState) -> list[Send]:
        return [Send("summarise", {"chunks": [c], "summaries": [], "postmortem": ""}) for c in state["chunks"]]

    def summarise_node(state: _LogState, config: RunnableConfig) -> dict[str, Any]:
        reply = mapper.invoke(
            [SystemMessage("Summarise this log chunk in one line."), HumanMessage(state["chunks"][0])], config
        )
        return {"summaries": [text_of(reply)]}

    def reduce_node(state: _LogState, config: RunnableConfig) -> dict[str, Any]:
        timeline = "\n".join(sorted(state["summaries"]))
        return {"postmortem": text_of(reducer.invoke([HumanMessage("Write the postmortem:\n" + timeline)], config))}

    graph = StateGraph(_LogState)
    graph.add_node("summarise", summarise_node)
    graph.add_node("reduce", reduce_node)
    graph.add_conditional_edges(START, fan_out, ["summarise"])
    graph.add_edge("summarise", "reduce")
    graph.add_edge("reduce", END)
    graph.compile().invoke({"chunks": chunks, "summaries": [], "postmortem": ""}, cfg(callbacks))


class _CallState(TypedDict):
    sections: list[str]
    summaries: Annotated[list[tuple[int, str]], operator.add]
    groups: Annotated[list[str], operator.add]
    brief: str


@scenario(
    "earnings_call_two_level",
    "fanout_summaries",
    style="StateGraph",
    description="An equity-research graph summarises nine earnings-call sections in parallel, collapses them in three "
    "groups with a second Send fan-out, then writes the analyst brief.",
)
def earnings_call_two_level(callbacks: Callbacks) -> None:
    facts = [
        "Revenue $4.21B, +11% y/y, beat consensus by 2%",
        "Gross margin 61.4%, +120bp on mix shift to software",
        "Cloud ARR crossed $1B, net retention 118%",
        "Hardware units down 6% on channel destocking",
        "Opex +4%, headcount flat, AI capex guided to $600M",
        "FCF $890M; buyback raised by $2B",
        "Q2 guide revenue $4.3-4.4B vs street $4.35B",
        "CFO flags FX headwind of 1.5pts in H2",
        "Q&A: pricing pressure in mid-market, churn stable",
    ]
    sections = [f"Section {i + 1}: {f}." for i, f in enumerate(facts)]

    def summarise(messages: Sequence[BaseMessage]) -> str:
        return "Key point: " + last_human(messages).split(": ", 1)[1]

    def collapse(messages: Sequence[BaseMessage]) -> str:
        points = [line.removeprefix("Key point: ") for line in last_human(messages).splitlines()]
        return "Theme: " + "; ".join(p.rstrip(".") for p in points)

    section_model = scripted([summarise] * 9, model="gpt-4o-mini")
    group_model = scripted([collapse] * 3, model="gpt-4o-mini")
    brief_model = scripted(
        ["Brief: solid beat led by software mix and cloud ARR; hardware soft; guide in line; FX a H2 risk. Hold."],
        model="claude-3-5-sonnet-latest",
        provider="anthropic",
    )

    def fan_sections(state: _CallState) -> list[Send]:
        return [
            Send("section", {"sections": [s], "summaries": [], "groups": [], "brief": ""}) for s in state["sections"]
        ]

    def section(state: _CallState, config: RunnableConfig) -> dict[str, Any]:
        text = state["sections"][0]
        index = int(text.split(":")[0].split()[1])
        return {"summaries": [(index, text_of(section_model.invoke([HumanMessage(text)], config)))]}

    def fan_groups(state: _CallState) -> list[Send]:
        ordered = [s for _, s in sorted(state["summaries"])]
        return [
            Send("group", {"sections": ordered[g : g + 3], "summaries": [], "groups": [], "brief": ""})
            for g in range(0, len(ordered), 3)
        ]

    def group(state: _CallState, config: RunnableConfig) -> dict[str, Any]:
        reply = group_model.invoke([HumanMessage("\n".join(state["sections"]))], config)
        return {"groups": [text_of(reply)]}

    def brief(state: _CallState, config: RunnableConfig) -> dict[str, Any]:
        themes = "\n".join(state["groups"])
        return {
            "brief": text_of(brief_model.invoke([HumanMessage("Write a 3-line analyst brief:\n" + themes)], config))
        }

    graph = StateGraph(_CallState)
    graph.add_node("section", section)
    graph.add_node("group", group)
    graph.add_node("brief", brief)
    graph.add_node("gather", lambda s: {})
    graph.add_conditional_edges(START, fan_sections, ["section"])
    graph.add_edge("section", "gather")
    graph.add_conditional_edges("gather", fan_groups, ["group"])
    graph.add_edge("group", "brief")
    graph.add_edge("brief", END)
    graph.compile().invoke({"sections": sections, "summaries": [], "groups": [], "brief": ""}, cfg(callbacks))


# ------------------------------------------------------------------------------------------------------- pagination


@scenario(
    "github_issues_pager",
    "pagination",
    style="StateGraph",
    description="A maintainer bot (hand-built ReAct graph with ToolNode) pages through open issues page=1..5 until an "
    "empty page, then posts a triage summary.",
)
def github_issues_pager(callbacks: Callbacks) -> None:
    ids = Ids("github_issues_pager")
    titles = [
        ["#4410 crash on empty config", "#4412 docs: typo in quickstart", "#4415 support Python 3.13"],
        ["#4420 flaky test_stream_timeout", "#4423 memory leak in watcher", "#4424 add --json flag"],
        ["#4431 Windows path bug", "#4432 upgrade pydantic", "#4437 broken link in README"],
        ["#4440 regression in 2.8.0 CLI", "#4441 feature: plugin hooks"],
    ]

    @tool
    def list_issues(repo: str, state: str, page: int) -> str:
        """Lists issues of a repository, 30 per page."""
        rows = titles[page - 1] if page <= len(titles) else []
        return json.dumps({"page": page, "issues": rows})

    replies: list[Any] = [
        ids.call("list_issues", {"repo": "acme/flowctl", "state": "open", "page": p}) for p in range(1, 6)
    ]
    replies.append("11 open issues. Bugs to prioritise: #4440 (2.8.0 regression), #4423 (leak), #4410, #4431.")
    graph = _react(scripted(replies), [list_issues], "You triage GitHub issues for acme/flowctl.")
    graph.invoke({"messages": [HumanMessage("Weekly triage: what's open and what's urgent?")]}, cfg(callbacks))


# ------------------------------------------------------------------------------------------------- polling_finishes


class _RenderState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    polls: int


@scenario(
    "render_job_poll",
    "polling_finishes",
    style="StateGraph",
    description="A media graph submits a video render and polls it: three identical 'queued' statuses, then 40%, "
    "85% and done; a state counter tracks the polls.",
)
def render_job_poll(callbacks: Callbacks) -> None:
    ids = Ids("render_job_poll")
    statuses = [
        "job rj-5521: QUEUED (position in queue: 1)",
        "job rj-5521: QUEUED (position in queue: 1)",
        "job rj-5521: QUEUED (position in queue: 1)",
        "job rj-5521: RENDERING 40% (frame 2880/7200)",
        "job rj-5521: RENDERING 85% (frame 6120/7200)",
        "job rj-5521: DONE https://cdn.example.com/renders/rj-5521.mp4",
    ]
    pending = list(statuses)

    @tool
    def submit_render(project: str, preset: str) -> str:
        """Submits a render job."""
        return "job rj-5521 submitted"

    @tool
    def render_status(job_id: str) -> str:
        """Returns the status of a render job."""
        return pending.pop(0)

    replies: list[Any] = [ids.call("submit_render", {"project": "spring-launch-teaser", "preset": "1080p-h264"})]
    replies += [ids.call("render_status", {"job_id": "rj-5521"}) for _ in statuses]
    replies.append("The teaser is rendered: https://cdn.example.com/renders/rj-5521.mp4")
    bound = scripted(replies).bind_tools([submit_render, render_status])

    def agent(state: _RenderState, config: RunnableConfig) -> dict[str, Any]:
        reply = ai(bound.invoke(state["messages"], config))
        polls = sum(c["name"] == "render_status" for c in reply.tool_calls)
        return {"messages": [reply], "polls": state["polls"] + polls}

    graph = StateGraph(_RenderState)
    graph.add_node("agent", agent)
    graph.add_node("tools", ToolNode([submit_render, render_status]))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition)
    graph.add_edge("tools", "agent")
    out = graph.compile().invoke(
        {"messages": [HumanMessage("Render the spring launch teaser at 1080p and send me the link.")], "polls": 0},
        cfg(callbacks),
    )
    assert out["polls"] == len(statuses)


# ----------------------------------------------------------------------------------------------- retry_then_success


@scenario(
    "warehouse_sync_retry",
    "retry_then_success",
    style="StateGraph",
    description="A fulfilment graph's stock sync raises a 503 once (reported as an error ToolMessage), the retry "
    "succeeds, then stock is reserved.",
)
def warehouse_sync_retry(callbacks: Callbacks) -> None:
    ids = Ids("warehouse_sync_retry")
    state = {"calls": 0}

    @tool
    def sync_stock(warehouse: str, sku: str) -> str:
        """Pulls live stock from the warehouse management system."""
        state["calls"] += 1
        if state["calls"] == 1:
            raise ToolException("503 Service Unavailable: WMS gateway busy, please retry")
        return f"{warehouse} {sku}: on_hand=41 allocated=12 available=29"

    @tool
    def reserve_stock(warehouse: str, sku: str, qty: int, order_id: str) -> str:
        """Reserves stock for an order."""
        return f"reserved {qty}x {sku} at {warehouse} for {order_id}"

    replies: list[Any] = [
        ids.call("sync_stock", {"warehouse": "RTM-2", "sku": "BIKE-HLM-M"}),
        ids.call("sync_stock", {"warehouse": "RTM-2", "sku": "BIKE-HLM-M"}, text="WMS was busy, retrying."),
        ids.call("reserve_stock", {"warehouse": "RTM-2", "sku": "BIKE-HLM-M", "qty": 20, "order_id": "B2B-1184"}),
        "Reserved 20 helmets (BIKE-HLM-M) in Rotterdam for B2B-1184; 9 remain available.",
    ]
    tools = [failing(sync_stock), reserve_stock]
    graph = _react(scripted(replies, model="gpt-4o"), tools, "You are the fulfilment coordinator.")
    graph.invoke(
        {"messages": [HumanMessage("Reserve 20 medium helmets from Rotterdam for order B2B-1184.")]}, cfg(callbacks)
    )


# ------------------------------------------------------------------------------------------------ rate_limit_clears


@scenario(
    "translation_rate_limit",
    "rate_limit_clears",
    style="StateGraph",
    description="A localisation graph translates release notes into three languages; the French call is answered "
    "'429 rate limited, retry' in-band twice before succeeding.",
)
def translation_rate_limit(callbacks: Callbacks) -> None:
    ids = Ids("translation_rate_limit")
    state = {"fr": 0}
    done = {"de": "Neu: Offline-Modus und schnellere Synchronisierung.", "ja": "新機能: オフラインモードと高速同期。"}

    @tool
    def translate(text: str, target: str) -> str:
        """Translates text with the MT provider."""
        if target == "fr":
            state["fr"] += 1
            if state["fr"] <= 2:
                return "429 Too Many Requests: character quota per minute exceeded, retry in 20 seconds"
            return "Nouveau : mode hors ligne et synchronisation plus rapide."
        return done[target]

    text = "New: offline mode and faster sync."
    replies: list[Any] = [
        ids.call("translate", {"text": text, "target": "de"}),
        ids.call("translate", {"text": text, "target": "fr"}),
        ids.call("translate", {"text": text, "target": "fr"}),
        ids.call("translate", {"text": text, "target": "fr"}),
        ids.call("translate", {"text": text, "target": "ja"}),
        "Release notes translated into German, French and Japanese.",
    ]
    graph = _react(scripted(replies), [translate], "You localise release notes.")
    graph.invoke({"messages": [HumanMessage(f"Translate into de, fr, ja: {text}")]}, cfg(callbacks))


# --------------------------------------------------------------------------------------------------------- research


class _ResearchState(TypedDict):
    question: str
    queries: list[str]
    notes: Annotated[list[str], operator.add]
    answer: str


class _OneQuery(TypedDict):
    query: str


@scenario(
    "literature_review_graph",
    "research",
    style="StateGraph",
    description="A research graph plans four different queries, fans out a search tool plus a note-taking model call "
    "per query, and writes a cited answer.",
)
def literature_review_graph(callbacks: Callbacks) -> None:
    queries = [
        "GLP-1 agonists cardiovascular outcomes trial 2023",
        "semaglutide SELECT trial MACE reduction",
        "tirzepatide heart failure preserved ejection fraction",
        "GLP-1 real-world adherence discontinuation rates",
    ]
    corpus = {
        queries[0]: "Lincoff et al. NEJM 2023: 20% MACE reduction in non-diabetic obese adults",
        queries[1]: "SELECT: 17,604 patients, HR 0.80 for MACE, 39.8 months follow-up",
        queries[2]: "SUMMIT 2024: tirzepatide cut HF events by 38% in HFpEF with obesity",
        queries[3]: "Claims data: ~50% discontinue within 12 months, cost the top reason",
    }
    planner = scripted([json.dumps(queries)], model="gpt-4.1")
    reader = scripted([lambda m: "Finding: " + last_human(m).split(" || ")[1]] * len(queries), model="gpt-4o-mini")
    writer = scripted(
        [
            "GLP-1 drugs reduce major cardiovascular events by ~20% (SELECT, NEJM 2023) and tirzepatide reduced HF "
            "events 38% in HFpEF (SUMMIT), but half of patients stop within a year, mostly over cost."
        ],
        model="gpt-4.1",
    )

    @tool
    def search_pubmed(query: str) -> str:
        """Searches PubMed abstracts."""
        return corpus[query]

    def plan(state: _ResearchState, config: RunnableConfig) -> dict[str, Any]:
        reply = planner.invoke([HumanMessage(f"Plan searches for: {state['question']}")], config)
        return {"queries": json.loads(text_of(reply))}

    def fan_out(state: _ResearchState) -> list[Send]:
        return [Send("read", {"query": q}) for q in state["queries"]]

    def read(state: _OneQuery, config: RunnableConfig) -> dict[str, Any]:
        hit = search_pubmed.invoke({"query": state["query"]}, config)
        note = reader.invoke([HumanMessage(f"Extract the key finding: {state['query']} || {hit}")], config)
        return {"notes": [text_of(note)]}

    def write(state: _ResearchState, config: RunnableConfig) -> dict[str, Any]:
        reply = writer.invoke([HumanMessage(state["question"] + "\n" + "\n".join(state["notes"]))], config)
        return {"answer": text_of(reply)}

    graph = StateGraph(_ResearchState)
    graph.add_node("plan", plan)
    graph.add_node("read", read)
    graph.add_node("write", write)
    graph.add_edge(START, "plan")
    graph.add_conditional_edges("plan", fan_out, ["read"])
    graph.add_edge("read", "write")
    graph.add_edge("write", END)
    question = "What is the evidence on GLP-1 drugs and heart outcomes, and do patients stay on them?"
    graph.compile().invoke({"question": question, "queries": [], "notes": [], "answer": ""}, cfg(callbacks))


# ------------------------------------------------------------------------------------------------- edit_test_coding


class _CiState(TypedDict):
    task: str
    patches: Annotated[list[str], operator.add]
    reports: Annotated[list[str], operator.add]
    summary: str


@scenario(
    "refactor_ci_loop",
    "edit_test_coding",
    style="StateGraph",
    description="A coding graph alternates a coder model and a CI node: each patch changes the failures (mypy errors, "
    "then 3 failing tests, then 1, then green) until CI passes and a PR summary is written.",
)
def refactor_ci_loop(callbacks: Callbacks) -> None:
    reports = [
        "mypy: 7 errors (src/billing/money.py: Decimal vs float)",
        "pytest: 3 failed (test_rounding_half_even, test_currency_minor_units, test_split_even)",
        "pytest: 1 failed (test_split_even: remainder cent lost)",
        "CI green: 212 passed, mypy clean",
    ]
    patches = [
        "Patch 1: replace float with Decimal in Money.__init__ and arithmetic dunders.",
        "Patch 2: quantize with ROUND_HALF_EVEN and per-currency minor units table.",
        "Patch 3: Money.split distributes the remainder cents to the first parts.",
        "Patch 4: tighten split() typing and add property test for sum(parts) == total.",
    ]
    coder = scripted(patches, model="claude-3-7-sonnet-latest", provider="anthropic")
    writer = scripted(["PR: Money now uses Decimal with banker's rounding and lossless split(); CI green."])

    def code(state: _CiState, config: RunnableConfig) -> dict[str, Any]:
        feedback = state["reports"][-1] if state["reports"] else "no CI run yet"
        reply = coder.invoke(
            [SystemMessage(state["task"]), HumanMessage(f"Latest CI: {feedback}. Next patch?")], config
        )
        return {"patches": [text_of(reply)]}

    def ci(state: _CiState) -> dict[str, Any]:
        return {"reports": [reports[min(len(state["patches"]), len(reports)) - 1]]}

    def summarise(state: _CiState, config: RunnableConfig) -> dict[str, Any]:
        return {"summary": text_of(writer.invoke([HumanMessage("\n".join(state["patches"]))], config))}

    graph = StateGraph(_CiState)
    graph.add_node("code", code)
    graph.add_node("ci", ci)
    graph.add_node("summarise", summarise)
    graph.add_edge(START, "code")
    graph.add_edge("code", "ci")
    graph.add_conditional_edges(
        "ci", lambda s: "summarise" if s["reports"][-1].startswith("CI green") else "code", ["code", "summarise"]
    )
    graph.add_edge("summarise", END)
    task = "Refactor Money to avoid float rounding errors; keep CI green."
    graph.compile().invoke({"task": task, "patches": [], "reports": [], "summary": ""}, cfg(callbacks))


# ------------------------------------------------------------------------------------------------ reread_after_edit


@scenario(
    "policy_doc_reread",
    "reread_after_edit",
    style="StateGraph",
    description="A compliance-writer graph (ToolNode) updates three sections of a policy document and re-reads the "
    "same document after every update; the content differs each time.",
)
def policy_doc_reread(callbacks: Callbacks) -> None:
    ids = Ids("policy_doc_reread")
    sections = {"retention": "Keep logs 30 days.", "access": "Admins only.", "incident": "Notify within 7 days."}
    updates = [
        ("retention", "Keep security logs 13 months; application logs 90 days."),
        ("access", "Access via SSO groups, reviewed quarterly; break-glass accounts audited."),
        ("incident", "Notify the DPO within 24h and regulators within 72h of awareness."),
    ]

    @tool
    def read_doc(doc_id: str) -> str:
        """Reads a policy document."""
        return "\n".join(f"## {k}\n{v}" for k, v in sections.items())

    @tool
    def update_section(doc_id: str, section: str, text: str) -> str:
        """Replaces the body of one section."""
        sections[section] = text
        return f"{doc_id}#{section} updated"

    replies: list[Any] = [ids.call("read_doc", {"doc_id": "POL-SEC-007"})]
    for section, text in updates:
        replies.append(ids.call("update_section", {"doc_id": "POL-SEC-007", "section": section, "text": text}))
        replies.append(ids.call("read_doc", {"doc_id": "POL-SEC-007"}))
    replies.append("POL-SEC-007 now meets the ISO 27001 gaps: log retention, SSO access reviews, 72h breach notice.")
    graph = _react(scripted(replies, model="gpt-4o"), [read_doc, update_section], "You maintain security policies.")
    graph.invoke({"messages": [HumanMessage("Close the audit gaps in POL-SEC-007.")]}, cfg(callbacks))


# ------------------------------------------------------------------------------------------------- planner_executor


class _OnboardState(TypedDict):
    employee: str
    next_step: str
    results: Annotated[list[str], operator.add]


@scenario(
    "onboarding_planner_executor",
    "planner_executor",
    style="StateGraph",
    description="An IT-onboarding graph: a planner model picks the next step from the results so far, an executor "
    "runs the matching tool and reports; four distinct steps, then DONE.",
)
def onboarding_planner_executor(callbacks: Callbacks) -> None:
    steps = ["create_account", "add_to_groups", "order_laptop", "book_orientation"]
    planner = scripted([*steps, "DONE"], model="gpt-4.1")

    @tool
    def it_action(action: str, employee: str) -> str:
        """Performs an IT onboarding action."""
        return {
            "create_account": f"{employee}: account jdoe created, temp password sent to manager",
            "add_to_groups": f"{employee}: added to eng-all, eng-payments, vpn-users",
            "order_laptop": f"{employee}: MacBook Pro 14 ordered, PO-77120, ETA 03-18",
            "book_orientation": f"{employee}: orientation booked 03-17 09:30, room Atlas",
        }[action]

    executor = scripted([lambda m: "Done: " + last_human(m).split(": ", 1)[1]] * len(steps), model="gpt-4o-mini")

    def plan(state: _OnboardState, config: RunnableConfig) -> dict[str, Any]:
        history = "\n".join(state["results"]) or "nothing yet"
        reply = planner.invoke(
            [SystemMessage(f"Steps: {', '.join(steps)}"), HumanMessage(f"Done so far:\n{history}")], config
        )
        return {"next_step": text_of(reply)}

    def execute(state: _OnboardState, config: RunnableConfig) -> dict[str, Any]:
        output = it_action.invoke({"action": state["next_step"], "employee": state["employee"]}, config)
        report = executor.invoke([HumanMessage(f"Report the outcome: {output}")], config)
        return {"results": [text_of(report)]}

    graph = StateGraph(_OnboardState)
    graph.add_node("plan", plan)
    graph.add_node("execute", execute)
    graph.add_edge(START, "plan")
    graph.add_conditional_edges("plan", lambda s: END if s["next_step"] == "DONE" else "execute", ["execute", END])
    graph.add_edge("execute", "plan")
    graph.compile().invoke({"employee": "Jane Doe", "next_step": "", "results": []}, cfg(callbacks))


class _MigrationState(TypedDict):
    log: Annotated[list[str], operator.add]
    step: str


@scenario(
    "schema_migration_command",
    "planner_executor",
    style="StateGraph",
    description="A database-migration graph routes with Command: the planner issues five successive migration steps, "
    "the executor reports row counts and timings for each, the planner ends when all are done.",
)
def schema_migration_command(callbacks: Callbacks) -> None:
    steps = [
        "Step 1/5: create table orders_v2 with partitioning by month",
        "Step 2/5: backfill orders_v2 from orders in 500k-row batches",
        "Step 3/5: add dual-write trigger on orders",
        "Step 4/5: verify row counts and checksums per partition",
        "Step 5/5: swap views and drop the trigger",
    ]
    results = [
        "orders_v2 created with 26 monthly partitions (0.4s)",
        "backfilled 12,804,331 rows in 26 batches (14m 02s)",
        "trigger trg_orders_dual_write active; 1,204 rows dual-written so far",
        "all 26 partitions match: count and md5 checksums equal",
        "view orders now points at orders_v2; trigger dropped; migration complete",
    ]
    planner = scripted([*steps, "All 5 steps complete. Migration finished."], model="gpt-4.1")
    executor = scripted(results, model="gpt-4o-mini")

    def plan(state: _MigrationState, config: RunnableConfig) -> Command[Any]:
        reply = text_of(planner.invoke([HumanMessage("Progress:\n" + "\n".join(state["log"]))], config))
        if reply.startswith("All"):
            return Command(goto=END, update={"log": [reply]})
        return Command(goto="execute", update={"step": reply})

    def execute(state: _MigrationState, config: RunnableConfig) -> Command[Literal["plan"]]:
        reply = text_of(executor.invoke([HumanMessage(f"Execute and report: {state['step']}")], config))
        return Command(goto="plan", update={"log": [f"{state['step']} -> {reply}"]})

    graph = StateGraph(_MigrationState)
    graph.add_node("plan", plan, destinations=("execute", END))
    graph.add_node("execute", execute)
    graph.add_edge(START, "plan")
    graph.compile().invoke({"log": [], "step": ""}, cfg(callbacks))


# ---------------------------------------------------------------------------------------------- reflection_improves


class _DraftState(TypedDict):
    drafts: Annotated[list[str], operator.add]
    critiques: Annotated[list[str], operator.add]


@scenario(
    "launch_blog_reflection",
    "reflection_improves",
    style="StateGraph",
    description="A content graph: writer drafts a launch post, critic asks for concrete changes, three materially "
    "different revisions, the critic approves in round three.",
)
def launch_blog_reflection(callbacks: Callbacks) -> None:
    writer = scripted(
        [
            "Draft 1: We're excited to launch Ledger Sync! It's fast and easy. Try it today.",
            "Draft 2: Ledger Sync reconciles Stripe payouts with your books in under a minute. Finance teams at "
            "40 beta companies closed the month 2 days faster.",
            "Draft 3: Month-end close took Bluebird Coffee 6 days; with Ledger Sync it takes 4. Ledger Sync matches "
            "every Stripe payout to invoices automatically - start free, no card needed.",
        ],
        model="claude-3-5-sonnet-latest",
        provider="anthropic",
    )
    critic = scripted(
        [
            "Too generic: say what it does and give a number from the beta.",
            "Better. Lead with a customer story instead of the feature, and add a clear call to action.",
            "APPROVED",
        ],
        model="gpt-4o",
    )

    def write(state: _DraftState, config: RunnableConfig) -> dict[str, Any]:
        context = state["critiques"][-1] if state["critiques"] else "Write the launch post for Ledger Sync."
        return {"drafts": [text_of(writer.invoke([HumanMessage(context)], config))]}

    def critique(state: _DraftState, config: RunnableConfig) -> dict[str, Any]:
        return {"critiques": [text_of(critic.invoke([HumanMessage(state["drafts"][-1])], config))]}

    graph = StateGraph(_DraftState)
    graph.add_node("write", write)
    graph.add_node("critique", critique)
    graph.add_edge(START, "write")
    graph.add_edge("write", "critique")
    graph.add_conditional_edges(
        "critique", lambda s: END if s["critiques"][-1] == "APPROVED" else "write", ["write", END]
    )
    graph.compile().invoke({"drafts": [], "critiques": []}, cfg(callbacks))


class _SqlReviewState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    rounds: int


@scenario(
    "sql_review_reflection",
    "reflection_improves",
    style="StateGraph",
    description="An analytics graph with Command routing: generator writes SQL, reviewer flags a real problem, the "
    "revised query fixes it, second review flags another, third version passes.",
)
def sql_review_reflection(callbacks: Callbacks) -> None:
    generator = scripted(
        [
            "SELECT c.id, (SELECT sum(amount) FROM payments p WHERE p.customer_id = c.id) FROM customers c",
            "SELECT c.id, sum(p.amount) FROM customers c JOIN payments p ON p.customer_id = c.id GROUP BY c.id",
            "SELECT c.id, coalesce(sum(p.amount), 0) AS ltv FROM customers c LEFT JOIN payments p "
            "ON p.customer_id = c.id AND p.status = 'succeeded' GROUP BY c.id",
        ],
        model="gpt-4o",
    )
    reviewer = scripted(
        [
            "Correlated subquery runs once per customer; rewrite as a join with GROUP BY.",
            "Inner join drops customers without payments and counts refunds; use LEFT JOIN and filter on status.",
            "LGTM",
        ],
        model="gpt-4.1",
    )

    def generate(state: _SqlReviewState, config: RunnableConfig) -> Command[Literal["review"]]:
        reply = generator.invoke(state["messages"], config)
        return Command(goto="review", update={"messages": [reply]})

    def review(state: _SqlReviewState, config: RunnableConfig) -> Command[Any]:
        verdict = text_of(reviewer.invoke([HumanMessage(text_of(state["messages"][-1]))], config))
        if verdict == "LGTM":
            return Command(goto=END, update={"rounds": state["rounds"] + 1})
        return Command(goto="generate", update={"messages": [HumanMessage(verdict)], "rounds": state["rounds"] + 1})

    graph = StateGraph(_SqlReviewState)
    graph.add_node("generate", generate)
    graph.add_node("review", review, destinations=("generate", END))
    graph.add_edge(START, "generate")
    start: _SqlReviewState = {
        "messages": [HumanMessage("Lifetime value per customer, including customers who never paid.")],
        "rounds": 0,
    }
    graph.compile().invoke(start, cfg(callbacks))


# ------------------------------------------------------------------------------------------------ human_in_the_loop


class _PaymentState(TypedDict):
    request: str
    draft: str
    approved_amount: float
    receipt: str
    note: str


@scenario(
    "vendor_payment_interrupt",
    "human_in_the_loop",
    style="StateGraph",
    description="A payables graph drafts a payment, interrupts for approval (InMemorySaver), the controller resumes "
    "with an edited amount, the payment executes and the requester is notified.",
)
def vendor_payment_interrupt(callbacks: Callbacks) -> None:
    drafter = scripted(
        [json.dumps({"vendor": "Kinetic Movers", "amount": 12400.0, "iban": "DE89370400440532013000"})], model="gpt-4o"
    )
    notifier = scripted(
        ["Paid Kinetic Movers EUR 11,900 (edited from 12,400 after the damage deduction). Ref pay_0391."]
    )

    @tool
    def send_payment(vendor: str, amount: float) -> str:
        """Sends a SEPA payment."""
        return f"pay_0391 {vendor} EUR {amount:,.2f} submitted"

    def draft(state: _PaymentState, config: RunnableConfig) -> dict[str, Any]:
        return {"draft": text_of(drafter.invoke([HumanMessage(state["request"])], config))}

    def approve(state: _PaymentState) -> dict[str, Any]:
        decision = interrupt({"question": "Approve this payment?", "draft": state["draft"]})
        return {"approved_amount": float(decision["amount"])}

    def pay(state: _PaymentState, config: RunnableConfig) -> dict[str, Any]:
        vendor = json.loads(state["draft"])["vendor"]
        return {"receipt": send_payment.invoke({"vendor": vendor, "amount": state["approved_amount"]}, config)}

    def notify(state: _PaymentState, config: RunnableConfig) -> dict[str, Any]:
        return {"note": text_of(notifier.invoke([HumanMessage(state["receipt"])], config))}

    graph = StateGraph(_PaymentState)
    for name, fn in (("draft", draft), ("approve", approve), ("pay", pay), ("notify", notify)):
        graph.add_node(name, fn)
    graph.add_edge(START, "draft")
    graph.add_edge("draft", "approve")
    graph.add_edge("approve", "pay")
    graph.add_edge("pay", "notify")
    graph.add_edge("notify", END)
    app = graph.compile(checkpointer=InMemorySaver())
    config = cfg(callbacks, thread="vendor_payment_interrupt")
    request = "Pay Kinetic Movers invoice KM-2209 (office move), EUR 12,400."
    first = app.invoke({"request": request, "draft": "", "approved_amount": 0.0, "receipt": "", "note": ""}, config)
    assert "__interrupt__" in first
    app.invoke(Command(resume={"action": "edit", "amount": 11900.0}), config)


class _AccessState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    approvals: Annotated[list[str], operator.add]


@scenario(
    "access_request_two_approvals",
    "human_in_the_loop",
    style="StateGraph",
    description="An access-request graph assesses risk, waits for the manager (interrupt), runs a security review, "
    "waits for security (second interrupt), provisions access and confirms; one invoke and two resumes.",
)
def access_request_two_approvals(callbacks: Callbacks) -> None:
    assessor = scripted(["Risk: medium - production read access to the payments DB for an engineer, 30 days."])
    security = scripted(["Security review: require MFA and session recording; limit to read replica."])
    confirmer = scripted(["Access granted: read replica payments-ro for 30 days with MFA; expires 2025-04-10."])

    @tool
    def grant_access(user: str, resource: str, days: int) -> str:
        """Grants time-boxed access."""
        return f"granted {user} -> {resource} for {days}d (ticket ACC-5512)"

    def assess(state: _AccessState, config: RunnableConfig) -> dict[str, Any]:
        return {"messages": [assessor.invoke(state["messages"], config)]}

    def manager(state: _AccessState) -> dict[str, Any]:
        return {"approvals": [str(interrupt({"approver": "manager", "summary": text_of(state["messages"][-1])}))]}

    def review(state: _AccessState, config: RunnableConfig) -> dict[str, Any]:
        return {"messages": [security.invoke(state["messages"], config)]}

    def security_signoff(state: _AccessState) -> dict[str, Any]:
        return {"approvals": [str(interrupt({"approver": "security", "summary": text_of(state["messages"][-1])}))]}

    def provision(state: _AccessState, config: RunnableConfig) -> dict[str, Any]:
        receipt = grant_access.invoke({"user": "r.iyer", "resource": "payments-ro", "days": 30}, config)
        return {"messages": [HumanMessage(receipt), confirmer.invoke([HumanMessage(receipt)], config)]}

    graph = StateGraph(_AccessState)
    graph.add_node("assess", assess)
    graph.add_node("manager", manager)
    graph.add_node("review", review)
    graph.add_node("security", security_signoff)
    graph.add_node("provision", provision)
    for a, b in [(START, "assess"), ("assess", "manager"), ("manager", "review"), ("review", "security")]:
        graph.add_edge(a, b)
    graph.add_edge("security", "provision")
    graph.add_edge("provision", END)
    app = graph.compile(checkpointer=InMemorySaver())
    config = cfg(callbacks, thread="access_request_two_approvals")
    app.invoke(
        {"messages": [HumanMessage("r.iyer needs read access to payments DB for an audit")], "approvals": []}, config
    )
    app.invoke(Command(resume="approved by manager k.smith"), config)
    out = app.invoke(Command(resume="approved by security with conditions"), config)
    assert len(out["approvals"]) == 2


# ---------------------------------------------------------------------------------------------- tool_error_recovers


@scenario(
    "shipping_label_fix",
    "tool_error_recovers",
    style="StateGraph",
    description="A logistics graph's label creation raises an invalid postal-code error; the model validates the "
    "address, retries with corrected arguments and succeeds.",
)
def shipping_label_fix(callbacks: Callbacks) -> None:
    ids = Ids("shipping_label_fix")

    @tool
    def create_label(order_id: str, street: str, city: str, postal_code: str, country: str) -> str:
        """Buys a shipping label."""
        if len(postal_code) != 5:
            raise ToolException(f"InvalidAddress: postal_code '{postal_code}' is not valid for country {country}")
        return f"label 1Z84R0 for {order_id}, UPS Ground, $9.42"

    @tool
    def validate_address(street: str, city: str, country: str) -> str:
        """Validates and normalises an address."""
        return "1 Ferry Building, San Francisco, CA 94111, US (deliverable)"

    base = {"order_id": "SO-4471", "street": "1 Ferry Building", "city": "San Francisco", "country": "US"}
    replies: list[Any] = [
        ids.call("create_label", {**base, "postal_code": "9411"}),
        ids.call("validate_address", {"street": base["street"], "city": base["city"], "country": "US"}),
        ids.call("create_label", {**base, "postal_code": "94111"}),
        "Label 1Z84R0 bought for SO-4471 (UPS Ground, $9.42) after correcting the ZIP to 94111.",
    ]
    tools = [failing(create_label), validate_address]
    graph = _react(scripted(replies, model="gpt-4o-mini"), tools, "You create shipping labels.")
    graph.invoke({"messages": [HumanMessage("Ship SO-4471 to 1 Ferry Building, San Francisco 9411.")]}, cfg(callbacks))


# ------------------------------------------------------------------------------------------------- progress_reports


class _CatalogState(TypedDict):
    skus: list[str]
    done: int
    descriptions: Annotated[list[str], operator.add]
    reports: Annotated[list[str], operator.add]


@scenario(
    "catalog_enrichment_progress",
    "progress_reports",
    style="StateGraph",
    description="An e-commerce graph writes descriptions for twenty distinct SKUs; every five items a reporter model "
    "posts a progress line that differs only in its numbers.",
)
def catalog_enrichment_progress(callbacks: Callbacks) -> None:
    vol = Volatile("catalog_enrichment_progress")
    products = ["trail shoe", "rain jacket", "down vest", "merino tee", "trek pole"]
    colours = ["slate", "ember", "moss", "glacier"]
    skus = [f"SKU-{vol.int(10000, 99999)} {colours[i % 4]} {products[i % 5]}" for i in range(20)]

    def describe(messages: Sequence[BaseMessage]) -> str:
        sku = last_human(messages)
        return f"{sku.split(' ', 1)[1].capitalize()}: lightweight, recycled materials, built for all-day comfort."

    writer = scripted([describe] * len(skus), model="gpt-4o-mini")
    reporter = scripted(
        [f"Progress: {n} of 20 SKUs enriched ({n * 5}%). No errors." for n in (5, 10, 15, 20)], model="gpt-4o-mini"
    )

    def enrich(state: _CatalogState, config: RunnableConfig) -> dict[str, Any]:
        sku = state["skus"][state["done"]]
        reply = writer.invoke([SystemMessage("Write a one-line product description."), HumanMessage(sku)], config)
        return {"descriptions": [text_of(reply)], "done": state["done"] + 1}

    def report(state: _CatalogState, config: RunnableConfig) -> dict[str, Any]:
        reply = reporter.invoke([HumanMessage(f"Report progress: {state['done']}/{len(state['skus'])} done")], config)
        return {"reports": [text_of(reply)]}

    def route(state: _CatalogState) -> str:
        if state["done"] % 5 == 0:
            return "report"
        return "enrich"

    graph = StateGraph(_CatalogState)
    graph.add_node("enrich", enrich)
    graph.add_node("report", report)
    graph.add_edge(START, "enrich")
    graph.add_conditional_edges("enrich", route, ["enrich", "report"])
    graph.add_conditional_edges("report", lambda s: END if s["done"] == len(s["skus"]) else "enrich", ["enrich", END])
    graph.compile().invoke({"skus": skus, "done": 0, "descriptions": [], "reports": []}, cfg(callbacks))


# ----------------------------------------------------------------------------------------------- supervisor_handoff


class _DeskState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    next: str


@scenario(
    "support_supervisor_routing",
    "supervisor_handoff",
    style="StateGraph",
    description="A support supervisor model routes a complex ticket to billing, then technical, then the reply "
    "writer, each worker doing different work, then finishes.",
)
def support_supervisor_routing(callbacks: Callbacks) -> None:
    supervisor = scripted(
        [json.dumps({"next": w}) for w in ("billing", "technical", "writer", "FINISH")], model="gpt-4.1"
    )
    workers = {
        "billing": scripted(["Billing: customer was charged twice on 03-01 (ch_1 and ch_2); refund ch_2 ($89)."]),
        "technical": scripted(
            ["Technical: double charge came from a webhook retry; idempotency key missing, bug JIRA-8812."]
        ),
        "writer": scripted(
            ["Reply: Sorry for the double charge - we've refunded $89 and fixed the cause (a retry bug)."]
        ),
    }

    def supervise(state: _DeskState, config: RunnableConfig) -> dict[str, Any]:
        reply = supervisor.invoke(
            [SystemMessage("Route to billing, technical, writer or FINISH."), *state["messages"]], config
        )
        return {"next": json.loads(text_of(reply))["next"]}

    def worker(name: str) -> Any:
        def run(state: _DeskState, config: RunnableConfig) -> dict[str, Any]:
            reply = ai(workers[name].invoke(state["messages"], config))
            return {"messages": [AIMessage(content=reply.content, name=name, usage_metadata=reply.usage_metadata)]}

        return run

    graph = StateGraph(_DeskState)
    graph.add_node("supervisor", supervise)
    for name in workers:
        graph.add_node(name, worker(name))
        graph.add_edge(name, "supervisor")
    graph.add_edge(START, "supervisor")
    graph.add_conditional_edges("supervisor", lambda s: END if s["next"] == "FINISH" else s["next"], [*workers, END])
    ticket = "I was charged twice this month and your app logged me out during checkout. Fix it!"
    graph.compile().invoke({"messages": [HumanMessage(ticket)], "next": ""}, cfg(callbacks))


class _DealState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


@scenario(
    "sales_agents_handoff",
    "supervisor_handoff",
    style="both",
    description="A sales pipeline of create_agent workers hands off with Command: a prospect researcher, a pricing "
    "agent with a price-book tool, then an email writer; each does different work once.",
)
def sales_agents_handoff(callbacks: Callbacks) -> None:
    ids = Ids("sales_agents_handoff")

    @tool
    def lookup_company(domain: str) -> str:
        """Firmographics for a company domain."""
        return f"{domain}: 850 employees, logistics, uses Salesforce, raised Series C"

    @tool
    def price_book(plan: str, seats: int) -> str:
        """Quotes list price from the price book."""
        return f"{plan} x{seats}: list $54,000/yr, max discount 15% without VP approval"

    researcher = create_agent(
        scripted(
            [
                ids.call("lookup_company", {"domain": "freightly.io"}),
                "Freightly: 850 staff, logistics, Salesforce shop.",
            ]
        ),
        [lookup_company],
        system_prompt="You research prospects.",
    )
    pricer = create_agent(
        scripted(
            [
                ids.call("price_book", {"plan": "Business", "seats": 150}),
                "Quote: 150 Business seats at $45,900 (15% off).",
            ]
        ),
        [price_book],
        system_prompt="You build quotes.",
    )
    writer = scripted(["Subject: Cutting Freightly's dispatch admin - 150 seats for $45.9k/yr ..."], model="gpt-4o")

    def agent_node(agent: Any, goto: str) -> Any:
        def run(state: _DealState, config: RunnableConfig) -> Command[Any]:
            out = agent.invoke({"messages": state["messages"]}, config)
            return Command(goto=goto, update={"messages": [HumanMessage(text_of(out["messages"][-1]))]})

        return run

    def write(state: _DealState, config: RunnableConfig) -> dict[str, Any]:
        return {"messages": [writer.invoke(state["messages"], config)]}

    graph = StateGraph(_DealState)
    graph.add_node("research", agent_node(researcher, "pricing"), destinations=("pricing",))
    graph.add_node("pricing", agent_node(pricer, "email"), destinations=("email",))
    graph.add_node("email", write)
    graph.add_edge(START, "research")
    graph.add_edge("email", END)
    graph.compile().invoke({"messages": [HumanMessage("Inbound lead: freightly.io wants 150 seats.")]}, cfg(callbacks))


# ------------------------------------------------------------------------------------------------ subgraph_pipeline


class _KycInner(TypedDict):
    doc: str
    fields: str
    screening: str
    decision: str


class _KycOuter(TypedDict):
    customers: list[str]
    index: int
    doc: str
    decision: str
    decisions: Annotated[list[str], operator.add]


@scenario(
    "kyc_subgraph_pipeline",
    "subgraph_pipeline",
    style="StateGraph",
    description="A fintech onboarding graph runs a compiled KYC subgraph (extract ID fields -> sanctions tool -> "
    "decision) as a node for six distinct applicants.",
)
def kyc_subgraph_pipeline(callbacks: Callbacks) -> None:
    applicants = [
        "Passport GBR 552781903, Olivia Bennett, born 1988-04-12",
        "ID card DEU L01X00T47, Jonas Richter, born 1979-11-30",
        "Passport USA 488210773, Marcus Hale, born 1992-02-03",
        "Passport IND Z4409215, Ananya Rao, born 1995-07-21",
        "ID card ESP 99887766R, Lucia Moreno, born 1984-09-09",
        "Passport NGA A07719352, Chidi Okeke, born 1990-01-17",
    ]

    def extract(messages: Sequence[BaseMessage]) -> str:
        parts = last_human(messages).split(", ")
        return json.dumps({"document": parts[0], "name": parts[1], "dob": parts[2].removeprefix("born ")})

    def decide(messages: Sequence[BaseMessage]) -> str:
        return "manual_review" if "possible match" in last_human(messages) else "approve"

    extractor = scripted([extract] * len(applicants), model="gpt-4o-mini")
    decider = scripted([decide] * len(applicants), model="gpt-4o")

    @tool
    def sanctions_check(name: str, dob: str) -> str:
        """Screens a person against sanctions and PEP lists."""
        return "possible match: PEP list (score 0.81)" if name == "Marcus Hale" else "clear"

    def extract_node(state: _KycInner, config: RunnableConfig) -> dict[str, Any]:
        return {"fields": text_of(extractor.invoke([HumanMessage(state["doc"])], config))}

    def screen_node(state: _KycInner, config: RunnableConfig) -> dict[str, Any]:
        fields = json.loads(state["fields"])
        return {"screening": sanctions_check.invoke({"name": fields["name"], "dob": fields["dob"]}, config)}

    def decide_node(state: _KycInner, config: RunnableConfig) -> dict[str, Any]:
        reply = decider.invoke([HumanMessage(f"{state['fields']} screening: {state['screening']}")], config)
        return {"decision": text_of(reply)}

    inner = StateGraph(_KycInner)
    inner.add_node("extract", extract_node)
    inner.add_node("screen", screen_node)
    inner.add_node("decide", decide_node)
    inner.add_edge(START, "extract")
    inner.add_edge("extract", "screen")
    inner.add_edge("screen", "decide")
    inner.add_edge("decide", END)

    def pick(state: _KycOuter) -> dict[str, Any]:
        return {"doc": state["customers"][state["index"]]}

    def collect(state: _KycOuter) -> dict[str, Any]:
        return {"decisions": [state["decision"]], "index": state["index"] + 1}

    outer = StateGraph(_KycOuter)
    outer.add_node("pick", pick)
    outer.add_node("kyc", inner.compile())
    outer.add_node("collect", collect)
    outer.add_edge(START, "pick")
    outer.add_edge("pick", "kyc")
    outer.add_edge("kyc", "collect")
    outer.add_conditional_edges("collect", lambda s: "pick" if s["index"] < len(s["customers"]) else END, ["pick", END])
    start: _KycOuter = {"customers": applicants, "index": 0, "doc": "", "decision": "", "decisions": []}
    out = outer.compile().invoke(start, cfg(callbacks))
    assert out["decisions"].count("manual_review") == 1


class _EpisodeInner(TypedDict):
    episode: str
    transcript: str
    summary: str
    tags: str


class _ShowState(TypedDict):
    episodes: list[str]
    notes: Annotated[list[str], operator.add]
    newsletter: str


class _OneEpisode(TypedDict):
    episode: str


@scenario(
    "podcast_episode_subgraph",
    "subgraph_pipeline",
    style="StateGraph",
    description="A podcast-publishing graph fans five episodes out with Send to a node that invokes a per-episode "
    "subgraph (transcribe tool -> summary -> tags), then writes the newsletter.",
)
def podcast_episode_subgraph(callbacks: Callbacks) -> None:
    topics = {
        "E101": "pricing a B2B SaaS product",
        "E102": "hiring your first salesperson",
        "E103": "SOC 2 on a startup budget",
        "E104": "usage-based billing pitfalls",
        "E105": "founder burnout and recovery",
    }
    summariser = scripted([lambda m: "Summary: " + last_human(m).split(" about ")[1]] * 5, model="gpt-4o-mini")
    tags = {"pricing": "pricing, saas", "hiring": "sales, hiring", "SOC": "security, compliance"}
    tags |= {"billing": "billing, metering", "burnout": "founders, wellbeing"}

    def tag(messages: Sequence[BaseMessage]) -> str:
        return "tags: " + next(v for k, v in tags.items() if k in last_human(messages))

    tagger = scripted([tag] * 5, model="gpt-4o-mini")
    editor = scripted(["This month: pricing, first sales hire, SOC 2, usage billing and burnout - five episodes."])

    @tool
    def transcribe(episode_id: str) -> str:
        """Transcribes an episode's audio."""
        return f"Transcript of {episode_id}: a 42 minute conversation about {topics[episode_id]}."

    def transcribe_node(state: _EpisodeInner, config: RunnableConfig) -> dict[str, Any]:
        return {"transcript": transcribe.invoke({"episode_id": state["episode"]}, config)}

    def summary_node(state: _EpisodeInner, config: RunnableConfig) -> dict[str, Any]:
        return {"summary": text_of(summariser.invoke([HumanMessage(state["transcript"])], config))}

    def tags_node(state: _EpisodeInner, config: RunnableConfig) -> dict[str, Any]:
        return {"tags": text_of(tagger.invoke([HumanMessage(state["summary"])], config))}

    inner = StateGraph(_EpisodeInner)
    inner.add_node("transcribe", transcribe_node)
    inner.add_node("summarise", summary_node)
    inner.add_node("tag", tags_node)
    inner.add_edge(START, "transcribe")
    inner.add_edge("transcribe", "summarise")
    inner.add_edge("summarise", "tag")
    inner.add_edge("tag", END)
    pipeline = inner.compile()

    def episode(state: _OneEpisode, config: RunnableConfig) -> dict[str, Any]:
        start: _EpisodeInner = {"episode": state["episode"], "transcript": "", "summary": "", "tags": ""}
        out = pipeline.invoke(start, config)
        return {"notes": [f"{state['episode']}: {out['summary']} ({out['tags']})"]}

    def newsletter(state: _ShowState, config: RunnableConfig) -> dict[str, Any]:
        return {"newsletter": text_of(editor.invoke([HumanMessage("\n".join(sorted(state["notes"])))], config))}

    graph = StateGraph(_ShowState)
    graph.add_node("episode", episode)
    graph.add_node("newsletter", newsletter)
    graph.add_conditional_edges(START, lambda s: [Send("episode", {"episode": e}) for e in s["episodes"]], ["episode"])
    graph.add_edge("episode", "newsletter")
    graph.add_edge("newsletter", END)
    graph.compile().invoke({"episodes": list(topics), "notes": [], "newsletter": ""}, cfg(callbacks))

"""Progressing map-style runs: batches, extraction, fan-out summaries, per-item subgraphs, progress, chat."""

from __future__ import annotations

import operator
import random
from collections.abc import Sequence
from typing import Annotated, Any, TypedDict

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.prebuilt import ToolNode
from langgraph.types import Send

from ._base import SealedScenario
from ._kit import Callbacks, Ids, ask, config, last_text, scripted

_RNG = random.Random(3)  # variety of the fixed inputs only; nothing random happens at run time

# --- batch classification: a StateGraph loop accumulating results -------------------------------------------------

_TICKET_SUBJECTS = [
    "How do I add a second admin?",
    "Where can I download last month's invoice?",
    "Can I change the currency on my account?",
    "Is there a dark mode?",
    "What's the limit on API calls per minute?",
    "How do I export my contacts to CSV?",
    "Can I rename my workspace?",
    "Do you support Google Workspace SSO?",
    "How do I reset another user's password?",
    "Can invoices show our PO number?",
    "How long do you keep deleted files?",
    "Is there a mobile app for Android?",
    "Can I move a project between workspaces?",
    "How do I turn off weekly digest e-mails?",
    "Where do I find my API key?",
    "Can guests comment without an account?",
]


class TriageState(TypedDict):
    tickets: list[str]
    i: int
    results: Annotated[list[tuple[str, str]], operator.add]


def ticket_triage_batch(callbacks: Callbacks) -> None:
    tickets = [f"#{51000 + 17 * k} {s}" for k, s in enumerate(_TICKET_SUBJECTS)]
    model = scripted(["routine"] * len(tickets), "gpt-4o-mini")

    def classify(state: TriageState) -> dict[str, Any]:
        ticket = state["tickets"][state["i"]]
        prompt = [
            SystemMessage("Classify the support ticket as one of: urgent, routine, spam. Reply with the label only."),
            HumanMessage(ticket),
        ]
        label = str(model.invoke(prompt).content)
        return {"results": [(ticket.split()[0], label)], "i": state["i"] + 1}

    def more(state: TriageState) -> str:
        return "classify" if state["i"] < len(state["tickets"]) else END

    graph = StateGraph(TriageState)
    graph.add_node("classify", classify)
    graph.add_edge(START, "classify")
    graph.add_conditional_edges("classify", more, ["classify", END])
    graph.compile().invoke({"tickets": tickets, "i": 0, "results": []}, config(callbacks))


# --- batch classification: Send fan-out ---------------------------------------------------------------------------

_MERCHANTS = ["Blue Bottle Coffee", "Delta Air Lines", "AWS", "Staples", "Uber", "Zoom", "Shell", "Whole Foods"]
_TXNS = [
    f"txn_{9100 + k}: {_RNG.choice(_MERCHANTS)} ${_RNG.randint(4, 900)}.{_RNG.randint(0, 99):02d} "
    f"card ****{_RNG.choice(['4410', '7781', '0032'])} on 2024-07-{1 + k:02d}"
    for k in range(20)
]


class FlagState(TypedDict):
    txns: list[str]
    verdicts: Annotated[list[str], operator.add]
    summary: str


class OneTxn(TypedDict):
    txn: str


def transaction_flagging_send(callbacks: Callbacks) -> None:
    model = scripted([lambda msgs: "OK"] * len(_TXNS), "gpt-4o-mini")

    def fan_out(state: FlagState) -> list[Send]:
        return [Send("screen", {"txn": t}) for t in state["txns"]]

    def screen(state: OneTxn) -> dict[str, Any]:
        prompt = [
            SystemMessage("Expense-policy screen. Reply OK or FLAG with a reason."),
            HumanMessage(state["txn"]),
        ]
        return {"verdicts": [f"{state['txn'].split(':')[0]} {model.invoke(prompt).content}"]}

    def tally(state: FlagState) -> dict[str, Any]:
        flagged = [v for v in state["verdicts"] if not v.endswith("OK")]
        return {"summary": f"{len(state['verdicts'])} screened, {len(flagged)} flagged"}

    graph = StateGraph(FlagState)
    graph.add_node("screen", screen)
    graph.add_node("tally", tally)
    graph.add_conditional_edges(START, fan_out, ["screen"])
    graph.add_edge("screen", "tally")
    graph.add_edge("tally", END)
    graph.compile().invoke({"txns": _TXNS, "verdicts": [], "summary": ""}, config(callbacks, max_concurrency=1))


# --- extraction map: a loop over meeting notes --------------------------------------------------------------------

_NOTES: list[tuple[str, str]] = [
    ("Weekly sync 1/14: reviewed Q1 OKRs, no changes.", "No action items."),
    ("Design crit 1/15: Priya to send revised onboarding mocks by Friday.", "- Priya: revised onboarding mocks (Fri)"),
    ("1:1 Sam/Lee 1/15: career chat, nothing to track.", "No action items."),
    ("Vendor call 1/16: Northwind confirmed March delivery.", "No action items."),
    (
        "Incident review 1/16: Omar to add cert-expiry alert; Jess to update runbook.",
        "- Omar: cert-expiry alert\n- Jess: update runbook",
    ),
    ("Standup 1/17: all green.", "No action items."),
    ("Budget review 1/17: finance will circulate the final numbers.", "- Finance: circulate final budget numbers"),
    ("Team lunch planning 1/18: booked for Thursday.", "No action items."),
    ("Standup 1/18: all green, Lee out Friday.", "No action items."),
    ("Customer call Acme 1/19: wants SSO by April; Dana to scope.", "- Dana: scope SSO for Acme (April)"),
    ("Retro 1/19: keep the async standups.", "No action items."),
    ("Hiring sync 1/22: two onsite loops scheduled.", "No action items."),
    ("Security sync 1/22: no open findings.", "No action items."),
    ("Roadmap review 1/23: Ken to draft the H2 themes doc.", "- Ken: draft H2 themes doc"),
]


class NotesState(TypedDict):
    pending: list[str]
    extracted: Annotated[list[dict[str, str]], operator.add]


def meeting_notes_action_items(callbacks: Callbacks) -> None:
    model = scripted([answer for _, answer in _NOTES], "claude-3-5-haiku-latest", "anthropic")

    def extract(state: NotesState) -> dict[str, Any]:
        note, rest = state["pending"][0], state["pending"][1:]
        prompt = [SystemMessage("List action items as '- owner: task', or say 'No action items.'"), HumanMessage(note)]
        return {"pending": rest, "extracted": [{"note": note[:24], "items": str(model.invoke(prompt).content)}]}

    def again(state: NotesState) -> str:
        return "extract" if state["pending"] else END

    graph = StateGraph(NotesState)
    graph.add_node("extract", extract)
    graph.add_edge(START, "extract")
    graph.add_conditional_edges("extract", again, ["extract", END])
    graph.compile().invoke({"pending": [n for n, _ in _NOTES], "extracted": []}, config(callbacks))


# --- extraction map: Send fan-out over contracts, then a reduce model call ----------------------------------------

_CONTRACTS: dict[str, str] = {
    "MSA-Globex-2022": "Renewal date: 2025-01-31 (auto-renews for 12 months; 60 days' notice to cancel).",
    "NDA-Initech-2023": "None found.",
    "SOW-Hooli-07": "None found.",
    "Lease-Oakland-Suite-400": "Renewal date: 2024-11-30 (option to renew for 36 months; notify by 2024-08-31).",
    "DPA-Umbrella-2023": "None found.",
    "License-Vandelay-ERP": "Renewal date: 2024-12-15 (auto-renews annually; 90 days' notice).",
    "NDA-Soylent-2024": "None found.",
    "Reseller-Wonka-EMEA": "None found.",
    "Support-Stark-Gold": "Renewal date: 2025-03-01 (renews on PO only).",
    "NDA-Tyrell-2022": "None found.",
    "SaaS-Cyberdyne-Analytics": "None found.",
    "Consulting-Wayne-2024": "None found.",
}


class ContractState(TypedDict):
    contracts: list[str]
    findings: Annotated[list[str], operator.add]
    report: str


class OneContract(TypedDict):
    name: str


def contract_renewal_extract_send(callbacks: Callbacks) -> None:
    def extract_reply(messages: Sequence[BaseMessage]) -> str:
        name = last_text(messages).split("\n")[0].removeprefix("Contract: ")
        return _CONTRACTS[name]

    extractor = scripted([extract_reply] * len(_CONTRACTS), "gpt-4o-mini")
    reducer = scripted(
        [
            "Four contracts renew in the next 9 months. Act first on the Oakland lease (notify by 2024-08-31) and "
            "the Vandelay ERP license (90 days' notice, i.e. by 2024-09-16)."
        ],
        "gpt-4o",
    )

    def fan_out(state: ContractState) -> list[Send]:
        return [Send("extract", {"name": n}) for n in state["contracts"]]

    def extract(state: OneContract) -> dict[str, Any]:
        body = f"Contract: {state['name']}\n[full text of {state['name']} omitted]"
        prompt = [SystemMessage("Extract the renewal date and notice terms, or say 'None found.'"), HumanMessage(body)]
        return {"findings": [f"{state['name']}: {extractor.invoke(prompt).content}"]}

    def reduce(state: ContractState) -> dict[str, Any]:
        prompt = [
            SystemMessage("Summarize upcoming renewals for legal ops."),
            HumanMessage("\n".join(state["findings"])),
        ]
        return {"report": str(reducer.invoke(prompt).content)}

    graph = StateGraph(ContractState)
    graph.add_node("extract", extract)
    graph.add_node("reduce", reduce)
    graph.add_conditional_edges(START, fan_out, ["extract"])
    graph.add_edge("extract", "reduce")
    graph.add_edge("reduce", END)
    graph.compile().invoke(
        {"contracts": list(_CONTRACTS), "findings": [], "report": ""}, config(callbacks, max_concurrency=1)
    )


# --- fan-out summaries: earnings call chunks ----------------------------------------------------------------------

_CALL_CHUNKS: list[tuple[str, str]] = [
    ("CEO opening remarks", "Revenue grew 18% YoY to $412M; CEO credits enterprise seat expansion."),
    ("CFO: margins", "Gross margin 74.1%, down 60 bps on higher inference costs; opex flat."),
    ("CFO: guidance", "FY guidance raised to $1.68-1.70B; Q3 guide $428-432M."),
    ("Product update", "AI assistant GA in May; 31% of enterprise customers activated it."),
    ("Go-to-market", "Net revenue retention 118%; 42 new $1M+ customers."),
    ("Q&A: pricing", "No list-price increase planned; AI sold as a $12/seat add-on."),
    ("Q&A: competition", "Win rates vs. the main rival stable at ~55%; churn in SMB slightly up."),
    ("Q&A: capital return", "New $500M buyback authorized; no dividend."),
]


class EarningsState(TypedDict):
    chunks: list[str]
    summaries: Annotated[list[str], operator.add]
    brief: str


class Chunk(TypedDict):
    title: str


def earnings_call_chunks(callbacks: Callbacks) -> None:
    by_title = dict(_CALL_CHUNKS)

    def summarize_reply(messages: Sequence[BaseMessage]) -> str:
        return by_title[last_text(messages).split(" | ")[0]]

    mapper = scripted([summarize_reply] * len(_CALL_CHUNKS), "gpt-4o-mini")
    reducer = scripted(
        [
            "Strong quarter: +18% revenue, guidance raised to $1.68-1.70B, NRR 118%, $500M buyback. Watch: gross "
            "margin -60 bps from inference costs and softer SMB churn."
        ],
        "claude-3-5-sonnet-latest",
        "anthropic",
    )

    def fan_out(state: EarningsState) -> list[Send]:
        return [Send("summarize", {"title": t}) for t in state["chunks"]]

    def summarize(state: Chunk) -> dict[str, Any]:
        prompt = [
            SystemMessage("Summarize this transcript chunk in one sentence."),
            HumanMessage(f"{state['title']} | transcript section"),
        ]
        return {"summaries": [f"[{state['title']}] {mapper.invoke(prompt).content}"]}

    def brief(state: EarningsState) -> dict[str, Any]:
        prompt = [
            SystemMessage("Write an analyst brief from the chunk summaries."),
            HumanMessage("\n".join(state["summaries"])),
        ]
        return {"brief": str(reducer.invoke(prompt).content)}

    graph = StateGraph(EarningsState)
    graph.add_node("summarize", summarize)
    graph.add_node("brief", brief)
    graph.add_conditional_edges(START, fan_out, ["summarize"])
    graph.add_edge("summarize", "brief")
    graph.add_edge("brief", END)
    graph.compile().invoke(
        {"chunks": [t for t, _ in _CALL_CHUNKS], "summaries": [], "brief": ""}, config(callbacks, max_concurrency=1)
    )


# --- fan-out summaries: log shards, reduce, publish with a tool ---------------------------------------------------

_SHARDS = {
    "api-eu-1": "5xx spike 02:10-02:14 UTC (1,204 errors) from upstream timeouts to the auth service.",
    "api-eu-2": "No errors; routine traffic.",
    "api-us-1": "No errors; routine traffic.",
    "api-us-2": "Slow queries on /search (p99 2.8s) between 03:00 and 03:20 UTC.",
    "worker-1": "No errors; routine traffic.",
    "worker-2": "Retry storm on the email queue: 8,930 retries after SMTP 421 responses.",
}


class ShardState(TypedDict):
    shards: list[str]
    notes: Annotated[list[str], operator.add]
    digest: str
    published: str


class Shard(TypedDict):
    shard: str


def log_shard_summaries(callbacks: Callbacks) -> None:
    def shard_reply(messages: Sequence[BaseMessage]) -> str:
        return _SHARDS[last_text(messages).split(":")[0]]

    mapper = scripted([shard_reply] * len(_SHARDS), "gpt-4o-mini")
    reducer = scripted(
        [
            "Overnight: auth-service timeouts caused a 4-minute 5xx spike in api-eu-1; /search p99 hit 2.8s in "
            "api-us-2; worker-2 hit an SMTP 421 retry storm. Other shards clean."
        ]
    )

    @tool
    def post_digest(channel: str, text: str) -> str:
        """Post a message to a chat channel."""
        return f"posted to {channel} (ts 1722570000.0012)"

    def fan_out(state: ShardState) -> list[Send]:
        return [Send("summarize", {"shard": s}) for s in state["shards"]]

    def summarize(state: Shard) -> dict[str, Any]:
        prompt = [SystemMessage("Summarize the shard's overnight logs."), HumanMessage(f"{state['shard']}: <logs>")]
        return {"notes": [f"{state['shard']}: {mapper.invoke(prompt).content}"]}

    def reduce(state: ShardState) -> dict[str, Any]:
        prompt = [SystemMessage("Write the overnight ops digest."), HumanMessage("\n".join(state["notes"]))]
        return {"digest": str(reducer.invoke(prompt).content)}

    def publish(state: ShardState, config: RunnableConfig) -> dict[str, Any]:
        return {"published": post_digest.invoke({"channel": "#ops-digest", "text": state["digest"]}, config)}

    graph = StateGraph(ShardState)
    graph.add_node("summarize", summarize)
    graph.add_node("reduce", reduce)
    graph.add_node("publish", publish)
    graph.add_conditional_edges(START, fan_out, ["summarize"])
    graph.add_edge("summarize", "reduce")
    graph.add_edge("reduce", "publish")
    graph.add_edge("publish", END)
    graph.compile().invoke(
        {"shards": list(_SHARDS), "notes": [], "digest": "", "published": ""}, config(callbacks, max_concurrency=1)
    )


# --- progress reports: moderation loop, the model reports progress after each item --------------------------------


class ModerationState(TypedDict):
    images: list[str]
    done: int
    flagged: int
    reports: Annotated[list[str], operator.add]


def image_moderation_progress(callbacks: Callbacks) -> None:
    images = [f"img_{_RNG.randint(100000, 999999)}.jpg" for _ in range(24)]
    unsafe = {images[5], images[13], images[14]}

    @tool
    def moderate_image(image_id: str) -> str:
        """Run the image moderation classifier."""
        if image_id in unsafe:
            return f"{image_id}: violence=0.91 -> UNSAFE"
        return f"{image_id}: nudity=0.0{len(image_id) % 7} violence=0.02 -> safe"

    reports = []
    flagged = 0
    for k, img in enumerate(images, 1):
        flagged += img in unsafe
        reports.append(
            f"Reviewed {k} of {len(images)} images ({round(100 * k / len(images))}% complete); {flagged} flagged."
        )
    model = scripted(reports, "gpt-4o-mini")

    def moderate(state: ModerationState, config: RunnableConfig) -> dict[str, Any]:
        result = moderate_image.invoke({"image_id": state["images"][state["done"]]}, config)
        return {"done": state["done"] + 1, "flagged": state["flagged"] + ("UNSAFE" in result)}

    def report(state: ModerationState) -> dict[str, Any]:
        prompt = [
            SystemMessage("Post a one-line progress update."),
            HumanMessage(f"done={state['done']} total={len(state['images'])} flagged={state['flagged']}"),
        ]
        return {"reports": [str(model.invoke(prompt).content)]}

    def more(state: ModerationState) -> str:
        return "moderate" if state["done"] < len(state["images"]) else END

    graph = StateGraph(ModerationState)
    graph.add_node("moderate", moderate)
    graph.add_node("report", report)
    graph.add_edge(START, "moderate")
    graph.add_edge("moderate", "report")
    graph.add_conditional_edges("report", more, ["moderate", END])
    graph.compile().invoke({"images": images, "done": 0, "flagged": 0, "reports": []}, config(callbacks))


# --- subgraph pipeline: resume screening per candidate ------------------------------------------------------------

_CANDIDATES: list[tuple[str, str, str]] = [
    ("Ana Souza", "Skills: Go, Kafka, Postgres; 6 yrs payments.", "Strong: 4/5. Payments depth, Go matches stack."),
    ("Ben Okoro", "Skills: Java, Spring, Oracle; 9 yrs banking.", "Medium: 3/5. Senior, but no Go or Kafka."),
    ("Chen Wei", "Skills: Python, Django, Redis; 3 yrs e-commerce.", "Weak: 2/5. Too junior for L5 backend."),
    ("Divya Rao", "Skills: Go, gRPC, Kubernetes; 7 yrs infra.", "Strong: 4/5. Go + platform experience."),
    ("Emil Berg", "Skills: Rust, Kafka, ClickHouse; 5 yrs data.", "Medium: 3/5. Kafka fit; Rust not Go."),
]


class ScreenInner(TypedDict):
    resume: str
    skills: str
    verdict: str


class ScreenState(TypedDict):
    queue: list[str]
    resume: str
    verdict: str
    scored: Annotated[list[str], operator.add]
    shortlist: str


def resume_screening_subgraph(callbacks: Callbacks) -> None:
    parser = scripted([skills for _, skills, _ in _CANDIDATES], "gpt-4o-mini")
    scorer = scripted([verdict for _, _, verdict in _CANDIDATES], "gpt-4o")
    final = scripted(["Shortlist for onsite: Ana Souza and Divya Rao (both 4/5, Go + payments/platform)."], "gpt-4o")

    def parse(state: ScreenInner) -> dict[str, Any]:
        return {"skills": str(parser.invoke([SystemMessage("Extract skills."), HumanMessage(state["resume"])]).content)}

    def score(state: ScreenInner) -> dict[str, Any]:
        prompt = [SystemMessage("Score 1-5 for Senior Backend (Go, Kafka)."), HumanMessage(state["skills"])]
        return {"verdict": str(scorer.invoke(prompt).content)}

    inner = StateGraph(ScreenInner)
    inner.add_node("parse", parse)
    inner.add_node("score", score)
    inner.add_edge(START, "parse")
    inner.add_edge("parse", "score")
    inner.add_edge("score", END)

    def take(state: ScreenState) -> dict[str, Any]:
        name = state["queue"][0]
        return {"queue": state["queue"][1:], "resume": f"Resume of {name}", "verdict": ""}

    def record(state: ScreenState) -> dict[str, Any]:
        return {"scored": [f"{state['resume'].removeprefix('Resume of ')}: {state['verdict']}"]}

    def shortlist(state: ScreenState) -> dict[str, Any]:
        prompt = [SystemMessage("Pick the onsite shortlist."), HumanMessage("\n".join(state["scored"]))]
        return {"shortlist": str(final.invoke(prompt).content)}

    def more(state: ScreenState) -> str:
        return "take" if state["queue"] else "shortlist"

    graph = StateGraph(ScreenState)
    graph.add_node("take", take)
    graph.add_node("screen", inner.compile())
    graph.add_node("record", record)
    graph.add_node("shortlist", shortlist)
    graph.add_edge(START, "take")
    graph.add_edge("take", "screen")
    graph.add_edge("screen", "record")
    graph.add_conditional_edges("record", more, ["take", "shortlist"])
    graph.add_edge("shortlist", END)
    graph.compile().invoke(
        {"queue": [c for c, _, _ in _CANDIDATES], "resume": "", "verdict": "", "scored": [], "shortlist": ""},
        config(callbacks),
    )


# --- subgraph pipeline: Send each order to a fulfilment subgraph --------------------------------------------------

_ORDERS: list[tuple[str, str, int, str]] = [
    ("SO-7001", "DESK-OAK-160", 1, "RNO"),
    ("SO-7002", "CHAIR-ERGO-BLK", 4, "ATL"),
    ("SO-7003", "LAMP-ARC-BRS", 2, "RNO"),
    ("SO-7004", "SHELF-WAL-5T", 1, "CMH"),
    ("SO-7005", "RUG-WOOL-8X10", 1, "ATL"),
]


class FulfilState(TypedDict):
    orders: list[str]
    confirmations: Annotated[list[str], operator.add]


class OrderInner(TypedDict):
    order: str
    messages: Annotated[list[AnyMessage], add_messages]
    confirmations: Annotated[list[str], operator.add]


def order_fulfillment_subgraph(callbacks: Callbacks) -> None:
    ids = Ids("ful")
    table = {o: (sku, qty, wh) for o, sku, qty, wh in _ORDERS}

    @tool
    def reserve_stock(order_id: str, sku: str, qty: int, warehouse: str) -> str:
        """Reserve stock for an order."""
        return f"Reserved {qty} x {sku} at {warehouse} for {order_id} (bin {warehouse}-{len(sku) * 7 + qty:03d})."

    def pick_reply(messages: Sequence[BaseMessage]) -> AIMessage:
        order = last_text(messages).split()[-1]
        sku, qty, wh = table[order]
        return ask(ids, "reserve_stock", {"order_id": order, "sku": sku, "qty": qty, "warehouse": wh})

    def confirm_reply(messages: Sequence[BaseMessage]) -> str:
        return "Confirmed: " + last_text(messages) + " Pick list released to the floor."

    picker = scripted([pick_reply] * len(_ORDERS), "gpt-4o-mini").bind_tools([reserve_stock])
    confirmer = scripted([confirm_reply] * len(_ORDERS), "gpt-4o-mini")

    def pick(state: OrderInner) -> dict[str, Any]:
        ask_msg = HumanMessage(f"Reserve stock for order {state['order']}")
        return {"messages": [ask_msg, picker.invoke([SystemMessage("You run fulfilment."), ask_msg])]}

    def confirm(state: OrderInner) -> dict[str, Any]:
        return {"confirmations": [str(confirmer.invoke(state["messages"]).content)]}

    inner = StateGraph(OrderInner)
    inner.add_node("pick", pick)
    inner.add_node("reserve", ToolNode([reserve_stock]))
    inner.add_node("confirm", confirm)
    inner.add_edge(START, "pick")
    inner.add_edge("pick", "reserve")
    inner.add_edge("reserve", "confirm")
    inner.add_edge("confirm", END)

    def fan_out(state: FulfilState) -> list[Send]:
        return [Send("fulfil", {"order": o, "messages": [], "confirmations": []}) for o in state["orders"]]

    graph = StateGraph(FulfilState)
    graph.add_node("fulfil", inner.compile())
    graph.add_conditional_edges(START, fan_out, ["fulfil"])
    graph.add_edge("fulfil", END)
    graph.compile().invoke(
        {"orders": [o for o, *_ in _ORDERS], "confirmations": []}, config(callbacks, max_concurrency=1)
    )


# --- multi-turn chat: a scripted guest and a concierge that is often just polite ----------------------------------

_POLITE = "Certainly, I've noted that for your stay."
_GUEST_TURNS: list[tuple[str, str]] = [
    (
        "Hi, I'm arriving on the 14th around 11pm, is late check-in OK?",
        "Yes, the front desk is staffed 24/7, so an 11pm arrival is no problem.",
    ),
    ("Great. Could we have a room away from the elevator?", _POLITE),
    ("We'd also like extra pillows.", _POLITE),
    ("Is breakfast included in our rate?", "Your rate includes breakfast for two, served 6:30-10:30 in the Atrium."),
    ("Please add a crib for our baby.", _POLITE),
    ("And we're celebrating an anniversary.", _POLITE),
    (
        "Can you book a table for two at the rooftop bar on the 15th at 8pm?",
        "Booked: rooftop bar, 15th, 8:00pm, table for two, under your name.",
    ),
    ("We'd prefer a high floor if possible.", _POLITE),
    ("Thanks, that's everything!", "Wonderful, we look forward to welcoming you on the 14th."),
]


class ChatState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    script: list[str]


def hotel_concierge_chat(callbacks: Callbacks) -> None:
    model = scripted([reply for _, reply in _GUEST_TURNS], "gpt-4o-mini")

    def guest(state: ChatState) -> dict[str, Any]:
        return {"messages": [HumanMessage(state["script"][0])], "script": state["script"][1:]}

    def concierge(state: ChatState) -> dict[str, Any]:
        prompt = [SystemMessage("You are the concierge of the Harborview Hotel."), *state["messages"]]
        return {"messages": [model.invoke(prompt)]}

    def more(state: ChatState) -> str:
        return "guest" if state["script"] else END

    graph = StateGraph(ChatState)
    graph.add_node("guest", guest)
    graph.add_node("concierge", concierge)
    graph.add_edge(START, "guest")
    graph.add_edge("guest", "concierge")
    graph.add_conditional_edges("concierge", more, ["guest", END])
    graph.compile().invoke({"messages": [], "script": [t for t, _ in _GUEST_TURNS]}, config(callbacks))


# --- multi-turn chat: each turn handled by a create_agent assistant with tools ------------------------------------


class Conversation(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    turn: int


_ANYTHING_ELSE = "Happy to help. Anything else about your benefits?"


def hr_benefits_chat(callbacks: Callbacks) -> None:
    ids = Ids("ben")

    @tool
    def lookup_benefit(topic: str) -> str:
        """Look up a benefits policy."""
        policies = {
            "dental": "Dental: Delta PPO, 100% preventive, 80% basic, $1,500 annual max.",
            "parental leave": "Parental leave: 16 weeks fully paid for all parents, usable within 12 months.",
            "401k": "401(k): 4% match, immediate vesting, enrol any time via Fidelity.",
        }
        return policies[topic]

    replies: list[Any] = [
        ask(ids, "lookup_benefit", {"topic": "dental"}),
        "Dental is a Delta PPO: preventive care is covered 100%, basic work 80%, up to $1,500 a year.",
        _ANYTHING_ELSE,
        ask(ids, "lookup_benefit", {"topic": "parental leave"}),
        "You get 16 weeks of fully paid parental leave, to be used within 12 months of the birth.",
        _ANYTHING_ELSE,
        ask(ids, "lookup_benefit", {"topic": "401k"}),
        "We match 4% with immediate vesting; you can enrol any time through Fidelity.",
        _ANYTHING_ELSE,
    ]
    turns = [
        "What does our dental plan cover?",
        "Thanks, that's clear.",
        "How long is parental leave?",
        "Good to know, thank you!",
        "Do we have a 401k match?",
        "Perfect, thanks.",
    ]
    assistant = create_agent(scripted(replies, "gpt-4o-mini"), [lookup_benefit], system_prompt="You are an HR bot.")

    def employee(state: Conversation) -> dict[str, Any]:
        return {"messages": [HumanMessage(turns[state["turn"]])], "turn": state["turn"] + 1}

    def hr_bot(state: Conversation, config: RunnableConfig) -> dict[str, Any]:
        out = assistant.invoke({"messages": [*state["messages"]]}, config)
        return {"messages": [AIMessage(str(out["messages"][-1].content))]}

    def more(state: Conversation) -> str:
        return "employee" if state["turn"] < len(turns) else END

    graph = StateGraph(Conversation)
    graph.add_node("employee", employee)
    graph.add_node("hr_bot", hr_bot)
    graph.add_edge(START, "employee")
    graph.add_edge("employee", "hr_bot")
    graph.add_conditional_edges("hr_bot", more, ["employee", END])
    graph.compile().invoke({"messages": [], "turn": 0}, config(callbacks))


SCENARIOS = [
    SealedScenario(
        "ticket_triage_batch",
        "batch_classification",
        False,
        None,
        "StateGraph: loop over 16 distinct support tickets with Annotated[list, operator.add] results; every "
        "label is 'routine'.",
        ticket_triage_batch,
    ),
    SealedScenario(
        "transaction_flagging_send",
        "batch_classification",
        False,
        None,
        "StateGraph: Send fan-out screening 20 distinct card transactions; every verdict is 'OK'.",
        transaction_flagging_send,
    ),
    SealedScenario(
        "meeting_notes_action_items",
        "extraction_map",
        False,
        None,
        "StateGraph: action items extracted from 14 meeting notes; 9 are 'No action items.'",
        meeting_notes_action_items,
    ),
    SealedScenario(
        "contract_renewal_extract_send",
        "extraction_map",
        False,
        None,
        "StateGraph: Send fan-out over 12 contracts extracting renewal terms (8 'None found.'), then a reduce.",
        contract_renewal_extract_send,
    ),
    SealedScenario(
        "earnings_call_chunks",
        "fanout_summaries",
        False,
        None,
        "StateGraph: Send fan-out summarizing 8 earnings-call chunks, then an analyst brief.",
        earnings_call_chunks,
    ),
    SealedScenario(
        "log_shard_summaries",
        "fanout_summaries",
        False,
        None,
        "StateGraph: Send fan-out over 6 log shards (3 identical 'No errors'), reduce, publish with a tool.",
        log_shard_summaries,
    ),
    SealedScenario(
        "image_moderation_progress",
        "progress_reports",
        False,
        None,
        "StateGraph: 24 distinct images moderated by a tool; after each, the model posts a progress line that "
        "differs only in numbers.",
        image_moderation_progress,
    ),
    SealedScenario(
        "resume_screening_subgraph",
        "subgraph_pipeline",
        False,
        None,
        "StateGraph: a parse-then-score subgraph node run once per candidate (5), then a shortlist.",
        resume_screening_subgraph,
    ),
    SealedScenario(
        "order_fulfillment_subgraph",
        "subgraph_pipeline",
        False,
        None,
        "StateGraph: Send each of 5 orders to a fulfilment subgraph (model, ToolNode, model).",
        order_fulfillment_subgraph,
    ),
    SealedScenario(
        "hotel_concierge_chat",
        "multi_turn_chat",
        False,
        None,
        "StateGraph: 9 distinct guest turns; the concierge often replies with the same polite sentence.",
        hotel_concierge_chat,
    ),
    SealedScenario(
        "hr_benefits_chat",
        "multi_turn_chat",
        False,
        None,
        "StateGraph + create_agent: 6 employee turns, each answered by a create_agent assistant; thank-you turns get "
        "the same reply.",
        hr_benefits_chat,
    ),
]

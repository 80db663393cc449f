"""Paraphrased reflection loops: critiques and revisions that are reworded each round but add nothing new.

Each scenario uses a different rewording style and a different graph shape.
"""

from __future__ import annotations

import itertools
import operator
from typing import Annotated, Any, TypedDict

from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, HumanMessage, SystemMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import Command

from ._base import SealedScenario
from ._kit import Callbacks, config, scripted

# --- (a) one-word synonym swaps, messages-based reflection graph -------------------------------------------------

_GRANT = (
    "Our project will deploy low-cost air-quality sensors in 40 schools across Fresno County, giving teachers "
    "real-time data to decide when students can safely play outside. The grant funds hardware, a data dashboard, "
    "and two years of maintenance."
)
_GRANT_SWAPS = [
    ("deploy", "install"),
    ("low-cost", "affordable"),
    ("giving", "offering"),
    ("decide", "determine"),
    ("funds", "covers"),
    ("maintenance", "upkeep"),
    ("across", "throughout"),
    ("real-time", "live"),
]
_GRANT_CRITIQUE = "The summary is too vague about impact; state how many students benefit and what changes for them."
_CRITIQUE_SWAPS = [
    ("vague", "unclear"),
    ("state", "say"),
    ("benefit", "gain"),
    ("changes", "improves"),
    ("too", "overly"),
    ("impact", "outcomes"),
    ("summary", "abstract"),
]


class DialogState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


def grant_summary_synonyms(callbacks: Callbacks) -> None:
    writer = scripted([_GRANT] + [_GRANT.replace(a, b, 1) for a, b in _GRANT_SWAPS], "gpt-4o")
    critic = scripted(
        [_GRANT_CRITIQUE] + [_GRANT_CRITIQUE.replace(a, b, 1) for a, b in _CRITIQUE_SWAPS] + ["APPROVED. Submit it."],
        "gpt-4o-mini",
    )

    def generate(state: DialogState) -> dict[str, Any]:
        prompt = [SystemMessage("You write grant summaries. Revise using the reviewer's notes."), *state["messages"]]
        return {"messages": [writer.invoke(prompt)]}

    def reflect(state: DialogState) -> dict[str, Any]:
        # The classic reflection pattern: the critic sees the conversation with roles swapped.
        flipped = [
            HumanMessage(str(m.content)) if isinstance(m, AIMessage) else AIMessage(str(m.content))
            for m in state["messages"][1:]
        ]
        reply = critic.invoke([SystemMessage("You review grant summaries."), state["messages"][0], *flipped])
        return {"messages": [HumanMessage(str(reply.content), name="reviewer")]}

    def after_reflect(state: DialogState) -> str:
        return END if str(state["messages"][-1].content).startswith("APPROVED") else "generate"

    graph = StateGraph(DialogState)
    graph.add_node("generate", generate)
    graph.add_node("reflect", reflect)
    graph.add_edge(START, "generate")
    graph.add_edge("generate", "reflect")
    graph.add_conditional_edges("reflect", after_reflect, ["generate", END])
    graph.compile().invoke(
        {"messages": [HumanMessage("Write the 2-sentence project summary for our EPA school air-quality grant.")]},
        config(callbacks),
    )


# --- (b) sentences reordered, field-based state -------------------------------------------------------------------

_EMAIL_1 = (
    "Hi Maya, I'm reaching out from Ledgerly, the reconciliation platform for mid-market finance teams. Ledgerly "
    "matches bank lines to invoices automatically. Let me know if you'd like to learn more."
)
_EMAIL_2 = (
    "Hi Maya, I'm reaching out from Ledgerly, the reconciliation platform for mid-market finance teams. Ledgerly "
    "matches bank lines to invoices automatically and flags only the exceptions. Our 60-day pilot is $1,500, "
    "credited toward the annual plan. Could we book 20 minutes next Tuesday or Wednesday to scope it?"
)
_EMAIL_OPEN = "Hi Maya, month-end close at Fernbrook still means three days of manual bank reconciliation."
_EMAIL_BODY = [
    "Ledgerly matches bank lines to invoices automatically and flags only the exceptions.",
    "Teams like Harlow Foods cut their close from five days to two.",
    "Our 60-day pilot is $1,500, credited toward the annual plan.",
    "Could we book 20 minutes next Tuesday or Wednesday to scope it?",
]
_EMAIL_NOTE = [
    "The email opens with our product.",
    "Lead with their pain point: manual month-end reconciliation.",
    "Keep it under 120 words.",
]


class EmailState(TypedDict):
    draft: str
    critiques: Annotated[list[str], operator.add]
    revisions: int


def sales_email_reorder(callbacks: Callbacks) -> None:
    bodies = list(itertools.permutations(_EMAIL_BODY))
    notes = list(itertools.permutations(_EMAIL_NOTE))
    drafts = [_EMAIL_1, _EMAIL_2] + [" ".join([_EMAIL_OPEN, *body]) for body in bodies[:8]]
    critiques = [
        "Add the pilot pricing and a concrete next step.",
        " ".join(notes[0]),
        *[" ".join(notes[1 + i % 5]) for i in range(7)],
        "Ship it.",
    ]
    writer = scripted(drafts, "claude-3-5-sonnet-latest", "anthropic")
    critic = scripted(critiques, "gpt-4o")

    def write(state: EmailState) -> dict[str, Any]:
        prompt: list[BaseMessage] = [SystemMessage("You write outbound sales e-mails.")]
        if state["critiques"]:
            prompt.append(HumanMessage(f"Draft:\n{state['draft']}\n\nFeedback:\n{state['critiques'][-1]}"))
        else:
            prompt.append(HumanMessage("First-touch e-mail to Maya Chen, controller at Fernbrook Outdoor."))
        return {"draft": str(writer.invoke(prompt).content), "revisions": state["revisions"] + 1}

    def critique(state: EmailState) -> dict[str, Any]:
        prompt = [SystemMessage("You are a sales coach. Critique the e-mail."), HumanMessage(state["draft"])]
        return {"critiques": [str(critic.invoke(prompt).content)]}

    def done(state: EmailState) -> str:
        return END if state["critiques"][-1] == "Ship it." else "write"

    graph = StateGraph(EmailState)
    graph.add_node("write", write)
    graph.add_node("critique", critique)
    graph.add_edge(START, "write")
    graph.add_edge("write", "critique")
    graph.add_conditional_edges("critique", done, ["write", END])
    graph.compile().invoke({"draft": "", "critiques": [], "revisions": 0}, config(callbacks))


# --- (c) whole sentences rephrased --------------------------------------------------------------------------------

_DOC_1 = (
    "POST /v2/payouts creates a payout to a verified bank account. Body: amount (integer, cents), currency "
    "(ISO 4217), destination (bank account id). Returns 201 with the payout object."
)
_DOC_2 = (
    _DOC_1 + " Errors: 429 Too Many Requests when you exceed 100 requests per minute; wait for the number of "
    "seconds in the Retry-After header before retrying."
)
_DOC_REPHRASED = [
    "POST /v2/payouts sends money to a verified bank account. Request fields: amount in cents (integer), currency "
    "as an ISO 4217 code, and destination, the bank account id. On success it responds 201 with the payout. More "
    "than 100 requests a minute returns 429 Too Many Requests; retry after the seconds given in Retry-After.",
    "Use POST /v2/payouts to pay out to a bank account that has been verified. Send amount (an integer number of "
    "cents), currency (ISO 4217) and destination (the bank account's id); a 201 response carries the payout. "
    "Exceeding 100 requests per minute yields a 429, and clients should wait Retry-After seconds before trying again.",
    "The POST /v2/payouts endpoint creates a payout to a verified bank account. It takes amount (cents, integer), "
    "currency (ISO 4217) and destination (bank account id), and answers 201 with the created payout. Callers over "
    "the limit of 100 requests/minute receive HTTP 429 and must pause for the Retry-After interval.",
    "Creating a payout: POST /v2/payouts with amount (integer cents), currency (ISO 4217 code) and destination "
    "(id of a verified bank account). The API replies 201 and the payout object. Beyond 100 calls per minute it "
    "returns 429 Too Many Requests; honour the Retry-After header's delay before resending.",
    "POST /v2/payouts moves funds to a verified bank account. Parameters are amount (integer, in cents), currency "
    "(ISO 4217) and destination (bank account id). Success is a 201 containing the payout. If the 100 "
    "requests-per-minute limit is exceeded you'll get a 429; back off for the seconds in Retry-After.",
    "To pay out to a verified bank account, call POST /v2/payouts. Provide amount as integer cents, an ISO 4217 "
    "currency and the destination bank account id; you get back 201 plus the payout. Over 100 requests in a minute, "
    "the endpoint answers 429 Too Many Requests, and Retry-After says how long to wait.",
    "POST /v2/payouts: creates a payout to a verified bank account from amount (integer cents), currency (ISO "
    "4217) and destination (bank account id), returning 201 with the payout. Rate limit: 100 requests per minute, "
    "after which a 429 is returned; wait the Retry-After number of seconds, then retry.",
]
_DOC_CRITIQUES = [
    "Rate limiting isn't covered: explain what a 429 means and how clients should use Retry-After.",
    "Readers still can't tell what happens when they hit the rate limit. Describe the 429 status and the "
    "Retry-After header.",
    "Please add a section on throttling: the 429 error and how long to wait, per Retry-After.",
    "The doc needs to say what a 429 Too Many Requests response is and that clients must honour Retry-After.",
    "Missing: behaviour under rate limits (HTTP 429) and guidance on the Retry-After header.",
    "Explain the throttling response, status 429, and tell integrators to back off using Retry-After.",
    "Cover the too-many-requests case: the 429 code and the Retry-After wait time.",
]


def api_doc_full_rephrase(callbacks: Callbacks) -> None:
    writer = scripted([_DOC_1, _DOC_2, *_DOC_REPHRASED], "gpt-4.1")
    critic = scripted(
        ["Document the 429 response and the Retry-After header.", *_DOC_CRITIQUES, "LGTM, publishing."], "gpt-4.1"
    )

    def write(state: DialogState) -> dict[str, Any]:
        return {"messages": [writer.invoke([SystemMessage("You are an API technical writer."), *state["messages"]])]}

    def review(state: DialogState) -> dict[str, Any]:
        draft = str(state["messages"][-1].content)
        reply = critic.invoke([SystemMessage("Review this API reference entry."), HumanMessage(draft)])
        return {"messages": [HumanMessage(str(reply.content), name="docs_reviewer")]}

    def route(state: DialogState) -> str:
        return END if str(state["messages"][-1].content).startswith("LGTM") else "write"

    graph = StateGraph(DialogState)
    graph.add_node("write", write)
    graph.add_node("review", review)
    graph.add_edge(START, "write")
    graph.add_edge("write", "review")
    graph.add_conditional_edges("review", route, ["write", END])
    graph.compile().invoke(
        {"messages": [HumanMessage("Write the reference entry for POST /v2/payouts.")]}, config(callbacks)
    )


# --- (d) hedges and filler words added ----------------------------------------------------------------------------

_PM_1 = (
    "On 12 March checkout was unavailable from 14:02 to 14:49 UTC. Payments API calls failed with TLS handshake "
    "errors. The on-call engineer rolled the certificate and service recovered."
)
_PM_SENTENCES = [
    "On 12 March checkout was unavailable from 14:02 to 14:49 UTC.",
    "The root cause was that the TLS certificate of payments-api.internal expired at 14:00, and its expiry alert "
    "was routed to a decommissioned PagerDuty service, so nobody was paged.",
    "The on-call engineer renewed the certificate and service recovered.",
]
_FILLERS = ["To summarize,", "In short,", "Overall,", "Essentially,", "As noted,", "Basically,", "In essence,"]
_PM_CRITIQUE = "Add the customer impact: how many checkouts failed and the revenue affected."
_PM_HEDGED = [
    "I think you should add the customer impact: how many checkouts failed and the revenue affected.",
    "Overall, it would probably help to add the customer impact, i.e. how many checkouts failed and the revenue "
    "affected.",
    "Perhaps add the customer impact: how many checkouts failed and, I guess, the revenue affected.",
    "It might be worth adding the customer impact, basically how many checkouts failed and the revenue affected.",
    "Again, I'd suggest adding the customer impact: how many checkouts failed and the revenue that was affected.",
    "Honestly, I think it still needs the customer impact: how many checkouts failed and the revenue affected.",
]


def _with_filler(k: int) -> str:
    sentences = list(_PM_SENTENCES)
    i = k % 3
    filler = _FILLERS[k]
    sentences[i] = f"{filler} {sentences[i][0].lower()}{sentences[i][1:]}"
    if k >= 3:
        j = (k + 1) % 3
        sentences[j] = f"{_FILLERS[(k + 3) % 7]} {sentences[j][0].lower()}{sentences[j][1:]}"
    return " ".join(sentences)


class PostmortemState(TypedDict):
    incident: str
    draft: str
    notes: Annotated[list[str], operator.add]


def postmortem_hedging(callbacks: Callbacks) -> None:
    writer = scripted([_PM_1, " ".join(_PM_SENTENCES), *[_with_filler(k) for k in range(7)]], "gpt-4o-mini")
    critic = scripted(
        [
            "The root cause section should name the expired TLS certificate and explain why monitoring missed it.",
            _PM_CRITIQUE,
            *_PM_HEDGED,
            "Publishing as is.",
        ],
        "claude-3-5-haiku-latest",
        "anthropic",
    )

    def draft(state: PostmortemState) -> dict[str, Any]:
        notes = "\n".join(state["notes"][-1:]) or "(none yet)"
        prompt = [
            SystemMessage("Write the summary section of an incident postmortem."),
            HumanMessage(f"Incident: {state['incident']}\nCurrent draft: {state['draft']}\nReviewer notes: {notes}"),
        ]
        return {"draft": str(writer.invoke(prompt).content)}

    def review(state: PostmortemState) -> dict[str, Any]:
        prompt = [SystemMessage("You are the incident review chair."), HumanMessage(state["draft"])]
        return {"notes": [str(critic.invoke(prompt).content)]}

    def route(state: PostmortemState) -> str:
        return END if state["notes"][-1] == "Publishing as is." else "draft"

    graph = StateGraph(PostmortemState)
    graph.add_node("draft", draft)
    graph.add_node("review", review)
    graph.add_edge(START, "draft")
    graph.add_edge("draft", "review")
    graph.add_conditional_edges("review", route, ["draft", END])
    graph.compile().invoke(
        {"incident": "INC-2291 checkout outage, 12 March", "draft": "", "notes": []}, config(callbacks)
    )


# --- (e) legal synonyms, critique cycling through three paraphrases; one model playing both roles -----------------

_CLAUSE = [
    "Either party may terminate this Agreement for material breach by the other party.",
    "Either party may terminate this Agreement for material breach by the other party if the breach is not cured "
    "within thirty (30) days of written notice.",
    "Either party may terminate this Agreement for material breach by the other party if the breach is not cured "
    "within thirty (30) days after the breaching party's receipt of written notice describing the breach.",
]
_CLAUSE_VARIANTS = [
    "Either party will be entitled to terminate this Agreement for material breach by the other party if such "
    "breach remains uncured thirty (30) days after the breaching party receives written notice describing the breach.",
    "Each party may end this Agreement upon a material breach by the other party where the breach is not remedied "
    "within thirty (30) days following the breaching party's receipt of written notice thereof.",
    "Either party shall have the right to terminate this Agreement if the other party materially breaches it and "
    "fails to cure such breach within thirty (30) days of receiving written notice of the breach.",
]
_CLAUSE_NOTES = [
    "Make explicit that the thirty days begin when the breaching party receives the notice.",
    "State clearly that the cure window starts on receipt of the written notice rather than when it is sent.",
    "The clause should specify that the 30-day period is counted from the date the notice is received.",
]


class ClauseState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


def msa_clause_legal_synonyms(callbacks: Callbacks) -> None:
    script: list[Any] = [
        _CLAUSE[0],
        "Add a cure period before termination for material breach.",
        _CLAUSE[1],
        "Clarify that the cure period runs from receipt of the written notice, not from its dispatch.",
        _CLAUSE[2],
    ]
    for k in range(7):
        script.append(_CLAUSE_NOTES[k % 3])
        script.append(_CLAUSE_VARIANTS[k % 3])
    script.append("Approved.")
    model = scripted(script, "gpt-4o")

    def draft(state: ClauseState) -> Command[Any]:
        reply = model.invoke([SystemMessage("You are a contracts attorney drafting an MSA."), *state["messages"]])
        return Command(update={"messages": [reply]}, goto="critique")

    def critique(state: ClauseState) -> Command[Any]:
        clause = str(state["messages"][-1].content)
        reply = model.invoke([SystemMessage("Act as opposing counsel; critique the clause."), HumanMessage(clause)])
        text = str(reply.content)
        goto = END if text == "Approved." else "draft"
        return Command(update={"messages": [HumanMessage(text, name="opposing_counsel")]}, goto=goto)

    graph = StateGraph(ClauseState)
    graph.add_node("draft", draft, destinations=("critique",))
    graph.add_node("critique", critique, destinations=("draft", END))
    graph.add_edge(START, "draft")
    graph.compile().invoke(
        {"messages": [HumanMessage("Draft the termination-for-breach clause (section 11.2) of the MSA.")]},
        config(callbacks),
    )


# --- (f) code with cosmetic changes only --------------------------------------------------------------------------

_SQL_1 = (
    "SELECT c.region, SUM(o.amount) AS revenue FROM orders o JOIN customers c ON c.id = o.customer_id "
    "WHERE o.created_at >= '2024-07-01' GROUP BY c.region;"
)
_SQL_2 = (
    "SELECT c.region, SUM(o.amount) AS revenue FROM orders o JOIN customers c ON c.id = o.customer_id "
    "WHERE o.created_at >= '2024-07-01' AND o.type <> 'refund' GROUP BY c.region;"
)
_SQL_COSMETIC = [
    "select c.region, sum(o.amount) as revenue from orders o join customers c on c.id = o.customer_id "
    "where o.created_at >= '2024-07-01' and o.type <> 'refund' group by c.region;",
    "SELECT cust.region, SUM(ord.amount) AS revenue FROM orders ord JOIN customers cust ON cust.id = "
    "ord.customer_id WHERE ord.created_at >= '2024-07-01' AND ord.type <> 'refund' GROUP BY cust.region;",
    "SELECT c.region, SUM(o.amount) AS revenue\nFROM orders AS o\nJOIN customers AS c ON o.customer_id = c.id\n"
    "WHERE o.created_at >= '2024-07-01'\n  AND o.type != 'refund'\nGROUP BY c.region;",
    "SELECT c.region, SUM(o.amount) AS revenue FROM orders o INNER JOIN customers c ON c.id = o.customer_id "
    "WHERE o.type <> 'refund' AND o.created_at >= DATE '2024-07-01' GROUP BY 1;",
    "WITH july AS (SELECT * FROM orders WHERE created_at >= '2024-07-01' AND type <> 'refund') "
    "SELECT c.region, SUM(j.amount) AS revenue FROM july j JOIN customers c ON c.id = j.customer_id "
    "GROUP BY c.region;",
    "SELECT c.region, SUM(o.amount) AS total_revenue FROM orders o JOIN customers c ON c.id = o.customer_id "
    "WHERE NOT (o.type = 'refund') AND o.created_at >= '2024-07-01' GROUP BY c.region;",
    "SELECT\n  c.region,\n  SUM(o.amount) AS revenue\nFROM orders o\nJOIN customers c\n  ON c.id = o.customer_id\n"
    "WHERE o.created_at >= '2024-07-01'\n  AND o.type <> 'refund'\nGROUP BY c.region;",
]
_SQL_NOTES = [
    "Refunds are still being counted as revenue; filter out rows whose type is 'refund'.",
    "Revenue includes refund rows. Add a filter on type to drop refunds.",
    "You're double counting refunds: exclude type = 'refund' from the sum.",
    "The sum still contains refunds; rows with type 'refund' must be excluded.",
    "Make sure refund rows (type = 'refund') don't contribute to revenue.",
    "Refund transactions are inflating revenue; remove them with a type filter.",
    "This still double-counts refunds. Drop the refund rows before summing.",
]


class QueryState(TypedDict):
    question: str
    queries: Annotated[list[str], operator.add]
    reviews: Annotated[list[str], operator.add]


def sql_self_refine_cosmetic(callbacks: Callbacks) -> None:
    coder = scripted([_SQL_1, _SQL_2, *_SQL_COSMETIC], "gpt-4o-mini")
    reviewer = scripted(
        [
            "This double-counts refunds: refund rows live in orders with type = 'refund'. Exclude them.",
            *_SQL_NOTES,
            "Query approved.",
        ],
        "gpt-4o",
    )

    def generate(state: QueryState) -> dict[str, Any]:
        history: list[BaseMessage] = [HumanMessage(state["question"])]
        for query, review in zip(state["queries"], state["reviews"], strict=True):
            history += [AIMessage(query), HumanMessage(f"Review: {review}")]
        return {"queries": [str(coder.invoke([SystemMessage("Write PostgreSQL."), *history]).content)]}

    def review(state: QueryState) -> dict[str, Any]:
        prompt = [SystemMessage("Review the SQL for correctness."), HumanMessage(state["queries"][-1])]
        return {"reviews": [str(reviewer.invoke(prompt).content)]}

    def route(state: QueryState) -> str:
        return END if state["reviews"][-1] == "Query approved." else "generate"

    graph = StateGraph(QueryState)
    graph.add_node("generate", generate)
    graph.add_node("review", review)
    graph.add_edge(START, "generate")
    graph.add_edge("generate", "review")
    graph.add_conditional_edges("review", route, ["generate", END])
    graph.compile().invoke(
        {"question": "Revenue by customer region since July 1st.", "queries": [], "reviews": []}, config(callbacks)
    )


REFLECTION_SCENARIOS = [
    SealedScenario(
        "grant_summary_synonyms",
        "paraphrased_reflection",
        True,
        3,
        "StateGraph: messages-based reflection; each revision and each critique differs from the first by one "
        "swapped synonym.",
        grant_summary_synonyms,
    ),
    SealedScenario(
        "sales_email_reorder",
        "paraphrased_reflection",
        True,
        6,
        "StateGraph: two useful rounds, then the critique and the e-mail only reorder the same sentences.",
        sales_email_reorder,
    ),
    SealedScenario(
        "api_doc_full_rephrase",
        "paraphrased_reflection",
        True,
        4,
        "StateGraph: the reviewer re-asks for 429 docs in fully rephrased sentences; the writer rephrases the "
        "whole entry.",
        api_doc_full_rephrase,
    ),
    SealedScenario(
        "postmortem_hedging",
        "paraphrased_reflection",
        True,
        5,
        "StateGraph: after one real fix the writer only adds filler words and the chair hedges the same request.",
        postmortem_hedging,
    ),
    SealedScenario(
        "msa_clause_legal_synonyms",
        "paraphrased_reflection",
        True,
        6,
        "StateGraph: one model drafting and critiquing via Command; legal synonyms (shall/will, terminate/end) and "
        "three rotating paraphrases of the same note.",
        msa_clause_legal_synonyms,
    ),
    SealedScenario(
        "sql_self_refine_cosmetic",
        "paraphrased_reflection",
        True,
        4,
        "StateGraph: SQL self-refine; the query changes only cosmetically (case, aliases, layout, CTE) while the "
        "review repeats 'refunds double-counted' in new words.",
        sql_self_refine_cosmetic,
    ),
]

"""SEALED agent-run scenarios: LangGraph / LangChain agents that either progress or get stuck in a loop.

Every scenario builds its agent or graph from scratch, drives it with scripted chat models and deterministic
tools, and runs it to a normal end. A looping scenario keeps repeating itself for well over a dozen model calls
after ``loop_start_call`` and then its script ends the run, so a loop that nobody stops simply completes.

``loop_start_call`` is the 1-based index, over every chat-model call of the run in order, of the first call whose
reply repeats earlier work (the first occurrence is legitimate; the first repetition starts the loop).

Randomness (seeded ``random.Random``) only varies texts, ids and timestamps; every run is deterministic. Graphs
run with ``max_concurrency=1`` so fan-out branches execute in a fixed order.
"""

import json
import operator
import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from langchain.agents import create_agent
from langchain.agents.middleware import AgentMiddleware, HumanInTheLoopMiddleware, after_model
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool, InjectedToolCallId, ToolException, tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.graph.message import add_messages
from langgraph.prebuilt import InjectedState, ToolNode, tools_condition
from langgraph.types import Command, Send, interrupt
from typing_extensions import TypedDict

from guardian.testing import ScriptedChatModel

Callbacks = list[BaseCallbackHandler]
Run = Callable[[Callbacks], None]


@dataclass(frozen=True)
class SealedScenario:
    name: str
    archetype: str
    looping: bool
    loop_start_call: int | None
    description: str
    run: Run


SCENARIOS: list[SealedScenario] = []

HEALTHY_ARCHETYPES = (
    "batch_classification",
    "extraction_map",
    "fanout_summaries",
    "pagination",
    "polling_finishes",
    "retry_then_success",
    "rate_limit_clears",
    "research",
    "edit_test_coding",
    "reread_after_edit",
    "planner_executor",
    "reflection_improves",
    "human_in_the_loop",
    "tool_error_recovers",
    "progress_reports",
    "supervisor_handoff",
    "subgraph_pipeline",
    "multi_turn_chat",  # added: distinct user turns that may get identical polite replies
)
LOOPING_ARCHETYPES = (
    "stuck_same_call",
    "volatile_result_loop",
    "error_retry_loop",
    "ab_alternation",
    "paraphrased_reflection",
    "rotation_loop",
    "supervisor_pingpong",
    "repeated_answer_no_input",
    "pagination_stuck",
    "subgraph_loop",
    "reworded_search_loop",  # added: a query reworded again and again, the results never change
)


def _scenario(
    name: str, archetype: str, *, looping: bool, start: int | None = None, description: str
) -> Callable[[Run], Run]:
    """Registers the decorated ``run`` function as a scenario."""
    if looping != (archetype in LOOPING_ARCHETYPES) or looping != (start is not None):
        raise ValueError(f"inconsistent scenario {name}")

    def register(run: Run) -> Run:
        SCENARIOS.append(SealedScenario(name, archetype, looping, start, description, run))
        return run

    return register


# --------------------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------------------

_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def _config(callbacks: Callbacks, limit: int = 400, thread: str | None = None) -> RunnableConfig:
    config: RunnableConfig = {"callbacks": callbacks, "recursion_limit": limit, "max_concurrency": 1}
    if thread is not None:
        config["configurable"] = {"thread_id": thread}
    return config


class _Ids:
    """Provider-style tool-call ids, fresh for every call but deterministic per scenario."""

    def __init__(self, seed: str, prefix: str = "call_") -> None:
        self._rng = random.Random(seed)
        self._prefix = prefix

    def __call__(self) -> str:
        if self._prefix.startswith("toolu"):
            return self._prefix + "".join(self._rng.choices(_ALNUM, k=22))
        return self._prefix + "".join(self._rng.choices(_ALNUM, k=24))


class _Noise:
    """Deterministic stand-ins for values a real system makes fresh on every call: ids, clocks, latencies."""

    def __init__(self, seed: str, start: str = "2024-05-02T10:14:03") -> None:
        self.rng = random.Random(seed)
        self._clock = datetime.fromisoformat(start)

    def hex(self, n: int = 16) -> str:
        return "".join(self.rng.choices("0123456789abcdef", k=n))

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def tick(self, low: int = 2, high: int = 45) -> str:
        self._clock += timedelta(seconds=self.rng.randint(low, high))
        return self._clock.strftime("%Y-%m-%dT%H:%M:%SZ")

    def between(self, low: int, high: int) -> int:
        return self.rng.randint(low, high)


def _call(ids: _Ids, name: str, args: dict[str, Any], text: str = "") -> AIMessage:
    """A reply that asks for one tool call."""
    return _calls(ids, [(name, args)], text)


def _calls(ids: _Ids, calls: Sequence[tuple[str, dict[str, Any]]], text: str = "") -> AIMessage:
    """A reply that asks for several tool calls at once."""
    return AIMessage(
        content=text,
        tool_calls=[{"name": name, "args": args, "id": ids(), "type": "tool_call"} for name, args in calls],
    )


def _model(replies: Sequence[Any], model: str = "gpt-4o-mini", provider: str = "openai") -> ScriptedChatModel:
    return ScriptedChatModel(replies=list(replies), model=model, provider=provider)


def _claude(replies: Sequence[Any], model: str = "claude-3-5-sonnet-latest") -> ScriptedChatModel:
    return ScriptedChatModel(replies=list(replies), model=model, provider="anthropic")


def _text(message: BaseMessage) -> str:
    return message.content if isinstance(message.content, str) else ""


def _last_human(messages: Sequence[BaseMessage]) -> str:
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            return _text(message)
    return ""


def _lenient(t: BaseTool) -> BaseTool:
    """A tool whose ``ToolException`` becomes an error result the model reads (other exceptions propagate)."""
    t.handle_tool_error = True
    return t


def _run_agent(
    callbacks: Callbacks,
    model: ScriptedChatModel,
    tools: Sequence[BaseTool],
    user: str,
    *,
    system: str | None = None,
    limit: int = 400,
    middleware: Sequence[AgentMiddleware[Any, Any]] = (),
) -> dict[str, Any]:
    agent: Any = create_agent(model, list(tools), system_prompt=system, middleware=middleware)
    result: dict[str, Any] = agent.invoke({"messages": [HumanMessage(user)]}, _config(callbacks, limit))
    return result


def _route_tools(state: MessagesState) -> Literal["tools", "__end__"]:
    last = state["messages"][-1]
    return "tools" if isinstance(last, AIMessage) and last.tool_calls else "__end__"


# ==============================================================================================================
# LOOPING: stuck_same_call
# ==============================================================================================================


@_scenario(
    "travel_forecast_stuck",
    "stuck_same_call",
    looping=True,
    start=3,
    description="Travel assistant checks a flight, then asks for the same Lisbon forecast over and over.",
)
def _travel_forecast_stuck(callbacks: Callbacks) -> None:
    ids = _Ids("travel_forecast_stuck")

    @tool
    def get_flight_status(flight: str, date: str) -> str:
        """Status of a scheduled flight on a date."""
        return f"{flight} LIS->BER on {date}: scheduled 09:40, on time, gate not yet assigned, aircraft A321neo."

    @tool
    def get_forecast(city: str, date: str) -> str:
        """Daily weather forecast for a city."""
        return f"{city} {date}: high 27°C / low 18°C, clear skies, wind 12 km/h NW, 0% chance of rain, UV index 8."

    forecast = {"city": "Lisbon", "date": "2024-06-14"}
    replies: list[Any] = [
        _call(ids, "get_flight_status", {"flight": "TP1351", "date": "2024-06-14"}),
        _call(ids, "get_forecast", forecast),
    ]
    replies += [_call(ids, "get_forecast", forecast) for _ in range(16)]
    replies.append("Your TP1351 flight is on time and Lisbon will be clear and warm (27°C). Pack sunscreen.")
    _run_agent(
        callbacks,
        _model(replies),
        [get_flight_status, get_forecast],
        "I fly TP1351 to Berlin on June 14 from Lisbon. Is the flight ok and what's the weather before I leave?",
        system="You are a concise travel assistant.",
    )


class _CrmState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    customer_email: str


@_scenario(
    "crm_invoice_lookup_stuck",
    "stuck_same_call",
    looping=True,
    start=4,
    description="Support graph (agent + ToolNode) finds the customer and orders, then re-fetches one invoice forever.",
)
def _crm_invoice_lookup_stuck(callbacks: Callbacks) -> None:
    ids = _Ids("crm_invoice_lookup_stuck")

    @tool
    def find_customer(email: str) -> str:
        """Find a customer record by email."""
        return json.dumps({"customer_id": "C-88213", "name": "Dana Whitfield", "plan": "Business", "since": "2021-03"})

    @tool
    def list_orders(customer_id: str) -> str:
        """List recent orders for a customer."""
        return json.dumps(
            [
                {"order": "SO-10931", "invoice": "INV-5531", "total": 412.90, "date": "2024-04-02"},
                {"order": "SO-10502", "invoice": "INV-5120", "total": 99.00, "date": "2024-02-11"},
            ]
        )

    @tool
    def get_invoice(invoice_id: str) -> str:
        """Fetch one invoice with its payment status."""
        return f"Invoice {invoice_id}: status=open, amount=$412.90, due 2024-05-02, 2 reminders sent, no payments."

    tools = [find_customer, list_orders, get_invoice]
    replies: list[Any] = [
        _call(ids, "find_customer", {"email": "dana@whitfield-design.com"}),
        _call(ids, "list_orders", {"customer_id": "C-88213"}),
        _call(ids, "get_invoice", {"invoice_id": "INV-5531"}, "Let me pull up invoice INV-5531."),
    ]
    replies += [
        _call(ids, "get_invoice", {"invoice_id": "INV-5531"}, "Let me pull up invoice INV-5531.") for _ in range(18)
    ]
    replies.append("Invoice INV-5531 ($412.90) is still open and overdue since May 2; no payment has been received.")
    model = _model(replies).bind_tools(tools)

    def agent(state: _CrmState, config: RunnableConfig) -> dict[str, Any]:
        prompt = [SystemMessage(f"You are a billing support agent. Customer: {state['customer_email']}.")]
        return {"messages": [model.invoke([*prompt, *state["messages"]], config)]}

    graph = StateGraph(_CrmState)
    graph.add_node("agent", agent)
    graph.add_node("tools", ToolNode(tools))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition)
    graph.add_edge("tools", "agent")
    graph.compile().invoke(
        {
            "messages": [HumanMessage("Was my last invoice paid? I think I paid it in April.")],
            "customer_email": "dana@whitfield-design.com",
        },
        _config(callbacks),
    )


@_scenario(
    "k8s_describe_pod_stuck",
    "stuck_same_call",
    looping=True,
    start=4,
    description="SRE agent lists pods, describes a crashing pod, reads its logs, then describes the same pod forever.",
)
def _k8s_describe_pod_stuck(callbacks: Callbacks) -> None:
    ids = _Ids("k8s_describe_pod_stuck", "toolu_")

    @tool
    def kubectl_get_pods(namespace: str) -> str:
        """List pods in a namespace."""
        return (
            "NAME                      READY   STATUS             RESTARTS   AGE\n"
            "api-7f9c6d5b8-x2k4q       0/1     CrashLoopBackOff   14         41m\n"
            "api-7f9c6d5b8-p9r7m       1/1     Running            0          41m\n"
            "worker-5c8d7f6b9-lq2ws    1/1     Running            2          3h"
        )

    @tool
    def kubectl_describe(pod: str, namespace: str) -> str:
        """Describe a pod (events, container states)."""
        return (
            f"Name: {pod}\nNamespace: {namespace}\nState: Waiting (CrashLoopBackOff)\nLast State: Terminated, "
            "Reason: Error, Exit Code: 1\nEvents: Back-off restarting failed container api (x14 over 41m)"
        )

    @tool
    def kubectl_logs(pod: str, namespace: str, tail: int) -> str:
        """Tail a pod's logs."""
        return (
            "2024-05-02 10:02:11 INFO  starting api v3.18.2\n"
            "2024-05-02 10:02:12 ERROR config: required env var DATABASE_URL is not set\n"
            "2024-05-02 10:02:12 FATAL exiting with status 1"
        )

    pod = {"pod": "api-7f9c6d5b8-x2k4q", "namespace": "prod"}
    thinking = "The pod is in CrashLoopBackOff; describing it to see the events."
    replies: list[Any] = [
        _call(ids, "kubectl_get_pods", {"namespace": "prod"}),
        _call(ids, "kubectl_describe", pod, thinking),
        _call(ids, "kubectl_logs", {**pod, "tail": 50}),
    ]
    replies += [_call(ids, "kubectl_describe", pod, thinking) for _ in range(14)]
    replies.append("api-7f9c6d5b8-x2k4q crashes because DATABASE_URL is missing; check the prod secret mount.")
    _run_agent(
        callbacks,
        _claude(replies),
        [kubectl_get_pods, kubectl_describe, kubectl_logs],
        "The api deployment in prod is flapping. Find out why.",
        system="You are an on-call SRE assistant with read-only kubectl access.",
    )


@_scenario(
    "portfolio_parallel_quotes_stuck",
    "stuck_same_call",
    looping=True,
    start=2,
    description="Portfolio agent issues the same two parallel quote calls every turn and never answers.",
)
def _portfolio_parallel_quotes_stuck(callbacks: Callbacks) -> None:
    ids = _Ids("portfolio_parallel_quotes_stuck")
    prices = {"AAPL": "189.84", "MSFT": "414.12"}

    @tool
    def get_quote(symbol: str) -> str:
        """Delayed (15 min) quote for a ticker."""
        return f"{symbol}: last {prices[symbol]} USD (delayed 15 min), day range fixed at close, volume 41.2M"

    both = [("get_quote", {"symbol": "AAPL"}), ("get_quote", {"symbol": "MSFT"})]
    replies: list[Any] = [_calls(ids, both) for _ in range(16)]
    replies.append("At the last close AAPL was 189.84 and MSFT 414.12, so your 30/20 split is worth $13,977.60.")
    _run_agent(
        callbacks,
        _model(replies, model="gpt-4o"),
        [get_quote],
        "I hold 30 AAPL and 20 MSFT. What is the position worth right now?",
    )


# ==============================================================================================================
# LOOPING: volatile_result_loop
# ==============================================================================================================


@_scenario(
    "payments_health_timestamp_loop",
    "volatile_result_loop",
    looping=True,
    start=3,
    description="Ops agent re-checks the payments service health; only checked_at changes between results.",
)
def _payments_health_timestamp_loop(callbacks: Callbacks) -> None:
    ids = _Ids("payments_health_timestamp_loop")
    noise = _Noise("payments_health_timestamp_loop")

    @tool
    def list_services() -> str:
        """List the services this team owns."""
        return "payments (tier 0), ledger (tier 0), notifications (tier 2), fx-rates (tier 1)"

    @tool
    def check_health(service: str) -> str:
        """Current health snapshot of a service."""
        return (
            f"service={service} status=degraded p99_ms=2310 error_rate=4.2% healthy_pods=5/8 "
            f"checked_at={noise.tick(20, 40)}"
        )

    replies: list[Any] = [_call(ids, "list_services", {}), _call(ids, "check_health", {"service": "payments"})]
    replies += [_call(ids, "check_health", {"service": "payments"}) for _ in range(15)]
    replies.append("payments is degraded: p99 2.3s, 4.2% errors, 3 of 8 pods unhealthy. Paging the owner.")
    _run_agent(callbacks, _model(replies), [list_services, check_health], "Is anything we own unhealthy right now?")


class _UploadState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    tool_runs: Annotated[int, operator.add]


@_scenario(
    "upload_session_uuid_loop",
    "volatile_result_loop",
    looping=True,
    start=2,
    description="File agent keeps creating a new upload session (fresh UUID each time) and never uploads.",
)
def _upload_session_uuid_loop(callbacks: Callbacks) -> None:
    ids = _Ids("upload_session_uuid_loop")
    noise = _Noise("upload_session_uuid_loop")

    @tool
    def create_upload_session(filename: str, content_type: str) -> str:
        """Open a resumable upload session for a file."""
        session = noise.uuid()
        return (
            f"Created upload session {session} for {filename} ({content_type}). "
            f"PUT the bytes to https://uploads.example.com/v2/sessions/{session} within 15 minutes."
        )

    @tool
    def upload_file(session_id: str, path: str) -> str:
        """Upload a local file into an open session."""
        return f"Uploaded {path} into {session_id}: 2.4 MB, sha256 verified."

    tools = {t.name: t for t in (create_upload_session, upload_file)}
    args = {"filename": "q3-board-report.pdf", "content_type": "application/pdf"}
    replies: list[Any] = [_call(ids, "create_upload_session", args) for _ in range(17)]
    replies.append("I could not finish the upload of q3-board-report.pdf; please try again later.")
    model = _model(replies).bind_tools(list(tools.values()))

    def agent(state: _UploadState, config: RunnableConfig) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"], config)]}

    def run_tools(state: _UploadState, config: RunnableConfig) -> dict[str, Any]:
        last = state["messages"][-1]
        assert isinstance(last, AIMessage)
        results = [tools[c["name"]].invoke(c, config) for c in last.tool_calls]
        return {"messages": results, "tool_runs": len(results)}

    graph = StateGraph(_UploadState)
    graph.add_node("agent", agent)
    graph.add_node("run_tools", run_tools)
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", lambda s: "run_tools" if s["messages"][-1].tool_calls else END)
    graph.add_edge("run_tools", "agent")
    graph.compile().invoke(
        {"messages": [HumanMessage("Upload /reports/q3-board-report.pdf to the board portal.")], "tool_runs": 0},
        _config(callbacks),
    )


@_scenario(
    "ticket_search_request_id_loop",
    "volatile_result_loop",
    looping=True,
    start=2,
    description="Helpdesk agent repeats one ticket search; results only differ in request_id and latency.",
)
def _ticket_search_request_id_loop(callbacks: Callbacks) -> None:
    ids = _Ids("ticket_search_request_id_loop")
    noise = _Noise("ticket_search_request_id_loop")

    @tool
    def search_tickets(query: str, status: str) -> str:
        """Full-text search over helpdesk tickets."""
        hits = [
            {"id": 4411, "title": "SSO login times out after 30s", "status": status, "assignee": "mchen"},
            {"id": 4398, "title": "Login page spinner never stops (Safari)", "status": status, "assignee": None},
            {"id": 4377, "title": "Timeout on /auth/callback behind proxy", "status": status, "assignee": "rkaur"},
        ]
        meta = {"request_id": noise.hex(32), "took_ms": noise.between(18, 95), "total": 3}
        return json.dumps({"hits": hits, "meta": meta})

    args = {"query": "login timeout", "status": "open"}
    replies: list[Any] = [_call(ids, "search_tickets", args) for _ in range(16)]
    replies.append("There are 3 open login-timeout tickets (#4411, #4398, #4377); #4398 is unassigned.")
    _run_agent(
        callbacks,
        _model(replies, model="gpt-4.1-mini"),
        [search_tickets],
        "Are there open tickets about login timeouts, and who owns them?",
    )


@_scenario(
    "dlq_peek_receipt_loop",
    "volatile_result_loop",
    looping=True,
    start=3,
    description="Queue agent keeps peeking the same dead-letter message; receipt handle and fetch time change.",
)
def _dlq_peek_receipt_loop(callbacks: Callbacks) -> None:
    ids = _Ids("dlq_peek_receipt_loop", "toolu_")
    noise = _Noise("dlq_peek_receipt_loop", "2024-07-19T23:55:40")

    @tool
    def queue_stats(queue: str) -> str:
        """Depth and age of a queue."""
        return f"{queue}: visible=1 in_flight=0 oldest_age=6h12m"

    @tool
    def peek_message(queue: str) -> str:
        """Receive one message without deleting it (visibility timeout 0)."""
        return (
            f"queue={queue} message_id=5f1c0e2a-77b4-4b1e-9d0f-3e2a8c1d9b44 "
            'body={"invoice":"INV-88120","error":"currency XBT not supported"} '
            f"receipt_handle=AQEB{noise.hex(40)} fetched_at={noise.tick()}"
        )

    @tool
    def delete_message(queue: str, receipt_handle: str) -> str:
        """Delete (acknowledge) a message."""
        return "deleted"

    replies: list[Any] = [
        _call(ids, "queue_stats", {"queue": "invoices-dlq"}),
        _call(ids, "peek_message", {"queue": "invoices-dlq"}, "Peeking at the dead-lettered message."),
    ]
    replies += [
        _call(ids, "peek_message", {"queue": "invoices-dlq"}, "Peeking at the dead-lettered message.")
        for _ in range(14)
    ]
    replies.append("The DLQ holds one invoice (INV-88120) that failed on unsupported currency XBT.")

    tools = [queue_stats, peek_message, delete_message]
    model = _claude(replies).bind_tools(tools)

    def agent(state: MessagesState, config: RunnableConfig) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"], config)]}

    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_node("tools", ToolNode(tools))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", _route_tools)
    graph.add_edge("tools", "agent")
    graph.compile().invoke({"messages": [HumanMessage("What is stuck in invoices-dlq?")]}, _config(callbacks))


# ==============================================================================================================
# LOOPING: error_retry_loop
# ==============================================================================================================


@_scenario(
    "checkout_charge_503_loop",
    "error_retry_loop",
    looping=True,
    start=3,
    description="Checkout agent retries the same card charge; the gateway answers 503 with a new request id each time.",
)
def _checkout_charge_503_loop(callbacks: Callbacks) -> None:
    ids = _Ids("checkout_charge_503_loop")
    noise = _Noise("checkout_charge_503_loop")

    @tool
    def get_cart(cart_id: str) -> str:
        """Cart contents and totals."""
        return json.dumps(
            {
                "cart_id": cart_id,
                "items": [["Merino hoodie", 1, 8900], ["Wool socks x3", 1, 2400]],
                "total_cents": 11300,
            }
        )

    @tool
    def charge_card(order_id: str, amount_cents: int, payment_method: str) -> str:
        """Charge the customer's saved payment method."""
        return (
            "ERROR 503 Service Unavailable: payment gateway upstream timed out "
            f"(request_id=req_{noise.hex(24)}). The charge was not captured."
        )

    charge = {"order_id": "ORD-2024-118843", "amount_cents": 11300, "payment_method": "pm_card_visa_4242"}
    replies: list[Any] = [_call(ids, "get_cart", {"cart_id": "cart_9d2f"}), _call(ids, "charge_card", charge)]
    replies += [_call(ids, "charge_card", charge) for _ in range(16)]
    replies.append("Sorry, the payment provider is unavailable, so your order is saved but not charged yet.")
    _run_agent(
        callbacks,
        _model(replies),
        [get_cart, charge_card],
        "Check out cart cart_9d2f with my saved Visa.",
        system="You are a checkout assistant. Charge exactly the cart total.",
    )


@_scenario(
    "replica_query_connection_loop",
    "error_retry_loop",
    looping=True,
    start=3,
    description="Analytics graph: ToolNode turns a ConnectionError into an error message; the same query is retried.",
)
def _replica_query_connection_loop(callbacks: Callbacks) -> None:
    ids = _Ids("replica_query_connection_loop")

    @tool
    def list_tables(schema_name: str) -> str:
        """List tables of a schema (served from the catalog cache)."""
        return "orders, order_items, customers, refunds, sessions_daily"

    @tool
    def run_query(sql: str) -> str:
        """Run a read-only SQL query on the analytics replica."""
        raise ConnectionError(
            'could not connect to server: Connection refused. Is the server running on host "db-replica-2" '
            "and accepting TCP/IP connections on port 5432?"
        )

    sql = (
        "SELECT date_trunc('week', created_at) AS week, count(*) FROM orders "
        "WHERE created_at >= now() - interval '8 weeks' GROUP BY 1 ORDER BY 1"
    )
    replies: list[Any] = [_call(ids, "list_tables", {"schema_name": "public"}), _call(ids, "run_query", {"sql": sql})]
    replies += [_call(ids, "run_query", {"sql": sql}) for _ in range(15)]
    replies.append("I can't reach the analytics replica right now, so I couldn't compute the weekly order counts.")
    tools = [list_tables, run_query]
    model = _model(replies, model="gpt-4o").bind_tools(tools)

    def analyst(state: MessagesState, config: RunnableConfig) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"], config)]}

    graph = StateGraph(MessagesState)
    graph.add_node("analyst", analyst)
    graph.add_node("tools", ToolNode(tools, handle_tool_errors=(ConnectionError, TimeoutError)))
    graph.add_edge(START, "analyst")
    graph.add_conditional_edges("analyst", tools_condition)
    graph.add_edge("tools", "analyst")
    graph.compile().invoke(
        {"messages": [HumanMessage("Weekly order counts for the last 8 weeks?")]}, _config(callbacks)
    )


@_scenario(
    "config_write_permission_loop",
    "error_retry_loop",
    looping=True,
    start=3,
    description="Coding agent reads a config, then retries the same write that fails with Permission denied.",
)
def _config_write_permission_loop(callbacks: Callbacks) -> None:
    ids = _Ids("config_write_permission_loop", "toolu_")
    original = "server:\n  port: 8080\n  workers: 2\nlogging:\n  level: info\n"
    updated = original.replace("workers: 2", "workers: 8")

    @tool
    def read_file(path: str) -> str:
        """Read a text file."""
        return original

    def _write_file(path: str, content: str) -> str:
        """Overwrite a text file."""
        raise ToolException(f"[Errno 13] Permission denied: '{path}'")

    write_file = _lenient(tool("write_file")(_write_file))
    target = {"path": "/etc/app/config.yaml", "content": updated}
    replies: list[Any] = [
        _call(ids, "read_file", {"path": "/etc/app/config.yaml"}),
        _call(ids, "write_file", target, "Raising workers from 2 to 8."),
    ]
    replies += [_call(ids, "write_file", target, "Raising workers from 2 to 8.") for _ in range(14)]
    replies.append("I couldn't change /etc/app/config.yaml: the file is not writable by this user.")
    _run_agent(
        callbacks,
        _claude(replies),
        [read_file, write_file],
        "Bump the worker count in /etc/app/config.yaml to 8.",
    )


class _DeployState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    approved: bool


@_scenario(
    "deploy_approved_registry_timeout_loop",
    "error_retry_loop",
    looping=True,
    start=3,
    description="Release graph pauses for human approval (interrupt + resume), then retries a push that times out.",
)
def _deploy_approved_registry_timeout_loop(callbacks: Callbacks) -> None:
    ids = _Ids("deploy_approved_registry_timeout_loop")
    noise = _Noise("deploy_approved_registry_timeout_loop")

    @tool
    def push_release(service: str, version: str, environment: str) -> str:
        """Promote a built artifact to an environment."""
        return (
            f"error: artifact registry timed out after 30s while resolving {service}:{version} (trace={noise.hex(16)})"
        )

    planner = _model(["Plan: promote checkout-api 7f3c2e1 (v2.31.0) to staging, then run the smoke suite."])
    args = {"service": "checkout-api", "version": "2.31.0", "environment": "staging"}
    replies: list[Any] = [_call(ids, "push_release", args) for _ in range(16)]
    replies.append("The staging promotion of checkout-api 2.31.0 failed: the artifact registry keeps timing out.")
    deployer = _model(replies).bind_tools([push_release])

    def plan(state: _DeployState, config: RunnableConfig) -> dict[str, Any]:
        return {"messages": [planner.invoke(state["messages"], config)]}

    def approve(state: _DeployState) -> dict[str, Any]:
        decision = interrupt({"question": "Approve this deployment plan?", "plan": _text(state["messages"][-1])})
        return {"approved": decision == "approve", "messages": [HumanMessage(f"Reviewer decision: {decision}")]}

    def deploy(state: _DeployState, config: RunnableConfig) -> dict[str, Any]:
        return {"messages": [deployer.invoke(state["messages"], config)]}

    graph = StateGraph(_DeployState)
    graph.add_node("plan", plan)
    graph.add_node("approve", approve)
    graph.add_node("deploy", deploy)
    graph.add_node("tools", ToolNode([push_release]))
    graph.add_edge(START, "plan")
    graph.add_edge("plan", "approve")
    graph.add_conditional_edges("approve", lambda s: "deploy" if s["approved"] else END)
    graph.add_conditional_edges("deploy", tools_condition)
    graph.add_edge("tools", "deploy")
    app = graph.compile(checkpointer=InMemorySaver())
    config = _config(callbacks, thread="release-2024-05-02")
    app.invoke({"messages": [HumanMessage("Ship checkout-api 2.31.0 to staging.")], "approved": False}, config)
    app.invoke(Command(resume="approve"), config)


# ==============================================================================================================
# LOOPING: ab_alternation
# ==============================================================================================================


class _PlanExecState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


@_scenario(
    "plan_exec_schema_bounce",
    "ab_alternation",
    looping=True,
    start=3,
    description="Planner and executor agents bounce the same two messages (do X / need confirmation) forever.",
)
def _plan_exec_schema_bounce(callbacks: Callbacks) -> None:
    step = "Next step: fetch the schema of table `users` and list its columns with their types."
    blocked = (
        "I can't fetch the schema yet: `users` exists in both the analytics and the billing database. "
        "Please confirm which one to use."
    )
    planner = _model(
        [step] * 9 + ["FINAL: stopping, the database holding `users` was never confirmed."], model="o3-mini"
    )
    executor = _model([blocked] * 9, model="gpt-4o-mini")

    def plan(state: _PlanExecState, config: RunnableConfig) -> dict[str, Any]:
        prompt = [SystemMessage("You are the planner. Give the executor one step at a time; say FINAL when done.")]
        return {"messages": [planner.invoke([*prompt, *state["messages"]], config)]}

    def execute(state: _PlanExecState, config: RunnableConfig) -> dict[str, Any]:
        prompt = [SystemMessage("You are the executor. Carry out the planner's latest step and report back.")]
        reply = executor.invoke([*prompt, *state["messages"]], config)
        return {"messages": [HumanMessage(_text(reply), name="executor")]}

    def after_plan(state: _PlanExecState) -> str:
        return END if _text(state["messages"][-1]).startswith("FINAL") else "execute"

    graph = StateGraph(_PlanExecState)
    graph.add_node("plan", plan)
    graph.add_node("execute", execute)
    graph.add_edge(START, "plan")
    graph.add_conditional_edges("plan", after_plan, ["execute", END])
    graph.add_edge("execute", "plan")
    graph.compile().invoke(
        {"messages": [HumanMessage("How many users signed up per month in 2023? Build the query.")]}, _config(callbacks)
    )


@_scenario(
    "feature_flag_toggle_alternation",
    "ab_alternation",
    looping=True,
    start=4,
    description="Release agent flips a feature flag on, then off, then on again, reading nothing new in between.",
)
def _feature_flag_toggle_alternation(callbacks: Callbacks) -> None:
    ids = _Ids("feature_flag_toggle_alternation")
    flags = {"new_checkout": False}

    @tool
    def get_flag(name: str) -> str:
        """Read a feature flag and the error budget it is guarded by."""
        return f"{name}: enabled={flags[name]} rollout=100% guard=checkout_error_rate<1% current_error_rate=1.4%"

    @tool
    def set_flag(name: str, enabled: bool) -> str:
        """Turn a feature flag on or off."""
        before = flags[name]
        flags[name] = enabled
        return f"{name} set to enabled={enabled} (was {before}). Propagation to edge: ~30s."

    on = {"name": "new_checkout", "enabled": True}
    off = {"name": "new_checkout", "enabled": False}
    replies: list[Any] = [_call(ids, "get_flag", {"name": "new_checkout"})]
    for _ in range(8):
        replies.append(_call(ids, "set_flag", on, "Enabling new_checkout so the experiment can run."))
        replies.append(_call(ids, "set_flag", off, "Error rate is above the guard; disabling new_checkout."))
    replies.append("I left new_checkout disabled: its error rate (1.4%) exceeds the 1% guard.")
    _run_agent(
        callbacks,
        _model(replies),
        [get_flag, set_flag],
        "Turn on new_checkout for the experiment, but respect its guard.",
    )


class _PatchReviewState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    verdict: str


@_scenario(
    "coder_reviewer_patch_bounce",
    "ab_alternation",
    looping=True,
    start=3,
    description="Coder re-applies the same rename patch, reviewer rejects it with the same comment, round after round.",
)
def _coder_reviewer_patch_bounce(callbacks: Callbacks) -> None:
    ids = _Ids("coder_reviewer_patch_bounce", "toolu_")
    diff = (
        "--- a/src/users.py\n+++ b/src/users.py\n@@ -12,7 +12,7 @@\n"
        "-def get_user(user_id: int) -> User:\n+def fetch_user(user_id: int) -> User:\n"
    )

    @tool
    def apply_patch(path: str, diff: str) -> str:
        """Apply a unified diff to the working tree."""
        return f"Patch applied to {path}: 1 hunk, +1 -1."

    coder = _claude([_call(ids, "apply_patch", {"path": "src/users.py", "diff": diff}) for _ in range(9)])
    review = (
        "Changes requested: please keep `get_user`. It is part of the public API and renaming it "
        "breaks downstream callers. Revert the rename."
    )
    reviewer = _model([review] * 8 + ["Escalating to a human maintainer; we are going in circles."])
    bound = coder.bind_tools([apply_patch])

    def code(state: _PatchReviewState, config: RunnableConfig) -> dict[str, Any]:
        prompt = [SystemMessage("Implement the ticket. Use apply_patch.")]
        return {"messages": [bound.invoke([*prompt, *state["messages"]], config)]}

    def review_patch(state: _PatchReviewState, config: RunnableConfig) -> dict[str, Any]:
        reply = reviewer.invoke([SystemMessage("You review patches."), *state["messages"]], config)
        return {"messages": [HumanMessage(_text(reply), name="reviewer")], "verdict": _text(reply)}

    graph = StateGraph(_PatchReviewState)
    graph.add_node("code", code)
    graph.add_node("tools", ToolNode([apply_patch]))
    graph.add_node("review", review_patch)
    graph.add_edge(START, "code")
    graph.add_edge("code", "tools")
    graph.add_edge("tools", "review")
    graph.add_conditional_edges("review", lambda s: END if s["verdict"].startswith("Escalating") else "code")
    graph.compile().invoke(
        {"messages": [HumanMessage("JIRA-2231: make user lookups read better; `get_user` is vague.")], "verdict": ""},
        _config(callbacks),
    )


class _NegotiationState(TypedDict):
    transcript: Annotated[list[str], operator.add]
    turn: str


@_scenario(
    "procurement_negotiation_bounce",
    "ab_alternation",
    looping=True,
    start=5,
    description="Buyer and seller agents converge for two rounds, then restate the same two offers forever.",
)
def _procurement_negotiation_bounce(callbacks: Callbacks) -> None:
    buyer_final = "We can go to $40,000 for the annual license, and that is our final offer."
    seller_final = "We can do $55,000 if you commit to a three-year term; we can't go lower than that."
    buyer = _model(
        [
            "We can offer $30,000 for the annual license of 250 seats.",
            *[buyer_final] * 9,
            "We are walking away; no agreement was reached.",
        ],
        model="gpt-4o",
    )
    seller = _claude(["Our list price is $72,000; the floor for 250 seats is $60,000.", *[seller_final] * 9])

    def _prompt(role: str, state: _NegotiationState) -> list[BaseMessage]:
        history = "\n".join(state["transcript"]) or "(no offers yet)"
        return [SystemMessage(f"You negotiate as the {role}."), HumanMessage(f"Transcript so far:\n{history}")]

    def buyer_turn(state: _NegotiationState, config: RunnableConfig) -> dict[str, Any]:
        reply = _text(buyer.invoke(_prompt("buyer", state), config))
        return {"transcript": [f"BUYER: {reply}"], "turn": "done" if "walking away" in reply else "seller"}

    def seller_turn(state: _NegotiationState, config: RunnableConfig) -> dict[str, Any]:
        reply = _text(seller.invoke(_prompt("seller", state), config))
        return {"transcript": [f"SELLER: {reply}"], "turn": "buyer"}

    graph = StateGraph(_NegotiationState)
    graph.add_node("buyer", buyer_turn)
    graph.add_node("seller", seller_turn)
    graph.add_edge(START, "buyer")
    graph.add_conditional_edges("buyer", lambda s: END if s["turn"] == "done" else "seller")
    graph.add_edge("seller", "buyer")
    graph.compile().invoke({"transcript": [], "turn": "buyer"}, _config(callbacks))


# ==============================================================================================================
# LOOPING: paraphrased_reflection
# ==============================================================================================================


def _rewordings(slots: Sequence[Sequence[str]], count: int, seed: str) -> list[str]:
    """``count`` distinct light rewordings of one text: each slot is a sentence with interchangeable phrasings."""
    rng = random.Random(seed)
    out: list[str] = []
    for _ in range(10_000):
        text = " ".join(rng.choice(list(options)) for options in slots)
        if text not in out:
            out.append(text)
            if len(out) == count:
                return out
    raise ValueError(f"only {len(out)} distinct rewordings for seed {seed}")


class _EssayState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    verdict: str


@_scenario(
    "blog_post_reflection_paraphrase",
    "paraphrased_reflection",
    looping=True,
    start=6,
    description="Writer/critic graph: two useful critique rounds, then the same rollback critique reworded forever.",
)
def _blog_post_reflection_paraphrase(callbacks: Callbacks) -> None:
    v1 = (
        "Zero-downtime Postgres migrations\n\nAdd the new column as nullable, deploy code that writes both columns, "
        "then switch reads. Finally drop the old column."
    )
    v2 = v1.replace(
        "then switch reads.",
        "backfill old rows in batches of 5,000 keyed by primary key with a short sleep between batches so the "
        "table is never locked for long, then switch reads.",
    )
    v3_slots = [
        [v2],
        [
            "Rollback: keep the old column until the new read path has run cleanly for a week.",
            "Rolling back: keep the old column in place until the new read path has run cleanly for a week.",
            "To roll back, leave the old column untouched until a week of clean reads on the new path.",
        ],
        [
            "If errors appear, flip the read flag back.",
            "Should errors show up, switch the read flag back.",
            "On errors, turn the read flag back off.",
        ],
    ]
    drafts = [v1, v2, *_rewordings(v3_slots, 8, "blog-drafts")]
    critique_slots = [
        [
            "The rollback section is still too thin.",
            "The rollback part remains too shallow.",
            "Rollback is still under-explained.",
        ],
        [
            "Spell out exactly how to revert if the new code path fails in production.",
            "Explain step by step how to revert when the new code path fails in production.",
            "Describe precisely how to go back if the new code path breaks in production.",
        ],
    ]
    critiques = [
        "The post never explains how to backfill the new column without locking the table. Add batched backfills.",
        "Good backfill section. The post is missing a rollback plan: say how to revert if the new code path fails.",
        *_rewordings(critique_slots, 7, "blog-critiques"),
        "Approved. Publish it.",
    ]
    writer = _model(drafts, model="gpt-4o")
    critic = _claude(critiques)

    def write(state: _EssayState, config: RunnableConfig) -> dict[str, Any]:
        return {
            "messages": [
                writer.invoke([SystemMessage("You write engineering blog posts."), *state["messages"]], config)
            ]
        }

    def reflect(state: _EssayState, config: RunnableConfig) -> dict[str, Any]:
        reply = critic.invoke([SystemMessage("Critique the latest draft."), *state["messages"]], config)
        return {"messages": [HumanMessage(_text(reply), name="critic")], "verdict": _text(reply)}

    graph = StateGraph(_EssayState)
    graph.add_node("write", write)
    graph.add_node("reflect", reflect)
    graph.add_edge(START, "write")
    graph.add_edge("write", "reflect")
    graph.add_conditional_edges("reflect", lambda s: END if s["verdict"].startswith("Approved") else "write")
    graph.compile().invoke(
        {"messages": [HumanMessage("Write a short post on zero-downtime column renames in Postgres.")], "verdict": ""},
        _config(callbacks),
    )


class _SqlReflectState(TypedDict):
    question: str
    sql: str
    critiques: Annotated[list[str], operator.add]


@_scenario(
    "sql_generation_self_critique_paraphrase",
    "paraphrased_reflection",
    looping=True,
    start=4,
    description="SQL writer fixes a double count once; the critic keeps restating that same concern in new words.",
)
def _sql_generation_self_critique_paraphrase(callbacks: Callbacks) -> None:
    buggy = (
        "SELECT c.region, sum(o.total) - sum(r.amount) AS net_revenue\nFROM orders o\n"
        "JOIN customers c ON c.id = o.customer_id\nLEFT JOIN refunds r ON r.customer_id = o.customer_id\n"
        "GROUP BY c.region;"
    )
    fixed_slots = [
        [
            "SELECT c.region, sum(o.total) - coalesce(sum(r.amount), 0) AS net_revenue",
            "SELECT c.region AS region, sum(o.total) - coalesce(sum(r.amount), 0) AS net_revenue",
        ],
        [
            "FROM orders o JOIN customers c ON c.id = o.customer_id",
            "FROM orders AS o JOIN customers AS c ON o.customer_id = c.id",
        ],
        [
            "LEFT JOIN refunds r ON r.order_id = o.id AND r.status = 'settled'",
            "LEFT JOIN refunds AS r ON r.order_id = o.id AND r.status = 'settled'",
        ],
        ["GROUP BY c.region;", "GROUP BY 1;"],
    ]
    critique_slots = [
        [
            "Refunds still look double counted:",
            "I think refunds are counted twice here:",
            "The refund join may still double count:",
        ],
        [
            "make sure refunds are joined per order and only settled ones are subtracted.",
            "join refunds by order and subtract only the settled ones.",
            "refunds should be matched on the order and filtered to settled before subtracting.",
        ],
    ]
    queries = [buggy, *_rewordings(fixed_slots, 9, "sql-writer")]
    critiques = [
        "Refunds are joined on customer_id, so every order of a customer subtracts all of their refunds. "
        "Join refunds on the order and keep only settled refunds.",
        *_rewordings(critique_slots, 8, "sql-critic"),
        "OK, this is fine.",
    ]
    writer = _model(queries, model="gpt-4o-mini")
    critic = _model(critiques, model="o3-mini")

    def write_sql(state: _SqlReflectState, config: RunnableConfig) -> dict[str, Any]:
        notes = "\n".join(state["critiques"][-1:])
        prompt = [SystemMessage("Write PostgreSQL for the question."), HumanMessage(f"{state['question']}\n{notes}")]
        return {"sql": _text(writer.invoke(prompt, config))}

    def critique(state: _SqlReflectState, config: RunnableConfig) -> dict[str, Any]:
        prompt = [SystemMessage("Review this SQL for correctness."), HumanMessage(state["sql"])]
        return {"critiques": [_text(critic.invoke(prompt, config))]}

    graph = StateGraph(_SqlReflectState)
    graph.add_node("write_sql", write_sql)
    graph.add_node("critique", critique)
    graph.add_edge(START, "write_sql")
    graph.add_edge("write_sql", "critique")
    graph.add_conditional_edges("critique", lambda s: END if s["critiques"][-1].startswith("OK") else "write_sql")
    graph.compile().invoke(
        {"question": "Net revenue (orders minus refunds) per region for 2024.", "sql": "", "critiques": []},
        _config(callbacks),
    )


@_scenario(
    "proposal_submit_draft_paraphrase",
    "paraphrased_reflection",
    looping=True,
    start=4,
    description="Agent sends a proposal to a reviewer tool; after one real fix it resubmits rewordings forever.",
)
def _proposal_submit_draft_paraphrase(callbacks: Callbacks) -> None:
    ids = _Ids("proposal_submit_draft_paraphrase")
    rng = random.Random("proposal-feedback")

    @tool
    def lookup_pricing(plan: str, seats: int) -> str:
        """Price for a plan and seat count."""
        return f"{plan} plan, {seats} seats: $38/seat/month billed annually = $91,200/yr; SSO and audit logs included."

    @tool
    def submit_draft(text: str) -> str:
        """Send a proposal draft to the deal desk reviewer and get feedback."""
        if "$91,200" not in text:
            return "Feedback: the pricing section is missing. Include the annual total."
        return rng.choice(
            [
                "Feedback: the tone is too informal for an enterprise buyer; avoid phrases like 'super easy'.",
                "Feedback: still too casual for a procurement audience; drop the chatty phrasing.",
                "Feedback: please make the tone more formal; this reads like a chat message.",
            ]
        )

    v1 = "Hi team! Our platform makes onboarding super easy and your admins will love it. Happy to chat!"
    informal_slots = [
        [
            "Hi team! Our platform makes onboarding super easy.",
            "Hey team! Onboarding with us is really easy.",
            "Hi all! Getting onboarded on our platform is super simple.",
        ],
        [
            "For 250 seats on Enterprise it's $91,200/yr with SSO and audit logs thrown in.",
            "250 Enterprise seats come to $91,200/yr, SSO and audit logs included.",
            "Enterprise for 250 seats is $91,200/yr and you get SSO plus audit logs.",
        ],
        ["Happy to chat!", "Let's chat soon!", "Ping us anytime!"],
    ]
    drafts = _rewordings(informal_slots, 16, "proposal-drafts")
    replies: list[Any] = [
        _call(ids, "lookup_pricing", {"plan": "Enterprise", "seats": 250}),
        _call(ids, "submit_draft", {"text": v1}),
        *[_call(ids, "submit_draft", {"text": d}) for d in drafts],
        "Here is the latest proposal draft with pricing ($91,200/yr for 250 Enterprise seats).",
    ]
    _run_agent(
        callbacks,
        _model(replies, model="gpt-4o"),
        [lookup_pricing, submit_draft],
        "Draft a proposal for Northwind (250 seats, Enterprise) and get it past the deal desk.",
    )


class _DocstringState(TypedDict):
    function: str
    docstring: str
    critique: str
    rounds: Annotated[int, operator.add]


@_scenario(
    "docstring_inline_reflect_paraphrase",
    "paraphrased_reflection",
    looping=True,
    start=4,
    description="One node calls writer then critic; after one fix the critic reasks the same point in new words.",
)
def _docstring_inline_reflect_paraphrase(callbacks: Callbacks) -> None:
    v1 = '"""Fetch a URL and return the body."""'
    v2_slots = [
        [
            '"""Fetch a URL and return the response body as text.',
            '"""Download a URL and return its body as text.',
            '"""GET a URL and return the body as text.',
        ],
        [
            "Args: url: absolute http(s) URL. timeout: seconds before giving up (default 10).",
            "Args: url: an absolute http(s) URL. timeout: seconds to wait before giving up, 10 by default.",
        ],
        [
            'Raises: httpx.TimeoutException when the timeout expires."""',
            'Raises: httpx.TimeoutException on timeout."""',
        ],
    ]
    critique_slots = [
        ["Please document the `timeout` argument", "You should document `timeout`", "Document `timeout`"],
        [
            "and state which exception is raised.",
            "and say what exception gets raised.",
            "and name the exception that is raised.",
        ],
    ]
    writer = _model([v1, *_rewordings(v2_slots, 9, "doc-writer")])
    critic = _claude(
        [
            "Document the `timeout` parameter and the exception raised when it expires.",
            *_rewordings(critique_slots, 8, "doc-critic"),
            "Looks complete.",
        ],
        model="claude-3-5-haiku-latest",
    )

    def improve(state: _DocstringState, config: RunnableConfig) -> dict[str, Any]:
        ask = f"Write a docstring for:\n{state['function']}\nReviewer notes: {state['critique'] or 'none'}"
        docstring = _text(writer.invoke([HumanMessage(ask)], config))
        critique = _text(critic.invoke([HumanMessage(f"Review this docstring:\n{docstring}")], config))
        return {"docstring": docstring, "critique": critique, "rounds": 1}

    graph = StateGraph(_DocstringState)
    graph.add_node("improve", improve)
    graph.add_edge(START, "improve")
    graph.add_conditional_edges("improve", lambda s: END if s["critique"] == "Looks complete." else "improve")
    graph.compile().invoke(
        {
            "function": "def fetch(url: str, timeout: float = 10.0) -> str: ...",
            "docstring": "",
            "critique": "",
            "rounds": 0,
        },
        _config(callbacks),
    )


# ==============================================================================================================
# LOOPING: rotation_loop
# ==============================================================================================================


@_scenario(
    "incident_triage_rotation",
    "rotation_loop",
    looping=True,
    start=4,
    description="Incident agent cycles logs -> metrics -> deploys for the same service; nothing ever changes.",
)
def _incident_triage_rotation(callbacks: Callbacks) -> None:
    ids = _Ids("incident_triage_rotation")

    @tool
    def check_logs(service: str, minutes: int) -> str:
        """Error log summary for the last N minutes."""
        return f"{service}: 1,204 ERROR lines in {minutes}m, top: 'upstream connect error or disconnect/reset' (87%)"

    @tool
    def check_metrics(service: str) -> str:
        """Key golden signals."""
        return f"{service}: rps 1.9k (normal), p95 840ms (baseline 120ms), 5xx 6.1%, cpu 41%, mem 63%"

    @tool
    def check_recent_deploys(service: str) -> str:
        """Deploys in the last 24h."""
        return f"{service}: last deploy 3 days ago (v5.12.0); no config changes in 24h"

    cycle: list[tuple[Any, ...]] = [
        ("check_logs", {"service": "search-api", "minutes": 30}),
        ("check_metrics", {"service": "search-api"}),
        ("check_recent_deploys", {"service": "search-api"}),
    ]
    replies: list[Any] = [_call(ids, *cycle[i % 3]) for i in range(19)]
    replies.append("search-api is failing on upstream resets (6% 5xx) with no recent deploy; suspect the mesh.")
    _run_agent(
        callbacks,
        _model(replies),
        [check_logs, check_metrics, check_recent_deploys],
        "search-api alerts are firing. Triage it.",
        system="You are an incident responder. Gather evidence, then give a diagnosis.",
    )


@_scenario(
    "inventory_four_tool_rotation",
    "rotation_loop",
    looping=True,
    start=6,
    description="Inventory graph finds a SKU, then cycles stock/reservations/inbound/price for it over and over.",
)
def _inventory_four_tool_rotation(callbacks: Callbacks) -> None:
    ids = _Ids("inventory_four_tool_rotation", "toolu_")

    @tool
    def search_sku(query: str) -> str:
        """Search the catalog."""
        return "SKU-44817 'Trailhead 45L backpack, slate' (best match); SKU-44818 'Trailhead 45L, rust'"

    @tool
    def get_stock(sku: str, warehouse: str) -> str:
        """On-hand units."""
        return f"{sku} @ {warehouse}: on_hand=12"

    @tool
    def get_reservations(sku: str, warehouse: str) -> str:
        """Units reserved for open orders."""
        return f"{sku} @ {warehouse}: reserved=9 across 7 open orders"

    @tool
    def get_inbound(sku: str, warehouse: str) -> str:
        """Purchase orders in transit."""
        return f"{sku} @ {warehouse}: PO-7781 for 40 units, ETA 2024-06-03"

    @tool
    def get_price(sku: str) -> str:
        """Current list price."""
        return f"{sku}: $189.00 list, no active promotion"

    where = {"sku": "SKU-44817", "warehouse": "RNO-1"}
    cycle: list[tuple[Any, ...]] = [
        ("get_stock", where),
        ("get_reservations", where),
        ("get_inbound", where),
        ("get_price", {"sku": "SKU-44817"}),
    ]
    replies: list[Any] = [_call(ids, "search_sku", {"query": "trailhead 45l slate"})]
    replies += [_call(ids, *cycle[i % 4]) for i in range(20)]
    replies.append("Trailhead 45L slate: 3 sellable units in RNO-1 (12 on hand, 9 reserved); 40 more arrive June 3.")
    tools = [search_sku, get_stock, get_reservations, get_inbound, get_price]
    model = _claude(replies).bind_tools(tools)

    def agent(state: MessagesState, config: RunnableConfig) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"], config)]}

    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_node("tools", ToolNode(tools))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition)
    graph.add_edge("tools", "agent")
    graph.compile().invoke(
        {"messages": [HumanMessage("Can we promise 5 Trailhead 45L (slate) from Reno by Friday?")]}, _config(callbacks)
    )


@_scenario(
    "vendor_due_diligence_rotation",
    "rotation_loop",
    looping=True,
    start=5,
    description="Compliance agent narrates and cycles registry / sanctions / credit checks on one vendor forever.",
)
def _vendor_due_diligence_rotation(callbacks: Callbacks) -> None:
    ids = _Ids("vendor_due_diligence_rotation")

    @tool
    def search_vendor(name: str) -> str:
        """Find a vendor in the supplier master."""
        return "V-20931 Baltic Freight Solutions UAB, Vilnius, LT; onboarding status: pending review"

    @tool
    def company_registry(vendor_id: str) -> str:
        """Official registry extract."""
        return f"{vendor_id}: registered 2016-09-12, code 304318721, status active, 2 directors"

    @tool
    def sanctions_screen(vendor_id: str) -> str:
        """Screen the company and its directors against sanctions lists."""
        return f"{vendor_id}: 0 hits on EU, OFAC, UN lists; 1 weak name match on a director (score 0.41)"

    @tool
    def credit_report(vendor_id: str) -> str:
        """Credit bureau summary."""
        return f"{vendor_id}: score 62/100, 1 late payment in 24 months, revenue EUR 4.1M (2023)"

    vid = {"vendor_id": "V-20931"}
    cycle: list[tuple[Any, ...]] = [
        ("company_registry", vid, "Checking the registry entry."),
        ("sanctions_screen", vid, "Running the sanctions screen."),
        ("credit_report", vid, "Pulling the credit report."),
    ]
    replies: list[Any] = [_call(ids, "search_vendor", {"name": "Baltic Freight Solutions"})]
    replies += [_call(ids, *cycle[i % 3]) for i in range(18)]
    replies.append("Baltic Freight Solutions looks acceptable: active, no sanctions hits, moderate credit (62).")
    _run_agent(
        callbacks,
        _model(replies, model="gpt-4.1"),
        [search_vendor, company_registry, sanctions_screen, credit_report],
        "Run due diligence on Baltic Freight Solutions before we sign.",
    )


class _DataQualityState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    tool_log: Annotated[list[str], operator.add]


@_scenario(
    "data_quality_rotation_custom_executor",
    "rotation_loop",
    looping=True,
    start=4,
    description="Data-quality graph with a hand-written tool executor: nulls, duplicates, freshness, again and again.",
)
def _data_quality_rotation_custom_executor(callbacks: Callbacks) -> None:
    ids = _Ids("data_quality_rotation_custom_executor")

    @tool
    def count_nulls(table: str, column: str) -> str:
        """Count NULLs in a column."""
        return f"{table}.{column}: 18,442 NULL of 2,910,337 rows (0.63%)"

    @tool
    def count_duplicates(table: str, key: str) -> str:
        """Count duplicate keys."""
        return f"{table}: 311 duplicate {key} values (0.01%)"

    @tool
    def freshness(table: str) -> str:
        """Time since the newest row landed."""
        return f"{table}: newest row 2024-05-02 09:58 UTC (lag 16m, SLA 30m)"

    cycle: list[tuple[Any, ...]] = [
        ("count_nulls", {"table": "events", "column": "user_id"}),
        ("count_duplicates", {"table": "events", "key": "event_id"}),
        ("freshness", {"table": "events"}),
    ]
    replies: list[Any] = [_call(ids, *cycle[i % 3]) for i in range(17)]
    replies.append("events: 0.63% null user_id, 311 duplicate event_ids, 16m lag - within SLA; flag duplicates.")
    tools = {t.name: t for t in (count_nulls, count_duplicates, freshness)}
    model = _model(replies).bind_tools(list(tools.values()))

    def checker(state: _DataQualityState, config: RunnableConfig) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"], config)]}

    def execute(state: _DataQualityState, config: RunnableConfig) -> dict[str, Any]:
        last = state["messages"][-1]
        assert isinstance(last, AIMessage)
        outputs: list[BaseMessage] = []
        for call in last.tool_calls:
            result = tools[call["name"]].invoke(call["args"], config)
            outputs.append(ToolMessage(content=str(result), tool_call_id=call["id"], name=call["name"]))
        return {"messages": outputs, "tool_log": [c["name"] for c in last.tool_calls]}

    graph = StateGraph(_DataQualityState)
    graph.add_node("checker", checker)
    graph.add_node("execute", execute)
    graph.add_edge(START, "checker")
    graph.add_conditional_edges("checker", lambda s: "execute" if s["messages"][-1].tool_calls else END)
    graph.add_edge("execute", "checker")
    graph.compile().invoke(
        {"messages": [HumanMessage("Run the nightly data-quality checks on `events`.")], "tool_log": []},
        _config(callbacks),
    )


# ==============================================================================================================
# LOOPING: supervisor_pingpong
# ==============================================================================================================


class _TeamState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    task: str


@_scenario(
    "supervisor_research_writer_pingpong",
    "supervisor_pingpong",
    looping=True,
    start=5,
    description="Supervisor (Command routing) sends the same task to researcher then writer, who repeat themselves.",
)
def _supervisor_research_writer_pingpong(callbacks: Callbacks) -> None:
    to_researcher = json.dumps(
        {"next": "researcher", "task": "Collect 2023 battery-EV registrations for the five largest EU markets."}
    )
    to_writer = json.dumps({"next": "writer", "task": "Write a 150-word market brief from the research notes."})
    supervisor_model = _model([to_researcher, to_writer] * 5 + [json.dumps({"next": "FINISH"})], model="gpt-4o")
    researcher_model = _model(
        [
            "2023 BEV registrations: Germany 524,219; France 298,216; Netherlands 113,981; Sweden 112,000; "
            "Belgium 93,000. I found no 2023 figures for Italy or Spain in my sources."
        ]
        * 5
    )
    writer_model = _claude(
        [
            "I can't write the brief yet: the five largest EU markets must include Italy and Spain, and the notes "
            "have no 2023 figures for them. Please get those first."
        ]
        * 5
    )

    def supervisor(state: _TeamState, config: RunnableConfig) -> Command[Literal["researcher", "writer", "__end__"]]:
        prompt = [SystemMessage("You manage a researcher and a writer. Reply with JSON {next, task}.")]
        decision = json.loads(_text(supervisor_model.invoke([*prompt, *state["messages"]], config)))
        if decision["next"] == "FINISH":
            return Command(goto="__end__")
        note = AIMessage(f"Supervisor -> {decision['next']}: {decision['task']}", name="supervisor")
        return Command(goto=decision["next"], update={"task": decision["task"], "messages": [note]})

    def worker(name: str, model: ScriptedChatModel) -> Any:  # a node function (see make_worker below)
        def act(state: _TeamState, config: RunnableConfig) -> Command[Literal["supervisor"]]:
            reply = model.invoke(
                [SystemMessage(f"You are the {name}."), *state["messages"], HumanMessage(state["task"])], config
            )
            return Command(goto="supervisor", update={"messages": [HumanMessage(_text(reply), name=name)]})

        return act

    graph = StateGraph(_TeamState)
    graph.add_node("supervisor", supervisor)
    graph.add_node("researcher", worker("researcher", researcher_model))
    graph.add_node("writer", worker("writer", writer_model))
    graph.add_edge(START, "supervisor")
    graph.compile().invoke(
        {"messages": [HumanMessage("Brief me on the 2023 EV market in the EU's five largest markets.")], "task": ""},
        _config(callbacks),
    )


def _handoff_tool(target: str, description: str) -> BaseTool:
    """A swarm-style handoff: the calling agent's last message and a tool result move to ``target`` in the parent."""

    @tool(f"transfer_to_{target}", description=description)
    def handoff(
        state: Annotated[dict[str, Any], InjectedState], tool_call_id: Annotated[str, InjectedToolCallId]
    ) -> Command[Any]:
        result = ToolMessage(
            content=f"Transferred to {target}.", tool_call_id=tool_call_id, name=f"transfer_to_{target}"
        )
        return Command(goto=target, graph=Command.PARENT, update={"messages": [state["messages"][-1], result]})

    return handoff


@_scenario(
    "billing_tech_handoff_pingpong",
    "supervisor_pingpong",
    looping=True,
    start=5,
    description="Two create_agent agents in a parent StateGraph hand a customer back and forth with handoff tools.",
)
def _billing_tech_handoff_pingpong(callbacks: Callbacks) -> None:
    ids = _Ids("billing_tech_handoff_pingpong")

    @tool
    def lookup_account(account_id: str) -> str:
        """Billing status of an account."""
        return f"{account_id}: balance $0.00, autopay on, service status SUSPENDED (reason code NET-HOLD-7)"

    @tool
    def run_line_test(account_id: str) -> str:
        """Remote line diagnostics."""
        return f"{account_id}: sync 940/38 Mbps, SNR 11 dB, no faults; port administratively disabled (NET-HOLD-7)"

    to_tech = _handoff_tool("tech_support", "Hand the customer to technical support.")
    to_billing = _handoff_tool("billing", "Hand the customer to billing.")
    billing_text = "This looks like a connectivity problem, not billing. Transferring you to tech support."
    tech_text = "The line tests clean; the port is held by an account flag. Transferring you to billing."
    billing_replies: list[Any] = [
        _call(ids, "lookup_account", {"account_id": "ACC-55102"}),
        _call(ids, "transfer_to_tech_support", {}, billing_text),
        *[_call(ids, "transfer_to_tech_support", {}, billing_text) for _ in range(5)],
        "I've escalated your case to a supervisor; expect a call within 24 hours.",
    ]
    tech_replies: list[Any] = []
    for _ in range(6):
        tech_replies.append(_call(ids, "run_line_test", {"account_id": "ACC-55102"}))
        tech_replies.append(_call(ids, "transfer_to_billing", {}, tech_text))
    billing = create_agent(
        _model(billing_replies), [lookup_account, to_tech], system_prompt="You are billing support.", name="billing"
    )
    tech = create_agent(
        _claude(tech_replies), [run_line_test, to_billing], system_prompt="You are tech support.", name="tech_support"
    )

    graph = StateGraph(MessagesState)
    graph.add_node("billing", billing, destinations=("tech_support",))
    graph.add_node("tech_support", tech, destinations=("billing",))
    graph.add_edge(START, "billing")
    graph.compile().invoke(
        {"messages": [HumanMessage("My internet has been down since yesterday. Account ACC-55102.")]},
        _config(callbacks),
    )


@_scenario(
    "analyst_qa_supervisor_pingpong",
    "supervisor_pingpong",
    looping=True,
    start=5,
    description="Supervisor agent calls analyst and QA sub-agents (agents as tools) with the same questions forever.",
)
def _analyst_qa_supervisor_pingpong(callbacks: Callbacks) -> None:
    ids = _Ids("analyst_qa_supervisor_pingpong")
    question = "What drove the Q3 churn increase in SMB accounts?"
    claim = "Q3 SMB churn rose mainly because of the June 1 price change."
    analyst = create_agent(
        _model(["Churn in SMB rose from 2.1% to 3.4% in Q3, mainly because of the June 1 price change."] * 5),
        [],
        system_prompt="You are a data analyst.",
    )
    qa = create_agent(
        _claude(
            ["I can't verify that: the analyst cites no cohort table. Ask the analyst for the cohort numbers."] * 5
        ),
        [],
        system_prompt="You are a QA reviewer. Verify claims against evidence.",
    )

    @tool
    def ask_analyst(question: str, config: RunnableConfig) -> str:
        """Ask the analyst agent a question."""
        result = analyst.invoke({"messages": [HumanMessage(question)]}, config)
        return _text(result["messages"][-1])

    @tool
    def ask_qa(claim: str, config: RunnableConfig) -> str:
        """Ask the QA agent to verify a claim."""
        result = qa.invoke({"messages": [HumanMessage(claim)]}, config)
        return _text(result["messages"][-1])

    replies: list[Any] = []
    for _ in range(5):
        replies.append(_call(ids, "ask_analyst", {"question": question}))
        replies.append(_call(ids, "ask_qa", {"claim": claim}))
    replies.append("Likely the June price change, but QA could not verify it against cohort data.")
    _run_agent(
        callbacks,
        _model(replies, model="gpt-4o"),
        [ask_analyst, ask_qa],
        "Why did SMB churn go up in Q3? I need a verified answer.",
        system="You coordinate an analyst and a QA reviewer.",
    )


# ==============================================================================================================
# LOOPING: repeated_answer_no_input
# ==============================================================================================================


class _JsonAnswerState(TypedDict):
    ticket: str
    answer: str
    attempts: Annotated[int, operator.add]


@_scenario(
    "json_format_validator_reask",
    "repeated_answer_no_input",
    looping=True,
    start=2,
    description="A validator edge sends an unparseable answer back to the model with the prompt unchanged.",
)
def _json_format_validator_reask(callbacks: Callbacks) -> None:
    chatty = (
        'Sure! Here is the extracted data: {"customer": "Acme Corp", "product": "Router X2", '
        '"issue": "no WAN link after firmware 3.2", "urgency": "high"}'
    )
    clean = json.dumps(
        {"customer": "Acme Corp", "product": "Router X2", "issue": "no WAN link after firmware 3.2", "urgency": "high"}
    )
    extractor = _model([chatty] * 17 + [clean], model="gpt-3.5-turbo")

    def extract(state: _JsonAnswerState, config: RunnableConfig) -> dict[str, Any]:
        prompt = [
            SystemMessage("Extract customer, product, issue and urgency from the ticket. Output JSON only."),
            HumanMessage(state["ticket"]),
        ]
        return {"answer": _text(extractor.invoke(prompt, config)), "attempts": 1}

    def valid_json(state: _JsonAnswerState) -> str:
        try:
            json.loads(state["answer"])
        except json.JSONDecodeError:
            return "extract"
        return END

    graph = StateGraph(_JsonAnswerState)
    graph.add_node("extract", extract)
    graph.add_edge(START, "extract")
    graph.add_conditional_edges("extract", valid_json, ["extract", END])
    ticket = "From: it@acme.example\nOur Router X2 lost its WAN link right after the 3.2 firmware update. Urgent!"
    graph.compile().invoke({"ticket": ticket, "answer": "", "attempts": 0}, _config(callbacks))


@_scenario(
    "citation_guardrail_jump_loop",
    "repeated_answer_no_input",
    looping=True,
    start=3,
    description="create_agent with an after_model guardrail that jumps back to the model without telling it why.",
)
def _citation_guardrail_jump_loop(callbacks: Callbacks) -> None:
    ids = _Ids("citation_guardrail_jump_loop")

    @tool
    def search_kb(query: str) -> str:
        """Search the internal knowledge base."""
        return "[KB-112] Parental leave: 16 weeks fully paid for all parents, available within 12 months of birth."

    @after_model(can_jump_to=["model"])
    def require_citation(state: Any, runtime: Any) -> dict[str, Any] | None:
        last = state["messages"][-1]
        if isinstance(last, AIMessage) and not last.tool_calls and "[KB-" not in _text(last):
            return {"jump_to": "model"}
        return None

    answer = "Parental leave is 16 weeks, fully paid, and must be taken within a year of the birth."
    replies: list[Any] = [_call(ids, "search_kb", {"query": "parental leave policy"}), *[answer] * 16]
    replies.append("Parental leave is 16 weeks, fully paid, taken within 12 months of the birth [KB-112].")
    _run_agent(
        callbacks,
        _model(replies),
        [search_kb],
        "How long is parental leave here?",
        system="Answer HR questions from the knowledge base.",
        middleware=[require_citation],
    )


class _ReleaseNotesState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    summary: str


@_scenario(
    "length_check_edge_loop",
    "repeated_answer_no_input",
    looping=True,
    start=3,
    description="Summary is over the word limit; a check node routes back to the model without changing its input.",
)
def _length_check_edge_loop(callbacks: Callbacks) -> None:
    ids = _Ids("length_check_edge_loop", "toolu_")

    @tool
    def fetch_release_notes(version: str) -> str:
        """Release notes of a product version."""
        return (
            f"v{version}: new bulk export API; SAML group sync; dark mode for dashboards; 40% faster CSV import; "
            "deprecated v1 webhooks (removal in 9.0); fixed 23 bugs incl. timezone drift in scheduled reports."
        )

    long_summary = (
        "Version 8.4 brings a new bulk export API, SAML group sync and dark mode for dashboards. CSV import is 40% "
        "faster. The v1 webhooks are deprecated and will be removed in 9.0, so integrations should migrate soon. "
        "It also fixes 23 bugs, among them the timezone drift that affected scheduled reports for some customers."
    )
    short = "8.4: bulk export API, SAML group sync, dark mode, faster CSV import; v1 webhooks deprecated."
    replies: list[Any] = [_call(ids, "fetch_release_notes", {"version": "8.4"}), *[long_summary] * 15, short]
    model = _claude(replies).bind_tools([fetch_release_notes])

    def agent(state: _ReleaseNotesState, config: RunnableConfig) -> dict[str, Any]:
        reply = model.invoke(state["messages"], config)
        if reply.tool_calls:
            return {"messages": [reply]}
        return {"summary": _text(reply)}

    def route_agent(state: _ReleaseNotesState) -> str:
        last = state["messages"][-1]
        return "tools" if isinstance(last, AIMessage) and last.tool_calls and not state["summary"] else "check"

    def check_length(state: _ReleaseNotesState) -> dict[str, Any]:
        return {}

    graph = StateGraph(_ReleaseNotesState)
    graph.add_node("agent", agent)
    graph.add_node("tools", ToolNode([fetch_release_notes]))
    graph.add_node("check", check_length)
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", route_agent, ["tools", "check"])
    graph.add_edge("tools", "agent")
    graph.add_conditional_edges("check", lambda s: END if len(s["summary"].split()) <= 40 else "agent", ["agent", END])
    graph.compile().invoke(
        {"messages": [HumanMessage("Summarize the 8.4 release notes in at most 40 words.")], "summary": ""},
        _config(callbacks),
    )


@_scenario(
    "regenerate_thread_repeat",
    "repeated_answer_no_input",
    looping=True,
    start=2,
    description="A client keeps re-invoking a checkpointed chat thread with no new message; same reply each time.",
)
def _regenerate_thread_repeat(callbacks: Callbacks) -> None:
    answer = (
        "To rotate an API key: Settings -> Developer -> API keys -> Rotate. The old key keeps working for "
        "24 hours so you can update your integrations."
    )
    model = _model([answer] * 16 + ["(Same as above.) Settings -> Developer -> API keys -> Rotate."])

    def chatbot(state: MessagesState, config: RunnableConfig) -> dict[str, Any]:
        return {"messages": [model.invoke([SystemMessage("You are a product help bot."), *state["messages"]], config)]}

    graph = StateGraph(MessagesState)
    graph.add_node("chatbot", chatbot)
    graph.add_edge(START, "chatbot")
    graph.add_edge("chatbot", END)
    app = graph.compile(checkpointer=InMemorySaver())
    config = _config(callbacks, thread="web-session-4c1e")
    app.invoke({"messages": [HumanMessage("How do I rotate my API key?")]}, config)
    for _ in range(16):  # the widget's retry timer fires with an empty update
        app.invoke({"messages": []}, config)


# ==============================================================================================================
# LOOPING: pagination_stuck
# ==============================================================================================================


def _invoice_rows(rng: random.Random, start: int, count: int) -> list[dict[str, Any]]:
    customers = ["Globex", "Initech", "Umbrella Health", "Stark Logistics", "Wayne Foods", "Hooli", "Vandelay Imports"]
    return [
        {
            "invoice": f"INV-{start + i}",
            "customer": rng.choice(customers),
            "amount": round(rng.uniform(120, 9800), 2),
            "days_overdue": rng.randint(31, 140),
        }
        for i in range(count)
    ]


@_scenario(
    "invoices_page_ignored_loop",
    "pagination_stuck",
    looping=True,
    start=2,
    description="The invoices API ignores `page`; the agent walks pages 1..N and always gets page 1 again.",
)
def _invoices_page_ignored_loop(callbacks: Callbacks) -> None:
    ids = _Ids("invoices_page_ignored_loop")
    first_page = _invoice_rows(random.Random("invoices_page_ignored_loop"), 7001, 5)

    @tool
    def list_overdue_invoices(page: int, page_size: int) -> str:
        """Overdue invoices, paged."""
        return json.dumps({"page": 1, "page_size": page_size, "has_more": True, "total": 43, "items": first_page})

    replies: list[Any] = [_call(ids, "list_overdue_invoices", {"page": p, "page_size": 5}) for p in range(1, 18)]
    replies.append("I could only retrieve 5 of the 43 overdue invoices; the listing never advanced past page 1.")
    _run_agent(
        callbacks,
        _model(replies),
        [list_overdue_invoices],
        "Give me the total amount of all overdue invoices.",
        system="You are a collections assistant.",
    )


@_scenario(
    "audit_log_same_page_again",
    "pagination_stuck",
    looping=True,
    start=4,
    description="Audit-log graph reads pages 1-3, then requests page 3 again and again (same content).",
)
def _audit_log_same_page_again(callbacks: Callbacks) -> None:
    ids = _Ids("audit_log_same_page_again", "toolu_")
    rng = random.Random("audit_log_same_page_again")
    actors = ["alice@corp", "bob@corp", "svc-terraform", "carol@corp", "svc-ci"]
    actions = ["iam.role.update", "bucket.policy.put", "user.mfa.disable", "key.rotate", "vpc.route.add"]
    pages = {
        p: [
            {
                "ts": f"2024-05-01T{8 + p:02d}:{i * 7 % 60:02d}:00Z",
                "actor": rng.choice(actors),
                "action": rng.choice(actions),
            }
            for i in range(4)
        ]
        for p in (1, 2, 3)
    }

    @tool
    def fetch_audit_log(date: str, page: int) -> str:
        """Audit events for a date, 4 per page, 3 pages."""
        return json.dumps({"date": date, "page": page, "pages": 3, "events": pages.get(page, [])})

    replies: list[Any] = [_call(ids, "fetch_audit_log", {"date": "2024-05-01", "page": p}) for p in (1, 2, 3)]
    replies += [_call(ids, "fetch_audit_log", {"date": "2024-05-01", "page": 3}) for _ in range(15)]
    replies.append("On May 1 there were 12 audit events; one MFA disable stands out.")
    model = _claude(replies).bind_tools([fetch_audit_log])

    def auditor(state: MessagesState, config: RunnableConfig) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"], config)]}

    graph = StateGraph(MessagesState)
    graph.add_node("auditor", auditor)
    graph.add_node("tools", ToolNode([fetch_audit_log]))
    graph.add_edge(START, "auditor")
    graph.add_conditional_edges("auditor", _route_tools)
    graph.add_edge("tools", "auditor")
    graph.compile().invoke(
        {"messages": [HumanMessage("Review yesterday's (2024-05-01) audit log.")]}, _config(callbacks)
    )


class _CursorState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    pages_read: Annotated[int, operator.add]


@_scenario(
    "cursor_not_advancing_loop",
    "pagination_stuck",
    looping=True,
    start=4,
    description="A cursor API returns its input cursor as next_cursor on page 3; the agent follows it forever.",
)
def _cursor_not_advancing_loop(callbacks: Callbacks) -> None:
    ids = _Ids("cursor_not_advancing_loop")
    data = {
        "": (["ord_1001", "ord_1002", "ord_1003"], "eyJpZCI6MTAwM30"),
        "eyJpZCI6MTAwM30": (["ord_1004", "ord_1005", "ord_1006"], "eyJpZCI6MTAwNn0"),
        "eyJpZCI6MTAwNn0": (["ord_1007", "ord_1008"], "eyJpZCI6MTAwNn0"),  # bug: cursor does not advance
    }

    @tool
    def list_shipments(cursor: str) -> str:
        """List shipments; pass next_cursor to continue, empty string to start."""
        items, next_cursor = data[cursor]
        return json.dumps({"items": items, "next_cursor": next_cursor})

    replies: list[Any] = [
        _call(ids, "list_shipments", {"cursor": ""}),
        _call(ids, "list_shipments", {"cursor": "eyJpZCI6MTAwM30"}),
        *[_call(ids, "list_shipments", {"cursor": "eyJpZCI6MTAwNn0"}) for _ in range(16)],
        "There are at least 8 shipments (ord_1001..ord_1008); the listing did not terminate.",
    ]
    tools = {"list_shipments": list_shipments}
    model = _model(replies).bind_tools([list_shipments])

    def agent(state: _CursorState, config: RunnableConfig) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"], config)]}

    def call_tools(state: _CursorState, config: RunnableConfig) -> dict[str, Any]:
        last = state["messages"][-1]
        assert isinstance(last, AIMessage)
        return {"messages": [tools[c["name"]].invoke(c, config) for c in last.tool_calls], "pages_read": 1}

    graph = StateGraph(_CursorState)
    graph.add_node("agent", agent)
    graph.add_node("call_tools", call_tools)
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", lambda s: "call_tools" if s["messages"][-1].tool_calls else END)
    graph.add_edge("call_tools", "agent")
    graph.compile().invoke(
        {"messages": [HumanMessage("Count all shipments created this week.")], "pages_read": 0}, _config(callbacks)
    )


@_scenario(
    "offset_past_end_loop",
    "pagination_stuck",
    looping=True,
    start=4,
    description="A search API reports a bogus total and returns its last page for any offset past the end.",
)
def _offset_past_end_loop(callbacks: Callbacks) -> None:
    ids = _Ids("offset_past_end_loop")
    rng = random.Random("offset_past_end_loop")
    catalog = [
        f"P-{rng.randint(10000, 99999)} desk lamp {rng.choice(['brass', 'black', 'white', 'oak'])}" for _ in range(47)
    ]

    @tool
    def search_products(query: str, offset: int, limit: int) -> str:
        """Search products (offset/limit paging)."""
        start = min(offset, 40)
        return json.dumps({"total": 500, "offset": start, "items": catalog[start : start + limit]})

    replies: list[Any] = [
        _call(ids, "search_products", {"query": "desk lamp", "offset": offset, "limit": 20})
        for offset in range(0, 360, 20)
    ]
    replies.append("I found 47 distinct desk lamps; the API reports 500 but keeps repeating its last page.")
    _run_agent(
        callbacks,
        _model(replies, model="gpt-4o-mini"),
        [search_products],
        "Export every desk lamp in the catalog.",
    )


# ==============================================================================================================
# LOOPING: subgraph_loop
# ==============================================================================================================


class _EnrichSubState(TypedDict):
    lead: str
    enrichment: str


class _EnrichParentState(TypedDict):
    lead: str
    plan: str
    enrichment: str


@_scenario(
    "enrichment_subgraph_revalidate_loop",
    "subgraph_loop",
    looping=True,
    start=3,
    description="A validator keeps re-running the enrichment subgraph node on the same lead; same output each time.",
)
def _enrichment_subgraph_revalidate_loop(callbacks: Callbacks) -> None:
    partial = json.dumps(
        {"company": "Northwind Traders", "domain": "northwind.io", "industry": "Wholesale", "employees": None}
    )
    complete = json.dumps(
        {"company": "Northwind Traders", "domain": "northwind.io", "industry": "Wholesale", "employees": 240}
    )
    planner = _model(["Plan: enrich lead jane.doe@northwind.io with firmographics (company, industry, headcount)."])
    enricher = _model([partial] * 16 + [complete], model="gpt-4o-mini")

    def lookup(state: _EnrichSubState, config: RunnableConfig) -> dict[str, Any]:
        prompt = [
            SystemMessage("Return firmographics as JSON: company, domain, industry, employees."),
            HumanMessage(state["lead"]),
        ]
        return {"enrichment": _text(enricher.invoke(prompt, config))}

    sub = StateGraph(_EnrichSubState)
    sub.add_node("lookup", lookup)
    sub.add_edge(START, "lookup")
    sub.add_edge("lookup", END)

    def plan(state: _EnrichParentState, config: RunnableConfig) -> dict[str, Any]:
        return {"plan": _text(planner.invoke([HumanMessage(f"Plan the enrichment of {state['lead']}")], config))}

    def validate(state: _EnrichParentState) -> str:
        return "enrich" if json.loads(state["enrichment"])["employees"] is None else END

    graph = StateGraph(_EnrichParentState)
    graph.add_node("plan", plan)
    graph.add_node("enrich", sub.compile())
    graph.add_edge(START, "plan")
    graph.add_edge("plan", "enrich")
    graph.add_conditional_edges("enrich", validate, ["enrich", END])
    graph.compile().invoke({"lead": "jane.doe@northwind.io", "plan": "", "enrichment": ""}, _config(callbacks))


class _GradedAnswerState(TypedDict):
    question: str
    answer: str
    rounds: Annotated[int, operator.add]


@_scenario(
    "rag_subgraph_manual_invoke_loop",
    "subgraph_loop",
    looping=True,
    start=3,
    description="A node invokes a RAG subgraph by hand; an answer grader rejects it and the same run repeats.",
)
def _rag_subgraph_manual_invoke_loop(callbacks: Callbacks) -> None:
    ids = _Ids("rag_subgraph_manual_invoke_loop", "toolu_")

    @tool
    def search_docs(query: str) -> str:
        """Search product documentation."""
        return (
            "[doc:sso-setup#3] Okta SCIM provisioning requires the Enterprise plan and a SCIM token from "
            "Admin > Security."
        )

    ungrounded = "You can enable SCIM from the admin console once SSO is configured."
    grounded = "SCIM needs the Enterprise plan and a token from Admin > Security [doc:sso-setup#3]."
    replies: list[Any] = []
    for _ in range(8):
        replies += [_call(ids, "search_docs", {"query": "okta scim provisioning"}), ungrounded]
    replies += [_call(ids, "search_docs", {"query": "okta scim provisioning"}), grounded]
    model = _claude(replies).bind_tools([search_docs])

    def rag_agent(state: MessagesState, config: RunnableConfig) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"], config)]}

    rag = StateGraph(MessagesState)
    rag.add_node("agent", rag_agent)
    rag.add_node("tools", ToolNode([search_docs]))
    rag.add_edge(START, "agent")
    rag.add_conditional_edges("agent", tools_condition)
    rag.add_edge("tools", "agent")
    rag_app = rag.compile()

    def answer(state: _GradedAnswerState, config: RunnableConfig) -> dict[str, Any]:
        result = rag_app.invoke({"messages": [HumanMessage(state["question"])]}, config)
        return {"answer": _text(result["messages"][-1]), "rounds": 1}

    graph = StateGraph(_GradedAnswerState)
    graph.add_node("answer", answer)
    graph.add_edge(START, "answer")
    graph.add_conditional_edges("answer", lambda s: END if "[doc:" in s["answer"] else "answer", ["answer", END])
    graph.compile().invoke(
        {"question": "How do I set up SCIM with Okta?", "answer": "", "rounds": 0}, _config(callbacks)
    )


class _TrackingState(TypedDict):
    request: str
    worker_answer: str
    verdict: str


@_scenario(
    "tracking_worker_checker_loop",
    "subgraph_loop",
    looping=True,
    start=4,
    description="A create_agent worker invoked from a graph node re-runs on identical input after each rejection.",
)
def _tracking_worker_checker_loop(callbacks: Callbacks) -> None:
    ids = _Ids("tracking_worker_checker_loop")

    @tool
    def lookup_shipment(tracking_number: str) -> str:
        """Carrier tracking events."""
        return f"{tracking_number}: 2024-05-01 18:02 departed Memphis hub; 2024-05-02 06:40 arrived Denver facility"

    lookup = {"tracking_number": "1Z999AA10123456784"}
    worker_replies: list[Any] = []
    for _ in range(7):
        worker_replies += [
            _call(ids, "lookup_shipment", lookup),
            "The package left Memphis on May 1 and reached the Denver facility on May 2.",
        ]
    worker = create_agent(_model(worker_replies), [lookup_shipment], system_prompt="You answer shipment questions.")
    checker = _model(
        ["REJECT: the customer asked for the delivery ETA and the answer has none."] * 6 + ["ACCEPT"], model="o3-mini"
    )

    def run_worker(state: _TrackingState, config: RunnableConfig) -> dict[str, Any]:
        result = worker.invoke({"messages": [HumanMessage(state["request"])]}, config)
        return {"worker_answer": _text(result["messages"][-1])}

    def check(state: _TrackingState, config: RunnableConfig) -> dict[str, Any]:
        ask = f"Request: {state['request']}\nAnswer: {state['worker_answer']}\nReply ACCEPT or REJECT: reason."
        return {"verdict": _text(checker.invoke([HumanMessage(ask)], config))}

    graph = StateGraph(_TrackingState)
    graph.add_node("worker", run_worker)
    graph.add_node("check", check)
    graph.add_edge(START, "worker")
    graph.add_edge("worker", "check")
    graph.add_conditional_edges("check", lambda s: END if s["verdict"] == "ACCEPT" else "worker", ["worker", END])
    graph.compile().invoke(
        {"request": "When will 1Z999AA10123456784 be delivered?", "worker_answer": "", "verdict": ""},
        _config(callbacks),
    )


class _ParseDocState(TypedDict):
    doc_id: str
    text: str
    results: Annotated[list[dict[str, str]], operator.add]


class _ParseBatchState(TypedDict):
    docs: dict[str, str]
    results: Annotated[list[dict[str, str]], operator.add]
    retries: int


@_scenario(
    "send_retry_failed_doc_subgraph_loop",
    "subgraph_loop",
    looping=True,
    start=4,
    description="Send fan-out to a parsing subgraph; the unparseable document is re-sent unchanged every round.",
)
def _send_retry_failed_doc_subgraph_loop(callbacks: Callbacks) -> None:
    docs = {
        "rcpt-0419": "RECEIPT Blue Bottle Coffee 2024-04-19 Latte 5.50 Croissant 4.25 TOTAL 9.75 VISA ****4242",
        "rcpt-0420": "R#C%IPT ~~ 0 4 2 0 ## [image too blurry] ## T0T4L ?.??",
        "rcpt-0421": "RECEIPT Shell Station #5521 2024-04-21 Unleaded 38.2L 71.43 TOTAL 71.43 AMEX ****1005",
    }
    parsed = {
        "rcpt-0419": '{"merchant": "Blue Bottle Coffee", "date": "2024-04-19", "total": 9.75}',
        "rcpt-0421": '{"merchant": "Shell Station #5521", "date": "2024-04-21", "total": 71.43}',
    }
    by_text = {text: parsed.get(doc_id, '{"error": "unparseable: text too degraded"}') for doc_id, text in docs.items()}

    def parse_reply(messages: Sequence[BaseMessage]) -> str:
        return by_text[_text(messages[-1])]

    parser = _model([parse_reply] * 18)

    def parse(state: _ParseDocState, config: RunnableConfig) -> dict[str, Any]:
        out = _text(parser.invoke([SystemMessage("Parse the receipt into JSON."), HumanMessage(state["text"])], config))
        return {"results": [{"doc_id": state["doc_id"], "status": "failed" if "error" in out else "ok", "json": out}]}

    sub = StateGraph(_ParseDocState)
    sub.add_node("parse", parse)
    sub.add_edge(START, "parse")
    sub.add_edge("parse", END)
    parse_app = sub.compile()

    def fan_out(state: _ParseBatchState) -> list[Send]:
        return [Send("parse_receipt", {"doc_id": d, "text": t, "results": []}) for d, t in state["docs"].items()]

    def collect(state: _ParseBatchState) -> dict[str, Any]:
        return {"retries": state["retries"] + 1}

    def retry_failed(state: _ParseBatchState) -> list[Send] | str:
        latest = {r["doc_id"]: r["status"] for r in state["results"]}
        failed = [d for d, status in latest.items() if status == "failed"]
        if not failed or state["retries"] > 15:
            return END
        return [Send("parse_receipt", {"doc_id": d, "text": state["docs"][d], "results": []}) for d in failed]

    graph = StateGraph(_ParseBatchState)
    graph.add_node("parse_receipt", parse_app)
    graph.add_node("collect", collect)
    graph.add_conditional_edges(START, fan_out, ["parse_receipt"])
    graph.add_edge("parse_receipt", "collect")
    graph.add_conditional_edges("collect", retry_failed, ["parse_receipt", END])
    graph.compile().invoke({"docs": docs, "results": [], "retries": 0}, _config(callbacks))


# ==============================================================================================================
# LOOPING: reworded_search_loop (added archetype)
# ==============================================================================================================


@_scenario(
    "keyboard_reworded_query_loop",
    "reworded_search_loop",
    looping=True,
    start=3,
    description="Shopping agent rewords the same product search again and again; the engine returns the same hits.",
)
def _keyboard_reworded_query_loop(callbacks: Callbacks) -> None:
    ids = _Ids("keyboard_reworded_query_loop")
    hits = json.dumps(
        [
            {"title": "Keychron C3 Pro review: the best $40 board", "url": "https://example-reviews.com/keychron-c3"},
            {"title": "Royal Kludge RK84 vs Redragon K552", "url": "https://example-tech.net/rk84-vs-k552"},
            {"title": "12 budget mechanical keyboards, tested", "url": "https://example-mag.com/budget-keebs"},
        ]
    )

    @tool
    def web_search(query: str) -> str:
        """Web search; returns the top results."""
        return hits

    @tool
    def fetch_page(url: str) -> str:
        """Fetch a page as text."""
        return "Keychron C3 Pro ($40): gasket-ish feel, hot-swap, QMK/VIA, wired only. Verdict: best under $50."

    queries = _rewordings(
        [
            ["best", "top", "good", "recommended"],
            ["budget", "cheap", "affordable", "inexpensive"],
            ["mechanical keyboard", "mechanical keyboards"],
            ["2024", "this year", "under $50"],
        ],
        17,
        "keyboard-queries",
    )
    first = "best budget mechanical keyboard 2024"
    queries = [q for q in queries if q != first][:16]
    replies: list[Any] = [
        _call(ids, "web_search", {"query": first}),
        _call(ids, "fetch_page", {"url": "https://example-reviews.com/keychron-c3"}),
        *[_call(ids, "web_search", {"query": q}) for q in queries],
        "The Keychron C3 Pro (~$40) is the pick: hot-swap, QMK/VIA support, consistently top-rated.",
    ]
    _run_agent(
        callbacks,
        _model(replies),
        [web_search, fetch_page],
        "Find me the best budget mechanical keyboard. Compare a few options.",
    )


@_scenario(
    "kb_rephrase_zero_results_loop",
    "reworded_search_loop",
    looping=True,
    start=3,
    description="IT-help graph gets 0 results and keeps rephrasing the same knowledge-base query.",
)
def _kb_rephrase_zero_results_loop(callbacks: Callbacks) -> None:
    ids = _Ids("kb_rephrase_zero_results_loop", "toolu_")

    @tool
    def search_it_kb(query: str) -> str:
        """Search the IT knowledge base."""
        if "vpn" in query.lower():
            return "2 results: [IT-31] Configure split tunneling in GlobalProtect; [IT-44] VPN on Linux (nmcli)."
        return "0 results."

    rephrasings = _rewordings(
        [
            ["reset", "how to reset", "resetting", "re-enroll"],
            ["2FA", "two-factor", "MFA", "two factor auth"],
            ["for SSO users", "on SSO accounts", "with single sign-on"],
        ],
        16,
        "kb-rephrasings",
    )
    replies: list[Any] = [
        _call(ids, "search_it_kb", {"query": "VPN split tunnel"}),
        *[_call(ids, "search_it_kb", {"query": q}) for q in rephrasings],
        "Split tunneling: see IT-31. I found no article on resetting 2FA for SSO accounts; please open a ticket.",
    ]
    model = _claude(replies).bind_tools([search_it_kb])

    def helpdesk(state: MessagesState, config: RunnableConfig) -> dict[str, Any]:
        return {"messages": [model.invoke([SystemMessage("You are the IT helpdesk bot."), *state["messages"]], config)]}

    graph = StateGraph(MessagesState)
    graph.add_node("helpdesk", helpdesk)
    graph.add_node("tools", ToolNode([search_it_kb]))
    graph.add_edge(START, "helpdesk")
    graph.add_conditional_edges("helpdesk", _route_tools)
    graph.add_edge("tools", "helpdesk")
    graph.compile().invoke(
        {
            "messages": [
                HumanMessage(
                    "Two things: how do I set up VPN split tunneling, and how do I reset 2FA on my SSO account?"
                )
            ]
        },
        _config(callbacks),
    )


# ==============================================================================================================
# PROGRESSING: batch_classification
# ==============================================================================================================


def _reviews(seed: str, count: int) -> list[tuple[str, str]]:
    """Distinct product reviews with their true sentiment, mostly positive."""
    rng = random.Random(seed)
    products = [
        "espresso grinder",
        "trail running shoes",
        "standing desk",
        "noise-cancelling headphones",
        "cast iron pan",
        "robot vacuum",
        "e-reader",
        "camping stove",
        "mechanical keyboard",
        "air purifier",
        "yoga mat",
        "drip kettle",
    ]
    praise = [
        "works exactly as described",
        "arrived two days early",
        "build quality is excellent",
        "worth every cent",
        "setup took five minutes",
        "my partner loves it too",
        "much quieter than my old one",
        "battery lasts forever",
    ]
    complaints = [
        "stopped working after a week",
        "smells of plastic",
        "the app keeps crashing",
        "customer service ignored me",
    ]
    out: list[tuple[str, str]] = []
    for i in range(count):
        product = products[i % len(products)]
        if i % 6 == 4:
            out.append((f"The {product} {rng.choice(complaints)}. Returning it.", "negative"))
        elif i % 11 == 7:
            out.append((f"The {product} is fine, nothing special. Order #{rng.randint(10000, 99999)}.", "neutral"))
        else:
            out.append((f"Love this {product}: {rng.choice(praise)} and {rng.choice(praise)}.", "positive"))
    return out


class _SentimentState(TypedDict):
    reviews: list[str]
    index: int
    results: Annotated[list[dict[str, str]], operator.add]


@_scenario(
    "review_sentiment_sequential",
    "batch_classification",
    looping=False,
    description="Graph walks 22 distinct reviews one by one; the label is 'positive' most of the time.",
)
def _review_sentiment_sequential(callbacks: Callbacks) -> None:
    reviews = _reviews("review_sentiment_sequential", 22)
    labels = dict(reviews)
    classifier = _model([lambda messages: labels[_text(messages[-1])]] * len(reviews), model="gpt-4o-mini")

    def classify(state: _SentimentState, config: RunnableConfig) -> dict[str, Any]:
        review = state["reviews"][state["index"]]
        prompt = [
            SystemMessage("Classify the review as positive, negative or neutral. One word."),
            HumanMessage(review),
        ]
        label = _text(classifier.invoke(prompt, config))
        return {"index": state["index"] + 1, "results": [{"review": review, "label": label}]}

    graph = StateGraph(_SentimentState)
    graph.add_node("classify", classify)
    graph.add_edge(START, "classify")
    graph.add_conditional_edges("classify", lambda s: "classify" if s["index"] < len(s["reviews"]) else END)
    graph.compile().invoke({"reviews": [r for r, _ in reviews], "index": 0, "results": []}, _config(callbacks))


class _TriageItem(TypedDict):
    ticket_id: str
    body: str


class _TriageState(TypedDict):
    tickets: list[_TriageItem]
    verdicts: Annotated[list[dict[str, str]], operator.add]
    summary: str


@_scenario(
    "ticket_triage_send_json",
    "batch_classification",
    looping=False,
    description="Send fan-out triages 18 distinct tickets; most get the identical JSON verdict, then a tally step.",
)
def _ticket_triage_send_json(callbacks: Callbacks) -> None:
    rng = random.Random("ticket_triage_send_json")
    billing = [
        "I was charged twice for invoice {n}.",
        "Please update the VAT number on invoice {n}.",
        "Can I get a copy of receipt {n}?",
        "Why did my plan renew at a higher price? Ref {n}.",
        "Refund request for order {n}, duplicate purchase.",
        "Change billing email for account {n}.",
    ]
    other = [
        ("The dashboard shows a 500 error since this morning (ref {n}).", '{"category": "bug", "priority": "high"}'),
        ("Feature idea: dark mode for the mobile app. ({n})", '{"category": "feedback", "priority": "low"}'),
    ]
    tickets: list[_TriageItem] = []
    verdict_of: dict[str, str] = {}
    for i in range(18):
        n = rng.randint(100000, 999999)
        if i % 3 == 2:
            text, verdict = other[i % 2]
            body = text.format(n=n)
        else:
            body, verdict = billing[i % len(billing)].format(n=n), '{"category": "billing", "priority": "normal"}'
        tickets.append({"ticket_id": f"T-{5000 + i}", "body": body})
        verdict_of[body] = verdict
    triager = _model([lambda messages: verdict_of[_text(messages[-1])]] * len(tickets))

    def triage(state: _TriageItem, config: RunnableConfig) -> dict[str, Any]:
        prompt = [SystemMessage('Triage. Reply JSON {"category", "priority"}.'), HumanMessage(state["body"])]
        verdict = json.loads(_text(triager.invoke(prompt, config)))
        return {"verdicts": [{"ticket_id": state["ticket_id"], **verdict}]}

    def tally(state: _TriageState) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for v in state["verdicts"]:
            counts[v["category"]] = counts.get(v["category"], 0) + 1
        return {"summary": json.dumps(counts, sort_keys=True)}

    graph = StateGraph(_TriageState)
    graph.add_node("triage", triage, input_schema=_TriageItem)
    graph.add_node("tally", tally)
    graph.add_conditional_edges(START, lambda s: [Send("triage", t) for t in s["tickets"]], ["triage"])
    graph.add_edge("triage", "tally")
    graph.add_edge("tally", END)
    graph.compile().invoke({"tickets": tickets, "verdicts": [], "summary": ""}, _config(callbacks))


@_scenario(
    "moderation_queue_agent",
    "batch_classification",
    looping=False,
    description="Moderation agent pops comments from a queue (same no-arg call, new comment each time), labels them.",
)
def _moderation_queue_agent(callbacks: Callbacks) -> None:
    ids = _Ids("moderation_queue_agent")
    comments = [
        ("c-301", "Great write-up, the benchmark section was really useful.", "ok"),
        ("c-302", "Does this work on ARM Macs too?", "ok"),
        ("c-303", "BUY CHEAP FOLLOWERS >>> bit.ly/xx9", "spam"),
        ("c-304", "I disagree with point 3 but the rest is solid.", "ok"),
        ("c-305", "Thanks, fixed my build in two minutes.", "ok"),
        ("c-306", "Typo in the second code block: `improt`.", "ok"),
        ("c-307", "Earn $5000/week from home, DM me", "spam"),
        ("c-308", "Would love a follow-up on Windows support.", "ok"),
        ("c-309", "This is the clearest explanation of CRDTs I've read.", "ok"),
        ("c-310", "Link in the footer is broken.", "ok"),
    ]
    queue = list(comments)

    @tool
    def next_comment() -> str:
        """Pop the next comment from the moderation queue."""
        if not queue:
            return "QUEUE EMPTY"
        comment_id, text, _ = queue.pop(0)
        return json.dumps({"comment_id": comment_id, "text": text})

    @tool
    def record_label(comment_id: str, label: str) -> str:
        """Store a moderation label (ok | spam | abuse)."""
        return f"{comment_id} labelled {label}"

    replies: list[Any] = []
    for comment_id, _, label in comments:
        replies.append(_call(ids, "next_comment", {}))
        replies.append(_call(ids, "record_label", {"comment_id": comment_id, "label": label}))
    replies.append(_call(ids, "next_comment", {}))
    replies.append("Queue cleared: 10 comments reviewed, 8 ok and 2 spam.")
    _run_agent(
        callbacks,
        _model(replies, model="gpt-4o-mini"),
        [next_comment, record_label],
        "Work through the moderation queue until it is empty.",
        system="You are a comment moderator. Label each comment ok, spam or abuse.",
    )


# ==============================================================================================================
# PROGRESSING: extraction_map
# ==============================================================================================================


class _NotesState(TypedDict):
    notes: list[str]
    index: int
    action_items: Annotated[list[str], operator.add]
    digest: str


@_scenario(
    "meeting_action_items_map",
    "extraction_map",
    looping=False,
    description="Extracts action items from 15 distinct meeting notes ('No action items.' for most), then a digest.",
)
def _meeting_action_items_map(callbacks: Callbacks) -> None:
    rng = random.Random("meeting_action_items_map")
    teams = ["Platform", "Growth", "Mobile", "Data", "Security", "Design", "Support", "Infra"]
    updates = [
        "status update only; everything on track",
        "demo of the new onboarding flow, well received",
        "retro: deploys were smooth this sprint",
        "reviewed Q2 OKRs, no changes",
        "walkthrough of the incident timeline",
    ]
    notes: list[str] = []
    extracted: dict[str, str] = {}
    for i in range(15):
        header = f"{teams[i % len(teams)]} sync 2024-05-{1 + i:02d} (attendees: {rng.randint(3, 9)})"
        if i % 3 == 1:
            owner = rng.choice(["Priya", "Tomás", "Mei", "Jonas", "Aisha"])
            note = f"{header}: {rng.choice(updates)}. {owner} to draft the migration plan by Friday."
            extracted[note] = f"- {owner}: draft the migration plan (due Friday)"
        else:
            note = f"{header}: {rng.choice(updates)}."
            extracted[note] = "No action items."
        notes.append(note)
    extractor = _model([lambda messages: extracted[_text(messages[-1])]] * len(notes))
    writer = _claude(["Weekly digest: 5 action items, all migration-plan drafts owned by team leads, due Friday."])

    def extract(state: _NotesState, config: RunnableConfig) -> dict[str, Any]:
        note = state["notes"][state["index"]]
        prompt = [SystemMessage("List action items with owners, or say 'No action items.'"), HumanMessage(note)]
        return {"index": state["index"] + 1, "action_items": [_text(extractor.invoke(prompt, config))]}

    def digest(state: _NotesState, config: RunnableConfig) -> dict[str, Any]:
        items = "\n".join(i for i in state["action_items"] if i != "No action items.")
        return {"digest": _text(writer.invoke([HumanMessage(f"Write a weekly digest of:\n{items}")], config))}

    graph = StateGraph(_NotesState)
    graph.add_node("extract", extract)
    graph.add_node("digest", digest)
    graph.add_edge(START, "extract")
    graph.add_conditional_edges("extract", lambda s: "extract" if s["index"] < len(s["notes"]) else "digest")
    graph.add_edge("digest", END)
    graph.compile().invoke({"notes": notes, "index": 0, "action_items": [], "digest": ""}, _config(callbacks))


class _InvoiceDoc(TypedDict):
    name: str
    text: str


class _InvoiceBatchState(TypedDict):
    documents: list[_InvoiceDoc]
    fields: Annotated[list[dict[str, Any]], operator.add]


@_scenario(
    "invoice_fields_send",
    "extraction_map",
    looping=False,
    description="Send fan-out extracts fields from 14 distinct invoices; most yield the identical JSON.",
)
def _invoice_fields_send(callbacks: Callbacks) -> None:
    rng = random.Random("invoice_fields_send")
    suppliers = ["Müller GmbH", "Dubois SARL", "Rossi S.p.A.", "Jansen B.V.", "Nowak Sp. z o.o.", "Silva Lda"]
    documents: list[_InvoiceDoc] = []
    answer: dict[str, str] = {}
    for i in range(14):
        supplier = suppliers[i % len(suppliers)]
        amount = round(rng.uniform(300, 12000), 2)
        if i % 5 == 3:
            text = (
                f"{supplier} Rechnung R-{2400 + i} Betrag {amount} EUR, zahlbar in 60 Tagen, Bestellung PO-{88100 + i}"
            )
            answer[text] = json.dumps({"po_number": f"PO-{88100 + i}", "payment_terms": "NET60", "currency": "EUR"})
        else:
            text = f"Invoice {2400 + i} from {supplier}: total EUR {amount}, payment within 30 days of receipt."
            answer[text] = json.dumps({"po_number": None, "payment_terms": "NET30", "currency": "EUR"})
        documents.append({"name": f"inv_{2400 + i}.pdf", "text": text})
    extractor = _claude(
        [lambda messages: answer[_text(messages[-1])]] * len(documents), model="claude-3-5-haiku-latest"
    )

    def extract(state: _InvoiceDoc, config: RunnableConfig) -> dict[str, Any]:
        prompt = [SystemMessage("Extract po_number, payment_terms, currency as JSON."), HumanMessage(state["text"])]
        return {"fields": [{"document": state["name"], **json.loads(_text(extractor.invoke(prompt, config)))}]}

    graph = StateGraph(_InvoiceBatchState)
    graph.add_node("extract", extract, input_schema=_InvoiceDoc)
    graph.add_conditional_edges(START, lambda s: [Send("extract", d) for d in s["documents"]], ["extract"])
    graph.add_edge("extract", END)
    graph.compile().invoke({"documents": documents, "fields": []}, _config(callbacks))


@_scenario(
    "contract_clause_agent",
    "extraction_map",
    looping=False,
    description="Agent reads 8 distinct contracts and records the termination clause; most have none.",
)
def _contract_clause_agent(callbacks: Callbacks) -> None:
    ids = _Ids("contract_clause_agent")
    rng = random.Random("contract_clause_agent")
    counterparties = [
        "Acme Logistics",
        "Birch Analytics",
        "Cobalt Media",
        "Delta Facilities",
        "Ember Labs",
        "Fjord Hosting",
        "Granite Legal",
        "Harbor Foods",
    ]
    contracts: dict[str, str] = {}
    clauses: dict[str, str] = {}
    for i, party in enumerate(counterparties):
        doc_id = f"MSA-{2019 + i % 5}-{rng.randint(100, 999)}"
        if i in (2, 6):
            contracts[doc_id] = (
                f"Master Services Agreement with {party}. 14.2 Either party may terminate for convenience "
                "on 90 days' written notice."
            )
            clauses[doc_id] = "Termination for convenience: 90 days' written notice (s. 14.2)."
        else:
            contracts[doc_id] = (
                f"Master Services Agreement with {party}. Term {rng.randint(1, 3)} years; "
                "terminates only for material breach."
            )
            clauses[doc_id] = "No termination-for-convenience clause."

    @tool
    def read_contract(doc_id: str) -> str:
        """Full text of a contract."""
        return contracts[doc_id]

    @tool
    def save_extraction(doc_id: str, clause: str) -> str:
        """Save the extracted clause for a contract."""
        return f"saved {doc_id}"

    replies: list[Any] = []
    for doc_id in contracts:
        replies.append(_call(ids, "read_contract", {"doc_id": doc_id}))
        replies.append(_call(ids, "save_extraction", {"doc_id": doc_id, "clause": clauses[doc_id]}))
    replies.append("Done: 2 of 8 MSAs allow termination for convenience (90 days' notice); the other 6 do not.")
    _run_agent(
        callbacks,
        _claude(replies),
        [read_contract, save_extraction],
        "For each of these contracts, extract the termination-for-convenience clause: " + ", ".join(contracts),
    )


# ==============================================================================================================
# PROGRESSING: fanout_summaries
# ==============================================================================================================


class _ChunkJob(TypedDict):
    index: int
    chunk: str


class _MapReduceState(TypedDict):
    chunks: list[str]
    summaries: Annotated[list[tuple[int, str]], operator.add]
    final: str


@_scenario(
    "transcript_chunk_map_reduce",
    "fanout_summaries",
    looping=False,
    description="Send fan-out summarizes 10 transcript chunks in parallel, then one reduce call merges them.",
)
def _transcript_chunk_map_reduce(callbacks: Callbacks) -> None:
    topics = [
        ("pricing", "moving the Pro tier from $20 to $24"),
        ("churn", "SMB churn ticking up after onboarding changes"),
        ("hiring", "two backend roles opening in June"),
        ("roadmap", "offline mode slipping to Q4"),
        ("security", "SOC 2 audit fieldwork starting next month"),
        ("support", "first response time down to 3h"),
        ("marketing", "webinar series drew 1,400 signups"),
        ("partners", "Shopify app review passed"),
        ("infra", "migration to Postgres 16 finished"),
        ("finance", "runway extended to 30 months"),
    ]
    chunks = [
        f"[{i * 6:02d}:00-{i * 6 + 6:02d}:00] Discussion about {t}: {detail}." for i, (t, detail) in enumerate(topics)
    ]
    summaries = {c: f"{t.capitalize()}: {d}." for c, (t, d) in zip(chunks, topics, strict=True)}
    mapper = _model([lambda messages: summaries[_text(messages[-1])]] * len(chunks), model="gpt-4o-mini")
    reducer = _model(["All-hands recap: price change to $24, SOC 2 next month, Postgres 16 done, offline mode in Q4."])

    def summarize(state: _ChunkJob, config: RunnableConfig) -> dict[str, Any]:
        prompt = [SystemMessage("Summarize this transcript chunk in one line."), HumanMessage(state["chunk"])]
        return {"summaries": [(state["index"], _text(mapper.invoke(prompt, config)))]}

    def reduce(state: _MapReduceState, config: RunnableConfig) -> dict[str, Any]:
        joined = "\n".join(s for _, s in sorted(state["summaries"]))
        return {"final": _text(reducer.invoke([HumanMessage(f"Merge into a 1-paragraph recap:\n{joined}")], config))}

    graph = StateGraph(_MapReduceState)
    graph.add_node("summarize", summarize, input_schema=_ChunkJob)
    graph.add_node("reduce", reduce)
    graph.add_conditional_edges(
        START, lambda s: [Send("summarize", {"index": i, "chunk": c}) for i, c in enumerate(s["chunks"])], ["summarize"]
    )
    graph.add_edge("summarize", "reduce")
    graph.add_edge("reduce", END)
    graph.compile().invoke({"chunks": chunks, "summaries": [], "final": ""}, _config(callbacks))


class _IncidentSectionState(TypedDict):
    section: str
    body: str
    summary: str
    findings: Annotated[list[str], operator.add]


class _IncidentReportState(TypedDict):
    sections: dict[str, str]
    findings: Annotated[list[str], operator.add]
    report: str


@_scenario(
    "incident_report_subgraph_fanout",
    "fanout_summaries",
    looping=False,
    description="Send fan-out into a summarize->extract-risks subgraph per section of a postmortem, then a reduce.",
)
def _incident_report_subgraph_fanout(callbacks: Callbacks) -> None:
    sections = {
        "timeline": "09:12 deploy of ledger v4.2; 09:20 error spike; 09:31 rollback started; 09:44 recovered.",
        "impact": "14 minutes of failed card authorizations for 3.1% of EU traffic; 2,340 declined payments.",
        "root_cause": "A config default flipped the idempotency-key TTL from 24h to 24s in v4.2.",
        "detection": "Paged by the auth-failure SLO alert 8 minutes after the deploy.",
        "follow_ups": "Add a config diff check to CI; alert on idempotency-key misses; canary EU first.",
    }
    short = {
        "timeline": "Timeline: bad deploy at 09:12, recovered by 09:44 after a rollback.",
        "impact": "Impact: 14 minutes of EU card authorization failures, 2,340 declines.",
        "root_cause": "Root cause: idempotency-key TTL default changed from 24h to 24s.",
        "detection": "Detection: SLO alert paged 8 minutes after the deploy.",
        "follow_ups": "Follow-ups: CI config diff check, idempotency-miss alert, EU canary.",
    }
    summary_of = {body: short[name] for name, body in sections.items()}
    risks = {
        "timeline": "Rollback took 13 minutes.",
        "impact": "Declined payments need customer outreach.",
        "root_cause": "Config defaults are not reviewed.",
        "detection": "Detection lag of 8 minutes.",
        "follow_ups": "Owners not yet assigned.",
    }
    summarizer = _model([lambda messages: summary_of[_text(messages[-1])]] * len(sections))
    risk_model = _claude([lambda messages: risks[_text(messages[-1]).split("|")[0]]] * len(sections))
    editor = _model(
        ["Postmortem: a config default cut idempotency TTL to 24s; 14 min of EU auth failures; 3 follow-ups."]
    )

    def summarize(state: _IncidentSectionState, config: RunnableConfig) -> dict[str, Any]:
        return {"summary": _text(summarizer.invoke([HumanMessage(state["body"])], config))}

    def extract_risks(state: _IncidentSectionState, config: RunnableConfig) -> dict[str, Any]:
        risk = _text(risk_model.invoke([HumanMessage(f"{state['section']}|{state['summary']}")], config))
        return {"findings": [f"{state['summary']} Risk: {risk}"]}

    section_graph = StateGraph(_IncidentSectionState)
    section_graph.add_node("summarize", summarize)
    section_graph.add_node("extract_risks", extract_risks)
    section_graph.add_edge(START, "summarize")
    section_graph.add_edge("summarize", "extract_risks")
    section_graph.add_edge("extract_risks", END)

    def assemble(state: _IncidentReportState, config: RunnableConfig) -> dict[str, Any]:
        return {"report": _text(editor.invoke([HumanMessage("\n".join(state["findings"]))], config))}

    graph = StateGraph(_IncidentReportState)
    graph.add_node("section", section_graph.compile())
    graph.add_node("assemble", assemble)
    graph.add_conditional_edges(
        START,
        lambda s: [
            Send("section", {"section": k, "body": v, "summary": "", "findings": []}) for k, v in s["sections"].items()
        ],
        ["section"],
    )
    graph.add_edge("section", "assemble")
    graph.add_edge("assemble", END)
    graph.compile().invoke({"sections": sections, "findings": [], "report": ""}, _config(callbacks))


# ==============================================================================================================
# PROGRESSING: pagination
# ==============================================================================================================


@_scenario(
    "orders_paginate_agent",
    "pagination",
    looping=False,
    description="Agent pages through orders 1..11 (distinct pages), page 12 is empty, then totals them.",
)
def _orders_paginate_agent(callbacks: Callbacks) -> None:
    ids = _Ids("orders_paginate_agent")
    rng = random.Random("orders_paginate_agent")
    pages: dict[int, list[dict[str, Any]]] = {
        p: [{"order": f"SO-{30000 + p * 10 + i}", "total": round(rng.uniform(20, 400), 2)} for i in range(8)]
        for p in range(1, 12)
    }

    @tool
    def list_orders(status: str, page: int) -> str:
        """Orders with a status, 8 per page."""
        items = pages.get(page, [])
        return json.dumps({"page": page, "items": items, "has_more": page < 11})

    total = round(sum(o["total"] for items in pages.values() for o in items), 2)
    replies: list[Any] = [_call(ids, "list_orders", {"status": "unshipped", "page": p}) for p in range(1, 13)]
    replies.append(f"There are 88 unshipped orders worth ${total:,.2f} in total.")
    _run_agent(callbacks, _model(replies), [list_orders], "How much revenue is sitting in unshipped orders?")


@_scenario(
    "events_cursor_pagination_graph",
    "pagination",
    looping=False,
    description="Graph follows a cursor through 9 distinct pages of webhook events until next_cursor is null.",
)
def _events_cursor_pagination_graph(callbacks: Callbacks) -> None:
    ids = _Ids("events_cursor_pagination_graph", "toolu_")
    noise = _Noise("events_cursor_pagination_graph")
    cursors = ["", *(noise.hex(12) for _ in range(8))]
    kinds = ["payment.succeeded", "payment.failed", "refund.created", "customer.updated"]
    pages: dict[str, dict[str, Any]] = {
        cursor: {
            "events": [{"id": f"evt_{noise.hex(10)}", "type": noise.rng.choice(kinds)} for _ in range(5)],
            "next_cursor": cursors[i + 1] if i + 1 < len(cursors) else None,
        }
        for i, cursor in enumerate(cursors)
    }

    @tool
    def list_webhook_events(cursor: str) -> str:
        """Webhook events, newest first; pass next_cursor to continue ('' to start)."""
        return json.dumps(pages[cursor])

    failed = sum(1 for page in pages.values() for e in page["events"] if e["type"] == "payment.failed")
    replies: list[Any] = [_call(ids, "list_webhook_events", {"cursor": c}) for c in cursors]
    replies.append(f"Read all 45 events: {failed} payment.failed events need attention.")
    model = _claude(replies).bind_tools([list_webhook_events])

    def agent(state: MessagesState, config: RunnableConfig) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"], config)]}

    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_node("tools", ToolNode([list_webhook_events]))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition)
    graph.add_edge("tools", "agent")
    graph.compile().invoke({"messages": [HumanMessage("How many webhook payments failed today?")]}, _config(callbacks))


# ==============================================================================================================
# PROGRESSING: polling_finishes
# ==============================================================================================================


@_scenario(
    "export_job_progress_poll",
    "polling_finishes",
    looping=False,
    description="Agent starts an export and polls a job whose status carries growing progress until it succeeds.",
)
def _export_job_progress_poll(callbacks: Callbacks) -> None:
    ids = _Ids("export_job_progress_poll")
    progress = iter([3, 8, 11, 17, 23, 30, 41, 47, 58, 66, 77, 85, 93, 100])

    @tool
    def start_export(dataset: str, fmt: str) -> str:
        """Start an asynchronous export job."""
        return "job_id=exp_7Q2mV9 accepted"

    @tool
    def get_job(job_id: str) -> str:
        """Status of an export job."""
        pct = next(progress)
        if pct == 100:
            return f"{job_id}: succeeded, 1,204,331 rows, url=https://exports.example.com/{job_id}.parquet"
        return f"{job_id}: running, {pct}% ({pct * 12043} rows written)"

    replies: list[Any] = [_call(ids, "start_export", {"dataset": "events_2024_04", "fmt": "parquet"})]
    replies += [_call(ids, "get_job", {"job_id": "exp_7Q2mV9"}) for _ in range(14)]
    replies.append("Export done: 1,204,331 rows at https://exports.example.com/exp_7Q2mV9.parquet")
    _run_agent(
        callbacks, _model(replies), [start_export, get_job], "Export April's events as parquet and give me the link."
    )


class _BatchJobState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    polls: Annotated[int, operator.add]


@_scenario(
    "batch_pending_three_then_done",
    "polling_finishes",
    looping=False,
    description="Graph submits a batch job; status is an identical 'pending' three times in a row, then done.",
)
def _batch_pending_three_then_done(callbacks: Callbacks) -> None:
    ids = _Ids("batch_pending_three_then_done")
    statuses = iter(["pending", "pending", "pending", "completed"])

    @tool
    def submit_batch(input_file: str) -> str:
        """Submit an embeddings batch job."""
        return "batch_01HZX4 submitted (24,000 requests)"

    @tool
    def batch_status(batch_id: str) -> str:
        """Status of a batch job."""
        status = next(statuses)
        if status == "completed":
            return f"{batch_id}: completed, 24,000/24,000 succeeded, output_file=file_9Fz2"
        return f"{batch_id}: {status}"

    @tool
    def download_output(file_id: str) -> str:
        """Download a result file's summary."""
        return f"{file_id}: 24,000 embeddings, dim 1536, 0 errors"

    replies: list[Any] = [_call(ids, "submit_batch", {"input_file": "kb_chunks.jsonl"})]
    replies += [_call(ids, "batch_status", {"batch_id": "batch_01HZX4"}) for _ in range(4)]
    replies += [_call(ids, "download_output", {"file_id": "file_9Fz2"}), "All 24,000 chunks are embedded (dim 1536)."]
    tools = [submit_batch, batch_status, download_output]
    model = _model(replies).bind_tools(tools)

    def agent(state: _BatchJobState, config: RunnableConfig) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"], config)]}

    graph = StateGraph(_BatchJobState)
    graph.add_node("agent", agent)
    graph.add_node("tools", ToolNode(tools))
    graph.add_node("count_poll", lambda s: {"polls": 1})
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition)
    graph.add_edge("tools", "count_poll")
    graph.add_edge("count_poll", "agent")
    graph.compile().invoke(
        {"messages": [HumanMessage("Embed kb_chunks.jsonl with the batch API.")], "polls": 0}, _config(callbacks)
    )


@_scenario(
    "index_build_elapsed_poll",
    "polling_finishes",
    looping=False,
    description="Agent alternates an identical wait(15) call with status checks that report growing elapsed time.",
)
def _index_build_elapsed_poll(callbacks: Callbacks) -> None:
    ids = _Ids("index_build_elapsed_poll", "toolu_")
    elapsed = iter([12, 27, 43, 58, 74])

    @tool
    def create_index(collection: str, dims: int) -> str:
        """Start building a vector index."""
        return f"index build started for {collection} (dims={dims}, HNSW m=16)"

    @tool
    def index_status(collection: str) -> str:
        """Build status of a vector index."""
        seconds = next(elapsed)
        if seconds > 70:
            return f"{collection}: ready (elapsed {seconds}s, 100% of vectors inserted)"
        return f"{collection}: building (elapsed {seconds}s, {seconds * 4 // 3}% of vectors inserted)"

    @tool
    def wait(seconds: int) -> str:
        """Sleep before checking again."""
        return f"Waited {seconds}s."

    replies: list[Any] = [_call(ids, "create_index", {"collection": "support_articles", "dims": 1024})]
    for _ in range(5):
        replies.append(_call(ids, "index_status", {"collection": "support_articles"}))
        replies.append(_call(ids, "wait", {"seconds": 15}))
    replies = replies[:-1]
    replies.append("The support_articles index is ready (built in 74s).")
    _run_agent(
        callbacks,
        _claude(replies),
        [create_index, index_status, wait],
        "Build the vector index for support_articles and tell me when it's ready.",
    )


# ==============================================================================================================
# PROGRESSING: retry_then_success
# ==============================================================================================================


@_scenario(
    "fetch_retry_timeout_then_ok",
    "retry_then_success",
    looping=False,
    description="Agent fetches a status page that times out twice (same error), succeeds on the third try.",
)
def _fetch_retry_timeout_then_ok(callbacks: Callbacks) -> None:
    ids = _Ids("fetch_retry_timeout_then_ok")
    attempts = {"n": 0}

    @tool
    def fetch_url(url: str) -> str:
        """HTTP GET a URL and return its text."""
        attempts["n"] += 1
        if attempts["n"] <= 2:
            return "Error: request timed out after 10s"
        return "All systems operational. Last incident: 2024-04-28 API latency (resolved)."

    url = {"url": "https://status.vendor.example.com"}
    replies: list[Any] = [_call(ids, "fetch_url", url) for _ in range(3)]
    replies.append("The vendor reports all systems operational; the last incident (Apr 28) is resolved.")
    _run_agent(callbacks, _model(replies), [fetch_url], "Is the vendor having an outage right now?")


@_scenario(
    "geocode_toolnode_timeout_retry",
    "retry_then_success",
    looping=False,
    description="Graph geocodes 3 addresses; one TimeoutError is surfaced by ToolNode and the retry succeeds.",
)
def _geocode_toolnode_timeout_retry(callbacks: Callbacks) -> None:
    ids = _Ids("geocode_toolnode_timeout_retry")
    coords = {
        "Prinsengracht 263, Amsterdam": "52.3752, 4.8840",
        "Rua Augusta 24, Lisboa": "38.7097, -9.1365",
        "Karl-Marx-Allee 70, Berlin": "52.5177, 13.4282",
    }
    failures = {"Rua Augusta 24, Lisboa": 1}

    @tool
    def geocode(address: str) -> str:
        """Address to latitude/longitude."""
        if failures.get(address, 0) > 0:
            failures[address] -= 1
            raise TimeoutError("geocoder did not answer within 5s")
        return f"{address} -> {coords[address]}"

    replies: list[Any] = [
        _call(ids, "geocode", {"address": "Prinsengracht 263, Amsterdam"}),
        _call(ids, "geocode", {"address": "Rua Augusta 24, Lisboa"}),
        _call(ids, "geocode", {"address": "Rua Augusta 24, Lisboa"}),
        _call(ids, "geocode", {"address": "Karl-Marx-Allee 70, Berlin"}),
        "Amsterdam 52.3752,4.8840; Lisbon 38.7097,-9.1365; Berlin 52.5177,13.4282.",
    ]
    model = _model(replies).bind_tools([geocode])

    def agent(state: MessagesState, config: RunnableConfig) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"], config)]}

    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_node("tools", ToolNode([geocode], handle_tool_errors=TimeoutError))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition)
    graph.add_edge("tools", "agent")
    graph.compile().invoke(
        {"messages": [HumanMessage("Geocode our three office addresses: " + "; ".join(coords))]}, _config(callbacks)
    )


# ==============================================================================================================
# PROGRESSING: rate_limit_clears
# ==============================================================================================================


@_scenario(
    "news_search_rate_limited",
    "rate_limit_clears",
    looping=False,
    description="News search answers '429 rate limited, retry' in-band twice, then returns articles.",
)
def _news_search_rate_limited(callbacks: Callbacks) -> None:
    ids = _Ids("news_search_rate_limited")
    calls = {"n": 0}

    @tool
    def search_news(query: str, days: int) -> str:
        """Search recent news articles."""
        calls["n"] += 1
        if calls["n"] <= 2:
            return "429 Too Many Requests: rate limited, retry after 2 seconds."
        if "tariff" in query:
            return "1) EU sets provisional tariffs on Chinese EVs up to 38% (Jun 12) 2) Automakers react (Jun 13)"
        return "1) BYD opens Hungarian plant (Jun 3) 2) Tesla cuts Model Y prices in Europe (Jun 10)"

    first = {"query": "EU electric vehicle market news", "days": 14}
    replies: list[Any] = [
        _call(ids, "search_news", first),
        _call(ids, "search_news", first),
        _call(ids, "search_news", first),
        _call(ids, "search_news", {"query": "EU tariffs Chinese EVs", "days": 14}),
        "Big EV news: provisional EU tariffs on Chinese EVs (up to 38%), BYD's Hungarian plant, Tesla price cuts.",
    ]
    _run_agent(
        callbacks,
        _model(replies, model="gpt-4o"),
        [search_news],
        "What happened in the EU EV market in the last two weeks?",
    )


class _TranslateState(TypedDict):
    strings: dict[str, str]
    pending: list[str]
    translated: Annotated[dict[str, str], operator.or_]
    messages: Annotated[list[AnyMessage], add_messages]


@_scenario(
    "ui_strings_translate_rate_limit",
    "rate_limit_clears",
    looping=False,
    description="Graph translates 6 UI strings with a tool that is rate limited once mid-batch, then continues.",
)
def _ui_strings_translate_rate_limit(callbacks: Callbacks) -> None:
    ids = _Ids("ui_strings_translate_rate_limit")
    strings = {
        "cart.empty": "Your cart is empty",
        "cart.checkout": "Proceed to checkout",
        "auth.forgot": "Forgot your password?",
        "auth.signup": "Create an account",
        "order.shipped": "Your order has shipped",
        "order.track": "Track package",
    }
    german = {
        "Your cart is empty": "Ihr Warenkorb ist leer",
        "Proceed to checkout": "Zur Kasse gehen",
        "Forgot your password?": "Passwort vergessen?",
        "Create an account": "Konto erstellen",
        "Your order has shipped": "Ihre Bestellung wurde versandt",
        "Track package": "Sendung verfolgen",
    }
    limited = {"n": 0}

    @tool
    def translate(text: str, target_lang: str) -> str:
        """Machine-translate a string."""
        limited["n"] += 1
        if limited["n"] == 4:
            return "RATE_LIMITED: quota of 3 requests/second exceeded, retry shortly."
        return german[text]

    order = list(strings)
    replies: list[Any] = [_call(ids, "translate", {"text": strings[k], "target_lang": "de"}) for k in order[:3]]
    replies.append(_call(ids, "translate", {"text": strings[order[3]], "target_lang": "de"}))
    replies += [_call(ids, "translate", {"text": strings[k], "target_lang": "de"}) for k in order[3:]]
    replies.append("All 6 strings translated to German.")
    model = _model(replies).bind_tools([translate])

    def translator(state: _TranslateState, config: RunnableConfig) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"], config)]}

    def run_translation(state: _TranslateState, config: RunnableConfig) -> dict[str, Any]:
        last = state["messages"][-1]
        assert isinstance(last, AIMessage)
        call = last.tool_calls[0]
        result = translate.invoke(call, config)
        done = {} if "RATE_LIMITED" in str(result.content) else {call["args"]["text"]: str(result.content)}
        return {"messages": [result], "translated": done}

    graph = StateGraph(_TranslateState)
    graph.add_node("translator", translator)
    graph.add_node("run_translation", run_translation)
    graph.add_edge(START, "translator")
    graph.add_conditional_edges("translator", lambda s: "run_translation" if s["messages"][-1].tool_calls else END)
    graph.add_edge("run_translation", "translator")
    graph.compile().invoke(
        {
            "strings": strings,
            "pending": order,
            "translated": {},
            "messages": [HumanMessage("Translate these UI strings to German:\n" + json.dumps(strings))],
        },
        _config(callbacks),
    )


# ==============================================================================================================
# PROGRESSING: research
# ==============================================================================================================


@_scenario(
    "market_sizing_research_agent",
    "research",
    looping=False,
    description="Research agent runs five different searches and reads two sources before writing an estimate.",
)
def _market_sizing_research_agent(callbacks: Callbacks) -> None:
    ids = _Ids("market_sizing_research_agent")
    results = {
        "number of dental clinics in Germany 2023": "~43,000 dental practices (BZÄK 2023).",
        "dental practice management software market share Germany": "Top 3 vendors hold ~70%; 'Dampsoft' ~30%.",
        "average software spend per dental practice Europe": "EUR 3,000-6,000 per year per practice (2022 survey).",
        "dental software cloud adoption Germany": "Cloud share ~12% of practices, growing ~20%/yr.",
        "DSGVO requirements patient data cloud Germany": "Requires DPA, EU hosting, encryption at rest.",
    }
    pages = {
        "https://www.bzaek.de/statistik": "Zahnärztliche Praxen 2023: 42,958; Zahnärzte tätig: 72,485.",
        "https://example-research.com/dental-it-2022": "Median IT spend EUR 4,200 per practice per year.",
    }

    @tool
    def web_search(query: str) -> str:
        """Search the web."""
        return results[query]

    @tool
    def read_page(url: str) -> str:
        """Read a web page."""
        return pages[url]

    replies: list[Any] = [_call(ids, "web_search", {"query": q}) for q in list(results)[:3]]
    replies.append(_call(ids, "read_page", {"url": "https://www.bzaek.de/statistik"}))
    replies += [_call(ids, "web_search", {"query": q}) for q in list(results)[3:]]
    replies.append(_call(ids, "read_page", {"url": "https://example-research.com/dental-it-2022"}))
    replies.append("TAM ~ 43k practices x EUR 4.2k = ~EUR 180M/yr; cloud SAM ~EUR 22M growing ~20%/yr (DSGVO-ready).")
    _run_agent(
        callbacks,
        _model(replies, model="gpt-4o"),
        [web_search, read_page],
        "Size the German market for cloud dental practice software.",
        system="You are a market research analyst. Cite numbers.",
    )


class _ResearchJob(TypedDict):
    query: str


class _ResearchState(TypedDict):
    topic: str
    queries: list[str]
    notes: Annotated[list[str], operator.add]
    report: str


@_scenario(
    "research_planner_send_workers",
    "research",
    looping=False,
    description="Planner writes 4 distinct queries, Send fan-out to search+summarize workers, a writer reports.",
)
def _research_planner_send_workers(callbacks: Callbacks) -> None:
    queries = [
        "heat pump installations Europe 2023 by country",
        "heat pump subsidies Germany 2024 changes",
        "heat pump sales decline 2024 reasons",
        "air-to-water heat pump average installed cost Europe",
    ]
    corpus = {
        queries[0]: "EHPA: 2.64M units sold in 2023 (-5%); Italy, France, Germany lead.",
        queries[1]: "BEG 2024: base subsidy 30% + speed bonus 20% + income bonus 30%, capped at 70%.",
        queries[2]: "Sales fell in H1 2024 due to subsidy uncertainty, high rates, and lower gas prices.",
        queries[3]: "Typical installed cost EUR 12k-25k including hydraulic work.",
    }
    planner = _model([json.dumps(queries)], model="o3-mini")
    summarizer = _model([lambda messages: "Note: " + _text(messages[-1]).split("RESULT: ")[1]] * 4)
    writer = _claude(["Heat pumps: 2.64M sold in 2023; 2024 dip from subsidy churn and cheap gas; BEG now up to 70%."])

    @tool
    def search(query: str) -> str:
        """Search a news and statistics index."""
        return corpus[query]

    def plan(state: _ResearchState, config: RunnableConfig) -> dict[str, Any]:
        reply = planner.invoke([HumanMessage(f"Write 4 search queries (JSON list) for: {state['topic']}")], config)
        return {"queries": json.loads(_text(reply))}

    def research(state: _ResearchJob, config: RunnableConfig) -> dict[str, Any]:
        found = search.invoke({"query": state["query"]}, config)
        note = summarizer.invoke([HumanMessage(f"QUERY: {state['query']}\nRESULT: {found}")], config)
        return {"notes": [_text(note)]}

    def write(state: _ResearchState, config: RunnableConfig) -> dict[str, Any]:
        return {"report": _text(writer.invoke([HumanMessage("\n".join(state["notes"]))], config))}

    graph = StateGraph(_ResearchState)
    graph.add_node("plan", plan)
    graph.add_node("research", research, input_schema=_ResearchJob)
    graph.add_node("write", write)
    graph.add_edge(START, "plan")
    graph.add_conditional_edges("plan", lambda s: [Send("research", {"query": q}) for q in s["queries"]], ["research"])
    graph.add_edge("research", "write")
    graph.add_edge("write", END)
    graph.compile().invoke(
        {"topic": "State of the European heat pump market", "queries": [], "notes": [], "report": ""},
        _config(callbacks),
    )


@_scenario(
    "parallel_search_due_diligence",
    "research",
    looping=False,
    description="Agent fires three different searches in parallel, then two targeted follow-ups, then answers.",
)
def _parallel_search_due_diligence(callbacks: Callbacks) -> None:
    ids = _Ids("parallel_search_due_diligence")
    answers = {
        "Lumenfield Robotics funding": "Series B $48M (2023) led by Northstar Ventures.",
        "Lumenfield Robotics customers": "Pilots with two EU grocers; one US 3PL in production.",
        "Lumenfield Robotics lawsuit": "Patent suit by Gridstone Automation filed 2024-02, pending.",
        "Lumenfield patent suit claims": "Claims cover grid-based picking; Lumenfield argues prior art.",
        "Lumenfield Robotics revenue 2023": "Est. $11M ARR (trade press), 3x YoY.",
    }

    @tool
    def search(query: str) -> str:
        """News and company database search."""
        return answers[query]

    first = [("search", {"query": q}) for q in list(answers)[:3]]
    replies: list[Any] = [
        _calls(ids, first, "Searching funding, customers and legal issues in parallel."),
        _call(ids, "search", {"query": "Lumenfield patent suit claims"}),
        _call(ids, "search", {"query": "Lumenfield Robotics revenue 2023"}),
        "Lumenfield: $48M Series B, ~$11M ARR (3x), early customers; main risk is a pending patent suit on "
        "grid picking.",
    ]
    _run_agent(
        callbacks,
        _model(replies, model="gpt-4.1"),
        [search],
        "Quick due diligence on Lumenfield Robotics before our partner meeting.",
    )


# ==============================================================================================================
# PROGRESSING: edit_test_coding
# ==============================================================================================================


@_scenario(
    "fix_failing_tests_agent",
    "edit_test_coding",
    looping=False,
    description="Coding agent runs the same test command three times; failures shrink after each distinct edit.",
)
def _fix_failing_tests_agent(callbacks: Callbacks) -> None:
    ids = _Ids("fix_failing_tests_agent", "toolu_")
    fixes: list[str] = []

    @tool
    def read_file(path: str) -> str:
        """Read a source file."""
        return "def parse_ts(value: str) -> datetime:\n    return datetime.strptime(value, '%Y-%m-%d %H:%M')\n"

    @tool
    def edit_file(path: str, old: str, new: str) -> str:
        """Replace text in a file."""
        fixes.append(new)
        return f"Edited {path}: replaced {len(old)} chars with {len(new)} chars."

    @tool
    def run_tests(target: str) -> str:
        """Run pytest on a target."""
        if not fixes:
            return (
                "FAILED tests/test_time.py::test_iso_format - ValueError: unconverted data remains: :00\n"
                "FAILED tests/test_time.py::test_seconds - ValueError: unconverted data remains: :30\n"
                "FAILED tests/test_time.py::test_timezone - ValueError: unconverted data remains: +02:00\n"
                "3 failed, 9 passed in 0.41s"
            )
        if len(fixes) == 1:
            return (
                "FAILED tests/test_time.py::test_timezone - AssertionError: tzinfo is None, expected UTC+02:00\n"
                "1 failed, 11 passed in 0.38s"
            )
        return "12 passed in 0.36s"

    replies: list[Any] = [
        _call(ids, "read_file", {"path": "app/timeparse.py"}),
        _call(ids, "run_tests", {"target": "tests/test_time.py"}),
        _call(
            ids,
            "edit_file",
            {
                "path": "app/timeparse.py",
                "old": "datetime.strptime(value, '%Y-%m-%d %H:%M')",
                "new": "datetime.fromisoformat(value)",
            },
            "fromisoformat handles seconds and offsets; switching to it.",
        ),
        _call(ids, "run_tests", {"target": "tests/test_time.py"}),
        _call(
            ids,
            "edit_file",
            {
                "path": "app/timeparse.py",
                "old": "datetime.fromisoformat(value)",
                "new": "datetime.fromisoformat(value.replace(' ', 'T'))",
            },
            "The timezone test passes a space separator; normalizing it to 'T'.",
        ),
        _call(ids, "run_tests", {"target": "tests/test_time.py"}),
        "All 12 tests pass: parse_ts now uses datetime.fromisoformat with a normalized separator.",
    ]
    _run_agent(
        callbacks,
        _claude(replies),
        [read_file, edit_file, run_tests],
        "tests/test_time.py is failing, please fix app/timeparse.py.",
        system="You are a careful software engineer. Run the tests after every change.",
    )


class _CodeTestState(TypedDict):
    task: str
    patches: Annotated[list[str], operator.add]
    test_report: str
    passed: bool


@_scenario(
    "coder_tester_graph",
    "edit_test_coding",
    looping=False,
    description="Coder node writes patches, a tester node reports different failures, green on the third patch.",
)
def _coder_tester_graph(callbacks: Callbacks) -> None:
    patches = [
        "def slugify(s):\n    return s.lower().replace(' ', '-')",
        "import re\ndef slugify(s):\n    return re.sub(r'[^a-z0-9]+', '-', s.lower())",
        "import re, unicodedata\ndef slugify(s):\n"
        "    s = unicodedata.normalize('NFKD', s).encode('ascii', 'ignore').decode()\n"
        "    return re.sub(r'[^a-z0-9]+', '-', s.lower()).strip('-')",
    ]
    reports = [
        "FAILED test_punctuation: 'hello,-world!' != 'hello-world'; FAILED test_unicode: 'crème' != 'creme'",
        "FAILED test_unicode: 'cr-me-br-l-e' != 'creme-brulee'; FAILED test_trailing: '-hello-' != 'hello'",
        "PASSED 7/7",
    ]
    coder = _model(patches, model="gpt-4.1")

    def write_code(state: _CodeTestState, config: RunnableConfig) -> dict[str, Any]:
        context = f"Task: {state['task']}\nLast test report: {state['test_report'] or 'n/a'}"
        return {"patches": [_text(coder.invoke([HumanMessage(context)], config))]}

    def run_tests(state: _CodeTestState) -> dict[str, Any]:
        report = reports[len(state["patches"]) - 1]
        return {"test_report": report, "passed": report.startswith("PASSED")}

    graph = StateGraph(_CodeTestState)
    graph.add_node("write_code", write_code)
    graph.add_node("run_tests", run_tests)
    graph.add_edge(START, "write_code")
    graph.add_edge("write_code", "run_tests")
    graph.add_conditional_edges("run_tests", lambda s: END if s["passed"] else "write_code")
    graph.compile().invoke(
        {"task": "Implement slugify() for blog titles.", "patches": [], "test_report": "", "passed": False},
        _config(callbacks),
    )


# ==============================================================================================================
# PROGRESSING: reread_after_edit
# ==============================================================================================================


@_scenario(
    "reread_settings_after_edit",
    "reread_after_edit",
    looping=False,
    description="Agent re-reads the same settings file after each of two edits; the content differs every time.",
)
def _reread_settings_after_edit(callbacks: Callbacks) -> None:
    ids = _Ids("reread_settings_after_edit")
    content = {"text": '[server]\nport = 8000\nworkers = 2\n\n[cache]\nbackend = "memory"\nttl = 60\n'}

    @tool
    def read_file(path: str) -> str:
        """Read a file."""
        return content["text"]

    @tool
    def replace_in_file(path: str, old: str, new: str) -> str:
        """Replace one occurrence of text."""
        content["text"] = content["text"].replace(old, new, 1)
        return f"1 replacement in {path}"

    path = {"path": "deploy/settings.toml"}
    replies: list[Any] = [
        _call(ids, "read_file", path),
        _call(
            ids,
            "replace_in_file",
            {**path, "old": 'backend = "memory"', "new": 'backend = "redis"\nurl = "redis://cache:6379/0"'},
        ),
        _call(ids, "read_file", path, "Re-reading to confirm the cache section."),
        _call(ids, "replace_in_file", {**path, "old": "ttl = 60", "new": "ttl = 300"}),
        _call(ids, "read_file", path, "Re-reading to confirm the cache section."),
        "settings.toml now uses Redis (redis://cache:6379/0) with a 300s TTL.",
    ]
    _run_agent(
        callbacks,
        _model(replies),
        [read_file, replace_in_file],
        "Switch deploy/settings.toml to the Redis cache with a 5 minute TTL.",
    )


@_scenario(
    "runbook_doc_reread_graph",
    "reread_after_edit",
    looping=False,
    description="Docs graph edits three sections of a runbook, reading the document again after each edit.",
)
def _runbook_doc_reread_graph(callbacks: Callbacks) -> None:
    ids = _Ids("runbook_doc_reread_graph", "toolu_")
    doc = {
        "Overview": "Service: ledger. Owner: payments-core.",
        "Alerts": "TODO",
        "Rollback": "TODO",
        "Contacts": "TODO",
    }

    @tool
    def read_doc(doc_id: str) -> str:
        """Read a runbook as markdown."""
        return "\n".join(f"## {k}\n{v}" for k, v in doc.items())

    @tool
    def update_section(doc_id: str, section: str, body: str) -> str:
        """Replace the body of a section."""
        doc[section] = body
        return f"Updated '{section}' ({len(body)} chars)."

    rb = {"doc_id": "runbooks/ledger.md"}
    edits = [
        ("Alerts", "LedgerWriteErrors > 1% for 5m: check Kafka lag, then the DB primary."),
        ("Rollback", "`deployctl rollback ledger --to previous`; verify with the reconciliation job."),
        ("Contacts", "Primary: #payments-core-oncall. Escalation: @ledger-leads."),
    ]
    replies: list[Any] = [_call(ids, "read_doc", rb)]
    for section, body in edits:
        replies.append(_call(ids, "update_section", {**rb, "section": section, "body": body}))
        replies.append(_call(ids, "read_doc", rb))
    replies.append("The ledger runbook now has Alerts, Rollback and Contacts filled in; no TODOs remain.")
    model = _claude(replies).bind_tools([read_doc, update_section])

    def editor(state: MessagesState, config: RunnableConfig) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"], config)]}

    graph = StateGraph(MessagesState)
    graph.add_node("editor", editor)
    graph.add_node("tools", ToolNode([read_doc, update_section]))
    graph.add_edge(START, "editor")
    graph.add_conditional_edges("editor", _route_tools)
    graph.add_edge("tools", "editor")
    graph.compile().invoke(
        {"messages": [HumanMessage("Fill in the TODO sections of the ledger runbook.")]}, _config(callbacks)
    )


# ==============================================================================================================
# PROGRESSING: planner_executor
# ==============================================================================================================


class _PlanState(TypedDict):
    objective: str
    plan: list[str]
    past_steps: Annotated[list[tuple[str, str]], operator.add]
    response: str


@_scenario(
    "plan_and_execute_graph",
    "planner_executor",
    looping=False,
    description="Plan-and-execute: planner emits 4 steps, executor reports distinct results, replanner finishes.",
)
def _plan_and_execute_graph(callbacks: Callbacks) -> None:
    steps = [
        "List the S3 buckets tagged env=staging",
        "Check which of them have public ACLs",
        "Block public access on those buckets",
        "Verify with an access analyzer scan",
    ]
    planner = _model([json.dumps(steps)], model="o3-mini")
    executor = _model(
        [
            "Found 5 staging buckets: stg-assets, stg-logs, stg-exports, stg-tmp, stg-ml.",
            "stg-assets and stg-exports have public-read ACLs.",
            "Enabled BlockPublicAccess on stg-assets and stg-exports.",
            "Access Analyzer: 0 public findings for staging.",
        ]
    )
    replanner = _model(
        [
            json.dumps({"plan": steps[2:]}),
            json.dumps({"response": "Staging is locked down: public access removed from stg-assets and stg-exports."}),
        ],
        model="o3-mini",
    )

    def plan(state: _PlanState, config: RunnableConfig) -> dict[str, Any]:
        return {"plan": json.loads(_text(planner.invoke([HumanMessage(state["objective"])], config)))}

    def execute(state: _PlanState, config: RunnableConfig) -> dict[str, Any]:
        step = state["plan"][0]
        result = _text(executor.invoke([SystemMessage("Execute exactly this step."), HumanMessage(step)], config))
        rest = state["plan"][1:]
        return {"past_steps": [(step, result)], "plan": rest}

    def replan(state: _PlanState, config: RunnableConfig) -> dict[str, Any]:
        done = "\n".join(f"{s}: {r}" for s, r in state["past_steps"])
        decision = json.loads(_text(replanner.invoke([HumanMessage(f"{state['objective']}\nDone:\n{done}")], config)))
        if "response" in decision:
            return {"response": decision["response"], "plan": []}
        return {"plan": decision["plan"]}

    def after_execute(state: _PlanState) -> str:
        return "replan" if len(state["past_steps"]) % 2 == 0 else "execute"

    graph = StateGraph(_PlanState)
    graph.add_node("plan", plan)
    graph.add_node("execute", execute)
    graph.add_node("replan", replan)
    graph.add_edge(START, "plan")
    graph.add_edge("plan", "execute")
    graph.add_conditional_edges("execute", after_execute, ["replan", "execute"])
    graph.add_conditional_edges("replan", lambda s: END if s["response"] else "execute", ["execute", END])
    graph.compile().invoke(
        {"objective": "Make sure no staging S3 bucket is public.", "plan": [], "past_steps": [], "response": ""},
        _config(callbacks),
    )


class _ProjectState(TypedDict):
    goal: str
    step: str
    log: Annotated[list[str], operator.add]


@_scenario(
    "planner_with_agent_executor",
    "planner_executor",
    looping=False,
    description="Planner model issues one step at a time; a create_agent executor with tools carries each out.",
)
def _planner_with_agent_executor(callbacks: Callbacks) -> None:
    ids = _Ids("planner_with_agent_executor")
    planner = _claude(
        [
            "STEP: Create the Jira epic 'Q3 billing revamp'.",
            "STEP: Create the Slack channel #proj-billing-revamp.",
            "STEP: Invite alice, bob and chen to #proj-billing-revamp.",
            "DONE: epic, channel and invites are in place.",
        ]
    )

    @tool
    def create_jira_epic(title: str) -> str:
        """Create a Jira epic."""
        return f"Created epic BILL-812 '{title}'"

    @tool
    def create_slack_channel(name: str) -> str:
        """Create a Slack channel."""
        return f"Created #{name} (C07F3K2)"

    @tool
    def invite_to_channel(channel: str, users: list[str]) -> str:
        """Invite users to a channel."""
        return f"Invited {', '.join(users)} to #{channel}"

    executor = create_agent(
        _model(
            [
                _call(ids, "create_jira_epic", {"title": "Q3 billing revamp"}),
                "Epic BILL-812 created.",
                _call(ids, "create_slack_channel", {"name": "proj-billing-revamp"}),
                "Channel #proj-billing-revamp created.",
                _call(ids, "invite_to_channel", {"channel": "proj-billing-revamp", "users": ["alice", "bob", "chen"]}),
                "alice, bob and chen invited.",
            ]
        ),
        [create_jira_epic, create_slack_channel, invite_to_channel],
        system_prompt="Carry out exactly one step using your tools.",
    )

    def plan_next(state: _ProjectState, config: RunnableConfig) -> dict[str, Any]:
        done = "\n".join(state["log"]) or "nothing yet"
        return {"step": _text(planner.invoke([HumanMessage(f"Goal: {state['goal']}\nDone so far:\n{done}")], config))}

    def execute(state: _ProjectState, config: RunnableConfig) -> dict[str, Any]:
        result = executor.invoke({"messages": [HumanMessage(state["step"])]}, config)
        return {"log": [f"{state['step']} -> {_text(result['messages'][-1])}"]}

    graph = StateGraph(_ProjectState)
    graph.add_node("plan_next", plan_next)
    graph.add_node("execute", execute)
    graph.add_edge(START, "plan_next")
    graph.add_conditional_edges("plan_next", lambda s: END if s["step"].startswith("DONE") else "execute")
    graph.add_edge("execute", "plan_next")
    graph.compile().invoke(
        {"goal": "Kick off the Q3 billing revamp project.", "step": "", "log": []}, _config(callbacks)
    )


# ==============================================================================================================
# PROGRESSING: reflection_improves
# ==============================================================================================================


class _ReflectState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    rounds: int


@_scenario(
    "release_email_reflection_rounds",
    "reflection_improves",
    looping=False,
    description="Draft -> critique -> revision for three rounds; each critique raises a new issue that gets fixed.",
)
def _release_email_reflection_rounds(callbacks: Callbacks) -> None:
    drafts = [
        "Subject: New stuff\n\nHi! We shipped lots of things this month. Check the app.",
        "Subject: March release: scheduled exports and SSO\n\nHi! This month we shipped scheduled exports "
        "and SAML SSO. "
        "Check the app.",
        "Subject: March release: scheduled exports and SSO\n\nHi Alex, scheduled exports let you email any report "
        "daily or weekly, and SAML SSO is now on every Business plan. Try it: Settings -> Exports.",
        "Subject: March release: scheduled exports and SSO\n\nHi Alex, scheduled exports let you email any report "
        "daily or weekly, and SAML SSO is now on every Business plan. Set up an export in two clicks: Settings -> "
        "Exports. Questions? Reply to this email.\n\nP.S. Scheduled exports are free through April.",
    ]
    critiques = [
        "Too vague: name the two headline features in the subject and body.",
        "Better. Now explain the benefit of each feature and personalise the greeting.",
        "Good. End with one clear call to action and mention the free period.",
        "APPROVE",
    ]
    writer = _model(drafts, model="gpt-4o")
    critic = _claude(critiques)

    def draft(state: _ReflectState, config: RunnableConfig) -> dict[str, Any]:
        return {"messages": [writer.invoke(state["messages"], config)], "rounds": state["rounds"] + 1}

    def critique(state: _ReflectState, config: RunnableConfig) -> dict[str, Any]:
        reply = critic.invoke([SystemMessage("You are a demanding editor."), *state["messages"]], config)
        return {"messages": [HumanMessage(_text(reply), name="editor")]}

    graph = StateGraph(_ReflectState)
    graph.add_node("draft", draft)
    graph.add_node("critique", critique)
    graph.add_edge(START, "draft")
    graph.add_edge("draft", "critique")
    graph.add_conditional_edges("critique", lambda s: END if _text(s["messages"][-1]) == "APPROVE" else "draft")
    graph.compile().invoke(
        {"messages": [HumanMessage("Write the March product update email for Business customers.")], "rounds": 0},
        _config(callbacks),
    )


@_scenario(
    "cover_letter_feedback_agent",
    "reflection_improves",
    looping=False,
    description="Agent sends a cover letter to a reviewer tool; each revision fixes new feedback; approved on try 3.",
)
def _cover_letter_feedback_agent(callbacks: Callbacks) -> None:
    ids = _Ids("cover_letter_feedback_agent")

    @tool
    def review_letter(text: str) -> str:
        """Get recruiter-style feedback on a cover letter."""
        if "Kubernetes" not in text:
            return "Feedback: generic. Tie your experience to the job's Kubernetes and Go requirements."
        if "40%" not in text:
            return "Feedback: good match now; add one quantified achievement."
        return "Feedback: strong letter, ready to send."

    letters = [
        "Dear hiring team, I am a motivated engineer who loves building things and would be a great fit.",
        "Dear hiring team, I have run production Kubernetes for five years and write Go daily; I built our "
        "internal deployment operator.",
        "Dear hiring team, I have run production Kubernetes for five years and write Go daily; the deployment "
        "operator I built cut our release time by 40% across 60 services.",
    ]
    replies: list[Any] = [_call(ids, "review_letter", {"text": t}) for t in letters]
    replies.append("Here is your final cover letter; the reviewer marked it ready to send.")
    _run_agent(
        callbacks,
        _model(replies),
        [review_letter],
        "Write a cover letter for the Platform Engineer (Kubernetes, Go) role at Tessellate and get it reviewed.",
    )


# ==============================================================================================================
# PROGRESSING: human_in_the_loop
# ==============================================================================================================


@_scenario(
    "refund_approval_interrupt",
    "human_in_the_loop",
    looping=False,
    description="Support graph proposes a refund, pauses with interrupt() for approval (checkpointer), resumes.",
)
def _refund_approval_interrupt(callbacks: Callbacks) -> None:
    ids = _Ids("refund_approval_interrupt")

    @tool
    def lookup_order(order_id: str) -> str:
        """Order details."""
        return f"{order_id}: 'Aeropress Go' $39.95, delivered 2024-04-29, damaged-in-transit report filed"

    @tool
    def issue_refund(order_id: str, amount: float, reason: str) -> str:
        """Refund an order to the original payment method."""
        return f"Refund re_3PqL of ${amount:.2f} for {order_id} issued ({reason})."

    replies: list[Any] = [
        _call(ids, "lookup_order", {"order_id": "A-77120"}),
        _call(ids, "issue_refund", {"order_id": "A-77120", "amount": 39.95, "reason": "damaged in transit"}),
        "Your refund of $39.95 is on its way; it should appear within 5 business days.",
    ]
    tools = [lookup_order, issue_refund]
    model = _model(replies).bind_tools(tools)

    def agent(state: MessagesState, config: RunnableConfig) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"], config)]}

    def route(state: MessagesState) -> str:
        last = state["messages"][-1]
        if not isinstance(last, AIMessage) or not last.tool_calls:
            return END
        return "human_review" if any(c["name"] == "issue_refund" for c in last.tool_calls) else "tools"

    def human_review(state: MessagesState) -> Command[Literal["tools", "agent"]]:
        last = state["messages"][-1]
        assert isinstance(last, AIMessage)
        decision = interrupt({"action": "issue_refund", "args": last.tool_calls[0]["args"]})
        if decision.get("approved"):
            return Command(goto="tools")
        rejection = ToolMessage("A supervisor rejected this refund.", tool_call_id=last.tool_calls[0]["id"])
        return Command(goto="agent", update={"messages": [rejection]})

    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_node("human_review", human_review)
    graph.add_node("tools", ToolNode(tools))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", route, ["human_review", "tools", END])
    graph.add_edge("tools", "agent")
    app = graph.compile(checkpointer=InMemorySaver())
    config = _config(callbacks, thread="support-A-77120")
    app.invoke({"messages": [HumanMessage("My Aeropress (order A-77120) arrived broken. Refund please.")]}, config)
    app.invoke(Command(resume={"approved": True, "reviewer": "j.ortiz"}), config)


@_scenario(
    "hitl_middleware_email_agent",
    "human_in_the_loop",
    looping=False,
    description="create_agent with HumanInTheLoopMiddleware: send_email is interrupted, approved on resume, sent.",
)
def _hitl_middleware_email_agent(callbacks: Callbacks) -> None:
    ids = _Ids("hitl_middleware_email_agent")

    @tool
    def find_contact(name: str) -> str:
        """Look up a contact's email."""
        return f"{name}: priya.raman@contoso.example (Head of Procurement, Contoso)"

    @tool
    def send_email(to: str, subject: str, body: str) -> str:
        """Send an email."""
        return f"Email to {to} sent (message id <20240502.8812@mail.example>)."

    replies: list[Any] = [
        _call(ids, "find_contact", {"name": "Priya Raman"}),
        _call(
            ids,
            "send_email",
            {
                "to": "priya.raman@contoso.example",
                "subject": "Renewal quote for 2024-25",
                "body": "Hi Priya, attached is the renewal quote we discussed: 180 seats at $31/seat. Best, Sam",
            },
        ),
        "Sent the renewal quote to Priya Raman after your approval.",
    ]
    agent: Any = create_agent(
        _model(replies, model="gpt-4o"),
        [find_contact, send_email],
        system_prompt="You are Sam's email assistant.",
        middleware=[HumanInTheLoopMiddleware(interrupt_on={"send_email": True, "find_contact": False})],
        checkpointer=InMemorySaver(),
    )
    config = _config(callbacks, thread="sam-inbox-0502")
    agent.invoke({"messages": [HumanMessage("Email Priya Raman the renewal quote: 180 seats at $31.")]}, config)
    agent.invoke(Command(resume={"decisions": [{"type": "approve"}]}), config)


class _SocialPostState(TypedDict):
    brief: str
    draft: str
    final: str
    published: str
    confirmation: str


@_scenario(
    "social_post_edit_then_approve",
    "human_in_the_loop",
    looping=False,
    description="Graph drafts a post, a human edits it (interrupt 1), approves the polished version (interrupt 2).",
)
def _social_post_edit_then_approve(callbacks: Callbacks) -> None:
    writer = _model(
        [
            "We're thrilled to announce our new Berlin office!!! Come say hi 🎉",
            "We've opened our Berlin office in Kreuzberg and we're hiring 12 engineers. Come build with us.",
            "Posted. I'll report engagement tomorrow morning.",
        ]
    )

    @tool
    def publish_post(text: str, network: str) -> str:
        """Publish a post."""
        return f"Published to {network}: https://social.example.com/p/88123"

    def draft(state: _SocialPostState, config: RunnableConfig) -> dict[str, Any]:
        return {"draft": _text(writer.invoke([HumanMessage(f"Write a LinkedIn post: {state['brief']}")], config))}

    def human_edit(state: _SocialPostState) -> dict[str, Any]:
        edited = interrupt({"step": "edit", "draft": state["draft"]})
        return {"draft": str(edited)}

    def polish(state: _SocialPostState, config: RunnableConfig) -> dict[str, Any]:
        return {
            "final": _text(writer.invoke([HumanMessage(f"Tighten this, keep the facts: {state['draft']}")], config))
        }

    def human_approve(state: _SocialPostState) -> dict[str, Any]:
        decision = interrupt({"step": "approve", "final": state["final"]})
        return {} if decision == "approve" else {"final": ""}

    def publish(state: _SocialPostState, config: RunnableConfig) -> dict[str, Any]:
        return {"published": str(publish_post.invoke({"text": state["final"], "network": "linkedin"}, config))}

    def confirm(state: _SocialPostState, config: RunnableConfig) -> dict[str, Any]:
        return {
            "confirmation": _text(writer.invoke([HumanMessage(f"Confirm to the user: {state['published']}")], config))
        }

    graph = StateGraph(_SocialPostState)
    graph.add_node("draft", draft)
    graph.add_node("human_edit", human_edit)
    graph.add_node("polish", polish)
    graph.add_node("human_approve", human_approve)
    graph.add_node("publish", publish)
    graph.add_node("confirm", confirm)
    graph.add_edge(START, "draft")
    graph.add_edge("draft", "human_edit")
    graph.add_edge("human_edit", "polish")
    graph.add_edge("polish", "human_approve")
    graph.add_conditional_edges("human_approve", lambda s: "publish" if s["final"] else END, ["publish", END])
    graph.add_edge("publish", "confirm")
    graph.add_edge("confirm", END)
    app = graph.compile(checkpointer=InMemorySaver())
    config = _config(callbacks, thread="post-berlin-office")
    brief = "Berlin office opening, hiring 12 engineers"
    app.invoke({"brief": brief, "draft": "", "final": "", "published": "", "confirmation": ""}, config)
    app.invoke(Command(resume="We've opened our Berlin office (Kreuzberg) and are hiring 12 engineers!"), config)
    app.invoke(Command(resume="approve"), config)


# ==============================================================================================================
# PROGRESSING: tool_error_recovers
# ==============================================================================================================


@_scenario(
    "sql_unknown_column_recovers",
    "tool_error_recovers",
    looping=False,
    description="A query fails on an unknown column; the agent reads the hint, fixes the column and succeeds.",
)
def _sql_unknown_column_recovers(callbacks: Callbacks) -> None:
    ids = _Ids("sql_unknown_column_recovers")

    @tool
    def run_sql(query: str) -> str:
        """Run read-only SQL against the warehouse."""
        if "created)" in query or "created >" in query:
            return (
                'ERROR: column "created" does not exist\n'
                'HINT: Perhaps you meant to reference the column "signups.created_at".'
            )
        return "month | signups\n2024-01 | 4,812\n2024-02 | 5,230\n2024-03 | 6,071"

    bad = "SELECT date_trunc('month', created) AS month, count(*) FROM signups WHERE created > '2024-01-01' GROUP BY 1"
    good = bad.replace("created", "created_at")
    replies: list[Any] = [
        _call(ids, "run_sql", {"query": bad}),
        _call(ids, "run_sql", {"query": good}, "The column is created_at; fixing the query."),
        "Signups grew every month: 4,812 (Jan), 5,230 (Feb), 6,071 (Mar).",
    ]
    _run_agent(callbacks, _model(replies), [run_sql], "Monthly signups so far this year?")


@_scenario(
    "meeting_date_toolexception_graph",
    "tool_error_recovers",
    looping=False,
    description="Calendar tool raises ToolException on a relative date; the model retries with ISO dates and books.",
)
def _meeting_date_toolexception_graph(callbacks: Callbacks) -> None:
    ids = _Ids("meeting_date_toolexception_graph", "toolu_")

    def _book_meeting(title: str, date: str, start: str, attendees: list[str]) -> str:
        """Book a meeting room and send invites."""
        try:
            datetime.strptime(f"{date} {start}", "%Y-%m-%d %H:%M")
        except ValueError as exc:
            raise ToolException(f"Invalid date/time '{date} {start}': expected YYYY-MM-DD and HH:MM (24h).") from exc
        return f"Booked '{title}' on {date} {start} in Room Fjord; invites sent to {len(attendees)} people."

    book_meeting = _lenient(tool("book_meeting")(_book_meeting))
    people = ["lea@corp.example", "omar@corp.example", "wen@corp.example"]
    replies: list[Any] = [
        _call(
            ids, "book_meeting", {"title": "Q3 planning", "date": "next Tuesday", "start": "2pm", "attendees": people}
        ),
        _call(
            ids, "book_meeting", {"title": "Q3 planning", "date": "2024-05-07", "start": "14:00", "attendees": people}
        ),
        "Q3 planning is booked for Tue May 7, 14:00 in Room Fjord; Lea, Omar and Wen are invited.",
    ]
    model = _claude(replies).bind_tools([book_meeting])

    def assistant(state: MessagesState, config: RunnableConfig) -> dict[str, Any]:
        prompt = [SystemMessage("Today is Thursday 2024-05-02."), *state["messages"]]
        return {"messages": [model.invoke(prompt, config)]}

    graph = StateGraph(MessagesState)
    graph.add_node("assistant", assistant)
    graph.add_node("tools", ToolNode([book_meeting]))
    graph.add_edge(START, "assistant")
    graph.add_conditional_edges("assistant", tools_condition)
    graph.add_edge("tools", "assistant")
    graph.compile().invoke(
        {"messages": [HumanMessage("Book Q3 planning next Tuesday at 2pm with Lea, Omar and Wen.")]}, _config(callbacks)
    )


# ==============================================================================================================
# PROGRESSING: progress_reports
# ==============================================================================================================


class _MigrationState(TypedDict):
    tables: list[str]
    index: int
    reports: Annotated[list[str], operator.add]


@_scenario(
    "table_migration_progress",
    "progress_reports",
    looping=False,
    description="Migrates 25 distinct tables; after each the model reports 'step k of 25, p% done' (numbers change).",
)
def _table_migration_progress(callbacks: Callbacks) -> None:
    rng = random.Random("table_migration_progress")
    prefixes = ["orders", "order_items", "customers", "invoices", "payments", "shipments", "returns", "audit"]
    tables = [f"{prefixes[i % len(prefixes)]}_{2019 + i // len(prefixes)}" for i in range(25)]
    rows = {t: rng.randint(10_000, 4_000_000) for t in tables}

    @tool
    def copy_table(table: str, target: str) -> str:
        """Copy a table to the target cluster and verify row counts."""
        return f"{table}: {rows[table]:,} rows copied to {target}, checksums match"

    def progress(messages: Sequence[BaseMessage]) -> str:
        done = int(_text(messages[-1]).split("#")[1].split(" ")[0])
        return f"Progress: step {done} of 25, {done * 100 // 25}% done."

    reporter = _model([progress] * len(tables), model="gpt-4o-mini")

    def migrate_next(state: _MigrationState, config: RunnableConfig) -> dict[str, Any]:
        table = state["tables"][state["index"]]
        result = copy_table.invoke({"table": table, "target": "pg16-prod"}, config)
        note = f"Table #{state['index'] + 1} done. {result}. Report progress to the user."
        report = _text(
            reporter.invoke([SystemMessage("Report migration progress tersely."), HumanMessage(note)], config)
        )
        return {"index": state["index"] + 1, "reports": [report]}

    graph = StateGraph(_MigrationState)
    graph.add_node("migrate_next", migrate_next)
    graph.add_edge(START, "migrate_next")
    graph.add_conditional_edges("migrate_next", lambda s: "migrate_next" if s["index"] < len(s["tables"]) else END)
    graph.compile().invoke({"tables": tables, "index": 0, "reports": []}, _config(callbacks))


@_scenario(
    "image_batch_progress_agent",
    "progress_reports",
    looping=False,
    description="Agent resizes 12 distinct images, narrating 'Processed k of 12 (p%)' alongside each tool call.",
)
def _image_batch_progress_agent(callbacks: Callbacks) -> None:
    ids = _Ids("image_batch_progress_agent")
    images = [
        f"catalog/2024/sku-{n}.png" for n in (1042, 1043, 1077, 1101, 1102, 1150, 1203, 1204, 1219, 1300, 1311, 1320)
    ]

    rng = random.Random("image_batch_progress_agent")
    sizes = {path: rng.uniform(28, 140) for path in images}

    @tool
    def resize_image(path: str, width: int) -> str:
        """Resize an image and upload the rendition."""
        return f"{path} -> {path.replace('.png', f'_{width}w.webp')} ({sizes[path]:.1f} KB)"

    replies: list[Any] = []
    for i, path in enumerate(images):
        text = f"Processed {i} of {len(images)} images ({i * 100 // len(images)}%). Continuing."
        replies.append(_call(ids, "resize_image", {"path": path, "width": 800}, text))
    replies.append("Processed 12 of 12 images (100%). All 800px WebP renditions are uploaded.")
    _run_agent(
        callbacks,
        _model(replies, model="gpt-4.1-mini"),
        [resize_image],
        "Create 800px WebP renditions for these product images: " + ", ".join(images),
    )


# ==============================================================================================================
# PROGRESSING: supervisor_handoff
# ==============================================================================================================


class _FeatureTeamState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    artifacts: Annotated[dict[str, str], operator.or_]


@_scenario(
    "supervisor_tool_routing_team",
    "supervisor_handoff",
    looping=False,
    description="Supervisor routes via a route() tool call to researcher, coder and reviewer in turn, then finishes.",
)
def _supervisor_tool_routing_team(callbacks: Callbacks) -> None:
    ids = _Ids("supervisor_tool_routing_team")
    supervisor_model = _model(
        [
            _call(ids, "route", {"next": "researcher", "instructions": "Find how the Stripe API paginates invoices."}),
            _call(ids, "route", {"next": "coder", "instructions": "Write fetch_all_invoices() using that pagination."}),
            _call(ids, "route", {"next": "reviewer", "instructions": "Review fetch_all_invoices() for edge cases."}),
            _call(ids, "route", {"next": "FINISH", "instructions": "Done."}),
        ],
        model="gpt-4o",
    )
    workers = {
        "researcher": _model(
            ["Stripe lists use cursor pagination: pass starting_after=<last id> while has_more is true."]
        ),
        "coder": _claude(
            [
                "def fetch_all_invoices(client):\n    items, after = [], None\n    while True:\n"
                "        page = client.invoices.list(limit=100, starting_after=after)\n        items += page.data\n"
                "        if not page.has_more:\n            return items\n        after = page.data[-1].id"
            ]
        ),
        "reviewer": _model(["LGTM. One note: add a retry on 429 responses around invoices.list."], model="o3-mini"),
    }

    @tool
    def route(next: str, instructions: str) -> str:
        """Choose the next worker (researcher, coder, reviewer) or FINISH."""
        return next

    bound = supervisor_model.bind_tools([route])

    def supervisor(
        state: _FeatureTeamState, config: RunnableConfig
    ) -> Command[Literal["researcher", "coder", "reviewer", "__end__"]]:
        reply = bound.invoke([SystemMessage("You supervise a small engineering team."), *state["messages"]], config)
        args = reply.tool_calls[0]["args"]
        if args["next"] == "FINISH":
            return Command(
                goto="__end__",
                update={"messages": [reply, ToolMessage("finished", tool_call_id=reply.tool_calls[0]["id"])]},
            )
        ack = ToolMessage(f"Routing to {args['next']}", tool_call_id=reply.tool_calls[0]["id"])
        return Command(
            goto=args["next"], update={"messages": [reply, ack, HumanMessage(args["instructions"], name="supervisor")]}
        )

    def make_worker(name: str) -> Any:  # a node function; Any because add_node's protocols want named params
        def work(state: _FeatureTeamState, config: RunnableConfig) -> dict[str, Any]:
            reply = workers[name].invoke(
                [SystemMessage(f"You are the {name}."), _last_human_message(state["messages"])], config
            )
            return {"messages": [HumanMessage(_text(reply), name=name)], "artifacts": {name: _text(reply)}}

        return work

    graph = StateGraph(_FeatureTeamState)
    graph.add_node("supervisor", supervisor)
    for name in workers:
        graph.add_node(name, make_worker(name))
        graph.add_edge(name, "supervisor")
    graph.add_edge(START, "supervisor")
    graph.compile().invoke(
        {"messages": [HumanMessage("We need a helper that downloads all Stripe invoices.")], "artifacts": {}},
        _config(callbacks),
    )


def _last_human_message(messages: Sequence[BaseMessage]) -> BaseMessage:
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            return message
    raise ValueError("no human message")


@_scenario(
    "swarm_triage_to_billing",
    "supervisor_handoff",
    looping=False,
    description="Swarm of create_agent agents: triage hands off to billing, which resolves the request with tools.",
)
def _swarm_triage_to_billing(callbacks: Callbacks) -> None:
    ids = _Ids("swarm_triage_to_billing")

    @tool
    def get_invoice(invoice_id: str) -> str:
        """Fetch an invoice."""
        return f"{invoice_id}: $249.00 charged 2024-04-30; duplicate of INV-3318 charged 2024-04-29"

    @tool
    def credit_invoice(invoice_id: str, reason: str) -> str:
        """Credit (void) an invoice."""
        return f"Credit note CN-1192 issued for {invoice_id} ({reason}); refund in 3-5 business days."

    to_billing = _handoff_tool("billing", "Hand the customer to billing.")
    to_tech = _handoff_tool("tech_support", "Hand the customer to technical support.")
    triage = create_agent(
        _model([_call(ids, "transfer_to_billing", {}, "This is a billing question; connecting you to billing.")]),
        [to_billing, to_tech],
        system_prompt="Route the customer to the right team.",
        name="triage",
    )
    billing = create_agent(
        _claude(
            [
                _call(ids, "get_invoice", {"invoice_id": "INV-3325"}),
                _call(ids, "credit_invoice", {"invoice_id": "INV-3325", "reason": "duplicate charge"}),
                "INV-3325 was a duplicate of INV-3318, so I've voided it; the $249 refund arrives in "
                "3-5 business days.",
            ]
        ),
        [get_invoice, credit_invoice],
        system_prompt="You are billing support.",
        name="billing",
    )
    tech = create_agent(_model([]), [], system_prompt="You are tech support.", name="tech_support")

    graph = StateGraph(MessagesState)
    graph.add_node("triage", triage, destinations=("billing", "tech_support"))
    graph.add_node("billing", billing)
    graph.add_node("tech_support", tech)
    graph.add_edge(START, "triage")
    graph.compile().invoke(
        {"messages": [HumanMessage("I was charged twice for April, invoice INV-3325 looks like a duplicate.")]},
        _config(callbacks),
    )


# ==============================================================================================================
# PROGRESSING: subgraph_pipeline
# ==============================================================================================================


class _KycSubState(TypedDict):
    applicant: dict[str, str]
    extracted: str
    decisions: Annotated[list[str], operator.add]


class _KycState(TypedDict):
    applicants: list[dict[str, str]]
    index: int
    applicant: dict[str, str]
    decisions: Annotated[list[str], operator.add]


@_scenario(
    "kyc_subgraph_per_applicant",
    "subgraph_pipeline",
    looping=False,
    description="For each of 5 applicants a KYC subgraph node extracts identity fields then scores risk.",
)
def _kyc_subgraph_per_applicant(callbacks: Callbacks) -> None:
    applicants = [
        {"name": "Ines Duarte", "doc": "PT passport CA123456, DOB 1988-02-14", "country": "PT", "source": "salary"},
        {
            "name": "Kwame Mensah",
            "doc": "GH ID GHA-7781-22, DOB 1979-11-02",
            "country": "GH",
            "source": "business sale",
        },
        {
            "name": "Lena Vogel",
            "doc": "DE Personalausweis T22000129, DOB 1995-06-30",
            "country": "DE",
            "source": "salary",
        },
        {
            "name": "Arjun Patel",
            "doc": "IN passport Z9912873, DOB 1983-09-09",
            "country": "IN",
            "source": "crypto gains",
        },
        {"name": "Sofia Marino", "doc": "IT CIE CA00000AA, DOB 1991-12-21", "country": "IT", "source": "inheritance"},
    ]
    risk = {"salary": "low", "business sale": "medium", "crypto gains": "high", "inheritance": "medium"}
    extractor = _model(
        [lambda messages: json.dumps({"id_document": _text(messages[-1]).split("|")[1].strip()})] * len(applicants)
    )
    scorer = _claude(
        [lambda messages: f"risk={risk[_text(messages[-1]).split('source=')[1]]}; proceed"] * len(applicants),
        model="claude-3-5-haiku-latest",
    )

    def extract(state: _KycSubState, config: RunnableConfig) -> dict[str, Any]:
        a = state["applicant"]
        return {"extracted": _text(extractor.invoke([HumanMessage(f"{a['name']} | {a['doc']}")], config))}

    def score(state: _KycSubState, config: RunnableConfig) -> dict[str, Any]:
        a = state["applicant"]
        ask = f"{state['extracted']} country={a['country']} source={a['source']}"
        return {"decisions": [f"{a['name']}: {_text(scorer.invoke([HumanMessage(ask)], config))}"]}

    kyc = StateGraph(_KycSubState)
    kyc.add_node("extract", extract)
    kyc.add_node("score", score)
    kyc.add_edge(START, "extract")
    kyc.add_edge("extract", "score")
    kyc.add_edge("score", END)

    def next_applicant(state: _KycState) -> dict[str, Any]:
        return {"applicant": state["applicants"][state["index"]], "index": state["index"] + 1}

    graph = StateGraph(_KycState)
    graph.add_node("next_applicant", next_applicant)
    graph.add_node("kyc", kyc.compile())
    graph.add_edge(START, "next_applicant")
    graph.add_edge("next_applicant", "kyc")
    graph.add_conditional_edges("kyc", lambda s: "next_applicant" if s["index"] < len(s["applicants"]) else END)
    graph.compile().invoke({"applicants": applicants, "index": 0, "applicant": {}, "decisions": []}, _config(callbacks))


class _FactCheckState(TypedDict):
    draft: str
    verdict: str


class _SectionWriteState(TypedDict):
    heading: str
    facts: str
    draft: str
    verdict: str
    sections: Annotated[list[str], operator.add]


class _AnnualReportState(TypedDict):
    outline: dict[str, str]
    sections: Annotated[list[str], operator.add]
    letter: str


@_scenario(
    "nested_subgraph_annual_report",
    "subgraph_pipeline",
    looping=False,
    description="Send fan-out to a section-writing subgraph that itself contains a fact-check subgraph; then assembly.",
)
def _nested_subgraph_annual_report(callbacks: Callbacks) -> None:
    outline = {
        "Revenue": "FY revenue $182M (+31%); net retention 118%.",
        "Customers": "4,120 customers; 212 over $100k ARR.",
        "Product": "Shipped AI search, EU data residency, and SOC 2 Type II.",
        "Outlook": "Guiding to $225-235M next year; breakeven in Q3.",
    }
    drafts = {facts: f"{heading}: {facts} We are proud of this progress." for heading, facts in outline.items()}
    writer = _model([lambda messages: drafts[_text(messages[-1])]] * len(outline), model="gpt-4o")
    checker = _model([lambda messages: "consistent with source figures"] * len(outline), model="gpt-4o-mini")
    editor = _claude(["Letter to shareholders: a year of 31% growth, 118% NRR, and a path to breakeven in Q3."])

    def check(state: _FactCheckState, config: RunnableConfig) -> dict[str, Any]:
        return {"verdict": _text(checker.invoke([HumanMessage(f"Fact-check: {state['draft']}")], config))}

    fact_check = StateGraph(_FactCheckState)
    fact_check.add_node("check", check)
    fact_check.add_edge(START, "check")
    fact_check.add_edge("check", END)

    def write(state: _SectionWriteState, config: RunnableConfig) -> dict[str, Any]:
        return {
            "draft": _text(
                writer.invoke(
                    [SystemMessage(f"Write the {state['heading']} section."), HumanMessage(state["facts"])], config
                )
            )
        }

    def keep(state: _SectionWriteState) -> dict[str, Any]:
        return {"sections": [f"{state['draft']} [{state['verdict']}]"]}

    section = StateGraph(_SectionWriteState)
    section.add_node("write", write)
    section.add_node("fact_check", fact_check.compile())
    section.add_node("keep", keep)
    section.add_edge(START, "write")
    section.add_edge("write", "fact_check")
    section.add_edge("fact_check", "keep")
    section.add_edge("keep", END)

    def assemble(state: _AnnualReportState, config: RunnableConfig) -> dict[str, Any]:
        return {"letter": _text(editor.invoke([HumanMessage("\n\n".join(state["sections"]))], config))}

    graph = StateGraph(_AnnualReportState)
    graph.add_node("section", section.compile())
    graph.add_node("assemble", assemble)
    graph.add_conditional_edges(
        START,
        lambda s: [
            Send("section", {"heading": h, "facts": f, "draft": "", "verdict": "", "sections": []})
            for h, f in s["outline"].items()
        ],
        ["section"],
    )
    graph.add_edge("section", "assemble")
    graph.add_edge("assemble", END)
    graph.compile().invoke({"outline": outline, "sections": [], "letter": ""}, _config(callbacks))


# ==============================================================================================================
# PROGRESSING: multi_turn_chat (added archetype)
# ==============================================================================================================


@_scenario(
    "support_chat_multi_turn",
    "multi_turn_chat",
    looping=False,
    description="Checkpointed chat over 7 user turns; two 'thanks' turns get the identical polite reply.",
)
def _support_chat_multi_turn(callbacks: Callbacks) -> None:
    welcome = "You're welcome! Is there anything else I can help you with?"
    turns = [
        ("Hi, my invoices show the wrong company address.", "I can fix that. What should the billing address be?"),
        ("Hafenstraße 12, 20359 Hamburg, Germany.", "Done: future invoices will use Hafenstraße 12, 20359 Hamburg."),
        ("Thanks!", welcome),
        (
            "Can the last invoice be reissued too?",
            "Yes. I've reissued INV-9921 with the new address; check your inbox.",
        ),
        ("Great, thank you.", welcome),
        ("Actually, also add our VAT ID DE811907980.", "Added VAT ID DE811907980; it will appear on all new invoices."),
        ("That's all, bye.", "Bye! Have a great day."),
    ]
    model = _model([reply for _, reply in turns])

    def assistant(state: MessagesState, config: RunnableConfig) -> dict[str, Any]:
        return {
            "messages": [
                model.invoke([SystemMessage("You are a billing support assistant."), *state["messages"]], config)
            ]
        }

    graph = StateGraph(MessagesState)
    graph.add_node("assistant", assistant)
    graph.add_edge(START, "assistant")
    graph.add_edge("assistant", END)
    app = graph.compile(checkpointer=InMemorySaver())
    config = _config(callbacks, thread="chat-9f3a")
    for user, _ in turns:
        app.invoke({"messages": [HumanMessage(user)]}, config)


@_scenario(
    "shopping_assistant_multi_turn",
    "multi_turn_chat",
    looping=False,
    description="create_agent with a checkpointer across 4 turns; each turn adds a different item with the same reply.",
)
def _shopping_assistant_multi_turn(callbacks: Callbacks) -> None:
    ids = _Ids("shopping_assistant_multi_turn")
    cart: list[str] = []

    @tool
    def add_to_cart(sku: str, quantity: int) -> str:
        """Add an item to the cart."""
        cart.append(sku)
        return f"Added {quantity} x {sku}; cart has {len(cart)} line(s)."

    @tool
    def view_cart() -> str:
        """Show the cart."""
        return ", ".join(cart)

    items = [("SKU-TENT-2P", 1), ("SKU-MAT-R5", 2), ("SKU-STOVE-PKT", 1)]
    replies: list[Any] = []
    for sku, quantity in items:
        replies += [_call(ids, "add_to_cart", {"sku": sku, "quantity": quantity}), "Added to your cart."]
    replies += [_call(ids, "view_cart", {}), "Your cart: 2-person tent, 2 R5 sleeping mats, pocket stove."]
    agent: Any = create_agent(
        _model(replies),
        [add_to_cart, view_cart],
        system_prompt="You are a shop assistant.",
        checkpointer=InMemorySaver(),
    )
    config = _config(callbacks, thread="shopper-118")
    for user in [
        "Add the 2-person tent please.",
        "And two of the R5 sleeping mats.",
        "Also the pocket stove.",
        "What's in my cart now?",
    ]:
        agent.invoke({"messages": [HumanMessage(user)]}, config)


# ==============================================================================================================
# LOOPING: loops that start late, after a long stretch of real progress
# ==============================================================================================================


class _ReviewBatchState(TypedDict):
    reviews: list[str]
    index: int
    labels: Annotated[list[str], operator.add]


@_scenario(
    "review_batch_index_stuck_loop",
    "repeated_answer_no_input",
    looping=True,
    start=11,
    description="Batch classifier progresses for 10 items, then an unparseable label leaves the index unchanged, so "
    "the same prompt is re-sent until the model finally answers with a valid label.",
)
def _review_batch_index_stuck_loop(callbacks: Callbacks) -> None:
    reviews = _reviews("review_batch_index_stuck_loop", 14)
    labels = dict(reviews)

    def lookup(messages: Sequence[BaseMessage]) -> str:
        return labels[_text(messages[-1])]

    mixed = "Mixed: the product itself is great but delivery was slow."
    classifier = _model([lookup] * 9 + [mixed] * 15 + ["neutral"] + [lookup] * 4, model="gpt-4o-mini")

    def classify(state: _ReviewBatchState, config: RunnableConfig) -> dict[str, Any]:
        review = state["reviews"][state["index"]]
        prompt = [SystemMessage("Label the review: positive, negative or neutral. One word."), HumanMessage(review)]
        label = _text(classifier.invoke(prompt, config)).strip().lower()
        if label not in {"positive", "negative", "neutral"}:
            return {}  # bug: an invalid label neither advances nor tells the model anything
        return {"index": state["index"] + 1, "labels": [label]}

    graph = StateGraph(_ReviewBatchState)
    graph.add_node("classify", classify)
    graph.add_edge(START, "classify")
    graph.add_conditional_edges("classify", lambda s: "classify" if s["index"] < len(s["reviews"]) else END)
    graph.compile().invoke({"reviews": [r for r, _ in reviews], "index": 0, "labels": []}, _config(callbacks))


@_scenario(
    "competitor_research_then_fetch_stuck",
    "stuck_same_call",
    looping=True,
    start=10,
    description="Research agent does 9 distinct searches/fetches, then re-fetches one JS-only pricing page forever.",
)
def _competitor_research_then_fetch_stuck(callbacks: Callbacks) -> None:
    ids = _Ids("competitor_research_then_fetch_stuck")
    searches = {
        "Tallyboard pricing": "Tallyboard: pricing page at https://tallyboard.example/pricing",
        "Tallyboard reviews G2": "4.4/5 from 312 reviews; praised for dashboards, criticized for exports.",
        "Tallyboard funding": "Seed $6M (2022), Series A $21M (2024).",
        "Tallyboard integrations": "Salesforce, HubSpot, Stripe, Snowflake; no NetSuite.",
        "Tallyboard SOC 2": "SOC 2 Type I (2023); Type II in progress.",
    }
    pages = {
        "https://tallyboard.example/customers": "Logos: Brightline, Oakmont Health, Vantage Freight. 1,100+ teams.",
        "https://tallyboard.example/changelog": "Apr: scheduled reports; Mar: row-level security; Feb: API v2.",
        "https://tallyboard.example/security": "Data in AWS eu-central-1 and us-east-1; SSO on Business tier.",
        "https://tallyboard.example/pricing": "Please enable JavaScript to view pricing.",
    }

    @tool
    def web_search(query: str) -> str:
        """Search the web."""
        return searches[query]

    @tool
    def fetch_page(url: str) -> str:
        """Fetch a page's visible text."""
        return pages[url]

    replies: list[Any] = []
    order = list(searches)
    urls = list(pages)
    plan = [order[0], urls[0], order[1], order[2], urls[1], order[3], order[4], urls[2]]
    for item in plan:
        if item.startswith("https://"):
            replies.append(_call(ids, "fetch_page", {"url": item}))
        else:
            replies.append(_call(ids, "web_search", {"query": item}))
    replies.append(_call(ids, "fetch_page", {"url": urls[3]}, "Now the pricing page."))
    replies += [_call(ids, "fetch_page", {"url": urls[3]}, "Now the pricing page.") for _ in range(15)]
    replies.append("Tallyboard: Series A, 4.4/5 on G2, strong integrations except NetSuite; pricing not public.")
    _run_agent(
        callbacks,
        _model(replies, model="gpt-4o"),
        [web_search, fetch_page],
        "Write a competitor profile of Tallyboard, including their pricing.",
    )


@_scenario(
    "warehouse_migration_table_error_loop",
    "error_retry_loop",
    looping=True,
    start=9,
    description="Migration graph copies 7 tables, then retries one copy that fails with the same quota error forever.",
)
def _warehouse_migration_table_error_loop(callbacks: Callbacks) -> None:
    ids = _Ids("warehouse_migration_table_error_loop", "toolu_")
    rng = random.Random("warehouse_migration_table_error_loop")
    tables = ["users", "accounts", "plans", "subscriptions", "invoices", "payments", "refunds", "events_2023"]
    rows = {t: rng.randint(20_000, 9_000_000) for t in tables}

    @tool
    def copy_table(table: str, target: str) -> str:
        """Copy a table to the target cluster."""
        if table == "events_2023":
            return "ERROR: could not extend file: disk quota exceeded on pg16-prod (tablespace fast_ssd is 100% full)"
        return f"{table}: {rows[table]:,} rows copied to {target}"

    replies: list[Any] = [_call(ids, "copy_table", {"table": t, "target": "pg16-prod"}) for t in tables]
    replies += [_call(ids, "copy_table", {"table": "events_2023", "target": "pg16-prod"}) for _ in range(15)]
    replies.append("7 of 8 tables migrated; events_2023 is blocked because pg16-prod's fast_ssd tablespace is full.")
    model = _claude(replies).bind_tools([copy_table])

    def migrator(state: MessagesState, config: RunnableConfig) -> dict[str, Any]:
        return {
            "messages": [
                model.invoke([SystemMessage("Migrate every table, one at a time."), *state["messages"]], config)
            ]
        }

    graph = StateGraph(MessagesState)
    graph.add_node("migrator", migrator)
    graph.add_node("tools", ToolNode([copy_table]))
    graph.add_edge(START, "migrator")
    graph.add_conditional_edges("migrator", tools_condition)
    graph.add_edge("tools", "migrator")
    graph.compile().invoke(
        {"messages": [HumanMessage("Migrate the billing schema tables to pg16-prod: " + ", ".join(tables))]},
        _config(callbacks),
    )


# ==============================================================================================================
# PROGRESSING: long healthy runs
# ==============================================================================================================


@_scenario(
    "tls_cert_expiry_audit",
    "batch_classification",
    looping=False,
    description="Agent checks TLS certificates of 18 distinct domains; almost every result and verdict is 'OK'.",
)
def _tls_cert_expiry_audit(callbacks: Callbacks) -> None:
    ids = _Ids("tls_cert_expiry_audit")
    rng = random.Random("tls_cert_expiry_audit")
    hosts = ["api", "app", "auth", "cdn", "docs", "status", "billing", "admin", "grafana"]
    domains = [f"{h}.{zone}" for zone in ("acme.io", "acme-eu.io") for h in hosts]
    days = {d: rng.randint(35, 380) for d in domains}
    days["grafana.acme-eu.io"] = 9

    @tool
    def check_certificate(domain: str) -> str:
        """Inspect the TLS certificate served by a domain."""
        verdict = "OK" if days[domain] > 21 else "RENEW"
        return f"{verdict}: {domain} valid, issuer R11, expires in {days[domain]} days"

    replies: list[Any] = [_call(ids, "check_certificate", {"domain": d}) for d in domains]
    replies.append("17 of 18 certificates are fine; grafana.acme-eu.io expires in 9 days and needs renewal.")
    _run_agent(
        callbacks,
        _model(replies, model="gpt-4o-mini"),
        [check_certificate],
        "Audit TLS certificate expiry for all public hosts in acme.io and acme-eu.io.",
    )


class _RolloutState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    polls: Annotated[int, operator.add]


@_scenario(
    "k8s_rollout_progress_poll",
    "polling_finishes",
    looping=False,
    description="Graph updates a deployment image and polls rollout status 16 times; updated replicas climb to 20/20.",
)
def _k8s_rollout_progress_poll(callbacks: Callbacks) -> None:
    ids = _Ids("k8s_rollout_progress_poll")
    updated = iter([0, 1, 2, 4, 5, 7, 8, 10, 11, 13, 14, 16, 17, 19, 20, 20])

    @tool
    def set_image(deployment: str, image: str) -> str:
        """Update the container image of a deployment."""
        return f"deployment.apps/{deployment} image updated to {image}"

    @tool
    def rollout_status(deployment: str) -> str:
        """Rollout progress of a deployment."""
        n = next(updated)
        if n == 20:
            return f'deployment "{deployment}" successfully rolled out (20/20 updated, 20 available)'
        return f"Waiting for rollout: {n} of 20 updated replicas are available..."

    replies: list[Any] = [_call(ids, "set_image", {"deployment": "web", "image": "registry.acme.io/web:2024.05.02-1"})]
    replies += [_call(ids, "rollout_status", {"deployment": "web"}) for _ in range(15)]
    replies.append("web is fully rolled out on 2024.05.02-1 (20/20 replicas).")
    tools = [set_image, rollout_status]
    model = _model(replies).bind_tools(tools)

    def operator_node(state: _RolloutState, config: RunnableConfig) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"], config)]}

    graph = StateGraph(_RolloutState)
    graph.add_node("operator", operator_node)
    graph.add_node("tools", ToolNode(tools))
    graph.add_node("tick", lambda s: {"polls": 1})
    graph.add_edge(START, "operator")
    graph.add_conditional_edges("operator", tools_condition)
    graph.add_edge("tools", "tick")
    graph.add_edge("tick", "operator")
    graph.compile().invoke(
        {"messages": [HumanMessage("Deploy web 2024.05.02-1 and watch the rollout.")], "polls": 0}, _config(callbacks)
    )

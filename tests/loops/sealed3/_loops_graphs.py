"""Looping runs of hand-built LangGraph ``StateGraph`` graphs over scripted models."""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Sequence
from typing import Annotated, Any, Literal, TypedDict

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool, StructuredTool, ToolException, tool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.graph.message import add_messages
from langgraph.prebuilt import ToolNode, tools_condition
from langgraph.types import Command

from ._base import SealedScenario
from ._kit import Callbacks, Counter, Ids, ask, config, scripted, uuidish
from ._reflect import REFLECTION_SCENARIOS


def _react(replies: Sequence[Any], tools: Sequence[BaseTool], model: str = "gpt-4o-mini") -> Any:
    """A ReAct loop as a StateGraph: MessagesState, a model node, a ToolNode and ``tools_condition``."""
    bound = scripted(replies, model).bind_tools(tools)

    def agent(state: MessagesState) -> dict[str, list[BaseMessage]]:
        return {"messages": [bound.invoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_node("tools", ToolNode(list(tools)))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition, ["tools", END])
    graph.add_edge("tools", "agent")
    return graph.compile()


def k8s_pod_status_stuck(callbacks: Callbacks) -> None:
    ids = Ids("k8s")

    @tool
    def describe_deployment(name: str, namespace: str) -> str:
        """kubectl describe deployment (summary)."""
        return f"{namespace}/{name}: replicas 3 desired, 0 available; image ledger:2.14.0; rollout started 14m ago."

    @tool
    def get_pods(namespace: str, selector: str) -> str:
        """kubectl get pods -l <selector>."""
        return (
            "NAME                      READY  STATUS            RESTARTS  AGE\n"
            "ledger-7f9c8d6b5-2xkqp    0/1    CrashLoopBackOff  14        14m\n"
            "ledger-7f9c8d6b5-8hz4w    0/1    CrashLoopBackOff  14        14m\n"
            "ledger-7f9c8d6b5-tq9vn    0/1    CrashLoopBackOff  13        14m"
        )

    pods = {"namespace": "payments", "selector": "app=ledger"}
    replies: list[Any] = [
        ask(ids, "describe_deployment", {"name": "ledger", "namespace": "payments"}),
        ask(ids, "get_pods", pods, "No replicas available yet; checking the pods."),
    ]
    replies += [ask(ids, "get_pods", pods, "Waiting for the pods to recover; checking again.") for _ in range(17)]
    replies.append("The ledger rollout is stuck in CrashLoopBackOff on all three pods; roll back to 2.13.")
    _react(replies, [describe_deployment, get_pods], "gpt-4.1").invoke(
        {"messages": [HumanMessage("The ledger service in payments is down after the 2.14 deploy. Is it back?")]},
        config(callbacks),
    )


class CiState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    polls: int


def ci_pipeline_uuid(callbacks: Callbacks) -> None:
    ids = Ids("ci")
    n = Counter()

    @tool
    def trigger_pipeline(repo: str, ref: str) -> str:
        """Start a CI pipeline."""
        return f"Triggered run 88412 for {repo}@{ref} (trace {uuidish('ci', 0)})"

    @tool
    def get_pipeline(run_id: int) -> str:
        """Status of a CI run."""
        return json.dumps({"run_id": run_id, "status": "queued", "position": 3, "trace_id": uuidish("ci", n.tick())})

    def poll(messages: Sequence[BaseMessage]) -> AIMessage:
        last = str(messages[-1].content)
        trace = re.findall(r"[0-9a-f]{8}-[0-9a-f-]{27}", last)[-1]
        if last.startswith("Triggered"):
            return ask(ids, "get_pipeline", {"run_id": 88412}, f"Run 88412 started (trace {trace}); checking status.")
        return ask(ids, "get_pipeline", {"run_id": 88412}, f"Run 88412 still queued (trace {trace}). Checking again.")

    replies: list[Any] = [ask(ids, "trigger_pipeline", {"repo": "billing-service", "ref": "release/2.8"})]
    replies += [poll] * 16
    replies.append("Run 88412 has been queued behind 3 other runs for the whole session; the runners look saturated.")
    tools = {t.name: t for t in (trigger_pipeline, get_pipeline)}
    bound = scripted(replies, "gpt-4o").bind_tools(list(tools.values()))

    def agent(state: CiState) -> dict[str, Any]:
        return {"messages": [bound.invoke(state["messages"])]}

    def execute(state: CiState, config: RunnableConfig) -> dict[str, Any]:
        last = state["messages"][-1]
        assert isinstance(last, AIMessage)
        results = [tools[c["name"]].invoke(c, config) for c in last.tool_calls]
        return {"messages": results, "polls": state["polls"] + 1}

    def route(state: CiState) -> Literal["execute", "__end__"]:
        last = state["messages"][-1]
        return "execute" if isinstance(last, AIMessage) and last.tool_calls else "__end__"

    graph = StateGraph(CiState)
    graph.add_node("agent", agent)
    graph.add_node("execute", execute)
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", route)
    graph.add_edge("execute", "agent")
    graph.compile().invoke(
        {
            "messages": [HumanMessage("Cut release 2.8 of billing-service: run CI and tell me when it's green.")],
            "polls": 0,
        },
        config(callbacks),
    )


def sql_syntax_error_retry(callbacks: Callbacks) -> None:
    ids = Ids("sql")

    @tool
    def list_tables() -> str:
        """List warehouse tables."""
        return "sales, customers, regions, products, refunds"

    @tool
    def describe_table(table: str) -> str:
        """Columns of a table."""
        return f"{table}: order_id BIGINT, region TEXT, amount NUMERIC(12,2), sold_at TIMESTAMP, channel TEXT"

    def _run(query: str) -> str:
        raise ToolException('ERROR: syntax error at or near "LIMT"\nLINE 1: ...BY region ORDER BY 2 DESC LIMT 10')

    run_sql = StructuredTool.from_function(
        _run, name="run_sql", description="Run a read-only SQL query.", handle_tool_error=True
    )
    bad = "SELECT region, SUM(amount) AS revenue FROM sales GROUP BY region ORDER BY 2 DESC LIMT 10"
    replies: list[Any] = [
        ask(ids, "list_tables", {}),
        ask(ids, "describe_table", {"table": "sales"}),
        ask(ids, "run_sql", {"query": bad}),
    ]
    replies += [ask(ids, "run_sql", {"query": bad}, "Let me run the query again.") for _ in range(15)]
    replies.append("The warehouse keeps rejecting the query; I could not get revenue by region.")
    _react(replies, [list_tables, describe_table, run_sql]).invoke(
        {"messages": [HumanMessage("Top 10 regions by revenue, please.")]}, config(callbacks)
    )


class PlanState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


def planner_executor_bounce(callbacks: Callbacks) -> None:
    plan = (
        "Plan for the events_daily rebuild: (1) validate the raw_events schema, (2) backfill partition "
        "2024-06-01 into events_daily, (3) refresh the retention dashboards."
    )
    nxt = "Next step: backfill partition 2024-06-01 of events_daily from raw_events."
    refuse = "Cannot backfill: upstream partition raw_events/dt=2024-06-01 is missing. Returning to planner."
    planner = scripted([plan, *([nxt] * 9), "STOP: escalating the missing raw_events partition to data-eng."])
    executor = scripted(["Step 1 done: raw_events schema matches contract v7 (42 columns).", *([refuse] * 9)])

    def plan_node(state: PlanState) -> dict[str, Any]:
        reply = planner.invoke([SystemMessage("You are the planner of a data pipeline crew."), *state["messages"]])
        return {"messages": [AIMessage(content=reply.content, name="planner")]}

    def exec_node(state: PlanState) -> dict[str, Any]:
        reply = executor.invoke([SystemMessage("You execute one pipeline step at a time."), *state["messages"]])
        return {"messages": [AIMessage(content=reply.content, name="executor")]}

    def after_plan(state: PlanState) -> str:
        return END if str(state["messages"][-1].content).startswith("STOP") else "executor"

    graph = StateGraph(PlanState)
    graph.add_node("planner", plan_node)
    graph.add_node("executor", exec_node)
    graph.add_edge(START, "planner")
    graph.add_conditional_edges("planner", after_plan, ["executor", END])
    graph.add_edge("executor", "planner")
    graph.compile().invoke(
        {"messages": [HumanMessage("Rebuild events_daily for June after the schema change.")]}, config(callbacks)
    )


class ReviewState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    round: int


def code_review_author_bounce(callbacks: Callbacks) -> None:
    patch = (
        "Patch ready for review: session expiry now honours the remember-me flag "
        "(auth/session.py, auth/cookies.py, settings.py)."
    )
    verdict = "Changes requested: there are no tests for session expiry. Please add tests before I can approve."
    author = scripted([patch] * 9, "gpt-4o")
    reviewer = scripted([verdict] * 9, "claude-3-5-sonnet-latest", "anthropic")

    def write(state: ReviewState) -> dict[str, Any]:
        return {"messages": [author.invoke(state["messages"])]}

    def review(state: ReviewState) -> dict[str, Any]:
        reply = reviewer.invoke([SystemMessage("You are a strict code reviewer."), *state["messages"]])
        return {"messages": [HumanMessage(str(reply.content), name="reviewer")], "round": state["round"] + 1}

    def again(state: ReviewState) -> str:
        return END if state["round"] >= 9 else "author"

    graph = StateGraph(ReviewState)
    graph.add_node("author", write)
    graph.add_node("reviewer", review)
    graph.add_edge(START, "author")
    graph.add_edge("author", "reviewer")
    graph.add_conditional_edges("reviewer", again, ["author", END])
    graph.compile().invoke(
        {"messages": [HumanMessage("Fix AUTH-311: remember-me sessions expire after 30 minutes.")], "round": 0},
        config(callbacks),
    )


def db_migration_rotation(callbacks: Callbacks) -> None:
    ids = Ids("mig")

    @tool
    def check_migration_status(migration: str) -> str:
        """Status of a schema migration."""
        return f"{migration}: state=waiting_for_lock rows_copied=0 started=2024-08-02T03:10:40Z"

    @tool
    def list_locks(table: str) -> str:
        """Locks held on a table."""
        return f"pid 48812 holds AccessExclusiveLock on {table} (idle in transaction since 2024-08-02T03:10:44Z)"

    @tool
    def get_replication_lag() -> str:
        """Replication lag of the replicas."""
        return "replica-1: 0.4s, replica-2: 0.3s"

    @tool
    def read_migration_log(lines: int) -> str:
        """Tail of the migration runner log."""
        return "[03:10:40] starting 0042_add_invoice_index\n[03:10:41] acquiring lock on invoices ... waiting"

    cycle: list[tuple[str, dict[str, Any]]] = [
        ("check_migration_status", {"migration": "0042_add_invoice_index"}),
        ("list_locks", {"table": "invoices"}),
        ("get_replication_lag", {}),
        ("read_migration_log", {"lines": 50}),
    ]
    replies: list[Any] = [ask(ids, *cycle[i % 4]) for i in range(21)]
    replies.append("Migration 0042 is blocked by pid 48812 holding a lock on invoices; a DBA must end that session.")
    tools = [check_migration_status, list_locks, get_replication_lag, read_migration_log]
    _react(replies, tools, "gpt-4o").invoke(
        {"messages": [HumanMessage("Migration 0042 has been running for an hour. What's going on?")]},
        config(callbacks),
    )


def support_supervisor_pingpong(callbacks: Callbacks) -> None:
    to_billing = "ROUTE: billing. Customer reports being locked out of the dashboard after a failed card payment."
    to_tech = "ROUTE: technical. Billing found no payment issue on the account."
    billing_says = (
        "Billing check: account paid through 2024-10-31, no payment holds, last charge succeeded. This looks like "
        "an SSO or API-key problem; sending it back for the technical team."
    )
    tech_says = (
        "Technical check: SSO config unchanged and API keys valid. The lockout reason code is BILLING_HOLD, so "
        "billing needs to handle it. Back to the supervisor."
    )
    supervisor = scripted([to_billing, to_tech] * 5 + ["ROUTE: human. Escalating to a support lead."])
    billing = scripted([billing_says] * 5)
    technical = scripted([tech_says] * 5)

    def supervise(state: MessagesState) -> dict[str, Any]:
        return {"messages": [supervisor.invoke([SystemMessage("Route the ticket."), *state["messages"]])]}

    def billing_node(state: MessagesState) -> dict[str, Any]:
        return {"messages": [billing.invoke(state["messages"])]}

    def tech_node(state: MessagesState) -> dict[str, Any]:
        return {"messages": [technical.invoke(state["messages"])]}

    def route(state: MessagesState) -> str:
        text = str(state["messages"][-1].content)
        if text.startswith("ROUTE: billing"):
            return "billing"
        if text.startswith("ROUTE: technical"):
            return "technical"
        return END

    graph = StateGraph(MessagesState)
    graph.add_node("supervisor", supervise)
    graph.add_node("billing", billing_node)
    graph.add_node("technical", tech_node)
    graph.add_edge(START, "supervisor")
    graph.add_conditional_edges("supervisor", route, ["billing", "technical", END])
    graph.add_edge("billing", "supervisor")
    graph.add_edge("technical", "supervisor")
    graph.compile().invoke(
        {"messages": [HumanMessage("Ticket #58213: 'We're locked out of the dashboard since this morning.'")]},
        config(callbacks),
    )


class TeamState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


def analyst_writer_pingpong(callbacks: Callbacks) -> None:
    sup_ids, an_ids = Ids("sup"), Ids("an")

    @tool
    def transfer_to_analyst(task: str) -> str:
        """Hand the task to the data analyst."""
        return "transferred"

    @tool
    def transfer_to_writer(task: str) -> str:
        """Hand the task to the writer."""
        return "transferred"

    @tool
    def query_metrics(metric: str, quarter: str) -> str:
        """Query the metrics warehouse."""
        return f"No data: {metric} for {quarter} is not materialized yet (last load: Q2, value 3.1%)."

    ask_analyst = {"task": "Get the Q3 logo churn rate for the board summary."}
    ask_writer = {"task": "Draft the board summary paragraph on churn."}
    sup_replies: list[Any] = []
    for _ in range(4):
        sup_replies.append(ask(sup_ids, "transfer_to_analyst", ask_analyst))
        sup_replies.append(ask(sup_ids, "transfer_to_writer", ask_writer))
    sup_replies.append("Stopping: the Q3 churn number is unavailable, so the board summary is blocked.")
    an_replies: list[Any] = []
    for _ in range(4):
        an_replies.append(ask(an_ids, "query_metrics", {"metric": "logo_churn", "quarter": "Q3"}))
        an_replies.append("Q3 churn isn't materialized yet; the writer can use the Q2 figure (3.1%) with a caveat.")
    writer_line = "I can't draft the board summary without the Q3 churn number; please get it from the analyst."
    supervisor = scripted(sup_replies, "gpt-4o").bind_tools([transfer_to_analyst, transfer_to_writer])
    analyst = create_agent(scripted(an_replies), [query_metrics], system_prompt="You are a data analyst.")
    writer = scripted([writer_line] * 4, "claude-3-5-haiku-latest", "anthropic")

    def supervise(state: TeamState) -> Command[Any]:
        reply = supervisor.invoke(state["messages"])
        if not reply.tool_calls:
            return Command(update={"messages": [reply]}, goto=END)
        call = reply.tool_calls[0]
        done = ToolMessage(content=f"Handed off: {call['args']['task']}", tool_call_id=str(call["id"]))
        goto = "analyst" if call["name"] == "transfer_to_analyst" else "writer"
        return Command(update={"messages": [reply, done]}, goto=goto)

    def analyst_node(state: TeamState, config: RunnableConfig) -> dict[str, Any]:
        task = HumanMessage("Find the Q3 logo churn rate for the board summary.")
        out = analyst.invoke({"messages": [task]}, config)
        return {"messages": [HumanMessage(str(out["messages"][-1].content), name="analyst")]}

    def writer_node(state: TeamState) -> dict[str, Any]:
        reply = writer.invoke([SystemMessage("You write board updates."), *state["messages"][-3:]])
        return {"messages": [HumanMessage(str(reply.content), name="writer")]}

    graph = StateGraph(TeamState)
    graph.add_node("supervisor", supervise, destinations=("analyst", "writer", END))
    graph.add_node("analyst", analyst_node)
    graph.add_node("writer", writer_node)
    graph.add_edge(START, "supervisor")
    graph.add_edge("analyst", "supervisor")
    graph.add_edge("writer", "supervisor")
    graph.compile().invoke(
        {"messages": [HumanMessage("Prepare the churn paragraph of the Q3 board update.")]}, config(callbacks)
    )


class IntakeState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    hops: int


def legal_intake_pingpong(callbacks: Callbacks) -> None:
    to_contracts = json.dumps({"next": "contracts", "reason": "Dispute over a non-solicit clause in an agreement."})
    to_employment = json.dumps({"next": "employment", "reason": "Contracts says the clause sits in an offer letter."})
    contracts_says = (
        "Contracts review: the non-solicit is in an employment offer letter, not a commercial agreement. "
        "The employment team should take this."
    )
    employment_says = (
        "Employment review: the signatory was engaged as an independent contractor under a vendor MSA, so this "
        "is a commercial contract question for Contracts."
    )
    finish = json.dumps({"next": "FINISH", "reason": "Teams disagree on ownership; escalate to the GC."})
    router = scripted([to_contracts, to_employment] * 6 + [finish], "gpt-4o")
    contracts = scripted([contracts_says] * 6)
    employment = scripted([employment_says] * 6)

    def intake(state: IntakeState) -> Command[Any]:
        reply = router.invoke([SystemMessage('Reply with JSON {"next": team, "reason": ...}.'), *state["messages"]])
        target = json.loads(str(reply.content))["next"]
        goto = END if target == "FINISH" else target
        return Command(update={"messages": [reply], "hops": state["hops"] + 1}, goto=goto)

    def contracts_node(state: IntakeState) -> Command[Any]:
        reply = contracts.invoke(state["messages"])
        return Command(update={"messages": [HumanMessage(str(reply.content), name="contracts")]}, goto="intake")

    def employment_node(state: IntakeState) -> Command[Any]:
        reply = employment.invoke(state["messages"])
        return Command(update={"messages": [HumanMessage(str(reply.content), name="employment")]}, goto="intake")

    graph = StateGraph(IntakeState)
    graph.add_node("intake", intake, destinations=("contracts", "employment", END))
    graph.add_node("contracts", contracts_node, destinations=("intake",))
    graph.add_node("employment", employment_node, destinations=("intake",))
    graph.add_edge(START, "intake")
    graph.compile().invoke(
        {
            "messages": [HumanMessage("Matter 24-0193: former contractor solicited two of our engineers.")],
            "hops": 0,
        },
        config(callbacks),
    )


class ReportState(TypedDict):
    request: str
    outline: str
    attempts: Annotated[list[str], operator.add]
    report: dict[str, Any] | None


def report_writer_validator_loop(callbacks: Callbacks) -> None:
    broken = (
        '{"period": "2024-07", "revenue_by_region": {"NA": 412300, "EMEA": 288150, "APAC": 97400}, '
        '"refunds": 12840, "totals": {"gross": 797850, "net": 785010}'
    )
    fixed = broken + "}"
    outliner = scripted(["Outline: revenue by region, refunds, gross and net totals for July 2024."])
    writer = scripted([broken] * 15 + [fixed], "gpt-4o-mini")

    def outline(state: ReportState) -> dict[str, Any]:
        return {"outline": str(outliner.invoke(state["request"]).content)}

    def write(state: ReportState) -> dict[str, Any]:
        prompt = [SystemMessage("Return the report as one JSON object."), HumanMessage(state["outline"])]
        return {"attempts": [str(writer.invoke(prompt).content)]}

    def validate(state: ReportState) -> dict[str, Any]:
        try:
            return {"report": json.loads(state["attempts"][-1])}
        except json.JSONDecodeError:
            return {"report": None}

    def route(state: ReportState) -> str:
        return END if state["report"] is not None else "write"

    graph = StateGraph(ReportState)
    graph.add_node("outline", outline)
    graph.add_node("write", write)
    graph.add_node("validate", validate)
    graph.add_edge(START, "outline")
    graph.add_edge("outline", "write")
    graph.add_edge("write", "validate")
    graph.add_conditional_edges("validate", route, ["write", END])
    graph.compile().invoke(
        {"request": "Monthly finance report for July 2024", "outline": "", "attempts": [], "report": None},
        config(callbacks),
    )


class StandupState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    posted: bool


def standup_summary_repeat(callbacks: Callbacks) -> None:
    ids = Ids("su")

    @tool
    def fetch_standup_thread(channel: str, date: str) -> str:
        """Fetch the stand-up thread of a Slack channel."""
        return (
            "Amir: finished refund webhooks, starting idempotency keys. Bea: blocked on sandbox creds from "
            "Adyen. Chen: reviewing PR #812, on call today. Dara: out sick."
        )

    variants = [
        "Here's today's stand-up summary for #team-payments: Amir finished the refund webhooks and is starting "
        "idempotency keys; Bea is blocked waiting on Adyen sandbox credentials; Chen is reviewing PR #812 and is "
        "on call; Dara is out sick today. Main blocker: the Adyen sandbox credentials.",
        "Here is today's stand-up summary for #team-payments: Amir finished the refund webhooks and is starting "
        "idempotency keys; Bea is blocked waiting on Adyen sandbox credentials; Chen is reviewing PR #812 and is "
        "on call; Dara is out sick today. Main blocker: the Adyen sandbox credentials.",
        "Here's today's stand-up summary for #team-payments: Amir finished the refund webhooks and is starting "
        "idempotency keys; Bea is blocked waiting on Adyen sandbox credentials; Chen is reviewing PR #812 and is "
        "on call; Dara is out sick. Main blocker: the Adyen sandbox credentials!",
        "Here's today's stand-up summary for #team-payments: Amir finished the refund webhooks and is starting "
        "idempotency keys, Bea is blocked waiting on Adyen sandbox credentials, Chen is reviewing PR #812 and is "
        "on call, Dara is out sick today. Main blocker: the Adyen sandbox credentials.",
    ]
    short = "Stand-up #team-payments: Amir→idempotency keys; Bea blocked (Adyen creds); Chen on call; Dara out."
    replies: list[Any] = [ask(ids, "fetch_standup_thread", {"channel": "#team-payments", "date": "2024-08-05"})]
    replies += [variants[i % 4] for i in range(16)]
    replies.append(short)
    bound = scripted(replies, "gpt-4o-mini").bind_tools([fetch_standup_thread])

    def agent(state: StandupState) -> dict[str, Any]:
        return {"messages": [bound.invoke(state["messages"])]}

    def post(state: StandupState) -> dict[str, Any]:
        return {"posted": len(str(state["messages"][-1].content)) <= 200}

    def after_agent(state: StandupState) -> str:
        last = state["messages"][-1]
        return "tools" if isinstance(last, AIMessage) and last.tool_calls else "post"

    def after_post(state: StandupState) -> str:
        return END if state["posted"] else "agent"

    graph = StateGraph(StandupState)
    graph.add_node("agent", agent)
    graph.add_node("tools", ToolNode([fetch_standup_thread]))
    graph.add_node("post", post)
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", after_agent, ["tools", "post"])
    graph.add_edge("tools", "agent")
    graph.add_conditional_edges("post", after_post, ["agent", END])
    graph.compile().invoke(
        {
            "messages": [HumanMessage("Post a stand-up summary (max 200 chars) for #team-payments, 2024-08-05.")],
            "posted": False,
        },
        config(callbacks),
    )


def s3_listing_same_token(callbacks: Callbacks) -> None:
    ids = Ids("s3")

    @tool
    def list_objects(bucket: str, prefix: str, continuation_token: str = "") -> str:
        """List up to 1000 object keys; pass the returned next_token to continue."""
        if not continuation_token:
            return "1000 keys: 2024/08/01/events-00000.parquet ... 2024/08/03/events-00999.parquet; next_token=tok_A1"
        return "1000 keys: 2024/08/04/events-01000.parquet ... 2024/08/06/events-01999.parquet; next_token=tok_A1"

    base = {"bucket": "acme-raw-events", "prefix": "2024/08/"}
    replies: list[Any] = [ask(ids, "list_objects", base)]
    replies += [ask(ids, "list_objects", {**base, "continuation_token": "tok_A1"}) for _ in range(16)]
    replies.append("Listed the August event files.")
    _react(replies, [list_objects], "gpt-4.1-mini").invoke(
        {"messages": [HumanMessage("How many parquet files landed in acme-raw-events for August 2024?")]},
        config(callbacks, 300),
    )


def case_law_search_reworded(callbacks: Callbacks) -> None:
    ids = Ids("law")

    @tool
    def search_cases(query: str, jurisdiction: str) -> str:
        """Search case law."""
        return (
            "2 results: (1) Edwards v. Arthur Andersen LLP, 44 Cal.4th 937 (2008); "
            "(2) AMN Healthcare v. Aya Healthcare, 28 Cal.App.5th 923 (2018)."
        )

    queries = [
        "non-solicitation of employees enforceability independent contractor California",
        "employee non-solicit clause contractor agreement California enforceable",
        "is a no-poach provision in a consulting agreement valid in California",
        "California Business and Professions Code 16600 contractor non-solicitation",
        "enforceability of non-solicit covenant signed by a freelancer California",
        "contractor solicited employees breach of non-solicitation California court",
        "no-hire clause independent consultant California appellate decision",
        "non-solicitation agreement void 16600 consultant",
        "California courts on employee non-solicit in vendor contracts",
        "covenant not to solicit employees contractor enforceable CA",
        "anti-poaching clause consultant enforceability California",
        "non-solicit of staff by former contractor California law",
        "California 16600 non-solicitation clause independent contractor case",
        "poaching employees contractor agreement California precedent",
    ]
    replies: list[Any] = [ask(ids, "search_cases", {"query": q, "jurisdiction": "CA"}) for q in queries]
    replies.append("California courts (Edwards; AMN Healthcare) treat such non-solicits as likely void under 16600.")
    _react(replies, [search_cases], "claude-3-5-sonnet-latest").invoke(
        {"messages": [HumanMessage("Find authority on whether a contractor's employee non-solicit holds up in CA.")]},
        config(callbacks),
    )


class EnrichState(TypedDict):
    company: str
    profile: str
    verdicts: Annotated[list[str], operator.add]


class EnrichInput(TypedDict):
    company: str


class EnrichInner(TypedDict):
    company: str
    profile: str
    messages: Annotated[list[AnyMessage], add_messages]


def enrichment_subgraph_loop(callbacks: Callbacks) -> None:
    ids = Ids("enr")

    @tool
    def lookup_company(domain: str) -> str:
        """Firmographic lookup by domain."""
        return "Brightline Robotics, Pittsburgh PA, industry: warehouse automation, founded 2017."

    research_replies = [ask(ids, "lookup_company", {"domain": "brightline-robotics.com"}) for _ in range(6)]
    profile = "Brightline Robotics (Pittsburgh, PA) builds warehouse automation systems; founded 2017."
    verdict = "Score 0.42: headcount and funding are missing; re-run enrichment."
    researcher = scripted(research_replies).bind_tools([lookup_company])
    writer = scripted([profile] * 6)
    judge = scripted([verdict] * 5 + ["Score 0.42 again after 6 attempts; giving up on this record."], "gpt-4o")

    def research(state: EnrichInner) -> dict[str, Any]:
        ask_msg = HumanMessage(f"Enrich the company at {state['company']}.")
        return {"messages": [ask_msg, researcher.invoke([ask_msg])]}

    def write(state: EnrichInner) -> dict[str, Any]:
        return {"profile": str(writer.invoke(state["messages"]).content)}

    inner = StateGraph(EnrichInner, input_schema=EnrichInput)
    inner.add_node("research", research)
    inner.add_node("lookup", ToolNode([lookup_company]))
    inner.add_node("write", write)
    inner.add_edge(START, "research")
    inner.add_edge("research", "lookup")
    inner.add_edge("lookup", "write")
    inner.add_edge("write", END)

    def score(state: EnrichState) -> dict[str, Any]:
        reply = judge.invoke([HumanMessage(f"Score this CRM profile 0-1 for completeness:\n{state['profile']}")])
        return {"verdicts": [str(reply.content)]}

    def again(state: EnrichState) -> str:
        return END if "giving up" in state["verdicts"][-1] else "enrich"

    graph = StateGraph(EnrichState)
    graph.add_node("enrich", inner.compile())
    graph.add_node("score", score)
    graph.add_edge(START, "enrich")
    graph.add_edge("enrich", "score")
    graph.add_conditional_edges("score", again, ["enrich", END])
    graph.compile().invoke({"company": "brightline-robotics.com", "profile": "", "verdicts": []}, config(callbacks))


class GeoInner(TypedDict):
    raw: str
    normalized: str


class GeoState(TypedDict):
    text: str
    address: str
    normalized: str
    tries: int


def geocode_subgraph_loop(callbacks: Callbacks) -> None:
    extractor = scripted(["Unit 4, 22 Mill Rd, Cambridge"])
    out = "22 Mill Road, Cambridge CB1 2AD, United Kingdom"
    normalizer = scripted([out] * 15 + ["Unit 4, 22 Mill Road, Cambridge CB1 2AD, United Kingdom"], "gpt-4o-mini")

    def normalize(state: GeoInner) -> dict[str, Any]:
        prompt = [SystemMessage("Normalize the postal address (Royal Mail format)."), HumanMessage(state["raw"])]
        return {"normalized": str(normalizer.invoke(prompt).content)}

    sub = StateGraph(GeoInner)
    sub.add_node("normalize", normalize)
    sub.add_edge(START, "normalize")
    sub.add_edge("normalize", END)
    normalizer_graph = sub.compile()

    def extract(state: GeoState) -> dict[str, Any]:
        return {"address": str(extractor.invoke(f"Extract the delivery address: {state['text']}").content)}

    def geocode(state: GeoState, config: RunnableConfig) -> dict[str, Any]:
        result = normalizer_graph.invoke({"raw": state["address"], "normalized": ""}, config)
        return {"normalized": result["normalized"], "tries": state["tries"] + 1}

    def check(state: GeoState) -> str:
        return END if state["normalized"].startswith("Unit 4") else "geocode"

    graph = StateGraph(GeoState)
    graph.add_node("extract", extract)
    graph.add_node("geocode", geocode)
    graph.add_edge(START, "extract")
    graph.add_edge("extract", "geocode")
    graph.add_conditional_edges("geocode", check, ["geocode", END])
    graph.compile().invoke(
        {
            "text": "Please deliver to Unit 4, 22 Mill Rd, Cambridge. Ring twice.",
            "address": "",
            "normalized": "",
            "tries": 0,
        },
        config(callbacks),
    )


SCENARIOS = [
    SealedScenario(
        "k8s_pod_status_stuck",
        "stuck_same_call",
        True,
        3,
        "StateGraph: ReAct with ToolNode; kubectl get pods re-run forever on a CrashLoopBackOff rollout.",
        k8s_pod_status_stuck,
    ),
    SealedScenario(
        "ci_pipeline_uuid",
        "volatile_result_loop",
        True,
        3,
        "StateGraph: custom tool executor; CI run stays queued, each status carries a fresh trace UUID that the "
        "model echoes in its text.",
        ci_pipeline_uuid,
    ),
    SealedScenario(
        "sql_syntax_error_retry",
        "error_retry_loop",
        True,
        4,
        "StateGraph: ToolNode; the same misspelled SQL resubmitted, the same syntax error every time.",
        sql_syntax_error_retry,
    ),
    SealedScenario(
        "planner_executor_bounce",
        "ab_alternation",
        True,
        5,
        "StateGraph: planner and executor bounce 'backfill partition' / 'upstream partition missing'.",
        planner_executor_bounce,
    ),
    SealedScenario(
        "code_review_author_bounce",
        "ab_alternation",
        True,
        3,
        "StateGraph: author re-submits the same patch, reviewer repeats 'add tests'.",
        code_review_author_bounce,
    ),
    SealedScenario(
        "db_migration_rotation",
        "rotation_loop",
        True,
        5,
        "StateGraph: ReAct with ToolNode cycling four migration diagnostics with frozen results.",
        db_migration_rotation,
    ),
    SealedScenario(
        "support_supervisor_pingpong",
        "supervisor_pingpong",
        True,
        5,
        "StateGraph: supervisor routes a lockout ticket between billing and technical, each sending it back.",
        support_supervisor_pingpong,
    ),
    SealedScenario(
        "analyst_writer_pingpong",
        "supervisor_pingpong",
        True,
        6,
        "StateGraph + create_agent: tool-calling supervisor hands off to an analyst sub-agent and a writer that "
        "each defer to the other.",
        analyst_writer_pingpong,
    ),
    SealedScenario(
        "legal_intake_pingpong",
        "supervisor_pingpong",
        True,
        5,
        "StateGraph: Command-based intake router bouncing a matter between contracts and employment teams.",
        legal_intake_pingpong,
    ),
    SealedScenario(
        "report_writer_validator_loop",
        "repeated_answer_no_input",
        True,
        3,
        "StateGraph: a JSON validator sends the writer back with no feedback; the same broken JSON is returned.",
        report_writer_validator_loop,
    ),
    SealedScenario(
        "standup_summary_repeat",
        "repeated_answer_no_input",
        True,
        3,
        "StateGraph: a length check re-runs the agent without new input; near-identical summaries come back.",
        standup_summary_repeat,
    ),
    SealedScenario(
        "s3_listing_same_token",
        "pagination_stuck",
        True,
        3,
        "StateGraph: ToolNode; the listing keeps returning the same continuation token and the model reuses it.",
        s3_listing_same_token,
    ),
    SealedScenario(
        "case_law_search_reworded",
        "reworded_search_loop",
        True,
        2,
        "StateGraph: ToolNode; case-law search reworded 14 ways, the same two results each time.",
        case_law_search_reworded,
    ),
    SealedScenario(
        "enrichment_subgraph_loop",
        "subgraph_loop",
        True,
        4,
        "StateGraph: enrichment subgraph (model, ToolNode, model) as a node, re-run with identical input after "
        "an identical judge verdict.",
        enrichment_subgraph_loop,
    ),
    SealedScenario(
        "geocode_subgraph_loop",
        "subgraph_loop",
        True,
        3,
        "StateGraph: a compiled normalizer subgraph invoked from a node with the same address until it passes.",
        geocode_subgraph_loop,
    ),
    *REFLECTION_SCENARIOS,
]

"""Progressing hand-built StateGraph runs: tool loops, planners, reflection, approvals, supervisors."""

from __future__ import annotations

import hashlib
import json
import operator
from collections.abc import Sequence
from typing import Annotated, Any, TypedDict

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool, StructuredTool, ToolException, tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.graph.message import add_messages
from langgraph.prebuilt import ToolNode, tools_condition
from langgraph.types import Command, Send, interrupt

from ._base import SealedScenario
from ._kit import Callbacks, Counter, Ids, ask, config, last_text, scripted


class AgentLoopState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    steps: int


def _tool_loop(replies: Sequence[Any], tools: Sequence[BaseTool], system: str, model: str = "gpt-4o-mini") -> Any:
    """A tool-using agent as a StateGraph with a step counter and a system prompt added at call time."""
    bound = scripted(replies, model).bind_tools(tools)

    def agent(state: AgentLoopState) -> dict[str, Any]:
        reply = bound.invoke([SystemMessage(system), *state["messages"]])
        return {"messages": [reply], "steps": state["steps"] + 1}

    graph = StateGraph(AgentLoopState)
    graph.add_node("agent", agent)
    graph.add_node("tools", ToolNode(list(tools)))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition, ["tools", END])
    graph.add_edge("tools", "agent")
    return graph.compile()


def _start(text: str) -> dict[str, Any]:
    return {"messages": [HumanMessage(text)], "steps": 0}


# --- pagination with cursors --------------------------------------------------------------------------------------

_ISSUE_PAGES: dict[str, tuple[list[str], str | None]] = {
    "": (["#4410 Flaky test in auth_spec", "#4408 Docs: broken link", "#4405 Crash on empty config"], "Y3VyOjM="),
    "Y3VyOjM=": (["#4399 Memory leak in watcher", "#4391 Windows path bug", "#4388 Typo in CLI help"], "Y3VyOjY="),
    "Y3VyOjY=": (["#4377 Slow startup with plugins", "#4370 Race in cache eviction"], "Y3VyOjg="),
    "Y3VyOjg=": (["#4362 Timezone off-by-one", "#4351 Lockfile not respected"], "Y3VyOjEw"),
    "Y3VyOjEw": (["#4340 Deprecated API warning"], None),
}


def github_issues_cursor(callbacks: Callbacks) -> None:
    ids = Ids("gh")

    @tool
    def list_issues(repo: str, label: str, cursor: str = "") -> str:
        """List open issues with a label; pass next_cursor to get the next page."""
        rows, nxt = _ISSUE_PAGES[cursor]
        return json.dumps({"issues": rows, "next_cursor": nxt})

    replies: list[Any] = [ask(ids, "list_issues", {"repo": "acme/cli", "label": "bug"})]
    replies += [
        ask(ids, "list_issues", {"repo": "acme/cli", "label": "bug", "cursor": c})
        for c in ("Y3VyOjM=", "Y3VyOjY=", "Y3VyOjg=", "Y3VyOjEw")
    ]
    replies.append("11 open bugs. Crash/leak/race first: #4405, #4399, #4370; then #4410 (flaky) and #4362 (tz).")
    _tool_loop(replies, [list_issues], "You triage GitHub issues.").invoke(
        _start("Give me all open bugs in acme/cli, most severe first."), config(callbacks)
    )


# --- polling until done -------------------------------------------------------------------------------------------


def dns_propagation_polling(callbacks: Callbacks) -> None:
    ids = Ids("dns")
    polls = Counter()

    @tool
    def upsert_record(zone: str, name: str, rtype: str, value: str) -> str:
        """Create or update a DNS record."""
        return f"Change C0412XK submitted for {name} {rtype} -> {value}; status PENDING."

    @tool
    def get_change(change_id: str) -> str:
        """Status of a DNS change batch."""
        return f"{change_id}: status INSYNC" if polls.tick() > 3 else f"{change_id}: status PENDING"

    @tool
    def dig(name: str, resolver: str) -> str:
        """Resolve a name against a resolver."""
        return f"{name}. 300 IN A 203.0.113.42 (via {resolver})"

    replies: list[Any] = [
        ask(
            ids,
            "upsert_record",
            {"zone": "example.com", "name": "status.example.com", "rtype": "A", "value": "203.0.113.42"},
        ),
    ]
    replies += [ask(ids, "get_change", {"change_id": "C0412XK"}) for _ in range(4)]
    replies += [
        ask(ids, "dig", {"name": "status.example.com", "resolver": "1.1.1.1"}),
        "status.example.com now points to 203.0.113.42; the change is in sync and resolves publicly.",
    ]
    _tool_loop(replies, [upsert_record, get_change, dig], "You are a DNS operations agent.", "gpt-4.1-mini").invoke(
        _start("Point status.example.com at the new status page host 203.0.113.42 and confirm it's live."),
        config(callbacks),
    )


# --- retry then success (ToolException handled by the tool) -------------------------------------------------------


def build_artifact_upload_retry(callbacks: Callbacks) -> None:
    ids = Ids("rel")
    uploads = Counter()

    @tool
    def build(target: str) -> str:
        """Build a release artifact."""
        return f"built dist/{target}-2.8.0.tar.gz (14.2 MB, sha256 9f2c1e...)"

    def _upload(path: str, bucket: str) -> str:
        if uploads.tick() == 1:
            raise ToolException("Connection reset by peer while uploading part 3/4")
        return f"uploaded s3://{bucket}/{path.rsplit('/', maxsplit=1)[-1]}"

    upload_artifact = StructuredTool.from_function(
        _upload, name="upload_artifact", description="Upload a file to a bucket.", handle_tool_error=True
    )

    @tool
    def create_release(tag: str, artifact_url: str) -> str:
        """Create a GitHub release."""
        return f"Release {tag} published with 1 asset."

    up = {"path": "dist/app-2.8.0.tar.gz", "bucket": "acme-releases"}
    replies: list[Any] = [
        ask(ids, "build", {"target": "app"}),
        ask(ids, "upload_artifact", up),
        ask(ids, "upload_artifact", up, "Transient network error; retrying the upload."),
        ask(ids, "create_release", {"tag": "v2.8.0", "artifact_url": "s3://acme-releases/app-2.8.0.tar.gz"}),
        "v2.8.0 is released; the upload needed one retry after a connection reset.",
    ]
    _tool_loop(replies, [build, upload_artifact, create_release], "You are a release engineer.").invoke(
        _start("Cut the v2.8.0 release."), config(callbacks)
    )


# --- rate limit clears --------------------------------------------------------------------------------------------

_STOPS = [
    "1 Ferry Building, San Francisco, CA",
    "2 Embarcadero Center, San Francisco, CA",
    "500 Terry A Francois Blvd, San Francisco, CA",
    "1 Warriors Way, San Francisco, CA",
    "3251 20th Ave, San Francisco, CA",
    "Pier 39, San Francisco, CA",
]


def geocoder_rate_limit(callbacks: Callbacks) -> None:
    ids = Ids("geo")
    third = Counter()

    @tool
    def geocode(address: str) -> str:
        """Geocode an address."""
        if address == _STOPS[2] and third.tick() <= 2:
            return "OVER_QUERY_LIMIT: rate limited, retry after 1s."
        h = int(hashlib.sha256(address.encode()).hexdigest()[:6], 16)
        return f"{address}: lat 37.{7400 + h % 600}, lng -122.{3800 + h % 900}"

    replies: list[Any] = [ask(ids, "geocode", {"address": a}) for a in _STOPS[:3]]
    replies += [ask(ids, "geocode", {"address": _STOPS[2]}) for _ in range(2)]
    replies += [ask(ids, "geocode", {"address": a}) for a in _STOPS[3:]]
    replies.append("All 6 stops geocoded (one needed two retries after rate limiting); ready for route planning.")
    _tool_loop(replies, [geocode], "You prepare delivery routes.", "gpt-4o").invoke(
        _start("Geocode today's six delivery stops:\n" + "\n".join(_STOPS)), config(callbacks)
    )


# --- research: plan queries, Send searches, synthesize ------------------------------------------------------------

_QUERIES = {
    "apixaban clarithromycin interaction": "CYP3A4/P-gp inhibition raises apixaban exposure ~60%; bleeding risk.",
    "apixaban dose adjustment strong CYP3A4 inhibitors": "Label: reduce 5 mg BID to 2.5 mg BID with strong dual "
    "inhibitors; avoid if already on 2.5 mg.",
    "clarithromycin alternatives drug interactions anticoagulants": "Azithromycin has minimal CYP3A4 inhibition.",
    "apixaban bleeding risk elderly renal impairment": "Age >=80 or Cr >=1.5 mg/dL increases bleeding risk.",
}


class ResearchState(TypedDict):
    question: str
    queries: list[str]
    findings: Annotated[list[str], operator.add]
    answer: str


class Query(TypedDict):
    query: str


def drug_interaction_research(callbacks: Callbacks) -> None:
    @tool
    def search_literature(query: str) -> str:
        """Search drug-interaction references."""
        return _QUERIES[query]

    planner = scripted([json.dumps(list(_QUERIES))], "gpt-4o")

    def finding(messages: Sequence[BaseMessage]) -> str:
        return "Finding: " + last_text(messages)

    reader = scripted([finding] * len(_QUERIES), "gpt-4o-mini")
    writer = scripted(
        [
            "Clarithromycin strongly inhibits CYP3A4 and P-gp and raises apixaban exposure, increasing bleeding "
            "risk, especially in an 82-year-old. Prefer azithromycin; if clarithromycin is essential, the label "
            "advises reducing apixaban 5 mg BID to 2.5 mg BID during therapy."
        ],
        "gpt-4o",
    )

    def plan(state: ResearchState) -> dict[str, Any]:
        reply = planner.invoke(
            [SystemMessage("Plan 4 literature searches as a JSON list."), HumanMessage(state["question"])]
        )
        return {"queries": json.loads(str(reply.content))}

    def fan_out(state: ResearchState) -> list[Send]:
        return [Send("search", {"query": q}) for q in state["queries"]]

    def search(state: Query, config: RunnableConfig) -> dict[str, Any]:
        text = search_literature.invoke({"query": state["query"]}, config)
        reply = reader.invoke([SystemMessage("State the clinically relevant finding."), HumanMessage(text)])
        return {"findings": [str(reply.content)]}

    def synthesize(state: ResearchState) -> dict[str, Any]:
        prompt = [SystemMessage("Answer the pharmacist."), HumanMessage("\n".join(state["findings"]))]
        return {"answer": str(writer.invoke(prompt).content)}

    graph = StateGraph(ResearchState)
    graph.add_node("plan", plan)
    graph.add_node("search", search)
    graph.add_node("synthesize", synthesize)
    graph.add_edge(START, "plan")
    graph.add_conditional_edges("plan", fan_out, ["search"])
    graph.add_edge("search", "synthesize")
    graph.add_edge("synthesize", END)
    graph.compile().invoke(
        {
            "question": "82-year-old on apixaban 5 mg BID is prescribed clarithromycin. Safe?",
            "queries": [],
            "findings": [],
            "answer": "",
        },
        config(callbacks, max_concurrency=1),
    )


# --- edit / check coding loop -------------------------------------------------------------------------------------


def lint_and_type_fix(callbacks: Callbacks) -> None:
    ids = Ids("typ")
    patches = Counter()

    @tool
    def run_mypy(path: str) -> str:
        """Run mypy --strict."""
        if patches.n == 0:
            return (
                "billing/tax.py:14: error: Function is missing a return type annotation\n"
                'billing/tax.py:22: error: Argument 1 to "round" has incompatible type "str"\n'
                'billing/tax.py:31: error: Item "None" of "Rate | None" has no attribute "pct"\n'
                'billing/tax.py:40: error: Returning Any from function declared to return "Decimal"\n'
                "Found 4 errors in 1 file"
            )
        if patches.n == 1:
            return (
                'billing/tax.py:31: error: Item "None" of "Rate | None" has no attribute "pct"\n'
                'billing/tax.py:44: error: Incompatible return value type (got "float", expected "Decimal")\n'
                "Found 2 errors in 1 file"
            )
        return "Success: no issues found in 1 source file"

    @tool
    def apply_patch(file: str, diff: str) -> str:
        """Apply a unified diff."""
        patches.tick()
        return f"Applied patch to {file} ({diff.count(chr(10)) + 1} lines)."

    @tool
    def run_tests(path: str) -> str:
        """Run pytest."""
        return "112 passed in 4.03s"

    replies: list[Any] = [
        ask(ids, "run_mypy", {"path": "billing/"}),
        ask(
            ids,
            "apply_patch",
            {
                "file": "billing/tax.py",
                "diff": "-def rate(region):\n+def rate(region: str) -> "
                "Decimal:\n-    return round(amount, 2)\n+    return round(Decimal(amount), 2)",
            },
        ),
        ask(ids, "run_mypy", {"path": "billing/"}),
        ask(
            ids,
            "apply_patch",
            {
                "file": "billing/tax.py",
                "diff": "+    if rate is None:\n+        raise "
                "UnknownRegion(region)\n-    return total * 1.0\n+    return total",
            },
        ),
        ask(ids, "run_mypy", {"path": "billing/"}),
        ask(ids, "run_tests", {"path": "tests/billing"}),
        "billing/ is mypy-strict clean (4 errors, then 2, then 0) and the 112 billing tests pass.",
    ]
    _tool_loop(replies, [run_mypy, apply_patch, run_tests], "You are a Python coding agent.", "gpt-4.1").invoke(
        _start("Make billing/ pass mypy --strict without breaking tests."), config(callbacks)
    )


# --- re-read after edit -------------------------------------------------------------------------------------------

_README = "# ledgerly-sdk\n\n## Installation\n\npip install ledgerly\n\n## Usage\n\nTODO\n"


def readme_section_reread(callbacks: Callbacks) -> None:
    ids = Ids("doc")
    files = {"README.md": _README}

    @tool
    def read_file(path: str) -> str:
        """Read a file."""
        return files[path]

    @tool
    def write_section(path: str, heading: str, body: str) -> str:
        """Replace (or append) a markdown section under a ## heading."""
        text = files[path]
        marker = f"## {heading}\n\n"
        if marker in text:
            start = text.index(marker) + len(marker)
            end = text.find("\n## ", start)
            end = len(text) if end == -1 else end + 1
            files[path] = text[:start] + body + "\n" + text[end:]
        else:
            files[path] = text + f"\n{marker}{body}\n"
        return f"Updated '{heading}' in {path}."

    replies: list[Any] = [
        ask(ids, "read_file", {"path": "README.md"}),
        ask(
            ids,
            "write_section",
            {"path": "README.md", "heading": "Installation", "body": "pip install ledgerly  # Python 3.10+"},
        ),
        ask(ids, "read_file", {"path": "README.md"}),
        ask(
            ids,
            "write_section",
            {
                "path": "README.md",
                "heading": "Usage",
                "body": "from ledgerly import Client\nclient = Client(api_key=...)",
            },
        ),
        ask(ids, "read_file", {"path": "README.md"}),
        ask(
            ids,
            "write_section",
            {"path": "README.md", "heading": "Configuration", "body": "Set LEDGERLY_API_KEY or pass api_key."},
        ),
        ask(ids, "read_file", {"path": "README.md"}),
        "README now documents installation (Python 3.10+), a usage example and configuration.",
    ]
    _tool_loop(replies, [read_file, write_section], "You maintain SDK documentation.").invoke(
        _start("The ledgerly-sdk README is a stub. Fill in install, usage and config."), config(callbacks)
    )


# --- tool error, then corrected arguments -------------------------------------------------------------------------


def sql_column_error(callbacks: Callbacks) -> None:
    ids = Ids("q")

    @tool
    def run_query(sql: str) -> str:
        """Run a read-only query on the analytics warehouse."""
        if "signup_date" in sql:
            return 'ERROR: column "signup_date" does not exist\nHINT: Perhaps you meant "users.created_at".'
        if "date_trunc" in sql:
            return "month | signups\n2024-04 | 1,902\n2024-05 | 2,311\n2024-06 | 2,745"
        return "signups\n6,958"

    replies: list[Any] = [
        ask(ids, "run_query", {"sql": "SELECT count(*) AS signups FROM users WHERE signup_date >= '2024-04-01'"}),
        ask(
            ids,
            "run_query",
            {"sql": "SELECT count(*) AS signups FROM users WHERE created_at >= '2024-04-01'"},
            "The column is created_at; fixing the query.",
        ),
        ask(
            ids,
            "run_query",
            {
                "sql": "SELECT date_trunc('month', created_at) AS month, count(*) AS signups FROM "
                "users WHERE created_at >= '2024-04-01' GROUP BY 1 ORDER BY 1"
            },
        ),
        "6,958 signups in Q2: 1,902 in April, 2,311 in May and 2,745 in June (+44% over the quarter).",
    ]
    _tool_loop(replies, [run_query], "You are a data analyst with SQL access.", "gpt-4o").invoke(
        _start("How many users signed up in Q2, by month?"), config(callbacks)
    )


# --- planner / executor, executor calling tools -------------------------------------------------------------------

_MIGRATION_STEPS = [
    ("Step 1: snapshot the orders table.", "snapshot", "Snapshot snap-0193 of orders created (38.2 GB)."),
    ("Step 2: create orders_v2 with the bigint id column.", "create_shadow", "orders_v2 created (0 rows)."),
    ("Step 3: copy rows into orders_v2 in batches.", "copy_rows", "Copied 212,884,010 rows in 431 batches."),
    ("Step 4: swap orders and orders_v2 in one transaction.", "swap", "Swapped; orders now has bigint ids."),
]


class MigrationState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    done: bool


def data_migration_planner(callbacks: Callbacks) -> None:
    ids = Ids("dm")
    results = {action: result for _, action, result in _MIGRATION_STEPS}

    @tool
    def run_step(action: str, table: str) -> str:
        """Execute one migration action on a table."""
        return results[action]

    planner = scripted([s for s, _, _ in _MIGRATION_STEPS] + ["DONE: orders.id is now bigint."], "gpt-4o")
    executor = scripted(
        [ask(ids, "run_step", {"action": a, "table": "orders"}) for _, a, _ in _MIGRATION_STEPS], "gpt-4o-mini"
    ).bind_tools([run_step])

    def plan(state: MigrationState) -> dict[str, Any]:
        reply = planner.invoke([SystemMessage("Issue the next migration step, or DONE."), *state["messages"]])
        return {"messages": [reply], "done": str(reply.content).startswith("DONE")}

    def execute(state: MigrationState, config: RunnableConfig) -> dict[str, Any]:
        reply = executor.invoke([SystemMessage("Execute the step with run_step."), state["messages"][-1]])
        outputs = [run_step.invoke(call, config) for call in reply.tool_calls]
        assert all(isinstance(o, ToolMessage) for o in outputs)
        report = "; ".join(str(o.content) for o in outputs)
        return {"messages": [HumanMessage(f"Executor report: {report}", name="executor")]}

    def route(state: MigrationState) -> str:
        return END if state["done"] else "execute"

    graph = StateGraph(MigrationState)
    graph.add_node("plan", plan)
    graph.add_node("execute", execute)
    graph.add_edge(START, "plan")
    graph.add_conditional_edges("plan", route, ["execute", END])
    graph.add_edge("execute", "plan")
    graph.compile().invoke(
        {"messages": [HumanMessage("Migrate orders.id from int to bigint with no downtime.")], "done": False},
        config(callbacks),
    )


class CampaignState(TypedDict):
    goal: str
    plan: list[str]
    results: Annotated[list[str], operator.add]
    summary: str


def campaign_launch_plan(callbacks: Callbacks) -> None:
    ids = Ids("mkt")

    @tool
    def create_audience(name: str, rule: str) -> str:
        """Create a CRM audience segment."""
        return f"Audience '{name}' created: 4,812 contacts match '{rule}'."

    @tool
    def schedule_email(audience: str, template: str, send_at: str) -> str:
        """Schedule an e-mail send."""
        return f"Send of '{template}' to '{audience}' scheduled for {send_at} (est. 4,812 recipients)."

    @tool
    def set_budget(channel: str, daily_usd: int) -> str:
        """Set a paid-channel daily budget."""
        return f"{channel} daily budget set to ${daily_usd}."

    steps = [
        "Create the 'trial-ended-30d' audience.",
        "Schedule the win-back e-mail for Tuesday 10:00.",
        "Set the LinkedIn retargeting budget to $150/day.",
    ]
    planner = scripted(
        [json.dumps(steps), "Win-back campaign is live: audience of 4,812, e-mail Tuesday 10:00, LinkedIn $150/day."],
        "gpt-4o",
    )
    executor_replies: list[Any] = [
        ask(ids, "create_audience", {"name": "trial-ended-30d", "rule": "trial_end within 30 days AND plan = free"}),
        "Audience trial-ended-30d created with 4,812 contacts.",
        ask(
            ids,
            "schedule_email",
            {"audience": "trial-ended-30d", "template": "winback-v3", "send_at": "2024-08-13T10:00"},
        ),
        "Win-back e-mail scheduled for Tuesday 10:00.",
        ask(ids, "set_budget", {"channel": "linkedin-retargeting", "daily_usd": 150}),
        "LinkedIn retargeting budget is $150/day.",
    ]
    executor = create_agent(
        scripted(executor_replies, "gpt-4o-mini"),
        [create_audience, schedule_email, set_budget],
        system_prompt="You execute one marketing-ops step.",
    )

    def plan(state: CampaignState) -> dict[str, Any]:
        reply = planner.invoke([SystemMessage("Break the goal into steps (JSON list)."), HumanMessage(state["goal"])])
        return {"plan": json.loads(str(reply.content))}

    def execute(state: CampaignState, config: RunnableConfig) -> dict[str, Any]:
        step = state["plan"][len(state["results"])]
        out = executor.invoke({"messages": [HumanMessage(step)]}, config)
        return {"results": [str(out["messages"][-1].content)]}

    def more(state: CampaignState) -> str:
        return "execute" if len(state["results"]) < len(state["plan"]) else "wrap_up"

    def wrap_up(state: CampaignState) -> dict[str, Any]:
        reply = planner.invoke([SystemMessage("Summarize the launch."), HumanMessage("\n".join(state["results"]))])
        return {"summary": str(reply.content)}

    graph = StateGraph(CampaignState)
    graph.add_node("plan", plan)
    graph.add_node("execute", execute)
    graph.add_node("wrap_up", wrap_up)
    graph.add_edge(START, "plan")
    graph.add_edge("plan", "execute")
    graph.add_conditional_edges("execute", more, ["execute", "wrap_up"])
    graph.add_edge("wrap_up", END)
    graph.compile().invoke(
        {"goal": "Launch the August win-back campaign for lapsed trials.", "plan": [], "results": [], "summary": ""},
        config(callbacks),
    )


# --- reflection that improves -------------------------------------------------------------------------------------

_BLOG = [
    "We moved our job queue from Redis to Postgres. It is simpler to operate and fast enough for us.",
    "We moved our job queue from Redis to Postgres. It is simpler to operate, and with SKIP LOCKED a single "
    "db.r6g.xlarge sustains 4,200 jobs/s at p99 enqueue latency of 9 ms in our benchmark.",
    "We moved our job queue from Redis to Postgres. With SKIP LOCKED a single db.r6g.xlarge sustains 4,200 "
    "jobs/s at 9 ms p99. Migration: we dual-wrote for two weeks, drained Redis, then flipped consumers behind a "
    "feature flag with zero lost jobs.",
    "We moved our job queue from Redis to Postgres. With SKIP LOCKED a single db.r6g.xlarge sustains 4,200 "
    "jobs/s at 9 ms p99. We dual-wrote for two weeks, drained Redis and flipped consumers behind a flag. "
    "Trade-offs: vacuum pressure on the jobs table and no pub/sub fan-out; above ~10k jobs/s we'd reconsider.",
]
_BLOG_NOTES = [
    "Claims like 'fast enough' need numbers. Add a benchmark.",
    "Readers will want to know how you migrated without losing jobs. Add that.",
    "Add the trade-offs and when this approach stops working.",
    "APPROVED",
]


def blog_post_reflection(callbacks: Callbacks) -> None:
    writer = scripted(_BLOG, "claude-3-5-sonnet-latest", "anthropic")
    editor = scripted(_BLOG_NOTES, "gpt-4o")

    def write(state: MessagesState) -> dict[str, Any]:
        return {"messages": [writer.invoke([SystemMessage("You write engineering blog posts."), *state["messages"]])]}

    def edit(state: MessagesState) -> dict[str, Any]:
        reply = editor.invoke(
            [SystemMessage("You are the blog editor."), HumanMessage(str(state["messages"][-1].content))]
        )
        return {"messages": [HumanMessage(str(reply.content), name="editor")]}

    def route(state: MessagesState) -> str:
        return END if state["messages"][-1].content == "APPROVED" else "write"

    graph = StateGraph(MessagesState)
    graph.add_node("write", write)
    graph.add_node("edit", edit)
    graph.add_edge(START, "write")
    graph.add_edge("write", "edit")
    graph.add_conditional_edges("edit", route, ["write", END])
    graph.compile().invoke(
        {"messages": [HumanMessage("Write the intro of our 'Redis to Postgres queue' post.")]}, config(callbacks)
    )


class JdState(TypedDict):
    draft: str
    feedback: Annotated[list[str], operator.add]


def job_description_reflection(callbacks: Callbacks) -> None:
    drafts = [
        "Senior Data Engineer (Denver, hybrid). You'll build our Kafka and dbt pipelines. Requirements: 5+ years "
        "Python, SQL, Kafka, dbt, Airflow, Spark, Terraform, Kubernetes, Snowflake, Looker.",
        "Senior Data Engineer (Denver, hybrid), $150,000-$175,000 + equity. You'll build our Kafka and dbt "
        "pipelines. Requirements: 5+ years Python, SQL, Kafka, dbt, Airflow, Spark, Terraform, Kubernetes, "
        "Snowflake, Looker.",
        "Senior Data Engineer (Denver, hybrid), $150,000-$175,000 + equity. You'll build our Kafka and dbt "
        "pipelines. Must have: 5+ years Python and SQL, production Kafka, dbt. Nice to have: Airflow, Spark, "
        "Terraform, Kubernetes, Snowflake, Looker.",
    ]
    notes = [
        "Colorado requires a salary range in the posting; add it.",
        "The requirements list is a wall of tools. Split must-haves from nice-to-haves.",
        "APPROVED",
    ]
    writer = scripted(drafts, "gpt-4o-mini")
    reviewer = scripted(notes, "gpt-4o")

    def write(state: JdState) -> dict[str, Any]:
        context = state["draft"] + ("\nFeedback: " + state["feedback"][-1] if state["feedback"] else "")
        reply = writer.invoke([SystemMessage("Write a job description."), HumanMessage(context or "Senior DE, Denver")])
        return {"draft": str(reply.content)}

    def review(state: JdState) -> dict[str, Any]:
        reply = reviewer.invoke(
            [SystemMessage("You are a recruiting lead and compliance reviewer."), HumanMessage(state["draft"])]
        )
        return {"feedback": [str(reply.content)]}

    def route(state: JdState) -> str:
        return END if state["feedback"][-1] == "APPROVED" else "write"

    graph = StateGraph(JdState)
    graph.add_node("write", write)
    graph.add_node("review", review)
    graph.add_edge(START, "write")
    graph.add_edge("write", "review")
    graph.add_conditional_edges("review", route, ["write", END])
    graph.compile().invoke({"draft": "", "feedback": []}, config(callbacks))


# --- human in the loop: interrupt, checkpointer, resume -----------------------------------------------------------


class WireState(TypedDict):
    request: str
    transfer: dict[str, Any]
    risk: str
    approval: dict[str, Any]
    receipt: str
    confirmation: str


def wire_transfer_approval(callbacks: Callbacks) -> None:
    transfer = {
        "beneficiary": "Kestrel Components GmbH",
        "iban": "DE89370400440532013000",
        "amount": 48250.0,
        "currency": "EUR",
        "reference": "PO-77120",
    }
    extractor = scripted([json.dumps(transfer)], "gpt-4o")
    risk_model = scripted(["Medium risk: first payment to this IBAN; amount above the 25k EUR dual-approval limit."])
    confirmer = scripted(["Wire of EUR 48,250.00 to Kestrel Components GmbH (PO-77120) released after CFO approval."])

    @tool
    def send_wire(iban: str, amount: float, currency: str, reference: str) -> str:
        """Release a wire transfer."""
        return f"Wire released: {currency} {amount:,.2f} to {iban}, ref {reference}, id WT-20240812-0042."

    def prepare(state: WireState) -> dict[str, Any]:
        reply = extractor.invoke([SystemMessage("Extract the transfer as JSON."), HumanMessage(state["request"])])
        return {"transfer": json.loads(str(reply.content))}

    def assess(state: WireState) -> dict[str, Any]:
        reply = risk_model.invoke([SystemMessage("Assess payment risk."), HumanMessage(json.dumps(state["transfer"]))])
        return {"risk": str(reply.content)}

    def approve(state: WireState) -> dict[str, Any]:
        decision = interrupt({"transfer": state["transfer"], "risk": state["risk"], "question": "Approve this wire?"})
        return {"approval": dict(decision)}

    def release(state: WireState, config: RunnableConfig) -> dict[str, Any]:
        t = state["transfer"]
        args = {"iban": t["iban"], "amount": t["amount"], "currency": t["currency"], "reference": t["reference"]}
        return {"receipt": send_wire.invoke(args, config)}

    def confirm(state: WireState) -> dict[str, Any]:
        reply = confirmer.invoke([SystemMessage("Confirm to the requester."), HumanMessage(state["receipt"])])
        return {"confirmation": str(reply.content)}

    def decided(state: WireState) -> str:
        return "release" if state["approval"].get("approved") else END

    graph = StateGraph(WireState)
    for name, node in (("prepare", prepare), ("assess", assess), ("approve", approve), ("confirm", confirm)):
        graph.add_node(name, node)
    graph.add_node("release", release)
    graph.add_edge(START, "prepare")
    graph.add_edge("prepare", "assess")
    graph.add_edge("assess", "approve")
    graph.add_conditional_edges("approve", decided, ["release", END])
    graph.add_edge("release", "confirm")
    graph.add_edge("confirm", END)
    app = graph.compile(checkpointer=InMemorySaver())
    cfg = config(callbacks, thread="wire-PO-77120")
    empty: WireState = {"request": "", "transfer": {}, "risk": "", "approval": {}, "receipt": "", "confirmation": ""}
    request = "Pay Kestrel Components GmbH EUR 48,250 for PO-77120, IBAN DE89370400440532013000."
    first = app.invoke({**empty, "request": request}, cfg)
    assert "__interrupt__" in first, "the wire should wait for approval"
    app.invoke(Command(resume={"approved": True, "approver": "cfo@acme.example"}), cfg)


# --- supervisor handoffs to workers doing different work ----------------------------------------------------------


def support_supervisor_routes(callbacks: Callbacks) -> None:
    b_ids, s_ids = Ids("bil"), Ids("shp")

    @tool
    def issue_refund(order_id: str, amount: float, reason: str) -> str:
        """Refund part of an order."""
        return f"Refund RF-{order_id[-4:]}-01 of ${amount:.2f} issued ({reason})."

    @tool
    def create_replacement(order_id: str, sku: str) -> str:
        """Ship a free replacement item."""
        return f"Replacement for {sku} on {order_id}: label 1Z999AA10123456784, ships tomorrow."

    supervisor = scripted(
        [
            "ROUTE: billing. Refund the damaged mug set's shipping fee.",
            "ROUTE: shipping. Send a replacement for the broken mug set.",
            "ROUTE: FINISH",
        ],
        "gpt-4o",
    )
    billing = scripted(
        [ask(b_ids, "issue_refund", {"order_id": "SO-80311", "amount": 8.95, "reason": "damaged in transit"})]
    ).bind_tools([issue_refund])
    shipping = scripted(
        [ask(s_ids, "create_replacement", {"order_id": "SO-80311", "sku": "MUG-SET-4-SAGE"})]
    ).bind_tools([create_replacement])
    responder = scripted(
        [
            "Sorry your mugs arrived broken! We've refunded the $8.95 shipping and a replacement set ships tomorrow "
            "(tracking 1Z999AA10123456784)."
        ],
        "gpt-4o-mini",
    )
    tools_by_name = {"issue_refund": issue_refund, "create_replacement": create_replacement}

    def supervise(state: MessagesState) -> dict[str, Any]:
        return {
            "messages": [
                supervisor.invoke([SystemMessage("Route to billing, shipping or FINISH."), *state["messages"]])
            ]
        }

    def worker(model: Any, name: str) -> Any:
        def run(state: MessagesState, config: RunnableConfig) -> dict[str, Any]:
            reply = model.invoke([SystemMessage(f"You are the {name} specialist."), *state["messages"]])
            outputs = [tools_by_name[c["name"]].invoke(c, config) for c in reply.tool_calls]
            return {"messages": [HumanMessage("; ".join(str(o.content) for o in outputs), name=name)]}

        return run

    def respond(state: MessagesState) -> dict[str, Any]:
        return {"messages": [responder.invoke([SystemMessage("Reply to the customer."), *state["messages"]])]}

    def route(state: MessagesState) -> str:
        text = str(state["messages"][-1].content)
        return "billing" if "billing" in text else "shipping" if "shipping" in text else "respond"

    graph = StateGraph(MessagesState)
    graph.add_node("supervisor", supervise)
    graph.add_node("billing", worker(billing, "billing"))
    graph.add_node("shipping", worker(shipping, "shipping"))
    graph.add_node("respond", respond)
    graph.add_edge(START, "supervisor")
    graph.add_conditional_edges("supervisor", route, ["billing", "shipping", "respond"])
    graph.add_edge("billing", "supervisor")
    graph.add_edge("shipping", "supervisor")
    graph.add_edge("respond", END)
    graph.compile().invoke(
        {"messages": [HumanMessage("Order SO-80311: my sage mug set arrived with two mugs smashed.")]},
        config(callbacks),
    )


class DeskState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


def research_write_supervisor(callbacks: Callbacks) -> None:
    sup_ids, r_ids = Ids("desk"), Ids("rsch")

    @tool
    def delegate(worker: str, task: str) -> str:
        """Delegate a task to 'researcher' or 'writer'."""
        return "delegated"

    @tool
    def search_news(query: str) -> str:
        """Search news articles."""
        found = {
            "EU AI Act enforcement timeline": "Prohibited practices apply Feb 2025; GPAI obligations Aug 2025.",
            "EU AI Act fines amounts": "Fines up to EUR 35M or 7% of global turnover for prohibited practices.",
        }
        return found[query]

    supervisor = scripted(
        [
            ask(sup_ids, "delegate", {"worker": "researcher", "task": "Key EU AI Act dates and fines."}),
            ask(sup_ids, "delegate", {"worker": "writer", "task": "Write a 3-sentence customer newsletter item."}),
            "Newsletter item is ready for review.",
        ],
        "gpt-4o",
    ).bind_tools([delegate])
    researcher = create_agent(
        scripted(
            [
                ask(r_ids, "search_news", {"query": "EU AI Act enforcement timeline"}),
                ask(r_ids, "search_news", {"query": "EU AI Act fines amounts"}),
                "Dates: prohibited practices banned from Feb 2025, GPAI duties from Aug 2025. Fines: up to EUR 35M "
                "or 7% of turnover.",
            ]
        ),
        [search_news],
        system_prompt="You are a policy researcher.",
    )
    writer = create_agent(
        scripted(
            [
                "The EU AI Act is phasing in: bans on prohibited AI practices apply from February 2025 and "
                "general-purpose AI duties from August 2025. Penalties reach EUR 35M or 7% of global turnover. "
                "Our compliance toolkit maps each obligation to a checklist."
            ],
            "claude-3-5-sonnet-latest",
            "anthropic",
        ),
        [],
        system_prompt="You write customer newsletters.",
    )
    workers = {"researcher": researcher, "writer": writer}

    def desk(state: DeskState) -> Command[Any]:
        reply = supervisor.invoke(state["messages"])
        if not reply.tool_calls:
            return Command(update={"messages": [reply]}, goto=END)
        call = reply.tool_calls[0]
        ack = ToolMessage(content=f"delegated to {call['args']['worker']}", tool_call_id=str(call["id"]))
        return Command(update={"messages": [reply, ack]}, goto=call["args"]["worker"])

    def make_worker(name: str) -> Any:
        def run(state: DeskState, config: RunnableConfig) -> dict[str, Any]:
            task = state["messages"][-2]
            assert isinstance(task, AIMessage)
            context = [m for m in state["messages"] if getattr(m, "name", None) == "researcher"]
            prompt = [*context, HumanMessage(task.tool_calls[0]["args"]["task"])]
            out = workers[name].invoke({"messages": [*prompt]}, config)
            return {"messages": [HumanMessage(str(out["messages"][-1].content), name=name)]}

        return run

    graph = StateGraph(DeskState)
    graph.add_node("desk", desk, destinations=("researcher", "writer", END))
    graph.add_node("researcher", make_worker("researcher"))
    graph.add_node("writer", make_worker("writer"))
    graph.add_edge(START, "desk")
    graph.add_edge("researcher", "desk")
    graph.add_edge("writer", "desk")
    graph.compile().invoke(
        {"messages": [HumanMessage("Prepare a newsletter item on what the EU AI Act means for our customers.")]},
        config(callbacks),
    )


SCENARIOS = [
    SealedScenario(
        "github_issues_cursor",
        "pagination",
        False,
        None,
        "StateGraph: ToolNode agent following distinct next_cursor tokens through 5 pages until null.",
        github_issues_cursor,
    ),
    SealedScenario(
        "dns_propagation_polling",
        "polling_finishes",
        False,
        None,
        "StateGraph: ToolNode agent polls a DNS change: PENDING three times, then INSYNC, then verifies.",
        dns_propagation_polling,
    ),
    SealedScenario(
        "build_artifact_upload_retry",
        "retry_then_success",
        False,
        None,
        "StateGraph: upload raises a ToolException (handled by the tool) once, the retry succeeds, release made.",
        build_artifact_upload_retry,
    ),
    SealedScenario(
        "geocoder_rate_limit",
        "rate_limit_clears",
        False,
        None,
        "StateGraph: six stops geocoded; the third is rate-limited in-band twice before returning coordinates.",
        geocoder_rate_limit,
    ),
    SealedScenario(
        "drug_interaction_research",
        "research",
        False,
        None,
        "StateGraph: planner emits 4 queries, Send fan-out searches and reads each, then a synthesized answer.",
        drug_interaction_research,
    ),
    SealedScenario(
        "lint_and_type_fix",
        "edit_test_coding",
        False,
        None,
        "StateGraph: mypy 4 errors, patch, 2 different errors, patch, clean, tests pass.",
        lint_and_type_fix,
    ),
    SealedScenario(
        "readme_section_reread",
        "reread_after_edit",
        False,
        None,
        "StateGraph: README re-read after each of three section edits; content grows each time.",
        readme_section_reread,
    ),
    SealedScenario(
        "sql_column_error",
        "tool_error_recovers",
        False,
        None,
        "StateGraph: a query fails on a wrong column, the model fixes the column, then a follow-up query.",
        sql_column_error,
    ),
    SealedScenario(
        "data_migration_planner",
        "planner_executor",
        False,
        None,
        "StateGraph: planner issues 4 distinct migration steps, a tool-calling executor reports each, then DONE.",
        data_migration_planner,
    ),
    SealedScenario(
        "campaign_launch_plan",
        "planner_executor",
        False,
        None,
        "StateGraph + create_agent: planner emits a 3-step plan, a create_agent executor runs each, then a summary.",
        campaign_launch_plan,
    ),
    SealedScenario(
        "blog_post_reflection",
        "reflection_improves",
        False,
        None,
        "StateGraph: three editor notes, each answered by a revision adding new material, then APPROVED.",
        blog_post_reflection,
    ),
    SealedScenario(
        "job_description_reflection",
        "reflection_improves",
        False,
        None,
        "StateGraph: two review rounds (salary range, must-have split) with real changes, then APPROVED.",
        job_description_reflection,
    ),
    SealedScenario(
        "wire_transfer_approval",
        "human_in_the_loop",
        False,
        None,
        "StateGraph: interrupt() before releasing a wire, InMemorySaver checkpointer, resumed with approval.",
        wire_transfer_approval,
    ),
    SealedScenario(
        "support_supervisor_routes",
        "supervisor_handoff",
        False,
        None,
        "StateGraph: supervisor routes to billing (refund tool) then shipping (replacement tool), then replies.",
        support_supervisor_routes,
    ),
    SealedScenario(
        "research_write_supervisor",
        "supervisor_handoff",
        False,
        None,
        "StateGraph + create_agent: tool-calling supervisor delegates to a researcher agent, then a writer agent.",
        research_write_supervisor,
    ),
]

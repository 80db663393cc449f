"""Looping runs of ``langchain.agents.create_agent`` agents. Each script loops for a while, then gives a final
answer, so an unnoticed loop still ends normally."""

from __future__ import annotations

import json
from typing import Any

from langchain.agents import create_agent
from langchain.agents.middleware import AgentState, after_model
from langchain_core.messages import AIMessage, HumanMessage, RemoveMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import ToolException, tool
from langgraph.runtime import Runtime

from ._kit import Callbacks, Ids, Volatile, cfg, failing, run_agent, scenario, scripted, text_of

# -------------------------------------------------------------------------------------------------- stuck_same_call


@scenario(
    "order_status_stuck",
    "stuck_same_call",
    style="create_agent",
    loop_start=4,
    description="A support agent finds the customer and the order, then asks for the shipment status of the same "
    "order over and over, always getting 'in transit, no scan since Mar 4'.",
)
def order_status_stuck(callbacks: Callbacks) -> None:
    ids = Ids("order_status_stuck")

    @tool
    def find_customer(email: str) -> str:
        """Finds a customer by email."""
        return "cus_7781 Maria Gonzalez, 14 orders, tier=gold"

    @tool
    def list_orders(customer_id: str, limit: int = 5) -> str:
        """Lists a customer's recent orders."""
        return "SO-88121 (2025-02-27, $212.40, shipped), SO-87002 (2025-01-15, $54.00, delivered)"

    @tool
    def get_shipment_status(order_id: str) -> str:
        """Returns the carrier status of an order's shipment."""
        return f"{order_id}: UPS 1Z999AA10123456784 - In transit. Last scan: Hodgkins, IL, 2025-03-04 21:17."

    replies: list[Any] = [
        ids.call("find_customer", {"email": "maria.g@example.com"}),
        ids.call("list_orders", {"customer_id": "cus_7781", "limit": 5}),
    ]
    replies += [ids.call("get_shipment_status", {"order_id": "SO-88121"}) for _ in range(17)]
    replies.append("Your order SO-88121 is in transit with UPS; I've opened a carrier trace since it hasn't moved.")
    run_agent(
        callbacks,
        scripted(replies),
        [find_customer, list_orders, get_shipment_status],
        "Where is my order?? It's been two weeks. maria.g@example.com",
        system="You are Acme's customer support agent.",
    )


@scenario(
    "pod_logs_stuck",
    "stuck_same_call",
    style="create_agent",
    loop_start=4,
    description="An on-call agent lists pods, describes the crashing one, then fetches the same pod's last 200 log "
    "lines again and again with identical output.",
)
def pod_logs_stuck(callbacks: Callbacks) -> None:
    ids = Ids("pod_logs_stuck")

    @tool
    def list_pods(namespace: str) -> str:
        """Lists pods in a namespace."""
        return "billing-worker-5d8f7-x2kq 0/1 CrashLoopBackOff 14\nbilling-api-77c9d-pp1m 1/1 Running 0"

    @tool
    def describe_pod(namespace: str, pod: str) -> str:
        """Describes a pod."""
        return "Last State: Terminated, Reason: Error, Exit Code: 1; Back-off restarting failed container"

    @tool
    def get_pod_logs(namespace: str, pod: str, tail: int) -> str:
        """Returns the last lines of a pod's logs."""
        return (
            "2025-03-11 09:02:11 INFO starting billing-worker v3.8.1\n"
            'Traceback (most recent call last):\n  File "worker/settings.py", line 41, in <module>\n'
            "KeyError: 'STRIPE_WEBHOOK_SECRET'"
        )

    logs = {"namespace": "billing", "pod": "billing-worker-5d8f7-x2kq", "tail": 200}
    replies: list[Any] = [
        ids.call("list_pods", {"namespace": "billing"}),
        ids.call("describe_pod", {"namespace": "billing", "pod": "billing-worker-5d8f7-x2kq"}),
    ]
    replies += [ids.call("get_pod_logs", logs, text="Checking the latest logs.") for _ in range(18)]
    replies.append("billing-worker crashes on start: STRIPE_WEBHOOK_SECRET is missing from its secret mount.")
    run_agent(
        callbacks,
        scripted(replies, model="gpt-4.1"),
        [list_pods, describe_pod, get_pod_logs],
        "PagerDuty: billing-worker is crashlooping in prod. Investigate.",
    )


@scenario(
    "pto_balance_stuck",
    "stuck_same_call",
    style="create_agent",
    loop_start=3,
    description="An HR assistant resolves the employee, then re-reads the same PTO balance fifteen times instead of "
    "answering.",
)
def pto_balance_stuck(callbacks: Callbacks) -> None:
    ids = Ids("pto_balance_stuck")

    @tool
    def get_employee(name: str) -> str:
        """Finds an employee record."""
        return "E-20931 Sam Okafor, Engineering, hired 2021-06-01, location Lagos"

    @tool
    def get_pto_balance(employee_id: str, year: int) -> str:
        """Returns the paid-time-off balance."""
        return f"{employee_id} {year}: accrued 18.5d, taken 6d, pending 2d, available 10.5d"

    replies: list[Any] = [ids.call("get_employee", {"name": "Sam Okafor"})]
    replies += [ids.call("get_pto_balance", {"employee_id": "E-20931", "year": 2025}) for _ in range(15)]
    replies.append("Sam has 10.5 days of PTO available for 2025 (2 more days are pending approval).")
    run_agent(
        callbacks,
        scripted(replies, model="claude-3-5-haiku-latest", provider="anthropic"),
        [get_employee, get_pto_balance],
        "How much vacation does Sam Okafor have left this year?",
        system="You are the HR help assistant. Be precise about leave balances.",
    )


# --------------------------------------------------------------------------------------------- volatile_result_loop


@scenario(
    "service_health_timestamp",
    "volatile_result_loop",
    style="create_agent",
    loop_start=3,
    description="An SRE agent keeps calling the same health check; the result is identical except for a fresh "
    "checked_at timestamp each time.",
)
def service_health_timestamp(callbacks: Callbacks) -> None:
    ids = Ids("service_health_timestamp")
    vol = Volatile("service_health_timestamp")

    @tool
    def list_services(team: str) -> str:
        """Lists services owned by a team."""
        return "payments-api, payments-ledger, payments-webhooks"

    @tool
    def check_health(service: str) -> str:
        """Runs the synthetic health check of a service."""
        return f"{service}: DEGRADED p99_ms=2310 error_rate=4.1% upstream=ledger-db checked_at={vol.ts()}"

    replies: list[Any] = [ids.call("list_services", {"team": "payments"})]
    replies += [ids.call("check_health", {"service": "payments-api"}) for _ in range(19)]
    replies.append("payments-api is degraded (p99 2.3s, 4.1% errors) because of ledger-db; escalating to DBA on-call.")
    run_agent(
        callbacks,
        scripted(replies),
        [list_services, check_health],
        "Is anything wrong with the payments services right now?",
    )


@scenario(
    "kb_search_request_id",
    "volatile_result_loop",
    style="create_agent",
    loop_start=3,
    description="A helpdesk agent reads a ticket, then repeats one knowledge-base search whose results are the same "
    "three articles plus a new hex request id.",
)
def kb_search_request_id(callbacks: Callbacks) -> None:
    ids = Ids("kb_search_request_id")
    vol = Volatile("kb_search_request_id")

    @tool
    def get_ticket(ticket_id: str) -> str:
        """Reads a helpdesk ticket."""
        return f"{ticket_id}: 'Can't log in after SSO migration, 2FA prompt loops' - Contoso (Enterprise)"

    @tool
    def search_kb(query: str) -> str:
        """Searches the knowledge base."""
        return json.dumps(
            {
                "hits": ["KB-1120 Resetting 2FA for SSO users", "KB-0988 SAML clock skew", "KB-1301 SSO FAQ"],
                "request_id": vol.hex(32),
            }
        )

    replies: list[Any] = [ids.call("get_ticket", {"ticket_id": "T-40551"})]
    replies += [ids.call("search_kb", {"query": "2FA loop after SSO migration enterprise"}) for _ in range(15)]
    replies.append("Reset the user's 2FA enrolment per KB-1120; if it persists, check SAML clock skew (KB-0988).")
    run_agent(
        callbacks,
        scripted(replies, model="gpt-4o"),
        [get_ticket, search_kb],
        "Draft a reply for ticket T-40551.",
    )


@scenario(
    "fx_quote_uuid",
    "volatile_result_loop",
    style="create_agent",
    loop_start=3,
    description="A treasury agent requests the same EUR/USD quote repeatedly; the rate never changes, only the quote "
    "UUID and expiry timestamp do.",
)
def fx_quote_uuid(callbacks: Callbacks) -> None:
    ids = Ids("fx_quote_uuid")
    vol = Volatile("fx_quote_uuid")

    @tool
    def get_payable(payable_id: str) -> str:
        """Reads a payable."""
        return f"{payable_id}: Hamburg Freight GmbH, EUR 184,000.00, due 2025-03-14"

    @tool
    def get_fx_quote(sell: str, buy: str, amount: float) -> str:
        """Requests a firm FX quote valid for 30 seconds."""
        return f"quote {vol.uuid()}: sell {sell} buy {buy} {amount:,.2f} at 1.0842, valid until {vol.ts(20, 40)}"

    args = {"sell": "USD", "buy": "EUR", "amount": 184000.0}
    replies: list[Any] = [ids.call("get_payable", {"payable_id": "AP-3391"})]
    replies += [ids.call("get_fx_quote", args) for _ in range(16)]
    replies.append("EUR 184,000 costs about USD 199,493 at 1.0842; ready to book on your go-ahead.")
    run_agent(
        callbacks,
        scripted(replies),
        [get_payable, get_fx_quote],
        "Get us a rate to pay the Hamburg Freight invoice AP-3391.",
    )


# ------------------------------------------------------------------------------------------------- error_retry_loop


@scenario(
    "warehouse_connection_refused",
    "error_retry_loop",
    style="create_agent",
    loop_start=3,
    description="An analytics agent lists tables, then retries the same query against a warehouse that refuses every "
    "connection with the same error.",
)
def warehouse_connection_refused(callbacks: Callbacks) -> None:
    ids = Ids("warehouse_connection_refused")

    @tool
    def list_tables(dataset: str) -> str:
        """Lists tables from the cached catalog."""
        return "analytics.fct_orders, analytics.dim_customers, analytics.fct_refunds"

    @tool
    def run_query(sql: str) -> str:
        """Runs SQL on the warehouse."""
        raise ToolException(
            'psycopg.OperationalError: connection to server at "10.0.3.12", port 5432 failed: Connection refused'
        )

    sql = "SELECT date_trunc('week', refunded_at) w, count(*) FROM analytics.fct_refunds GROUP BY 1 ORDER BY 1"
    replies: list[Any] = [ids.call("list_tables", {"dataset": "analytics"})]
    replies += [ids.call("run_query", {"sql": sql}) for _ in range(17)]
    replies.append("I can't reach the warehouse (connection refused at 10.0.3.12:5432); please check its status.")
    run_agent(
        callbacks,
        scripted(replies, model="gpt-4o-mini"),
        [list_tables, failing(run_query)],
        "Weekly refund counts for this quarter?",
    )


@scenario(
    "zendesk_500_request_id",
    "error_retry_loop",
    style="create_agent",
    loop_start=2,
    description="A support-escalation agent retries the same ticket creation; the API answers HTTP 500 each time "
    "with a new request id in the error text.",
)
def zendesk_500_request_id(callbacks: Callbacks) -> None:
    ids = Ids("zendesk_500_request_id")
    vol = Volatile("zendesk_500_request_id")

    @tool
    def create_ticket(subject: str, requester: str, priority: str) -> str:
        """Creates a ticket in the helpdesk."""
        raise ToolException(f"HTTP 500 Internal Server Error from /api/v2/tickets (X-Request-Id: {vol.hex(24)})")

    args = {"subject": "Data export stuck at 99%", "requester": "ops@globex.com", "priority": "high"}
    replies: list[Any] = [ids.call("create_ticket", args) for _ in range(16)]
    replies.append(
        "The helpdesk API keeps returning HTTP 500, so I couldn't create the ticket; please file it manually."
    )
    run_agent(
        callbacks,
        scripted(replies),
        [failing(create_ticket)],
        "Open a high-priority ticket for Globex: their data export has been stuck at 99% since yesterday.",
    )


# --------------------------------------------------------------------------------------------------- ab_alternation


@scenario(
    "feature_flag_flipflop",
    "ab_alternation",
    style="create_agent",
    loop_start=4,
    description="A release agent enables a flag, sees errors, disables it, sees conversion drop, enables it again... "
    "the two set_flag replies alternate while the history grows.",
)
def feature_flag_flipflop(callbacks: Callbacks) -> None:
    ids = Ids("feature_flag_flipflop")

    @tool
    def get_flag(flag: str) -> str:
        """Reads a feature flag."""
        return f"{flag}: enabled=false rollout=0% owner=checkout-team"

    @tool
    def set_flag(flag: str, enabled: bool) -> str:
        """Turns a feature flag on or off for all users."""
        if enabled:
            return f"{flag} enabled. Alert: checkout 5xx rate 3.2% (threshold 2%)"
        return f"{flag} disabled. Alert resolved. Note: conversion -1.4% vs. last week"

    replies: list[Any] = [ids.call("get_flag", {"flag": "new-checkout"})]
    for _ in range(10):
        replies.append(ids.call("set_flag", {"flag": "new-checkout", "enabled": True}, text="Turning it on."))
        replies.append(ids.call("set_flag", {"flag": "new-checkout", "enabled": False}, text="Errors, turning off."))
    replies.append("new-checkout is off; it raises 5xx when on, so the team needs to fix it before rollout.")
    run_agent(
        callbacks,
        scripted(replies, model="gpt-4.1-mini"),
        [get_flag, set_flag],
        "Roll out new-checkout but keep conversion up.",
    )


# ---------------------------------------------------------------------------------------------------- rotation_loop


@scenario(
    "trip_planning_rotation",
    "rotation_loop",
    style="create_agent",
    loop_start=5,
    description="A travel agent cycles flights -> hotels -> policy check; nothing fits the policy and the results "
    "never change, but it keeps rotating.",
)
def trip_planning_rotation(callbacks: Callbacks) -> None:
    ids = Ids("trip_planning_rotation")

    @tool
    def get_traveler(employee_id: str) -> str:
        """Reads the traveller profile."""
        return "E-1182 Noor Haddad, home airport LHR, policy band B"

    @tool
    def search_flights(origin: str, destination: str, date: str) -> str:
        """Searches flights."""
        return "BA117 LHR-JFK 08:25 $1,140; VS3 LHR-JFK 11:40 $1,205; AA101 LHR-JFK 08:00 $1,180"

    @tool
    def search_hotels(city: str, check_in: str, nights: int, max_rate: int) -> str:
        """Searches hotels under a nightly cap."""
        return "No availability under $250/night in Manhattan for those dates (citywide event)."

    @tool
    def check_policy(band: str, trip_type: str) -> str:
        """Returns the travel policy limits."""
        return "Band B: economy flights up to $900 transatlantic, hotels up to $250/night"

    cycle: list[tuple[str, dict[str, Any]]] = [
        ("search_flights", {"origin": "LHR", "destination": "JFK", "date": "2025-04-07"}),
        ("search_hotels", {"city": "New York", "check_in": "2025-04-07", "nights": 3, "max_rate": 250}),
        ("check_policy", {"band": "B", "trip_type": "international"}),
    ]
    replies: list[Any] = [ids.call("get_traveler", {"employee_id": "E-1182"})]
    for i in range(21):
        name, args = cycle[i % 3]
        replies.append(ids.call(name, args))
    replies.append("Nothing in policy is available for 7-10 April; I suggest requesting a policy exception.")
    run_agent(
        callbacks,
        scripted(replies),
        [get_traveler, search_flights, search_hotels, check_policy],
        "Book Noor's NYC trip, 7-10 April, within policy.",
    )


@scenario(
    "flaky_test_rotation",
    "rotation_loop",
    style="create_agent",
    loop_start=4,
    description="A coding agent runs the failing test, reads the source, greps for the timeout, and repeats the same "
    "three steps without ever editing anything.",
)
def flaky_test_rotation(callbacks: Callbacks) -> None:
    ids = Ids("flaky_test_rotation")

    @tool
    def run_tests(target: str) -> str:
        """Runs pytest."""
        return "FAILED tests/test_checkout.py::test_payment_timeout - TimeoutError after 5.0s\n1 failed, 88 passed"

    @tool
    def read_file(path: str) -> str:
        """Reads a file."""
        return "PAYMENT_TIMEOUT_S = 5.0\n\ndef charge(client, order):\n    return client.post('/charge', timeout=...)"

    @tool
    def grep(pattern: str, path: str) -> str:
        """Searches the repository."""
        return "src/checkout/pay.py:1:PAYMENT_TIMEOUT_S = 5.0\ntests/conftest.py:12:FAKE_GATEWAY_DELAY_S = 6.0"

    cycle: list[tuple[str, dict[str, Any]]] = [
        ("run_tests", {"target": "tests/test_checkout.py::test_payment_timeout"}),
        ("read_file", {"path": "src/checkout/pay.py"}),
        ("grep", {"pattern": "TIMEOUT|DELAY", "path": "."}),
    ]
    replies: list[Any] = [ids.call(*cycle[i % 3]) for i in range(18)]
    replies.append("The fake gateway delay (6s) exceeds the 5s timeout; the test needs a shorter fake delay.")
    run_agent(
        callbacks,
        scripted(replies, model="claude-3-7-sonnet-latest", provider="anthropic"),
        [run_tests, read_file, grep],
        "test_payment_timeout fails in CI. Find out why.",
    )


@scenario(
    "account_review_rotation",
    "rotation_loop",
    style="create_agent",
    loop_start=5,
    description="A sales agent preparing a QBR cycles through account, opportunities, tickets and usage lookups, four "
    "calls whose results never change, round after round.",
)
def account_review_rotation(callbacks: Callbacks) -> None:
    ids = Ids("account_review_rotation")

    @tool
    def get_account(account: str) -> str:
        """Reads the CRM account."""
        return f"{account}: ARR $480k, renewal 2025-06-30, CSM: Ines"

    @tool
    def get_opportunities(account: str) -> str:
        """Lists open opportunities."""
        return "Expansion: +200 seats ($96k) stage=Negotiation; Add-on: audit logs ($18k) stage=Discovery"

    @tool
    def get_support_tickets(account: str, days: int) -> str:
        """Lists recent support tickets."""
        return "7 tickets in 90d, 2 P1 (SSO outage 02-11, export timeout 02-26), CSAT 3.9"

    @tool
    def get_usage(account: str, metric: str) -> str:
        """Returns a usage metric trend."""
        return "weekly active seats: 1,240 -> 1,180 -> 1,205 (licensed 1,500)"

    cycle: list[tuple[str, dict[str, Any]]] = [
        ("get_account", {"account": "Initech"}),
        ("get_opportunities", {"account": "Initech"}),
        ("get_support_tickets", {"account": "Initech", "days": 90}),
        ("get_usage", {"account": "Initech", "metric": "weekly_active_seats"}),
    ]
    replies: list[Any] = [ids.call(*cycle[i % 4]) for i in range(20)]
    replies.append("Initech QBR: $480k ARR, 80% seat utilisation, two P1s to address before the 200-seat expansion.")
    run_agent(
        callbacks,
        scripted(replies, model="gpt-4o"),
        [get_account, get_opportunities, get_support_tickets, get_usage],
        "Prep me for the Initech QBR tomorrow.",
    )


# ------------------------------------------------------------------------------------------------- pagination_stuck


@scenario(
    "same_page_requested",
    "pagination_stuck",
    style="create_agent",
    loop_start=4,
    description="A reconciliation agent reads bank transactions pages 1, 2, 3, then keeps requesting page 3 and "
    "getting the same rows.",
)
def same_page_requested(callbacks: Callbacks) -> None:
    ids = Ids("same_page_requested")
    vol = Volatile("same_page_requested")
    pages = {
        p: [f"TX{vol.int(100000, 999999)} ${vol.int(10, 9000)}.{vol.int(10, 99)}" for _ in range(4)] for p in (1, 2, 3)
    }

    @tool
    def list_transactions(account: str, page: int) -> str:
        """Lists bank transactions, newest first."""
        return json.dumps({"page": page, "of": 9, "rows": pages.get(page, [])})

    replies: list[Any] = [ids.call("list_transactions", {"account": "GB29-NWBK-6016", "page": p}) for p in (1, 2)]
    replies += [ids.call("list_transactions", {"account": "GB29-NWBK-6016", "page": 3}) for _ in range(15)]
    replies.append("I matched 12 transactions so far; pages 4-9 still need reconciling.")
    run_agent(
        callbacks,
        scripted(replies),
        [list_transactions],
        "Reconcile the February bank feed for account GB29-NWBK-6016 against the ledger.",
    )


@scenario(
    "page_arg_ignored",
    "pagination_stuck",
    style="create_agent",
    loop_start=3,
    description="A support-ops agent pages through open tickets but the tool ignores the page argument and returns "
    "the same 5 tickets for every page; the loop starts at the first request made after two identical pages "
    "(call 3).",
)
def page_arg_ignored(callbacks: Callbacks) -> None:
    ids = Ids("page_arg_ignored")

    @tool
    def list_open_tickets(queue: str, page: int) -> str:
        """Lists open tickets in a queue, 5 per page."""
        return "T-901 login fails | T-905 invoice wrong | T-910 CSV export empty | T-911 SSO error | T-917 slow UI"

    replies: list[Any] = [ids.call("list_open_tickets", {"queue": "tier2", "page": p}) for p in range(1, 19)]
    replies.append("Tier 2 has at least 5 open tickets: T-901, T-905, T-910, T-911, T-917.")
    run_agent(
        callbacks,
        scripted(replies, model="gpt-4o-mini"),
        [list_open_tickets],
        "Give me the full list of open tier-2 tickets.",
    )


# ---------------------------------------------------------------------------------------------- supervisor_pingpong


@scenario(
    "contract_signoff_pingpong",
    "supervisor_pingpong",
    style="create_agent",
    loop_start=5,
    description="A deal-desk supervisor agent asks the legal sub-agent, then the finance sub-agent; each says it "
    "waits on the other, and the supervisor bounces between them with the same questions.",
)
def contract_signoff_pingpong(callbacks: Callbacks) -> None:
    ids = Ids("contract_signoff_pingpong")
    rounds = 8
    legal_reply = "Legal can sign once Finance confirms the net-90 payment terms are within policy."
    finance_reply = "Finance will confirm the net-90 terms once Legal approves the uncapped indemnity clause."
    legal = create_agent(scripted([legal_reply] * rounds, model="gpt-4o-mini"), [], system_prompt="You are counsel.")
    finance = create_agent(scripted([finance_reply] * rounds, model="gpt-4o-mini"), [], system_prompt="You are FP&A.")

    @tool
    def ask_legal(question: str, config: RunnableConfig) -> str:
        """Asks the legal agent."""
        return text_of(legal.invoke({"messages": [HumanMessage(question)]}, config)["messages"][-1])

    @tool
    def ask_finance(question: str, config: RunnableConfig) -> str:
        """Asks the finance agent."""
        return text_of(finance.invoke({"messages": [HumanMessage(question)]}, config)["messages"][-1])

    replies: list[Any] = []
    for _ in range(rounds):
        replies.append(ids.call("ask_legal", {"question": "Can we sign the Umbrella Corp MSA this week?"}))
        replies.append(ids.call("ask_finance", {"question": "Are the Umbrella Corp MSA terms approved?"}))
    replies.append("Legal and Finance are each waiting on the other; escalating the Umbrella MSA to the GC and CFO.")
    run_agent(
        callbacks,
        scripted(replies, model="gpt-4.1"),
        [ask_legal, ask_finance],
        "Get the Umbrella Corp MSA signed off by legal and finance.",
    )


# ----------------------------------------------------------------------------------------- repeated_answer_no_input


@scenario(
    "citation_guardrail_regenerate",
    "repeated_answer_no_input",
    style="create_agent",
    loop_start=3,
    description="A policy Q&A agent answers; a guardrail middleware removes any answer lacking a citation and jumps "
    "back to the model, which regenerates the identical answer from the identical state many times.",
)
def citation_guardrail_regenerate(callbacks: Callbacks) -> None:
    ids = Ids("citation_guardrail_regenerate")

    @tool
    def search_policy(query: str) -> str:
        """Searches the employee handbook."""
        return "[HB-4.2] Remote work abroad is allowed up to 20 working days per calendar year with manager approval."

    @after_model(can_jump_to=["model"])
    def require_citation(state: AgentState[Any], runtime: Runtime[None]) -> dict[str, Any] | None:
        last = state["messages"][-1]
        if isinstance(last, AIMessage) and not last.tool_calls and "[HB-" not in text_of(last):
            return {"messages": [RemoveMessage(id=str(last.id))], "jump_to": "model"}
        return None

    answer = "You can work from abroad for up to 20 working days a year, as long as your manager approves it."
    replies: list[Any] = [ids.call("search_policy", {"query": "working remotely from another country"})]
    replies += [answer] * 15
    replies.append(answer + " [HB-4.2]")
    agent = create_agent(
        scripted(replies, model="claude-3-5-haiku-latest", provider="anthropic"),
        [search_policy],
        middleware=[require_citation],
    )
    agent.invoke({"messages": [HumanMessage("Can I work from Portugal for a few weeks?")]}, cfg(callbacks, 120))

"""Progressing runs of ``langchain.agents.create_agent`` agents."""

from __future__ import annotations

import json
from typing import Any

from langchain.agents import create_agent
from langchain.agents.middleware import HumanInTheLoopMiddleware
from langchain_core.messages import HumanMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import ToolException, tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from ._kit import Callbacks, Ids, Volatile, cfg, failing, run_agent, scenario, scripted, text_of

# --------------------------------------------------------------------------------------------- batch_classification


@scenario(
    "support_queue_spam_triage",
    "batch_classification",
    style="create_agent",
    description="A mailbox triage agent pops messages off an abuse queue with the same argument-less call and labels "
    "each one 'spam'; every message is different, the queue ends empty.",
)
def support_queue_spam_triage(callbacks: Callbacks) -> None:
    ids = Ids("support_queue_spam_triage")
    senders = [
        ("m-5102", "promo@cheap-watches.biz", "Replica watches 90% off, today only"),
        ("m-5107", "noreply@crypto-yield.io", "Your wallet earned 4.2 BTC, claim now"),
        ("m-5113", "hr-dept@payro11.com", "Urgent: confirm your salary account"),
        ("m-5118", "winner@lotto-intl.net", "Congratulations, you were selected"),
        ("m-5121", "seo@rank-first.agency", "Page 1 of Google in 7 days guaranteed"),
        ("m-5124", "billing@micros0ft-support.co", "Your licence expired, renew to avoid data loss"),
        ("m-5130", "deals@pharma-direct.ru", "No prescription needed, ships worldwide"),
        ("m-5136", "ceo@company-mail.top", "Quick favour - buy gift cards for the team"),
        ("m-5141", "info@loan-approve.fast", "Pre-approved loan of $25,000, no credit check"),
    ]
    queue = list(senders)

    @tool
    def next_message() -> str:
        """Pops the oldest message from the abuse-report queue."""
        if not queue:
            return "QUEUE EMPTY"
        mid, sender, subject = queue.pop(0)
        return json.dumps({"id": mid, "from": sender, "subject": subject, "reported_by": 1 + len(queue) % 3})

    @tool
    def label_message(message_id: str, label: str) -> str:
        """Applies a label to a reported message."""
        return f"ok: {message_id} -> {label}"

    replies: list[Any] = []
    for mid, _, _ in senders:
        replies.append(ids.call("next_message", {}))
        replies.append(ids.call("label_message", {"message_id": mid, "label": "spam"}))
    replies.append(ids.call("next_message", {}))
    replies.append(f"Queue cleared: {len(senders)} reported messages reviewed, all labelled spam.")
    run_agent(
        callbacks,
        scripted(replies),
        [next_message, label_message],
        "Work through the abuse-report queue until it is empty. Label each message spam, phishing or ham.",
        system="You are the mail-security triage assistant for Northwind Corp.",
    )


@scenario(
    "ap_invoice_duplicate_screen",
    "batch_classification",
    style="create_agent",
    description="An accounts-payable agent fetches eleven distinct invoices and records the same fixed JSON verdict "
    "(not a duplicate, approve) for each, then reports.",
)
def ap_invoice_duplicate_screen(callbacks: Callbacks) -> None:
    ids = Ids("ap_invoice_duplicate_screen")
    vol = Volatile("ap_invoice_duplicate_screen")
    vendors = ["Acme Tooling", "Bluewater Logistics", "Cobalt Print", "Delta Janitorial", "Evergreen Catering"]
    invoices = {f"INV-{24031 + 7 * i}": (vendors[i % len(vendors)], vol.int(180, 9800)) for i in range(11)}

    @tool
    def get_invoice(invoice_id: str) -> str:
        """Fetches an invoice header from the AP ledger."""
        vendor, cents = invoices[invoice_id]
        return f"{invoice_id} vendor={vendor} amount=${cents}.00 po=PO-{cents % 977} received=2025-03-0{cents % 9 + 1}"

    @tool
    def record_screening(invoice_id: str, verdict: str) -> str:
        """Stores the duplicate-screening verdict for an invoice."""
        return f"saved verdict for {invoice_id}"

    verdict = json.dumps({"duplicate": False, "action": "approve"})
    replies: list[Any] = []
    for inv in invoices:
        replies.append(ids.call("get_invoice", {"invoice_id": inv}))
        replies.append(ids.call("record_screening", {"invoice_id": inv, "verdict": verdict}))
    replies.append("Screened 11 invoices: no duplicates found, all approved for the Thursday payment run.")
    run_agent(
        callbacks,
        scripted(replies, model="gpt-4.1-mini"),
        [get_invoice, record_screening],
        "Screen these invoices for duplicates before the payment run: " + ", ".join(invoices),
    )


# --------------------------------------------------------------------------------------------------- extraction_map


@scenario(
    "resume_field_extraction",
    "extraction_map",
    style="create_agent",
    description="A recruiting agent reads seven distinct resumes and saves structured fields; most candidates get the "
    "same 'none / not required' clearance and visa fields.",
)
def resume_field_extraction(callbacks: Callbacks) -> None:
    ids = Ids("resume_field_extraction")
    resumes = {
        "cand-301": "Priya N. - 6y backend (Go, Postgres). Citizen. No clearance. Open to Berlin.",
        "cand-302": "Marco B. - 3y data eng (Spark, Airflow). EU citizen. Wants remote.",
        "cand-303": "Lena K. - 9y SRE, Kubernetes, on-call lead. Holds SC clearance (UK).",
        "cand-304": "Tom W. - new grad, CS BSc, internship at fintech. Needs no sponsorship.",
        "cand-305": "Aisha R. - 5y ML eng (PyTorch), published at NeurIPS. Citizen.",
        "cand-306": "Jonas F. - 4y frontend (React, TS). Requires H-1B transfer.",
        "cand-307": "Chen L. - 7y platform, Terraform, AWS. Permanent resident.",
    }

    @tool
    def get_resume(candidate_id: str) -> str:
        """Returns the parsed text of a candidate's resume."""
        return resumes[candidate_id]

    @tool
    def save_fields(candidate_id: str, fields: str) -> str:
        """Saves extracted fields to the ATS."""
        return f"ATS updated for {candidate_id}"

    def fields(cid: str) -> str:
        text = resumes[cid]
        clearance = "SC" if "SC clearance" in text else "none"
        visa = "H-1B transfer" if "H-1B" in text else "not required"
        return json.dumps({"security_clearance": clearance, "visa_sponsorship": visa})

    replies: list[Any] = []
    for cid in resumes:
        replies.append(ids.call("get_resume", {"candidate_id": cid}))
        replies.append(ids.call("save_fields", {"candidate_id": cid, "fields": fields(cid)}))
    replies.append("All 7 candidates processed; one holds SC clearance and one needs an H-1B transfer.")
    run_agent(
        callbacks,
        scripted(replies, model="claude-3-5-haiku-latest", provider="anthropic"),
        [get_resume, save_fields],
        "Extract security clearance and visa sponsorship needs for every candidate in the SRE-2025 pipeline: "
        + ", ".join(resumes),
    )


# ------------------------------------------------------------------------------------------------------- pagination


@scenario(
    "crm_contacts_export",
    "pagination",
    style="create_agent",
    description="A sales-ops agent pages through the enterprise segment of the CRM (page=1..7) until an empty page, "
    "then exports the contacts.",
)
def crm_contacts_export(callbacks: Callbacks) -> None:
    ids = Ids("crm_contacts_export")
    vol = Volatile("crm_contacts_export")
    pages = {p: [f"{vol.hex(6)}@acct{p}{i}.example.com" for i in range(vol.int(3, 6))] for p in range(1, 7)}

    @tool
    def list_contacts(segment: str, page: int) -> str:
        """Lists CRM contacts of a segment, 50 per page."""
        rows = pages.get(page, [])
        if not rows:
            return json.dumps({"page": page, "contacts": [], "has_more": False})
        return json.dumps({"page": page, "contacts": rows, "has_more": True})

    @tool
    def export_csv(segment: str, count: int) -> str:
        """Exports the gathered contacts to a CSV in the shared drive."""
        return f"exports/{segment}-contacts.csv written ({count} rows)"

    total = sum(len(v) for v in pages.values())
    replies: list[Any] = [ids.call("list_contacts", {"segment": "enterprise", "page": p}) for p in range(1, 8)]
    replies.append(ids.call("export_csv", {"segment": "enterprise", "count": total}))
    replies.append(f"Exported {total} enterprise contacts across 6 pages to exports/enterprise-contacts.csv.")
    run_agent(
        callbacks,
        scripted(replies),
        [list_contacts, export_csv],
        "Pull every enterprise-segment contact from the CRM and export them for the Q2 campaign.",
    )


@scenario(
    "s3_continuation_listing",
    "pagination",
    style="create_agent",
    description="A data-platform agent lists an S3 prefix with continuation tokens, five pages, then reports stale "
    "partitions.",
)
def s3_continuation_listing(callbacks: Callbacks) -> None:
    ids = Ids("s3_continuation_listing")
    vol = Volatile("s3_continuation_listing")
    tokens = [None, *[vol.hex(20) for _ in range(4)]]

    @tool
    def list_objects(bucket: str, prefix: str, continuation_token: str | None = None) -> str:
        """Lists up to 1000 keys under a prefix (S3 ListObjectsV2)."""
        index = tokens.index(continuation_token)
        keys = [f"{prefix}dt=2025-02-{index * 5 + d:02d}/part-0000{d}.parquet" for d in range(1, 4)]
        nxt = tokens[index + 1] if index + 1 < len(tokens) else None
        return json.dumps({"KeyCount": 1000 - index * 37, "SampleKeys": keys, "NextContinuationToken": nxt})

    replies: list[Any] = [
        ids.call("list_objects", {"bucket": "acme-lake-prod", "prefix": "events/clickstream/", **tok})
        for tok in [{}, *[{"continuation_token": t} for t in tokens[1:]]]
    ]
    replies.append("The prefix holds 4,630 objects over 5 listing pages; partitions before 2025-02-06 look stale.")
    run_agent(
        callbacks,
        scripted(replies, model="gpt-4o"),
        [list_objects],
        "How many objects are under s3://acme-lake-prod/events/clickstream/ and are there stale partitions?",
    )


# ------------------------------------------------------------------------------------------------- polling_finishes


@scenario(
    "etl_pipeline_poll",
    "polling_finishes",
    style="create_agent",
    description="A data-ops agent triggers an ETL run and polls its status eight times with the same call; each status "
    "carries a new progress percentage and row count until it succeeds.",
)
def etl_pipeline_poll(callbacks: Callbacks) -> None:
    ids = Ids("etl_pipeline_poll")
    progress = [4, 11, 23, 38, 52, 67, 85, 100]
    state = {"polls": 0}

    @tool
    def trigger_pipeline(pipeline: str) -> str:
        """Starts a pipeline run."""
        return f"run_id=run-7731 pipeline={pipeline} state=QUEUED"

    @tool
    def get_run_status(run_id: str) -> str:
        """Returns the state of a pipeline run."""
        pct = progress[state["polls"]]
        state["polls"] += 1
        if pct == 100:
            return f"{run_id} SUCCEEDED rows=1,204,551 duration=00:{state['polls'] * 3:02d}:10"
        return f"{run_id} RUNNING {pct}% rows={pct * 12045:,} elapsed=00:{state['polls'] * 3:02d}:10"

    @tool
    def get_run_metrics(run_id: str) -> str:
        """Returns row-level quality metrics of a finished run."""
        return "null_rate=0.02% rejected_rows=311 late_partitions=0"

    replies: list[Any] = [ids.call("trigger_pipeline", {"pipeline": "orders_daily"})]
    replies += [ids.call("get_run_status", {"run_id": "run-7731"}) for _ in progress]
    replies.append(ids.call("get_run_metrics", {"run_id": "run-7731"}))
    replies.append("orders_daily finished: 1,204,551 rows loaded, 311 rejected, no late partitions.")
    run_agent(
        callbacks,
        scripted(replies),
        [trigger_pipeline, get_run_status, get_run_metrics],
        "Backfill orders_daily for yesterday and tell me when it's done and whether the data looks OK.",
    )


@scenario(
    "k8s_rollout_poll",
    "polling_finishes",
    style="create_agent",
    description="A deploy agent applies a manifest and polls rollout status: three identical '1 of 4' results, then "
    "2 of 4, 3 of 4, then success.",
)
def k8s_rollout_poll(callbacks: Callbacks) -> None:
    ids = Ids("k8s_rollout_poll")
    statuses = [
        'Waiting for deployment "checkout" rollout to finish: 1 of 4 updated replicas are available...',
        'Waiting for deployment "checkout" rollout to finish: 1 of 4 updated replicas are available...',
        'Waiting for deployment "checkout" rollout to finish: 1 of 4 updated replicas are available...',
        'Waiting for deployment "checkout" rollout to finish: 2 of 4 updated replicas are available...',
        'Waiting for deployment "checkout" rollout to finish: 3 of 4 updated replicas are available...',
        'deployment "checkout" successfully rolled out',
    ]
    pending = list(statuses)

    @tool
    def kubectl_apply(path: str, namespace: str) -> str:
        """Runs kubectl apply -f on a manifest."""
        return "deployment.apps/checkout configured\nservice/checkout unchanged"

    @tool
    def rollout_status(deployment: str, namespace: str) -> str:
        """Runs kubectl rollout status once (non-blocking)."""
        return pending.pop(0)

    replies: list[Any] = [ids.call("kubectl_apply", {"path": "k8s/checkout.yaml", "namespace": "shop"})]
    replies += [ids.call("rollout_status", {"deployment": "checkout", "namespace": "shop"}) for _ in statuses]
    replies.append("checkout v2.14.0 is rolled out in namespace shop; all 4 replicas are available.")
    run_agent(
        callbacks,
        scripted(replies, model="gpt-4.1"),
        [kubectl_apply, rollout_status],
        "Deploy checkout v2.14.0 to the shop namespace and confirm the rollout.",
        system="You are the platform team's deploy bot. Poll rollout status until it finishes.",
    )


# ----------------------------------------------------------------------------------------------- retry_then_success


@scenario(
    "payment_capture_retry",
    "retry_then_success",
    style="create_agent",
    description="A billing agent's capture call fails twice with the same gateway timeout, succeeds on the third "
    "attempt, then the agent sends the receipt.",
)
def payment_capture_retry(callbacks: Callbacks) -> None:
    ids = Ids("payment_capture_retry")
    state = {"attempts": 0}

    @tool
    def get_payment_intent(intent_id: str) -> str:
        """Reads a payment intent."""
        return f"{intent_id} status=requires_capture amount=EUR 412.90 customer=cus_Q81x"

    @tool
    def capture_payment(intent_id: str) -> str:
        """Captures an authorised payment intent."""
        state["attempts"] += 1
        if state["attempts"] <= 2:
            raise ToolException("GatewayTimeout: acquirer did not respond within 30s")
        return f"{intent_id} captured, charge ch_3Pz9 EUR 412.90"

    @tool
    def send_receipt(customer_id: str, charge_id: str) -> str:
        """Emails a receipt to the customer."""
        return "receipt queued"

    replies: list[Any] = [
        ids.call("get_payment_intent", {"intent_id": "pi_88Zk"}),
        ids.call("capture_payment", {"intent_id": "pi_88Zk"}),
        ids.call("capture_payment", {"intent_id": "pi_88Zk"}, text="Gateway timed out; retrying once."),
        ids.call("capture_payment", {"intent_id": "pi_88Zk"}, text="Still a timeout; one last retry."),
        ids.call("send_receipt", {"customer_id": "cus_Q81x", "charge_id": "ch_3Pz9"}),
        "Captured EUR 412.90 on pi_88Zk after two gateway timeouts; receipt sent to the customer.",
    ]
    run_agent(
        callbacks,
        scripted(replies),
        [get_payment_intent, failing(capture_payment), send_receipt],
        "Order 55120 shipped, please capture payment intent pi_88Zk and send the receipt.",
    )


@scenario(
    "ledger_export_retry",
    "retry_then_success",
    style="create_agent",
    description="A finance-close agent hits a 'ledger locked by reconciliation' error once, retries the export, "
    "succeeds, and uploads the file.",
)
def ledger_export_retry(callbacks: Callbacks) -> None:
    ids = Ids("ledger_export_retry")
    state = {"attempts": 0}

    @tool
    def export_ledger(entity: str, period: str) -> str:
        """Exports the general ledger of an entity for a period."""
        state["attempts"] += 1
        if state["attempts"] == 1:
            return "ERROR: ledger locked by job nightly_reconciliation (started 02:00), try again shortly"
        return f"gl_{entity}_{period}.csv ready (48,210 lines, debits=credits=18,902,114.07)"

    @tool
    def upload_to_sftp(filename: str, destination: str) -> str:
        """Uploads a file to the auditors' SFTP."""
        return f"uploaded {filename} to {destination}"

    replies: list[Any] = [
        ids.call("export_ledger", {"entity": "ACME-UK", "period": "2025-02"}),
        ids.call("export_ledger", {"entity": "ACME-UK", "period": "2025-02"}),
        ids.call("upload_to_sftp", {"filename": "gl_ACME-UK_2025-02.csv", "destination": "/auditors/inbox"}),
        "February GL for ACME-UK exported (balanced, 48,210 lines) and delivered to the auditors.",
    ]
    run_agent(
        callbacks,
        scripted(replies, model="gpt-4o"),
        [export_ledger, upload_to_sftp],
        "Send the auditors the February general ledger for ACME-UK.",
    )


# ------------------------------------------------------------------------------------------------ rate_limit_clears


@scenario(
    "market_quotes_rate_limit",
    "rate_limit_clears",
    style="create_agent",
    description="A portfolio agent's quote tool answers 'rate limited, retry' in-band twice, then returns prices; the "
    "agent then computes exposure.",
)
def market_quotes_rate_limit(callbacks: Callbacks) -> None:
    ids = Ids("market_quotes_rate_limit")
    state = {"calls": 0}

    @tool
    def get_quotes(symbols: list[str]) -> str:
        """Returns last prices for a list of tickers."""
        state["calls"] += 1
        if state["calls"] <= 2:
            return "rate limited: 5 requests/min exceeded, retry after 12s"
        return json.dumps({"AAPL": 227.48, "MSFT": 415.12, "NVDA": 118.02, "TLT": 91.40})

    @tool
    def get_positions(account: str) -> str:
        """Returns the positions of a brokerage account."""
        return json.dumps({"AAPL": 120, "MSFT": 80, "NVDA": 300, "TLT": 450})

    symbols = ["AAPL", "MSFT", "NVDA", "TLT"]
    replies: list[Any] = [
        ids.call("get_positions", {"account": "IRA-4471"}),
        ids.call("get_quotes", {"symbols": symbols}),
        ids.call("get_quotes", {"symbols": symbols}),
        ids.call("get_quotes", {"symbols": symbols}),
        "IRA-4471 is worth $162,918: equities 74.8% (NVDA largest at $35,406), treasuries (TLT) 25.2%.",
    ]
    run_agent(
        callbacks,
        scripted(replies),
        [get_quotes, get_positions],
        "What's the current equity/bond split of account IRA-4471?",
    )


# --------------------------------------------------------------------------------------------------------- research


@scenario(
    "competitor_pricing_research",
    "research",
    style="create_agent",
    description="A product-marketing agent runs five different web searches and reads two pages before writing a "
    "pricing comparison.",
)
def competitor_pricing_research(callbacks: Callbacks) -> None:
    ids = Ids("competitor_pricing_research")
    results = {
        "linear pricing per seat 2025": "Linear: Free, Standard $8/user/mo, Plus $14/user/mo (linear.app/pricing)",
        "jira software cloud standard price": "Jira Standard $7.53/user/mo, Premium $13.53 (atlassian.com)",
        "shortcut app pricing team plan": "Shortcut Team $8.50/user/mo, Business $12 (shortcut.com/pricing)",
        "height app pricing changes": "Height moved to usage tiers in Jan 2025 (blog.height.app)",
        "issue tracker price increase 2025 news": "Atlassian announced 5-10% cloud price rise from Oct 2024",
    }

    @tool
    def web_search(query: str) -> str:
        """Searches the web and returns the top snippet."""
        return results[query]

    @tool
    def fetch_page(url: str) -> str:
        """Fetches a page as text."""
        return f"[{url}] pricing table: seats, annual discount 20%, SSO only on top tier, audit log on Plus+"

    replies: list[Any] = [ids.call("web_search", {"query": q}) for q in results]
    replies.append(ids.call("fetch_page", {"url": "https://linear.app/pricing"}))
    replies.append(ids.call("fetch_page", {"url": "https://www.atlassian.com/software/jira/pricing"}))
    replies.append(
        "Per-seat list prices: Jira $7.53, Linear $8, Shortcut $8.50 (standard tiers). SSO is gated to the top tier "
        "everywhere; we can undercut on SSO at $10/seat."
    )
    run_agent(
        callbacks,
        scripted(replies, model="claude-3-5-sonnet-latest", provider="anthropic"),
        [web_search, fetch_page],
        "Research how issue trackers price their team plans and recommend where we should position.",
    )


@scenario(
    "vendor_due_diligence",
    "research",
    style="create_agent",
    description="A procurement agent checks a supplier through four different sources (registry, sanctions, credit, "
    "news) and issues a risk memo.",
)
def vendor_due_diligence(callbacks: Callbacks) -> None:
    ids = Ids("vendor_due_diligence")

    @tool
    def company_registry(name: str, country: str) -> str:
        """Looks a company up in the national registry."""
        return f"{name} ({country}) reg 09812277, incorporated 2011, active, 2 directors"

    @tool
    def sanctions_screen(name: str) -> str:
        """Screens a name against OFAC/EU/UK lists."""
        return "no matches (OFAC SDN, EU consolidated, UK HMT)"

    @tool
    def credit_report(registration: str) -> str:
        """Returns a credit score and payment behaviour."""
        return "score 71/100, days beyond terms 9, CCJs none, limit GBP 250k"

    @tool
    def news_search(query: str) -> str:
        """Searches news articles."""
        return "2024-11: Brightline Metals wins Network Rail framework; no adverse media found"

    replies: list[Any] = [
        ids.call("company_registry", {"name": "Brightline Metals Ltd", "country": "GB"}),
        ids.call("sanctions_screen", {"name": "Brightline Metals Ltd"}),
        ids.call("credit_report", {"registration": "09812277"}),
        ids.call("news_search", {"query": "Brightline Metals Ltd fraud OR lawsuit OR insolvency"}),
        "Low risk: active since 2011, clean sanctions screen, credit 71/100 (GBP 250k limit), no adverse media.",
    ]
    run_agent(
        callbacks,
        scripted(replies),
        [company_registry, sanctions_screen, credit_report, news_search],
        "Onboard Brightline Metals Ltd as a supplier; run the standard due diligence first.",
    )


# ------------------------------------------------------------------------------------------------- edit_test_coding


@scenario(
    "fix_date_parser_bug",
    "edit_test_coding",
    style="create_agent",
    description="A coding agent reads a module, runs the tests (3 failures), edits, reruns (1 different failure), "
    "edits again and gets a green run.",
)
def fix_date_parser_bug(callbacks: Callbacks) -> None:
    ids = Ids("fix_date_parser_bug")
    edits: list[str] = []
    runs = [
        "FAILED tests/test_dates.py::test_iso_week - ValueError: week 53\n"
        "FAILED tests/test_dates.py::test_tz_offset - AssertionError: '+0530' != '+05:30'\n"
        "FAILED tests/test_dates.py::test_leap_day - ValueError: day is out of range for month\n3 failed, 41 passed",
        "FAILED tests/test_dates.py::test_tz_offset - AssertionError: '+05:30' != '+0530' (round-trip)\n"
        "1 failed, 43 passed",
        "44 passed in 1.82s",
    ]

    @tool
    def read_file(path: str) -> str:
        """Reads a file from the repository."""
        return "def parse(s):\n    dt = datetime.strptime(s, FMT)\n    return dt.replace(year=dt.year)\n"

    @tool
    def edit_file(path: str, old: str, new: str) -> str:
        """Replaces text in a file."""
        edits.append(new)
        return f"{path}: 1 replacement"

    @tool
    def run_tests(target: str) -> str:
        """Runs pytest on a target."""
        return runs[len(edits)]

    replies: list[Any] = [
        ids.call("read_file", {"path": "src/dates/parse.py"}),
        ids.call("run_tests", {"target": "tests/test_dates.py"}),
        ids.call(
            "edit_file",
            {"path": "src/dates/parse.py", "old": "strptime(s, FMT)", "new": "isoparse(s)"},
            text="Switching to dateutil's isoparse handles week 53 and leap days.",
        ),
        ids.call("run_tests", {"target": "tests/test_dates.py"}),
        ids.call(
            "edit_file",
            {"path": "src/dates/parse.py", "old": "return dt", "new": "return normalise_offset(dt)"},
            text="Only the offset round-trip is left; normalising the offset format.",
        ),
        ids.call("run_tests", {"target": "tests/test_dates.py"}),
        "Fixed: parse() now uses isoparse and normalises UTC offsets; tests/test_dates.py is green (44 passed).",
    ]
    run_agent(
        callbacks,
        scripted(replies, model="claude-3-7-sonnet-latest", provider="anthropic"),
        [read_file, edit_file, run_tests],
        "tests/test_dates.py is red on main since the tz change. Please fix it.",
    )


# ------------------------------------------------------------------------------------------------ reread_after_edit


@scenario(
    "config_migration_reread",
    "reread_after_edit",
    style="create_agent",
    description="An infra agent migrates a YAML config in four edits and re-reads the same file after each one; the "
    "file content is different every time.",
)
def config_migration_reread(callbacks: Callbacks) -> None:
    ids = Ids("config_migration_reread")
    lines = ["version: 1", "db_url: postgres://db:5432/app", "cache: redis://cache:6379", "workers: 4"]
    steps = [
        ("version: 1", "version: 2"),
        ("db_url: postgres://db:5432/app", "database:\n  url: postgres://db:5432/app\n  pool: 10"),
        ("cache: redis://cache:6379", "cache:\n  url: redis://cache:6379\n  ttl_s: 300"),
        ("workers: 4", "runtime:\n  workers: 4\n  graceful_timeout_s: 30"),
    ]

    @tool
    def read_file(path: str) -> str:
        """Reads a file."""
        return "\n".join(lines)

    @tool
    def replace_in_file(path: str, old: str, new: str) -> str:
        """Replaces an exact snippet in a file."""
        lines[lines.index(old)] = new
        return "edited"

    replies: list[Any] = [ids.call("read_file", {"path": "deploy/app.yaml"})]
    for old, new in steps:
        replies.append(ids.call("replace_in_file", {"path": "deploy/app.yaml", "old": old, "new": new}))
        replies.append(ids.call("read_file", {"path": "deploy/app.yaml"}))
    replies.append("deploy/app.yaml is now schema v2 (database/cache/runtime sections); verified after each edit.")
    run_agent(
        callbacks,
        scripted(replies),
        [read_file, replace_in_file],
        "Migrate deploy/app.yaml to the v2 config schema. Verify the file after every change.",
    )


# ---------------------------------------------------------------------------------------------- tool_error_recovers


@scenario(
    "sql_bad_column_recovers",
    "tool_error_recovers",
    style="create_agent",
    description="An analytics agent's SQL fails on an unknown column; it describes the table, fixes the query and "
    "answers.",
)
def sql_bad_column_recovers(callbacks: Callbacks) -> None:
    ids = Ids("sql_bad_column_recovers")

    @tool
    def run_sql(query: str) -> str:
        """Runs a read-only query on the warehouse."""
        if "revenue" in query:
            return 'ERROR: column "revenue" does not exist\nLINE 1: SELECT region, sum(revenue) FROM orders ...'
        return "region | total\nEMEA | 1,842,110.50\nAMER | 3,104,882.10\nAPAC | 977,301.00"

    @tool
    def describe_table(table: str) -> str:
        """Lists the columns of a table."""
        return "orders(id bigint, region text, amount_usd numeric, created_at timestamptz, status text)"

    replies: list[Any] = [
        ids.call("run_sql", {"query": "SELECT region, sum(revenue) FROM orders GROUP BY 1"}),
        ids.call("describe_table", {"table": "orders"}),
        ids.call(
            "run_sql",
            {"query": "SELECT region, sum(amount_usd) AS total FROM orders WHERE status='paid' GROUP BY 1"},
        ),
        "Paid revenue by region: AMER $3.10M, EMEA $1.84M, APAC $0.98M.",
    ]
    run_agent(
        callbacks,
        scripted(replies, model="gpt-4o"),
        [run_sql, describe_table],
        "Revenue by region please, paid orders only.",
    )


@scenario(
    "calendar_conflict_recovers",
    "tool_error_recovers",
    style="create_agent",
    description="A scheduling assistant's booking raises a conflict error; it looks up free slots and books a "
    "different time.",
)
def calendar_conflict_recovers(callbacks: Callbacks) -> None:
    ids = Ids("calendar_conflict_recovers")

    @tool
    def book_meeting(attendees: list[str], start: str, minutes: int) -> str:
        """Books a meeting on everyone's calendar."""
        if start.endswith("T10:00"):
            raise ToolException("409 Conflict: dana@acme.com is busy 09:30-11:00 (Quarterly planning)")
        return f"booked evt_55a1 at {start} for {minutes} min"

    @tool
    def find_free_slots(attendees: list[str], day: str, minutes: int) -> str:
        """Finds common free slots."""
        return f"{day}: 11:30-12:00, 14:00-15:30, 16:30-17:00"

    people = ["dana@acme.com", "raj@acme.com", "li@acme.com"]
    replies: list[Any] = [
        ids.call("book_meeting", {"attendees": people, "start": "2025-03-13T10:00", "minutes": 45}),
        ids.call("find_free_slots", {"attendees": people, "day": "2025-03-13", "minutes": 45}),
        ids.call("book_meeting", {"attendees": people, "start": "2025-03-13T14:00", "minutes": 45}),
        "Dana was busy at 10:00, so the design review is booked Thursday 14:00-14:45 for all three.",
    ]
    run_agent(
        callbacks,
        scripted(replies),
        [failing(book_meeting), find_free_slots],
        "Book a 45 minute design review with Dana, Raj and Li on Thursday at 10.",
    )


# ------------------------------------------------------------------------------------------------- progress_reports


@scenario(
    "renewal_reminder_progress",
    "progress_reports",
    style="create_agent",
    description="A customer-success agent sends renewal reminders to twelve distinct accounts, prefixing every tool "
    "call with a progress line that differs only in its numbers.",
)
def renewal_reminder_progress(callbacks: Callbacks) -> None:
    ids = Ids("renewal_reminder_progress")
    vol = Volatile("renewal_reminder_progress")
    accounts = [f"ACC-{vol.int(1000, 9999)}" for _ in range(12)]

    @tool
    def send_renewal_reminder(account_id: str, template: str) -> str:
        """Emails the renewal reminder to an account's billing contact."""
        return f"sent to billing contact of {account_id}"

    replies: list[Any] = []
    for i, acc in enumerate(accounts):
        pct = round(100 * i / len(accounts))
        replies.append(
            ids.call(
                "send_renewal_reminder",
                {"account_id": acc, "template": "renewal-60d"},
                text=f"Progress: {i} of {len(accounts)} reminders sent ({pct}%). Next: {acc}.",
            )
        )
    replies.append(f"Done: {len(accounts)} of {len(accounts)} reminders sent (100%).")
    run_agent(
        callbacks,
        scripted(replies),
        [send_renewal_reminder],
        "Send the 60-day renewal reminder to these accounts and keep me posted: " + ", ".join(accounts),
    )


# ------------------------------------------------------------------------------------------------ human_in_the_loop


@scenario(
    "refund_hitl_agent",
    "human_in_the_loop",
    style="create_agent",
    description="A support agent looks up an order, its refund call is interrupted for human approval (checkpointer, "
    "HumanInTheLoopMiddleware), a manager approves, and the agent finishes.",
)
def refund_hitl_agent(callbacks: Callbacks) -> None:
    ids = Ids("refund_hitl_agent")

    @tool
    def lookup_order(order_id: str) -> str:
        """Looks up an order."""
        return f"{order_id}: 2x ergonomic chair, $718.00, delivered damaged (photo on file)"

    @tool
    def issue_refund(order_id: str, amount: float, reason: str) -> str:
        """Issues a refund to the original payment method."""
        return f"refund re_{order_id} of ${amount:.2f} issued"

    replies: list[Any] = [
        ids.call("lookup_order", {"order_id": "SO-99120"}),
        ids.call("issue_refund", {"order_id": "SO-99120", "amount": 718.0, "reason": "damaged in transit"}),
        "Refund of $718.00 for SO-99120 was approved and issued; the customer will see it in 5-10 days.",
    ]
    agent = create_agent(
        scripted(replies),
        [lookup_order, issue_refund],
        middleware=[HumanInTheLoopMiddleware(interrupt_on={"issue_refund": True})],
        checkpointer=InMemorySaver(),
    )
    config = cfg(callbacks, 60, thread="refund_hitl_agent")
    first = agent.invoke({"messages": [HumanMessage("SO-99120 arrived broken, customer wants money back")]}, config)
    assert "__interrupt__" in first, "the refund should wait for approval"
    agent.invoke(Command(resume={"decisions": [{"type": "approve"}]}), config)


# ----------------------------------------------------------------------------------------------- supervisor_handoff


@scenario(
    "helpdesk_subagent_tools",
    "supervisor_handoff",
    style="create_agent",
    description="A front-desk supervisor agent delegates to a billing sub-agent and then a shipping sub-agent "
    "(create_agent workers invoked as tools), each doing different work, then answers.",
)
def helpdesk_subagent_tools(callbacks: Callbacks) -> None:
    ids = Ids("helpdesk_subagent_tools")

    @tool
    def get_invoice_lines(invoice_id: str) -> str:
        """Returns invoice lines."""
        return "1x Pro plan $49, 1x extra seat $12, 1x extra seat $12 (duplicate seat added 03-02)"

    @tool
    def track_parcel(tracking: str) -> str:
        """Tracks a parcel."""
        return "DHL 00340434: at Leipzig hub, out for delivery 2025-03-12"

    billing = create_agent(
        scripted(
            [
                ids.call("get_invoice_lines", {"invoice_id": "in_7781"}),
                "Invoice in_7781 has a duplicate extra seat ($12) added on 03-02; credit note recommended.",
            ],
            model="gpt-4o-mini",
        ),
        [get_invoice_lines],
        system_prompt="You are the billing specialist.",
    )
    shipping = create_agent(
        scripted(
            [
                ids.call("track_parcel", {"tracking": "00340434"}),
                "The hardware key is at the Leipzig hub and will be delivered on 12 March.",
            ],
            model="gpt-4o-mini",
        ),
        [track_parcel],
        system_prompt="You are the logistics specialist.",
    )

    @tool
    def ask_billing(question: str, config: RunnableConfig) -> str:
        """Delegates a billing question to the billing agent."""
        out = billing.invoke({"messages": [HumanMessage(question)]}, config)
        return text_of(out["messages"][-1])

    @tool
    def ask_shipping(question: str, config: RunnableConfig) -> str:
        """Delegates a delivery question to the shipping agent."""
        out = shipping.invoke({"messages": [HumanMessage(question)]}, config)
        return text_of(out["messages"][-1])

    replies: list[Any] = [
        ids.call("ask_billing", {"question": "Why was customer 4410 charged $73 on invoice in_7781?"}),
        ids.call("ask_shipping", {"question": "Where is the hardware key for customer 4410, tracking 00340434?"}),
        "You were billed for a duplicate seat ($12) - we'll issue a credit note - and your key arrives 12 March.",
    ]
    run_agent(
        callbacks,
        scripted(replies, model="gpt-4.1"),
        [ask_billing, ask_shipping],
        "Hi, I was overcharged this month and my security key still hasn't arrived. Customer 4410.",
    )

"""Progressing runs of ``langchain.agents.create_agent`` agents over scripted models."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from langchain.agents import create_agent
from langchain.agents.middleware import HumanInTheLoopMiddleware
from langchain_core.messages import HumanMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from ._base import SealedScenario
from ._kit import Callbacks, Counter, Ids, ask, config, run_agent, scripted

_AUDIT_ACTORS = ["j.okafor", "svc-deploy", "m.lindqvist", "a.ruiz", "svc-backup", "t.nakamura", "p.iyer"]
_AUDIT_ACTIONS = [
    "role.grant admin",
    "apikey.create",
    "sso.config.update",
    "user.deactivate",
    "bucket.policy.update",
    "mfa.reset",
    "export.download",
]


def audit_log_pagination(callbacks: Callbacks) -> None:
    ids = Ids("aud")

    @tool
    def get_audit_events(since: str, page: int) -> str:
        """Audit events since a date, 3 per page; an empty page means the end."""
        if page > 7:
            return "[] (no more events)"
        rows = []
        for k in range(3):
            i = (page - 1) * 3 + k
            rows.append(
                f"2024-06-{1 + i:02d}T{8 + k * 3:02d}:{(17 * i) % 60:02d}Z {_AUDIT_ACTORS[i % 7]} "
                f"{_AUDIT_ACTIONS[(i * 3) % 7]} (event evt_{7100 + i * 13})"
            )
        return "\n".join(rows)

    replies: list[Any] = [ask(ids, "get_audit_events", {"since": "2024-06-01", "page": p}) for p in range(1, 9)]
    replies.append(
        "21 audit events since June 1. Privileged changes: 3 admin role grants, 3 SSO config updates and 3 MFA "
        "resets; all by named staff except svc-deploy's API key creations."
    )
    run_agent(
        replies,
        [get_audit_events],
        "For the access review, list every audit event since June 1 and highlight privileged changes.",
        callbacks,
        system="You are a security compliance assistant.",
    )


def report_export_polling(callbacks: Callbacks) -> None:
    ids = Ids("exp")
    polls = Counter()
    progress = [(0, "queued"), (12, "running"), (37, "running"), (64, "running"), (91, "running"), (100, "done")]

    @tool
    def start_export(report: str, period: str) -> str:
        """Start an asynchronous report export."""
        return f"Export job exp_5521 queued for {report} {period}."

    @tool
    def get_export_status(job_id: str) -> str:
        """Progress of an export job."""
        pct, state = progress[polls.tick() - 1]
        rows = 400_000 * pct // 100
        if state == "done":
            return f"{job_id}: done, 400000 rows. Download: https://files.example.com/exports/{job_id}.csv.gz"
        return f"{job_id}: {state}, {pct}% ({rows} of 400000 rows)"

    replies: list[Any] = [ask(ids, "start_export", {"report": "gl_detail", "period": "2024-Q2"})]
    replies += [ask(ids, "get_export_status", {"job_id": "exp_5521"}) for _ in range(6)]
    replies.append("The Q2 GL detail export is ready (400,000 rows): https://files.example.com/exports/exp_5521.csv.gz")
    run_agent(
        replies,
        [start_export, get_export_status],
        "Export the Q2 general-ledger detail for the auditors and send me the link.",
        callbacks,
        model="gpt-4o",
    )


def payment_capture_retry(callbacks: Callbacks) -> None:
    ids = Ids("pay")
    attempts = Counter()

    @tool
    def get_order(order_id: str) -> str:
        """Order details."""
        return f"{order_id}: 1x Trail Runner GTX size 42, $129.99, payment pi_3PqL8w authorized, not captured."

    @tool
    def capture_payment(payment_intent: str, amount_cents: int) -> str:
        """Capture an authorized payment."""
        if attempts.tick() <= 2:
            return "Error: gateway timeout (acquirer did not respond within 30s)."
        return f"Captured {payment_intent}: ${amount_cents / 100:.2f}, charge ch_3PqL9a."

    @tool
    def send_receipt(order_id: str, email: str) -> str:
        """E-mail a receipt."""
        return f"Receipt for {order_id} sent to {email}."

    capture = {"payment_intent": "pi_3PqL8w", "amount_cents": 12999}
    replies: list[Any] = [
        ask(ids, "get_order", {"order_id": "SO-20931"}),
        ask(ids, "capture_payment", capture),
        ask(ids, "capture_payment", capture, "The gateway timed out; retrying the capture."),
        ask(ids, "capture_payment", capture, "Still a timeout; one more try."),
        ask(ids, "send_receipt", {"order_id": "SO-20931", "email": "l.moreau@example.com"}),
        "Captured $129.99 for SO-20931 (after two gateway timeouts) and e-mailed the receipt.",
    ]
    run_agent(
        replies,
        [get_order, capture_payment, send_receipt],
        "SO-20931 shipped today. Capture the payment and send the customer (l.moreau@example.com) a receipt.",
        callbacks,
    )


def ads_report_rate_limit(callbacks: Callbacks) -> None:
    ids = Ids("ads")
    first = Counter()
    stats = {
        "cmp_101": "impressions=412,030 clicks=8,114 spend=$3,920.44 conversions=301",
        "cmp_102": "impressions=98,440 clicks=1,377 spend=$1,102.10 conversions=41",
        "cmp_103": "impressions=255,900 clicks=6,021 spend=$2,480.00 conversions=188",
        "cmp_104": "impressions=31,208 clicks=402 spend=$390.75 conversions=9",
    }

    @tool
    def list_campaigns(account: str) -> str:
        """Active campaigns of an ads account."""
        return "cmp_101 Summer Sale Search; cmp_102 Brand Display; cmp_103 Retargeting; cmp_104 YouTube Pre-roll"

    @tool
    def get_campaign_stats(campaign_id: str, date_range: str) -> str:
        """Performance stats of a campaign."""
        if campaign_id == "cmp_101" and first.tick() <= 2:
            return "Rate limited: 429 Too Many Requests. Please retry in 2 seconds."
        return f"{campaign_id} {date_range}: {stats[campaign_id]}"

    week = "2024-07-01..2024-07-07"
    replies: list[Any] = [ask(ids, "list_campaigns", {"account": "act_88412"})]
    replies += [ask(ids, "get_campaign_stats", {"campaign_id": "cmp_101", "date_range": week}) for _ in range(3)]
    replies += [
        ask(ids, "get_campaign_stats", {"campaign_id": c, "date_range": week})
        for c in ("cmp_102", "cmp_103", "cmp_104")
    ]
    replies.append(
        "Week of July 1: $7,893 spend, 539 conversions. Summer Sale Search leads ($13.02 CPA); YouTube Pre-roll "
        "is weakest ($43.42 CPA) and should be paused."
    )
    run_agent(
        replies,
        [list_campaigns, get_campaign_stats],
        "Weekly paid-media report for account act_88412, first week of July. Which campaign should we pause?",
        callbacks,
        system="You are a performance-marketing analyst.",
        model="gpt-4.1-mini",
    )


_SEARCH_RESULTS = {
    "Notion AI pricing per seat 2024": "notion.so/pricing: Plus $10/seat/mo; AI add-on $8/seat/mo (annual).",
    "Coda AI pricing": "coda.io/pricing: Pro $10/doc maker/mo; Team $30; AI included in paid plans since 2024.",
    "Confluence Atlassian Intelligence cost": "atlassian.com: Atlassian Intelligence included in Premium ($9.73).",
    "ClickUp Brain price per member": "clickup.com: ClickUp Brain add-on $7/member/mo on paid plans.",
    "knowledge base AI add-on pricing comparison 2024 analyst": "G2 report: AI add-ons range $5-$10/user/mo.",
}


def competitor_pricing_research(callbacks: Callbacks) -> None:
    ids = Ids("res")

    @tool
    def web_search(query: str) -> str:
        """Search the web."""
        return _SEARCH_RESULTS[query]

    @tool
    def fetch_page(url: str) -> str:
        """Fetch a page as text."""
        pages = {
            "https://www.notion.so/pricing": "Notion AI: $8 per member/month billed annually, $10 monthly.",
            "https://clickup.com/pricing": "ClickUp Brain: $7 per member per month, any paid plan.",
        }
        return pages[url]

    replies: list[Any] = [ask(ids, "web_search", {"query": q}) for q in _SEARCH_RESULTS]
    replies += [
        ask(ids, "fetch_page", {"url": "https://www.notion.so/pricing"}),
        ask(ids, "fetch_page", {"url": "https://clickup.com/pricing"}),
        "AI add-ons cluster at $7-$10 per user/month: Notion $8 (annual), ClickUp $7, while Coda and Confluence "
        "bundle AI into paid tiers. A $6 add-on would undercut everyone; bundling matches Coda/Atlassian.",
    ]
    run_agent(
        replies,
        [web_search, fetch_page],
        "How are competitors pricing AI features in knowledge-base tools? We're deciding our own price.",
        callbacks,
        system="You are a product-marketing research assistant. Cite sources.",
        model="claude-3-5-sonnet-latest",
        provider="anthropic",
    )


_DATES_V1 = """from datetime import datetime

def parse_date(text):
    return datetime.strptime(text, "%d/%m/%Y").date()
"""


def fix_date_parser_tests(callbacks: Callbacks) -> None:
    ids = Ids("dev")
    files = {"src/dates.py": _DATES_V1}

    @tool
    def read_file(path: str) -> str:
        """Read a repository file."""
        return files[path]

    @tool
    def edit_file(path: str, old: str, new: str) -> str:
        """Replace text in a file."""
        if old not in files[path]:
            return f"Error: text not found in {path}"
        files[path] = files[path].replace(old, new, 1)
        return f"Edited {path}."

    @tool
    def run_tests(target: str) -> str:
        """Run pytest on a target."""
        src = files["src/dates.py"]
        if "%Y-%m-%d" not in src:
            return (
                "3 failed, 5 passed\nFAILED test_iso_format - ValueError: time data '2024-03-01' does not match\n"
                "FAILED test_iso_with_time - ValueError\nFAILED test_strip_whitespace - ValueError"
            )
        if "strip()" not in src:
            return "1 failed, 7 passed\nFAILED test_strip_whitespace - ValueError: unconverted data remains: ' '"
        return "8 passed in 0.21s"

    replies: list[Any] = [
        ask(ids, "read_file", {"path": "src/dates.py"}),
        ask(ids, "run_tests", {"target": "tests/test_dates.py"}),
        ask(
            ids,
            "edit_file",
            {
                "path": "src/dates.py",
                "old": '    return datetime.strptime(text, "%d/%m/%Y").date()',
                "new": '    for fmt in ("%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%d/%m/%Y"):\n'
                "        try:\n            return datetime.strptime(text, fmt).date()\n"
                "        except ValueError:\n            continue\n"
                '    raise ValueError(f"unrecognised date: {text!r}")',
            },
        ),
        ask(ids, "run_tests", {"target": "tests/test_dates.py"}),
        ask(
            ids,
            "edit_file",
            {"path": "src/dates.py", "old": "strptime(text, fmt)", "new": "strptime(text.strip(), fmt)"},
        ),
        ask(ids, "run_tests", {"target": "tests/test_dates.py"}),
        "parse_date now accepts ISO dates, ISO datetimes and dd/mm/yyyy, and strips whitespace; 8/8 tests pass.",
    ]
    run_agent(
        replies,
        [read_file, edit_file, run_tests],
        "tests/test_dates.py is failing on main. Fix parse_date.",
        callbacks,
        system="You are a coding agent working in a Python repository.",
        model="gpt-4.1",
    )


_NGINX = """server {
    listen 443 ssl;
    server_name api.example.com;
    location / {
        proxy_pass http://app:8080;
        proxy_read_timeout 30s;
    }
}
"""


def nginx_config_reread(callbacks: Callbacks) -> None:
    ids = Ids("ngx")
    files = {"/etc/nginx/conf.d/api.conf": _NGINX}
    path = "/etc/nginx/conf.d/api.conf"

    @tool
    def read_file(file: str) -> str:
        """Read a file."""
        return files[file]

    @tool
    def replace_in_file(file: str, old: str, new: str) -> str:
        """Replace a snippet in a file."""
        files[file] = files[file].replace(old, new, 1)
        return "ok"

    @tool
    def nginx_test() -> str:
        """nginx -t."""
        return "nginx: configuration file /etc/nginx/nginx.conf test is successful"

    replies: list[Any] = [
        ask(ids, "read_file", {"file": path}),
        ask(
            ids, "replace_in_file", {"file": path, "old": "proxy_read_timeout 30s;", "new": "proxy_read_timeout 120s;"}
        ),
        ask(ids, "read_file", {"file": path}),
        ask(
            ids,
            "replace_in_file",
            {
                "file": path,
                "old": "    server_name api.example.com;\n",
                "new": "    server_name api.example.com;\n    client_max_body_size 25m;\n",
            },
        ),
        ask(ids, "read_file", {"file": path}),
        ask(
            ids,
            "replace_in_file",
            {
                "file": path,
                "old": "        proxy_pass http://app:8080;\n",
                "new": "        proxy_pass http://app:8080;\n        proxy_set_header X-Request-ID $request_id;\n",
            },
        ),
        ask(ids, "read_file", {"file": path}),
        ask(ids, "nginx_test", {}),
        "Raised proxy_read_timeout to 120s, allowed 25 MB uploads and forwarded X-Request-ID; nginx -t passes.",
    ]
    run_agent(
        replies,
        [read_file, replace_in_file, nginx_test],
        "Uploads of big CSVs to api.example.com time out or get 413. Fix the nginx config and add request ids.",
        callbacks,
        system="You are an SRE assistant with shell-like file tools.",
    )


def timezone_tool_error(callbacks: Callbacks) -> None:
    ids = Ids("tz")

    @tool
    def convert_time(local_time: str, from_tz: str, to_tz: str) -> str:
        """Convert a wall-clock time between IANA time zones."""
        try:
            src, dst = ZoneInfo(from_tz), ZoneInfo(to_tz)
        except (ZoneInfoNotFoundError, ValueError):
            return f"Error: unknown time zone {from_tz!r} or {to_tz!r}. Use IANA names like 'America/Los_Angeles'."
        when = datetime.strptime(local_time, "%Y-%m-%d %H:%M").replace(tzinfo=src)
        return when.astimezone(dst).strftime("%Y-%m-%d %H:%M %Z")

    @tool
    def create_event(title: str, start: str, tz: str, attendees: list[str]) -> str:
        """Create a calendar event."""
        return f"Event '{title}' created for {start} {tz}; invites sent to {len(attendees)} people."

    replies: list[Any] = [
        ask(ids, "convert_time", {"local_time": "2024-03-14 09:00", "from_tz": "PST", "to_tz": "CET"}),
        ask(
            ids,
            "convert_time",
            {"local_time": "2024-03-14 09:00", "from_tz": "America/Los_Angeles", "to_tz": "Europe/Berlin"},
            "The tool wants IANA zone names; retrying with them.",
        ),
        ask(
            ids,
            "create_event",
            {
                "title": "Q1 roadmap sync",
                "start": "2024-03-14 09:00",
                "tz": "America/Los_Angeles",
                "attendees": ["kim@example.com", "jonas@example.de"],
            },
        ),
        "Booked the Q1 roadmap sync for 09:00 Pacific on 14 March, which is 17:00 in Berlin.",
    ]
    run_agent(
        replies,
        [convert_time, create_event],
        "Set up a roadmap sync with Jonas in Berlin on March 14 at 9am my time (I'm in San Francisco).",
        callbacks,
        model="gpt-4o-mini",
    )


def invoice_reconciliation_progress(callbacks: Callbacks) -> None:
    ids = Ids("rec")
    invoices = [f"INV-{24000 + 37 * i}" for i in range(12)]
    outcomes = [
        "matched to bank line BL-{n} (exact amount)",
        "matched to bank line BL-{n} (FX difference 0.42 EUR booked)",
        "partial payment: 60% received on BL-{n}",
        "matched to bank line BL-{n} (exact amount)",
        "no bank line found; flagged for follow-up",
        "matched to bank line BL-{n} (bank fee 15.00 booked)",
    ]

    @tool
    def list_unreconciled(period: str) -> str:
        """Unreconciled AR invoices of a period."""
        return f"{len(invoices)} unreconciled invoices in {period}: " + ", ".join(invoices)

    @tool
    def reconcile_invoice(invoice_id: str) -> str:
        """Try to reconcile one invoice against bank lines."""
        k = invoices.index(invoice_id)
        return f"{invoice_id}: " + outcomes[(k * 5) % 6].format(n=880 + k * 3)

    replies: list[Any] = [ask(ids, "list_unreconciled", {"period": "2024-06"})]
    for k, inv in enumerate(invoices):
        text = f"Progress: {k} of {len(invoices)} invoices reconciled ({round(100 * k / len(invoices))}% done)."
        replies.append(ask(ids, "reconcile_invoice", {"invoice_id": inv}, text))
    replies.append("Progress: 12 of 12 invoices reconciled (100% done). Two need follow-up; one is a partial payment.")
    run_agent(
        replies,
        [list_unreconciled, reconcile_invoice],
        "Reconcile June's open AR invoices and report progress as you go.",
        callbacks,
        system="You are a finance-ops agent. Report progress in every message.",
        model="gpt-4o",
    )


def offer_letter_hitl(callbacks: Callbacks) -> None:
    ids = Ids("ofr")

    @tool
    def get_candidate(candidate_id: str) -> str:
        """Candidate record from the ATS."""
        return f"{candidate_id}: Sofia Almeida, Senior Backend Engineer, approved band L5, base range $172k-$196k."

    @tool
    def draft_offer(candidate_id: str, base_salary: int, start_date: str) -> str:
        """Draft an offer letter."""
        return f"Draft offer OFR-3381 for {candidate_id}: base ${base_salary:,}, start {start_date}, equity per L5."

    @tool
    def send_offer_letter(offer_id: str, email: str) -> str:
        """Send an offer letter for e-signature."""
        return f"{offer_id} sent to {email} via DocuSign (envelope env_7d21)."

    replies: list[Any] = [
        ask(ids, "get_candidate", {"candidate_id": "CAND-5120"}),
        ask(ids, "draft_offer", {"candidate_id": "CAND-5120", "base_salary": 185000, "start_date": "2024-09-03"}),
        ask(ids, "send_offer_letter", {"offer_id": "OFR-3381", "email": "sofia.almeida@example.com"}),
        "Offer OFR-3381 ($185,000 base, start Sept 3) was approved and sent to Sofia for signature.",
    ]
    agent = create_agent(
        scripted(replies, "gpt-4o"),
        [get_candidate, draft_offer, send_offer_letter],
        system_prompt="You are a recruiting coordinator assistant.",
        middleware=[HumanInTheLoopMiddleware(interrupt_on={"send_offer_letter": True})],
        checkpointer=InMemorySaver(),
    )
    cfg = config(callbacks, thread="offer-CAND-5120")
    first = agent.invoke({"messages": [HumanMessage("Prepare and send Sofia's offer at $185k, start Sept 3.")]}, cfg)
    assert "__interrupt__" in first, "the send should pause for approval"
    agent.invoke(Command(resume={"decisions": [{"type": "approve"}]}), cfg)


SCENARIOS = [
    SealedScenario(
        "audit_log_pagination",
        "pagination",
        False,
        None,
        "create_agent: audit events fetched page 1..8 until an empty page, then summarized.",
        audit_log_pagination,
    ),
    SealedScenario(
        "report_export_polling",
        "polling_finishes",
        False,
        None,
        "create_agent: export job polled while progress climbs 0%..100%, then the link is returned.",
        report_export_polling,
    ),
    SealedScenario(
        "payment_capture_retry",
        "retry_then_success",
        False,
        None,
        "create_agent: payment capture times out twice with the same error, succeeds, then a receipt is sent.",
        payment_capture_retry,
    ),
    SealedScenario(
        "ads_report_rate_limit",
        "rate_limit_clears",
        False,
        None,
        "create_agent: first campaign's stats rate-limited twice in-band, then data for all four campaigns.",
        ads_report_rate_limit,
    ),
    SealedScenario(
        "competitor_pricing_research",
        "research",
        False,
        None,
        "create_agent: five distinct web searches and two page fetches, then a pricing recommendation.",
        competitor_pricing_research,
    ),
    SealedScenario(
        "fix_date_parser_tests",
        "edit_test_coding",
        False,
        None,
        "create_agent: read, test (3 failures), edit, test (1 different failure), edit, test (pass).",
        fix_date_parser_tests,
    ),
    SealedScenario(
        "nginx_config_reread",
        "reread_after_edit",
        False,
        None,
        "create_agent: the same config file re-read after each of three edits (content changes each time).",
        nginx_config_reread,
    ),
    SealedScenario(
        "timezone_tool_error",
        "tool_error_recovers",
        False,
        None,
        "create_agent: time conversion fails on abbreviations, succeeds with IANA names, event created.",
        timezone_tool_error,
    ),
    SealedScenario(
        "invoice_reconciliation_progress",
        "progress_reports",
        False,
        None,
        "create_agent: 12 distinct invoices reconciled; each message is a progress line differing only in numbers.",
        invoice_reconciliation_progress,
    ),
    SealedScenario(
        "offer_letter_hitl",
        "human_in_the_loop",
        False,
        None,
        "create_agent + HumanInTheLoopMiddleware: sending the offer interrupts, a resume approves it.",
        offer_letter_hitl,
    ),
]

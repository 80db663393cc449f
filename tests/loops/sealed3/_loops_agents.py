"""Looping runs of ``langchain.agents.create_agent`` agents over scripted models."""

from __future__ import annotations

import itertools
from typing import Any

from langchain.agents.middleware import AgentState, after_model
from langchain_core.messages import AIMessage
from langchain_core.tools import StructuredTool, ToolException, tool
from langgraph.runtime import Runtime

from ._base import SealedScenario
from ._kit import Callbacks, Counter, Ids, ask, ask_many, hexid, run_agent


def refund_lookup_stuck(callbacks: Callbacks) -> None:
    ids = Ids("rf")

    @tool
    def get_customer(email: str) -> str:
        """Find a customer by e-mail address."""
        return f"Customer C-4471 (Dana Whitfield, {email}). Open refunds: RF-88213."

    @tool
    def get_refund_status(refund_id: str) -> str:
        """Status of a refund."""
        return f"Refund {refund_id}: status=processing, amount=$42.10, method=original card, initiated 2024-03-02."

    replies: list[Any] = [
        ask(ids, "get_customer", {"email": "dana.whitfield@example.com"}),
        ask(ids, "get_refund_status", {"refund_id": "RF-88213"}),
    ]
    replies += [ask(ids, "get_refund_status", {"refund_id": "RF-88213"}) for _ in range(16)]
    replies.append("Dana's refund RF-88213 ($42.10) is still processing back to the original card.")
    run_agent(
        replies,
        [get_customer, get_refund_status],
        "Customer dana.whitfield@example.com asks where her refund is. Has it gone through yet?",
        callbacks,
        system="You are a tier-1 support agent for an online homeware shop.",
    )


def inventory_sku_stuck(callbacks: Callbacks) -> None:
    ids = Ids("inv")

    @tool
    def search_catalog(query: str) -> str:
        """Search the product catalog."""
        return "1 match: SKU KT-1702-BLU  Enamel stovetop kettle 1.7L, colour blue, list price $54.00"

    @tool
    def check_stock(sku: str, warehouse: str) -> str:
        """On-hand and inbound stock of a SKU at a warehouse."""
        return f"{warehouse} / {sku}: on_hand=0 reserved=0 inbound=0 (no open purchase orders)"

    both = [("check_stock", {"sku": "KT-1702-BLU", "warehouse": w}) for w in ("RNO", "ATL")]
    replies: list[Any] = [ask(ids, "search_catalog", {"query": "blue enamel kettle 1.7L"})]
    replies += [ask_many(ids, both, "Checking both fulfilment centres.") for _ in range(15)]
    replies.append("The blue 1.7L kettle (KT-1702-BLU) is out of stock in Reno and Atlanta with nothing inbound.")
    run_agent(
        replies,
        [search_catalog, check_stock],
        "Can we ship a blue enamel kettle 1.7L to a customer in Ohio this week?",
        callbacks,
        model="gpt-4.1-mini",
    )


def payout_status_timestamp(callbacks: Callbacks) -> None:
    ids = Ids("po")
    clock = Counter()

    @tool
    def list_payouts(account: str, status: str) -> str:
        """List payouts of a connected account."""
        return "po_9921  $1,284.50  created 2024-05-13  status=pending"

    @tool
    def get_payout_status(payout_id: str) -> str:
        """Current state of a payout."""
        t = 9 * 3600 + 12 * 60 + 3 + 37 * clock.tick()
        stamp = f"2024-05-14T{t // 3600:02d}:{t // 60 % 60:02d}:{t % 60:02d}Z"
        return f"payout {payout_id}: state=in_transit bank=Chase ****4410 expected_arrival=2024-05-16 as_of={stamp}"

    replies: list[Any] = [
        ask(ids, "list_payouts", {"account": "acct_sunrise_bakery", "status": "pending"}),
        ask(ids, "get_payout_status", {"payout_id": "po_9921"}),
    ]
    replies += [ask(ids, "get_payout_status", {"payout_id": "po_9921"}) for _ in range(18)]
    replies.append("Payout po_9921 for $1,284.50 is in transit and expected to land on 2024-05-16.")
    run_agent(
        replies,
        [list_payouts, get_payout_status],
        "Sunrise Bakery says their May payout never arrived. Confirm it has landed in their bank.",
        callbacks,
        system="You are a payments operations assistant.",
    )


def vendor_api_session_id(callbacks: Callbacks) -> None:
    ids = Ids("vq")
    n = Counter()

    @tool
    def find_vendor(name: str) -> str:
        """Look up a vendor in the procurement system."""
        return "Vendor V-2290 Northwind Fasteners Ltd. Integration: quotes-api v2. Payment terms: net 45."

    @tool
    def request_quote(vendor_id: str, sku: str, qty: int) -> str:
        """Ask a vendor's API for a price quote."""
        k = n.tick()
        return (
            f"Quote for {qty} x {sku} pending vendor confirmation. session=sess_{hexid('vq-s', k, 16)} "
            f"request_id=req_{hexid('vq-r', k, 10)}. Try again later."
        )

    replies: list[Any] = [ask(ids, "find_vendor", {"name": "Northwind Fasteners"})]
    replies += [ask(ids, "request_quote", {"vendor_id": "V-2290", "sku": "HX-M8-40", "qty": 5000}) for _ in range(14)]
    replies.append("Northwind has not confirmed a quote for 5,000 x HX-M8-40 yet; I'll flag it for the buyer.")
    run_agent(
        replies,
        [find_vendor, request_quote],
        "Get me a price from Northwind Fasteners for 5000 M8x40 hex bolts (our SKU HX-M8-40).",
        callbacks,
        model="claude-3-5-haiku-latest",
        provider="anthropic",
    )


def warehouse_api_503(callbacks: Callbacks) -> None:
    ids = Ids("ship")
    n = Counter()

    @tool
    def validate_address(street: str, city: str, postal_code: str) -> str:
        """Validate a shipping address."""
        return f"Address valid: {street}, {city} {postal_code} (commercial, dock available)."

    @tool
    def create_shipment(order_id: str, carrier: str, service: str, weight_kg: float) -> str:
        """Book a shipment with a carrier."""
        return f"Error: 503 Service Unavailable from carrier gateway (request id {hexid('ship', n.tick(), 20)})"

    args = {"order_id": "SO-55120", "carrier": "UPS", "service": "ground", "weight_kg": 12.4}
    replies: list[Any] = [
        ask(ids, "validate_address", {"street": "1401 Harbor Way", "city": "Oakland, CA", "postal_code": "94607"}),
        ask(ids, "create_shipment", args, "Address is fine, booking the shipment."),
    ]
    replies += [ask(ids, "create_shipment", args, "Retrying the shipment booking.") for _ in range(16)]
    replies.append("I could not book SO-55120: the UPS gateway keeps returning 503. Please try later.")
    run_agent(
        replies,
        [validate_address, create_shipment],
        "Book UPS ground for order SO-55120 (12.4 kg) to 1401 Harbor Way, Oakland CA 94607.",
        callbacks,
        system="You are a logistics coordinator bot.",
    )


def crm_auth_expired(callbacks: Callbacks) -> None:
    ids = Ids("crm")

    def _update(opp_id: str, stage: str, amount: int) -> str:
        raise ToolException("401 Unauthorized: session token expired. Re-authenticate and retry.")

    update_opportunity = StructuredTool.from_function(
        _update,
        name="update_opportunity",
        description="Update an opportunity's stage and amount in the CRM.",
        handle_tool_error=True,
    )
    args = {"opp_id": "006Hs00001XyZ", "stage": "Negotiation", "amount": 48000}
    replies: list[Any] = [ask(ids, "update_opportunity", args) for _ in range(15)]
    replies.append("The CRM rejected the update (expired session). Someone needs to re-connect the integration.")
    run_agent(
        replies,
        [update_opportunity],
        "Move the Globex renewal (006Hs00001XyZ) to Negotiation at $48k.",
        callbacks,
        system="You keep the sales CRM up to date for account executives.",
    )


def settings_toggle_alternation(callbacks: Callbacks) -> None:
    ids = Ids("pol")

    @tool
    def get_workspace_settings(workspace: str) -> str:
        """Read workspace security settings."""
        return f"{workspace}: password_policy=standard sso_enforced=false session_timeout=12h integrations=7"

    @tool
    def set_password_policy(workspace: str, mode: str) -> str:
        """Set the password policy mode: strict or lenient."""
        if mode == "strict":
            return "Saved. Warning: strict mode blocks 3 legacy integrations (Zapier, FTP import, mobile v1)."
        return "Saved. Warning: lenient mode fails compliance control SOC2-CC6.1."

    strict = ("set_password_policy", {"workspace": "acme-prod", "mode": "strict"})
    lenient = ("set_password_policy", {"workspace": "acme-prod", "mode": "lenient"})
    replies: list[Any] = [ask(ids, "get_workspace_settings", {"workspace": "acme-prod"})]
    for i in range(18):
        if i % 2 == 0:
            replies.append(ask(ids, *strict, text="Switching to strict mode to satisfy the audit."))
        else:
            replies.append(ask(ids, *lenient, text="Strict mode breaks integrations; switching back to lenient."))
    replies.append("I can't find a password mode that keeps the integrations and passes SOC2-CC6.1.")
    run_agent(
        replies,
        [get_workspace_settings, set_password_policy],
        "Make acme-prod pass the SOC 2 audit without breaking any integrations.",
        callbacks,
        model="gpt-4o",
    )


_HOOKS = ["Meet", "Discover", "Say hello to", "Introducing"]
_CLAIMS = [
    "the coffee maker you'll never want to travel without",
    "the brewer that makes every trip better",
    "your new favourite travel companion",
]
_PUSH = ["Grab yours today", "Order now", "Don't miss out"]


def product_copy_grader_tool(callbacks: Callbacks) -> None:
    ids = Ids("copy")
    calls = Counter()

    @tool
    def submit_copy(text: str) -> str:
        """Submit product copy to the brand-voice grader."""
        if calls.tick() == 1:
            return "Score 5/10. Mention the price and the 2-year warranty."
        return "Score 7/10. Tone is too salesy; use a neutral, factual voice."

    first = "Meet the AeroPress Go, a compact coffee press for travel."
    second = (
        "Meet the AeroPress Go, the coffee maker you'll never want to travel without! Just $39.95 with a "
        "2-year warranty. Grab yours today!"
    )
    variants = [
        f"{h} the AeroPress Go, {c}! Only $39.95, backed by a 2-year warranty. {p}!"
        for h, c, p in itertools.islice(itertools.product(_HOOKS, _CLAIMS, _PUSH), 1, 36, 3)
    ]
    replies: list[Any] = [ask(ids, "submit_copy", {"text": first}), ask(ids, "submit_copy", {"text": second})]
    replies += [ask(ids, "submit_copy", {"text": v}, "Revised the copy.") for v in variants[:12]]
    replies.append(f"Final copy: {variants[11]}")
    run_agent(
        replies,
        [submit_copy],
        "Write a two-sentence product blurb for the AeroPress Go and get it past the brand-voice grader.",
        callbacks,
        system="You are a copywriter. Iterate with the grader until the copy passes.",
    )


def travel_booking_rotation(callbacks: Callbacks) -> None:
    ids = Ids("trv")

    @tool
    def get_traveler_profile(employee_id: str) -> str:
        """Traveler profile and travel policy."""
        return "Priya Raman, home airport SFO. Policy: economy, max fare $650, preferred carrier United."

    @tool
    def search_flights(origin: str, destination: str, date: str) -> str:
        """Search flights."""
        return "UA 1532 07:05-15:39 $612 (fare UA-LQ7); DL 488 08:30-17:02 $689; B6 416 10:15-18:50 $701"

    @tool
    def get_seat_map(flight: str, date: str) -> str:
        """Seat availability on a flight."""
        return f"{flight} on {date}: economy has middle seats only (rows 31-38); Economy Plus sold out."

    @tool
    def get_fare_rules(fare_code: str) -> str:
        """Fare rules of a fare code."""
        return f"{fare_code}: non-refundable, changes $99, no seat selection before check-in."

    cycle = [
        ("search_flights", {"origin": "SFO", "destination": "JFK", "date": "2024-09-17"}),
        ("get_seat_map", {"flight": "UA 1532", "date": "2024-09-17"}),
        ("get_fare_rules", {"fare_code": "UA-LQ7"}),
    ]
    replies: list[Any] = [ask(ids, "get_traveler_profile", {"employee_id": "E-10384"})]
    replies += [ask(ids, *cycle[i % 3]) for i in range(19)]
    replies.append("UA 1532 at $612 fits policy, but only middle seats are left. Want me to book it?")
    run_agent(
        replies,
        [get_traveler_profile, search_flights, get_seat_map, get_fare_rules],
        "Book Priya (E-10384) SFO to JFK on Sep 17, aisle seat if possible, within policy.",
        callbacks,
        system="You are a corporate travel assistant.",
    )


def hr_onboarding_rotation(callbacks: Callbacks) -> None:
    ids = Ids("hr")

    @tool
    def get_employee_record(name: str) -> str:
        """HRIS record of an employee."""
        return "EMP-7781 Marcus Oyelaran, Data Engineer, start 2024-07-08, manager Lena Chen, location Austin."

    @tool
    def check_it_ticket(ticket_id: str) -> str:
        """Status of an IT provisioning ticket."""
        return f"{ticket_id}: laptop provisioning waiting for manager approval (opened 2024-06-27)."

    @tool
    def check_badge_request(request_id: str) -> str:
        """Status of a building badge request."""
        return f"{request_id}: pending security photo upload."

    @tool
    def check_payroll_setup(employee_id: str) -> str:
        """Payroll setup checklist."""
        return f"{employee_id}: direct deposit set; W-4 not yet submitted."

    cycle = [
        ("get_employee_record", {"name": "Marcus Oyelaran"}),
        ("check_it_ticket", {"ticket_id": "IT-33019"}),
        ("check_badge_request", {"request_id": "BDG-5521"}),
        ("check_payroll_setup", {"employee_id": "EMP-7781"}),
    ]
    replies: list[Any] = [
        ask(ids, *cycle[i % 4], text="Following up on onboarding items." if i % 4 == 0 else "") for i in range(21)
    ]
    replies.append("Marcus is blocked on three items: IT approval from Lena, badge photo, and his W-4.")
    run_agent(
        replies,
        [get_employee_record, check_it_ticket, check_badge_request, check_payroll_setup],
        "Is Marcus Oyelaran fully set up for his first day? Chase anything outstanding.",
        callbacks,
        model="gemini-1.5-flash",
        provider="google",
    )


def faq_bot_repeat_jump(callbacks: Callbacks) -> None:
    ids = Ids("faq")

    @tool
    def search_help_center(query: str) -> str:
        """Search help-center articles."""
        return (
            "kb-112 'Update your billing contact': Settings > Billing > Billing contact > Edit. "
            "Changes apply from the next invoice."
        )

    @after_model(can_jump_to=["model"])
    def require_citation(state: AgentState[Any], runtime: Runtime[None]) -> dict[str, Any] | None:
        last = state["messages"][-1]
        if isinstance(last, AIMessage) and not last.tool_calls and "[kb-" not in str(last.content):
            return {"jump_to": "model"}
        return None

    answer = (
        "You can change your billing email under Settings > Billing > Billing contact. "
        "The new address is used from your next invoice."
    )
    replies: list[Any] = [ask(ids, "search_help_center", {"query": "change billing email"})]
    replies += [answer] * 16
    replies.append(answer + " [kb-112]")
    run_agent(
        replies,
        [search_help_center],
        "how do i change the email our invoices go to??",
        callbacks,
        system="Answer from the help center and cite the article id like [kb-123].",
        middleware=[require_citation],
    )


def ticket_export_ignores_page(callbacks: Callbacks) -> None:
    ids = Ids("tix")

    @tool
    def count_tickets(status: str, month: str) -> str:
        """Count tickets."""
        return f"48 {status} tickets in {month}."

    @tool
    def list_tickets(status: str, month: str, page: int) -> str:
        """List tickets, 10 per page."""
        rows = [f"#{40211 + 7 * i} {t}" for i, t in enumerate(_TICKET_TITLES)]
        return "\n".join(rows)

    replies: list[Any] = [ask(ids, "count_tickets", {"status": "closed", "month": "2024-04"})]
    replies += [ask(ids, "list_tickets", {"status": "closed", "month": "2024-04", "page": p}) for p in range(1, 17)]
    replies.append("Exported the closed April tickets.")
    run_agent(
        replies,
        [count_tickets, list_tickets],
        "Export every ticket closed in April 2024 so I can build the CSAT report.",
        callbacks,
    )


_TICKET_TITLES = [
    "Cannot log in after password reset",
    "Invoice shows wrong VAT number",
    "Export to CSV times out",
    "Webhook retries flooding endpoint",
    "Mobile app crashes on Android 14",
    "Request to delete account data",
    "SAML assertion rejected",
    "Duplicate charge on card",
    "Dark mode contrast issue",
    "API key rotation question",
]


def crm_contacts_same_page(callbacks: Callbacks) -> None:
    ids = Ids("ct")
    first = ["Ana", "Bruno", "Chloé", "Dmitri", "Elif", "Farah", "Gustav", "Hana", "Ivo", "Jana"]
    last = ["Keller", "Lund", "Moreau", "Novak", "Ortiz", "Petrov", "Quist", "Rossi"]

    @tool
    def list_contacts(segment: str, page: int) -> str:
        """List contacts of a segment, 25 per page; the last page is empty."""
        start = (page - 1) * 25
        names = [f"{first[(start + i) % 10]} {last[(start + 3 * i) % 8]}" for i in range(6)]
        return f"page {page}/4 of {segment}: contacts {start + 1}-{start + 25}: " + ", ".join(names) + ", ..."

    replies: list[Any] = [ask(ids, "list_contacts", {"segment": "enterprise-emea", "page": p}) for p in (1, 2, 3)]
    replies += [ask(ids, "list_contacts", {"segment": "enterprise-emea", "page": 3}) for _ in range(15)]
    replies.append("Collected the EMEA enterprise contacts.")
    run_agent(
        replies,
        [list_contacts],
        "Pull every contact in the enterprise-emea segment for the Q3 event invite list.",
        callbacks,
        model="gpt-4o",
    )


_KB_QUERIES = [
    "reset 2FA for enterprise SSO users",
    "how to reset two-factor authentication for SSO accounts",
    "2FA reset SSO enterprise",
    "disable MFA for a user who logs in with single sign-on",
    "two factor reset when SAML SSO is enabled",
    "SSO user lost authenticator app",
    "remove 2-step verification for SSO-managed user",
    "enterprise single sign-on reset multi-factor",
    "MFA reset for users provisioned through Okta SSO",
    "admin reset second factor SSO",
    "lost phone 2FA single sign on enterprise plan",
    "reset authenticator for federated login user",
    "how do admins clear 2FA on SSO accounts",
    "two-step verification reset enterprise SAML",
    "recover account 2FA SSO",
    "multi factor authentication reset federated SSO",
]


def kb_search_reworded_empty(callbacks: Callbacks) -> None:
    ids = Ids("kb")

    @tool
    def search_kb(query: str) -> str:
        """Search the internal support knowledge base."""
        return "No results."

    replies: list[Any] = [ask(ids, "search_kb", {"query": q}) for q in _KB_QUERIES]
    replies.append("I couldn't find a KB article on resetting 2FA for SSO users; escalating to tier 2.")
    run_agent(
        replies,
        [search_kb],
        "Enterprise customer: an SSO user lost their phone. How do they reset 2FA?",
        callbacks,
        system="Always ground answers in the knowledge base.",
    )


def vendor_invoice_search_reworded(callbacks: Callbacks) -> None:
    ids = Ids("ap")

    @tool
    def get_vendor(name: str) -> str:
        """Find a vendor master record."""
        return "VEN-0042 Acme Industrial Supply Co., remit-to Chicago IL, terms net 30."

    @tool
    def find_invoice(vendor_id: str, query: str) -> str:
        """Full-text search of a vendor's invoices in the AP ledger."""
        return f"0 matches for '{query}' in {vendor_id} (searched 1,204 invoices)."

    queries = [
        "INV-2024-0331",
        "invoice 2024-0331",
        "2024-0331",
        "Acme invoice March 31 2024",
        "inv 0331",
        "invoice number INV 2024 0331",
        "INV20240331",
        "Acme Industrial March invoice",
        "invoice dated 2024-03-31",
        "0331 Acme",
        "INV-2024-331",
        "March 2024 invoice Acme Industrial Supply",
        "inv-2024-0331 pdf",
        "invoice #2024-0331",
    ]
    replies: list[Any] = [ask(ids, "get_vendor", {"name": "Acme Industrial Supply"})]
    replies += [ask(ids, "find_invoice", {"vendor_id": "VEN-0042", "query": q}) for q in queries]
    replies.append("Invoice INV-2024-0331 is not in the AP ledger; it may never have been received.")
    run_agent(
        replies,
        [get_vendor, find_invoice],
        "Acme says invoice INV-2024-0331 is 30 days overdue. Did we receive and approve it?",
        callbacks,
        system="You are an accounts-payable assistant.",
        model="claude-3-5-sonnet-latest",
        provider="anthropic",
    )


SCENARIOS = [
    SealedScenario(
        "refund_lookup_stuck",
        "stuck_same_call",
        True,
        3,
        "create_agent: support agent finds the customer, then re-checks the same refund status forever.",
        refund_lookup_stuck,
    ),
    SealedScenario(
        "inventory_sku_stuck",
        "stuck_same_call",
        True,
        3,
        "create_agent: the same pair of parallel stock checks for one SKU, repeated with unchanged results.",
        inventory_sku_stuck,
    ),
    SealedScenario(
        "payout_status_timestamp",
        "volatile_result_loop",
        True,
        3,
        "create_agent: payout status polled forever; only the as_of timestamp changes in the result.",
        payout_status_timestamp,
    ),
    SealedScenario(
        "vendor_api_session_id",
        "volatile_result_loop",
        True,
        3,
        "create_agent: a quote request answered 'pending' with a fresh session and request id each time.",
        vendor_api_session_id,
    ),
    SealedScenario(
        "warehouse_api_503",
        "error_retry_loop",
        True,
        3,
        "create_agent: shipment booking retried with identical args; 503 error carries a fresh request id.",
        warehouse_api_503,
    ),
    SealedScenario(
        "crm_auth_expired",
        "error_retry_loop",
        True,
        2,
        "create_agent: CRM update raises a ToolException (handled by the tool) for an expired token, retried.",
        crm_auth_expired,
    ),
    SealedScenario(
        "settings_toggle_alternation",
        "ab_alternation",
        True,
        4,
        "create_agent: flips a password policy strict/lenient, each mode's warning prompting the other.",
        settings_toggle_alternation,
    ),
    SealedScenario(
        "product_copy_grader_tool",
        "paraphrased_reflection",
        True,
        3,
        "create_agent: copy resubmitted to a grader tool with hook/claim/call-to-action phrases swapped; "
        "the grader repeats the same tone feedback.",
        product_copy_grader_tool,
    ),
    SealedScenario(
        "travel_booking_rotation",
        "rotation_loop",
        True,
        5,
        "create_agent: flight search, seat map and fare rules checked in rotation without booking.",
        travel_booking_rotation,
    ),
    SealedScenario(
        "hr_onboarding_rotation",
        "rotation_loop",
        True,
        5,
        "create_agent: cycles four onboarding status tools whose answers never change.",
        hr_onboarding_rotation,
    ),
    SealedScenario(
        "faq_bot_repeat_jump",
        "repeated_answer_no_input",
        True,
        3,
        "create_agent + after_model middleware: a citation check jumps back to the model, which gives the "
        "same uncited answer again and again.",
        faq_bot_repeat_jump,
    ),
    SealedScenario(
        "ticket_export_ignores_page",
        "pagination_stuck",
        True,
        3,
        "create_agent: list_tickets ignores its page argument; pages 1..16 all return the same rows.",
        ticket_export_ignores_page,
    ),
    SealedScenario(
        "crm_contacts_same_page",
        "pagination_stuck",
        True,
        4,
        "create_agent: pages 1-3 fetched, then page 3 requested again and again.",
        crm_contacts_same_page,
    ),
    SealedScenario(
        "kb_search_reworded_empty",
        "reworded_search_loop",
        True,
        2,
        "create_agent: knowledge-base search re-issued with reworded queries, always 'No results.'",
        kb_search_reworded_empty,
    ),
    SealedScenario(
        "vendor_invoice_search_reworded",
        "reworded_search_loop",
        True,
        3,
        "create_agent: invoice search re-phrased many ways, always 0 matches.",
        vendor_invoice_search_reworded,
    ),
]

"""``guardian``: validate policies, show live spend, kill runs, run the demo, test alerts."""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from dataclasses import asdict
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, NoReturn

import structlog
import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from guardian.amounts import format_amount, unit_named, usd
from guardian.errors import GuardianError, PolicyError
from guardian.guard import STORE_URL_ENV, BudgetStatus, Guardian, describe_kill, validate_kill_ttl
from guardian.keys import DEFAULT_PREFIX, KeyBuilder
from guardian.policy import Policy, check_policy_without_env, load_policy
from guardian.replay import as_json as replay_json
from guardian.replay import as_table as replay_table
from guardian.report import GROUPINGS, Report, as_csv, as_json, as_table, parse_since
from guardian.windows import window_span

app = typer.Typer(
    help="Guardian: budgets, loop detection and alerts for LLM agents.",
    no_args_is_help=True,
    rich_markup_mode=None,  # plain click help: a flag reads as a flag, not as an option taking "<bool>"
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Piped into a file or a CI log there is no terminal to fit: rich would assume 80 columns and cut the status table's
# cells ("us…", "2026-12-…"); a terminal (or $COLUMNS) still sets the width.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 160)
err = Console(stderr=True, highlight=False, soft_wrap=True)

PolicyPaths = Annotated[
    list[Path] | None, typer.Option("--policy", "-p", metavar="PATH", help="Policy file or directory (repeatable).")
]
StoreUrl = Annotated[
    str | None,
    typer.Option("--store", metavar="URL", help=f"Store URL (default: ${STORE_URL_ENV}, else the embedded store)."),
]
FleetStoreUrl = Annotated[
    str | None,
    typer.Option(
        "--store", metavar="URL", help=f"The fleet's Redis, redis://, rediss:// or unix:// (default: ${STORE_URL_ENV})."
    ),
]
Prefix = Annotated[str, typer.Option("--prefix", help="Key prefix of the store.", metavar="PREFIX")]
OnlyTenant = Annotated[str | None, typer.Option("--tenant", metavar="NAME", help="Only this tenant.")]
Since = Annotated[
    str, typer.Option("--since", metavar="WHEN", help="Start: 7d, 24h, 30m, 2w ago, or an ISO date (UTC).")
]
Until = Annotated[str | None, typer.Option("--until", metavar="WHEN", help="End (default: now), as --since.")]
GroupBy = Annotated[str, typer.Option("--by", metavar="FIELD", help="Group by agent, user, tenant, model or day.")]


def _validate_without_env(paths: list[Path]) -> None:
    problems, references = check_policy_without_env(paths)
    for problem in problems:
        err.print(f"[red]error[/red] {problem}")
    if problems:
        err.print(f"{len(problems)} problem(s) found")
        raise typer.Exit(1)
    files = sorted({str(p) for p in paths})
    out.print(f"[green]valid[/green] without the environment: {', '.join(files)}")
    for ref in references:
        where = f"{ref.source}:{ref.line}" if ref.line is not None else ref.source
        out.print(f"  not checked: {where} {ref.field} needs ${{{ref.name}}}")


@app.command()
def validate(
    paths: Annotated[list[Path], typer.Argument(help="Policy files or directories.")],
    no_env: Annotated[
        bool,
        typer.Option(
            "--no-env",
            metavar="",
            help="Check without the environment (CI without the secrets): ${VAR} is not looked up.",
        ),
    ] = False,
) -> None:
    """Check policy files; print every problem with its file, line and field."""
    if no_env:
        _validate_without_env(paths)
        return
    try:
        policy = load_policy(paths)
    except PolicyError as exc:
        for problem in exc.problems:
            err.print(f"[red]error[/red] {problem}")
        err.print(f"{len(exc.problems)} problem(s) found")
        raise typer.Exit(1) from None
    out.print(f"[green]valid[/green]: {len(policy.sources)} file(s): {', '.join(policy.sources)}")
    for budget in policy.budgets:
        limits = ", ".join(f"{metric}={format_amount(metric, value)}" for metric, value in budget.limited().items())
        out.print(
            f"  budget [bold]{budget.name}[/bold]: {budget.scope}/{budget.window} ({budget.timezone.key}) "
            f"{limits} action={budget.action}"
        )
    for rule in policy.loops:
        settings = rule.settings
        out.print(
            f"  loop rule [bold]{rule.name}[/bold]: window={settings.window} max_repeats={settings.max_repeats} "
            f"max_tool_repeats={settings.max_tool_repeats} action={rule.action}"
            + (f" (alert only: {', '.join(sorted(rule.alert_on))})" if rule.alert_on and rule.action == "kill" else "")
        )
    if not policy.loops:
        out.print("  loop detection off (loops: [])")
    for routing in policy.routing:
        routes = ", ".join(f"{':'.join(a)} -> {':'.join(b)}" for a, b in routing.route.items())
        out.print(f"  routing rule [bold]{routing.name}[/bold]: {routes}")
    slack = policy.alerts.slack if policy.alerts else None
    out.print(f"  alerts: log{' + Slack' if slack else ''}")
    s = policy.settings
    out.print(
        f"  mode={s.mode} on_store_error={s.on_store_error} unknown_model={s.unknown_model} "
        f"on_low_budget={s.on_low_budget} history={'on' if s.history else 'off'}"
    )


@app.command()
def status(
    policy: PolicyPaths = None,
    store: FleetStoreUrl = None,
    prefix: Prefix = DEFAULT_PREFIX,
    budget: Annotated[str | None, typer.Option("--budget", metavar="NAME", help="Only this budget.")] = None,
    tenant: OnlyTenant = None,
    scope: Annotated[
        str | None,
        typer.Option("--scope", metavar="SCOPE", help="Only this scope (run, thread, agent, user, tenant, global)."),
    ] = None,
    agent: Annotated[
        str | None, typer.Option("--agent", metavar="NAME", help="Only the buckets of this agent (agent budgets).")
    ] = None,
    user: Annotated[
        str | None, typer.Option("--user", metavar="NAME", help="Only the buckets of this user (user budgets).")
    ] = None,
    runs: Annotated[
        bool, typer.Option("--runs", metavar="", help="Show run buckets too (hidden by default: one per run).")
    ] = False,
    as_json: Annotated[
        bool,
        typer.Option("--json", metavar="", help="One JSON object: buckets, kills, loops and grants, for scripts."),
    ] = False,
) -> None:
    """Live spend per budget and scope, read from the store, most used first."""
    _check_prefix(prefix)
    guard = _open(policy, _fleet_store(store), prefix)
    try:
        if budget is not None and policy and budget not in {b.name for b in guard.policy.budgets}:
            _fail(f"the policy has no budget named {budget!r}", 1)
        rows = guard.status(budget=budget, tenant=tenant)
        kills = guard.kills(tenant=tenant)
        loops = [r for r in guard.loop_halts() if tenant is None or r[0] == tenant]
        would = [r for r in guard.would_halts() if tenant is None or r[0] == tenant]
        grants = [g for g in guard.grants() if _grant_shown(guard, g[0], budget, tenant)]
    except GuardianError as exc:
        err.print(f"[red]error[/red]: {exc}")
        raise typer.Exit(1) from None
    finally:
        warning = _persistence_warning(guard)
        guard.close()
    if warning:
        err.print(f"[yellow]warning[/yellow]: {escape(warning)}")
    if budget is not None and not rows and not policy:
        _fail(f"no bucket of a budget named {budget!r} in the store (give -p POLICY to check the name)", 1)
    wanted = [r for r in rows if _row_shown(r, scope, agent, user)]
    hidden = 0 if runs or scope == "run" else sum(r.scope == "run" for r in wanted)
    shown = [r for r in wanted if runs or scope == "run" or r.scope != "run"]
    shown.sort(key=lambda r: (-(r.used_fraction() or 0.0), r.budget, r.scope_key))
    resets = {id(r): _reset_at(guard, r) for r in shown}
    if as_json:
        document = {
            "buckets": [{**_status_json(r), "resets_at": resets[id(r)]} for r in shown],
            "hidden_run_buckets": hidden,
            "kills": [{"target": f.target, "value": f.value, "tenant": f.tenant} for f in kills],
            "loops": [{"tenant": t, "agent": a, "day": d, "count": c} for t, a, d, c in loops],
            "would_halts": [{"tenant": t, "agent": a, "day": d, "count": c} for t, a, d, c in would],
            "grants": [{"bucket": k, "unit": m, "granted": g} for k, m, g in grants],
        }
        typer.echo(json.dumps(document, sort_keys=True))
        return
    if not shown:
        out.print("no spend recorded" if not hidden else "no spend recorded outside runs")
    else:
        out.print(_status_table(shown, resets, guard.clock()))
    if hidden:
        out.print(f"{hidden} run bucket(s) hidden: --runs shows them")
    for flag in kills:
        out.print(f"[red]killed[/red] {escape(describe_kill(flag))}")
    for loop_tenant, loop_agent, day, count in loops:
        out.print(f"loops detected on {day} (UTC): {count} in agent {loop_agent!r} of tenant {loop_tenant!r}")
    for would_tenant, would_agent, day, count in would:
        out.print(
            f"[yellow]shadow[/yellow] on {day} (UTC): {count} run(s) of agent {would_agent!r} of tenant "
            f"{would_tenant!r} would have been halted (they went on; see guardian report)"
        )
    for key, metric, amount in grants:
        parsed = guard.keys.parse_bucket(key)
        granted = format_amount(metric, amount) + ("" if metric == "cost_usd" else f" {metric}")
        out.print(
            f"[green]granted[/green] {granted} to {parsed.scope} {parsed.scope_key!r} of budget {parsed.budget!r} "
            f"(window {parsed.window}, tenant {parsed.tenant!r})"
        )


def _row_shown(row: BudgetStatus, scope: str | None, agent: str | None, user: str | None) -> bool:
    if scope is not None and row.scope != scope:
        return False
    if agent is not None and not (row.scope == "agent" and row.scope_key == agent):
        return False
    return user is None or (row.scope == "user" and row.scope_key == user)


def _reset_at(guard: Guardian, row: BudgetStatus) -> float | None:
    """When the row's window ends (epoch seconds), if it is the budget's current window."""
    try:
        spec = guard.policy.budget(row.budget)
    except KeyError:
        return None
    span = window_span(spec.window, spec.timezone, guard.clock())
    return span.end if span.id == row.window else None


def _grant_shown(guard: Guardian, bucket: str, budget: str | None, tenant: str | None) -> bool:
    parsed = guard.keys.parse_bucket(bucket)
    return (budget is None or parsed.budget == budget) and (tenant is None or parsed.tenant == tenant)


@app.command()
def kill(
    run: Annotated[str | None, typer.Option("--run", help="A run id.", metavar="ID")] = None,
    agent: Annotated[
        str | None, typer.Option("--agent", metavar="NAME", help="An agent (in every tenant, or in --tenant).")
    ] = None,
    user: Annotated[
        str | None, typer.Option("--user", metavar="NAME", help="A user (in every tenant, or in --tenant).")
    ] = None,
    tenant: Annotated[
        str | None,
        typer.Option("--tenant", metavar="NAME", help="Alone: the whole tenant. With --agent/--user: only in it."),
    ] = None,
    clear: Annotated[bool, typer.Option("--clear", metavar="", help="Lift the kill flag instead.")] = False,
    ttl: Annotated[
        float, typer.Option("--ttl", metavar="SECONDS", help="Seconds the flag lasts (above 0, at most a year).")
    ] = 86_400.0,
    policy: PolicyPaths = None,
    store: FleetStoreUrl = None,
    prefix: Prefix = DEFAULT_PREFIX,
) -> None:
    """Halt a run, agent, user or tenant at its next model or tool call (and alert, with --policy)."""
    _check_prefix(prefix)
    try:
        validate_kill_ttl(ttl, "--ttl")
    except ValueError as exc:
        _fail(str(exc), 2)
    guard = _open(policy, _fleet_store(store), prefix)
    try:
        key = guard.kill(run=run, agent=agent, user=user, tenant=tenant, ttl_s=ttl, clear=clear)
    except ValueError as exc:
        err.print(f"[red]error[/red]: {exc}")
        raise typer.Exit(2) from None
    except GuardianError as exc:
        err.print(f"[red]error[/red]: {exc}")
        raise typer.Exit(1) from None
    finally:
        guard.close()
    what = escape(describe_kill(guard.keys.parse_kill(key)))
    if clear:
        out.print(f"cleared the kill flag on {what} ({escape(key)})")
    else:
        out.print(f"killed {what} for {ttl:g}s ({escape(key)})")


@app.command()
def grant(
    budget: Annotated[str, typer.Option("--budget", metavar="NAME", help="The budget to give more room.")],
    usd: Annotated[
        str | None,
        typer.Option("--usd", metavar="DOLLARS", help="Dollars to add to its cost limit."),
    ] = None,
    tokens: Annotated[
        int | None, typer.Option("--tokens", metavar="N", help="Tokens to add to its total_tokens limit.")
    ] = None,
    calls: Annotated[
        int | None, typer.Option("--calls", metavar="N", help="Model calls to add to its llm_calls limit.")
    ] = None,
    run: Annotated[str | None, typer.Option("--run", metavar="ID", help="The run (a run budget).")] = None,
    thread: Annotated[str | None, typer.Option("--thread", metavar="ID", help="The thread (a thread budget).")] = None,
    agent: Annotated[str | None, typer.Option("--agent", metavar="NAME", help="The agent (an agent budget).")] = None,
    user: Annotated[str | None, typer.Option("--user", metavar="NAME", help="The user (a user budget).")] = None,
    tenant: Annotated[
        str | None, typer.Option("--tenant", metavar="NAME", help="The tenant (default: 'default').")
    ] = None,
    reason: Annotated[str, typer.Option("--reason", metavar="TEXT", help="Why, for the audit log and the alert.")] = "",
    policy: PolicyPaths = None,
    store: FleetStoreUrl = None,
    prefix: Prefix = DEFAULT_PREFIX,
) -> None:
    """Give one bucket of a budget more room until its window ends, fleet-wide and audited (a paused run
    resumed afterwards goes on)."""
    _check_prefix(prefix)
    if not policy:
        _fail("grant needs the policy (--policy FILE) to know the budget's scope, window and limits", 2)
    try:
        amount = None if usd is None else Decimal(usd)
    except InvalidOperation:
        _fail(f"--usd must be a number of dollars, got {usd!r}", 2)
    guard = _open(policy, _fleet_store(store), prefix)
    try:
        key = guard.grant(
            budget, usd=amount, tokens=tokens, calls=calls, run=run, thread=thread, agent=agent, user=user,
            tenant=tenant, reason=reason,
        )  # fmt: skip
    except GuardianError as exc:
        err.print(f"[red]error[/red]: {exc}")
        raise typer.Exit(1) from None
    finally:
        guard.close()
    out.print(f"granted on {escape(key)}")


@app.command()
def report(
    since: Since = "7d",
    until: Until = None,
    by: GroupBy = "agent",
    fmt: Annotated[
        str, typer.Option("--format", metavar="FORMAT", help="table, csv, json (micro-dollars) or html (charts).")
    ] = "table",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", metavar="PATH", help="Write to a file (html needs one).")
    ] = None,
    top: Annotated[int, typer.Option("--top", metavar="N", help="How many of the costliest runs to list.")] = 10,
    tenant: OnlyTenant = None,
    store: FleetStoreUrl = None,
    prefix: Prefix = DEFAULT_PREFIX,
) -> None:
    """Where the money went: spend, calls, tokens, cache savings, loop waste, halts and outcomes, from the history."""
    _check_prefix(prefix)
    _check_grouping(by)
    if fmt not in REPORT_FORMATS:
        _fail(f"--format must be one of {', '.join(REPORT_FORMATS)}, got {fmt!r}", 2)
    if fmt == "html" and output is None:
        _fail("--format html writes a page with charts: give it a file, e.g. --output report.html", 2)
    if top < 0:
        _fail("--top must be 0 or more", 2)
    guard = _open(None, _fleet_store(store), prefix)
    try:
        start, end = _period(guard, since, until)
        built = guard.report(since=start, until=end, by=by, top=top, tenant=tenant)
    except GuardianError as exc:
        err.print(f"[red]error[/red]: {exc}")
        raise typer.Exit(1) from None
    finally:
        guard.close()
    text = _render_report(built, fmt)
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        _fail(f"cannot write {output}: {exc.strerror or exc}", 1)
    out.print(f"wrote {escape(str(output))} ({fmt}, {len(built.rows)} {by} row(s), {built.total.calls:,} calls)")


REPORT_FORMATS = ("table", "csv", "json", "html")


def _check_grouping(by: str) -> None:
    if by not in GROUPINGS:
        _fail(f"--by must be one of {', '.join(GROUPINGS)}, got {by!r}", 2)


def _period(guard: Guardian, since: str, until: str | None) -> tuple[float, float]:
    """--since and --until as epoch seconds (exit 2 with a sentence when they cannot be read or are reversed)."""
    now = guard.clock()
    try:
        start = parse_since(since, now)
        end = now + 1.0 if until is None else parse_since(until, now)
    except ValueError as exc:
        _fail(f"{exc}", 2)
    if end <= start:
        _fail("--until must come after --since", 2)
    return start, end


def _render_report(built: Report, fmt: str) -> str:
    if fmt == "html":
        from guardian.report_html import as_html

        return as_html(built)
    return {"table": as_table, "csv": as_csv, "json": as_json}[fmt](built)


@app.command("replay")
def replay_command(
    policy: Annotated[
        list[Path],
        typer.Option("--policy", "-p", metavar="PATH", help="The policy to judge the history by (repeatable)."),
    ],
    since: Since = "7d",
    until: Until = None,
    by: GroupBy = "agent",
    fmt: Annotated[str, typer.Option("--format", metavar="FORMAT", help="table or json (micro-dollars).")] = "table",
    tenant: OnlyTenant = None,
    store: FleetStoreUrl = None,
    prefix: Prefix = DEFAULT_PREFIX,
) -> None:
    """Judge the recorded history again under another policy: what it would have stopped and saved."""
    _check_prefix(prefix)
    _check_grouping(by)
    if fmt not in ("table", "json"):
        _fail(f"--format must be table or json, got {fmt!r}", 2)
    candidate = _load(policy)
    guard = _open(None, _fleet_store(store), prefix)
    try:
        start, end = _period(guard, since, until)
        result = guard.replay(candidate, since=start, until=end, by=by, tenant=tenant)
    except GuardianError as exc:
        err.print(f"[red]error[/red]: {exc}")
        raise typer.Exit(1) from None
    finally:
        guard.close()
    typer.echo(replay_table(result) if fmt == "table" else replay_json(result), nl=False)


@app.command()
def metrics(
    port: Annotated[int, typer.Option("--port", metavar="N", help="Port to serve /metrics on (0: any free one).")],
    host: Annotated[str, typer.Option("--host", metavar="ADDR", help="Address to listen on.")] = "127.0.0.1",
    policy: PolicyPaths = None,
    store: FleetStoreUrl = None,
    prefix: Prefix = DEFAULT_PREFIX,
) -> None:
    """Serve the fleet's budgets as Prometheus gauges until interrupted (each scrape reads the store)."""
    _check_prefix(prefix)
    if not 0 <= port <= 65_535:
        _fail(f"--port must be between 0 and 65535, got {port}", 2)
    try:
        from guardian.prometheus import serve
    except ImportError:
        _fail("guardian metrics needs prometheus-client: pip install 'guardian-supervisor[prometheus]'", 1)
    guard = _open(policy, _fleet_store(store), prefix)
    try:
        server = serve(guard, port, host)
    except OSError as exc:
        guard.close()
        _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}", 1)
    out.print(f"serving the budgets on http://{host}:{server.server_port}/metrics (Ctrl-C stops)")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        guard.close()


@app.command()
def doctor(store: FleetStoreUrl = None, prefix: Prefix = DEFAULT_PREFIX) -> None:
    """Check the fleet's Redis: reachable, persistent (or budgets reset on restart), and not evicting budget keys.

    Exits 0 when healthy, 1 on any warning.
    """
    from guardian.doctor import diagnose
    from guardian.store import RedisStore, open_store
    from guardian.store.factory import redact_url

    _check_prefix(prefix)
    url = _fleet_store(store)
    try:
        opened = open_store(url)
    except GuardianError as exc:
        _fail(str(exc), 2)
    try:
        assert isinstance(opened, RedisStore)  # _fleet_store refused the embedded store
        findings = diagnose(opened.client, KeyBuilder(prefix), redact_url(url))
    finally:
        opened.close()
    colors = {"ok": "green", "warning": "yellow", "error": "red"}
    for finding in findings:
        color = colors[finding.level]
        out.print(f"[{color}]{finding.level:<7}[/{color}] {finding.topic}: {escape(finding.message)}")
    if any(f.level == "error" for f in findings):
        out.print("the store could not be checked")
        raise typer.Exit(1)
    warnings = sum(f.level == "warning" for f in findings)
    if warnings:
        out.print(f"{warnings} warning(s): budgets in this Redis are at risk")
        raise typer.Exit(1)
    out.print("healthy")


@app.command()
def demo(
    store: StoreUrl = None,
    steps: Annotated[int, typer.Option("--steps", metavar="N", help="The most steps the runaway agent may take.")] = 60,
) -> None:
    """A runaway LangGraph agent, stopped by Guardian (embedded store unless --store or $GUARDIAN_STORE_URL)."""
    from guardian.demo import run_demo

    # The CLI is an application, so it may configure logging: the demo's console sink shows the alerts.
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.dev.ConsoleRenderer(colors=False)],
        wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR),
    )
    raise typer.Exit(run_demo(store_url=store or os.environ.get(STORE_URL_ENV), max_steps=steps, console=out))


@app.command("alert-test")
def alert_test(policy: PolicyPaths = None) -> None:
    """Send a test message to the Slack destination of a policy."""
    from guardian.alerts import send_test_alert

    loaded = _load(policy)
    if loaded.alerts is None or loaded.alerts.slack is None:
        err.print("[red]error[/red]: the policy has no alerts.slack section")
        raise typer.Exit(2)
    try:
        out.print(send_test_alert(loaded.alerts))
    except GuardianError as exc:
        err.print(f"[red]error[/red]: {exc}")
        raise typer.Exit(1) from None


def _fail(message: str, code: int) -> NoReturn:
    """One sentence on stderr and a non-zero exit: 2 for a usage mistake, 1 when the work failed."""
    err.print(f"[red]error[/red]: {escape(message)}")
    raise typer.Exit(code)


def _check_prefix(prefix: str) -> None:
    try:
        KeyBuilder(prefix)
    except ValueError as exc:
        _fail(f"--prefix: {exc}", 2)


def _load(paths: list[Path] | None) -> Policy:
    if not paths:
        return Policy()
    try:
        return load_policy(paths)
    except PolicyError as exc:
        err.print(f"[red]error[/red] {exc}")
        raise typer.Exit(1) from None


def _open(paths: list[Path] | None, store: str | None, prefix: str) -> Guardian:
    try:
        return Guardian(_load(paths), store=store, key_prefix=prefix)
    except GuardianError as exc:
        err.print(f"[red]error[/red]: {exc}")
        raise typer.Exit(1) from None


def _fleet_store(store: str | None) -> str:
    """The URL of the fleet's store; the embedded store is refused (exit 2): the CLI runs in a process of
    its own, so it would only see, kill and report on its own empty memory."""
    url = store if store is not None else os.environ.get(STORE_URL_ENV)
    if not url or url.startswith("memory"):
        _fail(
            "the embedded store lives inside each agent process, so the CLI cannot reach it: point --store "
            f"or {STORE_URL_ENV} at the fleet's Redis (redis://, rediss:// or unix://)",
            2,
        )
    return url


def _persistence_warning(guard: Guardian) -> str | None:
    from guardian.doctor import persistence_warning
    from guardian.store import RedisStore

    return persistence_warning(guard.store.client) if isinstance(guard.store, RedisStore) else None


def _status_json(row: BudgetStatus) -> dict[str, object]:
    return {
        "budget": row.budget,
        "scope": row.scope,
        "scope_key": row.scope_key,
        "tenant": row.tenant,
        "window": row.window,
        "spent": unit_named(asdict(row.spent)),  # micro-dollars as cost_micro_usd, like every event
        "reserved": unit_named(asdict(row.reserved)),
        "limits": unit_named(row.limits),
        "refused": row.refused,
        "used": row.used_fraction(),
    }


def _in(seconds: float) -> str:
    minutes = int(seconds // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    return f"in {days}d {hours}h" if days else f"in {hours}h {minutes:02d}m"


def _status_table(rows: list[BudgetStatus], resets: dict[int, float | None], now: float) -> Table:
    """What an operator reads first, names never cut: the limits themselves are in --json."""
    table = Table(title="Guardian spend", box=box.SIMPLE_HEAD)
    keys = [_bucket_name(r) for r in rows]
    table.add_column("budget", no_wrap=True)
    table.add_column("bucket", no_wrap=True, min_width=max(len(k) for k in keys))
    table.add_column("used", justify="right", no_wrap=True)
    table.add_column("cost", justify="right", no_wrap=True)
    table.add_column("tokens", justify="right", no_wrap=True)
    table.add_column("calls", justify="right", no_wrap=True)
    table.add_column("resets", no_wrap=True)
    for row, key in zip(rows, keys, strict=True):
        in_flight = row.reserved
        tokens = f"{row.spent.total_tokens:,}" + (f" (+{in_flight.total_tokens:,})" if in_flight.total_tokens else "")
        calls = f"{row.spent.llm_calls:,}" + (f" ({row.refused:,} refused)" if row.refused else "")
        if row.spent.tool_calls:
            calls += f", {row.spent.tool_calls:,} tools"
        fraction = row.used_fraction()
        reset = resets.get(id(row))
        table.add_row(
            row.budget,
            key,
            "-" if fraction is None else f"{fraction:.0%}",
            usd(row.spent.cost_usd),
            tokens,
            calls,
            row.window if reset is None else _in(max(0.0, reset - now)),  # a past window: its id
        )
    return table


def _bucket_name(row: BudgetStatus) -> str:
    """``user acme/alice``: the scope and whose bucket it is, tenant first where the scope is within one."""
    if row.tenant is None or row.scope in ("tenant", "global"):
        return f"{row.scope} {row.scope_key}"
    return f"{row.scope} {row.tenant}/{row.scope_key}"


def main() -> None:
    app()


if __name__ == "__main__":
    main()

"""``guardian demo``: a research agent that never stops, and Guardian stopping it.

The agent is a real LangGraph graph driven by a scripted chat model that reports real
``usage_metadata``: every search drags a longer context into the next model call, which is
how a runaway agent's bill grows. Guardian charges each call, raises threshold alerts, and
refuses the call that would pass the run's cap, so the provider is never paid for it.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Sequence
from importlib.resources import files
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import LLMResult
from langchain_core.tools import tool
from langgraph.errors import GraphRecursionError
from rich.console import Console

from guardian.alerts import Alert
from guardian.amounts import usd
from guardian.errors import GuardianHalt
from guardian.guard import Guardian
from guardian.policy import Policy, load_policy
from guardian.report import as_table
from guardian.testing import ScriptedChatModel, react_graph

__all__ = ["demo_policy", "run_demo"]

MODEL = "gpt-4o"
ROUTED_MODEL = "gpt-4o-mini"
TOPICS = ["solid-state batteries", "sodium-ion cells", "lithium supply", "grid storage", "battery recycling"]


@tool
def web_search(query: str) -> str:
    """Search the web and return the top results."""
    return " ".join(f"{query} finding {i}: a long paragraph of search results that the agent keeps." for i in range(60))


def _next_query(messages: Sequence[BaseMessage]) -> AIMessage:
    """Always one more search: the agent never decides it knows enough."""
    searches = sum(1 for m in messages if isinstance(m, ToolMessage))
    topic = TOPICS[searches % len(TOPICS)]
    return AIMessage(
        content=f"I should dig deeper into {topic}.",
        tool_calls=[{"name": "web_search", "args": {"query": f"{topic} part {searches + 1}"}, "id": f"c{searches}"}],
    )


TASK_SEARCHES = 30  # act 3: the research task is done after this many searches


def _task_query(messages: Sequence[BaseMessage]) -> AIMessage:
    """The same research, but a task that ends: after TASK_SEARCHES searches the agent writes its report."""
    searches = sum(1 for m in messages if isinstance(m, ToolMessage))
    if searches >= TASK_SEARCHES:
        return AIMessage(content="Report written: the five battery technologies compared.")
    return _next_query(messages)


def demo_policy() -> Policy:
    path = files("guardian").joinpath("data/demo.yaml")
    with_slack = os.environ.get("SLACK_WEBHOOK_URL")
    policy = load_policy([str(path)])
    if not with_slack:
        return policy
    from dataclasses import replace

    from guardian.alerts import AlertsConfig

    return replace(policy, alerts=AlertsConfig.model_validate({"slack": {"webhook_url": with_slack}}))


class _ConsoleAlerts:
    """An alert sink that shows each alert as it is delivered (Slack gets the same alerts when configured)."""

    name = "console"

    def __init__(self, console: Console) -> None:
        self.console = console

    def send(self, alert: Alert) -> None:
        spent, limit = alert.spent.get("cost_usd", 0), alert.limit.get("cost_usd", 0)
        if alert.kind == "loop":
            self.console.print(f"  [yellow]ALERT[/yellow] loop: agent {alert.agent}, user {alert.user}: {alert.reason}")
            return
        if alert.kind == "threshold" and alert.threshold:
            what = f"passed {alert.threshold:.0%} of its limit"
        else:
            what = "refused a call that would pass its limit"
        self.console.print(
            f"  [yellow]ALERT[/yellow] {alert.kind}: {alert.budget} ({alert.scope}) {what}: "
            f"{usd(spent)} of {usd(limit)}, agent {alert.agent}, user {alert.user}"
        )


class _Progress(BaseCallbackHandler):
    """Prints each model call as it is charged."""

    def __init__(self, guard: Guardian, console: Console, run_id: uuid.UUID) -> None:
        self.guard = guard
        self.console = console
        self.run_id = str(run_id)
        self.step = 0

    def on_llm_end(self, response: LLMResult, **kwargs: Any) -> None:
        self.step += 1
        message = getattr(response.generations[0][0], "message", None)
        usage = getattr(message, "usage_metadata", None) or {}
        row = next((r for r in self.guard.status(budget="run-cap") if r.scope_key == self.run_id), None)
        spent = row.spent.cost_usd if row else 0
        limit = row.limits.get("cost_usd", 0) if row else 0
        self.console.print(
            f"  step {self.step:>2}  prompt {usage.get('input_tokens', 0):>6,} tok  "
            f"output {usage.get('output_tokens', 0):>3} tok   run spend {usd(spent)} of {usd(limit)}"
        )


def _stuck_query(messages: Sequence[BaseMessage]) -> AIMessage:
    """The same search, again and again: the tool's answer never changes, nor does the model's mind."""
    searches = sum(1 for m in messages if isinstance(m, ToolMessage))
    return AIMessage(
        content="Let me check the latest figure once more.",
        tool_calls=[{"name": "web_search", "args": {"query": "Q3 battery revenue"}, "id": f"s{searches}"}],
    )


def _act(guard: Guardian, console: Console, model: ScriptedChatModel, agent: str, max_steps: int) -> bool:
    """Runs one agent until Guardian stops it; True when it was stopped."""
    run_id = uuid.uuid4()
    graph = react_graph(model, [web_search])
    handler = guard.callback(agent=agent, user="alice", tenant="acme", tags=["demo"])
    progress = _Progress(guard, console, run_id)
    try:
        graph.invoke(
            {"messages": [HumanMessage("Write a report on battery technology.")]},
            config={"callbacks": [handler, progress], "recursion_limit": 2 * max_steps + 1, "run_id": run_id},
        )
    except GuardianHalt as halt:
        guard.alerts.flush(5.0)
        console.print(f"\n[bold green]stopped[/bold green] by Guardian: {type(halt).__name__}")
        console.print(f"  {halt}")
        console.print(f"  the provider was called {model.calls} times; the refused call was never sent\n")
        return True
    except GraphRecursionError:
        # --steps smaller than what Guardian needs to see: LangGraph's own step cap ended the run first.
        console.print(
            f"[yellow]the agent reached --steps ({max_steps}) before Guardian stopped it[/yellow]: LangGraph's step "
            f"cap ended the run after {model.calls} provider calls; give it more steps to see Guardian act\n"
        )
        return False
    console.print("[red]the agent finished without being stopped[/red]")
    return False


def run_demo(*, store_url: str | None = None, max_steps: int = 60, console: Console | None = None) -> int:
    """Returns the process exit code: 0 when Guardian stopped both runaway agents."""
    console = console or Console(highlight=False)
    policy = demo_policy()
    logging.getLogger("langchain_core.callbacks.manager").setLevel(logging.ERROR)  # it repeats our halt
    guard = Guardian(policy, store=store_url or "memory://", alert_sinks=[_ConsoleAlerts(console)])
    store_name = type(guard.store).__name__
    started = guard.clock()
    try:
        console.print(f"[bold]1. A runaway research agent[/bold] on {MODEL} that never stops searching ({store_name}).")
        console.print(f"  budget run-cap: $0.25 a run, alerts at 50% and 80%; up to {max_steps} steps\n")
        spender = ScriptedChatModel(replies=[_next_query], cycle=True, model=MODEL, provider="openai", max_tokens=300)
        stopped = _act(guard, console, spender, "researcher", max_steps)
        console.print("[bold]2. A stuck agent[/bold]: the same search with the same answer, over and over.\n")
        stuck = ScriptedChatModel(replies=[_stuck_query], cycle=True, model=MODEL, provider="openai", max_tokens=300)
        stopped = _act(guard, console, stuck, "analyst", max_steps) and stopped
        console.print(
            f"[bold]3. Spend less[/bold]: the same research as a task of {TASK_SEARCHES} searches, with the LangChain "
            "v1 middleware and the routing rule save-when-tight (gpt-4o -> gpt-4o-mini once run-cap is half used).\n"
        )
        finished = _routed_act(guard, console) and stopped
        console.print("[bold]4. Where the money went[/bold], from the spend history:\n")
        console.print(as_table(guard.report(since=started - 1.0, top=2)), markup=False)
        hint = "guardian report --store URL" if guard.store.shared else "guard.report() (the embedded store)"
        console.print(f"  the same for a fleet, over any period, as csv, json or an html page: {hint}\n")
    finally:
        guard.alerts.flush(5.0)
        guard.close()
    return 0 if stopped and finished else 1


def _routed_act(guard: Guardian, console: Console) -> bool:
    """Runs the task with routing; True when it finished within the run's cap (or when the act cannot run)."""
    try:
        from langchain.agents import create_agent
    except ImportError:
        console.print("  (this act needs LangChain v1's agents: pip install 'guardian-supervisor[langchain]')\n")
        return True

    big = ScriptedChatModel(replies=[_task_query], cycle=True, model=MODEL, provider="openai", max_tokens=300)
    small = ScriptedChatModel(replies=[_task_query], cycle=True, model=ROUTED_MODEL, provider="openai", max_tokens=300)
    middleware = guard.middleware(
        agent="researcher", user="alice", tenant="acme", models={f"openai:{ROUTED_MODEL}": small}
    )
    agent = create_agent(big, [web_search], middleware=[middleware])
    started = guard.clock()
    try:
        result = agent.invoke({"messages": [HumanMessage("Write a report on battery technology.")]})
    except GuardianHalt as halt:
        console.print(f"[red]stopped[/red] by Guardian even with routing: {type(halt).__name__}: {halt}\n")
        return False
    calls = [r for r in guard.history(since=started) if r.kind == "call"]
    spent = sum(r.cost_micro_usd for r in calls)
    saved = sum(r.saved_micro_usd for r in calls if "routed" in r.flags)
    on_big = [r for r in calls if r.model == MODEL]
    big_cost = usd(sum(r.cost_micro_usd for r in on_big))
    console.print(f"[bold green]finished[/bold green]: {result['messages'][-1].content}")
    console.print(
        f"  {len(calls)} calls for {usd(spent)}: {len(on_big)} on {MODEL} ({big_cost}), {len(calls) - len(on_big)} "
        f"routed to {ROUTED_MODEL}, saving {usd(saved)} against {MODEL} prices"
    )
    console.print(
        f"  without routing (act 1) the same research was stopped at the cap after 12 calls, unfinished; on {MODEL} "
        f"alone this task would have cost {usd(spent + saved)}, past the run's $0.25 cap\n"
    )
    return True

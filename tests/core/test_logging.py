"""Guardian is a library: silent unless the application configured logging, and then on its terms."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

APP = textwrap.dedent(
    """
    import json, logging, sys
    import structlog
    from langchain_core.messages import HumanMessage
    from guardian import BudgetExceeded, Guardian, Policy
    from guardian.testing import ScriptedChatModel

    mode = sys.argv[1]
    if mode == "warning":
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    elif mode == "info":
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    elif mode == "structlog":
        seen = []

        def keep(logger, method, event):
            seen.append(event["event"])
            return event

        structlog.configure(
            processors=[keep, structlog.processors.KeyValueRenderer()],
            logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        )
    cap = {"name": "cap", "scope": "user", "window": "day", "limits": {"llm_calls": 1}}
    policy = Policy.from_dict({"version": 1, "budgets": [cap]})
    with Guardian(policy, store="memory://") as guard:
        model = ScriptedChatModel(replies=["one", "two"])
        try:
            for _ in range(2):
                model.invoke([HumanMessage("hi")], config={"callbacks": [guard.callback(agent="app")]})
        except BudgetExceeded:
            pass
    print("app done")
    if mode == "structlog":
        print(json.dumps(seen))
    """
)


def run_app(mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", APP, mode], capture_output=True, text=True, timeout=120, check=True)


def test_without_logging_configured_nothing_is_printed() -> None:
    """Runs, one refused by its budget: the application's output is its own, stderr is empty."""
    done = run_app("none")
    assert done.stdout == "app done\n"
    # The one line on stderr is langchain-core's own warning that a callback raised (its logger, printed by
    # Python's last-resort handler because the application configured none); nothing of Guardian's.
    lines = done.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("Error in GuardianCallbackHandler.on_chat_model_start callback: BudgetExceeded(")


@pytest.mark.parametrize(
    ("mode", "shown", "hidden"),
    [("warning", "budget_exceeded", "run_started"), ("info", "run_started", "call_reserved")],
)
def test_standard_logging_decides_what_is_shown(mode: str, shown: str, hidden: str) -> None:
    """With basicConfig(WARNING) only warnings show (the halt); with INFO the run events too, never debug.
    Records come from the logger "guardian" with the event name first."""
    done = run_app(mode)
    lines = done.stderr.splitlines()
    assert any(line.startswith(("WARNING guardian " + shown, "INFO guardian " + shown)) for line in lines), lines
    assert not any(hidden in line for line in lines)
    assert done.stdout == "app done\n"


def test_a_structlog_application_gets_the_events_through_its_own_pipeline() -> None:
    """An application that configured structlog receives every event, debug included, by name."""
    done = run_app("structlog")
    stdout = done.stdout.splitlines()
    assert stdout[0] == "app done"
    events = json.loads(stdout[1])
    assert {"run_started", "call_reserved", "budget_exceeded", "run_finished"} <= set(events)

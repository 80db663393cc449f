"""Who may import whom: the engine below the adapters, pure modules below the engine (static, from the AST)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "guardian"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Guardian modules imported at module level (not under TYPE_CHECKING, not inside functions)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("guardian"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("guardian"))
    return found


GRAPH = {module_name(p): imports_of(p) for p in ROOT.rglob("*.py")}

# (importer prefix, imported prefix) pairs that must not exist.
FORBIDDEN = [
    ("guardian.loops", "guardian."),  # pure: no I/O, no policy, no store
    ("guardian.pricing", "guardian.policy"),
    ("guardian.policy", "guardian.store"),
    ("guardian.policy", "guardian.supervisor"),
    ("guardian.policy", "guardian.integrations"),
    ("guardian.store", "guardian.policy"),
    ("guardian.store", "guardian.supervisor"),
    ("guardian.supervisor", "guardian.integrations"),
    ("guardian.supervisor", "guardian.guard"),
    ("guardian.supervisor", "guardian.alerts.slack"),
    # The pure steps do no I/O: no store implementation, no logging, no engine driver, no framework.
    ("guardian.runs", "guardian.supervisor"),
    ("guardian.runs", "guardian.store.memory"),
    ("guardian.runs", "guardian.store.redis"),
    ("guardian.runs", "guardian.logs"),
    ("guardian.runs", "guardian.integrations"),
    ("guardian.runtree", "guardian.integrations"),
    ("guardian.outage", "guardian.supervisor"),
]
ENGINE = ("guardian.runs", "guardian.runtree", "guardian.supervisor", "guardian.outage", "guardian.telemetry")
FRAMEWORKS = (
    "langchain",
    "langchain_core",
    "langgraph",
    "agents",
    "redis",
    "slack_sdk",
    "opentelemetry",
    "prometheus_client",
)
ALLOWED_IN_LOOPS = {"guardian.errors"}


@pytest.mark.parametrize(("importer", "imported"), FORBIDDEN)
def test_imports_run_one_way(importer: str, imported: str) -> None:
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        if module == importer or module.startswith(importer + ".")
        for target in targets
        if target.startswith(imported) and target not in ALLOWED_IN_LOOPS and not target.startswith(module)
    )
    assert wrong == []


def test_the_supervisor_uses_the_alert_model_not_the_alerts_package() -> None:
    """The package face would load every sink (slack-sdk among them) into the engine."""
    assert "guardian.alerts" not in GRAPH["guardian.supervisor"]


def test_reading_a_policy_does_not_load_slack() -> None:
    code = "import sys, guardian.policy; print('slack_sdk' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.strip() == "False"


def third_party_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
    return found


@pytest.mark.parametrize("module", ENGINE)
def test_the_engine_knows_no_framework_and_no_store_client(module: str) -> None:
    """Adapters translate frameworks; the engine only sees its own events (imports anywhere in the module)."""
    path = ROOT.parent / (module.replace(".", "/") + ".py")
    assert third_party_imports(path) & set(FRAMEWORKS) == set()

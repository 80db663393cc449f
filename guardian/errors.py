"""Guardian's exceptions: one root, and run halts that LangGraph will not retry.

Halts derive from ``RuntimeError`` because LangGraph's default ``RetryPolicy``
retries most other exceptions, which would re-spend the budget that just ran out.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from guardian.amounts import format_amount, metric_label

__all__ = [
    "BudgetExceeded",
    "GuardianError",
    "GuardianHalt",
    "GuardianInternalError",
    "IdentityError",
    "LoopDetected",
    "PolicyError",
    "PolicyProblem",
    "RunKilled",
    "StoreError",
    "StoreUnavailable",
    "UnknownModel",
]


class GuardianError(Exception):
    """Root of every error Guardian raises."""


@dataclass(frozen=True)
class PolicyProblem:
    """One thing wrong in a policy file, located as precisely as the YAML allows."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} {self.message}"


class PolicyError(GuardianError, ValueError):
    """A policy could not be loaded; ``problems`` lists every problem found."""

    def __init__(self, problems: Sequence[PolicyProblem]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} in policy"
        super().__init__(head + ":\n" + "\n".join(f"  {p}" for p in self.problems))


class IdentityError(GuardianError, ValueError):
    """An agent, user or tenant name is empty: None selects the default name, "" is a mistake."""


class StoreError(GuardianError):
    """The budget store could not be reached or answered something unexpected."""


class GuardianHalt(GuardianError, RuntimeError):
    """Guardian stopped a run. Every later model call of that run is refused too."""

    def __init__(self, message: str, *, run_id: str | None = None) -> None:
        super().__init__(message)
        self.run_id = run_id


class BudgetExceeded(GuardianHalt):
    """A budget with ``action: kill`` would pass its limit; the model was not called."""

    def __init__(
        self,
        *,
        budget: str,
        scope: str,
        scope_key: str,
        window: str,
        unit: str,
        limit: int,
        spent: int,
        requested: int,
        run_id: str | None,
        inspect: str | None = None,
    ) -> None:
        self.budget = budget
        self.scope = scope
        self.scope_key = scope_key
        self.window = window
        self.unit = metric_label(unit)  # what limit/spent/requested count, named as every output names it
        self.limit = limit
        self.spent = spent
        self.requested = requested
        shown = format_amount(unit, limit), format_amount(unit, spent), format_amount(unit, requested)
        message = (
            f"budget {budget!r} ({scope} {scope_key!r}, window {window}) would pass its {unit} limit: "
            f"limit {shown[0]}, spent and reserved {shown[1]}, this call needs {shown[2]}. "
            f"Inspect with {inspect or f'`guardian status --budget {budget}`'}; raise the limit in the policy "
            f"or wait for the window to roll over."
        )
        super().__init__(message, run_id=run_id)


class RunKilled(GuardianHalt):
    """An operator set a kill flag (``guardian kill``) on this run, agent, user or tenant."""

    def __init__(self, *, target: str, value: str, run_id: str | None, tenant: str | None = None) -> None:
        self.target = target
        self.value = value
        self.tenant = tenant  # an agent or user flag scoped to one tenant; None: fleet-wide (or a run or tenant)
        command = f"guardian kill --{target} {shlex.quote(value)}"
        if tenant is not None and target != "tenant":
            command += f" --tenant {shlex.quote(tenant)}"
        super().__init__(
            f"run halted: {target} {value!r}"
            + (f" in tenant {tenant!r}" if tenant is not None and target != "tenant" else "")
            + f" was killed by an operator (clear it with `{command} --clear`)",
            run_id=run_id,
        )


class StoreUnavailable(GuardianHalt):
    """The store failed and the policy says ``on_store_error: fail_closed``."""


class GuardianInternalError(GuardianHalt):
    """Guardian itself failed before a call and ``on_store_error: fail_closed`` refuses what it cannot count."""


class UnknownModel(GuardianHalt):
    """No price is known for a model and the policy says ``unknown_model: block``."""

    def __init__(self, *, provider: str | None, model: str, run_id: str | None) -> None:
        self.provider = provider
        self.model = model
        super().__init__(
            f"no price known for model {model!r} (provider {provider or 'unknown'}); the call was refused "
            f"because the policy sets unknown_model: block. Add it under `prices:` in the policy, "
            f"or set unknown_model: warn.",
            run_id=run_id,
        )


class LoopDetected(GuardianHalt):
    """The run repeats itself without progress; see ``signal`` and ``subject``."""

    def __init__(
        self,
        message: str,
        *,
        rule: str,
        signal: str,
        subject: str,
        repeats: int,
        loop_tokens: int,
        loop_cost_micro_usd: int,
        run_id: str | None,
    ) -> None:
        self.rule = rule
        self.signal = signal
        self.subject = subject
        self.repeats = repeats
        self.loop_tokens = loop_tokens
        self.loop_cost_micro_usd = loop_cost_micro_usd
        super().__init__(message, run_id=run_id)

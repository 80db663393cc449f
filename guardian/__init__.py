"""Guardian: a runtime supervisor for LLM agents.

Counts every token and dollar as it is spent, enforces budgets the whole fleet shares,
stops runaway runs and tells a human.
"""

from guardian.errors import (
    BudgetExceeded,
    GuardianError,
    GuardianHalt,
    GuardianInternalError,
    IdentityError,
    LoopDetected,
    PolicyError,
    RunKilled,
    StoreError,
    StoreUnavailable,
    UnknownModel,
)
from guardian.guard import BudgetStatus, Guardian
from guardian.identity import Identity
from guardian.integrations.langchain import GuardianCallbackHandler
from guardian.keys import KillFlag
from guardian.policy import Policy, load_policy

__all__ = [
    "BudgetExceeded",
    "BudgetStatus",
    "Guardian",
    "GuardianCallbackHandler",
    "GuardianError",
    "GuardianHalt",
    "GuardianInternalError",
    "Identity",
    "IdentityError",
    "KillFlag",
    "LoopDetected",
    "Policy",
    "PolicyError",
    "RunKilled",
    "StoreError",
    "StoreUnavailable",
    "UnknownModel",
    "load_policy",
]

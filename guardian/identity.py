"""Who a run belongs to: the labels budgets match on and scope by."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["DEFAULT_NAME", "Identity"]

DEFAULT_NAME = "default"


@dataclass(frozen=True, slots=True)
class Identity:
    agent: str = DEFAULT_NAME
    user: str = DEFAULT_NAME
    tenant: str = DEFAULT_NAME
    tags: frozenset[str] = frozenset()

    @classmethod
    def of(
        cls,
        agent: str | None = None,
        user: str | None = None,
        tenant: str | None = None,
        tags: Iterable[str] = (),
    ) -> Identity:
        return cls(agent or DEFAULT_NAME, user or DEFAULT_NAME, tenant or DEFAULT_NAME, frozenset(tags))

    def scope_key(self, scope: str, run_id: str) -> str:
        if scope == "run":
            return run_id
        if scope == "global":
            return "*"
        value: str = getattr(self, scope)
        return value

    def log_fields(self) -> dict[str, object]:
        return {"agent": self.agent, "user": self.user, "tenant": self.tenant, "tags": sorted(self.tags)}

"""Who a run belongs to: the labels budgets match on and scope by."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from guardian.errors import IdentityError

__all__ = ["DEFAULT_NAME", "Identity"]

DEFAULT_NAME = "default"


@dataclass(frozen=True, slots=True)
class Identity:
    agent: str = DEFAULT_NAME
    user: str = DEFAULT_NAME
    tenant: str = DEFAULT_NAME
    tags: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        for field in ("agent", "user", "tenant"):
            if not getattr(self, field).strip():
                raise IdentityError(
                    f"the {field} name is empty: pass a non-empty name, or None for the default "
                    f"{field} ({DEFAULT_NAME!r})"
                )

    @classmethod
    def of(
        cls,
        agent: str | None = None,
        user: str | None = None,
        tenant: str | None = None,
        tags: Iterable[str] = (),
    ) -> Identity:
        """None selects ``default``; an empty or whitespace-only name raises ``IdentityError``."""
        return cls(
            DEFAULT_NAME if agent is None else agent,
            DEFAULT_NAME if user is None else user,
            DEFAULT_NAME if tenant is None else tenant,
            frozenset(tags),
        )

    def scope_key(self, scope: str, run_id: str, thread: str | None = None) -> str:
        if scope == "run":
            return run_id
        if scope == "thread":  # a run outside any thread is a conversation of its own
            return run_id if thread is None else thread
        if scope == "global":
            return "*"
        value: str = getattr(self, scope)
        return value

    def log_fields(self) -> dict[str, object]:
        return {"agent": self.agent, "user": self.user, "tenant": self.tenant, "tags": sorted(self.tags)}

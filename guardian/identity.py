"""Who a run belongs to: the labels budgets match on and scope by."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from guardian.errors import IdentityError

__all__ = ["DEFAULT_NAME", "Identity", "IdentityMapping", "IdentitySource"]

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


IdentityField = Literal["agent", "user", "tenant"]
IDENTITY_FIELDS: tuple[IdentityField, ...] = ("agent", "user", "tenant")


@dataclass(frozen=True, slots=True)
class IdentitySource:
    """Where a run's agent, user or tenant is read: ``context.<name>`` (LangChain v1's runtime context,
    ``invoke(..., context=...)``, seen by the middleware only) or ``metadata.<name>`` (the invoke's config
    metadata, seen by the callback and the middleware)."""

    kind: Literal["context", "metadata"]
    name: str

    def read(self, metadata: Mapping[str, Any] | None, context: Any) -> str | None:
        if self.kind == "metadata":
            value = (metadata or {}).get(self.name)
        elif isinstance(context, Mapping):
            value = context.get(self.name)
        else:
            value = getattr(context, self.name, None)
        if value is None:
            return None
        text = str(value).strip()
        return text or None

    def __str__(self) -> str:
        return f"{self.kind}.{self.name}"


@dataclass(frozen=True, slots=True)
class IdentityMapping:
    """The policy's ``identity:`` section: where each name comes from, and which a run must have."""

    sources: Mapping[IdentityField, IdentitySource]
    required: frozenset[IdentityField] = frozenset()

    def resolve(self, base: Identity, metadata: Mapping[str, Any] | None, context: Any = None) -> Identity:
        """``base`` (the handler's names, or per-run ``guardian_*`` metadata, which win) with the mapped names
        filled in where ``base`` has the default. A required name found nowhere raises ``IdentityError``: such a
        run is refused, not charged to ``default``."""
        names = {f: getattr(base, f) for f in IDENTITY_FIELDS}
        for field, source in self.sources.items():
            if names[field] == DEFAULT_NAME:
                value = source.read(metadata, context)
                if value is not None:
                    names[field] = value
        missing = [f for f in sorted(self.required) if names[f] == DEFAULT_NAME]
        if missing:
            where = ", ".join(f"{f} (from {self.sources[f]})" if f in self.sources else f for f in missing)
            raise IdentityError(
                f"the policy requires {where} and this run has none: pass it in the invoke's context or config "
                "metadata, or name it on the handler (guard.callback / guard.middleware); the run was refused, "
                "not charged to 'default'"
            )
        return Identity(names["agent"], names["user"], names["tenant"], base.tags)

"""Every store key is built and parsed here.

Layout: ``<prefix>{<tag>}:<kind>:<segment>:...`` where ``<tag>`` is ``t.<tenant>`` for
everything that belongs to a tenant (so one Lua script touches one Redis Cluster slot)
and ``g`` for fleet-wide budgets. User-supplied segments are percent-escaped, so no
name can contain a separator or a hash-tag brace and two different names never collide.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, NamedTuple
from urllib.parse import quote, unquote

__all__ = ["DEFAULT_PREFIX", "BucketKey", "KeyBuilder", "KillFlag", "KillTarget", "escape", "unescape"]

DEFAULT_PREFIX = "guardian:"
KillTarget = Literal["run", "agent", "user", "tenant"]
_GLOBAL_TAG = "g"


_GLOB = re.compile(r"[*?\[\]\\]")  # special in a Redis SCAN MATCH pattern
_PLAIN = re.compile(r"[A-Za-z0-9_.\-~@+]+")


def escape(segment: str) -> str:
    if _PLAIN.fullmatch(segment):
        return segment  # what quote() would return unchanged, without its cost on every call
    if segment == "":
        return "%"  # a lone '%' can never come out of quote(), so the empty name stays distinct
    return quote(segment, safe="@+")


def unescape(segment: str) -> str:
    return "" if segment == "%" else unquote(segment)


@dataclass(frozen=True, slots=True)
class BucketKey:
    """The parts of a budget bucket's key."""

    tenant: str | None  # None for global-scope budgets
    budget: str
    scope: str
    scope_key: str
    window: str


class KillFlag(NamedTuple):
    """A kill flag: ``target`` and ``value`` (say ``user``, ``alice``) and the tenant it is scoped to.

    ``tenant`` is None for a fleet-wide kill (every tenant), and the tenant itself for a tenant kill.
    """

    target: KillTarget
    value: str
    tenant: str | None = None


class KeyBuilder:
    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        if "{" in prefix or "}" in prefix:
            raise ValueError(f"the key prefix {prefix!r} may not contain '{{' or '}}': they would change the hash slot")
        if _GLOB.search(prefix):
            raise ValueError(
                f"the key prefix {prefix!r} may not contain the glob characters * ? [ ] or \\: "
                "`guardian status` scans the prefix, so they would match other prefixes' keys too"
            )
        # "eco" means the keys of "eco:": without the separator they would read "eco{g}:..." (a prefix is a
        # namespace, and `guardian status --prefix eco` must find what an application keyed with "eco" wrote).
        self.prefix = prefix if not prefix or prefix.endswith(":") else prefix + ":"

    def _tag(self, tenant: str | None) -> str:
        return _GLOBAL_TAG if tenant is None else f"t.{escape(tenant)}"

    def bucket(self, b: BucketKey) -> str:
        parts = (escape(b.budget), escape(b.scope), escape(b.scope_key), escape(b.window))
        return f"{self.prefix}{{{self._tag(b.tenant)}}}:b:{':'.join(parts)}"

    def run_bucket_template(self, tenant: str, budget: str) -> tuple[str, str]:
        """(head, tail) of a run bucket's key: ``head + escape(run_id) + tail`` is
        ``bucket(BucketKey(tenant, budget, "run", run_id, "run"))``, without rebuilding the rest per run."""
        head = f"{self.prefix}{{{self._tag(tenant)}}}:b:{escape(budget)}:{escape('run')}:"
        return head, f":{escape('run')}"

    def dedup(self, kind: str, *parts: str) -> str:
        """The key an alert is deduplicated by: its kind and what it is about."""
        return ":".join([kind, *parts])

    def call_marker(self, tenant: str | None, call_id: str) -> str:
        return f"{self.prefix}{{{self._tag(tenant)}}}:c:{escape(call_id)}"

    def kill(self, target: KillTarget, value: str, tenant: str | None = None) -> str:
        """A tenant's kill, and an agent or user kill scoped to a tenant, live in the tenant's slot; a run kill
        and an agent or user kill without a tenant are fleet-wide (``{g}``)."""
        if target == "tenant":
            if tenant is not None and tenant != value:
                raise ValueError(f"a tenant kill names one tenant, got {value!r} and {tenant!r}")
            tenant = value
        elif target == "run" and tenant is not None:
            raise ValueError("a run kill takes no tenant: a run id is unique across the fleet")
        return f"{self.prefix}{{{self._tag(tenant)}}}:k:{target}:{escape(value)}"

    def grant(self, bucket_key: str, metric: str) -> str:
        """An operator's allowance for one metric of one bucket (same hash slot as the bucket)."""
        head, sep, tail = bucket_key.partition("}:b:")
        if not sep:
            raise ValueError(f"not a bucket key: {bucket_key!r}")
        return f"{head}}}:g:{tail}:{escape(metric)}"

    def parse_grant(self, key: str) -> tuple[str, str]:
        """(bucket key, metric) of a grant key: the inverse of ``grant``."""
        head, sep, tail = key.partition("}:g:")
        body, _, metric = tail.rpartition(":")
        if not sep or not body:
            raise ValueError(f"not a grant key: {key!r}")
        return f"{head}}}:b:{body}", unescape(metric)

    def grant_pattern(self) -> str:
        return f"{self.prefix}{{*}}:g:*"

    def counter(self, kind: str, tenant: str, agent: str, window: str) -> str:
        return f"{self.prefix}{{{self._tag(tenant)}}}:n:{escape(kind)}:{escape(agent)}:{escape(window)}"

    def counter_pattern(self, kind: str) -> str:
        return f"{self.prefix}{{*}}:n:{escape(kind)}:*"

    def parse_counter(self, key: str) -> tuple[str | None, str, str, str]:
        """(tenant, kind, agent, window)"""
        tag, kind, rest = self._split(key)
        parts = rest.split(":")
        if kind != "n" or len(parts) != 3:
            raise ValueError(f"not a counter key: {key!r}")
        name, agent, window = (unescape(p) for p in parts)
        return self._tenant_of(tag), name, agent, window

    def mark(self, name: str) -> str:
        """A once-only mark, e.g. the dedup of an alert."""
        return f"{self.prefix}{{{_GLOBAL_TAG}}}:m:{escape(name)}"

    def history(self, tenant: str | None) -> str:
        """A tenant's spend history (a Redis Stream), in the tenant's slot beside its buckets; outcomes recorded
        without a tenant go to the fleet-wide one."""
        return f"{self.prefix}{{{self._tag(tenant)}}}:h"

    def history_pattern(self) -> str:
        return f"{self.prefix}{{*}}:h"

    def bucket_pattern(self) -> str:
        return f"{self.prefix}{{*}}:b:*"

    def kill_pattern(self) -> str:
        return f"{self.prefix}{{*}}:k:*"

    def parse_bucket(self, key: str) -> BucketKey:
        tag, kind, rest = self._split(key)
        if kind != "b":
            raise ValueError(f"not a bucket key: {key!r}")
        parts = rest.split(":")
        if len(parts) != 4:
            raise ValueError(f"malformed bucket key: {key!r}")
        budget, scope, scope_key, window = (unescape(p) for p in parts)
        return BucketKey(self._tenant_of(tag), budget, scope, scope_key, window)

    def parse_kill(self, key: str) -> KillFlag:
        tag, kind, rest = self._split(key)
        target, _, value = rest.partition(":")
        if kind != "k" or target not in ("run", "agent", "user", "tenant"):
            raise ValueError(f"not a kill key: {key!r}")
        name, tenant = unescape(value), self._tenant_of(tag)
        if (target == "tenant" and tenant != name) or (target == "run" and tenant is not None):
            raise ValueError(f"malformed kill key: {key!r}")
        return KillFlag(target, name, tenant)  # type: ignore[arg-type]

    def _split(self, key: str) -> tuple[str, str, str]:
        if not key.startswith(self.prefix + "{"):
            raise ValueError(f"key {key!r} does not start with prefix {self.prefix!r}")
        body = key[len(self.prefix) + 1 :]
        tag, _, rest = body.partition("}:")
        kind, _, rest = rest.partition(":")
        return tag, kind, rest

    @staticmethod
    def _tenant_of(tag: str) -> str | None:
        if tag == _GLOBAL_TAG:
            return None
        if not tag.startswith("t."):
            raise ValueError(f"unknown hash tag {tag!r}")
        return unescape(tag[2:])

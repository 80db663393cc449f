"""``guardian doctor``: is the fleet's Redis fit to hold budgets?

Budgets, reservations and kill flags live only in Redis. A Redis that persists nothing (no RDB save
points, ``appendonly no``) forgets every budget when it restarts, and an eviction policy may drop
ledger keys when memory runs short. ``read_settings`` asks Redis (``CONFIG GET``, or ``INFO`` where
a managed Redis disables ``CONFIG``); ``judge`` turns the answer into findings, without I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import redis

from guardian.keys import KeyBuilder

__all__ = [
    "NOTHING_PERSISTS",
    "Finding",
    "RedisSettings",
    "diagnose",
    "judge",
    "persistence_warning",
    "read_settings",
]

Level = Literal["ok", "warning", "error"]
NOTHING_PERSISTS = "budgets reset when this Redis restarts"


@dataclass(frozen=True, slots=True)
class Finding:
    level: Level
    topic: str  # store | persistence | eviction
    message: str


@dataclass(frozen=True, slots=True)
class RedisSettings:
    """What Redis says about durability and eviction; None where it would not say."""

    save: str | None  # RDB save points, "" for none; None when CONFIG is disabled (INFO does not tell)
    appendonly: bool | None
    maxmemory_policy: str | None
    maxmemory: int | None
    source: Literal["CONFIG", "INFO"] = "CONFIG"

    @property
    def persists_nothing(self) -> bool:
        """Known to keep nothing across a restart (an unknown setting is not assumed off)."""
        return self.save is not None and not self.save.strip() and self.appendonly is False


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _config(client: redis.Redis, name: str) -> str | None:
    answer: Mapping[Any, Any] = client.config_get(name)
    for key, value in answer.items():
        if _text(key) == name:
            return _text(value)
    return None


def read_settings(client: redis.Redis) -> RedisSettings:
    """The settings from ``CONFIG GET``; if CONFIG is disabled or renamed (managed Redis), from ``INFO``,
    which tells whether AOF is on and the eviction policy, but not the RDB save points."""
    try:
        appendonly = _config(client, "appendonly")
        maxmemory = _config(client, "maxmemory")
        return RedisSettings(
            save=_config(client, "save"),
            appendonly=None if appendonly is None else appendonly == "yes",
            maxmemory_policy=_config(client, "maxmemory-policy"),
            maxmemory=None if maxmemory is None else int(maxmemory),
        )
    except redis.ResponseError:
        pass
    persistence: Mapping[str, Any] = client.info("persistence")
    memory: Mapping[str, Any] = client.info("memory")
    aof = persistence.get("aof_enabled")
    policy = memory.get("maxmemory_policy")
    maxmemory = memory.get("maxmemory")
    return RedisSettings(
        save=None,
        appendonly=None if aof is None else bool(int(aof)),
        maxmemory_policy=None if policy is None else _text(policy),
        maxmemory=None if maxmemory is None else int(maxmemory),
        source="INFO",
    )


def judge(settings: RedisSettings) -> list[Finding]:
    """Durability and eviction findings, one each."""
    return [_persistence(settings), _eviction(settings)]


def _persistence(s: RedisSettings) -> Finding:
    if s.appendonly:
        return Finding("ok", "persistence", "appendonly yes: budgets and kill flags survive a restart")
    if s.save is None:
        if s.appendonly is None:
            return Finding("warning", "persistence", "could not read the persistence settings from this Redis")
        return Finding(
            "warning",
            "persistence",
            "appendonly no, and the RDB save points are unknown (CONFIG is disabled): if snapshots are off too, "
            f"{NOTHING_PERSISTS}; check your provider's persistence settings",
        )
    if s.save.strip():
        return Finding(
            "ok",
            "persistence",
            f'RDB snapshots (save "{s.save}"), appendonly no: a restart brings budgets back as of the last '
            "snapshot, and spend after it is forgotten (appendonly yes keeps it)",
        )
    if s.appendonly is None:
        return Finding("warning", "persistence", 'save "" and appendonly unknown: budgets may not survive a restart')
    return Finding(
        "warning",
        "persistence",
        f'Redis persists nothing (save "", appendonly no): {NOTHING_PERSISTS}; '
        "turn on appendonly yes (or RDB save points) on the fleet's Redis",
    )


def _eviction(s: RedisSettings) -> Finding:
    policy = s.maxmemory_policy
    limit = " (once a maxmemory is set: none is now)" if s.maxmemory == 0 else ""
    if policy is None:
        return Finding("warning", "eviction", "could not read maxmemory-policy: Redis may evict budget keys")
    if policy == "noeviction":
        return Finding(
            "ok",
            "eviction",
            "maxmemory-policy noeviction: budget keys are never evicted (a full Redis refuses writes, and "
            "on_store_error decides)",
        )
    if policy.startswith("volatile-"):
        return Finding(
            "warning",
            "eviction",
            f"maxmemory-policy {policy} may evict budget keys when memory runs short{limit}: every Guardian "
            "key has a TTL, so volatile-* policies may evict budgets, reservations and kill flags, forgetting "
            "spend and lifting kills; use noeviction",
        )
    return Finding(
        "warning",
        "eviction",
        f"maxmemory-policy {policy} may evict any key, budgets and kill flags included, when memory runs "
        f"short{limit}: spend is forgotten and kills lifted; use noeviction",
    )


def diagnose(client: redis.Redis, keys: KeyBuilder, where: str) -> list[Finding]:
    """Reach the Redis behind ``client`` (``where`` names it, safe to print), then judge its settings."""
    try:
        version = _text(client.info("server").get("redis_version", "?"))
        buckets = sum(1 for _ in client.scan_iter(match=keys.bucket_pattern(), count=1000))
        kills = sum(1 for _ in client.scan_iter(match=keys.kill_pattern(), count=1000))
    except redis.RedisError as exc:
        return [Finding("error", "store", f"{where} is not reachable: {type(exc).__name__}: {exc}")]
    reached = Finding(
        "ok",
        "store",
        f"{where} is reachable (Redis {version}); prefix {keys.prefix!r} holds {buckets} budget bucket(s) "
        f"and {kills} kill flag(s)",
    )
    try:
        settings = read_settings(client)
    except redis.RedisError as exc:
        return [reached, Finding("warning", "persistence", f"could not read the settings: {exc}")]
    return [reached, *judge(settings)]


def persistence_warning(client: redis.Redis) -> str | None:
    """One line when this Redis is known to persist nothing; None otherwise or when it cannot tell."""
    try:
        settings = read_settings(client)
    except (redis.RedisError, ValueError):
        return None
    if not settings.persists_nothing:
        return None
    return f'this Redis persists nothing (save "", appendonly no): {NOTHING_PERSISTS}; see `guardian doctor`'

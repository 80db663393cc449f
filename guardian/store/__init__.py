"""Budget stores: ``MemoryStore`` (embedded default) and ``RedisStore`` (fleet-wide)."""

from guardian.store.base import (
    NO_LIMIT,
    BucketState,
    ChargeMode,
    CommitRequest,
    Counter,
    KillCheck,
    Refusal,
    ReleaseRequest,
    ReserveRequest,
    ReserveResult,
    Store,
    Target,
)
from guardian.store.factory import open_store
from guardian.store.memory import MemoryStore
from guardian.store.redis import RedisStore

__all__ = [
    "NO_LIMIT",
    "BucketState",
    "ChargeMode",
    "CommitRequest",
    "Counter",
    "KillCheck",
    "MemoryStore",
    "RedisStore",
    "Refusal",
    "ReleaseRequest",
    "ReserveRequest",
    "ReserveResult",
    "Store",
    "Target",
    "open_store",
]

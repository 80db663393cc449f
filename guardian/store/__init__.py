"""Budget stores: ``MemoryStore`` (embedded default) and ``RedisStore`` (fleet-wide)."""

from guardian.store.base import (
    MAX_AMOUNT,
    NO_LIMIT,
    SETTLED_TTL_S,
    BucketState,
    ChargeMode,
    CommitRequest,
    Counter,
    HistoryEntry,
    KillCheck,
    Refusal,
    ReleaseRequest,
    RenewRequest,
    ReserveRequest,
    ReserveResult,
    Store,
    Target,
)
from guardian.store.factory import open_store
from guardian.store.memory import MemoryStore
from guardian.store.redis import RedisStore

__all__ = [
    "MAX_AMOUNT",
    "NO_LIMIT",
    "SETTLED_TTL_S",
    "BucketState",
    "ChargeMode",
    "CommitRequest",
    "Counter",
    "HistoryEntry",
    "KillCheck",
    "MemoryStore",
    "RedisStore",
    "Refusal",
    "ReleaseRequest",
    "RenewRequest",
    "ReserveRequest",
    "ReserveResult",
    "Store",
    "Target",
    "open_store",
]

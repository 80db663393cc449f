"""The one storage contract both backends implement.

The store knows nothing about policies: it is handed fully built keys, integer limits
and amounts, and performs each read-modify-write atomically. The request and result types
are plain (not frozen) dataclasses only because they are built on every model call and a
frozen one costs several times more to construct; nothing mutates them. All times are epoch
seconds passed in by the caller (the clock is injected upstream), never read here.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import IntEnum

from guardian.amounts import Amounts

__all__ = [
    "NO_LIMIT",
    "BucketState",
    "ChargeMode",
    "CommitRequest",
    "Counter",
    "KillCheck",
    "Refusal",
    "ReleaseRequest",
    "ReserveRequest",
    "ReserveResult",
    "Store",
    "Target",
]

NO_LIMIT = -1


class ChargeMode(IntEnum):
    RESERVE = 0  # hold the amount until commit/release/expiry; replaces an earlier hold of the same id
    EXTEND = 1  # add to an existing hold of the same id (a stream that outgrew its estimate)
    CHARGE = 2  # add straight to spent, e.g. a tool call: nothing to settle later


@dataclass(slots=True)
class Target:
    """One budget bucket a call is charged to.

    ``limits`` has one value per metric, ``NO_LIMIT`` where the budget sets none.
    ``enforce`` False means the budget only records (``action: alert``) and never refuses.
    """

    key: str
    limits: tuple[int, ...]
    expires_at: float
    enforce: bool = True


@dataclass(slots=True)
class KillCheck:
    key: str
    target: str
    value: str


@dataclass(slots=True)
class ReserveRequest:
    call_id: str
    targets: Sequence[Target]
    amount: Amounts
    now: float
    ttl_s: float = 600.0
    mode: ChargeMode = ChargeMode.RESERVE
    kill_checks: Sequence[KillCheck] = ()
    want_states: bool = True  # False: the caller needs no bucket states back (saves building them)


@dataclass(slots=True)
class CommitRequest:
    """Settle a call: drop its hold on every target and add what it really used.

    Idempotent by ``call_id`` through ``marker_key`` (kept ``marker_ttl_s``).
    """

    call_id: str
    targets: Sequence[Target]
    amount: Amounts
    now: float
    marker_key: str
    marker_ttl_s: float = 6 * 3600.0  # outlives any retry of a queued commit; one small key per call


@dataclass(slots=True)
class ReleaseRequest:
    call_id: str
    targets: Sequence[Target]
    now: float


@dataclass(slots=True)
class Counter:
    """A plain event counter (e.g. loop halts of an agent today), kept ``ttl_s`` after its last change."""

    key: str
    ttl_s: float


@dataclass(slots=True)
class Refusal:
    target_index: int
    metric: str
    limit: int
    current: int  # spent + reserved before this request
    requested: int


@dataclass(slots=True)
class BucketState:
    spent: Amounts
    reserved: Amounts
    refused: int = 0  # requests this bucket turned away


@dataclass(slots=True)
class ReserveResult:
    """``states`` holds each target's state after the request (before it, when refused); empty when the
    request did not want them."""

    killed: KillCheck | None = None
    refusal: Refusal | None = None
    states: Sequence[BucketState] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return self.killed is None and self.refusal is None


class Store(abc.ABC):
    """Atomic ledger operations. Implementations must be safe to share between threads."""

    @abc.abstractmethod
    def reserve(self, request: ReserveRequest) -> ReserveResult:
        """All-or-nothing over the targets: refuse if a kill flag is set, or if any enforced
        target would pass a limit; otherwise hold (or charge) the amount on every target."""

    @abc.abstractmethod
    def commit(self, request: CommitRequest) -> None:
        """May be deferred (batched); durable after ``flush()`` returns."""

    @abc.abstractmethod
    def release(self, request: ReleaseRequest) -> None:
        """Drop a hold without charging anything."""

    @abc.abstractmethod
    def flush(self) -> None:
        """Make every deferred commit durable; raise ``StoreError`` if that is impossible now."""

    @abc.abstractmethod
    def read(self, keys: Sequence[str], now: float) -> list[BucketState | None]:
        """Current state of buckets (expired holds dropped); None for a bucket that does not exist."""

    @abc.abstractmethod
    def scan(self, pattern: str, now: float) -> Iterator[tuple[str, BucketState]]:
        """Every bucket whose key matches a Redis-style glob."""

    @abc.abstractmethod
    def count(self, counter: Counter, amount: int, *, now: float) -> int:
        """Add to a counter; returns its new value."""

    @abc.abstractmethod
    def counters(self, pattern: str, now: float) -> list[tuple[str, int]]:
        """Every live counter whose key matches a Redis-style glob."""

    @abc.abstractmethod
    def set_flag(self, key: str, ttl_s: float | None, *, now: float, only_if_absent: bool = False) -> bool:
        """Set a flag (kill flag, dedup mark). Returns False if ``only_if_absent`` and it existed."""

    @abc.abstractmethod
    def clear_flag(self, key: str) -> bool:
        """Remove a flag; True if it existed."""

    @abc.abstractmethod
    def flags(self, pattern: str, now: float) -> list[str]:
        """Keys of the flags matching a Redis-style glob."""

    def retire(self, keys: Sequence[str], now: float, keep_s: float) -> None:  # noqa: B027 - optional hook
        """A run ended: its buckets may go after ``keep_s``. An in-process store uses this to stay small; a
        shared store keeps them to their TTL, for ``guardian status``."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Flush and release resources."""

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

from guardian.amounts import NO_LIMIT, Amounts

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
    "Refusal",
    "ReleaseRequest",
    "RenewRequest",
    "ReserveRequest",
    "ReserveResult",
    "Store",
    "Target",
]

# The largest amount one request may carry. Redis' Lua counts in doubles, exact to 2**53: amounts are kept far
# below that so that sums of many of them stay exact, and both stores refuse the same requests.
MAX_AMOUNT = 2**48
# How long a commit marker, a charge marker and the record of an expired hold's charge are kept: longer than any
# retry of a queued commit (an outage of the store under fail_open), so a late commit is never counted twice.
SETTLED_TTL_S = 6 * 3600.0


class ChargeMode(IntEnum):
    """Every mode is idempotent: a request sent twice (a retry after a lost reply) changes nothing more."""

    RESERVE = 0  # hold the amount until commit/release/expiry; replaces an earlier hold of the same id
    EXTEND = 1  # raise a live hold of the same id to the amount, a total (a stream that outgrew its estimate)
    CHARGE = 2  # add straight to spent, e.g. a tool call: nothing to settle later; once per marker_key


def check_amount(amount: Amounts) -> tuple[int, ...]:
    """The amount as a vector; ValueError if any part is negative or above ``MAX_AMOUNT`` (a caller's bug:
    reported usage is clamped before it reaches a store)."""
    vector = amount.as_vector()
    for value in vector:
        if not 0 <= value <= MAX_AMOUNT:
            raise ValueError(f"ledger amounts must be between 0 and {MAX_AMOUNT}: got {amount}")
    return vector


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
    tenant: str | None = None  # the tenant an agent or user flag is scoped to; None: every tenant


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
    marker_key: str | None = None  # CHARGE: applied once per marker (kept SETTLED_TTL_S)
    probe: bool = False  # a try that a smaller one follows if refused: its refusal is not counted in `refused`


@dataclass(slots=True)
class HistoryEntry:
    """One record of the spend history: ``payload`` (opaque text) appended to the history ``key`` at ``now``.

    A history keeps ``keep_s`` of records, and at most about ``max_records`` (trimmed approximately, as Redis'
    ``MAXLEN ~`` does; an in-process store may keep fewer to bound its memory).
    """

    key: str
    payload: str
    now: float
    keep_s: float
    max_records: int
    marker_key: str | None = None  # for a record appended alone: sent twice, it is appended once


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
    marker_ttl_s: float = SETTLED_TTL_S  # outlives any retry of a queued commit; one small key per call
    history: HistoryEntry | None = None  # appended with the commit, once: a commit sent twice records once


@dataclass(slots=True)
class ReleaseRequest:
    call_id: str
    targets: Sequence[Target]
    now: float


@dataclass(slots=True)
class RenewRequest:
    """Push the expiry of a live call's hold to ``now + ttl_s`` (a call still running must not lose it)."""

    call_id: str
    targets: Sequence[Target]
    now: float
    ttl_s: float


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
    limits: tuple[int, ...] | None = None  # as the last reservation judged it (grants included); None: never


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
    """Atomic ledger operations. Implementations must be safe to share between threads.

    A hold that reaches its expiry unsettled is charged as spent, not released: its process may have died
    after paying the provider (SIGKILL, a crash loop), and a released hold would let the fleet serve more calls
    than the budget allows. What it charged is kept ``SETTLED_TTL_S``, so a late commit or release corrects it.
    """

    # Whether other processes (the CLI among them) can read this store: False for the embedded one, whose
    # halts point at ``Guardian.status()`` rather than ``guardian status``.
    shared: bool = True

    @abc.abstractmethod
    def reserve(self, request: ReserveRequest) -> ReserveResult:
        """All-or-nothing over the targets: refuse if a kill flag is set, or if any enforced
        target would pass a limit; otherwise hold (or charge) the amount on every target."""

    @abc.abstractmethod
    def commit(self, request: CommitRequest) -> None:
        """May be deferred (batched); durable after ``flush()`` returns."""

    @abc.abstractmethod
    def release(self, request: ReleaseRequest) -> None:
        """Drop a hold without charging anything (or take back what its expiry charged)."""

    @abc.abstractmethod
    def renew(self, requests: Sequence[RenewRequest]) -> None:
        """Push back the expiry of live holds; a hold that has already expired stays charged."""

    @abc.abstractmethod
    def flush(self) -> None:
        """Make every deferred commit durable; raise ``StoreError`` if that is impossible now."""

    @abc.abstractmethod
    def sync(self, keys: Sequence[str], now: float) -> list[BucketState | None]:
        """``flush()`` then ``read(keys)``, in one round trip where the store can: what a run does as it ends."""

    @abc.abstractmethod
    def read(self, keys: Sequence[str], now: float) -> list[BucketState | None]:
        """Current state of buckets (expired holds charged); None for a bucket that does not exist."""

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
    def counter(self, key: str, now: float) -> int:
        """One live counter's value, 0 when it does not exist (nothing is written)."""

    @abc.abstractmethod
    def set_flag(self, key: str, ttl_s: float | None, *, now: float, only_if_absent: bool = False) -> bool:
        """Set a flag (kill flag, dedup mark). Returns False if ``only_if_absent`` and it existed."""

    @abc.abstractmethod
    def clear_flag(self, key: str) -> bool:
        """Remove a flag; True if it existed."""

    @abc.abstractmethod
    def flags(self, pattern: str, now: float) -> list[str]:
        """Keys of the flags matching a Redis-style glob."""

    @abc.abstractmethod
    def append(self, entry: HistoryEntry) -> None:
        """Add a record to a history (a halt, an outcome, a cache hit), once per ``marker_key``; may be deferred
        like a commit. A record that cannot be written is dropped, never failing the batch it rides with."""

    @abc.abstractmethod
    def history(self, pattern: str, since: float, until: float) -> Iterator[tuple[float, str]]:
        """The records of every history matching a Redis-style glob with ``since <= time < until``, as
        (time, payload), oldest first. Deferred records are flushed first."""

    def retire(self, keys: Sequence[str], now: float, keep_s: float) -> None:  # noqa: B027 - optional hook
        """A run ended: its buckets may go after ``keep_s``. An in-process store uses this to stay small; a
        shared store keeps them to their TTL, for ``guardian status``."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Flush and release resources."""

"""What a model call is expected to use before it runs, and how far its reported usage is believed after.

Pure and thread-safe; the supervisor asks before each call and tells after it.

Without an explicit output cap (``max_tokens``) a call's output cannot be known in advance. Holding the policy's
``default_max_output_tokens`` for every call refuses healthy agents long before their budget is spent (an agent
whose replies are 30 tokens holds 1,024 per call), so the hold is learned from what this agent produced with this
model lately: the largest of its recent outputs plus headroom. The policy default only stands in until there is
history. A call that produces more than its hold is still committed in full (spend is reality); the overrun is
bounded by one call per budget at a time and logged as ``commit_over_hold``.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict, deque
from collections.abc import Hashable
from dataclasses import dataclass

from guardian.pricing import TokenUsage
from guardian.store.base import MAX_AMOUNT

__all__ = ["MAX_CALL_TOKENS", "OutputHistory", "UsageCheck", "check_usage"]

# No model reads or writes more in one call (the largest context windows are ~10M tokens); a report above this is
# a provider or proxy bug, and believing it would poison every budget it touches.
MAX_CALL_TOKENS = 100_000_000
assert MAX_CALL_TOKENS < MAX_AMOUNT


class OutputHistory:
    """Recent output sizes per (agent, provider, model), in bounded memory.

    ``keep`` outputs per key and at most ``max_keys`` keys (the least recently used go first). The hold is the
    largest recent output plus ``headroom`` of it (at least ``min_headroom_tokens``): an agent's outputs vary, and a
    hold that is usually enough keeps overruns rare while staying close to what calls really cost.
    """

    def __init__(
        self, *, keep: int = 32, max_keys: int = 4096, headroom: float = 0.25, min_headroom_tokens: int = 16
    ) -> None:
        self._keep = keep
        self._max_keys = max_keys
        self._headroom = headroom
        self._min_headroom = min_headroom_tokens
        self._recent: OrderedDict[Hashable, deque[int]] = OrderedDict()
        self._lock = threading.Lock()

    def hold(self, key: Hashable, default: int) -> int:
        """The output tokens to hold for a call of ``key`` that names no cap."""
        with self._lock:
            recent = self._recent.get(key)
            if not recent:
                return default
            largest = max(recent)
        return largest + max(self._min_headroom, int(largest * self._headroom))

    def record(self, key: Hashable, output_tokens: int) -> None:
        with self._lock:
            recent = self._recent.get(key)
            if recent is None:
                recent = self._recent[key] = deque(maxlen=self._keep)
                if len(self._recent) > self._max_keys:
                    self._recent.popitem(last=False)
            else:
                self._recent.move_to_end(key)
            recent.append(output_tokens)

    def __len__(self) -> int:
        with self._lock:
            return len(self._recent)


@dataclass(frozen=True, slots=True)
class UsageCheck:
    """A reported usage made sane; ``rejected`` names each field that was not believed, with the value reported."""

    usage: TokenUsage
    rejected: dict[str, int]


def reported_count(value: object) -> int:
    """A provider's token count as an int. What is not a finite number (NaN, infinity, a string from a broken
    proxy) becomes -1, which ``check_usage`` rejects in favour of Guardian's own count: a malformed report must
    never skip a commit."""
    if value is None:
        return 0
    if isinstance(value, bool):
        return -1
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    return -1


def check_usage(reported: TokenUsage, fallback: TokenUsage) -> UsageCheck:
    """Believe a provider's usage only within a sane range; both stores then agree on what is charged.

    A negative count would refund a budget and a huge one would wrap Redis' 64-bit counters: such a field is
    replaced by ``fallback``'s (what Guardian estimated or counted for the call). Cache and reasoning counts are
    parts of input and output, so they are kept within them.
    """
    rejected: dict[str, int] = {}

    def sane(name: str, value: int, instead: int) -> int:
        if 0 <= value <= MAX_CALL_TOKENS:
            return value
        rejected[name] = value
        return min(max(instead, 0), MAX_CALL_TOKENS)

    input_tokens = sane("input_tokens", reported.input_tokens, fallback.input_tokens)
    output_tokens = sane("output_tokens", reported.output_tokens, fallback.output_tokens)
    cache_read = sane("cache_read_tokens", reported.cache_read_tokens, 0)
    cache_write = sane("cache_write_tokens", reported.cache_write_tokens, 0)
    reasoning = sane("reasoning_tokens", reported.reasoning_tokens, 0)
    if cache_read + cache_write > input_tokens:
        rejected.setdefault("cache_read_tokens", reported.cache_read_tokens)
        cache_read = min(cache_read, input_tokens)
        cache_write = min(cache_write, input_tokens - cache_read)
    if reasoning > output_tokens:
        rejected.setdefault("reasoning_tokens", reported.reasoning_tokens)
        reasoning = output_tokens
    usage = TokenUsage(input_tokens, output_tokens, cache_read, cache_write, reasoning)
    return UsageCheck(usage, rejected)
